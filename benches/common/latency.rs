//! Latency-aware balancing: client latency through Envoy when one backend of three is ten times
//! slower than the others, for envoy-lb's round_robin, least_request and least_time and for
//! Envoy's native least_request policy (no wasm filter; same routes and retries).
//!
//! Every variant gets the same load from the bench's own client: [`CONNECTIONS`] keep-alive
//! connections in a closed loop for the same duration, every request's latency recorded, exact
//! p50 / p90 / p99 per measurement. Not wrk's `--latency`: wrk 4.1 "corrects" for coordinated
//! omission by adding synthetic samples at the run's mean interval per connection, which moves
//! the percentiles of a two-speed distribution (native round robin over these backends: wrk
//! p50 7.5 ms where Envoy's own `downstream_rq_time` says 3.1 ms, same run). The demo backends'
//! request counters give
//! the share of requests that reached the slow backend. As in the CPU bench every Envoy stays up
//! for the whole run and rounds are interleaved; medians and min–max over rounds are reported.
//! The goal, compared here and reported as measured: envoy-lb least_time p99 ≤ Envoy
//! native least_request p99. Beside them (issue #17), an external endpoint picker over ext_proc
//! (ext-proc-picker/, round robin, the Gateway API Inference Extension's design): its p50 / p99
//! beside envoy-lb round_robin's, the goal a lower p99 for envoy-lb.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{
    command_line, median, min_max, require_tools, run_header, start, write_latency_section, Kind,
    Params, Proxy, RunStart, Variant, CONNECTIONS, HASH_HEADER, LATENCY_HEADING,
};
use crate::support::{backend, plugin_config, Backend, BackendOptions};

/// `make bench`'s Envoy worker counts.
pub const WORKERS: [u32; 2] = [1, 2];
/// `make bench`'s seconds of load per measurement and per warm-up.
pub const SECONDS: u64 = 5;
pub const WARMUP_SECONDS: u64 = 2;
/// Delay of the two fast backends and of the slow one (10×).
pub const FAST: Duration = Duration::from_millis(2);
pub const SLOW: Duration = Duration::from_millis(20);

/// Key of Envoy's native least_request, and of envoy-lb least_time: the goal compares them.
const NATIVE: char = 'a';
const LEAST_TIME: char = 'd';
/// Key of envoy-lb round_robin and of the ext_proc picker (round robin): compared too.
const ROUND_ROBIN: char = 'b';
const PICKER: char = 'e';

pub fn variants() -> Vec<Variant> {
    let v = |key, name, kind| Variant { key, name, kind, returning: false };
    vec![
        v(NATIVE, "Envoy native least_request (no wasm)", Kind::NativeLeastRequest),
        v(ROUND_ROBIN, "envoy-lb round_robin", Kind::Ours(json!({"algorithm": "round_robin"}))),
        v('c', "envoy-lb least_request", Kind::Ours(json!({"algorithm": "least_request"}))),
        v(LEAST_TIME, "envoy-lb least_time", Kind::Ours(json!({"algorithm": "least_time"}))),
        v(PICKER, "ext_proc picker (round robin) + override_host", Kind::ExtProcPicker),
    ]
}

struct Sample {
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    rps: f64,
    /// Share of the backends' requests that the slow one answered, %.
    slow_pct: f64,
}

fn served(backends: &[Backend]) -> (u64, u64) {
    let n: Vec<u64> = backends.iter().map(|b| b.stats.requests.load(Ordering::Relaxed)).collect();
    (n.iter().sum(), n[n.len() - 1])
}

/// The `pct` percentile (nearest rank) of sorted values.
fn percentile(sorted: &[u32], pct: f64) -> f64 {
    let rank = ((pct / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1])
}

/// The load: [`CONNECTIONS`] tasks, each a client with one keep-alive connection sending its
/// next request when the previous answer is read (closed loop), until `seconds` have passed.
/// Returns every request's latency in µs (send to body read) and the elapsed seconds. Any
/// error or non-200 answer fails the bench.
async fn load(url: &str, seconds: u64) -> (Vec<u32>, f64) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let url = url.to_owned();
        tasks.spawn(async move {
            let client = reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let (name, value) = HASH_HEADER.split_once(": ").unwrap();
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = client.get(&url).header(name, value).send().await;
                let r = r.unwrap_or_else(|e| panic!("request to {url}: {e}"));
                let status = r.status();
                let body = r.bytes().await.unwrap_or_else(|e| panic!("body from {url}: {e}"));
                assert_eq!(status, 200, "{body:?}");
                latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            latencies
        });
    }
    let mut all = Vec::new();
    while let Some(latencies) = tasks.join_next().await {
        all.extend(latencies.unwrap());
    }
    (all, started.elapsed().as_secs_f64())
}

