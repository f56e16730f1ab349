//! The router's part in load reports ([`crate::orca`], [`crate::lb::reports`]): a response's
//! report is parsed and recorded against the backend that served it; each tick shares this
//! VM's new reports ([`SharedReports::publish`]); each sync period takes the other workers'
//! ([`SharedReports::gather`]) and, for `client_side_weighted_round_robin`, hands the balancer
//! the weights of that moment; a sync also comes at the first tick after a backend's blackout
//! ends, so that its weight counts as soon as it is valid, and after a report whose weight has
//! doubled or halved since the last sync (these early syncs at most every quarter period).

use super::Router;
use crate::config::{Algorithm, Config};
use crate::hash_key;
use crate::lb::reports::{LoadTable, ReportRules};
use crate::lb::LoadView;
use crate::metrics::{Metrics, PoolCounter};
use crate::orca::{self, Wanted};
use crate::state::keys;
use crate::state::load_reports::SharedReports;
use crate::MS;

/// How often `least_load` takes the other workers' reports (its own arrive with responses).
const LEAST_LOAD_SYNC_NS: u64 = 250 * MS;

/// `lb_load_weight` gauges set at most per tick: the first update of a large pool defines one
/// per backend (a host call each, ~15 µs), spread over ticks like the other backend metrics.
const GAUGES_PER_TICK: usize = 512;

pub(super) struct Reports {
    pub(super) table: LoadTable,
    pub(super) rules: ReportRules,
    shared: SharedReports,
    /// Whether weights are computed (client_side_weighted_round_robin).
    weighs: bool,
    sync_ns: u64,
    /// The next periodic sync (a fixed schedule, as Envoy's timer), and the last sync.
    next_sync_ns: u64,
    last_sync_ns: u64,
    /// The weights in use, the ones the gauges show, and the first backend whose gauge may
    /// lag (`weights.len()`: none).
    weights: Vec<u32>,
    shown: Vec<u32>,
    show_from: usize,
}

fn key_hashes(config: &Config) -> Vec<u64> {
    config.pool.iter().map(|b| hash_key::hash(keys::backend(b).as_bytes())).collect()
}

impl Reports {
    pub(super) fn for_config(config: &Config) -> Option<Reports> {
        let b = &config.balancing;
        if !b.algorithm.reads_reports() {
            return None;
        }
        let weighs = b.algorithm == Algorithm::ClientSideWeightedRoundRobin;
        let utilization = if weighs {
            b.cswrr.metric_names_for_computing_utilization.clone()
        } else {
            Vec::new()
        };
        let metric = (b.algorithm == Algorithm::LeastLoad).then(|| b.least_load.metric.clone());
        let rules = ReportRules {
            utilization_metrics: utilization.len(),
            wanted: Wanted::new(utilization.into_iter().chain(metric.clone())),
            error_utilization_penalty: b.cswrr.error_utilization_penalty,
            metric,
            blackout_ns: b.cswrr.blackout_period_ms.saturating_mul(MS),
            expiration_ns: b.cswrr.weight_expiration_period_ms.saturating_mul(MS),
        };
        let sync_ns = if weighs {
            b.cswrr.weight_update_period_ms.saturating_mul(MS)
        } else {
            LEAST_LOAD_SYNC_NS
        };
        Some(Reports {
            table: LoadTable::new(config.pool.len()),
            rules,
            shared: SharedReports::new(&config.cluster, key_hashes(config)),
            weighs,
            sync_ns,
            next_sync_ns: 0,
            last_sync_ns: 0,
            weights: Vec::new(),
            shown: Vec::new(),
            show_from: 0,
        })
    }

    fn expired_before(&self, now_ns: u64) -> u64 {
        now_ns.saturating_sub(self.rules.expiration_ns)
    }

    /// Brings up to [`GAUGES_PER_TICK`] lagging weight gauges up to date, in pool order.
    fn show(&mut self, metrics: &mut dyn Metrics) {
        self.shown.resize(self.weights.len(), 0);
        let mut budget = GAUGES_PER_TICK;
        while budget > 0 {
            let i = self.show_from;
            let (Some(&w), Some(shown)) = (self.weights.get(i), self.shown.get_mut(i)) else {
                return;
            };
            if *shown != w {
                metrics.load_weight(i, w);
                *shown = w;
                budget -= 1;
            }
            self.show_from += 1;
        }
    }
}

