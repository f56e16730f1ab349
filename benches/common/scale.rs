//! Scale: what Envoy pays per request, at rest and at configuration as the pool grows from 3 to
//! 10,000 backends, for every algorithm, without and with health checks + outlier detection,
//! beside Envoy's native round robin (no wasm) at the same sizes.
//!
//! Backends: [`shards`] (demo backends in child processes, one loopback address each); a pool
//! of size N is the first N of them, in the plugin config's `backends` and in cluster `pool`.
//! Load: `wrk -t1 -c16` with a Lua script that sends a new `x-user` value on every request (the
//! key ring_hash and maglev hash), the same for every variant. A group is one variant: one
//! Envoy per (workers, N), all up together, each warmed up until it holds a keep-alive
//! connection to (nearly) every backend on every worker; then the idle window (all of the
//! group's Envoys at once, no traffic) and the rounds, interleaved across N and workers, so the
//! ratio to N = 3 comes from one run side by side. Figures per cell: CPU per request (as in
//! [`super::cpu`]: Δ utime+stime / Δ `downstream_rq_total`), idle CPU, the filter's own
//! `ready: …, configure and first tick took <ms> ms` line (largest over the worker VMs), VmRSS
//! idle and under load, open files and new upstream connections. A cell that answers anything
//! but 2xx, or whose Envoy or admin API stops answering, is reported failed with its reason,
//! and the others go on.
//!
//! Open files: Envoy keeps one upstream connection per backend per worker, and with health
//! checks the prober's callouts keep one more per backend (Envoy pools them apart from the
//! data path). With the machine's 20,000 open files per process (`ulimit -n`, hard) 10,000
//! backends fit one worker without health checks only: at two workers Envoy's `socket(2)`
//! fails with EMFILE and clients get 503s. By default (`keepalive`) a size that does not fit
//! is measured at the largest multiple of 500 that does ([`fitting`]), with the same
//! keep-alive pools as every other size, and the tables say which N was measured.
//! `BENCH_SCALE_CONNECTIONS=per_request` measures every N as asked instead, with
//! `max_requests_per_connection: 1` on cluster `pool` for every N: each request pays an
//! upstream connect, which fits any N but adds the same cost to every size (ratios nearer 1).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::shards::{self, Shards};
use super::{
    clock_ticks_per_s, median, min_max, render, require_tools, run_header, write_scale_section,
    Kind, Proxy, RunStart, CONNECTIONS, SCALE_HEADING,
};
use crate::support::{envoy_bin, plugin_config, repo_root};

/// `make bench`'s pool sizes, worker counts, rounds, wrk seconds per measurement.
pub const SIZES: [usize; 4] = [3, 100, 1_000, 10_000];
pub const WORKERS: [u32; 2] = [1, 2];
pub const ROUNDS: usize = 3;
pub const SECONDS: u64 = 3;
/// Issue #16's goal: CPU per request at the largest N ≤ this × at N = 3.
pub const GOAL_RATIO: f64 = 1.10;
/// The idle window: one health-check interval.
pub const IDLE_SECONDS: u64 = 10;
/// A warm-up stops when the Envoy holds this share of N × [`pools`] upstream connections ...
pub const WARM_COVERAGE: f64 = 0.99;
/// ... or after this long.
pub const WARMUP_MAX_SECONDS: u64 = 45;
/// wrk seconds per warm-up step.
pub const WARMUP_STEP_SECONDS: u64 = 2;
/// Open files an Envoy needs besides one upstream connection per backend per pool (measured:
/// about 40 at rest; wrk's 16 connections, a second connection to a backend whose first is
/// busy), kept free.
pub const FD_RESERVE: usize = 500;
/// Sizes that do not fit are measured at the largest multiple of this that does.
pub const FIT_STEP: usize = 500;
/// Cluster `pool`'s connection circuit breaker in this bench: Envoy's default (1,024) is below
/// N × workers keep-alive connections; max_requests and max_pending_requests stay at Envoy's
/// default (1,024).
pub const MAX_CONNECTIONS: u64 = 100_000;
/// How long an Envoy may take to answer `/ready` ...
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// ... and then its VMs to log their `ready:` line.
const READY_LINE_WAIT: Duration = Duration::from_secs(30);

/// The hashing key, a new value on every request (wrk's Lua).
const WRK_SCRIPT: &str = "-- envoy-lb scale bench: a new x-user value on every request.\n\
local n = 0\n\
request = function()\n\
  n = n + 1\n\
  return wrk.format(nil, nil, { [\"x-user\"] = \"user-\" .. n })\n\
end\n";

/// The health check and outlier detection of the "+ health_check + outlier_detection" rows.
pub fn health_check() -> Value {
    json!({"path": "/healthz", "interval_ms": 10000, "timeout_ms": 1000})
}

pub fn outlier_detection() -> Value {
    json!({"consecutive_errors": 5})
}

/// The algorithms, with the members each needs (hashing: the `x-user` header; the two that read
/// load reports ask every backend for one, `endpoint-load-metrics-format: TEXT`, which the
/// backends answer with their rate, utilization against a capacity of 1,000 req/s and an empty
/// queue: their whole report path is measured, with equal weights).
pub const ALGORITHMS: [&str; 8] = [
    "round_robin",
    "random",
    "least_request",
    "least_time",
    "ring_hash",
    "maglev",
    "client_side_weighted_round_robin",
    "least_load",
];

pub struct ScaleVariant {
    pub key: char,
    pub name: String,
    pub kind: Kind,
}

