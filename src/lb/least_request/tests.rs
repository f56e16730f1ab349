//! Native tests of least request: the picks contract, how many in-flight counts a pick reads,
//! the distribution of primaries under power of two choices, Envoy's weighted score and bias,
//! random tie-breaking, and the shared sampler's exact fallback (seen through least request).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::lb::testkit::{accept_all, is_distinct, pick_in, pool, FakeLoad};
use proptest::prelude::*;

/// One pick of capacity `cap`; the load's read log is cleared first.
fn pick(
    lb: &mut LeastRequest,
    load: &mut FakeLoad,
    accept: &dyn Fn(usize) -> bool,
    rng: &mut fastrand::Rng,
    cap: usize,
) -> Vec<usize> {
    load.reads.clear();
    pick_in(lb, &mut PickCtx { accept, rng, key: None, load, now_ns: 0, reported: None }, cap)
}

/// How often each backend is the primary pick over `picks` picks, as fractions.
fn primary_shares(
    lb: &mut LeastRequest,
    load: &mut FakeLoad,
    accept: &dyn Fn(usize) -> bool,
    picks: usize,
    seed: u64,
) -> Vec<f64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut counts = vec![0usize; load.in_flight.len()];
    for _ in 0..picks {
        counts[pick(lb, load, accept, &mut rng, 1)[0]] += 1;
    }
    counts.iter().map(|&c| c as f64 / picks as f64).collect()
}

#[test]
fn uses_load() {
    assert!(LeastRequest::new(&pool(&[1, 1]), 2, 1.0).uses_load());
}

#[test]
fn two_choices_read_exactly_two_counts_and_fill_without_reading() {
    let mut lb = LeastRequest::new(&pool(&[1; 10]), 2, 1.0);
    let mut load = FakeLoad::new(&[4, 1, 7, 0, 3, 9, 2, 8, 5, 6]);
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..500 {
        let out = pick(&mut lb, &mut load, &accept_all, &mut rng, 6);
        assert_eq!(load.reads.len(), 2, "reads {:?}", load.reads);
        assert_ne!(load.reads[0], load.reads[1]);
        assert_eq!(out.len(), 6);
        assert!(is_distinct(&out));
        // Winner first, then the other candidate; the fill holds only unread backends.
        let (a, b) = (load.reads[0], load.reads[1]);
        let (lo, hi) = if load.in_flight[a] < load.in_flight[b] { (a, b) } else { (b, a) };
        assert_eq!(&out[..2], &[lo, hi]);
        assert!(out[2..].iter().all(|i| !load.reads.contains(i)));
    }
}

#[test]
fn two_choices_read_one_count_when_one_backend_is_accepted_and_none_when_none() {
    let mut lb = LeastRequest::new(&pool(&[1; 8]), 2, 1.0);
    let mut load = FakeLoad::new(&[0; 8]);
    let mut rng = fastrand::Rng::with_seed(1);
    assert_eq!(pick(&mut lb, &mut load, &|i| i == 5, &mut rng, 3), vec![5]);
    assert_eq!(load.reads, vec![5]);
    assert!(pick(&mut lb, &mut load, &|_| false, &mut rng, 3).is_empty());
    assert!(load.reads.is_empty());
    let mut empty = LeastRequest::new(&pool(&[]), 2, 1.0);
    let mut none = FakeLoad::new(&[]);
    assert!(pick(&mut empty, &mut none, &accept_all, &mut rng, 3).is_empty());
    let mut scan = LeastRequest::new(&pool(&[1; 8]), 0, 1.0);
    assert!(pick(&mut scan, &mut load, &|_| false, &mut rng, 3).is_empty());
    assert!(load.reads.is_empty());
}

#[test]
fn full_scan_reads_every_accepted_backend_once() {
    let mut lb = LeastRequest::new(&pool(&[1; 12]), 0, 1.0);
    let mut load = FakeLoad::new(&[3; 12]);
    let mut rng = fastrand::Rng::with_seed(2);
    let accept = |i: usize| i % 3 != 0;
    pick(&mut lb, &mut load, &accept, &mut rng, 2);
    let mut reads = load.reads.clone();
    reads.sort_unstable();
    assert_eq!(reads, vec![1, 2, 4, 5, 7, 8, 10, 11]);
}

