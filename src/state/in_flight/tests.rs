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

/// Counters registered as an owner at `now_ns` (seed 1).
fn started(store: &dyn SharedStore, n: usize, with_total: bool, now_ns: u64) -> InFlight {
    let mut c = InFlight::new("pool", &pool(n), with_total);
    c.start(store, 1, now_ns);
    c
}

/// An owner registered after any counter's last read of the owner list (counted).
const OTHER: u64 = (1000 << 32) | 5;

#[test]
fn counts_up_and_down_and_never_below_zero() {
    let store = MemoryStore::new();
    let mut c = started(&store, 3, false, 0);
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
    let mut without = InFlight::new("p", &pool(2), false);
    without.start(&store, 1, 0);
    without.add(&store, 0, 1);
    assert_eq!(without.total(&store), 0);
    assert_eq!(store.get("envoy_lb/p/in_flight_total").unwrap(), None);
    let mut with = InFlight::new("q", &pool(2), true);
    with.start(&store, 1, 0);
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
    assert_eq!(c.owners_key, "envoy_lb/pool/in_flight_owners");
}

#[test]
fn a_reloaded_pool_with_the_same_backend_keeps_its_count() {
    let store = MemoryStore::new();
    started(&store, 2, false, 0).add(&store, 1, 1);
    let again = started(&store, 3, false, 0);
    assert_eq!(again.get(&store, 1), 1);
}

#[test]
fn unknown_value_formats_read_as_zero_and_are_replaced() {
    let store = MemoryStore::new();
    let mut c = started(&store, 1, false, 0);
    store.set(&c.keys[0], b"garbage", 0).unwrap();
    assert_eq!(c.get(&store, 0), 0);
    assert_eq!(c.add(&store, 0, 1), Some(1));
    assert_eq!(c.get(&store, 0), 1);
    store.set(&c.keys[0], &[3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9], 0).unwrap();
    assert_eq!(c.get(&store, 0), 0, "unknown version");
    // Version 1, one count of no owner: nobody could ever take it back.
    store.set(&c.keys[0], &[1, 9, 0, 0, 0, 0, 0, 0, 0], 0).unwrap();
    assert_eq!(c.get(&store, 0), 0, "version 1");
    assert_eq!(c.add(&store, 0, 1), Some(1));
    assert_eq!(c.get(&store, 0), 2, "replaced by this owner's whole count");
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
        if key.contains("/in_flight/") && self.conflicts.get() > 0 {
            self.conflicts.set(self.conflicts.get() - 1);
            // The other worker's increment lands first.
            let bytes = self.inner.get(key)?.map_or(Vec::new(), |(b, _)| b);
            let current = entries(&bytes).find(|&(o, _)| o == OTHER).map_or(0, |(_, c)| c);
            self.inner.set(key, &rewritten(&bytes, OTHER, current + 1, &Live::default()), 0)?;
        }
        self.inner.set(key, value, cas)
    }
}

#[test]
fn concurrent_writers_lose_no_update() {
    let store = Interleaved { inner: MemoryStore::new(), conflicts: Cell::new(0) };
    let mut c = started(&store, 1, false, 0);
    c.add(&store, 0, 1).unwrap();
    store.conflicts.set(5);
    assert_eq!(c.add(&store, 0, 1), Some(1));
    // Ours (2) plus the five interleaved increments.
    assert_eq!(c.get(&store, 0), 7);
}

#[test]
fn endless_conflicts_give_up_instead_of_spinning_and_the_next_change_catches_up() {
    let store = Interleaved { inner: MemoryStore::new(), conflicts: Cell::new(0) };
    let mut c = started(&store, 1, false, 0);
    c.add(&store, 0, 1).unwrap();
    store.conflicts.set(usize::MAX);
    assert_eq!(c.add(&store, 0, 1), Some(1), "held here, not written");
    let others = c.get(&store, 0) - 1;
    store.conflicts.set(0);
    c.add(&store, 0, 1).unwrap();
    assert_eq!(c.get(&store, 0), others + 3, "the whole count written");
}

#[test]
fn codec_round_trips() {
    let me = (1 << 32) | 7;
    let one = rewritten(&[], me, 5, &Live::default());
    assert_eq!(entries(&one).collect::<Vec<_>>(), vec![(me, 5)]);
    let two = rewritten(&one, OTHER, u32::MAX, &Live::default());
    assert_eq!(entries(&two).collect::<Vec<_>>(), vec![(me, 5), (OTHER, u32::MAX)]);
    let back = rewritten(&two, me, 0, &Live::default());
    assert_eq!(entries(&back).collect::<Vec<_>>(), vec![(OTHER, u32::MAX)], "0: no entry");
    for malformed in [&[][..], &[2], &[2, 1, 2, 3], &[1, 2, 3], &two[..two.len() - 1]] {
        assert_eq!(entries(malformed).count(), 0, "{malformed:?}");
    }
}

#[test]
fn start_creates_missing_counters_and_keeps_existing_ones() {
    let store = MemoryStore::new();
    let mut c = started(&store, 3, true, 0);
    c.add(&store, 1, 2);
    let d = started(&store, 3, true, 0);
    assert_eq!(store.len(), 5, "3 backends + total + owners");
    assert_eq!((d.get(&store, 0), d.get(&store, 1), d.total(&store)), (0, 2, 2));
}

