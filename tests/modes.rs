//! The original_dst and cluster_header modes on a real Envoy, each from its shipped config
//! (envoy/original_dst.yaml, envoy/cluster_header.yaml): shares follow the weights, a client's
//! header never steers, health probes reach every backend the mode's way and an unhealthy
//! backend gets no traffic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use support::*;

const ORIGINAL_DST: &str = "envoy/original_dst.yaml";
const CLUSTER_HEADER: &str = "envoy/cluster_header.yaml";

fn health() -> serde_json::Value {
    json!({"path": "/healthz", "interval_ms": 200, "timeout_ms": 150,
           "healthy_threshold": 1, "unhealthy_threshold": 2})
}

/// Plugin config of `backends` with `weights` in `mode` (by address, or one cluster `b<i>`
/// per backend in cluster_header mode).
fn config(
    backends: &[Backend],
    weights: &[u32],
    target: serde_json::Value,
    extra: serde_json::Value,
) -> String {
    let by_cluster = target["mode"] == "cluster_header";
    let list: Vec<_> = backends
        .iter()
        .zip(weights)
        .enumerate()
        .map(|(i, (b, w))| {
            if by_cluster {
                json!({"id": b.id(), "cluster": format!("b{}", i + 1), "weight": w})
            } else {
                json!({"id": b.id(), "address": b.addr.to_string(), "weight": w})
            }
        })
        .collect();
    let mut cfg = json!({"cluster": "pool", "backends": list, "target": target});
    if let serde_json::Value::Object(extra) = extra {
        for (k, v) in extra {
            cfg[k] = v;
        }
    }
    cfg.to_string()
}

async fn start(file: &'static str, backends: &[Backend], plugin: String) -> Envoy {
    let endpoints = backends.iter().map(|b| b.addr).collect();
    Envoy::start(EnvoySetup::new(plugin, endpoints).file(file)).await
}

fn served(backends: &[Backend]) -> Vec<u64> {
    backends.iter().map(|b| b.stats.requests.load(Ordering::SeqCst)).collect()
}

fn probes(b: &Backend) -> u64 {
    b.stats.health_checks.load(Ordering::SeqCst)
}

const DST_HEADER: &str = "x-envoy-original-dst-host";

/// What each upstream request carried in x-envoy-original-dst-host (as the backends echo it),
/// by answering backend id, for `n` requests with the client's `value` in that header.
async fn dst_headers_received(envoy: &Envoy, n: usize, value: &str) -> Vec<(String, String)> {
    let answers = answers(envoy, n, &[(DST_HEADER, value)]).await;
    let echoed = |a: &reqwest::header::HeaderMap| {
        a.get(format!("x-echo-{DST_HEADER}"))
            .map_or("(none)".into(), |v| v.to_str().unwrap().into())
    };
    answers.iter().map(|a| (a["x-backend"].to_str().unwrap().to_string(), echoed(a))).collect()
}

/// original_dst: round robin through the filter state, exact thirds, whatever the client puts
/// in x-envoy-original-dst-host (a backend, or an address outside the pool); the header is
/// removed, so the upstream never sees the client's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_dst_steers_through_filter_state_and_ignores_the_client_header() {
    let backends = backends_echoing(3, &[DST_HEADER]).await;
    let plugin = config(&backends, &[1, 1, 1], json!({"mode": "original_dst"}), json!({}));
    let envoy = start(ORIGINAL_DST, &backends, plugin).await;
    let b1 = backends[0].addr.to_string();
    let outside = refused_address().to_string();
    let mut received = dst_headers_received(&envoy, 150, &b1).await;
    received.extend(dst_headers_received(&envoy, 150, &outside).await);
    for b in &backends {
        let got: Vec<&str> =
            received.iter().filter(|(id, _)| id == b.id()).map(|(_, h)| h.as_str()).collect();
        assert_eq!(got, vec!["(none)"; 100], "{}: {DST_HEADER} as received", b.id());
    }
    assert_eq!(served(&backends), vec![100, 100, 100]);
}

