//! Requests in flight per backend, counted across every worker VM of the proxy: one shared-data
//! counter per backend (and one for the pool, when bounded load needs the total), changed with
//! compare-and-swap so concurrent workers never lose an update.
//!
//! Value format (versioned): `[1u8, count as u64 little-endian]`. Counters never go below zero.
//! Keys name the backend by id and address, so a config reload that keeps a backend keeps its
//! count, and one that changes its address starts a fresh one.
//!
//! A missing key is written without a CAS check (Envoy's rule), so counters are created at
//! configure time ([`InFlight::ensure`]); should two workers still create one at the same
//! instant and lose an increment, the matching decrement stops at zero: the error is transient
//! and never leaves a count inflated.

pub mod owners;

use super::{SharedStore, StoreError, KEY_PREFIX};
use crate::backend::Pool;
use crate::lb::LoadView;

const VERSION: u8 = 1;
/// CAS attempts before giving up on one change (each failure means another worker wrote).
const MAX_ATTEMPTS: usize = 32;

/// The shared-data keys of one pool's counters.
#[derive(Debug, Clone)]
pub struct InFlight {
    keys: Vec<String>,
    total_key: Option<String>,
}

fn decode(bytes: &[u8]) -> u64 {
    match bytes {
        [VERSION, rest @ ..] => rest.try_into().map(u64::from_le_bytes).unwrap_or(0),
        _ => 0,
    }
}

fn encode(v: u64) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[0] = VERSION;
    out[1..].copy_from_slice(&v.to_le_bytes());
    out
}

impl InFlight {
    /// Counters for `pool` under the namespace `cluster`; `with_total` also keeps the pool's
    /// total (one more shared write per change; only bounded load reads it).
    pub fn new(cluster: &str, pool: &Pool, with_total: bool) -> Self {
        let keys = pool
            .iter()
            .map(|b| format!("{KEY_PREFIX}/{cluster}/in_flight/{}@{}", b.id, b.host))
            .collect();
        let total_key = with_total.then(|| format!("{KEY_PREFIX}/{cluster}/in_flight_total"));
        InFlight { keys, total_key }
    }

    /// Creates the counters that do not exist yet (at configure time, before this VM steers
    /// anything), so that increments always find a key and are guarded by CAS.
    pub fn ensure(&self, store: &dyn SharedStore) {
        for key in self.keys.iter().chain(self.total_key.iter()) {
            if let Ok(None) = store.get(key) {
                let _ = store.set(key, &encode(0), 0);
            }
        }
    }

    /// Adds `delta` to backend `index` (and the total); returns the change really applied to
    /// the backend's counter (less than asked when it would go below zero), or `None` when the
    /// store kept refusing.
    pub fn add(&self, store: &dyn SharedStore, index: usize, delta: i64) -> Option<i64> {
        let key = self.keys.get(index)?;
        let applied = add_to(store, key, delta)?;
        if let Some(total) = &self.total_key {
            add_to(store, total, applied);
        }
        Some(applied)
    }

    /// The counter of backend `index`.
    pub fn get(&self, store: &dyn SharedStore, index: usize) -> u64 {
        self.keys.get(index).map_or(0, |k| read(store, k))
    }

    /// The pool's total (0 when not kept).
    pub fn total(&self, store: &dyn SharedStore) -> u64 {
        self.total_key.as_deref().map_or(0, |k| read(store, k))
    }

    /// A [`LoadView`] over these counters.
    pub fn view<'a>(&'a self, store: &'a dyn SharedStore) -> InFlightView<'a> {
        InFlightView { counters: self, store }
    }
}

fn read(store: &dyn SharedStore, key: &str) -> u64 {
    match store.get(key) {
        Ok(Some((bytes, _))) => decode(&bytes),
        _ => 0,
    }
}

/// One CAS loop; returns the applied change.
fn add_to(store: &dyn SharedStore, key: &str, delta: i64) -> Option<i64> {
    if delta == 0 {
        return Some(0);
    }
    for _ in 0..MAX_ATTEMPTS {
        let (current, cas) = match store.get(key) {
            Ok(Some((bytes, cas))) => (decode(&bytes), cas),
            Ok(None) => (0, 0),
            Err(_) => return None,
        };
        let next = if delta >= 0 {
            current.saturating_add(delta.unsigned_abs())
        } else {
            current.saturating_sub(delta.unsigned_abs())
        };
        match store.set(key, &encode(next), cas) {
            Ok(()) => {
                let applied = i128::from(next) - i128::from(current);
                return i64::try_from(applied).ok();
            }
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Host(_)) => return None,
        }
    }
    None
}

/// Reads counters on demand: each call is one shared-data read.
pub struct InFlightView<'a> {
    counters: &'a InFlight,
    store: &'a dyn SharedStore,
}

impl LoadView for InFlightView<'_> {
    fn in_flight(&mut self, index: usize) -> u64 {
        self.counters.get(self.store, index)
    }

    fn total_in_flight(&mut self) -> u64 {
        self.counters.total(self.store)
    }
}

#[cfg(test)]
mod tests;