/// (a) Envoy's native round robin, (b) native least_request, then each algorithm without and
/// with health checks + outlier detection (c, d, e, ...).
pub fn variants() -> Vec<ScaleVariant> {
    let mut v = vec![
        ScaleVariant { key: 'a', name: "native round_robin (no wasm)".into(), kind: Kind::Native },
        ScaleVariant {
            key: 'b',
            name: "native least_request (no wasm)".into(),
            kind: Kind::NativeLeastRequest,
        },
    ];
    let mut key = b'c';
    for algorithm in ALGORITHMS {
        for extras in [false, true] {
            let mut cfg = json!({"algorithm": algorithm});
            if matches!(algorithm, "ring_hash" | "maglev") {
                cfg["hash_on"] = json!({"header": "x-user"});
            }
            if algorithm == "least_load" {
                cfg["least_load"] = json!({"metric": "named_metrics.queue_depth"});
            }
            if matches!(algorithm, "least_load" | "client_side_weighted_round_robin") {
                cfg["load_reports"] = json!({
                    "request_header": "endpoint-load-metrics-format",
                    "request_header_value": "TEXT"
                });
            }
            let mut name = format!("envoy-lb {algorithm}");
            if extras {
                cfg["health_check"] = health_check();
                cfg["outlier_detection"] = outlier_detection();
                name.push_str(" + health_check + outlier_detection");
            }
            v.push(ScaleVariant { key: key as char, name, kind: Kind::Ours(cfg) });
            key += 1;
        }
    }
    v
}

/// Starts a backend shard: the running executable again, told by `shards::SHARD_ENV`.
pub type Launcher = Box<dyn Fn() -> Command + Send + Sync>;

pub struct ScaleParams {
    pub rounds: usize,
    pub seconds: u64,
    pub idle_seconds: u64,
    pub warmup_max_seconds: u64,
    pub warmup_step_seconds: u64,
    pub sizes: Vec<usize>,
    pub workers: Vec<u32>,
    /// The variants to run, by key; empty: all.
    pub keys: String,
    pub upstream: Upstream,
    pub out: PathBuf,
    pub launcher: Launcher,
}

impl ScaleParams {
    /// BENCH_ROUNDS (default 3), BENCH_SECONDS (default 3), BENCH_SCALE_SIZES (default
    /// `3,100,1000,10000`), BENCH_SCALE_VARIANTS (keys, e.g. `acd`; default all),
    /// BENCH_SCALE_CONNECTIONS (`keepalive`, the default, or `per_request`), BENCH_OUT.
    pub fn from_env(launcher: Launcher) -> ScaleParams {
        let sizes = std::env::var("BENCH_SCALE_SIZES")
            .ok()
            .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect::<Vec<_>>())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| SIZES.to_vec());
        ScaleParams {
            rounds: super::env_u64("BENCH_ROUNDS", ROUNDS as u64) as usize,
            seconds: super::env_u64("BENCH_SECONDS", SECONDS),
            idle_seconds: IDLE_SECONDS,
            warmup_max_seconds: WARMUP_MAX_SECONDS,
            warmup_step_seconds: WARMUP_STEP_SECONDS,
            sizes,
            workers: WORKERS.to_vec(),
            keys: std::env::var("BENCH_SCALE_VARIANTS").unwrap_or_default(),
            upstream: Upstream::from_env(),
            out: std::env::var_os("BENCH_OUT")
                .map_or_else(|| repo_root().join("bench/RESULTS.md"), PathBuf::from),
            launcher,
        }
    }
}

/// The open-file limit of this process (Envoy inherits it): (soft, hard), from /proc.
pub fn open_file_limit() -> (usize, usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default();
    let nums: Vec<usize> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    match nums[..] {
        [soft, hard, ..] => (soft, hard),
        _ => (usize::MAX, usize::MAX),
    }
}

/// How cluster `pool` reuses upstream connections (BENCH_SCALE_CONNECTIONS).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// Envoy's default: keep-alive, no idle timeout; sizes that do not fit are made smaller.
    KeepAlive,
    /// `max_requests_per_connection: 1` for every N: every size as asked.
    PerRequest,
}

