//! Native tests of Maglev: Envoy's own table vectors, fullness and balance, weights, disruption
//! on removal, pinned key -> backend vectors, the pick contract (distinct, accepted, hash-order
//! retries, round robin without a key) and bounded loads against a fake load view.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::backend::Backend;
use crate::hash_key::hash;
use crate::lb::testkit::{
    accept_all, check_bounded_load_moves_off_a_hot_backend,
    check_load_read_only_with_a_balance_factor, check_nothing_or_one_accepted,
    check_picks_contract, check_refusing_the_primary, check_round_robin_without_key,
    count_per_backend, equal_pool, pick, pick_with, pool_of, walk_from, FakeLoad,
};
use crate::lb::NoLoad;
use proptest::prelude::*;

const M: usize = 65537;

fn table_of(m: &Maglev) -> Vec<usize> {
    m.table.iter().map(|&b| usize::from(b)).collect()
}

fn entries_per_backend(m: &Maglev, n: usize) -> Vec<usize> {
    count_per_backend(&m.table, n)
}

/// The table built by Envoy's loop as written (sweeps over the backends in id order, a turn
/// iff `iteration * weight >= target`, permutation probing), with exact integer weights: the
/// reference for the heap-scheduled build.
fn envoy_loop(pool: &Pool, m: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..pool.len()).collect();
    order.sort_by(|&a, &b| pool.get(a).unwrap().id.cmp(&pool.get(b).unwrap().id));
    let max_w = pool.weights().max().unwrap() as u64;
    let mut state: Vec<(u64, u64, u64, u64)> = order
        .iter()
        .map(|&i| {
            let id = pool.get(i).unwrap().id.as_bytes();
            let offset = xxhash_rust::xxh64::xxh64(id, 0) % m as u64;
            let skip = xxhash_rust::xxh64::xxh64(id, 1) % (m as u64 - 1) + 1;
            (offset, skip, 0, 0) // offset, skip, next, target
        })
        .collect();
    let mut table = vec![usize::MAX; m];
    let mut filled = 0;
    let mut iteration = 1u64;
    while filled < m {
        for (k, &i) in order.iter().enumerate() {
            if filled == m {
                break;
            }
            let w = pool.get(i).unwrap().weight as u64;
            let (offset, skip, next, target) = &mut state[k];
            if iteration * w < *target {
                continue;
            }
            *target += max_w;
            let mut c = ((*offset + *skip * *next) % m as u64) as usize;
            while table[c] != usize::MAX {
                *next += 1;
                c = ((*offset + *skip * *next) % m as u64) as usize;
            }
            table[c] = i;
            *next += 1;
            filled += 1;
        }
        iteration += 1;
    }
    table
}

/// Picks by the definition: walk the table from `key % M`, keep distinct accepted backends.
fn reference_walk(m: &Maglev, key: u64, accept: &dyn Fn(usize) -> bool, cap: usize) -> Vec<usize> {
    let start = (key % m.table.len() as u64) as usize;
    walk_from(&m.table, start, accept, cap)
}

// Vectors of Envoy's test/extensions/load_balancing_policies/maglev/maglev_lb_test.cc, whose
// hosts hash their address (or hostname) where ours hash the id.
#[test]
fn envoy_table_vectors() {
    let addrs = [
        "127.0.0.1:90",
        "127.0.0.1:91",
        "127.0.0.1:92",
        "127.0.0.1:93",
        "127.0.0.1:94",
        "127.0.0.1:95",
    ];
    let p = pool_of(&addrs.map(|a| (a, 1)));
    assert_eq!(table_of(&Maglev::new(&p, 7, None)), [2, 4, 0, 1, 5, 0, 3]); // Basic
    let names = ["90", "91", "92", "93", "94", "95"];
    let p = pool_of(&names.map(|a| (a, 1)));
    assert_eq!(table_of(&Maglev::new(&p, 7, None)), [2, 5, 0, 3, 4, 1, 0]); // BasicWithHostName
    let p = pool_of(&[("127.0.0.1:90", 1), ("127.0.0.1:91", 2)]);
    let weighted = [1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1];
    assert_eq!(table_of(&Maglev::new(&p, 17, None)), weighted); // Weighted
    let p = pool_of(&[("127.0.0.1:90", 1), ("127.0.0.1:91", 1)]);
    let equal = [1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1];
    assert_eq!(table_of(&Maglev::new(&p, 17, None)), equal); // LocalityWeightedSameLocalityWeights
                                                             // The primary for key k is table[k % M], as Envoy's chooseHost.
    let mut m = Maglev::new(&p, 17, None);
    for k in 0..51u64 {
        assert_eq!(pick(&mut m, k, &accept_all, 1), [equal[(k % 17) as usize]]);
    }
}

