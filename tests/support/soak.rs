//! The soak run, shared by `make soak` (benches/soak.rs: 10 minutes by default, writes
//! bench/SOAK.md) and CI (tests/soak.rs: 60 s, asserts the goals).
//!
//! A real Envoy (`--concurrency 2`, the shipped envoy/envoy.yaml through the harness: retries
//! on) in front of four demo backends: `b1` is stopped
//! every [`KILL_PERIOD`] and started again on the same address [`DOWN_TIME`] later, `b2` answers
//! 500 to 5% of requests, `b3` and `b4` are healthy. The filter runs least_request with active
//! health checks, outlier detection, sticky sessions and the status page. A steady, bounded
//! client load (keep-alive clients that reconnect every [`RECONNECT_EVERY`] requests, half of
//! them sending their session cookie back) runs for the whole duration, and every answer is
//! counted by status, every transport error too.
//!
//! Include it with `#[path]` next to the harness (`mod support;`): it uses `crate::support`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{envoy_bin, plugin_config, Backend, BackendOptions, Envoy, EnvoySetup};

/// `b1` is stopped this often ...
pub const KILL_PERIOD: Duration = Duration::from_secs(5);
/// ... and started again on the same address this much later.
pub const DOWN_TIME: Duration = Duration::from_secs(2);
/// Each client task drops its connection (and its session cookie) after this many requests.
pub const RECONNECT_EVERY: u64 = 200;
/// Work each backend does per request (not `/healthz`), so requests overlap a little.
pub const BACKEND_DELAY: Duration = Duration::from_millis(2);
/// The failing backend's share of 500 answers.
pub const FAIL_RATE: f64 = 0.05;
/// Envoy's RSS may grow at most this much over the run (CI goal).
pub const RSS_GROWTH_LIMIT_KIB: u64 = 5 * 1024;
const RSS_EVERY: Duration = Duration::from_secs(10);
const LOG_POLL: Duration = Duration::from_millis(250);
/// The backends, their roles in the report.
pub const ROLES: [(&str, &str); 4] = [
    ("b1", "stopped every 5 s, down 2 s"),
    ("b2", "500 for 5% of requests"),
    ("b3", "healthy"),
    ("b4", "healthy"),
];

/// How long and how hard.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub seconds: u64,
    /// Total requests per second over all client tasks.
    pub rate: u32,
    pub tasks: usize,
}

impl SoakOptions {
    /// `SOAK_SECONDS` (default `default_seconds`) and `SOAK_RATE` (default 300 req/s).
    pub fn from_env(default_seconds: u64) -> Self {
        let env = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|&n| n > 0)
                .unwrap_or(default)
        };
        SoakOptions {
            seconds: env("SOAK_SECONDS", default_seconds),
            rate: env("SOAK_RATE", 300) as u32,
            tasks: 8,
        }
    }
}

/// The filter's configuration fields besides cluster and backends.
pub fn filter_extra() -> Value {
    json!({
        "algorithm": "least_request",
        "health_check": {"path": "/healthz", "interval_ms": 1000, "timeout_ms": 500,
                         "unhealthy_threshold": 2, "healthy_threshold": 2},
        "outlier_detection": {"consecutive_errors": 5, "base_ejection_ms": 5000,
                              "max_ejection_ms": 15000},
        "sticky": {"secure": false},
        "status": {}
    })
}

/// A client-seen failure: a 5xx answer or a transport error.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Milliseconds since the load started.
    pub at_ms: u64,
    /// `None`: a transport error.
    pub status: Option<u16>,
    pub backend: Option<String>,
    pub lb_error: Option<String>,
    pub detail: String,
}

/// What the client tasks saw.
#[derive(Debug, Default)]
pub struct Load {
    pub requests: u64,
    pub by_status: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    /// Answers per `x-backend` header ("-" when absent).
    pub by_backend: BTreeMap<String, u64>,
    pub failures: Vec<Failure>,
    /// Requests that carried a session cookie.
    pub with_cookie: u64,
}

impl Load {
    fn merge(&mut self, other: Load) {
        self.requests += other.requests;
        for (k, v) in other.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        self.transport_errors += other.transport_errors;
        for (k, v) in other.by_backend {
            *self.by_backend.entry(k).or_default() += v;
        }
        self.failures.extend(other.failures);
        self.with_cookie += other.with_cookie;
    }

    pub fn five_xx(&self) -> u64 {
        self.by_status.iter().filter(|(s, _)| **s >= 500).map(|(_, n)| n).sum()
    }
}

/// Something that happened, at milliseconds since the load started.
#[derive(Debug, Clone)]
pub struct Event {
    pub at_ms: u64,
    pub what: String,
}

/// A client failure and what it is attributed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The first failure matched to an ejection of its backend logged at most 0.5 s before
    /// and 1 s after it.
    FirstOfEjection,
    /// Within 1 s after `b1` was stopped (and not the first of an ejection).
    KillEdge,
    Other,
}

#[derive(Debug, Default, Clone)]
pub struct BackendFigures {
    pub requests: u64,
    pub upstream_errors: u64,
    pub ejections: u64,
    pub health_transitions: u64,
    pub in_flight_end: Option<u64>,
    pub healthy_end: u64,
    /// Requests (not probes) the backend itself counted, over all its restarts.
    pub served: u64,
}

