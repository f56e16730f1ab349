//! The record of every shared-data key this filter has written, kept in shared data itself.
//! proxy-wasm has no call that lists keys, so without it nobody (an operator, the soak) could
//! count what the filter holds there. Every write goes through [`Registered`], which adds a key
//! to the record before its first write from this VM (a numbered family of per-backend keys,
//! `prefix0 .. prefix{n-1}`, is one line `prefix{0..n}`); [`footprint`] then measures what exists:
//! the keys found and their bytes. Keys are never deleted (the ABI cannot), so the record also
//! shows keys of backends that a later configuration removed.

use std::cell::{Cell, RefCell};

use super::{keys, SharedStore, StoreError};

/// Read-modify-write attempts before a registration is left for the next write of the key.
const MAX_ATTEMPTS: usize = 16;
/// Ticks after this VM's last registration during which [`Registered::repair`] checks the
/// record: only a blind creation of the record racing a registration can drop an entry, and
/// that race is over within microseconds; afterwards a tick costs no host call here.
const REPAIR_TICKS: u32 = 20;

/// A store that records each key in [`keys::REGISTRY`] before writing it for the first time.
///
/// Cost: a key's first write from this VM reads and rewrites the record (O(keys recorded));
/// [`Registered::register_all`] records many keys in one such write and
/// [`Registered::reserve_family`] a whole numbered family (`prefix0`, `prefix1`, ...) in one
/// line, so a pool of N backends is registered in O(N) at configure, not O(N²). Later writes
/// of a known key cost one hash lookup.
pub struct Registered<S> {
    inner: S,
    /// Keys known to be in the record (for [`Registered::repair`]), and their hashes (for
    /// the lookup on every write).
    known: RefCell<Vec<String>>,
    known_hashes: RefCell<fnv::FnvHashSet<u64>>,
    /// Numbered families known to be in the record: `(prefix, count)`.
    families: RefCell<Vec<(String, usize)>>,
    /// Ticks left during which [`Registered::repair`] re-checks the record.
    repair_ticks: Cell<u32>,
}

/// Given the record, the lines to add to it and the lines to drop from it.
type Wanted<'a> = dyn Fn(&[u8]) -> (Vec<String>, Vec<Vec<u8>>) + 'a;

/// The record's line for the family `prefix0 .. prefix{count-1}`.
fn family_line(prefix: &str, count: usize) -> String {
    format!("{prefix}{{0..{count}}}")
}

/// A family line's prefix and count.
fn parse_family(line: &[u8]) -> Option<(&[u8], usize)> {
    let line = line.strip_suffix(b"}")?;
    let at = line.windows(4).rposition(|w| w == b"{0..")?;
    let (prefix, count) = line.split_at_checked(at)?;
    let count = std::str::from_utf8(count.get(4..)?).ok()?.parse().ok()?;
    Some((prefix, count))
}

impl<S: SharedStore> Registered<S> {
    pub fn new(inner: S) -> Self {
        Registered {
            inner,
            known: RefCell::new(Vec::new()),
            known_hashes: RefCell::new(fnv::FnvHashSet::default()),
            families: RefCell::new(Vec::new()),
            repair_ticks: Cell::new(0),
        }
    }

