//! The versioned snapshot of the followed cluster that the proxy's one poller shares with
//! every worker, and the poll status beside it.
//!
//! Each endpoint carries a *slot*: a small number the poller assigns, kept while the endpoint
//! stays, that names its per-endpoint shared-data keys (in-flight counters). A removed
//! endpoint's slot is reused only after [`QUARANTINE_NS`] (every worker has rebuilt its pool
//! and released the slot by then), so across any number of rollouts the keys number at most
//! the endpoints present at once plus those removed within one quarantine.
//!
//! Snapshot value, version 1 (integers little-endian):
//! `[1u8][generation u64][count u32]` then per endpoint `[slot u32][weight u32][priority u32]
//! [health u8][address_len u8][address ascii "ip:port"]`, then `[freed u32]` and per freed
//! slot `[slot u32][freed_at_ns u64]`. Endpoints are sorted by address.
//!
//! Status value, version 1: `[1u8][generation u64][last_ok_ns u64][last_poll_ns u64]
//! [failures u32][endpoints u32][error_len u16][error utf-8]` — written after every poll, read
//! by every worker each tick (the snapshot itself only when `generation` moves).
//! Decoding rejects other versions, bad tags, truncated or trailing bytes and more than
//! [`MAX_BACKENDS`] endpoints; it never panics.

use std::net::SocketAddr;

use super::{Endpoint, EnvoyHealth};
use crate::backend::MAX_BACKENDS;
use crate::MS;

const VERSION: u8 = 1;
/// How long a removed endpoint's slot stays unused.
pub const QUARANTINE_NS: u64 = 10_000 * MS;
/// Longest error text kept in the status.
const MAX_ERROR_LEN: usize = 240;

/// One endpoint and its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slotted {
    pub slot: u32,
    pub endpoint: Endpoint,
}

/// The followed cluster as one poll saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Goes up by one with every change of the endpoints (0: none yet).
    pub generation: u64,
    /// Sorted by address, addresses distinct.
    pub endpoints: Vec<Slotted>,
    /// Slots of removed endpoints and when they were removed.
    pub freed: Vec<(u32, u64)>,
}

impl Snapshot {
    /// The snapshot after a poll that found `endpoints` at `now_ns`: `None` when nothing
    /// changed (same addresses, weights, priorities and health). Endpoints that stay keep
    /// their slot; new ones take the lowest slot out of quarantine, else the next unused one.
    pub fn next(&self, mut endpoints: Vec<Endpoint>, now_ns: u64) -> Option<Snapshot> {
        endpoints.sort_by_key(|e| e.address);
        endpoints.dedup_by_key(|e| e.address);
        endpoints.truncate(MAX_BACKENDS);
        let same = endpoints.len() == self.endpoints.len()
            && endpoints.iter().zip(&self.endpoints).all(|(a, b)| *a == b.endpoint);
        if same && self.generation > 0 {
            return None;
        }
        let old: fnv::FnvHashMap<SocketAddr, u32> =
            self.endpoints.iter().map(|s| (s.endpoint.address, s.slot)).collect();
        let kept: fnv::FnvHashSet<SocketAddr> = endpoints.iter().map(|e| e.address).collect();
        let mut freed: Vec<(u32, u64)> = self.freed.clone();
        freed.extend(
            self.endpoints
                .iter()
                .filter(|s| !kept.contains(&s.endpoint.address))
                .map(|s| (s.slot, now_ns)),
        );
        // Free slots, lowest first among those out of quarantine.
        freed.sort_unstable();
        let mut next_unused = self
            .endpoints
            .iter()
            .map(|s| s.slot)
            .chain(freed.iter().map(|f| f.0))
            .max()
            .map_or(0, |m| m.saturating_add(1));
        let mut slotted = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let slot = match old.get(&endpoint.address) {
                Some(&slot) => slot,
                None => {
                    let reusable = freed
                        .iter()
                        .position(|&(_, at)| now_ns.saturating_sub(at) >= QUARANTINE_NS);
                    match reusable {
                        Some(p) => freed.remove(p).0,
                        None => {
                            let slot = next_unused;
                            next_unused = next_unused.saturating_add(1);
                            slot
                        }
                    }
                }
            };
            slotted.push(Slotted { slot, endpoint });
        }
        Some(Snapshot { generation: self.generation.saturating_add(1), endpoints: slotted, freed })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + self.endpoints.len() * 40 + self.freed.len() * 12);
        out.push(VERSION);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&count(self.endpoints.len()).to_le_bytes());
        for s in &self.endpoints {
            let e = &s.endpoint;
            out.extend_from_slice(&s.slot.to_le_bytes());
            out.extend_from_slice(&e.weight.to_le_bytes());
            out.extend_from_slice(&e.priority.to_le_bytes());
            out.push(health_tag(e.health));
            let address = e.address.to_string();
            out.push(u8::try_from(address.len()).unwrap_or(0));
            out.extend_from_slice(address.as_bytes());
        }
        out.extend_from_slice(&count(self.freed.len()).to_le_bytes());
        for &(slot, at) in &self.freed {
            out.extend_from_slice(&slot.to_le_bytes());
            out.extend_from_slice(&at.to_le_bytes());
        }
        out
    }

    /// `None` for another version or a malformed value.
    pub fn decode(bytes: &[u8]) -> Option<Snapshot> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return None;
        }
        let generation = r.u64()?;
        let n = usize::try_from(r.u32()?).ok().filter(|&n| n <= MAX_BACKENDS)?;
        let mut endpoints = Vec::with_capacity(n.min(bytes.len() / 15));
        for _ in 0..n {
            let slot = r.u32()?;
            let weight = r.u32()?;
            let priority = r.u32()?;
            let health = health_of(r.u8()?)?;
            let len = usize::from(r.u8()?);
            let address = std::str::from_utf8(r.take(len)?).ok()?.parse().ok()?;
            endpoints
                .push(Slotted { slot, endpoint: Endpoint { address, weight, priority, health } });
        }
        let n = usize::try_from(r.u32()?).ok().filter(|&n| n <= MAX_BACKENDS * 16)?;
        let mut freed = Vec::with_capacity(n.min(bytes.len() / 12));
        for _ in 0..n {
            freed.push((r.u32()?, r.u64()?));
        }
        r.0.is_empty().then_some(Snapshot { generation, endpoints, freed })
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

