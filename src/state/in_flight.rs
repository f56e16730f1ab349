//! Requests in flight per backend, counted across every worker VM of the proxy, and healed
//! when a VM dies holding some. One shared-data value per backend (and one for the pool when
//! bounded load needs the total) holds each router's own count as an entry `(owner, count)`.
//! A router writes only its entry, set to the count it holds in memory, with compare-and-swap
//! (one read and one write per change), so concurrent workers never lose an update and a lost
//! entry is whole again at its owner's next write. A reader sums the entries of live owners
//! ([`owners`]: a heartbeat list read on the tick and kept in memory, so no host call is added
//! per request); a writer drops the entries of dead ones. A VM that dies holding requests
//! (FAIL_RELOAD: its streams never reach `on_log`) stops counting [`owners::TTL_NS`] (3 s)
//! after its last heartbeat, as seen by each reader at its next tick.
//!
//! Value format (versioned): `[2u8][n × (owner u64, count u32)]`, little-endian, no entry of
//! count 0, n ≤ [`owners::MAX_OWNERS`]: an owner that finds no room is not written (its
//! requests are under-counted, never over) until an entry frees. Version 1 (`[1u8, count
//! u64]`, a count of no owner, which could never heal) and anything unreadable read as no
//! entries and are replaced at the next write. Keys name the backend by id and address, so a
//! config reload that keeps a backend keeps its count, and one that changes its address starts
//! a fresh one.
//!
//! A missing key is written without a CAS check (Envoy's rule), so counters are created at
//! configure time ([`InFlight::start`]); should two workers still create one at the same
//! instant, the entry lost is restored by its owner's next write.

pub mod owners;

use super::{keys, SharedStore, StoreError};
use crate::backend::Pool;
use crate::lb::LoadView;
use owners::{Live, MAX_OWNERS};

const VERSION: u8 = 2;
/// Bytes of one entry: owner u64, count u32.
const ENTRY: usize = 12;
/// CAS attempts before giving up on one change (each failure means another worker wrote); the
/// next change writes the whole count again.
const MAX_ATTEMPTS: usize = 32;

/// One pool's counters, and this router's part in them.
#[derive(Debug, Clone)]
pub struct InFlight {
    keys: Vec<String>,
    total_key: Option<String>,
    owners_key: String,
    /// This router's owner id, once registered ([`InFlight::start`], else a later tick).
    me: Option<u64>,
    /// Random low bits of the owner id.
    salt: u32,
    /// Whose entries count, as of the last tick.
    live: Live,
    /// The highest owner seq seen, kept over an unreadable list (seqs never go down).
    seq_seen: u32,
    /// When this router last renewed its heartbeat (its own clock).
    beat_ns: Option<u64>,
    /// Requests this router holds, per backend and in all: what its entries say.
    held: Vec<u32>,
    held_total: u32,
}

/// The entries of a counter value (none for another version or a malformed value).
fn entries(bytes: &[u8]) -> impl Iterator<Item = (u64, u32)> + '_ {
    let rest = match bytes {
        [VERSION, rest @ ..] if rest.len() % ENTRY == 0 => rest,
        _ => &[],
    };
    rest.chunks_exact(ENTRY).take(MAX_OWNERS).filter_map(|e| {
        let (owner, count) = e.split_at_checked(8)?;
        Some((
            u64::from_le_bytes(owner.try_into().ok()?),
            u32::from_le_bytes(count.try_into().ok()?),
        ))
    })
}

/// The value with `me`'s entry set to `count` and the entries that do not count dropped.
fn rewritten(bytes: &[u8], me: u64, count: u32, live: &Live) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len().max(1) + ENTRY);
    out.push(VERSION);
    let kept = entries(bytes).filter(|&(o, c)| o != me && c > 0 && live.counts(o));
    let mine = (count > 0).then_some((me, count));
    for (owner, count) in kept.chain(mine).take(MAX_OWNERS) {
        out.extend_from_slice(&owner.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
    }
    out
}

impl InFlight {
    /// Counters for `pool` under the namespace `cluster`; `with_total` also keeps the pool's
    /// total (one more shared write per change; only bounded load reads it). Until
    /// [`InFlight::start`] it only reads, counting every entry.
    pub fn new(cluster: &str, pool: &Pool, with_total: bool) -> Self {
        InFlight {
            keys: pool.iter().map(|b| keys::in_flight(cluster, b)).collect(),
            total_key: with_total.then(|| keys::in_flight_total(cluster)),
            owners_key: keys::in_flight_owners(cluster),
            me: None,
            salt: 0,
            live: Live::default(),
            seq_seen: 0,
            beat_ns: None,
            held: vec![0; pool.len()],
            held_total: 0,
        }
    }