    /// Adds the lines `wanted` says are missing to the record, in one read-modify-write per
    /// attempt (re-reading after each write: a missing record is written by every racer, and
    /// only the last write survives). `wanted(record)` returns the lines to add and the
    /// lines to drop. `false` if the store failed.
    fn update(&self, wanted: &Wanted<'_>) -> bool {
        self.repair_ticks.set(REPAIR_TICKS);
        for _ in 0..MAX_ATTEMPTS {
            let (record, cas) = match self.inner.get(keys::REGISTRY) {
                Ok(Some((bytes, cas))) => (bytes, cas),
                Ok(None) => (Vec::new(), 0),
                Err(_) => return false,
            };
            let (add, drop) = wanted(&record);
            if add.is_empty() {
                return true;
            }
            let mut out =
                Vec::with_capacity(record.len() + add.iter().map(|l| l.len() + 1).sum::<usize>());
            for line in lines(&record).filter(|l| !drop.iter().any(|d| d == l)) {
                if !out.is_empty() {
                    out.push(b'\n');
                }
                out.extend_from_slice(line);
            }
            for line in &add {
                if !out.is_empty() {
                    out.push(b'\n');
                }
                out.extend_from_slice(line.as_bytes());
            }
            match self.inner.set(keys::REGISTRY, &out, cas) {
                Ok(()) | Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Host(_)) => return false,
            }
        }
        false
    }

    /// Records every key of `keys` not recorded yet, in one write of the record.
    pub fn register_all<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        let fresh: Vec<&str> = {
            let known = self.known_hashes.borrow();
            let fresh = keys.into_iter().filter(|k| !k.contains('\n'));
            fresh.filter(|k| !known.contains(&hash(k.as_bytes()))).collect()
        };
        if fresh.is_empty() {
            return;
        }
        let ok = self.update(&|record| {
            let present = hashes(record);
            let add = fresh.iter().filter(|k| !present.contains(&hash(k.as_bytes())));
            (add.map(|k| k.to_string()).collect(), Vec::new())
        });
        if ok {
            self.known_hashes.borrow_mut().extend(fresh.iter().map(|k| hash(k.as_bytes())));
            self.known.borrow_mut().extend(fresh.iter().map(|k| k.to_string()));
        }
    }

    /// Records the numbered family `prefix0 .. prefix{count-1}` as one line, replacing a
    /// smaller one; later writes of its keys need no registration.
    pub fn reserve_family(&self, prefix: &str, count: usize) {
        if self.family_covers(prefix, count.saturating_sub(1)) || prefix.contains('\n') {
            return;
        }
        let line = family_line(prefix, count);
        let ok = self.update(&|record| {
            let mut drop = Vec::new();
            for l in lines(record) {
                if let Some((p, c)) = parse_family(l) {
                    if p == prefix.as_bytes() {
                        if c >= count {
                            return (Vec::new(), Vec::new());
                        }
                        drop.push(l.to_vec());
                    }
                }
            }
            (vec![line.clone()], drop)
        });
        if ok {
            let mut families = self.families.borrow_mut();
            families.retain(|(p, _)| p != prefix);
            families.push((prefix.to_string(), count));
        }
    }

    /// Whether a reserved family holds key `prefix{index}`.
    fn family_covers(&self, prefix: &str, index: usize) -> bool {
        self.families.borrow().iter().any(|(p, c)| p == prefix && index < *c)
    }

    /// Whether `key` is a member of a reserved family.
    fn in_family(&self, key: &str) -> bool {
        self.families.borrow().iter().any(|(p, c)| {
            key.strip_prefix(p.as_str())
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n < *c)
        })
    }

    /// Re-records the keys this VM recorded that the record has lost. Creating the record is
    /// a blind write (a missing key has no CAS to guard it): when two VMs create it at once,
    /// the later write can drop an entry the other had already confirmed. Called on every
    /// tick; checks (one read) only during [`REPAIR_TICKS`] ticks after this VM's last
    /// registration, when that race can have happened; otherwise no host call.
    pub fn repair(&self) {
        let left = self.repair_ticks.get();
        if left == 0 {
            return;
        }
        self.repair_ticks.set(left - 1);
        let record = match self.inner.get(keys::REGISTRY) {
            Ok(Some((bytes, _))) => bytes,
            Ok(None) => Vec::new(),
            Err(_) => return,
        };
        let present = hashes(&record);
        let missing: Vec<String> = {
            let known = self.known.borrow();
            let families = self.families.borrow();
            let keys = known.iter().cloned();
            let lines = families.iter().map(|(p, c)| family_line(p, *c));
            keys.chain(lines).filter(|k| !present.contains(&hash(k.as_bytes()))).collect()
        };
        if missing.is_empty() {
            return;
        }
        self.update(&|record| {
            let present = hashes(record);
            let add = missing.iter().filter(|k| !present.contains(&hash(k.as_bytes())));
            (add.cloned().collect(), Vec::new())
        });
    }
}

impl<S: SharedStore> SharedStore for Registered<S> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        // A key with a line break cannot be recorded; the filter's keys have none.
        let known = self.known_hashes.borrow().contains(&hash(key.as_bytes()));
        if !known && !self.in_family(key) && !key.contains('\n') {
            self.register_all([key]);
        }
        self.inner.set(key, value, cas)
    }
}

/// A key's 64-bit hash: the record's lines and the known keys are compared by it (a collision,
/// odds 2^-64 per pair, would leave one key out of the footprint, nothing else).
fn hash(key: &[u8]) -> u64 {
    crate::hash_key::hash(key)
}

/// The hashes of the record's lines.
fn hashes(record: &[u8]) -> fnv::FnvHashSet<u64> {
    lines(record).map(hash).collect()
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
    let mut count = |key: &str| {
        if let Ok(Some((value, _))) = store.get(key) {
            f.keys += 1;
            f.bytes += (key.len() + value.len()) as u64;
        }
    };
    for line in lines(&record) {
        match parse_family(line) {
            Some((prefix, n)) => {
                let Ok(prefix) = std::str::from_utf8(prefix) else { continue };
                (0..n.min(crate::backend::MAX_BACKENDS))
                    .for_each(|i| count(&format!("{prefix}{i}")));
            }
            None => {
                let Ok(key) = std::str::from_utf8(line) else { continue };
                count(key);
            }
        }
    }
    Some(f)
}

#[cfg(test)]
mod tests;
