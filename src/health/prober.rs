//! One pool's health, as every worker VM runs it on its tick: refresh the published health
//! table (decoded only when its CAS changes) into an [`Availability`] for the router; take or
//! renew the prober lease; if held, pull back stamps from a clock that ran ahead, end
//! ejections whose time is up and say which backends are due for a probe (marking them probed
//! in the table, so a new holder continues the schedule); apply each probe's answer and each request's outcome (passive ejection) to the table.
//! Host calls (dispatch, timers, logging) stay in the adapter.
//!
//! Tables and leases are fenced by configuration ([`crate::state::current`]): a backend that
//! the current configuration's live prober also checks is read from its table, never probed
//! or written by another configuration of the same cluster; the rest this prober checks
//! itself. Per tick: one read of the pointer, and of the other table's lease and table (decoded
//! only when its CAS changes) while another configuration is current.

use super::{Availability, HealthPolicy, HealthTable, Probe, ProbeFailure, Transition};
use crate::config::{Config, HealthCheck};
use crate::state::health_table::{self, Snapshot};
use crate::state::lease::{self, TTL_INTERVALS};
use crate::state::{current, keys, SharedStore};

use crate::MS;
/// Lease renewal period without active checks (passive ejection and slow start only).
const PASSIVE_LEASE_NS: u64 = 1_000 * MS;

/// A probe on its way: who it checks and when it left.
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
    lease_key: String,
    snapshot: Snapshot,
    /// Whether its prober lease was live at the last tick.
    live: bool,
}

pub struct Prober {
    /// Active checks; `None` with passive ejection or slow start only.
    check: Option<HealthCheck>,
    policy: HealthPolicy,
    keys: Vec<String>,
    backups: Vec<bool>,
    drains: Vec<bool>,
    /// Digest of what this configuration's table means: backend keys and health settings.
    fence: u64,
    table_key: String,
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
    /// What the last availability was computed from (for the status page).
    view: Option<HealthTable>,
    pending: Vec<Pending>,
    /// Whether the last tick held the lease.
    holder: bool,
}

