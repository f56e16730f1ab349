//! Which routers (owners) of a pool are alive, for the in-flight counters: one shared-data value
//! per pool lists each owner with its last heartbeat, renewed on its tick at most every
//! [`BEAT_NS`] with CAS. An owner whose heartbeat is older than [`TTL_NS`] is dead: its counts
//! no longer count, and any renewal drops its record.
//!
//! Value format (versioned): `[1u8][seq u32][n × (owner u64, beat_ns u64)]`, little-endian,
//! n ≤ [`MAX_OWNERS`]. An owner id is `seq << 32 | random`, `seq` taken from the value (one more
//! per registration, never lower than any seq seen). So a reader tells an owner registered
//! after its last read (higher seq: counted) from a dead one whose record was dropped (not).
//!
//! Clock: heartbeats are the host's wall clock. One in the future (the clock stepped back)
//! counts as fresh, and every renewal clamps it to its own now, so a dead owner counts at most
//! [`BEAT_NS`] + [`TTL_NS`] after a step back. After a step forward every heartbeat looks old
//! until renewed (within [`BEAT_NS`]); an owner that finds itself dropped or expired is told so
//! ([`Beat::lapsed`]) and rewrites its counts.

use super::super::{SharedStore, StoreError};

pub const VERSION: u8 = 1;
/// Owners listed at most; past it a new owner is not registered (its holds are not counted)
/// until a record expires.
pub const MAX_OWNERS: usize = 128;
/// How often an owner renews its heartbeat.
pub const BEAT_NS: u64 = 1_000_000_000;
/// A heartbeat older than this is dead: three beats, so two missed renewals (a stalled worker)
/// do not drop an owner that lives.
pub const TTL_NS: u64 = 3 * BEAT_NS;
const MAX_ATTEMPTS: usize = 16;
const RECORD: usize = 16;

/// The decoded value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct List {
    seq: u32,
    /// (owner, beat_ns)
    records: Vec<(u64, u64)>,
}

fn decode(bytes: &[u8]) -> Option<List> {
    let [VERSION, s0, s1, s2, s3, rest @ ..] = bytes else { return None };
    if rest.len() % RECORD != 0 || rest.len() / RECORD > MAX_OWNERS {
        return None;
    }
    let seq = u32::from_le_bytes([*s0, *s1, *s2, *s3]);
    let records = rest
        .chunks_exact(RECORD)
        .filter_map(|r| {
            let (owner, beat) = r.split_at_checked(8)?;
            Some((
                u64::from_le_bytes(owner.try_into().ok()?),
                u64::from_le_bytes(beat.try_into().ok()?),
            ))
        })
        .collect();
    Some(List { seq, records })
}

fn encode(list: &List) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + RECORD * list.records.len());
    out.push(VERSION);
    out.extend_from_slice(&list.seq.to_le_bytes());
    for (owner, beat) in &list.records {
        out.extend_from_slice(&owner.to_le_bytes());
        out.extend_from_slice(&beat.to_le_bytes());
    }
    out
}

/// The seq part of an owner id.
fn seq_of(owner: u64) -> u32 {
    u32::try_from(owner >> 32).unwrap_or(u32::MAX)
}

fn fresh(beat_ns: u64, now_ns: u64) -> bool {
    now_ns.saturating_sub(beat_ns) <= TTL_NS
}

/// Whose counts to read, as of the last read of the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// The list's seq: owners with a higher one registered since (counted).
    seq: u32,
    /// Owners with a fresh heartbeat, sorted.
    fresh: Vec<u64>,
}

impl Live {
    fn of(list: &List, now_ns: u64) -> Self {
        let mut fresh: Vec<u64> =
            list.records.iter().filter(|&&(_, b)| fresh(b, now_ns)).map(|&(o, _)| o).collect();
        fresh.sort_unstable();
        Live { seq: list.seq, fresh }
    }

    /// Whether `owner`'s counts count. Before any read of the list (seq 0) every owner does.
    pub fn counts(&self, owner: u64) -> bool {
        seq_of(owner) > self.seq || self.fresh.binary_search(&owner).is_ok()
    }

    /// The highest seq seen.
    pub fn seq(&self) -> u32 {
        self.seq
    }
}

/// The list as found now; `None` if the store failed. A missing or unreadable value tells
/// nothing: every owner counts.
pub fn read(store: &dyn SharedStore, key: &str, now_ns: u64) -> Option<Live> {
    match store.get(key) {
        Ok(Some((bytes, _))) => {
            Some(decode(&bytes).map_or_else(Live::default, |l| Live::of(&l, now_ns)))
        }
        Ok(None) => Some(Live::default()),
        Err(_) => None,
    }
}

/// The result of one [`beat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    pub owner: u64,
    /// The list after the renewal.
    pub live: Live,
    /// The owner's record had expired or been dropped: others may have dropped its counts.
    pub lapsed: bool,
}

/// Renews `owner`'s heartbeat to `now_ns` (registers a new owner with random low bits `salt`
/// when `None`), dropping expired records and clamping future ones to `now_ns`, and confirms
/// it by re-reading. `floor_seq`: the highest seq seen before (seq never goes down, even over
/// an unreadable value). `None` when the store failed or the list is full.
pub fn beat(
    store: &dyn SharedStore,
    key: &str,
    owner: Option<u64>,
    salt: u32,
    floor_seq: u32,
    now_ns: u64,
) -> Option<Beat> {
    // The id written by the last successful set, to confirm by re-reading.
    let mut written = None;
    let mut lapsed = false;
    for _ in 0..MAX_ATTEMPTS {
        let (list, cas) = match store.get(key) {
            Ok(Some((bytes, cas))) => (decode(&bytes).unwrap_or_default(), cas),
            Ok(None) => (List::default(), 0),
            Err(_) => return None,
        };
        if let Some(id) = written {
            if list.records.iter().any(|&(o, _)| o == id) {
                return Some(Beat { owner: id, live: Live::of(&list, now_ns), lapsed });
            }
        }
        let mut next = List {
            seq: list.seq.max(floor_seq),
            records: list
                .records
                .iter()
                .filter(|&&(_, b)| fresh(b, now_ns))
                .map(|&(o, b)| (o, b.min(now_ns)))
                .collect(),
        };
        // A registration that lost a race takes the next seq on its next try.
        let id = match owner {
            Some(id) => id,
            None => (u64::from(next.seq.checked_add(1)?) << 32) | u64::from(salt),
        };
        next.seq = next.seq.max(seq_of(id));
        let room = next.records.len() < MAX_OWNERS;
        match next.records.iter_mut().find(|(o, _)| *o == id) {
            Some(record) => record.1 = now_ns,
            None if room => {
                lapsed |= owner.is_some();
                next.records.push((id, now_ns));
            }
            None => return None,
        }
        written = match store.set(key, &encode(&next), cas) {
            Ok(()) => Some(id),
            Err(StoreError::CasMismatch) => None,
            Err(StoreError::Host(_)) => return None,
        };
    }
    None
}

#[cfg(test)]
mod tests;
