//! The load-aware and hashing algorithms on a real Envoy (`--concurrency 2`) with real
//! backends: least_time and least_request avoid a slow backend, in-flight counts return to zero
//! (also after client aborts), hash keys stick, source addresses stick, Maglev moves only the
//! removed backend's keys, bounded load caps a hot key's backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use support::*;

async fn start(backends: &[Backend], concurrency: u32, extra: serde_json::Value) -> Envoy {
    let pool: Vec<_> = backends.iter().map(|b| (b.id(), b.addr, 1)).collect();
    let endpoints = backends.iter().map(|b| b.addr).collect();
    Envoy::start(EnvoySetup::new(plugin_config(&pool, extra), endpoints).concurrency(concurrency))
        .await
}

/// Two fast backends and one that answers after `delay`.
async fn one_slow(delay: Duration) -> Vec<Backend> {
    let mut v = backends(2).await;
    let mut slow = BackendOptions::new("slow");
    slow.delay = delay;
    v.push(backend(slow).await);
    v
}

/// `clients` tasks sending `per_client` requests each (keep-alive), counting x-backend.
async fn parallel_load(
    envoy: &Envoy,
    clients: usize,
    per_client: usize,
) -> BTreeMap<String, usize> {
    let url = envoy.url("/");
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder().no_proxy().build().unwrap();
                let mut ids = Vec::new();
                for _ in 0..per_client {
                    let r = client.get(&url).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    ids.push(r.headers()["x-backend"].to_str().unwrap().to_string());
                }
                ids
            })
        })
        .collect();
    let mut counts = BTreeMap::new();
    for t in tasks {
        for id in t.await.unwrap() {
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    counts
}

/// The in-flight gauges of every backend, once they have settled.
async fn in_flight_gauges(envoy: &Envoy, backends: &[Backend]) -> Vec<u64> {
    let mut last = Vec::new();
    for _ in 0..50 {
        last = Vec::new();
        for b in backends {
            last.push(
                envoy.stat(&format!("wasmcustom.lb_in_flight.pool.pool.backend.{}", b.id())).await,
            );
        }
        if last.iter().all(|&v| v == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// (a) least_time: one backend 50 ms slower; 300 requests from one sequential client (fresh
/// connections, so both workers serve). With one request in flight at a time every in-flight
/// count is 0 when a pick is made, so only the latency the filter measured can keep the slow
/// backend under 10% (least_request would give it a third).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_time_avoids_the_slow_backend() {
    let backends = one_slow(Duration::from_millis(50)).await;
    let envoy = start(&backends, 2, json!({"algorithm": "least_time"})).await;
    let counts = count_by_backend(&envoy, 300, &[]).await;
    let slow = counts.get("slow").copied().unwrap_or(0);
    assert!(slow < 30, "slow backend got {slow} of 300 (< 10% expected): {counts:?}");
    envoy.assert_every_worker_served().await;
    assert_eq!(in_flight_gauges(&envoy, &backends).await, vec![0, 0, 0]);
}

/// (b) least_request: the slow backend's share drops well below 1/3 and every in-flight count
/// is back to 0 after the run, also after clients abort mid-request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_avoids_the_slow_backend_and_releases_every_count() {
    let backends = one_slow(Duration::from_millis(100)).await;
    let envoy = start(&backends, 2, json!({"algorithm": "least_request"})).await;
    let counts = parallel_load(&envoy, 8, 50).await;
    let slow = counts.get("slow").copied().unwrap_or(0);
    assert!(slow < 400 / 5, "slow backend got {slow} of 400 (1/3 would be 133): {counts:?}");
    assert_eq!(in_flight_gauges(&envoy, &backends).await, vec![0, 0, 0], "after the run");

    // Clients that give up after 20 ms: the slow backend's requests are aborted mid-flight.
    let served_before = backends[2].stats.requests.load(Ordering::SeqCst);
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    let mut aborted = 0;
    for _ in 0..60 {
        if client.get(envoy.url("/")).send().await.is_err() {
            aborted += 1;
        }
    }
    // Wait for the slow backend to see (and finish) what was aborted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reached_slow = backends[2].stats.requests.load(Ordering::SeqCst) - served_before;
    assert!(aborted > 0 && reached_slow > 0, "aborted {aborted}, reached slow {reached_slow}");
    assert_eq!(in_flight_gauges(&envoy, &backends).await, vec![0, 0, 0], "after aborts");
    envoy.assert_every_worker_served().await;
}

async fn get_with(client: &reqwest::Client, envoy: &Envoy, header: (&str, &str)) -> String {
    let r = client.get(envoy.url("/")).header(header.0, header.1).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-backend"].to_str().unwrap().to_string()
}

/// (c) hash_on header: one value always reaches one backend; 100 values reach every backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_hash_sticks_and_spreads() {
    let backends = backends(3).await;
    for algorithm in ["maglev", "ring_hash"] {
        let envoy =
            start(&backends, 2, json!({"algorithm": algorithm, "hash_on": {"header": "x-user"}}))
                .await;
        let client = client();
        let mut seen = HashSet::new();
        for _ in 0..200 {
            seen.insert(get_with(&client, &envoy, ("x-user", "alice")).await);
        }
        assert_eq!(seen.len(), 1, "{algorithm}: alice reached {seen:?}");
        let mut reached = HashSet::new();
        for i in 0..100 {
            reached.insert(get_with(&client, &envoy, ("x-user", &format!("user-{i}"))).await);
        }
        assert_eq!(reached.len(), 3, "{algorithm}: 100 users reached {reached:?}");
        envoy.assert_every_worker_served().await;
    }
}

/// (d) source_ip_hash: clients bound to 127.0.0.2 ... 127.0.0.30 each stick to one backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ip_hash_sticks_per_client_address() {
    let backends = backends(3).await;
    let envoy = start(&backends, 2, json!({"algorithm": "source_ip_hash"})).await;
    let mut used = HashSet::new();
    for last in 2..=30u8 {
        let ip = IpAddr::from([127, 0, 0, last]);
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .local_address(ip)
            .build()
            .unwrap();
        let mut seen = HashSet::new();
        for _ in 0..10 {
            let r = client.get(envoy.url("/")).send().await.unwrap();
            seen.insert(r.headers()["x-backend"].to_str().unwrap().to_string());
        }
        assert_eq!(seen.len(), 1, "client {ip} reached {seen:?}");
        used.extend(seen);
    }
    assert_eq!(used.len(), 3, "29 client addresses should reach all 3 backends: {used:?}");
    envoy.assert_every_worker_served().await;
}

