//! Weighted random: a backend is drawn with probability weight / total in O(1) by Walker's alias
//! method (A. J. Walker, "An Efficient Method for Generating Discrete Random Variables with
//! General Distributions", ACM TOMS 3(3), 1977): one uniform column, then the column's own
//! backend or its alias by a threshold. The table is built in O(n) by Vose's algorithm (M. D.
//! Vose, "A Linear Algorithm for Generating Random Numbers with a Given Distribution", IEEE TSE
//! 17(9), 1991), in integers, so every backend's share of the table is exactly its weight's.
//!
//! Retry hosts are further draws without replacement: a draw landing on a backend already
//! picked or not accepted is rejected, and conditioned on acceptance each draw follows the exact
//! remaining distribution. O(1) per draw, at most [`DRAWS_PER_PICK`] draws per wanted pick;
//! when they all miss (less than about a quarter of the weight accepted and not yet picked),
//! each remaining pick is drawn exactly over what remains by one pass over the pool, O(n).

use super::{Balancer, PickCtx, Picks};

/// Rejection draws per wanted pick before drawing exactly over what remains.
const DRAWS_PER_PICK: usize = 4;

#[derive(Debug, Clone)]
pub struct WeightedRandom {
    weight: Vec<u64>,
    /// `total`, the sum of the weights.
    total: u64,
    /// Column `i` gives backend `i` below `threshold[i]` (out of `total`), else `alias[i]`.
    threshold: Vec<u64>,
    alias: Vec<u32>,
}

impl WeightedRandom {
    pub fn new(weights: impl Iterator<Item = u32>) -> Self {
        let weight: Vec<u64> = weights.map(u64::from).collect();
        let n = weight.len();
        let total: u64 = weight.iter().sum();
        // Vose: every column holds `total`; backend i brings weight·n of it.
        let mut rest: Vec<u128> = weight.iter().map(|&w| u128::from(w) * n as u128).collect();
        let full = u128::from(total);
        let mut threshold = vec![total; n];
        let mut alias: Vec<u32> = (0..n).map(|i| i as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| rest.get(i).is_some_and(|&r| r < full));
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            // Column s: its own rest, topped up from l.
            let own = rest.get(s).copied().unwrap_or(0);
            if let (Some(t), Some(a)) = (threshold.get_mut(s), alias.get_mut(s)) {
                *t = u64::try_from(own).unwrap_or(total);
                *a = l as u32;
            }
            if let Some(r) = rest.get_mut(l) {
                *r -= full - own;
                if *r < full {
                    large.pop();
                    small.push(l);
                }
            }
        }
        // In integers the rests are exact: what is left is exactly full (threshold `total`).
        WeightedRandom { weight, total, threshold, alias }
    }

    /// One draw by weight over every backend.
    #[inline(always)]
    fn draw(&self, rng: &mut fastrand::Rng) -> usize {
        // The high half of x·n is a uniform column; the low half, the position within it.
        let n = self.threshold.len() as u128;
        let spread = u128::from(rng.u64(..)) * n;
        let column = (spread >> 64) as usize;
        let at = ((u128::from(spread as u64) * u128::from(self.total)) >> 64) as u64;
        let (Some(&t), Some(&alias)) = (self.threshold.get(column), self.alias.get(column)) else {
            return column;
        };
        // Indexed by the comparison, not branched on it: a coin flip for the branch predictor.
        [column, alias as usize].get(usize::from(at >= t)).copied().unwrap_or(column)
    }

    /// Draws over the acceptable backends not yet picked; exact, O(n).
    fn draw_remaining(
        &self,
        accept: &dyn Fn(usize) -> bool,
        rng: &mut fastrand::Rng,
        out: &Picks,
    ) -> Option<usize> {
        let eligible = |i: usize| accept(i) && !out.contains(i);
        let sum: u64 =
            self.weight.iter().enumerate().filter(|&(i, _)| eligible(i)).map(|(_, &w)| w).sum();
        if sum == 0 {
            return None;
        }
        let mut r = rng.u64(0..sum);
        for (i, &w) in self.weight.iter().enumerate() {
            if !eligible(i) {
                continue;
            }
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        None
    }
}

impl Balancer for WeightedRandom {
    fn pick(&mut self, ctx: &mut PickCtx<'_>, out: &mut Picks) {
        out.clear();
        let (accept, rng) = (ctx.accept, &mut *ctx.rng);
        if self.total == 0 {
            return;
        }
        // Fast path: draw over everything, reject what is unacceptable or already picked.
        // Conditioned on acceptance, each draw follows the exact remaining distribution.
        for _ in 0..out.capacity() * DRAWS_PER_PICK {
            if out.is_full() {
                return;
            }
            let i = self.draw(rng);
            if !out.contains(i) && accept(i) {
                out.push_absent(i);
            }
        }
        // Each round adds one backend or ends the pick: at most `capacity` rounds.
        for _ in 0..out.capacity() {
            if out.is_full() {
                return;
            }
            match self.draw_remaining(accept, rng, out) {
                Some(i) => {
                    out.push(i);
                }
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Vose's table gives every backend exactly weight × n of the n columns of `total`.
        #[test]
        fn the_alias_table_holds_each_weight_exactly(
            weights in prop::collection::vec(prop_oneof![0u32..4, 0u32..=10_000, Just(u32::MAX)], 1..200),
        ) {
            let r = WeightedRandom::new(weights.iter().copied());
            let n = weights.len() as u128;
            let total = u128::from(r.total);
            let mut mass = vec![0u128; weights.len()];
            for (c, (&t, &a)) in r.threshold.iter().zip(&r.alias).enumerate() {
                prop_assert!(u128::from(t) <= total);
                mass[c] += u128::from(t);
                mass[a as usize] += total - u128::from(t);
            }
            for (j, &w) in weights.iter().enumerate() {
                prop_assert_eq!(mass[j], u128::from(w) * n, "backend {}", j);
            }
        }
    }

    #[test]
    fn a_draw_follows_the_columns() {
        // Weights 1, 3 over 2 columns of 4: column 0 keeps backend 0 below 2, else backend 1.
        let r = WeightedRandom::new([1, 3].into_iter());
        assert_eq!((r.threshold.clone(), r.alias.clone()), (vec![2, 4], vec![1, 1]));
        let mut rng = fastrand::Rng::with_seed(5);
        let mut count = [0usize; 2];
        for _ in 0..40_000 {
            count[r.draw(&mut rng)] += 1;
        }
        // sd = sqrt(3/16 / 40000) = 0.0022.
        assert!((count[0] as f64 / 40_000.0 - 0.25).abs() < 0.011, "{count:?}");
    }
}
