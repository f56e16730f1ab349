//! Weighted random: a backend is drawn with probability weight / total (binary search over
//! cumulative weights); retry hosts are further draws without replacement, so the list holds
//! distinct backends in weighted order.

use super::{Balancer, PickCtx, Picks};

/// Rejection draws per wanted pick before drawing exactly over what remains.
const DRAWS_PER_PICK: usize = 4;

#[derive(Debug, Clone)]
pub struct WeightedRandom {
    weight: Vec<u64>,
    /// `cumulative[i]` = sum of weights 0..=i.
    cumulative: Vec<u64>,
}

impl WeightedRandom {
    pub fn new(weights: impl Iterator<Item = u32>) -> Self {
        let weight: Vec<u64> = weights.map(u64::from).collect();
        let cumulative = weight
            .iter()
            .scan(0u64, |sum, &w| {
                *sum += w;
                Some(*sum)
            })
            .collect();
        WeightedRandom { weight, cumulative }
    }

    fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
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
        let total = self.total();
        if total == 0 {
            return;
        }
        // Fast path: draw over everything, reject what is unacceptable or already picked.
        // Conditioned on acceptance, each draw follows the exact remaining distribution.
        for _ in 0..out.capacity() * DRAWS_PER_PICK {
            if out.is_full() {
                return;
            }
            let r = rng.u64(0..total);
            let i = self.cumulative.partition_point(|&c| c <= r);
            if accept(i) {
                out.push(i);
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
