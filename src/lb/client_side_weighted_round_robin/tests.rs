//! Native tests: until weights arrive it is round robin; weights make nginx's smooth schedule;
//! a weight vector of another length is ignored; the testkit contract holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::lb::testkit::{accept_all, check_picks_contract, pick_with};
use crate::lb::NoLoad;
use proptest::prelude::*;

fn primaries(b: &mut ClientSideWeighted, n: usize) -> Vec<usize> {
    (0..n).map(|_| pick_with(b, None, &accept_all, &mut NoLoad, 1)[0]).collect()
}

#[test]
fn equal_until_reweighed_then_weighted() {
    let mut b = ClientSideWeighted::new(3);
    assert_eq!(primaries(&mut b, 6), [0, 1, 2, 0, 1, 2]);
    b.reweight(&[5, 1, 1]);
    assert_eq!(b.weights(), [5, 1, 1]);
    assert_eq!(b.weight(0), Some(5));
    assert_eq!(primaries(&mut b, 7), [0, 0, 1, 0, 2, 0, 0]);
    // The same weights again keep the schedule where it is.
    b.reweight(&[5, 1, 1]);
    assert_eq!(primaries(&mut b, 3), [0, 0, 1]);
    // A vector for another pool is ignored.
    b.reweight(&[1, 1]);
    assert_eq!(b.weights(), [5, 1, 1]);
}

#[test]
fn shares_follow_weights_1_2_4() {
    let mut b = ClientSideWeighted::new(3);
    b.reweight(&[100, 200, 400]);
    let mut count = [0; 3];
    for i in primaries(&mut b, 700) {
        count[i] += 1;
    }
    assert_eq!(count, [100, 200, 400]);
}

proptest! {
    #[test]
    fn picks_contract(weights in proptest::collection::vec(1u32..1000, 1..20), cap in 1usize..=5, refused in any::<u64>()) {
        let mut b = ClientSideWeighted::new(weights.len());
        b.reweight(&weights);
        let accept = |i: usize| (refused >> (i % 64)) & 1 == 0;
        let got = pick_with(&mut b, None, &accept, &mut NoLoad, cap);
        check_picks_contract(&got, &accept, weights.len(), cap)?;
    }
}
