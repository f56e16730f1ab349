//! Native tests of the round robin's schedule structure: nginx's order step for step on large
//! and many-weight pools, the work per pick, refused turns, retry hosts, and the fallbacks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::lb::testkit::{accept_all, is_distinct, pick_in, Nginx};
use crate::lb::NoLoad;
use proptest::prelude::*;

fn rr(weights: &[u32]) -> SmoothWeighted {
    SmoothWeighted::new(weights.iter().copied())
}

/// One pick of capacity `cap`.
fn pick(
    b: &mut SmoothWeighted,
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

/// Asserts that `steps` primaries of `b` (all accepted, capacity `cap`) are nginx's, and that
/// the retry hosts come in nginx's score order.
fn assert_follows_nginx(weights: &[u32], steps: usize, cap: usize) {
    let mut b = rr(weights);
    let mut reference = Nginx::new(weights);
    let mut rng = fastrand::Rng::with_seed(3);
    for t in 0..steps {
        let p = pick(&mut b, &accept_all, &mut rng, cap);
        assert_eq!(p[0], reference.turn().unwrap(), "step {t}");
        let scores: Vec<i64> = p.iter().skip(1).map(|&i| reference.score(i)).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "step {t}: {p:?} {scores:?}");
        assert_eq!(p.len(), cap.min(weights.len()));
    }
}

#[test]
fn a_thousand_backends_of_weights_1_to_3_follow_nginx_over_two_cycles() {
    let weights: Vec<u32> = (0..1000).map(|i| 1 + (i % 3) as u32).collect();
    assert_follows_nginx(&weights, 2 * 1999 + 7, 3);
}

#[test]
fn every_weight_different_follows_nginx() {
    // 300 classes of one backend each, shuffled: the tournament does all the work.
    let mut weights: Vec<u32> = (1..=300).collect();
    fastrand::Rng::with_seed(9).shuffle(&mut weights);
    assert_follows_nginx(&weights, 45_150 + 100, 3);
}

#[test]
fn classes_of_several_backends_follow_nginx() {
    // Equal weights interleaved with others: ties across classes go to the lower index.
    let weights = [2, 5, 2, 1, 5, 1, 1, 2, 7, 5, 2, 2, 1];
    let total: u32 = weights.iter().sum();
    for cap in [1, 3, 10] {
        assert_follows_nginx(&weights, 3 * total as usize, cap);
    }
}

#[test]
fn a_heavy_backend_among_many_light_ones_is_interleaved_not_bursty() {
    // Weight 100 against 100 backends of weight 1: the heavy one takes every other pick or so
    // (never more than 2 others between two of its picks), each light one once per cycle of
    // 200, wherever the heavy one sits in the pool. A deadline scheduler that serves the light
    // ones' equal deadlines back to back would leave the heavy one out for 100 picks.
    for heavy in [0, 100] {
        let mut weights = vec![1; 101];
        weights[heavy] = 100;
        let mut b = rr(&weights);
        let mut rng = fastrand::Rng::with_seed(14);
        for cycle in 0..3 {
            let picks: Vec<usize> =
                (0..200).map(|_| pick(&mut b, &accept_all, &mut rng, 1)[0]).collect();
            let at: Vec<usize> = (0..200).filter(|&t| picks[t] == heavy).collect();
            assert_eq!(at.len(), 100, "cycle {cycle}");
            assert!(at.windows(2).all(|w| w[1] - w[0] <= 3), "cycle {cycle}: {at:?}");
            let mut light: Vec<usize> = picks.iter().copied().filter(|&i| i != heavy).collect();
            light.sort_unstable();
            let expected: Vec<usize> = (0..101).filter(|&i| i != heavy).collect();
            assert_eq!(light, expected, "cycle {cycle}");
        }
    }
}

#[test]
fn equal_weights_need_no_tournament() {
    let mut b = rr(&[4; 1000]);
    let mut rng = fastrand::Rng::with_seed(1);
    let before = b.pulls;
    for t in 0..3000 {
        assert_eq!(pick(&mut b, &accept_all, &mut rng, 3)[0], t % 1000);
    }
    assert_eq!(b.pulls, before);
}

