//! One pool's health, as every worker VM runs it on its tick: follow the published health
//! table into an [`Availability`] for the router; take or renew the prober lease; if held, send
//! the probes its [`Schedule`] says are due, apply their answers, end ejections whose time is
//! up; and apply each request's outcome (passive ejection). Host calls (dispatch, timers,
//! logging) stay in the adapter.
//!
//! Cost, for a pool of N backends (what makes it independent of N):
//! - Shared data holds what every worker needs: the table (health, ejection, ramp start; O(N)
//!   bytes) is written only when a backend changes state, and read by a worker only when its
//!   small version key moved. A tick of a VM whose pool did not change reads the lease, the
//!   version and the current pointer: O(1) host calls, plus the backends on a slow-start ramp.
//! - The lease holder keeps each backend's consecutive probe results in memory and writes a
//!   probe's result only when it changes the backend's health (at most [`WRITES_PER_TICK`]
//!   table writes between two ticks; the rest wait for the tick, which writes them at once): a
//!   probe costs O(1), a mass outage O(N) per tick, not per probe.
//! - Probes are spread over the interval by [`Schedule`] (O(log N + due) per tick), and never
//!   more than [`MAX_PROBES_IN_FLIGHT`] are on their way: the rest wait their turn.
//! - Passive ejection counts each backend's error streak in its own small key
//!   ([`keys::health_errors`]): a failed request is one read and one write of it; a success
//!   one read (and a write when there was a streak); only an ejection writes the table.
//!
//! Tables and leases are fenced by configuration ([`crate::state::current`]): a backend that
//! the current configuration's live prober also checks is read from its table, never probed
//! or written by another configuration of the same cluster; the rest this prober checks
//! itself. Per tick: one read of the pointer, and of the other table's lease and version
//! while another configuration is current.

use std::collections::VecDeque;

use super::schedule::Schedule;
use super::{
    Availability, BackendHealth, Change, HealthPolicy, HealthTable, Probe, ProbeFailure, Transition,
};
use crate::config::{Config, HealthCheck};
use crate::state::health_table::{self, Snapshot};
use crate::state::lease::{self, TTL_INTERVALS};
use crate::state::{current, keys, SharedStore, StoreError};

use crate::MS;
/// Lease renewal period without active checks (passive ejection and slow start only).
const PASSIVE_LEASE_NS: u64 = 1_000 * MS;
/// Probes on their way at once, at most. Probes are callouts through the pool's cluster, so
/// its circuit breakers (`max_requests`, `max_pending_requests`, 1,024 each by default) must
/// leave room for this many beside the traffic (docs/health.md).
pub const MAX_PROBES_IN_FLIGHT: usize = 256;
/// Table writes for probe results between two ticks; further changes wait for the tick.
pub const WRITES_PER_TICK: u32 = 4;
/// CAS attempts on one error-streak key.
const STREAK_ATTEMPTS: usize = 16;

/// A probe on its way: its callout token, who it checks and when it left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    token: u32,
    index: usize,
    sent_ns: u64,
}

/// The table of the cluster's current configuration, when that is another one than ours.
#[derive(Debug, Clone)]
struct Current {
    fence: u64,
    table_key: String,
    version_key: String,
    lease_key: String,
    snapshot: Snapshot,
    /// Whether its prober lease was live at the last tick.
    live: bool,
}

/// A probe result that changed a backend's health, not yet in the table.
#[derive(Debug, Clone, Copy)]
struct Unpublished {
    index: usize,
    healthy: bool,
    change: Change,
    at_ns: u64,
}

/// An error streak value: `[streak u32][key hash u64]`; a value for another backend (a slot
/// reused) or unreadable reads as no streak.
fn streak_of(bytes: &[u8], hash: u64) -> u32 {
    let (Some(streak), Some(owner)) = (bytes.get(..4), bytes.get(4..12)) else { return 0 };
    let owner = <[u8; 8]>::try_from(owner).map_or(0, u64::from_le_bytes);
    if owner != hash || bytes.len() != 12 {
        return 0;
    }
    <[u8; 4]>::try_from(streak).map_or(0, u32::from_le_bytes)
}

