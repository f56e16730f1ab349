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
/// Envoy worker counts every test runs with.
const CONCURRENCIES: [u32; 2] = [2, 4];

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

/// The filter's "prober lease taken" lines in Envoy's log, each with the thread that logged it.
fn lease_takers(envoy: &Envoy) -> Vec<String> {
    let log = envoy.log();
    let lines = log.lines().filter(|l| l.contains("prober lease taken: this worker sends"));
    // `[time][thread id][level][logger] ...`
    lines
        .map(|l| l.split(']').nth(1).unwrap_or_default().trim_start_matches('[').to_string())
        .collect()
}

/// (b) Each backend is probed once per interval, however many workers Envoy runs, and by one
/// VM over the run (one lease taken; the schedule alone would space probes sent by any VM).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_probe_per_backend_per_interval_at_any_concurrency() {
    for concurrency in CONCURRENCIES {
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
        let takers = lease_takers(&envoy);
        assert_eq!(takers.len(), 1, "concurrency {concurrency}: lease taken by threads {takers:?}");
        drop(envoy);
    }
}

/// (a) A backend that fails its checks gets no new requests after
/// interval x unhealthy_threshold + timeout + half an interval; when it passes again, traffic
/// returns after healthy_threshold intervals. Clients see no errors throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_backend_is_avoided_then_readmitted() {
    for concurrency in CONCURRENCIES {
        unhealthy_then_readmitted(concurrency).await;
    }
}

async fn unhealthy_then_readmitted(concurrency: u32) {
    let backends = backends(3).await;
    let envoy = start(&backends, concurrency, health(json!({}))).await;
    load(&envoy, 30).await;
    assert!(served(&backends[2]) > 0);

    backends[2].set_healthy(false);
    // docs/health.md, "Probes": interval × unhealthy_threshold + timeout + half an interval.
    let detect = Duration::from_millis(INTERVAL_MS * 2 + TIMEOUT_MS + INTERVAL_MS / 2);
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
    envoy.assert_every_worker_served().await;
}

/// (a) A stopped backend (connections refused): clients see no errors; once detected, no
/// request is steered to it any more: no request needs a retry (the probes, which still try
/// it once per interval, are never retried); restarted, it gets traffic again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_backend_is_avoided_without_client_errors() {
    for concurrency in CONCURRENCIES {
        stopped_backend_is_avoided_without_client_errors_at(concurrency).await;
    }
}

async fn stopped_backend_is_avoided_without_client_errors_at(concurrency: u32) {
    let mut backends = backends(3).await;
    let envoy = start(&backends, concurrency, health(json!({}))).await;
    let dead = backends.pop().unwrap();
    let addr = dead.addr;
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
    // Restarted on the same address: traffic returns after healthy_threshold intervals.
    let back = demo_backend::start(addr, BackendOptions::new("b3")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS * 3 + TIMEOUT_MS)).await;
    load(&envoy, 30).await;
    assert!(served(&back) > 0, "the restarted backend got no traffic");
    envoy.assert_every_worker_served().await;
}

/// (c) A health endpoint that hangs: probes time out and the backend is marked unhealthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_health_endpoint_times_out() {
    for concurrency in CONCURRENCIES {
        hanging_health_endpoint_times_out_at(concurrency).await;
    }
}

async fn hanging_health_endpoint_times_out_at(concurrency: u32) {
    let mut backends = backends(2).await;
    let mut hang = BackendOptions::new("b3");
    hang.health_delay = Duration::from_secs(5);
    backends.push(backend(hang).await);
    let envoy = start(&backends, concurrency, health(json!({}))).await;
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
    envoy.assert_every_worker_served().await;
}

/// (h) Nothing available (all unhealthy, no backup, panic off): a local 503 that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_available_is_a_clear_503() {
    for concurrency in CONCURRENCIES {
        nothing_available_is_a_clear_503_at(concurrency).await;
    }
}

