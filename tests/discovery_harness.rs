//! The harness delivers the steered cluster's endpoints as a control plane would (CDS + EDS
//! from watched files, or STRICT_DNS), next to an admin cluster pointing at Envoy's own admin
//! listener; these tests prove it on a real Envoy without the filter's discovery (the filter
//! steers by its static backends list).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::TcpListener;
use std::time::Duration;

use serde_json::json;
use support::*;

fn config(backends: &[&Backend], cluster: &str) -> String {
    let list: Vec<_> = backends.iter().map(|b| (b.id(), b.addr, 1)).collect();
    plugin_config(&list, json!({"cluster": cluster}))
}

/// The admin cluster's one host is Envoy's admin listener.
async fn assert_admin_cluster(envoy: &Envoy, name: &str) {
    let hosts = envoy.cluster_hosts(name).await;
    assert_eq!(hosts.iter().map(|h| h.address).collect::<Vec<_>>(), vec![envoy.admin], "{name}");
}

#[tokio::test(flavor = "multi_thread")]
async fn eds_pool_serves_and_follows_endpoint_updates() {
    let b = backends(3).await;
    let setup = EnvoySetup::new(config(&[&b[0], &b[1]], "pool"), vec![b[0].addr, b[1].addr])
        .eds()
        .live()
        .concurrency(2);
    let mut envoy = Envoy::start(setup).await;
    assert_admin_cluster(&envoy, ADMIN_CLUSTER).await;
    let healthy = |bs: &[&Backend]| -> Vec<EdsEndpoint> {
        bs.iter().map(|b| EdsEndpoint::healthy(b.addr).as_reported()).collect()
    };
    let mut initial = healthy(&[&b[0], &b[1]]);
    initial.sort();
    assert_eq!(envoy.eds_endpoints().await, initial);

    // Round robin per worker (two workers): each backend gets about half.
    let counts = count_by_backend(&envoy, 20, &[]).await;
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["b1", "b2"], "{counts:?}");
    assert!(counts.values().all(|&n| n >= 6), "{counts:?}");

    // A third endpoint, then the filter told of it: the workers route to it.
    let took = envoy
        .set_endpoints(&[
            EdsEndpoint::healthy(b[0].addr),
            EdsEndpoint::healthy(b[1].addr),
            EdsEndpoint::healthy(b[2].addr),
        ])
        .await;
    eprintln!("EDS update applied {took:?} after the rename");
    assert_eq!(envoy.eds_endpoints().await.len(), 3);
    assert_eq!(envoy.cluster_stat("pool", "membership_total").await, 3);
    assert!(envoy.update_plugin_config(config(&[&b[0], &b[1], &b[2]], "pool")).await);
    let counts = count_by_backend(&envoy, 30, &[]).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n >= 6), "{counts:?}");

    // Health, weight and priority as given; then none at all.
    let mixed = [
        EdsEndpoint::healthy(b[0].addr).weight(3),
        EdsEndpoint::healthy(b[1].addr).health("DRAINING"),
        EdsEndpoint::healthy(b[2].addr).health("UNHEALTHY").priority(1),
        EdsEndpoint::healthy(refused_address()).health("DEGRADED").priority(1),
        EdsEndpoint::healthy(refused_address()).health("TIMEOUT").weight(7),
        EdsEndpoint::healthy(refused_address()).health("HEALTHY").priority(2),
    ];
    envoy.set_endpoints(&mixed).await;
    // The config dump reports DRAINING and TIMEOUT as UNHEALTHY; /clusters keeps DRAINING.
    let by_address: std::collections::BTreeMap<_, _> = envoy
        .cluster_hosts("pool")
        .await
        .into_iter()
        .map(|h| (h.address, (h.eds_health_status.unwrap(), h.weight, h.priority)))
        .collect();
    for e in mixed {
        let health = match e.health {
            None => "HEALTHY",
            Some("TIMEOUT") => "UNHEALTHY",
            Some(h) => h,
        };
        let want = (health.to_string(), e.weight.unwrap_or(1), e.priority);
        assert_eq!(by_address[&e.address], want, "{e:?}");
    }
    envoy.set_endpoints(&[]).await;
    assert!(envoy.eds_endpoints().await.is_empty());
    assert_eq!(envoy.cluster_stat("pool", "membership_total").await, 0);
    envoy.set_endpoints(&[EdsEndpoint::healthy(b[0].addr)]).await;
    assert_eq!(envoy.cluster_stat("pool", "update_rejected").await, 0);
}