/// The ends of the ejections in force at `now` in `table`.
fn ejection_ends(table: &HealthTable, now_ns: u64) -> Vec<u64> {
    let ends = table.entries().iter().map(|e| e.ejected_until_ns);
    ends.filter(|&u| u > now_ns).collect()
}

fn streak_value(streak: u32, hash: u64) -> [u8; 12] {
    let mut v = [0u8; 12];
    let (a, b) = v.split_at_mut(4);
    a.copy_from_slice(&streak.to_le_bytes());
    b.copy_from_slice(&hash.to_le_bytes());
    v
}

pub struct Prober {
    /// Active checks; `None` with passive ejection or slow start only.
    check: Option<HealthCheck>,
    policy: HealthPolicy,
    keys: Vec<String>,
    backups: Vec<bool>,
    drains: Vec<bool>,
    /// Per backend: the number in its error-streak key (slot or index) and its key's hash.
    streak_ids: Vec<(usize, u64)>,
    /// Digest of what this configuration's table means: backend keys and health settings.
    fence: u64,
    table_key: String,
    version_key: String,
    errors_prefix: String,
    lease_key: String,
    current_key: String,
    cluster: String,
    owner: u64,
    snapshot: Snapshot,
    /// Another configuration that is current, if any.
    current: Option<Current>,
    /// Per backend: its index in the current configuration's table, when that configuration's
    /// live prober checks it (then it is read from there, not probed or written here).
    covered: Vec<Option<usize>>,
    /// What the last availability was computed from (pool order; for the status page).
    view: Option<HealthTable>,
    /// The availability computed from `view`, and what makes it change with time alone.
    availability: Availability,
    /// Accepted backends on a slow-start ramp (weight below 100%).
    ramping: Vec<usize>,
    /// The earliest end of an ejection in `view`.
    next_expiry_ns: Option<u64>,
    /// The ends of the ejections in force as last seen (view or this VM's write): how many are
    /// in force at any instant, for `max_ejection_percent` (O(ejected), at a streak's end only).
    ejected_until: Vec<u64>,
    /// The latest stamp in `view` (ramp start, or ejection end beyond the longest ejection):
    /// when it is ahead of the clock, the holder pulls it back.
    stamps_ahead_of: u64,
    /// `view` must be rebuilt (the pool or the covered backends changed).
    stale: bool,
    /// `view` was rebuilt since the last [`Prober::refresh`] told its caller.
    unreported: bool,
    /// The published table is missing or not keyed by this pool (a new or changed pool): the
    /// lease holder writes it re-keyed, so every worker starts new backends' ramps alike.
    misaligned: bool,
    /// At most [`MAX_PROBES_IN_FLIGHT`]: a scan is O(1) in the pool's size.
    pending: Vec<Pending>,
    /// Per backend: a probe is on its way, or waiting in `backlog`.
    probing: Vec<bool>,
    queued: Vec<bool>,
    /// Probes due but held back by [`MAX_PROBES_IN_FLIGHT`].
    backlog: VecDeque<usize>,
    schedule: Option<Schedule>,
    /// The lease holder's own record, per backend: consecutive probe successes and failures,
    /// and health as it judged it (the table's, when it took the lease).
    streaks: Vec<(u32, u32)>,
    healthy: Vec<bool>,
    unpublished: Vec<Unpublished>,
    writes_since_tick: u32,
    /// Whether the last tick held the lease.
    holder: bool,
}

/// The fence of a configuration: its backend keys in order and its health settings.
fn fence_of(keys: &[String], policy: &HealthPolicy, check: Option<&HealthCheck>) -> u64 {
    let mut text = keys.join("\n");
    text.push_str(&format!("\n{policy:?}\n{check:?}"));
    crate::hash_key::hash(text.as_bytes())
}

fn streak_ids(config: &Config, keys: &[String]) -> Vec<(usize, u64)> {
    config
        .pool
        .iter()
        .zip(keys)
        .enumerate()
        .map(|(i, (b, k))| (b.slot.map_or(i, |s| s as usize), crate::hash_key::hash(k.as_bytes())))
        .collect()
}

