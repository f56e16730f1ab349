//! The proxy's monotonic clock, for health timing (probe schedule, lease, ejections, slow
//! start). The ABI gives only the wall clock, which NTP may step either way, and the stamps it
//! times are shared by every VM; so the clock is proxy-wide: one anchor `{wall, mono}` in
//! shared data, mono time being `anchor.mono + (wall - anchor.wall)`, counted at most
//! [`MAX_STEP_NS`] past the anchor. Each tick ([`Clock::sync`]) moves the anchor to its wall
//! time (CAS, retried) unless that is behind the anchor: then mono stands still, and a wall
//! clock more than `MAX_STEP_NS` behind (a step back) becomes the new anchor's wall time.
//!
//! Bounds: mono never goes back at a tick; a step back stops it for at most `MAX_STEP_NS`, a
//! step forward (or a pause of the whole proxy) advances it by at most `MAX_STEP_NS`; every VM
//! follows at its next tick. `MAX_STEP_NS` is 1 s, five times the longest tick period (200 ms):
//! every VM ticks and moves the anchor, so only a proxy that stalls for a second is taken for
//! a step (and loses that time). Requests ([`Clock::at`]) use their VM's last anchor under the
//! same bound, with no host call; between two ticks they may run up to a tick ahead of a step
//! back. Value format (versioned): `[1u8][wall_ns u64][mono_ns u64]`, little-endian.

use super::{keys, SharedStore, StoreError};

pub const VERSION: u8 = 1;
use crate::MS;
/// The most this clock moves past its anchor, and the longest it stands still after a step
/// back.
pub const MAX_STEP_NS: u64 = 1_000 * MS;
/// CAS attempts per sync (each failure means another VM moved the anchor).
const MAX_ATTEMPTS: usize = 8;

/// A wall time and the monotonic time it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub wall_ns: u64,
    pub mono_ns: u64,
}

impl Anchor {
    /// Mono time at `wall_ns`: never before the anchor's, at most [`MAX_STEP_NS`] after it.
    pub fn at(self, wall_ns: u64) -> u64 {
        let elapsed = wall_ns.saturating_sub(self.wall_ns).min(MAX_STEP_NS);
        self.mono_ns.saturating_add(elapsed)
    }

    /// The anchor at `wall_ns`, and whether it must be written: this one while the wall clock
    /// is at it or at most [`MAX_STEP_NS`] behind it (a VM that read it a little earlier, or a
    /// small step back), else a new one at `wall_ns`.
    pub fn next(self, wall_ns: u64) -> (Anchor, bool) {
        if wall_ns <= self.wall_ns && self.wall_ns - wall_ns <= MAX_STEP_NS {
            return (self, false);
        }
        (Anchor { wall_ns, mono_ns: self.at(wall_ns) }, true)
    }
}

pub fn encode(a: Anchor) -> [u8; 17] {
    super::encode_pair(VERSION, a.wall_ns, a.mono_ns)
}

/// `None` for another version or a malformed value.
pub fn decode(bytes: &[u8]) -> Option<Anchor> {
    let (wall_ns, mono_ns) = super::decode_pair(VERSION, bytes)?;
    Some(Anchor { wall_ns, mono_ns })
}

/// One VM's view of the proxy's clock.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// The anchor last synced; `None` before the first sync (mono is then the wall time).
    anchor: Option<Anchor>,
}

impl Clock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Mono time at `wall_ns` from this VM's last anchor (per request: no shared access).
    pub fn at(&self, wall_ns: u64) -> u64 {
        self.anchor.map_or(wall_ns, |a| a.at(wall_ns))
    }

    /// Mono time at `wall_ns`, agreed with the other VMs through the shared anchor (per tick).
    /// A missing or unreadable anchor is created from this VM's own clock (the wall clock at
    /// first); when the store fails, this VM goes on alone by the same rules.
    pub fn sync(&mut self, store: &dyn SharedStore, wall_ns: u64) -> u64 {
        for _ in 0..MAX_ATTEMPTS {
            let (stored, cas) = match store.get(keys::CLOCK) {
                Ok(Some((bytes, cas))) => (decode(&bytes), cas),
                Ok(None) => (None, 0),
                Err(_) => break,
            };
            let (anchor, write) = match stored {
                Some(a) => a.next(wall_ns),
                None => (Anchor { wall_ns, mono_ns: self.at(wall_ns) }, true),
            };
            if write {
                match store.set(keys::CLOCK, &encode(anchor), cas) {
                    Ok(()) => {}
                    Err(StoreError::CasMismatch) => continue,
                    Err(StoreError::Host(_)) => break,
                }
            }
            self.anchor = Some(anchor);
            return anchor.at(wall_ns);
        }
        let anchor = match self.anchor {
            Some(a) => a.next(wall_ns).0,
            None => Anchor { wall_ns, mono_ns: wall_ns },
        };
        self.anchor = Some(anchor);
        anchor.at(wall_ns)
    }
}

#[cfg(test)]
mod tests;
