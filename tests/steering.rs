//! Real Envoy + the built filter + real backends: round robin shares, weights, client steering
//! refused, retries past a dead backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::Ordering;

use serde_json::json;
use support::*;

const STEER: &str = "x-gateway-destination-endpoint";

fn equal_pool(backends: &[Backend]) -> Vec<(&str, std::net::SocketAddr, u32)> {
    backends.iter().map(|b| (b.id(), b.addr, 1)).collect()
}

async fn start(
    backends: &[Backend],
    weights: &[u32],
    concurrency: u32,
    extra: serde_json::Value,
) -> Envoy {
    let pool: Vec<_> = backends.iter().zip(weights).map(|(b, &w)| (b.id(), b.addr, w)).collect();
    let endpoints = backends.iter().map(|b| b.addr).collect();
    Envoy::start(EnvoySetup::new(plugin_config(&pool, extra), endpoints).concurrency(concurrency))
        .await
}

fn served(backends: &[Backend]) -> Vec<u64> {
    backends.iter().map(|b| b.stats.requests.load(Ordering::SeqCst)).collect()
}

/// `n` requests; each upstream request must carry the filter's steering header as the backend
/// received it: `hosts` distinct pool addresses, the first the backend's own (the cluster's
/// fallback round robin would give the same shares without any header). Counts by backend id.
async fn steered(envoy: &Envoy, backends: &[Backend], n: usize, hosts: usize) -> Vec<usize> {
    let mut counts = vec![0; backends.len()];
    let echo = format!("x-echo-{STEER}");
    for (i, answer) in answers(envoy, n, &[]).await.iter().enumerate() {
        let id = answer["x-backend"].to_str().unwrap();
        let got = answer.get(&echo).map(|v| v.to_str().unwrap()).unwrap_or("(none)");
        let list: Vec<&str> = got.split(',').collect();
        let at = |a: &str| backends.iter().position(|b| b.addr.to_string() == a);
        let picked: Vec<Option<usize>> = list.iter().map(|a| at(a)).collect();
        let mut distinct = picked.clone();
        distinct.sort();
        distinct.dedup();
        let ok = list.len() == hosts
            && distinct.len() == hosts
            && picked.iter().all(Option::is_some)
            && picked.first().copied().flatten().map(|p| backends[p].id()) == Some(id);
        assert!(ok, "request {i}: {id} received {STEER}: {got} (want {hosts} pool addresses, its own first)");
        counts[backends.iter().position(|b| b.id() == id).unwrap()] += 1;
    }
    counts
}

/// (a) 3 equal backends, one worker, 300 requests on fresh connections: exactly 100 each,
/// every one steered by the filter's header (3 hosts, the primary first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_weights_one_worker_exact_thirds() {
    let backends = backends_echoing(3, &[STEER]).await;
    let envoy = start(&backends, &[1, 1, 1], 1, json!({})).await;
    assert_eq!(steered(&envoy, &backends, 300, 3).await, [100, 100, 100], "by x-backend");
    assert_eq!(served(&backends), vec![100, 100, 100], "as counted by the backends");
}

/// (a) with two workers (both serving): each backend within ±2% of 100, every request
/// steered by the filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_weights_two_workers_within_two_percent() {
    let backends = backends_echoing(3, &[STEER]).await;
    let envoy = start(&backends, &[1, 1, 1], 2, json!({})).await;
    let counts = steered(&envoy, &backends, 300, 3).await;
    for (b, n) in backends.iter().zip(counts) {
        assert_near(b.id(), n, 100.0, 2.0);
    }
    envoy.assert_every_worker_served().await;
}

/// (b) weights 1:2:3, 600 requests: exact shares on one worker, within ±2% on two (both
/// serving); every request steered by the filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_one_two_three() {
    let backends = backends_echoing(3, &[STEER]).await;
    let one = start(&backends, &[1, 2, 3], 1, json!({})).await;
    assert_eq!(steered(&one, &backends, 600, 3).await, [100, 200, 300], "one worker");
    drop(one);

    let two = start(&backends, &[1, 2, 3], 2, json!({})).await;
    let counts = steered(&two, &backends, 600, 3).await;
    for ((b, n), expected) in backends.iter().zip(counts).zip([100.0, 200.0, 300.0]) {
        assert_near(b.id(), n, expected, 2.0);
    }
    two.assert_every_worker_served().await;
}

/// (c) A client naming a backend in the steering header (once, twice, in any case) changes
/// nothing: the filter replaces every client value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_steering_header_is_ignored() {
    let backends = backends(3).await;
    let envoy = start(&backends, &[1, 1, 1], 1, json!({})).await;
    let b1 = backends[0].addr.to_string();
    let both = format!("{b1},{b1}");
    for headers in [
        vec![(STEER, b1.as_str())],
        vec![("X-Gateway-Destination-Endpoint", b1.as_str()), (STEER, both.as_str())],
    ] {
        let counts = count_by_backend(&envoy, 300, &headers).await;
        for b in &backends {
            assert_eq!(counts.get(b.id()), Some(&100), "with {headers:?}: {counts:?}");
        }
    }
}

