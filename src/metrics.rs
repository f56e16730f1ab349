//! The filter's metrics: what is counted, how each stat is named, and the [`Metrics`] trait the
//! router reports through (the adapter implements it with proxy-wasm stats).
//!
//! A name carries the pool and the backend as dotted segments,
//! `lb_requests_total.pool.<pool>.backend.<id>`, which Envoy shows as
//! `wasmcustom.lb_requests_total.pool.<pool>.backend.<id>`; the two `stats_tags` regexes in
//! envoy/envoy.yaml ([`STATS_TAGS`]) turn them into labels, so /stats/prometheus has
//! `lb_requests_total{pool="demo",backend="b1"}`.

/// Counted per backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendCounter {
    /// Requests steered to the backend as their first choice.
    Requests,
    /// Tries the backend failed: a 5xx (or 429) answer, or no answer (connect failure, reset).
    UpstreamErrors,
    /// Passive ejections.
    Ejections,
    /// Changes of availability: unhealthy, healthy, ejected, returned.
    HealthTransitions,
    /// Sticky-session cookies issued for the backend.
    StickyIssued,
}

/// Gauges per backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendGauge {
    /// Requests in flight to the backend, across all workers.
    InFlight,
    /// 1 when the backend may be picked (healthy and not ejected), else 0.
    Healthy,
}

/// Counted per pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolCounter {
    StickyHits,
    StickyMisses,
    StickyInvalid,
    /// Requests answered 503 because no backend could be picked.
    NoHealthyBackend,
    /// Entries into panic mode.
    PanicMode,
    /// Discovery polls that failed (the last good pool kept serving).
    DiscoveryErrors,
    /// Responses that came from a host the filter did not list: the cluster ignores the
    /// steering (e.g. it has no override_host policy).
    SteeringIgnored,
    /// Load reports read from responses.
    LoadReports,
    /// Load reports that could not be read (malformed, too large, or binary).
    LoadReportsInvalid,
}

/// Gauges per pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolGauge {
    /// Milliseconds since the last successful discovery poll.
    DiscoveryAgeMs,
    /// Endpoints in the last discovery snapshot.
    DiscoveryEndpoints,
}

/// The per-backend gauge of [`Metrics::load_weight`].
pub const LOAD_WEIGHT: &str = "lb_load_weight";

impl PoolGauge {
    pub const ALL: [PoolGauge; 2] = [PoolGauge::DiscoveryAgeMs, PoolGauge::DiscoveryEndpoints];

    pub fn name(self) -> &'static str {
        match self {
            PoolGauge::DiscoveryAgeMs => "lb_discovery_snapshot_age_ms",
            PoolGauge::DiscoveryEndpoints => "lb_discovery_endpoints",
        }
    }
}

impl BackendCounter {
    pub const ALL: [BackendCounter; 5] = [
        BackendCounter::Requests,
        BackendCounter::UpstreamErrors,
        BackendCounter::Ejections,
        BackendCounter::HealthTransitions,
        BackendCounter::StickyIssued,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BackendCounter::Requests => "lb_requests_total",
            BackendCounter::UpstreamErrors => "lb_upstream_errors_total",
            BackendCounter::Ejections => "lb_ejections_total",
            BackendCounter::HealthTransitions => "lb_health_transitions_total",
            BackendCounter::StickyIssued => "lb_sticky_issued_total",
        }
    }
}

impl BackendGauge {
    pub const ALL: [BackendGauge; 2] = [BackendGauge::InFlight, BackendGauge::Healthy];

    pub fn name(self) -> &'static str {
        match self {
            BackendGauge::InFlight => "lb_in_flight",
            BackendGauge::Healthy => "lb_healthy",
        }
    }
}

