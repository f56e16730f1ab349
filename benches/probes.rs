//! `make bench` (health-checking part): Envoy CPU per health-check probe, Envoy's native active
//! health checking beside envoy-lb's prober, on the same cluster, in one run.
//!
//! For N = 1,000 and 10,000 backends (child-process shards, benches/common/shards.rs), four
//! Envoys at `--concurrency 2`, no client traffic: (a) native round robin with the cluster's
//! own HTTP health checker, (b) native round robin without health checks (a's idle floor),
//! (c) envoy-lb round_robin with its `health_check`, (d) envoy-lb round_robin without (c's idle
//! floor). Both checkers probe `/healthz` of every backend once per interval (1 s at 1,000
//! backends, 10 s at 10,000: 1,000 probes a second either way). CPU per probe = (Δ CPU of the
//! Envoy process − Δ CPU of its floor over the same window) ÷ probes, where probes are
//! `cluster.pool.health_check.attempt` (native) or `cluster.pool.upstream_rq_total` (envoy-lb's
//! probes are callouts through the cluster, and nothing else is sent). Windows are
//! interleaved (a b c d a b c d ...), medians of BENCH_ROUNDS (default 3) windows of
//! BENCH_SECONDS (default 10).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use common::shards::{self, Shards};
use common::{clock_ticks_per_s, median, render, run_header, Kind, Proxy, RunStart};
use support::plugin_config;

const SIZES: [(usize, u64); 2] = [(1_000, 1_000), (10_000, 10_000)];
const GOAL: f64 = 2.0;

struct Cell {
    name: &'static str,
    proxy: Proxy,
    counter: &'static str,
    cpu: Vec<f64>,
    probes: Vec<f64>,
}

fn yaml(addrs: &[SocketAddr], native: bool, checks: bool, interval_ms: u64) -> String {
    let ids: Vec<String> = (0..addrs.len()).map(shards::id).collect();
    let pool: Vec<(&str, SocketAddr, u32)> =
        ids.iter().zip(addrs).map(|(id, a)| (id.as_str(), *a, 1)).collect();
    let mut extra = json!({"algorithm": "round_robin"});
    if checks && !native {
        extra["health_check"] =
            json!({"path": "/healthz", "interval_ms": interval_ms, "timeout_ms": 500});
    }
    let cfg = plugin_config(&pool, extra);
    let kind = if native { Kind::Native } else { Kind::Ours(json!({})) };
    let mut doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&render(&kind, addrs, &cfg)).unwrap();
    let clusters = doc["static_resources"]["clusters"].as_sequence_mut().unwrap();
    let pool = clusters.iter_mut().find(|c| c["name"] == "pool").expect("no cluster pool");
    pool["circuit_breakers"]["thresholds"][0]["max_connections"] = 100_000.into();
    if checks && native {
        let hc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&format!(
            "[{{timeout: 0.5s, interval: {0}s, no_traffic_interval: {0}s, unhealthy_threshold: 3, \
             healthy_threshold: 2, http_health_check: {{path: /healthz}}}}]",
            interval_ms as f64 / 1000.0
        ))
        .unwrap();
        pool["health_checks"] = hc;
    }
    serde_yaml_ng::to_string(&doc).unwrap()
}

async fn window(cell: &mut Cell, seconds: u64) {
    let (cpu0, n0) = (cell.proxy.cpu_ticks(), cell.proxy.counter(cell.counter).await);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, n1) = (cell.proxy.cpu_ticks(), cell.proxy.counter(cell.counter).await);
    let secs = t0.elapsed().as_secs_f64();
    // CPU seconds per second of window, and probes per second.
    cell.cpu.push((cpu1 - cpu0) as f64 / clock_ticks_per_s() / secs);
    cell.probes.push(n1.saturating_sub(n0) as f64 / secs);
}

async fn run(launcher: &dyn Fn() -> Command) -> String {
    let start = RunStart::now();
    let rounds = common::env_u64("BENCH_ROUNDS", 3) as usize;
    let seconds = common::env_u64("BENCH_SECONDS", 10);
    let mut md = String::new();
    let _ = writeln!(md, "{}\n", common::PROBES_HEADING);
    md.push_str(&run_header(&start));
    let _ = writeln!(
        md,
        "- command: `cargo bench --bench probes` (`make bench`); BENCH_ROUNDS={rounds} \
         interleaved windows of BENCH_SECONDS={seconds} s, medians; Envoy `--concurrency 2`, \
         no client traffic; goal: envoy-lb ≤ {GOAL:.1} × native per probe\n"
    );
    md.push_str(
        "| backends | interval | native: probes/s | native: µs CPU per probe | envoy-lb: probes/s \
         | envoy-lb: µs CPU per probe | envoy-lb ÷ native |\n|---|---|---|---|---|---|---|\n",
    );
    for (n, interval_ms) in SIZES {
        eprintln!("probes bench: {n} backends");
        let shards = Shards::start(n, launcher);
        let mut cells = Vec::new();
        for (name, native, checks) in [
            ("native + health_checks", true, true),
            ("native", true, false),
            ("envoy-lb + health_check", false, true),
            ("envoy-lb", false, false),
        ] {
            let proxy = Proxy::start(&yaml(&shards.addrs, native, checks, interval_ms), 2).await;
            let counter = if native {
                "cluster.pool.health_check.attempt"
            } else {
                "cluster.pool.upstream_rq_total"
            };
            cells.push(Cell { name, proxy, counter, cpu: Vec::new(), probes: Vec::new() });
        }
        // Two intervals: connections opened, the prober's lease settled, a steady rate.
        tokio::time::sleep(Duration::from_millis(2 * interval_ms + 1_000)).await;
        for round in 0..rounds {
            for cell in &mut cells {
                window(cell, seconds).await;
                eprintln!(
                    "round {}/{rounds} {n} {}: {:.3} CPU, {:.0} probes/s",
                    round + 1,
                    cell.name,
                    cell.cpu.last().unwrap(),
                    cell.probes.last().unwrap()
                );
            }
        }
        let per_probe = |with: &Cell, floor: &Cell| -> (f64, f64) {
            let probes = median(&with.probes);
            let cpu = (median(&with.cpu) - median(&floor.cpu)).max(0.0);
            (probes, if probes > 0.0 { cpu * 1e6 / probes } else { f64::NAN })
        };
        let (np, nc) = per_probe(&cells[0], &cells[1]);
        let (op, oc) = per_probe(&cells[2], &cells[3]);
        let _ = writeln!(
            md,
            "| {n} | {} s | {np:.0} | {nc:.1} | {op:.0} | {oc:.1} | {:.2} |",
            interval_ms / 1000,
            oc / nc
        );
        drop(cells);
        drop(shards);
    }
    md.push_str(
        "\nCPU per probe is the Envoy process's CPU above its floor without health checks \
         (same backends, same idle listener), divided by the probes of the window. Native \
         health checking runs on Envoy's main thread; envoy-lb's probes are sent by one worker \
         (the prober lease holder) as callouts through the cluster, spread over the interval \
         (docs/health.md).\n",
    );
    md
}

fn main() {
    shards::serve_if_shard();
    let exe = std::env::current_exe().expect("the bench's own executable");
    let launcher = move || Command::new(&exe);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let md = rt.block_on(run(&launcher));
    let out = std::env::var_os("BENCH_OUT")
        .map_or_else(|| support::repo_root().join("bench/RESULTS.md"), std::path::PathBuf::from);
    common::write_probes_section(&out, &md);
    println!("{md}");
}
