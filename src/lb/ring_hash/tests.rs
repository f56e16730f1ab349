//! Native tests of the ring hash: Envoy's own ring vectors, ring sizes by Envoy's formula,
//! spread of the key space, keys moved by a removal, pinned key -> backend vectors, the pick
//! contract (distinct, accepted, ring-order retries, round robin without a key) and bounded
//! loads against a fake load view.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::backend::Backend;
use crate::lb::round_robin::SmoothWeighted;
use crate::lb::{LoadView, NoLoad};
use proptest::prelude::*;

const MAX: usize = 8 << 20; // Envoy's default maximum_ring_size.

fn pool_of(backends: &[(&str, u32)]) -> Pool {
    Pool::new(
        backends
            .iter()
            .enumerate()
            .map(|(i, &(id, w))| {
                let addr = format!("10.0.{}.{}:8080", i / 256, i % 256).parse().unwrap();
                Backend::new(id.to_string(), addr, w)
            })
            .collect(),
    )
}

/// `n` backends `b0..b{n-1}` of weight 1.
fn equal_pool(n: usize) -> Pool {
    let ids: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    pool_of(&ids.iter().map(|id| (id.as_str(), 1)).collect::<Vec<_>>())
}

fn points_per_backend(r: &RingHash, n: usize) -> Vec<usize> {
    let mut counts = vec![0; n];
    for &b in &r.owners {
        counts[usize::from(b)] += 1;
    }
    counts
}

/// Exact share of the 2^64 key space each backend owns: point k owns (hash[k-1], hash[k]],
/// the first point also everything past the last one.
fn key_shares(r: &RingHash, n: usize) -> Vec<f64> {
    let mut owned = vec![0u128; n];
    let last = u128::from(*r.hashes.last().unwrap());
    for (k, (&h, &b)) in r.hashes.iter().zip(&r.owners).enumerate() {
        let arc = match k {
            0 => u128::from(h) + 1 + (u128::from(u64::MAX) - last),
            _ => u128::from(h) - u128::from(r.hashes[k - 1]),
        };
        owned[usize::from(b)] += arc;
    }
    owned.iter().map(|&o| o as f64 / 2f64.powi(64)).collect()
}

/// In-flight counts set by the test; records which backends were read.
#[derive(Default)]
struct FakeLoad {
    in_flight: Vec<u64>,
    total: u64,
    reads: Vec<usize>,
    total_reads: usize,
}

impl LoadView for FakeLoad {
    fn in_flight(&mut self, index: usize) -> u64 {
        self.reads.push(index);
        self.in_flight.get(index).copied().unwrap_or(0)
    }
    fn total_in_flight(&mut self) -> u64 {
        self.total_reads += 1;
        self.total
    }
}

fn pick_with(
    b: &mut dyn Balancer,
    key: Option<u64>,
    accept: &dyn Fn(usize) -> bool,
    load: &mut dyn LoadView,
    cap: usize,
) -> Vec<usize> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut ctx = PickCtx { accept, rng: &mut rng, key, load, now_ns: 0 };
    let mut out = Picks::with_capacity(cap);
    b.pick(&mut ctx, &mut out);
    out.as_slice().iter().map(|&i| i as usize).collect()
}

fn pick(b: &mut dyn Balancer, key: u64, accept: &dyn Fn(usize) -> bool, cap: usize) -> Vec<usize> {
    pick_with(b, Some(key), accept, &mut NoLoad, cap)
}

fn all(_: usize) -> bool {
    true
}

/// Picks by the definition: from the first point with hash >= key (wrapping), keep the
/// distinct accepted backends in ring order.
fn reference_walk(
    r: &RingHash,
    key: u64,
    accept: &dyn Fn(usize) -> bool,
    cap: usize,
) -> Vec<usize> {
    let len = r.hashes.len();
    let start = (0..len).find(|&k| r.hashes[k] >= key).unwrap_or(0);
    let mut out = Vec::new();
    for k in 0..len {
        let b = usize::from(r.owners[(start + k) % len]);
        if out.len() < cap && accept(b) && !out.contains(&b) {
            out.push(b);
        }
    }
    out
}

