//! The prober over the CAS-enforcing in-memory store: one lease holder probes, answers move
//! backends between healthy and unhealthy, availability follows, timeouts are recognised.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::health::{ActivePolicy, Change};
use crate::state::memory::MemoryStore;

use crate::MS;

fn config(extra: &str) -> Config {
    Config::from_json(
        format!(
            r#"{{"cluster":"pool","backends":[{{"id":"a","address":"10.0.0.1:80"}},
                {{"id":"b","address":"10.0.0.2:80"}},{{"id":"c","address":"10.0.0.3:80","backup":true}}],
                "health_check":{{"interval_ms":1000,"timeout_ms":500,"healthy_threshold":2,
                "unhealthy_threshold":2}}{extra}}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

fn policy(panic: u32) -> HealthPolicy {
    HealthPolicy {
        active: Some(ActivePolicy { healthy_threshold: 2, unhealthy_threshold: 2 }),
        panic_threshold_percent: panic,
        ..HealthPolicy::default()
    }
}

fn prober(owner: u64) -> Prober {
    Prober::new(&config(""), policy(0), owner).unwrap()
}

/// A prober that has created the lease (a fresh lease is held from the next tick on).
fn holder(store: &MemoryStore, owner: u64) -> Prober {
    let mut p = prober(owner);
    assert!(p.due(store, MS).0.is_empty(), "the creating tick probes nothing");
    p
}

/// One round of probes from `now`: ticks every millisecond through one interval (each
/// backend comes due at its own phase), sending each due probe with a token from `next` as if
/// sent at `now` (the times the tests answer at are relative to it); returns (token, index)
/// in index order.
fn send(p: &mut Prober, store: &MemoryStore, now: u64, next: &mut u32) -> Vec<(u32, usize)> {
    let interval = p.check().map_or(1_000, |c| c.interval_ms);
    let mut sent = Vec::new();
    for k in 0..interval {
        for i in p.due(store, now + k * MS).0 {
            *next += 1;
            p.sent(*next, i, now);
            sent.push((*next, i));
        }
    }
    sent.sort_by_key(|&(_, i)| i);
    sent
}

#[test]
fn no_prober_without_health_check() {
    let c =
        Config::from_json(br#"{"cluster":"p","backends":[{"id":"a","address":"10.0.0.1:80"}]}"#)
            .unwrap();
    assert!(Prober::new(&c, policy(0), 1).is_none());
}

#[test]
fn only_the_lease_holder_probes_each_backend_once_per_interval() {
    let store = MemoryStore::new();
    prober(1).publish_initial(&store, 1);
    let mut a = holder(&store, 1);
    let mut b = prober(2);
    let mut token = 0;
    // Through the first interval each backend comes due once, at its own phase.
    let first = send(&mut a, &store, 10 * MS, &mut token);
    assert_eq!(first.iter().map(|&(_, i)| i).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(b.due(&store, 1_010 * MS).0.is_empty(), "a second VM must not probe");
    // A backend whose probe is still on its way is not probed again meanwhile.
    assert!(send(&mut a, &store, 1_010 * MS, &mut token).is_empty(), "answers pending");
    for (t, _) in &first {
        a.answered(&store, *t, Some(200), 2_010 * MS);
    }
    // The rounds that came while the answers were out are owed: sent once the answers are in.
    assert_eq!(send(&mut a, &store, 2_010 * MS, &mut token).len(), 3, "one interval later");
    assert!(b.due(&store, 3_011 * MS).0.is_empty(), "a second VM must not probe");
}

#[test]
fn failures_make_a_backend_unhealthy_and_successes_bring_it_back() {
    let store = MemoryStore::new();
    let mut p = holder(&store, 1);
    let mut token = 0;
    let mut now = 10 * MS;
    let mut logged = Vec::new();
    for round in 0..2 {
        for (t, i) in send(&mut p, &store, now, &mut token) {
            let status = if i == 1 { 503 } else { 200 };
            logged.extend(p.answered(&store, t, Some(status), now + MS));
        }
        assert!(p.availability(&store, now + 2 * MS).accepts(1) == (round == 0));
        now += 1_001 * MS;
    }
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].to_string(), "b unhealthy: 2 probe failures, last: status 503");
    let av = p.availability(&store, now);
    assert!(
        av.accepts(0) && !av.accepts(1) && !av.accepts(2),
        "backup unused while a primary is up"
    );
    for _ in 0..2 {
        for (t, _) in send(&mut p, &store, now, &mut token) {
            logged.extend(p.answered(&store, t, Some(200), now + MS));
        }
        now += 1_001 * MS;
    }
    assert_eq!(logged.len(), 2);
    assert!(matches!(logged[1].change, Change::Healthy { successes: 2 }));
    assert!(p.availability(&store, now).accepts(1));
}

#[test]
fn timeouts_and_missing_answers_are_told_apart() {
    let store = MemoryStore::new();
    let mut p = holder(&store, 1);
    let mut token = 0;
    let now = 10 * MS;
    let sent = send(&mut p, &store, now, &mut token);
    // a: Envoy's own 504 after the timeout; b: no status before it; c: an unknown token.
    assert_eq!(p.answered(&store, sent[0].0, Some(504), now + 600 * MS), None);
    assert_eq!(p.answered(&store, sent[1].0, None, now + 10 * MS), None);
    assert_eq!(p.answered(&store, 999, Some(200), now), None);
    let sent = send(&mut p, &store, now + 1_001 * MS, &mut token);
    let t = p.answered(&store, sent[0].0, Some(504), now + 1_700 * MS).unwrap();
    assert_eq!(t.to_string(), "a unhealthy: 2 probe failures, last: timeout after 500 ms");
    let t = p.answered(&store, sent[1].0, None, now + 1_010 * MS).unwrap();
    assert_eq!(t.to_string(), "b unhealthy: 2 probe failures, last: connection failed");
}

#[test]
fn all_primaries_down_uses_the_backup_then_none() {
    let store = MemoryStore::new();
    let mut p = holder(&store, 1);
    let mut token = 0;
    let mut now = 10 * MS;
    for _ in 0..2 {
        for (t, i) in send(&mut p, &store, now, &mut token) {
            p.answered(&store, t, Some(if i == 2 { 200 } else { 500 }), now + MS);
        }
        now += 1_001 * MS;
    }
    let av = p.availability(&store, now);
    assert!(av.using_backups && av.accepts(2) && !av.accepts(0) && !av.accepts(1));
    for _ in 0..2 {
        for (t, _) in send(&mut p, &store, now, &mut token) {
            p.answered(&store, t, Some(500), now + MS);
        }
        now += 1_001 * MS;
    }
    assert!(p.availability(&store, now).none);
}

/// Two backends, passive ejection only: 3 consecutive errors, 1 s base ejection.
fn two_backends_ejecting_after_three_errors(max_percent: u32) -> (Config, HealthPolicy) {
    let json = format!(
        r#"{{"cluster":"pool","backends":[{{"id":"a","address":"10.0.0.1:80"}},
            {{"id":"b","address":"10.0.0.2:80"}}],
            "outlier_detection":{{"consecutive_errors":3,"base_ejection_ms":1000,
            "max_ejection_percent":{max_percent}}}}}"#
    );
    let policy = HealthPolicy {
        outlier: Some(crate::health::OutlierPolicy {
            consecutive_errors: 3,
            base_ejection_ns: 1_000 * MS,
            max_ejection_ns: 300_000 * MS,
            max_ejection_percent: max_percent,
        }),
        ..HealthPolicy::default()
    };
    (Config::from_json(json.as_bytes()).unwrap(), policy)
}

