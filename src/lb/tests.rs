//! Native tests of the selection contract ([`Picks`], `TopK`), the two algorithms, the
//! algorithm factory and the per-VM [`crate::router::Router`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::random::WeightedRandom;
use super::round_robin::SmoothWeighted;
use super::round_robin::MAX_POPS;
use super::testkit::{accept_all, is_distinct, pick_in, pool, Nginx};
use super::*;
use proptest::prelude::*;

/// One pick with capacity `cap`, as a vector of indexes.
fn pick(
    b: &mut dyn Balancer,
    accept: &dyn Fn(usize) -> bool,
    rng: &mut fastrand::Rng,
    cap: usize,
) -> Vec<usize> {
    pick_in(
        b,
        &mut PickCtx { accept, rng, key: None, load: &mut NoLoad, now_ns: 0, reported: None },
        cap,
    )
}

/// One pick into `out`, with no hash key and no load.
fn pick_into(
    b: &mut dyn Balancer,
    accept: &dyn Fn(usize) -> bool,
    rng: &mut fastrand::Rng,
    out: &mut Picks,
) {
    let mut ctx = PickCtx { accept, rng, key: None, load: &mut NoLoad, now_ns: 0, reported: None };
    b.pick(&mut ctx, out);
}

/// The primary picks of `count` consecutive requests.
fn primaries(b: &mut dyn Balancer, accept: &dyn Fn(usize) -> bool, count: usize) -> Vec<usize> {
    let mut rng = fastrand::Rng::with_seed(1);
    (0..count).map(|_| pick(b, accept, &mut rng, 1)[0]).collect()
}

fn rr(weights: &[u32]) -> SmoothWeighted {
    SmoothWeighted::new(weights.iter().copied())
}

fn wr(weights: &[u32]) -> WeightedRandom {
    WeightedRandom::new(weights.iter().copied())
}

// ---------------------------------------------------------------------------------------------
// Picks
// ---------------------------------------------------------------------------------------------

#[test]
fn picks_capacity_is_clamped_to_1_through_10() {
    assert_eq!(Picks::with_capacity(0).capacity(), 1);
    assert_eq!(Picks::with_capacity(1).capacity(), 1);
    assert_eq!(Picks::with_capacity(3).capacity(), 3);
    assert_eq!(Picks::with_capacity(10).capacity(), 10);
    assert_eq!(Picks::with_capacity(11).capacity(), MAX_HOSTS_LIMIT);
    assert_eq!(Picks::with_capacity(usize::MAX).capacity(), MAX_HOSTS_LIMIT);
}

#[test]
fn picks_push_refuses_duplicates_and_overflow() {
    let mut p = Picks::with_capacity(3);
    assert!(p.is_empty());
    assert!(!p.is_full());
    assert_eq!(p.as_slice(), &[] as &[u32]);
    assert!(p.push(4));
    assert!(!p.push(4), "duplicate accepted");
    assert!(p.push(7));
    assert!(!p.push(7));
    assert!(!p.push(4));
    assert_eq!(p.len(), 2);
    assert!(p.contains(4) && p.contains(7) && !p.contains(0) && !p.contains(5));
    assert!(p.push(0));
    assert!(p.is_full());
    assert!(!p.push(9), "pushed past capacity");
    assert!(!p.contains(9));
    assert_eq!(p.as_slice(), &[4, 7, 0]);
    assert_eq!(p.len(), 3);
}

#[test]
fn picks_capacity_one_holds_one() {
    let mut p = Picks::with_capacity(0);
    assert!(p.push(5));
    assert!(!p.push(6));
    assert_eq!(p.as_slice(), &[5]);
}

#[test]
fn picks_hold_up_to_the_limit() {
    let mut p = Picks::with_capacity(MAX_HOSTS_LIMIT);
    for i in 0..MAX_HOSTS_LIMIT {
        assert!(p.push(100 + i));
    }
    assert!(p.is_full());
    assert!(!p.push(0));
    assert_eq!(p.as_slice().len(), MAX_HOSTS_LIMIT);
    assert_eq!(p.as_slice()[MAX_HOSTS_LIMIT - 1], 109);
}