impl PoolCounter {
    pub const ALL: [PoolCounter; 9] = [
        PoolCounter::StickyHits,
        PoolCounter::StickyMisses,
        PoolCounter::StickyInvalid,
        PoolCounter::NoHealthyBackend,
        PoolCounter::PanicMode,
        PoolCounter::DiscoveryErrors,
        PoolCounter::SteeringIgnored,
        PoolCounter::LoadReports,
        PoolCounter::LoadReportsInvalid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PoolCounter::StickyHits => "lb_sticky_hits_total",
            PoolCounter::StickyMisses => "lb_sticky_misses_total",
            PoolCounter::StickyInvalid => "lb_sticky_invalid_total",
            PoolCounter::NoHealthyBackend => "lb_no_healthy_backend_total",
            PoolCounter::PanicMode => "lb_panic_mode_total",
            PoolCounter::DiscoveryErrors => "lb_discovery_errors_total",
            PoolCounter::SteeringIgnored => "lb_steering_ignored_total",
            PoolCounter::LoadReports => "lb_load_reports_total",
            PoolCounter::LoadReportsInvalid => "lb_load_reports_invalid_total",
        }
    }
}

/// The `stats_tags` of envoy/envoy.yaml, as (tag name, regex): Envoy removes the first
/// capture group from the stat name and makes the second the label's value.
#[cfg(test)]
pub const STATS_TAGS: [(&str, &str); 2] = [
    ("pool", r"^wasmcustom\.lb_[a-z_]+(\.pool\.([A-Za-z0-9_-]+))"),
    ("backend", r"^wasmcustom\.lb_[a-z_]+\.pool\.[A-Za-z0-9_-]+(\.backend\.([A-Za-z0-9_.-]+))$"),
];

/// The pool's label: its cluster name with every character outside `[A-Za-z0-9_-]` replaced
/// by `_` (Istio's `outbound|80||svc.ns.svc.cluster.local` has dots and bars).
pub fn pool_label(cluster: &str) -> String {
    cluster.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// `<name>.pool.<pool>` (the pool already a [`pool_label`]).
pub fn pool_metric(name: &str, pool: &str) -> String {
    format!("{name}.pool.{pool}")
}

/// `<name>.pool.<pool>.backend.<id>` (backend ids are `[A-Za-z0-9_.-]`).
pub fn backend_metric(name: &str, pool: &str, id: &str) -> String {
    format!("{name}.pool.{pool}.backend.{id}")
}

/// Where the router reports; every method defaults to doing nothing.
pub trait Metrics {
    fn count(&mut self, _backend: usize, _counter: BackendCounter) {}
    fn pool(&mut self, _counter: PoolCounter) {}
    /// Requests in flight to `backend` changed by `delta`.
    fn in_flight(&mut self, _backend: usize, _delta: i64) {}
    /// Whether `backend` may be picked, on every change this VM sees.
    fn healthy(&mut self, _backend: usize, _up: bool) {}
    /// The weight `backend` has from load reports (client_side_weighted_round_robin), on
    /// every change; the gauge `lb_load_weight` exists only for pools that weigh by reports.
    fn load_weight(&mut self, _backend: usize, _weight: u32) {}
    /// Sets a pool gauge.
    fn pool_gauge(&mut self, _gauge: PoolGauge, _value: u64) {}
    /// The pool changed to `pool` (discovery); `moved[i]` is the new index of old backend `i`.
    fn repool(&mut self, _pool: &crate::backend::Pool, _moved: &[Option<usize>]) {}
    /// The current, process-wide value of a backend gauge (for the status page).
    fn gauge(&self, _backend: usize, _gauge: BackendGauge) -> Option<u64> {
        None
    }
    /// The current, process-wide value of a backend counter (for the status page).
    fn counted(&self, _backend: usize, _counter: BackendCounter) -> Option<u64> {
        None
    }
    /// Hands what was batched to the host (on every tick).
    fn flush(&mut self) {}
}

/// Metrics that go nowhere (tests, fuzz targets, benches).
#[cfg(any(test, feature = "testing"))]
pub struct NoMetrics;

#[cfg(any(test, feature = "testing"))]
impl Metrics for NoMetrics {}

#[cfg(test)]
mod tests;
