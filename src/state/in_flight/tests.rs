//! In-flight counters over the CAS-enforcing in-memory store, including interleaved writers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;

use super::*;
use crate::backend::Backend;
use crate::state::memory::MemoryStore;

fn pool(n: usize) -> Pool {
    Pool::new(
        (0..n)
            .map(|i| {
                Backend::new(format!("b{i}"), format!("10.0.0.{}:80", i + 1).parse().unwrap(), 1)
            })
            .collect(),
    )
}

#[test]
fn counts_up_and_down_and_never_below_zero() {
    let store = MemoryStore::new();
    let c = InFlight::new("pool", &pool(3), false);
    assert_eq!(c.get(&store, 1), 0);
    assert_eq!(c.add(&store, 1, 1), Some(1));
    assert_eq!(c.add(&store, 1, 1), Some(1));
    assert_eq!(c.get(&store, 1), 2);
    assert_eq!(c.get(&store, 0), 0);
    assert_eq!(c.add(&store, 1, -1), Some(-1));
    assert_eq!(c.add(&store, 1, -1), Some(-1));
    // Already zero: nothing applied, still zero.
    assert_eq!(c.add(&store, 1, -1), Some(0));
    assert_eq!(c.get(&store, 1), 0);
    assert_eq!(c.add(&store, 7, 1), None, "unknown index");
}

#[test]
fn total_is_kept_only_when_asked() {
    let store = MemoryStore::new();
    let without = InFlight::new("p", &pool(2), false);
    without.add(&store, 0, 1);
    assert_eq!(without.total(&store), 0);
    assert_eq!(store.len(), 1);
    let with = InFlight::new("q", &pool(2), true);
    with.add(&store, 0, 1);
    with.add(&store, 1, 1);
    with.add(&store, 1, 1);
    assert_eq!(with.total(&store), 3);
    with.add(&store, 0, -1);
    with.add(&store, 0, -1); // saturates: total must not drop for it
    assert_eq!(with.total(&store), 2);
    let mut view = with.view(&store);
    assert_eq!((view.in_flight(0), view.in_flight(1), view.total_in_flight()), (0, 2, 2));
}

#[test]
fn keys_are_prefixed_and_name_id_and_address() {
    let c = InFlight::new("pool", &pool(1), true);
    assert_eq!(c.keys, vec!["envoy_lb/pool/in_flight/b0@10.0.0.1:80".to_string()]);
    assert_eq!(c.total_key.as_deref(), Some("envoy_lb/pool/in_flight_total"));
}

#[test]
fn a_reloaded_pool_with_the_same_backend_keeps_its_count() {
    let store = MemoryStore::new();
    InFlight::new("pool", &pool(2), false).add(&store, 1, 1);
    let again = InFlight::new("pool", &pool(3), false);
    assert_eq!(again.get(&store, 1), 1);
}

#[test]
fn unknown_value_formats_read_as_zero_and_are_replaced() {
    let store = MemoryStore::new();
    let c = InFlight::new("pool", &pool(1), false);
    store.set(&c.keys[0], b"garbage", 0).unwrap();
    assert_eq!(c.get(&store, 0), 0);
    assert_eq!(c.add(&store, 0, 1), Some(1));
    assert_eq!(c.get(&store, 0), 1);
    store.set(&c.keys[0], &[2, 0, 0, 0, 0, 0, 0, 0, 9], 0).unwrap();
    assert_eq!(c.get(&store, 0), 0, "unknown version");
}

/// Another worker writes between our read and our write `conflicts` times.
struct Interleaved {
    inner: MemoryStore,
    conflicts: Cell<usize>,
}

impl SharedStore for Interleaved {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        if self.conflicts.get() > 0 {
            self.conflicts.set(self.conflicts.get() - 1);
            // The other worker's increment lands first.
            let current = self.inner.get(key)?.map_or(0, |(b, _)| decode(&b));
            self.inner.set(key, &encode(current + 1), 0)?;
        }
        self.inner.set(key, value, cas)
    }
}

#[test]
fn concurrent_writers_lose_no_update() {
    let store = Interleaved { inner: MemoryStore::new(), conflicts: Cell::new(0) };
    let c = InFlight::new("pool", &pool(1), false);
    c.add(&store, 0, 1).unwrap(); // creates the key
    store.conflicts.set(5);
    assert_eq!(c.add(&store, 0, 1), Some(1));
    // Ours (2) plus the five interleaved increments.
    assert_eq!(c.get(&store, 0), 7);
}

#[test]
fn endless_conflicts_give_up_instead_of_spinning() {
    let store = Interleaved { inner: MemoryStore::new(), conflicts: Cell::new(0) };
    let c = InFlight::new("pool", &pool(1), false);
    c.add(&store, 0, 1).unwrap();
    store.conflicts.set(usize::MAX);
    assert_eq!(c.add(&store, 0, 1), None);
}

#[test]
fn codec_round_trips() {
    for v in [0u64, 1, 255, 1 << 40, u64::MAX] {
        assert_eq!(decode(&encode(v)), v);
    }
    assert_eq!(decode(&[]), 0);
    assert_eq!(decode(&[1, 2, 3]), 0);
}

#[test]
fn ensure_creates_missing_counters_and_keeps_existing_ones() {
    let store = MemoryStore::new();
    let c = InFlight::new("pool", &pool(3), true);
    c.add(&store, 1, 2);
    c.ensure(&store);
    assert_eq!(store.len(), 4, "3 backends + total");
    assert_eq!((c.get(&store, 0), c.get(&store, 1), c.total(&store)), (0, 2, 2));
}
