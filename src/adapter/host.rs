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

/// The metrics of [`crate::metrics`] as proxy-wasm stats (the same name is the same
/// process-wide stat, so every worker adds to one counter). A define is a host call and an
/// entry in Envoy's stat store: defining each backend's seven at configure took most of the
/// configure time at 10,000 backends (#16). So the first [`EAGER_BACKENDS`] backends' are
/// defined at configure (where a define costs a fraction of one in a tick: bench/RESULTS.md),
/// and beyond them a backend's metric is defined when this VM first counts or sets it and the
/// rest a bounded number per tick ([`DEFINES_PER_FLUSH`]), so every series exists, at zero,
/// soon after a configure (a counter born at its first increment would hide that increment from
/// Prometheus' `increase()`).
pub struct HostMetrics {
    /// Per backend, in pool order.
    backends: Vec<BackendMetrics>,
    /// Backends below it have every metric defined (since the last pool change).
    backlog: usize,
    pool: [Option<u32>; 9],
    pool_gauges: [Option<u32>; 2],
    /// The pool's label, and with discovery the metrics defined so far of every backend seen,
    /// by backend id: a backend that leaves and comes back keeps its ids.
    label: String,
    defined: fnv::FnvHashMap<String, Slots>,
    /// Counter increments and in-flight changes not yet handed to the host, by metric id:
    /// batched per tick ([`Metrics::flush`]), which saves a host call for each on every
    /// request. Emptied by each flush: a request costs one hash lookup and a tick one host
    /// call per metric changed since the last, whatever the pool's size.
    pending: fnv::FnvHashMap<u32, i64>,
}

/// Backends whose metrics are all defined at configure: 7,000 defines, about 10–30 ms.
const EAGER_BACKENDS: usize = 1_000;

/// Metrics a flush defines at most, beyond those used since the last one (5–10 ms of a tick).
const DEFINES_PER_FLUSH: usize = 512;

/// A backend's metric ids, `None` until defined: counters in [`BackendCounter::ALL`] order,
/// then gauges in [`BackendGauge::ALL`] order.
type Slots = [Option<u32>; 7];

struct BackendMetrics {
    id: String,
    slots: Slots,
    /// The healthy gauge's value, until the gauge is defined and it is recorded.
    healthy: Option<bool>,
    /// Its `lb_load_weight` gauge, defined on first use (only pools that weigh by load reports
    /// have one; after a pool change it is looked up again by name).
    load_weight: Option<u32>,
}

fn define(kind: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(kind, name).ok()
}

/// The kind and name of a backend's metric in `slot` (see [`Slots`]).
fn slot_metric(slot: usize) -> Option<(MetricType, &'static str)> {
    match BackendCounter::ALL.get(slot) {
        Some(c) => Some((MetricType::Counter, c.name())),
        None => BackendGauge::ALL
            .get(slot.checked_sub(BackendCounter::ALL.len())?)
            .map(|g| (MetricType::Gauge, g.name())),
    }
}

fn counter_slot(c: BackendCounter) -> usize {
    BackendCounter::ALL.iter().position(|x| *x == c).unwrap_or(0)
}

fn gauge_slot(g: BackendGauge) -> usize {
    BackendCounter::ALL.len() + BackendGauge::ALL.iter().position(|x| *x == g).unwrap_or(0)
}

impl HostMetrics {
    /// Defines the pool's metrics and those of its first [`EAGER_BACKENDS`] backends; the
    /// others' are defined as used and on later flushes.
    pub fn define(cluster: &str, pool: &Pool) -> Self {
        let label = metrics::pool_label(cluster);
        let backends = pool
            .iter()
            .map(|b| BackendMetrics {
                id: b.id.clone(),
                slots: [None; 7],
                healthy: None,
                load_weight: None,
            })
            .collect();
        let pool = PoolCounter::ALL
            .map(|c| define(MetricType::Counter, &metrics::pool_metric(c.name(), &label)));
        let pool_gauges = PoolGauge::ALL
            .map(|g| define(MetricType::Gauge, &metrics::pool_metric(g.name(), &label)));
        let mut metrics = HostMetrics {
            backends,
            backlog: 0,
            pool,
            pool_gauges,
            label,
            defined: Default::default(),
            pending: Default::default(),
        };
        metrics.define_backlog(EAGER_BACKENDS.saturating_mul(7));
        metrics
    }

    /// The id of `backend`'s metric in `slot`, defined now if this VM has not yet.
    fn id(&mut self, backend: usize, slot: usize) -> Option<u32> {
        let b = self.backends.get_mut(backend)?;
        let cell = b.slots.get_mut(slot)?;
        if cell.is_none() {
            let (kind, name) = slot_metric(slot)?;
            *cell = define(kind, &metrics::backend_metric(name, &self.label, &b.id));
        }
        *cell
    }

    fn add(&mut self, id: Option<u32>, delta: i64) {
        let Some(id) = id else { return };
        *self.pending.entry(id).or_insert(0) += delta;
    }

