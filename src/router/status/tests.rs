//! What the router reports: the metrics of a request's life (steered, failed tries, cookies
//! issued, nobody to pick), the mode-specific steering values and attribution, probe routes,
//! and the status document.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::rc::Rc;

use crate::config::Config;
use crate::health::{Availability, Slot};
use crate::metrics::{BackendCounter, BackendGauge, Metrics, PoolCounter};
use crate::router::Router;
use crate::state::keys::REGISTRY;
use crate::state::memory::MemoryStore;
use crate::state::SharedStore;

/// Everything reported, shared with the test.
#[derive(Clone, Default)]
struct Seen(Rc<RefCell<Log>>);

#[derive(Default)]
struct Log {
    counts: Vec<(usize, BackendCounter)>,
    pool: Vec<PoolCounter>,
    healthy: Vec<(usize, bool)>,
}

impl Metrics for Seen {
    fn count(&mut self, backend: usize, counter: BackendCounter) {
        self.0.borrow_mut().counts.push((backend, counter));
    }
    fn pool(&mut self, counter: PoolCounter) {
        self.0.borrow_mut().pool.push(counter);
    }
    fn healthy(&mut self, backend: usize, up: bool) {
        self.0.borrow_mut().healthy.push((backend, up));
    }
    fn gauge(&self, backend: usize, _gauge: BackendGauge) -> Option<u64> {
        Some(backend as u64 + 100)
    }
    fn counted(&self, backend: usize, counter: BackendCounter) -> Option<u64> {
        let log = self.0.borrow();
        Some(log.counts.iter().filter(|&&(b, c)| b == backend && c == counter).count() as u64)
    }
}

impl Seen {
    fn count_of(&self, backend: usize, counter: BackendCounter) -> usize {
        self.0.borrow().counts.iter().filter(|&&(b, c)| b == backend && c == counter).count()
    }
}

const THREE: &str = r#"[{"id":"a","address":"10.0.0.1:80"},{"id":"b","address":"10.0.0.2:80"},
    {"id":"c","address":"[2001:db8::3]:80"}]"#;
const CLUSTERS: &str =
    r#"[{"id":"a","cluster":"ca"},{"id":"b","cluster":"cb"},{"id":"c","cluster":"c\"q"}]"#;

