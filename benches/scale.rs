//! `make bench` (scale part): Envoy CPU per request, idle CPU, configure time and memory with
//! N = 3, 100, 1,000 and 10,000 backends, for every algorithm without and with health checks +
//! outlier detection, beside Envoy's native round robin and least_request; interleaved rounds,
//! medians, ratios to N = 3. The bench itself is in benches/common/scale.rs, shared with
//! tests/bench_smoke.rs; this executable also serves the backends, started again as child
//! processes (benches/common/shards.rs).
//! Env: BENCH_ROUNDS (default 3), BENCH_SECONDS (wrk duration per measurement, default 3),
//! BENCH_SCALE_SIZES (default `3,100,1000,10000`), BENCH_SCALE_VARIANTS (keys, e.g. `ad`;
//! default all), BENCH_OUT (default bench/RESULTS.md: replaces or appends its section, keeps
//! the rest), BENCH_SCALE_PERF (a directory: each cell's first measurement also profiled with
//! `perf record -g`, one file per cell).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::process::Command;

use common::scale::{self, ScaleParams};
use common::shards;

fn main() {
    // A backend shard: this executable started again by `shards::Shards::start`.
    shards::serve_if_shard();
    // The .wasm as it is now, for the whole run (half an hour, during which it may be rebuilt),
    // its modification time kept for the section's header. Set before any thread starts.
    let built = support::wasm_path();
    let snapshot = tempfile::tempdir().unwrap();
    let wasm = snapshot.path().join("envoy_lb.wasm");
    std::fs::copy(&built, &wasm).unwrap();
    let mtime = std::fs::metadata(&built).and_then(|m| m.modified()).unwrap();
    std::fs::File::options().write(true).open(&wasm).unwrap().set_modified(mtime).unwrap();
    std::env::set_var("ENVOY_LB_WASM", &wasm);
    eprintln!("scale bench: {} copied to {}", built.display(), wasm.display());
    let exe = std::env::current_exe().expect("the bench's own executable");
    let params = ScaleParams::from_env(Box::new(move || Command::new(&exe)));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!("{}", rt.block_on(scale::run(&params)));
}