async fn nothing_available_is_a_clear_503_at(concurrency: u32) {
    let backends = backends(2).await;
    let mut extra = health(json!({}));
    extra["panic_threshold_percent"] = json!(0);
    let envoy = start(&backends, concurrency, extra).await;
    let clients = envoy.client_per_worker().await;
    for b in &backends {
        b.set_healthy(false);
    }
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS * 3 + TIMEOUT_MS)).await;
    let before: u64 = backends.iter().map(served).sum();
    // From every worker (the connections were opened before the backends failed).
    for (w, client) in clients.iter().enumerate() {
        let r = client.get(envoy.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 503, "worker {w}");
        assert_eq!(r.headers()["x-lb-error"], "no_healthy_backend");
        assert_eq!(r.text().await.unwrap(), r#"{"error":"no_healthy_backend"}"#);
    }
    assert_eq!(backends.iter().map(served).sum::<u64>(), before, "a backend was reached");
}

/// Sends `n` requests and ignores the answers.
async fn send_any(envoy: &Envoy, n: usize) {
    let client = client();
    for _ in 0..n {
        let _ = client.get(envoy.url("/")).send().await.unwrap();
    }
}

async fn failing(id: &str) -> Backend {
    let mut o = BackendOptions::new(id);
    o.fail_rate = 1.0;
    backend(o).await
}

/// (d) Passive only (no health_check): a backend answering 500 is ejected after
/// consecutive_errors per proxy, counted across workers (each worker sees fewer than that);
/// its failures are retried, so clients see none; it gets no requests while ejected, and
/// comes back when the ejection is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ejection_and_return() {
    for concurrency in CONCURRENCIES {
        passive_ejection_and_return_at(concurrency).await;
    }
}

async fn passive_ejection_and_return_at(concurrency: u32) {
    let mut backends = backends(2).await;
    backends.push(failing("b3").await);
    let errors = 3 * concurrency as u64;
    let outlier =
        json!({"outlier_detection": {"consecutive_errors": errors, "base_ejection_ms": 1500}});
    let envoy = start(&backends, concurrency, outlier).await;
    // Requests from each worker in turn until b3 has failed `errors` times in all.
    let clients = envoy.client_per_worker().await;
    let mut seen_by = vec![0; clients.len()];
    let mut turn = 0;
    while served(&backends[2]) < errors {
        let before = served(&backends[2]);
        let r = clients[turn % clients.len()].get(envoy.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        seen_by[turn % clients.len()] += served(&backends[2]) - before;
        turn += 1;
        assert!(turn < 200, "b3 failed {} times in {turn} requests", served(&backends[2]));
    }
    assert!(seen_by.iter().all(|&n| n < errors), "failures seen per worker: {seen_by:?}");
    let first = format!("b3 ejected for 1500 ms: {errors} consecutive errors (ejection 1)");
    envoy.wait_log(&first, 2).await;
    let frozen = served(&backends[2]);
    load(&envoy, 30).await;
    assert_eq!(served(&backends[2]), frozen, "an ejected backend got requests");
    envoy.wait_log("b3 returned: ejection over", 5).await;
    // About a third of these reach b3: enough failures for the second ejection.
    load(&envoy, 5 * errors as usize).await;
    assert!(served(&backends[2]) > frozen, "the backend did not come back after its ejection");
    // It still fails: the second ejection lasts twice as long.
    let second = format!("b3 ejected for 3000 ms: {errors} consecutive errors (ejection 2)");
    envoy.wait_log(&second, 5).await;
    envoy.assert_every_worker_served().await;
}

/// (e) max_ejection_percent: with three of four backends failing and at most 50% ejected,
/// only two are ejected; the third keeps receiving. (With three failing hosts in one
/// steering header a request can fail on every try, so answers are not checked here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ejection_percent_is_respected() {
    for concurrency in CONCURRENCIES {
        max_ejection_percent_is_respected_at(concurrency).await;
    }
}