/// With distinct counts 0..n, two distinct uniform candidates make backend `i` (count `i`) the
/// primary exactly when it is drawn with a busier one: probability 2(n-1-i) / (n(n-1)).
/// Sampling with replacement would instead give the busiest backend 1/n² and shift the rest.
#[test]
fn two_choices_primary_shares_match_the_distinct_pair_formula() {
    let n = 10;
    let mut lb = LeastRequest::new(&pool(&[1; 10]), 2, 1.0);
    let mut load = FakeLoad::new(&(0..n as u64).collect::<Vec<_>>());
    let shares = primary_shares(&mut lb, &mut load, &accept_all, 20_000, 3);
    for (i, &share) in shares.iter().enumerate() {
        let expected = 2.0 * (n - 1 - i) as f64 / (n * (n - 1)) as f64;
        // Standard deviation <= sqrt(0.2 * 0.8 / 20000) = 0.0028; allow ~5 of them.
        assert!((share - expected).abs() < 0.015, "backend {i}: {share} vs {expected}");
    }
    assert_eq!(shares[n - 1], 0.0);
}

#[test]
fn a_backend_far_busier_than_the_others_is_never_the_primary() {
    let mut lb = LeastRequest::new(&pool(&[1; 5]), 2, 1.0);
    let mut load = FakeLoad::new(&[2, 0, 1, 100, 0]);
    let shares = primary_shares(&mut lb, &mut load, &accept_all, 10_000, 4);
    // Two distinct candidates: the busiest loses every comparison.
    assert_eq!(shares[3], 0.0);
    // Expected primary shares of counts 0,0,1,2 among 5: ties at 0 split the pair {1,4}.
    // Backend 1 or 4 wins when drawn with anything but each other (3 pairs each) plus half of
    // their pair: 3.5/10. Backend 2 wins against 0 and 3: 2/10. Backend 0 wins against 3: 1/10.
    let expected = [0.1, 0.35, 0.2, 0.0, 0.35];
    for (i, (&s, &e)) in shares.iter().zip(&expected).enumerate() {
        assert!((s - e).abs() < 0.02, "backend {i}: {s} vs {e}");
    }
}

#[test]
fn full_scan_always_picks_a_least_loaded_backend_and_orders_retries_by_load() {
    let mut lb = LeastRequest::new(&pool(&[1; 8]), 0, 1.0);
    let mut rng = fastrand::Rng::with_seed(5);
    for round in 0..300 {
        let counts: Vec<u64> = (0..8).map(|_| rng.u64(0..6)).collect();
        let mut load = FakeLoad::new(&counts);
        let out = pick(&mut lb, &mut load, &|i| i != round % 8, &mut rng, 4);
        let min = (0..8).filter(|&i| i != round % 8).map(|i| counts[i]).min().unwrap();
        assert_eq!(counts[out[0]], min, "counts {counts:?} out {out:?}");
        assert!(out.windows(2).all(|w| counts[w[0]] <= counts[w[1]]));
        assert!(!out.contains(&(round % 8)));
    }
}

#[test]
fn equal_scores_are_broken_at_random_not_by_index() {
    for choice_count in [0, 2] {
        let mut lb = LeastRequest::new(&pool(&[1; 4]), choice_count, 1.0);
        let mut load = FakeLoad::new(&[3; 4]);
        let shares = primary_shares(&mut lb, &mut load, &accept_all, 8_000, 6);
        for (i, &s) in shares.iter().enumerate() {
            // sd = sqrt(0.25 * 0.75 / 8000) = 0.0048.
            assert!((s - 0.25).abs() < 0.025, "choice_count {choice_count} backend {i}: {s}");
        }
    }
}

#[test]
fn at_equal_load_the_heavier_backend_always_wins() {
    // Score = weight / (in_flight + 1): 1/6 against 3/6, every time; no 1:3 split per pick.
    for choice_count in [0, 2] {
        let mut lb = LeastRequest::new(&pool(&[1, 3]), choice_count, 1.0);
        let mut load = FakeLoad::new(&[5, 5]);
        assert_eq!(primary_shares(&mut lb, &mut load, &accept_all, 1_000, 8), vec![0.0, 1.0]);
    }
    // 1/1 against 3/3 is a tie (split at random); 1/1 against 3/4 goes to the lighter.
    let mut lb = LeastRequest::new(&pool(&[1, 3]), 0, 1.0);
    let shares = primary_shares(&mut lb, &mut FakeLoad::new(&[0, 2]), &accept_all, 4_000, 9);
    assert!((shares[0] - 0.5).abs() < 0.04, "{shares:?}");
    let shares = primary_shares(&mut lb, &mut FakeLoad::new(&[0, 3]), &accept_all, 1_000, 9);
    assert_eq!(shares, vec![1.0, 0.0]);
}

