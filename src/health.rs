//! Per-backend health state machine, pure and driven by injected time (nanoseconds): active
//! checks (rise / fall thresholds), passive outlier detection (consecutive errors -> ejection
//! for base × n, capped; bounded by `max_ejection_percent`), the slow-start ramp, and the
//! availability rules (panic, backups, none) that turn the table into an `accept` predicate and
//! weights. Every state change comes back as one [`Transition`] whose `Display` is the log line.
//!
//! Backends are keyed by `id@address` ([`keys::backend`](crate::state::keys::backend)), so a config reload keeps the state of
//! backends whose id and address did not change ([`HealthTable::carry_over`]).

pub mod prober;
pub mod schedule;

use std::fmt;

/// Active-check thresholds (values below 1 act as 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivePolicy {
    /// Consecutive probe successes that make an unhealthy backend healthy.
    pub healthy_threshold: u32,
    /// Consecutive probe failures that make a healthy backend unhealthy.
    pub unhealthy_threshold: u32,
}

/// Passive outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierPolicy {
    /// Consecutive failed requests (5xx, connect failure) that eject a backend (min 1).
    pub consecutive_errors: u32,
    /// The n-th ejection lasts `base_ejection_ns × n`, ...
    pub base_ejection_ns: u64,
    /// ... at most this (never less than `base_ejection_ns`).
    pub max_ejection_ns: u64,
    /// Most backends ejected at once, in percent of all backends; one ejection is always
    /// allowed when none is in force and this is above 0 (as in Envoy).
    pub max_ejection_percent: u32,
}

impl OutlierPolicy {
    /// Whether one more ejection fits `max_ejection_percent` with `ejected` of `total`
    /// backends ejected now (one is always allowed when none is, as in Envoy).
    pub fn allows_another(&self, ejected: usize, total: usize) -> bool {
        let percent = u128::from(self.max_ejection_percent);
        (ejected == 0 && percent > 0) || (ejected as u128 + 1) * 100 <= percent * total as u128
    }
}

/// How health is judged; configuration, not state (never published).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthPolicy {
    /// `None`: no active checks; every backend counts as healthy.
    pub active: Option<ActivePolicy>,
    /// `None`: no passive ejection.
    pub outlier: Option<OutlierPolicy>,
    /// Ramp length after a backend becomes available; 0: no slow start.
    pub slow_start_ns: u64,
    /// Panic when available primaries < this percent of primaries; 0 disables.
    pub panic_threshold_percent: u32,
}

/// Why one probe failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeFailure {
    /// No answer within `ms` milliseconds.
    Timeout { ms: u64 },
    /// The backend answered with an unexpected HTTP status.
    Status(u16),
    /// No connection (reset, refused, no upstream).
    Connect,
    /// The probe could not be sent.
    Dispatch,
}

impl fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeFailure::Timeout { ms } => write!(f, "timeout after {ms} ms"),
            ProbeFailure::Status(s) => write!(f, "status {s}"),
            ProbeFailure::Connect => f.write_str("connection failed"),
            ProbeFailure::Dispatch => f.write_str("probe not sent"),
        }
    }
}

/// The result of one active probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Ok,
    Failed(ProbeFailure),
}

/// A state change and its reason (compact: it is also kept in the published table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Unhealthy { failures: u32, last: ProbeFailure },
    Healthy { successes: u32 },
    Ejected { duration_ns: u64, errors: u32, ejection: u32 },
    Returned,
}

/// One state change of one backend: log it once, at info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub index: usize,
    /// The backend's id (its key without `@address`).
    pub id: String,
    pub change: Change,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Change::Unhealthy { failures, last } => {
                write!(f, "unhealthy: {failures} probe failures, last: {last}")
            }
            Change::Healthy { successes } => write!(f, "healthy: {successes} probe successes"),
            Change::Ejected { duration_ns, errors, ejection } => write!(
                f,
                "ejected for {} ms: {errors} consecutive errors (ejection {ejection})",
                duration_ns / 1_000_000
            ),
            Change::Returned => f.write_str("returned: ejection over"),
        }
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id, self.change)
    }
}

/// One probe result against a backend's consecutive `(successes, failures)` and its health:
/// rise after `healthy_threshold` successes, fall after `unhealthy_threshold` failures
/// (thresholds below 1 act as 1). Returns the change, if the health changed.
pub fn judge(
    active: ActivePolicy,
    streaks: &mut (u32, u32),
    healthy: &mut bool,
    probe: Probe,
) -> Option<Change> {
    match probe {
        Probe::Ok => {
            *streaks = (streaks.0.saturating_add(1), 0);
            if *healthy || streaks.0 < active.healthy_threshold.max(1) {
                return None;
            }
            *healthy = true;
            Some(Change::Healthy { successes: streaks.0 })
        }
        Probe::Failed(last) => {
            *streaks = (0, streaks.1.saturating_add(1));
            if !*healthy || streaks.1 < active.unhealthy_threshold.max(1) {
                return None;
            }
            *healthy = false;
            Some(Change::Unhealthy { failures: streaks.1, last })
        }
    }
}