    /// The keys of the per-backend counters (and of the total, if kept), to register at once.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().chain(self.total_key.iter()).map(String::as_str)
    }

    /// At configure time, before this router steers anything: creates the counters that do
    /// not exist yet (so that changes find a key and are guarded by CAS) and registers this
    /// router as an owner (`seed` differs per VM).
    pub fn start(&mut self, store: &dyn SharedStore, seed: u64, now_ns: u64) {
        for key in self.keys.iter().chain(self.total_key.iter()) {
            if let Ok(None) = store.get(key) {
                let _ = store.set(key, &[VERSION], 0);
            }
        }
        self.salt = u32::try_from(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32).unwrap_or(0);
        self.heartbeat(store, now_ns);
    }

    /// The pool changed to `pool` (a discovery snapshot); `moved[i]` is the new index of old
    /// backend `i`, if it stays. Counts held on backends that stay move with them; this
    /// router's entries for backends that left are cleared (their keys may be reused for
    /// another endpoint later); counters of new backends are created.
    pub fn repool(
        &mut self,
        store: &dyn SharedStore,
        cluster: &str,
        pool: &Pool,
        moved: &[Option<usize>],
    ) {
        let keys: Vec<String> = pool.iter().map(|b| keys::in_flight(cluster, b)).collect();
        let mut held = vec![0u32; keys.len()];
        for (old, (&count, key)) in self.held.iter().zip(&self.keys).enumerate() {
            match moved.get(old).copied().flatten().and_then(|i| held.get_mut(i)) {
                Some(h) => *h = count,
                None if count > 0 => {
                    self.write(store, key, 0);
                }
                None => {}
            }
        }
        for key in &keys {
            if let Ok(None) = store.get(key) {
                let _ = store.set(key, &[VERSION], 0);
            }
        }
        self.held_total = held.iter().fold(0u32, |t, &c| t.saturating_add(c));
        if let Some(key) = &self.total_key {
            self.write(store, key, self.held_total);
        }
        self.keys = keys;
        self.held = held;
    }

    /// On every tick: renews this router's heartbeat when [`owners::BEAT_NS`] has passed (or
    /// the clock went back), else reads who is alive. One read, plus one write and one read
    /// per beat.
    pub fn tick(&mut self, store: &dyn SharedStore, now_ns: u64) {
        let due = self.beat_ns.is_none_or(|b| now_ns < b || now_ns - b >= owners::BEAT_NS);
        if due || self.me.is_none() {
            self.heartbeat(store, now_ns);
        } else if let Some(live) = owners::read(store, &self.owners_key, now_ns) {
            self.see(live);
        }
    }

    fn see(&mut self, live: Live) {
        self.seq_seen = self.seq_seen.max(live.seq());
        self.live = live;
    }

    fn heartbeat(&mut self, store: &dyn SharedStore, now_ns: u64) {
        let beat = owners::beat(store, &self.owners_key, self.me, self.salt, self.seq_seen, now_ns);
        let Some(beat) = beat else {
            // The store failed or the list is full: try again next tick.
            if let Some(live) = owners::read(store, &self.owners_key, now_ns) {
                self.see(live);
            }
            return;
        };
        let rewrite = beat.lapsed || self.me != Some(beat.owner);
        self.me = Some(beat.owner);
        self.see(beat.live);
        self.beat_ns = Some(now_ns);
        if rewrite {
            // Others may have dropped this router's entries as dead (or it was never written):
            // write every count it holds.
            for (key, &count) in self.keys.iter().zip(&self.held) {
                if count > 0 {
                    self.write(store, key, count);
                }
            }
            if let (Some(key), true) = (&self.total_key, self.held_total > 0) {
                self.write(store, key, self.held_total);
            }
        }
    }

    /// Adds `delta` to the requests this router holds on backend `index` (never below zero)
    /// and writes its entries (backend, and total); returns the change applied (`None`: no
    /// such backend).
    pub fn add(&mut self, store: &dyn SharedStore, index: usize, delta: i64) -> Option<i64> {
        let held = self.held.get_mut(index)?;
        let before = *held;
        let step = u32::try_from(delta.unsigned_abs()).unwrap_or(u32::MAX);
        let after =
            if delta >= 0 { before.saturating_add(step) } else { before.saturating_sub(step) };
        *held = after;
        let applied = i64::from(after) - i64::from(before);
        if applied == 0 {
            return Some(0);
        }
        let step = after.abs_diff(before);
        self.held_total = if applied > 0 {
            self.held_total.saturating_add(step)
        } else {
            self.held_total.saturating_sub(step)
        };
        if let Some(key) = self.keys.get(index) {
            self.write(store, key, after);
        }
        if let Some(key) = &self.total_key {
            self.write(store, key, self.held_total);
        }
        Some(applied)
    }

    /// Sets this router's entry of `key` to `count` (nothing before it is registered).
    fn write(&self, store: &dyn SharedStore, key: &str, count: u32) -> bool {
        let Some(me) = self.me else { return false };
        for _ in 0..MAX_ATTEMPTS {
            let (bytes, cas) = match store.get(key) {
                Ok(Some(found)) => found,
                Ok(None) => (Vec::new(), 0),
                Err(_) => return false,
            };
            match store.set(key, &rewritten(&bytes, me, count, &self.live), cas) {
                Ok(()) => return true,
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Host(_)) => return false,
            }
        }
        false
    }

    /// The requests in flight on backend `index`: the entries of live owners.
    pub fn get(&self, store: &dyn SharedStore, index: usize) -> u64 {
        self.keys.get(index).map_or(0, |k| self.read(store, k))
    }

    /// The pool's total (0 when not kept).
    pub fn total(&self, store: &dyn SharedStore) -> u64 {
        self.total_key.as_deref().map_or(0, |k| self.read(store, k))
    }

    fn read(&self, store: &dyn SharedStore, key: &str) -> u64 {
        let Ok(Some((bytes, _))) = store.get(key) else { return 0 };
        entries(&bytes)
            .filter(|&(o, _)| Some(o) == self.me || self.live.counts(o))
            .map(|(_, c)| u64::from(c))
            .sum()
    }

    /// A [`LoadView`] over these counters.
    pub fn view<'a>(&'a self, store: &'a dyn SharedStore) -> InFlightView<'a> {
        InFlightView { counters: self, store }
    }
}

/// Reads counters on demand: each call is one shared-data read.
pub struct InFlightView<'a> {
    counters: &'a InFlight,
    store: &'a dyn SharedStore,
}

impl LoadView for InFlightView<'_> {
    fn in_flight(&mut self, index: usize) -> u64 {
        self.counters.get(self.store, index)
    }

    fn total_in_flight(&mut self) -> u64 {
        self.counters.total(self.store)
    }
}

#[cfg(test)]
mod tests;
