//! Least load, for inference servers: [`P2c`] over a metric the backends report themselves
//! (e.g. `named_metrics.queue_depth` or a KV-cache utilization, [`super::reports`]), corrected
//! by how the backend's requests in flight changed since that report, so that a burst does not
//! all land on the backend whose last report was lowest. The cost of a candidate:
//!
//! - with a report younger than `max_report_age`:
//!   `max(0, metric + in_flight_weight × (in_flight − in_flight_at_report))`: the report counts
//!   what the backend held when it was made; the requests sent to it since (by any worker) raise
//!   the cost, those that ended since lower it;
//! - without one (none yet, or stale): `in_flight_weight × in_flight`, the backend's requests
//!   in flight across all workers, as least_request. With a queue-length metric and weight 1 the
//!   two are in the same unit (requests).
//!
//! Lowest cost wins; equal costs in random order. The approach of the Gateway API Inference
//! Extension's endpoint picker (queue depth and KV-cache scorers), made inside the proxy.
//! Work per pick as [`P2c`]'s: O(d + retries).

use super::p2c::P2c;
use super::{Balancer, PickCtx, Picks};

/// Least load over one pool (per worker VM).
#[derive(Debug, Clone)]
pub struct LeastLoad {
    p2c: P2c,
    max_age_ns: u64,
    in_flight_weight: f64,
}

impl LeastLoad {
    pub fn new(
        backends: usize,
        choice_count: usize,
        max_age_ns: u64,
        in_flight_weight: f64,
    ) -> Self {
        LeastLoad { p2c: P2c::new(backends, choice_count), max_age_ns, in_flight_weight }
    }
}

impl Balancer for LeastLoad {
    fn pick(&mut self, ctx: &mut PickCtx<'_>, out: &mut Picks) {
        let (max_age_ns, weight) = (self.max_age_ns, self.in_flight_weight);
        let reported = ctx.reported;
        self.p2c.pick(ctx, out, &|i, in_flight, now_ns| {
            let fresh = reported
                .and_then(|t| t.get(i))
                .filter(|e| e.metric_at > 0 && now_ns.saturating_sub(e.metric_at) <= max_age_ns);
            match fresh {
                Some(e) => {
                    let since = in_flight as f64 - e.in_flight_at as f64;
                    (e.metric + weight * since).max(0.0)
                }
                None => weight * in_flight as f64,
            }
        });
    }

    fn uses_load(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
