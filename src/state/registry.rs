//! The record of every shared-data key this filter has written, kept in shared data itself.
//! proxy-wasm has no call that lists keys, so without it nobody (an operator, the soak) could
//! count what the filter holds there. Every write goes through [`Registered`], which adds a key
//! to the record before its first write from this VM; [`footprint`] then measures what exists:
//! the keys found and their bytes. Keys are never deleted (the ABI cannot), so the record also
//! shows keys of backends that a later configuration removed.

use std::cell::RefCell;

use super::{keys, SharedStore, StoreError};

/// Read-modify-write attempts before a registration is left for the next write of the key.
const MAX_ATTEMPTS: usize = 16;

/// A store that records each key in [`keys::REGISTRY`] before writing it for the first time.
pub struct Registered<S> {
    inner: S,
    /// Keys known to be in the record, sorted.
    known: RefCell<Vec<String>>,
}

impl<S: SharedStore> Registered<S> {
    pub fn new(inner: S) -> Self {
        Registered { inner, known: RefCell::new(Vec::new()) }
    }

    /// Adds `key` to the record (re-reading after each write: a missing record is written by
    /// every racer, and only the last write survives). `false` if the store failed.
    fn register(&self, key: &str) -> bool {
        for _ in 0..MAX_ATTEMPTS {
            let (mut record, cas) = match self.inner.get(keys::REGISTRY) {
                Ok(Some((bytes, cas))) => (bytes, cas),
                Ok(None) => (Vec::new(), 0),
                Err(_) => return false,
            };
            if lines(&record).any(|k| k == key.as_bytes()) {
                return true;
            }
            if !record.is_empty() {
                record.push(b'\n');
            }
            record.extend_from_slice(key.as_bytes());
            match self.inner.set(keys::REGISTRY, &record, cas) {
                Ok(()) | Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Host(_)) => return false,
            }
        }
        false
    }

    /// Re-records the keys this VM recorded that the record has lost. Creating the record is
    /// a blind write (a missing key has no CAS to guard it): when two VMs create it at once,
    /// the later write can drop an entry the other had already confirmed. Called on every
    /// tick: one read when nothing is missing.
    pub fn repair(&self) {
        let record = match self.inner.get(keys::REGISTRY) {
            Ok(Some((bytes, _))) => bytes,
            Ok(None) => Vec::new(),
            Err(_) => return,
        };
        let known = self.known.borrow();
        for key in known.iter() {
            if !lines(&record).any(|k| k == key.as_bytes()) {
                self.register(key);
            }
        }
    }
}

impl<S: SharedStore> SharedStore for Registered<S> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        let pos = self.known.borrow().binary_search_by(|k| k.as_str().cmp(key));
        // A key with a line break cannot be recorded; the filter's keys have none.
        if let Err(pos) = pos {
            if !key.contains('\n') && self.register(key) {
                self.known.borrow_mut().insert(pos, key.to_string());
            }
        }
        self.inner.set(key, value, cas)
    }
}

fn lines(record: &[u8]) -> impl Iterator<Item = &[u8]> {
    record.split(|&b| b == b'\n').filter(|k| !k.is_empty())
}

/// What the filter holds in shared data, as found there now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Keys that exist: the record and every recorded key found.
    pub keys: u64,
    /// Their names and values, in bytes.
    pub bytes: u64,
}

/// Reads the record and every key in it; `None` if there is no record (nothing written yet)
/// or the store failed.
pub fn footprint(store: &dyn SharedStore) -> Option<Footprint> {
    let (record, _) = store.get(keys::REGISTRY).ok()??;
    let mut f = Footprint { keys: 1, bytes: (keys::REGISTRY.len() + record.len()) as u64 };
    for key in lines(&record) {
        let Ok(key) = std::str::from_utf8(key) else { continue };
        if let Ok(Some((value, _))) = store.get(key) {
            f.keys += 1;
            f.bytes += (key.len() + value.len()) as u64;
        }
    }
    Some(f)
}

#[cfg(test)]
mod tests;