/// original_dst with health checks: probes go through the probe cluster to every backend;
/// one failing its checks gets no traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_dst_probes_every_backend_and_skips_an_unhealthy_one() {
    let backends = backends(3).await;
    let target = json!({"mode": "original_dst", "probe_cluster": "pool_probe"});
    let plugin = config(&backends, &[1, 1, 1], target, json!({"health_check": health()}));
    let envoy = start(ORIGINAL_DST, &backends, plugin).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    for b in &backends {
        assert!(probes(b) >= 2, "{} probed {} times\n{}", b.id(), probes(b), envoy.log_tail(20));
    }
    backends[1].set_healthy(false);
    envoy.wait_log("b2 unhealthy: 2 probe failures, last: status 503", 5).await;
    let before = served(&backends);
    let counts = count_by_backend(&envoy, 60, &[]).await;
    assert_eq!(counts.get("b2"), None, "{counts:?}");
    assert_eq!(served(&backends)[1], before[1]);
    assert_eq!(counts.get("b1"), Some(&30), "{counts:?}");
}

/// original_dst with allow_header_fallback, on a cluster that reads the header: the filter
/// always overwrites the client's value, so each upstream request carries exactly the address
/// of the backend it reached (Envoy reads the filter state first, so the shares alone would
/// not show a client's value left in place).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_dst_header_fallback_overwrites_the_client_value() {
    let backends = backends_echoing(3, &[DST_HEADER]).await;
    let target = json!({"mode": "original_dst", "allow_header_fallback": true});
    let plugin = config(&backends, &[1, 1, 1], target, json!({}));
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let setup = EnvoySetup::new(plugin, endpoints).file(ORIGINAL_DST).tweak(|doc| {
        let clusters = doc["static_resources"]["clusters"].as_sequence_mut().unwrap();
        let pool = clusters.iter_mut().find(|c| c["name"] == "pool").unwrap();
        pool["original_dst_lb_config"] =
            serde_yaml_ng::from_str("{use_http_header: true}").unwrap();
    });
    let envoy = Envoy::start(setup).await;
    let b3 = backends[2].addr.to_string();
    let received = dst_headers_received(&envoy, 90, &b3).await;
    for b in &backends {
        let own = b.addr.to_string();
        let got: Vec<&str> =
            received.iter().filter(|(id, _)| id == b.id()).map(|(_, h)| h.as_str()).collect();
        assert_eq!(got, vec![own.as_str(); 30], "{}: {DST_HEADER} as received", b.id());
    }
}

/// cluster_header: weights 1:2:3 over three clusters, exact on one worker; a client's
/// x-lb-cluster naming a cluster is overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_header_follows_weights_and_ignores_the_client_header() {
    let backends = backends(3).await;
    let plugin = config(&backends, &[1, 2, 3], json!({"mode": "cluster_header"}), json!({}));
    let envoy = start(CLUSTER_HEADER, &backends, plugin).await;
    let counts = count_by_backend(&envoy, 600, &[("x-lb-cluster", "b1")]).await;
    assert_eq!(counts.get("b1"), Some(&100), "{counts:?}");
    assert_eq!(counts.get("b2"), Some(&200), "{counts:?}");
    assert_eq!(counts.get("b3"), Some(&300), "{counts:?}");
}

/// cluster_header with health checks: each backend is probed through its own cluster; an
/// unhealthy one gets no traffic, and gets it back when healthy again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_header_probes_each_cluster_and_skips_an_unhealthy_one() {
    let backends = backends(3).await;
    let plugin = config(
        &backends,
        &[1, 1, 1],
        json!({"mode": "cluster_header"}),
        json!({"health_check": health()}),
    );
    let envoy = start(CLUSTER_HEADER, &backends, plugin).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    for b in &backends {
        assert!(probes(b) >= 2, "{} probed {} times\n{}", b.id(), probes(b), envoy.log_tail(20));
    }
    backends[2].set_healthy(false);
    envoy.wait_log("b3 unhealthy: 2 probe failures, last: status 503", 5).await;
    let counts = count_by_backend(&envoy, 60, &[]).await;
    assert_eq!((counts.get("b1"), counts.get("b3")), (Some(&30), None), "{counts:?}");
    backends[2].set_healthy(true);
    envoy.wait_log("b3 healthy: 1 probe successes", 5).await;
    let counts = count_by_backend(&envoy, 60, &[]).await;
    assert_eq!(counts.get("b3"), Some(&20), "{counts:?}");
}
