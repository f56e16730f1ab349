//! The prober lease over the CAS-enforcing in-memory store: contention (including two VMs
//! creating the missing key at once), renewal, expiry and takeover; and the probe
//! schedule under it: once per interval per backend, continued across a change of holder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;

use super::*;
use crate::health::schedule::Schedule;
use crate::state::memory::hooked::Hooked;
use crate::state::memory::MemoryStore;

const KEY: &str = "envoy_lb/pool/prober";
const TTL: u64 = 3_000;

/// [`acquire`], answering only whether the lease is held afterwards.
fn try_acquire(store: &dyn SharedStore, key: &str, owner: u64, now_ns: u64, ttl_ns: u64) -> bool {
    acquire(store, key, owner, now_ns, ttl_ns).is_held()
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

use crate::MS;
const INTERVAL: u64 = 5_000 * MS;
const JITTER: u64 = 500 * MS;
const TICK: u64 = 100 * MS;

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("b{i}@10.0.0.{}:80", i + 1)).collect()
}

/// One VM: its owner id and its copy of the probe schedule.
struct Vm {
    owner: u64,
    schedule: Schedule,
    held: bool,
}

fn vm(owner: u64) -> Vm {
    let k = keys(8);
    Vm {
        owner,
        schedule: Schedule::new(k.iter().map(String::as_str), INTERVAL, JITTER),
        held: false,
    }
}

/// One tick of `vm`: take or renew the lease; if it may probe, "send" the probes its schedule
/// says are due (recorded in `sent`). A VM that takes the lease starts its schedule afresh.
fn tick(store: &MemoryStore, vm: &mut Vm, now: u64, sent: &mut Vec<(usize, u64)>) {
    let ttl = TTL_INTERVALS * INTERVAL;
    let (status, before) = acquire_from(store, KEY, vm.owner, now, ttl);
    if !status.may_probe() {
        vm.held = false;
        return;
    }
    if !vm.held {
        // As the prober does: take up after the previous holder's last renewal.
        let last = before
            .filter(|l| l.owner != vm.owner && status == LeaseStatus::Taken)
            .map(|l| l.expires_ns.saturating_sub(ttl))
            .filter(|&t| t > 0 && t <= now);
        match last {
            Some(t) => vm.schedule.resume_from(t),
            None => vm.schedule.restart(),
        }
        vm.held = true;
    }
    let mut due = Vec::new();
    vm.schedule.due(now, &mut due);
    sent.extend(due.into_iter().map(|i| (i, now)));
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
    let mut vms: Vec<Vm> = (1..=4).map(vm).collect();
    while now < 60_000 * MS {
        for vm in &mut vms {
            tick(&store, vm, now, &mut sent);
        }
        now += TICK;
    }
    for b in 0..8 {
        let first = sent.iter().find(|s| s.0 == b).unwrap().1;
        assert!(first <= 1 + TICK + INTERVAL + 2 * JITTER, "probed within an interval");
        for g in gaps(&sent, b) {
            assert!((INTERVAL - 2 * JITTER..=INTERVAL + 2 * JITTER + TICK).contains(&g), "gap {g}");
        }
        assert!(gaps(&sent, b).len() >= 10);
    }
}

#[test]
fn a_dead_holder_is_replaced_without_double_probes() {
    let store = MemoryStore::new();
    let mut sent = vec![];
    let mut now = 1;
    let (mut one, mut two) = (vm(1), vm(2));
    while now < 60_000 * MS {
        if now < 22_000 * MS {
            tick(&store, &mut one, now, &mut sent); // VM 1 dies at 22 s without releasing.
        }
        tick(&store, &mut two, now, &mut sent);
        now += TICK;
    }
    let after = sent.iter().filter(|s| s.1 >= 22_000 * MS).count();
    assert!(after > 0, "VM 2 took over after the lease expired");
    for b in 0..8 {
        let g = gaps(&sent, b);
        // The only long gap is the lease's ttl after the death: the new holder takes up the
        // schedule where the dead one's last renewal left it, with one catch-up round of what
        // fell due meanwhile (so the round after it may come early); otherwise no double.
        let long: Vec<usize> =
            (0..g.len()).filter(|&k| g[k] > INTERVAL + 2 * JITTER + TICK).collect();
        assert!(long.len() <= 1, "{g:?}");
        let catch_up = long.first().map(|k| k + 1);
        for (k, &gap) in g.iter().enumerate() {
            assert!(Some(k) == catch_up || gap >= INTERVAL - 2 * JITTER, "double probe: {g:?}");
        }
        let bound = TTL_INTERVALS * INTERVAL + INTERVAL + 2 * JITTER + 2 * TICK;
        assert!(g.iter().all(|&g| g <= bound), "{g:?}");
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
