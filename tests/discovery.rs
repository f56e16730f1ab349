//! Live pools on a real Envoy: the filter follows the endpoints Envoy has for its cluster,
//! delivered as a control plane delivers them (CDS + EDS from watched files), resolved by DNS
//! (STRICT_DNS, read from `/clusters`), or in an Istio-shaped bootstrap; it keeps serving the
//! last good pool when the admin API fails; and it notices a cluster that ignores its steering.
//! The tests of this file run one at a time (they time how fast a change is followed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const INTERVAL_MS: u64 = 300;
/// The longest tick of a worker VM (src/adapter/root.rs).
const TICK_MS: u64 = 200;
/// Scheduling and request slack on a loaded two-core machine, on top of interval + tick.
const SLACK_MS: u64 = 700;

/// One test at a time: each times how fast a change is followed.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config(extra: Value) -> String {
    let mut cfg = json!({
        "cluster": "pool",
        "discovery": {"admin_cluster": ADMIN_CLUSTER, "interval_ms": INTERVAL_MS},
        "status": {},
    });
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            if let (Some(Value::Object(d)), "discovery") = (v.as_object().map(|_| &v), k.as_str()) {
                for (dk, dv) in d {
                    cfg["discovery"][dk] = dv.clone();
                }
            } else {
                cfg[k] = v;
            }
        }
    }
    cfg.to_string()
}

fn healthy(bs: &[&Backend]) -> Vec<EdsEndpoint> {
    bs.iter().map(|b| EdsEndpoint::healthy(b.addr)).collect()
}

/// The status page as the worker behind `client` sees it.
async fn status_of(envoy: &Envoy, client: &reqwest::Client) -> Value {
    let r = client.get(envoy.url("/.lb/status")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

/// The addresses each worker's pool holds now.
async fn pools(envoy: &Envoy, workers: &[reqwest::Client]) -> Vec<BTreeSet<String>> {
    let mut all = Vec::new();
    for c in workers {
        let s = status_of(envoy, c).await;
        let addrs = s["backends"].as_array().unwrap().iter();
        all.push(addrs.map(|b| b["address"].as_str().unwrap().to_string()).collect());
    }
    all
}

/// Waits until every worker's pool is exactly `want` (addresses); returns how long it took.
async fn until_pools(
    envoy: &Envoy,
    workers: &[reqwest::Client],
    want: &[&Backend],
    secs: u64,
) -> Duration {
    let want: BTreeSet<String> = want.iter().map(|b| b.addr.to_string()).collect();
    let start = Instant::now();
    loop {
        let now = pools(envoy, workers).await;
        if now.iter().all(|p| *p == want) {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "pools {now:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first backend of each answer over `n` requests on `client`.
async fn served(envoy: &Envoy, client: &reqwest::Client, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let r = client.get(envoy.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        out.push(r.headers()["x-backend"].to_str().unwrap().to_string());
        let _ = r.bytes().await;
    }
    out
}

/// The backends that answered `n` requests sent by 8 concurrent clients.
async fn spread(envoy: &Envoy, n: usize) -> BTreeSet<String> {
    spread_counts(envoy, n).await.into_keys().collect()
}

/// How many of `n` requests sent by 8 concurrent clients each backend answered.
async fn spread_counts(envoy: &Envoy, n: usize) -> std::collections::BTreeMap<String, usize> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (next, url, client) = (Arc::clone(&next), envoy.url("/"), client());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n as u64 {
                let r = client.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                ids.push(r.headers()["x-backend"].to_str().unwrap().to_string());
            }
            ids
        }));
    }
    let mut all = std::collections::BTreeMap::new();
    for t in tasks {
        for id in t.await.unwrap() {
            *all.entry(id).or_insert(0) += 1;
        }
    }
    all
}

