//! In-flight counts across VM deaths (issue #12 item 4): routers on one shared store, one per
//! VM, with injected time; a VM dies by being dropped with requests still held (its streams
//! never reach `on_log`). Holds of live VMs always count; a dead VM's stop counting within the
//! bound, whatever the interleaving and across clock steps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::rc::Rc;

use proptest::prelude::*;

use super::super::*;
use crate::state::memory::MemoryStore;

use crate::MS;
const S: u64 = 1_000 * MS;
/// docs/algorithms.md's bound (least_request): a dead VM stops counting 3 s after its last
/// heartbeat, seen by every other VM at its next tick (≤ 200 ms).
const BOUND_NS: u64 = 3_200 * MS;
const TICK_NS: u64 = 200 * MS;
const BACKENDS: &str = r#"[
    {"id":"a","address":"10.0.0.1:80"},
    {"id":"b","address":"10.0.0.2:80"},
    {"id":"c","address":"10.0.0.3:80"}]"#;

/// A full-scan least_request router (every backend compared), or maglev with bounded load
/// (which also keeps the pool's total).
fn vm(store: &Rc<MemoryStore>, seed: u64, now_ns: u64, bounded: bool) -> Router {
    let algorithm = if bounded {
        r#""algorithm":"maglev","hash_on":{"header":"x-k"},"balance_factor":1.5"#
    } else {
        r#""algorithm":"least_request","least_request":{"choice_count":0}"#
    };
    let json = format!(r#"{{"cluster":"pool",{algorithm},"backends":{BACKENDS}}}"#);
    let config = Config::from_json(json.as_bytes()).unwrap();
    Router::new(config, seed, now_ns, Box::new(Rc::clone(store)), Box::new(NoMetrics))
}

/// Each backend's load as `r`'s picks read it.
fn loads(r: &Router) -> Vec<u64> {
    let counters = r.in_flight.as_ref().unwrap();
    (0..3).map(|i| counters.get(&r.store, i)).collect()
}

/// The pool's total as bounded load reads it.
fn total(r: &Router) -> u64 {
    r.in_flight.as_ref().unwrap().total(&r.store)
}

/// Requests held per backend.
fn truth<'a>(tickets: impl IntoIterator<Item = &'a Ticket>) -> Vec<u64> {
    let mut t = vec![0u64; 3];
    for ticket in tickets {
        t[ticket.backend] += 1;
    }
    t
}

fn hold(r: &mut Router, n: usize, now_ns: u64) -> Vec<Ticket> {
    (0..n).map(|k| r.steer(Some(&format!("key{k}")), None, now_ns).unwrap().1).collect()
}

#[test]
fn a_vm_that_dies_holding_requests_stops_counting_within_the_bound() {
    let store = Rc::new(MemoryStore::new());
    let t0 = 1_000 * S;
    let (mut a, mut c) = (vm(&store, 1, t0, false), vm(&store, 2, t0, false));
    let held_a = hold(&mut a, 3, t0);
    let held_c = hold(&mut c, 2, t0);
    let (live, all) = (truth(&held_c), truth(held_a.iter().chain(&held_c)));
    // A VM started later, and both live VMs: two live VMs' counts add up.
    let mut now = t0 + TICK_NS;
    let mut b = vm(&store, 3, now, false);
    for r in [&mut a, &mut c, &mut b] {
        r.tick(now);
        assert_eq!(loads(r), all);
    }
    // A dies without ending its requests (FAIL_RELOAD replaces it; no on_log).
    drop(a);
    let died = now;
    while now < died + BOUND_NS {
        now += TICK_NS;
        for r in [&mut c, &mut b] {
            r.tick(now);
            let l = loads(r);
            assert!((0..3).all(|i| live[i] <= l[i] && l[i] <= all[i]), "{l:?} at {now}");
        }
    }
    assert_eq!(loads(&b), live, "the dead VM's holds still count {} ms after", BOUND_NS / MS);
    assert_eq!(loads(&c), live);
    // The live VM's requests end exactly once: nothing left.
    for mut t in held_c {
        c.on_end(&mut t, now);
    }
    assert_eq!(loads(&b), vec![0, 0, 0]);
    assert_eq!(loads(&c), vec![0, 0, 0]);
}

