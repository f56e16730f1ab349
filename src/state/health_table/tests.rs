//! Codec round trips, decode robustness on arbitrary bytes, CAS-looped writers and the
//! CAS-keyed snapshot, over the CAS-enforcing in-memory store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;

use proptest::prelude::*;

use super::*;
use crate::health::{HealthPolicy, OutlierPolicy};
use crate::state::memory::MemoryStore;

const KEY: &str = "envoy_lb/pool/health";

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("b{i}@10.0.0.{}:80", i + 1)).collect()
}

fn sample() -> HealthTable {
    let mut entries: Vec<BackendHealth> =
        keys(6).into_iter().enumerate().map(|(i, k)| BackendHealth::new(k, i as u64)).collect();
    let changes = [
        None,
        Some(Change::Unhealthy { failures: 3, last: ProbeFailure::Timeout { ms: 1000 } }),
        Some(Change::Unhealthy { failures: 2, last: ProbeFailure::Status(503) }),
        Some(Change::Healthy { successes: 2 }),
        Some(Change::Ejected { duration_ns: u64::MAX, errors: 5, ejection: u32::MAX }),
        Some(Change::Returned),
    ];
    for (e, c) in entries.iter_mut().zip(changes) {
        e.last = c;
        e.healthy = !matches!(c, Some(Change::Unhealthy { .. }));
        e.successes = 7;
        e.failures = 8;
        e.errors = 9;
        e.ejections = 10;
        e.ejected_until_ns = u64::MAX - 1;
        e.last_probe_ns = 42;
    }
    entries[0].last = Some(Change::Unhealthy { failures: 1, last: ProbeFailure::Connect });
    entries.push(BackendHealth {
        last: Some(Change::Unhealthy { failures: 1, last: ProbeFailure::Dispatch }),
        ..BackendHealth::new(String::new(), 0)
    });
    HealthTable::from_entries(entries)
}

#[test]
fn round_trip() {
    for t in [sample(), HealthTable::default(), HealthTable::new(&keys(100), 5)] {
        let bytes = encode(&t).unwrap();
        assert_eq!(decode(&bytes).unwrap(), t);
    }
}

#[test]
fn rejects_other_versions_truncation_and_trailing_bytes() {
    let bytes = encode(&sample()).unwrap();
    let mut v2 = bytes.clone();
    v2[0] = 2;
    assert_eq!(decode(&v2), Err(DecodeError::Version(2)));
    assert_eq!(decode(&[]), Err(DecodeError::Malformed));
    for cut in 0..bytes.len() {
        assert!(decode(&bytes[..cut]).is_err(), "truncated at {cut}");
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(decode(&long), Err(DecodeError::Malformed));
    // A huge count with few bytes is refused before allocating.
    assert_eq!(decode(&[1, 0xff, 0xff, 0xff, 0xff]), Err(DecodeError::Malformed));
}

#[test]
fn unencodable_key_is_refused() {
    let t = HealthTable::from_entries(vec![BackendHealth::new("x".repeat(70_000), 0)]);
    assert_eq!(encode(&t), None);
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
        let mut versioned = bytes.clone();
        versioned.insert(0, VERSION);
        if let Ok(t) = decode(&versioned) {
            prop_assert_eq!(encode(&t).unwrap(), versioned);
        }
    }

    #[test]
    fn mutated_encodings_never_panic(flip in 0usize..4096, byte in any::<u8>()) {
        let mut bytes = encode(&sample()).unwrap();
        let i = flip % bytes.len();
        bytes[i] = byte;
        if let Ok(t) = decode(&bytes) {
            prop_assert_eq!(encode(&t).unwrap(), bytes);
        }
    }
}

#[test]
fn snapshot_decodes_only_when_the_cas_changes() {
    let store = MemoryStore::new();
    let mut snap = Snapshot::new();
    assert!(!snap.refresh(&store, KEY), "missing and never seen: no change");
    assert!(snap.table().is_none());

    let t = HealthTable::new(&keys(2), 0);
    store.set(KEY, &encode(&t).unwrap(), 0).unwrap();
    assert!(snap.refresh(&store, KEY));
    assert_eq!(snap.table(), Some(&t));
    let cas = snap.cas();
    assert!(!snap.refresh(&store, KEY));
    assert!(!snap.refresh(&store, KEY));
    assert_eq!(snap.cas(), cas);

    // Same bytes rewritten: new CAS, decoded again.
    store.set(KEY, &encode(&t).unwrap(), 0).unwrap();
    assert!(snap.refresh(&store, KEY));
    assert_ne!(snap.cas(), cas);

    // Garbage: no table, and not decoded again until it changes.
    store.set(KEY, b"\x01garbage", 0).unwrap();
    assert!(snap.refresh(&store, KEY));
    assert!(snap.table().is_none());
    assert!(!snap.refresh(&store, KEY));
}

/// A store whose every call fails.
struct Failing;
impl SharedStore for Failing {
    fn get(&self, _: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Err(StoreError::Host(1))
    }
    fn set(&self, _: &str, _: &[u8], _: u32) -> Result<(), StoreError> {
        Err(StoreError::Host(1))
    }
}

#[test]
fn snapshot_keeps_its_table_on_store_errors() {
    let store = MemoryStore::new();
    let t = HealthTable::new(&keys(1), 0);
    store.set(KEY, &encode(&t).unwrap(), 0).unwrap();
    let mut snap = Snapshot::new();
    assert!(snap.refresh(&store, KEY));
    assert!(!snap.refresh(&Failing, KEY));
    assert_eq!(snap.table(), Some(&t));
    assert_eq!(modify(&Failing, KEY, &keys(1), 0, |_| ()), None);
}

