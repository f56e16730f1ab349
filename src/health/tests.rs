//! The health state machine with injected time: thresholds, streaks, ejection backoff and its
//! bound, expiry and slow start, panic, backups, none, and reload carry-over.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::backend::Backend;

use crate::MS;

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("b{i}@10.0.0.{}:80", i + 1)).collect()
}

fn active(healthy: u32, unhealthy: u32) -> HealthPolicy {
    HealthPolicy {
        active: Some(ActivePolicy { healthy_threshold: healthy, unhealthy_threshold: unhealthy }),
        ..HealthPolicy::default()
    }
}

fn outlier(errors: u32, percent: u32) -> HealthPolicy {
    HealthPolicy {
        outlier: Some(OutlierPolicy {
            consecutive_errors: errors,
            base_ejection_ns: 30_000 * MS,
            max_ejection_ns: 100_000 * MS,
            max_ejection_percent: percent,
        }),
        ..HealthPolicy::default()
    }
}

const TIMEOUT: Probe = Probe::Failed(ProbeFailure::Timeout { ms: 1000 });

#[test]
fn starts_healthy_and_falls_after_unhealthy_threshold_failures() {
    let p = active(2, 3);
    let mut t = HealthTable::new(&keys(3), 0);
    assert!(t.availability(&p, 0, &[], &[]).accepts(2));
    assert_eq!(t.probe_result(&p, 2, TIMEOUT, 1), None);
    assert_eq!(t.probe_result(&p, 2, TIMEOUT, 2), None);
    let tr = t.probe_result(&p, 2, TIMEOUT, 3).unwrap();
    assert_eq!(tr.index, 2);
    assert_eq!(tr.to_string(), "b2 unhealthy: 3 probe failures, last: timeout after 1000 ms");
    assert!(!t.get(2).unwrap().healthy);
    assert!(!t.availability(&p, 4, &[], &[]).accepts(2));
    // Further failures: no new transition.
    assert_eq!(t.probe_result(&p, 2, TIMEOUT, 5), None);
}

#[test]
fn rises_after_healthy_threshold_successes_and_restarts_slow_start() {
    let mut p = active(2, 1);
    p.slow_start_ns = 100 * MS;
    let mut t = HealthTable::new(&keys(2), 0);
    let fail = Probe::Failed(ProbeFailure::Status(503));
    let tr = t.probe_result(&p, 1, fail, 500 * MS).unwrap();
    assert_eq!(tr.to_string(), "b1 unhealthy: 1 probe failures, last: status 503");
    assert_eq!(t.probe_result(&p, 1, Probe::Ok, 600 * MS), None);
    let tr = t.probe_result(&p, 1, Probe::Ok, 700 * MS).unwrap();
    assert_eq!(tr.to_string(), "b1 healthy: 2 probe successes");
    let a = t.availability(&p, 700 * MS, &[], &[]);
    assert!(a.accepts(1));
    assert_eq!(a.weight_percent(1), 10);
    assert_eq!(a.weight_percent(0), 100);
    assert_eq!(t.availability(&p, 800 * MS, &[], &[]).weight_percent(1), 100);
}

#[test]
fn streaks_reset_on_the_opposite_result() {
    let p = active(2, 3);
    let mut t = HealthTable::new(&keys(1), 0);
    t.probe_result(&p, 0, TIMEOUT, 1);
    t.probe_result(&p, 0, TIMEOUT, 2);
    assert_eq!(t.probe_result(&p, 0, Probe::Ok, 3), None);
    assert_eq!(t.probe_result(&p, 0, TIMEOUT, 4), None);
    assert_eq!(t.probe_result(&p, 0, TIMEOUT, 5), None);
    assert!(t.probe_result(&p, 0, TIMEOUT, 6).is_some());
    // Down: a success then a failure resets the rise streak.
    assert_eq!(t.probe_result(&p, 0, Probe::Ok, 7), None);
    assert_eq!(t.probe_result(&p, 0, TIMEOUT, 8), None);
    assert_eq!(t.probe_result(&p, 0, Probe::Ok, 9), None);
    assert!(t.probe_result(&p, 0, Probe::Ok, 10).is_some());
}

