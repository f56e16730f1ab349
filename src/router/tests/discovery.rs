//! Live pools through the router: two VMs on one shared store, one of them polling (its tick
//! asks for polls, answered here with EDS config_dump bodies). Endpoints that stay keep their
//! health, ejection, in-flight counts, latency and sticky sessions; requests in flight across
//! a change release what they hold exactly once; and shared-data keys stay bounded across a
//! thousand rolling updates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::rc::Rc;

use super::super::*;
use crate::discovery::poller::Answer;
use crate::state::memory::MemoryStore;
use crate::MS;

const S: u64 = 1_000 * MS;

/// An EDS config_dump answer for cluster `pool` with these endpoints (`ip:port`).
fn eds(endpoints: &[String]) -> Vec<u8> {
    let lb: Vec<serde_json::Value> = endpoints
        .iter()
        .map(|a| {
            let (ip, port) = a.rsplit_once(':').unwrap();
            serde_json::json!({"endpoint": {"address": {"socket_address":
                {"address": ip, "port_value": port.parse::<u16>().unwrap()}}},
                "health_status": "HEALTHY"})
        })
        .collect();
    serde_json::json!({"configs": [{"endpoint_config": {
        "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        "cluster_name": "pool", "endpoints": [{"lb_endpoints": lb}]}}]})
    .to_string()
    .into_bytes()
}

fn vm(store: &Rc<MemoryStore>, seed: u64, extra: &str, now_ns: u64) -> Router {
    let json = format!(
        r#"{{"cluster":"pool","discovery":{{"admin_cluster":"admin","interval_ms":1000}}{extra}}}"#
    );
    let config = Config::from_json(json.as_bytes()).unwrap();
    Router::new(config, seed, now_ns, Box::new(Rc::clone(store)), Box::new(NoMetrics))
}

/// Ticks every VM at `now`; the one that polls gets `endpoints` as the answer.
fn tick_all(vms: &mut [&mut Router], now: u64, endpoints: &[String]) {
    for r in vms.iter_mut() {
        let t = r.tick(now);
        if let Some(poll) = t.poll {
            assert_eq!(poll.cluster, "admin");
            r.poll_sent(9, now);
            let body = eds(endpoints);
            r.poll_answered(9, Answer::Body(Some(200), &body), now);
        }
    }
    for r in vms.iter_mut() {
        r.tick(now);
    }
}

fn hosts(r: &Router) -> Vec<String> {
    r.config().pool.iter().map(|b| b.host.clone()).collect()
}

fn addr(i: u32) -> String {
    format!("10.0.{}.{}:8080", i / 200, i % 200 + 1)
}

#[test]
fn before_the_first_snapshot_there_is_no_pool_and_then_every_vm_follows() {
    let store = Rc::new(MemoryStore::new());
    let mut a = vm(&store, 1, "", 0);
    let mut b = vm(&store, 2, "", 0);
    assert!(a.awaits_pool() && b.awaits_pool());
    assert!(a.steer(None, None, 0).is_none());
    let eps = vec![addr(1), addr(2)];
    let mut now = S;
    for _ in 0..3 {
        tick_all(&mut [&mut a, &mut b], now, &eps);
        now += S;
    }
    assert_eq!(hosts(&a), eps);
    assert_eq!(hosts(&b), eps);
    // A VM configured later (a new worker, a config update) starts from the snapshot.
    let c = vm(&store, 3, "", now);
    assert_eq!(hosts(&c), eps);
    assert!(!c.awaits_pool());
}

#[test]
fn endpoints_that_stay_keep_their_ejection_in_flight_and_sessions() {
    let store = Rc::new(MemoryStore::new());
    let extra = r#","algorithm":"least_request","least_request":{"choice_count":0},
        "outlier_detection":{"consecutive_errors":1},"max_ejection_percent":100,
        "sticky":{"secrets":["0123456789abcdef0123456789abcdef"]}"#;
    let extra = extra.replace(r#","max_ejection_percent":100"#, "");
    let mut a = vm(&store, 1, &extra, 0);
    let mut b = vm(&store, 2, &extra, 0);
    let mut eps = vec![addr(1), addr(2), addr(3)];
    let mut now = S;
    for _ in 0..3 {
        tick_all(&mut [&mut a, &mut b], now, &eps);
        now += S;
    }
    // b holds a request on 10.0.0.1 (least_request with nothing in flight: the first).
    let (s, mut held) = b.steer(None, None, now).unwrap();
    let pinned_host = s.value.split(',').next().unwrap().to_string();
    // A session cookie for it, from the answer.
    let answer = b.on_response(&mut held, None, 200, 1, now);
    let cookie = answer.set_cookie.unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let (_, mut held2) = b.steer(None, Some(&cookie), now).unwrap();
    assert_eq!(
        b.last_picks().next().unwrap(),
        crate::discovery::pool::derived_id(pinned_host.parse().unwrap())
    );
    // Another endpoint fails once: ejected (consecutive_errors 1).
    let (s, mut failing) = a.steer(None, None, now).unwrap();
    let failed_host = s.value.split(',').next().unwrap().to_string();
    assert_ne!(failed_host, pinned_host);
    a.on_response(&mut failing, None, 503, 1, now);
    a.on_end(&mut failing, now);
    tick_all(&mut [&mut a, &mut b], now, &eps);
    let ejected = |r: &Router, host: &str| {
        let i = r.config().pool.iter().position(|x| x.host == host).unwrap();
        !r.availability.as_ref().unwrap().accepts(i)
    };
    assert!(ejected(&a, &failed_host) && ejected(&b, &failed_host));

    // A new endpoint comes, the one not involved leaves.
    let other = eps.iter().find(|h| **h != pinned_host && **h != failed_host).unwrap().clone();
    eps.retain(|h| *h != other);
    eps.push(addr(9));
    now += S;
    tick_all(&mut [&mut a, &mut b], now, &eps);
    let mut sorted = eps.clone();
    sorted.sort_by_key(|h| h.parse::<std::net::SocketAddr>().unwrap());
    assert_eq!(hosts(&a), sorted);
    assert_eq!(hosts(&b), sorted);
    assert!(ejected(&a, &failed_host) && ejected(&b, &failed_host), "ejection kept");
    // The held request still counts on its endpoint, seen from the other VM.
    let i = a.config().pool.iter().position(|x| x.host == pinned_host).unwrap();
    let counters = a.in_flight.as_ref().unwrap();
    assert_eq!(counters.get(&a.store, i), 2, "in flight (both of b's requests) moved with it");
    // The session stays on its endpoint.
    let (_, mut again) = b.steer(None, Some(&cookie), now).unwrap();
    assert_eq!(
        b.last_picks().next().unwrap(),
        crate::discovery::pool::derived_id(pinned_host.parse().unwrap())
    );
    b.on_end(&mut again, now);
    // Requests from before the change release exactly once.
    b.on_end(&mut held, now);
    b.on_end(&mut held2, now);
    assert_eq!(a.in_flight.as_ref().unwrap().get(&a.store, i), 0);
    b.on_end(&mut held, now);
    assert_eq!(a.in_flight.as_ref().unwrap().get(&a.store, i), 0, "never below zero");
}

/// 1,000 rolling updates of a three-endpoint pool, each endpoint replaced by a new address one
/// by one, a poll per second, with in-flight counters (least_request), health checks and
/// passive ejection on: the shared-data keys stay bounded (slots are reused after their
/// quarantine; the health table and leases are one per pool).
#[test]
fn shared_keys_stay_bounded_across_a_thousand_rollouts() {
    let store = Rc::new(MemoryStore::new());
    let extra = r#","algorithm":"least_request","health_check":{},"outlier_detection":{}"#;
    let mut a = vm(&store, 1, extra, 0);
    let mut b = vm(&store, 2, extra, 0);
    let mut eps: Vec<String> = (0..3).map(addr).collect();
    let mut next = 3;
    let mut now = S;
    // The lease is created at the first tick and polled with from the next.
    for _ in 0..2 {
        tick_all(&mut [&mut a, &mut b], now, &eps);
        now += S;
    }
    let mut most = 0;
    for rollout in 0..1000 {
        for i in 0..3 {
            eps[i] = addr(next);
            next = (next + 1) % 40_000;
            tick_all(&mut [&mut a, &mut b], now, &eps);
            // A request on each VM, across the change.
            let (_, mut t) = a.steer(None, None, now).unwrap();
            a.on_response(&mut t, None, 200, 1, now);
            a.on_end(&mut t, now);
            now += S;
        }
        if rollout == 10 {
            most = store.len();
        }
        assert!(store.len() <= most.max(40), "rollout {rollout}: {} keys", store.len());
    }
    assert_eq!(hosts(&a).len(), 3);
    assert_eq!(hosts(&b).len(), 3);
    eprintln!("{} shared-data keys after 1,000 rollouts", store.len());
}

/// least_time's estimate of an endpoint that stays is carried into the new balancer; a new
/// endpoint starts from the default and, with slow start, ramps up while the others do not.
#[test]
fn latency_is_carried_and_new_endpoints_ramp_up() {
    let store = Rc::new(MemoryStore::new());
    let extra = r#","algorithm":"least_time","slow_start_ms":10000"#;
    let mut a = vm(&store, 1, extra, 0);
    let mut eps = vec![addr(1), addr(2)];
    // Ticks 200 ms apart, as Envoy's (the proxy's clock moves at most 1 s per tick).
    let mut now = S;
    for _ in 0..60 {
        tick_all(&mut [&mut a], now, &eps);
        now += 200 * MS;
    }
    // 10.0.0.2 answers in 900 ms.
    let (_, mut t) = a.steer(None, None, now).unwrap();
    let slow = a.config().pool.iter().position(|x| x.host == addr(1)).unwrap();
    if t.backend != slow {
        a.on_end(&mut t, now);
        let (_, t2) = a.steer(None, None, now).unwrap();
        t = t2;
    }
    assert_eq!(t.backend, slow);
    // (The proxy's clock moves on ticks; between them by at most a small step.)
    let _ = a.tick(now + 900 * MS);
    a.on_response(&mut t, None, 200, 1, now + 900 * MS);
    a.on_end(&mut t, now + 900 * MS);
    let mono = a.clock.at(now + 900 * MS);
    let before = a.balancer.latency_ns(slow, mono).unwrap();
    assert!(before >= 800e6, "{before}");
    eps.insert(0, addr(0));
    for _ in 0..12 {
        now += 200 * MS;
        tick_all(&mut [&mut a], now, &eps);
    }
    let slow = a.config().pool.iter().position(|x| x.host == addr(1)).unwrap();
    let fresh = a.config().pool.iter().position(|x| x.host == addr(0)).unwrap();
    let mono = a.clock.at(now);
    let after = a.balancer.latency_ns(slow, mono).unwrap();
    assert!(after >= 0.5 * before, "the estimate stays: {before} -> {after}");
    assert!(a.balancer.latency_ns(fresh, mono).unwrap() < 0.5 * before);
    let av = a.availability.as_ref().unwrap();
    assert!(av.weight_percent(fresh) < 100, "the new endpoint ramps up");
    assert_eq!(av.weight_percent(slow), 100, "the others do not");
}

/// A new session's cookie names the backend that served it, also when a pool change in the
/// same second gave its pool index to another endpoint (cookies issued within one second are
/// reused per index: see `StickyState::issued`).
#[test]
fn a_cookie_issued_after_a_pool_change_names_the_new_endpoint() {
    let store = Rc::new(MemoryStore::new());
    let extra = r#","sticky":{"secrets":["0123456789abcdef0123456789abcdef"]}"#;
    let mut r = vm(&store, 1, extra, 0);
    // Both cookies are issued at `at` (one expiry second), the pool moving between them.
    let at = 2 * S;
    let issue = |r: &mut Router, host: &str| {
        let (_, mut ticket) = r.steer(None, None, at).unwrap();
        let set_cookie = r.on_response(&mut ticket, Some(host), 200, 2, at).set_cookie.unwrap();
        let cookie = set_cookie.split(';').next().unwrap().to_string();
        r.steer(None, Some(&cookie), at).map(|(_, t)| t.sticky.pinned).unwrap()
    };
    let mut now = S;
    for eps in [[addr(1), addr(2)], [addr(0), addr(2)]] {
        for _ in 0..3 {
            tick_all(&mut [&mut r], now, &eps);
            now += S;
        }
        assert_eq!(hosts(&r), eps);
        assert_eq!(issue(&mut r, &eps[0]), Some(0), "{eps:?}");
    }
}
