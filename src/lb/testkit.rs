//! Fixtures shared by the native tests of the balancers: a fake [`LoadView`], pool builders and
//! pick helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::backend::{Backend, Pool};
use crate::hash_key::hash;
use crate::lb::round_robin::SmoothWeighted;
use crate::lb::{Balancer, LoadView, NoLoad, PickCtx, Picks};
use proptest::prelude::*;

/// A [`LoadView`] over in-flight counts set by the test, recording every read.
#[derive(Default)]
pub(crate) struct FakeLoad {
    /// In flight per backend; reading a backend past the end panics.
    pub(crate) in_flight: Vec<u64>,
    /// What `total_in_flight` returns; `None`: the sum of `in_flight`.
    pub(crate) total: Option<u64>,
    /// Every per-backend read, in order.
    pub(crate) reads: Vec<usize>,
    /// How many times the total was read.
    pub(crate) total_reads: usize,
}

impl FakeLoad {
    /// Counts `in_flight`, whose total is their sum.
    pub(crate) fn new(in_flight: &[u64]) -> Self {
        FakeLoad { in_flight: in_flight.to_vec(), ..Default::default() }
    }

    /// Counts `in_flight` with the total set to `total` (not their sum).
    pub(crate) fn with_total(in_flight: &[u64], total: u64) -> Self {
        FakeLoad { total: Some(total), ..FakeLoad::new(in_flight) }
    }
}

impl LoadView for FakeLoad {
    fn in_flight(&mut self, index: usize) -> u64 {
        self.reads.push(index);
        self.in_flight[index]
    }
    fn total_in_flight(&mut self) -> u64 {
        self.total_reads += 1;
        self.total.unwrap_or_else(|| self.in_flight.iter().sum())
    }
}

/// nginx smooth weighted round robin over the whole pool, written from the algorithm's
/// description (`ngx_http_upstream_get_peer`): the reference the round robin's turns (and its
/// retry hosts' scores) are checked against. O(N) per turn.
pub(crate) struct Nginx {
    weight: Vec<i64>,
    current: Vec<i64>,
}

impl Nginx {
    pub(crate) fn new(weights: &[u32]) -> Self {
        Nginx {
            weight: weights.iter().map(|&w| i64::from(w)).collect(),
            current: vec![0; weights.len()],
        }
    }

    /// The next turn: every score grows by its weight, the highest (lowest index among equal)
    /// wins and loses the sum of weights. `None` for an empty pool.
    pub(crate) fn turn(&mut self) -> Option<usize> {
        let total: i64 = self.weight.iter().sum();
        for (c, w) in self.current.iter_mut().zip(&self.weight) {
            *c += w;
        }
        let best =
            (0..self.current.len()).max_by_key(|&i| (self.current[i], std::cmp::Reverse(i)))?;
        self.current[best] -= total;
        Some(best)
    }

    /// Backend `i`'s score at the next turn (the order of the retry hosts).
    pub(crate) fn score(&self, i: usize) -> i64 {
        self.current[i] + self.weight[i]
    }
}

