//! Native tests of least time: the peak-EWMA estimator against its closed form with injected
//! times (peaks, half-life, idle decay, clock skew), and the balancer's picks, load reads,
//! avoidance of slow and failing backends, recovery after idling, and weights.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::lb::testkit::{accept_all, pick_in, pool, FakeLoad};
use crate::MS;
use proptest::prelude::*;

const SEC: u64 = 1_000_000_000;
/// Decay constant used throughout: one second.
const TAU: u64 = SEC;

/// Default RTT 30 ms, decay 1 s, error penalty 1 s, built at time 0.
fn least_time(weights: &[u32]) -> LeastTime {
    LeastTime::new(&pool(weights), 30 * MS, TAU, SEC, 0)
}

/// One pick of capacity `cap` at `now_ns`; the load's read log is cleared first.
fn pick(
    lb: &mut LeastTime,
    load: &mut FakeLoad,
    accept: &dyn Fn(usize) -> bool,
    rng: &mut fastrand::Rng,
    cap: usize,
    now_ns: u64,
) -> Vec<usize> {
    load.reads.clear();
    pick_in(lb, &mut PickCtx { accept, rng, key: None, load, now_ns, reported: None }, cap)
}

/// Primary shares over `picks` picks at a fixed `now_ns`, observing nothing.
fn primary_shares(lb: &mut LeastTime, load: &mut FakeLoad, picks: usize, now_ns: u64) -> Vec<f64> {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut counts = vec![0usize; load.in_flight.len()];
    for _ in 0..picks {
        counts[pick(lb, load, &accept_all, &mut rng, 1, now_ns)[0]] += 1;
    }
    counts.iter().map(|&c| c as f64 / picks as f64).collect()
}

fn ok(rtt_ns: u64) -> Outcome {
    Outcome::Response { rtt_ns, failed: false }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1.0)
}

// ---------------------------------------------------------------------------------------------
// PeakEwma
// ---------------------------------------------------------------------------------------------

#[test]
fn the_default_rtt_is_the_estimate_before_any_sample_and_decays_like_one() {
    let e = PeakEwma::new(30 * MS, TAU, 5 * SEC);
    assert_eq!(e.estimate_at(5 * SEC), 30e6);
    let after = e.estimate_at(5 * SEC + TAU);
    assert!(close(after, 30e6 * (-1.0f64).exp(), 1e-12), "{after}");
}

#[test]
fn a_sample_above_the_estimate_replaces_it_at_once() {
    let mut e = PeakEwma::new(30 * MS, TAU, 0);
    e.observe(100 * MS, 10 * MS);
    assert_eq!(e.estimate_at(10 * MS), 100e6);
    let mut e = PeakEwma::new(100 * MS, TAU, 0);
    e.observe(120 * MS, 3 * TAU);
    assert_eq!(e.estimate_at(3 * TAU), 120e6);
}

#[test]
fn a_sample_between_the_decayed_and_the_last_estimate_is_averaged_in() {
    // 100 ms set at 0 reads 36.8 ms after one decay time; a 50 ms sample then gives
    // 100 e^-1 + 50 (1 - e^-1) = 68.4 ms: at least the sample, continuous with the peak rule.
    let mut e = PeakEwma::new(100 * MS, TAU, 0);
    e.observe(50 * MS, TAU);
    let w = (-1.0f64).exp();
    assert!(close(e.estimate_at(TAU), 100e6 * w + 50e6 * (1.0 - w), 1e-12));
}

#[test]
fn faster_samples_converge_along_the_exponential_whatever_their_spacing() {
    let (peak, rtt) = (100.0e6, 10.0e6);
    let t_end = 1_750 * MS;
    for step in [MS, 7 * MS, 250 * MS, t_end] {
        let mut e = PeakEwma::new(100 * MS, TAU, 0);
        let mut t = 0;
        while t < t_end {
            t += step;
            e.observe(10 * MS, t);
        }
        let decay = (-(t_end as f64) / TAU as f64).exp();
        let want = peak * decay + rtt * (1.0 - decay);
        let got = e.estimate_at(t_end);
        assert!(close(got, want, 1e-9), "step {step}: {got} vs {want}");
    }
}

