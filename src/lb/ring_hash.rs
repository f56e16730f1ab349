//! Ketama-style consistent hashing on a ring (Karger et al., STOC 1997; libketama's
//! `ketama_get_server`), built as Envoy's ring hash builds it
//! (source/extensions/load_balancing_policies/ring_hash/ring_hash_lb.cc) with xxHash64.
//!
//! Ring: each backend owns points at `xxh64("<id>_<k>")` for `k` in `0..points`, hashing the
//! backend **id** (the stable fleet-wide identity), sorted by hash (ties, which need an xxh64
//! collision, by id). Point counts, as Envoy computes the ring's scale: with normalized weights
//! `w_i / sum(w)` and `min_nw` the smallest,
//! `scale = min(ceil(min_nw * min_ring_size) / min_nw, max_ring_size)`, so the lightest backend
//! gets a whole number of points, at least `min_ring_size` points in all unless
//! `max_ring_size` caps the scale. Backend `i` gets `max(1, round(w_i / sum(w) * scale))`
//! points. Envoy instead hands out `ceil(scale)` points in all with running sums over the pool
//! order; rounding each backend on its own keeps its count independent of the pool order, at
//! the cost of a ring that may hold up to `N / 2` points more than `scale` (and at least one
//! point per backend, so at least `N`). Equal weights give every backend the same count.
//! Backends of weight 0 get no point.
//!
//! Picks: with no key, the pool's smooth weighted round robin. With a key, the walk starts at
//! the first point whose hash is `>= key` (binary search; past the last point it wraps to the
//! first) and goes forward around the ring collecting distinct accepted backends, with the
//! same walk and bounded loads as Maglev ([`super::maglev::HashWalk`]).

use std::fmt::Write;

use super::maglev::HashWalk;
use super::{Balancer, PickCtx, Picks};
use crate::backend::{Pool, MAX_BACKENDS};
use crate::hash_key::hash;

const _: () = assert!(MAX_BACKENDS <= u16::MAX as usize, "backend indexes must fit a point");

/// A ketama ring over one pool; see the module doc.
#[derive(Debug, Clone)]
pub struct RingHash {
    /// Point hashes, ascending; `owners[k]` is the backend of point `k`.
    hashes: Vec<u64>,
    owners: Vec<u16>,
    walk: HashWalk,
}

impl RingHash {
    /// Builds the ring once (sizes validated by the config; `min_ring_size` 1024 is Envoy's
    /// default), bounded loads when `balance_factor` is `Some(c)`.
    pub fn new(
        pool: &Pool,
        min_ring_size: usize,
        max_ring_size: usize,
        balance_factor: Option<f64>,
    ) -> RingHash {
        let counts = point_counts(pool, min_ring_size, max_ring_size);
        let total = counts.iter().fold(0usize, |sum, &c| sum.saturating_add(c));
        let mut points: Vec<(u64, u16)> = Vec::new();
        let _ = points.try_reserve_exact(total); // Only a hint: pushing still works without it.
        let mut key = String::new();
        for ((i, b), &count) in pool.iter().enumerate().zip(&counts) {
            let Ok(owner) = u16::try_from(i) else { break };
            for k in 0..count {
                key.clear();
                let _ = write!(key, "{}_{}", b.id, k);
                points.push((hash(key.as_bytes()), owner));
            }
        }
        let id = |i: u16| pool.get(usize::from(i)).map(|b| b.id.as_str());
        points.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| id(a.1).cmp(&id(b.1))));
        let (hashes, owners): (Vec<u64>, Vec<u16>) = points.into_iter().unzip();
        let walk = HashWalk::new(pool, owners.iter().map(|&b| usize::from(b)), balance_factor);
        RingHash { hashes, owners, walk }
    }
}

/// Points per backend, in pool order: see the module doc.
fn point_counts(pool: &Pool, min_ring_size: usize, max_ring_size: usize) -> Vec<usize> {
    let sum: f64 = pool.weights().map(f64::from).sum();
    let Some(min_weight) = pool.weights().filter(|&w| w > 0).min() else {
        return vec![0; pool.len()];
    };
    let min_nw = f64::from(min_weight) / sum;
    let scale = ((min_nw * min_ring_size as f64).ceil() / min_nw).min(max_ring_size as f64);
    pool.weights()
        .map(|w| match w {
            0 => 0,
            // Saturating float-to-int cast; the config bounds the ring sizes.
            _ => ((f64::from(w) / sum * scale).round() as usize).max(1),
        })
        .collect()
}

impl Balancer for RingHash {
    fn pick(&mut self, ctx: &mut PickCtx<'_>, out: &mut Picks) {
        match ctx.key {
            Some(key) if !self.hashes.is_empty() => {
                // First point with hash >= key; `len` (past the last) wraps to the first below.
                let start = self.hashes.partition_point(|&h| h < key);
                let tail = self.owners.get(start..).unwrap_or(&[]);
                let head = self.owners.get(..start).unwrap_or(&[]);
                let order = tail.iter().chain(head).map(|&b| usize::from(b));
                self.walk.walk(ctx, out, order);
            }
            _ => self.walk.round_robin(ctx, out),
        }
    }

    fn uses_load(&self) -> bool {
        self.walk.uses_load()
    }
}

#[cfg(test)]
mod tests;
