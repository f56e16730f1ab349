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
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod registry;

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
