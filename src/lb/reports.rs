//! What each backend last reported about its load ([`crate::orca`]), as one VM knows it: from
//! the responses it saw, merged with what the other workers saw ([`crate::state::load_reports`]).
//! Feeds `client_side_weighted_round_robin` (a weight per backend) and `least_load` (a metric
//! per backend, and its requests in flight when the metric was reported).
//!
//! The weight of one report and its validity over time follow Envoy's
//! `client_side_weighted_round_robin` (source/extensions/load_balancing_policies/
//! client_side_weighted_round_robin/client_side_weighted_round_robin_lb.cc,
//! `calculateWeightFromOrcaReport`, `updateWeightsOnHosts`, and `getWeightIfValid` in its .h),
//! itself gRPC's weighted round robin (gRFC A58):
//! - utilization = `application_utilization` if > 0, else the largest of the configured
//!   `metric_names_for_computing_utilization` if > 0, else `cpu_utilization`;
//! - with `qps = rps_fractional` > 0: `utilization += error_utilization_penalty × eps / qps`,
//!   and if utilization > 0 the weight is `qps / utilization`, capped at `u32::MAX` and
//!   truncated (Envoy stores it in a `uint32_t`; a host's weight is at least 1). Other reports
//!   leave the weight as it was.
//! - At each weight update a backend's weight is valid only if its first valid report since it
//!   last expired is at least `blackout_period` old and its last valid report at most
//!   `weight_expiration_period` old (an expired weight also restarts the blackout). Backends
//!   without a valid weight get the median of the valid ones (the upper median, as Envoy's
//!   `nth_element` at `size / 2`), or 1 when none is valid.
//!
//! Work: a report O(1); a weight update O(N) plus a selection, O(N) on average.

use crate::orca::{Report, Wanted};

/// "Never" for [`BackendLoad::non_empty_since`].
pub const NEVER: u64 = u64::MAX;

/// One backend's last report and what was derived from it; times on the proxy's clock (ns),
/// 0 for "never" unless said.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackendLoad {
    /// When the last report (valid or not for a weight) arrived.
    pub at: u64,
    /// Its `rps_fractional`, the utilization chosen from it, its `eps`.
    pub rps: f64,
    pub utilization: f64,
    pub eps: f64,
    /// The weight of the last report that gave one (0: none yet).
    pub weight: u32,
    /// When the current run of valid reports started ([`NEVER`]: none running).
    pub non_empty_since: u64,
    /// When the last report that gave a weight arrived.
    pub last_update: u64,
    /// `least_load`'s metric in the last report that had it, when that arrived, and the
    /// backend's requests in flight (across workers) at that moment.
    pub metric: f64,
    pub metric_at: u64,
    pub in_flight_at: u64,
}

impl Default for BackendLoad {
    fn default() -> Self {
        BackendLoad {
            at: 0,
            rps: 0.0,
            utilization: 0.0,
            eps: 0.0,
            weight: 0,
            non_empty_since: NEVER,
            last_update: 0,
            metric: 0.0,
            metric_at: 0,
            in_flight_at: 0,
        }
    }
}

impl BackendLoad {
    /// Takes from `other` (the same backend as another VM knows it) whatever is newer; a run of
    /// valid reports that started earlier counts from its start unless it has expired (its last
    /// update before `expired_before`). Commutative enough that every VM converges to the
    /// newest report and the earliest live start.
    pub fn absorb(&mut self, other: &BackendLoad, expired_before: u64) {
        if other.at > self.at {
            self.at = other.at;
            self.rps = other.rps;
            self.utilization = other.utilization;
            self.eps = other.eps;
        }
        if other.last_update > self.last_update {
            self.weight = other.weight;
            self.last_update = other.last_update;
        }
        let live = |l: &BackendLoad| l.non_empty_since != NEVER && l.last_update >= expired_before;
        if live(other) && (!live(self) || other.non_empty_since < self.non_empty_since) {
            self.non_empty_since = other.non_empty_since;
        }
        if other.metric_at > self.metric_at {
            self.metric = other.metric;
            self.metric_at = other.metric_at;
            self.in_flight_at = other.in_flight_at;
        }
    }
}

