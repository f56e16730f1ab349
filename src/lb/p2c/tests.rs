//! Native tests of power of d choices over any cost function: the lowest cost wins, NaN ranks
//! last, equal costs split at random, exactly `d` loads are read; and of its sampler.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::lb::testkit::{accept_all, is_distinct, FakeLoad};

/// One pick of capacity `cap` with `cost`; the load's read log is cleared first.
fn pick(
    p2c: &mut P2c,
    load: &mut FakeLoad,
    rng: &mut fastrand::Rng,
    cap: usize,
    cost: impl Fn(usize, u64, u64) -> f64,
) -> Vec<usize> {
    load.reads.clear();
    let mut out = Picks::with_capacity(cap);
    let mut ctx = PickCtx { accept: &accept_all, rng, key: None, load, now_ns: 7, reported: None };
    p2c.pick(&mut ctx, &mut out, &cost);
    out.as_slice().iter().map(|&i| i as usize).collect()
}

#[test]
fn a_full_scan_orders_every_backend_by_cost_whatever_the_cost_reads() {
    // The cost ignores load and reads the time it is given: distance from backend 3.
    let mut p2c = P2c::new(6, 0);
    let mut load = FakeLoad::new(&[9; 6]);
    let mut rng = fastrand::Rng::with_seed(1);
    let cost = |i: usize, _: u64, now: u64| {
        assert_eq!(now, 7);
        (i as f64 - 3.0).abs()
    };
    for _ in 0..50 {
        let out = pick(&mut p2c, &mut load, &mut rng, 6, cost);
        assert_eq!(out[0], 3);
        let mut pair = [out[1], out[2]];
        pair.sort_unstable();
        assert_eq!(pair, [2, 4]);
        assert_eq!(out[5], 0);
        assert_eq!(load.reads.len(), 6);
    }
}

#[test]
fn d_choices_read_exactly_d_loads_and_rank_them_by_cost_nan_last() {
    let mut p2c = P2c::new(10, 3);
    let mut load = FakeLoad::new(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let mut rng = fastrand::Rng::with_seed(2);
    // Cost = in-flight, except backend 0 whose cost is NaN.
    let cost = |i: usize, in_flight: u64, _: u64| if i == 0 { f64::NAN } else { in_flight as f64 };
    for _ in 0..200 {
        let out = pick(&mut p2c, &mut load, &mut rng, 5, cost);
        assert_eq!(load.reads.len(), 3);
        assert!(is_distinct(&out));
        let mut head = out[..3].to_vec();
        let mut read = load.reads.clone();
        read.sort_by_key(|&i| if i == 0 { u64::MAX } else { i as u64 });
        assert_eq!(head, read, "{out:?}");
        head.sort_unstable();
        assert!(out[3..].iter().all(|i| !head.contains(i)));
    }
}

#[test]
fn equal_costs_are_broken_at_random() {
    let mut p2c = P2c::new(3, 0);
    let mut load = FakeLoad::new(&[0; 3]);
    let mut rng = fastrand::Rng::with_seed(3);
    let mut first = [0usize; 3];
    for _ in 0..3_000 {
        first[pick(&mut p2c, &mut load, &mut rng, 1, |_, _, _| 1.0)[0]] += 1;
    }
    // sd = sqrt(2/9 / 3000) = 0.0086.
    assert!(first.iter().all(|&c| (c as f64 / 3_000.0 - 1.0 / 3.0).abs() < 0.04), "{first:?}");
}

#[test]
fn the_sampler_survives_its_epoch_wrapping() {
    let mut p2c = P2c::new(6, 2);
    // Stale marks equal to the epoch after the wrap: if they were not cleared every backend
    // would look already drawn and picks would come back empty.
    p2c.sampler.mark.fill(1);
    p2c.sampler.epoch = u32::MAX;
    let mut load = FakeLoad::new(&[0; 6]);
    let mut rng = fastrand::Rng::with_seed(18);
    for _ in 0..3 {
        let out = pick(&mut p2c, &mut load, &mut rng, 6, |_, n, _| n as f64);
        assert_eq!(out.len(), 6);
        assert!(is_distinct(&out));
        assert_eq!(load.reads.len(), 2);
    }
}

/// `sample` returns how many backends it visited, also when they come from the exact pass
/// (2 accepted of 100: the rejection draws almost always miss them).
#[test]
fn sample_returns_the_number_visited() {
    let mut s = Sampler::new(100);
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..20 {
        s.begin();
        let mut seen = Vec::new();
        let n = s.sample(2, &|i| i == 7 || i == 42, &mut rng, |i| seen.push(i));
        seen.sort_unstable();
        assert_eq!((n, seen), (2, vec![7, 42]));
        assert_eq!(s.sample(2, &|i| i == 7 || i == 42, &mut rng, |_| {}), 0, "none left");
    }
}
