//! Smooth weighted round robin, as in nginx (`ngx_http_upstream_get_peer`,
//! src/http/ngx_http_upstream_round_robin.c, 2012): at step `t` every backend's score is
//! `t·weight − W·picks` (`W` the sum of weights), the highest score wins, ties to the lowest
//! index. Over every cycle of `W` picks each backend gets exactly its weight's share,
//! interleaved rather than in bursts (weights 5,1,1 give a a b a c a a). The order is nginx's,
//! step for step, but found without visiting every backend.
//!
//! How: backends of equal weight share one score line `t·w − W·rounds` and nginx serves them in
//! index order within a round, so they form one class with a cursor (equal weights are a plain
//! rotating index, O(1)). The classes — one per distinct weight, `K` ≤ N of them — are the
//! leaves of a kinetic tournament (a segment tree of winners in which each node also holds the
//! first step at which its loser overtakes its winner; J. Basch, L. Guibas, J. Hershberger,
//! "Data Structures for Mobile Data", J. Algorithms 31(1), 1999). A pick reads the root, charges
//! that class and repairs the path to its leaf, O(log K); moving to the next step also repairs
//! the nodes where a heavier class has just overtaken a lighter one, with their ancestors.
//! Between two changes of its children's winners a node's winner changes at most once (two
//! fixed lines cross once), so the winner changes at all nodes together are O(log K) per pick
//! and the repairs O(log² K) per pick, amortized; measured: 10.2 node repairs per pick for 1000
//! classes, 2.0 for 3 (tests). Every `W` steps nginx's scores are all zero again and the tree
//! is rebuilt, O(K).
//!
//! Backends the request does not accept: the schedule is nginx's over the whole pool, and a
//! backend whose turn comes while it is not accepted loses that turn (charged as if picked).
//! Over a cycle every accepted backend still gets exactly its weight, so the refused turns are
//! spread over the others by weight, and a backend that comes back (ejection over, slow start)
//! gets no burst of catch-up picks. At most [`MAX_POPS`] turns are read for the primary; past
//! them (most of the weight refused), and when no backend has a positive weight, the picks are
//! the next accepted backends of a rotating scan of the pool, O(N).
//!
//! Retry hosts are the backends with the next-highest scores after the primary, i.e. those the
//! following picks would choose. They come in groups of equal score — a class's backends still
//! due this round score its line, those already served `W` less — taken in score order by a
//! best-first walk of the tournament (O(log K) per group), each group in random order per
//! request, so the retries of a failing backend spread over its peers instead of all landing
//! on its successor. A group whose members are mostly refused is scanned, O(its size); when the
//! groups run out (fewer accepted backends than wanted, or weight-0 backends) the rotating scan
//! completes the picks, O(N).
//!
//! Work per pick, every backend accepted and at least `capacity` of them: O(log K), plus the
//! amortized repairs above; O(1) with equal weights. Worst case, most of the pool refused:
//! O(N). No allocation after construction.

use super::{below, tie_break, Balancer, PickCtx, Picks};
use crate::config::MAX_HOSTS_LIMIT;

/// Turns of the schedule read for one primary pick before the rotating scan takes over.
pub(crate) const MAX_POPS: usize = 64;
/// Largest sum of weights kept exact (scores stay below 2^62); a larger pool, which no config
/// can produce (10,000 backends of weight at most 10,000), has its weights halved until it fits.
const MAX_TOTAL: u64 = 1 << 31;
/// A node whose winner cannot change until the tree changes.
const NEVER: i64 = i64::MAX;
/// An empty leaf (the tree has a power-of-two number of leaves).
const NONE: u32 = u32::MAX;
/// Groups taken from the tournament for retry hosts before the rotating scan fills the rest.
const MAX_GROUPS: usize = 64;
/// Candidates of the best-first walk (groups offered and not yet taken); offers past it are
/// dropped, and the rotating scan fills what they would have.
const MAX_CANDIDATES: usize = 64;

/// Backends of one weight.
#[derive(Debug, Clone)]
struct Class {
    weight: i64,
    /// Its backends are `members[start..start + len]`, ascending.
    start: usize,
    len: usize,
    /// `members[start..start + cursor]` were served in the current round.
    cursor: usize,
    /// `W` times the rounds completed in this cycle: the class's score is `weight·t − base`.
    base: i64,
    /// The backend it serves next, `members[start + cursor]`: nginx breaks equal scores by the
    /// lower index.
    head: u32,
}

impl Class {
    #[inline(always)]
    fn score(&self, step: i64) -> i64 {
        self.weight * step - self.base
    }

    /// Whether it beats `other` at `step`.
    #[inline(always)]
    fn beats(&self, other: &Class, step: i64) -> bool {
        let (a, b) = (self.score(step), other.score(step));
        a > b || (a == b && self.head < other.head)
    }

