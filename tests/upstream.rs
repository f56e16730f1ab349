//! Hostile upstreams against a real Envoy: what a backend sends back must never freeze a
//! worker, eject its peers or choose a backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use support::*;

/// Sets `include_attempt_count_in_response` on the shipped route: Envoy then overwrites the
/// upstream's `x-envoy-attempt-count` with its own count.
fn with_attempt_count_flag(doc: &mut serde_yaml_ng::Value) {
    let hcm = &mut doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    hcm["route_config"]["virtual_hosts"][0]["include_attempt_count_in_response"] = true.into();
}

/// A backend that claims `x-envoy-attempt-count: <claim>` on every answer (as any upstream
/// can when the route does not overwrite it) and two honest ones, with passive ejection on
/// and one worker. Every request is answered and nobody is ejected: the attempt count comes
/// from Envoy, not from the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_attempt_count_is_not_trusted() {
    for flag in [false, true] {
        for claim in ["4294967295", "3", "18446744073709551616", "-1", "2, 3"] {
            lying_attempt_count(claim, flag).await;
        }
    }
}

async fn lying_attempt_count(claim: &str, flag: bool) {
    let mut liar = BackendOptions::new("liar");
    liar.extra_headers = vec![("x-envoy-attempt-count".into(), claim.into())];
    let backends = vec![backend(liar).await, backend(BackendOptions::new("b2")).await, {
        backend(BackendOptions::new("b3")).await
    }];
    let pool: Vec<_> = backends.iter().map(|b| (b.id(), b.addr, 1)).collect();
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let outlier = json!({"outlier_detection": {"consecutive_errors": 2}});
    let mut setup = EnvoySetup::new(plugin_config(&pool, outlier), endpoints).concurrency(1);
    if flag {
        setup = setup.tweak(with_attempt_count_flag);
    }
    let envoy = Envoy::start(setup).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    for i in 0..60 {
        let r = client.get(envoy.url("/")).send().await;
        let status = r.as_ref().map(|r| r.status().as_u16());
        assert!(
            matches!(status, Ok(200)),
            "claim {claim:?} (route flag {flag}): request {i}: {status:?}\n{}",
            envoy.log_tail(30)
        );
    }
    let log = envoy.log();
    assert!(!log.contains(" ejected for "), "claim {claim:?} (flag {flag}) ejected:\n{log}");
    for b in &backends {
        let served = b.stats.requests.load(Ordering::SeqCst);
        assert_eq!(served, 20, "claim {claim:?} (flag {flag}): {} served {served}", b.id());
    }
}
