//! The selection contract: for one request a balancer fills [`Picks`] with distinct backends,
//! primary first, then the hosts Envoy's retries should try next. Whether a backend may be
//! chosen at all is the caller's `accept` predicate (health, ejection, drain), kept apart from
//! the order in which an algorithm proposes candidates.

pub mod client_side_weighted_round_robin;
pub mod least_load;
pub mod least_request;
pub mod least_time;
pub mod maglev;
pub(crate) mod p2c;
pub mod random;
pub mod reports;
pub mod ring_hash;
pub mod round_robin;
#[cfg(test)]
pub(crate) mod testkit;

use crate::backend::Pool;
use crate::config::{Algorithm, AlgorithmConfig, MAX_HOSTS_LIMIT};

/// Up to [`MAX_HOSTS_LIMIT`] distinct backend indexes, in the order Envoy should try them.
/// Fixed capacity: no allocation per request.
#[derive(Debug, Clone)]
pub struct Picks {
    items: [u32; MAX_HOSTS_LIMIT],
    len: usize,
    cap: usize,
}

impl Picks {
    /// Holds at most `cap` picks (clamped to 1..=MAX_HOSTS_LIMIT).
    pub fn with_capacity(cap: usize) -> Self {
        Picks { items: [0; MAX_HOSTS_LIMIT], len: 0, cap: cap.clamp(1, MAX_HOSTS_LIMIT) }
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    #[inline(always)]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    pub fn is_full(&self) -> bool {
        self.len >= self.cap
    }

    #[inline(always)]
    pub fn as_slice(&self) -> &[u32] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    #[inline(always)]
    pub fn contains(&self, index: usize) -> bool {
        let Ok(index) = u32::try_from(index) else { return false };
        // A plain loop over at most 10: inlined, unlike `<[u32]>::contains` at opt-level "z".
        let mut k = 0;
        while k < self.len {
            if self.items.get(k) == Some(&index) {
                return true;
            }
            k += 1;
        }
        false
    }

    /// Appends `index` unless full or already present; returns whether it was added.
    #[inline(always)]
    pub fn push(&mut self, index: usize) -> bool {
        !self.contains(index) && self.push_absent(index)
    }

    /// [`Picks::push`] for an `index` known not to be present.
    #[inline(always)]
    pub(crate) fn push_absent(&mut self, index: usize) -> bool {
        if self.is_full() {
            return false;
        }
        let Ok(i) = u32::try_from(index) else { return false };
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = i;
                self.len += 1;
                true
            }
            None => false,
        }
    }
}

/// Requests in flight per backend, counted across every worker of the proxy. Reads may cost a
/// host call each, so algorithms read only the backends they compare.
pub trait LoadView {
    /// In-flight requests of backend `index`.
    fn in_flight(&mut self, index: usize) -> u64;
    /// In-flight requests of the whole pool.
    fn total_in_flight(&mut self) -> u64;
}

/// A [`LoadView`] for algorithms that read no load.
pub struct NoLoad;

impl LoadView for NoLoad {
    fn in_flight(&mut self, _index: usize) -> u64 {
        0
    }
    fn total_in_flight(&mut self) -> u64 {
        0
    }
}

/// Everything an algorithm may use for one pick.
pub struct PickCtx<'a> {
    /// Whether a backend may be chosen at all (health, ejection, drain).
    pub accept: &'a dyn Fn(usize) -> bool,
    pub rng: &'a mut fastrand::Rng,
    /// The request's 64-bit hash key (see `hash_key`); `None` when the request has none.
    pub key: Option<u64>,
    pub load: &'a mut dyn LoadView,
    /// Now, in nanoseconds (any fixed origin).
    pub now_ns: u64,
    /// The backends' load reports, for the algorithms that read them.
    pub reported: Option<&'a reports::LoadTable>,
}

