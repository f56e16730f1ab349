//! Host implementations of the core's traits: shared data ([`SharedStore`]), gauges
//! ([`Metrics`]), the clock, and typed reads of request properties.

use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};

use crate::backend::Pool;
use crate::router::{Metrics, StickyOutcome};
use crate::state::{SharedStore, StoreError};

/// proxy-wasm shared data of this VM's vm_id.
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(bytes), cas)) => Ok(Some((bytes, cas.unwrap_or(0)))),
            Ok((None, _)) => Ok(None),
            Err(status) => Err(StoreError::Host(status as u32)),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        match hostcalls::set_shared_data(key, Some(value), Some(cas)) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(status) => Err(StoreError::Host(status as u32)),
        }
    }
}

/// Per-backend gauges `lb_in_flight.backend.<id>` (Envoy shows them as
/// `wasmcustom.lb_in_flight.backend.<id>`); process-wide, so every worker adds to the same one.
pub struct HostMetrics {
    in_flight: Vec<Option<u32>>,
    panic: Option<u32>,
    /// Counters of sticky hits, misses and invalid cookies.
    sticky: [Option<u32>; 3],
}

impl HostMetrics {
    pub fn define(pool: &Pool) -> Self {
        let in_flight = pool
            .iter()
            .map(|b| {
                let name = format!("lb_in_flight.backend.{}", b.id);
                hostcalls::define_metric(MetricType::Gauge, &name).ok()
            })
            .collect();
        let panic = hostcalls::define_metric(MetricType::Counter, "lb_panic_mode_total").ok();
        let counter = |name| hostcalls::define_metric(MetricType::Counter, name).ok();
        let sticky = [
            counter("lb_sticky_hits_total"),
            counter("lb_sticky_misses_total"),
            counter("lb_sticky_invalid_total"),
        ];
        HostMetrics { in_flight, panic, sticky }
    }
}

impl Metrics for HostMetrics {
    fn in_flight(&mut self, backend: usize, delta: i64) {
        if delta == 0 {
            return;
        }
        if let Some(Some(id)) = self.in_flight.get(backend) {
            let _ = hostcalls::increment_metric(*id, delta);
        }
    }

    fn sticky(&mut self, outcome: StickyOutcome) {
        let slot = match outcome {
            StickyOutcome::Hit => 0,
            StickyOutcome::Miss => 1,
            StickyOutcome::Invalid => 2,
        };
        if let Some(Some(id)) = self.sticky.get(slot) {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }

    fn panic_entered(&mut self) {
        if let Some(id) = self.panic {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}

/// Now, in nanoseconds since the Unix epoch (0 if the host clock is unreadable).
pub fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A string property such as `source.address`; `None` when absent or not UTF-8.
pub fn property(path: &[&str]) -> Option<String> {
    let bytes = hostcalls::get_property(path.to_vec()).ok()??;
    String::from_utf8(bytes).ok()
}
