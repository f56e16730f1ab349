//! The owner list: registration order, expiry, clock steps, the creation race, the size bound.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::state::memory::hooked::Hooked;
use crate::state::memory::MemoryStore;

const KEY: &str = "envoy_lb/pool/in_flight_owners";
const S: u64 = 1_000_000_000;

fn register(store: &dyn SharedStore, salt: u32, now_ns: u64) -> Beat {
    beat(store, KEY, None, salt, 0, now_ns).unwrap()
}

fn stored(store: &MemoryStore) -> List {
    decode(&store.get(KEY).unwrap().unwrap().0).unwrap()
}

#[test]
fn codec_round_trips_and_refuses_what_it_cannot_bound() {
    let list = List { seq: 7, records: vec![(1 << 32 | 9, 5), (7 << 32, u64::MAX)] };
    assert_eq!(decode(&encode(&list)), Some(list.clone()));
    let bytes = encode(&list);
    assert_eq!(decode(&bytes[..bytes.len() - 1]), None, "partial record");
    assert_eq!(decode(&[2, 0, 0, 0, 0]), None, "another version");
    assert_eq!(decode(&[1, 0, 0]), None);
    let full = List { seq: 1, records: vec![(1 << 32, 0); MAX_OWNERS + 1] };
    assert_eq!(decode(&encode(&full)), None, "more than MAX_OWNERS");
}

#[test]
fn owners_registered_later_count_before_the_reader_sees_them() {
    let store = MemoryStore::new();
    let a = register(&store, 1, 0);
    let b = register(&store, 2, 0);
    assert_eq!((a.owner >> 32, b.owner >> 32), (1, 2), "seq goes up per registration");
    assert_eq!(a.owner & 0xffff_ffff, 1, "salt in the low bits");
    // A read before B registered does not list B, yet counts it: B is newer than the read.
    assert!(!a.live.fresh.contains(&b.owner));
    assert!(a.live.counts(b.owner) && a.live.counts(a.owner));
    assert!(b.live.counts(a.owner) && b.live.counts(b.owner));
    // Before any read, everybody counts.
    assert!(Live::default().counts(a.owner));
}

#[test]
fn an_owner_that_stops_renewing_is_dead_after_the_ttl_and_dropped_at_the_next_renewal() {
    let store = MemoryStore::new();
    let a = register(&store, 1, 0);
    let b = register(&store, 2, 0);
    let live = read(&store, KEY, TTL_NS).unwrap();
    assert!(live.counts(a.owner), "exactly the TTL old: still alive");
    assert!(!beat(&store, KEY, Some(b.owner), 2, 0, S).unwrap().lapsed);
    let b2 = beat(&store, KEY, Some(b.owner), 2, 0, TTL_NS + 1).unwrap();
    assert!(!b2.lapsed);
    assert!(!b2.live.counts(a.owner), "dead");
    assert_eq!(stored(&store).records, vec![(b.owner, TTL_NS + 1)], "A's record dropped");
    assert!(!read(&store, KEY, TTL_NS + 1).unwrap().counts(a.owner), "dropped: still dead");
    // A comes back (it was only stalled): it is told, and counts again.
    let a2 = beat(&store, KEY, Some(a.owner), 1, 0, TTL_NS + 2).unwrap();
    assert!(a2.lapsed);
    assert!(a2.live.counts(a.owner) && a2.live.counts(b.owner));
}

#[test]
fn a_heartbeat_in_the_future_is_fresh_until_one_ttl_after_a_renewal_clamps_it() {
    let store = MemoryStore::new();
    let dead = register(&store, 1, 1_000 * S);
    let b = register(&store, 2, 1_000 * S);
    // The clock steps back to 10 s.
    let now = 10 * S;
    assert!(read(&store, KEY, now).unwrap().counts(dead.owner), "future: fresh");
    let b2 = beat(&store, KEY, Some(b.owner), 2, 0, now).unwrap();
    assert!(b2.live.counts(dead.owner));
    assert_eq!(stored(&store).records, vec![(dead.owner, now), (b.owner, now)], "clamped");
    assert!(!read(&store, KEY, now + TTL_NS + 1).unwrap().counts(dead.owner));
}

#[test]
fn seq_never_goes_down_even_over_an_unreadable_value() {
    let store = MemoryStore::new();
    let a = register(&store, 1, 0);
    store.set(KEY, b"junk", 0).unwrap();
    assert_eq!(read(&store, KEY, 0).unwrap(), Live::default(), "unreadable: everybody counts");
    let b = beat(&store, KEY, None, 2, a.live.seq(), 0).unwrap();
    assert_eq!(b.owner >> 32, 2, "above the seq seen before");
    assert!(!b.live.counts(a.owner), "A is gone from the list and older than it");
}

#[test]
fn the_creation_race_loses_one_record_and_its_owner_is_told_at_its_next_beat() {
    let store = MemoryStore::new();
    // B registers between A's read of the missing key and A's write, which blindly replaces it
    // (a missing key has no CAS to guard it).
    let hooked = Hooked::new(&store, 1, |s| {
        register(s, 2, 0);
    });
    let a = register(&hooked, 1, 0);
    let list = stored(&store);
    assert_eq!(list.records, vec![(a.owner, 0)]);
    let b_owner = (1 << 32) | 2;
    let b = beat(&store, KEY, Some(b_owner), 2, 1, S).unwrap();
    assert!(b.lapsed, "B must rewrite its counts");
    assert_eq!(stored(&store).records, vec![(a.owner, 0), (b_owner, S)]);
}

#[test]
fn a_full_list_registers_nobody_more() {
    let store = MemoryStore::new();
    for k in 0..MAX_OWNERS {
        register(&store, k as u32, 0);
    }
    assert_eq!(beat(&store, KEY, None, 9, 0, 0), None);
    assert_eq!(stored(&store).records.len(), MAX_OWNERS);
    // Once the others expire, there is room.
    assert!(beat(&store, KEY, None, 9, 0, TTL_NS + 1).is_some());
}

#[test]
fn a_failing_store_is_reported() {
    struct Down;
    impl SharedStore for Down {
        fn get(&self, _: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            Err(StoreError::Host(1))
        }
        fn set(&self, _: &str, _: &[u8], _: u32) -> Result<(), StoreError> {
            Err(StoreError::Host(1))
        }
    }
    assert_eq!(beat(&Down, KEY, None, 1, 0, 0), None);
    assert_eq!(read(&Down, KEY, 0), None);
}

/// A heartbeat counts for three beats (3 s): two missed renewals of a stalled worker do not
/// drop an owner that lives.
#[test]
fn a_heartbeat_counts_for_three_seconds() {
    let store = MemoryStore::new();
    let a = register(&store, 1, 0);
    assert!(read(&store, KEY, 2 * S).unwrap().counts(a.owner), "two beats missed");
    assert!(read(&store, KEY, 3 * S).unwrap().counts(a.owner));
    assert!(!read(&store, KEY, 3 * S + 1).unwrap().counts(a.owner));
}
