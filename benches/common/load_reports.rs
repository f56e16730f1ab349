//! Load reports (issue #18): envoy-lb's client_side_weighted_round_robin beside Envoy's native
//! `envoy.load_balancing_policies.client_side_weighted_round_robin` on the same reporting
//! backends, and envoy-lb's least_load beside least_request and round robin on backends with a
//! queue. Every backend is a demo backend that reports ORCA `endpoint-load-metrics` (`TEXT`) on
//! each answer: its rate over the last second (`rps_fractional`), rate ÷ capacity as
//! `application_utilization` (so a weight, rate ÷ utilization, comes out as the capacity) and its
//! simulated queue (`named_metrics.queue_depth`).
//!
//! Four measurements, Envoy `--concurrency 2`, every answer 200 (checked), latency per request
//! from the client (send to body read, every request recorded, exact percentiles):
//!
//! - convergence: capacities 1:2:4, a fresh Envoy and fresh backends per variant and round, one
//!   keep-alive connection per Envoy worker (`client_per_worker`), each paced to one request per
//!   [`PACE`] (closed loop). From the first request, the time until the shares of the answers
//!   (their `x-backend`) in a sliding window of [`WINDOW`] stay within [`TOLERANCE`] (relative)
//!   of 1:2:4 until the change; then the third backend's capacity halves, and the time from the
//!   change until the shares stay within it of 1:2:2 until the end of the run.
//! - a slowdown: three backends with a queue ([`SLOWDOWN_SLOTS`] slots, [`SLOWDOWN_SERVICE`]
//!   each, capacity reported as slots ÷ service), [`SLOWDOWN_CONNECTIONS`] keep-alive connections
//!   spread evenly over the workers, closed loop; mid-run the third backend's service time goes up
//!   4× and its reported capacity down 4×: p50 / p99 of the requests sent in a fixed window from
//!   the change on.
//! - least_load, only this Envoy sending: three backends with a queue ([`QUEUE_SLOTS`] slots, b3
//!   slower), the latency bench's closed-loop load ([`CONNECTIONS`] connections) against Envoys
//!   that stay up for the whole run; p50 / p90 / p99 per measurement, medians over interleaved
//!   rounds.
//! - least_load under external load: three other backends, equal ([`EQUAL_IDS`], the same slots,
//!   all [`QUEUE_FAST`]), with Envoys of their own, and during each measurement an external
//!   closed-loop client ([`EXTERNAL_CONNECTIONS`] connections) straight to e1, bypassing Envoy
//!   (another gateway's traffic): load that only e1's reports show. Equal, because least_load's
//!   metrics count requests, not time (see [`QUEUE_FAST`]).
//!
//! The weight-update timers tick once a second, so a CSWRR time depends on where in that second
//! the first request (or the change) falls: round r of n offsets both by r/n of the period after
//! the Envoy is ready, and medians are taken over those phases.
//!
//! The goal, compared here and reported as measured: envoy-lb's
//! client_side_weighted_round_robin converges no later than Envoy's native policy (both times)
//! and has no higher p99 after the slowdown; for least_load, p99 beside least_request and round
//! robin (no numeric goal: which is lower is said per scenario).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use demo_backend::{LoadReport, QueueSim, ReportFormat};
use serde_json::json;
use serde_yaml_ng::Value;

use super::{
    command_line, envoy_version, median, min_max, replace_section, require_tools, run_header,
    start, Kind, Params, Proxy, RunStart, Variant, CONNECTIONS,
};
use crate::support::{backend, plugin_config, Backend, BackendOptions, Envoy, EnvoySetup};

/// Where this bench's section of bench/RESULTS.md starts (appended after the others).
pub const HEADING: &str = "## Load reports (ORCA)";
/// `make bench`'s Envoy worker counts, rounds (BENCH_ROUNDS), seconds per measurement
/// (BENCH_SECONDS: a least_load measurement is [`LEAST_LOAD_SECONDS`] times it, the phases of
/// the convergence and slowdown runs [`CONVERGE_PHASES`] and [`SLOWDOWN_PHASES`] times it) and
/// warm-up per least_load Envoy.
pub const WORKERS: [u32; 1] = [2];
pub const ROUNDS: u64 = 4;
pub const SECONDS: u64 = 4;
pub const WARMUP_SECONDS: u64 = 1;

/// Both CSWRRs: a weight counts 1 s after its first report, weights recomputed every second.
const BLACKOUT_MS: u64 = 1_000;
const UPDATE_MS: u64 = 1_000;

/// Convergence: capacities (req/s) of b1, b2, b3, and b3's after the change.
const CAPACITIES: [f64; 3] = [1_000.0, 2_000.0, 4_000.0];
const HALVED: f64 = 2_000.0;
/// Shares are counted over the answers of this window, ending at each answer.
const WINDOW: Duration = Duration::from_millis(500);
/// Allowed distance of each share from its target, relative (5%: 1/7 ± 0.0071).
const TOLERANCE: f64 = 0.05;
/// Each connection sends at most one request per `PACE` (about 2,000 req/s on two workers).
const PACE: Duration = Duration::from_millis(1);
/// Seconds before the change and after it, in units of BENCH_SECONDS.
const CONVERGE_PHASES: (f64, f64) = (1.5, 1.0);
/// The slowdown's seconds before the change and of the window after it, the same way.
const SLOWDOWN_PHASES: (f64, f64) = (0.75, 1.5);

/// The slowdown: slots and service time per backend, b3's service × 4 at the change.
const SLOWDOWN_SLOTS: usize = 4;
const SLOWDOWN_SERVICE: Duration = Duration::from_millis(5);
const SLOWDOWN_FACTOR: u32 = 4;
/// Connections of the slowdown's load: two thirds of the 12 slots.
const SLOWDOWN_CONNECTIONS: usize = 8;

