//! Least time: [`P2c`] with two choices over a peak-EWMA latency estimate times load. Each pick
//! samples two distinct accepted backends and takes the lower
//! `estimate × (in_flight + 1) / weight`, where the estimate is this worker's [`PeakEwma`] of
//! the backend's response times and `in_flight` is the global count from the load view.
//! Dividing by the weight makes a backend of weight 3 look as cheap as one of weight 1 with a
//! third of its latency-load product. Ties are broken at random.
//!
//! Sources: Finagle's `PeakEwma` load metric (twitter/finagle,
//! finagle-core/.../loadbalancer/PeakEwma.scala, with P2C in `p2c/P2CPeakEwma.scala`) and its
//! Rust port in tower (`tower/src/load/peak_ewma.rs`), also used by Linkerd; the decay over
//! unevenly spaced samples follows A. Eckner, "Algorithms for Unevenly Spaced Time Series",
//! which Finagle cites.
//! Unlike both, time is an argument and reading the estimate never changes it (Finagle and tower
//! fold each read in as a zero sample, so their estimate depends on how often it is read).
//!
//! Outcomes: a response observes its time; a failed one (5xx, 429) at least `error_penalty_ns`,
//! so a backend that fails fast does not attract traffic; no response observes the penalty.
//!
//! Work: a pick is [`P2c`]'s, O(1) with no exponential (the estimates are compared rescaled to
//! a common time, see [`LeastTime`]); an observation costs one exponential, and once per 256
//! decay times one O(n) rescaling.

use super::p2c::P2c;
use super::{Balancer, Outcome, PickCtx, Picks};
use crate::backend::Pool;

/// Candidates compared per pick.
const CHOICES: usize = 2;

/// A peak-sensitive, exponentially weighted moving average of response times, in nanoseconds.
///
/// - A sample above the estimate as last updated replaces it at once (the peak).
/// - A lower sample is averaged in: `estimate·w + rtt·(1 − w)`, `w = exp(−elapsed / decay)`,
///   `elapsed` the time since the last sample. Over samples of a steady `rtt` the estimate
///   therefore moves from `p` to `p·e^(−t/decay) + rtt·(1 − e^(−t/decay))` whatever the spacing
///   of the samples: a half-life of `decay·ln 2`.
/// - Between samples the estimate read at `now` decays toward zero with the same constant:
///   `estimate·exp(−(now − last) / decay)`. An idle backend that was slow is thus retried once
///   its estimate falls below its busy peers' (tower does the same: "the default RTT estimate
///   decays, so that new nodes are considered"). The next sample then sets the estimate again:
///   the gap is filled with what that sample says, not with the decayed value.
/// - The default RTT is the estimate at construction; it decays and is averaged out like any
///   earlier sample (tower's behaviour), so backends built together start equal.
///
/// Right after observing `rtt` the estimate is at least `rtt`. A clock that goes backwards
/// counts as no time elapsed. Values are never negative and never NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeakEwma {
    estimate_ns: f64,
    /// When the estimate was last set; never moves backwards.
    updated_ns: u64,
    /// The decay time constant (mean lifetime), >= 1.
    decay_ns: f64,
}

impl PeakEwma {
    /// Starts at `default_rtt_ns` at time `now_ns`; `decay_ns` of 0 is taken as 1.
    pub fn new(default_rtt_ns: u64, decay_ns: u64, now_ns: u64) -> PeakEwma {
        PeakEwma {
            estimate_ns: default_rtt_ns as f64,
            updated_ns: now_ns,
            decay_ns: decay_ns.max(1) as f64,
        }
    }

    /// The weight of the past after `now_ns`: exp(-elapsed / decay), in [0, 1].
    fn weight_at(&self, now_ns: u64) -> f64 {
        let elapsed = now_ns.saturating_sub(self.updated_ns) as f64;
        (-elapsed / self.decay_ns).exp()
    }

    /// Folds in a response time `rtt_ns` observed at `now_ns`.
    pub fn observe(&mut self, rtt_ns: u64, now_ns: u64) {
        let rtt = rtt_ns as f64;
        if rtt >= self.estimate_ns {
            self.estimate_ns = rtt;
        } else {
            let w = self.weight_at(now_ns);
            self.estimate_ns = self.estimate_ns * w + rtt * (1.0 - w);
        }
        self.updated_ns = self.updated_ns.max(now_ns);
    }

    /// The estimate at `now_ns`, in nanoseconds.
    pub fn estimate_at(&self, now_ns: u64) -> f64 {
        self.estimate_ns * self.weight_at(now_ns)
    }
}

/// Least time over one pool: one [`PeakEwma`] per backend, local to this worker VM.
///
/// Picks compare `estimate × (in_flight + 1) / weight` without an exponential per candidate:
/// every estimate decays with the same constant, so at any `now` it is
/// `scaled × e^(−(now − anchor) / decay)` with `scaled = estimate × e^((updated − anchor) / decay)`
/// kept per backend (one exponential per observation), and the common factor does not change
/// the order. This holds while `now` is at or after every estimate's last update (a monotonic
/// clock); otherwise the estimates are decayed one by one. The anchor moves to the latest update
/// when that is [`MAX_SCALED_EXPONENT`] decay times past it (rescaling every backend, O(n) once
/// per that many decay times), so scaled values stay finite.
#[derive(Debug, Clone)]
pub struct LeastTime {
    ewma: Vec<PeakEwma>,
    weight: Vec<f64>,
    error_penalty_ns: u64,
    p2c: P2c,
    /// Per backend, its estimate rescaled to `anchor_ns` (see above).
    scaled: Vec<f64>,
    anchor_ns: u64,
    /// The decay constant of every estimate, in nanoseconds (>= 1).
    decay_ns: f64,
    /// The latest time any estimate was set.
    latest_ns: u64,
}

