//! Envoy's CPU time per request and its memory, with the filter and without, on a real Envoy in
//! front of three fast demo backends, loaded by `wrk` (keep-alive).
//!
//! Variants: (a) Envoy's native round robin, no wasm filter; (b) a no-op wasm filter
//! (`noop-filter/`, the floor of any wasm filter); (c)–(g) envoy-lb with several algorithms.
//! CPU per request = (utime + stime of the Envoy process, /proc/<pid>/stat) / (increase of
//! `http.ingress.downstream_rq_total`) over one wrk run. Every Envoy (variant × workers) stays
//! up for the whole run and rounds are interleaved (a b c … a b c …), so slow drift of the
//! machine spreads over all variants.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{
    baseline_wasm, command_line, median, min_max, render, require_tools, run_header, run_wrk,
    with_baselines, write_cpu_section, wrk_command, Kind, Params, Proxy, RunStart, Variant,
};
use crate::support::{backends, plugin_config};

/// `make bench`'s Envoy worker counts.
pub const WORKERS: [u32; 2] = [1, 2];
/// `make bench`'s wrk seconds per measurement and per warm-up.
pub const SECONDS: u64 = 3;
pub const WARMUP_SECONDS: u64 = 1;

pub fn variants() -> Vec<Variant> {
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

struct Sample {
    us_per_req: f64,
    rps: f64,
    rss_load_kib: Option<u64>,
}

async fn measure(proxy: &Proxy, seconds: u64, rss_mid: bool) -> Sample {
    let run = run_wrk(proxy, seconds, rss_mid).await;
    Sample {
        us_per_req: run.cpu_s * 1e6 / run.requests as f64,
        rps: run.requests as f64 / run.elapsed_s,
        rss_load_kib: run.rss_mid_kib,
    }
}

struct Cell {
    variant: usize,
    workers: u32,
    proxy: Proxy,
    samples: Vec<Sample>,
    rss_idle_kib: u64,
}

/// Runs the bench, writes its section (the head of `p.out`, a latency section already there is
/// kept) and returns the section's markdown.
pub async fn run(p: &Params) -> String {
    require_tools(true, true);
    let start = RunStart::now();
    let backends = backends(3).await;
    let endpoints: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let pool: Vec<(&str, SocketAddr, u32)> = backends.iter().map(|b| (b.id(), b.addr, 1)).collect();
    let variants = with_baselines(variants());

    eprintln!("CPU bench: starting {} Envoys", variants.len() * p.workers.len());
    let mut cells = Vec::new();
    for &workers in &p.workers {
        for (i, v) in variants.iter().enumerate() {
            let cfg = match &v.kind {
                Kind::Ours(extra) | Kind::Baseline(extra) => plugin_config(&pool, extra.clone()),
                _ => plugin_config(&pool, json!({})),
            };
            let proxy = Proxy::start(&render(&v.kind, &endpoints, &cfg), workers).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let rss_idle_kib = proxy.rss_kib();
            // Warm-up: connections to the backends, V8 tier-up.
            if p.warmup_seconds > 0 {
                measure(&proxy, p.warmup_seconds, false).await;
            }
            cells.push(Cell { variant: i, workers, proxy, samples: Vec::new(), rss_idle_kib });
        }
    }
    let t0 = Instant::now();
    for round in 0..p.rounds {
        for cell in &mut cells {
            let s = measure(&cell.proxy, p.seconds, round == 0).await;
            eprintln!(
                "round {}/{} ({}) {} x{}: {:.1} µs CPU/req, {:.0} req/s",
                round + 1,
                p.rounds,
                variants[cell.variant].key,
                variants[cell.variant].label(),
                cell.workers,
                s.us_per_req,
                s.rps
            );
            cell.samples.push(s);
        }
    }
    let measured = t0.elapsed();

    let mut md = String::new();
    let _ = writeln!(md, "# Envoy benchmark: CPU per request and memory\n");
    md.push_str(&run_header(&start));
    md.push_str(&command_line("envoy", p, measured));
    let workers: Vec<String> = p.workers.iter().map(u32::to_string).collect();
    let _ = writeln!(
        md,
        "- load: `{}` per measurement (keep-alive), 3 demo backends (weights 1) on loopback; \
         Envoy `--concurrency {} --log-level warn`, all Envoys up for the whole run",
        wrk_command(p.seconds),
        workers.join("|")
    );
    let _ = writeln!(
        md,
        "- CPU/req = Δ(utime+stime) of the Envoy process (/proc/<pid>/stat, CLK_TCK {}) \
         / Δ `http.ingress.downstream_rq_total`; no 4xx/5xx answer (checked)\n",
        super::clock_ticks_per_s()
    );
    let _ = writeln!(md, "## Envoy CPU per request (µs)\n");
    let _ = writeln!(
        md,
        "| variant | workers | median µs/req | min–max | × native (a) | × no-op (b) | req/s (median) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    let med = |c: &Cell| median(&c.samples.iter().map(|s| s.us_per_req).collect::<Vec<_>>());
    for &w in &p.workers {
        let of = |i: usize| cells.iter().find(|c| c.variant == i && c.workers == w);
        let (native, noop) = (of(0).map(med).unwrap(), of(1).map(med).unwrap());
        for (i, v) in variants.iter().enumerate() {
            let c = of(i).unwrap();
            let us: Vec<f64> = c.samples.iter().map(|s| s.us_per_req).collect();
            let rps: Vec<f64> = c.samples.iter().map(|s| s.rps).collect();
            let (lo, hi) = min_max(&us);
            let m = median(&us);
            let _ = writeln!(
                md,
                "| ({}) {} | {w} | {m:.1} | {lo:.1}–{hi:.1} | {:.2} | {:.2} | {:.0} |",
                v.key,
                v.label(),
                m / native,
                m / noop,
                median(&rps)
            );
        }
    }
    if let Some(base) = baseline_wasm() {
        let _ = writeln!(
            md,
            "\n## Before / after\n\nThe built envoy_lb.wasm ÷ the baseline `{}` ({} bytes; \
             upper-case keys), median µs/req of the same run.\n",
            base.display(),
            std::fs::metadata(&base).map_or(0, |m| m.len())
        );
        let _ = writeln!(md, "| variant | workers | built | baseline | built ÷ baseline |");
        let _ = writeln!(md, "|---|---|---|---|---|");
        for &w in &p.workers {
            let of = |i: usize| cells.iter().find(|c| c.variant == i && c.workers == w);
            for (i, v) in
                variants.iter().enumerate().filter(|(_, v)| matches!(v.kind, Kind::Ours(_)))
            {
                let twin = variants.iter().position(|b| {
                    matches!(b.kind, Kind::Baseline(_)) && b.key == v.key.to_ascii_uppercase()
                });
                let (Some(built), Some(base)) = (of(i).map(med), twin.and_then(of).map(med)) else {
                    continue;
                };
                let _ = writeln!(
                    md,
                    "| ({}) {} | {w} | {built:.1} | {base:.1} | {:.3} |",
                    v.key,
                    v.name,
                    built / base
                );
            }
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
            c.workers,
            c.rss_idle_kib as f64 / 1024.0,
            load as f64 / 1024.0
        );
    }
    write_cpu_section(&p.out, &md);
    drop(cells);
    drop(backends);
    md
}