/// least_load: slots per backend; service of b1 and b2 and of the slow b3 (only this Envoy
/// sending), and of each of the equal e1, e2, e3 (with the external load). The external load's
/// backends are equal, as the replicas of one model server behind several gateways are (the
/// case least_load is for): its metrics count requests, not time, so with backends of different
/// speeds it can move requests from a loaded backend to a slower one where each waits longer.
const QUEUE_SLOTS: usize = 2;
const QUEUE_FAST: Duration = Duration::from_millis(10);
const QUEUE_SLOW: Duration = Duration::from_millis(30);
/// A least_load measurement lasts this fraction of BENCH_SECONDS (3 s at the default 4), so
/// that the bench, with two scenarios of five variants, stays under 6.5 minutes.
const LEAST_LOAD_SECONDS: f64 = 0.75;
/// The external load: closed-loop keep-alive connections straight to e1 (index
/// [`EXTERNAL_BACKEND`] of [`EQUAL_IDS`]), three times its slots, started this long before each
/// measurement.
const EXTERNAL_CONNECTIONS: usize = 6;
const EXTERNAL_BACKEND: usize = 0;
const EXTERNAL_LEAD: Duration = Duration::from_millis(500);

/// The backends of the CSWRR runs and of least_load with only this Envoy sending.
const IDS: [&str; 3] = ["b1", "b2", "b3"];
/// The equal backends of least_load with the external load.
const EQUAL_IDS: [&str; 3] = ["e1", "e2", "e3"];

/// The two CSWRR variants.
pub struct Cswrr {
    pub key: char,
    pub name: &'static str,
    pub native: bool,
}

pub fn cswrr_variants() -> Vec<Cswrr> {
    vec![
        Cswrr {
            key: 'a',
            name: "Envoy native client_side_weighted_round_robin (no wasm)",
            native: true,
        },
        Cswrr { key: 'b', name: "envoy-lb client_side_weighted_round_robin", native: false },
    ]
}

/// Keys of the least_load variants compared in the summaries.
const LEAST_LOADS: [char; 2] = ['f', 'g'];

pub fn least_load_variants() -> Vec<Variant> {
    let v = |key, name, kind| Variant { key, name, kind, returning: false };
    vec![
        v('c', "Envoy native least_request (no wasm)", Kind::NativeLeastRequest),
        v('d', "envoy-lb round_robin", Kind::Ours(json!({"algorithm": "round_robin"}))),
        v('e', "envoy-lb least_request", Kind::Ours(json!({"algorithm": "least_request"}))),
        v(
            LEAST_LOADS[0],
            "envoy-lb least_load (named_metrics.queue_depth)",
            Kind::Ours(json!({
                "algorithm": "least_load",
                "least_load": {"metric": "named_metrics.queue_depth"}
            })),
        ),
        v(
            LEAST_LOADS[1],
            "envoy-lb least_load (named_metrics.in_flight)",
            Kind::Ours(json!({
                "algorithm": "least_load",
                "least_load": {"metric": "named_metrics.in_flight"}
            })),
        ),
    ]
}

/// A demo backend reporting in `TEXT`, with a capacity and a queue if given.
async fn reporting(id: &str, capacity_rps: Option<f64>, queue: Option<QueueSim>) -> Backend {
    let mut o = BackendOptions::new(id);
    o.load_report =
        Some(LoadReport { format: ReportFormat::Text, capacity_rps, only_when_asked: false });
    o.queue = queue;
    backend(o).await
}

/// The cluster policy of the native variant, with the same blackout and update period.
fn native_policy() -> Value {
    serde_yaml_ng::from_str(&format!(
        "policies: [{{typed_extension_config: {{name: envoy.load_balancing_policies.client_side_weighted_round_robin, \
         typed_config: {{'@type': type.googleapis.com/envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin, \
         blackout_period: {}s, weight_update_period: {}s}}}}}}]",
        BLACKOUT_MS as f64 / 1000.0,
        UPDATE_MS as f64 / 1000.0
    ))
    .unwrap()
}

/// [`EnvoySetup::tweak`] of the native variant: no wasm filter, cluster `pool` on Envoy's
/// client_side_weighted_round_robin (same routes and retries).
fn native_cswrr(doc: &mut Value) {
    let hcm = &mut doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    hcm["http_filters"]
        .as_sequence_mut()
        .unwrap()
        .retain(|f| f["name"] != "envoy.filters.http.wasm");
    let clusters = doc["static_resources"]["clusters"].as_sequence_mut().unwrap();
    let pool = clusters.iter_mut().find(|c| c["name"] == "pool").expect("no cluster pool");
    pool["load_balancing_policy"] = native_policy();
}

/// An Envoy for `v` over `backends`.
async fn start_cswrr(v: &Cswrr, backends: &[Backend], workers: u32) -> Envoy {
    let pool: Vec<(&str, SocketAddr, u32)> = backends.iter().map(|b| (b.id(), b.addr, 1)).collect();
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let cfg = plugin_config(
        &pool,
        json!({
            "algorithm": "client_side_weighted_round_robin",
            "client_side_weighted_round_robin": {
                "blackout_period_ms": BLACKOUT_MS,
                "weight_update_period_ms": UPDATE_MS
            }
        }),
    );
    let mut setup = EnvoySetup::new(cfg, endpoints).concurrency(workers);
    if v.native {
        setup = setup.tweak(native_cswrr);
    }
    Envoy::start(setup).await
}

/// One answer of a load.
#[derive(Clone, Copy)]
struct Answer {
    /// When the request was sent, seconds since the run's start.
    sent: f64,
    /// Send to body read, µs.
    latency_us: u32,
    /// Index in [`IDS`], or in [`EQUAL_IDS`], of the backend that answered (its `x-backend`).
    backend: usize,
}

impl Answer {
    /// When the answer was read, seconds since the run's start.
    fn at(&self) -> f64 {
        self.sent + f64::from(self.latency_us) / 1e6
    }
}