/// The Istio-shaped fixture: cluster `outbound|8080||backend.demo.svc.cluster.local` and the
/// admin cluster `prometheus_stats`.
#[tokio::test(flavor = "multi_thread")]
async fn istio_named_eds_cluster_serves_and_follows_updates() {
    let b = backends(2).await;
    let setup = EnvoySetup::new(config(&[&b[0], &b[1]], ISTIO_CLUSTER), vec![b[0].addr, b[1].addr])
        .eds_named(ISTIO_CLUSTER, ISTIO_ADMIN_CLUSTER);
    let mut envoy = Envoy::start(setup).await;
    assert_admin_cluster(&envoy, ISTIO_ADMIN_CLUSTER).await;
    let clusters: serde_json::Value =
        serde_json::from_str(&envoy.admin_get("/clusters?format=json").await).unwrap();
    let mut names: Vec<&str> = clusters["cluster_statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, [ISTIO_CLUSTER, ISTIO_ADMIN_CLUSTER]);
    let counts = count_by_backend(&envoy, 10, &[]).await;
    assert_eq!(counts.len(), 2, "{counts:?}");
    envoy.set_endpoints(&[EdsEndpoint::healthy(b[1].addr)]).await;
    assert_eq!(envoy.cluster_stat(ISTIO_CLUSTER, "membership_total").await, 1);
    assert_eq!(envoy.cluster_stat_text(ISTIO_CLUSTER, "version_text").await.as_deref(), Some("v2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_dns_pool_resolves_localhost() {
    let b = backends(1).await;
    let setup = EnvoySetup::new(config(&[&b[0]], "pool"), vec![b[0].addr]).strict_dns();
    let envoy = Envoy::start(setup).await;
    assert_admin_cluster(&envoy, ADMIN_CLUSTER).await;
    // The first resolution may lag /ready by a moment.
    let mut hosts = Vec::new();
    for _ in 0..100 {
        hosts = envoy.cluster_hosts("pool").await;
        if !hosts.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hosts: Vec<_> = hosts.into_iter().map(|h| (h.address, h.hostname)).collect();
    assert_eq!(hosts, vec![(b[0].addr, "localhost".to_string())]);
    let counts = count_by_backend(&envoy, 5, &[]).await;
    assert_eq!(counts.get("b1"), Some(&5), "{counts:?}");
}

/// The admin port is chosen before Envoy starts; when it is taken meanwhile, Envoy is
/// started again on another.
#[tokio::test(flavor = "multi_thread")]
async fn a_taken_admin_port_is_replaced() {
    let b = backends(1).await;
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let setup = EnvoySetup::new(config(&[&b[0]], "pool"), vec![b[0].addr]).eds().admin_port(port);
    let envoy = Envoy::start(setup).await;
    assert_ne!(envoy.admin.port(), port);
    assert_admin_cluster(&envoy, ADMIN_CLUSTER).await;
    let counts = count_by_backend(&envoy, 3, &[]).await;
    assert_eq!(counts.get("b1"), Some(&3), "{counts:?}");
    drop(busy);
}

/// How soon Envoy applies an EDS file after the rename (printed; bounded loosely).
#[tokio::test(flavor = "multi_thread")]
async fn eds_updates_apply_within_milliseconds() {
    let b = backends(2).await;
    let setup = EnvoySetup::new(config(&[&b[0], &b[1]], "pool"), vec![b[0].addr, b[1].addr]).eds();
    let mut envoy = Envoy::start(setup).await;
    let mut took = Vec::new();
    for i in 0..20 {
        let mut eps = vec![EdsEndpoint::healthy(b[0].addr)];
        if i % 2 == 0 {
            eps.push(EdsEndpoint::healthy(b[1].addr));
        }
        took.push(envoy.set_endpoints(&eps).await);
    }
    took.sort();
    eprintln!(
        "EDS apply after rename: min {:?}, median {:?}, max {:?}",
        took[0],
        took[took.len() / 2],
        took[took.len() - 1]
    );
    assert!(took[took.len() / 2] < Duration::from_secs(1), "{took:?}");
}