async fn measure(proxy: &Proxy, seconds: u64, backends: &[Backend]) -> Sample {
    let (total0, slow0) = served(backends);
    let bad0 = proxy.bad_answers().await;
    let (mut latencies, elapsed_s) = load(&format!("http://{}/", proxy.listener), seconds).await;
    let (total1, slow1) = served(backends);
    assert_eq!(proxy.bad_answers().await, bad0, "4xx/5xx answers:\n{}", proxy.log());
    assert!(!latencies.is_empty(), "no request answered");
    latencies.sort_unstable();
    let ms = |pct| percentile(&latencies, pct) / 1000.0;
    Sample {
        p50_ms: ms(50.0),
        p90_ms: ms(90.0),
        p99_ms: ms(99.0),
        rps: latencies.len() as f64 / elapsed_s,
        slow_pct: (slow1 - slow0) as f64 * 100.0 / (total1 - total0).max(1) as f64,
    }
}

struct Cell {
    variant: usize,
    workers: u32,
    proxy: Proxy,
    samples: Vec<Sample>,
}

/// Runs the bench, replaces (or appends) its section of `p.out` and returns its markdown.
pub async fn run(p: &Params) -> String {
    let variants = variants();
    require_tools(false, false, &variants);
    let run_start = RunStart::now();
    let mut backends = Vec::new();
    for (id, delay) in [("b1", FAST), ("b2", FAST), ("b3", SLOW)] {
        let mut options = BackendOptions::new(id);
        options.delay = delay;
        backends.push(backend(options).await);
    }
    let endpoints: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let pool: Vec<(&str, SocketAddr, u32)> = backends.iter().map(|b| (b.id(), b.addr, 1)).collect();

    eprintln!("latency bench: starting {} Envoys", variants.len() * p.workers.len());
    let mut cells = Vec::new();
    for &workers in &p.workers {
        for (i, v) in variants.iter().enumerate() {
            let cfg = match &v.kind {
                Kind::Ours(extra) => plugin_config(&pool, extra.clone()),
                _ => plugin_config(&pool, json!({})),
            };
            let proxy = start(&v.kind, &endpoints, &cfg, workers).await;
            // Warm-up: connections to the backends, V8 tier-up, first latency estimates.
            if p.warmup_seconds > 0 {
                measure(&proxy, p.warmup_seconds, &backends).await;
            }
            cells.push(Cell { variant: i, workers, proxy, samples: Vec::new() });
        }
    }
    let t0 = Instant::now();
    for round in 0..p.rounds {
        for cell in &mut cells {
            let s = measure(&cell.proxy, p.seconds, &backends).await;
            eprintln!(
                "round {}/{} ({}) {} x{}: p50 {:.2} ms, p99 {:.2} ms, {:.1}% to the slow backend, \
                 {:.0} req/s",
                round + 1,
                p.rounds,
                variants[cell.variant].key,
                variants[cell.variant].name,
                cell.workers,
                s.p50_ms,
                s.p99_ms,
                s.slow_pct,
                s.rps
            );
            cell.samples.push(s);
        }
    }
    let measured = t0.elapsed();

    let mut md = String::new();
    let _ = writeln!(md, "{LATENCY_HEADING}: client latency with one backend 10× slower\n");
    md.push_str(&run_header(&run_start));
    md.push_str(&command_line("latency", p, measured));
    let workers: Vec<String> = p.workers.iter().map(u32::to_string).collect();
    let _ = writeln!(
        md,
        "- backends: 3 demo backends (weights 1) on loopback; b1 and b2 answer after {} ms, \
         b3 after {} ms (10×)",
        FAST.as_millis(),
        SLOW.as_millis()
    );
    let _ = writeln!(
        md,
        "- load: the bench's own client (benches/common/latency.rs), {CONNECTIONS} keep-alive \
         connections (reqwest, one each), closed loop (each sends its next request when the \
         answer is read), {} s per measurement, the same for every variant, header \
         `{HASH_HEADER}`; latency = send to body read, every request recorded, exact \
         percentiles (not wrk's `--latency`: wrk 4.1 adds synthetic samples for coordinated \
         omission, which moves the percentiles of a two-speed distribution); Envoy \
         `--concurrency {} --log-level warn`, all Envoys up for the whole run; every answer 200 \
         (checked)",
        p.seconds,
        workers.join("|")
    );
    let _ = writeln!(
        md,
        "- variants: (a) the shipped envoy.yaml without the wasm filter, cluster `pool` on \
         `envoy.load_balancing_policies.least_request` (P2C over active requests; same routes and \
         retries); (b)–(d) the shipped envoy.yaml with envoy-lb and `{{\"algorithm\": ...}}` \
         only (defaults otherwise); ({PICKER}) the shipped envoy.yaml without the wasm filter, \
         `envoy.filters.http.ext_proc` (request headers only) asking ext-proc-picker (round \
         robin, a process beside Envoy, gRPC over HTTP/2 on loopback), which sets \
         `x-gateway-destination-endpoint` for the same override_host cluster\n"
    );
    let _ = writeln!(
        md,
        "| variant | workers | p50 ms (median) | p50 min–max | p90 ms (median) | p99 ms (median) \
         | p99 min–max | % to slow b3 (median) | req/s (median) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    let col = |c: &Cell, f: fn(&Sample) -> f64| c.samples.iter().map(f).collect::<Vec<f64>>();
    for &w in &p.workers {
        for (i, v) in variants.iter().enumerate() {
            let c = cells.iter().find(|c| c.variant == i && c.workers == w).unwrap();
            let (p50, p99) = (col(c, |s| s.p50_ms), col(c, |s| s.p99_ms));
            let ((p50lo, p50hi), (p99lo, p99hi)) = (min_max(&p50), min_max(&p99));
            let _ = writeln!(
                md,
                "| ({}) {} | {w} | {:.2} | {p50lo:.2}–{p50hi:.2} | {:.2} | {:.2} \
                 | {p99lo:.2}–{p99hi:.2} | {:.1} | {:.0} |",
                v.key,
                v.name,
                median(&p50),
                median(&col(c, |s| s.p90_ms)),
                median(&p99),
                median(&col(c, |s| s.slow_pct)),
                median(&col(c, |s| s.rps)),
            );
        }
    }
    let _ = writeln!(
        md,
        "\nGoal: envoy-lb least_time p99 ≤ Envoy native least_request p99. (A variant that sends \
         more than 1% of its requests to b3 has b3's latency as its p99.)\n"
    );
    for &w in &p.workers {
        let of = |key: char| {
            let i = variants.iter().position(|v| v.key == key).unwrap();
            let c = cells.iter().find(|c| c.variant == i && c.workers == w).unwrap();
            let v = col(c, |s| s.p99_ms);
            (median(&v), min_max(&v), median(&col(c, |s| s.slow_pct)))
        };
        let ((ours, (ours_lo, ours_hi), ours_slow), (native, (native_lo, native_hi), native_slow)) =
            (of(LEAST_TIME), of(NATIVE));
        let verdict = if ours <= native { "holds" } else { "does not hold" };
        let overlap = if ours_lo <= native_hi && native_lo <= ours_hi {
            "; the min–max ranges overlap: the difference is within this run's noise"
        } else {
            ""
        };
        let _ = writeln!(
            md,
            "- {w} worker{}: {verdict} (median p99 {ours:.2} ms vs {native:.2} ms, {:+.2} ms{overlap}; \
             to slow b3: {ours_slow:.1}% vs {native_slow:.1}%)",
            if w == 1 { "" } else { "s" },
            ours - native
        );
    }

    let _ = writeln!(
        md,
        "\nGoal (issue #17): envoy-lb round_robin p99 < the ext_proc picker's p99 (both round \
         robin: the difference is the cost of the steering).\n"
    );
    for &w in &p.workers {
        let of = |key: char| {
            let i = variants.iter().position(|v| v.key == key).unwrap();
            let c = cells.iter().find(|c| c.variant == i && c.workers == w).unwrap();
            (median(&col(c, |s| s.p50_ms)), median(&col(c, |s| s.p99_ms)))
        };
        let ((ours50, ours99), (picker50, picker99)) = (of(ROUND_ROBIN), of(PICKER));
        let _ = writeln!(
            md,
            "- {w} worker{}: {} (p50 {ours50:.2} ms vs {picker50:.2} ms, ours ÷ picker {:.2}; \
             p99 {ours99:.2} ms vs {picker99:.2} ms, ours ÷ picker {:.2})",
            if w == 1 { "" } else { "s" },
            if ours99 < picker99 { "holds" } else { "does not hold" },
            ours50 / picker50,
            ours99 / picker99
        );
    }

    write_latency_section(&p.out, &md);
    drop(cells);
    drop(backends);
    md
}