#[test]
fn weights_one_to_three_settle_at_in_flight_counts_near_one_to_three() {
    // Requests that never finish: each pick adds one to its primary's count. The score keeps
    // 3 / (k3 + 1) close to 1 / (k1 + 1), so after 400 picks k1 + 1 is about 402 / 4.
    let mut lb = LeastRequest::new(&pool(&[1, 3]), 0, 1.0);
    let mut load = FakeLoad::new(&[0, 0]);
    let mut rng = fastrand::Rng::with_seed(10);
    for _ in 0..400 {
        let primary = pick(&mut lb, &mut load, &accept_all, &mut rng, 1)[0];
        load.in_flight[primary] += 1;
    }
    let (k1, k3) = (load.in_flight[0], load.in_flight[1]);
    assert!((99..=101).contains(&k1), "in flight {k1}:{k3}");
    assert_eq!(k1 + k3, 400);
}

#[test]
fn bias_scales_how_much_load_counts_against_weight() {
    // Weights 2:1, in flight 1:0. Bias 2: 2/4 < 1/1. Bias 0.5: 2/1.41 > 1/1. Bias 0: 2 > 1.
    let cases = [(2.0, 1), (0.5, 0), (0.0, 0)];
    for (bias, winner) in cases {
        let mut lb = LeastRequest::new(&pool(&[2, 1]), 0, bias);
        let shares = primary_shares(&mut lb, &mut FakeLoad::new(&[1, 0]), &accept_all, 200, 11);
        assert_eq!(shares[winner], 1.0, "bias {bias}: {shares:?}");
    }
    // Bias 0 ignores load entirely when weights differ.
    let mut lb = LeastRequest::new(&pool(&[1, 3]), 2, 0.0);
    let shares = primary_shares(&mut lb, &mut FakeLoad::new(&[0, 1000]), &accept_all, 200, 12);
    assert_eq!(shares, vec![0.0, 1.0]);
}

#[test]
fn with_equal_weights_the_bias_is_ignored_as_in_envoy() {
    let mut lb = LeastRequest::new(&pool(&[2, 2, 2]), 0, 0.0);
    let shares = primary_shares(&mut lb, &mut FakeLoad::new(&[4, 0, 9]), &accept_all, 200, 13);
    assert_eq!(shares, vec![0.0, 1.0, 0.0]);
}

#[test]
fn an_invalid_bias_is_taken_as_one() {
    // Weights 2:1, in flight 3:0: bias 1 gives 2/4 < 1; a literal bias of -1 would give 8 > 1.
    for bias in [-1.0, f64::NAN, f64::INFINITY] {
        let mut lb = LeastRequest::new(&pool(&[2, 1]), 0, bias);
        let shares = primary_shares(&mut lb, &mut FakeLoad::new(&[3, 0]), &accept_all, 100, 14);
        assert_eq!(shares, vec![0.0, 1.0], "bias {bias}");
    }
}

#[test]
fn more_choices_than_accepted_backends_compares_all_of_them() {
    let mut lb = LeastRequest::new(&pool(&[1; 20]), 10, 1.0);
    let mut counts = vec![0u64; 20];
    (counts[2], counts[9], counts[15]) = (5, 1, 3);
    let mut load = FakeLoad::new(&counts);
    let mut rng = fastrand::Rng::with_seed(15);
    let accept = |i: usize| [2, 9, 15].contains(&i);
    for _ in 0..50 {
        assert_eq!(pick(&mut lb, &mut load, &accept, &mut rng, 10), vec![9, 15, 2]);
        let mut reads = load.reads.clone();
        reads.sort_unstable();
        assert_eq!(reads, vec![2, 9, 15]);
    }
}

