//! The filter's metrics in a real Envoy's /stats/prometheus, labelled by the stats_tags of the
//! shipped envoy/envoy.yaml: requests steered, upstream errors, ejections, health transitions,
//! in-flight and healthy gauges per backend; sticky and no_healthy_backend per pool.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::Ordering;

use serde_json::json;
use support::*;

/// The value of the Prometheus sample `name{labels}` (labels exactly as Envoy prints them).
fn sample(text: &str, name: &str, labels: &str) -> Option<u64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.trim().parse().unwrap())
}

fn backend(text: &str, name: &str, id: &str) -> u64 {
    sample(text, name, &format!("pool=\"pool\",backend=\"{id}\""))
        .unwrap_or_else(|| panic!("no {name} for {id} in:\n{}", lines_of(text, name)))
}

fn lines_of(text: &str, name: &str) -> String {
    text.lines().filter(|l| l.contains(name)).collect::<Vec<_>>().join("\n")
}

async fn prometheus(envoy: &Envoy) -> String {
    tokio::time::sleep(METRICS_SETTLE).await;
    client().get(envoy.admin_url("/stats/prometheus")).send().await.unwrap().text().await.unwrap()
}

/// b2 answers 500 to everything: its failed tries are counted and it is ejected once; every
/// request is steered to exactly one primary; nothing stays in flight; the healthy gauge
/// shows the ejection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_metrics_are_labelled_and_add_up() {
    let mut opts = BackendOptions::new("b2");
    opts.fail_rate = 1.0;
    let backends = [
        support::backend(BackendOptions::new("b1")).await,
        support::backend(opts).await,
        support::backend(BackendOptions::new("b3")).await,
    ];
    let pool: Vec<_> = backends.iter().map(|b| (b.id(), b.addr, 1)).collect();
    let extra = json!({"outlier_detection": {"consecutive_errors": 3, "base_ejection_ms": 60000},
                       "sticky": {"secrets": ["0123456789abcdef0123456789abcdef"]}});
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let envoy =
        Envoy::start(EnvoySetup::new(plugin_config(&pool, extra), endpoints).concurrency(2)).await;
    let counts = count_by_backend(&envoy, 60, &[]).await;
    assert_eq!(counts.get("b2"), None, "retries hide b2's failures: {counts:?}");
    envoy.wait_log("b2 ejected for 60000 ms: 3 consecutive errors (ejection 1)", 5).await;

    let text = prometheus(&envoy).await;
    let steered: u64 =
        ["b1", "b2", "b3"].iter().map(|id| backend(&text, "lb_requests_total", id)).sum();
    assert_eq!(steered, 60);
    let b2_tries = backends[1].stats.requests.load(Ordering::SeqCst);
    assert!(b2_tries >= 3);
    assert_eq!(backend(&text, "lb_upstream_errors_total", "b2"), b2_tries);
    assert_eq!(backend(&text, "lb_upstream_errors_total", "b1"), 0);
    assert_eq!(backend(&text, "lb_ejections_total", "b2"), 1);
    assert_eq!(backend(&text, "lb_ejections_total", "b1"), 0);
    assert_eq!(backend(&text, "lb_health_transitions_total", "b2"), 1);
    assert_eq!(backend(&text, "lb_healthy", "b2"), 0);
    assert_eq!(backend(&text, "lb_healthy", "b1"), 1);
    for id in ["b1", "b2", "b3"] {
        assert_eq!(backend(&text, "lb_in_flight", id), 0, "{id}");
    }
    // One cookie per new session: every request came without one.
    let issued: u64 =
        ["b1", "b2", "b3"].iter().map(|id| backend(&text, "lb_sticky_issued_total", id)).sum();
    assert_eq!(issued, 60);
    assert_eq!(sample(&text, "lb_sticky_misses_total", "pool=\"pool\""), Some(60));
    assert_eq!(sample(&text, "lb_sticky_hits_total", "pool=\"pool\""), Some(0));
    assert_eq!(sample(&text, "lb_no_healthy_backend_total", "pool=\"pool\""), Some(0));
    envoy.assert_every_worker_served().await;
}

/// With every backend failing its checks and panic mode off, requests are answered 503
/// `no_healthy_backend`, each counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_healthy_backend_is_counted_per_pool() {
    let mut opts = BackendOptions::new("b1");
    opts.healthy = false;
    let b1 = support::backend(opts).await;
    let extra = json!({"panic_threshold_percent": 0,
                       "health_check": {"path": "/healthz", "interval_ms": 200, "timeout_ms": 150, "unhealthy_threshold": 1}});
    let setup = EnvoySetup::new(plugin_config(&[("b1", b1.addr, 1)], extra), vec![b1.addr]);
    let envoy = Envoy::start(setup.concurrency(2)).await;
    envoy.wait_log("b1 unhealthy: 1 probe failures, last: status 503", 5).await;
    let client = client();
    for _ in 0..7 {
        let resp = client.get(envoy.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["x-lb-error"], "no_healthy_backend");
    }
    let text = prometheus(&envoy).await;
    assert_eq!(sample(&text, "lb_no_healthy_backend_total", "pool=\"pool\""), Some(7));
    assert_eq!(backend(&text, "lb_healthy", "b1"), 0);
    assert_eq!(backend(&text, "lb_health_transitions_total", "b1"), 1);
    assert_eq!(backend(&text, "lb_requests_total", "b1"), 0);
}
