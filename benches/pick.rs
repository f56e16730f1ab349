//! `make bench` (native part): nanoseconds per pick for every algorithm at 10 / 100 / 1000
//! backends, round robin's worst case (every weight different: as many classes as backends),
//! the Maglev table build for 1000 backends, and one request's steering with sticky
//! cookies: the worst a client can send (8 forged cookies against 8 secrets of 1 KB) and the
//! usual case (1 valid cookie), and a response's ORCA load report parsed and recorded. Load reads come from an in-memory view here; inside Envoy each
//! read is a shared-data host call (measured by the Envoy benchmarks, not here).
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use envoy_lb::backend::{Backend, Pool};
use envoy_lb::config::{Algorithm, AlgorithmConfig, Config, HashOn, ALGORITHMS};
use envoy_lb::lb::{self, Balancer, LoadView, PickCtx, Picks};
use envoy_lb::router::{NoMetrics, Router};
use envoy_lb::state::memory::MemoryStore;
use envoy_lb::sticky;

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
    let algorithms =
        ALGORITHMS.into_iter().map(|(a, _)| a).filter(|&a| a != Algorithm::SourceIpHash);
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
                        reported: None,
                    };
                    balancer.pick(&mut ctx, &mut out);
                    black_box(out.as_slice().first().copied())
                })
            });
        }
    }
    group.finish();
}