impl Prober {
    /// The prober of `config`'s pool; `None` when neither active checks, outlier detection
    /// nor slow start are configured. `owner` must be unique per VM (a random number).
    pub fn new(config: &Config, policy: HealthPolicy, owner: u64) -> Option<Prober> {
        let check = config.health_check.clone();
        if check.is_none() && config.outlier_detection.is_none() && config.slow_start_ms == 0 {
            return None;
        }
        let keys: Vec<String> = config.pool.iter().map(keys::backend).collect();
        let backups = config.pool.iter().map(|b| b.backup).collect();
        let drains = config.pool.iter().map(|b| b.drain).collect();
        // A discovered pool changes with every snapshot: its table and lease stay the same
        // (the table follows the endpoints, see `repool`), or every rollout would add keys.
        let fenced: &[String] = if config.discovery.is_some() { &[] } else { &keys };
        let fence = fence_of(fenced, &policy, check.as_ref());
        let cluster = config.cluster.clone();
        let table_key = keys::health_table(&cluster, fence);
        let n = keys.len();
        let schedule = check.as_ref().map(|c| {
            Schedule::new(
                keys.iter().map(String::as_str),
                c.interval_ms.saturating_mul(MS),
                c.jitter_ms.saturating_mul(MS),
            )
        });
        Some(Prober {
            check,
            policy,
            covered: vec![None; n],
            streak_ids: streak_ids(config, &keys),
            keys,
            backups,
            drains,
            fence,
            version_key: keys::health_version(&table_key),
            errors_prefix: keys::health_errors(&table_key),
            table_key,
            lease_key: keys::prober_lease(&cluster, fence),
            current_key: keys::health_current(&cluster),
            cluster,
            owner,
            snapshot: Snapshot::new(),
            current: None,
            view: None,
            availability: Availability::default(),
            ramping: Vec::new(),
            next_expiry_ns: None,
            ejected_until: Vec::new(),
            stamps_ahead_of: 0,
            stale: true,
            unreported: false,
            misaligned: true,
            pending: Vec::new(),
            probing: vec![false; n],
            queued: vec![false; n],
            backlog: VecDeque::new(),
            schedule,
            streaks: vec![(0, 0); n],
            healthy: vec![true; n],
            unpublished: Vec::new(),
            writes_since_tick: 0,
            holder: false,
        })
    }

    pub fn check(&self) -> Option<&HealthCheck> {
        self.check.as_ref()
    }

    /// The prefix of this pool's error-streak keys and how many numbers they use (to register
    /// them as one family).
    pub fn streak_keys(&self) -> Option<(&str, usize)> {
        self.policy.outlier?;
        let count = self.streak_ids.iter().map(|&(n, _)| n + 1).max().unwrap_or(0);
        Some((&self.errors_prefix, count))
    }

