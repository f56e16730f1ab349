#![allow(clippy::unwrap_used)]
use super::*;
use crate::config::Config;
use crate::state::memory::MemoryStore;

fn settings() -> Discovery {
    let json =
        r#"{"cluster": "pool", "discovery": {"admin_cluster": "admin", "interval_ms": 1000}}"#;
    Config::from_json(json.as_bytes()).unwrap().discovery.unwrap()
}

/// An EDS config_dump answer for cluster `pool` with these `(ip:port, health)` endpoints.
fn eds(endpoints: &[(&str, &str)]) -> Vec<u8> {
    let lb: Vec<serde_json::Value> = endpoints
        .iter()
        .map(|(a, h)| {
            let (ip, port) = a.rsplit_once(':').unwrap();
            serde_json::json!({
                "endpoint": {"address": {"socket_address": {"address": ip, "port_value": port.parse::<u16>().unwrap()}}},
                "health_status": h,
            })
        })
        .collect();
    serde_json::json!({"configs": [{
        "@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump.DynamicEndpointConfig",
        "endpoint_config": {
            "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            "cluster_name": "pool",
            "endpoints": [{"lb_endpoints": lb}],
        },
    }]})
    .to_string()
    .into_bytes()
}

const S: u64 = 1_000 * MS;

/// Runs one poll of `poller` at `now` answered with `answer`; returns what it said.
fn poll(p: &mut Poller, store: &MemoryStore, now: u64, answer: Answer<'_>) -> Polled {
    let (sent, _) = p.tick(store, now);
    let sent = sent.unwrap();
    assert_eq!(sent.cluster, "admin");
    assert!(sent.path.starts_with("/config_dump?"), "{}", sent.path);
    p.sent(7, now);
    p.answered(store, 7, answer, now)
}

#[test]
fn one_vm_polls_and_every_follower_sees_the_snapshot_once() {
    let store = MemoryStore::new();
    let (mut a, mut b) = (Poller::new(&settings(), "pool", 1), Poller::new(&settings(), "pool", 2));
    // The lease is created on the first tick and may be used from the next one.
    assert_eq!(a.tick(&store, S).0, None);
    assert_eq!(b.tick(&store, S).0, None, "b finds a's lease");
    let body = eds(&[("10.0.0.1:80", "HEALTHY"), ("10.0.0.2:80", "HEALTHY")]);
    let polled = poll(&mut a, &store, 2 * S, Answer::Body(Some(200), &body));
    assert!(!polled.failed);
    assert_eq!(polled.log.len(), 1, "{:?}", polled.log);
    assert!(polled.log[0].contains("generation 1: 2 endpoints"), "{:?}", polled.log);
    assert_eq!(b.tick(&store, 2 * S).0, None, "only the holder polls");
    let mut f = Follower::new("pool");
    let snap = f.refresh(&store).unwrap();
    assert_eq!(snap.endpoints.len(), 2);
    assert_eq!(f.refresh(&store), None, "read again only when the generation moves");
    // The same answer: no new generation, no log line.
    let polled = poll(&mut a, &store, 3 * S, Answer::Body(Some(200), &body));
    assert!(polled.log.is_empty(), "{:?}", polled.log);
    assert_eq!(f.refresh(&store), None);
    // Not due before the interval is over.
    assert_eq!(a.tick(&store, 3 * S + 500 * MS).0, None);
}

#[test]
fn failures_keep_the_last_pool_and_log_only_changes() {
    let store = MemoryStore::new();
    let mut p = Poller::new(&settings(), "pool", 1);
    let _ = p.tick(&store, 0);
    let body = eds(&[("10.0.0.1:80", "HEALTHY")]);
    poll(&mut p, &store, S, Answer::Body(Some(200), &body));
    let mut f = Follower::new("pool");
    assert!(f.refresh(&store).is_some());
    let bad: [(Answer<'_>, &str); 6] = [
        (Answer::Body(Some(500), b"oops"), "admin answered 500"),
        (Answer::Body(None, b""), "no answer"),
        (Answer::TooLarge(Some(200), 99_999_999), "over max_response_bytes"),
        (Answer::Body(Some(200), b"{not json"), "refused"),
        (Answer::Body(Some(200), b"{}"), "is not in the admin answer"),
        (Answer::Body(Some(200), &eds(&[])), "no endpoints"),
    ];
    let mut now = 2 * S;
    for (answer, says) in bad {
        let polled = poll(&mut p, &store, now, answer);
        assert!(polled.failed);
        assert_eq!(polled.log.len(), 1, "a new error is logged once: {:?}", polled.log);
        assert!(polled.log[0].contains(says), "{:?}", polled.log);
        assert!(polled.log[0].contains("keeps serving"), "{:?}", polled.log);
        // The same error again: not logged.
        let again = poll(&mut p, &store, now + S, answer);
        assert!(again.failed && again.log.is_empty(), "{:?}", again.log);
        assert_eq!(f.refresh(&store), None, "the last pool keeps serving");
        now += 2 * S;
    }
    let status = f.status.clone().unwrap();
    assert_eq!((status.generation, status.failures), (1, 12));
    assert!(status.error.contains("no endpoints"));
    let polled = poll(&mut p, &store, now, Answer::Body(Some(200), &body));
    assert!(polled.log.iter().any(|l| l.contains("work again")), "{:?}", polled.log);
    assert_eq!(f.refresh(&store), None, "nothing changed");
    assert_eq!(f.status.as_ref().unwrap().failures, 0);
}

#[test]
fn a_poll_that_never_comes_back_is_given_up_and_the_next_one_sent() {
    let store = MemoryStore::new();
    let mut p = Poller::new(&settings(), "pool", 1);
    let _ = p.tick(&store, 0);
    let (sent, _) = p.tick(&store, S);
    assert!(sent.is_some());
    p.sent(3, S);
    assert_eq!(p.tick(&store, 2 * S).0, None, "one poll at a time");
    let (sent, polled) = p.tick(&store, 3 * S + MS);
    assert!(polled.failed && sent.is_some());
    // A late answer to the given-up poll changes nothing.
    let late =
        p.answered(&store, 3, Answer::Body(Some(200), &eds(&[("10.0.0.1:80", "HEALTHY")])), 3 * S);
    assert_eq!(late, Polled::default());
}

#[test]
fn a_new_holder_continues_from_the_published_snapshot() {
    let store = MemoryStore::new();
    let mut a = Poller::new(&settings(), "pool", 1);
    let _ = a.tick(&store, 0);
    poll(&mut a, &store, S, Answer::Body(Some(200), &eds(&[("10.0.0.1:80", "HEALTHY")])));
    // a dies; b takes the lease after its TTL and keeps slots and generation going.
    let mut b = Poller::new(&settings(), "pool", 2);
    let _ = b.tick(&store, 10 * S);
    let body = eds(&[("10.0.0.1:80", "HEALTHY"), ("10.0.0.2:80", "HEALTHY")]);
    let polled = poll(&mut b, &store, 11 * S, Answer::Body(Some(200), &body));
    assert!(
        polled.log.iter().any(|l| l.contains("generation 2: 2 endpoints (1 new, 0 removed)")),
        "{:?}",
        polled.log
    );
    let snap = Follower::new("pool").refresh(&store).unwrap();
    assert_eq!(snap.endpoints.iter().map(|e| e.slot).collect::<Vec<_>>(), [0, 1]);
}