/// Node repairs per pick over `picks` picks of a pool of `weights`.
fn repairs_per_pick(weights: &[u32], picks: usize) -> f64 {
    let mut b = rr(weights);
    let mut rng = fastrand::Rng::with_seed(2);
    let before = b.pulls;
    for _ in 0..picks {
        pick(&mut b, &accept_all, &mut rng, 3);
    }
    (b.pulls - before) as f64 / picks as f64
}

#[test]
fn work_per_pick_grows_with_the_log_of_the_classes() {
    // A pick repairs the path to its class (log2 K nodes) plus the nodes where a heavier class
    // overtook a lighter one since the previous pick. 1000 classes (every weight different, up
    // to 10,000), against a bound of 3 * log2(1024) = 30: measured 10.6.
    let mut rng = fastrand::Rng::with_seed(4);
    let mut weights: Vec<u32> = (1..=10_000).collect();
    rng.shuffle(&mut weights);
    weights.truncate(1000);
    let per_pick = repairs_per_pick(&weights, 50_000);
    assert!(per_pick <= 30.0, "{per_pick}");
    // The benchmark's pool: 3 classes, 2 nodes per path: measured 2.0.
    let weights: Vec<u32> = (0..1000).map(|i| 1 + (i % 3) as u32).collect();
    let per_pick = repairs_per_pick(&weights, 20_000);
    assert!(per_pick <= 4.0, "{per_pick}");
}

#[test]
fn a_refused_heavy_backend_gives_its_turns_to_the_others_by_weight() {
    // Backend 0 (weight 100 of 106) is refused: of every 6 picks the others get exactly 3, 2, 1.
    let weights = [100, 3, 2, 1];
    let mut b = rr(&weights);
    let mut rng = fastrand::Rng::with_seed(5);
    let refuse_0 = |i: usize| i != 0;
    for cycle in 0..50 {
        let mut count = [0; 4];
        for _ in 0..6 {
            count[pick(&mut b, &refuse_0, &mut rng, 1)[0]] += 1;
        }
        assert_eq!(count, [0, 3, 2, 1], "cycle {cycle}");
    }
}

#[test]
fn a_backend_back_from_ejection_gets_no_burst() {
    // Refused for 1000 picks, it then takes its plain share: once in every round of 4.
    let mut b = rr(&[1, 1, 1, 1]);
    let mut rng = fastrand::Rng::with_seed(6);
    for _ in 0..1000 {
        assert_ne!(pick(&mut b, &|i| i != 2, &mut rng, 1)[0], 2);
    }
    for round in 0..10 {
        let mut got: Vec<usize> =
            (0..4).map(|_| pick(&mut b, &accept_all, &mut rng, 1)[0]).collect();
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2, 3], "round {round}");
    }
}

#[test]
fn retry_hosts_of_a_failing_backend_spread_over_its_peers() {
    // Two classes of three (weights 2 and 1). Whenever backend 0 is the primary, the first
    // retry host is one of the backends with the next-highest score, chosen at random among
    // equals: over many cycles at least two different peers appear, none more than 70%.
    let weights = [2, 2, 2, 1, 1, 1];
    let mut b = rr(&weights);
    let mut reference = Nginx::new(&weights);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut first_retry = [0usize; 6];
    for _ in 0..9 * 2000 {
        let p = pick(&mut b, &accept_all, &mut rng, 3);
        assert_eq!(p[0], reference.turn().unwrap());
        assert!(is_distinct(&p) && p.len() == 3, "{p:?}");
        if p[0] == 0 {
            first_retry[p[1]] += 1;
        }
    }
    let seen: usize = first_retry.iter().sum();
    assert_eq!(first_retry[0], 0);
    assert!(first_retry.iter().filter(|&&c| c > 0).count() >= 2, "{first_retry:?}");
    assert!(first_retry.iter().all(|&c| c * 10 <= seen * 7), "{first_retry:?}");
}

