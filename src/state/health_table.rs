//! The [`HealthTable`] in shared data: one versioned binary value per pool, written with
//! read-modify-write CAS loops ([`modify`]) and read by workers through a [`Snapshot`] that
//! decodes again only when the value's CAS changed.
//!
//! Format, version 1 (integers little-endian):
//! `[1u8][count u32]` then per backend `[key_len u16][key utf-8][flags u8: bit0 healthy]
//! [successes u32][failures u32][errors u32][ejections u32][ejected_until u64]
//! [available_since u64][last_probe u64][last change: tag u8 + payload]`.
//! Change tags: 0 none; 1 unhealthy `[failures u32][failure tag u8 + payload]`; 2 healthy
//! `[successes u32]`; 3 ejected `[duration u64][errors u32][ejection u32]`; 4 returned.
//! Failure tags: 0 timeout `[ms u64]`; 1 status `[u16]`; 2 connect; 3 dispatch.
//! Decoding rejects other versions, unknown tags, invalid UTF-8, truncated or trailing bytes,
//! and more than [`MAX_BACKENDS`] entries; it never panics.

use super::{keys, SharedStore, StoreError};
use crate::backend::MAX_BACKENDS;
use crate::health::{BackendHealth, Change, HealthTable, ProbeFailure};

pub const VERSION: u8 = 1;
/// CAS attempts before giving up on one change (each failure means another writer won).
const MAX_ATTEMPTS: usize = 32;
/// Bytes of an entry with an empty key and no change: the floor used to bound allocation.
const MIN_ENTRY_LEN: usize = 2 + 1 + 4 * 4 + 8 * 3 + 1;

/// Why a value could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Another format version (a newer or older filter wrote it).
    Version(u8),
    /// Truncated, trailing bytes, bad tag, bad UTF-8 or too many entries.
    Malformed,
}

/// The encoded table; `None` if it cannot be represented (a key over 65 535 bytes or more
/// than `u32::MAX` entries).
pub fn encode(table: &HealthTable) -> Option<Vec<u8>> {
    let entries = table.entries();
    let mut out = Vec::with_capacity(5 + entries.len() * (MIN_ENTRY_LEN + 32));
    out.push(VERSION);
    out.extend_from_slice(&u32::try_from(entries.len()).ok()?.to_le_bytes());
    for e in entries {
        out.extend_from_slice(&u16::try_from(e.key.len()).ok()?.to_le_bytes());
        out.extend_from_slice(e.key.as_bytes());
        out.push(u8::from(e.healthy));
        for v in [e.successes, e.failures, e.errors, e.ejections] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [e.ejected_until_ns, e.available_since_ns, e.last_probe_ns] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        encode_change(&mut out, e.last);
    }
    Some(out)
}

fn encode_change(out: &mut Vec<u8>, change: Option<Change>) {
    match change {
        None => out.push(0),
        Some(Change::Unhealthy { failures, last }) => {
            out.push(1);
            out.extend_from_slice(&failures.to_le_bytes());
            match last {
                ProbeFailure::Timeout { ms } => {
                    out.push(0);
                    out.extend_from_slice(&ms.to_le_bytes());
                }
                ProbeFailure::Status(s) => {
                    out.push(1);
                    out.extend_from_slice(&s.to_le_bytes());
                }
                ProbeFailure::Connect => out.push(2),
                ProbeFailure::Dispatch => out.push(3),
            }
        }
        Some(Change::Healthy { successes }) => {
            out.push(2);
            out.extend_from_slice(&successes.to_le_bytes());
        }
        Some(Change::Ejected { duration_ns, errors, ejection }) => {
            out.push(3);
            out.extend_from_slice(&duration_ns.to_le_bytes());
            out.extend_from_slice(&errors.to_le_bytes());
            out.extend_from_slice(&ejection.to_le_bytes());
        }
        Some(Change::Returned) => out.push(4),
    }
}

/// A bounds-checked cursor: every read returns `None` past the end.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let head = self.rest.get(..n)?;
        self.rest = self.rest.get(n..)?;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
}

/// Decodes a value written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<HealthTable, DecodeError> {
    let mut r = Reader { rest: bytes };
    match r.u8() {
        Some(VERSION) => {}
        Some(v) => return Err(DecodeError::Version(v)),
        None => return Err(DecodeError::Malformed),
    }
    let count = usize::try_from(r.u32().ok_or(DecodeError::Malformed)?)
        .map_err(|_| DecodeError::Malformed)?;
    if count > MAX_BACKENDS || count > r.rest.len() / MIN_ENTRY_LEN {
        return Err(DecodeError::Malformed);
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        entries.push(decode_entry(&mut r).ok_or(DecodeError::Malformed)?);
    }
    if !r.rest.is_empty() {
        return Err(DecodeError::Malformed);
    }
    Ok(HealthTable::from_entries(entries))
}

fn decode_entry(r: &mut Reader<'_>) -> Option<BackendHealth> {
    let key_len = usize::from(r.u16()?);
    let key = std::str::from_utf8(r.take(key_len)?).ok()?.to_string();
    let healthy = match r.u8()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    Some(BackendHealth {
        key,
        healthy,
        successes: r.u32()?,
        failures: r.u32()?,
        errors: r.u32()?,
        ejections: r.u32()?,
        ejected_until_ns: r.u64()?,
        available_since_ns: r.u64()?,
        last_probe_ns: r.u64()?,
        last: decode_change(r)?,
    })
}