    /// The first step after `step` at which `self`, beaten at `step` by `winner`, beats it;
    /// [`NEVER`] if it never does (only a heavier class gains).
    #[inline(always)]
    fn overtakes(&self, winner: &Class, step: i64) -> i64 {
        // At t: (self.weight − winner.weight)·t > self.base − winner.base, or equal with the
        // lower head. As the winner wins at `step`, gap ≥ gain·step > 0: unsigned division.
        let Ok(gain) = u64::try_from(self.weight - winner.weight) else { return NEVER };
        if gain == 0 {
            return NEVER;
        }
        let Ok(gap) = u64::try_from(self.base - winner.base) else { return step + 1 };
        let mut at = gap / gain + 1;
        if gap % gain == 0 && self.head < winner.head {
            at -= 1;
        }
        i64::try_from(at).unwrap_or(NEVER).max(step + 1)
    }
}

/// A tournament node.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// The winning class of the subtree (`NONE` when it has no class).
    win: u32,
    /// The first step at which this node's winner or a descendant's may change.
    until: i64,
}

/// A group of backends with one score, offered for retry hosts.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: i64,
    /// Orders equal scores, at random per pick.
    tie: u32,
    /// A tournament node (its winning class's backends still due this round) times 2, plus 1
    /// for those already served.
    group: u32,
}

#[derive(Debug, Clone)]
pub struct SmoothWeighted {
    classes: Vec<Class>,
    /// Backend indexes grouped by class.
    members: Vec<u32>,
    /// `W`, the sum of the (positive) weights.
    total: i64,
    /// The current step, 1..=W.
    step: i64,
    /// Leaves of the tournament, a power of two (class `k` at node `leaves + k`).
    leaves: usize,
    /// The tournament: node 1 the root, `v`'s children `2v` and `2v + 1`.
    nodes: Vec<Node>,
    /// Backends in the pool.
    n: usize,
    /// Where the rotating scan resumes.
    scan: usize,
    /// Retry candidates of the current pick (allocated once, [`MAX_CANDIDATES`] at most).
    cands: Vec<Candidate>,
    /// Node repairs so far, for the tests of the work per pick.
    #[cfg(test)]
    pub(crate) pulls: u64,
}

impl SmoothWeighted {
    pub fn new(weights: impl Iterator<Item = u32>) -> Self {
        Self::with_weights(weights.map(u64::from).collect())
    }

    /// [`SmoothWeighted::new`] without its iterator: one copy of this for every caller.
    fn with_weights(mut weight: Vec<u64>) -> Self {
        let n = weight.len();
        while weight.iter().sum::<u64>() > MAX_TOTAL {
            weight.iter_mut().filter(|w| **w > 1).for_each(|w| *w = w.div_ceil(2));
            if weight.iter().all(|&w| w <= 1) {
                // n > 2^31 backends: not representable anyway; schedule none.
                weight.fill(0);
            }
        }
        // By weight, then index: (weight << 32 | index) sorted as plain numbers (weights are
        // capped far below 2^32 above, and so are pools).
        let mut packed: Vec<u64> = (0..n)
            .filter_map(|i| Some((*weight.get(i).filter(|&&w| w > 0)? << 32) | i as u64))
            .collect();
        packed.sort_unstable();
        let order: Vec<usize> = packed.iter().map(|&p| (p & 0xFFFF_FFFF) as usize).collect();
        let mut classes: Vec<Class> = Vec::new();
        let mut members = Vec::with_capacity(order.len());
        for (pos, &i) in order.iter().enumerate() {
            let w = weight.get(i).copied().unwrap_or(0) as i64;
            match classes.last_mut() {
                Some(c) if c.weight == w => c.len += 1,
                _ => classes.push(Class {
                    weight: w,
                    start: pos,
                    len: 1,
                    cursor: 0,
                    base: 0,
                    head: i as u32,
                }),
            }
            members.push(i as u32);
        }
        let total = classes.iter().map(|c| c.weight * c.len as i64).sum();
        let leaves = classes.len().max(1).next_power_of_two();
        let mut rr = SmoothWeighted {
            classes,
            members,
            total,
            step: 1,
            leaves,
            nodes: vec![Node { win: NONE, until: NEVER }; 2 * leaves],
            n,
            scan: 0,
            cands: Vec::with_capacity(MAX_CANDIDATES),
            #[cfg(test)]
            pulls: 0,
        };
        rr.reset();
        rr
    }