#[test]
fn probes_are_ignored_without_active_checks_and_every_backend_counts_healthy() {
    let p = HealthPolicy::default();
    let mut t = HealthTable::new(&keys(1), 0);
    assert_eq!(t.probe_result(&p, 0, TIMEOUT, 1), None);
    assert_eq!(t.probe_result(&p, 9, TIMEOUT, 1), None);
    assert!(t.availability(&p, 1, &[], &[]).accepts(0));
}

#[test]
fn ejection_after_consecutive_errors_with_backoff_capped() {
    let p = outlier(5, 100);
    let mut t = HealthTable::new(&keys(4), 0);
    for _ in 0..4 {
        assert_eq!(t.request_outcome(&p, 3, true, 0), None);
    }
    let tr = t.request_outcome(&p, 3, true, 0).unwrap();
    assert_eq!(tr.to_string(), "b3 ejected for 30000 ms: 5 consecutive errors (ejection 1)");
    assert!(!t.availability(&p, 29_999 * MS, &[], &[]).accepts(3));
    // Outcomes while ejected are ignored.
    assert_eq!(t.request_outcome(&p, 3, true, 10), None);
    let back = t.expire(30_000 * MS);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].to_string(), "b3 returned: ejection over");
    assert!(t.expire(30_000 * MS).is_empty(), "returned once");

    let mut now = 30_000 * MS;
    let mut durations = vec![];
    for _ in 0..4 {
        let mut tr = None;
        for _ in 0..5 {
            tr = t.request_outcome(&p, 3, true, now);
        }
        let Change::Ejected { duration_ns, .. } = tr.unwrap().change else { panic!() };
        durations.push(duration_ns / MS);
        now += duration_ns;
        t.expire(now);
    }
    assert_eq!(durations, [60_000, 90_000, 100_000, 100_000]);
}

#[test]
fn success_resets_the_error_streak() {
    let p = outlier(3, 100);
    let mut t = HealthTable::new(&keys(2), 0);
    t.request_outcome(&p, 0, true, 1);
    t.request_outcome(&p, 0, true, 2);
    assert_eq!(t.request_outcome(&p, 0, false, 3), None);
    assert_eq!(t.get(0).unwrap().errors, 0);
    t.request_outcome(&p, 0, true, 4);
    t.request_outcome(&p, 0, true, 5);
    assert!(t.request_outcome(&p, 0, true, 6).is_some());
    // Without an outlier policy nothing is counted.
    let mut t = HealthTable::new(&keys(1), 0);
    assert_eq!(t.request_outcome(&HealthPolicy::default(), 0, true, 1), None);
    assert_eq!(t.get(0).unwrap().errors, 0);
}

#[test]
fn max_ejection_percent_refuses_the_third_of_four_at_50() {
    let p = outlier(1, 50);
    let mut t = HealthTable::new(&keys(4), 0);
    assert!(t.request_outcome(&p, 0, true, 1).is_some());
    assert!(t.request_outcome(&p, 1, true, 1).is_some());
    assert_eq!(t.request_outcome(&p, 2, true, 1), None, "third ejection refused");
    assert!(t.availability(&p, 2, &[], &[]).accepts(2));
    // Once an ejection ends, the kept streak ejects at the next error.
    t.expire(30_000 * MS + 1);
    assert!(t.request_outcome(&p, 2, true, 30_000 * MS + 2).is_some());
}

#[test]
fn one_ejection_is_always_allowed_when_percent_is_positive() {
    let p = outlier(1, 10);
    let mut t = HealthTable::new(&keys(4), 0);
    assert!(t.request_outcome(&p, 0, true, 1).is_some());
    assert_eq!(t.request_outcome(&p, 1, true, 1), None);
    let p0 = outlier(1, 0);
    let mut t = HealthTable::new(&keys(4), 0);
    assert_eq!(t.request_outcome(&p0, 0, true, 1), None);
}

