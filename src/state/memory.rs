//! An in-memory [`SharedStore`] with Envoy's CAS semantics, for native tests and benchmarks,
//! and (in tests) a view of it that interleaves another VM's steps at a chosen call.

use std::cell::RefCell;
use std::collections::HashMap;

use super::{SharedStore, StoreError};

#[derive(Debug, Default)]
pub struct MemoryStore {
    data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: RefCell<u32>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.data.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(self.data.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        let mut data = self.data.borrow_mut();
        if let Some((_, current)) = data.get(key) {
            if cas != 0 && cas != *current {
                return Err(StoreError::CasMismatch);
            }
        }
        let mut next = self.next_cas.borrow_mut();
        *next = next.wrapping_add(1).max(1);
        data.insert(key.to_string(), (value.to_vec(), *next));
        Ok(())
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub mod hooked {
    use std::cell::{Cell, RefCell};

    use super::{MemoryStore, SharedStore, StoreError};

    /// Another VM's steps, run on the shared store.
    pub type Hook<'a> = Box<dyn FnOnce(&MemoryStore) + 'a>;

    /// Runs `hook` on the inner store just before this store's `at`-th call (0-based), to
    /// interleave another VM's steps with one operation of this one.
    pub struct Hooked<'a> {
        inner: &'a MemoryStore,
        calls: Cell<usize>,
        at: usize,
        hook: RefCell<Option<Hook<'a>>>,
    }

    impl<'a> Hooked<'a> {
        pub fn new(
            inner: &'a MemoryStore,
            at: usize,
            hook: impl FnOnce(&MemoryStore) + 'a,
        ) -> Self {
            Hooked { inner, calls: Cell::new(0), at, hook: RefCell::new(Some(Box::new(hook))) }
        }

        fn step(&self) {
            if self.calls.get() == self.at {
                if let Some(hook) = self.hook.borrow_mut().take() {
                    hook(self.inner);
                }
            }
            self.calls.set(self.calls.get() + 1);
        }
    }

    impl SharedStore for Hooked<'_> {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            self.step();
            self.inner.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
            self.step();
            self.inner.set(key, value, cas)
        }
    }
}
