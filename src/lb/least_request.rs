//! Least request: [`P2c`] with `choice_count` choices (0 = scan every accepted backend) over
//! the backends' in-flight counts, global across workers.
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
//! The cost handed to [`P2c`] is this score negated (lowest cost = highest score).

use super::p2c::P2c;
use super::{Balancer, PickCtx, Picks};
use crate::backend::Pool;

/// Least request over one pool (per worker VM; the in-flight counts it reads are global).
#[derive(Debug, Clone)]
pub struct LeastRequest {
    weight: Vec<f64>,
    /// Exponent applied to `in_flight + 1`; 1.0 when the pool's weights are all equal.
    bias: f64,
    /// Compares `choice_count` candidates per pick; 0 = every accepted backend.
    p2c: P2c,
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
        let p2c = P2c::new(weight.len(), choice_count);
        LeastRequest { weight, bias, p2c }
    }

    fn score(weight: &[f64], bias: f64, i: usize, in_flight: u64) -> f64 {
        weight.get(i).copied().unwrap_or(0.0) / (in_flight as f64 + 1.0).powf(bias)
    }
}

impl Balancer for LeastRequest {
    fn pick(&mut self, ctx: &mut PickCtx<'_>, out: &mut Picks) {
        let LeastRequest { weight, bias, p2c } = self;
        let (weight, bias) = (&*weight, *bias);
        if bias == 1.0 {
            // Its own cost function: no `powf` (an optimizer may merge `x.powf(1.0)` with `x`
            // in the other direction, calling `pow` for every candidate).
            p2c.pick(ctx, out, &|i, in_flight, _| {
                -weight.get(i).copied().unwrap_or(0.0) / (in_flight as f64 + 1.0)
            });
        } else {
            p2c.pick(ctx, out, &|i, in_flight, _| -Self::score(weight, bias, i, in_flight));
        }
    }

    fn uses_load(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