#[test]
fn consecutive_errors_across_workers_eject_then_the_holder_ends_the_ejection() {
    let (c, policy) = two_backends_ejecting_after_three_errors(50);
    let store = MemoryStore::new();
    let (mut w1, mut w2) =
        (Prober::new(&c, policy, 1).unwrap(), Prober::new(&c, policy, 2).unwrap());
    // Errors seen by two different workers add up.
    assert_eq!(w1.outcome(&store, 1, true, 10 * MS), vec![]);
    assert_eq!(w2.outcome(&store, 1, true, 11 * MS), vec![]);
    let t = w1.outcome(&store, 1, true, 12 * MS).pop().unwrap();
    assert_eq!(t.to_string(), "b ejected for 1000 ms: 3 consecutive errors (ejection 1)");
    assert!(!w2.availability(&store, 13 * MS).accepts(1));
    // A success with no streak writes nothing.
    let key = w2.table_key().to_string();
    let before = crate::state::health_table::read(&store, &key).unwrap().unwrap().1;
    assert_eq!(w2.outcome(&store, 0, false, 14 * MS), vec![]);
    let after = crate::state::health_table::read(&store, &key).unwrap().unwrap().1;
    assert_eq!(before, after);
    // The lease holder ends the ejection when its time is up.
    assert_eq!(w1.due(&store, 20 * MS), (vec![], vec![]), "creates the lease");
    let (due, returned) = w1.due(&store, 1_020 * MS);
    assert!(due.is_empty(), "no active checks");
    assert_eq!(returned.len(), 1);
    assert_eq!(returned[0].to_string(), "b returned: ejection over");
    assert!(w2.availability(&store, 1_021 * MS).accepts(1));
}