/// Everything one run measured.
#[derive(Debug)]
pub struct Report {
    pub options: SoakOptions,
    pub envoy_version: String,
    pub elapsed: Duration,
    pub load: Load,
    pub kill_cycles: u64,
    pub events: Vec<Event>,
    pub causes: Vec<Cause>,
    pub backends: BTreeMap<String, BackendFigures>,
    pub pool_counters: BTreeMap<String, u64>,
    pub envoy_stats: BTreeMap<String, u64>,
    pub wasm_stats_start: BTreeMap<String, u64>,
    pub wasm_stats_end: BTreeMap<String, u64>,
    pub rss_idle_kib: u64,
    pub rss_samples: Vec<(u64, u64)>,
    pub rss_end_kib: u64,
    pub vm_failure_lines: Vec<String>,
    pub shared_keys: Vec<String>,
    pub status_start: Value,
    pub status_end: Value,
    /// Whether every in-flight gauge read 0 within 10 s of the load's end.
    pub in_flight_settled: bool,
}

/// Envoy's pid: the process whose `--admin-address-path` file holds `admin` (the harness
/// keeps its child private, and other tests' Envoys may run at the same time).
pub fn envoy_pid(admin: SocketAddr) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let Some(i) = args.iter().position(|a| *a == b"--admin-address-path") else { continue };
        let Some(path) = args.get(i + 1) else { continue };
        let text = std::fs::read_to_string(String::from_utf8_lossy(path).as_ref());
        if text.ok().and_then(|t| t.trim().parse::<SocketAddr>().ok()) == Some(admin) {
            return Some(pid);
        }
    }
    None
}

/// VmRSS of `pid` in KiB (0 if unreadable).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The value of the Prometheus sample `name{labels}` (labels as Envoy prints them).
pub fn prom(text: &str, name: &str, labels: &str) -> Option<u64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

fn backend_labels(id: &str) -> String {
    format!("pool=\"pool\",backend=\"{id}\"")
}

/// Log lines that mean a Wasm VM failed (trap, panic, abort, failed callback, reload) or any
/// error/critical line.
pub fn vm_failure_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            l.contains("[error]")
                || l.contains("[critical]")
                || lower.contains("panicked")
                || lower.contains("wasm trap")
                || lower.contains("uncaught")
                || lower.contains("runtimeerror")
                || (lower.contains("wasm") && (lower.contains("failed") || lower.contains("abort")))
        })
        .map(str::to_owned)
        .collect()
}

/// The filter's message in an Envoy log line (`... wasm log envoy_lb envoy_lb: <message>`).
fn filter_message(line: &str) -> Option<&str> {
    let rest = &line[line.find("wasm log ")? + "wasm log ".len()..];
    Some(&rest[rest.find(": ")? + 2..])
}

/// The shared-data keys the filter creates for this configuration (src/state, src/health,
/// src/router/sticky.rs): every key is derived from the cluster name, the configuration's
/// fence (a digest of its pool and health settings, shown here as `<fence>`) and the backends'
/// ids and addresses, none from requests; one more, the proxy's clock, is shared by every
/// pool. The status page's `shared_data` counts what exists (these and the key record), which
/// the soak compares with this list. Besides these, a backend gets an error-streak key
/// (`health/<fence>/errors/<index>`) at its first failed try: at most one per backend.
pub fn expected_shared_keys(pool: &[(&str, SocketAddr, u32)]) -> Vec<String> {
    let mut keys: Vec<String> = [
        "generation",
        "health/<fence>",
        "health/<fence>/version",
        "prober/<fence>",
        "health_current",
        "sticky_secret",
        "in_flight_owners",
    ]
    .iter()
    .map(|k| format!("envoy_lb/pool/{k}"))
    .collect();
    keys.extend(pool.iter().map(|(id, addr, _)| format!("envoy_lb/pool/in_flight/{id}@{addr}")));
    keys.push("envoy_lb/clock".to_string());
    keys
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// One client task: `interval` between request starts until `deadline`.
async fn client_task(
    base: String,
    task: usize,
    interval: Duration,
    t0: Instant,
    deadline: Instant,
    sticky: bool,
) -> Load {
    let mut load = Load::default();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut http = client();
    let mut cookie: Option<String> = None;
    let mut n = 0u64;
    loop {
        ticker.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        if n % RECONNECT_EVERY == 0 {
            http = client();
            cookie = None;
        }
        n += 1;
        let mut req = http.get(format!("{base}/soak/{task}/{n}"));
        if let Some(c) = &cookie {
            req = req.header("cookie", c.as_str());
            load.with_cookie += 1;
        }
        load.requests += 1;
        let at_ms = t0.elapsed().as_millis() as u64;
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                load.transport_errors += 1;
                load.failures.push(Failure {
                    at_ms,
                    status: None,
                    backend: None,
                    lb_error: None,
                    detail: format!("{e:?}"),
                });
                continue;
            }
        };
        let status = resp.status().as_u16();
        let header =
            |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let backend = header("x-backend");
        let lb_error = header("x-lb-error");
        if sticky {
            let fresh = resp
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find(|v| v.starts_with("lb_session="))
                .and_then(|v| v.split(';').next())
                .map(str::to_owned);
            if fresh.is_some() {
                cookie = fresh;
            }
        }
        let body = match resp.text().await {
            Ok(body) => body,
            Err(e) => {
                load.transport_errors += 1;
                load.failures.push(Failure {
                    at_ms,
                    status: Some(status),
                    backend,
                    lb_error,
                    detail: format!("body: {e:?}"),
                });
                continue;
            }
        };
        *load.by_status.entry(status).or_default() += 1;
        *load.by_backend.entry(backend.clone().unwrap_or_else(|| "-".into())).or_default() += 1;
        if status >= 500 {
            load.failures.push(Failure {
                at_ms,
                status: Some(status),
                backend,
                lb_error,
                detail: body.chars().take(120).collect::<String>().trim().to_owned(),
            });
        }
    }
    load
}