    /// The pool changed to `config.pool` (a discovery snapshot); `moved[i]` is the new index
    /// of old backend `i`, if it stays. Probes on their way keep their backend (or are
    /// dropped with it), as do the holder's probe streaks; the table is re-keyed at its next
    /// write or read, keeping the state of every backend that stays and starting new ones
    /// healthy at that time (slow start). The schedule keeps its place: a backend that stays
    /// keeps its phase, a new one is probed within an interval.
    pub fn repool(&mut self, config: &Config, moved: &[Option<usize>]) {
        self.keys = config.pool.iter().map(keys::backend).collect();
        self.backups = config.pool.iter().map(|b| b.backup).collect();
        self.drains = config.pool.iter().map(|b| b.drain).collect();
        self.streak_ids = streak_ids(config, &self.keys);
        let n = self.keys.len();
        self.covered = vec![None; n];
        self.current = None;
        let to = |i: usize| moved.get(i).copied().flatten().filter(|&j| j < n);
        self.pending.retain_mut(|p| match to(p.index) {
            Some(i) => {
                p.index = i;
                true
            }
            None => false,
        });
        let mut probing = vec![false; n];
        for p in &self.pending {
            if let Some(x) = probing.get_mut(p.index) {
                *x = true;
            }
        }
        self.probing = probing;
        self.backlog = self.backlog.iter().filter_map(|&i| to(i)).collect();
        let mut queued = vec![false; n];
        for &i in &self.backlog {
            if let Some(q) = queued.get_mut(i) {
                *q = true;
            }
        }
        self.queued = queued;
        let (mut streaks, mut healthy) = (vec![(0, 0); n], vec![true; n]);
        for (old, new) in moved.iter().enumerate() {
            let Some(new) = new.filter(|&j| j < n) else { continue };
            if let (Some(s), Some(&v)) = (streaks.get_mut(new), self.streaks.get(old)) {
                *s = v;
            }
            if let (Some(h), Some(&v)) = (healthy.get_mut(new), self.healthy.get(old)) {
                *h = v;
            }
        }
        self.streaks = streaks;
        self.healthy = healthy;
        self.unpublished.retain_mut(|u| match to(u.index) {
            Some(i) => {
                u.index = i;
                true
            }
            None => false,
        });
        if let (Some(old), Some(c)) = (self.schedule.take(), &self.check) {
            let mut s = Schedule::new(
                self.keys.iter().map(String::as_str),
                c.interval_ms.saturating_mul(MS),
                c.jitter_ms.saturating_mul(MS),
            );
            s.continue_from(&old);
            self.schedule = Some(s);
        }
        self.view = None;
        self.stale = true;
    }

    /// This configuration's table key (tests read the published table).
    #[cfg(test)]
    pub fn table_key(&self) -> &str {
        &self.table_key
    }

    /// Whether the last [`Prober::due`] held the prober lease.
    pub fn holds_lease(&self) -> bool {
        self.holder
    }

    /// Every backend's health as the last availability saw it, in pool order (for the status
    /// page and tests).
    pub fn table(&self) -> Option<&HealthTable> {
        self.view.as_ref()
    }

    /// At configure time: creates this configuration's table if it does not exist yet,
    /// carrying over the state of the backends it shares with the configuration current until
    /// now, and names this configuration current.
    pub fn publish_initial(&self, store: &dyn SharedStore, now_ns: u64) {
        if let Ok(None) = store.get(&self.table_key) {
            let before = current::read(store, &self.current_key).filter(|&f| f != self.fence);
            let key = before.map(|f| keys::health_table(&self.cluster, f));
            let seed = key.and_then(|k| health_table::read(store, &k).ok().flatten());
            let _ = health_table::modify(store, &self.table_key, &self.keys, now_ns, |t| {
                if let Some((seed, _)) = &seed {
                    *t = HealthTable::carry_over(seed, &self.keys, now_ns);
                }
            });
        }
        current::publish(store, &self.current_key, self.fence);
    }

    /// Follows the cluster's current configuration (once per tick): when it is another one
    /// whose prober is live, the backends its table holds are read from there.
    fn follow(&mut self, store: &dyn SharedStore, now_ns: u64) {
        let fence = current::read(store, &self.current_key).filter(|&f| f != self.fence);
        let Some(fence) = fence else {
            if self.current.take().is_some() {
                self.covered.iter_mut().for_each(|c| *c = None);
                self.stale = true;
            }
            return;
        };
        let cluster = &self.cluster;
        let other = match &mut self.current {
            Some(c) if c.fence == fence => c,
            slot => {
                let table_key = keys::health_table(cluster, fence);
                slot.insert(Current {
                    fence,
                    version_key: keys::health_version(&table_key),
                    table_key,
                    lease_key: keys::prober_lease(cluster, fence),
                    snapshot: Snapshot::new(),
                    live: false,
                })
            }
        };
        let lease = store.get(&other.lease_key).ok().flatten();
        let live =
            lease.and_then(|(b, _)| lease::decode(&b)).is_some_and(|l| !l.is_expired(now_ns));
        let changed = other.snapshot.refresh_versioned(store, &other.table_key, &other.version_key)
            || live != other.live;
        other.live = live;
        if !changed {
            return;
        }
        self.stale = true;
        let index: fnv::FnvHashMap<&str, usize> = match other.snapshot.table() {
            Some(t) if live => {
                t.entries().iter().enumerate().map(|(i, e)| (e.key.as_str(), i)).collect()
            }
            _ => fnv::FnvHashMap::default(),
        };
        for (c, k) in self.covered.iter_mut().zip(&self.keys) {
            *c = index.get(k.as_str()).copied();
        }
    }