const PORTS: [&str; 6] = [
    "127.0.0.1:90",
    "127.0.0.1:91",
    "127.0.0.1:92",
    "127.0.0.1:93",
    "127.0.0.1:94",
    "127.0.0.1:95",
];

// Vectors of Envoy's test/extensions/load_balancing_policies/ring_hash/ring_hash_lb_test.cc,
// whose hosts hash their address (or hostname) where ours hash the id.
#[test]
fn envoy_ring_vectors() {
    let mut r = RingHash::new(&pool_of(&PORTS.map(|a| (a, 1))), 12, MAX, None); // Basic
    let expected: [(u64, u16); 12] = [
        (833437586790550860, 4),
        (928266305478181108, 2),
        (1033482794131418490, 0),
        (3551244743356806947, 5),
        (3851675632748031481, 3),
        (5583722120771150861, 1),
        (6311230543546372928, 1),
        (7700377290971790572, 3),
        (13144177310400110813, 5),
        (13444792449719432967, 2),
        (15516499411664133160, 4),
        (16117243373044804889, 0),
    ];
    assert_eq!(r.hashes, expected.map(|(h, _)| h));
    assert_eq!(r.owners, expected.map(|(_, b)| b));
    assert_eq!(pick(&mut r, 0, &all, 1), [4]);
    assert_eq!(pick(&mut r, u64::MAX, &all, 1), [4]); // Wraps to the first point.
    assert_eq!(pick(&mut r, 3551244743356806947, &all, 1), [5]);
    assert_eq!(pick(&mut r, 3551244743356806948, &all, 1), [3]);
    // BasicWithRetryHostPredicate: the next hosts on the ring from key 0.
    assert_eq!(pick(&mut r, 0, &all, 6), [4, 2, 0, 5, 3, 1]);

    let names = ["90", "91", "92", "93", "94", "95"];
    let mut r = RingHash::new(&pool_of(&names.map(|a| (a, 1))), 12, MAX, None); // BasicWithHostname
    assert_eq!(r.owners, [5, 5, 3, 4, 3, 2, 0, 2, 1, 0, 1, 4]);
    assert_eq!(r.hashes[0], 1975508444536362413);
    assert_eq!(r.hashes[11], 15364271037087512980);
    assert_eq!(pick(&mut r, 7225015537174310577, &all, 1), [2]);
    assert_eq!(pick(&mut r, 6803900775736438537, &all, 1), [3]);

    let r = RingHash::new(&pool_of(&[("127.0.0.1:80", 1), ("127.0.0.1:81", 1)]), 3, MAX, None);
    let uneven =
        [5454692015285649509, 7859399908942313493, 13838424394637650569, 16064866803292627174];
    assert_eq!(r.hashes, uneven); // UnevenHosts: 2 points each.
    assert_eq!(r.owners, [0, 1, 0, 1]);

    let tiny = pool_of(&[("127.0.0.1:90", 1), ("127.0.0.1:91", 2), ("127.0.0.1:92", 3)]);
    let mut r = RingHash::new(&tiny, 6, 6, None); // HostWeightedTinyRing
    for (key, host) in [
        (928266305478181108, 2),
        (4443673547860492590, 2),
        (5583722120771150861, 1),
        (6311230543546372928, 1),
        (13444792449719432967, 2),
        (16117243373044804889, 0),
    ] {
        assert_eq!(pick(&mut r, key, &all, 1), [host]);
    }
}

