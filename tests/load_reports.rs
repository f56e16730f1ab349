//! Load reports (ORCA) on a real Envoy (`--concurrency 2`) with real backends that report:
//! client_side_weighted_round_robin converges to the backends' capacities and follows a change,
//! least_load keeps requests off the backend with the longest queue, the filter asks for
//! reports and hides them when configured to, and reports that cannot be read are counted and
//! never fail a request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use demo_backend::{LoadReport, QueueSim, ReportFormat};
use serde_json::json;
use support::*;

const UPDATE_MS: u64 = 1_000;

fn reporting(id: &str, capacity_rps: Option<f64>, format: ReportFormat) -> BackendOptions {
    let mut o = BackendOptions::new(id);
    o.load_report = Some(LoadReport { format, capacity_rps, only_when_asked: false });
    o
}

async fn start(backends: &[Backend], extra: serde_json::Value) -> Envoy {
    let pool: Vec<_> = backends.iter().map(|b| (b.id(), b.addr, 1)).collect();
    let endpoints = backends.iter().map(|b| b.addr).collect();
    Envoy::start(EnvoySetup::new(plugin_config(&pool, extra), endpoints).concurrency(2)).await
}

/// Requests from one keep-alive client per worker for `duration`: which backend answered
/// each, and whether any response still carried a report header.
async fn drive(
    clients: &[reqwest::Client],
    url: &str,
    duration: Duration,
) -> (BTreeMap<String, usize>, bool) {
    let tasks: Vec<_> = clients
        .iter()
        .cloned()
        .map(|client| {
            let url = url.to_string();
            tokio::spawn(async move {
                let end = Instant::now() + duration;
                let mut ids = Vec::new();
                let mut leaked = false;
                while Instant::now() < end {
                    let r = client.get(&url).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    leaked |= r.headers().contains_key("endpoint-load-metrics");
                    ids.push(r.headers()["x-backend"].to_str().unwrap().to_string());
                    let _ = r.bytes().await;
                }
                (ids, leaked)
            })
        })
        .collect();
    let mut counts = BTreeMap::new();
    let mut leaked = false;
    for t in tasks {
        let (ids, l) = t.await.unwrap();
        leaked |= l;
        for id in ids {
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    (counts, leaked)
}

fn shares(counts: &BTreeMap<String, usize>, ids: &[&str]) -> Vec<f64> {
    let total: usize = counts.values().sum();
    ids.iter().map(|id| counts.get(*id).copied().unwrap_or(0) as f64 / total as f64).collect()
}

fn assert_shares(what: &str, got: &[f64], want: &[f64]) {
    eprintln!("{what}: shares {got:.4?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 0.05 * w, "{what}: shares {got:.3?}, want {want:.3?} within 5%");
    }
}

/// Capacities 100:200:400 → shares 1:2:4 within 5 s of the first request (blackout 1 s);
/// then one backend's capacity halves and its weight halves within 3 weight-update periods,
/// after which the shares are 1:2:2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_side_weighted_round_robin_follows_reported_capacity() {
    let mut backends = Vec::new();
    for (id, capacity) in [("a", 100.0), ("b", 200.0), ("c", 400.0)] {
        backends.push(backend(reporting(id, Some(capacity), ReportFormat::Text)).await);
    }
    let envoy = start(
        &backends,
        json!({
            "algorithm": "client_side_weighted_round_robin",
            "client_side_weighted_round_robin": {"blackout_period_ms": 1000, "weight_update_period_ms": UPDATE_MS},
            "load_reports": {"remove_from_response": true}
        }),
    )
    .await;
    let clients = envoy.client_per_worker().await;
    let url = envoy.url("/");
    // Converging: 5 s of traffic, then the shares over the next 2 s.
    let (_, leaked) = drive(&clients, &url, Duration::from_secs(5)).await;
    assert!(!leaked, "remove_from_response: no report reaches the client");
    let (counts, _) = drive(&clients, &url, Duration::from_secs(2)).await;
    assert_shares(
        "capacities 1:2:4",
        &shares(&counts, &["a", "b", "c"]),
        &[1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0],
    );
    let gauge = "wasmcustom.lb_load_weight.pool.pool.backend.c";
    let before = envoy.stat(gauge).await;
    assert!((390..=400).contains(&before), "weight of c: {before}");

    // c's capacity halves while traffic flows: its weight follows within 3 update periods.
    let traffic = {
        let (clients, url) = (clients.clone(), url.clone());
        tokio::spawn(async move { drive(&clients, &url, Duration::from_secs(4)).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    backends[2].set_capacity_rps(200.0);
    let changed = Instant::now();
    let mut after = before;
    while changed.elapsed() < Duration::from_millis(3 * UPDATE_MS + 500) {
        after = envoy.stat_now(gauge).await;
        if after <= before / 2 + 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let took = changed.elapsed();
    eprintln!("weight of c: {before} -> {after} in {took:?}");
    assert!(after <= before / 2 + 1, "weight of c still {after} (was {before}) after {took:?}");
    // The gauge is flushed on a tick (100 ms) after the update that changed the weight.
    assert!(took <= Duration::from_millis(3 * UPDATE_MS + 100), "took {took:?}");
    let _ = traffic.await.unwrap();
    let (counts, _) = drive(&clients, &url, Duration::from_secs(2)).await;
    assert_shares("capacities 1:2:2", &shares(&counts, &["a", "b", "c"]), &[0.2, 0.4, 0.4]);
    assert!(envoy.stat("wasmcustom.lb_load_reports_total.pool.pool").await > 1000);
    assert_eq!(envoy.stat("wasmcustom.lb_load_reports_invalid_total.pool.pool").await, 0);
}

/// Backends with a queue (one request at a time, 20 ms each; one of them 80 ms) report their
/// queue depth: least_load sends the slow one far fewer requests than round robin would, and
/// the status page shows each backend's last report.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn least_load_keeps_requests_off_the_longest_queue() {
    let mut backends = Vec::new();
    for (id, service_ms) in [("a", 20), ("b", 20), ("slow", 80)] {
        let mut o = reporting(id, None, ReportFormat::Json);
        o.queue = Some(QueueSim { slots: 1, service: Duration::from_millis(service_ms) });
        backends.push(backend(o).await);
    }
    let envoy = start(
        &backends,
        json!({
            "algorithm": "least_load",
            "least_load": {"metric": "named_metrics.queue_depth"},
            "status": {"path": "/lb-status"}
        }),
    )
    .await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let url = envoy.url("/");
            tokio::spawn(async move {
                let client = reqwest::Client::builder().no_proxy().build().unwrap();
                let mut ids = Vec::new();
                for _ in 0..40 {
                    let r = client.get(&url).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    ids.push(r.headers()["x-backend"].to_str().unwrap().to_string());
                }
                ids
            })
        })
        .collect();
    let mut counts = BTreeMap::<String, usize>::new();
    for t in tasks {
        for id in t.await.unwrap() {
            *counts.entry(id).or_default() += 1;
        }
    }
    let slow = counts.get("slow").copied().unwrap_or(0);
    eprintln!("least_load: {counts:?}");
    // Round robin would give it 80 of 240; at a quarter of the others' speed it should get
    // about a ninth.
    assert!(slow < 45, "slow backend got {slow} of 240: {counts:?}");
    let status: serde_json::Value = serde_json::from_str(
        &client().get(envoy.url("/lb-status")).send().await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    for b in status["backends"].as_array().unwrap() {
        let report = &b["load_report"];
        assert!(report["age_ms"].as_u64().is_some(), "{b}");
        assert!(report["metric"].as_f64().is_some(), "{b}");
        assert!(report["rps"].as_f64().is_some_and(|r| r > 0.0), "{b}");
    }
    envoy.assert_every_worker_served().await;
}

/// The filter adds the configured request header (so backends that report only when asked
/// do), and leaves reports in the response unless told to remove them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_asks_for_reports_and_keeps_them_by_default() {
    let mut backends = Vec::new();
    for id in ["a", "b"] {
        let mut o = reporting(id, Some(100.0), ReportFormat::Text);
        o.load_report.as_mut().unwrap().only_when_asked = true;
        o.echo_headers = vec!["endpoint-load-metrics-format".into()];
        backends.push(backend(o).await);
    }
    let envoy = start(
        &backends,
        json!({
            "algorithm": "least_load",
            "least_load": {"metric": "named_metrics.in_flight"},
            "load_reports": {"request_header": "endpoint-load-metrics-format", "request_header_value": "TEXT"}
        }),
    )
    .await;
    for headers in answers(&envoy, 20, &[]).await {
        assert_eq!(headers["x-echo-endpoint-load-metrics-format"], "TEXT");
        let report = headers["endpoint-load-metrics"].to_str().unwrap();
        assert!(
            report.starts_with("TEXT ") && report.contains("named_metrics.in_flight="),
            "{report}"
        );
    }
    assert!(envoy.stat("wasmcustom.lb_load_reports_total.pool.pool").await >= 20);
}

/// Hostile reports (garbage, huge, NaN, binary, a duplicate field) never fail a request and
/// are counted as invalid; the weights stay equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_reports_are_counted_and_never_fail_a_request() {
    let bad = [
        "TEXT rps_fractional=NaN, cpu_utilization=1",
        "TEXT rps_fractional=1, rps_fractional=2",
        "BIN CgQIARAB",
        "garbage",
    ];
    let mut backends = Vec::new();
    for (i, report) in bad.iter().enumerate() {
        let mut o = BackendOptions::new(format!("b{i}"));
        o.extra_headers = vec![("endpoint-load-metrics".into(), report.to_string())];
        backends.push(backend(o).await);
    }
    let mut huge = BackendOptions::new("huge");
    huge.extra_headers =
        vec![("endpoint-load-metrics".into(), format!("TEXT {}", "eps=1,".repeat(2000)))];
    backends.push(backend(huge).await);
    let envoy = start(
        &backends,
        json!({
            "algorithm": "client_side_weighted_round_robin",
            "client_side_weighted_round_robin": {"blackout_period_ms": 0, "weight_update_period_ms": 100}
        }),
    )
    .await;
    let counts = count_by_backend(&envoy, 100, &[]).await;
    assert_eq!(counts.len(), 5, "{counts:?}");
    assert_eq!(envoy.stat("wasmcustom.lb_load_reports_invalid_total.pool.pool").await, 100);
    assert_eq!(envoy.stat("wasmcustom.lb_load_reports_total.pool.pool").await, 0);
    for id in ["b0", "b1", "b2", "b3", "huge"] {
        assert_eq!(
            envoy.stat(&format!("wasmcustom.lb_load_weight.pool.pool.backend.{id}")).await,
            1
        );
    }
}