/// Backends `(id, weight)` in order; backend `i` at `10.0.{i / 256}.{i % 256}:8080`.
pub(crate) fn pool_of(backends: &[(&str, u32)]) -> Pool {
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

/// Backends `b0..` with `weights`.
pub(crate) fn pool(weights: &[u32]) -> Pool {
    let ids: Vec<String> = (0..weights.len()).map(|i| format!("b{i}")).collect();
    pool_of(&ids.iter().map(String::as_str).zip(weights.iter().copied()).collect::<Vec<_>>())
}

/// `n` backends `b0..b{n-1}` of weight 1.
pub(crate) fn equal_pool(n: usize) -> Pool {
    pool(&vec![1; n])
}

pub(crate) fn accept_all(_: usize) -> bool {
    true
}

pub(crate) fn is_distinct(v: &[usize]) -> bool {
    v.iter().enumerate().all(|(k, x)| !v[..k].contains(x))
}

/// One pick of capacity `cap` with `ctx`, as a vector of indexes.
pub(crate) fn pick_in(b: &mut dyn Balancer, ctx: &mut PickCtx<'_>, cap: usize) -> Vec<usize> {
    let mut out = Picks::with_capacity(cap);
    b.pick(ctx, &mut out);
    out.as_slice().iter().map(|&i| i as usize).collect()
}

/// One pick of capacity `cap` for `key` against `load`, at time 0 with an rng of seed 7.
pub(crate) fn pick_with(
    b: &mut dyn Balancer,
    key: Option<u64>,
    accept: &dyn Fn(usize) -> bool,
    load: &mut dyn LoadView,
    cap: usize,
) -> Vec<usize> {
    let mut rng = fastrand::Rng::with_seed(7);
    pick_in(b, &mut PickCtx { accept, rng: &mut rng, key, load, now_ns: 0, reported: None }, cap)
}

/// [`pick_with`] for `key`, reading no load.
pub(crate) fn pick(
    b: &mut dyn Balancer,
    key: u64,
    accept: &dyn Fn(usize) -> bool,
    cap: usize,
) -> Vec<usize> {
    pick_with(b, Some(key), accept, &mut NoLoad, cap)
}

/// How many of `owners` (a table or ring of backend indexes) each of `n` backends holds.
pub(crate) fn count_per_backend(owners: &[u16], n: usize) -> Vec<usize> {
    let mut counts = vec![0; n];
    for &b in owners {
        counts[usize::from(b)] += 1;
    }
    counts
}

/// The distinct accepted backends of `owners` read once round from `start`, at most `cap`.
pub(crate) fn walk_from(
    owners: &[u16],
    start: usize,
    accept: &dyn Fn(usize) -> bool,
    cap: usize,
) -> Vec<usize> {
    let mut out = Vec::new();
    for k in 0..owners.len() {
        let b = usize::from(owners[(start + k) % owners.len()]);
        if out.len() < cap && accept(b) && !out.contains(&b) {
            out.push(b);
        }
    }
    out
}

// Checks shared by the hash balancers (Maglev, ring hash), each given `build(pool, balance)`.

/// The pick contract for `cap` picks among `n` backends: accepted, distinct, and as many as
/// accepted backends up to `cap`.
pub(crate) fn check_picks_contract(
    got: &[usize],
    accept: &dyn Fn(usize) -> bool,
    n: usize,
    cap: usize,
) -> Result<(), TestCaseError> {
    prop_assert!(got.iter().all(|&i| accept(i)));
    let distinct: std::collections::HashSet<_> = got.iter().collect();
    prop_assert_eq!(distinct.len(), got.len());
    prop_assert_eq!(got.len(), cap.min((0..n).filter(|&i| accept(i)).count()));
    Ok(())
}

/// 50 equal backends: nothing accepted gives no pick, one accepted backend is the only pick.
pub(crate) fn check_nothing_or_one_accepted<B: Balancer>(build: impl Fn(&Pool, Option<f64>) -> B) {
    let mut b = build(&equal_pool(50), None);
    for key in [0, 1, u64::MAX, 12345] {
        assert_eq!(pick(&mut b, key, &|_| false, 3), Vec::<usize>::new());
        assert_eq!(pick(&mut b, key, &|i| i == 17, 3), [17]);
    }
}

/// Without a key, picks (primary and retries) are those of smooth weighted round robin.
pub(crate) fn check_round_robin_without_key<B: Balancer>(build: impl Fn(&Pool, Option<f64>) -> B) {
    let p = pool_of(&[("a", 5), ("b", 1), ("c", 1)]);
    let mut b = build(&p, None);
    let mut rr = SmoothWeighted::new(p.weights());
    for _ in 0..21 {
        let got = pick_with(&mut b, None, &accept_all, &mut NoLoad, 3);
        assert_eq!(got, pick_with(&mut rr, None, &accept_all, &mut NoLoad, 3));
    }
    let primaries: Vec<usize> =
        (0..7).map(|_| pick_with(&mut b, None, &accept_all, &mut NoLoad, 1)[0]).collect();
    assert_eq!(primaries, [0, 0, 1, 0, 2, 0, 0]);
}

/// 8 equal backends: refusing backend 3 moves exactly the keys whose primary it was, each to
/// its second pick, and those are about an eighth of the keys.
pub(crate) fn check_refusing_the_primary<B: Balancer>(build: impl Fn(&Pool, Option<f64>) -> B) {
    let mut b = build(&equal_pool(8), None);
    let refused = 3;
    let mut moved = 0;
    for k in 0..5000u64 {
        let key = hash(&k.to_le_bytes());
        let before = pick(&mut b, key, &accept_all, 2);
        let after = pick(&mut b, key, &|i| i != refused, 1);
        if before[0] == refused {
            assert_eq!(after[0], before[1]);
            moved += 1;
        } else {
            assert_eq!(after[0], before[0]);
        }
    }
    assert!(moved > 400 && moved < 850, "{moved}");
}

/// 5 equal backends, balance 1.25: a key's primary over its bound yields to the next in the
/// key's order, and only the backends compared are read.
pub(crate) fn check_bounded_load_moves_off_a_hot_backend<B: Balancer>(
    build: impl Fn(&Pool, Option<f64>) -> B,
) {
    let mut b = build(&equal_pool(5), Some(1.25));
    let key = hash(b"hot-key");
    let order = pick(&mut build(&equal_pool(5), None), key, &accept_all, 5);
    let hot = order[0];
    // bound = ceil(1.25 * (10 + 1) / 5) = 3: the hot backend (10 in flight) is over it.
    let mut load = FakeLoad::with_total(&[0; 5], 10);
    load.in_flight[hot] = 10;
    let got = pick_with(&mut b, Some(key), &accept_all, &mut load, 5);
    assert_eq!(got, [order[1], order[2], order[3], order[4], hot]);
    assert_eq!(load.total_reads, 1);
    // At 2 in flight it is under the bound and stays primary; only it was read.
    load.in_flight[hot] = 2;
    load.reads.clear();
    assert_eq!(pick_with(&mut b, Some(key), &accept_all, &mut load, 1), [hot]);
    assert_eq!(load.reads, [hot]);
    // Over the bound with one pick: the hot backend and its successor are read, no more.
    load.in_flight[hot] = 3;
    load.reads.clear();
    assert_eq!(pick_with(&mut b, Some(key), &accept_all, &mut load, 1), [order[1]]);
    assert_eq!(load.reads, [hot, order[1]]);
}

/// 3 equal backends: load is read only with a balance factor.
pub(crate) fn check_load_read_only_with_a_balance_factor<B: Balancer>(
    build: impl Fn(&Pool, Option<f64>) -> B,
) {
    assert!(!build(&equal_pool(3), None).uses_load());
    assert!(build(&equal_pool(3), Some(1.5)).uses_load());
    let mut b = build(&equal_pool(3), None);
    let mut load = FakeLoad::with_total(&[100; 3], 0);
    assert_eq!(pick_with(&mut b, Some(4), &accept_all, &mut load, 3).len(), 3);
    assert_eq!((load.reads.len(), load.total_reads), (0, 0));
}
