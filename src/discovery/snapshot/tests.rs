#![allow(clippy::unwrap_used)]
use proptest::prelude::*;

use super::*;

fn ep(last: u8, port: u16) -> Endpoint {
    Endpoint {
        address: SocketAddr::from(([10, 0, 0, last], port)),
        weight: 1,
        priority: 0,
        health: EnvoyHealth::Healthy,
    }
}

#[test]
fn the_first_poll_makes_generation_one_and_nothing_new_makes_none() {
    let s = Snapshot::default().next(vec![ep(2, 80), ep(1, 80)], 5).unwrap();
    assert_eq!(s.generation, 1);
    let addrs: Vec<_> = s.endpoints.iter().map(|e| e.endpoint.address.to_string()).collect();
    assert_eq!(addrs, ["10.0.0.1:80", "10.0.0.2:80"], "sorted by address");
    assert_eq!(s.endpoints.iter().map(|e| e.slot).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(s.next(vec![ep(1, 80), ep(2, 80)], 9), None, "the same endpoints, any order");
    let mut heavier = ep(1, 80);
    heavier.weight = 5;
    assert_eq!(s.next(vec![heavier, ep(2, 80)], 9).unwrap().generation, 2, "a weight change");
}

#[test]
fn endpoints_that_stay_keep_their_slot_and_freed_slots_wait_out_the_quarantine() {
    let s1 = Snapshot::default().next(vec![ep(1, 80), ep(2, 80)], 0).unwrap();
    // 10.0.0.1 leaves, 10.0.0.3 comes: the freed slot 0 is in quarantine, so slot 2.
    let s2 = s1.next(vec![ep(2, 80), ep(3, 80)], MS).unwrap();
    let slots: Vec<_> =
        s2.endpoints.iter().map(|e| (e.endpoint.address.to_string(), e.slot)).collect();
    assert_eq!(slots, [("10.0.0.2:80".to_string(), 1), ("10.0.0.3:80".to_string(), 2)]);
    assert_eq!(s2.freed, [(0, MS)]);
    // After the quarantine, slot 0 is taken again.
    let s3 = s2.next(vec![ep(2, 80), ep(3, 80), ep(4, 80)], MS + QUARANTINE_NS).unwrap();
    assert_eq!(s3.endpoints.iter().map(|e| e.slot).collect::<Vec<_>>(), [1, 2, 0]);
    assert!(s3.freed.is_empty());
}

/// 1,000 rolling updates of a 10-endpoint pool, each replacing every endpoint by a new
/// address one by one, one poll per second: slots stay within the pool plus what one
/// quarantine holds, so the shared-data keys named by slot stay bounded.
#[test]
fn slots_stay_bounded_across_a_thousand_rollouts() {
    let mut s = Snapshot::default();
    let mut live: Vec<Endpoint> = (0..10).map(|i| ep(i, 80)).collect();
    let mut now = 0;
    let mut port = 81u16;
    let mut max_slot = 0;
    for _ in 0..1000 {
        for i in 0..live.len() {
            live[i] = ep(i as u8, port);
            now += 1_000 * MS;
            if let Some(next) = s.next(live.clone(), now) {
                s = next;
            }
            max_slot = max_slot.max(s.endpoints.iter().map(|e| e.slot).max().unwrap());
        }
        port = port.wrapping_add(1).max(81);
    }
    assert_eq!(s.generation, 10_000, "one generation per change");
    // 10 live + at most 10 freed within a 10 s quarantine at one change per second.
    assert!(max_slot < 21, "slots grew to {max_slot}");
    assert!(s.freed.len() <= 11, "{} freed slots", s.freed.len());
}

#[test]
fn encode_round_trips_and_decode_refuses_bad_values() {
    let mut ipv6 = ep(1, 8080);
    ipv6.address = "[fd00::7]:8080".parse().unwrap();
    ipv6.health = EnvoyHealth::Draining;
    ipv6.priority = 2;
    let s = Snapshot::default().next(vec![ep(1, 80), ipv6], 3).unwrap();
    let s = s.next(vec![ipv6], 4).unwrap();
    let bytes = s.encode();
    assert_eq!(Snapshot::decode(&bytes), Some(s.clone()));
    assert_eq!(Snapshot::decode(&bytes[..bytes.len() - 1]), None, "truncated");
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(Snapshot::decode(&longer), None, "trailing bytes");
    let mut other = bytes;
    other[0] = 2;
    assert_eq!(Snapshot::decode(&other), None, "another version");
    assert_eq!(Snapshot::decode(&[]), None);
}

#[test]
fn status_round_trips_and_cuts_long_errors() {
    let st = PollStatus {
        generation: 4,
        last_ok_ns: 5,
        last_poll_ns: 6,
        failures: 2,
        endpoints: 9,
        error: "é".repeat(300),
    };
    let back = PollStatus::decode(&st.encode()).unwrap();
    assert_eq!(back.generation, 4);
    assert_eq!((back.failures, back.endpoints), (2, 9));
    assert!(back.error.len() <= MAX_ERROR_LEN && back.error.chars().all(|c| c == 'é'));
    assert_eq!(PollStatus::decode(&[1, 2, 3]), None);
}

proptest! {
    #[test]
    fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Snapshot::decode(&bytes);
        let _ = PollStatus::decode(&bytes);
    }

    /// Whatever the sequence of polls: slots are distinct, an endpoint that stays keeps its
    /// slot, and a freed slot is never given out within its quarantine.
    #[test]
    fn slots_are_distinct_and_stable(
        polls in proptest::collection::vec(proptest::collection::vec(0u8..24, 1..12), 1..30),
        step_ms in 1u64..4000,
    ) {
        let mut s = Snapshot::default();
        let mut now = 0;
        for poll in polls {
            now += step_ms * MS;
            let eps: Vec<Endpoint> = poll.iter().map(|&i| ep(i, 80)).collect();
            let Some(next) = s.next(eps, now) else { continue };
            let mut slots: Vec<u32> = next.endpoints.iter().map(|e| e.slot).collect();
            slots.sort_unstable();
            let n = slots.len();
            slots.dedup();
            prop_assert_eq!(slots.len(), n, "distinct slots");
            for e in &next.endpoints {
                if let Some(old) = s.endpoints.iter().find(|o| o.endpoint.address == e.endpoint.address) {
                    prop_assert_eq!(old.slot, e.slot);
                } else if let Some(&(_, at)) = s.freed.iter().find(|f| f.0 == e.slot) {
                    prop_assert!(now - at >= QUARANTINE_NS);
                }
                prop_assert!(!next.freed.iter().any(|f| f.0 == e.slot), "a used slot is not free");
            }
            prop_assert_eq!(Snapshot::decode(&next.encode()), Some(next.clone()));
            s = next;
        }
    }
}