#[test]
fn the_half_life_is_decay_times_ln_2() {
    let half_life = (TAU as f64 * std::f64::consts::LN_2).round() as u64;
    let mut e = PeakEwma::new(100 * MS, TAU, 0);
    e.observe(20 * MS, half_life);
    assert!(close(e.estimate_at(half_life), 60e6, 1e-6), "{}", e.estimate_at(half_life));
}

#[test]
fn an_idle_estimate_decays_toward_zero() {
    let mut e = PeakEwma::new(30 * MS, TAU, 0);
    e.observe(80 * MS, SEC);
    let half_life = (TAU as f64 * std::f64::consts::LN_2).round() as u64;
    assert!(close(e.estimate_at(SEC + half_life), 40e6, 1e-6));
    let late = e.estimate_at(SEC + 30 * TAU);
    assert!(late > 0.0 && late < 1.0, "{late}");
    assert_eq!(e.estimate_at(u64::MAX), 0.0);
    // The next sample sets the estimate again rather than averaging with the decayed value.
    e.observe(50 * MS, SEC + 30 * TAU);
    assert!(close(e.estimate_at(SEC + 30 * TAU), 50e6, 1e-9));
}

#[test]
fn a_clock_going_backwards_counts_as_no_time() {
    let mut e = PeakEwma::new(30 * MS, TAU, 0);
    e.observe(50 * MS, 10 * SEC);
    assert_eq!(e.estimate_at(5 * SEC), 50e6);
    e.observe(10 * MS, 5 * SEC);
    assert_eq!(e.estimate_at(10 * SEC), 50e6);
    e.observe(70 * MS, 5 * SEC);
    assert_eq!(e.estimate_at(10 * SEC), 70e6);
    // The last update stays at 10 s: decay is measured from there.
    assert!(close(e.estimate_at(10 * SEC + TAU), 70e6 * (-1.0f64).exp(), 1e-12));
}

#[test]
fn a_zero_decay_is_taken_as_one_nanosecond() {
    let mut e = PeakEwma::new(MS, 0, 0);
    e.observe(0, 0);
    assert_eq!(e.estimate_at(0), 1e6);
    assert!(close(e.estimate_at(1), 1e6 * (-1.0f64).exp(), 1e-12));
    e.observe(5, 100);
    assert!(close(e.estimate_at(100), 5.0, 1e-9));
}