/// How reports become weights and metrics (from the algorithm's config).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRules {
    /// The named metrics read from reports: those for utilization, then `least_load`'s.
    pub wanted: Wanted,
    /// How many of `wanted` compute utilization (the first ones).
    pub utilization_metrics: usize,
    pub error_utilization_penalty: f64,
    /// `least_load`'s metric (a name Envoy's ORCA parser knows), if any.
    pub metric: Option<String>,
    pub blackout_ns: u64,
    pub expiration_ns: u64,
}

impl ReportRules {
    /// The utilization Envoy's `getUtilizationFromOrcaReport` takes from `r`.
    fn utilization(&self, r: &Report) -> f64 {
        if r.application_utilization > 0.0 {
            return r.application_utilization;
        }
        let named = r.wanted.iter().take(self.utilization_metrics).flatten().copied();
        let max = named.fold(0.0f64, f64::max);
        if max > 0.0 {
            max
        } else {
            r.cpu_utilization
        }
    }

    /// The weight of one report (`calculateWeightFromOrcaReport`), `None` when it gives none.
    pub fn weight(&self, r: &Report) -> Option<u32> {
        let qps = r.rps_fractional;
        if qps.is_nan() || qps <= 0.0 {
            return None;
        }
        let utilization = self.utilization(r) + self.error_utilization_penalty * r.eps / qps;
        if utilization.is_nan() || utilization <= 0.0 {
            return None;
        }
        // `as` saturates (and the cap is Envoy's); a host weight is at least 1.
        Some(((qps / utilization).min(f64::from(u32::MAX)) as u32).max(1))
    }
}

impl ReportRules {
    /// For tests: least_load's rules on `named_metrics.q`, no blackout, nothing expires.
    #[cfg(test)]
    pub(crate) fn least_load_on_q() -> Self {
        ReportRules {
            wanted: Wanted::new(["named_metrics.q".to_string()]),
            utilization_metrics: 0,
            error_utilization_penalty: 1.0,
            metric: Some("named_metrics.q".into()),
            blackout_ns: 0,
            expiration_ns: u64::MAX / 2,
        }
    }
}

/// Every backend's [`BackendLoad`] in pool order, and which changed since they were last shared.
#[derive(Debug, Clone, Default)]
pub struct LoadTable {
    entries: Vec<BackendLoad>,
    /// The earliest end of a blackout not yet counted by [`LoadTable::weights`] (`NEVER`:
    /// none): the weights are worth recomputing then, before the next update period.
    wake_ns: u64,
    /// When a report came whose weight is at least twice, or at most half, the one that
    /// counted at the last [`LoadTable::weights`] (`NEVER`: none since).
    changed_ns: u64,
    /// Backends with a report not yet shared, each once.
    dirty: Vec<u32>,
    is_dirty: Vec<bool>,
    /// Each backend's weight as the last [`LoadTable::weights`] counted it (0: not valid then).
    applied: Vec<u32>,
}

impl LoadTable {
    pub fn new(backends: usize) -> Self {
        LoadTable {
            entries: vec![BackendLoad::default(); backends],
            wake_ns: NEVER,
            changed_ns: NEVER,
            dirty: Vec::new(),
            is_dirty: vec![false; backends],
            applied: vec![0; backends],
        }
    }

    /// Backends in the table.
    pub fn backends(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, backend: usize) -> Option<&BackendLoad> {
        self.entries.get(backend)
    }

    /// Backend `i`'s entry, for a merge from shared data (not marked for sharing again).
    pub fn get_mut(&mut self, backend: usize) -> Option<&mut BackendLoad> {
        self.entries.get_mut(backend)
    }

    fn mark(&mut self, backend: usize) {
        if let Some(d) = self.is_dirty.get_mut(backend) {
            if !*d {
                *d = true;
                self.dirty.push(backend as u32);
            }
        }
    }

