//! The router with load reports: a response's report is attributed to the backend that served
//! it, two workers' reports make one set of weights, least_load steers by the reported metric,
//! and a report that cannot be read changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::rc::Rc;

use super::super::*;
use crate::state::memory::MemoryStore;
use crate::MS;

const THREE: &str = r#"[
    {"id":"a","address":"10.0.0.1:80"},
    {"id":"b","address":"10.0.0.2:80"},
    {"id":"c","address":"10.0.0.3:80"}]"#;

fn router(json: &str, store: &Rc<MemoryStore>, seed: u64) -> Router {
    let config = Config::from_json(json.as_bytes()).unwrap();
    Router::new(config, seed, 0, Box::new(Rc::clone(store)), Box::new(NoMetrics))
}

/// One request at `now`, answered 200 with `report` by its primary; its primary's index.
fn serve(r: &mut Router, now: u64, report: impl Fn(usize) -> String) -> usize {
    serve_some(r, now, |i| Some(report(i)))
}

/// [`serve`], the answer carrying a report only when `report` gives one.
fn serve_some(r: &mut Router, now: u64, report: impl Fn(usize) -> Option<String>) -> usize {
    let (_, mut ticket) = r.steer(None, None, now).unwrap();
    let primary = ticket.backend;
    r.on_response(&mut ticket, None, 200, 1, now);
    if let Some(text) = report(primary) {
        r.on_report(&ticket, &text, false, now);
    }
    r.on_end(&mut ticket, now);
    primary
}

fn cswrr() -> String {
    cswrr_with(1000, 500, THREE, "")
}

/// A client_side_weighted_round_robin config over `backends` (a JSON list), with `extra`
/// members (each starting with a comma).
fn cswrr_with(blackout_ms: u64, period_ms: u64, backends: &str, extra: &str) -> String {
    format!(
        r#"{{"cluster":"c","algorithm":"client_side_weighted_round_robin",
        "client_side_weighted_round_robin":{{"blackout_period_ms":{blackout_ms},"weight_update_period_ms":{period_ms}}},
        "backends":{backends}{extra}}}"#
    )
}

#[test]
fn reports_from_two_workers_make_the_weights_of_both() {
    let store = Rc::new(MemoryStore::new());
    let (mut a, mut b) = (router(&cswrr(), &store, 1), router(&cswrr(), &store, 2));
    let capacity = [100.0, 200.0, 400.0];
    // Worker a hears only from backends 0 and 1, worker b only from 2: neither could weigh
    // all three alone.
    let text = |i: usize| {
        format!("TEXT rps_fractional={}, application_utilization=0.5", capacity[i] * 0.5)
    };
    let mut t = 0;
    while t < 3_000 * MS {
        let _ = serve_some(&mut a, t, |i| (i < 2).then(|| text(i)));
        a.tick(t);
        let _ = serve_some(&mut b, t, |i| (i == 2).then(|| text(i)));
        b.tick(t);
        t += 10 * MS;
    }
    // After the blackout both workers weigh 1:2:4 (qps / utilization = capacity).
    for r in [&a, &b] {
        let w: Vec<u32> = (0..3).map(|i| r.balancer.weight(i).unwrap()).collect();
        assert_eq!(w, [100, 200, 400]);
    }
    let mut count = [0usize; 3];
    for _ in 0..700 {
        count[serve(&mut a, t, text)] += 1;
    }
    assert_eq!(count, [100, 200, 400]);
}

#[test]
fn unreadable_reports_change_nothing() {
    let store = Rc::new(MemoryStore::new());
    let mut r = router(&cswrr(), &store, 1);
    for t in 0..300u64 {
        let _ = serve(&mut r, t * 10 * MS, |_| "TEXT rps_fractional=oops".to_string());
        let _ = serve(&mut r, t * 10 * MS, |_| "BIN AAAA".to_string());
        r.tick(t * 10 * MS);
    }
    let table = &r.reports.as_ref().unwrap().table;
    assert!((0..3).all(|i| table.get(i).unwrap().at == 0));
    assert_eq!((0..3).map(|i| r.balancer.weight(i).unwrap()).collect::<Vec<_>>(), [1, 1, 1]);
}

