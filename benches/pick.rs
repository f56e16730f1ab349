//! `make bench` (native part): nanoseconds per pick for every algorithm at 10 / 100 / 1000
//! backends, and the Maglev table build for 1000 backends. Load reads come from an in-memory
//! view here; inside Envoy each read is a shared-data host call (measured by the Envoy
//! benchmarks, not here).
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use envoy_lb::backend::{Backend, Pool};
use envoy_lb::config::{Algorithm, AlgorithmConfig, HashOn, ALGORITHMS};
use envoy_lb::lb::{self, LoadView, PickCtx, Picks};

fn pool(n: usize) -> Pool {
    Pool::new(
        (0..n)
            .map(|i| {
                let addr = format!("10.{}.{}.{}:8080", i / 65536, (i / 256) % 256, i % 256);
                Backend::new(format!("b{i}"), addr.parse().unwrap(), 1 + (i % 3) as u32)
            })
            .collect(),
    )
}

/// In-flight counts that drift as picks happen, so load-aware algorithms see varied load.
struct Load(Vec<u64>);

impl LoadView for Load {
    fn in_flight(&mut self, i: usize) -> u64 {
        self.0.get(i).copied().unwrap_or(0)
    }
    fn total_in_flight(&mut self) -> u64 {
        self.0.iter().sum()
    }
}

fn config(algorithm: Algorithm) -> AlgorithmConfig {
    let mut c = AlgorithmConfig::defaults(algorithm);
    if matches!(algorithm, Algorithm::Maglev | Algorithm::RingHash | Algorithm::SourceIpHash) {
        c.hash_on = Some(HashOn::Header("x-user".into()));
    }
    c
}

fn picks(c: &mut Criterion) {
    // source_ip_hash is maglev with another key: not measured twice.
    let algorithms = ALGORITHMS.into_iter().filter(|&a| a != Algorithm::SourceIpHash);
    let mut group = c.benchmark_group("pick");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for n in [10usize, 100, 1000] {
        let pool = pool(n);
        for algorithm in algorithms.clone() {
            let mut balancer = lb::build(&config(algorithm), &pool, 0);
            let mut rng = fastrand::Rng::with_seed(1);
            let mut load = Load((0..n as u64).map(|i| i % 7).collect());
            let mut out = Picks::with_capacity(3);
            let mut key = 0u64;
            group.bench_function(BenchmarkId::new(algorithm.name(), n), |b| {
                b.iter(|| {
                    key = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let accept = |_: usize| true;
                    let mut ctx = PickCtx {
                        accept: &accept,
                        rng: &mut rng,
                        key: Some(key),
                        load: &mut load,
                        now_ns: 1_000_000,
                    };
                    balancer.pick(&mut ctx, &mut out);
                    black_box(out.as_slice().first().copied())
                })
            });
        }
    }
    group.finish();
}

fn maglev_build(c: &mut Criterion) {
    let pool = pool(1000);
    let config = config(Algorithm::Maglev);
    let mut group = c.benchmark_group("build");
    group.sample_size(20).measurement_time(Duration::from_secs(3));
    group.bench_function("maglev_65537_x_1000", |b| {
        b.iter(|| black_box(lb::build(&config, &pool, 0)))
    });
    group.bench_function("ring_hash_1000", |b| {
        let config = self::config(Algorithm::RingHash);
        b.iter(|| black_box(lb::build(&config, &pool, 0)))
    });
    group.finish();
}

criterion_group!(benches, picks, maglev_build);
criterion_main!(benches);
