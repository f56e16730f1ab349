//! The opt-in status page on a real Envoy: answered locally to allowed clients with the pool's
//! state, passed upstream untouched for everyone else, and its generation follows live
//! configuration updates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::Ordering;

use serde_json::{json, Value};
use support::*;

fn served(backends: &[Backend]) -> u64 {
    backends.iter().map(|b| b.stats.requests.load(Ordering::SeqCst)).sum()
}

async fn status(envoy: &Envoy, path: &str) -> reqwest::Response {
    client().get(envoy.url(path)).send().await.unwrap()
}

async fn json_of(resp: reqwest::Response) -> Value {
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Loopback is allowed by default: a JSON document with every documented field, built from
/// what the pool went through (an unhealthy backend, latency estimates, cookies issued).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_clients_get_the_pool_state() {
    let backends = backends(3).await;
    let pool: Vec<_> = backends.iter().map(|b| (b.id(), b.addr, 2)).collect();
    let extra = json!({
        "algorithm": "least_time",
        "status": {},
        "sticky": {"secrets": ["0123456789abcdef0123456789abcdef"]},
        "slow_start_ms": 60000,
        "health_check": {"path": "/healthz", "interval_ms": 200, "timeout_ms": 150, "unhealthy_threshold": 2}
    });
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let envoy = Envoy::start(EnvoySetup::new(plugin_config(&pool, extra), endpoints)).await;
    backends[2].set_healthy(false);
    envoy.wait_log("b3 unhealthy: 2 probe failures, last: status 503", 5).await;
    count_by_backend(&envoy, 20, &[]).await;

    let before = served(&backends);
    let resp = status(&envoy, "/.lb/status?pretty").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.headers().get("x-backend").is_none(), "answered by the filter");
    let doc = json_of(resp).await;
    assert_eq!(served(&backends), before, "no backend saw the status request");

    // The page holds no secret: neither the configured one nor a field named for one.
    let text = doc.to_string();
    assert!(!text.contains("0123456789abcdef"), "the sticky secret shows: {text}");
    assert!(!text.to_ascii_lowercase().contains("secret"), "{text}");
    assert_eq!(doc["cluster"], "pool");
    assert_eq!(doc["algorithm"], "least_time");
    assert_eq!(doc["mode"], "override_host");
    assert_eq!(doc["generation"], 1);
    assert_eq!(doc["panic"], false);
    assert_eq!(doc["health_checks"], true);
    assert!(doc["config_digest"].as_str().unwrap().len() == 16, "{doc}");
    // In shared data: the generation, the current configuration's fence, its health table,
    // the table's version and the prober lease, the proxy's clock, an in-flight counter per backend (least_time
    // weighs in-flight requests) and their owners' heartbeats, and the key record; no cookie
    // secret (one is configured).
    assert_eq!(doc["shared_data"]["keys"], 11, "{doc}");
    assert!(doc["shared_data"]["bytes"].as_u64().unwrap() > 4 * "envoy_lb/pool/".len() as u64);
    let list = doc["backends"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    for (b, entry) in backends.iter().zip(list) {
        assert_eq!(entry["id"], b.id());
        assert_eq!(entry["address"], b.addr.to_string());
        assert_eq!(entry["weight"], 2);
        assert_eq!(entry["in_flight"], 0, "{entry}");
        assert!(entry["ejected_until_ms"].is_null(), "{entry}");
        assert_eq!(entry["drain"], false);
    }
    let (b1, b3) = (&list[0], &list[2]);
    assert_eq!(b1["healthy"], true);
    assert_eq!(b3["healthy"], false);
    assert_eq!(b3["available"], false);
    assert_eq!(b3["effective_weight"], 0.0);
    assert_eq!(b3["last_change"], "unhealthy: 2 probe failures, last: status 503");
    assert!(b1["last_change"].is_null(), "{b1}");
    // Slow start: a minute-long ramp has just begun (10% of weight 2, and a little more).
    let w = b1["effective_weight"].as_f64().unwrap();
    assert!((0.2..0.4).contains(&w), "{b1}");
    // 20 requests, none to b3: each answered one counted, with a latency estimate and a cookie.
    let requests: u64 = list.iter().map(|e| e["requests"].as_u64().unwrap()).sum();
    let issued: u64 = list.iter().map(|e| e["sticky_sessions_issued"].as_u64().unwrap()).sum();
    assert_eq!((requests, issued), (20, 20), "{doc}");
    assert_eq!(b3["requests"], 0);
    assert!(b1["ewma_us"].as_u64().is_some(), "{b1}");
}

/// A client outside `allow_cidrs` asking for the path is served by a backend, as if the status
/// page did not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_clients_pass_upstream_untouched() {
    let backends = backends(2).await;
    let pool: Vec<_> = backends.iter().map(|b| (b.id(), b.addr, 1)).collect();
    let extra =
        json!({"status": {"path": "/.lb/status", "allow_cidrs": ["10.0.0.0/8", "::2/128"]}});
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let envoy = Envoy::start(EnvoySetup::new(plugin_config(&pool, extra), endpoints)).await;
    let resp = status(&envoy, "/.lb/status").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-backend").is_some(), "answered by a backend");
    // Claiming an allowed address in X-Forwarded-For changes nothing: the shipped config
    // makes Envoy take the client address from the connection.
    let resp = client()
        .get(envoy.url("/.lb/status"))
        .header("x-forwarded-for", "10.1.2.3")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("x-backend").is_some(), "answered by a backend");
    let body = resp.text().await.unwrap();
    assert!(!body.contains("\"backends\""), "{body}");
    assert_eq!(served(&backends), 2);
}

/// Every live configuration update to a different config moves the generation on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_follows_live_updates() {
    let backends = backends(2).await;
    let pool: Vec<_> = backends.iter().map(|b| (b.id(), b.addr, 1)).collect();
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let config = |w: u32| {
        let pool: Vec<_> = pool.iter().map(|&(id, a, _)| (id, a, w)).collect();
        plugin_config(&pool, json!({"status": {}}))
    };
    let mut envoy = Envoy::start(EnvoySetup::new(config(1), endpoints).live()).await;
    let generation = |doc: Value| doc["generation"].as_u64().unwrap();
    let doc = json_of(status(&envoy, "/.lb/status").await).await;
    assert_eq!(generation(doc), 1);
    assert!(envoy.update_plugin_config(config(3)).await);
    let doc = json_of(status(&envoy, "/.lb/status").await).await;
    assert_eq!(doc["backends"][0]["weight"], 3);
    assert_eq!(generation(doc), 2);
}
