//! `make soak`: envoy-lb in a real Envoy for `SOAK_SECONDS` (default 600) under a steady
//! client load while one backend is stopped and restarted every 5 s and another fails 5% of
//! its requests (tests/support/soak.rs describes the setup). Writes the figures and the goals
//! to `SOAK_OUT` (default bench/SOAK.md) and exits non-zero when a goal is missed.
//! Env: SOAK_SECONDS, SOAK_RATE (total req/s, default 300), SOAK_OUT.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/soak.rs"]
mod soak;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;

use soak::{machine, run, SoakOptions};
use support::{envoy_bin, repo_root, wasm_path};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = SoakOptions::from_env(600);
    let out = std::env::var_os("SOAK_OUT")
        .map_or_else(|| repo_root().join("bench/SOAK.md"), PathBuf::from);
    // Fail before starting anything when a piece is missing.
    let (_, _) = (envoy_bin(), wasm_path());
    eprintln!(
        "soak: {} s at {} req/s; the report goes to {}",
        options.seconds,
        options.rate,
        out.display()
    );
    let command = format!(
        "`SOAK_SECONDS={} SOAK_RATE={} cargo bench --bench soak` (`make soak`)",
        options.seconds, options.rate
    );
    let report = run(options).await;
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let md = report.markdown(&date, &machine(), &command);
    println!("{md}");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(&out, &md).unwrap();
    eprintln!("written to {}", out.display());
    let missed: Vec<String> =
        report.goals().into_iter().filter(|(_, met)| !met).map(|(what, _)| what).collect();
    if !missed.is_empty() {
        eprintln!("soak goals missed:\n  {}", missed.join("\n  "));
        std::process::exit(1);
    }
}
