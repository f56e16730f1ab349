//! The prober lease: one shared-data value `{owner, expires_ns}` naming the single VM of the
//! proxy that runs active checks, taken with CAS and confirmed by re-reading, renewed every
//! tick, free once expired (a dead or replaced VM hands over; an expiry too far ahead to come
//! from a live holder is cut to one TTL, see [`cut`]). Who is probed when is the holder's
//! [`Schedule`](crate::health::schedule::Schedule), the same on every VM.
//!
//! Value format (versioned): `[1u8][owner u64][expires_ns u64]`, little-endian.
//!
//! Envoy writes a missing key whatever the CAS, so two VMs that both found the key missing can
//! both write it, and the later write wins even after the earlier one was confirmed by a
//! re-read. Such a claim is reported as [`LeaseStatus::Created`]: held, but the holder should
//! probe only from its next renewal ([`LeaseStatus::may_probe`]), by which time every
//! concurrent creator has either renewed (the winner) or seen the winner and backed off.
//! Every other write is guarded by the CAS of the value read.

use super::clock::MAX_STEP_NS;
use super::{SharedStore, StoreError};

pub const VERSION: u8 = 1;
/// A lease lasts this many probe intervals without renewal.
pub const TTL_INTERVALS: u64 = 3;

/// Who probes, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub owner: u64,
    pub expires_ns: u64,
}

impl Lease {
    pub fn is_expired(&self, now_ns: u64) -> bool {
        self.expires_ns <= now_ns
    }
}

pub fn encode(lease: Lease) -> [u8; 17] {
    super::encode_pair(VERSION, lease.owner, lease.expires_ns)
}

/// `None` for another version or a malformed value.
pub fn decode(bytes: &[u8]) -> Option<Lease> {
    let (owner, expires_ns) = super::decode_pair(VERSION, bytes)?;
    Some(Lease { owner, expires_ns })
}

/// The lease `owner` should write given the stored one (`None`: missing or undecodable), or
/// `None` when another owner holds an unexpired lease.
pub fn claim(stored: Option<Lease>, owner: u64, now_ns: u64, ttl_ns: u64) -> Option<Lease> {
    match stored {
        Some(l) if l.owner != owner && !l.is_expired(now_ns) => None,
        _ => Some(Lease { owner, expires_ns: now_ns.saturating_add(ttl_ns.max(1)) }),
    }
}

/// Another owner's lease that runs out more than the clock's step bound later than one TTL
/// from now was written on a clock that ran ahead (an older filter before a wall-clock step
/// back, a lost clock key): the same lease cut to one TTL from now, to be written back. A live
/// holder renews it anyway; a dead one's passes on within a TTL instead of when it said.
pub fn cut(stored: Lease, now_ns: u64, ttl_ns: u64) -> Option<Lease> {
    let expires_ns = now_ns.saturating_add(ttl_ns);
    (stored.expires_ns > expires_ns.saturating_add(MAX_STEP_NS))
        .then_some(Lease { owner: stored.owner, expires_ns })
}

/// Whether a confirming re-read shows `owner` holding the lease.
pub fn confirms(stored: Option<Lease>, owner: u64, now_ns: u64) -> bool {
    stored.is_some_and(|l| l.owner == owner && !l.is_expired(now_ns))
}

/// The result of one [`acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStatus {
    /// Held already and extended (CAS-guarded write, confirmed).
    Renewed,
    /// Taken over from an expired or unreadable value (CAS-guarded write, confirmed).
    Taken,
    /// The key was missing and this VM wrote it (confirmed); a concurrent creator may still
    /// overwrite it, so wait for the next renewal before probing.
    Created,
    /// Another VM holds it (or won the race).
    Busy,
    /// The store failed; try again next tick.
    StoreFailed,
}

impl LeaseStatus {
    /// This VM holds the lease after this call.
    #[cfg(test)]
    pub fn is_held(self) -> bool {
        matches!(self, LeaseStatus::Renewed | LeaseStatus::Taken | LeaseStatus::Created)
    }

    /// This VM holds the lease and no concurrent creator can take it silently: probe.
    pub fn may_probe(self) -> bool {
        matches!(self, LeaseStatus::Renewed | LeaseStatus::Taken)
    }
}

fn read(store: &dyn SharedStore, key: &str) -> Result<Option<(Option<Lease>, u32)>, StoreError> {
    Ok(store.get(key)?.map(|(bytes, cas)| (decode(&bytes), cas)))
}

/// Takes, renews or fails to get the lease: read; if missing, expired, unreadable or already
/// `owner`'s, write `{owner, now + ttl}` with the CAS read (0 when missing); then re-read and
/// report it held only if the stored owner is `owner`. Another owner's lease is left as it is,
/// unless it needs a [`cut`].
pub fn acquire(
    store: &dyn SharedStore,
    key: &str,
    owner: u64,
    now_ns: u64,
    ttl_ns: u64,
) -> LeaseStatus {
    acquire_from(store, key, owner, now_ns, ttl_ns).0
}

/// [`acquire`], also returning the lease found before this call's write: for a VM that takes
/// over ([`LeaseStatus::Taken`]), `expires_ns - ttl` of the previous lease is when its holder
/// last renewed it (its last tick), where the new holder's work takes up.
pub fn acquire_from(
    store: &dyn SharedStore,
    key: &str,
    owner: u64,
    now_ns: u64,
    ttl_ns: u64,
) -> (LeaseStatus, Option<Lease>) {
    let (stored, cas) = match read(store, key) {
        Ok(Some((stored, cas))) => (stored, Some(cas)),
        Ok(None) => (None, None),
        Err(_) => return (LeaseStatus::StoreFailed, None),
    };
    (claimed(store, key, owner, now_ns, ttl_ns, stored, cas), stored)
}

fn claimed(
    store: &dyn SharedStore,
    key: &str,
    owner: u64,
    now_ns: u64,
    ttl_ns: u64,
    stored: Option<Lease>,
    cas: Option<u32>,
) -> LeaseStatus {
    let Some(next) = claim(stored, owner, now_ns, ttl_ns) else {
        if let (Some(cut), Some(cas)) = (stored.and_then(|l| cut(l, now_ns, ttl_ns)), cas) {
            let _ = store.set(key, &encode(cut), cas);
        }
        return LeaseStatus::Busy;
    };
    match store.set(key, &encode(next), cas.unwrap_or(0)) {
        Ok(()) => {}
        Err(StoreError::CasMismatch) => return LeaseStatus::Busy,
        Err(StoreError::Host(_)) => return LeaseStatus::StoreFailed,
    }
    match read(store, key) {
        Ok(Some((now_stored, _))) if confirms(now_stored, owner, now_ns) => match (cas, stored) {
            (None, _) => LeaseStatus::Created,
            (Some(_), Some(l)) if l.owner == owner => LeaseStatus::Renewed,
            (Some(_), _) => LeaseStatus::Taken,
        },
        Ok(_) => LeaseStatus::Busy,
        Err(_) => LeaseStatus::StoreFailed,
    }
}

#[cfg(test)]
mod tests;