    /// Whether the current configuration's prober checks backend `index` for us.
    fn is_covered(&self, index: usize) -> bool {
        self.covered.get(index).is_some_and(Option::is_some)
    }

    /// Who may be picked now, from the published table (every backend before it exists),
    /// with the backends the current configuration checks taken from its table.
    #[cfg(test)]
    pub fn availability(&mut self, store: &dyn SharedStore, now_ns: u64) -> Availability {
        self.refresh(store, now_ns);
        self.availability.clone()
    }

    /// Brings the availability up to date at `now`: rebuilt (O(N)) only when the published
    /// table or the covered backends changed, or an ejection's time is up; otherwise only the
    /// weights of the backends on a slow-start ramp move. Returns what changed.
    pub fn refresh(&mut self, store: &dyn SharedStore, now_ns: u64) -> Refreshed {
        self.update(store, now_ns);
        if std::mem::take(&mut self.unreported) {
            return Refreshed::Rebuilt;
        }
        let Some(view) = &self.view else { return Refreshed::Same };
        let (policy, slots) = (&self.policy, &mut self.availability.slots);
        let mut changed = Vec::new();
        self.ramping.retain(|&i| {
            let (Some(e), Some(slot)) = (view.get(i), slots.get_mut(i)) else { return false };
            let w = e.ramp_percent(policy, now_ns);
            if w != slot.weight_percent {
                slot.weight_percent = w;
                changed.push((i, w));
            }
            w < 100
        });
        if changed.is_empty() {
            Refreshed::Same
        } else {
            Refreshed::Ramped(changed)
        }
    }

    /// Rebuilds the view when the table moved, an ejection's time is up or the pool changed.
    fn update(&mut self, store: &dyn SharedStore, now_ns: u64) {
        let moved = self.snapshot.refresh_versioned(store, &self.table_key, &self.version_key);
        let expired = self.next_expiry_ns.is_some_and(|t| t <= now_ns);
        if moved || expired || self.stale || self.view.is_none() {
            self.rebuild(now_ns);
        }
    }

