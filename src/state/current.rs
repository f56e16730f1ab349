//! Which configuration of a pool published its health state last: one shared-data value per
//! cluster naming the *fence* (a digest of the backend keys and health settings) of the newest
//! configuration. Each configuration keeps its health table and prober lease under its own
//! fence, so a configuration that is superseded (Envoy keeps its root contexts ticking while a
//! drained listener lives) can never rewrite or hold what the current one owns; it reads the
//! current table for the backends both share instead of probing them again.
//!
//! Keys: [`keys::health_current`](super::keys::health_current) and, per fence,
//! [`keys::health_table`](super::keys::health_table), [`keys::prober_lease`](super::keys::prober_lease).
//! Value format (versioned): `[1u8][fence u64]`, little-endian.

use super::SharedStore;

const VERSION: u8 = 1;

pub fn encode(fence: u64) -> [u8; 9] {
    let mut out = [VERSION; 9];
    if let Some(rest) = out.get_mut(1..) {
        rest.copy_from_slice(&fence.to_le_bytes());
    }
    out
}

/// `None` for another version or a malformed value.
pub fn decode(bytes: &[u8]) -> Option<u64> {
    match bytes {
        [VERSION, rest @ ..] => <[u8; 8]>::try_from(rest).ok().map(u64::from_le_bytes),
        _ => None,
    }
}

/// The current fence named at `key`, if any.
pub fn read(store: &dyn SharedStore, key: &str) -> Option<u64> {
    store.get(key).ok().flatten().and_then(|(bytes, _)| decode(&bytes))
}

/// Names `fence` current (the last configuration configured wins).
pub fn publish(store: &dyn SharedStore, key: &str, fence: u64) {
    if read(store, key) != Some(fence) {
        let _ = store.set(key, &encode(fence), 0);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::state::memory::MemoryStore;

    #[test]
    fn round_trip_and_refusals() {
        for fence in [0, 1, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(decode(&encode(fence)), Some(fence));
        }
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0]), None, "another version");
        assert_eq!(decode(&[1, 0, 0]), None);
        let store = MemoryStore::new();
        let k = crate::state::keys::health_current("p");
        assert_eq!(read(&store, &k), None);
        publish(&store, &k, 7);
        publish(&store, &k, 9);
        assert_eq!(read(&store, &k), Some(9), "the last configured wins");
    }

    /// The pointer is one per cluster; tables and leases one per cluster and configuration,
    /// so no configuration can rewrite or hold another's; all under the filter's prefix.
    #[test]
    fn keys_are_per_cluster_and_per_fence() {
        let all = [
            crate::state::keys::health_current("p"),
            crate::state::keys::health_current("q"),
            crate::state::keys::health_table("p", 7),
            crate::state::keys::health_table("p", 9),
            crate::state::keys::health_table("q", 7),
            crate::state::keys::prober_lease("p", 7),
            crate::state::keys::prober_lease("p", 9),
            crate::state::keys::prober_lease("q", 7),
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(a.starts_with("envoy_lb/"), "{a}");
            for b in all.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
    }
}
