//! Native tests of the shared report shards: two VMs see each other's reports, a pool change
//! ignores entries of other backends, malformed values read as nothing, writes per tick are
//! bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::lb::reports::ReportRules;
use crate::orca::parse;
use crate::state::memory::MemoryStore;
use proptest::prelude::*;

fn rules() -> ReportRules {
    ReportRules::least_load_on_q()
}

fn record(t: &mut LoadTable, i: usize, text: &str, at: u64) {
    let r = rules();
    t.record(i, &parse(&format!("TEXT {text}"), &r.wanted).unwrap(), &r, at, 6);
}

fn hashes(n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| i * 7 + 1).collect()
}

#[test]
fn two_workers_see_each_others_reports() {
    let store = MemoryStore::new();
    let n = 150; // three shards
    let (mut a, mut b) = (SharedReports::new("p", hashes(n)), SharedReports::new("p", hashes(n)));
    let (mut ta, mut tb) = (LoadTable::new(n), LoadTable::new(n));
    record(&mut ta, 3, "rps_fractional=10, cpu_utilization=1, named_metrics.q=4", 100);
    record(&mut tb, 140, "rps_fractional=20, cpu_utilization=1", 200);
    record(&mut tb, 3, "rps_fractional=30, cpu_utilization=1", 50);
    a.publish(&store, &mut ta, 0);
    b.publish(&store, &mut tb, 0);
    assert_eq!(store.len(), 2, "shards 0 and 2 written");
    a.gather(&store, &mut ta, 0);
    b.gather(&store, &mut tb, 0);
    for t in [&ta, &tb] {
        let e3 = t.get(3).unwrap();
        assert_eq!(
            (e3.at, e3.weight, e3.metric, e3.metric_at),
            (100, 10, 4.0, 100),
            "the newer report wins"
        );
        assert_eq!(e3.non_empty_since, 50, "the earlier start of valid reports");
        assert_eq!(t.get(140).unwrap().weight, 20);
    }
    assert!(ta.take_dirty().is_empty() && tb.take_dirty().is_empty());
}

#[test]
fn entries_of_other_backends_are_ignored_after_a_pool_change() {
    let store = MemoryStore::new();
    let mut old = SharedReports::new("p", hashes(4));
    let mut t = LoadTable::new(4);
    record(&mut t, 1, "rps_fractional=10, cpu_utilization=1", 100);
    old.publish(&store, &mut t, 0);
    // The new pool has another backend at index 1.
    let mut other = hashes(4);
    other[1] = 999;
    let mut new = SharedReports::new("p", other);
    let mut fresh = LoadTable::new(4);
    new.gather(&store, &mut fresh, 0);
    assert_eq!(fresh.get(1).unwrap().at, 0);
    // And its own write replaces the stale entry.
    record(&mut fresh, 1, "rps_fractional=40, cpu_utilization=1", 300);
    new.publish(&store, &mut fresh, 0);
    let (bytes, _) = store.get(&keys::load_reports("p", 0)).unwrap().unwrap();
    let entries: Vec<_> = decode(&bytes).collect();
    assert_eq!(entries.len(), 4);
    assert_eq!((entries[1].1, entries[1].2.weight), (999, 40));
}

#[test]
fn malformed_shards_read_as_nothing() {
    let store = MemoryStore::new();
    let key = keys::load_reports("p", 0);
    let mut s = SharedReports::new("p", hashes(2));
    for bad in [vec![], vec![2u8; 1 + ENTRY], vec![1u8; 5], vec![1u8; 1 + ENTRY * (SHARD + 1)]] {
        store.set(&key, &bad, 0).unwrap();
        let mut t = LoadTable::new(2);
        s.gather(&store, &mut t, 0);
        assert_eq!(t.get(0).unwrap().at, 0);
    }
    // A non-finite number makes its entry unreadable, not the others.
    let mut t = LoadTable::new(2);
    record(&mut t, 0, "rps_fractional=1, cpu_utilization=1", 5);
    record(&mut t, 1, "rps_fractional=1, cpu_utilization=1", 5);
    let mut bytes = vec![1u8];
    for i in 0..2 {
        encode_entry(&mut bytes, hashes(2)[i], t.get(i).unwrap());
    }
    bytes[1 + 16..1 + 24].copy_from_slice(&f64::NAN.to_le_bytes());
    let read: Vec<_> = decode(&bytes).map(|(j, _, _)| j).collect();
    assert_eq!(read, [1]);
}

#[test]
fn writes_per_tick_are_bounded_and_the_rest_wait() {
    let store = MemoryStore::new();
    let n = SHARD * (MAX_WRITES_PER_TICK + 3);
    let mut s = SharedReports::new("p", hashes(n));
    let mut t = LoadTable::new(n);
    for shard in 0..MAX_WRITES_PER_TICK + 3 {
        record(&mut t, shard * SHARD, "rps_fractional=1, cpu_utilization=1", 1);
    }
    s.publish(&store, &mut t, 0);
    assert_eq!(store.len(), MAX_WRITES_PER_TICK);
    s.publish(&store, &mut t, 0);
    assert_eq!(store.len(), MAX_WRITES_PER_TICK + 3);
    assert!(t.take_dirty().is_empty());
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        for (j, _, e) in decode(&bytes) {
            prop_assert!(j < SHARD && e.rps.is_finite());
        }
    }
}