#[cfg(target_pointer_width = "64")]
#[test]
fn picks_refuse_an_index_beyond_u32() {
    let mut p = Picks::with_capacity(3);
    assert!(!p.push(u32::MAX as usize + 1));
    assert!(p.is_empty());
    assert!(p.push(u32::MAX as usize));
    assert!(p.contains(u32::MAX as usize));
    assert!(!p.contains(u32::MAX as usize + 1));
}

#[test]
fn picks_clear_empties_and_allows_reuse() {
    let mut p = Picks::with_capacity(2);
    assert!(p.push(1) && p.push(2));
    p.clear();
    assert!(p.is_empty() && !p.is_full());
    assert_eq!(p.len(), 0);
    assert_eq!(p.as_slice(), &[] as &[u32]);
    assert!(!p.contains(1));
    assert_eq!(p.capacity(), 2);
    assert!(p.push(2) && p.push(1));
    assert_eq!(p.as_slice(), &[2, 1]);
}

// ---------------------------------------------------------------------------------------------
// TopK
// ---------------------------------------------------------------------------------------------

#[test]
fn top_k_keeps_the_top_ranks_in_order_ties_by_their_second_key() {
    let mut best = TopK::new();
    best.reset(3);
    for (i, score) in [(0, 1.0), (1, 5.0), (2, f64::NEG_INFINITY), (3, 3.0), (4, 4.0), (5, 0.5)] {
        best.offer(i, (score, 0u64));
    }
    let mut out = Picks::with_capacity(10);
    best.push_into(&mut out);
    assert_eq!(out.as_slice(), &[1, 4, 3]);
    let mut tied = TopK::new();
    tied.reset(3);
    tied.offer(0, (1.0, 5u64));
    tied.offer(1, (1.0, 9));
    tied.offer(2, (1.0, 7));
    let mut out = Picks::with_capacity(10);
    tied.push_into(&mut out);
    assert_eq!(out.as_slice(), &[1, 2, 0]);
    // Reset for the next pick: empty, with the new capacity.
    tied.reset(1);
    tied.offer(4, (0.0, 0));
    tied.offer(5, (2.0, 0));
    let mut out = Picks::with_capacity(10);
    tied.push_into(&mut out);
    assert_eq!(out.as_slice(), &[5]);
}

// ---------------------------------------------------------------------------------------------
// Smooth weighted round robin
// ---------------------------------------------------------------------------------------------

#[test]
fn swrr_weights_5_1_1_give_the_nginx_sequence() {
    // nginx: a a b a c a a, then again.
    let cycle = [0, 0, 1, 0, 2, 0, 0];
    let mut b = rr(&[5, 1, 1]);
    let got = primaries(&mut b, &accept_all, cycle.len() * 4);
    let expected: Vec<usize> = cycle.iter().copied().cycle().take(cycle.len() * 4).collect();
    assert_eq!(got, expected);
}

#[test]
fn swrr_weights_1_2_3_give_the_nginx_sequence() {
    let cycle = [2, 1, 0, 2, 1, 2];
    let mut b = rr(&[1, 2, 3]);
    let got = primaries(&mut b, &accept_all, cycle.len() * 4);
    let expected: Vec<usize> = cycle.iter().copied().cycle().take(cycle.len() * 4).collect();
    assert_eq!(got, expected);
}

#[test]
fn swrr_primary_sequence_does_not_depend_on_capacity() {
    // Retry hosts are proposed without changing the state.
    for cap in 1..=MAX_HOSTS_LIMIT {
        let mut b = rr(&[5, 1, 1]);
        let mut rng = fastrand::Rng::with_seed(cap as u64);
        let got: Vec<usize> =
            (0..14).map(|_| pick(&mut b, &accept_all, &mut rng, cap)[0]).collect();
        assert_eq!(got, vec![0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0], "cap {cap}");
    }
}

