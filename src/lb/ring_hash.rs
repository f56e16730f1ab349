//! Ketama-style consistent hashing on a ring (Karger et al., STOC 1997; libketama's
//! `ketama_get_server`), built as Envoy's ring hash builds it
//! (source/extensions/load_balancing_policies/ring_hash/ring_hash_lb.cc) with xxHash64, except
//! for the number of points per backend (below).
//!
//! Ring: each backend owns points at `xxh64("<id>_<k>")` for `k` in `0..points`, hashing the
//! backend **id** (the stable fleet-wide identity), sorted by hash (ties, which need an xxh64
//! collision, by id). Backends of weight 0 get no point.
//!
//! Point counts: the positive weights are first divided by their gcd (`100:200:300` is
//! `1:2:3`), giving `w_i` with sum `W`. Each weight unit gets `P` points, `P` the smallest power
//! of two with `P * W >= min_ring_size`, so backend `i` gets `w_i * P` points and the ring holds
//! `P * W`: from `min_ring_size` to `2 * min_ring_size` points while `W < min_ring_size` (the
//! common case), `W` points (`P` = 1) otherwise. If `P * W > max_ring_size`, backend `i` gets
//! `max(1, round(w_i * max_ring_size / W))` points instead: the ring may then exceed
//! `max_ring_size` by up to `N / 2` points, as each of the `N` backends rounds by half a point
//! at most (by more, below `N`, only when a backend's share is under half a point, as every
//! backend keeps at least one point). With the default 1024: 3 equal backends get 512 points
//! each (1536 in all), 10 get 128 (1280), 100 get 16 (1600), 1000 get 2 (2000), and `1:2:3`
//! gets `256:512:768`.
//!
//! How this differs from Envoy, and why: Envoy sizes the ring from the whole pool, with `min_nw`
//! the smallest normalized weight, `scale = min(ceil(min_nw * min_ring_size) / min_nw,
//! max_ring_size)` and `w_i / sum(w) * scale` points per backend (handed out with running sums
//! in pool order), so every backend's count depends on every other backend: when 1 of 10 equal
//! backends leaves, the 9 others go from 103 to 114 points each, and 15% of the keys move
//! (measured over 20,000 random keys) where 10% (the leaver's) must. Here a backend's count depends on the others only through
//! `P`, which changes only when `W` crosses a power-of-two fraction of `min_ring_size`
//! (`min_ring_size / 2^j`), and through the gcd. While both stay, a backend keeps exactly its
//! points when another joins or leaves, so removing 1 of `N` equal backends moves only that
//! backend's keys (about 1/N). When `P` does change (at 1024, between `N` and `N - 1` equal
//! backends for `N` a power of two up to 1024: 2, 4, 8, ..., 64, ...), every count doubles or
//! halves; as the points `0..P` are among `0..2P`, the keys that move are the leaver's and those
//! the added points take (or the removed ones free), about half of all keys (measured: 47% for
//! 4 -> 3, 51% for 64 -> 63, where Envoy's formula moves 37% and 8%). Under the `max_ring_size` cap
//! every count depends on `W` again, as in Envoy. The ring is up to twice Envoy's size (a lookup
//! is a binary search: one step more), and the rings (so the key -> backend mappings) of the two
//! differ except where both rules give the same counts (e.g. 2 points each for 6 backends at
//! 12, as in Envoy's tests).
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
    let Some((gcd, sum)) = reduced_weights(pool) else {
        return vec![0; pool.len()];
    };
    let per_unit = points_per_unit(sum, min_ring_size, max_ring_size);
    let (max, sum) = (max_ring_size as u128, u128::from(sum));
    pool.weights()
        .map(|w| {
            let w = u128::from(w.checked_div(gcd).unwrap_or(0));
            let points = match per_unit {
                _ if w == 0 => 0,
                Some(p) => w * u128::from(p),
                // round(w * max / sum), at least 1: w <= sum, so no overflow.
                None => ((2 * w * max + sum) / (2 * sum).max(1)).max(1),
            };
            // At most max(P * W, max_ring_size), which the config bounds.
            usize::try_from(points).unwrap_or(usize::MAX)
        })
        .collect()
}

/// The gcd of the positive weights and the sum of the weights divided by it; `None` when no
/// weight is positive.
fn reduced_weights(pool: &Pool) -> Option<(u32, u64)> {
    let gcd = pool.weights().fold(0, gcd);
    if gcd == 0 {
        return None;
    }
    let sum = pool
        .weights()
        .fold(0u64, |sum, w| sum.saturating_add(u64::from(w.checked_div(gcd).unwrap_or(0))));
    Some((gcd, sum))
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `P`, the points per unit of reduced weight: the smallest power of two with
/// `P * sum >= min_ring_size`; `None` when `P * sum > max_ring_size` (the ring is capped).
fn points_per_unit(sum: u64, min_ring_size: usize, max_ring_size: usize) -> Option<u64> {
    let p = (min_ring_size as u64).div_ceil(sum.max(1)).checked_next_power_of_two()?;
    (u128::from(p) * u128::from(sum) <= max_ring_size as u128).then_some(p)
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