/// Requests from `clients` concurrent loops until stopped: (answered, failed).
struct Load {
    stop: Arc<AtomicU8>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(envoy: &Envoy, clients: usize) -> Load {
        let (stop, ok, failed) = (Arc::new(AtomicU8::new(0)), Arc::default(), Arc::default());
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (stop, ok, failed): (Arc<AtomicU8>, Arc<AtomicU64>, Arc<AtomicU64>) =
                (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
            let url = envoy.url("/");
            let client = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            tasks.push(tokio::spawn(async move {
                while stop.load(Ordering::Relaxed) == 0 {
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.bytes().await;
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            eprintln!("failed: {} {:?}", r.status(), r.headers().get("x-lb-error"));
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("failed: {e}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        Load { stop, ok, failed, tasks }
    }

    async fn stop(self) -> (u64, u64) {
        self.stop.store(1, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn eds_changes_are_followed_within_an_interval_and_a_tick() {
    let _serial = SERIAL.lock().await;
    let b = backends(4).await;
    let setup = EnvoySetup::new(config(json!({})), vec![b[0].addr, b[1].addr]).eds().concurrency(2);
    let mut envoy = Envoy::start(setup).await;
    let workers = envoy.client_per_worker().await;
    until_pools(&envoy, &workers, &[&b[0], &b[1]], 5).await;
    envoy.wait_log("discovery: cluster pool generation 1: 2 endpoints", 5).await;

    // Added: every worker routes to it within interval_ms + one tick.
    // (set_endpoints returns once Envoy applied the update; the wait starts then.)
    envoy.set_endpoints(&healthy(&[&b[0], &b[1], &b[2]])).await;
    let took = until_pools(&envoy, &workers, &[&b[0], &b[1], &b[2]], 5).await;
    eprintln!("an added endpoint was in every worker's pool {took:?} after the EDS update");
    assert!(took <= Duration::from_millis(INTERVAL_MS + TICK_MS + SLACK_MS), "{took:?}");
    // 12 requests: one worker serves at least 6 in a row of its round robin over three.
    let got = spread(&envoy, 12).await;
    assert_eq!(got, ["b1", "b2", "b3"].map(String::from).into(), "round robin over three");

    // Weights follow: 3:1:1.
    envoy
        .set_endpoints(&[
            EdsEndpoint::healthy(b[0].addr).weight(3),
            EdsEndpoint::healthy(b[1].addr),
            EdsEndpoint::healthy(b[2].addr),
        ])
        .await;
    let start = Instant::now();
    loop {
        let s = status_of(&envoy, &workers[0]).await;
        let s2 = status_of(&envoy, &workers[1]).await;
        let b1_weight = |s: &Value| {
            let all = s["backends"].as_array().unwrap().clone();
            all.into_iter()
                .find(|x| x["address"] == b[0].addr.to_string())
                .map(|x| x["weight"].clone())
        };
        if [s, s2].iter().all(|s| b1_weight(s) == Some(json!(3))) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Smooth weighted round robin gives b1 3 of every 5 picks of each worker: within two
    // picks per worker of 60%.
    let got = spread_counts(&envoy, 100).await;
    let b1 = got.get("b1").copied().unwrap_or(0);
    assert!((56..=64).contains(&b1), "b1 served {b1} of 100: {got:?}");

    // UNHEALTHY: left out.
    envoy
        .set_endpoints(&[
            EdsEndpoint::healthy(b[0].addr),
            EdsEndpoint::healthy(b[1].addr).health("UNHEALTHY"),
            EdsEndpoint::healthy(b[2].addr),
        ])
        .await;
    until_pools(&envoy, &workers, &[&b[0], &b[2]], 5).await;
    for w in &workers {
        assert!(!served(&envoy, w, 10).await.contains(&"b2".to_string()));
    }

    // Removed under load: no new request reaches it once every worker's pool lost it, and
    // no client sees an error.
    let load = Load::start(&envoy, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    envoy.set_endpoints(&healthy(&[&b[2], &b[3]])).await;
    until_pools(&envoy, &workers, &[&b[2], &b[3]], 5).await;
    let b1_before = b[0].stats.requests.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed) = load.stop().await;
    assert_eq!(
        b[0].stats.requests.load(Ordering::Relaxed),
        b1_before,
        "b1 got requests after removal"
    );
    assert!(ok > 100, "{ok} requests");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);

    // The steering was honoured all along: samples served by another host than the primary
    // (Envoy skipping a just-removed endpoint) are counted, but their window is not judged.
    assert!(!envoy.log().contains("steering ignored"), "{}", envoy.log_tail(20));
    assert_eq!(envoy.stat("wasmcustom.lb_discovery_endpoints.pool.pool").await, 2);
    assert_eq!(envoy.stat("wasmcustom.lb_discovery_errors_total.pool.pool").await, 0);
    let s = status_of(&envoy, &workers[0]).await;
    assert_eq!(s["discovery"]["source"], "eds");
    assert_eq!(s["discovery"]["endpoints"], 2);
    assert!(s["discovery"]["generation"].as_u64().unwrap() >= 5, "{s}");
    let ids: BTreeSet<&str> =
        s["backends"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap()).collect();
    let derived: BTreeSet<String> =
        [&b[2], &b[3]].iter().map(|x| format!("127.0.0.1_{}", x.addr.port())).collect();
    assert_eq!(ids, derived.iter().map(String::as_str).collect(), "ids derived from addresses");
    envoy.assert_every_worker_served().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_update_under_load_fails_no_request() {
    let _serial = SERIAL.lock().await;
    let b = backends(6).await;
    let (old, new) = (&b[..3], &b[3..]);
    // least_request (in-flight counters move with their endpoint) with health checks and
    // passive ejection on: the shared state follows the rollout.
    let extra = json!({
        "algorithm": "least_request",
        "health_check": {"interval_ms": 200, "timeout_ms": 100},
        "outlier_detection": {},
        "slow_start_ms": 1000,
    });
    let setup =
        EnvoySetup::new(config(extra), old.iter().map(|b| b.addr).collect()).eds().concurrency(4);
    let mut envoy = Envoy::start(setup).await;
    let workers = envoy.client_per_worker().await;
    let mut live: Vec<&Backend> = old.iter().collect();
    until_pools(&envoy, &workers, &live, 5).await;
    let load = Load::start(&envoy, 8);
    for i in 0..3 {
        // The new pod first, then the old one goes.
        live.push(&new[i]);
        envoy.set_endpoints(&healthy(&live)).await;
        until_pools(&envoy, &workers, &live, 5).await;
        live.retain(|x| x.addr != old[i].addr);
        envoy.set_endpoints(&healthy(&live)).await;
        until_pools(&envoy, &workers, &live, 5).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed) = load.stop().await;
    eprintln!("rolling update: {ok} requests answered, {failed} failed");
    assert!(ok > 200, "{ok} requests");
    assert_eq!(failed, 0, "{failed} of {} requests failed during the rollout", ok + failed);
    let before: Vec<u64> = old.iter().map(|x| x.stats.requests.load(Ordering::Relaxed)).collect();
    let got: BTreeSet<String> = served(&envoy, &workers[0], 30).await.into_iter().collect();
    assert!(got.iter().all(|id| ["b4", "b5", "b6"].contains(&id.as_str())), "{got:?}");
    let after: Vec<u64> = old.iter().map(|x| x.stats.requests.load(Ordering::Relaxed)).collect();
    assert_eq!(before, after, "the old endpoints get nothing more");
    for x in new {
        assert!(x.stats.requests.load(Ordering::Relaxed) > 0, "{} served", x.id());
        assert!(x.stats.health_checks.load(Ordering::Relaxed) > 0, "{} is health checked", x.id());
    }
    // Shared-data keys: one in-flight counter per slot, and the slots of the three that left
    // are still in their quarantine: 6 counters, not one per endpoint ever seen.
    let s = status_of(&envoy, &workers[0]).await;
    let keys = s["shared_data"]["keys"].as_u64().unwrap();
    eprintln!("shared data after the rollout: {}", s["shared_data"]);
    assert!(keys <= 6 + 12, "{keys} keys");
    envoy.assert_every_worker_served().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn draining_endpoints_keep_their_sessions_with_the_clusters_source() {
    let _serial = SERIAL.lock().await;
    let b = backends(2).await;
    let extra = json!({
        "discovery": {"source": "clusters"},
        "sticky": {"cookie": "lb", "secrets": ["0123456789abcdef0123456789abcdef"], "secure": false},
    });
    let setup = EnvoySetup::new(config(extra), vec![b[0].addr, b[1].addr]).eds().concurrency(2);
    let mut envoy = Envoy::start(setup).await;
    let workers = envoy.client_per_worker().await;
    until_pools(&envoy, &workers, &[&b[0], &b[1]], 5).await;
    // A session on b2.
    let client = client();
    let cookie = loop {
        let r = client.get(envoy.url("/")).send().await.unwrap();
        if r.headers()["x-backend"] == "b2" {
            let c = r.headers()["set-cookie"].to_str().unwrap().to_string();
            break c.split(';').next().unwrap().to_string();
        }
    };
    envoy
        .set_endpoints(&[
            EdsEndpoint::healthy(b[0].addr),
            EdsEndpoint::healthy(b[1].addr).health("DRAINING"),
        ])
        .await;
    let start = Instant::now();
    loop {
        let mut all = true;
        for w in &workers {
            let s = status_of(&envoy, w).await;
            let b2 = s["backends"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["address"] == b[1].addr.to_string())
                .cloned();
            all &= b2.is_some_and(|x| x["drain"] == true);
        }
        if all {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "b2 not draining on every worker");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fresh = count_by_backend(&envoy, 20, &[]).await;
    assert_eq!(
        fresh.keys().collect::<Vec<_>>(),
        ["b1"],
        "no new sessions on a draining endpoint: {fresh:?}"
    );
    let pinned = count_by_backend(&envoy, 10, &[("cookie", &cookie)]).await;
    assert_eq!(pinned.keys().collect::<Vec<_>>(), ["b2"], "its session stays: {pinned:?}");
}

/// Envoy's admin API behind a switch: forwarded, failing with 500, or hanging.
struct FakeAdmin {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    target: Arc<std::sync::Mutex<Option<SocketAddr>>>,
}

const FORWARD: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;

impl FakeAdmin {
    async fn start(mode: u8) -> FakeAdmin {
        let mode = Arc::new(AtomicU8::new(mode));
        let target: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
        let (m, t) = (Arc::clone(&mode), Arc::clone(&target));
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let (m, t) = (Arc::clone(&m), Arc::clone(&t));
            async move {
                match m.load(Ordering::Relaxed) {
                    FAIL => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, String::from("no")),
                    HANG => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        (axum::http::StatusCode::OK, String::new())
                    }
                    _ => {
                        let admin = t.lock().unwrap().unwrap();
                        let r = client().get(format!("http://{admin}{uri}")).send().await.unwrap();
                        let status = axum::http::StatusCode::from_u16(r.status().as_u16()).unwrap();
                        (status, r.text().await.unwrap())
                    }
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeAdmin { addr, mode, target }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_good_pool_keeps_serving_when_the_admin_api_fails() {
    let _serial = SERIAL.lock().await;
    let b = backends(3).await;
    let admin = FakeAdmin::start(FORWARD).await;
    let extra = json!({"discovery": {"admin_cluster": "fake_admin", "timeout_ms": 200}});
    let setup = EnvoySetup::new(config(extra), vec![b[0].addr, b[1].addr])
        .eds()
        .static_cluster("fake_admin", admin.addr)
        .concurrency(2);
    let mut envoy = Envoy::start(setup).await;
    *admin.target.lock().unwrap() = Some(envoy.admin);
    let workers = envoy.client_per_worker().await;
    until_pools(&envoy, &workers, &[&b[0], &b[1]], 5).await;

    for (mode, says) in [(FAIL, "admin answered 500"), (HANG, "admin answered 504")] {
        admin.set(mode);
        envoy.wait_log(&format!("discovery: polls of cluster pool fail: {says}"), 5).await;
        // Several failed polls later: still one line, the same pool, every request answered.
        tokio::time::sleep(Duration::from_millis(4 * INTERVAL_MS)).await;
        let lines = envoy.log().matches(&format!("fail: {says}")).count();
        assert_eq!(lines, 1, "a failure is logged once, not per poll");
        for w in &workers {
            let s = status_of(&envoy, w).await;
            assert_eq!(s["discovery"]["last_error"], says, "{s}");
            assert!(s["discovery"]["failures"].as_u64().unwrap() >= 2, "{s}");
            assert!(s["discovery"]["age_ms"].as_u64().unwrap() >= 4 * INTERVAL_MS, "{s}");
        }
        assert_eq!(pools(&envoy, &workers).await[0].len(), 2);
        let got = count_by_backend(&envoy, 10, &[]).await;
        assert_eq!(got.keys().collect::<Vec<_>>(), ["b1", "b2"], "{got:?}");
    }
    assert!(envoy.stat("wasmcustom.lb_discovery_errors_total.pool.pool").await >= 4);
    assert!(
        envoy.stat("wasmcustom.lb_discovery_snapshot_age_ms.pool.pool").await >= 4 * INTERVAL_MS
    );

    // Working again: logged once, and the next change is followed.
    admin.set(FORWARD);
    envoy.wait_log("discovery: polls of cluster pool work again", 5).await;
    envoy.set_endpoints(&healthy(&[&b[0], &b[1], &b[2]])).await;
    until_pools(&envoy, &workers, &[&b[0], &b[1], &b[2]], 5).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn before_the_first_snapshot_the_cluster_chooses() {
    let _serial = SERIAL.lock().await;
    let b = backends(2).await;
    let admin = FakeAdmin::start(FAIL).await;
    let extra = json!({"discovery": {"admin_cluster": "fake_admin"}});
    let setup = EnvoySetup::new(config(extra), vec![b[0].addr, b[1].addr])
        .eds()
        .static_cluster("fake_admin", admin.addr);
    let envoy = Envoy::start(setup).await;
    envoy.wait_log("no snapshot yet: requests are not steered", 5).await;
    // A client's own steering header is removed: the cluster's fallback round robin chooses.
    let forced = b[1].addr.to_string();
    let got = count_by_backend(&envoy, 20, &[("x-gateway-destination-endpoint", &forced)]).await;
    assert_eq!(got.get("b1"), Some(&10), "{got:?}");
    assert_eq!(got.get("b2"), Some(&10), "{got:?}");
    let s: Value = serde_json::from_str(
        &client().get(envoy.url("/.lb/status")).send().await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    assert_eq!(s["discovery"]["generation"], 0, "{s}");
    assert_eq!(s["discovery"]["endpoints"], 0, "{s}");
    assert_eq!(s["discovery"]["last_error"], "admin answered 500", "{s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_strict_dns_cluster_is_followed_through_its_resolved_addresses() {
    let _serial = SERIAL.lock().await;
    let b = backends(1).await;
    let extra = json!({"discovery": {"source": "clusters"}});
    let setup = EnvoySetup::new(config(extra), vec![b[0].addr]).strict_dns().concurrency(2);
    let envoy = Envoy::start(setup).await;
    let workers = envoy.client_per_worker().await;
    until_pools(&envoy, &workers, &[&b[0]], 10).await;
    let s = status_of(&envoy, &workers[0]).await;
    assert_eq!(s["backends"][0]["id"], format!("127.0.0.1_{}", b[0].addr.port()), "{s}");
    assert_eq!(s["discovery"]["source"], "clusters");
    let got = count_by_backend(&envoy, 5, &[]).await;
    assert_eq!(got.get("b1"), Some(&5));
}

/// istio/wasmplugin.yaml's pluginConfig, as JSON.
fn istio_plugin_config() -> String {
    let text = std::fs::read_to_string(repo_root().join("istio/wasmplugin.yaml")).unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let json: Value = serde_json::to_value(&doc["spec"]["pluginConfig"]).unwrap();
    json.to_string()
}

/// Waits until the Istio pool's `lb_discovery_endpoints` gauge is `n`.
async fn until_endpoints(envoy: &Envoy, n: u64) {
    let endpoints =
        "wasmcustom.lb_discovery_endpoints.pool.outbound_8080__backend_demo_svc_cluster_local";
    let start = Instant::now();
    while envoy.stat_now(endpoints).await != n {
        assert!(start.elapsed() < Duration::from_secs(5), "{endpoints} != {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_istio_shaped_proxy_follows_its_outbound_cluster_with_the_shipped_plugin_config() {
    let _serial = SERIAL.lock().await;
    let b = backends(3).await;
    let plugin = istio_plugin_config();
    let setup = EnvoySetup::new(plugin, vec![b[0].addr, b[1].addr])
        .eds_named(ISTIO_CLUSTER, ISTIO_ADMIN_CLUSTER)
        .concurrency(2);
    let mut envoy = Envoy::start(setup).await;
    until_endpoints(&envoy, 2).await;
    envoy.set_endpoints(&healthy(&[&b[0], &b[1], &b[2]])).await;
    until_endpoints(&envoy, 3).await;
    tokio::time::sleep(Duration::from_millis(TICK_MS + 100)).await;
    let got = count_by_backend(&envoy, 30, &[]).await;
    assert_eq!(got.len(), 3, "every pod of the service serves: {got:?}");
    // Each endpoint is probed at its own phase of the 2 s interval: within one interval.
    let start = Instant::now();
    while let Some(x) = b.iter().find(|x| x.stats.health_checks.load(Ordering::Relaxed) == 0) {
        assert!(start.elapsed() < Duration::from_secs(5), "{} never probed", x.id());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_endpoints_are_followed() {
    let _serial = SERIAL.lock().await;
    const N: usize = 2_000;
    let mut b = Vec::with_capacity(N);
    for i in 0..N {
        let ip = std::net::Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8);
        let addr = SocketAddr::from((ip, 0));
        b.push(demo_backend::start(addr, BackendOptions::new(format!("n{i}"))).await.unwrap());
    }
    let setup =
        EnvoySetup::new(config(json!({})), b.iter().map(|x| x.addr).collect()).eds().concurrency(2);
    let mut envoy = Envoy::start(setup).await;
    let workers = envoy.client_per_worker().await;
    let refs: Vec<&Backend> = b.iter().collect();
    let took = until_pools(&envoy, &workers, &refs, 20).await;
    eprintln!("2,000 endpoints in every worker's pool after {took:?}");
    // Round robin per worker: of 2 x N requests one worker serves at least N in a row of its
    // own round robin, which reaches every endpoint (on whatever connections they came).
    let got = spread(&envoy, 2 * N).await;
    let missing: Vec<&str> = b.iter().map(|x| x.id()).filter(|id| !got.contains(*id)).collect();
    assert!(missing.is_empty(), "never served: {} of {N}: {missing:?}", missing.len());
    // Half of them leave.
    envoy
        .set_endpoints(
            &refs[..N / 2].iter().map(|x| EdsEndpoint::healthy(x.addr)).collect::<Vec<_>>(),
        )
        .await;
    until_pools(&envoy, &workers, &refs[..N / 2], 20).await;
    let got = spread(&envoy, N).await;
    assert_eq!(got.len(), N / 2, "every endpoint that stays, and only those");
    assert!(got.iter().all(|id| id[1..].parse::<usize>().unwrap() < N / 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_that_ignores_the_steering_is_detected() {
    let _serial = SERIAL.lock().await;
    let b = backends(3).await;
    // Every request hashes to the same backend; the cluster balances on its own.
    let list: Vec<_> = b.iter().map(|x| (x.id(), x.addr, 1)).collect();
    let cfg = plugin_config(&list, json!({"algorithm": "maglev", "hash_on": {"header": "x-user"}}));
    let setup = EnvoySetup::new(cfg, b.iter().map(|x| x.addr).collect()).tweak(|doc| {
        let clusters = doc["static_resources"]["clusters"].as_sequence_mut().unwrap();
        let pool = clusters.iter_mut().find(|c| c["name"] == "pool").unwrap();
        pool.as_mapping_mut().unwrap().remove("load_balancing_policy");
        pool["lb_policy"] = "ROUND_ROBIN".into();
    });
    let envoy = Envoy::start(setup).await;
    // Judged over windows of at least 5 s and 8 samples (one response in 32).
    let line = "steering ignored: most sampled responses came from hosts the filter did not pick";
    let start = Instant::now();
    let mut seen = BTreeSet::new();
    while !envoy.log().contains(line) {
        assert!(start.elapsed() < Duration::from_secs(20), "no {line:?}:\n{}", envoy.log_tail(20));
        seen.extend(count_by_backend(&envoy, 32, &[("x-user", "alice")]).await.into_keys());
    }
    assert_eq!(seen.len(), 3, "the cluster's own round robin: {seen:?}");
    assert!(envoy.stat("wasmcustom.lb_steering_ignored_total.pool.pool").await >= 4);
}