    /// Back to step 1 with every class at the start of its round: nginx's state at the start of
    /// every cycle. O(K).
    fn reset(&mut self) {
        self.step = 1;
        for c in &mut self.classes {
            c.cursor = 0;
            c.base = 0;
            c.head = self.members.get(c.start).copied().unwrap_or(u32::MAX);
        }
        let classes = self.classes.len();
        for (k, node) in self.nodes.iter_mut().enumerate() {
            let leaf = k.checked_sub(self.leaves).filter(|&k| k < classes);
            *node = Node { win: leaf.map_or(NONE, |k| k as u32), until: NEVER };
        }
        for v in (1..self.leaves).rev() {
            self.pull(v);
        }
    }

    #[inline(always)]
    fn class(&self, k: u32) -> Option<&Class> {
        self.classes.get(k as usize)
    }

    /// Recomputes node `v` from its children, at the current step.
    fn pull(&mut self, v: usize) {
        #[cfg(test)]
        {
            self.pulls += 1;
        }
        let Some(&[l, r]) = self.nodes.get(2 * v..2 * v + 2) else { return };
        let step = self.step;
        let (win, until) = match (self.class(l.win), self.class(r.win)) {
            (Some(a), Some(b)) if b.beats(a, step) => (r.win, a.overtakes(b, step)),
            (Some(a), Some(b)) => (l.win, b.overtakes(a, step)),
            (Some(_), None) => (l.win, NEVER),
            (None, _) => (r.win, NEVER),
        };
        if let Some(node) = self.nodes.get_mut(v) {
            *node = Node { win, until: until.min(l.until).min(r.until) };
        }
    }

    /// Brings every node of `v`'s subtree whose winner may have changed up to the current step.
    fn refresh(&mut self, v: usize) {
        if v >= self.leaves || self.nodes.get(v).is_none_or(|n| n.until > self.step) {
            return;
        }
        self.refresh(2 * v);
        self.refresh(2 * v + 1);
        self.pull(v);
    }

    /// Takes the next turn of the schedule: the backend nginx would pick now, charged as
    /// picked. `None` when no backend has a positive weight.
    fn pop(&mut self) -> Option<usize> {
        let k = self.nodes.get(1).map(|n| n.win).filter(|&k| k != NONE)? as usize;
        let (total, members) = (self.total, &self.members);
        let c = self.classes.get_mut(k)?;
        let backend = c.head as usize;
        c.cursor += 1;
        if c.cursor == c.len {
            c.cursor = 0;
            c.base += total;
        }
        c.head = members.get(c.start + c.cursor).copied().unwrap_or(u32::MAX);
        if self.step >= self.total {
            self.reset();
            return Some(backend);
        }
        // Repair the path to the charged class at the next step, bottom-up: first any
        // overtake due in the sibling subtree, then the node.
        self.step += 1;
        let mut v = self.leaves + k;
        while v > 1 {
            self.refresh(v ^ 1);
            v /= 2;
            self.pull(v);
        }
        Some(backend)
    }

    /// Appends accepted backends not yet in `out` from a rotating scan of the pool, until full.
    fn scan_fill(&mut self, out: &mut Picks, accept: &dyn Fn(usize) -> bool) {
        let n = self.n;
        let mut first = None;
        for j in 0..n {
            if out.is_full() {
                break;
            }
            let i = (self.scan + j) % n;
            if accept(i) && out.push(i) && first.is_none() {
                first = Some(i);
            }
        }
        if let Some(i) = first {
            self.scan = (i + 1) % n.max(1);
        }
    }

    /// Appends to `out` accepted backends of `group` not yet in it, in random order, until full.
    /// A group no larger than the picks is ordered by [`tie_break`] with the pick's `salt`; from
    /// a larger one backends are drawn at random, then it is scanned from a random member.
    fn take_group(
        group: &[u32],
        out: &mut Picks,
        accept: &dyn Fn(usize) -> bool,
        rng: &mut fastrand::Rng,
        salt: u64,
    ) {
        let len = group.len();
        if len == 0 || out.is_full() {
            return;
        }
        // A group that may have to be taken whole is ordered; from a larger one, random draws
        // are cheaper (and as uniform).
        if len <= out.capacity() {
            let mut keys = [0u64; MAX_HOSTS_LIMIT];
            for (key, &i) in keys.iter_mut().zip(group) {
                *key = tie_break(i as usize, salt);
            }
            let keys = keys.get_mut(..len).unwrap_or(&mut []);
            while !out.is_full() {
                // The highest key left; taken keys are zeroed (a key of 0 sorts last anyway).
                let Some((j, _)) =
                    keys.iter().enumerate().filter(|&(_, &k)| k > 0).max_by_key(|&(_, &k)| k)
                else {
                    break;
                };
                if let (Some(key), Some(&i)) = (keys.get_mut(j), group.get(j)) {
                    *key = 0;
                    if accept(i as usize) {
                        out.push(i as usize);
                    }
                }
            }
            return;
        }
        // Draws with replacement, rejecting repeats: uniform while few are refused.
        let tries = 2 * out.capacity().saturating_sub(out.len()) + 2;
        for _ in 0..tries {
            if out.is_full() {
                return;
            }
            if let Some(&i) = group.get(below(rng, len)) {
                let i = i as usize;
                if !out.contains(i) && accept(i) {
                    out.push_absent(i);
                }
            }
        }
        let from = below(rng, len);
        for j in 0..len {
            if out.is_full() {
                return;
            }
            if let Some(&i) = group.get((from + j) % len) {
                let i = i as usize;
                if accept(i) {
                    out.push(i);
                }
            }
        }
    }

