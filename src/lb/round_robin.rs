//! Smooth weighted round robin, as in nginx (`ngx_http_upstream_get_peer`, 2012): every pick
//! adds each candidate's weight to its running score, takes the highest score and subtracts the
//! total. Over every cycle of `sum(weights)` picks each backend gets exactly its weight's share,
//! interleaved rather than in bursts (weights 5,1,1 give a a b a c a a). Backends the caller does
//! not accept are skipped without scoring, so their share spreads over the others by weight.
//! Retry hosts are the next-highest scores: the backends the following picks would choose;
//! equal scores are ordered at random per request, so the retries of a failing backend spread
//! evenly over the others instead of all landing on its successor.

use super::{fill_by_bounded_rank, tie_break, Balancer, PickCtx, Picks};

/// Low bits of a retry rank that order equal scores (the top bits of [`tie_break`]). Scores stay within ±(sum of weights)
/// <= 10^8 < 2^27 (weights <= 10^4, backends <= 10^4), so shifting by 20 cannot overflow.
const TIE_BITS: u32 = 20;

#[derive(Debug, Clone)]
pub struct SmoothWeighted {
    weight: Vec<i64>,
    current: Vec<i64>,
}

impl SmoothWeighted {
    pub fn new(weights: impl Iterator<Item = u32>) -> Self {
        let weight: Vec<i64> = weights.map(i64::from).collect();
        let current = vec![0; weight.len()];
        SmoothWeighted { weight, current }
    }
}

impl Balancer for SmoothWeighted {
    fn pick(&mut self, ctx: &mut PickCtx<'_>, out: &mut Picks) {
        out.clear();
        let accept = ctx.accept;
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        for (i, (cur, &w)) in self.current.iter_mut().zip(&self.weight).enumerate() {
            if !accept(i) {
                continue;
            }
            *cur += w;
            total += w;
            if best.is_none_or(|(_, b)| *cur > b) {
                best = Some((i, *cur));
            }
        }
        let Some((chosen, _)) = best else { return };
        if let Some(cur) = self.current.get_mut(chosen) {
            *cur -= total;
        }
        out.push(chosen);
        if out.is_full() {
            return;
        }
        let salt = ctx.rng.u64(..);
        let (current, weight) = (&self.current, &self.weight);
        let score =
            |i: usize| current.get(i).copied().unwrap_or(0) + weight.get(i).copied().unwrap_or(0);
        // The tie bits are below 2^TIE_BITS, so `score | all ones` bounds the rank.
        let bound = |i: usize| (score(i) << TIE_BITS) | ((1 << TIE_BITS) - 1);
        let rank =
            |i: usize| (score(i) << TIE_BITS) | (tie_break(i, salt) >> (64 - TIE_BITS)) as i64;
        fill_by_bounded_rank(out, weight.len(), accept, bound, rank);
    }
}
