//! Power of `d` choices over a cost function, shared by every load-aware algorithm: each pick
//! samples `d` distinct accepted backends uniformly at random, reads their in-flight counts
//! (one host call each) and ranks them by the algorithm's cost, lowest first, equal costs in a
//! random order; `d == 0` ranks every accepted backend. Retry hosts after the ranked ones are
//! further distinct accepted backends in random order, whose load is not read. O(d) per pick
//! (O(n) only in the sampler's exact fallback or a full scan); no allocation.
//!
//! Sampling two instead of one shrinks the worst queue exponentially, and two is nearly as good
//! as a full scan (M. Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing",
//! IEEE TPDS 12(10), 2001). As in tower (`tower/src/balance/p2c` apart from `tower/src/load`)
//! and Finagle (`P2CPeakEwma`), the choice knows nothing of the load metric: `least_request`
//! and `least_time` are cost functions fed to it.

use super::{tie_break, PickCtx, Picks, TopK};
use crate::config::MAX_HOSTS_LIMIT;

/// Random draws per wanted candidate before the exact fallback pass.
const DRAWS_PER_CHOICE: usize = 4;

/// Power of `d` choices over one pool; `d == 0` is a full scan.
#[derive(Debug, Clone)]
pub(crate) struct P2c {
    choices: usize,
    sampler: Sampler,
}

impl P2c {
    pub(crate) fn new(backends: usize, choices: usize) -> Self {
        P2c { choices, sampler: Sampler::new(backends) }
    }

    /// Clears `out`, then fills it: the candidates by `cost(index, in_flight, now_ns)`, lowest
    /// first (NaN last), then random retry hosts.
    pub(crate) fn pick(
        &mut self,
        ctx: &mut PickCtx<'_>,
        out: &mut Picks,
        cost: impl Fn(usize, u64, u64) -> f64,
    ) {
        out.clear();
        let (accept, now_ns) = (ctx.accept, ctx.now_ns);
        let salt = ctx.rng.u64(..);
        let mut best = TopK::new(out.capacity());
        let load = &mut *ctx.load;
        let offer = |i: usize| {
            let score = -cost(i, load.in_flight(i), now_ns);
            let score = if score.is_nan() { f64::NEG_INFINITY } else { score };
            best.offer(i, (score, tie_break(i, salt)));
        };
        let sampler = &mut self.sampler;
        if self.choices == 0 {
            (0..sampler.mark.len()).filter(|&i| accept(i)).for_each(offer);
            // Every accepted backend was ranked: nothing is left to fill with.
            best.push_into(out);
            return;
        }
        sampler.begin();
        sampler.sample(self.choices, accept, ctx.rng, offer);
        best.push_into(out);
        sampler.fill_random(out, accept, ctx.rng);
    }
}

/// Draws distinct backends uniformly at random without replacement. `mark[i] == epoch` means
/// backend `i` was already drawn during the current pick; starting a pick bumps the epoch, so
/// forgetting costs nothing (and one O(n) clear every 2^32 picks). Allocated once per pool.
#[derive(Debug, Clone)]
struct Sampler {
    mark: Vec<u32>,
    epoch: u32,
}

impl Sampler {
    fn new(backends: usize) -> Self {
        Sampler { mark: vec![0; backends], epoch: 0 }
    }

    /// Forgets what the previous pick drew.
    fn begin(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.mark.fill(0);
            self.epoch = 1;
        }
    }

    fn is_free(&self, i: usize) -> bool {
        self.mark.get(i).is_some_and(|&m| m != self.epoch)
    }

    fn take(&mut self, i: usize) {
        if let Some(m) = self.mark.get_mut(i) {
            *m = self.epoch;
        }
    }

    /// Visits up to `count` backends not yet drawn in this pick for which `accept` holds, each
    /// uniform over those remaining, and marks them drawn; returns how many were visited.
    /// Rejection draws first (bounded); then an exact pass: count what remains, then Knuth's
    /// selection sampling (TAOCP vol. 2, 3.4.2, Algorithm S), which keeps each remaining
    /// backend with probability needed / left. Visits fewer only when fewer remain.
    fn sample(
        &mut self,
        count: usize,
        accept: &dyn Fn(usize) -> bool,
        rng: &mut fastrand::Rng,
        mut visit: impl FnMut(usize),
    ) -> usize {
        let n = self.mark.len();
        if n == 0 || count == 0 {
            return 0;
        }
        let mut taken = 0;
        for _ in 0..count.saturating_mul(DRAWS_PER_CHOICE) {
            if taken == count {
                return taken;
            }
            let i = rng.usize(0..n);
            if self.is_free(i) && accept(i) {
                self.take(i);
                visit(i);
                taken += 1;
            }
        }
        let mut left = (0..n).filter(|&i| self.is_free(i) && accept(i)).count();
        let mut need = count.saturating_sub(taken).min(left);
        for i in 0..n {
            if need == 0 || left == 0 {
                break;
            }
            if !(self.is_free(i) && accept(i)) {
                continue;
            }
            if rng.usize(0..left) < need {
                self.take(i);
                visit(i);
                taken += 1;
                need -= 1;
            }
            left -= 1;
        }
        taken
    }

    /// Appends to `out`, until it is full, accepted backends not yet drawn in this pick, in
    /// random order. Every backend already in `out` must have been drawn.
    fn fill_random(
        &mut self,
        out: &mut Picks,
        accept: &dyn Fn(usize) -> bool,
        rng: &mut fastrand::Rng,
    ) {
        let want = out.capacity().saturating_sub(out.len());
        let mut drawn = [0usize; MAX_HOSTS_LIMIT];
        let mut len = 0;
        self.sample(want, accept, rng, |i| {
            if let Some(slot) = drawn.get_mut(len) {
                *slot = i;
                len += 1;
            }
        });
        // The exact pass yields index order; shuffle so every retry position is random.
        let drawn = drawn.get_mut(..len).unwrap_or(&mut []);
        rng.shuffle(drawn);
        for &i in drawn.iter() {
            out.push(i);
        }
    }
}

#[cfg(test)]
mod tests;
