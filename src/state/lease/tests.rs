//! The prober lease over the CAS-enforcing in-memory store: contention (including two VMs
//! creating the missing key at once), renewal, expiry and takeover; and the probe
//! schedule: once per interval per backend, continued across a change of holder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;

use super::*;
use crate::health::HealthTable;
use crate::state::health_table;
use crate::state::memory::hooked::Hooked;
use crate::state::memory::MemoryStore;

const KEY: &str = "envoy_lb/pool/prober";
const TTL: u64 = 3_000;

/// [`acquire`], answering only whether the lease is held afterwards.
fn try_acquire(store: &dyn SharedStore, key: &str, owner: u64, now_ns: u64, ttl_ns: u64) -> bool {
    acquire(store, key, owner, now_ns, ttl_ns).is_held()
}

/// The lease as its holder leaves it when it stops renewing and `TTL` has passed: expired.
fn expire(store: &MemoryStore, key: &str) {
    let (value, cas) = store.get(key).unwrap().unwrap();
    let owner = decode(&value).unwrap().owner;
    store.set(key, &encode(Lease { owner, expires_ns: 0 }), cas).unwrap();
}

#[test]
fn codec_round_trip_and_rejects() {
    let l = Lease { owner: u64::MAX, expires_ns: 12345 };
    assert_eq!(decode(&encode(l)), Some(l));
    let mut bad = encode(l);
    bad[0] = 2;
    assert_eq!(decode(&bad), None);
    assert_eq!(decode(&encode(l)[..16]), None);
    assert_eq!(decode(&[]), None);
    let mut long = encode(l).to_vec();
    long.push(0);
    assert_eq!(decode(&long), None);
}

#[test]
fn one_of_two_contenders_holds_it_and_renews() {
    let store = MemoryStore::new();
    assert_eq!(acquire(&store, KEY, 1, 0, TTL), LeaseStatus::Created);
    assert_eq!(acquire(&store, KEY, 2, 0, TTL), LeaseStatus::Busy);
    // Renewed every tick, it never expires for the other.
    for now in (1_000..20_000).step_by(1_000) {
        assert_eq!(acquire(&store, KEY, 1, now, TTL), LeaseStatus::Renewed, "at {now}");
        assert!(!try_acquire(&store, KEY, 2, now, TTL));
    }
    let l = decode(&store.get(KEY).unwrap().unwrap().0).unwrap();
    assert_eq!(l, Lease { owner: 1, expires_ns: 19_000 + TTL });
}

#[test]
fn expiry_hands_over_to_another_vm() {
    let store = MemoryStore::new();
    assert!(try_acquire(&store, KEY, 1, 0, TTL));
    // Owner 1 dies: nobody renews.
    assert_eq!(acquire(&store, KEY, 2, TTL - 1, TTL), LeaseStatus::Busy);
    let took = acquire(&store, KEY, 2, TTL, TTL);
    assert_eq!(took, LeaseStatus::Taken);
    assert!(took.may_probe());
    // The old owner, back late, finds it taken.
    assert_eq!(acquire(&store, KEY, 1, TTL + 1, TTL), LeaseStatus::Busy);
    assert_eq!(acquire(&store, KEY, 2, TTL + 1, TTL), LeaseStatus::Renewed);
}

#[test]
fn an_unreadable_value_is_taken_with_cas() {
    let store = MemoryStore::new();
    store.set(KEY, b"\x09old format", 0).unwrap();
    assert_eq!(acquire(&store, KEY, 7, 0, TTL), LeaseStatus::Taken);
}

#[test]
fn store_failures_are_not_held() {
    struct Failing;
    impl SharedStore for Failing {
        fn get(&self, _: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            Err(StoreError::Host(2))
        }
        fn set(&self, _: &str, _: &[u8], _: u32) -> Result<(), StoreError> {
            Err(StoreError::Host(2))
        }
    }
    assert_eq!(acquire(&Failing, KEY, 1, 0, TTL), LeaseStatus::StoreFailed);
    assert!(!LeaseStatus::StoreFailed.is_held());
}

#[test]
fn both_write_the_missing_key_and_the_re_read_decides() {
    // A reads "missing"; B also read "missing" (before A wrote) and writes after A's write but
    // before A's confirming re-read: B's blind write lands, A's re-read sees B.
    let store = MemoryStore::new();
    let b_read = store.get(KEY).unwrap();
    assert!(b_read.is_none());
    let b_lease = claim(None, 2, 0, TTL).unwrap();
    let a_view = Hooked::new(&store, 2, move |s| s.set(KEY, &encode(b_lease), 0).unwrap());
    assert_eq!(acquire(&a_view, KEY, 1, 0, TTL), LeaseStatus::Busy);
    let b_confirms = confirms(decode(&store.get(KEY).unwrap().unwrap().0), 2, 0);
    assert!(b_confirms, "B's re-read shows B: only B holds it");
    assert_eq!(acquire(&store, KEY, 2, 1, TTL), LeaseStatus::Renewed);
}

