//! Active health checks on a real Envoy: one prober per proxy whatever the number of workers,
//! an unhealthy or stopped backend stops receiving traffic within the detection time and comes
//! back, a hanging health endpoint times out, and nothing available is a clear 503.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const INTERVAL_MS: u64 = 200;
const TIMEOUT_MS: u64 = 100;

fn health(extra: serde_json::Value) -> serde_json::Value {
    let mut check = json!({
        "path": "/healthz", "interval_ms": INTERVAL_MS, "timeout_ms": TIMEOUT_MS,
        "healthy_threshold": 2, "unhealthy_threshold": 2
    });
    if let serde_json::Value::Object(extra) = extra {
        for (k, v) in extra {
            check[k] = v;
        }
    }
    json!({"health_check": check})
}

async fn start(backends: &[Backend], concurrency: u32, extra: serde_json::Value) -> Envoy {
    let pool: Vec<_> = backends.iter().map(|b| (b.id(), b.addr, 1)).collect();
    let endpoints = backends.iter().map(|b| b.addr).collect();
    Envoy::start(EnvoySetup::new(plugin_config(&pool, extra), endpoints).concurrency(concurrency))
        .await
}

fn probes(b: &Backend) -> u64 {
    b.stats.health_checks.load(Ordering::SeqCst)
}

fn served(b: &Backend) -> u64 {
    b.stats.requests.load(Ordering::SeqCst)
}

/// Sends `n` requests; every one must succeed.
async fn load(envoy: &Envoy, n: usize) {
    let counts = count_by_backend(envoy, n, &[]).await;
    assert_eq!(counts.values().sum::<usize>(), n);
}

/// (b) Each backend is probed once per interval, however many workers Envoy runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_probe_per_backend_per_interval_at_any_concurrency() {
    for concurrency in [2, 4] {
        let backends = backends(3).await;
        let envoy = start(&backends, concurrency, health(json!({}))).await;
        // Let the first probes (sent at once) land.
        tokio::time::sleep(Duration::from_millis(INTERVAL_MS / 2)).await;
        let before: Vec<u64> = backends.iter().map(probes).collect();
        tokio::time::sleep(Duration::from_millis(INTERVAL_MS * 10)).await;
        for (b, start) in backends.iter().zip(before) {
            let n = probes(b) - start;
            assert!(
                (9..=11).contains(&n),
                "concurrency {concurrency}: {} probed {n} times",
                b.id()
            );
        }
        drop(envoy);
    }
}

/// (a) A backend that fails its checks gets no new requests after
/// interval x unhealthy_threshold + timeout (+ one interval); when it passes again, traffic
/// returns after healthy_threshold intervals. Clients see no errors throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_backend_is_avoided_then_readmitted() {
    let backends = backends(3).await;
    let envoy = start(&backends, 2, health(json!({}))).await;
    load(&envoy, 30).await;
    assert!(served(&backends[2]) > 0);

    backends[2].set_healthy(false);
    let detect = Duration::from_millis(INTERVAL_MS * 2 + TIMEOUT_MS + INTERVAL_MS);
    tokio::time::sleep(detect).await;
    let frozen = served(&backends[2]);
    load(&envoy, 60).await;
    assert_eq!(served(&backends[2]), frozen, "the unhealthy backend still got requests");
    assert!(
        envoy.log().contains("b3 unhealthy: 2 probe failures, last: status 503"),
        "{}",
        envoy.log_tail(20)
    );

    backends[2].set_healthy(true);
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS * 3 + TIMEOUT_MS)).await;
    load(&envoy, 60).await;
    assert!(served(&backends[2]) > frozen, "the backend did not get traffic back");
    assert!(envoy.log().contains("b3 healthy: 2 probe successes"), "{}", envoy.log_tail(20));
}

/// (a) A stopped backend (connections refused): clients see no errors and, once detected, no
/// request is steered to it any more: no request needs a retry (the probes, which still try
/// it once per interval, are never retried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_backend_is_avoided_without_client_errors() {
    let mut backends = backends(3).await;
    let envoy = start(&backends, 2, health(json!({}))).await;
    let dead = backends.pop().unwrap();
    dead.stop().await;
    let start = Instant::now();
    // Requests during detection still succeed: retries take the next host.
    while start.elapsed() < Duration::from_millis(INTERVAL_MS * 4 + TIMEOUT_MS) {
        load(&envoy, 10).await;
    }
    let retries = envoy.stat("cluster.pool.upstream_rq_retry").await;
    assert!(retries > 0, "the stopped backend was never tried: the test proves nothing");
    load(&envoy, 100).await;
    assert_eq!(
        envoy.stat("cluster.pool.upstream_rq_retry").await,
        retries,
        "requests were still steered to the stopped backend"
    );
}

/// (c) A health endpoint that hangs: probes time out and the backend is marked unhealthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_health_endpoint_times_out() {
    let mut backends = backends(2).await;
    let mut hang = BackendOptions::new("b3");
    hang.health_delay = Duration::from_secs(5);
    backends.push(backend(hang).await);
    let envoy = start(&backends, 2, health(json!({}))).await;
    let line = format!("b3 unhealthy: 2 probe failures, last: timeout after {TIMEOUT_MS} ms");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !envoy.log().contains(&line) {
        assert!(Instant::now() < deadline, "no {line:?} in:\n{}", envoy.log_tail(30));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every worker sees the published change on its next tick (interval / 4).
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS / 2)).await;
    let frozen = served(&backends[2]);
    load(&envoy, 40).await;
    assert_eq!(served(&backends[2]), frozen);
}

/// (h) Nothing available (all unhealthy, no backup, panic off): a local 503 that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_available_is_a_clear_503() {
    let backends = backends(2).await;
    let mut extra = health(json!({}));
    extra["panic_threshold_percent"] = json!(0);
    let envoy = start(&backends, 2, extra).await;
    for b in &backends {
        b.set_healthy(false);
    }
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS * 3 + TIMEOUT_MS)).await;
    let before: u64 = backends.iter().map(served).sum();
    let r = client().get(envoy.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-lb-error"], "no_healthy_backend");
    assert_eq!(r.text().await.unwrap(), r#"{"error":"no_healthy_backend"}"#);
    assert_eq!(backends.iter().map(served).sum::<u64>(), before, "a backend was reached");
}