#[test]
fn ring_sizes_follow_envoys_formula() {
    let counts = |weights: &[u32], min: usize, max: usize| {
        let ids: Vec<String> = (0..weights.len()).map(|i| format!("h{i}")).collect();
        let p = pool_of(
            &ids.iter().map(String::as_str).zip(weights.iter().copied()).collect::<Vec<_>>(),
        );
        let r = RingHash::new(&p, min, max, None);
        let counts = points_per_backend(&r, weights.len());
        assert_eq!(counts, point_counts(&p, min, max));
        counts
    };
    // Equal weights: ceil(min / N) each.
    assert_eq!(counts(&[1], 1024, MAX), [1024]);
    assert_eq!(counts(&[1, 1, 1], 1024, MAX), [342; 3]);
    assert_eq!(counts(&[7; 10], 1024, MAX), [103; 10]);
    // Unequal: the lightest gets ceil(min_nw * min), the others in proportion.
    assert_eq!(counts(&[1, 2, 3], 1024, MAX), [171, 342, 513]);
    assert_eq!(counts(&[1, 10_000], 1024, MAX), [1, 10_000]);
    assert_eq!(counts(&[1, 2, 3], 6, 6), [1, 2, 3]);
    // The maximum caps the scale.
    assert_eq!(counts(&[1, 2, 3], 1024, 600), [100, 200, 300]);
    assert_eq!(counts(&[1; 4], 1024, 100), [25; 4]);
    assert_eq!(counts(&[1; 3], 1024, 100), [33; 3]); // round(33.3): 99 points.
    assert_eq!(counts(&[1; 3], 1024, 101), [34; 3]); // round(33.7): 102 points, N/2 over.
                                                     // At least one point each, even past the maximum; none for weight 0.
    assert_eq!(counts(&[1; 10], 1024, 4), [1; 10]);
    assert_eq!(counts(&[1; 3], 0, MAX), [1; 3]);
    assert_eq!(counts(&[0, 2, 0, 1], 1024, MAX), [0, 684, 0, 342]);
}

/// With P points per backend a backend's share of the key space has a relative standard
/// deviation of about 1/sqrt(P) (ketama's arcs are spacings of uniform points): 1/32 for
/// P = 1024. The bound, 15% of the fair share, is about 5 sigma: a sound ring passes it, a ring
/// that gives a backend the wrong number of points or clusters its hashes does not.
#[test]
fn key_space_is_spread_by_weight() {
    let r = RingHash::new(&equal_pool(10), 10 * 1024, MAX, None);
    assert_eq!(points_per_backend(&r, 10), [1024; 10]);
    for (i, share) in key_shares(&r, 10).into_iter().enumerate() {
        assert!((share * 10.0 - 1.0).abs() < 0.15, "{i}: {share}");
    }
    let p = pool_of(&[("x", 1), ("y", 2), ("z", 3)]);
    let r = RingHash::new(&p, 6 * 1024, MAX, None);
    assert_eq!(points_per_backend(&r, 3), [1024, 2048, 3072]);
    for (i, share) in key_shares(&r, 3).into_iter().enumerate() {
        let fair = (i + 1) as f64 / 6.0;
        assert!((share / fair - 1.0).abs() < 0.15, "{i}: {share} vs {fair}");
    }
}

fn without(pool: &Pool, removed: usize) -> Pool {
    Pool::new(
        pool.iter().enumerate().filter(|&(i, _)| i != removed).map(|(_, b)| b.clone()).collect(),
    )
}

fn random_keys() -> Vec<u64> {
    let mut rng = fastrand::Rng::with_seed(42);
    (0..20_000).map(|_| rng.u64(..)).collect()
}

/// When the other backends keep their point counts (100 equal backends, min_ring_size 1001:
/// ceil(1001 / 100) = ceil(1001 / 99) = 11 points each), the smaller ring is the old one minus
/// the removed backend's points: every key that moved was the removed backend's, and they are
/// its share of the key space, within 1/N + 1% (measured: about 1%).
#[test]
fn removal_moves_only_the_removed_backends_keys() {
    let full = equal_pool(100);
    let removed = 37;
    let rest = without(&full, removed);
    let mut before = RingHash::new(&full, 1001, MAX, None);
    let mut after = RingHash::new(&rest, 1001, MAX, None);
    assert!(points_per_backend(&before, 100).iter().all(|&c| c == 11));
    assert!(points_per_backend(&after, 99).iter().all(|&c| c == 11));
    let mut moved = 0;
    for key in random_keys() {
        let old = &full.get(pick(&mut before, key, &all, 1)[0]).unwrap().id;
        let new = &rest.get(pick(&mut after, key, &all, 1)[0]).unwrap().id;
        if old != new {
            assert_eq!(old, &full.get(removed).unwrap().id);
            moved += 1;
        }
    }
    let share = moved as f64 / 20_000.0;
    assert!(share > 0.0 && share <= 0.01 + 0.01, "{share}");
}