#[test]
fn slow_start_after_ejection_ramps_linearly() {
    let mut p = outlier(1, 100);
    p.slow_start_ns = 10_000 * MS;
    let mut t = HealthTable::new(&keys(2), 0);
    t.request_outcome(&p, 0, true, 0);
    let end = 30_000 * MS;
    assert_eq!(t.availability(&p, end - 1, &[], &[]).weight_percent(0), 0);
    t.expire(end);
    assert_eq!(t.availability(&p, end, &[], &[]).weight_percent(0), 10);
    assert_eq!(t.availability(&p, end + 5_000 * MS, &[], &[]).weight_percent(0), 55);
    assert_eq!(t.availability(&p, end + 10_000 * MS, &[], &[]).weight_percent(0), 100);
    assert_eq!(t.availability(&p, end + 10_000 * MS, &[], &[]).weight_percent(1), 100);
    // A late expire does not restart the ramp from the late instant.
    let mut t2 = HealthTable::new(&keys(1), 0);
    t2.request_outcome(&p, 0, true, 0);
    assert_eq!(t2.availability(&p, end + 5_000 * MS, &[], &[]).weight_percent(0), 55);
    t2.expire(end + 5_000 * MS);
    assert_eq!(t2.availability(&p, end + 5_000 * MS, &[], &[]).weight_percent(0), 55);
}

#[test]
fn new_backends_ramp_from_first_seen() {
    let p = HealthPolicy { slow_start_ns: 1000, ..HealthPolicy::default() };
    let t = HealthTable::new(&keys(1), 500);
    assert_eq!(t.availability(&p, 500, &[], &[]).weight_percent(0), 10);
    assert_eq!(t.availability(&p, 1000, &[], &[]).weight_percent(0), 55);
    assert_eq!(t.availability(&p, 1500, &[], &[]).weight_percent(0), 100);
}

fn down(t: &mut HealthTable, p: &HealthPolicy, i: usize) {
    t.probe_result(p, i, TIMEOUT, 1).unwrap();
}

fn up(t: &mut HealthTable, p: &HealthPolicy, i: usize) {
    t.probe_result(p, i, Probe::Ok, 2).unwrap();
}

#[test]
fn panic_entry_and_exit() {
    let mut p = active(1, 1);
    p.panic_threshold_percent = 50;
    let mut t = HealthTable::new(&keys(4), 0);
    down(&mut t, &p, 0);
    down(&mut t, &p, 1);
    let a = t.availability(&p, 3, &[], &[]);
    assert!(!a.panic, "2 of 4 = 50% is not below 50%");
    assert_eq!((0..4).map(|i| a.accepts(i)).collect::<Vec<_>>(), [false, false, true, true]);
    down(&mut t, &p, 2);
    let a = t.availability(&p, 3, &[], &[]);
    assert!(a.panic && !a.none);
    assert!((0..4).all(|i| a.accepts(i)));
    assert_eq!(a.weight_percent(0), 100);
    down(&mut t, &p, 3);
    let a = t.availability(&p, 3, &[], &[]);
    assert!(a.panic && (0..4).all(|i| a.accepts(i)), "all down: panic routes to all");
    up(&mut t, &p, 0);
    up(&mut t, &p, 1);
    let a = t.availability(&p, 3, &[], &[]);
    assert!(!a.panic);
    assert_eq!((0..4).map(|i| a.accepts(i)).collect::<Vec<_>>(), [true, true, false, false]);
}

#[test]
fn backups_only_when_no_primary_is_available_then_none() {
    let mut p = active(1, 1);
    let backups = [false, false, true];
    let mut t = HealthTable::new(&keys(3), 0);
    let a = t.availability(&p, 3, &backups, &[]);
    assert!(a.accepts(0) && a.accepts(1) && !a.accepts(2) && !a.using_backups);
    assert_eq!(a.weight_percent(2), 0);
    down(&mut t, &p, 0);
    assert!(!t.availability(&p, 3, &backups, &[]).accepts(2));
    down(&mut t, &p, 1);
    let a = t.availability(&p, 3, &backups, &[]);
    assert!(a.using_backups && a.accepts(2) && !a.accepts(0) && !a.none);
    down(&mut t, &p, 2);
    let a = t.availability(&p, 3, &backups, &[]);
    assert!(a.none && !a.panic && !a.using_backups);
    assert!((0..3).all(|i| !a.accepts(i) && a.weight_percent(i) == 0));
    // With panic on, all down means panic over the primaries, never the backups.
    p.panic_threshold_percent = 10;
    let a = t.availability(&p, 3, &backups, &[]);
    assert!(a.panic && a.accepts(0) && a.accepts(1) && !a.accepts(2) && !a.none);
}