#[test]
fn clock_steps_neither_revive_a_dead_vm_nor_drop_a_live_one_for_long() {
    let store = Rc::new(MemoryStore::new());
    let t0 = 1_000 * S;
    let mut a = vm(&store, 1, t0, true);
    let mut c = vm(&store, 2, t0, true);
    let mut d = vm(&store, 3, t0, true);
    let mut held_a = hold(&mut a, 2, t0);
    let held_c = hold(&mut c, 3, t0);
    let _held_d = hold(&mut d, 4, t0);
    drop(d);
    // The clock steps back 500 s: D's last heartbeat is now in the future. It counts as fresh,
    // but only until the bound after the step (one renewal clamps it, then it expires).
    let step = 500 * S;
    let mut now = step;
    while now <= step + S + BOUND_NS {
        for r in [&mut a, &mut c] {
            r.tick(now);
        }
        now += TICK_NS;
    }
    let live = truth(held_a.iter().chain(&held_c));
    for r in [&a, &c] {
        assert_eq!(loads(r), live, "a dead VM revived by a step back");
        assert_eq!(total(r), live.iter().sum::<u64>());
    }
    // The clock jumps forward an hour: every heartbeat looks old until renewed. A writes
    // first (dropping C's entries as dead), then C renews and restores them.
    now += 3_600 * S;
    a.tick(now);
    held_a.extend(hold(&mut a, 1, now));
    c.tick(now);
    let live = truth(held_a.iter().chain(&held_c));
    let settled = now + S + TICK_NS;
    while now <= settled {
        now += TICK_NS;
        for r in [&mut a, &mut c] {
            r.tick(now);
        }
    }
    for r in [&a, &c] {
        assert_eq!(loads(r), live, "a live VM lost after a step forward");
        assert_eq!(total(r), live.iter().sum::<u64>());
    }
}

/// One step of the interleaving.
#[derive(Debug, Clone)]
enum Op {
    /// VM slot `vm` (if alive) steers a request with this hash key.
    Steer(usize, u8),
    /// VM `vm` ends its `k`-th held request (modulo how many it holds).
    End(usize, usize),
    /// VM `vm` dies with whatever it holds.
    Kill(usize),
    /// A new VM starts in slot `vm` (if empty).
    Spawn(usize),
    /// Time passes; every live VM ticks.
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..4, any::<u8>()).prop_map(|(v, k)| Op::Steer(v, k)),
        3 => (0usize..4, any::<usize>()).prop_map(|(v, k)| Op::End(v, k)),
        1 => (0usize..4).prop_map(Op::Kill),
        1 => (0usize..4).prop_map(Op::Spawn),
        3 => (1u64..=1_000).prop_map(|ms| Op::Advance(ms * MS)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any interleaving of holds, releases, VM deaths and starts, with every live VM ticking:
    /// a live VM's view never misses a live hold and never counts more than the live holds
    /// plus the dead VMs'; one bound after the last step, it is exactly the live holds.
    #[test]
    fn the_live_sum_is_the_truth_after_the_bound(
        ops in proptest::collection::vec(op(), 0..80),
        bounded in any::<bool>(),
    ) {
        let store = Rc::new(MemoryStore::new());
        let mut now = 1_000 * S;
        let mut seed = 0u64;
        let mut vms: Vec<Option<(Router, Vec<Ticket>)>> = Vec::new();
        for _ in 0..4 {
            seed += 1;
            vms.push(Some((vm(&store, seed, now, bounded), Vec::new())));
        }
        let mut dead = vec![0u64; 3];
        for op in ops {
            match op {
                Op::Steer(v, k) => {
                    if let Some((r, held)) = vms[v].as_mut() {
                        let (_, t) = r.steer(Some(&k.to_string()), None, now).unwrap();
                        held.push(t);
                    }
                }
                Op::End(v, k) => {
                    if let Some((r, held)) = vms[v].as_mut() {
                        if !held.is_empty() {
                            let mut t = held.swap_remove(k % held.len());
                            r.on_end(&mut t, now);
                        }
                    }
                }
                Op::Kill(v) => {
                    if let Some((_, held)) = vms[v].take() {
                        for (i, n) in truth(&held).into_iter().enumerate() {
                            dead[i] += n;
                        }
                    }
                }
                Op::Spawn(v) => {
                    if vms[v].is_none() {
                        seed += 1;
                        vms[v] = Some((vm(&store, seed, now, bounded), Vec::new()));
                    }
                }
                Op::Advance(ns) => {
                    now += ns;
                    for (r, _) in vms.iter_mut().flatten() {
                        r.tick(now);
                    }
                }
            }
            let live = truth(vms.iter().flatten().flat_map(|(_, held)| held));
            for (r, _) in vms.iter().flatten() {
                let l = loads(r);
                for i in 0..3 {
                    prop_assert!(live[i] <= l[i] && l[i] <= live[i] + dead[i],
                        "backend {}: read {:?}, live {:?}, dead {:?}", i, l, live, dead);
                }
            }
        }
        let settled = now + BOUND_NS;
        while now < settled {
            now += TICK_NS;
            for (r, _) in vms.iter_mut().flatten() {
                r.tick(now);
            }
        }
        let live = truth(vms.iter().flatten().flat_map(|(_, held)| held));
        for (r, _) in vms.iter().flatten() {
            prop_assert_eq!(loads(r), live.clone());
            if bounded {
                prop_assert_eq!(total(r), live.iter().sum::<u64>());
            }
        }
    }
}