proptest! {
    /// Whatever the samples and however the clock moves, the estimate is finite, within
    /// [0, largest value seen], and right after observing `rtt` it is at least `rtt`.
    #[test]
    fn the_estimate_stays_finite_bounded_and_at_least_the_last_sample(
        default_rtt in 0u64..10 * SEC,
        decay in 0u64..100 * SEC,
        ops in proptest::collection::vec((0u64..u64::MAX / 2, -(SEC as i64)..(10 * SEC) as i64, any::<bool>()), 1..60),
    ) {
        let mut now = 20 * SEC;
        let mut e = PeakEwma::new(default_rtt, decay, now);
        let mut max = default_rtt as f64;
        for (rtt, dt, observe) in ops {
            now = now.saturating_add_signed(dt);
            if observe {
                e.observe(rtt, now);
                max = max.max(rtt as f64);
                let v = e.estimate_at(now);
                prop_assert!(v >= rtt as f64 * (1.0 - 1e-12), "{} < {}", v, rtt);
            }
            let v = e.estimate_at(now);
            prop_assert!(v.is_finite() && v >= 0.0 && v <= max * (1.0 + 1e-12), "{}", v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// LeastTime
// ---------------------------------------------------------------------------------------------

#[test]
fn uses_load_and_starts_every_backend_at_the_default() {
    let lb = least_time(&[1, 1, 1]);
    assert!(lb.uses_load());
    assert_eq!(lb.estimate_at(2, 0), Some(30e6));
    assert_eq!(lb.estimate_at(3, 0), None);
}

#[test]
fn a_pick_reads_two_counts_and_fills_retries_without_reading() {
    let mut lb = least_time(&[1; 8]);
    let mut load = FakeLoad::new(&[3, 0, 5, 1, 2, 7, 4, 6]);
    let mut rng = fastrand::Rng::with_seed(1);
    for _ in 0..300 {
        let out = pick(&mut lb, &mut load, &accept_all, &mut rng, 5, 0);
        assert_eq!(load.reads.len(), 2);
        let (a, b) = (load.reads[0], load.reads[1]);
        assert_ne!(a, b);
        // Equal estimates: the fewer in flight wins, the other candidate comes second.
        let (lo, hi) = if load.in_flight[a] < load.in_flight[b] { (a, b) } else { (b, a) };
        assert_eq!(&out[..2], &[lo, hi]);
        assert_eq!(out.len(), 5);
        assert!(out[2..].iter().all(|i| !load.reads.contains(i)));
    }
    assert_eq!(pick(&mut lb, &mut load, &|i| i == 6, &mut rng, 5, 0), vec![6]);
    assert_eq!(load.reads, vec![6]);
    assert!(pick(&mut lb, &mut load, &|_| false, &mut rng, 5, 0).is_empty());
    assert!(load.reads.is_empty());
}

#[test]
fn cost_is_estimate_times_in_flight_plus_one() {
    let mut lb = least_time(&[1, 1]);
    lb.observe(0, ok(10 * MS), 10 * TAU);
    lb.observe(1, ok(3 * MS), 10 * TAU);
    let now = 10 * TAU;
    // 10 x 1 against 3 x 4: the slower but idle backend wins; 3 x 3 would beat it.
    assert_eq!(primary_shares(&mut lb, &mut FakeLoad::new(&[0, 3]), 200, now), vec![1.0, 0.0]);
    assert_eq!(primary_shares(&mut lb, &mut FakeLoad::new(&[0, 2]), 200, now), vec![0.0, 1.0]);
}

#[test]
fn cost_is_divided_by_weight() {
    let mut lb = least_time(&[1, 3]);
    // Equal estimates (the default). e x 1 / 1 against e x 2 / 3: the heavier wins.
    assert_eq!(primary_shares(&mut lb, &mut FakeLoad::new(&[0, 1]), 200, 0), vec![0.0, 1.0]);
    // e against e x 4 / 3: the lighter wins. e against e x 3 / 3: a tie, split at random.
    assert_eq!(primary_shares(&mut lb, &mut FakeLoad::new(&[0, 3]), 200, 0), vec![1.0, 0.0]);
    let shares = primary_shares(&mut lb, &mut FakeLoad::new(&[0, 2]), 4_000, 0);
    assert!((shares[0] - 0.5).abs() < 0.04, "{shares:?}");
}

#[test]
fn equal_costs_are_broken_at_random() {
    let mut lb = least_time(&[1; 4]);
    let shares = primary_shares(&mut lb, &mut FakeLoad::new(&[2; 4]), 8_000, 0);
    for (i, &s) in shares.iter().enumerate() {
        // sd = sqrt(0.25 * 0.75 / 8000) = 0.0048.
        assert!((s - 0.25).abs() < 0.025, "backend {i}: {s}");
    }
}

/// Backend 0 answers in 50 ms, backends 1 and 2 in 1 ms; one request per millisecond, each
/// observed when picked, equal in-flight counts.
struct Simulation {
    lb: LeastTime,
    load: FakeLoad,
    rng: fastrand::Rng,
    now: u64,
}

impl Simulation {
    fn new() -> Self {
        let mut lb = least_time(&[1, 1, 1]);
        let now = 10 * TAU; // long enough for the 30 ms default to be forgotten
        for (b, rtt) in [(0, 50 * MS), (1, MS), (2, MS)] {
            lb.observe(b, ok(rtt), now);
        }
        Simulation { lb, load: FakeLoad::new(&[1, 1, 1]), rng: fastrand::Rng::with_seed(3), now }
    }

    /// Runs `requests` picks; returns how often the slow backend was the primary.
    fn run(&mut self, requests: usize) -> usize {
        let mut slow = 0;
        for _ in 0..requests {
            self.now += MS;
            let primary =
                pick(&mut self.lb, &mut self.load, &accept_all, &mut self.rng, 1, self.now)[0];
            let rtt = if primary == 0 { 50 * MS } else { MS };
            self.lb.observe(primary, ok(rtt), self.now);
            slow += usize::from(primary == 0);
        }
        slow
    }
}

#[test]
fn a_slow_backend_gets_little_traffic_and_is_retried_after_idling() {
    let mut sim = Simulation::new();
    let first = sim.run(1_000);
    assert!(first < 100, "slow backend primary {first} of 1000");
    // Unpicked, its 50 ms decays below the busy backends' 1 ms after ln(50) = 3.9 decay times;
    // then it is tried, observed at 50 ms again and avoided anew.
    let later = sim.run(10_000);
    assert!(later >= 1, "the slow backend was never retried");
    assert!(later < 1_000, "slow backend primary {later} of 10000");
}

#[test]
fn an_idle_slow_backend_regains_traffic_once_its_estimate_decays() {
    let mut sim = Simulation::new();
    // Only the fast backends serve (the slow one is not accepted) for 5 decay times.
    for _ in 0..5_000 {
        sim.now += MS;
        let primary = pick(&mut sim.lb, &mut sim.load, &|i| i != 0, &mut sim.rng, 1, sim.now)[0];
        sim.lb.observe(primary, ok(MS), sim.now);
    }
    let slow = sim.lb.estimate_at(0, sim.now).unwrap();
    assert!(slow < 0.5e6, "slow estimate {slow}");
    // 50 ms e^-5 = 0.34 ms is now cheapest: it wins whenever drawn, 2 pairs of 3.
    let shares = primary_shares(&mut sim.lb, &mut sim.load, 6_000, sim.now);
    assert!((shares[0] - 2.0 / 3.0).abs() < 0.03, "{shares:?}");
}

#[test]
fn errors_are_penalised() {
    let mut lb = least_time(&[1, 1]);
    let now = 10 * TAU;
    lb.observe(0, ok(MS), now);
    lb.observe(1, ok(MS), now);
    // A fast failure counts as the penalty, so it does not attract traffic.
    lb.observe(0, Outcome::Response { rtt_ns: MS, failed: true }, now + MS);
    assert!(close(lb.estimate_at(0, now + MS).unwrap(), 1e9, 1e-9));
    assert_eq!(primary_shares(&mut lb, &mut FakeLoad::new(&[0, 0]), 200, now + MS), vec![0.0, 1.0]);
    // A slow failure counts as its own time when above the penalty.
    lb.observe(0, Outcome::Response { rtt_ns: 3 * SEC, failed: true }, now + 2 * MS);
    assert!(close(lb.estimate_at(0, now + 2 * MS).unwrap(), 3e9, 1e-9));
    // No response counts as the penalty.
    lb.observe(1, Outcome::NoResponse, now + 2 * MS);
    assert!(close(lb.estimate_at(1, now + 2 * MS).unwrap(), 1e9, 1e-9));
    // A success right after a failure moves the estimate only a little.
    lb.observe(1, ok(MS), now + 3 * MS);
    assert!(lb.estimate_at(1, now + 3 * MS).unwrap() > 0.99e9);
}

#[test]
fn observations_of_unknown_backends_are_ignored() {
    let mut lb = least_time(&[1, 1]);
    lb.observe(2, ok(5 * SEC), 0);
    lb.observe(usize::MAX, Outcome::NoResponse, 0);
    assert_eq!(lb.estimate_at(0, 0), Some(30e6));
    assert_eq!(lb.estimate_at(1, 0), Some(30e6));
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        (0u64..10 * SEC, any::<bool>())
            .prop_map(|(rtt_ns, failed)| Outcome::Response { rtt_ns, failed }),
        Just(Outcome::NoResponse),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// After any sequence of observations (unknown backends included, clock going either way),
    /// estimates are finite and non-negative, and picks follow the contract: distinct,
    /// accepted, full when enough are accepted, with min(2, accepted) load reads.
    #[test]
    fn estimates_stay_sane_and_picks_follow_the_contract(
        accepted in proptest::collection::vec(any::<bool>(), 1..16),
        observations in proptest::collection::vec((0usize..20, outcome(), -(SEC as i64)..(5 * SEC) as i64), 0..80),
        cap in 1usize..=10,
        seed in any::<u64>(),
    ) {
        let n = accepted.len();
        let weights: Vec<u32> = (0..n).map(|i| 1 + (i as u32 % 3)).collect();
        let mut lb = LeastTime::new(&pool(&weights), 30 * MS, TAU, SEC, 0);
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut load = FakeLoad::new(&(0..n).map(|_| rng.u64(0..4)).collect::<Vec<_>>());
        let accept = |i: usize| accepted[i];
        let n_accepted = accepted.iter().filter(|&&a| a).count();
        let mut now = 30 * SEC;
        for (backend, outcome, dt) in observations {
            now = now.saturating_add_signed(dt);
            lb.observe(backend, outcome, now);
            for b in 0..n {
                let v = lb.estimate_at(b, now).unwrap();
                prop_assert!(v.is_finite() && v >= 0.0, "backend {} estimate {}", b, v);
            }
            let out = pick(&mut lb, &mut load, &accept, &mut rng, cap, now);
            prop_assert!(out.iter().enumerate().all(|(k, x)| !out[..k].contains(x)));
            prop_assert!(out.iter().all(|&i| accepted[i]));
            prop_assert_eq!(out.len(), cap.min(n_accepted));
            prop_assert_eq!(load.reads.len(), n_accepted.min(2));
            prop_assert!(out.iter().take(load.reads.len().min(cap)).all(|i| load.reads.contains(i)));
        }
    }
}

/// Through the `Balancer` trait (as the adapter sees it): least time learns from response
/// times and reports each backend's estimate, `None` past the pool.
#[test]
fn the_balancer_reports_its_estimates() {
    let mut lt = least_time(&[1, 1]);
    let b: &mut dyn Balancer = &mut lt;
    assert!(b.learns_latency() && b.uses_load());
    b.observe(1, ok(80 * MS), SEC);
    assert_eq!(b.latency_ns(1, SEC), Some(80.0 * MS as f64));
    let idle = b.latency_ns(0, SEC).unwrap();
    assert!((idle - 30.0 * MS as f64 * (-1.0f64).exp()).abs() < 1.0, "{idle}");
    assert_eq!(b.latency_ns(2, SEC), None);
}

/// The order of two accepted backends `a`, `b` by the exact cost at `now`: `Some(true)` when
/// `a` costs less; `None` on a tie, or when a cost has decayed to a subnormal number (below
/// 2.2e-308 ns, hundreds of decay times idle), where rounding decides.
fn exact_order(lb: &LeastTime, load: &FakeLoad, a: usize, b: usize, now: u64) -> Option<bool> {
    let cost = |i: usize| LeastTime::cost(&lb.ewma, &lb.weight, i, load.in_flight[i], now);
    let (ca, cb) = (cost(a), cost(b));
    (ca != cb && ca.min(cb) >= f64::MIN_POSITIVE).then_some(ca < cb)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Picks compare rescaled estimates (no exponential per candidate); in time order, and
    /// across anchor moves (gaps of up to 600 decay times), they order any two backends as the
    /// exact cost `estimate × (in_flight + 1) / weight` does.
    #[test]
    fn rescaled_comparisons_order_as_the_exact_cost(
        steps in proptest::collection::vec((0usize..4, 1u64..200 * MS, 0u64..3, prop_oneof![0u64..2 * TAU, 0u64..600 * TAU]), 1..60),
        seed in any::<u64>(),
    ) {
        let mut lb = LeastTime::new(&pool(&[1, 2, 3, 1]), 30 * MS, TAU, SEC, 0);
        let mut load = FakeLoad::new(&[0; 4]);
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut now = 0;
        for (backend, rtt, in_flight, dt) in steps {
            now += dt;
            lb.observe(backend, ok(rtt), now);
            load.in_flight[backend] = in_flight;
            prop_assert!(lb.scaled.iter().all(|s| s.is_finite() && *s >= 0.0), "{:?}", lb.scaled);
            let later = now + rng.u64(0..3 * TAU);
            for (a, b) in [(0, 1), (1, 2), (2, 3), (0, 3)] {
                let accept = |i: usize| i == a || i == b;
                let got = pick(&mut lb, &mut load, &accept, &mut rng, 2, later);
                if let Some(a_first) = exact_order(&lb, &load, a, b, later) {
                    prop_assert_eq!(got[0] == a, a_first, "{:?} at {}: {:?}", got, later, lb.scaled);
                }
            }
        }
    }
}

#[test]
fn the_anchor_moves_and_scaled_estimates_stay_finite() {
    let mut lb = least_time(&[1, 1]);
    // 1000 decay times apart: past e^709 the old scale would overflow.
    lb.observe(0, ok(10 * MS), 1000 * TAU);
    lb.observe(1, ok(20 * MS), 2000 * TAU);
    assert!(lb.scaled.iter().all(|s| s.is_finite()), "{:?}", lb.scaled);
    assert_eq!(lb.anchor_ns, 2000 * TAU);
    // Backend 0's 10 ms set 1000 decay times ago is 0 now; backend 1 costs 20 ms.
    let mut load = FakeLoad::new(&[0, 0]);
    let mut rng = fastrand::Rng::with_seed(1);
    assert_eq!(pick(&mut lb, &mut load, &accept_all, &mut rng, 2, 2000 * TAU), vec![0, 1]);
}

#[test]
fn a_pick_before_the_latest_observation_decays_each_estimate_exactly() {
    // Backend 1 observed at 10 s (2 µs averaged into its 30 ms default decayed by e^-10:
    // 3.36 µs), then a pick "at 9 s" (a clock going backwards): backend 1's estimate does not
    // decay (its update is in the future), backend 0's 30 ms set at 0 reads 30 ms e^-9 = 3.70 µs.
    // Backend 1 is cheaper; the rescaled form would grow it by e (9.1 µs) and rank it second.
    let mut lb = least_time(&[1, 1]);
    lb.observe(1, ok(2_000), 10 * SEC);
    let (b0, b1) = (lb.estimate_at(0, 9 * SEC).unwrap(), lb.estimate_at(1, 9 * SEC).unwrap());
    assert!(b1 < b0 && b1 * std::f64::consts::E > b0, "{b0} {b1}");
    let mut load = FakeLoad::new(&[0, 0]);
    let mut rng = fastrand::Rng::with_seed(2);
    assert_eq!(pick(&mut lb, &mut load, &accept_all, &mut rng, 2, 9 * SEC), vec![1, 0]);
    // In time order again (at 10 s): 3.36 µs against 30 ms e^-10 = 1.36 µs.
    assert_eq!(pick(&mut lb, &mut load, &accept_all, &mut rng, 2, 10 * SEC), vec![0, 1]);
}

#[test]
fn a_carried_over_estimate_decays_with_this_balancers_constant() {
    let mut lb = least_time(&[1, 1]);
    // Learned elsewhere with a 10 s constant: 100 ms at 2 s.
    let mut other = PeakEwma::new(100 * MS, 10 * SEC, 0);
    other.observe(100 * MS, 2 * SEC);
    lb.relearn(0, other);
    assert_eq!(lb.estimate_at(0, 2 * SEC), Some(100e6));
    let later = lb.estimate_at(0, 2 * SEC + TAU).unwrap();
    assert!(close(later, 100e6 * (-1.0f64).exp(), 1e-12), "{later}");
    // And it ranks: 100 ms e^-1 = 36.8 ms against backend 1's 30 ms e^-3 = 1.5 ms.
    let mut load = FakeLoad::new(&[0, 0]);
    let mut rng = fastrand::Rng::with_seed(3);
    assert_eq!(pick(&mut lb, &mut load, &accept_all, &mut rng, 2, 3 * SEC), vec![1, 0]);
}