#[test]
fn swrr_primary_does_not_depend_on_the_rng() {
    // The rng only orders equal-scored retry hosts; the primary sequence is the same whatever
    // the seed, and the same seed reproduces the same picks.
    let mut a = rr(&[3, 1, 2]);
    let mut b = rr(&[3, 1, 2]);
    let mut c = rr(&[3, 1, 2]);
    let mut ra = fastrand::Rng::with_seed(1);
    let mut rb = fastrand::Rng::with_seed(999);
    let mut rc = fastrand::Rng::with_seed(1);
    for _ in 0..30 {
        let pa = pick(&mut a, &accept_all, &mut ra, 3);
        let pb = pick(&mut b, &accept_all, &mut rb, 3);
        assert_eq!(pa[0], pb[0]);
        assert_eq!(pick(&mut c, &accept_all, &mut rc, 3), pa);
    }
}

/// Sorted copy.
fn sorted(v: &[usize]) -> Vec<usize> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

#[test]
fn swrr_equal_weights_are_plain_round_robin() {
    for n in 1..=12usize {
        for cap in 1..=MAX_HOSTS_LIMIT {
            let mut b = rr(&vec![7; n]);
            let mut rng = fastrand::Rng::with_seed(n as u64 * 100 + cap as u64);
            for t in 0..3 * n {
                let p = pick(&mut b, &accept_all, &mut rng, cap);
                assert_eq!(p[0], t % n, "n {n} cap {cap} pick {t}: {p:?}");
                assert_eq!(p.len(), cap.min(n), "n {n} cap {cap} pick {t}: {p:?}");
                assert!(is_distinct(&p), "{p:?}");
            }
        }
    }
}

#[test]
fn swrr_retry_hosts_for_equal_weights_are_the_rest_of_the_round_first() {
    // Equal weights, after primary i (a round serves 0..n in order): the backends still due in
    // this round (i+1..n) score higher than those already served (0..=i), so they come first.
    // Within each group the scores are equal and the order is random per request.
    let n = 6usize;
    for cap in 2..=MAX_HOSTS_LIMIT {
        let mut b = rr(&vec![1; n]);
        let mut rng = fastrand::Rng::with_seed(cap as u64);
        for t in 0..4 * n {
            let i = t % n;
            let p = pick(&mut b, &accept_all, &mut rng, cap);
            assert_eq!(p[0], i, "{p:?}");
            let retries = &p[1..];
            let due = n - 1 - i;
            let k = due.min(retries.len());
            assert!(retries[..k].iter().all(|&x| x > i), "cap {cap} pick {t}: {p:?}");
            assert!(retries[k..].iter().all(|&x| x < i), "cap {cap} pick {t}: {p:?}");
        }
    }
}

#[test]
fn swrr_with_one_other_backend_the_retry_is_the_other() {
    let mut b = rr(&[1, 1]);
    let mut rng = fastrand::Rng::with_seed(0);
    for t in 0..10 {
        assert_eq!(pick(&mut b, &accept_all, &mut rng, 3), vec![t % 2, 1 - t % 2]);
    }
}

#[test]
fn swrr_retry_hosts_spread_evenly_over_equal_scores() {
    // Weights 1,1,1,1: every 4th request starts a round with primary 0, after which 1, 2 and 3
    // have equal scores; the first retry host must be each of them about 1/3 of the time, not
    // always the successor. 5 sigma of a share of 1/3 over 30_000 rounds is 0.0136.
    let rounds = 30_000;
    let mut b = rr(&[1, 1, 1, 1]);
    let mut rng = fastrand::Rng::with_seed(0x5eed_1001);
    let mut count = [0usize; 4];
    for _ in 0..rounds {
        let p = pick(&mut b, &accept_all, &mut rng, 2);
        assert_eq!(p[0], 0);
        count[p[1]] += 1;
        for _ in 0..3 {
            pick(&mut b, &accept_all, &mut rng, 2);
        }
    }
    assert_eq!(count[0], 0);
    for (j, &c) in count.iter().enumerate().skip(1) {
        let share = c as f64 / rounds as f64;
        let tol = five_sigma(1.0 / 3.0, rounds);
        assert!((share - 1.0 / 3.0).abs() <= tol, "first retry {j}: share {share:.4} ({count:?})");
    }
}

