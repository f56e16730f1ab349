//! The proxy's clock over the CAS-enforcing in-memory store: it follows the wall clock while
//! nothing steps, never goes back, moves at most a second across a step of an hour either way,
//! keeps the VMs together, and keeps going alone when the store fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::state::memory::MemoryStore;

const S: u64 = 1_000 * MS;
const HOUR: u64 = 3_600 * S;
const START: u64 = 1_700_000_000 * S;
const TICK: u64 = 200 * MS;

fn stored(store: &MemoryStore) -> Anchor {
    decode(&store.get("envoy_lb/clock").unwrap().unwrap().0).unwrap()
}

#[test]
fn without_steps_it_is_the_wall_clock_for_every_vm() {
    let store = MemoryStore::new();
    let (mut a, mut b) = (Clock::new(), Clock::new());
    let mut wall = START;
    for _ in 0..100 {
        assert_eq!(a.sync(&store, wall), wall);
        assert_eq!(b.sync(&store, wall + 3 * MS), wall + 3 * MS);
        assert_eq!(a.at(wall + 50 * MS), wall + 50 * MS, "a request between ticks");
        wall += TICK;
    }
}

#[test]
fn an_hour_back_or_forward_moves_it_at_most_a_second() {
    for (step_back, expected) in [(true, "stands still"), (false, "jumps at most 1 s")] {
        let store = MemoryStore::new();
        let (mut a, mut b) = (Clock::new(), Clock::new());
        let mut last = START;
        for k in 0..100u64 {
            // True time k ticks; the wall clock steps an hour at tick 50.
            let true_ns = k * TICK;
            let wall = match (k >= 50, step_back) {
                (false, _) => START + true_ns,
                (true, true) => START + true_ns - HOUR,
                (true, false) => START + true_ns + HOUR,
            };
            let vm = if k % 2 == 0 { &mut a } else { &mut b };
            let mono = vm.sync(&store, wall);
            assert!(mono >= last, "went back at tick {k}");
            assert!(mono - last <= MAX_STEP_NS, "{expected}: moved {} ms", (mono - last) / MS);
            // Before the step and from the tick after it, at the wall clock's rate.
            if k != 50 && k > 0 {
                assert_eq!(mono - last, TICK, "tick {k}");
            }
            // Lost or gained overall: no more than a second.
            assert!(mono.abs_diff(START + true_ns) <= MAX_STEP_NS, "tick {k}");
            last = mono;
        }
    }
}

#[test]
fn a_small_step_back_stalls_it_without_moving_the_anchor() {
    let store = MemoryStore::new();
    let (mut a, mut b) = (Clock::new(), Clock::new());
    assert_eq!(a.sync(&store, START), START);
    assert_eq!(b.sync(&store, START + 300 * MS), START + 300 * MS);
    // Back 400 ms: stands still, for both VMs, until the wall clock is past where it was.
    assert_eq!(a.sync(&store, START - 100 * MS), START + 300 * MS);
    assert_eq!(b.sync(&store, START + 100 * MS), START + 300 * MS);
    assert_eq!(stored(&store), Anchor { wall_ns: START + 300 * MS, mono_ns: START + 300 * MS });
    assert_eq!(a.sync(&store, START + 500 * MS), START + 500 * MS, "no offset left behind");
}

/// VMs read the wall clock at slightly different instants: one that read it a little before
/// another VM moved the anchor does not push the clock off the wall clock.
#[test]
fn racing_vms_do_not_make_it_drift() {
    let store = MemoryStore::new();
    let (mut a, mut b) = (Clock::new(), Clock::new());
    let mut wall = START;
    for _ in 0..1_000 {
        let late = wall;
        b.sync(&store, wall + 5 * MS);
        a.sync(&store, late);
        wall += TICK;
    }
    let anchor = stored(&store);
    assert_eq!(anchor.mono_ns, anchor.wall_ns, "an offset crept in");
}

#[test]
fn requests_use_the_last_anchor_under_the_same_bound() {
    let store = MemoryStore::new();
    let mut c = Clock::new();
    assert_eq!(c.at(START), START, "before any sync: the wall clock");
    let mono = c.sync(&store, START);
    assert_eq!(c.at(START + 150 * MS), mono + 150 * MS);
    assert_eq!(c.at(START + HOUR), mono + MAX_STEP_NS, "a step forward before the next tick");
    assert_eq!(c.at(START - HOUR), mono, "a step back before the next tick");
}

#[test]
fn an_unreadable_anchor_restarts_from_this_vms_clock() {
    let store = MemoryStore::new();
    let mut c = Clock::new();
    c.sync(&store, START);
    c.sync(&store, START + 10 * S - HOUR);
    let mono = c.sync(&store, START + 11 * S - HOUR);
    store.set("envoy_lb/clock", b"junk", 0).unwrap();
    assert_eq!(c.sync(&store, START + 11_200 * MS - HOUR), mono + 200 * MS, "no jump back");
    assert_eq!(stored(&store).mono_ns, mono + 200 * MS);
}

/// A store whose every call fails.
struct Broken;

impl SharedStore for Broken {
    fn get(&self, _key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Err(StoreError::Host(1))
    }
    fn set(&self, _key: &str, _value: &[u8], _cas: u32) -> Result<(), StoreError> {
        Err(StoreError::Host(1))
    }
}

#[test]
fn a_failing_store_leaves_each_vm_its_own_clock_by_the_same_rules() {
    let mut c = Clock::new();
    assert_eq!(c.sync(&Broken, START), START);
    assert_eq!(c.sync(&Broken, START + TICK), START + TICK);
    assert_eq!(c.sync(&Broken, START + TICK - HOUR), START + TICK, "never back");
    assert_eq!(c.sync(&Broken, START + 2 * TICK - HOUR), START + 2 * TICK);
    assert_eq!(c.sync(&Broken, START + HOUR), START + 2 * TICK + MAX_STEP_NS);
}

#[test]
fn values_of_another_version_or_length_do_not_decode() {
    let a = Anchor { wall_ns: 7, mono_ns: 9 };
    assert_eq!(decode(&encode(a)), Some(a));
    let mut other = encode(a);
    other[0] = 2;
    assert_eq!(decode(&other), None);
    assert_eq!(decode(&encode(a)[..16]), None);
    assert_eq!(decode(b""), None);
}