/// A keep-alive client with one connection, as the latency bench's.
fn one_connection_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The load: one task per client, each sending its next request when the previous answer is
/// read (closed loop), at most one per `pace` if given, until `until`. Any error, non-200
/// answer or unknown `x-backend` fails the bench.
async fn closed_loop(
    clients: Vec<reqwest::Client>,
    url: &str,
    t0: Instant,
    until: Instant,
    pace: Option<Duration>,
) -> Vec<Answer> {
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        let url = url.to_owned();
        tasks.spawn(async move {
            let mut ticks = pace.map(|p| {
                let mut i = tokio::time::interval(p);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            });
            let mut answers = Vec::new();
            while Instant::now() < until {
                if let Some(ticks) = &mut ticks {
                    ticks.tick().await;
                }
                let t = Instant::now();
                let r = client.get(&url).send().await;
                let r = r.unwrap_or_else(|e| panic!("request to {url}: {e}"));
                let status = r.status();
                let id = r.headers().get("x-backend").and_then(|v| v.to_str().ok());
                let backend = IDS
                    .iter()
                    .position(|&i| Some(i) == id)
                    .or_else(|| EQUAL_IDS.iter().position(|&i| Some(i) == id));
                let id = id.map(str::to_owned);
                let body = r.bytes().await.unwrap_or_else(|e| panic!("body from {url}: {e}"));
                assert_eq!(status, 200, "{body:?}");
                answers.push(Answer {
                    sent: t.duration_since(t0).as_secs_f64(),
                    latency_us: u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX),
                    backend: backend.unwrap_or_else(|| panic!("x-backend {id:?}")),
                });
            }
            answers
        });
    }
    let mut all = Vec::new();
    while let Some(answers) = tasks.join_next().await {
        all.extend(answers.unwrap());
    }
    all
}

/// The `pct` percentile (nearest rank) of sorted values.
fn percentile(sorted: &[u32], pct: f64) -> f64 {
    let rank = ((pct / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1])
}

/// p50, p90, p99 in ms of the answers' latencies.
fn latency_ms(answers: &[&Answer]) -> (f64, f64, f64) {
    assert!(!answers.is_empty(), "no request answered");
    let mut l: Vec<u32> = answers.iter().map(|a| a.latency_us).collect();
    l.sort_unstable();
    let ms = |pct| percentile(&l, pct) / 1000.0;
    (ms(50.0), ms(90.0), ms(99.0))
}

/// Whether `counts` is within [`TOLERANCE`] of `target` (shares summing to 1).
fn within(counts: &[usize; 3], target: &[f64; 3]) -> bool {
    let n: usize = counts.iter().sum();
    n > 0
        && counts
            .iter()
            .zip(target)
            .all(|(&c, &t)| (c as f64 / n as f64 - t).abs() <= TOLERANCE * t)
}

/// The shares of the answers read in `[from, to)`.
fn shares(answers: &[Answer], from: f64, to: f64) -> [f64; 3] {
    let mut counts = [0usize; 3];
    for a in answers.iter().filter(|a| (from..to).contains(&a.at())) {
        counts[a.backend] += 1;
    }
    let n = counts.iter().sum::<usize>().max(1) as f64;
    counts.map(|c| c as f64 / n)
}

/// Seconds from `from` until the shares in the window ending at each answer read in
/// `[from, to)` (only full windows, ending at least [`WINDOW`] after the start) are within
/// [`TOLERANCE`] of `target` and stay so until `to`: the end of the first window of that last
/// run. `None` when the last window is not within it. `answers` sorted by [`Answer::at`].
fn converged(answers: &[Answer], from: f64, to: f64, target: &[f64; 3]) -> Option<f64> {
    let window = WINDOW.as_secs_f64();
    let mut counts = [0usize; 3];
    let (mut lo, mut since) = (0, None);
    let mut last_ok = false;
    for a in answers {
        let end = a.at();
        if end >= to {
            break;
        }
        counts[a.backend] += 1;
        while answers[lo].at() <= end - window {
            counts[answers[lo].backend] -= 1;
            lo += 1;
        }
        if end < from || end < window {
            continue;
        }
        last_ok = within(&counts, target);
        if !last_ok {
            since = None;
        } else if since.is_none() {
            since = Some(end - from);
        }
    }
    since.filter(|_| last_ok)
}

/// One convergence run of a variant.
struct Convergence {
    /// Seconds from the first request to 1:2:4, and from the change to 1:2:2 (∞: not within
    /// the phase).
    start_s: f64,
    change_s: f64,
    /// Shares over the last second before the change, and over the last second of the run.
    before: [f64; 3],
    after: [f64; 3],
    rps: f64,
}

/// A run's offset, seconds: the first request comes this long after the Envoy is ready, and
/// the change this much later in the run, so that each round meets the weight-update timers
/// (which tick from the Envoy's start, or from the first report) at another phase: round `r` of
/// `n` is offset by `r / n` of an update period.
fn offset(round: usize, rounds: usize) -> f64 {
    UPDATE_MS as f64 / 1000.0 * round as f64 / rounds.max(1) as f64
}

async fn convergence(v: &Cswrr, workers: u32, phases: (f64, f64), offset: f64) -> Convergence {
    let mut backends = Vec::new();
    for (id, capacity) in IDS.iter().zip(CAPACITIES) {
        backends.push(reporting(id, Some(capacity), None).await);
    }
    let envoy = start_cswrr(v, &backends, workers).await;
    tokio::time::sleep(Duration::from_secs_f64(offset)).await;
    let t0 = Instant::now();
    let (change_at, end) = (phases.0 + offset, phases.0 + offset + phases.1);
    // The first requests: one per worker until each has a connection of its own.
    let clients = envoy.client_per_worker().await;
    let load = {
        let url = envoy.url("/");
        let until = t0 + Duration::from_secs_f64(end);
        tokio::spawn(async move { closed_loop(clients, &url, t0, until, Some(PACE)).await })
    };
    tokio::time::sleep_until((t0 + Duration::from_secs_f64(change_at)).into()).await;
    backends[2].set_capacity_rps(HALVED);
    let change = t0.elapsed().as_secs_f64();
    let mut answers = load.await.unwrap();
    answers.sort_by(|a, b| a.at().total_cmp(&b.at()));
    let total: f64 = CAPACITIES.iter().sum();
    let first = CAPACITIES.map(|c| c / total);
    let halved = [CAPACITIES[0], CAPACITIES[1], HALVED];
    let total: f64 = halved.iter().sum();
    let second = halved.map(|c| c / total);
    let last = answers.last().map_or(end, Answer::at);
    Convergence {
        start_s: converged(&answers, 0.0, change, &first).unwrap_or(f64::INFINITY),
        change_s: converged(&answers, change, f64::INFINITY, &second).unwrap_or(f64::INFINITY),
        before: shares(&answers, change - 1.0, change),
        after: shares(&answers, last - 1.0, f64::INFINITY),
        rps: answers.len() as f64 / last,
    }
}

