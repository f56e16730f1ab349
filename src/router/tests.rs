//! The router: steering values, hash-key inputs, and the life of a request (in-flight counts
//! held and released exactly once, attribution to the backend that served it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::state::memory::MemoryStore;

fn router(json: &str) -> Router {
    let config = Config::from_json(json.as_bytes()).unwrap();
    Router::new(config, 42, 0, Box::new(MemoryStore::new()), Box::new(NoMetrics))
}

/// The next steering value, owned.
fn steer(r: &mut Router) -> String {
    let (s, _) = r.steer(None, None, 0).expect("a steering value");
    assert_eq!(s.header, "x-gateway-destination-endpoint");
    s.value.to_string()
}

const THREE: &str = r#"[
    {"id":"a","address":"10.0.0.1:80"},
    {"id":"b","address":"10.0.0.2:80"},
    {"id":"c","address":"10.0.0.3:80"}]"#;

#[test]
fn round_robin_value_is_three_distinct_hosts_primary_first() {
    let mut r = router(&format!(r#"{{"cluster":"c","backends":{THREE}}}"#));
    let all = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"];
    for t in 0..30 {
        let value = steer(&mut r);
        let hosts: Vec<&str> = value.split(',').collect();
        assert_eq!(hosts.len(), 3, "{value}");
        // Primary first, in round robin order.
        assert_eq!(hosts[0], all[t % 3], "request {t}: {value}");
        let mut set = hosts.clone();
        set.sort_unstable();
        assert_eq!(set, all, "request {t}: {value}");
        let ids: Vec<&str> = r.last_picks().collect();
        let expected_ids: Vec<&str> = hosts
            .iter()
            .map(|h| ["a", "b", "c"][all.iter().position(|a| a == h).unwrap()])
            .collect();
        assert_eq!(ids, expected_ids);
    }
}

#[test]
fn no_trailing_or_doubled_separators() {
    let mut r = router(&format!(r#"{{"cluster":"c","algorithm":"random","backends":{THREE}}}"#));
    for _ in 0..20 {
        let v = steer(&mut r);
        assert!(
            !v.starts_with(',') && !v.ends_with(',') && !v.contains(",,") && !v.contains(' '),
            "{v}"
        );
    }
}

#[test]
fn weighted_round_robin_primary_follows_the_nginx_sequence() {
    let mut r = router(
        r#"{"cluster":"c","backends":[
            {"id":"a","address":"10.0.0.1:80","weight":5},
            {"id":"b","address":"10.0.0.2:80"},
            {"id":"c","address":"10.0.0.3:80"}]}"#,
    );
    let expected = ["a", "a", "b", "a", "c", "a", "a"];
    for round in 0..3 {
        for (k, &want) in expected.iter().enumerate() {
            let value = steer(&mut r);
            let hosts: Vec<&str> = value.split(',').collect();
            assert_eq!(hosts.len(), 3, "{value}");
            let mut sorted = hosts.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec!["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"], "{value}");
            let ids: Vec<&str> = r.last_picks().collect();
            assert_eq!(ids[0], want, "round {round} pick {k}: {value}");
        }
    }
}

#[test]
fn max_hosts_1_gives_one_host() {
    let mut r =
        router(&format!(r#"{{"cluster":"c","backends":{THREE},"target":{{"max_hosts":1}}}}"#));
    for want in ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.1:80"] {
        assert_eq!(steer(&mut r), want);
    }
    let mut r = router(&format!(
        r#"{{"cluster":"c","algorithm":"random","backends":{THREE},"target":{{"max_hosts":1}}}}"#
    ));
    for _ in 0..50 {
        let v = steer(&mut r);
        assert!(!v.contains(','), "{v}");
        assert!(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"].contains(&v.as_str()), "{v}");
    }
}

#[test]
fn fewer_backends_than_max_hosts_gives_each_once() {
    let two = r#"[{"id":"a","address":"10.0.0.1:80"},{"id":"b","address":"10.0.0.2:80"}]"#;
    let mut r = router(&format!(r#"{{"cluster":"c","backends":{two}}}"#));
    assert_eq!(steer(&mut r), "10.0.0.1:80,10.0.0.2:80");
    assert_eq!(steer(&mut r), "10.0.0.2:80,10.0.0.1:80");
    let mut r = router(&format!(
        r#"{{"cluster":"c","algorithm":"random","backends":{two},"target":{{"max_hosts":10}}}}"#
    ));
    for _ in 0..50 {
        let v = steer(&mut r);
        assert!(v == "10.0.0.1:80,10.0.0.2:80" || v == "10.0.0.2:80,10.0.0.1:80", "{v}");
    }
}

#[test]
fn random_value_is_distinct_hosts_from_the_pool() {
    let five: Vec<String> =
        (1..=5).map(|i| format!(r#"{{"id":"b{i}","address":"10.0.0.{i}:80"}}"#)).collect();
    let mut r = router(&format!(
        r#"{{"cluster":"c","algorithm":"random","backends":[{}]}}"#,
        five.join(",")
    ));
    let mut primaries = std::collections::HashSet::new();
    for _ in 0..500 {
        let v = steer(&mut r);
        let hosts: Vec<&str> = v.split(',').collect();
        assert_eq!(hosts.len(), 3, "{v}");
        assert!(hosts.iter().enumerate().all(|(k, h)| !hosts[..k].contains(h)), "{v}");
        assert!(hosts.iter().all(|h| h.starts_with("10.0.0.") && h.ends_with(":80")), "{v}");
        primaries.insert(hosts[0].to_string());
    }
    assert_eq!(primaries.len(), 5);
}

#[test]
fn ipv6_host_is_rendered_in_brackets() {
    let mut r = router(
        r#"{"cluster":"c","backends":[
            {"id":"v6","address":"[2001:0db8::1]:8080"},
            {"id":"v4","address":"10.0.0.1:80"}]}"#,
    );
    assert_eq!(steer(&mut r), "[2001:db8::1]:8080,10.0.0.1:80");
    assert_eq!(steer(&mut r), "10.0.0.1:80,[2001:db8::1]:8080");
}

#[test]
fn header_is_the_configured_lower_case_name() {
    let mut r = router(&format!(
        r#"{{"cluster":"c","backends":{THREE},"target":{{"header":"X-Steer-To"}}}}"#
    ));
    assert_eq!(r.header(), "x-steer-to");
    let (s, _) = r.steer(None, None, 0).unwrap();
    assert_eq!(s.header, "x-steer-to");
    let r = router(&format!(r#"{{"cluster":"c","backends":{THREE}}}"#));
    assert_eq!(r.header(), "x-gateway-destination-endpoint");
    assert_eq!(r.config().target.max_hosts, 3);
}

// ---------------------------------------------------------------------------------------------
// The life of a request: in-flight counts and attribution
// ---------------------------------------------------------------------------------------------

use std::cell::RefCell;
use std::rc::Rc;

use crate::state::in_flight::InFlight;

/// Gauge deltas per backend, shared with the test.
#[derive(Clone, Default)]
struct Gauges(Rc<RefCell<Vec<i64>>>);

impl Metrics for Gauges {
    fn in_flight(&mut self, backend: usize, delta: i64) {
        let mut v = self.0.borrow_mut();
        if v.len() <= backend {
            v.resize(backend + 1, 0);
        }
        v[backend] += delta;
    }
}

struct Harness {
    router: Router,
    store: Rc<MemoryStore>,
    gauges: Gauges,
    counters: InFlight,
}

impl Harness {
    fn new(extra: &str) -> Self {
        let json = format!(r#"{{"cluster":"pool","backends":{THREE}{extra}}}"#);
        let config = Config::from_json(json.as_bytes()).unwrap();
        let counters = InFlight::new("pool", &config.pool, false);
        let store = Rc::new(MemoryStore::new());
        let gauges = Gauges::default();
        let router =
            Router::new(config, 7, 0, Box::new(Rc::clone(&store)), Box::new(gauges.clone()));
        Harness { router, store, gauges, counters }
    }

    fn counts(&self) -> Vec<u64> {
        (0..3).map(|i| self.counters.get(self.store.as_ref(), i)).collect()
    }

    fn gauges(&self) -> Vec<i64> {
        let mut v = self.gauges.0.borrow().clone();
        v.resize(3, 0);
        v
    }

    fn steer(&mut self) -> (usize, Ticket) {
        let (_, ticket) = self.router.steer(None, None, 1_000).unwrap();
        (ticket.backend, ticket)
    }
}

#[test]
fn least_request_counts_each_request_until_it_ends_exactly_once() {
    // Full scan: always a least-loaded backend, so six requests land two per backend.
    let mut h = Harness::new(r#","algorithm":"least_request","least_request":{"choice_count":0}"#);
    assert!(h.router.needs_served_by(2));
    assert!(!h.router.needs_served_by(1), "one try: the primary served");
    let mut tickets: Vec<Ticket> = (0..6).map(|_| h.steer().1).collect();
    assert_eq!(h.counts().iter().sum::<u64>(), 6);
    assert_eq!(h.counts(), vec![2, 2, 2]);
    assert_eq!(h.gauges(), vec![2, 2, 2]);
    for t in tickets.iter_mut() {
        h.router.on_end(t, 2_000);
        h.router.on_end(t, 2_000); // a second end releases nothing
    }
    assert_eq!(h.counts(), vec![0, 0, 0]);
    assert_eq!(h.gauges(), vec![0, 0, 0]);
}

#[test]
fn response_from_another_backend_moves_the_count_there() {
    let mut h = Harness::new(r#","algorithm":"least_request""#);
    let (primary, mut t) = h.steer();
    let other = (primary + 1) % 3;
    let other_addr = format!("10.0.0.{}:80", other + 1);
    // The first try failed; the retry went to `other`.
    h.router.on_response(&mut t, Some(&other_addr), 200, 2, 5_000);
    let mut expected = vec![0u64; 3];
    expected[other] = 1;
    assert_eq!(h.counts(), expected);
    h.router.on_end(&mut t, 6_000);
    assert_eq!(h.counts(), vec![0, 0, 0]);
    assert_eq!(h.gauges(), vec![0, 0, 0]);
}

#[test]
fn unknown_or_missing_upstream_keeps_the_primary() {
    let mut h = Harness::new(r#","algorithm":"least_request""#);
    let (primary, mut t) = h.steer();
    h.router.on_response(&mut t, Some("192.0.2.9:80"), 503, 2, 5_000);
    h.router.on_response(&mut t, None, 503, 1, 5_000);
    let mut expected = vec![0u64; 3];
    expected[primary] = 1;
    assert_eq!(h.counts(), expected);
    h.router.on_end(&mut t, 6_000);
    assert_eq!(h.counts(), vec![0, 0, 0]);
}

#[test]
fn round_robin_keeps_gauges_but_writes_no_shared_data_per_request() {
    let mut h = Harness::new("");
    assert!(!h.router.needs_served_by(2));
    // Only the configuration generation, written once when configured, and the key record.
    assert_eq!(h.store.len(), 2);
    assert!(h.store.get("envoy_lb/pool/generation").unwrap().is_some());
    assert!(h.store.get(crate::state::keys::REGISTRY).unwrap().is_some());
    let (primary, mut t) = h.steer();
    let mut g = vec![0i64; 3];
    g[primary] = 1;
    assert_eq!(h.gauges(), g);
    assert_eq!(h.store.len(), 2, "no shared data per request for round robin");
    h.router.on_end(&mut t, 2_000);
    assert_eq!(h.gauges(), vec![0, 0, 0]);
}

#[test]
fn hash_key_inputs_follow_hash_on() {
    for (hash_on, source, input, same, different) in [
        (
            r#"{"source_ip":true}"#,
            KeySource::SourceAddress,
            "10.1.2.3:5555",
            "10.1.2.3:6666",
            "10.1.2.4:5555",
        ),
        (r#"{"header":"X-User"}"#, KeySource::Header("x-user"), "alice", "alice", "bob"),
        (r#"{"cookie":"sid"}"#, KeySource::CookieHeader, "a=1; sid=s1", "sid=s1", "sid=s2"),
        (r#"{"query":"u"}"#, KeySource::Path, "/x?u=7&v=1", "/y?u=7", "/x?u=8"),
    ] {
        let json = format!(
            r#"{{"cluster":"pool","backends":{THREE},"algorithm":"maglev","hash_on":{hash_on}}}"#
        );
        let r = router(&json);
        assert_eq!(r.key_source(), source, "{hash_on}");
        let k = r.key(Some(input));
        assert!(k.is_some(), "{hash_on}: no key from {input}");
        assert_eq!(k, r.key(Some(same)), "{hash_on}: {input} vs {same}");
        assert_ne!(k, r.key(Some(different)), "{hash_on}: {input} vs {different}");
        assert_eq!(r.key(None), None);
    }
    let r = router(&format!(r#"{{"cluster":"pool","backends":{THREE}}}"#));
    assert_eq!(r.key_source(), KeySource::None);
    assert_eq!(r.key(Some("anything")), None);
}

#[test]
fn slow_start_admits_a_ramping_backend_with_its_ramp_probability() {
    use crate::health::{Availability, Slot};
    let a = Availability {
        slots: vec![
            Slot { accepted: true, weight_percent: 100, available: true },
            Slot { accepted: true, weight_percent: 10, available: true },
            Slot { accepted: true, weight_percent: 55, available: true },
        ],
        ..Availability::default()
    };
    let n = 20_000u64;
    let share = |i: usize| {
        (0..n).filter(|&salt| health::admitted(&a, i, salt.wrapping_mul(0x9E37_79B9))).count()
            as f64
            / n as f64
    };
    assert_eq!(share(0), 1.0);
    assert!((share(1) - 0.10).abs() < 0.02, "{}", share(1));
    assert!((share(2) - 0.55).abs() < 0.02, "{}", share(2));
    // The same pick asks the same question the same way.
    assert_eq!(health::admitted(&a, 1, 42), health::admitted(&a, 1, 42));
}

/// Slow start with every backend ramping: each request is still picked (the pick is made
/// again without admission), spread as the algorithm spreads it.
#[test]
fn every_backend_ramping_still_gets_every_request_picked() {
    use crate::health::{Availability, Slot};
    let algorithms = ["round_robin", "random", "least_request", "least_time", "maglev"];
    let with_reports = ["client_side_weighted_round_robin", "least_load"];
    for algorithm in algorithms.into_iter().chain(with_reports) {
        let hash_on = match algorithm {
            "maglev" => r#","hash_on":{"header":"x-k"}"#,
            "least_load" => r#","least_load":{"metric":"named_metrics.q"}"#,
            _ => "",
        };
        let json = format!(
            r#"{{"cluster":"pool","algorithm":"{algorithm}","backends":{THREE},"slow_start_ms":60000{hash_on}}}"#
        );
        let mut router = router(&json);
        let ramping = Slot { accepted: true, weight_percent: 10, available: true };
        router
            .set_availability(Availability { slots: vec![ramping; 3], ..Availability::default() });
        let mut seen = [0usize; 3];
        for i in 0..300u64 {
            let (_, mut t) = router
                .steer(Some("k"), None, i)
                .unwrap_or_else(|| panic!("{algorithm}: request {i} found nobody"));
            seen[t.backend] += 1;
            router.on_end(&mut t, i);
        }
        if algorithm == "maglev" {
            // Every backend ramps alike: the key's own backend (as without slow start) keeps
            // most of its requests; the ramp sends the others elsewhere.
            let own = self::router(&json.replace(r#","slow_start_ms":60000"#, ""))
                .steer(Some("k"), None, 0)
                .map(|(_, t)| t.backend)
                .unwrap();
            assert!(seen[own] > 150, "{algorithm}: {seen:?}, key's backend {own}");
        } else {
            // Every backend ramps alike, so the shares stay even (±40%).
            assert!(seen.iter().all(|n| (60..=140).contains(n)), "{algorithm}: {seen:?}");
        }
    }
}

/// Found by the `steering` fuzz target: without health state, backups were picked like
/// primaries.
#[test]
fn backups_take_no_traffic_without_health_state() {
    let mut r = router(
        r#"{"cluster":"c","backends":[
            {"id":"a","address":"10.0.0.1:80"},
            {"id":"b","address":"10.0.0.2:80","backup":true}]}"#,
    );
    for _ in 0..4 {
        assert_eq!(steer(&mut r), "10.0.0.1:80");
    }
}

/// Found by the `steering` fuzz target: with every primary draining, the backups serve new
/// requests (they were refused with 503), with or without health state.
#[test]
fn backups_serve_when_every_primary_drains() {
    for health in [r#","outlier_detection":{}"#, ""] {
        let mut r = router(&format!(
            r#"{{"cluster":"c"{health},"backends":[
                {{"id":"a","address":"10.0.0.1:80","drain":true}},
                {{"id":"b","address":"10.0.0.2:80","backup":true}}]}}"#
        ));
        r.tick(0);
        for _ in 0..3 {
            let value = r.steer(None, None, 0).map(|(s, _)| s.value.to_string());
            assert_eq!(value.as_deref(), Some("10.0.0.2:80"), "{health:?}");
        }
    }
}

/// With every primary draining and every backup down, the draining primaries take new
/// requests rather than a 503, as Envoy serves DRAINING hosts when nothing else is left; a
/// backend that does not drain takes them all again. (A pool of draining backends alone is
/// refused by the config.)
#[test]
fn draining_primaries_serve_when_nothing_else_is_left() {
    let two_draining = r#"{"id":"a","address":"10.0.0.1:80","drain":true},
        {"id":"b","address":"10.0.0.2:80","drain":true}"#;
    let mut r = router(&format!(
        r#"{{"cluster":"c","outlier_detection":{{"consecutive_errors":1}},
            "target":{{"max_hosts":1}},"backends":[{two_draining},
            {{"id":"z","address":"10.0.0.9:80","backup":true}}]}}"#
    ));
    r.tick(0);
    // The backup fails once and is ejected: nothing but the draining primaries is left.
    let (_, mut t) = r.steer(None, None, 1).unwrap();
    assert_eq!(r.last_picks().collect::<Vec<_>>(), ["z"]);
    r.on_response(&mut t, None, 503, 1, 2);
    r.on_end(&mut t, 2);
    r.tick(3);
    let mut seen = std::collections::BTreeSet::new();
    for n in 0..6 {
        let value = r.steer(None, None, 10 + n).map(|(s, _)| s.value.to_string());
        seen.insert(value.expect("a draining backend, not a 503"));
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["10.0.0.1:80", "10.0.0.2:80"]);
    // A primary that does not drain takes every new request again.
    let mut r = router(&format!(
        r#"{{"cluster":"c","backends":[{two_draining},{{"id":"c","address":"10.0.0.3:80"}}]}}"#
    ));
    for _ in 0..4 {
        assert!(steer(&mut r).starts_with("10.0.0.3:80"));
    }
}

// ---------------------------------------------------------------------------------------------
// The attempt count comes from Envoy and only counts the tries the filter can attribute
// ---------------------------------------------------------------------------------------------

#[test]
fn attempt_count_is_envoys_little_endian_u64_or_one() {
    assert_eq!(attempt_count(Some(&1u64.to_le_bytes())), 1);
    assert_eq!(attempt_count(Some(&3u64.to_le_bytes())), 3);
    assert_eq!(attempt_count(Some(&u64::from(u32::MAX).to_le_bytes())), u32::MAX);
    for junk in [&b""[..], b"3", b"\x03\0\0\0", &[0u8; 9][..], &0u64.to_le_bytes()] {
        assert_eq!(attempt_count(Some(junk)), 1, "{junk:?}");
    }
    assert_eq!(attempt_count(Some(&(1u64 << 40).to_le_bytes())), 1, "beyond u32: unknown");
    assert_eq!(attempt_count(None), 1);
}

#[test]
fn earlier_tries_are_bounded_in_every_mode() {
    let t = Ticket {
        picks: {
            let mut p = Picks::with_capacity(3);
            p.push(0);
            p.push(1);
            p
        },
        sticky: StickyTicket::default(),
        backend: 0,
        started_ns: 0,
        started_mono_ns: 0,
        held: false,
        answered: false,
        pool_generation: 0,
        key: None,
    };
    assert_eq!(t.attributable(usize::MAX, TargetMode::OverrideHost), 2);
    assert_eq!(t.attributable(1, TargetMode::OverrideHost), 1);
    assert_eq!(t.attributable(usize::MAX, TargetMode::OriginalDst), MAX_SAME_BACKEND_TRIES);
    assert_eq!(t.attributable(3, TargetMode::ClusterHeader), 3);
}

mod discovery;
mod in_flight;