#[test]
fn an_ejected_backend_is_unavailable_even_when_healthy() {
    let mut p = outlier(1, 100);
    p.active = Some(ActivePolicy { healthy_threshold: 1, unhealthy_threshold: 1 });
    let mut t = HealthTable::new(&keys(2), 0);
    t.request_outcome(&p, 0, true, 0).unwrap();
    assert!(!t.availability(&p, 1, &[], &[]).accepts(0));
    // Healthy again while ejected: still out until the ejection ends.
    down(&mut t, &p, 0);
    up(&mut t, &p, 0);
    assert!(!t.availability(&p, 3, &[], &[]).accepts(0));
    assert!(t.availability(&p, 30_000 * MS, &[], &[]).accepts(0));
}

#[test]
fn carry_over_keeps_unchanged_keys_and_drops_the_rest() {
    let p = active(1, 1);
    let mut old = HealthTable::new(&keys(3), 0);
    down(&mut old, &p, 0);
    down(&mut old, &p, 2);
    let new_keys = vec![
        "b2@10.0.0.3:80".to_string(), // unchanged, moved
        "b0@10.0.0.9:80".to_string(), // same id, new address: fresh
        "b7@10.0.0.7:80".to_string(), // new
    ];
    let t = HealthTable::carry_over(&old, &new_keys, 99);
    assert!(t.has_keys(&new_keys));
    assert!(!t.get(0).unwrap().healthy);
    assert_eq!(t.get(0).unwrap(), old.get(2).unwrap());
    assert!(t.get(1).unwrap().healthy);
    assert_eq!(t.get(1).unwrap().available_since_ns, 99);
    assert_eq!(t.get(2).unwrap(), &BackendHealth::new(new_keys[2].clone(), 99));
    assert!(!t.entries().iter().any(|e| e.key == "b1@10.0.0.2:80"), "removed backend dropped");
}

#[test]
fn key_and_id() {
    let b = Backend::new("b1".into(), "[::1]:8080".parse().unwrap(), 1);
    assert_eq!(BackendHealth::new(crate::state::keys::backend(&b), 0).id(), "b1");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn availability_invariants(
            states in proptest::collection::vec((any::<bool>(), any::<bool>(), any::<bool>()), 0..12),
            panic_percent in 0u32..=100,
            now in 0u64..2_000,
        ) {
            let mut p = active(1, 1);
            p.panic_threshold_percent = panic_percent;
            p.slow_start_ns = 1_000;
            let k = keys(states.len());
            let mut t = HealthTable::new(&k, 0);
            let mut backups = vec![];
            let mut entries = t.entries().to_vec();
            for (e, &(healthy, ejected, backup)) in entries.iter_mut().zip(&states) {
                e.healthy = healthy;
                e.ejected_until_ns = if ejected { u64::MAX } else { 0 };
                backups.push(backup);
            }
            t = HealthTable::from_entries(entries);
            let a = t.availability(&p, now, &backups, &[]);
            prop_assert_eq!(a.slots.len(), states.len());
            prop_assert_eq!(a.none, !a.slots.iter().any(|s| s.accepted));
            prop_assert!(!(a.panic && a.using_backups));
            let up: Vec<bool> = states.iter().map(|&(h, e, _)| h && !e).collect();
            let any_up_primary = up.iter().zip(&backups).any(|(&u, &b)| u && !b);
            for (i, s) in a.slots.iter().enumerate() {
                prop_assert_eq!(s.accepted, s.weight_percent > 0);
                prop_assert!(s.weight_percent <= 100);
                if backups[i] {
                    prop_assert_eq!(s.accepted, a.using_backups && up[i]);
                } else if a.panic {
                    prop_assert!(s.accepted);
                } else {
                    prop_assert_eq!(s.accepted, up[i]);
                }
                if s.accepted && up[i] {
                    prop_assert!(s.weight_percent >= 10);
                }
            }
            prop_assert_eq!(a.using_backups, !any_up_primary && up.iter().zip(&backups).any(|(&u, &b)| u && b));
        }
    }
}

