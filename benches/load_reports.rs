//! `make bench` (load-reports part, issue #18): envoy-lb's client_side_weighted_round_robin
//! beside Envoy's native policy of that name on the same ORCA-reporting backends (time to
//! converge to reported capacities 1:2:4 and after one halves; p50 / p99 when one backend slows
//! 4×), and envoy-lb's least_load on queue depth beside envoy-lb least_request, round_robin and
//! Envoy's native least_request (p50 / p99 with queueing backends: one slower, only this Envoy
//! sending; and all equal, one also loaded by a client bypassing Envoy). The bench itself is in
//! benches/common/load_reports.rs, shared with tests/bench_smoke.rs.
//! Env: BENCH_ROUNDS (default 4), BENCH_SECONDS (default 4: a least_load measurement lasts 0.75
//! of it, 3 s at the default, and the CSWRR phases are multiples of it), BENCH_OUT (default
//! bench/RESULTS.md: replaces or appends its section, keeps the rest).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use common::{load_reports, Params};

#[tokio::main]
async fn main() {
    let mut params = Params::from_env(
        load_reports::SECONDS,
        load_reports::WARMUP_SECONDS,
        &load_reports::WORKERS,
    );
    params.rounds = common::env_u64("BENCH_ROUNDS", load_reports::ROUNDS) as usize;
    println!("{}", load_reports::run(&params).await);
}