async fn max_ejection_percent_is_respected_at(concurrency: u32) {
    let mut backends = backends(1).await;
    for id in ["f2", "f3", "f4"] {
        backends.push(failing(id).await);
    }
    let outlier = json!({"outlier_detection": {"consecutive_errors": 2, "base_ejection_ms": 30000,
        "max_ejection_percent": 50}});
    let envoy = start(&backends, concurrency, outlier).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while envoy.log().matches(" ejected for ").count() < 2 {
        assert!(Instant::now() < deadline, "fewer than 2 ejections:\n{}", envoy.log_tail(30));
        send_any(&envoy, 10).await;
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    let before: Vec<u64> = backends.iter().map(served).collect();
    send_any(&envoy, 80).await;
    let log = envoy.log();
    assert_eq!(log.matches(" ejected for ").count(), 2, "{}", envoy.log_tail(30));
    let still: Vec<&str> = backends[1..]
        .iter()
        .zip(&before[1..])
        .filter(|(b, &n)| served(b) > n)
        .map(|(b, _)| b.id())
        .collect();
    assert_eq!(still.len(), 1, "exactly one failing backend is left in: {still:?}");
    envoy.assert_every_worker_served().await;
}

/// (f) Panic: when fewer than panic_threshold_percent of the primaries are healthy, traffic
/// goes to all primaries (as Envoy does), the entry is logged once and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_mode_spreads_over_all_primaries() {
    for concurrency in CONCURRENCIES {
        panic_mode_spreads_over_all_primaries_at(concurrency).await;
    }
}

async fn panic_mode_spreads_over_all_primaries_at(concurrency: u32) {
    let backends = backends(3).await;
    let envoy = start(&backends, concurrency, health(json!({}))).await;
    backends[1].set_healthy(false);
    backends[2].set_healthy(false);
    envoy.wait_log("panic mode:", 5).await;
    let before: Vec<u64> = backends.iter().map(served).collect();
    load(&envoy, 60).await;
    for (b, n) in backends.iter().zip(before) {
        assert!(served(b) > n, "{} got nothing in panic mode", b.id());
    }
    assert_eq!(envoy.log().matches("panic mode:").count(), 1, "logged once per entry");
    assert_eq!(envoy.stat("wasmcustom.lb_panic_mode_total.pool.pool").await, 1);
    backends[1].set_healthy(true);
    envoy.wait_log("panic mode over", 5).await;
    envoy.assert_every_worker_served().await;
}

/// (g) Backups get traffic only when no primary is available.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_only_when_no_primary_is_available() {
    for concurrency in CONCURRENCIES {
        backups_only_when_no_primary_is_available_at(concurrency).await;
    }
}

async fn backups_only_when_no_primary_is_available_at(concurrency: u32) {
    let backends = backends(3).await;
    let pool = json!([
        {"id": "b1", "address": backends[0].addr.to_string()},
        {"id": "b2", "address": backends[1].addr.to_string()},
        {"id": "b3", "address": backends[2].addr.to_string(), "backup": true},
    ]);
    let mut cfg = health(json!({}));
    cfg["cluster"] = json!("pool");
    cfg["backends"] = pool;
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let envoy =
        Envoy::start(EnvoySetup::new(cfg.to_string(), endpoints).concurrency(concurrency)).await;
    load(&envoy, 40).await;
    assert_eq!(served(&backends[2]), 0, "the backup got traffic while primaries were up");
    backends[0].set_healthy(false);
    backends[1].set_healthy(false);
    envoy.wait_log("b2 unhealthy", 5).await;
    envoy.wait_log("b1 unhealthy", 5).await;
    let primaries = served(&backends[0]) + served(&backends[1]);
    load(&envoy, 40).await;
    assert_eq!(served(&backends[2]), 40, "the backup should take everything");
    assert_eq!(served(&backends[0]) + served(&backends[1]), primaries);
    backends[0].set_healthy(true);
    envoy.wait_log("b1 healthy", 5).await;
    let backup = served(&backends[2]);
    load(&envoy, 40).await;
    assert_eq!(served(&backends[2]), backup, "the backup kept traffic after a primary returned");
    envoy.assert_every_worker_served().await;
}

/// (i) A config update keeps the health state of backends whose id and address did not
/// change: an unhealthy backend stays out right after the reload; a new one is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_health_state() {
    for concurrency in CONCURRENCIES {
        reload_keeps_health_state_at(concurrency).await;
    }
}

async fn reload_keeps_health_state_at(concurrency: u32) {
    let backends = backends(4).await;
    let config = |n: usize| {
        let pool: Vec<_> = backends[..n].iter().map(|b| (b.id(), b.addr, 1)).collect();
        plugin_config(&pool, health(json!({"interval_ms": 1000, "timeout_ms": 100})))
    };
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let mut envoy =
        Envoy::start(EnvoySetup::new(config(3), endpoints).concurrency(concurrency).live()).await;
    backends[2].set_healthy(false);
    envoy.wait_log("b3 unhealthy", 5).await;
    assert!(envoy.update_plugin_config(config(4)).await, "update refused");
    let frozen = served(&backends[2]);
    load(&envoy, 60).await;
    assert_eq!(served(&backends[2]), frozen, "the reload forgot that b3 is unhealthy");
    assert!(served(&backends[3]) > 0, "the added backend got no traffic");
    envoy.assert_every_worker_served().await;
}

