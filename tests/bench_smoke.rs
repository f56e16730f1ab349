//! One short round of each Envoy bench (benches/envoy.rs, benches/latency.rs, benches/scale.rs,
//! benches/load_reports.rs),
//! so the harness keeps working: the bench code itself (benches/common/) runs here with small
//! parameters, into a temporary file that must then hold every variant's row with positive
//! figures. Needs wrk (`make wrk`), the no-op filter (`make noop-filter`), the ext_proc picker
//! (`EXT_PROC_PICKER`, the dev build that `make test` names, or `make ext-proc-picker`), Envoy
//! and the built filter. The two runs take turns: each loads the machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

#[path = "../benches/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::scale::{self, ScaleParams, Upstream};
use common::{cpu, latency, load_reports, shards, Params, LATENCY_HEADING, SCALE_HEADING};

/// One bench run at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

/// The text from the heading that starts with `heading` to the next heading.
fn section<'a>(md: &'a str, heading: &str) -> &'a str {
    let start =
        md.find(&format!("\n{heading}")).unwrap_or_else(|| panic!("no {heading} in:\n{md}"));
    let rest = &md[start + 1..];
    let end = rest[1..].find("\n#").map_or(rest.len(), |e| e + 1);
    &rest[..end]
}

/// Column `column` (split on `|`) of a table's rows for `workers`, as numbers.
fn ratio_column(table: &str, workers: u32, column: usize) -> Vec<f64> {
    table
        .lines()
        .filter(|l| l.starts_with(&format!("| {workers} | ")) && l.contains(") ÷ ("))
        .map(|l| l.split('|').nth(column).unwrap().trim().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_benches_run_one_short_round() {
    let _serial = SERIAL.lock().await;
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
        // The side-by-side ratios (issue #17): sticky new, sticky returning, the picker.
        let ratios = ratio_column(section(&md, "## Side by side"), w, 5);
        assert_eq!(ratios.len(), 3, "side by side x{w}:\n{md}");
        assert!(ratios.iter().all(|&r| r > 0.0), "x{w}: {ratios:?}");
        // The floors under round robin's host calls: four ratios.
        let floors = ratio_column(section(&md, "### The floor under"), w, 4);
        assert_eq!(floors.len(), 4, "floors x{w}:\n{md}");
        assert!(floors.iter().all(|&r| r > 0.0), "x{w}: {floors:?}");
        let picker = format!("- (k) at {w} worker{}: Envoy ", if w == 1 { "" } else { "s" });
        assert!(md.contains(&picker), "{picker}:\n{md}");
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
    assert!(md.contains("Goal (issue #17): envoy-lb round_robin p99"), "{md}");

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

/// The load-reports bench (issue #18), one round of 1 s (its convergence phases 2 s and 1.5 s,
/// its least_load measurements 0.75 s): every variant's row in each of its four tables, and the
/// goal lines; no figure is judged.
#[tokio::test(flavor = "multi_thread")]
async fn load_reports_bench_runs_one_short_round() {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("RESULTS.md");
    std::fs::write(&out, format!("# Envoy benchmark\n\nCPU\n\n{LATENCY_HEADING}: l\n\nrows\n"))
        .unwrap();
    load_reports::run(&params(&out, &load_reports::WORKERS)).await;
    let md = std::fs::read_to_string(&out).unwrap();
    assert!(md.starts_with("# Envoy benchmark\n\nCPU\n\n"), "other sections lost:\n{md}");
    assert_eq!(md.matches(load_reports::HEADING).count(), 1, "{md}");
    for &w in &load_reports::WORKERS {
        for v in load_reports::cswrr_variants() {
            let name = format!("| ({}) {} | {w} |", v.key, v.name);
            // The convergence table and the slowdown table.
            assert_eq!(md.matches(&name).count(), 2, "{name}:\n{md}");
        }
        for v in load_reports::least_load_variants() {
            let name = format!("| ({}) {} | {w} |", v.key, v.name);
            let rows: Vec<&str> = md.lines().filter(|l| l.starts_with(&name)).collect();
            // Only this Envoy sending, then equal backends with the external load on e1.
            assert_eq!(rows.len(), 2, "{name}:\n{md}");
            let figures = |l: &str| -> Vec<f64> {
                l.split('|')
                    .skip(3)
                    .filter_map(|cell| cell.trim().split('–').next().and_then(|n| n.parse().ok()))
                    .collect()
            };
            // p50, p50 min (of min–max), p90, p99, p99 min, % to the slow b3, req/s; with the
            // external load % to e1 instead of b3, and the external client's req/s and p99.
            assert_eq!(figures(rows[0]).len(), 7, "{}", rows[0]);
            assert_eq!(figures(rows[1]).len(), 9, "{}", rows[1]);
        }
        for scenario in ["only this Envoy sending", "equal backends, external load on e1"] {
            let s = if w == 1 { "" } else { "s" };
            let line = format!("- {scenario}, {w} worker{s}: lowest median p99 (");
            assert!(md.contains(&line), "{line}:\n{md}");
        }
    }
    assert!(md.contains("Goal (issue #18)"), "{md}");
    assert!(md.contains("least_load's median p99 beside the others'"), "{md}");
    eprintln!("bench smoke: load-reports bench {:.0} s", t0.elapsed().as_secs_f64());
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

/// A backend shard of the scale bench (benches/common/shards.rs) when this test binary is
/// started as one by [`scale_bench_runs_one_short_round`]; nothing otherwise.
#[test]
fn scale_bench_backend_shard() {
    shards::serve_if_shard();
}

/// The scale bench with N = 3 and 100, Envoy's native round robin and envoy-lb round_robin with
/// health checks and outlier detection, one round of 1 s: every cell measured, no failure.
#[tokio::test(flavor = "multi_thread")]
async fn scale_bench_runs_one_short_round() {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("RESULTS.md");
    std::fs::write(&out, format!("# Envoy benchmark\n\nCPU\n\n{LATENCY_HEADING}: old\n\nrows\n"))
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let params = ScaleParams {
        rounds: 1,
        seconds: 1,
        idle_seconds: 1,
        warmup_max_seconds: 4,
        warmup_step_seconds: 1,
        sizes: vec![3, 100],
        workers: vec![1, 2],
        keys: "ap".into(),
        upstream: Upstream::KeepAlive,
        out: out.clone(),
        launcher: Box::new(move || {
            let mut c = Command::new(&exe);
            c.args(["scale_bench_backend_shard", "--exact", "--nocapture", "--test-threads=1"]);
            c
        }),
    };
    scale::run(&params).await;
    let md = std::fs::read_to_string(&out).unwrap();
    assert!(md.starts_with("# Envoy benchmark\n\nCPU\n\n"), "other sections lost:\n{md}");
    assert_eq!(md.matches(SCALE_HEADING).count(), 1, "{md}");
    let variants: Vec<_> = scale::variants().into_iter().filter(|v| "ap".contains(v.key)).collect();
    assert_eq!(variants.len(), 2);
    for w in [1, 2] {
        for v in &variants {
            let name = format!("({}) {}", v.key, v.name);
            let rows: Vec<&str> =
                md.lines().filter(|l| l.starts_with(&format!("| {name} | {w} |"))).collect();
            // CPU, idle CPU, configure time, memory, connections.
            assert_eq!(rows.len(), 5, "{name} x{w}:\n{md}");
            // CPU per request: median [min–max] ×ratio for N = 3 and 100.
            let cpu: Vec<f64> = rows[0]
                .split('|')
                .skip(3)
                .filter_map(|c| c.split_whitespace().next().and_then(|n| n.parse().ok()))
                .collect();
            assert_eq!(cpu.len(), 2, "{}", rows[0]);
            assert!(cpu.iter().all(|&f| f > 0.0), "{}", rows[0]);
            // Configure time only where the filter runs.
            let configure_ms = rows[2].split('|').nth(3).unwrap().trim();
            assert_eq!(configure_ms == "–", v.key == 'a', "{}", rows[2]);
        }
    }
    assert!(md.contains("\nNone: every cell answered only 2xx"), "{md}");
    assert!(md.contains("Goal (issue #16)"), "{md}");
    eprintln!("bench smoke: scale bench {:.0} s", t0.elapsed().as_secs_f64());
}

/// A pool that does not fit the open-file limit is measured at the largest size that does:
/// at 20,000 files, 10,000 backends fit one worker; two workers (or one, and probes) 9,500;
/// two workers and probes 6,500.
#[test]
fn scale_sizes_that_do_not_fit_are_made_smaller() {
    use common::Kind;
    let (native, probed) = (Kind::Native, Kind::Ours(serde_json::json!({"health_check": {}})));
    let fit = |kind: &Kind, workers| scale::fitting(10_000, scale::pools(kind, workers), 20_000);
    assert_eq!(fit(&native, 1), 10_000);
    assert_eq!(fit(&native, 2), 9_500);
    assert_eq!(fit(&probed, 1), 9_500);
    assert_eq!(fit(&probed, 2), 6_500);
    assert_eq!(scale::fitting(1_000, 3, 20_000), 1_000);
}

/// The scale section replaces its old self and keeps the sections before and after it; a new
/// CPU section keeps it.
#[test]
fn a_scale_run_keeps_the_other_sections() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("RESULTS.md");
    let old = format!(
        "# Envoy benchmark\n\nCPU\n\n{LATENCY_HEADING}: l\n\nrows\n\n{SCALE_HEADING} old\n\nold \
         rows\n\n## Profile\n\nby hand\n"
    );
    std::fs::write(&out, &old).unwrap();
    common::write_scale_section(&out, &format!("{SCALE_HEADING} new\n\nnew rows\n"));
    let want = format!(
        "# Envoy benchmark\n\nCPU\n\n{LATENCY_HEADING}: l\n\nrows\n\n{SCALE_HEADING} new\n\nnew \
         rows\n\n## Profile\n\nby hand\n"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), want);
    // Without a latency section the CPU bench keeps the scale section and what follows it.
    std::fs::write(&out, format!("# old CPU\n\n{SCALE_HEADING} s\n\nrows\n")).unwrap();
    common::write_cpu_section(&out, "# new CPU\n");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("# new CPU\n\n{SCALE_HEADING} s\n\nrows\n")
    );
}