#[test]
fn swrr_retry_order_among_ties_is_a_uniform_permutation() {
    // Weights all 1 over 4 backends, capacity 4: after primary 0 the retries are a permutation
    // of 1,2,3; each of the 6 orders should appear ~1/6 of the time (5 sigma: 0.0108 over
    // 30_000 rounds).
    let rounds = 30_000;
    let mut b = rr(&[1, 1, 1, 1]);
    let mut rng = fastrand::Rng::with_seed(0x5eed_1002);
    let mut count: std::collections::BTreeMap<Vec<usize>, usize> =
        std::collections::BTreeMap::new();
    for _ in 0..rounds {
        let p = pick(&mut b, &accept_all, &mut rng, 4);
        assert_eq!(p[0], 0);
        *count.entry(p[1..].to_vec()).or_default() += 1;
        for _ in 0..3 {
            pick(&mut b, &accept_all, &mut rng, 4);
        }
    }
    assert_eq!(count.len(), 6, "{count:?}");
    for (order, &c) in &count {
        let share = c as f64 / rounds as f64;
        let tol = five_sigma(1.0 / 6.0, rounds);
        assert!((share - 1.0 / 6.0).abs() <= tol, "order {order:?}: share {share:.4} ({count:?})");
    }
}

#[test]
fn swrr_retry_hosts_skip_excluded_backends() {
    // Index 1 is excluded: the primary rotates over 0, 2, 3 and the retries are the other two.
    let accept = |i: usize| i != 1;
    let mut b = rr(&[1, 1, 1, 1]);
    let mut rng = fastrand::Rng::with_seed(0);
    for t in 0..12 {
        let p = pick(&mut b, &accept, &mut rng, 3);
        assert_eq!(p[0], [0, 2, 3][t % 3], "{p:?}");
        assert_eq!(sorted(&p), vec![0, 2, 3], "{p:?}");
    }
}

#[test]
fn swrr_excluded_backend_is_never_picked_and_others_share_by_weight() {
    let weights = [5, 1, 1];
    let accept = |i: usize| i != 0;
    let mut b = rr(&weights);
    let got = primaries(&mut b, &accept, 10);
    // Only 1 and 2 remain, with equal weights: they alternate.
    assert_eq!(got, vec![1, 2, 1, 2, 1, 2, 1, 2, 1, 2]);
}

#[test]
fn swrr_nothing_accepted_gives_empty_picks() {
    let mut b = rr(&[1, 2, 3]);
    let mut rng = fastrand::Rng::with_seed(0);
    let mut out = Picks::with_capacity(3);
    pick_into(&mut b, &accept_all, &mut rng, &mut out);
    assert_eq!(out.len(), 3);
    // The previous picks are cleared.
    pick_into(&mut b, &|_| false, &mut rng, &mut out);
    assert!(out.is_empty());
    // And an empty pool.
    let mut empty = rr(&[]);
    pick_into(&mut empty, &accept_all, &mut rng, &mut out);
    assert!(out.is_empty());
}

#[test]
fn swrr_single_backend_always_picked() {
    let mut b = rr(&[42]);
    let mut rng = fastrand::Rng::with_seed(0);
    for _ in 0..10 {
        assert_eq!(pick(&mut b, &accept_all, &mut rng, 3), vec![0]);
    }
}

