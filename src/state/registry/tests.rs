//! The key record over the CAS-enforcing in-memory store: each key recorded once, by any
//! number of VMs, including two creating the missing record at once; the footprint counts what
//! the store holds, key for key and byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::rc::Rc;

use proptest::prelude::*;

use super::*;
use crate::state::memory::hooked::Hooked;
use crate::state::memory::MemoryStore;

fn record(store: &MemoryStore) -> Vec<String> {
    let (bytes, _) = store.get(keys::REGISTRY).unwrap().unwrap();
    String::from_utf8(bytes).unwrap().lines().map(str::to_string).collect()
}

/// The footprint counted directly from the store: every key it holds and their bytes.
fn held(store: &MemoryStore, keys: &[&str]) -> Footprint {
    let mut f = Footprint { keys: 0, bytes: 0 };
    for k in keys.iter().copied().chain([keys::REGISTRY]) {
        if let Some((v, _)) = store.get(k).unwrap() {
            f.keys += 1;
            f.bytes += (k.len() + v.len()) as u64;
        }
    }
    f
}

#[test]
fn each_key_is_recorded_once_before_its_first_write() {
    let store = Rc::new(MemoryStore::new());
    let vm = Registered::new(Rc::clone(&store));
    assert_eq!(footprint(&vm), None, "nothing written yet");
    vm.set("envoy_lb/p/a", b"1", 0).unwrap();
    vm.set("envoy_lb/p/a", b"22", 0).unwrap();
    vm.set("envoy_lb/p/b", b"333", 0).unwrap();
    assert_eq!(record(&store), ["envoy_lb/p/a", "envoy_lb/p/b"]);
    assert_eq!(store.len(), 3);
    let f = footprint(&vm).unwrap();
    assert_eq!(f, held(&store, &["envoy_lb/p/a", "envoy_lb/p/b"]));
    assert_eq!(f.keys, 3);
    // Names, values and the record itself.
    let names = "envoy_lb/p/a".len() * 2 + keys::REGISTRY.len();
    assert_eq!(f.bytes, (names + 2 + 3 + record(&store).join("\n").len()) as u64);
}

#[test]
fn a_second_vm_finds_the_key_recorded_and_adds_only_its_own() {
    let store = Rc::new(MemoryStore::new());
    let (vm1, vm2) = (Registered::new(Rc::clone(&store)), Registered::new(Rc::clone(&store)));
    vm1.set("envoy_lb/p/a", b"1", 0).unwrap();
    vm2.set("envoy_lb/p/a", b"2", 0).unwrap();
    vm2.set("envoy_lb/p/c", b"3", 0).unwrap();
    assert_eq!(record(&store), ["envoy_lb/p/a", "envoy_lb/p/c"]);
    assert_eq!(footprint(&vm1), footprint(&vm2));
    assert_eq!(footprint(&vm1).unwrap().keys, 3);
}

#[test]
fn the_write_happens_even_when_the_record_cannot_be_kept() {
    /// Refuses every write of the record; other keys go through.
    struct NoRecord(MemoryStore);
    impl SharedStore for NoRecord {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            self.0.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
            if key == keys::REGISTRY {
                return Err(StoreError::Host(2));
            }
            self.0.set(key, value, cas)
        }
    }
    let vm = Registered::new(NoRecord(MemoryStore::new()));
    vm.set("envoy_lb/p/a", b"1", 0).unwrap();
    assert_eq!(vm.get("envoy_lb/p/a").unwrap().unwrap().0, b"1");
    assert_eq!(footprint(&vm), None);
    // The CAS outcome of the key's own write is passed through.
    let (_, cas) = vm.get("envoy_lb/p/a").unwrap().unwrap();
    assert_eq!(vm.set("envoy_lb/p/a", b"2", cas + 1), Err(StoreError::CasMismatch));
}

#[test]
fn an_entry_lost_when_two_vms_create_the_record_at_once_is_restored_on_the_next_tick() {
    // A reads "no record"; B then records its key and confirms it; A's blind write (a missing
    // key has no CAS to check) replaces B's record and A's re-read confirms A. B's entry is
    // lost until B's repair on its next tick.
    let store = Rc::new(MemoryStore::new());
    let b = Rc::new(Registered::new(Rc::clone(&store)));
    let b_in_hook = Rc::clone(&b);
    // Before A's write of the record (call 0 is A's read).
    let a = Registered::new(Hooked::new(&store, 1, move |_| {
        b_in_hook.set("envoy_lb/p/b", b"B", 0).unwrap();
    }));
    a.set("envoy_lb/p/a", b"A", 0).unwrap();
    assert_eq!(record(&store), ["envoy_lb/p/a"], "the race this test is about did not happen");
    assert_eq!(footprint(&a).unwrap().keys, 2, "the footprint misses B's key");
    b.repair();
    assert_eq!(record(&store), ["envoy_lb/p/a", "envoy_lb/p/b"]);
    assert_eq!(footprint(&a).unwrap().keys, 3);
    // Nothing lost: a repair is one read.
    let before = store.get(keys::REGISTRY).unwrap().unwrap().1;
    b.repair();
    a.repair();
    assert_eq!(store.get(keys::REGISTRY).unwrap().unwrap().1, before, "rewritten needlessly");
}