/// Health of one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendHealth {
    /// `id@address`.
    pub key: String,
    /// Judged by active checks (always true without them).
    pub healthy: bool,
    /// Consecutive probe successes / failures.
    pub successes: u32,
    pub failures: u32,
    /// Consecutive failed requests (passive).
    pub errors: u32,
    /// Ejections so far (the multiplier of the ejection time).
    pub ejections: u32,
    /// Ejected while `now < ejected_until_ns`; 0 when no ejection is pending expiry.
    pub ejected_until_ns: u64,
    /// Start of the slow-start ramp.
    pub available_since_ns: u64,
    /// When the last probe was sent; 0: never (due at once).
    pub last_probe_ns: u64,
    /// The last change, for diagnostics.
    pub last: Option<Change>,
}

impl BackendHealth {
    /// A backend first seen at `now`: healthy, available, ramp starting.
    pub fn new(key: String, now_ns: u64) -> Self {
        BackendHealth {
            key,
            healthy: true,
            successes: 0,
            failures: 0,
            errors: 0,
            ejections: 0,
            ejected_until_ns: 0,
            available_since_ns: now_ns,
            last_probe_ns: 0,
            last: None,
        }
    }

    /// The id part of the key.
    pub fn id(&self) -> &str {
        crate::state::keys::backend_id(&self.key)
    }

    pub fn is_ejected(&self, now_ns: u64) -> bool {
        now_ns < self.ejected_until_ns
    }

    /// Healthy (or no active checks) and not ejected.
    pub fn is_available(&self, policy: &HealthPolicy, now_ns: u64) -> bool {
        (self.healthy || policy.active.is_none()) && !self.is_ejected(now_ns)
    }

    /// Slow-start weight in percent (10..=100) for an available backend: linear from 10% at
    /// the start of the ramp to 100% at its end. The ramp starts when the backend became
    /// available or, if later, when its last ejection ended.
    pub fn ramp_percent(&self, policy: &HealthPolicy, now_ns: u64) -> u8 {
        let slow = policy.slow_start_ns;
        let since = self.available_since_ns.max(self.ejected_until_ns);
        let elapsed = now_ns.saturating_sub(since);
        if slow == 0 || elapsed >= slow {
            return 100;
        }
        let extra = u128::from(elapsed) * 90 / u128::from(slow);
        10 + u8::try_from(extra).unwrap_or(90).min(90)
    }
}

/// Whether each backend may be picked now, with its weight factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Slot {
    pub accepted: bool,
    /// Healthy (or no active checks) and not ejected, whether accepted or not.
    pub available: bool,
    /// 0 when not accepted; 10..=100 (slow start) when available; 100 for an unavailable
    /// primary accepted in panic.
    pub weight_percent: u8,
}

/// The availability of the whole pool at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Availability {
    pub slots: Vec<Slot>,
    /// Too few primaries available: every primary accepted.
    pub panic: bool,
    /// No primary available: the available backups take the traffic.
    pub using_backups: bool,
    /// Nothing may be picked: answer 503.
    pub none: bool,
    /// Every primary that is up drains and no backup is up: the draining primaries take new
    /// requests too (as Envoy serves DRAINING hosts when nothing else is left) rather than 503.
    pub draining_serve: bool,
}

impl Availability {
    /// The `accept` predicate of a pick.
    pub fn accepts(&self, index: usize) -> bool {
        self.slots.get(index).is_some_and(|s| s.accepted)
    }

    pub fn weight_percent(&self, index: usize) -> u8 {
        self.slots.get(index).map_or(0, |s| s.weight_percent)
    }
}

/// Health of every backend of one pool, in pool order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthTable {
    entries: Vec<BackendHealth>,
}

impl HealthTable {
    /// Every backend first seen at `now`.
    pub fn new(keys: &[String], now_ns: u64) -> Self {
        HealthTable {
            entries: keys.iter().map(|k| BackendHealth::new(k.clone(), now_ns)).collect(),
        }
    }

    pub fn from_entries(entries: Vec<BackendHealth>) -> Self {
        HealthTable { entries }
    }

    pub fn entries(&self) -> &[BackendHealth] {
        &self.entries
    }