    /// A report from `backend` arrived at `now_ns`, when the backend had `in_flight` requests
    /// in flight across workers (read only for `least_load`'s metric; 0 otherwise).
    pub fn record(
        &mut self,
        backend: usize,
        report: &Report,
        rules: &ReportRules,
        now_ns: u64,
        in_flight: u64,
    ) {
        let Some(e) = self.entries.get_mut(backend) else { return };
        e.at = now_ns;
        e.rps = report.rps_fractional;
        e.utilization = rules.utilization(report);
        e.eps = report.eps;
        if let Some(w) = rules.weight(report) {
            e.weight = w;
            e.last_update = now_ns;
            if e.non_empty_since == NEVER {
                e.non_empty_since = now_ns;
                self.wake_ns = self.wake_ns.min(now_ns.saturating_add(rules.blackout_ns));
            }
            // A counted weight that has doubled or halved is worth applying before the period.
            let applied = u64::from(self.applied.get(backend).copied().unwrap_or(0));
            let w = u64::from(w);
            if applied > 0 && (w >= 2 * applied || 2 * w <= applied) {
                self.changed_ns = self.changed_ns.min(now_ns);
            }
        }
        let metric = rules.metric.as_deref().and_then(|m| report.get(m, &rules.wanted));
        if let Some(v) = metric {
            // A negative load would outbid every honest backend: it counts as none.
            e.metric = v.max(0.0);
            e.metric_at = now_ns;
            e.in_flight_at = in_flight;
        }
        self.mark(backend);
    }

    /// Whether a report's metric is read (so its record needs the in-flight count).
    pub fn wants_in_flight(rules: &ReportRules) -> bool {
        rules.metric.is_some()
    }

    /// The backends with reports not yet shared, emptied.
    pub fn take_dirty(&mut self) -> Vec<u32> {
        for &i in &self.dirty {
            if let Some(d) = self.is_dirty.get_mut(i as usize) {
                *d = false;
            }
        }
        std::mem::take(&mut self.dirty)
    }

    /// Marks `backend` for sharing again (its write was lost).
    pub fn retry(&mut self, backend: usize) {
        self.mark(backend);
    }

    /// The table for a new pool: `moved[i]` is the new index of old backend `i`.
    pub fn repool(&self, backends: usize, moved: &[Option<usize>]) -> LoadTable {
        let mut next = LoadTable::new(backends);
        for (old, new) in moved.iter().enumerate() {
            let (Some(new), Some(e)) = (new, self.entries.get(old)) else { continue };
            if let Some(slot) = next.entries.get_mut(*new) {
                *slot = *e;
            }
            next.mark(*new);
        }
        next
    }

    /// When a blackout ends that the last [`LoadTable::weights`] did not count (`NEVER`: no
    /// such blackout), so that a weight can count as soon as it is valid.
    pub fn wake_ns(&self) -> u64 {
        self.wake_ns
    }

    /// When a report came whose weight is at least twice, or at most half, the one that
    /// counted at the last [`LoadTable::weights`] (`NEVER`: none since).
    pub fn changed_ns(&self) -> u64 {
        self.changed_ns
    }

    /// Every backend's weight at `now_ns` (`updateWeightsOnHosts`), written into `out`;
    /// expired runs of reports are ended (as Envoy resets `non_empty_since`).
    pub fn weights(&mut self, rules: &ReportRules, now_ns: u64, out: &mut Vec<u32>) {
        let max_non_empty_since = now_ns.saturating_sub(rules.blackout_ns);
        let min_last_update = now_ns.saturating_sub(rules.expiration_ns);
        out.clear();
        let mut valid = Vec::with_capacity(self.entries.len());
        self.wake_ns = NEVER;
        self.changed_ns = NEVER;
        self.applied.clear();
        for e in &mut self.entries {
            let weight = if e.non_empty_since == NEVER {
                None
            } else if max_non_empty_since < e.non_empty_since {
                let ends = e.non_empty_since.saturating_add(rules.blackout_ns);
                self.wake_ns = self.wake_ns.min(ends);
                None
            } else if e.last_update < min_last_update {
                e.non_empty_since = NEVER;
                None
            } else {
                Some(e.weight.max(1))
            };
            if let Some(w) = weight {
                valid.push(u64::from(w));
            }
            self.applied.push(weight.unwrap_or(0));
            out.push(weight.unwrap_or(0));
        }
        // A sort rather than a selection: the filter already has a sort of `u64`s, and each
        // instantiation costs the .wasm kilobytes (O(N log N) once per update period).
        valid.sort_unstable();
        let default = valid.get(valid.len() / 2).map_or(1, |&w| w as u32);
        for w in out.iter_mut().filter(|w| **w == 0) {
            *w = default;
        }
    }
}

#[cfg(test)]
mod tests;