#[test]
fn a_blind_overwrite_of_the_record_is_caught_by_the_re_read() {
    // A and B both read "no record"; A writes; B's blind write replaces A's before A re-reads.
    let store = Rc::new(MemoryStore::new());
    // After A's read (0) and A's write (1): before A's confirming re-read.
    let a = Registered::new(Hooked::new(&store, 2, move |s| {
        s.set(keys::REGISTRY, b"envoy_lb/p/b", 0).unwrap();
    }));
    a.set("envoy_lb/p/a", b"A", 0).unwrap();
    let mut got = record(&store);
    got.sort();
    assert_eq!(got, ["envoy_lb/p/a", "envoy_lb/p/b"], "A re-read, missed itself, appended");
}

proptest! {
    /// Any sequence of writes by three VMs: the record lists exactly the keys written, and the
    /// footprint matches the store key for key and byte for byte.
    #[test]
    fn the_footprint_is_what_the_store_holds(
        writes in proptest::collection::vec((0usize..3, 0usize..8, 0usize..40), 0..60)
    ) {
        let store = Rc::new(MemoryStore::new());
        let vms: Vec<_> = (0..3).map(|_| Registered::new(Rc::clone(&store))).collect();
        let names: Vec<String> = (0..8).map(|k| format!("envoy_lb/pool/k{k}")).collect();
        let mut written = std::collections::BTreeSet::new();
        for (vm, key, len) in writes {
            vms[vm].set(&names[key], &vec![7u8; len], 0).unwrap();
            written.insert(names[key].clone());
        }
        if written.is_empty() {
            prop_assert_eq!(footprint(&vms[0]), None);
        } else {
            let mut got = record(&store);
            got.sort();
            prop_assert_eq!(got, written.iter().cloned().collect::<Vec<_>>());
            let keys: Vec<&str> = names.iter().map(String::as_str).collect();
            let f = footprint(&vms[1]).unwrap();
            prop_assert_eq!(f, held(&store, &keys));
            prop_assert_eq!(f.keys, store.len() as u64);
        }
    }
}

#[test]
fn many_keys_are_recorded_in_one_write_and_a_numbered_family_in_one_line() {
    let store = Rc::new(MemoryStore::new());
    let vm = Registered::new(Rc::clone(&store));
    let names: Vec<String> = (0..1_000).map(|i| format!("envoy_lb/p/in_flight/b{i}")).collect();
    vm.register_all(names.iter().map(String::as_str));
    let cas = store.get(keys::REGISTRY).unwrap().unwrap().1;
    assert_eq!(record(&store).len(), 1_000);
    for n in &names {
        vm.set(n, b"1", 0).unwrap();
    }
    assert_eq!(store.get(keys::REGISTRY).unwrap().unwrap().1, cas, "known keys: no rewrite");
    vm.reserve_family("envoy_lb/p/errors/", 10);
    vm.reserve_family("envoy_lb/p/errors/", 5);
    assert!(record(&store).contains(&"envoy_lb/p/errors/{0..10}".to_string()));
    let cas = store.get(keys::REGISTRY).unwrap().unwrap().1;
    vm.set("envoy_lb/p/errors/3", b"xy", 0).unwrap();
    vm.set("envoy_lb/p/errors/9", b"z", 0).unwrap();
    assert_eq!(store.get(keys::REGISTRY).unwrap().unwrap().1, cas, "members need no line");
    // A bigger family replaces the line; a key past it is recorded on its own.
    vm.reserve_family("envoy_lb/p/errors/", 20);
    vm.set("envoy_lb/p/errors/25", b"w", 0).unwrap();
    let r = record(&store);
    assert!(!r.contains(&"envoy_lb/p/errors/{0..10}".to_string()));
    assert!(r.contains(&"envoy_lb/p/errors/{0..20}".to_string()));
    assert!(r.contains(&"envoy_lb/p/errors/25".to_string()));
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.extend(["envoy_lb/p/errors/3", "envoy_lb/p/errors/9", "envoy_lb/p/errors/25"]);
    assert_eq!(footprint(&vm).unwrap(), held(&store, &all));
}

#[test]
fn repair_reads_the_record_only_for_a_while_after_a_registration() {
    /// Counts reads of the record.
    struct Counting(MemoryStore, std::cell::Cell<u32>);
    impl SharedStore for Counting {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            if key == keys::REGISTRY {
                self.1.set(self.1.get() + 1);
            }
            self.0.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
            self.0.set(key, value, cas)
        }
    }
    let vm = Registered::new(Counting(MemoryStore::new(), std::cell::Cell::new(0)));
    vm.set("envoy_lb/p/a", b"1", 0).unwrap();
    let reads = |vm: &Registered<Counting>| vm.inner.1.get();
    let before = reads(&vm);
    for _ in 0..REPAIR_TICKS {
        vm.repair();
    }
    assert_eq!(reads(&vm) - before, REPAIR_TICKS, "one read per tick while a race may have hit");
    for _ in 0..100 {
        vm.repair();
    }
    assert_eq!(reads(&vm) - before, REPAIR_TICKS, "then none");
}
