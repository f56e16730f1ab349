//! One pool's active health checking, as every worker VM runs it on its tick: refresh the
//! published health table (decoded only when its CAS changes) into an [`Availability`] for the
//! router; take or renew the prober lease; if held, say which backends are due for a probe
//! (marking them probed in the table, so a new holder continues the schedule); and apply each
//! probe's answer to the table. Host calls (dispatch, timers, logging) stay in the adapter.

use super::{Availability, HealthPolicy, HealthTable, Probe, ProbeFailure, Transition};
use crate::config::{Config, HealthCheck};
use crate::state::health_table::{self, Snapshot};
use crate::state::lease::{self, TTL_INTERVALS};
use crate::state::{SharedStore, KEY_PREFIX};

const MS: u64 = 1_000_000;

/// A probe on its way: who it checks and when it left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    token: u32,
    index: usize,
    sent_ns: u64,
}

pub struct Prober {
    check: HealthCheck,
    policy: HealthPolicy,
    keys: Vec<String>,
    backups: Vec<bool>,
    table_key: String,
    lease_key: String,
    owner: u64,
    snapshot: Snapshot,
    pending: Vec<Pending>,
}

impl Prober {
    /// The prober of `config`'s pool; `None` when health checks are off. `owner` must be unique
    /// per VM (a random number).
    pub fn new(config: &Config, policy: HealthPolicy, owner: u64) -> Option<Prober> {
        let check = config.health_check.clone()?;
        let keys = config.pool.iter().map(super::backend_key).collect();
        let backups = config.pool.iter().map(|b| b.backup).collect();
        let table_key = format!("{KEY_PREFIX}/{}/health", config.cluster);
        let lease_key = format!("{KEY_PREFIX}/{}/prober", config.cluster);
        let snapshot = Snapshot::new();
        let pending = Vec::new();
        Some(Prober {
            check,
            policy,
            keys,
            backups,
            table_key,
            lease_key,
            owner,
            snapshot,
            pending,
        })
    }

    pub fn check(&self) -> &HealthCheck {
        &self.check
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
        table.availability(&self.policy, now_ns, &self.backups)
    }

    /// Takes or renews the lease; when held, returns the backends due for a probe now (not
    /// counting those with a probe still on its way) and marks them probed in the table.
    pub fn due(&mut self, store: &dyn SharedStore, now_ns: u64) -> Vec<usize> {
        let interval_ns = self.check.interval_ms.saturating_mul(MS);
        let ttl = interval_ns.saturating_mul(TTL_INTERVALS);
        if !lease::acquire(store, &self.lease_key, self.owner, now_ns, ttl).may_probe() {
            self.pending.clear();
            return Vec::new();
        }
        let jitter_ns = self.check.jitter_ms.saturating_mul(MS);
        let pending = &self.pending;
        let marked = health_table::modify(store, &self.table_key, &self.keys, now_ns, |t| {
            let last: Vec<u64> = t.entries().iter().map(|e| e.last_probe_ns).collect();
            let plan = lease::probe_plan(&last, now_ns, interval_ns, jitter_ns);
            let due: Vec<usize> =
                plan.due.into_iter().filter(|i| !pending.iter().any(|p| p.index == *i)).collect();
            for &i in &due {
                t.mark_probed(i, now_ns);
            }
            due
        });
        marked.unwrap_or_default()
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
        // Envoy's timer and this clock are not the same clock: allow 10% slack.
        let timeout_ns = self.check.timeout_ms.saturating_mul(MS) / 10 * 9;
        let timed_out = now_ns.saturating_sub(p.sent_ns) >= timeout_ns;
        let probe = match status {
            Some(s) if self.check.expects(s) => Probe::Ok,
            Some(504) | None if timed_out => {
                Probe::Failed(ProbeFailure::Timeout { ms: self.check.timeout_ms })
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