/// Found by the soak (39 ejections, 37 returned lines): a backend whose ejection is over is
/// ejected again by a worker before the lease holder's tick ended the first one. The worker
/// ends it itself, so the return is logged and counted between the two ejections.
#[test]
fn an_ejection_over_but_not_yet_ended_is_ended_before_the_next_one() {
    let (c, policy) = two_backends_ejecting_after_three_errors(50);
    let store = MemoryStore::new();
    let mut w = Prober::new(&c, policy, 1).unwrap();
    let eject = |w: &mut Prober, at: u64| -> Vec<String> {
        (0..3).flat_map(|k| w.outcome(&store, 1, true, at + k)).map(|t| t.to_string()).collect()
    };
    assert_eq!(
        eject(&mut w, 10 * MS),
        ["b ejected for 1000 ms: 3 consecutive errors (ejection 1)"]
    );
    // The ejection ended at 1_010 ms; nobody ticked. Three more errors from 1_100 ms.
    assert_eq!(
        eject(&mut w, 1_100 * MS),
        ["b returned: ejection over", "b ejected for 2000 ms: 3 consecutive errors (ejection 2)"]
    );
    // Errors during an ejection that is not over change nothing.
    assert_eq!(eject(&mut w, 1_300 * MS), Vec::<String>::new());
    // The lease holder ends the second one: two ejections, two returns.
    assert_eq!(w.due(&store, 1_400 * MS), (vec![], vec![]), "creates the lease");
    assert_eq!(w.due(&store, 2_000 * MS).1, vec![], "not over yet");
    let returned: Vec<String> = w.due(&store, 3_200 * MS).1.iter().map(|t| t.to_string()).collect();
    assert_eq!(returned, ["b returned: ejection over"]);
}

