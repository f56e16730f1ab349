//! `make bench` (Envoy part): Envoy's CPU time per request and its memory, with the filter and
//! without, on a real Envoy in front of three fast demo backends, loaded by `wrk` (keep-alive).
//!
//! Variants: (a) Envoy's native round robin, no wasm filter; (b) a no-op wasm filter
//! (`noop-filter/`, the floor of any wasm filter); (c)–(g) envoy-lb with several algorithms.
//! CPU per request = (utime + stime of the Envoy process, /proc/<pid>/stat) / (increase of
//! `http.ingress.downstream_rq_total`) over one wrk run. Every Envoy (variant × concurrency)
//! stays up for the whole run and rounds are interleaved (a b c … a b c …), so slow drift of the
//! machine spreads over all variants. Env: BENCH_ROUNDS (default 7), BENCH_SECONDS (wrk
//! duration per measurement, default 3), BENCH_OUT (default bench/RESULTS.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{backends, client, envoy_bin, plugin_config, repo_root, shipped_config, wasm_path};

const CONCURRENCIES: [u32; 2] = [1, 2];
const CONNECTIONS: u32 = 16;
/// Sent on every request of every variant (maglev hashes it), so requests are alike.
const HASH_HEADER: &str = "x-user: user-42";

enum Kind {
    /// No wasm filter; cluster `pool` with a plain ROUND_ROBIN policy.
    Native,
    /// The shipped config with the no-op filter's .wasm.
    Noop,
    /// The shipped config with envoy-lb and these plugin-config fields.
    Ours(serde_json::Value),
}

struct Variant {
    key: char,
    name: &'static str,
    kind: Kind,
}

fn variants() -> Vec<Variant> {
    let sticky = json!({"cookie": "lb_session", "secrets": ["a benchmark secret, at least 32 bytes"],
        "secure": false});
    let health = json!({"path": "/healthz", "interval_ms": 2000, "timeout_ms": 1000});
    vec![
        Variant { key: 'a', name: "native round_robin (no wasm)", kind: Kind::Native },
        Variant { key: 'b', name: "no-op wasm filter", kind: Kind::Noop },
        Variant {
            key: 'c',
            name: "envoy-lb round_robin",
            kind: Kind::Ours(json!({"algorithm": "round_robin"})),
        },
        Variant {
            key: 'd',
            name: "envoy-lb round_robin + sticky + health_check",
            kind: Kind::Ours(
                json!({"algorithm": "round_robin", "sticky": sticky, "health_check": health}),
            ),
        },
        Variant {
            key: 'e',
            name: "envoy-lb least_request",
            kind: Kind::Ours(json!({"algorithm": "least_request"})),
        },
        Variant {
            key: 'f',
            name: "envoy-lb least_time",
            kind: Kind::Ours(json!({"algorithm": "least_time"})),
        },
        Variant {
            key: 'g',
            name: "envoy-lb maglev (hash_on header)",
            kind: Kind::Ours(json!({"algorithm": "maglev", "hash_on": {"header": "x-user"}})),
        },
    ]
}

fn noop_wasm_path() -> PathBuf {
    let path = repo_root().join("target/wasm32-wasip1/release/noop_filter.wasm");
    assert!(
        path.is_file(),
        "{} missing: run `cargo build -p noop-filter --release --target wasm32-wasip1` \
         (or `make bench`)",
        path.display()
    );
    path
}

/// envoy/envoy.yaml for `kind` (the harness's rendering); native: no wasm filter and a plain
/// ROUND_ROBIN cluster.
fn render(kind: &Kind, endpoints: &[SocketAddr], ours_config: &str) -> String {
    let wasm = match kind {
        Kind::Native => None,
        Kind::Noop => Some(noop_wasm_path()),
        Kind::Ours(_) => Some(wasm_path()),
    };
    let mut doc = shipped_config(wasm.as_deref(), ours_config, endpoints);
    if matches!(kind, Kind::Native) {
        let clusters = doc["static_resources"]["clusters"].as_sequence_mut().unwrap();
        let pool = clusters.iter_mut().find(|c| c["name"] == "pool").expect("no cluster pool");
        let pool = pool.as_mapping_mut().unwrap();
        pool.remove("load_balancing_policy");
        pool.insert("lb_policy".into(), "ROUND_ROBIN".into());
    }
    serde_yaml_ng::to_string(&doc).unwrap()
}