#[test]
fn table_depends_on_ids_not_pool_order() {
    let a = pool_of(&[("x", 3), ("y", 1), ("z", 2), ("w", 5)]);
    let b = pool_of(&[("z", 2), ("w", 5), ("x", 3), ("y", 1)]);
    let (ta, tb) = (table_of(&Maglev::new(&a, 1009, None)), table_of(&Maglev::new(&b, 1009, None)));
    let id = |p: &Pool, i: usize| p.get(i).unwrap().id.clone();
    assert!(ta.iter().zip(&tb).all(|(&i, &j)| id(&a, i) == id(&b, j)));
}

fn assert_full_and_balanced(n: usize) {
    let m = Maglev::new(&equal_pool(n), M, None);
    assert_eq!(m.table.len(), M);
    let counts = entries_per_backend(&m, n); // Panics on an entry that is no backend.
    let (lo, hi) = (M / n, M.div_ceil(n));
    assert!(counts.iter().all(|&c| c == lo || c == hi), "n={n}: {lo}..={hi}");
    let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    assert!(max as f64 / min as f64 <= 1.02, "n={n}: {min}..{max}");
}

#[test]
fn full_and_balanced_for_chosen_sizes() {
    for n in [1, 2, 3, 10, 100, 999, 1000] {
        assert_full_and_balanced(n);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]
    #[test]
    fn full_and_balanced_for_random_sizes(n in 1usize..=1000) {
        assert_full_and_balanced(n);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// The heap-scheduled build is Envoy's loop, for any weights and prime sizes.
    #[test]
    fn build_matches_envoys_loop(
        weights in prop::collection::vec(1u32..=20, 1..12),
        m in prop::sample::select(vec![2usize, 3, 7, 17, 101, 1009]),
    ) {
        let ids: Vec<String> = (0..weights.len()).map(|i| format!("host-{i}")).collect();
        let p = pool_of(&ids.iter().map(String::as_str).zip(weights.iter().copied()).collect::<Vec<_>>());
        prop_assert_eq!(table_of(&Maglev::new(&p, m, None)), envoy_loop(&p, m));
    }
}

#[test]
fn entries_follow_weights() {
    let p = pool_of(&[("a", 1), ("b", 2), ("c", 3), ("d", 4)]);
    let counts = entries_per_backend(&Maglev::new(&p, M, None), 4);
    for (i, &c) in counts.iter().enumerate() {
        let expected = M as f64 * (i + 1) as f64 / 10.0;
        assert!((c as f64 / expected - 1.0).abs() < 0.02, "{i}: {c} vs {expected}");
    }
    // Skewed: one heavy backend among light ones.
    let mut backends = vec![("heavy".to_string(), 100u32)];
    backends.extend((0..100).map(|i| (format!("light{i}"), 1)));
    let p = pool_of(&backends.iter().map(|(id, w)| (id.as_str(), *w)).collect::<Vec<_>>());
    let counts = entries_per_backend(&Maglev::new(&p, M, None), 101);
    assert!((counts[0] as f64 / (M as f64 / 2.0) - 1.0).abs() < 0.02, "{}", counts[0]);
    assert!(counts[1..].iter().all(|&c| (320..=335).contains(&c)), "{counts:?}");
}

#[test]
fn removing_one_backend_moves_few_keys() {
    let mut rng = fastrand::Rng::with_seed(42);
    let keys: Vec<u64> = (0..20_000).map(|_| rng.u64(..)).collect();
    for n in [2usize, 5, 10, 50, 200] {
        let full = equal_pool(n);
        let removed = n / 2;
        let rest = Pool::new(
            full.iter()
                .enumerate()
                .filter(|&(i, _)| i != removed)
                .map(|(_, b)| b.clone())
                .collect(),
        );
        let (mut before, mut after) = (Maglev::new(&full, M, None), Maglev::new(&rest, M, None));
        let moved = keys
            .iter()
            .filter(|&&k| {
                let old = &full.get(pick(&mut before, k, &accept_all, 1)[0]).unwrap().id;
                let new = &rest.get(pick(&mut after, k, &accept_all, 1)[0]).unwrap().id;
                old != new
            })
            .count();
        let share = moved as f64 / keys.len() as f64;
        assert!(share <= 1.0 / n as f64 + 0.01, "n={n}: {share}");
    }
}

/// ids b1..b5, weight 1, M = 65537; keys xxh64("key-0".."key-19"). Any change of the mapping
/// (hash, permutation, turn order, lookup) fails here.
#[test]
fn golden_key_to_backend() {
    let ids = ["b1", "b2", "b3", "b4", "b5"];
    let p = pool_of(&ids.map(|id| (id, 1)));
    let mut m = Maglev::new(&p, M, None);
    let got: Vec<&str> = (0..20)
        .map(|k| ids[pick(&mut m, hash(format!("key-{k}").as_bytes()), &accept_all, 1)[0]])
        .collect();
    let expected: [&str; 20] = GOLDEN;
    assert_eq!(got, expected);
}

/// Also computed independently: a Python port of Envoy's loop over libxxhash's XXH64.
const GOLDEN: [&str; 20] = [
    "b2", "b5", "b5", "b5", "b2", "b4", "b2", "b4", "b1", "b4", //
    "b5", "b4", "b2", "b3", "b4", "b2", "b1", "b4", "b1", "b3",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn picks_are_the_distinct_accepted_backends_in_table_order(
        n in 1usize..40,
        mask in any::<u64>(),
        key in any::<u64>(),
        cap in 1usize..=10,
    ) {
        let mut m = Maglev::new(&equal_pool(n), 1009, None);
        let accept = |i: usize| mask >> (i % 64) & 1 == 1;
        let got = pick(&mut m, key, &accept, cap);
        check_picks_contract(&got, &accept, n, cap)?;
        prop_assert_eq!(got, reference_walk(&m, key, &accept, cap));
    }
}

#[test]
fn nothing_accepted_gives_no_pick_and_one_accepted_gives_it_alone() {
    check_nothing_or_one_accepted(|p, c| Maglev::new(p, M, c));
}

#[test]
fn without_key_picks_follow_round_robin() {
    check_round_robin_without_key(|p, c| Maglev::new(p, 101, c));
}

#[test]
fn empty_pool_or_table_gives_no_pick_or_round_robin() {
    let mut m = Maglev::new(&Pool::default(), M, None);
    assert!(pick(&mut m, 5, &accept_all, 3).is_empty());
    assert!(pick_with(&mut m, None, &accept_all, &mut NoLoad, 3).is_empty());
    let mut zero = Maglev::new(&equal_pool(3), 0, None);
    assert_eq!(pick(&mut zero, 5, &accept_all, 3).len(), 3);
}

#[test]
fn non_prime_table_is_still_full() {
    for size in [1usize, 4, 8, 12, 1000, 65536] {
        let m = Maglev::new(&equal_pool(10), size, None);
        let counts = entries_per_backend(&m, 10);
        assert_eq!(counts.iter().sum::<usize>(), size);
        if size >= 10 {
            assert!(counts.iter().all(|&c| c > 0), "{size}: {counts:?}");
        }
    }
}

#[test]
fn refusing_the_primary_moves_only_its_keys_to_the_next_in_hash_order() {
    check_refusing_the_primary(|p, c| Maglev::new(p, M, c));
}

#[test]
fn bounded_load_moves_the_primary_off_a_hot_backend() {
    check_bounded_load_moves_off_a_hot_backend(|p, c| Maglev::new(p, M, c));
}

#[test]
fn bounded_load_with_every_backend_over_uses_hash_order() {
    let mut m = Maglev::new(&equal_pool(5), M, Some(1.0));
    let key = hash(b"k");
    let order = pick(&mut Maglev::new(&equal_pool(5), M, None), key, &accept_all, 5);
    // total 0: bound = ceil(1 * 1 / n) = 1, and every backend has 1 in flight.
    let mut load = FakeLoad::with_total(&[1; 5], 0);
    assert_eq!(pick_with(&mut m, Some(key), &accept_all, &mut load, 5), order);
    assert_eq!(pick_with(&mut m, Some(key), &accept_all, &mut load, 1), [order[0]]);
    // The bound counts only accepted backends, and the fallback is the first accepted.
    let accept = |i: usize| i != order[0];
    assert_eq!(pick_with(&mut m, Some(key), &accept, &mut load, 1), [order[1]]);
}

#[test]
fn load_is_read_only_with_a_balance_factor() {
    check_load_read_only_with_a_balance_factor(|p, c| Maglev::new(p, 7, c));
}

/// `LoadBound::of` through `c`: `ceil(c * (total + 1) * weight / total_weight)`.
fn bound(c: f64, total: u64, weight: u32, total_weight: u64) -> u64 {
    LoadBound::new(balance_milli(c), total, total_weight).of(weight)
}

#[test]
fn admission_bound_is_exact() {
    // ceil(1.1 * 10 / 11) = 1 exactly (floating point gives 1.0000000000000002).
    assert_eq!(bound(1.1, 9, 1, 11), 1);
    assert_eq!(bound(1.25, 10, 1, 5), 3);
    assert_eq!(bound(2.0, 99, 1, 4), 50);
    assert_eq!(bound(1.0, 0, 1, 1000), 1);
    // Weighted: ceil(1.25 * 11 * 4 / 8) = ceil(6.875) = 7 and ceil(1.25 * 11 / 8) = 2.
    assert_eq!(bound(1.25, 10, 4, 8), 7);
    assert_eq!(bound(1.25, 10, 1, 8), 2);
    assert_eq!(bound(1.1, 9, 3, 33), 1); // 1.1 * 10 * 3 / 33 = 1 exactly.
    assert_eq!(bound(1.0, 0, 0, 8), 0); // No weight, no share (not reached: weight 0 has no slot).
    assert_eq!(bound(1.0, 5, 1, 0), 6); // A zero total weight counts as 1.
                                        // Below 1, NaN: as 1. Infinite: no bound.
    assert_eq!(balance_milli(0.5), 1000);
    assert_eq!(balance_milli(f64::NAN), 1000);
    assert_eq!(bound(f64::INFINITY, u64::MAX, 1, 1), u64::MAX);
    // Extremes do not overflow: the u128 product saturates only where the bound is past u64.
    let max_w = u64::from(u32::MAX) * MAX_BACKENDS as u64;
    assert_eq!(bound(f64::INFINITY, u64::MAX, u32::MAX, max_w), u64::MAX);
    assert_eq!(u128::from(bound(100.0, u64::MAX, u32::MAX, max_w)), (1u128 << 64).div_ceil(100));
    assert_eq!(bound(1.0, u64::MAX - 1, u32::MAX, u64::from(u32::MAX)), u64::MAX);
    assert_eq!(bound(1.0, u64::MAX - 1, 1, 2), 1 << 63);
    assert_eq!(bound(1.0, u64::MAX - 1, 1, max_w), (1u64 << 63).div_ceil(max_w / 2));
    assert_eq!(bound(1.0, 0, 1, max_w), 1);
}

proptest! {
    /// Equal weights give the unweighted bound of before, `ceil(c * (T + 1) / n)`, whatever the
    /// common weight.
    #[test]
    fn equal_weights_give_the_unweighted_bound(
        milli in 1000u64..=100_000,
        total in any::<u64>(),
        n in 1u64..=10_000,
        w in 1u32..,
    ) {
        let num = u128::from(milli) * (u128::from(total) + 1);
        let unweighted = u64::try_from(num.div_ceil(1000 * u128::from(n))).unwrap_or(u64::MAX);
        prop_assert_eq!(LoadBound::new(milli, total, n * u64::from(w)).of(w), unweighted);
    }

    /// The weighted bound is the exact ceiling, checked against an f64-free big computation.
    #[test]
    fn weighted_bound_is_the_exact_ceiling(
        milli in 1000u64..=100_000,
        total in 0u64..1 << 40,
        w in 1u32..,
        others in 0u64..1 << 45,
    ) {
        let total_weight = u64::from(w) + others;
        let num = u128::from(milli) * (u128::from(total) + 1) * u128::from(w);
        let den = 1000 * u128::from(total_weight);
        let b = u128::from(LoadBound::new(milli, total, total_weight).of(w));
        // b is the least integer with b * den >= num.
        prop_assert!(b * den >= num && (b == 0 || (b - 1) * den < num));
    }
}

/// Pool `heavy` (weight 4) and `l0..l3` (weight 1): W = 8.
fn heavy_pool() -> Pool {
    pool_of(&[("heavy", 4), ("l0", 1), ("l1", 1), ("l2", 1), ("l3", 1)])
}

/// A key whose hash order (without loads) starts with `first`, and that order.
fn key_starting_at(b: &mut dyn Balancer, first: usize, n: usize) -> (u64, Vec<usize>) {
    (0u64..)
        .map(|k| hash(&k.to_le_bytes()))
        .map(|key| (key, pick(b, key, &accept_all, n)))
        .find(|(_, order)| order[0] == first)
        .unwrap()
}

#[test]
fn bounded_load_scales_each_bound_by_weight() {
    let p = heavy_pool();
    let mut m = Maglev::new(&p, M, Some(1.25));
    // T = 10: the heavy backend's bound is ceil(1.25 * 11 * 4 / 8) = 7, a light one's
    // ceil(1.25 * 11 / 8) = 2; unweighted, both were ceil(1.25 * 11 / 5) = 3.
    let (key, order) = key_starting_at(&mut Maglev::new(&p, M, None), 0, 5);
    let mut load = FakeLoad::with_total(&[0; 5], 10);
    load.in_flight[0] = 6;
    assert_eq!(pick_with(&mut m, Some(key), &accept_all, &mut load, 1), [0]);
    assert_eq!((load.reads.as_slice(), load.total_reads), (&[0][..], 1));
    load.in_flight[0] = 7;
    load.reads.clear();
    assert_eq!(pick_with(&mut m, Some(key), &accept_all, &mut load, 1), [order[1]]);
    assert_eq!(load.reads, [0, order[1]]);

    // A light primary at 2 in flight is over its bound of 2 and yields to the next.
    let (key, order) = key_starting_at(&mut Maglev::new(&p, M, None), 3, 5);
    let mut load = FakeLoad::with_total(&[0; 5], 10);
    load.in_flight[3] = 1;
    assert_eq!(pick_with(&mut m, Some(key), &accept_all, &mut load, 1), [3]);
    load.in_flight[3] = 2;
    assert_eq!(pick_with(&mut m, Some(key), &accept_all, &mut load, 5)[..4], order[1..]);
    // W counts only accepted backends: without the heavy one, W = 4 and the light bound is
    // ceil(1.25 * 11 / 4) = 4, so 3 in flight is under it.
    load.in_flight[3] = 3;
    assert_eq!(pick_with(&mut m, Some(key), &|i| i != 0, &mut load, 1), [3]);
    assert_eq!(pick_with(&mut m, Some(key), &accept_all, &mut load, 1), [order[1]]);
}

/// Requests that never finish, keyed at random, each counted on its primary: every backend
/// stays within its weighted bound, `ceil(1.25 * T * w / W)` at the end, and the heavy backend
/// (half the weight, about half the keys) holds far more than the unweighted bound
/// `ceil(1.25 * T / 5)` = 200 would have let it.
#[test]
fn bounded_load_lets_a_heavy_backend_hold_its_share() {
    let p = heavy_pool();
    let mut m = Maglev::new(&p, M, Some(1.25));
    let mut load = FakeLoad::new(&[0; 5]); // Total: the sum of the counts.
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..800 {
        let b = pick_with(&mut m, Some(rng.u64(..)), &accept_all, &mut load, 1)[0];
        load.in_flight[b] += 1;
    }
    let weights = [4u64, 1, 1, 1, 1];
    for (b, (&l, &w)) in load.in_flight.iter().zip(&weights).enumerate() {
        assert!(l <= (1250 * 800 * w).div_ceil(1000 * 8), "{b}: {:?}", load.in_flight);
    }
    assert!(load.in_flight[0] > 300, "{:?}", load.in_flight);
}

/// Equal weights, any common weight: the same picks and reads as weight 1.
#[test]
fn bounded_load_with_equal_weights_is_unchanged() {
    let ones = equal_pool(5);
    let sevens = Pool::new(ones.iter().map(|b| Backend { weight: 7, ..b.clone() }).collect());
    let mut m1 = Maglev::new(&ones, M, Some(1.25));
    let mut m7 = Maglev::new(&sevens, M, Some(1.25));
    let mut rng = fastrand::Rng::with_seed(5);
    for _ in 0..500 {
        let in_flight: Vec<u64> = (0..5).map(|_| rng.u64(0..6)).collect();
        let total = in_flight.iter().sum::<u64>() + rng.u64(0..4);
        let key = rng.u64(..);
        let mut l1 = FakeLoad::with_total(&in_flight, total);
        let mut l7 = FakeLoad::with_total(&in_flight, total);
        let got = pick_with(&mut m1, Some(key), &accept_all, &mut l1, 3);
        assert_eq!(got, pick_with(&mut m7, Some(key), &accept_all, &mut l7, 3));
        assert_eq!(l1.reads, l7.reads);
        // The unweighted rule of before, ceil(1.25 * (T + 1) / 5), picks the same primary.
        let bound = (1250 * (total + 1)).div_ceil(5000);
        let order = pick(&mut m1, key, &accept_all, 5);
        let primary = order.iter().find(|&&b| l1.in_flight[b] < bound).unwrap_or(&order[0]);
        assert_eq!(got[0], *primary);
    }
}

#[test]
fn a_backend_of_weight_zero_gets_no_slot() {
    let m = Maglev::new(&pool_of(&[("a", 1), ("b", 0), ("c", 2)]), 101, None);
    let per = entries_per_backend(&m, 3);
    assert_eq!(per[1], 0, "{per:?}");
    assert_eq!(per[0] + per[2], 101);
}

/// One walk over `order` with capacity `cap`: the picks, the `accept` calls and how many
/// entries of `order` were consumed.
fn counted_walk(
    walk: &mut HashWalk,
    order: &[usize],
    accept: &dyn Fn(usize) -> bool,
    cap: usize,
) -> (Vec<usize>, usize, usize) {
    let (calls, consumed) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let counting = |i: usize| {
        calls.set(calls.get() + 1);
        accept(i)
    };
    let mut rng = fastrand::Rng::with_seed(1);
    let mut ctx = PickCtx {
        accept: &counting,
        rng: &mut rng,
        key: Some(0),
        load: &mut NoLoad,
        now_ns: 0,
        reported: None,
    };
    let mut out = Picks::with_capacity(cap);
    walk.walk(
        &mut ctx,
        &mut out,
        order.iter().inspect(|_| consumed.set(consumed.get() + 1)).copied(),
    );
    let picks = out.as_slice().iter().map(|&i| i as usize).collect();
    (picks, calls.get(), consumed.get())
}

/// A short walk costs one `accept` per backend it meets and no count of the accepted ones.
#[test]
fn a_short_walk_counts_nothing() {
    let order: Vec<usize> = (0..400).map(|k| k % 4).collect();
    let mut walk = HashWalk::new(&equal_pool(4), order.iter().copied(), None);
    assert_eq!(counted_walk(&mut walk, &order, &accept_all, 2), (vec![0, 1], 2, 3));
}

/// The walk stops once every accepted backend was met, however far away the others are.
#[test]
fn a_walk_stops_once_every_accepted_backend_was_met() {
    // Backends 0 and 1 alternate for 1000 slots; 2 and 3 come last.
    let mut order: Vec<usize> = (0..1_000).map(|k| k % 2).collect();
    order.extend([2, 3]);
    let mut walk = HashWalk::new(&equal_pool(4), order.iter().copied(), None);
    let (picks, calls, consumed) = counted_walk(&mut walk, &order, &|i| i < 2, 10);
    assert_eq!(picks, [0, 1]);
    assert!(consumed <= 5 && calls <= 2 + 4, "{consumed} slots, {calls} accept calls");
}

/// Starting a walk forgets the last one by moving the epoch, except when it wraps (every 2^32
/// walks): then the marks are cleared.
#[test]
fn walk_epochs_clear_the_marks_only_when_they_wrap() {
    let mut walk = HashWalk::new(&equal_pool(2), [0, 1].into_iter(), None);
    assert_eq!(walk.next_epoch(), 1);
    walk.met[1] = 1;
    assert_eq!(walk.next_epoch(), 2);
    assert_eq!(walk.met, [0, 1], "marks untouched");
    walk.epoch = u32::MAX;
    assert_eq!(walk.next_epoch(), 1);
    assert_eq!(walk.met, [0, 0], "wrapped: cleared");
}