/// Found by the soak: a success was skipped when this worker's view (refreshed on ticks) showed
/// no streak, so errors interleaved with successes added up to an ejection.
#[test]
fn interleaved_successes_reset_the_streak_whoever_saw_the_errors() {
    let (c, policy) = two_backends_ejecting_after_three_errors(100);
    for workers in [[1, 1], [1, 2]] {
        let store = MemoryStore::new();
        let mut w = [Prober::new(&c, policy, 1).unwrap(), Prober::new(&c, policy, 2).unwrap()];
        for k in 0..7u64 {
            let who = workers[(k % 2) as usize] - 1;
            let t = w[who].outcome(&store, 0, k % 2 == 0, (k + 1) * MS);
            assert_eq!(t, vec![], "{workers:?}, outcome {k}: fail, ok, fail, ... ejected a");
        }
        assert!(w[0].availability(&store, 10 * MS).accepts(0));
        // Three errors in a row still eject.
        let t = (0..3).flat_map(|k| w[k % 2].outcome(&store, 0, true, (20 + k as u64) * MS));
        assert_eq!(t.count(), 1, "{workers:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Configurations of one cluster, fenced: a superseded one neither probes nor rewrites what the
// current one owns; a new one probes its backends at once and keeps the state of shared ones
// ---------------------------------------------------------------------------------------------

/// A prober over backends `ids` (addresses 10.0.0.<n>:80 from the id's last digit).
fn prober_over(ids: &[&str], owner: u64) -> Prober {
    let backends: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"id":"{id}","address":"10.0.0.{}:80"}}"#, &id[1..]))
        .collect();
    let c = Config::from_json(
        format!(
            r#"{{"cluster":"pool","backends":[{}],"health_check":{{"interval_ms":1000,
                "timeout_ms":500,"healthy_threshold":2,"unhealthy_threshold":2}}}}"#,
            backends.join(",")
        )
        .as_bytes(),
    )
    .unwrap();
    Prober::new(&c, policy(0), owner).unwrap()
}

/// The ids of the backends `p` probes at `now` (sending and answering them with `status`).
fn probe_round(
    p: &mut Prober,
    store: &MemoryStore,
    now: u64,
    status: u16,
    ids: &[&str],
) -> Vec<String> {
    let mut token = u32::try_from(now / MS).unwrap() * 16;
    send(p, store, now, &mut token)
        .into_iter()
        .map(|(t, i)| {
            p.answered(store, t, Some(status), now + MS);
            ids[i].to_string()
        })
        .collect()
}

/// The old configuration [b1, b2] holds its lease and keeps ticking after [b1, b2, b3]
/// arrives (as Envoy keeps a drained listener's root contexts): the new one probes b3 at once
/// and marks it unhealthy; the old one stops probing what the new one checks and never
/// drops b3 from the new table. Failed on the unfenced code: the old holder kept the lease
/// (the new prober sent nothing) and rewrote the table with its two keys.
#[test]
fn an_updated_configuration_probes_its_new_backend_at_once() {
    let (old_ids, new_ids) = (["b1", "b2"], ["b1", "b2", "b3"]);
    let store = MemoryStore::new();
    let mut old = prober_over(&old_ids, 1);
    old.publish_initial(&store, MS);
    assert!(old.due(&store, MS).0.is_empty(), "creating tick");
    assert_eq!(probe_round(&mut old, &store, 10 * MS, 200, &old_ids), ["b1", "b2"]);

    let mut new = prober_over(&new_ids, 2);
    new.publish_initial(&store, 20 * MS);
    let mut t = 20 * MS;
    let mut new_probed = Vec::new();
    for _ in 0..8 {
        t += 250 * MS;
        // The old configuration ticks too, every time.
        assert_eq!(probe_round(&mut old, &store, t, 200, &old_ids), Vec::<String>::new(), "at {t}");
        let status = 503;
        for id in probe_round(&mut new, &store, t, status, &new_ids) {
            new_probed.push(id);
        }
        // b1 and b2 answer 503 here too: only the statuses of b3 matter below.
    }
    assert!(new_probed.iter().filter(|id| *id == "b3").count() >= 2, "{new_probed:?}");
    let av = new.availability(&store, t);
    assert!(!av.accepts(2), "b3 is unhealthy for the new configuration");
    // The old one reads b1 and b2 from the new table (unhealthy there too: every probe of the
    // new configuration failed).
    // (A worker sees another configuration's table as of its own last tick.)
    assert!(old.due(&store, t + 2 * MS).0.is_empty());
    let av = old.availability(&store, t + 2 * MS);
    assert!(!av.slots[0].available && !av.slots[1].available);
    let table = new.table().unwrap();
    assert_eq!(table.len(), 3, "the new table keeps its three backends");
}

