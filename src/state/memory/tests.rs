//! The in-memory store keeps Envoy's rules, and a store behind a `Box` or an `Rc` (as the
//! router holds it) is the same store.
#![allow(clippy::unwrap_used)]

use std::rc::Rc;

use super::*;

#[test]
fn cas_rules_and_size() {
    let store = MemoryStore::new();
    assert!(store.is_empty());
    assert_eq!(store.get("k").unwrap(), None);
    store.set("k", b"a", 12345).unwrap();
    assert!(!store.is_empty(), "a missing key is written whatever the cas");
    assert_eq!(store.len(), 1);
    let (value, cas) = store.get("k").unwrap().unwrap();
    assert_eq!(value, b"a");
    assert_eq!(store.set("k", b"b", cas.wrapping_add(1)), Err(StoreError::CasMismatch));
    store.set("k", b"b", cas).unwrap();
    assert_eq!(store.set("k", b"c", cas), Err(StoreError::CasMismatch), "the cas moved on");
    store.set("k", b"c", 0).unwrap();
    assert_eq!(store.get("k").unwrap().unwrap().0, b"c", "cas 0 never checks");
}

#[test]
fn boxed_and_shared_stores_forward_to_the_same_store() {
    let shared = Rc::new(MemoryStore::new());
    let boxed: Box<dyn SharedStore> = Box::new(Rc::clone(&shared));
    boxed.set("k", b"v", 0).unwrap();
    assert_eq!(shared.get("k").unwrap(), boxed.get("k").unwrap());
    let (value, cas) = shared.get("k").unwrap().unwrap();
    assert_eq!(value, b"v");
    assert_eq!(boxed.set("k", b"w", cas.wrapping_add(1)), Err(StoreError::CasMismatch));
    boxed.set("k", b"w", cas).unwrap();
    assert_eq!(boxed.get("k").unwrap().unwrap().0, b"w");
    assert_eq!(shared.len(), 1);
}