/// One slowdown run of a variant.
struct Slowdown {
    /// Of the requests sent in the window from the change on.
    p50_ms: f64,
    p99_ms: f64,
    /// % of them answered by b3.
    slow_pct: f64,
    rps: f64,
    /// p99 of the requests sent in the second before the change.
    p99_before_ms: f64,
}

async fn slowdown(v: &Cswrr, workers: u32, before_s: f64, window_s: f64, offset: f64) -> Slowdown {
    let capacity = SLOWDOWN_SLOTS as f64 / SLOWDOWN_SERVICE.as_secs_f64();
    let queue = QueueSim { slots: SLOWDOWN_SLOTS, service: SLOWDOWN_SERVICE };
    let mut backends = Vec::new();
    for id in IDS {
        backends.push(reporting(id, Some(capacity), Some(queue.clone())).await);
    }
    let envoy = start_cswrr(v, &backends, workers).await;
    tokio::time::sleep(Duration::from_secs_f64(offset)).await;
    let t0 = Instant::now();
    let before_s = before_s + offset;
    // The same number of connections on each worker.
    let mut clients = Vec::new();
    while clients.len() < SLOWDOWN_CONNECTIONS {
        clients.extend(envoy.client_per_worker().await);
    }
    let load = {
        let url = envoy.url("/");
        let until = t0 + Duration::from_secs_f64(before_s + window_s);
        tokio::spawn(async move { closed_loop(clients, &url, t0, until, None).await })
    };
    tokio::time::sleep_until((t0 + Duration::from_secs_f64(before_s)).into()).await;
    backends[2].set_service(SLOWDOWN_SERVICE * SLOWDOWN_FACTOR);
    backends[2].set_capacity_rps(capacity / f64::from(SLOWDOWN_FACTOR));
    let change = t0.elapsed().as_secs_f64();
    let answers = load.await.unwrap();
    let after: Vec<&Answer> =
        answers.iter().filter(|a| (change..change + window_s).contains(&a.sent)).collect();
    let before: Vec<&Answer> =
        answers.iter().filter(|a| (change - 1.0..change).contains(&a.sent)).collect();
    let (p50_ms, _, p99_ms) = latency_ms(&after);
    let slow = after.iter().filter(|a| a.backend == 2).count();
    Slowdown {
        p50_ms,
        p99_ms,
        slow_pct: slow as f64 * 100.0 / after.len() as f64,
        rps: after.len() as f64 / window_s,
        p99_before_ms: latency_ms(&before).2,
    }
}

struct Sample {
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    rps: f64,
    /// Share of the Envoy's answers (their `x-backend`) that the externally loaded backend (e1;
    /// b1 without the external load) and the slow b3 (e3 with it) gave, %.
    loaded_pct: f64,
    slow_pct: f64,
    /// The external client's req/s and p99 (ms) over the measurement; 0 without one.
    external_rps: f64,
    external_p99_ms: f64,
}

/// The latency bench's load and figures ([`CONNECTIONS`] fresh keep-alive connections, closed
/// loop) for `seconds`, against a least_load variant; with `external`, the external client on
/// that backend too ([`EXTERNAL_CONNECTIONS`] fresh connections, from [`EXTERNAL_LEAD`] before
/// the measurement to its end).
async fn measure(proxy: &Proxy, seconds: f64, external: Option<&Backend>) -> Sample {
    let bad0 = proxy.bad_answers().await;
    let start = Instant::now();
    let lead = if external.is_some() { EXTERNAL_LEAD } else { Duration::ZERO };
    let (t0, until) = (start + lead, start + lead + Duration::from_secs_f64(seconds));
    let external = external.map(|b| {
        let clients = (0..EXTERNAL_CONNECTIONS).map(|_| one_connection_client()).collect();
        let url = format!("http://{}/", b.addr);
        tokio::spawn(async move { closed_loop(clients, &url, start, until, None).await })
    });
    tokio::time::sleep_until(t0.into()).await;
    let clients = (0..CONNECTIONS).map(|_| one_connection_client()).collect();
    let answers =
        closed_loop(clients, &format!("http://{}/", proxy.listener), t0, until, None).await;
    let elapsed_s = t0.elapsed().as_secs_f64();
    let (external_rps, external_p99_ms) = match external {
        Some(task) => {
            let all = task.await.unwrap();
            // Those sent during the measurement.
            let lead = lead.as_secs_f64();
            let during: Vec<&Answer> = all.iter().filter(|a| a.sent >= lead).collect();
            (during.len() as f64 / elapsed_s, latency_ms(&during).2)
        }
        None => (0.0, 0.0),
    };
    assert_eq!(proxy.bad_answers().await, bad0, "4xx/5xx answers:\n{}", proxy.log());
    let (p50_ms, p90_ms, p99_ms) = latency_ms(&answers.iter().collect::<Vec<_>>());
    let pct =
        |i| answers.iter().filter(|a| a.backend == i).count() as f64 * 100.0 / answers.len() as f64;
    Sample {
        p50_ms,
        p90_ms,
        p99_ms,
        rps: answers.len() as f64 / elapsed_s,
        loaded_pct: pct(EXTERNAL_BACKEND),
        slow_pct: pct(IDS.len() - 1),
        external_rps,
        external_p99_ms,
    }
}

/// The two least_load scenarios, each with backends and Envoys of its own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Only this Envoy sends to b1, b2 and the slower b3.
    Alone,
    /// Equal e1, e2, e3, and an external client also keeps e1 busy.
    External,
}

const SCENARIOS: [Scenario; 2] = [Scenario::Alone, Scenario::External];

/// The least_load backends of `scenario`, each with a queue of [`QUEUE_SLOTS`] slots.
async fn least_load_backends(scenario: Scenario) -> Vec<Backend> {
    let (ids, services) = match scenario {
        Scenario::Alone => (IDS, [QUEUE_FAST, QUEUE_FAST, QUEUE_SLOW]),
        Scenario::External => (EQUAL_IDS, [QUEUE_FAST; 3]),
    };
    let mut backends = Vec::new();
    for (id, service) in ids.iter().zip(services) {
        backends.push(reporting(id, None, Some(QueueSim { slots: QUEUE_SLOTS, service })).await);
    }
    backends
}