/// The state of backends both configurations hold is carried into the new table: b2,
/// unhealthy before the update, is unhealthy for the new configuration from its first tick.
#[test]
fn an_update_keeps_the_state_of_the_backends_it_keeps() {
    let store = MemoryStore::new();
    let mut old = prober_over(&["b1", "b2"], 1);
    old.publish_initial(&store, MS);
    old.due(&store, MS);
    for n in 0..2u64 {
        let t = (10 + n * 1_001) * MS;
        let mut token = u32::try_from(n).unwrap() * 8;
        for (tok, i) in send(&mut old, &store, t, &mut token) {
            old.answered(&store, tok, Some(if i == 1 { 503 } else { 200 }), t + MS);
        }
    }
    assert!(!old.availability(&store, 3_000 * MS).accepts(1));
    let mut new = prober_over(&["b1", "b2", "b3"], 2);
    new.publish_initial(&store, 3_000 * MS);
    let av = new.availability(&store, 3_001 * MS);
    assert!(av.accepts(0) && !av.accepts(1) && av.accepts(2), "{av:?}");
}

/// Two configurations of one cluster that live side by side (two listeners): the current one
/// checks what both hold, the other checks only its own extra backend, and neither loses a
/// backend from its table.
#[test]
fn side_by_side_configurations_share_the_backends_they_both_hold() {
    let (a_ids, b_ids) = (["b1", "b2", "b4"], ["b1", "b2", "b3"]);
    let store = MemoryStore::new();
    let mut a = prober_over(&a_ids, 1);
    let mut b = prober_over(&b_ids, 2);
    a.publish_initial(&store, MS);
    b.publish_initial(&store, MS);
    a.due(&store, MS);
    b.due(&store, MS);
    let mut t = MS;
    let (mut by_a, mut by_b) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        t += 1_000 * MS;
        by_b.extend(probe_round(&mut b, &store, t, 200, &b_ids));
        by_a.extend(probe_round(&mut a, &store, t, 200, &a_ids));
    }
    for id in ["b1", "b2", "b3"] {
        assert_eq!(by_b.iter().filter(|x| *x == id).count(), 3, "{id}: {by_b:?}");
    }
    assert!(!by_a.iter().any(|x| x == "b1" || x == "b2"), "{by_a:?}");
    assert_eq!(by_a.iter().filter(|x| *x == "b4").count(), 3, "{by_a:?}");
    a.availability(&store, t);
    b.availability(&store, t);
    assert_eq!(a.table().unwrap().len(), 3);
    assert_eq!(b.table().unwrap().len(), 3);
}

/// When the current configuration's prober is gone (its lease expired: its listener drained
/// away), a configuration that was reading from it checks every backend itself again.
#[test]
fn a_dead_current_configuration_is_not_trusted() {
    let ids = ["b1", "b2"];
    let store = MemoryStore::new();
    let mut a = prober_over(&ids, 1);
    a.publish_initial(&store, MS);
    a.due(&store, MS);
    let mut b = prober_over(&["b1", "b2", "b3"], 2);
    b.publish_initial(&store, MS);
    b.due(&store, MS);
    b.due(&store, 2 * MS);
    assert!(a.due(&store, 3 * MS).0.is_empty(), "b's prober checks everything a holds");
    // b stops ticking; its lease (3 intervals) runs out.
    let late = 3 * MS + 3_001 * MS;
    let probed = probe_round(&mut a, &store, late, 200, &ids);
    assert_eq!(probed, ["b1", "b2"]);
}

const HOUR: u64 = 3_600_000 * MS;

/// Publishes `keys`' table with `f` applied to each entry: stamps written on a clock an hour
/// ahead (an older filter before a step back, or a lost clock key).
fn publish_ahead(
    store: &MemoryStore,
    p: &Prober,
    keys: &[&str],
    f: impl Fn(&mut crate::health::BackendHealth),
) {
    let entries = keys
        .iter()
        .map(|k| {
            let mut e = crate::health::BackendHealth::new(k.to_string(), MS);
            f(&mut e);
            e
        })
        .collect();
    let bytes = health_table::encode(&HealthTable::from_entries(entries)).unwrap();
    store.set(p.table_key(), &bytes, 0).unwrap();
}

