//! Maglev consistent hashing with weights (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016, §3.4 and pseudocode listing 1), built as Envoy's
//! `MaglevTable` builds it (source/extensions/load_balancing_policies/maglev/maglev_lb.cc), and
//! the hash-order walk with bounded loads (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing
//! with Bounded Loads", SODA 2018; Envoy's `hash_balance_factor`) that `ring_hash` shares.
//!
//! Table: `M` slots (`table_size`, prime; 65537 is the paper's and Envoy's default), each the
//! index of a backend. Backend `b` has the permutation `(offset + k * skip) % M` with
//! `offset = xxh64(id, seed 0) % M` and `skip = xxh64(id, seed 1) % (M - 1) + 1`, hashing the
//! backend **id** (the stable fleet-wide identity, not its address). Backends take turns in id
//! order (as Envoy sorts by hash key, so the table depends only on the set of (id, weight), not
//! on the configured order); a turn claims the next free slot of the backend's permutation.
//! Weights, exactly as Envoy's turn rule `iteration * weight < target ? skip : take` with
//! `target` growing by `max_weight` per turn taken: in the sweep numbered `t` (from 1), a
//! backend takes a turn iff `t * weight >= turns_taken * max_weight`, so it holds about
//! `M * weight / sum(weights)` slots. Integer weights make the rule exact (Envoy uses doubles).
//! With equal weights every backend gets `floor(M/N)` or `ceil(M/N)` slots.
//! If `M` is not prime a permutation may not reach every slot; a backend whose permutation has
//! met `M` occupied slots takes the lowest free slot instead, so the table is still full but
//! the balance and minimal-disruption properties are only those of a prime `M`.
//!
//! Picks: with no key, the pool's smooth weighted round robin. With a key, the walk starts at
//! slot `key % M` and goes forward, wrapping, collecting distinct accepted backends: primary
//! first, then the next backends in hash order for retries (see [`HashWalk`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::round_robin::SmoothWeighted;
use super::{Balancer, PickCtx, Picks};
use crate::backend::{Pool, MAX_BACKENDS};
use crate::config::MAX_HOSTS_LIMIT;

/// A free slot while the table is built; never a backend index (see the assertion below).
const FREE: u16 = u16::MAX;
const _: () = assert!(MAX_BACKENDS < FREE as usize, "backend indexes must fit a table entry");

/// Maglev consistent hashing over one pool; see the module doc.
#[derive(Debug, Clone)]
pub struct Maglev {
    /// Backend index per slot; empty when no backend has a slot (no backend, or `M` = 0).
    table: Vec<u16>,
    walk: HashWalk,
}

impl Maglev {
    /// Builds the table once: `table_size` slots (prime, validated by the config; see the
    /// module doc otherwise), bounded loads when `balance_factor` is `Some(c)`.
    pub fn new(pool: &Pool, table_size: usize, balance_factor: Option<f64>) -> Maglev {
        let table = build_table(pool, table_size);
        let walk = HashWalk::new(pool, table.iter().map(|&b| usize::from(b)), balance_factor);
        Maglev { table, walk }
    }
}