#[test]
fn candidates_are_uniform_when_few_backends_are_accepted() {
    // 3 of 300 accepted: rejection draws mostly miss, so the exact pass does the work. Each of
    // the three pairs must come up a third of the time.
    let mut lb = LeastRequest::new(&pool(&[1; 300]), 2, 1.0);
    let mut load = FakeLoad::new(&[0; 300]);
    let mut rng = fastrand::Rng::with_seed(16);
    let accept = |i: usize| [7, 100, 299].contains(&i);
    let mut pairs = std::collections::HashMap::new();
    let picks = 6_000;
    for _ in 0..picks {
        pick(&mut lb, &mut load, &accept, &mut rng, 1);
        let mut reads = load.reads.clone();
        reads.sort_unstable();
        *pairs.entry(reads).or_insert(0usize) += 1;
    }
    assert_eq!(pairs.len(), 3, "{pairs:?}");
    for (pair, &count) in &pairs {
        let share = count as f64 / picks as f64;
        // sd = sqrt(2/9 / 6000) = 0.006.
        assert!((share - 1.0 / 3.0).abs() < 0.03, "{pair:?}: {share}");
    }
}

#[test]
fn retry_fill_positions_are_uniform() {
    let mut lb = LeastRequest::new(&pool(&[1; 10]), 2, 1.0);
    let mut load = FakeLoad::new(&[0; 10]);
    let mut rng = fastrand::Rng::with_seed(17);
    let mut first_fill = [0usize; 10];
    let mut last = [0usize; 10];
    let picks = 10_000;
    for _ in 0..picks {
        let out = pick(&mut lb, &mut load, &accept_all, &mut rng, 10);
        assert_eq!(out.len(), 10);
        first_fill[out[2]] += 1;
        last[out[9]] += 1;
    }
    for i in 0..10 {
        for (what, counts) in [("first fill", &first_fill), ("last", &last)] {
            let share = counts[i] as f64 / picks as f64;
            // sd = sqrt(0.09 / 10000) = 0.003.
            assert!((share - 0.1).abs() < 0.02, "{what} backend {i}: {share}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Picks are distinct and accepted, as many as capacity and acceptance allow; a pick reads
    /// exactly `choice_count` distinct accepted counts (all accepted for 0); the read candidates
    /// come first, best score first; the rest were not read.
    #[test]
    fn picks_follow_the_contract(
        accepted in proptest::collection::vec(any::<bool>(), 1..40),
        counts_seed in any::<u64>(),
        choice_count in 0usize..8,
        cap in 1usize..=10,
        weights_differ in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let n = accepted.len();
        let mut crng = fastrand::Rng::with_seed(counts_seed);
        let counts: Vec<u64> = (0..n).map(|_| crng.u64(0..5)).collect();
        let weights: Vec<u32> = (0..n).map(|_| if weights_differ { crng.u32(1..4) } else { 1 }).collect();
        let mut lb = LeastRequest::new(&pool(&weights), choice_count, 1.0);
        let mut load = FakeLoad::new(&counts);
        let mut rng = fastrand::Rng::with_seed(seed);
        let accept = |i: usize| accepted[i];
        let n_accepted = accepted.iter().filter(|&&a| a).count();
        for _ in 0..3 {
            let out = pick(&mut lb, &mut load, &accept, &mut rng, cap);
            prop_assert!(is_distinct(&out));
            prop_assert!(out.iter().all(|&i| accepted[i]));
            prop_assert_eq!(out.len(), cap.min(n_accepted));
            let reads = load.reads.clone();
            prop_assert!(is_distinct(&reads));
            prop_assert!(reads.iter().all(|&i| accepted[i]));
            let want = if choice_count == 0 { n_accepted } else { choice_count.min(n_accepted) };
            prop_assert_eq!(reads.len(), want);
            let score = |i: usize| f64::from(weights[i]) / (counts[i] as f64 + 1.0);
            let head = reads.len().min(out.len());
            prop_assert!(out[..head].iter().all(|i| reads.contains(i)));
            prop_assert!(out[head..].iter().all(|i| !reads.contains(i)));
            prop_assert!(out[..head].windows(2).all(|w| score(w[0]) >= score(w[1])));
            if let Some(&primary) = out.first() {
                prop_assert!(reads.iter().all(|&r| score(primary) >= score(r)));
            }
        }
    }
}