    /// Offers the group at tournament `node` (its winning class's backends still due, or with
    /// `served` those already served this round) as a retry candidate.
    fn offer(&self, cands: &mut Vec<Candidate>, node: usize, served: bool, salt: u64) {
        let Some(k) = self.nodes.get(node).map(|n| n.win).filter(|&k| k != NONE) else { return };
        let Some(c) = self.classes.get(k as usize) else { return };
        if served && c.cursor == 0 {
            return;
        }
        let score = c.score(self.step) - if served { self.total } else { 0 };
        let tie = (tie_break(k as usize, salt) >> 32) as u32;
        if cands.len() < MAX_CANDIDATES {
            cands.push(Candidate { score, tie, group: 2 * node as u32 + u32::from(served) });
        }
    }

    /// The backends of a group (see [`SmoothWeighted::offer`]).
    #[inline(always)]
    fn group(&self, node: usize, served: bool) -> &[u32] {
        let Some(c) = self.nodes.get(node).and_then(|n| self.class(n.win)) else { return &[] };
        let range =
            if served { c.start..c.start + c.cursor } else { c.start + c.cursor..c.start + c.len };
        self.members.get(range).unwrap_or(&[])
    }

    /// Offers the rest of `node`'s subtree once its winner's due backends are taken: that
    /// class's served backends, and the sibling subtrees along the path down to its leaf.
    fn offer_rest(&self, cands: &mut Vec<Candidate>, node: usize, salt: u64) {
        let Some(k) = self.nodes.get(node).map(|n| n.win).filter(|&k| k != NONE) else { return };
        let leaf = self.leaves + k as usize;
        self.offer(cands, leaf, true, salt);
        let mut u = leaf;
        while u > node {
            self.offer(cands, u ^ 1, false, salt);
            u /= 2;
        }
    }

    /// Fills `out` after its primary with the groups of next-highest score (see the module doc).
    fn fill_retries(
        &mut self,
        out: &mut Picks,
        accept: &dyn Fn(usize) -> bool,
        rng: &mut fastrand::Rng,
    ) {
        let salt = rng.u64(..);
        // The leading class's due backends usually suffice: no candidate list then.
        Self::take_group(self.group(1, false), out, accept, rng, salt);
        if out.is_full() {
            return;
        }
        // Taken out of `self` for the walk (no allocation: its capacity stays).
        let mut cands = std::mem::take(&mut self.cands);
        cands.clear();
        self.offer_rest(&mut cands, 1, salt);
        for _ in 0..MAX_GROUPS {
            if out.is_full() {
                break;
            }
            let Some(Candidate { group, .. }) = take_best(&mut cands) else { break };
            let (node, served) = ((group / 2) as usize, group % 2 == 1);
            Self::take_group(self.group(node, served), out, accept, rng, salt);
            if !served {
                self.offer_rest(&mut cands, node, salt);
            }
        }
        self.cands = cands;
        // Groups exhausted or too many refused (or backends of weight 0, in no class).
        self.scan_fill(out, accept);
    }
}

/// Removes and returns the candidate of highest score (ties: random per pick). The list is
/// short: a linear search.
fn take_best(cands: &mut Vec<Candidate>) -> Option<Candidate> {
    let best = (0..cands.len()).max_by_key(|&j| cands.get(j).map(|c| (c.score, c.tie)))?;
    Some(cands.swap_remove(best))
}

impl Balancer for SmoothWeighted {
    fn pick(&mut self, ctx: &mut PickCtx<'_>, out: &mut Picks) {
        out.clear();
        let accept = ctx.accept;
        for _ in 0..MAX_POPS {
            let Some(i) = self.pop() else { break };
            if accept(i) {
                out.push(i);
                break;
            }
        }
        if out.is_empty() {
            self.scan_fill(out, accept);
        } else if !out.is_full() {
            self.fill_retries(out, accept, ctx.rng);
        }
    }
}

#[cfg(test)]
mod tests;
