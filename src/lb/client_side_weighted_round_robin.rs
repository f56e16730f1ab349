//! Client-side weighted round robin: the smooth weighted round robin of [`super::round_robin`]
//! over weights that the backends' own load reports give ([`super::reports`]: Envoy's
//! `client_side_weighted_round_robin`, gRFC A58). The configured weights are not used, as in
//! Envoy, where ORCA weights replace the EDS ones. Every `weight_update_period` the router hands
//! in the weights computed from the reports of all workers ([`Balancer::reweight`]); when they
//! changed the schedule is rebuilt, O(N log N), and until the first update (and whenever no
//! backend has a valid weight) every backend weighs 1: plain round robin.
//!
//! Work per pick as round robin's: O(log K) for K distinct weights.

use super::round_robin::SmoothWeighted;
use super::{Balancer, PickCtx, Picks};

/// Round robin over reported weights (per worker VM).
pub struct ClientSideWeighted {
    weights: Vec<u32>,
    schedule: SmoothWeighted,
}

impl ClientSideWeighted {
    pub fn new(backends: usize) -> Self {
        let weights = vec![1; backends];
        let schedule = SmoothWeighted::new(weights.iter().copied());
        ClientSideWeighted { weights, schedule }
    }

    /// The weights in use, in pool order.
    #[cfg(test)]
    pub fn weights(&self) -> &[u32] {
        &self.weights
    }
}

impl Balancer for ClientSideWeighted {
    fn pick(&mut self, ctx: &mut PickCtx<'_>, out: &mut Picks) {
        self.schedule.pick(ctx, out);
    }

    fn reweight(&mut self, weights: &[u32]) {
        if weights.len() == self.weights.len() && weights != self.weights.as_slice() {
            self.weights.clear();
            self.weights.extend_from_slice(weights);
            self.schedule = SmoothWeighted::new(self.weights.iter().copied());
        }
    }

    fn weight(&self, backend: usize) -> Option<u32> {
        self.weights.get(backend).copied()
    }
}

#[cfg(test)]
mod tests;