const KEYS: [&str; 3] = ["a@10.0.0.1:80", "b@10.0.0.2:80", "c@10.0.0.3:80"];

#[test]
fn an_ejection_an_hour_ahead_lasts_the_longest_ejection_at_most() {
    let (c, policy) = two_backends_ejecting_after_three_errors(50);
    let store = MemoryStore::new();
    let mut w = Prober::new(&c, policy, 1).unwrap();
    publish_ahead(&store, &w, &KEYS[..2], |e| {
        if e.key.starts_with('b') {
            e.ejected_until_ns = HOUR;
            e.ejections = 1;
        }
    });
    assert_eq!(w.due(&store, 10 * MS), (vec![], vec![]), "creates the lease");
    // The holder cuts it to the 300 s maximum from its tick at 1 s.
    assert_eq!(w.due(&store, 1_000 * MS).1, vec![]);
    assert!(!w.availability(&store, 300_999 * MS).accepts(1));
    let returned = w.due(&store, 301_000 * MS).1;
    assert_eq!(
        returned.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        ["b returned: ejection over"]
    );
    assert!(w.availability(&store, 301_000 * MS).accepts(1));
}

#[test]
fn a_ramp_starting_an_hour_ahead_ramps_over_the_slow_start_time_at_most() {
    let c = config(r#","slow_start_ms":60000"#);
    let policy = HealthPolicy { slow_start_ns: 60_000 * MS, ..policy(0) };
    let store = MemoryStore::new();
    let mut p = Prober::new(&c, policy, 1).unwrap();
    publish_ahead(&store, &p, &KEYS, |e| e.available_since_ns = HOUR);
    p.due(&store, MS);
    p.due(&store, 10 * MS);
    // The ramp starts at the holder's tick at 10 ms: 55% half way, full at its end.
    assert_eq!(p.availability(&store, 30_010 * MS).weight_percent(0), 55);
    assert_eq!(p.availability(&store, 60_010 * MS).weight_percent(0), 100);
}

#[test]
fn check_is_the_configured_health_check() {
    let c = config("");
    assert_eq!(prober(1).check(), c.health_check.as_ref());
    assert!(c.health_check.is_some());
    let (passive, policy) = two_backends_ejecting_after_three_errors(50);
    assert_eq!(Prober::new(&passive, policy, 1).unwrap().check(), None);
}

/// Without active checks the lease is renewed every second and lasts three: a second VM
/// cannot take it from a holder that ticks late, only from one silent for over 3 s.
#[test]
fn without_active_checks_the_lease_lasts_three_seconds() {
    let (c, policy) = two_backends_ejecting_after_three_errors(50);
    let store = MemoryStore::new();
    let mut a = Prober::new(&c, policy, 1).unwrap();
    let mut b = Prober::new(&c, policy, 2).unwrap();
    a.due(&store, MS);
    a.due(&store, 2 * MS);
    assert!(a.holds_lease());
    b.due(&store, 2_000 * MS);
    assert!(!b.holds_lease(), "2 s after a's renewal");
    b.due(&store, 3_002 * MS);
    b.due(&store, 3_003 * MS);
    assert!(b.holds_lease(), "3 s after a's renewal");
}

/// A probe that could not be sent is a failure like any other (reason: not sent).
#[test]
fn probes_not_sent_count_as_failures() {
    let store = MemoryStore::new();
    let mut p = holder(&store, 1);
    assert_eq!(p.not_sent(&store, 0, 10 * MS), None, "1 of 2 failures");
    let t = p.not_sent(&store, 0, 20 * MS).unwrap();
    assert_eq!(t.to_string(), "a unhealthy: 2 probe failures, last: probe not sent");
}

/// A probe with no status is a timeout from 90% of the timeout on (Envoy's timer is not this
/// clock), a connection failure before.
#[test]
fn a_missing_status_is_a_timeout_from_nine_tenths_of_the_timeout_on() {
    let store = MemoryStore::new();
    let mut p = holder(&store, 1);
    let mut token = 0;
    let now = 10 * MS;
    let sent = send(&mut p, &store, now, &mut token);
    p.answered(&store, sent[0].0, None, now + 449 * MS);
    p.answered(&store, sent[1].0, None, now + 450 * MS);
    let sent = send(&mut p, &store, now + 1_001 * MS, &mut token);
    let a = p.answered(&store, sent[0].0, None, now + 1_001 * MS + 250 * MS).unwrap();
    assert_eq!(a.to_string(), "a unhealthy: 2 probe failures, last: connection failed");
    let b = p.answered(&store, sent[1].0, None, now + 1_001 * MS + 450 * MS).unwrap();
    assert_eq!(b.to_string(), "b unhealthy: 2 probe failures, last: timeout after 500 ms");
}

/// Outcomes of a backend that the current configuration's live prober checks are that
/// prober's to record: this one neither ejects it nor writes its own table.
#[test]
fn outcomes_of_covered_backends_are_left_to_the_current_configuration() {
    let ids = ["b1", "b2"];
    let json = |ids: &[&str]| {
        let backends: Vec<String> = ids
            .iter()
            .map(|id| format!(r#"{{"id":"{id}","address":"10.0.0.{}:80"}}"#, &id[1..]))
            .collect();
        format!(
            r#"{{"cluster":"pool","backends":[{}],"health_check":{{"interval_ms":1000,
                "timeout_ms":500}},"outlier_detection":{{"consecutive_errors":1,
                "base_ejection_ms":1000,"max_ejection_percent":100}}}}"#,
            backends.join(",")
        )
    };
    let policy = HealthPolicy {
        outlier: Some(crate::health::OutlierPolicy {
            consecutive_errors: 1,
            base_ejection_ns: 1_000 * MS,
            max_ejection_ns: 300_000 * MS,
            max_ejection_percent: 100,
        }),
        ..policy(0)
    };
    let prober = |ids: &[&str], owner| {
        Prober::new(&Config::from_json(json(ids).as_bytes()).unwrap(), policy, owner).unwrap()
    };
    let store = MemoryStore::new();
    let mut old = prober(&ids, 1);
    old.publish_initial(&store, MS);
    old.due(&store, MS);
    let mut new = prober(&["b1", "b2", "b3"], 2);
    new.publish_initial(&store, MS);
    new.due(&store, MS);
    new.due(&store, 2 * MS);
    old.due(&store, 3 * MS);
    let before = store.get(old.table_key()).unwrap();
    assert_eq!(old.outcome(&store, 0, true, 4 * MS), vec![], "b1 is the new prober's");
    assert_eq!(store.get(old.table_key()).unwrap(), before, "old table untouched");
}

/// When a third configuration becomes current, a superseded one follows it: it reads from
/// the new current table what that one checks, and probes the rest itself again.
#[test]
fn a_superseded_configuration_follows_the_newest_current_one() {
    let store = MemoryStore::new();
    let ids = ["b1", "b2"];
    let mut a = prober_over(&ids, 1);
    a.publish_initial(&store, MS);
    a.due(&store, MS);
    let mut b = prober_over(&["b1", "b2", "b3"], 2);
    b.publish_initial(&store, MS);
    b.due(&store, MS);
    b.due(&store, 2 * MS);
    assert!(a.due(&store, 3 * MS).0.is_empty(), "b checks both");
    let mut c = prober_over(&["b1", "b5"], 3);
    c.publish_initial(&store, 4 * MS);
    c.due(&store, 4 * MS);
    c.due(&store, 5 * MS);
    b.due(&store, 6 * MS);
    // c checks b1 only: a probes b2 itself.
    let mut probed = Vec::new();
    for t in [7 * MS, 8 * MS] {
        c.due(&store, t);
        b.due(&store, t);
        probed.extend(probe_round(&mut a, &store, t, 200, &ids));
    }
    assert_eq!(probed, ["b2"]);
}