/// Maps `keys` (x-user values) to backend ids through `envoy` (every answer must be a 200),
/// each on a fresh connection, so every worker's table takes part.
async fn mapping(envoy: &Envoy, keys: &[String]) -> HashMap<String, String> {
    let client = client();
    let mut m = HashMap::new();
    for k in keys {
        m.insert(k.clone(), get_with(&client, envoy, ("x-user", k)).await);
    }
    m
}

/// (e) Maglev: a live config update (LDS) removing one of five backends moves only that
/// backend's keys (± 1% of keys), and no request fails across the update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_removal_moves_only_the_removed_backends_keys() {
    let backends = backends(5).await;
    let extra = json!({"algorithm": "maglev", "hash_on": {"header": "x-user"}});
    let config = |n: usize| {
        let pool: Vec<_> = backends[..n].iter().map(|b| (b.id(), b.addr, 1)).collect();
        plugin_config(&pool, extra.clone())
    };
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let mut envoy = Envoy::start(EnvoySetup::new(config(5), endpoints).concurrency(2).live()).await;
    let keys: Vec<String> = (0..1000).map(|i| format!("key-{i}")).collect();
    let before = mapping(&envoy, &keys).await;
    assert!(envoy.update_plugin_config(config(4)).await, "update refused:\n{}", envoy.log_tail(20));
    let after = mapping(&envoy, &keys).await;
    let removed = backends[4].id();
    assert!(after.values().all(|b| b != removed), "the removed backend still gets keys");
    let on_removed = before.values().filter(|b| *b == removed).count();
    let moved_elsewhere =
        keys.iter().filter(|k| before[*k] != removed && before[*k] != after[*k]).count();
    assert!(on_removed > 100, "the removed backend held {on_removed} of 1000 keys");
    assert!(moved_elsewhere <= 10, "{moved_elsewhere} keys of kept backends moved (<= 1%)");
    envoy.assert_every_worker_served().await;
}

/// (f) Bounded load: 24 clients in a closed loop send one hot key; with balance_factor 1.25
/// no backend ever holds more than 1.25 x mean + 1 = 1.25 x 24/3 + 1 = 11 requests in flight
/// (the mean is at most 24/3: each client has at most one request in flight). In flight is
/// what each backend itself sees at once (its peak): a request reaches a backend after the
/// filter counted it there and leaves before the filter releases it, so the peak is at most
/// the shared count the filter bounds. (The `lb_in_flight` gauges are not used: workers hand
/// their changes over on their ticks, so a gauge can still count requests that have ended,
/// above the bound for a moment.) Without bounded load all 24 would sit on the key's backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_load_caps_the_hot_key_backend() {
    let mut backends = Vec::new();
    for i in 1..=3 {
        let mut o = BackendOptions::new(format!("b{i}"));
        o.delay = Duration::from_millis(40);
        backends.push(backend(o).await);
    }
    let extra =
        json!({"algorithm": "maglev", "hash_on": {"header": "x-user"}, "balance_factor": 1.25});
    let envoy = start(&backends, 2, extra).await;
    let clients = 24;
    let url = envoy.url("/");
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let c = reqwest::Client::builder().no_proxy().build().unwrap();
                let mut ids = Vec::new();
                for _ in 0..15 {
                    let r = c.get(&url).header("x-user", "hot").send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    ids.push(r.headers()["x-backend"].to_str().unwrap().to_string());
                }
                ids
            })
        })
        .collect();
    let mut spread = HashSet::new();
    for t in tasks {
        spread.extend(t.await.unwrap());
    }
    let peaks: Vec<u64> =
        backends.iter().map(|b| b.stats.max_in_flight.load(Ordering::SeqCst)).collect();
    let bound = 1.25 * clients as f64 / 3.0 + 1.0;
    let worst = *peaks.iter().max().unwrap();
    assert!(worst as f64 <= bound, "a backend held {worst} in flight (bound {bound}): {peaks:?}");
    assert!(worst >= 6, "the load never built up: peaks in flight {peaks:?}");
    assert!(spread.len() >= 2, "the hot key overflowed to no other backend: {spread:?}");
}