#[test]
fn least_load_steers_away_from_the_longest_reported_queue() {
    let store = Rc::new(MemoryStore::new());
    let json = format!(
        r#"{{"cluster":"c","algorithm":"least_load","least_load":{{"metric":"named_metrics.q","choice_count":0}},"backends":{THREE}}}"#
    );
    let mut r = router(&json, &store, 1);
    let queue = [30.0, 0.0, 10.0];
    let text = |i: usize| format!("TEXT named_metrics.q={}", queue[i]);
    // Learn each backend's queue (every backend answers at least once in a few picks).
    for _ in 0..6 {
        serve(&mut r, MS, text);
    }
    // 20 requests held open: each raises its backend's in-flight count above the report's.
    let mut count = [0usize; 3];
    let mut held = Vec::new();
    for _ in 0..20 {
        let (_, t) = r.steer(None, None, 2 * MS).unwrap();
        count[t.backend] += 1;
        held.push(t);
    }
    // Backend 1 (queue 0) takes requests until 10 more are in flight than at its report,
    // then it and backend 2 (queue 10) share; backend 0 (queue 30) gets none.
    assert_eq!(count[0], 0, "{count:?}");
    assert!(count[1] >= 10 && count[2] >= 4, "{count:?}");
    for mut t in held {
        r.on_end(&mut t, 3 * MS);
    }
}

#[test]
fn reports_follow_their_backend_through_a_retry() {
    let store = Rc::new(MemoryStore::new());
    let json = format!(
        r#"{{"cluster":"c","algorithm":"least_load","least_load":{{"metric":"named_metrics.q"}},"backends":{THREE}}}"#
    );
    let mut r = router(&json, &store, 1);
    let (_, mut ticket) = r.steer(None, None, MS).unwrap();
    let primary = ticket.backend;
    let other = (primary + 1) % 3;
    let served = format!("10.0.0.{}:80", other + 1);
    // Second try, served by another backend than the primary.
    r.on_response(&mut ticket, Some(&served), 200, 2, MS);
    r.on_report(&ticket, "TEXT named_metrics.q=7", false, MS);
    let table = &r.reports.as_ref().unwrap().table;
    assert_eq!(table.get(other).unwrap().metric, 7.0);
    assert_eq!(table.get(primary).unwrap().metric_at, 0);
}

#[test]
fn the_status_page_shows_each_backends_last_report_and_weight() {
    let store = Rc::new(MemoryStore::new());
    let json = format!(
        r#"{{"cluster":"c","algorithm":"client_side_weighted_round_robin","backends":{THREE},
        "status":{{"path":"/lb"}}}}"#
    );
    let mut r = router(&json, &store, 1);
    let (_, mut t) = r.steer(None, None, 5 * MS).unwrap();
    let primary = t.backend;
    r.on_response(&mut t, None, 200, 1, 5 * MS);
    r.on_report(&t, "TEXT rps_fractional=12.5, cpu_utilization=0.25, eps=1", false, 5 * MS);
    let doc: serde_json::Value = serde_json::from_str(&r.status_json(35 * MS)).unwrap();
    let backends = doc["backends"].as_array().unwrap();
    for (i, b) in backends.iter().enumerate() {
        assert_eq!(b["load_weight"], 1, "{b}");
        if i == primary {
            let rep = &b["load_report"];
            assert_eq!(
                (rep["age_ms"].as_u64(), rep["rps"].as_f64()),
                (Some(30), Some(12.5)),
                "{b}"
            );
            assert_eq!((rep["utilization"].as_f64(), rep["eps"].as_f64()), (Some(0.25), Some(1.0)));
            assert!(rep.get("metric").is_none());
        } else {
            assert!(b["load_report"].is_null(), "{b}");
        }
    }
}

