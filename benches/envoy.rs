//! `make bench` (Envoy part): Envoy's CPU time per request and its memory per variant (native
//! round robin, a no-op wasm filter, envoy-lb with several algorithms, sticky sessions new and
//! returning beside Envoy's stateful_session, the ext_proc picker), interleaved rounds,
//! medians; the bench itself is in benches/common/cpu.rs, shared with tests/bench_smoke.rs.
//! Env: BENCH_ROUNDS (default 7), BENCH_SECONDS (wrk duration per measurement, default 3),
//! BENCH_OUT (default bench/RESULTS.md; its latency section, benches/latency.rs, is kept).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use common::{cpu, Params};

#[tokio::main]
async fn main() {
    let params = Params::from_env(cpu::SECONDS, cpu::WARMUP_SECONDS, &cpu::WORKERS);
    println!("{}", cpu::run(&params).await);
}
