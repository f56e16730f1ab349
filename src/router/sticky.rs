//! The router's side of sticky sessions: the signing secrets (configured, or one random
//! per-process secret shared by all workers), finding the backend a valid cookie pins,
//! and deciding, when the response arrives, whether to issue a cookie for the backend that
//! served it.

use super::Router;
use crate::config::Config;
use crate::hash_key;
use crate::state::{keys, SharedStore};
use crate::sticky::{self, CookieAttributes, Secrets};

/// Sticky-session settings of one pool, ready for per-request use.
pub(super) struct StickyState {
    attrs: CookieAttributes,
    /// The first signs; every one verifies. Keyed here, once per configuration.
    secrets: Secrets,
    pool: [u8; 8],
    ttl_s: u64,
    /// The `Set-Cookie` values issued lately, per backend: a cookie names its backend and
    /// expiry second and nothing else, so every new session that a backend serves within one
    /// second gets the same value, signed once. Direct-mapped by pool index
    /// ([`ISSUED_SLOTS`] slots), each value kept with its [`IssuedKey`].
    issued: Vec<Option<(IssuedKey, String)>>,
}

/// What an issued value was for: the backend's pool index, the pool's generation (discovery
/// changes which backend an index is) and the expiry second.
type IssuedKey = (usize, u64, u64);

/// Slots of [`StickyState::issued`]: at most 64 × ~200 bytes.
const ISSUED_SLOTS: usize = 64;

/// What a request's cookie said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StickyTicket {
    /// The backend a valid cookie named (and which was available).
    pub(super) pinned: Option<usize>,
    /// The valid cookie is past half its TTL: re-issue it.
    pub(super) refresh: bool,
}

/// How a request's session cookie counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StickyOutcome {
    /// A valid cookie pinned the request.
    Hit,
    /// No cookie, or a valid one whose backend is gone or unavailable.
    Miss,
    /// Cookies of the name were present and none verified.
    Invalid,
}

const SECRET_LEN: usize = 32;

/// The per-process secret in shared data, created by the first VM that needs it: 256 bits
/// from the OS (WASI `random_get` in the filter). Every VM then reads the stored one, so all
/// workers sign alike. `None` only if no random bytes can be had: then no cookies are issued
/// or honoured (never a guessable secret).
fn shared_secret(store: &dyn SharedStore, cluster: &str) -> Option<Vec<u8>> {
    let key = keys::sticky_secret(cluster);
    if let Ok(Some((bytes, _))) = store.get(&key) {
        if bytes.len() == SECRET_LEN {
            return Some(bytes);
        }
    }
    let mut fresh = vec![0u8; SECRET_LEN];
    getrandom::fill(&mut fresh).ok()?;
    let _ = store.set(&key, &fresh, 0);
    match store.get(&key) {
        Ok(Some((bytes, _))) if bytes.len() == SECRET_LEN => Some(bytes),
        _ => Some(fresh),
    }
}

pub(super) fn state_for(config: &Config, store: &dyn SharedStore) -> Option<StickyState> {
    let s = config.sticky.as_ref()?;
    let secrets = if s.secrets.is_empty() {
        Secrets::new(&[shared_secret(store, &config.cluster)?])
    } else {
        Secrets::new(&s.secrets)
    };
    let attrs = s.cookie_attributes();
    let pool = sticky::pool_identity(&config.cluster, "");
    Some(StickyState { attrs, secrets, pool, ttl_s: s.ttl_s, issued: Vec::new() })
}

impl Router {
    /// Whether steering needs the request's `cookie` header.
    pub fn wants_cookies(&self) -> bool {
        self.sticky.is_some()
    }

    /// The backend the first valid cookie pins, if it may be picked (healthy, not ejected;
    /// draining is fine: valid sessions keep reaching a draining backend).
    /// Also says how the request's cookie counts: a hit (pinned), a miss (none, or its
    /// backend gone or unavailable) or invalid (present but none verified).
    pub(super) fn pinned(
        &mut self,
        cookie_header: Option<&str>,
        now_ns: u64,
    ) -> (StickyTicket, Option<StickyOutcome>) {
        let Some(s) = &mut self.sticky else { return (StickyTicket::default(), None) };
        let Some(header) = cookie_header else {
            return (StickyTicket::default(), Some(StickyOutcome::Miss));
        };
        let now_s = now_ns / 1_000_000_000;
        // The first valid one whose backend may be picked wins; the work is bounded
        // (sticky::MAX_TAGS tags), however many forged cookies the header holds.
        let (ids, availability) = (&self.by_id, &self.availability);
        let (pool, ttl_s) = (s.pool, s.ttl_s);
        let values = hash_key::cookies(header, &s.attrs.name);
        let found = s.secrets.first_valid(values, pool, now_s, |c| {
            let index = *ids.get(c.backend_id.as_str())?;
            availability.as_ref().is_none_or(|a| a.accepts(index)).then(|| StickyTicket {
                pinned: Some(index),
                refresh: sticky::needs_refresh(c.expires_s, ttl_s, now_s),
            })
        });
        match found.accepted {
            Some(ticket) => (ticket, Some(StickyOutcome::Hit)),
            None if found.seen > 0 && found.verified == 0 => {
                (StickyTicket::default(), Some(StickyOutcome::Invalid))
            }
            None => (StickyTicket::default(), Some(StickyOutcome::Miss)),
        }
    }

    /// The `Set-Cookie` to add to a response served by `served`: when the request had no
    /// valid cookie for it, or its cookie is past half its TTL. Signed once per backend and
    /// expiry second ([`StickyState::issued`]).
    pub(super) fn cookie_for(
        &mut self,
        ticket: StickyTicket,
        served: Option<usize>,
        now_ns: u64,
    ) -> Option<String> {
        let s = self.sticky.as_mut()?;
        let served = served?;
        if ticket.pinned == Some(served) && !ticket.refresh {
            return None;
        }
        let backend = self.config.pool.get(served)?;
        let expires_s = (now_ns / 1_000_000_000).saturating_add(s.ttl_s);
        if s.issued.is_empty() {
            s.issued.resize_with(ISSUED_SLOTS, || None);
        }
        let key = (served, self.pool_generation, expires_s);
        let slot = s.issued.get_mut(served % ISSUED_SLOTS)?;
        if let Some((issued, set_cookie)) = slot {
            if *issued == key {
                return Some(set_cookie.clone());
            }
        }
        let value = s.secrets.sign(s.pool, &backend.id, expires_s);
        if value.is_empty() {
            return None;
        }
        let set_cookie = sticky::set_cookie(&s.attrs, &value);
        *slot = Some((key, set_cookie.clone()));
        Some(set_cookie)
    }
}

#[cfg(test)]
mod tests;
