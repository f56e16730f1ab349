//! The router's side of health: building the pool's [`Prober`], the per-tick refresh of who
//! may be picked (and, as lease holder, the probes due and the log lines of state changes),
//! probe answers, request outcomes for passive ejection, and slow-start admission.

use super::{Router, Ticket};
use crate::config::{Config, TargetMode};
use crate::health::prober::{Prober, Refreshed};
use crate::health::{
    ActivePolicy, Availability, Change, HealthPolicy, HealthTable, OutlierPolicy, Transition,
};
use crate::metrics::{BackendCounter, Metrics, PoolCounter};
use crate::state::clock::Clock;
use crate::state::registry::Registered;
use crate::state::{keys, SharedStore};

use crate::MS;

/// What the adapter must do after a tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    /// Backends to probe now, with the address to name in the steering header.
    pub probes: Vec<(usize, String)>,
    /// Lines to log at info (state changes, panic mode), each once per proxy.
    pub log: Vec<String>,
    /// A discovery poll to send (the discovery lease holder only).
    pub poll: Option<crate::discovery::poller::Poll>,
}

/// The health policy `config` asks for.
fn policy_of(config: &Config) -> HealthPolicy {
    HealthPolicy {
        active: config.health_check.as_ref().map(|c| ActivePolicy {
            healthy_threshold: c.healthy_threshold,
            unhealthy_threshold: c.unhealthy_threshold,
        }),
        outlier: config.outlier_detection.map(|o| OutlierPolicy {
            consecutive_errors: o.consecutive_errors,
            base_ejection_ns: o.base_ejection_ms.saturating_mul(MS),
            max_ejection_ns: o.max_ejection_ms.saturating_mul(MS),
            max_ejection_percent: o.max_ejection_percent,
        }),
        slow_start_ns: config.slow_start_ms.saturating_mul(MS),
        panic_threshold_percent: config.panic_threshold_percent,
    }
}

/// The prober for `config`, with `clock` synced and the initial table published; `None`
/// when the pool has no active checks, outlier detection or slow start.
pub(super) fn prober_for(
    config: &Config,
    seed: u64,
    store: &Registered<Box<dyn SharedStore>>,
    clock: &mut Clock,
    wall_ns: u64,
) -> Option<Prober> {
    let prober = Prober::new(config, policy_of(config), seed)?;
    if let Some((prefix, count)) = prober.streak_keys() {
        store.reserve_family(prefix, count);
    }
    prober.publish_initial(store, clock.sync(store, wall_ns));
    Some(prober)
}

/// Who may be picked in a pool without health checking (no checks, ejection or slow start):
/// it never changes — the primaries that do not drain, or the backups when every primary
/// drains; draining primaries stay accepted for their pinned sessions.
pub(super) fn fixed_availability(config: &Config, now_ns: u64) -> Availability {
    let keys: Vec<String> = config.pool.iter().map(keys::backend).collect();
    let backups: Vec<bool> = config.pool.iter().map(|b| b.backup).collect();
    let drains: Vec<bool> = config.pool.iter().map(|b| b.drain).collect();
    let table = HealthTable::new(&keys, now_ns);
    table.availability(&policy_of(config), now_ns, &backups, &drains)
}

/// Counts a state change in the backend's metrics and returns its log line.
fn noted(metrics: &mut dyn Metrics, t: &Transition) -> String {
    metrics.count(t.index, BackendCounter::HealthTransitions);
    if matches!(t.change, Change::Ejected { .. }) {
        metrics.count(t.index, BackendCounter::Ejections);
    }
    t.to_string()
}

/// Whether a backend on its slow-start ramp takes part in this pick: with probability
/// `weight_percent / 100`, decided by a hash of (backend, per-pick salt) so that it is the
/// same however often one pick asks.
pub(super) fn admitted(a: &Availability, index: usize, salt: u64) -> bool {
    let percent = u64::from(a.weight_percent(index));
    if percent >= 100 {
        return true;
    }
    let mut z = salt ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (z ^ (z >> 29)) % 100 < percent
}

impl Router {
    /// Whether passive ejection is on.
    pub(super) fn ejects(&self) -> bool {
        self.config.outlier_detection.is_some()
    }

    /// The active check settings, if any (for addressing probes).
    pub fn health_check(&self) -> Option<&crate::config::HealthCheck> {
        self.prober.as_ref().and_then(Prober::check)
    }

