//! Native tests: fresh reports rank by metric plus the change in requests in flight since;
//! stale or missing ones by in-flight count; the picks contract.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::lb::reports::{LoadTable, ReportRules};
use crate::lb::testkit::{accept_all, check_picks_contract, pick_in, FakeLoad};
use crate::orca::parse;
use proptest::prelude::*;

const MS: u64 = 1_000_000;

fn rules() -> ReportRules {
    ReportRules::least_load_on_q()
}

/// Backends' reports `(queue, at)`, each made with `in_flight_at` requests in flight.
fn table_at(queues: &[Option<(f64, u64)>], in_flight_at: &[u64]) -> LoadTable {
    let r = rules();
    let mut t = LoadTable::new(queues.len());
    for (i, q) in queues.iter().enumerate() {
        if let Some((q, at)) = q {
            let report = parse(&format!("TEXT named_metrics.q={q}"), &r.wanted).unwrap();
            t.record(i, &report, &r, *at, in_flight_at.get(i).copied().unwrap_or(0));
        }
    }
    t
}

fn table(queues: &[Option<(f64, u64)>]) -> LoadTable {
    table_at(queues, &[])
}

/// The full ranking (choice_count 0 scans every backend) at `now`.
fn ranking(t: &LoadTable, load: &mut FakeLoad, now_ns: u64, cap: usize) -> Vec<usize> {
    let mut b = LeastLoad::new(t.backends(), 0, 100 * MS, 1.0);
    let mut rng = fastrand::Rng::with_seed(3);
    let ctx = &mut PickCtx {
        accept: &accept_all,
        rng: &mut rng,
        key: None,
        load,
        now_ns,
        reported: Some(t),
    };
    pick_in(&mut b, ctx, cap)
}

#[test]
fn fresh_reports_rank_by_metric() {
    let t =
        table_at(&[Some((5.0, 10 * MS)), Some((1.0, 10 * MS)), Some((3.0, 10 * MS))], &[4, 4, 4]);
    let mut load = FakeLoad::new(&[4, 4, 4]);
    assert_eq!(ranking(&t, &mut load, 20 * MS, 3), [1, 2, 0]);
}

#[test]
fn requests_in_flight_since_the_report_count_both_ways() {
    // Backend 1 reported the shorter queue, but 3 more requests went to it since (by any
    // worker); backend 0's 2 requests at its report have ended since.
    let t = table_at(&[Some((2.0, 10 * MS)), Some((0.0, 10 * MS))], &[2, 0]);
    let mut load = FakeLoad::new(&[0, 3]);
    assert_eq!(ranking(&t, &mut load, 20 * MS, 2), [0, 1], "max(0, 2 - 2) < 0 + 3");
    // Never below zero: a backend whose requests all ended ties with an idle one.
    let t = table_at(&[Some((1.0, 10 * MS)), Some((0.0, 10 * MS))], &[9, 0]);
    let mut load = FakeLoad::new(&[0, 0]);
    let mut seen = [false; 2];
    for seed in 0..40 {
        let mut b = LeastLoad::new(2, 0, 100 * MS, 1.0);
        let mut rng = fastrand::Rng::with_seed(seed);
        let ctx = &mut PickCtx {
            accept: &accept_all,
            rng: &mut rng,
            key: None,
            load: &mut load,
            now_ns: 20 * MS,
            reported: Some(&t),
        };
        seen[pick_in(&mut b, ctx, 1)[0]] = true;
    }
    assert_eq!(seen, [true, true], "equal costs 0 and 0, in random order");
}

#[test]
fn stale_or_missing_reports_fall_back_to_in_flight() {
    // Backend 0 reported 0 long ago (stale), 1 never; 2 reported 4 just now.
    let t = table(&[Some((0.0, 0)), None, Some((4.0, 190 * MS))]);
    let mut load = FakeLoad::new(&[6, 2, 0]);
    assert_eq!(ranking(&t, &mut load, 200 * MS, 3), [1, 2, 0]);
}

#[test]
fn without_a_table_it_is_least_request() {
    let mut b = LeastLoad::new(3, 0, 100 * MS, 1.0);
    let mut rng = fastrand::Rng::with_seed(3);
    let mut load = FakeLoad::new(&[3, 1, 2]);
    let ctx = &mut PickCtx {
        accept: &accept_all,
        rng: &mut rng,
        key: None,
        load: &mut load,
        now_ns: 0,
        reported: None,
    };
    assert_eq!(pick_in(&mut b, ctx, 3), [1, 2, 0]);
    assert!(b.uses_load());
}

proptest! {
    #[test]
    fn picks_contract(queues in proptest::collection::vec(proptest::option::of((0.0f64..100.0, 0u64..1000)), 1..20), cap in 1usize..=5, refused in any::<u64>(), choices in 0usize..4) {
        let t = table(&queues.iter().map(|q| q.map(|(v, at)| (v, at * MS))).collect::<Vec<_>>());
        let mut b = LeastLoad::new(t.backends(), choices, 100 * MS, 1.0);
        let mut rng = fastrand::Rng::with_seed(1);
        let mut load = FakeLoad::new(&vec![1; t.backends()]);
        let accept = |i: usize| (refused >> (i % 64)) & 1 == 0;
        let ctx = &mut PickCtx { accept: &accept, rng: &mut rng, key: None, load: &mut load, now_ns: 500 * MS, reported: Some(&t) };
        let got = pick_in(&mut b, ctx, cap);
        check_picks_contract(&got, &accept, t.backends(), cap)?;
    }
}