fn outlier() -> HealthPolicy {
    HealthPolicy {
        outlier: Some(OutlierPolicy {
            consecutive_errors: 2,
            base_ejection_ns: 1_000_000_000,
            max_ejection_ns: 5_000_000_000,
            max_ejection_percent: 100,
        }),
        ..HealthPolicy::default()
    }
}

#[test]
fn modify_creates_aligns_and_skips_unchanged_writes() {
    let store = MemoryStore::new();
    let p = outlier();
    let k = keys(3);
    let tr = modify(&store, KEY, &k, 10, |t| t.request_outcome(&p, 1, true, 10)).unwrap();
    assert_eq!(tr, None);
    let (t, cas) = read(&store, KEY).unwrap().unwrap();
    assert!(t.has_keys(&k));
    assert_eq!(t.get(1).unwrap().errors, 1);
    // A success on a backend with no streak changes nothing: no write, CAS unchanged.
    modify(&store, KEY, &k, 11, |t| t.request_outcome(&p, 0, false, 11)).unwrap();
    assert_eq!(read(&store, KEY).unwrap().unwrap().1, cas);
    // A reload: another key set is aligned, keeping b1's streak.
    let k2 = vec![k[1].clone(), "b9@10.0.0.9:80".to_string()];
    let tr = modify(&store, KEY, &k2, 12, |t| t.request_outcome(&p, 0, true, 12)).unwrap();
    assert!(tr.unwrap().to_string().starts_with("b1 ejected for 1000 ms: 2 consecutive errors"));
    let (t, _) = read(&store, KEY).unwrap().unwrap();
    assert!(t.has_keys(&k2));
    // Garbage is replaced by a fresh table.
    store.set(KEY, b"junk", 0).unwrap();
    modify(&store, KEY, &k, 13, |t| t.request_outcome(&p, 0, true, 13)).unwrap();
    let (t, _) = read(&store, KEY).unwrap().unwrap();
    assert!(t.has_keys(&k));
    assert_eq!(t.get(0).unwrap().errors, 1, "a fresh table, one error on it");
}

/// Lets another writer slip in between this writer's read and its write, `races` times; counts
/// the transitions that writer reports.
struct Racy<'a> {
    inner: &'a MemoryStore,
    races: Cell<usize>,
    their_transitions: Cell<usize>,
}

impl SharedStore for Racy<'_> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        if self.races.get() > 0 {
            self.races.set(self.races.get() - 1);
            // The other worker records an error on backend 2.
            let tr =
                modify(self.inner, key, &keys(3), 0, |t| t.request_outcome(&outlier(), 2, true, 0))
                    .unwrap();
            self.their_transitions.set(self.their_transitions.get() + usize::from(tr.is_some()));
        }
        self.inner.set(key, value, cas)
    }
}

#[test]
fn concurrent_writers_lose_no_update_and_report_the_transition_once() {
    let store = MemoryStore::new();
    let p = outlier();
    modify(&store, KEY, &keys(3), 0, |_| ()).unwrap();
    let racy = Racy { inner: &store, races: Cell::new(2), their_transitions: Cell::new(0) };
    let mut runs = 0;
    let ours = modify(&racy, KEY, &keys(3), 0, |t| {
        runs += 1;
        t.request_outcome(&p, 2, true, 0)
    })
    .unwrap();
    // Attempt 1 (streak 0 -> 1) loses to their first error; attempt 2 (1 -> 2, eject) loses to
    // their second error, which ejects; attempt 3 finds b2 ejected: our error is ignored and
    // nothing is written.
    assert_eq!(runs, 3);
    assert_eq!(ours, None);
    assert_eq!(racy.their_transitions.get(), 1, "the ejection is reported exactly once");
    let (t, _) = read(&store, KEY).unwrap().unwrap();
    assert_eq!(t.get(2).unwrap().ejections, 1);
    assert!(t.availability(&p, 1, &[], &[]).accepts(0));
    assert!(!t.availability(&p, 1, &[], &[]).accepts(2));
}

/// Entries can be as small as 44 bytes (an empty key, no change): a table of such entries
/// decodes, up to exactly `MAX_BACKENDS` of them; one more is refused however well-formed.
#[test]
fn the_smallest_entries_decode_up_to_max_backends() {
    let smallest = |n: usize| HealthTable::new(&vec![String::new(); n], 0);
    for n in [1, 2, MAX_BACKENDS] {
        let bytes = encode(&smallest(n)).unwrap();
        assert_eq!(bytes.len(), 5 + 44 * n);
        assert_eq!(decode(&bytes), Ok(smallest(n)), "{n} entries");
    }
    let over = encode(&smallest(MAX_BACKENDS + 1)).unwrap();
    assert_eq!(decode(&over), Err(DecodeError::Malformed));
}

/// A store whose key can vanish (Envoy's shared data never deletes one, but a snapshot must
/// not rely on it).
struct Vanishing {
    inner: MemoryStore,
    gone: Cell<bool>,
}

impl SharedStore for Vanishing {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        if self.gone.get() {
            return Ok(None);
        }
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        self.inner.set(key, value, cas)
    }
}

#[test]
fn a_key_that_disappears_is_a_change_even_after_garbage() {
    let store = Vanishing { inner: MemoryStore::new(), gone: Cell::new(false) };
    let mut snap = Snapshot::new();
    store.set(KEY, b"\x01garbage", 0).unwrap();
    assert!(snap.refresh(&store, KEY));
    assert!(snap.table().is_none() && snap.cas().is_some());
    store.gone.set(true);
    assert!(snap.refresh(&store, KEY), "the value seen is gone");
    assert_eq!(snap.cas(), None);
    assert!(!snap.refresh(&store, KEY), "still missing: no change");
}