/// What the upstream receives: exactly one steering header, the filter's, however many values
/// the client sent. The backend is a raw TCP listener that returns the request head it read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_sees_only_the_filters_steering_value() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    head.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
                let _ = conn.write_all(&head).await;
            });
        }
    });
    let plugin = plugin_config(&[("echo", addr, 1)], json!({}));
    let envoy = Envoy::start(EnvoySetup::new(plugin, vec![addr])).await;
    let resp = client()
        .get(envoy.url("/"))
        .header(STEER, "10.9.9.9:1")
        .header("X-Gateway-Destination-Endpoint", "192.0.2.1:80,10.9.9.9:1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let head = resp.text().await.unwrap().to_ascii_lowercase();
    let values: Vec<&str> =
        head.lines().filter_map(|l| l.strip_prefix(&format!("{STEER}: "))).collect();
    assert_eq!(values, [addr.to_string()], "upstream request head:\n{head}");
}

/// With `max_hosts` 1 the header carries only the primary pick, still in weighted round robin
/// order (1:2:3, which the cluster's unweighted fallback would not give).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_hosts_one_still_balances() {
    let backends = backends_echoing(3, &[STEER]).await;
    let envoy = start(&backends, &[1, 2, 3], 1, json!({"target": {"max_hosts": 1}})).await;
    assert_eq!(steered(&envoy, &backends, 60, 1).await, [10, 20, 30]);
}

/// (d) One backend refuses connections: every request still succeeds, because each retry
/// takes the next host of the steering header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_backend_is_retried_on_next_host() {
    let live = backends(2).await;
    let dead = refused_address();
    let mut pool = equal_pool(&live);
    pool.insert(0, ("dead", dead, 1));
    let endpoints = pool.iter().map(|p| p.1).collect();
    let envoy = Envoy::start(EnvoySetup::new(plugin_config(&pool, json!({})), endpoints)).await;
    let counts = count_by_backend(&envoy, 300, &[]).await;
    assert_eq!(counts.values().sum::<usize>(), 300, "{counts:?}");
    assert!(!counts.contains_key("dead"));
    // Round robin put the dead host first for a third of the requests; each was retried.
    let connect_fail = envoy.stat("cluster.pool.upstream_cx_connect_fail").await;
    let retries = envoy.stat("cluster.pool.upstream_rq_retry").await;
    assert!(connect_fail >= 100, "connect failures: {connect_fail}");
    assert!(retries >= 100, "retries: {retries}");
    // The dead host's 100 retried requests are spread over both live backends at random
    // (not all to its successor, which would give 200:100): 150 ± 30 is 6 sigma.
    for b in &live {
        let n = counts.get(b.id()).copied().unwrap_or(0);
        assert!((120..=180).contains(&n), "{}: {n} of 300 ({counts:?})", b.id());
    }
}

/// IPv6 backends: the filter writes `[::1]:port`, the form Envoy's override_host matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_backends_are_steered() {
    let mut backends = Vec::new();
    for id in ["v6a", "v6b"] {
        let b = demo_backend::start("[::1]:0".parse().unwrap(), BackendOptions::new(id)).await;
        backends.push(b.unwrap());
    }
    // Weights 1:3 make the filter's picks visible: the cluster's fallback round robin is
    // unweighted and would give 20:20.
    let envoy = start(&backends, &[1, 3], 1, json!({})).await;
    let counts = count_by_backend(&envoy, 40, &[]).await;
    assert_eq!(counts.get("v6a"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("v6b"), Some(&30), "{counts:?}");
    assert_eq!(envoy.stat("cluster.pool.upstream_rq_retry").await, 0);
}

/// `random` through Envoy: every backend gets traffic in proportion to its weight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_follows_weights() {
    let backends = backends(3).await;
    let envoy = start(&backends, &[1, 2, 3], 2, json!({"algorithm": "random"})).await;
    let n = 1200usize;
    let counts = count_by_backend(&envoy, n, &[]).await;
    for (b, w) in backends.iter().zip([1.0, 2.0, 3.0]) {
        let p: f64 = w / 6.0;
        let expected = p * n as f64;
        let sigma = (n as f64 * p * (1.0 - p)).sqrt();
        let got = counts.get(b.id()).copied().unwrap_or(0) as f64;
        // 5 sigma: a false failure about once in 1.7 million runs.
        assert!(
            (got - expected).abs() <= 5.0 * sigma,
            "{}: {got} vs {expected} ({counts:?})",
            b.id()
        );
    }
    envoy.assert_every_worker_served().await;
}
