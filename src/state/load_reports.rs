//! Load reports shared by every worker VM ([`crate::lb::reports`]): the pool is cut into shards
//! of [`SHARD`] backends by pool index, one shared-data value per shard. A worker writes the
//! shards of the backends it got reports from since its last tick (read, merge, CAS write), at
//! most [`MAX_WRITES_PER_TICK`] shards a tick; every worker reads all shards once per sync
//! period and takes what is newer. So a report costs nothing on the request path beyond its
//! parse, a tick O(shards written), and a sync O(N / SHARD) host calls plus O(N) merging; a
//! shard whose CAS token did not change since the last read is not decoded again.
//!
//! Value format, version 1 (little-endian): `[1u8]` then per backend of the shard, in pool
//! order, `[key hash u64][at u64][rps f64][utilization f64][eps f64][weight u32]
//! [non_empty_since u64][last_update u64][metric f64][metric_at u64][in_flight_at u64]`. Each entry carries the
//! hash of its backend's key ([`crate::state::keys::backend`]), so after a pool change an entry
//! written for another backend at that index is ignored (and overwritten). Another version,
//! a length that is not a whole number of entries, and non-finite numbers read as no entry.

use super::{keys, SharedStore};
use crate::lb::reports::{BackendLoad, LoadTable};

/// Backends per shard.
pub const SHARD: usize = 64;
const VERSION: u8 = 1;
const ENTRY: usize = 8 * 10 + 4;
/// Shards written per tick at most; the rest wait for the next tick.
pub const MAX_WRITES_PER_TICK: usize = 32;
/// CAS attempts for one shard write before it is left for the next tick.
const MAX_ATTEMPTS: usize = 8;

/// This VM's part: the shard keys and the CAS token of each shard as last read.
#[derive(Debug, Clone)]
pub struct SharedReports {
    keys: Vec<String>,
    seen: Vec<u32>,
    /// The key hash of every backend, in pool order.
    hashes: Vec<u64>,
}

fn shards(backends: usize) -> usize {
    backends.div_ceil(SHARD)
}

fn encode_entry(out: &mut Vec<u8>, hash: u64, e: &BackendLoad) {
    out.extend_from_slice(&hash.to_le_bytes());
    out.extend_from_slice(&e.at.to_le_bytes());
    for v in [e.rps, e.utilization, e.eps] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&e.weight.to_le_bytes());
    out.extend_from_slice(&e.non_empty_since.to_le_bytes());
    out.extend_from_slice(&e.last_update.to_le_bytes());
    out.extend_from_slice(&e.metric.to_le_bytes());
    out.extend_from_slice(&e.metric_at.to_le_bytes());
    out.extend_from_slice(&e.in_flight_at.to_le_bytes());
}

/// Reads little-endian fields off the front of a slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_le_bytes(*head))
    }
    fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_le_bytes(*head))
    }
    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_bits(self.u64()?)).filter(|v| v.is_finite())
    }
}

fn decode_entry(bytes: &[u8]) -> Option<(u64, BackendLoad)> {
    let mut r = Reader(bytes);
    let hash = r.u64()?;
    let e = BackendLoad {
        at: r.u64()?,
        rps: r.f64()?,
        utilization: r.f64()?,
        eps: r.f64()?,
        weight: r.u32()?,
        non_empty_since: r.u64()?,
        last_update: r.u64()?,
        metric: r.f64()?,
        metric_at: r.u64()?,
        in_flight_at: r.u64()?,
    };
    Some((hash, e))
}

/// The entries of a shard value, by position in the shard; none for a value of another format.
pub fn decode(bytes: &[u8]) -> impl Iterator<Item = (usize, u64, BackendLoad)> + '_ {
    let body = match bytes.split_first() {
        Some((&VERSION, body)) if body.len() % ENTRY == 0 && body.len() / ENTRY <= SHARD => body,
        _ => &[],
    };
    body.chunks_exact(ENTRY)
        .enumerate()
        .filter_map(|(j, chunk)| decode_entry(chunk).map(|(h, e)| (j, h, e)))
}