impl Upstream {
    pub fn from_env() -> Upstream {
        match std::env::var("BENCH_SCALE_CONNECTIONS").as_deref() {
            Ok("per_request") => Upstream::PerRequest,
            Ok("keepalive") | Ok("") | Err(_) => Upstream::KeepAlive,
            Ok(other) => panic!("BENCH_SCALE_CONNECTIONS={other:?}: keepalive or per_request"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Upstream::KeepAlive => "keepalive",
            Upstream::PerRequest => "per_request",
        }
    }
}

/// Upstream connections a keep-alive Envoy holds per backend: one per worker, and one for the
/// health-check callouts (sent by one worker, pooled apart from the data path).
pub fn pools(kind: &Kind, workers: u32) -> usize {
    let probes = matches!(kind, Kind::Ours(cfg) if cfg.get("health_check").is_some());
    workers as usize + usize::from(probes)
}

/// `n` if `n` × `pools` connections and [`FD_RESERVE`] fit in `limit` open files, else the
/// largest multiple of [`FIT_STEP`] that does.
pub fn fitting(n: usize, pools: usize, limit: usize) -> usize {
    if n * pools + FD_RESERVE <= limit {
        return n;
    }
    (limit.saturating_sub(FD_RESERVE) / pools / FIT_STEP * FIT_STEP).max(1)
}

struct Sample {
    us_per_req: f64,
    rps: f64,
    /// Upstream connections opened during the measurement.
    new_cx: u64,
    requests: u64,
    rss_load_kib: Option<u64>,
    fds_load: Option<usize>,
}

struct Cell {
    variant: usize,
    /// The variant's key (a, b, …).
    key: char,
    workers: u32,
    /// The size asked for, and the size measured (smaller when it did not fit).
    asked: usize,
    n: usize,
    /// Upstream connections per backend a warm keep-alive Envoy holds ([`pools`]).
    pools: usize,
    proxy: Option<Proxy>,
    failed: Option<String>,
    configure_ms: Option<f64>,
    rss_idle_kib: Option<u64>,
    idle_cpu_pct: Option<f64>,
    /// Upstream connections after warm-up ÷ N × pools (keep-alive only).
    coverage: Option<f64>,
    warmup_s: f64,
    samples: Vec<Sample>,
    rq_pending_overflow: u64,
    cx_overflow: u64,
}

impl Cell {
    /// Records why the cell failed, with the circuit-breaker overflows (when the admin API
    /// still answers) and the commonest complaint of Envoy's log, and stops its Envoy.
    async fn fail(&mut self, why: String) {
        self.read_overflows().await;
        let complaint = self.proxy.as_ref().and_then(|p| commonest_complaint(&p.log()));
        let why = match complaint {
            Some((line, n)) => format!("{why}; Envoy logged {n} × `{line}`"),
            None => why,
        };
        eprintln!("FAILED {} x{} N={}: {why}", self.variant, self.workers, self.n);
        self.failed = Some(why);
        self.proxy = None;
    }

    /// Cluster `pool`'s `upstream_rq_pending_overflow` and `upstream_cx_overflow`, kept when
    /// the admin API answers.
    async fn read_overflows(&mut self) {
        let Ok(proxy) = self.alive() else { return };
        let pending = stat(proxy, "cluster.pool.upstream_rq_pending_overflow").await;
        let cx = stat(proxy, "cluster.pool.upstream_cx_overflow").await;
        if let (Ok(pending), Ok(cx)) = (pending, cx) {
            (self.rq_pending_overflow, self.cx_overflow) = (pending, cx);
        }
    }