/// Weights 1..=100 for 1..=20 backends.
fn weights_strategy() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(1u32..=100, 1..=20)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Over every cycle of sum(weights) picks, each backend gets exactly its weight.
    #[test]
    fn swrr_each_cycle_gives_each_backend_exactly_its_weight(weights in weights_strategy(), cap in 1usize..=10) {
        let total: usize = weights.iter().map(|&w| w as usize).sum();
        let mut b = rr(&weights);
        let mut rng = fastrand::Rng::with_seed(0);
        for cycle in 0..3 {
            let mut count = vec![0u32; weights.len()];
            for _ in 0..total {
                count[pick(&mut b, &accept_all, &mut rng, cap)[0]] += 1;
            }
            prop_assert_eq!(&count, &weights, "cycle {}", cycle);
        }
    }

    /// With one backend excluded throughout, the others share each cycle of the remaining sum
    /// exactly by weight, and the excluded one is never picked (not even as a retry host).
    #[test]
    fn swrr_exclusion_shares_the_rest_by_weight(
        weights in prop::collection::vec(1u32..=100, 2..=20),
        excluded_seed in any::<prop::sample::Index>(),
        cap in 1usize..=10,
    ) {
        let excluded = excluded_seed.index(weights.len());
        let accept = |i: usize| i != excluded;
        let total: usize =
            weights.iter().enumerate().filter(|&(i, _)| i != excluded).map(|(_, &w)| w as usize).sum();
        let mut b = rr(&weights);
        let mut rng = fastrand::Rng::with_seed(0);
        for cycle in 0..3 {
            let mut count = vec![0u32; weights.len()];
            for _ in 0..total {
                let p = pick(&mut b, &accept, &mut rng, cap);
                prop_assert!(!p.contains(&excluded), "excluded {} picked in {:?}", excluded, p);
                count[p[0]] += 1;
            }
            let mut expected = weights.clone();
            expected[excluded] = 0;
            prop_assert_eq!(&count, &expected, "cycle {}", cycle);
        }
    }

    /// Against the nginx reference over the whole pool, with a different accept mask per
    /// request: the primary is the first accepted of the reference's next turns (the refused
    /// ones are charged, at most MAX_POPS of them); retry hosts are the next-highest scores,
    /// highest first; picks are distinct, accepted, and as many as capacity allows.
    #[test]
    fn swrr_follows_nginx_charging_refused_turns_under_changing_accept(
        weights in weights_strategy(),
        masks in prop::collection::vec(prop::collection::vec(prop::bool::weighted(0.8), 20), 1..200),
        cap in 1usize..=12,
    ) {
        let mut b = rr(&weights);
        let mut reference = Nginx::new(&weights);
        let mut rng = fastrand::Rng::with_seed(0);
        for mask in &masks {
            let accept = |i: usize| mask[i];
            let accepted = (0..weights.len()).filter(|&i| mask[i]).count();
            let p = pick(&mut b, &accept, &mut rng, cap);
            let primary = (0..MAX_POPS).map(|_| reference.turn().unwrap()).find(|&i| accept(i));
            prop_assert!(is_distinct(&p), "not distinct: {:?}", p);
            prop_assert!(p.iter().all(|&i| i < weights.len() && mask[i]), "not accepted: {:?}", p);
            prop_assert_eq!(p.len(), accepted.min(cap.clamp(1, MAX_HOSTS_LIMIT)));
            // Past MAX_POPS refused turns the picks come from the rotating scan.
            let Some(primary) = primary else { continue };
            prop_assert_eq!(p[0], primary);
            let retry_scores: Vec<i64> = p.iter().skip(1).map(|&i| reference.score(i)).collect();
            prop_assert!(retry_scores.windows(2).all(|w| w[0] >= w[1]), "retries {:?} scores {:?}", p, retry_scores);
            let left_out = (0..weights.len()).filter(|&i| mask[i] && !p.contains(&i)).map(|i| reference.score(i)).max();
            if let (Some(&lowest), Some(best_left)) = (retry_scores.last(), left_out) {
                prop_assert!(lowest >= best_left, "retries {:?} skip a higher score {}", p, best_left);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Weighted random
// ---------------------------------------------------------------------------------------------

/// 5 standard deviations of a binomial proportion estimate over `n` trials.
fn five_sigma(p: f64, n: usize) -> f64 {
    5.0 * (p * (1.0 - p) / n as f64).sqrt()
}

#[test]
fn random_primary_follows_weights() {
    // 60_000 primary picks for weights 1,2,3. One standard deviation of the observed share is
    // sqrt(p(1-p)/n): 0.00152 for p=1/6, 0.00192 for 2/6, 0.00204 for 3/6. A flat +-2% relative
    // band would be only 2.2 sigma for p=1/6 (fails for ~3% of seeds), so the tolerance is
    // 5 sigma per backend (0.0076, 0.0096, 0.0102 absolute; 4.6%, 2.9%, 2.0% relative), which a
    // correct implementation exceeds with probability < 1e-6 whatever the seed. An off-by-one in
    // the cumulative search (shares 2/6, 2/6, 2/6) is > 20 sigma away.
    let n = 60_000;
    let weights = [1, 2, 3];
    let mut b = wr(&weights);
    let mut rng = fastrand::Rng::with_seed(0x5eed_0001);
    let mut count = [0usize; 3];
    for _ in 0..n {
        count[pick(&mut b, &accept_all, &mut rng, 1)[0]] += 1;
    }
    for (i, &w) in weights.iter().enumerate() {
        let p = f64::from(w) / 6.0;
        let share = count[i] as f64 / n as f64;
        let tol = five_sigma(p, n);
        assert!(
            (share - p).abs() <= tol,
            "backend {i}: share {share:.4}, expected {p:.4} +- {tol:.4}"
        );
    }
}

#[test]
fn random_primary_within_2_percent_relative_with_enough_picks() {
    // +-2% relative is >= 5.6 sigma for every share once n = 400_000 (sigma(1/6) = 0.00059).
    let n = 400_000;
    let weights = [1, 2, 3];
    let mut b = wr(&weights);
    let mut rng = fastrand::Rng::with_seed(0x5eed_0002);
    let mut count = [0usize; 3];
    for _ in 0..n {
        count[pick(&mut b, &accept_all, &mut rng, 1)[0]] += 1;
    }
    for (i, &w) in weights.iter().enumerate() {
        let p = f64::from(w) / 6.0;
        let share = count[i] as f64 / n as f64;
        assert!(five_sigma(p, n) <= 0.02 * p);
        assert!(
            (share - p).abs() <= 0.02 * p,
            "backend {i}: share {share:.4}, expected {p:.4} +- 2%"
        );
    }
}

#[test]
fn random_retry_host_is_drawn_without_replacement_by_weight() {
    // P(second = j) = sum over i != j of w_i/W * w_j/(W - w_i); for 1,2,3: 0.25, 0.40, 0.35.
    let n = 60_000;
    let expected = [0.25, 0.40, 0.35];
    let mut b = wr(&[1, 2, 3]);
    let mut rng = fastrand::Rng::with_seed(0x5eed_0003);
    let mut count = [0usize; 3];
    for _ in 0..n {
        let p = pick(&mut b, &accept_all, &mut rng, 2);
        assert_eq!(p.len(), 2);
        count[p[1]] += 1;
    }
    for (i, &p) in expected.iter().enumerate() {
        let share = count[i] as f64 / n as f64;
        let tol = five_sigma(p, n);
        assert!(
            (share - p).abs() <= tol,
            "backend {i}: share {share:.4}, expected {p:.4} +- {tol:.4}"
        );
    }
}

#[test]
fn random_accept_excluding_a_backend_is_honoured() {
    let n = 30_000;
    let mut b = wr(&[1, 2, 3]);
    let accept = |i: usize| i != 2;
    let mut rng = fastrand::Rng::with_seed(0x5eed_0004);
    let mut count = [0usize; 3];
    for _ in 0..n {
        let p = pick(&mut b, &accept, &mut rng, 3);
        assert!(!p.contains(&2), "excluded backend picked: {p:?}");
        assert_eq!(p.len(), 2);
        count[p[0]] += 1;
    }
    assert_eq!(count[2], 0);
    // The remaining weights 1 and 2 share the primary as 1/3 and 2/3.
    for (i, p) in [(0usize, 1.0 / 3.0), (1, 2.0 / 3.0)] {
        let share = count[i] as f64 / n as f64;
        assert!(
            (share - p).abs() <= five_sigma(p, n),
            "backend {i}: share {share:.4}, expected {p:.4}"
        );
    }
}

#[test]
fn random_excluding_the_heavy_backend_still_fills() {
    // Nearly every fast-path draw lands on the excluded backend; the exact fallback must fill.
    let mut b = wr(&[10_000, 1, 1, 1]);
    let accept = |i: usize| i != 0;
    for seed in 0..200 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut p = pick(&mut b, &accept, &mut rng, 3);
        p.sort_unstable();
        assert_eq!(p, vec![1, 2, 3], "seed {seed}");
    }
}

#[test]
fn random_fewer_accepted_than_capacity_gives_exactly_those() {
    let mut b = wr(&[5, 1, 1, 3, 2]);
    let accept = |i: usize| i == 1 || i == 3;
    for seed in 0..200 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut p = pick(&mut b, &accept, &mut rng, 3);
        assert_eq!(p.len(), 2, "seed {seed}: {p:?}");
        p.sort_unstable();
        assert_eq!(p, vec![1, 3]);
    }
}

#[test]
fn random_nothing_accepted_gives_empty_picks() {
    let mut b = wr(&[1, 2, 3]);
    let mut rng = fastrand::Rng::with_seed(0);
    let mut out = Picks::with_capacity(3);
    pick_into(&mut b, &accept_all, &mut rng, &mut out);
    assert_eq!(out.len(), 3);
    pick_into(&mut b, &|_| false, &mut rng, &mut out);
    assert!(out.is_empty());
    let mut empty = wr(&[]);
    pick_into(&mut empty, &accept_all, &mut rng, &mut out);
    assert!(out.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Picks are distinct and accepted; full when at least `capacity` backends are accepted,
    /// otherwise exactly the accepted ones.
    #[test]
    fn random_picks_are_distinct_accepted_and_full(
        weights in weights_strategy(),
        mask in prop::collection::vec(prop::bool::weighted(0.7), 20),
        cap in 1usize..=10,
        seed in any::<u64>(),
    ) {
        let mut b = wr(&weights);
        let mut rng = fastrand::Rng::with_seed(seed);
        let accept = |i: usize| mask[i];
        let accepted = (0..weights.len()).filter(|&i| mask[i]).count();
        for _ in 0..20 {
            let p = pick(&mut b, &accept, &mut rng, cap);
            prop_assert!(is_distinct(&p), "not distinct: {:?}", p);
            prop_assert!(p.iter().all(|&i| i < weights.len() && mask[i]), "not accepted: {:?}", p);
            prop_assert_eq!(p.len(), accepted.min(cap));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// build
// ---------------------------------------------------------------------------------------------

fn sequence(b: &mut dyn Balancer, seed: u64, count: usize) -> Vec<usize> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..count).map(|_| pick(b, &accept_all, &mut rng, 1)[0]).collect()
}

#[test]
fn build_round_robin_is_the_deterministic_nginx_sequence() {
    let p = pool(&[5, 1, 1]);
    let mut a = build(&AlgorithmConfig::defaults(Algorithm::RoundRobin), &p, 0);
    let mut b = build(&AlgorithmConfig::defaults(Algorithm::RoundRobin), &p, 0);
    let expected: Vec<usize> = [0, 0, 1, 0, 2, 0, 0].iter().copied().cycle().take(21).collect();
    assert_eq!(sequence(a.as_mut(), 1, 21), expected);
    assert_eq!(sequence(b.as_mut(), 2, 21), expected);
}

#[test]
fn build_random_is_weighted_random() {
    let p = pool(&[1, 1, 1]);
    let mut a = build(&AlgorithmConfig::defaults(Algorithm::Random), &p, 0);
    let got = sequence(a.as_mut(), 7, 60);
    // Not the round robin rotation (chance 3^-60), and every backend is drawn.
    let rotation: Vec<usize> = (0..60).map(|t| t % 3).collect();
    assert_ne!(got, rotation);
    assert!((0..3).all(|i| got.contains(&i)), "{got:?}");
    // Seeded: the same seed gives the same sequence, another seed another one.
    let mut b = build(&AlgorithmConfig::defaults(Algorithm::Random), &p, 0);
    assert_eq!(sequence(b.as_mut(), 7, 60), got);
    let mut c = build(&AlgorithmConfig::defaults(Algorithm::Random), &p, 0);
    assert_ne!(sequence(c.as_mut(), 8, 60), got);
}

#[test]
fn build_uses_the_pool_weights() {
    let p = pool(&[1, 2, 3]);
    let mut r = build(&AlgorithmConfig::defaults(Algorithm::RoundRobin), &p, 0);
    assert_eq!(sequence(r.as_mut(), 0, 6), vec![2, 1, 0, 2, 1, 2]);
    // Random: backend 2 (weight 3) is drawn about half the time.
    let mut w = build(&AlgorithmConfig::defaults(Algorithm::Random), &p, 0);
    let n = 30_000;
    let share = sequence(w.as_mut(), 3, n).iter().filter(|&&i| i == 2).count() as f64 / n as f64;
    assert!((share - 0.5).abs() <= five_sigma(0.5, n), "share {share}");
}

#[test]
fn picks_is_empty_until_a_push() {
    let mut p = Picks::with_capacity(2);
    assert!(p.is_empty());
    p.push(3);
    assert!(!p.is_empty());
    p.clear();
    assert!(p.is_empty());
}

/// What the adapter relies on to skip work: algorithms that read no load and learn no
/// latency say so, keep no estimate, and read zero from `NoLoad`.
#[test]
fn load_blind_algorithms_say_so() {
    for mut b in [Box::new(rr(&[1, 2])) as Box<dyn Balancer>, Box::new(wr(&[1, 2]))] {
        assert!(!b.uses_load() && !b.learns_latency());
        b.observe(0, Outcome::Response { rtt_ns: 5, failed: false }, 1);
        assert_eq!(b.latency_ns(0, 1), None);
    }
    assert_eq!((NoLoad.in_flight(0), NoLoad.total_in_flight()), (0, 0));
}

/// When the fast draws keep landing on an excluded heavy backend, the exact fallback still
/// draws the others by weight (here 1:3).
#[test]
fn random_exact_fallback_follows_the_remaining_weights() {
    let n = 20_000;
    let mut b = wr(&[1_000_000, 1, 3]);
    let accept = |i: usize| i != 0;
    let mut rng = fastrand::Rng::with_seed(0x5eed_0002);
    let mut count = [0usize; 3];
    for _ in 0..n {
        count[pick(&mut b, &accept, &mut rng, 1)[0]] += 1;
    }
    let share = count[2] as f64 / n as f64;
    assert!((share - 0.75).abs() <= five_sigma(0.75, n), "backend 2: share {share:.4}");
}

/// Equal odd scores tie too: at the second pick of five equal backends, backends 2, 3 and 4
/// share the next score, and the single retry host is each of them a third of the time.
#[test]
fn swrr_a_single_retry_among_odd_tied_scores_is_uniform() {
    let n = 3_000;
    let mut count = [0usize; 5];
    let mut rng = fastrand::Rng::with_seed(0x5eed_0003);
    for _ in 0..n {
        let mut b = rr(&[1; 5]);
        pick(&mut b, &accept_all, &mut rng, 1);
        let p = pick(&mut b, &accept_all, &mut rng, 2);
        assert_eq!(p[0], 1);
        count[p[1]] += 1;
    }
    for (i, &c) in count.iter().enumerate().skip(2) {
        let share = c as f64 / n as f64;
        assert!((share - 1.0 / 3.0).abs() <= five_sigma(1.0 / 3.0, n), "{i}: {share:.3}");
    }
}