/// In general Envoy's formula gives the others more points when one leaves (10 -> 9 equal
/// backends at 1024: 103 -> 114 points each); a key then moves only if its backend left or a
/// newly added point now takes it. Measured here: about 10% + 10% of the keys.
#[test]
fn removal_otherwise_moves_keys_only_to_added_points() {
    let full = equal_pool(10);
    let rest = without(&full, 4);
    let mut before = RingHash::new(&full, 1024, MAX, None);
    let mut after = RingHash::new(&rest, 1024, MAX, None);
    let (mut moved, mut to_added) = (0, 0);
    for key in random_keys() {
        let old = &full.get(pick(&mut before, key, &all, 1)[0]).unwrap().id;
        let new = &rest.get(pick(&mut after, key, &all, 1)[0]).unwrap().id;
        let k = after.hashes.partition_point(|&h| h < key) % after.hashes.len();
        let added = before.hashes.binary_search(&after.hashes[k]).is_err();
        if old != new {
            moved += 1;
            assert!(old == &full.get(4).unwrap().id || added, "{key}");
            to_added += usize::from(added);
        }
    }
    assert!(to_added > 0 && moved < 20_000 * 25 / 100, "{moved} {to_added}");
}

/// ids b1..b5, weight 1, min_ring_size 1024 (205 points each); keys xxh64("key-0".."key-19").
/// Also computed independently: a Python ring over libxxhash's XXH64.
#[test]
fn golden_key_to_backend() {
    let ids = ["b1", "b2", "b3", "b4", "b5"];
    let mut r = RingHash::new(&pool_of(&ids.map(|id| (id, 1))), 1024, MAX, None);
    assert_eq!(r.hashes.len(), 1025);
    let got: Vec<&str> = (0..20)
        .map(|k| ids[pick(&mut r, hash(format!("key-{k}").as_bytes()), &all, 1)[0]])
        .collect();
    let expected = [
        "b3", "b2", "b1", "b4", "b4", "b5", "b1", "b4", "b5", "b3", //
        "b2", "b4", "b3", "b4", "b5", "b3", "b4", "b1", "b3", "b1",
    ];
    assert_eq!(got, expected);
}