    fn alive(&mut self) -> Result<&Proxy, String> {
        let proxy = self.proxy.as_mut().ok_or("no Envoy")?;
        if let Ok(Some(status)) = proxy.child.try_wait() {
            return Err(format!("Envoy exited ({status})"));
        }
        Ok(proxy)
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The warning, error or critical line Envoy logged most often (its message, numbers shown as
/// `#`), and how often; stack trace lines are left out.
fn commonest_complaint(log: &str) -> Option<(String, usize)> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for line in log.lines() {
        if !["][warning][", "][error][", "][critical]["].iter().any(|l| line.contains(l))
            || line.contains("UNKNOWN [0x")
            || line.contains("stacktrace for envoy bug")
        {
            continue;
        }
        // [time][thread][level][component] [file:line] message
        let message = line.splitn(6, ']').nth(5).unwrap_or(line).trim();
        let message = message.strip_prefix("wasm log envoy_lb envoy_lb: ").unwrap_or(message);
        let mut shape = String::new();
        for c in message.chars() {
            if !c.is_ascii_digit() {
                shape.push(c);
            } else if !shape.ends_with('#') {
                shape.push('#');
            }
        }
        *counts.entry(shape).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(_, n)| *n)
}

/// An Envoy for the bench (as [`Proxy::start`], with the wasm component's info lines logged
/// and a longer start), or why it did not start.
async fn start_envoy(yaml: &str, workers: u32) -> Result<Proxy, String> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("envoy.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let log = std::fs::File::create(dir.path().join("envoy.log")).unwrap();
    let child = Command::new(envoy_bin())
        .current_dir(repo_root())
        .arg("-c")
        .arg(&cfg)
        .arg("--concurrency")
        .arg(workers.to_string())
        .arg("--disable-hot-restart")
        .arg("--admin-address-path")
        .arg(dir.path().join("admin.txt"))
        .args(["--log-level", "warn", "--component-log-level", "wasm:info"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", envoy_bin().display()));
    let unknown: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut proxy = Proxy { child, dir, admin: unknown, listener: unknown, picker: None };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = proxy.child.try_wait() {
            return Err(format!(
                "Envoy exited ({status}) while starting: {}",
                tail(&proxy.log(), 3)
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("not ready after {START_TIMEOUT:?}"));
        }
        if proxy.admin == unknown {
            if let Ok(text) = std::fs::read_to_string(proxy.dir.path().join("admin.txt")) {
                proxy.admin = text.trim().parse().unwrap_or(unknown);
            }
        } else if proxy.get("/ready").await.is_some_and(|(s, _)| s == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, body) = proxy.get("/listeners?format=json").await.ok_or("admin /listeners")?;
    let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let sa = &v["listener_statuses"][0]["local_address"]["socket_address"];
    proxy.listener = format!("{}:{}", sa["address"].as_str().unwrap_or_default(), sa["port_value"])
        .parse()
        .map_err(|e| format!("listener address: {e}"))?;
    Ok(proxy)
}

/// Whether the cell's Envoy read load reports, none of them invalid.
async fn check_reports(cell: &mut Cell) -> Result<(), String> {
    let proxy = cell.alive()?;
    let read = stat(proxy, "wasmcustom.lb_load_reports_total.pool.pool").await?;
    let invalid = stat(proxy, "wasmcustom.lb_load_reports_invalid_total.pool.pool").await?;
    if read == 0 || invalid > 0 {
        return Err(format!("load reports: {read} read, {invalid} invalid"));
    }
    Ok(())
}

/// A counter or gauge, or why the admin API did not give it.
async fn stat(proxy: &Proxy, name: &str) -> Result<u64, String> {
    let (status, body) = proxy
        .get(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))
        .await
        .ok_or_else(|| format!("admin /stats did not answer ({name})"))?;
    if status != 200 {
        return Err(format!("admin /stats answered {status}"));
    }
    Ok(body
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

async fn bad_answers(proxy: &Proxy) -> Result<u64, String> {
    Ok(stat(proxy, "http.ingress.downstream_rq_4xx").await?
        + stat(proxy, "http.ingress.downstream_rq_5xx").await?)
}

fn open_files(proxy: &Proxy) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{}/fd", proxy.child.id())).ok().map(Iterator::count)
}

/// The largest of the `ready: <n> backends, configure and first tick took <ms> ms` lines, once
/// every worker VM has logged one; `None` when no VM logs one within [`READY_LINE_WAIT`] (a
/// .wasm older than the line), an error when only some do.
async fn configure_ms(proxy: &Proxy, workers: u32, n: usize) -> Result<Option<f64>, String> {
    let deadline = Instant::now() + READY_LINE_WAIT;
    let want = format!("ready: {n} backends, configure and first tick took ");
    loop {
        let log = proxy.log();
        let ms: Vec<f64> = log
            .lines()
            .filter_map(|l| l.split_once(&want))
            .filter_map(|(_, rest)| rest.trim_end().strip_suffix(" ms")?.parse().ok())
            .collect();
        if ms.len() >= workers as usize {
            return Ok(ms.into_iter().reduce(f64::max));
        }
        if Instant::now() > deadline {
            if ms.is_empty() {
                return Ok(None);
            }
            return Err(format!(
                "{} of {workers} worker VMs logged their `ready: {n} backends` line in {:?}",
                ms.len(),
                READY_LINE_WAIT
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One wrk run against the cell's Envoy; an error for any 4xx/5xx answer, a wrk error, a socket
/// timeout or an admin API that stops answering.
async fn load(cell: &mut Cell, script: &Path, seconds: u64, mid: bool) -> Result<Sample, String> {
    let profile = format!("{}-x{}-n{}.data", cell.key, cell.workers, cell.n);
    let proxy = cell.alive()?;
    let rq0 = stat(proxy, "http.ingress.downstream_rq_total").await?;
    let bad0 = bad_answers(proxy).await?;
    let cx0 = stat(proxy, "cluster.pool.upstream_cx_total").await?;
    let cpu0 = proxy.cpu_ticks();
    let started = Instant::now();
    let wrk = tokio::process::Command::new("wrk")
        .args(wrk_args(&format!("http://{}/", proxy.listener), script, seconds))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk not found: run `make wrk`");
    // BENCH_SCALE_PERF=<dir>: the first round's run of each cell profiled (`perf record -g`,
    // 999 Hz), into <dir>/<variant>-x<workers>-n<N>.data; perf's own overhead is in that
    // round's figures.
    let perf = match std::env::var_os("BENCH_SCALE_PERF") {
        Some(dir) if mid => {
            let out = Path::new(&dir).join(profile);
            let child = tokio::process::Command::new("perf")
                .args(["record", "-q", "-F", "999", "-g", "-p", &proxy.pid().to_string(), "-o"])
                .arg(&out)
                .args(["--", "sleep", &seconds.saturating_sub(1).max(1).to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("perf not found (BENCH_SCALE_PERF)");
            Some(child)
        }
        _ => None,
    };
    let (mut rss_load_kib, mut fds_load) = (None, None);
    if mid {
        tokio::time::sleep(Duration::from_millis(seconds * 500)).await;
        rss_load_kib = Some(proxy.rss_kib());
        fds_load = open_files(proxy);
    }
    let out = wrk.wait_with_output().await.map_err(|e| format!("wrk: {e}"))?;
    if let Some(mut perf) = perf {
        let _ = perf.wait().await;
    }
    let proxy = cell.alive()?;
    let cpu1 = proxy.cpu_ticks();
    let elapsed_s = started.elapsed().as_secs_f64();
    let rq1 = stat(proxy, "http.ingress.downstream_rq_total").await?;
    let bad1 = bad_answers(proxy).await?;
    let cx1 = stat(proxy, "cluster.pool.upstream_cx_total").await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("wrk failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let requests = rq1 - rq0;
    if requests == 0 {
        return Err(format!("no request counted: {}", stdout.trim()));
    }
    if bad1 > bad0 {
        return Err(format!("{} 4xx/5xx answers of {requests} requests", bad1 - bad0));
    }
    if let Some(errors) = stdout.lines().find(|l| l.contains("Socket errors")) {
        // Requests cut off when wrk stops are no error; timeouts and refused connections are.
        let timeouts = errors.rsplit("timeout ").next().and_then(|n| n.trim().parse::<u64>().ok());
        if errors.contains("connect ") && !errors.contains("connect 0,") || timeouts > Some(0) {
            return Err(format!("wrk: {}", errors.trim()));
        }
    }
    Ok(Sample {
        us_per_req: (cpu1 - cpu0) as f64 / clock_ticks_per_s() * 1e6 / requests as f64,
        rps: requests as f64 / elapsed_s,
        new_cx: cx1 - cx0,
        requests,
        rss_load_kib,
        fds_load,
    })
}

fn wrk_args(url: &str, script: &Path, seconds: u64) -> Vec<String> {
    vec![
        "-t1".into(),
        format!("-c{CONNECTIONS}"),
        format!("-d{seconds}s"),
        "-s".into(),
        script.display().to_string(),
        url.into(),
    ]
}

/// The plugin config and the Envoy config of one cell. Backend `i` is `s<i>` at `addrs[i]`.
fn envoy_yaml(kind: &Kind, addrs: &[SocketAddr], upstream: Upstream) -> String {
    let ids: Vec<String> = (0..addrs.len()).map(shards::id).collect();
    let pool: Vec<(&str, SocketAddr, u32)> =
        ids.iter().zip(addrs).map(|(id, a)| (id.as_str(), *a, 1)).collect();
    let cfg = match kind {
        Kind::Ours(extra) => plugin_config(&pool, extra.clone()),
        _ => plugin_config(&pool, json!({})),
    };
    let mut doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&render(kind, addrs, &cfg)).unwrap();
    let clusters = doc["static_resources"]["clusters"].as_sequence_mut().unwrap();
    let pool = clusters.iter_mut().find(|c| c["name"] == "pool").expect("no cluster pool");
    pool["circuit_breakers"]["thresholds"][0]["max_connections"] = MAX_CONNECTIONS.into();
    if upstream == Upstream::PerRequest {
        let options: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            "{'@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, \
             common_http_protocol_options: {max_requests_per_connection: 1}, \
             explicit_http_config: {http_protocol_options: {}}}",
        )
        .unwrap();
        pool["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] = options;
    }
    serde_yaml_ng::to_string(&doc).unwrap()
}

/// Keep-alive: loads the cell until its Envoy holds [`WARM_COVERAGE`] of N × pools upstream
/// connections, or a step opens almost none (N / 1,000), or for `warmup_max_seconds`; returns the share
/// held. Per request: one step (V8 tier-up), no share.
async fn warm_up(cell: &mut Cell, script: &Path, p: &ScaleParams) -> Result<Option<f64>, String> {
    let target = (cell.n * cell.pools) as f64;
    let started = Instant::now();
    loop {
        let step = load(cell, script, p.warmup_step_seconds, false).await?;
        cell.warmup_s = started.elapsed().as_secs_f64();
        if p.upstream == Upstream::PerRequest {
            return Ok(None);
        }
        let active = stat(cell.alive()?, "cluster.pool.upstream_cx_active").await? as f64;
        let coverage = active / target;
        if coverage >= WARM_COVERAGE
            || step.new_cx <= (cell.n / 1_000) as u64
            || started.elapsed() >= Duration::from_secs(p.warmup_max_seconds)
        {
            return Ok(Some(coverage));
        }
    }
}

/// Runs the bench, writes its section of `p.out` (the others are kept) and returns it.
pub async fn run(p: &ScaleParams) -> String {
    require_tools(true, false, &[]);
    let begun = Instant::now();
    let start = RunStart::now();
    let (soft, hard) = open_file_limit();
    let variants: Vec<ScaleVariant> =
        variants().into_iter().filter(|v| p.keys.is_empty() || p.keys.contains(v.key)).collect();
    let largest = p.sizes.iter().copied().max().unwrap_or(0);
    eprintln!(
        "scale bench: {} variants x N {:?} x workers {:?}, {} rounds of {} s; ulimit -n {soft} \
         (hard {hard}); starting {largest} backends",
        variants.len(),
        p.sizes,
        p.workers,
        p.rounds,
        p.seconds
    );
    let shards = Shards::start(largest, &*p.launcher);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("x-user.lua");
    std::fs::write(&script, WRK_SCRIPT).unwrap();

    let mut done: Vec<Cell> = Vec::new();
    let mut measured = Duration::ZERO;
    for (vi, v) in variants.iter().enumerate() {
        let mut cells = Vec::new();
        for &workers in &p.workers {
            for &asked in &p.sizes {
                let pools = pools(&v.kind, workers);
                let n = match p.upstream {
                    Upstream::KeepAlive => fitting(asked, pools, soft),
                    Upstream::PerRequest => asked,
                };
                let mut cell = Cell {
                    variant: vi,
                    key: v.key,
                    workers,
                    asked,
                    n,
                    pools,
                    proxy: None,
                    failed: None,
                    configure_ms: None,
                    rss_idle_kib: None,
                    idle_cpu_pct: None,
                    coverage: None,
                    warmup_s: 0.0,
                    samples: Vec::new(),
                    rq_pending_overflow: 0,
                    cx_overflow: 0,
                };
                let yaml = envoy_yaml(&v.kind, &shards.addrs[..n], p.upstream);
                match start_envoy(&yaml, workers).await {
                    Ok(proxy) => cell.proxy = Some(proxy),
                    Err(e) => cell.fail(e).await,
                }
                cells.push(cell);
            }
        }
        for cell in cells.iter_mut().filter(|c| c.failed.is_none()) {
            if matches!(v.kind, Kind::Ours(_)) {
                match configure_ms(cell.proxy.as_ref().unwrap(), cell.workers, cell.n).await {
                    Ok(ms) => cell.configure_ms = ms,
                    Err(e) => cell.fail(e).await,
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for cell in cells.iter_mut().filter(|c| c.failed.is_none()) {
            cell.rss_idle_kib = cell.proxy.as_ref().map(Proxy::rss_kib);
        }
        for cell in cells.iter_mut().filter(|c| c.failed.is_none()) {
            match warm_up(cell, &script, p).await {
                Ok(coverage) => cell.coverage = coverage,
                Err(e) => cell.fail(format!("warm-up: {e}")).await,
            }
            eprintln!(
                "({}) x{} N={}: warm-up {:.0} s, {:.1}% of N x {} connections",
                v.key,
                cell.workers,
                cell.n,
                cell.warmup_s,
                cell.coverage.unwrap_or(0.0) * 100.0,
                cell.pools
            );
        }
        // Idle: every Envoy of the group at once, no traffic, health checks running.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let ticks0: Vec<Option<u64>> =
            cells.iter_mut().map(|c| c.alive().ok().map(Proxy::cpu_ticks)).collect();
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(p.idle_seconds)).await;
        let idle_s = t0.elapsed().as_secs_f64();
        for (cell, t0) in cells.iter_mut().zip(ticks0) {
            if let (Some(t0), Ok(proxy)) = (t0, cell.alive()) {
                let busy_s = (proxy.cpu_ticks() - t0) as f64 / clock_ticks_per_s();
                cell.idle_cpu_pct = Some(busy_s / idle_s * 100.0);
            }
        }
        let t0 = Instant::now();
        for round in 0..p.rounds {
            for cell in cells.iter_mut().filter(|c| c.failed.is_none()) {
                match load(cell, &script, p.seconds, round == 0).await {
                    Ok(s) => {
                        eprintln!(
                            "round {}/{} ({}) {} x{} N={}: {:.1} µs CPU/req, {:.0} req/s, {} new cx",
                            round + 1,
                            p.rounds,
                            v.key,
                            v.name,
                            cell.workers,
                            cell.n,
                            s.us_per_req,
                            s.rps,
                            s.new_cx
                        );
                        cell.samples.push(s);
                    }
                    Err(e) => cell.fail(e).await,
                }
            }
        }
        measured += t0.elapsed();
        // The algorithms that ask for load reports got them, every one readable.
        let reads_reports = matches!(&v.kind, Kind::Ours(cfg) if cfg.get("load_reports").is_some());
        for cell in cells.iter_mut().filter(|c| reads_reports && c.failed.is_none()) {
            if let Err(e) = check_reports(cell).await {
                cell.fail(e).await;
            }
        }
        for cell in &mut cells {
            cell.read_overflows().await;
            cell.proxy = None;
        }
        done.extend(cells);
        eprintln!("scale bench: ({}) done after {:.0} s", v.key, begun.elapsed().as_secs_f64());
    }
    drop(shards);
    let md = report(p, &start, &variants, &done, (soft, hard), measured, begun.elapsed());
    write_scale_section(&p.out, &md);
    md
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn report(
    p: &ScaleParams,
    start: &RunStart,
    variants: &[ScaleVariant],
    cells: &[Cell],
    (soft, hard): (usize, usize),
    measured: Duration,
    total: Duration,
) -> String {
    let mut md = String::new();
    let sizes: Vec<String> = p.sizes.iter().map(|&n| thousands(n)).collect();
    let workers: Vec<String> = p.workers.iter().map(u32::to_string).collect();
    let _ = writeln!(
        md,
        "{SCALE_HEADING} Envoy CPU per request, idle CPU, configure time and memory, N = {} \
         backends\n",
        sizes.join(", ")
    );
    md.push_str(&run_header(start));
    let _ = writeln!(
        md,
        "- command: `BENCH_ROUNDS={} BENCH_SECONDS={} cargo bench --bench scale` (`make bench`; \
         BENCH_SCALE_CONNECTIONS={}, BENCH_SCALE_SIZES=`{}`, BENCH_SCALE_VARIANTS=`{}`); {} \
         interleaved rounds per group, {:.0} s of measurement, {:.1} min in all (starts, \
         warm-ups, idle windows); 1-minute load average {:.2} at the end",
        p.rounds,
        p.seconds,
        p.upstream.name(),
        p.sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
        if p.keys.is_empty() { "all" } else { &p.keys },
        p.rounds,
        measured.as_secs_f64(),
        total.as_secs_f64() / 60.0,
        super::load_average()
    );
    let _ = writeln!(
        md,
        "- backends: the first N of {} demo backends, each on its own loopback address \
         127.2.x.y, served by child processes of at most {} (benches/common/shards.rs); all \
         healthy, weights 1; plugin config `backends` and cluster `pool` list the same N",
        thousands(p.sizes.iter().copied().max().unwrap_or(0)),
        thousands(shards::SHARD_SIZE)
    );
    let _ = writeln!(
        md,
        "- load: `wrk -t1 -c{CONNECTIONS} -d{}s -s x-user.lua` (keep-alive), the script sending \
         a new `x-user: user-<k>` on every request, to every variant; ring_hash and maglev hash \
         that header (`hash_on: {{\"header\": \"x-user\"}}`), so their picks spread over the \
         pool. `source_ip_hash` is maglev keyed by the client address: not measured twice",
        p.seconds
    );
    let _ = writeln!(
        md,
        "- extras: `\"health_check\": {}, \"outlier_detection\": {}`; rows without them have \
         neither",
        health_check(),
        outlier_detection()
    );
    let _ = writeln!(
        md,
        "- Envoy: `--concurrency {} --log-level warn --component-log-level wasm:info`, the \
         shipped envoy.yaml (override_host, retries, retry budget); cluster `pool`'s circuit \
         breaker `max_connections: {}` (Envoy's default 1,024 is below N × workers keep-alive \
         connections), `max_requests` and `max_pending_requests` at Envoy's default 1,024",
        workers.join("|"),
        thousands(MAX_CONNECTIONS as usize)
    );
    let _ = writeln!(
        md,
        "- a group is one variant: its Envoys for every N and worker count up together, each \
         warmed up with the same load ({} s steps) until it holds {:.0}% of N × (workers [+ 1 \
         for probes]) upstream connections, or a step opens fewer than N / 1,000, or for {} s \
         (per_request: one step); then the idle window ({} s, no traffic, all of the group's \
         Envoys at once); then the rounds, interleaved across N and workers",
        p.warmup_step_seconds,
        WARM_COVERAGE * 100.0,
        p.warmup_max_seconds,
        p.idle_seconds
    );
    let mut capped: Vec<(usize, usize, usize)> =
        cells.iter().filter(|c| c.n != c.asked).map(|c| (c.pools, c.asked, c.n)).collect();
    capped.sort_unstable();
    capped.dedup();
    let capped: Vec<String> = capped
        .iter()
        .map(|&(pools, asked, n)| {
            format!(
                "{} connections per backend: N = {} measured at N = {} ({} + {} reserve ≤ {})",
                pools,
                thousands(asked),
                thousands(n),
                thousands(n * pools),
                FD_RESERVE,
                thousands(soft)
            )
        })
        .collect();
    let fds = match p.upstream {
        Upstream::KeepAlive => format!(
            "Envoy's default keep-alive pools (no idle timeout), the same for every N: a warm \
             Envoy holds one upstream connection per backend per worker, and with health \
             checks one more per backend for the probes (one worker sends them; Envoy pools \
             callouts apart from the data path), so N × (workers [+ 1]) sockets. 10,000 \
             backends at 2 workers do not fit: Envoy's `socket(2)` fails with EMFILE \
             (`Too many open files`, an `envoy_bug` line per connection) and clients get 503s. \
             A size that does not fit is measured at the largest multiple of {FIT_STEP} that \
             does, and the cell says so: {}. `BENCH_SCALE_CONNECTIONS=per_request` runs every \
             N as asked, each request on a new upstream connection",
            if capped.is_empty() { "none here".to_owned() } else { capped.join("; ") }
        ),
        Upstream::PerRequest => "`BENCH_SCALE_CONNECTIONS=per_request`: \
             `max_requests_per_connection: 1` on cluster `pool` for every N, so every request \
             opens (and Envoy closes) an upstream connection and any N fits; that connect is \
             part of every figure below, which brings the ratios nearer 1 than Envoy's default \
             keep-alive pools would"
            .to_owned(),
    };
    let _ = writeln!(
        md,
        "- open files: `ulimit -n` {} (hard limit {}: not raised, no CAP_SYS_RESOURCE), per \
         process; the backends live in other processes. Upstream connections: {fds}",
        thousands(soft),
        thousands(hard)
    );
    let _ = writeln!(
        md,
        "- CPU/req = Δ(utime+stime) of the Envoy process (/proc/<pid>/stat, CLK_TCK {}) ÷ Δ \
         `http.ingress.downstream_rq_total` over one wrk run; no 4xx/5xx answer (checked: a \
         cell with any is reported failed, below); cells: median of the rounds [min–max], × the \
         same row's N = 3\n",
        clock_ticks_per_s()
    );

    let of = |vi: usize, w: u32, n: usize| {
        cells.iter().find(|c| c.variant == vi && c.workers == w && c.asked == n)
    };
    let head = |md: &mut String, title: &str| {
        let _ = writeln!(md, "### {title}\n");
        let cols: Vec<String> = p.sizes.iter().map(|&n| format!("N = {}", thousands(n))).collect();
        let _ = writeln!(md, "| variant | workers | {} |", cols.join(" | "));
        let _ = writeln!(md, "|---|---|{}", "---|".repeat(cols.len()));
    };
    let n_note = |c: &Cell| {
        if c.n != c.asked {
            format!(" (N = {})", thousands(c.n))
        } else {
            String::new()
        }
    };
    let med = |c: &Cell| {
        (!c.samples.is_empty() && c.failed.is_none())
            .then(|| median(&c.samples.iter().map(|s| s.us_per_req).collect::<Vec<_>>()))
    };

    let first = thousands(p.sizes[0]);
    head(&mut md, &format!("Envoy CPU per request (µs): median [min–max] × N = {first}"));
    for &w in &p.workers {
        for (vi, v) in variants.iter().enumerate() {
            let base = of(vi, w, p.sizes[0]).and_then(med);
            let mut row = format!("| ({}) {} | {w} |", v.key, v.name);
            for &n in &p.sizes {
                let Some(c) = of(vi, w, n) else { continue };
                let cell = match med(c) {
                    Some(m) => {
                        let (lo, hi) =
                            min_max(&c.samples.iter().map(|s| s.us_per_req).collect::<Vec<_>>());
                        let ratio = base.map_or(String::new(), |b| format!(" ×{:.2}", m / b));
                        format!("{m:.1} [{lo:.0}–{hi:.0}]{ratio}{}", n_note(c))
                    }
                    None => format!("failed{}", n_note(c)),
                };
                let _ = write!(row, " {cell} |");
            }
            let _ = writeln!(md, "{row}");
        }
    }
    // The goal, for the rows it names.
    let last = *p.sizes.last().unwrap();
    let mut verdicts = Vec::new();
    for &w in &p.workers {
        for (vi, v) in variants.iter().enumerate() {
            if !matches!(&v.kind, Kind::Ours(cfg) if cfg.get("health_check").is_some()) {
                continue;
            }
            let (Some(base), Some(top)) = (of(vi, w, p.sizes[0]), of(vi, w, last)) else {
                continue;
            };
            let verdict = match (med(base), med(top)) {
                (Some(b), Some(t)) => (t / b <= GOAL_RATIO, format!("×{:.2}", t / b)),
                _ => (false, "failed".to_owned()),
            };
            verdicts.push((verdict, format!("({}) x{w}", v.key)));
        }
    }
    if p.sizes.len() > 1 && !verdicts.is_empty() {
        let missed: Vec<String> = verdicts
            .iter()
            .filter(|((met, _), _)| !met)
            .map(|((_, r), k)| format!("{k} {r}"))
            .collect();
        let _ = writeln!(
            md,
            "\nGoal (issue #16): with health_check + outlier_detection, CPU per request at the \
             largest N ≤ {GOAL_RATIO:.2} × at N = {first}, at every worker count: met in {} of {} \
             rows{}.",
            verdicts.len() - missed.len(),
            verdicts.len(),
            if missed.is_empty() {
                String::new()
            } else {
                format!("; not met: {}", missed.join(", "))
            }
        );
    }

    let _ = writeln!(md);
    head(
        &mut md,
        &format!("Idle Envoy CPU (% of one core over {} s without traffic)", p.idle_seconds),
    );
    table(&mut md, p, variants, &of, &|c| c.idle_cpu_pct.map(|v| format!("{v:.1}{}", n_note(c))));

    let _ = writeln!(md);
    head(
        &mut md,
        "Configure time (ms): on_configure + first tick, the slowest worker VM's `ready:` line",
    );
    table(&mut md, p, variants, &of, &|c| c.configure_ms.map(|v| format!("{v:.1}{}", n_note(c))));

    let _ = writeln!(md);
    head(&mut md, "Envoy memory (VmRSS MiB): idle after configure / under load");
    table(&mut md, p, variants, &of, &|c| {
        let idle = c.rss_idle_kib? as f64 / 1024.0;
        let load = c.samples.first().and_then(|s| s.rss_load_kib).map(|k| k as f64 / 1024.0);
        Some(match load {
            Some(l) => format!("{idle:.0} / {l:.0}{}", n_note(c)),
            None => format!("{idle:.0} / –{}", n_note(c)),
        })
    });

    let _ = writeln!(md);
    head(
        &mut md,
        "Upstream connections: held after warm-up ÷ N × (workers [+ 1]), opened per 1,000 \
         requests in the rounds, Envoy's open files under load",
    );
    table(&mut md, p, variants, &of, &|c| {
        let coverage = c.coverage.map_or("–".to_owned(), |v| format!("{:.0}%", v * 100.0));
        let (new, rq) = c.samples.iter().fold((0, 0), |(a, b), s| (a + s.new_cx, b + s.requests));
        let per_k = (rq > 0).then(|| new as f64 * 1000.0 / rq as f64)?;
        let fds = c.samples.first().and_then(|s| s.fds_load).map_or("–".into(), thousands);
        Some(format!("{coverage} / {per_k:.1} / {fds}{}", n_note(c)))
    });

    let failed: Vec<&Cell> = cells.iter().filter(|c| c.failed.is_some()).collect();
    let overflow: Vec<&Cell> =
        cells.iter().filter(|c| c.rq_pending_overflow + c.cx_overflow > 0).collect();
    let _ = writeln!(md, "\n### Failures and circuit-breaker overflows\n");
    if failed.is_empty() && overflow.is_empty() {
        let _ = writeln!(
            md,
            "None: every cell answered only 2xx, and `upstream_rq_pending_overflow` and \
             `upstream_cx_overflow` of cluster `pool` stayed 0."
        );
    }
    for c in failed {
        let v = &variants[c.variant];
        let _ = writeln!(
            md,
            "- ({}) {} x{} N = {}: {}",
            v.key,
            v.name,
            c.workers,
            thousands(c.n),
            c.failed.as_deref().unwrap_or_default()
        );
    }
    for c in overflow {
        let v = &variants[c.variant];
        let _ = writeln!(
            md,
            "- ({}) {} x{} N = {}: cluster `pool` upstream_rq_pending_overflow {}, \
             upstream_cx_overflow {} over the group's run",
            v.key,
            v.name,
            c.workers,
            thousands(c.n),
            c.rq_pending_overflow,
            c.cx_overflow
        );
    }
    md
}

fn table<'c>(
    md: &mut String,
    p: &ScaleParams,
    variants: &[ScaleVariant],
    of: &dyn Fn(usize, u32, usize) -> Option<&'c Cell>,
    fmt: &dyn Fn(&Cell) -> Option<String>,
) {
    for &w in &p.workers {
        for (vi, v) in variants.iter().enumerate() {
            let mut row = format!("| ({}) {} | {w} |", v.key, v.name);
            for &n in &p.sizes {
                let cell = of(vi, w, n).and_then(fmt).unwrap_or_else(|| "–".into());
                let _ = write!(row, " {cell} |");
            }
            let _ = writeln!(md, "{row}");
        }
    }
}