    /// The host's value plus this VM's share not yet flushed. A metric this VM has not yet
    /// defined is looked up by name (a define of an existing name returns its id; Envoy's
    /// value is the one every worker adds to): the status page is the only reader.
    fn read(&self, backend: usize, slot: usize) -> Option<u64> {
        let b = self.backends.get(backend)?;
        let id = match b.slots.get(slot).copied().flatten() {
            Some(id) => id,
            None => {
                let (kind, name) = slot_metric(slot)?;
                define(kind, &metrics::backend_metric(name, &self.label, &b.id))?
            }
        };
        let host = hostcalls::get_metric(id).ok()?;
        let mine = self.pending.get(&id).copied().unwrap_or(0);
        Some(host.saturating_add_signed(mine))
    }

    /// Defines up to about `budget` metrics not defined yet, in pool order, and records the
    /// healthy gauges that waited for theirs.
    fn define_backlog(&mut self, budget: usize) {
        let mut spent = 0;
        while spent < budget {
            let i = self.backlog;
            let Some(b) = self.backends.get(i) else { break };
            let slots = b.slots;
            for (slot, _) in slots.iter().enumerate().filter(|(_, id)| id.is_none()) {
                self.id(i, slot);
                spent += 1;
            }
            let waiting = self.backends.get_mut(i).and_then(|b| b.healthy.take());
            if let Some(up) = waiting {
                self.healthy(i, up);
            }
            self.backlog += 1;
        }
    }
}

impl Metrics for HostMetrics {
    fn count(&mut self, backend: usize, counter: BackendCounter) {
        let id = self.id(backend, counter_slot(counter));
        self.add(id, 1);
    }

    fn pool(&mut self, counter: PoolCounter) {
        let slot = PoolCounter::ALL.iter().position(|x| *x == counter);
        let id = slot.and_then(|s| self.pool.get(s)).copied().flatten();
        self.add(id, 1);
    }

    fn in_flight(&mut self, backend: usize, delta: i64) {
        let id = self.id(backend, gauge_slot(BackendGauge::InFlight));
        self.add(id, delta);
    }

    /// Recorded at once when the gauge is defined; otherwise kept for [`Metrics::flush`]
    /// (at configure every backend's is set: defining them all there is what this saves).
    fn healthy(&mut self, backend: usize, up: bool) {
        let Some(b) = self.backends.get_mut(backend) else { return };
        match b.slots.get(gauge_slot(BackendGauge::Healthy)).copied().flatten() {
            Some(id) => {
                b.healthy = None;
                let _ = hostcalls::record_metric(id, u64::from(up));
            }
            None => b.healthy = Some(up),
        }
    }

    fn load_weight(&mut self, backend: usize, weight: u32) {
        let Some(b) = self.backends.get_mut(backend) else { return };
        if b.load_weight.is_none() {
            let name = metrics::backend_metric(metrics::LOAD_WEIGHT, &self.label, &b.id);
            b.load_weight = define(MetricType::Gauge, &name);
        }
        if let Some(id) = b.load_weight {
            let _ = hostcalls::record_metric(id, u64::from(weight));
        }
    }

    fn pool_gauge(&mut self, gauge: PoolGauge, value: u64) {
        let slot = PoolGauge::ALL.iter().position(|x| *x == gauge);
        if let Some(id) = slot.and_then(|s| self.pool_gauges.get(s)).copied().flatten() {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    /// The defined ids are kept by backend id, a healthy value not yet recorded follows its
    /// backend, and the backlog starts over.
    fn repool(&mut self, pool: &Pool, moved: &[Option<usize>]) {
        let mut waiting = vec![None; pool.len()];
        for (old, b) in self.backends.drain(..).enumerate() {
            if let Some(slot) = moved.get(old).copied().flatten().and_then(|n| waiting.get_mut(n)) {
                *slot = b.healthy;
            }
            if b.slots.iter().any(Option::is_some) {
                self.defined.insert(b.id, b.slots);
            }
        }
        self.backends = pool
            .iter()
            .zip(waiting)
            .map(|(b, healthy)| BackendMetrics {
                id: b.id.clone(),
                slots: self.defined.get(&b.id).copied().unwrap_or([None; 7]),
                healthy,
                load_weight: None,
            })
            .collect();
        self.backlog = 0;
    }

    fn gauge(&self, backend: usize, gauge: BackendGauge) -> Option<u64> {
        self.read(backend, gauge_slot(gauge))
    }

    fn counted(&self, backend: usize, counter: BackendCounter) -> Option<u64> {
        self.read(backend, counter_slot(counter))
    }

    fn flush(&mut self) {
        for (id, delta) in self.pending.drain() {
            if delta != 0 {
                let _ = hostcalls::increment_metric(id, delta);
            }
        }
        self.define_backlog(DEFINES_PER_FLUSH);
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
