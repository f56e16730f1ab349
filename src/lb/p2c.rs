//! Power of `d` choices over a cost function, shared by every load-aware algorithm: each pick
//! samples `d` distinct accepted backends uniformly at random, reads their in-flight counts
//! (one host call each) and ranks them by the algorithm's cost, lowest first, equal costs in a
//! random order; `d == 0` ranks every accepted backend. Retry hosts after the ranked ones are
//! further distinct accepted backends in random order, whose load is not read. Equal costs need
//! no random key: the candidates are drawn in random order and the first drawn keeps its place.
//! O(d + capacity) per pick: at most 4 random draws per wanted backend; O(n) only when they
//! mostly miss (fewer than about a quarter of the pool accepted: the sampler's exact pass) or
//! for a full scan (`d == 0`, which orders equal costs by a random key); no allocation.
//!
//! Sampling two instead of one shrinks the worst queue exponentially, and two is nearly as good
//! as a full scan (M. Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing",
//! IEEE TPDS 12(10), 2001). As in tower (`tower/src/balance/p2c` apart from `tower/src/load`)
//! and Finagle (`P2CPeakEwma`), the choice knows nothing of the load metric: `least_request`
//! and `least_time` are cost functions fed to it.

use super::{below, tie_break, LoadView, PickCtx, Picks, TopK};

/// Random draws per wanted candidate before the exact fallback pass.
const DRAWS_PER_CHOICE: usize = 4;
/// Most candidates compared per pick (the config allows 100).
pub(crate) const MAX_CHOICES: usize = 128;

/// Power of `d` choices over one pool; `d == 0` is a full scan.
#[derive(Debug, Clone)]
pub(crate) struct P2c {
    choices: usize,
    sampler: Sampler,
    /// The candidates of the current pick, ranked (lowest cost, then a random key, first).
    best: TopK,
}

impl P2c {
    pub(crate) fn new(backends: usize, choices: usize) -> Self {
        let choices = choices.min(MAX_CHOICES);
        P2c { choices, sampler: Sampler::new(backends), best: TopK::new() }
    }

    /// Clears `out`, then fills it: the candidates by `cost(index, in_flight, now_ns)`, lowest
    /// first (NaN last), then random retry hosts. `cost` is a trait object: one copy of this
    /// function serves every load-aware algorithm (a copy per cost function was ~2.6 KB of the
    /// .wasm each), for an indirect call per candidate.
    pub(crate) fn pick(
        &mut self,
        ctx: &mut PickCtx<'_>,
        out: &mut Picks,
        cost: &dyn Fn(usize, u64, u64) -> f64,
    ) {
        out.clear();
        let (accept, now_ns) = (ctx.accept, ctx.now_ns);
        let best = &mut self.best;
        best.reset(out.capacity());
        let load = &mut ctx.load;
        let mut rank = |i: usize| {
            let score = -cost(i, in_flight(load, i), now_ns);
            if score.is_nan() {
                f64::NEG_INFINITY
            } else {
                score
            }
        };
        let sampler = &mut self.sampler;
        if self.choices == 0 {
            // Index order: equal costs are ordered by a random key per pick.
            let salt = ctx.rng.u64(..);
            for i in (0..sampler.mark.len()).filter(|&i| accept(i)) {
                best.offer(i, (rank(i), tie_break(i, salt)));
            }
            // Every accepted backend was ranked: nothing is left to fill with.
            best.push_into(out);
            return;
        }
        // The candidates come in random order and an equal cost keeps the first offered:
        // equal costs are broken at random without a key.
        sampler.begin();
        sampler.sample(self.choices, accept, ctx.rng, |i| best.offer(i, (rank(i), 0)));
        best.push_into(out);
        let want = out.capacity().saturating_sub(out.len());
        // Every backend in `out` was drawn: the draws are new.
        sampler.sample(want, accept, ctx.rng, |i| {
            out.push_absent(i);
        });
    }
}

/// `load.in_flight(i)`, out of line: the view's two halves are then read where it is called.
/// Copied into a pick's closures instead, the view was read as one 16-byte load right after the
/// caller had stored it as two 8-byte halves, a store-forwarding stall of about 12 cycles.
#[inline(never)]
fn in_flight(load: &mut &mut dyn LoadView, i: usize) -> u64 {
    load.in_flight(i)
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
    /// uniform over those remaining, in random order, and marks them drawn; returns how many
    /// were visited. Rejection draws first ([`Sampler::draw`]), then the exact pass
    /// ([`Sampler::exact`]), whose index-ordered result is shuffled. Visits fewer only when
    /// fewer remain.
    fn sample(
        &mut self,
        count: usize,
        accept: &dyn Fn(usize) -> bool,
        rng: &mut fastrand::Rng,
        mut visit: impl FnMut(usize),
    ) -> usize {
        let drawn = self.draw(count, accept, rng, &mut visit);
        if drawn >= count {
            return drawn;
        }
        let mut exact = [0usize; MAX_CHOICES];
        let mut len = 0;
        self.exact(count - drawn, accept, rng, |i| {
            if let Some(slot) = exact.get_mut(len) {
                *slot = i;
                len += 1;
            }
        });
        let exact = exact.get_mut(..len).unwrap_or(&mut []);
        rng.shuffle(exact);
        exact.iter().for_each(|&i| visit(i));
        drawn + len
    }

    /// Up to `count` rejection draws of backends not yet drawn and accepted, at most
    /// [`DRAWS_PER_CHOICE`] tries per wanted one; returns how many were visited. The order of
    /// visits is random.
    fn draw(
        &mut self,
        count: usize,
        accept: &dyn Fn(usize) -> bool,
        rng: &mut fastrand::Rng,
        mut visit: impl FnMut(usize),
    ) -> usize {
        let n = self.mark.len();
        if n == 0 {
            return 0;
        }
        let mut taken = 0;
        for _ in 0..count.saturating_mul(DRAWS_PER_CHOICE) {
            if taken == count {
                break;
            }
            let i = below(rng, n);
            if self.is_free(i) && accept(i) {
                self.take(i);
                visit(i);
                taken += 1;
            }
        }
        taken
    }

    /// The exact pass, O(n): counts the accepted backends not yet drawn, then Knuth's selection
    /// sampling (TAOCP vol. 2, 3.4.2, Algorithm S) keeps each with probability needed / left.
    /// Visits `count` of them (all when fewer remain), in index order.
    fn exact(
        &mut self,
        count: usize,
        accept: &dyn Fn(usize) -> bool,
        rng: &mut fastrand::Rng,
        mut visit: impl FnMut(usize),
    ) -> usize {
        if count == 0 {
            return 0;
        }
        let n = self.mark.len();
        let mut left = (0..n).filter(|&i| self.is_free(i) && accept(i)).count();
        let mut need = count.min(left);
        let mut taken = 0;
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
}

#[cfg(test)]
mod tests;