/// Every primary draining and the only backup unhealthy: the draining primaries take new
/// requests (Envoy serves DRAINING hosts when nothing else is left) instead of a 503; once
/// the backup is healthy again it takes them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_primaries_serve_when_the_backups_are_down() {
    let backends = backends(3).await;
    backends[2].set_healthy(false);
    let list: Vec<_> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let role = if i < 2 { "drain" } else { "backup" };
            json!({"id": b.id(), "address": b.addr.to_string(), role: true})
        })
        .collect();
    let mut config = health(json!({}));
    config["cluster"] = json!("pool");
    config["backends"] = json!(list);
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let envoy = Envoy::start(EnvoySetup::new(config.to_string(), endpoints).concurrency(2)).await;
    envoy.wait_log("b3 unhealthy", 5).await;
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS)).await;
    let counts = count_by_backend(&envoy, 40, &[]).await;
    assert_eq!(counts.get("b3"), None, "{counts:?}");
    assert!(counts.contains_key("b1") && counts.contains_key("b2"), "{counts:?}");
    backends[2].set_healthy(true);
    envoy.wait_log("b3 healthy", 5).await;
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS)).await;
    let counts = count_by_backend(&envoy, 20, &[]).await;
    assert_eq!(counts.get("b3"), Some(&20), "{counts:?}");
    envoy.assert_every_worker_served().await;
}

/// The Istio-style cluster name of an outbound sidecar cluster, with a `|` that is not valid
/// in `:authority`.
const ISTIO_CLUSTER: &str = "outbound|8080||backend.demo.svc.cluster.local";

/// Renames the shipped cluster `pool` (and the route to it) to [`ISTIO_CLUSTER`].
fn istio_cluster_name(doc: &mut serde_yaml_ng::Value) {
    for c in doc["static_resources"]["clusters"].as_sequence_mut().unwrap() {
        if c["name"] == "pool" {
            c["name"] = ISTIO_CLUSTER.into();
            c["load_assignment"]["cluster_name"] = ISTIO_CLUSTER.into();
        }
    }
    let hcm = &mut doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"] = ISTIO_CLUSTER.into();
}

/// With an Istio cluster name and no `health_check.host`, probes carry a valid authority
/// (the service host): backends that answer 400 to a malformed `Host`, as strict servers do,
/// stay healthy, and the pool never goes into panic mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_of_an_istio_cluster_carry_a_valid_authority() {
    let mut backends = Vec::new();
    for id in ["b1", "b2"] {
        let mut o = BackendOptions::new(id);
        o.strict_host = true;
        backends.push(backend(o).await);
    }
    let pool: Vec<_> = backends.iter().map(|b| (b.id(), b.addr, 1)).collect();
    let mut config: serde_json::Value =
        serde_json::from_str(&plugin_config(&pool, health(json!({})))).unwrap();
    config["cluster"] = json!(ISTIO_CLUSTER);
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let setup = EnvoySetup::new(config.to_string(), endpoints).tweak(istio_cluster_name);
    let envoy = Envoy::start(setup.concurrency(2)).await;
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS * 4)).await;
    for b in &backends {
        assert!(probes(b) >= 3, "{} was probed {} times", b.id(), probes(b));
    }
    let counts = count_by_backend(&envoy, 20, &[]).await;
    // Round robin per worker: each of the two workers alternates, so the two differ by 2 at most.
    let (b1, b2) = (counts.get("b1").copied(), counts.get("b2").copied());
    assert!(b1.unwrap_or(0).abs_diff(b2.unwrap_or(0)) <= 2, "{counts:?}");
    assert_eq!(b1.unwrap_or(0) + b2.unwrap_or(0), 20, "{counts:?}");
    let log = envoy.log();
    assert!(!log.contains("unhealthy") && !log.contains("panic mode"), "{}", envoy.log_tail(30));
    envoy.assert_every_worker_served().await;
}