    pub fn get(&self, index: usize) -> Option<&BackendHealth> {
        self.entries.get(index)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Replaces entry `index` (a backend's state as another table holds it).
    pub fn replace(&mut self, index: usize, entry: BackendHealth) {
        if let Some(e) = self.entries.get_mut(index) {
            *e = entry;
        }
    }

    /// Whether the entries are exactly `keys`, in order.
    pub fn has_keys(&self, keys: &[String]) -> bool {
        self.entries.len() == keys.len() && self.entries.iter().zip(keys).all(|(e, k)| e.key == *k)
    }

    /// A table for `keys` keeping the state of backends whose key is in `old`; the others
    /// start healthy and available at `now`.
    pub fn carry_over(old: &HealthTable, keys: &[String], now_ns: u64) -> HealthTable {
        let by_key: fnv::FnvHashMap<&str, &BackendHealth> =
            old.entries.iter().map(|e| (e.key.as_str(), e)).collect();
        let entries = keys
            .iter()
            .map(|k| match by_key.get(k.as_str()) {
                Some(e) => (*e).clone(),
                None => BackendHealth::new(k.clone(), now_ns),
            })
            .collect();
        HealthTable { entries }
    }

    /// Applies one active probe result to the entry's own streaks (the lease holder keeps
    /// them in memory instead; both judge with [`judge`]).
    #[cfg(test)]
    pub fn probe_result(
        &mut self,
        policy: &HealthPolicy,
        index: usize,
        probe: Probe,
        now_ns: u64,
    ) -> Option<Transition> {
        let active = policy.active?;
        let e = self.entries.get_mut(index)?;
        let (mut streaks, mut healthy) = ((e.successes, e.failures), e.healthy);
        let change = judge(active, &mut streaks, &mut healthy, probe);
        (e.successes, e.failures) = streaks;
        let change = change?;
        self.set_health(index, healthy, change, streaks.0, streaks.1, now_ns);
        let id = self.entries.get(index)?.id().to_string();
        Some(Transition { index, id, change })
    }

    /// Sets `index`'s health as the prober lease holder judged it at `at_ns` (its own record
    /// of consecutive probe results: `successes`, `failures`). Becoming healthy starts the
    /// slow-start ramp, unless an ejection is in force.
    pub fn set_health(
        &mut self,
        index: usize,
        healthy: bool,
        change: Change,
        successes: u32,
        failures: u32,
        at_ns: u64,
    ) {
        let Some(e) = self.entries.get_mut(index) else { return };
        if healthy && !e.healthy && !e.is_ejected(at_ns) {
            e.available_since_ns = at_ns;
        }
        e.healthy = healthy;
        e.successes = successes;
        e.failures = failures;
        e.last = Some(change);
    }

    /// A streak of `errors` consecutive failed requests (counted outside the table) ends in
    /// one more failed outcome: [`HealthTable::request_outcome`] with that streak.
    pub fn request_outcome_after(
        &mut self,
        policy: &HealthPolicy,
        index: usize,
        errors: u32,
        now_ns: u64,
    ) -> Option<Transition> {
        let e = self.entries.get_mut(index)?;
        if e.is_ejected(now_ns) {
            return None;
        }
        e.errors = errors.saturating_sub(1);
        self.request_outcome(policy, index, true, now_ns)
    }

    /// Applies the outcome of one request served by `index`: a success resets the error
    /// streak; a failure extends it and ejects the backend when the streak reaches the
    /// threshold, unless `max_ejection_percent` would be exceeded (then the streak is kept and
    /// the next failure tries again). Outcomes of an ejected backend are ignored.
    pub fn request_outcome(
        &mut self,
        policy: &HealthPolicy,
        index: usize,
        failed: bool,
        now_ns: u64,
    ) -> Option<Transition> {
        let outlier = policy.outlier?;
        let ejected_now = self.entries.iter().filter(|e| e.is_ejected(now_ns)).count();
        let total = self.entries.len();
        let e = self.entries.get_mut(index)?;
        if e.is_ejected(now_ns) {
            return None;
        }
        if !failed {
            e.errors = 0;
            return None;
        }
        e.errors = e.errors.saturating_add(1);
        if e.errors < outlier.consecutive_errors.max(1) {
            return None;
        }
        if !outlier.allows_another(ejected_now, total) {
            return None;
        }
        // The multiplier backs off like Envoy's: every base ejection time spent available since
        // the last ejection ended takes one off it.
        let since = e.available_since_ns.max(e.ejected_until_ns);
        let forgiven = now_ns.saturating_sub(since) / outlier.base_ejection_ns.max(1);
        e.ejections = e.ejections.saturating_sub(u32::try_from(forgiven).unwrap_or(u32::MAX));
        e.ejections = e.ejections.saturating_add(1);
        let cap = outlier.max_ejection_ns.max(outlier.base_ejection_ns);
        let duration_ns = outlier.base_ejection_ns.saturating_mul(u64::from(e.ejections)).min(cap);
        let change = Change::Ejected { duration_ns, errors: e.errors, ejection: e.ejections };
        e.errors = 0;
        e.ejected_until_ns = now_ns.saturating_add(duration_ns).max(now_ns.saturating_add(1));
        e.last = Some(change);
        Some(Transition { index, id: e.id().to_string(), change })
    }

    /// Pulls back stamps further ahead than `now` allows, written on a clock that ran ahead (an
    /// older filter before a wall-clock step back, a lost clock key), so that none holds
    /// anything longer than its own bound: a probe time becomes now (due an interval later), a
    /// ramp starts now at the latest, an ejection ends within the longest ejection.
    pub fn pull_back(&mut self, policy: &HealthPolicy, now_ns: u64) {
        let longest = policy.outlier.map(|o| o.max_ejection_ns.max(o.base_ejection_ns));
        for e in &mut self.entries {
            e.last_probe_ns = e.last_probe_ns.min(now_ns);
            e.available_since_ns = e.available_since_ns.min(now_ns);
            if let Some(longest) = longest {
                e.ejected_until_ns = e.ejected_until_ns.min(now_ns.saturating_add(longest));
            }
        }
    }

    /// Ends the ejections whose time is up; the slow-start ramp restarts from the end of the
    /// ejection (= now when called on time).
    pub fn expire(&mut self, now_ns: u64) -> Vec<Transition> {
        (0..self.entries.len()).filter_map(|index| self.end_ejection(index, now_ns)).collect()
    }

    /// Ends `index`'s ejection if its time is up (the `returned` transition), as [`expire`]
    /// does for every backend. The lease holder's tick normally does it; an outcome that
    /// arrives first ends it itself, so a backend ejected again before that tick still shows
    /// (and counts) the return in between.
    ///
    /// [`expire`]: HealthTable::expire
    pub fn end_ejection(&mut self, index: usize, now_ns: u64) -> Option<Transition> {
        let e = self.entries.get_mut(index)?;
        if e.ejected_until_ns == 0 || e.is_ejected(now_ns) {
            return None;
        }
        e.available_since_ns = e.available_since_ns.max(e.ejected_until_ns);
        e.ejected_until_ns = 0;
        e.errors = 0;
        e.last = Some(Change::Returned);
        Some(Transition { index, id: e.id().to_string(), change: Change::Returned })
    }

    /// Who may be picked at `now`. `backups[i]` marks backup backends and `drains[i]` draining
    /// ones (missing: a primary that does not drain). Backups take over when no primary that
    /// takes new requests (available, not draining) is left; a draining primary stays
    /// accepted for the sessions pinned to it, and takes new requests only when no backup is
    /// up either ([`Availability::draining_serve`]).
    pub fn availability(
        &self,
        policy: &HealthPolicy,
        now_ns: u64,
        backups: &[bool],
        drains: &[bool],
    ) -> Availability {
        let is_backup = |i: usize| backups.get(i).copied().unwrap_or(false);
        let is_drain = |i: usize| drains.get(i).copied().unwrap_or(false);
        let available: Vec<bool> =
            self.entries.iter().map(|e| e.is_available(policy, now_ns)).collect();
        let count = |want_up: bool, backup: bool, serving: bool| {
            available
                .iter()
                .enumerate()
                .filter(|&(i, &up)| (up || !want_up) && is_backup(i) == backup)
                .filter(|&(i, _)| !serving || !is_drain(i))
                .count() as u64
        };
        let (primaries, up_primaries) = (count(false, false, false), count(true, false, false));
        let (serving_primaries, up_backups) = (count(true, false, true), count(true, true, true));
        let threshold = u64::from(policy.panic_threshold_percent);
        let panic_on = threshold > 0 && primaries > 0;
        let below = up_primaries.saturating_mul(100) < threshold.saturating_mul(primaries);
        let using_backups = serving_primaries == 0 && up_backups > 0;
        let panic = !using_backups && panic_on && below;
        let accept = |i: usize, up: bool| {
            if panic {
                !is_backup(i)
            } else {
                let pinned_only = using_backups && !is_backup(i) && is_drain(i);
                up && (is_backup(i) == using_backups || pinned_only)
            }
        };
        let draining_serve = !panic && serving_primaries == 0 && up_backups == 0;
        let mut out =
            Availability { using_backups, panic, draining_serve, ..Availability::default() };
        out.slots = self
            .entries
            .iter()
            .zip(&available)
            .enumerate()
            .map(|(i, (e, &up))| {
                let accepted = accept(i, up);
                let weight_percent = match (accepted, up) {
                    (false, _) => 0,
                    (true, true) => e.ramp_percent(policy, now_ns),
                    (true, false) => 100,
                };
                Slot { accepted, weight_percent, available: up }
            })
            .collect();
        out.none = !out.slots.iter().any(|s| s.accepted);
        out
    }
}

#[cfg(test)]
mod tests;
