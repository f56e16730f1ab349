//! Native tests of the report table: Envoy's weight of one report, validity over time
//! (blackout, expiration, median default), merging two VMs' views, and pool changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::orca::{parse, MAX_WANTED};

const S: u64 = 1_000_000_000;

fn rules(utilization: &[&str], metric: Option<&str>) -> ReportRules {
    let names = utilization.iter().map(|s| s.to_string()).chain(metric.map(str::to_string));
    ReportRules {
        wanted: Wanted::new(names),
        utilization_metrics: utilization.len(),
        error_utilization_penalty: 1.0,
        metric: metric.map(str::to_string),
        blackout_ns: 10 * S,
        expiration_ns: 180 * S,
    }
}

fn report(text: &str, r: &ReportRules) -> Report {
    parse(&format!("TEXT {text}"), &r.wanted).unwrap()
}

#[test]
fn weight_is_qps_over_utilization_as_in_envoy() {
    let r = rules(&["named_metrics.a", "utilization.b"], None);
    // application_utilization first.
    let w = r.weight(&report(
        "rps_fractional=100, application_utilization=0.5, cpu_utilization=0.9",
        &r,
    ));
    assert_eq!(w, Some(200));
    // Else the largest of the named metrics.
    let w = r.weight(&report(
        "rps_fractional=100, named_metrics.a=0.25, utilization.b=0.2, cpu_utilization=0.9",
        &r,
    ));
    assert_eq!(w, Some(400));
    // Else cpu_utilization.
    assert_eq!(r.weight(&report("rps_fractional=100, cpu_utilization=0.8", &r)), Some(125));
    // Errors add eps / qps x penalty to utilization: 100 / (0.5 + 10/100) = 166.67, truncated.
    assert_eq!(r.weight(&report("rps_fractional=100, cpu_utilization=0.5, eps=10", &r)), Some(166));
    let mut p = r.clone();
    p.error_utilization_penalty = 0.0;
    assert_eq!(p.weight(&report("rps_fractional=100, cpu_utilization=0.5, eps=10", &r)), Some(200));
}

#[test]
fn reports_without_qps_or_utilization_give_no_weight() {
    let r = rules(&[], None);
    for text in [
        "cpu_utilization=0.5",
        "rps_fractional=0, cpu_utilization=0.5",
        "rps_fractional=-3, cpu_utilization=0.5",
        "rps_fractional=10",
        "rps_fractional=10, cpu_utilization=-1",
    ] {
        assert_eq!(r.weight(&report(text, &r)), None, "{text}");
    }
    // Only errors still make a utilization (Envoy adds the penalty before the check).
    assert_eq!(r.weight(&report("rps_fractional=10, eps=10", &r)), Some(10));
}

#[test]
fn weights_are_capped_and_at_least_one() {
    let r = rules(&[], None);
    assert_eq!(
        r.weight(&report("rps_fractional=1e300, cpu_utilization=1e-300", &r)),
        Some(u32::MAX)
    );
    assert_eq!(r.weight(&report("rps_fractional=0.1, cpu_utilization=0.9", &r)), Some(1));
}

#[test]
fn a_weight_counts_after_the_blackout_and_until_it_expires() {
    let r = rules(&[], None);
    let mut t = LoadTable::new(3);
    let mut w = Vec::new();
    t.record(0, &report("rps_fractional=100, cpu_utilization=1", &r), &r, 100 * S, 0);
    t.record(1, &report("rps_fractional=400, cpu_utilization=1", &r), &r, 100 * S, 0);
    // In the blackout: nobody valid, everyone 1.
    t.weights(&r, 105 * S, &mut w);
    assert_eq!(w, [1, 1, 1]);
    // After it: the reported weights, and the median for the silent backend (upper median of
    // [100, 400] is 400, as Envoy's nth_element at size / 2).
    t.weights(&r, 110 * S, &mut w);
    assert_eq!(w, [100, 400, 400]);
    // Backend 1 keeps reporting, backend 0 stops: 180 s after its last report it expires...
    t.record(1, &report("rps_fractional=400, cpu_utilization=1", &r), &r, 280 * S, 0);
    t.weights(&r, 280 * S, &mut w);
    assert_eq!(w, [100, 400, 400], "still valid at exactly 180 s");
    t.weights(&r, 281 * S, &mut w);
    assert_eq!(w, [400, 400, 400]);
    // ... and a new report starts a new blackout.
    t.record(0, &report("rps_fractional=50, cpu_utilization=1", &r), &r, 282 * S, 0);
    t.weights(&r, 291 * S, &mut w);
    assert_eq!(w, [400, 400, 400]);
    t.weights(&r, 292 * S, &mut w);
    assert_eq!(w, [50, 400, 400], "median of [50, 400] at index 1");
}

#[test]
fn the_default_weight_is_the_upper_median_of_the_valid_ones() {
    let r = rules(&[], None);
    let mut t = LoadTable::new(5);
    for (i, rps) in [(0, 10), (1, 30), (2, 20), (3, 40)] {
        t.record(i, &report(&format!("rps_fractional={rps}, cpu_utilization=1"), &r), &r, 0, 0);
    }
    let mut w = Vec::new();
    t.weights(&r, 10 * S, &mut w);
    assert_eq!(w, [10, 30, 20, 40, 30]);
}

