//! `make bench` (native part): how the core's cost grows with the pool. For N = 100, 1,000 and
//! 10,000 backends with health checks (every 10 s) and outlier detection, on the in-memory
//! shared store (each read copies the value out, as Envoy's shared data does): configure (a
//! router built and its first tick), one tick of the prober lease holder with the probes it
//! sends answered, one tick of another worker, and one request (steer, response, end), a
//! success and a 5xx. The profile of where the time goes is in bench/RESULTS.md ("Scale").
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use envoy_lb::config::Config;
use envoy_lb::router::{NoMetrics, Router};
use envoy_lb::state::memory::MemoryStore;
use envoy_lb::state::SharedStore;

const SIZES: [usize; 3] = [100, 1_000, 10_000];
const START_NS: u64 = 1_700_000_000_000_000_000;
/// The adapter's tick period with a 10 s interval (a quarter, at most 200 ms).
const TICK_NS: u64 = 200_000_000;

fn config(n: usize, algorithm: &str) -> Config {
    let backends: Vec<_> = (0..n)
        .map(|i| {
            serde_json::json!({"id": format!("b{i}"),
                "address": format!("127.{}.{}.{}:8080", 1 + i / 62_500, (i / 250) % 250, 1 + i % 250)})
        })
        .collect();
    let json = serde_json::json!({
        "cluster": "pool",
        "algorithm": algorithm,
        "backends": backends,
        "health_check": {"path": "/healthz", "interval_ms": 10_000, "timeout_ms": 1_000},
        "outlier_detection": {"consecutive_errors": 5},
    });
    Config::from_json(json.to_string().as_bytes()).unwrap()
}

/// A store shared by the routers of one bench (two workers of one proxy).
#[derive(Clone)]
struct Shared(std::rc::Rc<MemoryStore>);

impl SharedStore for Shared {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, envoy_lb::state::StoreError> {
        self.0.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), envoy_lb::state::StoreError> {
        self.0.set(key, value, cas)
    }
}

fn router(config: Config, seed: u64, store: &Shared, now_ns: u64) -> Router {
    Router::new(config, seed, now_ns, Box::new(store.clone()), Box::new(NoMetrics))
}

/// One tick with the probes it asks for answered 200 at once; returns the probes sent.
fn tick_and_answer(r: &mut Router, now_ns: u64, token: &mut u32) -> usize {
    let tick = r.tick(now_ns);
    let sent = tick.probes.len();
    for (index, _) in tick.probes {
        *token = token.wrapping_add(1);
        r.probe_sent(*token, index, now_ns);
        r.probe_answered(*token, Some(200), now_ns);
    }
    sent
}

fn configure(c: &mut Criterion) {
    let mut group = c.benchmark_group("configure");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for n in SIZES {
        let cfg = config(n, "least_request");
        group.bench_function(BenchmarkId::new("least_request_hc_outlier", n), |b| {
            b.iter_batched(
                || (cfg.clone(), Shared(std::rc::Rc::new(MemoryStore::new()))),
                |(cfg, store)| {
                    let mut r = router(cfg, 1, &store, START_NS);
                    let mut token = 0;
                    black_box(tick_and_answer(&mut r, START_NS, &mut token))
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn ticks(c: &mut Criterion) {
    let mut group = c.benchmark_group("tick");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for n in SIZES {
        let store = Shared(std::rc::Rc::new(MemoryStore::new()));
        let mut holder = router(config(n, "least_request"), 1, &store, START_NS);
        let mut other = router(config(n, "least_request"), 2, &store, START_NS);
        let mut now = START_NS;
        let mut token = 0;
        // A whole interval first, so the schedule is in its steady state.
        for _ in 0..60 {
            now += TICK_NS;
            tick_and_answer(&mut holder, now, &mut token);
            other.tick(now);
        }
        group.bench_function(BenchmarkId::new("holder_with_probes", n), |b| {
            b.iter(|| {
                now += TICK_NS;
                black_box(tick_and_answer(&mut holder, now, &mut token))
            })
        });
        group.bench_function(BenchmarkId::new("other_worker", n), |b| {
            b.iter(|| {
                now += TICK_NS;
                tick_and_answer(&mut holder, now, &mut token);
                black_box(other.tick(now).probes.len())
            })
        });
    }
    group.finish();
}

fn requests(c: &mut Criterion) {
    let mut group = c.benchmark_group("request");
    group.measurement_time(Duration::from_secs(3));
    for n in SIZES {
        let store = Shared(std::rc::Rc::new(MemoryStore::new()));
        let mut r = router(config(n, "least_request"), 1, &store, START_NS);
        let now = START_NS + TICK_NS;
        r.tick(now);
        for (status, name) in [(200, "ok"), (503, "5xx")] {
            group.bench_function(BenchmarkId::new(format!("least_request_{name}"), n), |b| {
                b.iter(|| {
                    let (_, mut ticket) = r.steer(None, None, now).unwrap();
                    let answer = r.on_response(&mut ticket, None, status, 1, now);
                    r.on_end(&mut ticket, now);
                    black_box(answer.log.len())
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, configure, ticks, requests);
criterion_main!(benches);