/// One running Envoy; killed on drop.
struct Proxy {
    child: Child,
    dir: tempfile::TempDir,
    admin: SocketAddr,
    listener: SocketAddr,
}

impl Proxy {
    async fn start(yaml: &str, concurrency: u32) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("envoy.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        let log = std::fs::File::create(dir.path().join("envoy.log")).unwrap();
        let child = Command::new(envoy_bin())
            .current_dir(repo_root())
            .arg("-c")
            .arg(&cfg)
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(dir.path().join("admin.txt"))
            .arg("--log-level")
            .arg("warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", envoy_bin().display()));
        let unknown: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut proxy = Proxy { child, dir, admin: unknown, listener: unknown };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = proxy.child.try_wait().unwrap() {
                panic!("Envoy exited ({status}) while starting:\n{}", proxy.log());
            }
            assert!(Instant::now() < deadline, "Envoy not ready in time:\n{}", proxy.log());
            if proxy.admin == unknown {
                if let Ok(text) = std::fs::read_to_string(proxy.dir.path().join("admin.txt")) {
                    proxy.admin = text.trim().parse().unwrap_or(unknown);
                }
            } else if proxy.get("/ready").await.is_some_and(|(s, _)| s == 200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, body) = proxy.get("/listeners?format=json").await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let sa = &v["listener_statuses"][0]["local_address"]["socket_address"];
        proxy.listener =
            format!("{}:{}", sa["address"].as_str().unwrap(), sa["port_value"]).parse().unwrap();
        proxy
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = client().get(format!("http://{}{path}", self.admin)).send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    async fn counter(&self, name: &str) -> u64 {
        let (_, body) = self
            .get(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))
            .await
            .expect("admin /stats unreachable");
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    /// utime + stime in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after "(comm)": state is field 3, utime 14, stime 15.
        let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap()
    }

    /// VmRSS in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wrk_args(url: &str, seconds: u64) -> Vec<String> {
    ["-t1", &format!("-c{CONNECTIONS}"), &format!("-d{seconds}s"), "-H", HASH_HEADER, url]
        .map(str::to_owned)
        .to_vec()
}

/// Runs wrk against `proxy`; `rss_mid` samples VmRSS half-way. Returns (µs CPU/req, req/s,
/// RSS KiB mid-run if asked).
async fn measure(proxy: &Proxy, seconds: u64, ticks_per_s: f64, rss_mid: bool) -> Sample {
    let url = format!("http://{}/", proxy.listener);
    let rq0 = proxy.counter("http.ingress.downstream_rq_total").await;
    let bad0 = proxy.counter("http.ingress.downstream_rq_4xx").await
        + proxy.counter("http.ingress.downstream_rq_5xx").await;
    let cpu0 = proxy.cpu_ticks();
    let started = Instant::now();
    let wrk = tokio::process::Command::new("wrk")
        .args(wrk_args(&url, seconds))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk not found: `apt-get install wrk` (make bench installs it)");
    let mut rss = None;
    if rss_mid {
        tokio::time::sleep(Duration::from_millis(seconds * 500)).await;
        rss = Some(proxy.rss_kib());
    }
    let out = wrk.wait_with_output().await.unwrap();
    let cpu1 = proxy.cpu_ticks();
    let elapsed = started.elapsed().as_secs_f64();
    let rq1 = proxy.counter("http.ingress.downstream_rq_total").await;
    let bad1 = proxy.counter("http.ingress.downstream_rq_4xx").await
        + proxy.counter("http.ingress.downstream_rq_5xx").await;
    assert!(out.status.success(), "wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    let requests = rq1 - rq0;
    assert!(requests > 0, "no requests counted:\n{}", String::from_utf8_lossy(&out.stdout));
    // Requests cut off when wrk stops have no answer; none may be answered 4xx/5xx.
    assert_eq!(bad1, bad0, "4xx/5xx answers:\n{}", proxy.log());
    let cpu_s = (cpu1 - cpu0) as f64 / ticks_per_s;
    Sample {
        us_per_req: cpu_s * 1e6 / requests as f64,
        rps: requests as f64 / elapsed,
        rss_load_kib: rss,
    }
}

struct Sample {
    us_per_req: f64,
    rps: f64,
    rss_load_kib: Option<u64>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(default)
}

fn shell(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':'])))
        .unwrap_or("unknown")
        .to_owned()
}