/// One long-lived Envoy of a least_load scenario and its measurements.
struct Cell {
    scenario: Scenario,
    variant: usize,
    workers: u32,
    proxy: Proxy,
    samples: Vec<Sample>,
}

/// The measurements of variant `variant` at `workers` in `scenario`.
fn samples(cells: &[Cell], scenario: Scenario, variant: usize, workers: u32) -> &[Sample] {
    let found = cells
        .iter()
        .find(|c| c.scenario == scenario && c.variant == variant && c.workers == workers);
    &found.unwrap().samples
}

/// `s` seconds, or "> limit" for a run that did not converge.
fn secs(s: f64, limit: f64) -> String {
    if s.is_finite() {
        format!("{s:.2}")
    } else {
        format!("> {limit:.1}")
    }
}

fn shares_text(s: &[f64; 3]) -> String {
    format!("{:.3} / {:.3} / {:.3}", s[0], s[1], s[2])
}

/// The per-backend medians of shares.
fn median_shares(all: &[[f64; 3]]) -> [f64; 3] {
    [0, 1, 2].map(|i| median(&all.iter().map(|s| s[i]).collect::<Vec<_>>()))
}

/// "holds" / "does not hold" for `ours ≤ native` (medians), and a note when the min–max
/// ranges overlap.
fn verdict(ours: &[f64], native: &[f64]) -> (&'static str, &'static str) {
    let (o, n) = (median(ours), median(native));
    let ((olo, ohi), (nlo, nhi)) = (min_max(ours), min_max(native));
    let verdict = if !o.is_finite() && !n.is_finite() {
        "undecided: neither converged"
    } else if o <= n {
        "holds"
    } else {
        "does not hold"
    };
    let overlap = if olo <= nhi && nlo <= ohi {
        "; the min–max ranges overlap: the difference is within this run's noise"
    } else {
        ""
    };
    (verdict, overlap)
}