#[test]
fn past_max_owners_the_extra_are_never_over_counted_and_join_when_a_slot_frees() {
    const S: u64 = 1_000_000_000;
    let store = MemoryStore::new();
    let mut vms: Vec<InFlight> = (0..MAX_OWNERS + 2)
        .map(|k| {
            let mut c = InFlight::new("pool", &pool(1), true);
            c.start(&store, k as u64, 0);
            c.add(&store, 0, 1);
            c
        })
        .collect();
    let (counted, extra) = vms.split_at_mut(MAX_OWNERS);
    assert!(counted.iter().all(|c| c.me.is_some()) && extra.iter().all(|c| c.me.is_none()));
    let (value, _) = store.get(&counted[0].keys[0]).unwrap().unwrap();
    assert_eq!(value.len(), 1 + ENTRY * MAX_OWNERS);
    assert_eq!(counted[0].get(&store, 0), MAX_OWNERS as u64, "the extra two not counted");
    // Two owners die; the rest renew, and the extra two join at their next tick.
    let mut now = 0;
    while now <= owners::TTL_NS + S {
        now += S / 5;
        for c in vms.iter_mut().skip(2) {
            c.tick(&store, now);
        }
    }
    assert!(vms.iter().skip(2).all(|c| c.me.is_some()));
    for c in &vms[2..] {
        assert_eq!(c.get(&store, 0), MAX_OWNERS as u64);
        assert_eq!(c.total(&store), MAX_OWNERS as u64);
    }
}

#[test]
fn an_unreadable_owner_list_lowers_no_seq() {
    let store = MemoryStore::new();
    let mut b = started(&store, 1, false, 0);
    let mut c = started(&store, 1, false, 0);
    c.add(&store, 0, 1);
    b.tick(&store, 1);
    store.set(&b.owners_key, b"junk", 0).unwrap();
    b.tick(&store, 2);
    assert_eq!(b.get(&store, 0), 1, "unreadable: every entry counts");
    // C (the highest seq, seen by B's first tick) dies; B rewrites the list over the junk
    // with a seq no lower than C's, so C, no longer listed, is dead rather than newer.
    drop(c);
    b.tick(&store, owners::BEAT_NS);
    assert_eq!(b.get(&store, 0), 0);
}

/// The heartbeat is renewed once per `BEAT_NS`, or at once when the clock went back; ticks in
/// between only read the owner list.
#[test]
fn ticks_renew_the_heartbeat_once_per_beat_or_when_the_clock_went_back() {
    const S: u64 = 1_000_000_000;
    let store = MemoryStore::new();
    let mut c = started(&store, 1, false, 10 * S);
    let key = "envoy_lb/pool/in_flight_owners";
    let cas = || store.get(key).unwrap().unwrap().1;
    let before = cas();
    c.tick(&store, 10 * S);
    c.tick(&store, 10 * S + owners::BEAT_NS - 1);
    assert_eq!(cas(), before, "within a beat: read only");
    c.tick(&store, 10 * S + owners::BEAT_NS);
    let renewed = cas();
    assert_ne!(renewed, before, "a beat later: renewed");
    c.tick(&store, 5 * S);
    assert_ne!(cas(), renewed, "the clock went back: renewed at once");
}

/// Requests counted before this router could register (its start failed) are written when a
/// later tick registers it.
#[test]
fn counts_held_before_registering_are_written_at_registration() {
    let store = MemoryStore::new();
    let mut c = InFlight::new("pool", &pool(2), true);
    assert_eq!(c.add(&store, 1, 2), Some(2));
    let mut reader = started(&store, 2, true, 0);
    assert_eq!(reader.get(&store, 1), 0, "not registered: nothing written");
    c.tick(&store, 0);
    reader.tick(&store, 0);
    assert_eq!(reader.get(&store, 1), 2);
    assert_eq!(reader.total(&store), 2);
}

/// The owner id's low bits come from the seed, so routers registering in the same race still
/// differ.
#[test]
fn owner_ids_carry_the_seed() {
    let store = MemoryStore::new();
    let a = started(&store, 1, false, 0).me.unwrap();
    let mut b = InFlight::new("pool", &pool(1), false);
    b.start(&store, 2, 0);
    let b = b.me.unwrap();
    assert_ne!(a as u32, b as u32);
    assert_ne!(a as u32, 0);
}

/// A stored entry of count 0 (never written by a router) is dropped by the next write: the
/// format holds no entry of count 0.
#[test]
fn a_zero_entry_is_dropped_at_the_next_write() {
    let store = MemoryStore::new();
    let mut c = started(&store, 1, false, 0);
    let mut with_zero = vec![VERSION];
    with_zero.extend_from_slice(&OTHER.to_le_bytes());
    with_zero.extend_from_slice(&0u32.to_le_bytes());
    store.set(&c.keys[0], &with_zero, 0).unwrap();
    c.add(&store, 0, 1);
    let (bytes, _) = store.get(&c.keys[0]).unwrap().unwrap();
    assert_eq!(entries(&bytes).collect::<Vec<_>>(), vec![(c.me.unwrap(), 1)]);
}