impl Router {
    /// Whether responses' load reports are read (the adapter reads the header only then).
    pub fn wants_reports(&self) -> bool {
        self.reports.is_some()
    }

    /// The `endpoint-load-metrics` value (or, with `binary`, the legacy binary header's) of the
    /// response [`Router::on_response`] just attributed in `ticket`. A report that cannot be read
    /// is counted and ignored; it never fails the request.
    pub fn on_report(&mut self, ticket: &super::Ticket, header: &str, binary: bool, now_ns: u64) {
        let Some(reports) = self.reports.as_mut() else { return };
        let parsed = if binary {
            Err(orca::ReportError::Unsupported)
        } else {
            orca::parse(header, &reports.rules.wanted)
        };
        match parsed {
            Ok(report) if ticket.backend < reports.table.backends() => {
                let now = self.clock.at(now_ns);
                // least_load: the backend's requests in flight now (this one included, as in the
                // report), one shared-data read.
                let in_flight = match (&self.in_flight, LoadTable::wants_in_flight(&reports.rules))
                {
                    (Some(counters), true) => counters.view(&self.store).in_flight(ticket.backend),
                    _ => 0,
                };
                reports.table.record(ticket.backend, &report, &reports.rules, now, in_flight);
                self.metrics.pool(PoolCounter::LoadReports);
            }
            _ => self.metrics.pool(PoolCounter::LoadReportsInvalid),
        }
    }

    /// At a tick: shares this VM's new reports, and when a sync is due takes the others' and
    /// reweighs.
    pub(super) fn reports_tick(&mut self, now_ns: u64) {
        let Some(r) = self.reports.as_mut() else { return };
        let now = self.clock.at(now_ns);
        let expired_before = r.expired_before(now);
        r.shared.publish(&self.store, &mut r.table, expired_before);
        // Every update period; early when a backend's blackout has ended (its weight then counts
        // at once, not up to a period later), or when its reported weight doubled or halved (at
        // most every quarter period: noisy reports cannot make every tick a sync).
        let changed = r.last_sync_ns.saturating_add(r.sync_ns / 4).max(r.table.changed_ns());
        let early = r.table.wake_ns().min(changed);
        if now < r.next_sync_ns && !(r.weighs && now >= early) {
            r.show(&mut *self.metrics);
            return;
        }
        if now >= r.next_sync_ns {
            let next = r.next_sync_ns.saturating_add(r.sync_ns);
            r.next_sync_ns = if next > now { next } else { now.saturating_add(r.sync_ns) };
        }
        r.last_sync_ns = now;
        r.shared.gather(&self.store, &mut r.table, expired_before);
        if r.weighs {
            let mut weights = Vec::with_capacity(r.table.backends());
            r.table.weights(&r.rules, now, &mut weights);
            self.balancer.reweight(&weights);
            r.weights = weights;
            r.show_from = 0;
            r.show(&mut *self.metrics);
        }
    }

    /// The pool changed: reports follow their backends (`moved[i]`: old `i`'s new index).
    pub(super) fn reports_repool(&mut self, moved: &[Option<usize>]) {
        let Some(r) = self.reports.as_mut() else { return };
        r.table = r.table.repool(self.config.pool.len(), moved);
        r.shared = SharedReports::new(&self.config.cluster, key_hashes(&self.config));
        let (prefix, count) = r.shared.family(&self.config.cluster);
        self.store.reserve_family(&prefix, count);
        // The new balancer starts unweighted: reweigh (and show every weight) at the next tick.
        r.next_sync_ns = 0;
        r.weights.clear();
        r.shown.clear();
    }

    /// Registers the shard keys (at construction).
    pub(super) fn reports_start(&mut self) {
        let Some(r) = self.reports.as_ref() else { return };
        let (prefix, count) = r.shared.family(&self.config.cluster);
        self.store.reserve_family(&prefix, count);
    }
}

#[cfg(test)]
mod tests;