impl Balancer for Maglev {
    fn pick(&mut self, ctx: &mut PickCtx<'_>, out: &mut Picks) {
        let len = self.table.len() as u64;
        match ctx.key {
            Some(key) if len > 0 => {
                let start = usize::try_from(key % len).unwrap_or(0);
                let tail = self.table.get(start..).unwrap_or(&[]);
                let head = self.table.get(..start).unwrap_or(&[]);
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

/// One backend's state while the table is built.
struct Turns {
    backend: u16,
    /// Current position of its permutation, and the step to the next one.
    pos: usize,
    skip: usize,
    /// Positions of its permutation examined so far (see the non-prime fallback).
    probed: usize,
    weight: u64,
    /// `turns taken * max_weight`.
    target: u64,
}

/// The Maglev table for `pool`: see the module doc.
fn build_table(pool: &Pool, m: usize) -> Vec<u16> {
    let mut backends: Vec<(&str, u16, u64)> = pool
        .iter()
        .enumerate()
        .filter(|(_, b)| b.weight > 0)
        .filter_map(|(i, b)| Some((b.id.as_str(), u16::try_from(i).ok()?, u64::from(b.weight))))
        .filter(|&(_, i, _)| i != FREE)
        .collect();
    if backends.is_empty() || m == 0 {
        return Vec::new();
    }
    // Ties (equal ids, which validation refuses) fall back to pool order: a total order, so
    // the unstable sort gives the same table on every VM.
    backends.sort_unstable_by(|a, b| a.0.cmp(b.0).then(a.1.cmp(&b.1)));
    let max_weight = backends.iter().map(|&(_, _, w)| w).max().unwrap_or(1);
    let m64 = m as u64;
    let mut turns: Vec<Turns> = backends
        .iter()
        .map(|&(id, backend, weight)| {
            let offset = xxhash_rust::xxh64::xxh64(id.as_bytes(), 0) % m64;
            let skip = match m64.checked_sub(1) {
                Some(r) if r > 0 => xxhash_rust::xxh64::xxh64(id.as_bytes(), 1) % r + 1,
                _ => 1,
            };
            // Both are below m, which is a usize.
            let (pos, skip) = (offset as usize, skip as usize);
            Turns { backend, pos, skip, probed: 0, weight, target: 0 }
        })
        .collect();

    // Envoy sweeps the backends in order once per iteration, each taking a turn iff
    // `iteration * weight >= target`. The heap yields the same (iteration, order) sequence
    // without visiting backends whose turn is not due, so skewed weights cost no idle sweeps.
    let mut due: BinaryHeap<Reverse<(u64, usize)>> =
        (0..turns.len()).map(|i| Reverse((1, i))).collect();
    let mut table = vec![FREE; m];
    let mut lowest_free = 0usize;
    // One slot filled per turn.
    for _ in 0..m {
        let Some(Reverse((iteration, i))) = due.pop() else { break };
        let Some(t) = turns.get_mut(i) else { break };
        let slot = claim(&mut table, t, m, &mut lowest_free);
        if let Some(entry) = table.get_mut(slot) {
            *entry = t.backend;
        }
        t.target = t.target.saturating_add(max_weight);
        // Next sweep with `sweep * weight >= target`, after this one.
        let next = t.target.div_ceil(t.weight.max(1)).max(iteration + 1);
        due.push(Reverse((next, i)));
    }
    table
}

/// The slot `t` takes on its turn: the next free position of its permutation, or (when the
/// permutation has met `m` occupied positions, only possible for a non-prime `m`) the lowest
/// free slot. The caller guarantees a free slot exists.
fn claim(table: &mut [u16], t: &mut Turns, m: usize, lowest_free: &mut usize) -> usize {
    while t.probed < m {
        let pos = t.pos;
        // pos, skip < m: one subtraction is the remainder, and pos + skip < 2m cannot overflow
        // (the table holds m two-byte entries, so 2m <= isize::MAX).
        t.pos += t.skip;
        if t.pos >= m {
            t.pos -= m;
        }
        t.probed += 1;
        if table.get(pos) == Some(&FREE) {
            return pos;
        }
    }
    let skip = *lowest_free;
    *lowest_free =
        table.iter().skip(skip).position(|&b| b == FREE).map_or(table.len(), |p| skip + p);
    *lowest_free
}

/// What the consistent-hashing balancers share: the round robin for requests without a key,
/// and the walk in hash order that turns a position on the table (or ring) into picks.
///
/// The walk visits backends in hash order from the key's position, wrapping once at most,
/// and takes each distinct backend `ctx.accept` holds for, until `out` is full. It stops early
/// once every backend of the table has been met, or every accepted one: the accepted backends
/// are counted (one `accept` call per backend) up front with bounded loads, otherwise only once
/// the walk has taken as many steps as there are backends in the table, so a short walk costs
/// no count and a long one at most doubles its work. No allocation: a backend is marked as met
/// by writing the walk's epoch into a per-backend array.
///
/// Bounded loads, when `balance_factor` is `Some(c)`: with `W` the sum of the weights of the
/// accepted backends in the table and `T = ctx.load.total_in_flight()` (read once per pick), a
/// backend of weight `w` is admitted iff `in_flight < ceil(c * (T + 1) * w / W)`: its share of
/// the load by weight, times `c`, as Envoy's `hash_balance_factor` scales each host's bound by
/// its normalized weight (with equal weights, `ceil(c * (T + 1) / n)` for `n` accepted
/// backends). `c` is taken to 1/1000 and at least 1 (NaN and values below 1 count as 1; Envoy
/// takes it in whole percent), and the bound is computed in integers. `in_flight` is read once
/// for each accepted backend met, only until `out` is full. The primary is the
/// first admitted backend in hash order; the other admitted ones follow, then the backends
/// over the bound in hash order, so when all are over it the primary is the first accepted.
#[derive(Debug, Clone)]
pub(crate) struct HashWalk {
    fallback: SmoothWeighted,
    /// `met[i] == epoch` once backend `i` was met by the current walk.
    met: Vec<u32>,
    epoch: u32,
    /// `in_table[i]`: backend `i` owns at least one slot (or ring point).
    in_table: Vec<bool>,
    /// Configured weight of each backend, for the load bounds.
    weights: Vec<u32>,
    /// Number of backends in the table.
    present: usize,
    /// `c` in thousandths, when loads are bounded.
    balance_milli: Option<u64>,
}

impl HashWalk {
    /// `owners` lists the backend of every table slot (or ring point), in any order.
    pub(crate) fn new(
        pool: &Pool,
        owners: impl Iterator<Item = usize>,
        balance_factor: Option<f64>,
    ) -> Self {
        let mut in_table = vec![false; pool.len()];
        for b in owners {
            if let Some(flag) = in_table.get_mut(b) {
                *flag = true;
            }
        }
        let present = in_table.iter().filter(|&&p| p).count();
        HashWalk {
            fallback: SmoothWeighted::new(pool.weights()),
            met: vec![0; pool.len()],
            epoch: 0,
            in_table,
            weights: pool.weights().collect(),
            present,
            balance_milli: balance_factor.map(balance_milli),
        }
    }

    pub(crate) fn uses_load(&self) -> bool {
        self.balance_milli.is_some()
    }

    /// Picks for a request without a key (or when no backend is in the table).
    pub(crate) fn round_robin(&mut self, ctx: &mut PickCtx<'_>, out: &mut Picks) {
        self.fallback.pick(ctx, out);
    }

    /// Clears `out` and fills it from `order`, the backends in hash order from the key's
    /// position (each table slot or ring point once).
    pub(crate) fn walk(
        &mut self,
        ctx: &mut PickCtx<'_>,
        out: &mut Picks,
        order: impl Iterator<Item = usize>,
    ) {
        out.clear();
        if self.present == 0 {
            self.round_robin(ctx, out);
            return;
        }
        let epoch = self.next_epoch();
        let accept = ctx.accept;
        let mut accepted_total = None;
        let mut bound = None;
        if let Some(milli) = self.balance_milli {
            let (n, total_weight) = self.accepted(accept);
            if n == 0 {
                return;
            }
            accepted_total = Some(n);
            bound = Some(LoadBound::new(milli, ctx.load.total_in_flight(), total_weight));
        }
        let mut over = [0usize; MAX_HOSTS_LIMIT];
        let mut n_over = 0usize;
        let (mut met, mut accepted) = (0usize, 0usize);
        for (step, b) in order.enumerate() {
            if accepted_total.is_none() && step >= self.present {
                accepted_total = Some(self.accepted(accept).0);
            }
            if out.is_full() || met >= self.present || accepted_total.is_some_and(|n| accepted >= n)
            {
                break;
            }
            match self.met.get_mut(b) {
                Some(mark) if *mark != epoch => *mark = epoch,
                _ => continue,
            }
            met += 1;
            if !accept(b) {
                continue;
            }
            accepted += 1;
            match bound {
                Some(bound) if ctx.load.in_flight(b) >= bound.of(self.weight(b)) => {
                    if let Some(slot) = over.get_mut(n_over) {
                        *slot = b;
                        n_over += 1;
                    }
                }
                _ => {
                    out.push(b);
                }
            }
        }
        for &b in over.iter().take(n_over) {
            out.push(b);
        }
    }

    fn next_epoch(&mut self) -> u32 {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.met.fill(0);
            self.epoch = 1;
        }
        self.epoch
    }

    /// The number of accepted backends that are in the table, and the sum of their weights
    /// (one `accept` call per backend in the table).
    fn accepted(&self, accept: &dyn Fn(usize) -> bool) -> (usize, u64) {
        self.in_table
            .iter()
            .enumerate()
            .filter(|&(i, &p)| p && accept(i))
            .fold((0, 0), |(n, sum), (i, _)| (n + 1, sum.saturating_add(u64::from(self.weight(i)))))
    }

    fn weight(&self, backend: usize) -> u32 {
        self.weights.get(backend).copied().unwrap_or(0)
    }
}

/// `c` in thousandths, at least 1000 (NaN and values below 1 count as 1).
fn balance_milli(c: f64) -> u64 {
    let milli = (c * 1000.0).round();
    if milli >= 1000.0 {
        milli as u64 // Saturates for huge and infinite factors.
    } else {
        1000
    }
}

/// The load bounds of one walk (see [`HashWalk`]): `ceil(c * (T + 1) * w / W)` for a backend
/// of weight `w`, in integers.
#[derive(Debug, Clone, Copy)]
struct LoadBound {
    /// `1000 * c * (T + 1)`: below 2^64 * 2^64, so it fits.
    num: u128,
    /// `1000 * W`, `W` = 0 counting as 1.
    den: u128,
}

impl LoadBound {
    /// `c = milli / 1000`, `T = total_in_flight`, `W = total_weight`.
    fn new(milli: u64, total_in_flight: u64, total_weight: u64) -> Self {
        LoadBound {
            num: u128::from(milli) * (u128::from(total_in_flight) + 1),
            den: 1000 * u128::from(total_weight.max(1)),
        }
    }

    /// The bound of a backend of weight `weight`, exactly, or `u64::MAX` when it is past that.
    /// `num * weight` saturates only at 2^128 or more, and then the exact quotient is past
    /// `u64::MAX` too, as `den < 2^64` (`W` is at most `MAX_BACKENDS * u32::MAX`, below 2^46).
    fn of(self, weight: u32) -> u64 {
        let num = self.num.saturating_mul(u128::from(weight));
        u64::try_from(num.div_ceil(self.den)).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests;
