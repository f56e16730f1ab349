//! One pool's health, as every worker VM runs it on its tick: refresh the published health
//! table (decoded only when its CAS changes) into an [`Availability`] for the router; take or
//! renew the prober lease; if held, pull back stamps from a clock that ran ahead, end ejections
//! whose time is up and say which backends are due for a probe (marking them probed in the table, so a new holder continues the schedule);
//! apply each probe's answer and each request's outcome (passive ejection) to the table.
//! Host calls (dispatch, timers, logging) stay in the adapter.

use super::{Availability, HealthPolicy, HealthTable, Probe, ProbeFailure, Transition};
use crate::config::{Config, HealthCheck};
use crate::state::health_table::{self, Snapshot};
use crate::state::lease::{self, TTL_INTERVALS};
use crate::state::{SharedStore, KEY_PREFIX};

const MS: u64 = 1_000_000;
/// Lease renewal period without active checks (passive ejection and slow start only).
const PASSIVE_LEASE_NS: u64 = 1_000 * MS;

/// A probe on its way: who it checks and when it left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    token: u32,
    index: usize,
    sent_ns: u64,
}

pub struct Prober {
    /// Active checks; `None` with passive ejection or slow start only.
    check: Option<HealthCheck>,
    policy: HealthPolicy,
    keys: Vec<String>,
    backups: Vec<bool>,
    drains: Vec<bool>,
    table_key: String,
    lease_key: String,
    owner: u64,
    snapshot: Snapshot,
    pending: Vec<Pending>,
    /// Whether the last tick held the lease.
    holder: bool,
}

impl Prober {
    /// The prober of `config`'s pool; `None` when neither active checks, outlier detection
    /// nor slow start are configured. `owner` must be unique per VM (a random number).
    pub fn new(config: &Config, policy: HealthPolicy, owner: u64) -> Option<Prober> {
        let check = config.health_check.clone();
        if check.is_none() && config.outlier_detection.is_none() && config.slow_start_ms == 0 {
            return None;
        }
        let keys = config.pool.iter().map(super::backend_key).collect();
        let backups = config.pool.iter().map(|b| b.backup).collect();
        let drains = config.pool.iter().map(|b| b.drain).collect();
        let table_key = format!("{KEY_PREFIX}/{}/health", config.cluster);
        let lease_key = format!("{KEY_PREFIX}/{}/prober", config.cluster);
        let snapshot = Snapshot::new();
        let pending = Vec::new();
        Some(Prober {
            check,
            policy,
            keys,
            backups,
            drains,
            table_key,
            lease_key,
            owner,
            snapshot,
            pending,
            holder: false,
        })
    }

    pub fn check(&self) -> Option<&HealthCheck> {
        self.check.as_ref()
    }

    /// Whether the last [`Prober::due`] held the prober lease.
    pub fn holds_lease(&self) -> bool {
        self.holder
    }

    /// Every backend's health as published (for logging and tests).
    pub fn table(&self) -> Option<&HealthTable> {
        self.snapshot.table()
    }

    /// Creates the shared table if it does not exist yet (at configure time).
    pub fn publish_initial(&self, store: &dyn SharedStore, now_ns: u64) {
        let _ = health_table::modify(store, &self.table_key, &self.keys, now_ns, |_| ());
    }

    /// Who may be picked now, from the published table (every backend before it exists).
    pub fn availability(&mut self, store: &dyn SharedStore, now_ns: u64) -> Availability {
        self.snapshot.refresh(store, &self.table_key);
        let table = match self.snapshot.table() {
            Some(t) if t.has_keys(&self.keys) => t.clone(),
            Some(t) => HealthTable::carry_over(t, &self.keys, now_ns),
            None => HealthTable::new(&self.keys, now_ns),
        };
        table.availability(&self.policy, now_ns, &self.backups, &self.drains)
    }

    /// Takes or renews the lease; when held, pulls back stamps ahead of `now`
    /// ([`HealthTable::pull_back`]), ends the ejections whose time is up (returned as
    /// transitions to log) and returns the backends due for a probe now (not counting
    /// those with a probe still on its way), marked probed in the table.
    pub fn due(&mut self, store: &dyn SharedStore, now_ns: u64) -> (Vec<usize>, Vec<Transition>) {
        let interval_ns =
            self.check.as_ref().map_or(PASSIVE_LEASE_NS, |c| c.interval_ms.saturating_mul(MS));
        let ttl = interval_ns.saturating_mul(TTL_INTERVALS);
        self.holder = lease::acquire(store, &self.lease_key, self.owner, now_ns, ttl).may_probe();
        if !self.holder {
            self.pending.clear();
            return (Vec::new(), Vec::new());
        }
        let jitter_ns = self.check.as_ref().map_or(0, |c| c.jitter_ms.saturating_mul(MS));
        let (active, pending, policy) = (self.check.is_some(), &self.pending, self.policy);
        let done = health_table::modify(store, &self.table_key, &self.keys, now_ns, |t| {
            t.pull_back(&policy, now_ns);
            let returned = t.expire(now_ns);
            if !active {
                return (Vec::new(), returned);
            }
            let last: Vec<u64> = t.entries().iter().map(|e| e.last_probe_ns).collect();
            let plan = lease::probe_plan(&last, now_ns, interval_ns, jitter_ns);
            let due: Vec<usize> =
                plan.due.into_iter().filter(|i| !pending.iter().any(|p| p.index == *i)).collect();
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
        if self.policy.outlier.is_none() {
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