#[test]
fn a_late_blind_create_is_settled_at_the_next_renewal_before_anyone_probes() {
    // B runs a whole acquire between A's read ("missing") and A's write: both writes are
    // blind, both re-reads confirm. Both are only `Created`, so neither probes yet; at the
    // next tick exactly one renews.
    let store = MemoryStore::new();
    let b_status = Cell::new(None);
    let a_view = Hooked::new(&store, 1, |s| b_status.set(Some(acquire(s, KEY, 2, 0, TTL))));
    let a_status = acquire(&a_view, KEY, 1, 0, TTL);
    assert_eq!(b_status.get(), Some(LeaseStatus::Created));
    assert_eq!(a_status, LeaseStatus::Created);
    assert!(!a_status.may_probe() && !LeaseStatus::Created.may_probe());
    let a_next = acquire(&store, KEY, 1, 100, TTL);
    let b_next = acquire(&store, KEY, 2, 100, TTL);
    assert_eq!((a_next, b_next), (LeaseStatus::Renewed, LeaseStatus::Busy));
}

#[test]
fn cas_guards_a_takeover_race() {
    // A and B both see an expired lease; B writes first, so A's CAS write fails.
    let store = MemoryStore::new();
    store.set(KEY, &encode(Lease { owner: 9, expires_ns: 0 }), 0).unwrap();
    let a_view =
        Hooked::new(&store, 1, |s| assert_eq!(acquire(s, KEY, 2, 5, TTL), LeaseStatus::Taken));
    assert_eq!(acquire(&a_view, KEY, 1, 5, TTL), LeaseStatus::Busy);
}

#[test]
fn never_probed_backends_are_due_at_once() {
    let plan = probe_plan(&[0, 0, 0], 5, 1000, 100);
    assert_eq!(plan.due, [0, 1, 2]);
    assert_eq!(plan.next_due_ns, None);
    let plan = probe_plan(&[0, 10, 20], 15, 1000, 0);
    assert_eq!(plan, ProbePlan { due: vec![0], next_due_ns: Some(1010) });
}

#[test]
fn jitter_stays_within_bounds_and_is_the_same_for_every_vm() {
    for i in 0..50 {
        for last in [1u64, 7, 1_000, 123_456_789] {
            let at = due_at(i, last, 1_000, 200);
            assert!((last + 800..=last + 1_200).contains(&at), "{i} {last} {at}");
            assert_eq!(at, due_at(i, last, 1_000, 200));
            // Jitter is capped at half the interval.
            let capped = due_at(i, last, 1_000, 5_000);
            assert!((last + 500..=last + 1_500).contains(&capped));
        }
    }
}

use crate::MS;
const INTERVAL: u64 = 5_000 * MS;
const JITTER: u64 = 500 * MS;
const TICK: u64 = 100 * MS;
const TABLE: &str = "envoy_lb/pool/health";

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("b{i}@10.0.0.{}:80", i + 1)).collect()
}

/// One tick of VM `owner`: take or renew the lease; if it may probe, plan from the published
/// table, "send" the due probes (recorded in `sent`), publish their times.
fn tick(store: &MemoryStore, owner: u64, now: u64, sent: &mut Vec<(usize, u64)>) {
    if !acquire(store, KEY, owner, now, TTL_INTERVALS * INTERVAL).may_probe() {
        return;
    }
    let k = keys(8);
    health_table::modify(store, TABLE, &k, now, |t: &mut HealthTable| {
        let last: Vec<u64> = t.entries().iter().map(|e| e.last_probe_ns).collect();
        let plan = probe_plan(&last, now, INTERVAL, JITTER);
        for &i in &plan.due {
            t.mark_probed(i, now);
        }
        plan.due
    })
    .unwrap()
    .into_iter()
    .for_each(|i| sent.push((i, now)));
}