/// What happened to a request, reported to the algorithm that served it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Response headers arrived after `rtt_ns`; `failed` for 5xx and 429.
    Response { rtt_ns: u64, failed: bool },
    /// No response (reset, timeout, local reply, client abort).
    NoResponse,
}

/// One load-balancing algorithm's state for one pool (per worker VM).
pub trait Balancer {
    /// Clears `out`, then fills it with up to `out.capacity()` distinct backends for which
    /// `ctx.accept` holds: the primary pick first, then the next picks for retries.
    fn pick(&mut self, ctx: &mut PickCtx<'_>, out: &mut Picks);

    /// Whether picks read [`LoadView`], so in-flight counts must be kept for this algorithm.
    fn uses_load(&self) -> bool {
        false
    }

    /// Reports the outcome of a request served by `backend` (latency-aware algorithms learn
    /// from it).
    fn observe(&mut self, _backend: usize, _outcome: Outcome, _now_ns: u64) {}

    /// This VM's latency estimate of `backend` in nanoseconds, for algorithms that keep one.
    fn latency_ns(&self, _backend: usize, _now_ns: u64) -> Option<f64> {
        None
    }

    /// Whether [`Balancer::observe`] uses response times (so the adapter must read the clock
    /// when a response arrives).
    fn learns_latency(&self) -> bool {
        false
    }

    /// What this VM learned about `backend` (latency), to carry into the balancer built for
    /// the next pool when the pool changes; `None` for algorithms that learn nothing.
    fn learned(&self, _backend: usize) -> Option<PeakEwma> {
        None
    }

    /// Takes over what [`Balancer::learned`] gave for a backend now at `backend`.
    fn relearn(&mut self, _backend: usize, _learned: PeakEwma) {}

    /// New weights for every backend, in pool order, from load reports (algorithms that
    /// weigh by reports; others ignore them).
    fn reweight(&mut self, _weights: &[u32]) {}

    /// The weight `backend` has now, for algorithms whose weights change at run time.
    fn weight(&self, _backend: usize) -> Option<u32> {
        None
    }
}

use least_time::PeakEwma;

use crate::MS;

/// The balancer for `config.algorithm` over `pool`.
pub fn build(config: &AlgorithmConfig, pool: &Pool, now_ns: u64) -> Box<dyn Balancer> {
    match config.algorithm {
        Algorithm::RoundRobin => Box::new(round_robin::SmoothWeighted::new(pool.weights())),
        Algorithm::Random => Box::new(random::WeightedRandom::new(pool.weights())),
        Algorithm::LeastRequest => Box::new(least_request::LeastRequest::new(
            pool,
            config.choice_count,
            config.active_request_bias,
        )),
        Algorithm::LeastTime => Box::new(least_time::LeastTime::new(
            pool,
            config.default_rtt_ms.saturating_mul(MS),
            config.decay_ms.saturating_mul(MS),
            config.error_penalty_ms.saturating_mul(MS),
            now_ns,
        )),
        Algorithm::RingHash => Box::new(ring_hash::RingHash::new(
            pool,
            config.min_ring_size,
            config.max_ring_size,
            config.balance_factor,
        )),
        Algorithm::Maglev | Algorithm::SourceIpHash => {
            Box::new(maglev::Maglev::new(pool, config.maglev_table_size, config.balance_factor))
        }
        Algorithm::ClientSideWeightedRoundRobin => {
            Box::new(client_side_weighted_round_robin::ClientSideWeighted::new(pool.len()))
        }
        Algorithm::LeastLoad => Box::new(least_load::LeastLoad::new(
            pool.len(),
            config.choice_count,
            config.least_load.max_report_age_ms.saturating_mul(MS),
            config.least_load.in_flight_weight,
        )),
    }
}

/// A per-request pseudo-random order of backend indexes for breaking equal scores: the
/// splitmix64 finaliser of `salt + i * golden ratio`, a bijection of `i` for a fixed salt, so
/// distinct backends never tie twice and every pair is ordered independently of the others.
#[inline(always)]
pub(crate) fn tie_break(i: usize, salt: u64) -> u64 {
    let mut z = salt.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random number below `n` (> 0): the high half of a 64 × 64-bit product, biased by at most
/// `n / 2^64`, negligible for pool sizes (Lemire's multiply-shift without its rejection step).
#[inline(always)]
pub(crate) fn below(rng: &mut fastrand::Rng, n: usize) -> usize {
    ((u128::from(rng.u64(..)) * n as u128) >> 64) as usize
}

/// A candidate's rank: a score (higher is better), then a tie-break key.
pub(crate) type Rank = (f64, u64);

/// Whether rank `a` is above rank `b`, without a branch: the comparison of two random
/// candidates' costs is unpredictable, and a mispredicted branch costs about as much as the
/// rest of the comparison (the tuple's own `>` compiles to branches).
#[inline(always)]
fn above(a: Rank, b: Rank) -> bool {
    (a.0 > b.0) | ((a.0 == b.0) & (a.1 > b.1))
}

/// The best `cap` (1..=[`MAX_HOSTS_LIMIT`]) backends offered so far, highest [`Rank`] first; an
/// equal rank goes after those already kept. Kept in the balancer (no allocation, nothing to
/// initialize per pick); [`TopK::reset`] starts a pick.
#[derive(Debug, Clone)]
pub(crate) struct TopK {
    items: [(Rank, usize); MAX_HOSTS_LIMIT],
    len: usize,
    cap: usize,
}

impl TopK {
    pub(crate) fn new() -> Self {
        TopK { items: [((0.0, 0), 0); MAX_HOSTS_LIMIT], len: 0, cap: 1 }
    }

    /// Empties it to keep the best `cap`, clamped to 1..=[`MAX_HOSTS_LIMIT`].
    #[inline(always)]
    pub(crate) fn reset(&mut self, cap: usize) {
        self.len = 0;
        self.cap = cap.clamp(1, MAX_HOSTS_LIMIT);
    }

    /// Offers backend `index` with `rank`; map NaN away first (it would be kept after all).
    /// The second offer (two choices, the usual case) is placed without a branch on the ranks.
    #[inline(always)]
    pub(crate) fn offer(&mut self, index: usize, rank: Rank) {
        let new = (rank, index);
        if self.len == 1 {
            // Indexed by the comparison rather than branched on it (an `if` on it compiles to
            // a branch, which two random costs mispredict half the time).
            let Some(&old) = self.items.first() else { return };
            let pair = [old, new];
            let better = usize::from(above(rank, old.0));
            if let (Some(first), Some(&best)) = (self.items.first_mut(), pair.get(better)) {
                *first = best;
            }
            if self.cap >= 2 {
                if let (Some(second), Some(&other)) = (self.items.get_mut(1), pair.get(1 - better))
                {
                    *second = other;
                }
                self.len = 2;
            }
            return;
        }
        // Insertion from the end: shift the kept ranks below `rank` down by one.
        let mut pos = self.len.min(self.cap - 1);
        if pos + 1 == self.cap && self.len == self.cap {
            match self.items.get(pos) {
                Some(&(r, _)) if above(rank, r) => {}
                _ => return,
            }
        }
        while pos > 0 {
            match self.items.get(pos - 1) {
                Some(&(r, i)) if above(rank, r) => {
                    if let Some(slot) = self.items.get_mut(pos) {
                        *slot = (r, i);
                    }
                    pos -= 1;
                }
                _ => break,
            }
        }
        if let Some(slot) = self.items.get_mut(pos) {
            *slot = new;
        }
        self.len = (self.len + 1).min(self.cap);
    }

    /// Appends the kept backends to `out`, best first.
    #[inline(always)]
    pub(crate) fn push_into(&self, out: &mut Picks) {
        for &(_, i) in self.items.iter().take(self.len) {
            out.push(i);
        }
    }
}

#[cfg(test)]
mod tests;
