//! The configuration generation of a pool: a number that goes up by one each time a VM is
//! configured with a configuration (by digest) different from the last one registered, shared
//! by every VM of the proxy. Value: `[generation u64][digest u64]`, little-endian.

use super::{keys, SharedStore, StoreError};

const MAX_ATTEMPTS: usize = 16;

fn decode(bytes: &[u8]) -> Option<(u64, u64)> {
    let generation = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let digest = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    (bytes.len() == 16).then_some((generation, digest))
}

fn encode(generation: u64, digest: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&generation.to_le_bytes());
    out[8..].copy_from_slice(&digest.to_le_bytes());
    out
}

/// Registers `digest` as `cluster`'s current configuration and returns its generation (1 for
/// the first one; 0 if the store cannot be used).
pub fn register(store: &dyn SharedStore, cluster: &str, digest: u64) -> u64 {
    let key = keys::generation(cluster);
    for _ in 0..MAX_ATTEMPTS {
        let (next, cas) = match store.get(&key) {
            Ok(Some((bytes, cas))) => match decode(&bytes) {
                Some((generation, d)) if d == digest => return generation,
                Some((generation, _)) => (generation.saturating_add(1), cas),
                None => (1, cas),
            },
            Ok(None) => (1, 0),
            Err(_) => return 0,
        };
        match store.set(&key, &encode(next, digest), cas) {
            // Re-read: a missing key is written by every racer; the last write wins.
            Ok(()) | Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Host(_)) => return 0,
        }
    }
    0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::state::memory::MemoryStore;

    #[test]
    fn same_digest_same_generation_new_digest_next_one() {
        let store = MemoryStore::new();
        assert_eq!(register(&store, "p", 11), 1);
        assert_eq!(register(&store, "p", 11), 1, "every VM of one config agrees");
        assert_eq!(register(&store, "p", 22), 2);
        assert_eq!(register(&store, "p", 22), 2);
        assert_eq!(register(&store, "p", 11), 3, "going back is a new generation");
        assert_eq!(register(&store, "other", 11), 1, "per pool");
    }

    #[test]
    fn a_malformed_value_restarts_at_one() {
        let store = MemoryStore::new();
        store.set("envoy_lb/p/generation", b"junk", 0).unwrap();
        assert_eq!(register(&store, "p", 5), 1);
        assert_eq!(register(&store, "p", 5), 1);
    }
}
