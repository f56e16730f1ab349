//! Least request with the power of `d` choices. Each pick samples `choice_count` distinct
//! accepted backends uniformly at random, reads their in-flight counts (global across workers,
//! one host call each) and takes the best; `choice_count == 0` scans every accepted backend.
//! Sampling two instead of one shrinks the worst queue exponentially, and two is nearly as good
//! as a full scan (M. Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing",
//! IEEE TPDS 12(10), 2001).
//!
//! The score is Envoy's dynamic weight (`LeastRequestLoadBalancer::hostWeight`,
//! source/extensions/load_balancing_policies/least_request/least_request_lb.cc):
//! `weight / (in_flight + 1)^active_request_bias`, highest wins, ties at random. As in Envoy the
//! bias only applies when the pool's weights differ: with equal weights the score is simply the
//! fewest in flight, whatever the bias. With unequal weights, a bias of 0 ignores load entirely
//! (the heaviest candidate wins) and larger biases let load count for more. Envoy feeds these
//! weights to an EDF scheduler; here they rank the sampled candidates, so at equal in-flight
//! counts the heavier candidate always wins, and it is the winners' growing in-flight counts
//! that spread traffic: with weights 1:3 the counts settle near 1:3 (and so, at equal latency,
//! do the request shares).
//!
//! Retry hosts: the other sampled candidates by score, then further distinct accepted backends
//! in random order, whose load is not read. The sampler here is shared with `least_time`.

use super::{Balancer, PickCtx, Picks};
use crate::backend::Pool;
use crate::config::MAX_HOSTS_LIMIT;

/// Random draws per wanted candidate before the exact fallback pass.
const DRAWS_PER_CHOICE: usize = 4;

/// A per-pick random order of backend indexes for breaking equal scores: the splitmix64
/// finaliser of `salt + i * golden ratio`, a bijection of `i` for a fixed salt, so distinct
/// backends never tie twice.
pub(crate) fn tie_break(i: usize, salt: u64) -> u64 {
    let mut z = salt.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Draws distinct backends uniformly at random without replacement. `mark[i] == epoch` means
/// backend `i` was already drawn during the current pick; starting a pick bumps the epoch, so
/// forgetting costs nothing (and one O(n) clear every 2^32 picks). Allocated once per pool.
#[derive(Debug, Clone)]
pub(crate) struct Sampler {
    mark: Vec<u32>,
    epoch: u32,
}

impl Sampler {
    pub(crate) fn new(backends: usize) -> Self {
        Sampler { mark: vec![0; backends], epoch: 0 }
    }

    /// Forgets what the previous pick drew.
    pub(crate) fn begin(&mut self) {
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
    pub(crate) fn sample(
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
    pub(crate) fn fill_random(
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

#[derive(Debug, Clone, Copy)]
struct Ranked {
    score: f64,
    tie: u64,
    index: usize,
}

impl Ranked {
    fn beats(&self, other: &Ranked) -> bool {
        self.score > other.score || (self.score == other.score && self.tie > other.tie)
    }
}

/// The best `cap` (<= MAX_HOSTS_LIMIT) candidates offered so far, highest score first, equal
/// scores by their tie key. Fixed capacity: no allocation.
#[derive(Debug, Clone)]
pub(crate) struct Best {
    items: [Ranked; MAX_HOSTS_LIMIT],
    len: usize,
    cap: usize,
}

impl Best {
    pub(crate) fn new(cap: usize) -> Self {
        let empty = Ranked { score: 0.0, tie: 0, index: 0 };
        Best { items: [empty; MAX_HOSTS_LIMIT], len: 0, cap: cap.clamp(1, MAX_HOSTS_LIMIT) }
    }

    /// Offers backend `index`; a NaN score ranks last.
    pub(crate) fn offer(&mut self, index: usize, score: f64, tie: u64) {
        let score = if score.is_nan() { f64::NEG_INFINITY } else { score };
        let new = Ranked { score, tie, index };
        let Some(kept) = self.items.get(..self.len) else { return };
        let pos = kept.iter().position(|r| new.beats(r)).unwrap_or(self.len);
        if pos >= self.cap {
            return;
        }
        let end = (self.len + 1).min(self.cap);
        if let Some(window) = self.items.get_mut(pos..end) {
            window.rotate_right(1);
            if let Some(slot) = window.first_mut() {
                *slot = new;
            }
        }
        self.len = end;
    }

    /// Appends the kept candidates to `out`, best first.
    pub(crate) fn push_into(&self, out: &mut Picks) {
        for r in self.items.iter().take(self.len) {
            out.push(r.index);
        }
    }
}

/// Least request over one pool (per worker VM; the in-flight counts it reads are global).
#[derive(Debug, Clone)]
pub struct LeastRequest {
    weight: Vec<f64>,
    /// Candidates compared per pick; 0 = every accepted backend.
    choice_count: usize,
    /// Exponent applied to `in_flight + 1`; 1.0 when the pool's weights are all equal.
    bias: f64,
    sampler: Sampler,
}

impl LeastRequest {
    /// `choice_count`: candidates sampled per pick (2 = power of two choices; 0 = full scan).
    /// `active_request_bias`: exponent of `in_flight + 1` when weights differ (0 = weights
    /// only; a negative or non-finite value is taken as the default 1.0).
    pub fn new(pool: &Pool, choice_count: usize, active_request_bias: f64) -> LeastRequest {
        let weight: Vec<f64> = pool.weights().map(f64::from).collect();
        let equal = weight.windows(2).all(|w| w.first() == w.last());
        let valid = active_request_bias.is_finite() && active_request_bias >= 0.0;
        let bias = if equal || !valid { 1.0 } else { active_request_bias };
        let sampler = Sampler::new(weight.len());
        LeastRequest { weight, choice_count, bias, sampler }
    }

    fn score(weight: &[f64], bias: f64, i: usize, in_flight: u64) -> f64 {
        let w = weight.get(i).copied().unwrap_or(0.0);
        let load = in_flight as f64 + 1.0;
        if bias == 1.0 {
            w / load
        } else {
            w / load.powf(bias)
        }
    }
}

impl Balancer for LeastRequest {
    fn pick(&mut self, ctx: &mut PickCtx<'_>, out: &mut Picks) {
        out.clear();
        let accept = ctx.accept;
        let salt = ctx.rng.u64(..);
        let mut best = Best::new(out.capacity());
        let LeastRequest { weight, choice_count, bias, sampler } = self;
        let (weight, bias) = (&*weight, *bias);
        if *choice_count == 0 {
            for i in (0..weight.len()).filter(|&i| accept(i)) {
                let score = Self::score(weight, bias, i, ctx.load.in_flight(i));
                best.offer(i, score, tie_break(i, salt));
            }
            // Every accepted backend was ranked: nothing is left to fill with.
            best.push_into(out);
            return;
        }
        sampler.begin();
        let load = &mut *ctx.load;
        sampler.sample(*choice_count, accept, ctx.rng, |i| {
            let score = Self::score(weight, bias, i, load.in_flight(i));
            best.offer(i, score, tie_break(i, salt));
        });
        best.push_into(out);
        sampler.fill_random(out, accept, ctx.rng);
    }

    fn uses_load(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