impl SharedReports {
    /// `hashes`: the key hash of every backend of the pool, in order.
    pub fn new(cluster: &str, hashes: Vec<u64>) -> Self {
        let n = shards(hashes.len());
        let keys = (0..n).map(|s| keys::load_reports(cluster, s)).collect();
        SharedReports { keys, seen: vec![0; n], hashes }
    }

    /// The prefix and count of the shard keys (one registry line).
    pub fn family(&self, cluster: &str) -> (String, usize) {
        (keys::load_reports_prefix(cluster), self.keys.len())
    }

    /// Writes the shards of `table`'s backends with unshared reports, merged into what the
    /// shard holds; backends left for later are marked again.
    pub fn publish(&mut self, store: &dyn SharedStore, table: &mut LoadTable, expired_before: u64) {
        let dirty = table.take_dirty();
        if dirty.is_empty() {
            return;
        }
        // `u64`s: the sort instantiation the filter already has.
        let mut by_shard: Vec<u64> = dirty.iter().map(|&i| u64::from(i) / SHARD as u64).collect();
        by_shard.sort_unstable();
        by_shard.dedup();
        let (now, later) = by_shard.split_at(by_shard.len().min(MAX_WRITES_PER_TICK));
        let mut failed = later.to_vec();
        for &shard in now {
            if !self.write(store, table, shard as usize, &dirty, expired_before) {
                failed.push(shard);
            }
        }
        for i in dirty {
            if failed.contains(&(u64::from(i) / SHARD as u64)) {
                table.retry(i as usize);
            }
        }
    }

    /// One shard's read-merge-write; whether it was written.
    fn write(
        &mut self,
        store: &dyn SharedStore,
        table: &LoadTable,
        shard: usize,
        dirty: &[u32],
        expired_before: u64,
    ) -> bool {
        let Some(key) = self.keys.get(shard) else { return false };
        let first = shard * SHARD;
        let count = self.hashes.len().saturating_sub(first).min(SHARD);
        for _ in 0..MAX_ATTEMPTS {
            let Ok(found) = store.get(key) else { return false };
            let (bytes, cas) = found.unwrap_or_default();
            let mut merged: Vec<BackendLoad> = vec![BackendLoad::default(); count];
            for (j, hash, e) in decode(&bytes) {
                let ours = self.hashes.get(first + j) == Some(&hash);
                if let (true, Some(slot)) = (ours, merged.get_mut(j)) {
                    *slot = e;
                }
            }
            for &i in dirty.iter().filter(|&&i| i as usize / SHARD == shard) {
                let i = i as usize;
                if let (Some(slot), Some(mine)) = (merged.get_mut(i - first), table.get(i)) {
                    slot.absorb(mine, expired_before);
                }
            }
            let mut out = Vec::with_capacity(1 + count * ENTRY);
            out.push(VERSION);
            for (j, e) in merged.iter().enumerate() {
                encode_entry(&mut out, self.hashes.get(first + j).copied().unwrap_or(0), e);
            }
            match store.set(key, &out, cas) {
                Ok(()) => return true,
                Err(super::StoreError::CasMismatch) => continue,
                Err(_) => return false,
            }
        }
        false
    }

    /// Takes into `table` whatever the shards hold that is newer than it.
    pub fn gather(&mut self, store: &dyn SharedStore, table: &mut LoadTable, expired_before: u64) {
        for (shard, key) in self.keys.iter().enumerate() {
            let Ok(Some((bytes, cas))) = store.get(key) else { continue };
            let Some(seen) = self.seen.get_mut(shard) else { continue };
            if *seen == cas && cas != 0 {
                continue;
            }
            *seen = cas;
            let first = shard * SHARD;
            for (j, hash, e) in decode(&bytes) {
                if self.hashes.get(first + j) != Some(&hash) {
                    continue;
                }
                if let Some(mine) = table.get_mut(first + j) {
                    mine.absorb(&e, expired_before);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
