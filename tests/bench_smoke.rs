//! One short round of each Envoy bench (benches/envoy.rs, benches/latency.rs), so the harness
//! keeps working: the bench code itself (benches/common/) runs here with small parameters,
//! into a temporary file that must then hold every variant's row with positive figures.
//! Needs wrk (`make wrk`), the no-op filter (`make noop-filter`), Envoy and the built filter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

#[path = "../benches/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Instant;

use common::{cpu, latency, Params, LATENCY_HEADING};

fn params(out: &Path, workers: &[u32]) -> Params {
    Params { rounds: 1, seconds: 1, warmup_seconds: 0, workers: workers.to_vec(), out: out.into() }
}

/// The figures in the table row of variant `name` for `workers`, one per column after those two.
fn row(md: &str, name: &str, workers: u32) -> Vec<f64> {
    let line = md
        .lines()
        .find(|l| l.starts_with(&format!("| {name} | {workers} |")))
        .unwrap_or_else(|| panic!("no row for {name} x{workers} in:\n{md}"));
    line.split('|')
        .skip(3)
        .filter_map(|cell| cell.trim().split('–').next().and_then(|n| n.parse().ok()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_benches_run_one_short_round() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("RESULTS.md");

    cpu::run(&params(&out, &cpu::WORKERS)).await;
    let md = std::fs::read_to_string(&out).unwrap();
    for &w in &cpu::WORKERS {
        for v in cpu::variants() {
            let figures = row(&md, &format!("({}) {}", v.key, v.name), w);
            // µs/req, min (of min–max), × native, × no-op, req/s.
            assert_eq!(figures.len(), 5, "{} x{w}: {figures:?}", v.name);
            assert!(figures.iter().all(|&f| f > 0.0), "{} x{w}: {figures:?}", v.name);
        }
    }
    let cpu_s = t0.elapsed().as_secs_f64();

    // The latency bench appends its section and keeps the CPU one; one worker count suffices.
    latency::run(&params(&out, &[1])).await;
    let md = std::fs::read_to_string(&out).unwrap();
    assert!(md.starts_with("# Envoy benchmark"), "CPU section lost:\n{md}");
    assert_eq!(md.matches(LATENCY_HEADING).count(), 1, "{md}");
    for v in latency::variants() {
        let figures = row(&md, &format!("({}) {}", v.key, v.name), 1);
        // p50, p50 min (of min–max), p90, p99, p99 min, % to the slow backend, req/s.
        assert_eq!(figures.len(), 7, "{}: {figures:?}", v.name);
        let positive = [0, 1, 2, 3, 4, 6].map(|i| figures[i]);
        assert!(positive.iter().all(|&f| f > 0.0), "{}: {figures:?}", v.name);
    }
    assert!(md.contains("Goal: envoy-lb least_time p99"), "{md}");

    // A new CPU section keeps the latency section.
    common::write_cpu_section(&out, "# Envoy benchmark (again)\n");
    let again = std::fs::read_to_string(&out).unwrap();
    let latency_section = &md[md.find(LATENCY_HEADING).unwrap()..];
    assert_eq!(again, format!("# Envoy benchmark (again)\n\n{latency_section}"));

    eprintln!(
        "bench smoke: CPU bench {cpu_s:.0} s, latency bench {:.0} s",
        t0.elapsed().as_secs_f64() - cpu_s
    );
}

/// A section written by hand after the latency one (the profile) survives a new latency run,
/// and the old latency section is replaced, not kept beside the new one.
#[test]
fn a_latency_run_keeps_the_sections_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("RESULTS.md");
    let old = format!(
        "# Envoy benchmark\n\nCPU table\n\n{LATENCY_HEADING}: old\n\nold rows\n\n## Profile\n\nby hand\n"
    );
    std::fs::write(&out, &old).unwrap();
    common::write_latency_section(&out, &format!("{LATENCY_HEADING}: new\n\nnew rows\n"));
    let got = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        got,
        format!(
            "# Envoy benchmark\n\nCPU table\n\n{LATENCY_HEADING}: new\n\nnew rows\n\n## Profile\n\nby hand\n"
        )
    );
}
