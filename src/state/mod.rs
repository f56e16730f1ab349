//! Proxy-wide state in proxy-wasm shared data: the [`SharedStore`] contract (get with a CAS
//! token, set guarded by it, with Envoy's semantics), an in-memory implementation that enforces
//! them for native tests, and the values kept there (in-flight counters, the health table,
//! the prober lease, the proxy's monotonic clock), the record of every key written, and
//! ([`keys`]) every key's name.

pub mod clock;
pub mod current;
pub mod generation;
pub mod health_table;
pub mod in_flight;
pub mod keys;
pub mod lease;
pub mod load_reports;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod registry;

/// A value of one version byte and two little-endian `u64`s (the clock anchor, the lease).
pub fn encode_pair(version: u8, a: u64, b: u64) -> [u8; 17] {
    let mut out = [0u8; 17];
    let (v, rest) = out.split_at_mut(1);
    let (first, second) = rest.split_at_mut(8);
    v.copy_from_slice(&[version]);
    first.copy_from_slice(&a.to_le_bytes());
    second.copy_from_slice(&b.to_le_bytes());
    out
}

/// The two `u64`s of an [`encode_pair`] value; `None` for another version or length.
pub fn decode_pair(version: u8, bytes: &[u8]) -> Option<(u64, u64)> {
    let (&v, rest) = bytes.split_first()?;
    let (first, second) = rest.split_at_checked(8)?;
    if v != version {
        return None;
    }
    Some((u64::from_le_bytes(first.try_into().ok()?), u64::from_le_bytes(second.try_into().ok()?)))
}

/// Why a shared-data write or read did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The key changed since it was read: read again and retry.
    CasMismatch,
    /// Any other host status (code as the host gave it).
    Host(u32),
}

/// proxy-wasm shared data, one map per Envoy process keyed by (vm_id, key). Envoy's rules,
/// which callers rely on: `set` with `cas` fails only if the key exists and its CAS differs;
/// a missing key is always written; `cas == 0` never checks.
pub trait SharedStore {
    /// The value and its CAS token; `None` when the key does not exist.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError>;
}

/// A boxed store (the router's, wrapped in [`registry::Registered`]).
impl<T: SharedStore + ?Sized> SharedStore for Box<T> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        (**self).get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        (**self).set(key, value, cas)
    }
}

/// A store shared by reference (tests and benchmarks inspect it while a router owns a handle).
impl<T: SharedStore + ?Sized> SharedStore for std::rc::Rc<T> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        (**self).get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        (**self).set(key, value, cas)
    }
}