/// The whole client load: `options.tasks` tasks sharing `options.rate`.
async fn run_load(base: String, options: &SoakOptions, t0: Instant, deadline: Instant) -> Load {
    let interval = Duration::from_secs_f64(options.tasks as f64 / f64::from(options.rate));
    let mut handles = Vec::new();
    for task in 0..options.tasks {
        let base = base.clone();
        handles.push(tokio::spawn(client_task(base, task, interval, t0, deadline, task % 2 == 0)));
        // Spread the tasks' ticks over one interval.
        tokio::time::sleep(interval / options.tasks as u32).await;
    }
    let mut load = Load::default();
    for h in handles {
        load.merge(h.await.unwrap());
    }
    load
}

async fn start_on(addr: SocketAddr, options: &BackendOptions) -> Backend {
    let mut last = None;
    for _ in 0..100 {
        match demo_backend::start(addr, options.clone()).await {
            Ok(b) => return b,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot restart the backend on {addr}: {last:?}");
}

/// Stops `backend` every [`KILL_PERIOD`] and starts it again on the same address after
/// [`DOWN_TIME`], until `deadline`; it is running when this returns. Returns the backend, the
/// requests its earlier incarnations served, the cycles and their events.
async fn flap(
    mut backend: Backend,
    options: BackendOptions,
    t0: Instant,
    deadline: Instant,
) -> (Backend, u64, u64, Vec<Event>) {
    let addr = backend.addr;
    let mut served = 0;
    let mut cycles = 0;
    let mut events = Vec::new();
    let mut next = t0 + KILL_PERIOD;
    while next + DOWN_TIME < deadline {
        tokio::time::sleep_until(next.into()).await;
        served += backend.stats.requests.load(std::sync::atomic::Ordering::SeqCst);
        events.push(Event { at_ms: t0.elapsed().as_millis() as u64, what: "b1 stopped".into() });
        let stop = tokio::time::timeout(Duration::from_secs(3), backend.stop()).await;
        if stop.is_err() {
            events.push(Event {
                at_ms: t0.elapsed().as_millis() as u64,
                what: "b1 stop took over 3 s: server task aborted".into(),
            });
        }
        tokio::time::sleep_until((next + DOWN_TIME).into()).await;
        backend = start_on(addr, &options).await;
        events.push(Event { at_ms: t0.elapsed().as_millis() as u64, what: "b1 started".into() });
        cycles += 1;
        next += KILL_PERIOD;
    }
    (backend, served, cycles, events)
}

/// Envoy's log (the filter's state changes, stamped when seen) and RSS, until `deadline`.
async fn monitor(
    envoy: &Envoy,
    pid: u32,
    t0: Instant,
    deadline: Instant,
) -> (Vec<Event>, Vec<(u64, u64)>) {
    let mut events = Vec::new();
    let mut samples = Vec::new();
    let mut seen = envoy.log().len();
    let mut next_rss = t0 + RSS_EVERY;
    loop {
        let done = Instant::now() >= deadline;
        let log = envoy.log();
        // Whole lines only: the last one may still be being written.
        let chunk = log.get(seen..).unwrap_or_default();
        let complete = chunk.rfind('\n').map_or(0, |i| i + 1);
        for line in chunk[..complete].lines() {
            if let Some(msg) = filter_message(line) {
                events.push(Event { at_ms: t0.elapsed().as_millis() as u64, what: msg.into() });
            }
        }
        seen += complete;
        if Instant::now() >= next_rss {
            samples.push(((next_rss - t0).as_secs(), rss_kib(pid)));
            next_rss += RSS_EVERY;
        }
        if done {
            break;
        }
        tokio::time::sleep(LOG_POLL).await;
    }
    (events, samples)
}

/// Attributes each failure: the first failure within [-0.5 s, +1 s] of an ejection of the
/// backend that gave it (any backend for an answer without `x-backend`: Envoy's own 503, a
/// transport error) is that ejection's first failure; else within 1 s after a stop of b1 is a
/// kill edge; else other.
pub fn attribute(failures: &[Failure], events: &[Event]) -> Vec<Cause> {
    let ejections: Vec<(u64, &str)> = events
        .iter()
        .filter(|e| e.what.contains(" ejected for "))
        .map(|e| (e.at_ms, e.what.split(' ').next().unwrap_or_default()))
        .collect();
    let kills: Vec<u64> =
        events.iter().filter(|e| e.what == "b1 stopped").map(|e| e.at_ms).collect();
    let mut used = vec![false; ejections.len()];
    let mut order: Vec<usize> = (0..failures.len()).collect();
    order.sort_by_key(|&i| failures[i].at_ms);
    let mut causes = vec![Cause::Other; failures.len()];
    for i in order {
        let (t, from) = (failures[i].at_ms, failures[i].backend.as_deref());
        let near = ejections
            .iter()
            .enumerate()
            .find(|&(j, &(e, id))| {
                !used[j] && e + 500 >= t && e <= t + 1000 && from.is_none_or(|b| b == id)
            })
            .map(|(j, _)| j);
        causes[i] = if let Some(j) = near {
            used[j] = true;
            Cause::FirstOfEjection
        } else if kills.iter().any(|&k| k <= t && t <= k + 1000) {
            Cause::KillEdge
        } else {
            Cause::Other
        };
    }
    causes
}

async fn get_text(url: String) -> String {
    client().get(url).send().await.unwrap().text().await.unwrap()
}

async fn status_page(envoy: &Envoy) -> Value {
    let text = get_text(envoy.url("/.lb/status")).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("status page: {e}: {text}"))
}

/// Envoy's Wasm runtime stats: VMs created and active, the filter's VM reloads
/// (FAIL_RELOAD), VM count; not remote-load or the filter's own `wasmcustom` stats.
async fn wasm_stats(envoy: &Envoy) -> BTreeMap<String, u64> {
    get_text(envoy.admin_url("/stats?filter=^wasm\\."))
        .await
        .lines()
        .filter(|l| !l.contains("remote_load"))
        .filter_map(|l| l.split_once(": "))
        .filter_map(|(k, v)| Some((k.to_owned(), v.trim().parse().ok()?)))
        .collect()
}

const ENVOY_STATS: [&str; 11] = [
    "http.ingress.downstream_rq_total",
    "http.ingress.downstream_rq_2xx",
    "http.ingress.downstream_rq_5xx",
    "cluster.pool.upstream_rq_total",
    "cluster.pool.upstream_rq_retry",
    "cluster.pool.upstream_rq_retry_success",
    "cluster.pool.upstream_rq_retry_overflow",
    "cluster.pool.upstream_rq_retry_limit_exceeded",
    "cluster.pool.upstream_cx_connect_fail",
    "cluster.pool.upstream_cx_destroy_remote_with_active_rq",
    "cluster.pool.upstream_rq_pending_overflow",
];

/// Runs the soak: starts backends and Envoy, loads it for `options.seconds`, and measures.
pub async fn run(options: SoakOptions) -> Report {
    let delay = |mut o: BackendOptions| {
        o.delay = BACKEND_DELAY;
        o
    };
    let flapping = delay(BackendOptions::new("b1"));
    let mut failing = delay(BackendOptions::new("b2"));
    failing.fail_rate = FAIL_RATE;
    failing.fail_status = 500;
    let mut backends = vec![
        crate::support::backend(flapping.clone()).await,
        crate::support::backend(failing).await,
        crate::support::backend(delay(BackendOptions::new("b3"))).await,
        crate::support::backend(delay(BackendOptions::new("b4"))).await,
    ];
    let pool: Vec<(&str, SocketAddr, u32)> = backends.iter().map(|b| (b.id(), b.addr, 1)).collect();
    let shared_keys = expected_shared_keys(&pool);
    let config = plugin_config(&pool, filter_extra());
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let envoy = Envoy::start(EnvoySetup::new(config, endpoints).concurrency(2)).await;
    let pid = envoy_pid(envoy.admin).expect("cannot find Envoy's pid from its admin address");
    let envoy_version = Command::new(envoy_bin())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let envoy_version =
        envoy_version.split_once("version: ").map_or(envoy_version.clone(), |(_, v)| v.into());
    // Let the first probes land, then take the idle figures.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss_idle_kib = rss_kib(pid);
    let wasm_stats_start = wasm_stats(&envoy).await;
    let status_start = status_page(&envoy).await;

    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(options.seconds);
    let b1 = backends.remove(0);
    let (load, (b1, b1_earlier, kill_cycles, kill_events), (log_events, rss_samples)) = tokio::join!(
        run_load(envoy.url(""), &options, t0, deadline),
        flap(b1, flapping, t0, deadline),
        monitor(&envoy, pid, t0, deadline),
    );
    let elapsed = t0.elapsed();
    let rss_end_kib = rss_kib(pid);
    backends.insert(0, b1);

    // Every stream has ended: the in-flight gauges must come back to 0.
    let mut prometheus = String::new();
    let mut in_flight_settled = false;
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(10) {
        prometheus = get_text(envoy.admin_url("/stats/prometheus")).await;
        let gauges: Vec<Option<u64>> = ROLES
            .iter()
            .map(|(id, _)| prom(&prometheus, "lb_in_flight", &backend_labels(id)))
            .collect();
        if gauges.iter().all(|g| *g == Some(0)) {
            in_flight_settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status_end = status_page(&envoy).await;
    let wasm_stats_end = wasm_stats(&envoy).await;
    let mut envoy_stats = BTreeMap::new();
    for name in ENVOY_STATS {
        envoy_stats.insert(name.to_owned(), envoy.stat(name).await);
    }
    let mut figures = BTreeMap::new();
    for (i, (id, _)) in ROLES.iter().enumerate() {
        let labels = backend_labels(id);
        let get = |name: &str| prom(&prometheus, name, &labels).unwrap_or(0);
        let mut served = backends[i].stats.requests.load(std::sync::atomic::Ordering::SeqCst);
        if i == 0 {
            served += b1_earlier;
        }
        figures.insert(
            id.to_string(),
            BackendFigures {
                requests: get("lb_requests_total"),
                upstream_errors: get("lb_upstream_errors_total"),
                ejections: get("lb_ejections_total"),
                health_transitions: get("lb_health_transitions_total"),
                in_flight_end: prom(&prometheus, "lb_in_flight", &labels),
                healthy_end: get("lb_healthy"),
                served,
            },
        );
    }
    let mut pool_counters = BTreeMap::new();
    for name in [
        "lb_no_healthy_backend_total",
        "lb_panic_mode_total",
        "lb_sticky_hits_total",
        "lb_sticky_misses_total",
        "lb_sticky_invalid_total",
    ] {
        pool_counters
            .insert(name.to_owned(), prom(&prometheus, name, "pool=\"pool\"").unwrap_or(0));
    }
    let vm_failure_lines = vm_failure_lines(&envoy.log());
    let mut events = kill_events;
    events.extend(log_events);
    events.sort_by_key(|e| e.at_ms);
    let causes = attribute(&load.failures, &events);
    drop(envoy);
    drop(backends);
    Report {
        options,
        envoy_version,
        elapsed,
        load,
        kill_cycles,
        events,
        causes,
        backends: figures,
        pool_counters,
        envoy_stats,
        wasm_stats_start,
        wasm_stats_end,
        rss_idle_kib,
        rss_samples,
        rss_end_kib,
        vm_failure_lines,
        shared_keys,
        status_start,
        status_end,
        in_flight_settled,
    }
}

impl Report {
    pub fn ejections(&self) -> u64 {
        self.backends.values().map(|b| b.ejections).sum()
    }

    /// 5xx answers plus transport errors.
    pub fn client_failures(&self) -> u64 {
        self.load.five_xx() + self.load.transport_errors
    }

    pub fn caused(&self, cause: Cause) -> usize {
        self.causes.iter().filter(|c| **c == cause).count()
    }

    pub fn rss_max_kib(&self) -> u64 {
        self.rss_samples
            .iter()
            .map(|s| s.1)
            .chain([self.rss_idle_kib, self.rss_end_kib])
            .max()
            .unwrap_or(0)
    }

    /// RSS after the first sample under load (10 s), the warmed-up baseline.
    pub fn rss_warm_kib(&self) -> u64 {
        self.rss_samples.first().map_or(self.rss_idle_kib, |s| s.1)
    }

    fn log_count(&self, needle: &str) -> usize {
        self.events.iter().filter(|e| e.what.contains(needle)).count()
    }

    /// Each goal: (description with the measured figure, met). CI asserts every one.
    pub fn goals(&self) -> Vec<(String, bool)> {
        let o = &self.options;
        let expected = o.seconds * u64::from(o.rate);
        let b = |id: &str| self.backends.get(id).cloned().unwrap_or_default();
        let vms = |m: &BTreeMap<String, u64>| {
            m.iter().filter(|(k, _)| k.ends_with(".created")).map(|(_, v)| v).sum::<u64>()
        };
        let reloads: u64 = self
            .wasm_stats_end
            .iter()
            .filter(|(k, _)| k.ends_with(".vm_reload") || k.ends_with(".vm_reload_failure"))
            .map(|(_, v)| v)
            .sum();
        let growth = self.rss_end_kib.saturating_sub(self.rss_idle_kib);
        let min_cycles = (o.seconds.saturating_sub(DOWN_TIME.as_secs()) / KILL_PERIOD.as_secs())
            .saturating_sub(1);
        let generation = |v: &Value| v["generation"].as_u64();
        let shared_keys = |v: &Value| v["shared_data"]["keys"].as_u64();
        let (ejected, returned) = (self.log_count(" ejected for "), self.log_count(" returned: "));
        let still = self.status_end["backends"]
            .as_array()
            .map_or(0, |l| l.iter().filter(|b| !b["ejected_until_ms"].is_null()).count());
        vec![
            (
                format!(
                    "load ran: {} requests sent, at least half of {} × {} s = {expected}",
                    self.load.requests, o.rate, o.seconds
                ),
                self.load.requests * 2 >= expected,
            ),
            (
                format!("b1 stopped and restarted: {} cycles (≥ {min_cycles})", self.kill_cycles),
                self.kill_cycles >= min_cycles && self.kill_cycles > 0,
            ),
            (
                format!(
                    "the failures reached the filter: b1 {} and b2 {} failed tries, {} Envoy retries",
                    b("b1").upstream_errors,
                    b("b2").upstream_errors,
                    self.envoy_stats["cluster.pool.upstream_rq_retry"]
                ),
                b("b1").upstream_errors > 0
                    && b("b2").upstream_errors > 0
                    && self.envoy_stats["cluster.pool.upstream_rq_retry"] > 0,
            ),
            (
                format!(
                    "b1's outages were detected: {} ejections, {} health transitions",
                    b("b1").ejections,
                    b("b1").health_transitions
                ),
                b("b1").ejections > 0 && b("b1").health_transitions > 0,
            ),
            (
                format!(
                    "every ejection and its end was logged: {ejected} ejected (of {} counted by \
                     lb_ejections_total), {returned} returned, {still} still ejected at the end",
                    self.ejections()
                ),
                ejected > 0
                    && ejected as u64 == self.ejections()
                    && returned <= ejected
                    && returned + still >= ejected,
            ),
            (
                format!(
                    "every backend answered clients: {:?}",
                    ROLES.map(|(id, _)| self.load.by_backend.get(id).copied().unwrap_or(0))
                ),
                ROLES.iter().all(|(id, _)| self.load.by_backend.get(*id).copied().unwrap_or(0) > 0),
            ),
            (
                format!(
                    "no client-seen 5xx (every failed try retried away): {}",
                    self.load.five_xx()
                ),
                self.load.five_xx() == 0,
            ),
            (
                format!("no transport errors: {}", self.load.transport_errors),
                self.load.transport_errors == 0,
            ),
            (
                format!(
                    "no VM failure: {} error/panic/failed lines in Envoy's log, wasm VMs created \
                     {} → {}, {reloads} VM reloads",
                    self.vm_failure_lines.len(),
                    vms(&self.wasm_stats_start),
                    vms(&self.wasm_stats_end)
                ),
                self.vm_failure_lines.is_empty()
                    && vms(&self.wasm_stats_start) > 0
                    && vms(&self.wasm_stats_start) == vms(&self.wasm_stats_end)
                    && reloads == 0,
            ),
            (
                format!(
                    "Envoy RSS growth < {} MiB: {:.1} → {:.1} MiB (+{:.1})",
                    RSS_GROWTH_LIMIT_KIB / 1024,
                    self.rss_idle_kib as f64 / 1024.0,
                    self.rss_end_kib as f64 / 1024.0,
                    growth as f64 / 1024.0
                ),
                self.rss_idle_kib > 0 && growth < RSS_GROWTH_LIMIT_KIB,
            ),
            (
                format!(
                    "every lb_in_flight gauge back to 0: {:?}",
                    ROLES.map(|(id, _)| b(id).in_flight_end)
                ),
                self.in_flight_settled,
            ),
            (
                format!(
                    "no configuration churn: status generation {:?} → {:?}",
                    generation(&self.status_start),
                    generation(&self.status_end)
                ),
                generation(&self.status_start).is_some()
                    && generation(&self.status_start) == generation(&self.status_end),
            ),
            (
                format!(
                    "shared data bounded: {:?} keys at start, {:?} at end (the status page's \
                     count; {} expected at start: the configuration's {} and the key record; at \
                     most one error-streak key per backend ({}) more at the end)",
                    shared_keys(&self.status_start),
                    shared_keys(&self.status_end),
                    self.shared_keys.len() + 1,
                    self.shared_keys.len(),
                    ROLES.len(),
                ),
                shared_keys(&self.status_start) == Some(self.shared_keys.len() as u64 + 1)
                    && shared_keys(&self.status_end).is_some_and(|end| {
                        let start = self.shared_keys.len() as u64 + 1;
                        (start..=start + ROLES.len() as u64).contains(&end)
                    }),
            ),
        ]
    }

    /// The report as Markdown (bench/SOAK.md).
    pub fn markdown(&self, date: &str, machine: &str, command: &str) -> String {
        let o = &self.options;
        let l = &self.load;
        let mut md = String::new();
        let mib = |k: u64| k as f64 / 1024.0;
        let _ = writeln!(md, "# Soak: envoy-lb in a real Envoy under steady load and failures\n");
        let _ = writeln!(md, "- date: {date}");
        let _ = writeln!(md, "- machine: {machine}");
        let _ = writeln!(md, "- Envoy: `{}`, `--concurrency 2`", self.envoy_version);
        let _ = writeln!(md, "- filter: {}", filter_build());
        let _ = writeln!(
            md,
            "- duration: {} s of load (measured {:.1} s)",
            o.seconds,
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(md, "- command: {command}");
        let _ = writeln!(
            md,
            "- setup: the shipped envoy/envoy.yaml through the test harness (route retries \
             `connect-failure,refused-stream,5xx` × 2), \
             4 demo backends ({}; each answers after {} ms); b1 is stopped gracefully \
             (`Running::stop`) every {} s and started again on the same address {} s later",
            ROLES.map(|(id, role)| format!("{id}: {role}")).join(", "),
            BACKEND_DELAY.as_millis(),
            KILL_PERIOD.as_secs(),
            DOWN_TIME.as_secs()
        );
        let _ = writeln!(
            md,
            "- filter config (besides cluster and backends): `{}`; `max_ejection_ms` is 15 s \
             (default 300 s) so that b1 keeps coming back during the run: the n-th ejection in a \
             row lasts n × 5 s (n drops by one per 5 s the backend then stays available)",
            filter_extra()
        );
        let _ = writeln!(
            md,
            "- load: {} client tasks, {} req/s in total (paced, one request in flight per task), \
             reqwest keep-alive, a new connection every {RECONNECT_EVERY} requests per task; the \
             even tasks send their `lb_session` cookie back ({} requests carried one)\n",
            o.tasks, o.rate, l.with_cookie
        );

        let _ = writeln!(md, "## Results\n");
        let _ = writeln!(md, "| | |");
        let _ = writeln!(md, "|---|---|");
        let statuses: Vec<String> = l.by_status.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        let _ = writeln!(
            md,
            "| requests | {} ({:.0} req/s); answers {}; transport errors {} |",
            l.requests,
            l.requests as f64 / self.elapsed.as_secs_f64(),
            statuses.join(", "),
            l.transport_errors
        );
        let _ = writeln!(
            md,
            "| client-seen 5xx | **{}** ({:.4}% of requests): {} first failure of an ejection, {} \
             within 1 s of a b1 stop, {} other |",
            l.five_xx(),
            l.five_xx() as f64 * 100.0 / l.requests.max(1) as f64,
            self.caused(Cause::FirstOfEjection),
            self.caused(Cause::KillEdge),
            self.caused(Cause::Other)
        );
        let tries: u64 = self.backends.values().map(|b| b.upstream_errors).sum();
        let _ = writeln!(
            md,
            "| failed tries (`lb_upstream_errors_total`, all backends) | {tries}, of which {} \
             reached a client as 5xx: the rest were retried away |",
            l.five_xx()
        );
        let _ = writeln!(
            md,
            "| kill cycles (b1 stop + start) | {} |\n| ejections (`lb_ejections_total`) | {} ({} logged) |",
            self.kill_cycles,
            self.ejections(),
            self.log_count(" ejected for ")
        );
        let s = &self.envoy_stats;
        let _ = writeln!(
            md,
            "| Envoy retries | {} retries, {} succeeded, {} overflowed (circuit breaker), {} \
             over the limit; {} connect failures; {} upstream requests for {} downstream |",
            s["cluster.pool.upstream_rq_retry"],
            s["cluster.pool.upstream_rq_retry_success"],
            s["cluster.pool.upstream_rq_retry_overflow"],
            s["cluster.pool.upstream_rq_retry_limit_exceeded"],
            s["cluster.pool.upstream_cx_connect_fail"],
            s["cluster.pool.upstream_rq_total"],
            s["http.ingress.downstream_rq_total"]
        );
        let shared = |v: &Value, what: &str| v["shared_data"][what].to_string();
        let _ = writeln!(
            md,
            "| shared-data keys (status page `shared_data`) | {} keys, {} bytes at start (idle); \
             {} keys, {} bytes at end; config generation {} → {} |",
            shared(&self.status_start, "keys"),
            shared(&self.status_start, "bytes"),
            shared(&self.status_end, "keys"),
            shared(&self.status_end, "bytes"),
            self.status_start["generation"],
            self.status_end["generation"]
        );
        let samples: Vec<String> = self
            .rss_samples
            .iter()
            .filter(|(t, _)| *t % 60 == 0 || self.rss_samples.len() <= 12)
            .map(|(t, k)| format!("{t} s {:.1}", mib(*k)))
            .collect();
        let _ = writeln!(
            md,
            "| Envoy RSS (VmRSS) | start (idle) {:.1} MiB, after 10 s of load {:.1}, end {:.1}, \
             max {:.1}; growth {:+.1} MiB from start, {:+.1} from 10 s |",
            mib(self.rss_idle_kib),
            mib(self.rss_warm_kib()),
            mib(self.rss_end_kib),
            mib(self.rss_max_kib()),
            (self.rss_end_kib as f64 - self.rss_idle_kib as f64) / 1024.0,
            (self.rss_end_kib as f64 - self.rss_warm_kib() as f64) / 1024.0
        );
        let _ = writeln!(md, "| RSS samples (MiB) | {} |", samples.join(", "));
        let _ = writeln!(
            md,
            "| VM failures | {} (Envoy log lines with [error], [critical], panicked, wasm trap, \
             Uncaught, or wasm + failed/abort) |",
            self.vm_failure_lines.len()
        );
        let wasm_start: Vec<String> =
            self.wasm_stats_start.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let wasm_end: Vec<String> =
            self.wasm_stats_end.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            md,
            "| Envoy wasm stats | start: {}; end: {} |",
            wasm_start.join(", "),
            wasm_end.join(", ")
        );
        let pc: Vec<String> = self.pool_counters.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(md, "| pool counters | {} |", pc.join(", "));
        let _ = writeln!(
            md,
            "| filter log | {} unhealthy, {} healthy, {} ejected, {} returned, {} panic mode |\n",
            self.log_count(" unhealthy: "),
            self.log_count(" healthy: "),
            self.log_count(" ejected for "),
            self.log_count(" returned: "),
            self.log_count("panic mode:")
        );

        let _ = writeln!(md, "Per backend (`/stats/prometheus` at the end; served = counted by the backend itself; answered = client-seen `x-backend`):\n");
        let _ = writeln!(
            md,
            "| backend | role | lb_requests_total | lb_upstream_errors_total | lb_ejections_total | \
             lb_health_transitions_total | lb_in_flight (end) | lb_healthy (end) | served | answered |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
        for (id, role) in ROLES {
            let b = &self.backends[id];
            let _ = writeln!(
                md,
                "| {id} | {role} | {} | {} | {} | {} | {} | {} | {} | {} |",
                b.requests,
                b.upstream_errors,
                b.ejections,
                b.health_transitions,
                b.in_flight_end.map_or("missing".into(), |v| v.to_string()),
                b.healthy_end,
                b.served,
                l.by_backend.get(id).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(md, "\nStatus page (`/.lb/status`) at the end, as one worker sees it:\n");
        let _ = writeln!(
            md,
            "| backend | healthy | available | ejections | last_change | in_flight | requests |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        for b in self.status_end["backends"].as_array().into_iter().flatten() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                b["id"].as_str().unwrap_or("?"),
                b["healthy"],
                b["available"],
                b["ejections"],
                b["last_change"].as_str().unwrap_or("-"),
                b["in_flight"],
                b["requests"]
            );
        }

        let _ = writeln!(md, "\n## Goals\n");
        for (what, met) in self.goals() {
            let _ = writeln!(md, "- [{}] {what}", if met { "x" } else { " " });
        }

        let _ = writeln!(md, "\n## Client failures\n");
        if l.failures.is_empty() {
            let _ = writeln!(md, "None.");
        } else {
            let _ = writeln!(
                md,
                "| at (s) | status | x-backend | x-lb-error | attributed to | body / error |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|");
            let mut list: Vec<(&Failure, &Cause)> = l.failures.iter().zip(&self.causes).collect();
            list.sort_by_key(|(f, _)| f.at_ms);
            for (f, c) in list.iter().take(40) {
                let _ = writeln!(
                    md,
                    "| {:.3} | {} | {} | {} | {:?} | {} |",
                    f.at_ms as f64 / 1000.0,
                    f.status.map_or("transport".into(), |s| s.to_string()),
                    f.backend.as_deref().unwrap_or("-"),
                    f.lb_error.as_deref().unwrap_or("-"),
                    c,
                    f.detail.replace('|', "\\|").replace('\n', " ")
                );
            }
            if list.len() > 40 {
                let _ = writeln!(md, "\n({} more not shown)", list.len() - 40);
            }
        }

        let ejections: Vec<String> = self
            .events
            .iter()
            .filter(|e| e.what.contains(" ejected for "))
            .map(|e| {
                let id = e.what.split(' ').next().unwrap_or("?");
                let n =
                    e.what.rsplit_once("(ejection ").map_or("?", |(_, n)| n.trim_end_matches(')'));
                format!("{id}#{n} {:.1}", e.at_ms as f64 / 1000.0)
            })
            .collect();
        let _ = writeln!(
            md,
            "\nEjections as logged (backend#n, seconds since the load started, ±0.25 s): {}",
            if ejections.is_empty() { "none".to_string() } else { ejections.join(", ") }
        );
        let _ = writeln!(md, "\n## Shared data\n");
        let _ = writeln!(
            md,
            "proxy-wasm has no call that lists shared data and Envoy's admin does not show it, so \
             the filter keeps a record of every key it writes (`envoy_lb/keys`, src/state/\
             registry.rs: each key is recorded before its first write from a VM); the status \
             page's `shared_data` reads the record and every key in it, counting the keys found \
             and their bytes (names and values). Keys come from the configuration (cluster \
             name, its fence, backend ids and addresses) and the proxy's clock, never from a \
             request; for this one they are these {}, plus the record:\n",
            self.shared_keys.len()
        );
        for k in &self.shared_keys {
            let _ = writeln!(md, "- `{k}`");
        }
        if !self.vm_failure_lines.is_empty() {
            let _ = writeln!(md, "\n## VM failure lines (first 20)\n\n```");
            for line in self.vm_failure_lines.iter().take(20) {
                let _ = writeln!(md, "{line}");
            }
            let _ = writeln!(md, "```");
        }
        md
    }
}

/// The measured .wasm (size, SHA-256 prefix) and the commit it was built from, noting
/// uncommitted changes under src/ at the time of the run.
pub fn filter_build() -> String {
    use sha2::Digest as _;
    let path = crate::support::wasm_path();
    let bytes = std::fs::read(&path).unwrap_or_default();
    let digest = sha2::Sha256::digest(&bytes);
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(crate::support::repo_root())
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let file = format!("({} bytes, sha256 {hex}…)", bytes.len());
    if !path.starts_with(crate::support::repo_root()) {
        return format!("`{}` {file}, given by ENVOY_LB_WASM", path.display());
    }
    let head = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--", "src"]).map(|s| s.lines().count());
    let dirty = match dirty {
        None => "unknown".to_string(),
        Some(0) => "no uncommitted changes under src/".to_string(),
        Some(n) => format!("{n} files under src/ with uncommitted changes"),
    };
    format!("this working tree's build {file}, at commit {head}, {dirty}")
}

/// `nproc` CPUs, the CPU model, and this process's nice value (Envoy inherits it).
pub fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let nice = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s[s.rfind(')')? + 2..].split(' ').nth(16)?.to_owned();
            rest.parse::<i32>().ok()
        })
        .unwrap_or(0);
    format!("{nproc} CPUs, {model}; soak process and Envoy at nice {nice}")
}