const HEALTH: [EnvoyHealth; 6] = [
    EnvoyHealth::Unknown,
    EnvoyHealth::Healthy,
    EnvoyHealth::Unhealthy,
    EnvoyHealth::Draining,
    EnvoyHealth::Timeout,
    EnvoyHealth::Degraded,
];

fn health_tag(h: EnvoyHealth) -> u8 {
    HEALTH.iter().position(|&x| x == h).and_then(|p| u8::try_from(p).ok()).unwrap_or(0)
}

fn health_of(tag: u8) -> Option<EnvoyHealth> {
    HEALTH.get(usize::from(tag)).copied()
}

/// A cursor over a value being decoded.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// What the last polls found, for every worker's status page and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PollStatus {
    /// The generation of the snapshot published last (0: none yet).
    pub generation: u64,
    /// When a poll last succeeded (wall clock, 0: never).
    pub last_ok_ns: u64,
    /// When the last poll ended, successful or not.
    pub last_poll_ns: u64,
    /// Polls failed in a row.
    pub failures: u32,
    /// Endpoints in the last snapshot.
    pub endpoints: u32,
    /// Why the last poll failed (empty after a success).
    pub error: String,
}

impl PollStatus {
    pub fn encode(&self) -> Vec<u8> {
        let error = cut(&self.error, MAX_ERROR_LEN);
        let mut out = Vec::with_capacity(35 + error.len());
        out.push(VERSION);
        for v in [self.generation, self.last_ok_ns, self.last_poll_ns] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.failures.to_le_bytes());
        out.extend_from_slice(&self.endpoints.to_le_bytes());
        out.extend_from_slice(&u16::try_from(error.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(error.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<PollStatus> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return None;
        }
        let (generation, last_ok_ns, last_poll_ns) = (r.u64()?, r.u64()?, r.u64()?);
        let (failures, endpoints) = (r.u32()?, r.u32()?);
        let len = usize::from(u16::from_le_bytes(r.take(2)?.try_into().ok()?));
        let error = std::str::from_utf8(r.take(len)?).ok()?.to_string();
        r.0.is_empty().then_some(PollStatus {
            generation,
            last_ok_ns,
            last_poll_ns,
            failures,
            endpoints,
            error,
        })
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    s.get(..end).unwrap_or("")
}

#[cfg(test)]
mod tests;
