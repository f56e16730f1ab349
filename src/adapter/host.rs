//! Host implementations of the core's traits: shared data ([`SharedStore`]), gauges
//! ([`Metrics`]), the clock, and typed reads of request properties.

use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, MetricType, Status};

use crate::backend::Pool;
use crate::metrics::{self, BackendCounter, BackendGauge, Metrics, PoolCounter, PoolGauge};
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

/// The metrics of [`crate::metrics`] as proxy-wasm stats, defined by every root context
/// (the same name is the same process-wide stat, so every worker adds to one counter).
pub struct HostMetrics {
    /// Per backend: counters in [`BackendCounter::ALL`] order, then gauges in
    /// [`BackendGauge::ALL`] order.
    backends: Vec<[Option<u32>; 7]>,
    pool: [Option<u32>; 7],
    pool_gauges: [Option<u32>; 2],
    /// The pool's label, and with discovery the ids of every backend defined so far, by
    /// backend id: a pool change defines only the new ones (a define is a host call and an
    /// entry in Envoy's per-VM metric table).
    label: String,
    defined: fnv::FnvHashMap<String, [Option<u32>; 7]>,
    /// Counter increments and in-flight changes not yet handed to the host, by metric id:
    /// batched per tick ([`Metrics::flush`]), which saves a host call for each on every
    /// request. Emptied by each flush: a request costs one hash lookup and a tick one host
    /// call per metric changed since the last, whatever the pool's size.
    pending: fnv::FnvHashMap<u32, i64>,
}

fn define(kind: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(kind, name).ok()
}

/// The counters and gauges of one backend, in [`BackendCounter::ALL`] then
/// [`BackendGauge::ALL`] order.
fn define_backend(label: &str, id: &str) -> [Option<u32>; 7] {
    let mut ids = [None; 7];
    let names = BackendCounter::ALL.map(|c| (MetricType::Counter, c.name()));
    let gauges = BackendGauge::ALL.map(|g| (MetricType::Gauge, g.name()));
    for (slot, (kind, name)) in ids.iter_mut().zip(names.into_iter().chain(gauges)) {
        *slot = define(kind, &metrics::backend_metric(name, label, id));
    }
    ids
}

fn counter_slot(c: BackendCounter) -> usize {
    BackendCounter::ALL.iter().position(|x| *x == c).unwrap_or(0)
}

fn gauge_slot(g: BackendGauge) -> usize {
    BackendCounter::ALL.len() + BackendGauge::ALL.iter().position(|x| *x == g).unwrap_or(0)
}

impl HostMetrics {
    pub fn define(cluster: &str, pool: &Pool) -> Self {
        let label = metrics::pool_label(cluster);
        let backends: Vec<[Option<u32>; 7]> =
            pool.iter().map(|b| define_backend(&label, &b.id)).collect();
        let defined = pool.iter().map(|b| b.id.clone()).zip(backends.iter().copied()).collect();
        let pool = PoolCounter::ALL
            .map(|c| define(MetricType::Counter, &metrics::pool_metric(c.name(), &label)));
        let pool_gauges = PoolGauge::ALL
            .map(|g| define(MetricType::Gauge, &metrics::pool_metric(g.name(), &label)));
        HostMetrics { backends, pool, pool_gauges, label, defined, pending: Default::default() }
    }

    fn id(&self, backend: usize, slot: usize) -> Option<u32> {
        self.backends.get(backend).and_then(|ids| ids.get(slot).copied().flatten())
    }

    fn add(&mut self, id: Option<u32>, delta: i64) {
        let Some(id) = id else { return };
        *self.pending.entry(id).or_insert(0) += delta;
    }

    /// The host's value plus this VM's share not yet flushed.
    fn read(&self, id: Option<u32>) -> Option<u64> {
        let id = id?;
        let host = hostcalls::get_metric(id).ok()?;
        let mine = self.pending.get(&id).copied().unwrap_or(0);
        Some(host.saturating_add_signed(mine))
    }
}

impl Metrics for HostMetrics {
    fn count(&mut self, backend: usize, counter: BackendCounter) {
        self.add(self.id(backend, counter_slot(counter)), 1);
    }

    fn pool(&mut self, counter: PoolCounter) {
        let slot = PoolCounter::ALL.iter().position(|x| *x == counter);
        let id = slot.and_then(|s| self.pool.get(s)).copied().flatten();
        self.add(id, 1);
    }

    fn in_flight(&mut self, backend: usize, delta: i64) {
        self.add(self.id(backend, gauge_slot(BackendGauge::InFlight)), delta);
    }

    fn healthy(&mut self, backend: usize, up: bool) {
        if let Some(id) = self.id(backend, gauge_slot(BackendGauge::Healthy)) {
            let _ = hostcalls::record_metric(id, u64::from(up));
        }
    }

    fn pool_gauge(&mut self, gauge: PoolGauge, value: u64) {
        let slot = PoolGauge::ALL.iter().position(|x| *x == gauge);
        if let Some(id) = slot.and_then(|s| self.pool_gauges.get(s)).copied().flatten() {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    fn repool(&mut self, pool: &Pool, _moved: &[Option<usize>]) {
        let label = &self.label;
        let defined = &mut self.defined;
        self.backends = pool
            .iter()
            .map(|b| *defined.entry(b.id.clone()).or_insert_with(|| define_backend(label, &b.id)))
            .collect();
    }

    fn gauge(&self, backend: usize, gauge: BackendGauge) -> Option<u64> {
        self.read(self.id(backend, gauge_slot(gauge)))
    }

    fn counted(&self, backend: usize, counter: BackendCounter) -> Option<u64> {
        self.read(self.id(backend, counter_slot(counter)))
    }

    fn flush(&mut self) {
        for (id, delta) in self.pending.drain() {
            if delta != 0 {
                let _ = hostcalls::increment_metric(id, delta);
            }
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

/// A header's first value; bytes that are not UTF-8 (HTTP allows obs-text) become U+FFFD.
/// Never the SDK's `get_map_value`, which unwraps its UTF-8 conversion and would kill the VM
/// on such a value.
pub fn header(map: MapType, name: &str) -> Option<String> {
    let bytes = hostcalls::get_map_value_bytes(map, name).ok()??;
    Some(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// A string property such as `source.address`; `None` when absent or not UTF-8.
pub fn property(path: &[&str]) -> Option<String> {
    String::from_utf8(property_bytes(path)?).ok()
}

/// A property's raw bytes (e.g. `upstream.request_attempt_count`, a little-endian u64).
pub fn property_bytes(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok()?
}