#[test]
fn draining_primaries_hand_new_requests_to_the_backups_but_keep_their_sessions() {
    let p = active(1, 1);
    let t = HealthTable::new(&keys(3), 0);
    let backups = [false, false, true];
    // One primary drains: the other still serves, backups stay closed.
    let a = t.availability(&p, 3, &backups, &[true, false, false]);
    assert!(!a.using_backups && a.accepts(0) && a.accepts(1) && !a.accepts(2));
    // Both drain: the backup opens; the draining primaries stay accepted (pinned sessions).
    let a = t.availability(&p, 3, &backups, &[true, true, false]);
    assert!(a.using_backups && a.accepts(0) && a.accepts(1) && a.accepts(2) && !a.panic);
    // A draining backup does not count as one that takes new requests.
    let a = t.availability(&p, 3, &backups, &[true, true, true]);
    assert!(!a.using_backups && !a.accepts(2));
}

#[test]
fn the_ejection_multiplier_backs_off_while_the_backend_stays_available() {
    let p = outlier(1, 100);
    let mut t = HealthTable::new(&keys(2), 0);
    let eject = |t: &mut HealthTable, at: u64| match t.request_outcome(&p, 0, true, at) {
        Some(Transition { change: Change::Ejected { ejection, duration_ns, .. }, .. }) => {
            (ejection, duration_ns / MS)
        }
        other => panic!("expected an ejection at {at}, got {other:?}"),
    };
    // Failing again right after each return: 1, 2, 3 times the base (30 s).
    assert_eq!(eject(&mut t, 0), (1, 30_000));
    t.expire(30_000 * MS);
    assert_eq!(eject(&mut t, 30_000 * MS), (2, 60_000));
    t.expire(90_000 * MS);
    assert_eq!(eject(&mut t, 90_000 * MS + 1), (3, 90_000));
    t.expire(180_000 * MS + 1);
    // Two base times available: two off, then one for this ejection.
    assert_eq!(eject(&mut t, 240_000 * MS + 1), (2, 60_000));
    t.expire(300_000 * MS + 1);
    // A long calm forgets every earlier ejection.
    assert_eq!(eject(&mut t, 3_600_000 * MS), (1, 30_000));
}

/// Draining primaries take new requests (`draining_serve`) only when every primary that is up
/// drains, no backup is up, and the pool is not in panic (which accepts every primary anyway).
#[test]
fn draining_primaries_serve_new_requests_only_when_nothing_else_is_up() {
    let p = active(1, 1);
    let t = HealthTable::new(&keys(3), 0);
    let backups = [false, false, true];
    assert!(!t.availability(&p, 3, &backups, &[]).draining_serve, "nothing drains");
    assert!(!t.availability(&p, 3, &backups, &[true, false, false]).draining_serve);
    let a = t.availability(&p, 3, &backups, &[true, true, false]);
    assert!(!a.draining_serve && a.using_backups, "the backup is up: it serves");
    let a = t.availability(&p, 3, &backups, &[true, true, true]);
    assert!(a.draining_serve && !a.panic && !a.none, "nothing else is up");
    // Panic: both primaries down, below the threshold, no backup.
    let panicky = HealthPolicy { panic_threshold_percent: 50, ..active(1, 1) };
    let mut t = HealthTable::new(&keys(2), 0);
    for i in 0..2 {
        t.probe_result(&panicky, i, TIMEOUT, 1);
    }
    let a = t.availability(&panicky, 2, &[], &[]);
    assert!(a.panic && !a.draining_serve && a.accepts(0) && a.accepts(1));
}

#[test]
fn has_keys_means_exactly_these_keys_in_this_order() {
    let t = HealthTable::new(&keys(2), 0);
    assert!(!t.is_empty() && HealthTable::new(&[], 0).is_empty());
    assert!(t.has_keys(&keys(2)));
    assert!(!t.has_keys(&keys(1)) && !t.has_keys(&keys(3)));
    assert!(!t.has_keys(&[keys(2)[1].clone(), keys(2)[0].clone()]));
}