#[test]
fn unavailable_backends_are_never_picked_whatever_they_report() {
    let store = Rc::new(MemoryStore::new());
    let json = format!(
        r#"{{"cluster":"c","algorithm":"least_load","least_load":{{"metric":"named_metrics.q","choice_count":0}},"backends":{THREE}}}"#
    );
    let mut r = router(&json, &store, 1);
    // Backend 1 reports the lowest queue, then goes down.
    let text = |i: usize| format!("TEXT named_metrics.q={}", if i == 1 { 0 } else { 50 });
    for _ in 0..6 {
        serve(&mut r, MS, text);
    }
    use crate::health::{Availability, Slot};
    let up = Slot { accepted: true, available: true, weight_percent: 100 };
    let down = Slot { accepted: false, available: false, weight_percent: 0 };
    r.set_availability(Availability { slots: vec![up, down, up], ..Availability::default() });
    for _ in 0..30 {
        let (value, mut t) =
            r.steer(None, None, 2 * MS).map(|(s, t)| (s.value.to_string(), t)).unwrap();
        assert!(!value.contains("10.0.0.2:80"), "{value}");
        r.on_end(&mut t, 2 * MS);
    }
}

#[test]
fn a_weight_counts_at_the_first_tick_after_its_blackout_not_a_period_later() {
    let store = Rc::new(MemoryStore::new());
    let json = cswrr_with(1000, 1000, THREE, "");
    let mut r = router(&json, &store, 1);
    let capacity = [100.0, 200.0, 400.0];
    let text = |i: usize| {
        format!("TEXT rps_fractional={}, application_utilization=0.5", capacity[i] * 0.5)
    };
    let weights = |r: &Router| (0..3).map(|i| r.balancer.weight(i).unwrap()).collect::<Vec<_>>();
    r.tick(0);
    for _ in 0..3 {
        serve(&mut r, 50 * MS, text);
    }
    // The periodic update at 1000 ms is still in the blackout (it ends at 1050 ms).
    for t in (100..=1000).step_by(100) {
        r.tick(t * MS);
    }
    assert_eq!(weights(&r), [1, 1, 1]);
    // The first tick after 1050 ms counts the weights, 900 ms before the next period.
    r.tick(1100 * MS);
    assert_eq!(weights(&r), [100, 200, 400]);
}

#[test]
fn a_weight_that_halves_counts_before_the_period_a_smaller_change_waits_for_it() {
    let store = Rc::new(MemoryStore::new());
    let json = cswrr_with(0, 1000, THREE, "");
    let mut r = router(&json, &store, 1);
    let weights = |r: &Router| (0..3).map(|i| r.balancer.weight(i).unwrap()).collect::<Vec<_>>();
    let serve_all = |r: &mut Router, now: u64, capacity: [f64; 3]| {
        for _ in 0..30 {
            serve(r, now, |i| {
                format!("TEXT rps_fractional={}, application_utilization=0.5", capacity[i] * 0.5)
            });
        }
    };
    serve_all(&mut r, 0, [100.0, 200.0, 400.0]);
    r.tick(0);
    assert_eq!(weights(&r), [100, 200, 400]);
    // 300 (× 0.75) waits for the period at 1000 ms.
    serve_all(&mut r, 300 * MS, [100.0, 200.0, 300.0]);
    for t in (400..=900).step_by(100) {
        r.tick(t * MS);
        assert_eq!(weights(&r), [100, 200, 400], "at {t} ms");
    }
    r.tick(1000 * MS);
    assert_eq!(weights(&r), [100, 200, 300]);
    // 150 (× 0.5) counts at the first tick a quarter period after the last update, 1250 ms.
    serve_all(&mut r, 1100 * MS, [100.0, 200.0, 150.0]);
    r.tick(1200 * MS);
    assert_eq!(weights(&r), [100, 200, 300]);
    r.tick(1300 * MS);
    assert_eq!(weights(&r), [100, 200, 150]);
    // The periodic updates keep their schedule (2000 ms, not 2300): 600 (× 4) at 1400 ms
    // waits for the quarter period after 1300 ms and counts at 1600 ms; 450 (× 0.75) at 1700
    // ms waits for the period.
    serve_all(&mut r, 1400 * MS, [100.0, 200.0, 600.0]);
    r.tick(1500 * MS);
    assert_eq!(weights(&r), [100, 200, 150]);
    r.tick(1600 * MS);
    assert_eq!(weights(&r), [100, 200, 600]);
    serve_all(&mut r, 1700 * MS, [100.0, 200.0, 450.0]);
    r.tick(1900 * MS);
    assert_eq!(weights(&r), [100, 200, 600]);
    r.tick(2000 * MS);
    assert_eq!(weights(&r), [100, 200, 450]);
}