/// `Some(None)`: no change recorded; `None`: malformed.
fn decode_change(r: &mut Reader<'_>) -> Option<Option<Change>> {
    let change = match r.u8()? {
        0 => return Some(None),
        1 => {
            let failures = r.u32()?;
            let last = match r.u8()? {
                0 => ProbeFailure::Timeout { ms: r.u64()? },
                1 => ProbeFailure::Status(r.u16()?),
                2 => ProbeFailure::Connect,
                3 => ProbeFailure::Dispatch,
                _ => return None,
            };
            Change::Unhealthy { failures, last }
        }
        2 => Change::Healthy { successes: r.u32()? },
        3 => Change::Ejected { duration_ns: r.u64()?, errors: r.u32()?, ejection: r.u32()? },
        4 => Change::Returned,
        _ => return None,
    };
    Some(Some(change))
}

/// The stored table and its CAS; `Ok(None)` when the key is missing or its value does not
/// decode (wrong version, garbage).
pub fn read(store: &dyn SharedStore, key: &str) -> Result<Option<(HealthTable, u32)>, StoreError> {
    Ok(store.get(key)?.and_then(|(bytes, cas)| decode(&bytes).ok().map(|t| (t, cas))))
}

/// Read-modify-write of the stored table under CAS, retried while other writers win (at most
/// 32 attempts). Before `f` runs, the table is aligned to `keys` ([`HealthTable::carry_over`];
/// a missing or undecodable value starts afresh at `now`), so indexes in `f` are the caller's
/// pool indexes. `f` may run several times: only the result of the attempt that was written
/// is returned, so transitions it reports happened exactly once. Nothing is written when the
/// encoded value did not change. `None` when the store kept refusing or failed.
///
/// A missing key is written without a CAS check (Envoy's rule): two writers creating it at the
/// same instant may lose one change; create the table at configure time to narrow this.
pub fn modify<R>(
    store: &dyn SharedStore,
    key: &str,
    keys: &[String],
    now_ns: u64,
    mut f: impl FnMut(&mut HealthTable) -> R,
) -> Option<R> {
    for _ in 0..MAX_ATTEMPTS {
        let (old_bytes, cas) = match store.get(key) {
            Ok(Some((bytes, cas))) => (Some(bytes), cas),
            Ok(None) => (None, 0),
            Err(_) => return None,
        };
        let stored = old_bytes.as_deref().and_then(|b| decode(b).ok());
        let mut table = match stored {
            Some(t) if t.has_keys(keys) => t,
            Some(t) => HealthTable::carry_over(&t, keys, now_ns),
            None => HealthTable::new(keys, now_ns),
        };
        let result = f(&mut table);
        let bytes = encode(&table)?;
        if old_bytes.as_deref() == Some(bytes.as_slice()) {
            return Some(result);
        }
        match store.set(key, &bytes, cas) {
            Ok(()) => {
                bump_version(store, &keys::health_version(key));
                return Some(result);
            }
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Host(_)) => return None,
        }
    }
    None
}

/// Moves the table's version after a write, so readers know to read it again. A lost CAS
/// race means another writer moved it after this write: nothing to retry.
fn bump_version(store: &dyn SharedStore, key: &str) {
    let (count, cas) = match store.get(key) {
        Ok(Some((bytes, cas))) => {
            let count = <[u8; 8]>::try_from(bytes.as_slice()).map_or(0, u64::from_le_bytes);
            (count, cas)
        }
        Ok(None) => (0, 0),
        Err(_) => return,
    };
    let _ = store.set(key, &count.wrapping_add(1).to_le_bytes(), cas);
}

/// A worker's cached copy of the published table, read only when its version moves and
/// decoded only when its CAS changes.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// CAS of the value last seen; `None` when none was seen (or the key was missing).
    cas: Option<u32>,
    table: Option<HealthTable>,
    /// CAS of the version key when the table was last read.
    version: Option<u32>,
}

impl Snapshot {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `key`; decodes only when its CAS differs from the last one seen. Returns whether
    /// the snapshot changed (a new CAS, or the key disappeared). A value that does not decode
    /// leaves no table (`table()` is `None`) and is not decoded again until it changes. A store
    /// error keeps the previous snapshot.
    pub fn refresh(&mut self, store: &dyn SharedStore, key: &str) -> bool {
        match store.get(key) {
            Ok(Some((bytes, cas))) => {
                if self.cas == Some(cas) {
                    return false;
                }
                self.cas = Some(cas);
                self.table = decode(&bytes).ok();
                true
            }
            Ok(None) => {
                let changed = self.cas.is_some() || self.table.is_some();
                self.cas = None;
                self.table = None;
                changed
            }
            Err(_) => false,
        }
    }

    /// As [`Snapshot::refresh`], but first reads the table's small version key: when its CAS
    /// is the one seen at the last read, the table (O(backends) bytes) is not read at all.
    /// Without a version key (a table written by an older filter) the table is read.
    pub fn refresh_versioned(&mut self, store: &dyn SharedStore, key: &str, version: &str) -> bool {
        let seen = match store.get(version) {
            Ok(Some((_, cas))) => Some(cas),
            Ok(None) => None,
            Err(_) => return false,
        };
        if seen.is_some() && seen == self.version && self.cas.is_some() {
            return false;
        }
        let changed = self.refresh(store, key);
        self.version = seen;
        changed
    }

    /// The last decoded table, as published (align it with [`HealthTable::carry_over`] when
    /// its keys are not this worker's).
    pub fn table(&self) -> Option<&HealthTable> {
        self.table.as_ref()
    }

    /// CAS of the value the snapshot reflects.
    #[cfg(test)]
    pub fn cas(&self) -> Option<u32> {
        self.cas
    }
}

#[cfg(test)]
mod tests;