/// The fence of a configuration: its backend keys in order and its health settings.
fn fence_of(keys: &[String], policy: &HealthPolicy, check: Option<&HealthCheck>) -> u64 {
    let mut text = keys.join("\n");
    text.push_str(&format!("\n{policy:?}\n{check:?}"));
    crate::hash_key::hash(text.as_bytes())
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
        Some(Prober {
            check,
            policy,
            covered: vec![None; keys.len()],
            keys,
            backups,
            drains,
            fence,
            table_key: keys::health_table(&cluster, fence),
            lease_key: keys::prober_lease(&cluster, fence),
            current_key: keys::health_current(&cluster),
            cluster,
            owner,
            snapshot: Snapshot::new(),
            current: None,
            view: None,
            pending: Vec::new(),
            holder: false,
        })
    }

    pub fn check(&self) -> Option<&HealthCheck> {
        self.check.as_ref()
    }

    /// The pool changed to `config.pool` (a discovery snapshot); `moved[i]` is the new index
    /// of old backend `i`, if it stays. Probes on their way keep their backend (or are
    /// dropped with it); the table is re-keyed at its next write or read, keeping the state
    /// of every backend that stays and starting new ones healthy at that time (slow start).
    pub fn repool(&mut self, config: &Config, moved: &[Option<usize>]) {
        self.keys = config.pool.iter().map(keys::backend).collect();
        self.backups = config.pool.iter().map(|b| b.backup).collect();
        self.drains = config.pool.iter().map(|b| b.drain).collect();
        self.covered = vec![None; self.keys.len()];
        self.current = None;
        self.pending.retain_mut(|p| match moved.get(p.index).copied().flatten() {
            Some(i) => {
                p.index = i;
                true
            }
            None => false,
        });
        self.view = None;
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
            }
            return;
        };
        let cluster = &self.cluster;
        let other = match &mut self.current {
            Some(c) if c.fence == fence => c,
            slot => slot.insert(Current {
                fence,
                table_key: keys::health_table(cluster, fence),
                lease_key: keys::prober_lease(cluster, fence),
                snapshot: Snapshot::new(),
                live: false,
            }),
        };
        let lease = store.get(&other.lease_key).ok().flatten();
        let live =
            lease.and_then(|(b, _)| lease::decode(&b)).is_some_and(|l| !l.is_expired(now_ns));
        let changed = other.snapshot.refresh(store, &other.table_key) || live != other.live;
        other.live = live;
        if !changed {
            return;
        }
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
    pub fn availability(&mut self, store: &dyn SharedStore, now_ns: u64) -> Availability {
        self.snapshot.refresh(store, &self.table_key);
        let mut table = match self.snapshot.table() {
            Some(t) if t.has_keys(&self.keys) => t.clone(),
            Some(t) => HealthTable::carry_over(t, &self.keys, now_ns),
            None => HealthTable::new(&self.keys, now_ns),
        };
        if let Some(theirs) = self.current.as_ref().and_then(|c| c.snapshot.table()) {
            for (i, j) in self.covered.iter().enumerate() {
                if let Some(entry) = j.and_then(|j| theirs.get(j)) {
                    table.replace(i, entry.clone());
                }
            }
        }
        let availability = table.availability(&self.policy, now_ns, &self.backups, &self.drains);
        self.view = Some(table);
        availability
    }

    /// Takes or renews the lease; when held, pulls back stamps ahead of `now`
    /// ([`HealthTable::pull_back`]), ends the ejections whose time is up (returned as
    /// transitions to log) and returns the backends due for a probe now (not counting
    /// those with a probe still on its way), marked probed in the table.
    pub fn due(&mut self, store: &dyn SharedStore, now_ns: u64) -> (Vec<usize>, Vec<Transition>) {
        self.follow(store, now_ns);
        let interval_ns =
            self.check.as_ref().map_or(PASSIVE_LEASE_NS, |c| c.interval_ms.saturating_mul(MS));
        let ttl = interval_ns.saturating_mul(TTL_INTERVALS);
        // Nothing to check here when the current configuration checks every backend.
        let own_work = self.covered.iter().any(Option::is_none);
        self.holder =
            own_work && lease::acquire(store, &self.lease_key, self.owner, now_ns, ttl).may_probe();
        if !self.holder {
            self.pending.clear();
            return (Vec::new(), Vec::new());
        }
        let jitter_ns = self.check.as_ref().map_or(0, |c| c.jitter_ms.saturating_mul(MS));
        let (active, pending, covered) = (self.check.is_some(), &self.pending, &self.covered);
        let policy = self.policy;
        let done = health_table::modify(store, &self.table_key, &self.keys, now_ns, |t| {
            t.pull_back(&policy, now_ns);
            let returned = t.expire(now_ns);
            if !active {
                return (Vec::new(), returned);
            }
            let last: Vec<u64> = t.entries().iter().map(|e| e.last_probe_ns).collect();
            let plan = lease::probe_plan(&last, now_ns, interval_ns, jitter_ns);
            let mine = |i: &usize| covered.get(*i).is_some_and(Option::is_none);
            let due: Vec<usize> = plan
                .due
                .into_iter()
                .filter(|i| mine(i) && !pending.iter().any(|p| p.index == *i))
                .collect();
            for &i in &due {
                // On the interval's grid, so ticks that come a little late (a tick is a
                // quarter interval) do not stretch the period; never more than half an
                // interval behind, so a long pause does not turn into a burst.
                let at = match last.get(i) {
                    Some(&l) if l > 0 => l.saturating_add(interval_ns),
                    _ => now_ns,
                };
                t.mark_probed(i, at.clamp(now_ns.saturating_sub(interval_ns / 2), now_ns));
            }
            (due, returned)
        });
        done.unwrap_or_default()
    }

    /// The outcome of one request that `index` served (or failed to): passive ejection. A
    /// success costs a shared read (decoded only when it changed) and a write only when the
    /// backend has an error streak to reset: read afresh, since any worker may have just
    /// extended it (a stale view let interleaved errors count as consecutive). Returns the
    /// transitions, in order: the end of an ejection whose time was up and that the lease
    /// holder had not ended yet, then a new ejection.
    pub fn outcome(
        &mut self,
        store: &dyn SharedStore,
        index: usize,
        failed: bool,
        now_ns: u64,
    ) -> Vec<Transition> {
        if self.policy.outlier.is_none() || self.is_covered(index) {
            return Vec::new();
        }
        if !failed {
            self.snapshot.refresh(store, &self.table_key);
            let streak = self.snapshot.table().and_then(|t| t.get(index)).map_or(0, |e| e.errors);
            if streak == 0 {
                return Vec::new();
            }
        }
        let policy = self.policy;
        health_table::modify(store, &self.table_key, &self.keys, now_ns, |t| {
            let returned = t.end_ejection(index, now_ns);
            let change = t.request_outcome(&policy, index, failed, now_ns);
            returned.into_iter().chain(change).collect::<Vec<_>>()
        })
        .unwrap_or_default()
    }

    /// A probe of `index` was dispatched as `token`.
    pub fn sent(&mut self, token: u32, index: usize, now_ns: u64) {
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

    fn apply(
        &mut self,
        store: &dyn SharedStore,
        index: usize,
        probe: Probe,
        now_ns: u64,
    ) -> Option<Transition> {
        let policy = self.policy;
        health_table::modify(store, &self.table_key, &self.keys, now_ns, |t| {
            t.probe_result(&policy, index, probe, now_ns)
        })
        .flatten()
    }
}

#[cfg(test)]
mod tests;