fn size_kb(path: &Path) -> String {
    std::fs::metadata(path)
        .map(|m| format!("{} bytes ({} KB)", m.len(), m.len() / 1024))
        .unwrap_or_else(|_| "missing".into())
}

struct Cell {
    variant: usize,
    concurrency: u32,
    proxy: Proxy,
    samples: Vec<Sample>,
    rss_idle_kib: u64,
}

#[tokio::main]
async fn main() {
    let rounds = env_u64("BENCH_ROUNDS", 7) as usize;
    let seconds = env_u64("BENCH_SECONDS", 3);
    let out_path = std::env::var_os("BENCH_OUT")
        .map_or_else(|| repo_root().join("bench/RESULTS.md"), PathBuf::from);
    let ticks_per_s: f64 = shell("getconf", &["CLK_TCK"]).parse().unwrap_or(100.0);
    // Fail before starting anything when a piece is missing.
    let (_, _) = (wasm_path(), noop_wasm_path());
    assert!(
        Command::new("wrk").arg("--version").output().is_ok(),
        "wrk not found: `apt-get install wrk` (make bench installs it)"
    );
    let envoy_version = shell(envoy_bin().to_str().unwrap(), &["--version"]);
    let envoy_version = envoy_version.split_once("version: ").map_or(&*envoy_version, |(_, v)| v);

    let backends = backends(3).await;
    let endpoints: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let pool: Vec<(&str, SocketAddr, u32)> = backends.iter().map(|b| (b.id(), b.addr, 1)).collect();
    let variants = variants();

    eprintln!("starting {} Envoys", variants.len() * CONCURRENCIES.len());
    let mut cells = Vec::new();
    for &concurrency in &CONCURRENCIES {
        for (i, v) in variants.iter().enumerate() {
            let cfg = match &v.kind {
                Kind::Ours(extra) => plugin_config(&pool, extra.clone()),
                _ => plugin_config(&pool, json!({})),
            };
            let proxy = Proxy::start(&render(&v.kind, &endpoints, &cfg), concurrency).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let rss_idle_kib = proxy.rss_kib();
            // Warm-up: connections to the backends, V8 tier-up.
            measure(&proxy, 1, ticks_per_s, false).await;
            cells.push(Cell { variant: i, concurrency, proxy, samples: Vec::new(), rss_idle_kib });
        }
    }
    let t0 = Instant::now();
    for round in 0..rounds {
        for cell in &mut cells {
            let s = measure(&cell.proxy, seconds, ticks_per_s, round == 0).await;
            eprintln!(
                "round {}/{rounds} ({}) {} x{}: {:.1} µs CPU/req, {:.0} req/s",
                round + 1,
                variants[cell.variant].key,
                variants[cell.variant].name,
                cell.concurrency,
                s.us_per_req,
                s.rps
            );
            cell.samples.push(s);
        }
    }
    let measured = t0.elapsed();

    let mut md = String::new();
    let date = shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let _ = writeln!(md, "# Envoy benchmark: CPU per request and memory\n");
    let _ = writeln!(md, "- date: {date}");
    let _ = writeln!(md, "- machine: {} CPUs (nproc), {}", shell("nproc", &[]), cpu_model());
    let _ = writeln!(md, "- Envoy: `{envoy_version}`");
    let _ = writeln!(
        md,
        "- command: `BENCH_ROUNDS={rounds} BENCH_SECONDS={seconds} cargo bench --bench envoy` \
         (`make bench`); {rounds} interleaved rounds, {:.0} s of measurement",
        measured.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "- load: `wrk {}` per measurement (keep-alive), 3 demo backends (weights 1) on loopback; \
         Envoy `--concurrency 1|2 --log-level warn`, all Envoys up for the whole run",
        wrk_args("http://127.0.0.1:<port>/", seconds)
            .join(" ")
            .replace(HASH_HEADER, "'x-user: user-42'")
    );
    let _ = writeln!(
        md,
        "- CPU/req = Δ(utime+stime) of the Envoy process (/proc/<pid>/stat, CLK_TCK {ticks_per_s}) \
         / Δ `http.ingress.downstream_rq_total`; no 4xx/5xx answer (checked)\n"
    );
    let _ = writeln!(md, "## Envoy CPU per request (µs)\n");
    let _ = writeln!(
        md,
        "| variant | workers | median µs/req | min–max | × native (a) | × no-op (b) | req/s (median) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    let med = |c: &Cell| median(&c.samples.iter().map(|s| s.us_per_req).collect::<Vec<_>>());
    for &concurrency in &CONCURRENCIES {
        let of = |i: usize| cells.iter().find(|c| c.variant == i && c.concurrency == concurrency);
        let (native, noop) = (of(0).map(med).unwrap(), of(1).map(med).unwrap());
        for (i, v) in variants.iter().enumerate() {
            let c = of(i).unwrap();
            let us: Vec<f64> = c.samples.iter().map(|s| s.us_per_req).collect();
            let rps: Vec<f64> = c.samples.iter().map(|s| s.rps).collect();
            let (lo, hi) = us.iter().fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
            let m = median(&us);
            let _ = writeln!(
                md,
                "| ({}) {} | {concurrency} | {m:.1} | {lo:.1}–{hi:.1} | {:.2} | {:.2} | {:.0} |",
                v.key,
                v.name,
                m / native,
                m / noop,
                median(&rps)
            );
        }
    }
    let _ = writeln!(md, "\n## Envoy memory (VmRSS, MiB)\n");
    let _ = writeln!(md, "Idle: after start, before any request. Under load: half-way through the first round's wrk run.\n");
    let _ = writeln!(md, "| variant | workers | idle | under load |");
    let _ = writeln!(md, "|---|---|---|---|");
    for c in cells.iter().filter(|c| c.variant == 0 || c.variant == 2) {
        let v = &variants[c.variant];
        let load = c.samples.first().and_then(|s| s.rss_load_kib).unwrap_or(0);
        let _ = writeln!(
            md,
            "| ({}) {} | {} | {:.1} | {:.1} |",
            v.key,
            v.name,
            c.concurrency,
            c.rss_idle_kib as f64 / 1024.0,
            load as f64 / 1024.0
        );
    }
    let _ = writeln!(md, "\n## Filter sizes\n");
    let _ = writeln!(md, "| .wasm | size |");
    let _ = writeln!(md, "|---|---|");
    let _ = writeln!(md, "| envoy_lb.wasm (`make build`) | {} |", size_kb(&wasm_path()));
    let _ = writeln!(md, "| noop_filter.wasm | {} |", size_kb(&noop_wasm_path()));

    println!("{md}");
    if let Some(dir) = out_path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(&out_path, md).unwrap();
    eprintln!("written to {}", out_path.display());
    drop(cells);
    drop(backends);
}