/// Records the `lb_load_weight` gauges set, in order.
struct Gauges(Rc<std::cell::RefCell<Vec<(usize, u32)>>>);

impl crate::metrics::Metrics for Gauges {
    fn load_weight(&mut self, backend: usize, weight: u32) {
        self.0.borrow_mut().push((backend, weight));
    }
}

#[test]
fn a_large_pools_weight_gauges_are_set_over_ticks_at_most_512_a_tick() {
    let backends: Vec<String> = (0..1_200)
        .map(|i| format!(r#"{{"id":"b{i}","address":"10.0.{}.{}:80"}}"#, i / 250, i % 250 + 1))
        .collect();
    let json = cswrr_with(0, 1000, &format!("[{}]", backends.join(",")), "");
    let config = Config::from_json(json.as_bytes()).unwrap();
    let set = Rc::new(std::cell::RefCell::new(Vec::new()));
    let store: Rc<MemoryStore> = Rc::new(MemoryStore::new());
    let mut r = Router::new(config, 1, 0, Box::new(store), Box::new(Gauges(Rc::clone(&set))));
    // Every backend reports a weight of 40.
    let report = |weight: u32| format!("TEXT rps_fractional={weight}, application_utilization=1");
    for _ in 0..1_200 {
        serve(&mut r, 0, |_| report(40));
    }
    let mut counts = Vec::new();
    for t in 0..4 {
        r.tick(t * 100 * MS);
        let set = set.borrow_mut().drain(..).collect::<Vec<_>>();
        assert!(set.iter().all(|&(_, w)| w == 40), "{set:?}");
        counts.push(set.len());
    }
    // Each shown once, over three ticks.
    assert_eq!(counts, [512, 512, 176, 0]);
    // Then a change shows at once: backend 7 reports 100 (the median stays 40).
    for _ in 0..1_200 {
        serve_some(&mut r, 350 * MS, |i| (i == 7).then(|| report(100)));
    }
    r.tick(400 * MS);
    assert_eq!(*set.borrow(), [(7, 100)]);
}

#[test]
fn a_sticky_session_stays_on_its_backend_whatever_the_reported_weights() {
    const NOW: u64 = 1_700_000_000 * 1_000 * MS;
    let store = Rc::new(MemoryStore::new());
    let sticky = r#","sticky":{"secrets":["0123456789abcdef0123456789abcdef"]}"#;
    let json = cswrr_with(0, 1000, THREE, sticky);
    let mut r = router(&json, &store, 1);
    let capacity = [1, 2, 400];
    for _ in 0..30 {
        serve(&mut r, NOW, |i| {
            format!("TEXT rps_fractional={}, application_utilization=1", capacity[i])
        });
    }
    r.tick(NOW);
    assert_eq!((0..3).map(|i| r.balancer.weight(i).unwrap()).collect::<Vec<_>>(), [1, 2, 400]);
    // A new session that the weights sent to backend 0 (1 request in 403): its cookie.
    let cookie = loop {
        let (_, mut t) = r.steer(None, None, NOW).unwrap();
        let primary = t.backend;
        let cookie = r.on_response(&mut t, None, 200, 1, NOW).set_cookie;
        r.on_end(&mut t, NOW);
        if primary == 0 {
            break cookie.unwrap();
        }
    };
    let cookie = cookie.split(';').next().unwrap().to_string();
    for _ in 0..100 {
        let (_, mut t) = r.steer(None, Some(&cookie), NOW).unwrap();
        assert_eq!(t.backend, 0);
        r.on_end(&mut t, NOW);
    }
}
