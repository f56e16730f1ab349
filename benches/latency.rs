//! `make bench` (latency part): p50 / p99 client latency through Envoy with one backend 10×
//! slower than the others, for envoy-lb round_robin, least_request, least_time, Envoy's
//! native least_request and the ext_proc picker (round robin); interleaved rounds, medians. The bench itself is in
//! benches/common/latency.rs, shared with tests/bench_smoke.rs.
//! Env: BENCH_ROUNDS (default 7), BENCH_SECONDS (wrk duration per measurement, default 5),
//! BENCH_OUT (default bench/RESULTS.md: replaces or appends its section, keeps the rest).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use common::{latency, Params};

#[tokio::main]
async fn main() {
    let params = Params::from_env(latency::SECONDS, latency::WARMUP_SECONDS, &latency::WORKERS);
    println!("{}", latency::run(&params).await);
}