#[test]
fn an_invalid_report_keeps_the_last_weight() {
    let r = rules(&[], None);
    let mut t = LoadTable::new(1);
    t.record(0, &report("rps_fractional=100, cpu_utilization=1", &r), &r, 0, 0);
    t.record(0, &report("rps_fractional=0, cpu_utilization=1", &r), &r, 5 * S, 0);
    let e = t.get(0).unwrap();
    assert_eq!((e.weight, e.last_update, e.at), (100, 0, 5 * S));
}

#[test]
fn least_load_metric_and_the_in_flight_count_when_reported() {
    let r = rules(&[], Some("named_metrics.queue_depth"));
    let mut t = LoadTable::new(2);
    t.record(0, &report("named_metrics.queue_depth=7", &r), &r, 3, 5);
    let e = t.get(0).unwrap();
    assert_eq!((e.metric, e.metric_at, e.in_flight_at), (7.0, 3, 5));
    // A report without the metric leaves it (and its in-flight count) as they were.
    t.record(0, &report("cpu_utilization=0.1", &r), &r, 9, 1);
    let e = t.get(0).unwrap();
    assert_eq!((e.metric, e.metric_at, e.in_flight_at, e.at), (7.0, 3, 5, 9));
    assert_eq!(MAX_WANTED, 8);
    assert!(LoadTable::wants_in_flight(&r) && !LoadTable::wants_in_flight(&rules(&[], None)));
}

#[test]
fn absorbing_takes_the_newest_report_and_the_earliest_live_run() {
    let mut a = BackendLoad {
        at: 5,
        rps: 1.0,
        weight: 10,
        non_empty_since: 4,
        last_update: 5,
        ..Default::default()
    };
    let b = BackendLoad {
        at: 7,
        rps: 2.0,
        weight: 20,
        non_empty_since: 2,
        last_update: 7,
        metric: 3.0,
        metric_at: 7,
        in_flight_at: 9,
        ..Default::default()
    };
    a.absorb(&b, 0);
    assert_eq!((a.at, a.rps, a.weight, a.non_empty_since, a.last_update), (7, 2.0, 20, 2, 7));
    assert_eq!((a.metric, a.metric_at, a.in_flight_at), (3.0, 7, 9));
    // Older news changes nothing; an expired run's start is not taken.
    let before = a;
    a.absorb(
        &BackendLoad {
            at: 1,
            non_empty_since: 1,
            last_update: 1,
            weight: 99,
            ..Default::default()
        },
        3,
    );
    assert_eq!(a, before);
    // Absorbing is order-independent for these two.
    let mut c = b;
    c.absorb(
        &BackendLoad {
            at: 5,
            rps: 1.0,
            weight: 10,
            non_empty_since: 4,
            last_update: 5,
            ..Default::default()
        },
        0,
    );
    assert_eq!((c.at, c.weight, c.non_empty_since), (7, 20, 2));
}

#[test]
fn repool_moves_reports_with_their_backends_and_shares_them_again() {
    let r = rules(&[], None);
    let mut t = LoadTable::new(3);
    t.record(2, &report("rps_fractional=30, cpu_utilization=1", &r), &r, 1, 0);
    t.take_dirty();
    let next = t.repool(2, &[None, Some(1), Some(0)]);
    assert_eq!(next.get(0).unwrap().weight, 30);
    assert_eq!(next.get(1).unwrap().at, 0);
    let mut next = next;
    let mut dirty = next.take_dirty();
    dirty.sort();
    assert_eq!(dirty, [0, 1]);
    assert!(next.take_dirty().is_empty());
}

#[test]
fn a_negative_metric_counts_as_zero() {
    let r = rules(&[], Some("named_metrics.queue_depth"));
    let mut t = LoadTable::new(1);
    t.record(0, &report("named_metrics.queue_depth=-50", &r), &r, 3, 0);
    assert_eq!(t.get(0).unwrap().metric, 0.0);
}

#[test]
fn the_table_tells_when_a_blackout_ends() {
    let r = rules(&[], None);
    let mut t = LoadTable::new(2);
    let mut w = Vec::new();
    assert_eq!(t.wake_ns(), NEVER);
    t.record(0, &report("rps_fractional=10, cpu_utilization=1", &r), &r, 100 * S, 0);
    t.record(1, &report("rps_fractional=20, cpu_utilization=1", &r), &r, 103 * S, 0);
    assert_eq!(t.wake_ns(), 110 * S, "the earliest end");
    // A later report of a running backend does not move it.
    t.record(0, &report("rps_fractional=10, cpu_utilization=1", &r), &r, 104 * S, 0);
    assert_eq!(t.wake_ns(), 110 * S);
    t.weights(&r, 110 * S, &mut w);
    assert_eq!((w.as_slice(), t.wake_ns()), ([10, 10].as_slice(), 113 * S), "backend 1 next");
    t.weights(&r, 113 * S, &mut w);
    assert_eq!((w.as_slice(), t.wake_ns()), ([10, 20].as_slice(), NEVER));
}