/// Round robin when every backend has its own weight (1, 8, 15, ...): its kinetic tournament
/// then has one class per backend, the most work a pick can take with every backend accepted.
fn round_robin_distinct_weights(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick_distinct_weights");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for n in [100usize, 1000] {
        let weights = (0..n).map(|i| 1 + 7 * i as u32);
        let mut balancer = lb::round_robin::SmoothWeighted::new(weights);
        let mut rng = fastrand::Rng::with_seed(1);
        let mut out = Picks::with_capacity(3);
        group.bench_function(BenchmarkId::new("round_robin", n), |b| {
            b.iter(|| {
                let accept = |_: usize| true;
                let mut ctx = PickCtx {
                    accept: &accept,
                    rng: &mut rng,
                    key: None,
                    load: &mut lb::NoLoad,
                    now_ns: 0,
                    reported: None,
                };
                balancer.pick(&mut ctx, &mut out);
                black_box(out.as_slice().first().copied())
            })
        });
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

/// `Router::steer` with sticky sessions and 8 secrets of 1 KB (the most a config may list):
/// a request carrying 8 forged cookies (well-formed, this pool's, signed with a secret the
/// proxies do not have: the most tags a client can make the filter compute), and one carrying
/// a single valid cookie: the same one on every request (a returning session, which the
/// filter's cache of verified values serves without a tag) or one not seen lately; and a new
/// session's request and response, whose Set-Cookie is signed once per backend and second.
fn sticky_cookies(c: &mut Criterion) {
    const NOW_S: u64 = 1_700_000_000;
    let secrets: Vec<String> = (0..8).map(|i| format!("{i}").repeat(1024)).collect();
    let config = serde_json::json!({
        "cluster": "pool",
        "sticky": {"secrets": secrets},
        "backends": [
            {"id": "b1", "address": "10.0.0.1:80"},
            {"id": "b2", "address": "10.0.0.2:80"},
            {"id": "b3", "address": "10.0.0.3:80"},
        ],
    });
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    let mut router = Router::new(config, 1, 0, Box::new(MemoryStore::new()), Box::new(NoMetrics));
    let pool = sticky::pool_identity("pool", "");
    let forged: Vec<String> = (0..8)
        .map(|i| {
            let value = sticky::encode(&[b'x'; 64], pool, &format!("b{}", 1 + i % 3), NOW_S + 60);
            format!("lb_session={value}")
        })
        .collect();
    let forged = forged.join("; ");
    let valid = sticky::encode(secrets[0].as_bytes(), pool, "b2", NOW_S + 3000);
    let valid = format!("lb_session={valid}");
    // The valid cookie pins b2 whatever round robin would pick.
    for _ in 0..3 {
        router.steer(None, Some(&valid), NOW_S * 1_000_000_000).unwrap();
        assert_eq!(router.last_picks().next(), Some("b2"));
    }
    // Valid cookies this router has not verified lately: 4,096 distinct values in turn, 16
    // for each slot of the filter's 256-slot cache of verified values, so it misses.
    let unseen: Vec<String> = (0..4096)
        .map(|k| {
            let value = sticky::encode(secrets[0].as_bytes(), pool, "b2", NOW_S + 3000 + k);
            format!("lb_session={value}")
        })
        .collect();
    let mut group = c.benchmark_group("sticky_steer");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    let mut turn = 0;
    group.bench_function("valid_1_cookie_not_seen_lately", |b| {
        b.iter(|| {
            turn = (turn + 1) % unseen.len();
            let steered = router.steer(None, Some(&unseen[turn]), NOW_S * 1_000_000_000);
            black_box(steered.map(|(s, _)| s.value.len()))
        })
    });
    // The same valid cookie on every request: a returning session.
    for (name, header) in [("forged_8_cookies_8_secrets_1kb", &forged), ("valid_1_cookie", &valid)]
    {
        group.bench_function(name, |b| {
            b.iter(|| {
                let steered = router.steer(None, Some(header), NOW_S * 1_000_000_000);
                black_box(steered.map(|(s, _)| s.value.len()))
            })
        });
    }
    // A new session from request to response (its Set-Cookie): every request in one second
    // (the value issued for each backend within a second is reused), or each in a second of
    // its own (every one signs, as every new session did before that reuse).
    for (name, step_s) in [("new_session", 0), ("new_session_each_second", 1)] {
        let mut now_s = NOW_S;
        group.bench_function(name, |b| {
            b.iter(|| {
                now_s += step_s;
                let now_ns = now_s * 1_000_000_000;
                let (_, mut ticket) = router.steer(None, None, now_ns).unwrap();
                let answer = router.on_response(&mut ticket, None, 200, 1, now_ns);
                router.on_end(&mut ticket, now_ns);
                black_box(answer.set_cookie.map(|c| c.len()))
            })
        });
    }
    // 1,000 backends, round robin: each new session of a second goes to another backend, so
    // with 64 slots of issued values every one signs (the cost the reuse does not remove).
    let backends: Vec<serde_json::Value> = (0..1000)
        .map(|i| serde_json::json!({"id": format!("b{i}"), "address": format!("10.0.{}.{}:80", i / 250, i % 250 + 1)}))
        .collect();
    let config = serde_json::json!({"cluster": "pool", "sticky": {"secrets": secrets},
        "backends": backends});
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    let mut large = Router::new(config, 1, 0, Box::new(MemoryStore::new()), Box::new(NoMetrics));
    group.bench_function("new_session_1000_backends", |b| {
        b.iter(|| {
            let now_ns = NOW_S * 1_000_000_000;
            let (_, mut ticket) = large.steer(None, None, now_ns).unwrap();
            let answer = large.on_response(&mut ticket, None, 200, 1, now_ns);
            large.on_end(&mut ticket, now_ns);
            black_box(answer.set_cookie.map(|c| c.len()))
        })
    });
    group.finish();
}

/// One response's ORCA load report as the demo backends send it, parsed (TEXT and JSON forms)
/// and recorded into a 1000-backend table with client_side_weighted_round_robin's rules and
/// least_load's (which names a metric): what each response costs inside the filter besides
/// the header read.
fn load_reports(c: &mut Criterion) {
    use envoy_lb::lb::reports::{LoadTable, ReportRules};
    use envoy_lb::orca::{self, Wanted};
    let text = "TEXT rps_fractional=812.3, application_utilization=0.81, cpu_utilization=0.81, \
                named_metrics.queue_depth=3, named_metrics.in_flight=5";
    let json = "JSON {\"rps_fractional\":812.3,\"application_utilization\":0.81,\
                \"cpu_utilization\":0.81,\"named_metrics\":{\"queue_depth\":3,\"in_flight\":5}}";
    let rules = |metric: Option<&str>| ReportRules {
        wanted: Wanted::new(metric.map(str::to_string)),
        utilization_metrics: 0,
        error_utilization_penalty: 1.0,
        metric: metric.map(str::to_string),
        blackout_ns: 10_000_000_000,
        expiration_ns: 180_000_000_000,
    };
    let mut group = c.benchmark_group("load_report");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for (name, header) in [("parse_text", text), ("parse_json", json)] {
        let rules = rules(None);
        assert!(orca::parse(header, &rules.wanted).is_ok());
        group.bench_function(name, |b| {
            b.iter(|| black_box(orca::parse(black_box(header), &rules.wanted).is_ok()))
        });
    }
    for (name, metric) in [
        ("record_text_cswrr_1000", None),
        ("record_text_least_load_1000", Some("named_metrics.queue_depth")),
    ] {
        let rules = rules(metric);
        let mut table = LoadTable::new(1000);
        let mut turn = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                turn = (turn + 1) % 1000;
                if let Ok(report) = orca::parse(black_box(text), &rules.wanted) {
                    table.record(turn, &report, &rules, turn as u64, 5);
                }
                // The tick shares these; keep the list of unshared ones short.
                if turn == 0 {
                    black_box(table.take_dirty().len());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    picks,
    round_robin_distinct_weights,
    maglev_build,
    sticky_cookies,
    load_reports
);
criterion_main!(benches);