    fn rebuild(&mut self, now_ns: u64) {
        self.stale = false;
        self.unreported = true;
        let aligned = self.snapshot.table().filter(|t| t.has_keys(&self.keys));
        self.misaligned = aligned.is_none();
        let mut table = match (aligned, self.snapshot.table()) {
            (Some(t), _) => t.clone(),
            (None, Some(t)) => HealthTable::carry_over(t, &self.keys, now_ns),
            (None, None) => HealthTable::new(&self.keys, now_ns),
        };
        if let Some(theirs) = self.current.as_ref().and_then(|c| c.snapshot.table()) {
            for (i, j) in self.covered.iter().enumerate() {
                if let Some(entry) = j.and_then(|j| theirs.get(j)) {
                    table.replace(i, entry.clone());
                }
            }
        }
        let availability = table.availability(&self.policy, now_ns, &self.backups, &self.drains);
        self.ramping = availability
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.accepted && s.available && s.weight_percent < 100)
            .map(|(i, _)| i)
            .collect();
        let longest = self.policy.outlier.map_or(0, |o| o.max_ejection_ns.max(o.base_ejection_ns));
        self.next_expiry_ns =
            table.entries().iter().map(|e| e.ejected_until_ns).filter(|&t| t > 0).min();
        self.ejected_until = ejection_ends(&table, now_ns);
        self.stamps_ahead_of = table
            .entries()
            .iter()
            .map(|e| e.available_since_ns.max(e.ejected_until_ns.saturating_sub(longest)))
            .max()
            .unwrap_or(0);
        self.availability = availability;
        self.view = Some(table);
    }

    fn entry(&self, index: usize) -> Option<&BackendHealth> {
        self.view.as_ref().and_then(|t| t.get(index))
    }

    /// Takes or renews the lease; when held, writes what waits (probe results past the
    /// per-tick budget, ejections whose time is up, stamps ahead of `now` pulled back) in one
    /// table write, and returns the backends due for a probe now (none with a probe still on
    /// its way; at most [`MAX_PROBES_IN_FLIGHT`] on their way) and the ejections ended.
    pub fn due(&mut self, store: &dyn SharedStore, now_ns: u64) -> (Vec<usize>, Vec<Transition>) {
        self.follow(store, now_ns);
        let interval_ns =
            self.check.as_ref().map_or(PASSIVE_LEASE_NS, |c| c.interval_ms.saturating_mul(MS));
        let ttl = interval_ns.saturating_mul(TTL_INTERVALS);
        // Nothing to check here when the current configuration checks every backend.
        let own_work = self.covered.iter().any(Option::is_none);
        let was_holder = self.holder;
        let (status, before) = match own_work {
            true => lease::acquire_from(store, &self.lease_key, self.owner, now_ns, ttl),
            false => (lease::LeaseStatus::Busy, None),
        };
        self.holder = status.may_probe();
        self.writes_since_tick = 0;
        if !self.holder {
            if was_holder {
                self.drop_holder_state();
            }
            return (Vec::new(), Vec::new());
        }
        if !was_holder {
            // Health as published: this VM judges from here on.
            self.update(store, now_ns);
            let view = self.view.as_ref();
            self.healthy = (0..self.keys.len())
                .map(|i| view.and_then(|t| t.get(i)).is_none_or(|e| e.healthy))
                .collect();
            self.streaks = vec![(0, 0); self.keys.len()];
            // Taken over from a holder that stopped renewing: its last tick was its lease's
            // expiry less the ttl; the rounds after it are this VM's to send (after a ttl of
            // silence, every backend is due: one round at once, within the in-flight cap).
            let last = before
                .filter(|l| l.owner != self.owner && status == lease::LeaseStatus::Taken)
                .map(|l| l.expires_ns.saturating_sub(ttl))
                .filter(|&t| t > 0 && t <= now_ns);
            if let Some(s) = &mut self.schedule {
                match last {
                    Some(t) => s.resume_from(t),
                    None => s.restart(),
                }
            }
        }
        let returned = self.publish(store, now_ns).unwrap_or_default();
        let Some(schedule) = &mut self.schedule else { return (Vec::new(), returned) };
        let mut fresh = Vec::new();
        schedule.due(now_ns, &mut fresh);
        // A backend whose round comes while its last probe is still on its way is owed one:
        // it waits in the backlog until the answer is in (at most one round, the timeout
        // being shorter than the interval), so a slow answer delays a round, never drops it.
        for i in fresh {
            let mine = self.covered.get(i).is_some_and(Option::is_none);
            if let (true, Some(q)) = (mine, self.queued.get_mut(i)) {
                if !*q {
                    *q = true;
                    self.backlog.push_back(i);
                }
            }
        }
        let room = MAX_PROBES_IN_FLIGHT.saturating_sub(self.pending.len());
        let mut due = Vec::with_capacity(room.min(self.backlog.len()));
        let mut owed = Vec::new();
        while due.len() < room {
            let Some(i) = self.backlog.pop_front() else { break };
            if self.probing.get(i).copied().unwrap_or(false) {
                owed.push(i);
                continue;
            }
            if let Some(q) = self.queued.get_mut(i) {
                *q = false;
            }
            if !self.is_covered(i) {
                due.push(i);
            }
        }
        // Owed probes are at most the probes on their way: O(MAX_PROBES_IN_FLIGHT).
        self.backlog.extend(owed);
        (due, returned)
    }

    fn drop_holder_state(&mut self) {
        self.pending.clear();
        self.probing.iter_mut().for_each(|p| *p = false);
        self.queued.iter_mut().for_each(|q| *q = false);
        self.backlog.clear();
        self.unpublished.clear();
        if let Some(s) = &mut self.schedule {
            s.restart();
        }
    }

    /// The holder's one table write for this tick, when something needs it: probe results not
    /// written yet, ejections whose time is up, stamps ahead of `now`. Returns the ejections
    /// ended (`None`: nothing to write, or the store refused).
    fn publish(&mut self, store: &dyn SharedStore, now_ns: u64) -> Option<Vec<Transition>> {
        let expired = self.next_expiry_ns.is_some_and(|t| t <= now_ns);
        let ahead = self.stamps_ahead_of > now_ns;
        if self.unpublished.is_empty() && !expired && !ahead && !self.misaligned {
            return None;
        }
        let (policy, unpublished, streaks) = (self.policy, &self.unpublished, &self.streaks);
        let returned = health_table::modify(store, &self.table_key, &self.keys, now_ns, |t| {
            t.pull_back(&policy, now_ns);
            let returned = t.expire(now_ns);
            for u in unpublished {
                let (successes, failures) = streaks.get(u.index).copied().unwrap_or_default();
                t.set_health(u.index, u.healthy, u.change, successes, failures, u.at_ns);
            }
            returned
        });
        if returned.is_some() {
            self.misaligned = false;
            self.unpublished.clear();
            self.writes_since_tick = self.writes_since_tick.saturating_add(1);
        }
        returned
    }

    /// The outcome of one request that `index` served (or failed to): passive ejection.
    /// Errors count in the backend's streak key, across workers: a failure is one read and
    /// one write of it; a success one read, and a write only to reset a streak (read afresh:
    /// any worker may have just extended it). The streak reaching the threshold ejects the
    /// backend in the table (one table write). Returns the transitions, in order: the end of
    /// an ejection whose time was up and that the lease holder had not ended yet, then a new
    /// ejection. Outcomes of a backend ejected (as this VM last saw the table) are ignored.
    pub fn outcome(
        &mut self,
        store: &dyn SharedStore,
        index: usize,
        failed: bool,
        now_ns: u64,
    ) -> Vec<Transition> {
        let Some(outlier) = self.policy.outlier else { return Vec::new() };
        if self.is_covered(index) || self.entry(index).is_some_and(|e| e.is_ejected(now_ns)) {
            return Vec::new();
        }
        let Some(&(n, hash)) = self.streak_ids.get(index) else { return Vec::new() };
        let key = format!("{}{n}", self.errors_prefix);
        let threshold = outlier.consecutive_errors.max(1);
        for _ in 0..STREAK_ATTEMPTS {
            let (streak, cas) = match store.get(&key) {
                Ok(Some((bytes, cas))) => (streak_of(&bytes, hash), cas),
                Ok(None) => (0, 0),
                Err(_) => return Vec::new(),
            };
            let next = if failed { streak.saturating_add(1) } else { 0 };
            if next == streak {
                return Vec::new();
            }
            // Past the threshold while `max_ejection_percent` (as this VM last saw the table)
            // allows no more: the streak is kept, and no table write tried per error.
            let in_force =
                self.ejected_until.len() - self.ejected_until.partition_point(|&u| u <= now_ns);
            let room = outlier.allows_another(in_force, self.keys.len());
            if next >= threshold && room {
                return self.eject(store, &key, index, next, hash, now_ns);
            }
            match store.set(&key, &streak_value(next, hash), cas) {
                Ok(()) => return Vec::new(),
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Host(_)) => return Vec::new(),
            }
        }
        Vec::new()
    }

    /// A streak of `errors` reached the threshold: eject `index` in the table (unless
    /// `max_ejection_percent` forbids it: then the streak is kept and the next error tries
    /// again), and reset the streak once ejected.
    fn eject(
        &mut self,
        store: &dyn SharedStore,
        key: &str,
        index: usize,
        errors: u32,
        hash: u64,
        now_ns: u64,
    ) -> Vec<Transition> {
        let policy = self.policy;
        let done = health_table::modify(store, &self.table_key, &self.keys, now_ns, |t| {
            let returned = t.end_ejection(index, now_ns);
            let change = t.request_outcome_after(&policy, index, errors, now_ns);
            (returned.into_iter().chain(change).collect::<Vec<_>>(), ejection_ends(t, now_ns))
        });
        // What the table says now, until the next rebuild of the view: a refused ejection
        // (the cap reached) is not tried again at every error.
        let done = done.map(|(transitions, ends)| {
            self.ejected_until = ends;
            transitions
        });
        let ejected = done
            .as_ref()
            .is_some_and(|d| d.iter().any(|t| matches!(t.change, Change::Ejected { .. })));
        let streak = if ejected { 0 } else { errors };
        let _ = store.set(key, &streak_value(streak, hash), 0);
        done.unwrap_or_default()
    }

    /// A probe of `index` was dispatched as `token`.
    pub fn sent(&mut self, token: u32, index: usize, now_ns: u64) {
        if let Some(p) = self.probing.get_mut(index) {
            *p = true;
        }
        self.pending.push(Pending { token, index, sent_ns: now_ns });
    }

    /// A probe of `index` could not be dispatched at all.
    pub fn not_sent(
        &mut self,
        store: &dyn SharedStore,
        index: usize,
        now_ns: u64,
    ) -> Option<Transition> {
        self.apply(store, index, Probe::Failed(ProbeFailure::Dispatch), now_ns)
    }

    /// The answer to probe `token`: the `:status` it got, `None` when there was none (reset,
    /// timeout). Envoy answers a timed-out or unroutable callout itself with a 5xx, so a 504
    /// or a missing status after the timeout counts as a timeout.
    pub fn answered(
        &mut self,
        store: &dyn SharedStore,
        token: u32,
        status: Option<u16>,
        now_ns: u64,
    ) -> Option<Transition> {
        let at = self.pending.iter().position(|p| p.token == token)?;
        let p = self.pending.swap_remove(at);
        if let Some(x) = self.probing.get_mut(p.index) {
            *x = false;
        }
        let check = self.check.as_ref()?;
        // Envoy's timer and this clock are not the same clock: allow 10% slack.
        let timeout_ns = check.timeout_ms.saturating_mul(MS) / 10 * 9;
        let timed_out = now_ns.saturating_sub(p.sent_ns) >= timeout_ns;
        let probe = match status {
            Some(s) if check.expects(s) => Probe::Ok,
            Some(504) | None if timed_out => {
                Probe::Failed(ProbeFailure::Timeout { ms: check.timeout_ms })
            }
            Some(s) => Probe::Failed(ProbeFailure::Status(s)),
            None => Probe::Failed(ProbeFailure::Connect),
        };
        self.apply(store, p.index, probe, now_ns)
    }

    /// One probe result, judged against the holder's own record (rise and fall thresholds):
    /// written to the table only when the backend's health changes, within the per-tick
    /// budget (else at the next tick).
    fn apply(
        &mut self,
        store: &dyn SharedStore,
        index: usize,
        probe: Probe,
        now_ns: u64,
    ) -> Option<Transition> {
        let active = self.policy.active?;
        let (streak, healthy) = (self.streaks.get_mut(index)?, self.healthy.get_mut(index)?);
        let change = super::judge(active, streak, healthy, probe)?;
        let healthy = *healthy;
        self.unpublished.push(Unpublished { index, healthy, change, at_ns: now_ns });
        if self.writes_since_tick < WRITES_PER_TICK {
            self.publish(store, now_ns);
        }
        let id = self.keys.get(index).map_or("", |k| keys::backend_id(k)).to_string();
        Some(Transition { index, id, change })
    }
}

/// What [`Prober::refresh`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// Nothing.
    Same,
    /// Only slow-start weights: `(index, weight_percent)`.
    Ramped(Vec<(usize, u8)>),
    /// Everything may have: take [`Prober::current`] again.
    Rebuilt,
}

impl Prober {
    /// The availability as last refreshed.
    pub fn current(&self) -> &Availability {
        &self.availability
    }
}

#[cfg(test)]
mod tests;