#[test]
fn retry_hosts_cover_the_pool_when_it_is_small() {
    // Capacity past the pool: every backend once, primary first, whatever the classes.
    let weights = [3, 1, 2, 1, 3];
    let mut b = rr(&weights);
    let mut rng = fastrand::Rng::with_seed(8);
    for _ in 0..50 {
        let mut p = pick(&mut b, &accept_all, &mut rng, 10);
        assert_eq!(p.len(), 5);
        p.sort_unstable();
        assert_eq!(p, [0, 1, 2, 3, 4]);
    }
}

#[test]
fn most_of_the_pool_refused_falls_back_to_a_rotating_scan() {
    // 1000 equal backends, two accepted: 64 refused turns, then the scan alternates them.
    let mut b = rr(&[1; 1000]);
    let mut rng = fastrand::Rng::with_seed(9);
    let accept = |i: usize| i == 500 || i == 900;
    let mut seen = [0usize; 2];
    for _ in 0..100 {
        let p = pick(&mut b, &accept, &mut rng, 3);
        assert_eq!(p.len(), 2, "{p:?}");
        seen[usize::from(p[0] == 900)] += 1;
    }
    assert_eq!(seen, [50, 50]);
}

#[test]
fn backends_of_weight_zero_serve_only_when_nothing_else_is_accepted() {
    let mut b = rr(&[0, 1, 0]);
    let mut rng = fastrand::Rng::with_seed(10);
    for _ in 0..10 {
        assert_eq!(pick(&mut b, &accept_all, &mut rng, 1), [1]);
        let p = pick(&mut b, &|i| i != 1, &mut rng, 3);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(!p.contains(&1));
    }
    let mut none = rr(&[0, 0]);
    assert_eq!(pick(&mut none, &accept_all, &mut rng, 2).len(), 2);
}

#[test]
fn weights_too_large_for_exact_scores_are_scaled_down() {
    // Sum past 2^31 (no config can give it): halved until it fits; shares stay about 2:1.
    let mut b = rr(&[u32::MAX, u32::MAX / 2, 1]);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut count = [0usize; 3];
    for _ in 0..30_000 {
        let p = pick(&mut b, &accept_all, &mut rng, 3);
        assert!(is_distinct(&p) && p.len() == 3, "{p:?}");
        count[p[0]] += 1;
    }
    assert!((19_900..=20_100).contains(&count[0]), "{count:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any weights (up to 10,000, the config's bound) over up to 60 backends: the primaries are
    /// nginx's, step for step, across the cycle boundary.
    #[test]
    fn primaries_are_nginx_for_any_weights(
        weights in prop::collection::vec(prop_oneof![1u32..=3, 1u32..=10_000], 1..60),
        cap in 1usize..=10,
    ) {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let steps = usize::try_from(total + 50).unwrap().min(3000);
        let mut b = rr(&weights);
        let mut reference = Nginx::new(&weights);
        let mut rng = fastrand::Rng::with_seed(12);
        for t in 0..steps {
            let p = pick(&mut b, &accept_all, &mut rng, cap);
            prop_assert_eq!(p[0], reference.turn().unwrap(), "step {}", t);
            prop_assert!(is_distinct(&p));
            prop_assert_eq!(p.len(), cap.min(weights.len()));
        }
    }

    /// Small weights, many steps: several whole cycles (resets included) stay nginx's.
    #[test]
    fn whole_cycles_are_nginx(weights in prop::collection::vec(1u32..=6, 1..12)) {
        let total: usize = weights.iter().map(|&w| w as usize).sum();
        let mut b = rr(&weights);
        let mut reference = Nginx::new(&weights);
        let mut rng = fastrand::Rng::with_seed(13);
        for t in 0..5 * total {
            prop_assert_eq!(pick(&mut b, &accept_all, &mut rng, 1)[0], reference.turn().unwrap(), "step {}", t);
        }
    }
}