/// How far (in decay times) an estimate's last update may be past the anchor before the anchor
/// moves: e^256 ≈ 10^111, far from overflow.
const MAX_SCALED_EXPONENT: f64 = 256.0;

impl LeastTime {
    /// Every backend starts at `default_rtt_ns` at `now_ns`. `decay_ns` is the estimates' time
    /// constant; `error_penalty_ns` the least a failed response (or no response) counts for.
    pub fn new(
        pool: &Pool,
        default_rtt_ns: u64,
        decay_ns: u64,
        error_penalty_ns: u64,
        now_ns: u64,
    ) -> LeastTime {
        let ewma = vec![PeakEwma::new(default_rtt_ns, decay_ns, now_ns); pool.len()];
        let scaled = ewma.iter().map(|e| e.estimate_ns).collect();
        LeastTime {
            ewma,
            weight: pool.weights().map(f64::from).collect(),
            error_penalty_ns,
            p2c: P2c::new(pool.len(), CHOICES),
            scaled,
            anchor_ns: now_ns,
            decay_ns: decay_ns.max(1) as f64,
            latest_ns: now_ns,
        }
    }

    /// Backend `backend`'s latency estimate at `now_ns`, in nanoseconds (`None` if out of range).
    pub fn estimate_at(&self, backend: usize, now_ns: u64) -> Option<f64> {
        self.ewma.get(backend).map(|e| e.estimate_at(now_ns))
    }

    /// `estimate × (in_flight + 1) / weight`; a zero weight costs infinitely much.
    fn cost(ewma: &[PeakEwma], weight: &[f64], i: usize, in_flight: u64, now_ns: u64) -> f64 {
        let estimate = ewma.get(i).map_or(0.0, |e| e.estimate_at(now_ns));
        Self::per_weight(estimate, weight, i, in_flight)
    }

    /// `value × (in_flight + 1) / weight`; a zero weight costs infinitely much.
    #[inline(always)]
    fn per_weight(value: f64, weight: &[f64], i: usize, in_flight: u64) -> f64 {
        let w = weight.get(i).copied().unwrap_or(0.0);
        if w <= 0.0 {
            return f64::INFINITY;
        }
        value * (in_flight as f64 + 1.0) / w
    }

    /// `estimate × e^((updated − anchor) / decay)` of one estimate.
    fn scale(&self, e: &PeakEwma) -> f64 {
        let since = (i128::from(e.updated_ns) - i128::from(self.anchor_ns)) as f64;
        e.estimate_ns * (since / self.decay_ns).exp()
    }

    /// Records that `backend`'s estimate was set (observed or carried over).
    fn rescale(&mut self, backend: usize) {
        let Some(&e) = self.ewma.get(backend) else { return };
        self.latest_ns = self.latest_ns.max(e.updated_ns);
        let past = e.updated_ns.saturating_sub(self.anchor_ns) as f64 / self.decay_ns;
        let all = if past > MAX_SCALED_EXPONENT {
            self.anchor_ns = e.updated_ns;
            0..self.ewma.len()
        } else {
            backend..backend + 1
        };
        for i in all {
            let Some(v) = self.ewma.get(i).map(|e| self.scale(e)) else { continue };
            if let Some(s) = self.scaled.get_mut(i) {
                *s = v;
            }
        }
    }
}

impl Balancer for LeastTime {
    fn pick(&mut self, ctx: &mut PickCtx<'_>, out: &mut Picks) {
        let rescaled = ctx.now_ns >= self.latest_ns;
        let LeastTime { ewma, weight, p2c, scaled, .. } = self;
        let (ewma, weight, scaled) = (&*ewma, &*weight, &*scaled);
        p2c.pick(ctx, out, &|i, in_flight, now_ns| {
            if rescaled {
                Self::per_weight(scaled.get(i).copied().unwrap_or(0.0), weight, i, in_flight)
            } else {
                Self::cost(ewma, weight, i, in_flight, now_ns)
            }
        });
    }

    fn uses_load(&self) -> bool {
        true
    }

    fn latency_ns(&self, backend: usize, now_ns: u64) -> Option<f64> {
        self.estimate_at(backend, now_ns)
    }

    fn learns_latency(&self) -> bool {
        true
    }

    fn learned(&self, backend: usize) -> Option<PeakEwma> {
        self.ewma.get(backend).copied()
    }

    /// Takes over the estimate and the time it was set; it decays with this balancer's
    /// constant, like every other estimate here.
    fn relearn(&mut self, backend: usize, learned: PeakEwma) {
        let decay_ns = self.decay_ns;
        if let Some(e) = self.ewma.get_mut(backend) {
            *e = PeakEwma { decay_ns, ..learned };
        }
        self.rescale(backend);
    }

    fn observe(&mut self, backend: usize, outcome: Outcome, now_ns: u64) {
        let rtt_ns = match outcome {
            Outcome::Response { rtt_ns, failed: false } => rtt_ns,
            Outcome::Response { rtt_ns, failed: true } => rtt_ns.max(self.error_penalty_ns),
            Outcome::NoResponse => self.error_penalty_ns,
        };
        if let Some(e) = self.ewma.get_mut(backend) {
            e.observe(rtt_ns, now_ns);
        }
        self.rescale(backend);
    }
}

#[cfg(test)]
mod tests;