fn router(extra: &str, backends: &str) -> (Router, Seen) {
    let json = format!(r#"{{"cluster":"pool","backends":{backends}{extra}}}"#);
    let config = Config::from_json(json.as_bytes()).unwrap();
    let seen = Seen::default();
    let r = Router::new(config, 3, 0, Box::new(MemoryStore::new()), Box::new(seen.clone()));
    (r, seen)
}

#[test]
fn every_request_counts_once_for_its_primary_and_failed_tries_count_per_backend() {
    let (mut r, seen) = router("", THREE);
    // Without health checking every backend is shown healthy once, at configure time.
    assert_eq!(seen.0.borrow().healthy, vec![(0, true), (1, true), (2, true)]);
    let (s, mut t) = r.steer(None, None, 0).unwrap();
    assert_eq!(s.value, "10.0.0.1:80,[2001:db8::3]:80,10.0.0.2:80");
    assert_eq!(seen.count_of(0, BackendCounter::Requests), 1);
    // Try 1 (a) and try 2 (c) failed, try 3 (b) answered 200: override_host's order.
    r.on_response(&mut t, None, 200, 3, 10);
    let errors = |i| seen.count_of(i, BackendCounter::UpstreamErrors);
    assert_eq!((errors(0), errors(1), errors(2)), (1, 0, 1));
    // The next primary (b) answers 503 on the only try.
    let (s, mut t) = r.steer(None, None, 20).unwrap();
    assert!(s.value.starts_with("10.0.0.2:80"), "{}", s.value);
    r.on_response(&mut t, None, 503, 1, 30);
    assert_eq!((errors(0), errors(1), errors(2)), (1, 1, 1));
    // 429 is not an upstream error.
    let (_, mut t) = r.steer(None, None, 40).unwrap();
    r.on_response(&mut t, None, 429, 1, 50);
    assert_eq!((errors(0), errors(1), errors(2)), (1, 1, 1));
    let requests: Vec<_> = (0..3).map(|i| seen.count_of(i, BackendCounter::Requests)).collect();
    assert_eq!(requests, [1, 1, 1]);
    assert!(seen.0.borrow().pool.is_empty());
}

#[test]
fn outside_override_host_every_try_is_the_one_backend_chosen() {
    for (mode, backends) in [("original_dst", THREE), ("cluster_header", CLUSTERS)] {
        let (mut r, seen) = router(&format!(r#","target":{{"mode":"{mode}"}}"#), backends);
        let (s, mut t) = r.steer(None, None, 0).unwrap();
        assert!(!s.value.contains(','), "{mode}: one backend: {}", s.value);
        assert_eq!(s.value, if mode == "original_dst" { "10.0.0.1:80" } else { "ca" });
        r.on_response(&mut t, None, 502, 3, 10);
        assert_eq!(seen.count_of(0, BackendCounter::UpstreamErrors), 3, "{mode}");
        assert_eq!(seen.count_of(1, BackendCounter::UpstreamErrors), 0, "{mode}");
    }
}

#[test]
fn cluster_mode_never_needs_the_upstream_address() {
    let sticky = r#","sticky":{"secrets":["0123456789abcdef0123456789abcdef"]}"#;
    let (r, _) = router(&format!(r#","target":{{"mode":"cluster_header"}}{sticky}"#), CLUSTERS);
    assert!(!r.needs_served_by(3));
    let (mut r, seen) = router(sticky, THREE);
    assert!(r.needs_served_by(2));
    assert!(!r.needs_served_by(1));
    // A cookie is issued for the backend that served (after one retry), once per new session.
    let (_, mut t) = r.steer(None, None, 0).unwrap();
    let answer = r.on_response(&mut t, Some("10.0.0.2:80"), 200, 2, 10);
    assert!(answer.set_cookie.is_some());
    assert_eq!(seen.count_of(1, BackendCounter::StickyIssued), 1);
    assert_eq!(seen.0.borrow().pool, vec![PoolCounter::StickyMisses]);
}

#[test]
fn probes_are_routed_the_way_of_the_mode() {
    let (r, _) = router("", THREE);
    assert_eq!(
        r.probe_route("10.0.0.1:80"),
        ("pool", Some(("x-gateway-destination-endpoint", "10.0.0.1:80")))
    );
    let (r, _) = router(
        r#","target":{"mode":"original_dst","probe_cluster":"probe"},"health_check":{"path":"/h"}"#,
        THREE,
    );
    assert_eq!(
        r.probe_route("10.0.0.1:80"),
        ("probe", Some(("x-envoy-original-dst-host", "10.0.0.1:80")))
    );
    let (r, _) = router(r#","target":{"mode":"cluster_header"}"#, CLUSTERS);
    assert_eq!(r.probe_route("cb"), ("cb", None));
}

#[test]
fn nobody_to_pick_is_counted_and_availability_changes_reach_the_gauge() {
    let (mut r, seen) = router("", THREE);
    let down = Slot { accepted: false, weight_percent: 0, available: false };
    let up = Slot { accepted: true, weight_percent: 100, available: true };
    r.set_availability(Availability { slots: vec![down, up, up], ..Availability::default() });
    r.set_availability(Availability { slots: vec![down, up, up], ..Availability::default() });
    let healthy = seen.0.borrow().healthy.clone();
    assert_eq!(healthy, vec![(0, true), (1, true), (2, true), (0, false)], "changes only");
    r.set_availability(Availability {
        slots: vec![down; 3],
        none: true,
        ..Availability::default()
    });
    assert!(r.steer(None, None, 0).is_none());
    assert_eq!(seen.0.borrow().pool, vec![PoolCounter::NoHealthyBackend]);
}

#[test]
fn the_status_document_is_json_with_every_backend() {
    let (mut r, _) = router(
        r#","algorithm":"least_time","target":{"mode":"cluster_header"},"status":{}"#,
        CLUSTERS,
    );
    let (_, mut t) = r.steer(None, None, 1_000_000).unwrap();
    r.on_response(&mut t, None, 200, 1, 3_000_000);
    let doc: serde_json::Value = serde_json::from_str(&r.status_json(4_000_000)).unwrap();
    assert_eq!(doc["cluster"], "pool");
    assert_eq!(doc["algorithm"], "least_time");
    assert_eq!(doc["mode"], "cluster_header");
    assert_eq!(doc["generation"], 1);
    assert_eq!(doc["now_ms"], 4);
    let list = doc["backends"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    // A cluster name with a quote stays valid JSON.
    assert_eq!(list[2]["cluster"], "c\"q");
    assert_eq!(list[0]["in_flight"], 100);
    assert_eq!(list[1]["in_flight"], 101);
    let requests: u64 = list.iter().map(|b| b["requests"].as_u64().unwrap()).sum();
    assert_eq!(requests, 1);
    assert_eq!(list[0]["effective_weight"], 1.0);
    assert!(list[0]["ewma_us"].as_u64().is_some());
    assert!(list[0]["last_change"].is_null());
    assert_eq!(list[0]["healthy"], true);
    assert!(r.has_status());
    assert!(r.is_status_request("/.lb/status", Some("127.0.0.1".parse().unwrap())));
    assert!(!r.is_status_request("/.lb/status", Some("192.0.2.1".parse().unwrap())));
}

#[test]
fn the_clock_is_read_only_when_something_uses_it() {
    let clock = |extra: &str| router(extra, THREE).0.needs_clock();
    assert!(!clock(""), "plain round robin");
    assert!(!clock(r#","health_check":{"path":"/h"},"slow_start_ms":1000"#), "ticks do it");
    assert!(clock(r#","sticky":{"secrets":["0123456789abcdef0123456789abcdef"]}"#));
    assert!(clock(r#","algorithm":"least_time""#));
    assert!(clock(r#","outlier_detection":{}"#));
    let (r, _) = router(r#","outlier_detection":{}"#, THREE);
    assert!(r.needs_response_time());
    let (r, _) = router(r#","sticky":{"secrets":["0123456789abcdef0123456789abcdef"]}"#, THREE);
    assert!(!r.needs_response_time(), "a cookie's expiry counts from the request");
}

/// Found by the `steering` fuzz target's contract check: a failed answer (here Envoy's own 503
/// after a refused connection, attributed to the primary) must not start a session there.
#[test]
fn no_cookie_on_a_failed_answer() {
    let sticky = r#","sticky":{"secrets":["0123456789abcdef0123456789abcdef"]}"#;
    let (mut r, seen) = router(sticky, THREE);
    let (_, mut t) = r.steer(None, None, 0).unwrap();
    assert_eq!(r.on_response(&mut t, None, 503, 1, 10).set_cookie, None);
    assert_eq!(seen.count_of(0, BackendCounter::StickyIssued), 0);
    let (_, mut t) = r.steer(None, None, 20).unwrap();
    assert!(r.on_response(&mut t, None, 200, 1, 30).set_cookie.is_some());
}

/// Every key a router writes, with every feature that keeps state in shared data on, is in
/// the key record: the status page's `shared_data` counts exactly what the store holds.
#[test]
fn the_shared_data_footprint_counts_every_key_the_router_wrote() {
    let json = format!(
        r#"{{"cluster":"pool","backends":{THREE},"algorithm":"least_request",
        "health_check":{{"path":"/h","interval_ms":2000}},
        "outlier_detection":{{}},"slow_start_ms":1000,"status":{{}},
        "sticky":{{"secrets":["0123456789abcdef0123456789abcdef"]}}}}"#
    );
    let store = Rc::new(MemoryStore::new());
    let new_router = |seed| {
        let config = Config::from_json(json.as_bytes()).unwrap();
        Router::new(config, seed, 0, Box::new(Rc::clone(&store)), Box::new(Seen::default()))
    };
    // Two VMs of one proxy.
    let mut vms = [new_router(1), new_router(2)];
    let mut now = 0;
    for round in 0..40u32 {
        now += 100_000_000;
        for r in vms.iter_mut() {
            let tick = r.tick(now);
            for (token, (index, _)) in (round * 10..).zip(tick.probes) {
                r.probe_sent(token, index, now);
                r.probe_answered(token, Some(if index == 1 { 503 } else { 200 }), now + 1);
            }
            let (_, mut t) = r.steer(None, None, now).unwrap();
            let status = if t.backend == 2 { 502 } else { 200 };
            r.on_response(&mut t, None, status, 1, now + 2);
            r.on_end(&mut t, now + 3);
        }
    }
    let doc: serde_json::Value = serde_json::from_str(&vms[0].status_json(now)).unwrap();
    let f = &doc["shared_data"];
    // generation, health, prober lease, clock, sticky secret (none: configured), in-flight x 3,
    // and the record itself.
    assert!(store.len() >= 7, "{} keys: not every feature wrote", store.len());
    assert_eq!(f["keys"], store.len() as u64, "{doc}");
    assert!(f["bytes"].as_u64().unwrap() > 0);
    let record = || store.get(REGISTRY).unwrap().unwrap();
    let before = record();
    vms[1].status_json(now);
    assert_eq!(record(), before, "a status read wrote the record");
}