#[test]
fn ring_depends_on_ids_not_pool_order() {
    let a = pool_of(&[("x", 3), ("y", 1), ("z", 2)]);
    let b = pool_of(&[("z", 2), ("x", 3), ("y", 1)]);
    let (ra, rb) = (RingHash::new(&a, 1024, MAX, None), RingHash::new(&b, 1024, MAX, None));
    assert_eq!(ra.hashes, rb.hashes);
    let id = |p: &Pool, i: &u16| p.get(usize::from(*i)).unwrap().id.clone();
    assert!(ra.owners.iter().zip(&rb.owners).all(|(i, j)| id(&a, i) == id(&b, j)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn picks_are_the_distinct_accepted_backends_in_ring_order(
        n in 1usize..40,
        mask in any::<u64>(),
        key in any::<u64>(),
        cap in 1usize..=10,
    ) {
        let mut r = RingHash::new(&equal_pool(n), 256, MAX, None);
        let accept = |i: usize| mask >> (i % 64) & 1 == 1;
        let got = pick(&mut r, key, &accept, cap);
        prop_assert!(got.iter().all(|&i| accept(i)));
        let distinct: std::collections::HashSet<_> = got.iter().collect();
        prop_assert_eq!(distinct.len(), got.len());
        prop_assert_eq!(got.len(), cap.min((0..n).filter(|&i| accept(i)).count()));
        prop_assert_eq!(got, reference_walk(&r, key, &accept, cap));
    }
}

#[test]
fn nothing_accepted_gives_no_pick_and_one_accepted_gives_it_alone() {
    let mut r = RingHash::new(&equal_pool(50), 1024, MAX, None);
    for key in [0, 1, u64::MAX, 12345] {
        assert_eq!(pick(&mut r, key, &|_| false, 3), Vec::<usize>::new());
        assert_eq!(pick(&mut r, key, &|i| i == 17, 3), [17]);
    }
}

#[test]
fn without_key_picks_follow_round_robin() {
    let p = pool_of(&[("a", 5), ("b", 1), ("c", 1)]);
    let mut r = RingHash::new(&p, 64, MAX, None);
    let mut rr = SmoothWeighted::new(p.weights());
    for _ in 0..21 {
        let got = pick_with(&mut r, None, &all, &mut NoLoad, 3);
        assert_eq!(got, pick_with(&mut rr, None, &all, &mut NoLoad, 3));
    }
    let primaries: Vec<usize> =
        (0..7).map(|_| pick_with(&mut r, None, &all, &mut NoLoad, 1)[0]).collect();
    assert_eq!(primaries, [0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn empty_pool_gives_no_pick() {
    let mut r = RingHash::new(&Pool::default(), 1024, MAX, None);
    assert!(r.hashes.is_empty());
    assert!(pick(&mut r, 5, &all, 3).is_empty());
    assert!(pick_with(&mut r, None, &all, &mut NoLoad, 3).is_empty());
}

#[test]
fn refusing_the_primary_moves_only_its_keys_to_the_next_on_the_ring() {
    let mut r = RingHash::new(&equal_pool(8), 1024, MAX, None);
    let refused = 3;
    let mut moved = 0;
    for k in 0..5000u64 {
        let key = hash(&k.to_le_bytes());
        let before = pick(&mut r, key, &all, 2);
        let after = pick(&mut r, key, &|i| i != refused, 1);
        if before[0] == refused {
            assert_eq!(after[0], before[1]);
            moved += 1;
        } else {
            assert_eq!(after[0], before[0]);
        }
    }
    assert!(moved > 400 && moved < 850, "{moved}");
}

#[test]
fn bounded_load_moves_the_primary_off_a_hot_backend() {
    let mut r = RingHash::new(&equal_pool(5), 1024, MAX, Some(1.25));
    let key = hash(b"hot-key");
    let order = pick(&mut RingHash::new(&equal_pool(5), 1024, MAX, None), key, &all, 5);
    // bound = ceil(1.25 * (10 + 1) / 5) = 3: the hot backend (10 in flight) is over it.
    let mut load = FakeLoad { in_flight: vec![0; 5], total: 10, ..Default::default() };
    load.in_flight[order[0]] = 10;
    let got = pick_with(&mut r, Some(key), &all, &mut load, 5);
    assert_eq!(got, [order[1], order[2], order[3], order[4], order[0]]);
    assert_eq!(load.total_reads, 1);
    load.in_flight[order[0]] = 2;
    load.reads.clear();
    assert_eq!(pick_with(&mut r, Some(key), &all, &mut load, 1), [order[0]]);
    assert_eq!(load.reads, [order[0]]);
    load.in_flight[order[0]] = 3;
    load.reads.clear();
    assert_eq!(pick_with(&mut r, Some(key), &all, &mut load, 1), [order[1]]);
    assert_eq!(load.reads, [order[0], order[1]]);
}

#[test]
fn bounded_load_with_every_backend_over_uses_ring_order() {
    let mut r = RingHash::new(&equal_pool(5), 1024, MAX, Some(1.0));
    let key = hash(b"k");
    let order = pick(&mut RingHash::new(&equal_pool(5), 1024, MAX, None), key, &all, 5);
    let mut load = FakeLoad { in_flight: vec![1; 5], total: 0, ..Default::default() };
    assert_eq!(pick_with(&mut r, Some(key), &all, &mut load, 5), order);
    let accept = |i: usize| i != order[0];
    assert_eq!(pick_with(&mut r, Some(key), &accept, &mut load, 1), [order[1]]);
}

#[test]
fn load_is_read_only_with_a_balance_factor() {
    assert!(!RingHash::new(&equal_pool(3), 16, MAX, None).uses_load());
    assert!(RingHash::new(&equal_pool(3), 16, MAX, Some(1.5)).uses_load());
    let mut r = RingHash::new(&equal_pool(3), 16, MAX, None);
    let mut load = FakeLoad { in_flight: vec![100; 3], total: 0, ..Default::default() };
    assert_eq!(pick_with(&mut r, Some(4), &all, &mut load, 3).len(), 3);
    assert_eq!((load.reads.len(), load.total_reads), (0, 0));
}