    /// Where a probe of the backend whose steering value is `host` goes: the cluster to
    /// call and the header naming the backend, if one is needed. override_host: the pool's
    /// cluster with the steering header; original_dst: the probe cluster (callouts carry no
    /// filter state) with `target.header`; cluster_header: the backend's own cluster.
    pub fn probe_route<'a>(&'a self, host: &'a str) -> (&'a str, Option<(&'a str, &'a str)>) {
        let (config, target) = (&self.config, &self.config.target);
        match target.mode {
            TargetMode::OverrideHost => (&config.cluster, Some((&target.header, host))),
            TargetMode::OriginalDst => {
                let cluster = target.probe_cluster.as_deref().unwrap_or(&config.cluster);
                (cluster, Some((&target.header, host)))
            }
            TargetMode::ClusterHeader => (host, None),
        }
    }

    /// One tick: re-record shared-data keys the key record lost; renew this router's
    /// in-flight heartbeat and read whose counts count; sync the proxy's clock; as lease
    /// holder, end ejections that are over and pick the probes that are due; then refresh who
    /// may be picked.
    pub fn tick(&mut self, now_ns: u64) -> Tick {
        let mut tick = Tick::default();
        self.store.repair();
        if let Some(counters) = &mut self.in_flight {
            counters.tick(&self.store, now_ns);
        }
        tick.poll = self.discovery_tick(now_ns, &mut tick.log);
        self.reports_tick(now_ns);
        tick.log.extend(self.judge_steering(now_ns));
        let Some(prober) = self.prober.as_mut() else { return tick };
        let now_ns = self.clock.sync(&self.store, now_ns);
        let (due, returned) = prober.due(&self.store, now_ns);
        let holder = prober.holds_lease();
        if holder && !self.held_lease {
            tick.log.push(
                "prober lease taken: this worker sends the health checks and ends ejections"
                    .to_string(),
            );
        }
        self.held_lease = holder;
        tick.log.extend(returned.iter().map(|t| noted(self.metrics.as_mut(), t)));
        for index in due {
            if let Some(b) = self.config.pool.get(index) {
                tick.probes.push((index, b.host.clone()));
            }
        }
        let refreshed = prober.refresh(&self.store, now_ns);
        let panic = prober.current().panic;
        if holder && panic != self.panic_logged {
            self.panic_logged = panic;
            let up = prober.current().slots.iter().filter(|s| s.weight_percent > 0).count();
            if panic {
                self.metrics.pool(PoolCounter::PanicMode);
                tick.log.push(format!(
                    "panic mode: fewer than {}% of the primaries are available; picking across \
                     all primaries ({up} accepted)",
                    self.config.panic_threshold_percent
                ));
            } else {
                tick.log.push("panic mode over".to_string());
            }
        }
        self.take_refreshed(refreshed);
        tick
    }

    /// Applies what [`Prober::refresh`] changed to who may be picked: nothing, the weights of
    /// backends on a slow-start ramp (O(ramping)), or everything (O(N), when the table
    /// changed).
    pub(super) fn take_refreshed(&mut self, refreshed: Refreshed) {
        match refreshed {
            Refreshed::Same => {}
            Refreshed::Ramped(weights) => {
                if let Some(a) = &mut self.availability {
                    for (i, w) in weights {
                        if let Some(slot) = a.slots.get_mut(i) {
                            slot.weight_percent = w;
                        }
                    }
                }
            }
            Refreshed::Rebuilt => {
                if let Some(p) = &self.prober {
                    let availability = p.current().clone();
                    self.availability_is(availability);
                }
            }
        }
    }

    /// Refreshes who may be picked from the published table (no lease taken).
    pub fn refresh(&mut self, now_ns: u64) {
        if let Some(p) = self.prober.as_mut() {
            let refreshed = p.refresh(&self.store, self.clock.at(now_ns));
            self.take_refreshed(refreshed);
        }
    }

    /// A probe of `index` was dispatched as `token`.
    pub fn probe_sent(&mut self, token: u32, index: usize, now_ns: u64) {
        if let Some(p) = self.prober.as_mut() {
            p.sent(token, index, self.clock.at(now_ns));
        }
    }

    /// A probe of `index` could not be dispatched; returns a line to log on a state change.
    pub fn probe_not_sent(&mut self, index: usize, now_ns: u64) -> Option<String> {
        let p = self.prober.as_mut()?;
        let t = p.not_sent(&self.store, index, self.clock.at(now_ns))?;
        Some(noted(self.metrics.as_mut(), &t))
    }

    /// The answer to probe `token` (`status` `None` when there was none); returns a line to
    /// log on a state change.
    pub fn probe_answered(
        &mut self,
        token: u32,
        status: Option<u16>,
        now_ns: u64,
    ) -> Option<String> {
        let p = self.prober.as_mut()?;
        let now_ns = self.clock.at(now_ns);
        let t = p.answered(&self.store, token, status, now_ns)?;
        // Health changed: picked up at once by this VM (the others at their next tick).
        let refreshed = p.refresh(&self.store, now_ns);
        self.take_refreshed(refreshed);
        Some(noted(self.metrics.as_mut(), &t))
    }

    /// Counts the request's failed tries and, with passive ejection, reports every try: the
    /// tries before the last (5xx, reset or refused: Envoy's retry conditions) failed on the
    /// backends [`Ticket::tried`] names; the last try's backend `served` failed if `failed`.
    /// `mono_ns` is on the proxy's clock. Returns lines to log.
    pub(super) fn report_outcomes(
        &mut self,
        ticket: &Ticket,
        served: Option<usize>,
        failed: bool,
        retried: usize,
        mono_ns: u64,
    ) -> Vec<String> {
        let mode = self.config.target.mode;
        let last = served.or_else(|| ticket.tried(retried, mode));
        let earlier = ticket.attributable(retried, mode);
        let tries = (0..earlier).map(|k| (ticket.tried(k, mode), true));
        let tries = tries.chain(std::iter::once((last, failed)));
        let mut log = Vec::new();
        let ejects = self.ejects();
        for (backend, failed) in tries {
            let Some(i) = backend else { continue };
            if failed {
                self.metrics.count(i, BackendCounter::UpstreamErrors);
            }
            if !ejects {
                continue;
            }
            let Some(p) = self.prober.as_mut() else { continue };
            for t in p.outcome(&self.store, i, failed, mono_ns) {
                log.push(noted(self.metrics.as_mut(), &t));
            }
        }
        log
    }
}

#[cfg(test)]
mod tests;