fn gaps(sent: &[(usize, u64)], backend: usize) -> Vec<u64> {
    let times: Vec<u64> = sent.iter().filter(|s| s.0 == backend).map(|s| s.1).collect();
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn each_backend_once_per_interval_whatever_the_number_of_workers() {
    let store = MemoryStore::new();
    let mut sent = vec![];
    let mut now = 1;
    while now < 60_000 * MS {
        for worker in 1..=4 {
            tick(&store, worker, now, &mut sent);
        }
        now += TICK;
    }
    for b in 0..8 {
        let first = sent.iter().find(|s| s.0 == b).unwrap().1;
        assert!(first <= 1 + TICK, "probed at once (after the lease settles)");
        for g in gaps(&sent, b) {
            assert!((INTERVAL - JITTER..=INTERVAL + JITTER + TICK).contains(&g), "gap {g}");
        }
        assert!(gaps(&sent, b).len() >= 10);
    }
}

#[test]
fn a_new_holder_continues_the_schedule() {
    let store = MemoryStore::new();
    let mut sent = vec![];
    let mut now = 1;
    // VM 1 probes for 22 s, then is replaced: its lease expires and VM 2 takes over.
    while now < 22_000 * MS {
        tick(&store, 1, now, &mut sent);
        tick(&store, 2, now, &mut sent);
        now += TICK;
    }
    expire(&store, KEY);
    let handover = sent.len();
    while now < 60_000 * MS {
        tick(&store, 2, now, &mut sent);
        now += TICK;
    }
    assert!(sent.len() > handover, "the new holder probes");
    for b in 0..8 {
        for g in gaps(&sent, b) {
            assert!((INTERVAL - JITTER..=INTERVAL + JITTER + TICK).contains(&g), "gap {g}");
        }
    }
}

#[test]
fn a_dead_holder_is_replaced_without_double_probes() {
    let store = MemoryStore::new();
    let mut sent = vec![];
    let mut now = 1;
    while now < 60_000 * MS {
        if now < 22_000 * MS {
            tick(&store, 1, now, &mut sent); // VM 1 dies at 22 s without releasing.
        }
        tick(&store, 2, now, &mut sent);
        now += TICK;
    }
    let after = sent.iter().filter(|s| s.1 >= 22_000 * MS).count();
    assert!(after > 0, "VM 2 took over after the lease expired");
    for b in 0..8 {
        let g = gaps(&sent, b);
        assert!(g.iter().all(|&g| g >= INTERVAL - JITTER), "no double probe: {g:?}");
        // The only long gap is the lease's ttl after the death.
        let long = g.iter().filter(|&&g| g > INTERVAL + JITTER + TICK).count();
        assert!(long <= 1);
        assert!(g.iter().all(|&g| g <= TTL_INTERVALS * INTERVAL + INTERVAL + JITTER + TICK));
    }
}

/// A lease written on a clock an hour ahead (an older filter before a step back, or a lost
/// clock key) by a VM that then died: cut to one TTL (beyond the clock's step bound, so a
/// live holder a little ahead is left alone), then taken over as usual.
#[test]
fn a_lease_running_out_an_hour_late_is_cut_to_one_ttl() {
    const S: u64 = 1_000_000_000;
    let (now, ttl) = (100 * S, 3 * S);
    let store = MemoryStore::new();
    store.set(KEY, &encode(Lease { owner: 9, expires_ns: now + 3_600 * S }), 0).unwrap();
    assert_eq!(acquire(&store, KEY, 1, now, ttl), LeaseStatus::Busy);
    assert_eq!(acquire(&store, KEY, 1, now + ttl - 1, ttl), LeaseStatus::Busy);
    assert_eq!(acquire(&store, KEY, 1, now + ttl, ttl), LeaseStatus::Taken);
    // Half a second ahead is within the clock's bound: not cut.
    let ahead = Lease { owner: 1, expires_ns: now + ttl + ttl + S / 2 };
    store.set(KEY, &encode(ahead), 0).unwrap();
    assert_eq!(acquire(&store, KEY, 2, now + ttl, ttl), LeaseStatus::Busy);
    assert_eq!(decode(&store.get(KEY).unwrap().unwrap().0), Some(ahead));
}

/// The cut applies only past the clock's step bound: a lease exactly at it is left alone.
#[test]
fn a_lease_exactly_at_the_step_bound_is_not_cut() {
    let (now, ttl) = (100 * MS, 3_000 * MS);
    let at_bound = Lease { owner: 9, expires_ns: now + ttl + MAX_STEP_NS };
    assert_eq!(cut(at_bound, now, ttl), None);
    let past = Lease { expires_ns: at_bound.expires_ns + 1, ..at_bound };
    assert_eq!(cut(past, now, ttl), Some(Lease { owner: 9, expires_ns: now + ttl }));
}

/// The jitter spreads probes: over many backends (or probe times) the shifts take most values
/// of `[-j, +j]`, on both sides, averaging near zero, rather than one common shift.
#[test]
fn jitter_spreads_over_backends_and_over_probe_times() {
    let (interval, j) = (100_000u64, 10_000u64);
    let shifts = |at: &mut dyn Iterator<Item = (usize, u64)>| -> Vec<i64> {
        at.map(|(i, last)| due_at(i, last, interval, j) as i64 - (last + interval) as i64).collect()
    };
    let by_backend = shifts(&mut (0..1_000).map(|i| (i, 1_000_000)));
    let by_time = shifts(&mut (0..1_000).map(|k| (3, 1_000_000 + 7 * k)));
    for s in [by_backend, by_time] {
        assert!(s.iter().all(|d| d.unsigned_abs() <= j));
        let mut distinct = s.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 900, "{} distinct shifts of 1000", distinct.len());
        let mean = s.iter().sum::<i64>() as f64 / s.len() as f64;
        assert!(mean.abs() < 1_000.0, "mean shift {mean}");
    }
}