/// Runs the bench, replaces (or appends) its section of `p.out` and returns its markdown.
pub async fn run(p: &Params) -> String {
    let ll_variants = least_load_variants();
    let cs_variants = cswrr_variants();
    require_tools(false, false, &ll_variants);
    let run_start = RunStart::now();
    let seconds = p.seconds as f64;
    let phases = (CONVERGE_PHASES.0 * seconds, CONVERGE_PHASES.1 * seconds);
    let (slow_before_s, slow_window_s) = (SLOWDOWN_PHASES.0 * seconds, SLOWDOWN_PHASES.1 * seconds);
    let ll_seconds = LEAST_LOAD_SECONDS * seconds;

    // least_load: per scenario, backends and an Envoy per variant up for the whole run, as in
    // the latency bench (warmed up without the external load).
    let mut ll_backends = Vec::new();
    eprintln!(
        "load-reports bench: starting {} Envoys",
        SCENARIOS.len() * ll_variants.len() * p.workers.len()
    );
    let (mut cells, started_at) = (Vec::new(), Instant::now());
    for scenario in SCENARIOS {
        let backends = least_load_backends(scenario).await;
        let endpoints: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
        let pool: Vec<(&str, SocketAddr, u32)> =
            backends.iter().map(|b| (b.id(), b.addr, 1)).collect();
        // The scenario's Envoys start at once (each task with a variant of its own), then warm
        // up one after the other.
        let mut starting = tokio::task::JoinSet::new();
        for &workers in &p.workers {
            for (i, v) in ll_variants.iter().enumerate() {
                let cfg = match &v.kind {
                    Kind::Ours(extra) => plugin_config(&pool, extra.clone()),
                    _ => plugin_config(&pool, json!({})),
                };
                let endpoints = endpoints.clone();
                starting.spawn(async move {
                    let v = least_load_variants().swap_remove(i);
                    (i, workers, start(&v.kind, &endpoints, &cfg, workers).await)
                });
            }
        }
        let mut started = Vec::new();
        while let Some(proxy) = starting.join_next().await {
            started.push(proxy.unwrap());
        }
        started.sort_by_key(|&(i, workers, _)| (workers, i));
        for (variant, workers, proxy) in started {
            if p.warmup_seconds > 0 {
                measure(&proxy, p.warmup_seconds as f64, None).await;
            }
            let samples = Vec::new();
            cells.push(Cell { scenario, variant, workers, proxy, samples });
        }
        ll_backends.push(backends);
    }
    eprintln!("load-reports bench: Envoys ready in {:.1} s", started_at.elapsed().as_secs_f64());
    // The externally loaded backend, e1.
    let loaded = &ll_backends[1][EXTERNAL_BACKEND];

    let mut conv: BTreeMap<(usize, u32), Vec<Convergence>> = BTreeMap::new();
    let mut slow: BTreeMap<(usize, u32), Vec<Slowdown>> = BTreeMap::new();
    let t0 = Instant::now();
    for round in 0..p.rounds {
        for &w in &p.workers {
            for (i, v) in cs_variants.iter().enumerate() {
                let c = convergence(v, w, phases, offset(round, p.rounds)).await;
                eprintln!(
                    "round {}/{} ({}) {} x{w}: 1:2:4 after {} s, 1:2:2 after {} s of the change; \
                     shares {} before the change, {} at the end; {:.0} req/s",
                    round + 1,
                    p.rounds,
                    v.key,
                    v.name,
                    secs(c.start_s, phases.0),
                    secs(c.change_s, phases.1),
                    shares_text(&c.before),
                    shares_text(&c.after),
                    c.rps
                );
                conv.entry((i, w)).or_default().push(c);
            }
            for (i, v) in cs_variants.iter().enumerate() {
                let s = slowdown(v, w, slow_before_s, slow_window_s, offset(round, p.rounds)).await;
                eprintln!(
                    "round {}/{} ({}) {} x{w}, slowdown: p50 {:.2} ms, p99 {:.2} ms (before: \
                     {:.2} ms), {:.1}% to the slow backend, {:.0} req/s",
                    round + 1,
                    p.rounds,
                    v.key,
                    v.name,
                    s.p50_ms,
                    s.p99_ms,
                    s.p99_before_ms,
                    s.slow_pct,
                    s.rps
                );
                slow.entry((i, w)).or_default().push(s);
            }
        }
        for scenario in SCENARIOS {
            let external = (scenario == Scenario::External).then_some(loaded);
            for cell in cells.iter_mut().filter(|c| c.scenario == scenario) {
                let s = measure(&cell.proxy, ll_seconds, external).await;
                let shares = match scenario {
                    Scenario::Alone => format!("{:.1}% to the slow b3", s.slow_pct),
                    Scenario::External => format!(
                        "equal backends, external load on e1: {:.1}% to e1; external client \
                         {:.0} req/s, p99 {:.2} ms",
                        s.loaded_pct, s.external_rps, s.external_p99_ms
                    ),
                };
                eprintln!(
                    "round {}/{} ({}) {} x{}: p50 {:.2} ms, p99 {:.2} ms, {:.0} req/s; {shares}",
                    round + 1,
                    p.rounds,
                    ll_variants[cell.variant].key,
                    ll_variants[cell.variant].name,
                    cell.workers,
                    s.p50_ms,
                    s.p99_ms,
                    s.rps,
                );
                cell.samples.push(s);
            }
        }
    }
    let measured = t0.elapsed();

    let mut md = String::new();
    let _ = writeln!(
        md,
        "{HEADING}: client_side_weighted_round_robin beside Envoy's, least_load beside \
         least_request\n"
    );
    md.push_str(&run_header(&run_start));
    md.push_str(&command_line("load_reports", p, measured));
    let workers: Vec<String> = p.workers.iter().map(u32::to_string).collect();
    let _ = writeln!(
        md,
        "- backends: demo backends on loopback reporting ORCA `endpoint-load-metrics: TEXT \
         rps_fractional=<its rate over the last second>, application_utilization=<rate ÷ \
         capacity>, cpu_utilization=<the same>, named_metrics.queue_depth=<waiting requests>, \
         named_metrics.in_flight=<n>` on every answer (without a capacity, utilization is in \
         flight ÷ slots); Envoy `--concurrency {}`, a fresh Envoy and fresh backends for each \
         convergence and slowdown run; every answer 200 (checked); latency = send to body \
         read, every request recorded, exact percentiles",
        workers.join("|")
    );
    let _ = writeln!(
        md,
        "- CSWRR variants: (a) the shipped envoy.yaml without the wasm filter, cluster `pool` on \
         `envoy.load_balancing_policies.client_side_weighted_round_robin` with `blackout_period: \
         {}s, weight_update_period: {}s` (other fields at Envoy's defaults; same routes and \
         retries); (b) the shipped envoy.yaml with envoy-lb, `{{\"algorithm\": \
         \"client_side_weighted_round_robin\", \"client_side_weighted_round_robin\": \
         {{\"blackout_period_ms\": {BLACKOUT_MS}, \"weight_update_period_ms\": {UPDATE_MS}}}}}`\n",
        BLACKOUT_MS as f64 / 1000.0,
        UPDATE_MS as f64 / 1000.0,
    );

    let _ = writeln!(
        md,
        "Both CSWRR runs of round r (of n) send their first request r/n of an update period \
         ({UPDATE_MS} ms) after the Envoy is ready and change the backend that much later than \
         the times below: the weight-update timers are met at a different phase in each round \
         (with one phase only, a fixed lead of one timer over the other would decide the \
         comparison).\n"
    );

    // Convergence.
    let _ = writeln!(
        md,
        "### Convergence to reported capacities\n\n\
         Capacities of b1, b2, b3: {:.0}, {:.0}, {:.0} req/s (target shares 1:2:4 = .143 / .286 \
         / .571); at {:.1} s (+ the round's offset) b3's halves to {HALVED:.0} (1:2:2 = .2 / .4 / .4), the run ends \
         {:.1} s later. Load: one keep-alive connection per Envoy worker (`client_per_worker`), \
         each closed loop and paced to at most one request per {} ms. Converged = the shares of \
         the answers (`x-backend`) read in the {} ms window ending at each answer are each \
         within {:.0}% (relative) of the target, and stay so to the end of the phase; the time \
         is that of the first such window's end, from the first request (the ones that bind a \
         connection to each worker), resp. from the change. \"> x\": not converged, or not \
         stable, in the x s of the phase.\n",
        CAPACITIES[0],
        CAPACITIES[1],
        CAPACITIES[2],
        phases.0,
        phases.1,
        PACE.as_millis(),
        WINDOW.as_millis(),
        TOLERANCE * 100.0,
    );
    let _ = writeln!(
        md,
        "| variant | workers | to 1:2:4 from the first request, s (median) | min–max | shares \
         in the last 1 s before the change (median) | to 1:2:2 from the change, s (median) | \
         min–max | shares in the last 1 s (median) | req/s (median) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    let conv_col =
        |i, w, f: fn(&Convergence) -> f64| -> Vec<f64> { conv[&(i, w)].iter().map(f).collect() };
    for &w in &p.workers {
        for (i, v) in cs_variants.iter().enumerate() {
            let (start_s, change_s) =
                (conv_col(i, w, |c| c.start_s), conv_col(i, w, |c| c.change_s));
            let ((s_lo, s_hi), (c_lo, c_hi)) = (min_max(&start_s), min_max(&change_s));
            let runs = &conv[&(i, w)];
            let _ = writeln!(
                md,
                "| ({}) {} | {w} | {} | {}–{} | {} | {} | {}–{} | {} | {:.0} |",
                v.key,
                v.name,
                secs(median(&start_s), phases.0),
                secs(s_lo, phases.0),
                secs(s_hi, phases.0),
                shares_text(&median_shares(&runs.iter().map(|c| c.before).collect::<Vec<_>>())),
                secs(median(&change_s), phases.1),
                secs(c_lo, phases.1),
                secs(c_hi, phases.1),
                shares_text(&median_shares(&runs.iter().map(|c| c.after).collect::<Vec<_>>())),
                median(&conv_col(i, w, |c| c.rps)),
            );
        }
    }

    // The slowdown.
    let _ = writeln!(
        md,
        "\n### p99 when one backend slows down\n\n\
         Three backends with a queue: {SLOWDOWN_SLOTS} requests served at once, {} ms each \
         (others wait), reporting capacity {:.0} req/s (slots ÷ service). {SLOWDOWN_CONNECTIONS} \
         keep-alive connections ({} per worker, `client_per_worker`), closed loop, unpaced. At \
         {:.1} s (+ the round's offset) b3's service time goes up {SLOWDOWN_FACTOR}× ({} ms) and its reported capacity \
         down {SLOWDOWN_FACTOR}× ({:.0} req/s): figures of the requests sent in the {:.1} s from \
         the change on (the reaction included), and p99 of those sent in the second before it.\n",
        SLOWDOWN_SERVICE.as_millis(),
        SLOWDOWN_SLOTS as f64 / SLOWDOWN_SERVICE.as_secs_f64(),
        SLOWDOWN_CONNECTIONS / p.workers.first().map_or(1, |&w| w as usize).max(1),
        slow_before_s,
        (SLOWDOWN_SERVICE * SLOWDOWN_FACTOR).as_millis(),
        SLOWDOWN_SLOTS as f64 / SLOWDOWN_SERVICE.as_secs_f64() / f64::from(SLOWDOWN_FACTOR),
        slow_window_s,
    );
    let _ = writeln!(
        md,
        "| variant | workers | p50 ms after (median) | p50 min–max | p99 ms after (median) | \
         p99 min–max | p99 ms before (median) | % to slow b3 after (median) | req/s after \
         (median) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    let slow_col =
        |i, w, f: fn(&Slowdown) -> f64| -> Vec<f64> { slow[&(i, w)].iter().map(f).collect() };
    for &w in &p.workers {
        for (i, v) in cs_variants.iter().enumerate() {
            let (p50, p99) = (slow_col(i, w, |s| s.p50_ms), slow_col(i, w, |s| s.p99_ms));
            let ((p50lo, p50hi), (p99lo, p99hi)) = (min_max(&p50), min_max(&p99));
            let _ = writeln!(
                md,
                "| ({}) {} | {w} | {:.2} | {p50lo:.2}–{p50hi:.2} | {:.2} | {p99lo:.2}–{p99hi:.2} \
                 | {:.2} | {:.1} | {:.0} |",
                v.key,
                v.name,
                median(&p50),
                median(&p99),
                median(&slow_col(i, w, |s| s.p99_before_ms)),
                median(&slow_col(i, w, |s| s.slow_pct)),
                median(&slow_col(i, w, |s| s.rps)),
            );
        }
    }

    let _ = writeln!(
        md,
        "\nGoal (issue #18): envoy-lb client_side_weighted_round_robin ≤ Envoy's native one on \
         both convergence times and on p99 after the slowdown (medians).\n"
    );
    let (native, ours) = (0, 1);
    for &w in &p.workers {
        let s = if w == 1 { "" } else { "s" };
        let figures = [
            (
                "to 1:2:4",
                conv_col(ours, w, |c| c.start_s),
                conv_col(native, w, |c| c.start_s),
                "s",
                phases.0,
            ),
            (
                "to 1:2:2 after the change",
                conv_col(ours, w, |c| c.change_s),
                conv_col(native, w, |c| c.change_s),
                "s",
                phases.1,
            ),
            (
                "p99 after the slowdown",
                slow_col(ours, w, |s| s.p99_ms),
                slow_col(native, w, |s| s.p99_ms),
                "ms",
                f64::INFINITY,
            ),
        ];
        for (what, o, n, unit, limit) in figures {
            let (verdict, overlap) = verdict(&o, &n);
            let _ = writeln!(
                md,
                "- {w} worker{s}, {what}: {verdict} (median {} {unit} vs {} {unit}{overlap})",
                secs(median(&o), limit),
                secs(median(&n), limit),
            );
        }
        // An Envoy whose native policy does not read the header stays at equal shares.
        let runs = &conv[&(native, w)];
        let before = median_shares(&runs.iter().map(|c| c.before).collect::<Vec<_>>());
        let after = median_shares(&runs.iter().map(|c| c.after).collect::<Vec<_>>());
        let equal = |s: &[f64; 3]| s.iter().all(|&s| (s - 1.0 / 3.0).abs() <= 0.1 / 3.0);
        if equal(&before) && equal(&after) {
            let _ = writeln!(
                md,
                "- {w} worker{s}: Envoy {}'s native client_side_weighted_round_robin kept equal \
                 shares ({}): it did not weight by the `endpoint-load-metrics` reports",
                envoy_version(),
                shares_text(&before)
            );
        }
    }

    // least_load.
    let _ = writeln!(
        md,
        "\n### least_load, only this Envoy sending\n\n\
         Three backends with a queue: {QUEUE_SLOTS} requests served at once, b1 and b2 {} ms \
         each, b3 {} ms (others wait; latency grows with the queue), each reporting \
         `named_metrics.queue_depth` (requests waiting for a slot) and `named_metrics.in_flight` \
         (requests inside it, waiting or served). Only this Envoy sends to them, so the requests \
         it has in flight are the backends' whole load: least_request counts them exactly and at \
         once, and the reports can only tell least_load the same, a little later.\n\n\
         Load: the latency bench's client, {CONNECTIONS} keep-alive connections (reqwest, one \
         each), closed loop, {ll_seconds} s per measurement (BENCH_SECONDS × \
         {LEAST_LOAD_SECONDS}, so that the bench stays under 6.5 minutes with both scenarios); \
         each scenario has its own backends and its own Envoys, one per variant, which stay up \
         for the whole run ({} s of warm-up each, without the external load); rounds \
         interleaved with the runs above, each round measuring every variant of this scenario, \
         then every variant of the next. (c) the shipped envoy.yaml without the wasm \
         filter, cluster `pool` on `envoy.load_balancing_policies.least_request`; (d)–(g) \
         envoy-lb with `{{\"algorithm\": ...}}` (least_load: `\"least_load\": {{\"metric\": \
         \"named_metrics.queue_depth\"}}`, resp. `\"named_metrics.in_flight\"`), defaults \
         otherwise. least_load compares two random backends on `metric + in_flight_weight (1) × \
         (this Envoy's requests in flight to it now − those in flight when its last report \
         arrived)` while that report is at most `max_report_age_ms` (2000) old, else on the \
         requests in flight alone.\n",
        QUEUE_FAST.as_millis(),
        QUEUE_SLOW.as_millis(),
        p.warmup_seconds,
    );
    least_load_table(&mut md, Scenario::Alone, &cells, &ll_variants, &p.workers);
    let _ = writeln!(
        md,
        "\n### least_load, equal backends, one also loaded by clients this Envoy cannot see\n\n\
         Three other backends, e1, e2, e3, all equal: the same queue ({QUEUE_SLOTS} slots), {} ms \
         each, the same reports; the same load and variants as above, with Envoys of their own. \
         This is the case least_load is for: several gateways or clients sharing identical \
         replicas (of a model server, say). During each measurement (and from {} ms before it) an external client, \
         {EXTERNAL_CONNECTIONS} keep-alive connections (reqwest, one each), closed loop, \
         straight to e1's address, bypassing Envoy (as another gateway would), keeps e1's \
         {QUEUE_SLOTS} slots busy and about {} requests waiting there. least_request and round \
         robin count only this Envoy's requests (least_request sees the external load only as \
         its own requests to e1 staying in flight longer); least_load reads e1's reports, which \
         count the external requests too. The backends are equal here because both metrics \
         count requests, not time: with backends of different speeds, a count-based metric can \
         prefer a slow backend, where fewer requests wait but each waits longer, so \
         least_request may do better there. \"% to e1\" is the share of this Envoy's answers \
         that came from e1; the external client's figures are those of its requests sent during \
         the measurement.\n",
        QUEUE_FAST.as_millis(),
        EXTERNAL_LEAD.as_millis(),
        EXTERNAL_CONNECTIONS.saturating_sub(QUEUE_SLOTS),
    );
    least_load_table(&mut md, Scenario::External, &cells, &ll_variants, &p.workers);

    let _ = writeln!(
        md,
        "\nGoal (issue #18): envoy-lb least_load's median p99 beside the others' (p99 ours vs \
         least_request vs round robin; no numeric target). \"overlapping\": the min–max ranges \
         overlap, the difference is within this run's noise.\n"
    );
    for scenario in SCENARIOS {
        for &w in &p.workers {
            least_load_verdicts(&mut md, scenario, &cells, &ll_variants, w);
        }
    }

    replace_section(&p.out, HEADING, &md);
    drop(cells);
    drop(ll_backends);
    md
}

/// The least_load table of `scenario`: one row per variant and worker count.
fn least_load_table(
    md: &mut String,
    scenario: Scenario,
    cells: &[Cell],
    variants: &[Variant],
    workers: &[u32],
) {
    // Only this Envoy sending: the share of the slow b3; with the external load: that of the
    // externally loaded e1 (no backend is slower there), and the external client's figures.
    let (share, ext) = match scenario {
        Scenario::Alone => (" % to slow b3 (median) |", ""),
        Scenario::External => (
            " % to e1, externally loaded (median) |",
            " external client req/s (median) | external client p99 ms (median) |",
        ),
    };
    let _ = writeln!(
        md,
        "| variant | workers | p50 ms (median) | p50 min–max | p90 ms (median) | p99 ms (median) \
         | p99 min–max |{share} req/s (median) |{ext}"
    );
    let _ = writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|{}",
        if ext.is_empty() { "" } else { "---|---|" }
    );
    for &w in workers {
        for (i, v) in variants.iter().enumerate() {
            let samples = samples(cells, scenario, i, w);
            let col = |f: fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<f64>>();
            let (p50, p99) = (col(|s| s.p50_ms), col(|s| s.p99_ms));
            let ((p50lo, p50hi), (p99lo, p99hi)) = (min_max(&p50), min_max(&p99));
            let (share, ext) = match scenario {
                Scenario::Alone => (median(&col(|s| s.slow_pct)), String::new()),
                Scenario::External => (
                    median(&col(|s| s.loaded_pct)),
                    format!(
                        " {:.0} | {:.2} |",
                        median(&col(|s| s.external_rps)),
                        median(&col(|s| s.external_p99_ms))
                    ),
                ),
            };
            let _ = writeln!(
                md,
                "| ({}) {} | {w} | {:.2} | {p50lo:.2}–{p50hi:.2} | {:.2} | {:.2} \
                 | {p99lo:.2}–{p99hi:.2} | {share:.1} | {:.0} |{ext}",
                v.key,
                v.name,
                median(&p50),
                median(&col(|s| s.p90_ms)),
                median(&p99),
                median(&col(|s| s.rps)),
            );
        }
    }
}

/// The goal lines of `scenario` at `w` workers: the lowest median p99, and each least_load
/// variant's beside the other variants', saying which is lower.
fn least_load_verdicts(
    md: &mut String,
    scenario: Scenario,
    cells: &[Cell],
    variants: &[Variant],
    w: u32,
) {
    let p99 = |key: char| {
        let i = variants.iter().position(|v| v.key == key).unwrap();
        samples(cells, scenario, i, w).iter().map(|s| s.p99_ms).collect::<Vec<f64>>()
    };
    let label = match scenario {
        Scenario::Alone => "only this Envoy sending",
        Scenario::External => "equal backends, external load on e1",
    };
    let s = if w == 1 { "" } else { "s" };
    let lowest =
        variants.iter().min_by(|a, b| median(&p99(a.key)).total_cmp(&median(&p99(b.key)))).unwrap();
    let _ = writeln!(
        md,
        "- {label}, {w} worker{s}: lowest median p99 ({}) {}, {:.2} ms",
        lowest.key,
        lowest.name,
        median(&p99(lowest.key))
    );
    for key in LEAST_LOADS {
        let ours = p99(key);
        let name = variants.iter().find(|v| v.key == key).unwrap().name;
        let others: Vec<String> = variants
            .iter()
            .filter(|v| !LEAST_LOADS.contains(&v.key))
            .map(|v| {
                let theirs = p99(v.key);
                let ((olo, ohi), (tlo, thi)) = (min_max(&ours), min_max(&theirs));
                format!(
                    "{} ({}) {}'s {:.2} ms (×{:.2}{})",
                    if median(&ours) < median(&theirs) {
                        "lower than"
                    } else if median(&ours) > median(&theirs) {
                        "higher than"
                    } else {
                        "equal to"
                    },
                    v.key,
                    v.name,
                    median(&theirs),
                    median(&ours) / median(&theirs),
                    if olo <= thi && tlo <= ohi { ", overlapping" } else { "" },
                )
            })
            .collect();
        let _ =
            writeln!(md, "  - ({key}) {name}: p99 {:.2} ms, {}", median(&ours), others.join("; "));
    }
}
