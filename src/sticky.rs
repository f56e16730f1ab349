//! Signed sticky-session cookies: encoding and verification of the cookie value, extraction of
//! its candidates from a `Cookie` header, and rendering of the `Set-Cookie` header. Pure
//! functions with time as an argument; no host call, no panic on any input.
//!
//! # Why signed
//! Envoy's stateful-session cookie is the base64 of the upstream address, NGINX's `sticky
//! cookie` an unsalted MD5 of it and Traefik's a hash of the server name: each can be read (it
//! tells a client the internal address) or forged (a client picks its backend, e.g. to pile load
//! onto one). Here the value names the backend by its configured id, never by its address, is
//! bound to a pool and an expiry, and carries an HMAC-SHA256 tag that only the proxies' secret
//! can produce. The id is not encrypted: base64 hides it from a glance, not from a decoder, so
//! ids should not be secrets (they are config names such as `web-1`).
//!
//! # Value format, version 1
//! The cookie value is the base64url encoding without padding (RFC 4648 §5, non-canonical
//! trailing bits rejected) of these bytes, at most `34 + 64 = 98` bytes (131 characters):
//!
//! | bytes      | field      | meaning                                                        |
//! |------------|------------|----------------------------------------------------------------|
//! | 1          | version    | `1`                                                            |
//! | 8          | pool       | the pool's identity ([`pool_identity`]), so another pool's cookie is rejected |
//! | 1          | id_len     | length of the backend id, 1..=64                               |
//! | id_len     | backend id | the configured id, ASCII `[A-Za-z0-9_.-]`                       |
//! | 8          | expiry     | unix seconds, big-endian; valid while `now < expiry`           |
//! | 16         | mac        | first 16 bytes of HMAC-SHA256(secret, all preceding bytes)     |
//!
//! [`Secrets::verify`] reads the version first (it selects the layout, and a cookie from a
//! future version is reported as [`Invalid::Version`] whatever its tag), then checks the
//! lengths and the pool identity (another cluster on the same site may use the same cookie
//! name: its cookies cost no tag), then the tag in constant time with each secret in turn, and
//! trusts the id and expiry only once a tag matched. Values longer than [`MAX_VALUE_LEN`]
//! characters are rejected undecoded.
//!
//! # Secrets and rotation
//! The first secret signs ([`Secrets::sign`]), every listed secret verifies, and
//! [`Sticky::signed_by`] says which one did: to rotate, put the new secret first and keep the old
//! one listed for one TTL, then remove it. Secrets should be at least 32 random bytes.
//!
//! # Work per request
//! [`Secrets`] keys each secret once, at configuration time (HMAC-SHA256 hashes a key longer
//! than 64 bytes before use): a tag then costs three or four SHA-256 blocks (the cookie's 18
//! to 82 signed bytes, the outer key block, the inner digest), whatever the secret's length. [`Secrets::first_valid`] looks at most at [`MAX_CANDIDATES`] values of a request's
//! cookies, each distinct value once, and computes at most [`MAX_TAGS`] tags in all, newest
//! secret first: the first secret on every value in header order, then the second, and so on.
//! A cookie the proxies issued recently (signed by the first secret) is therefore found behind
//! up to 7 forged ones; one signed by an older secret only while the budget lasts (all 8
//! secrets on 2 values). 8 forged cookies against 8 secrets of 1 KB cost 16 tags instead of 64
//! tags each keyed anew.
//!
//! # Expiry
//! A cookie is valid while `now_s < expires_s`, and expired from `now_s == expires_s` on, as a
//! browser drops a cookie set with `Max-Age=ttl` at `set + ttl`. Expiry slides: [`needs_refresh`]
//! says when to re-issue the cookie (less than half of the TTL left).

use std::fmt;
use std::fmt::Write as _;

/// The format version this module writes and the only one it accepts.
const VERSION: u8 = 1;
/// Bytes of the pool identity.
const POOL_LEN: usize = 8;
/// Bytes before the backend id: version, pool, id_len.
const HEADER_LEN: usize = 1 + POOL_LEN + 1;
/// Bytes of the expiry.
const EXPIRY_LEN: usize = 8;
/// Bytes of the truncated HMAC-SHA256 tag.
const MAC_LEN: usize = 16;
/// Bytes of a value without its backend id.
const FIXED_LEN: usize = HEADER_LEN + EXPIRY_LEN + MAC_LEN;

/// Longest backend id a cookie can carry, in bytes.
pub use crate::backend::MAX_ID_LEN;
/// Longest cookie value [`Secrets::verify`] decodes, in characters; longer ones are `Malformed`.
pub const MAX_VALUE_LEN: usize = 512;
/// Most values of a request's cookies [`Secrets::first_valid`] looks at.
pub const MAX_CANDIDATES: usize = 8;
/// Most tags [`Secrets::first_valid`] computes for one request, whatever the number of
/// cookies and secrets.
pub const MAX_TAGS: usize = 16;

/// A verified cookie: the backend it names, until when, and which secret signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sticky {
    pub backend_id: String,
    pub expires_s: u64,
    /// Index in the [`Secrets`] of the secret whose tag matched.
    pub signed_by: usize,
}

/// Why a cookie value was rejected. Every variant means "ignore the cookie and balance anew".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Too long, not base64url, wrong length, or a signed id outside the id alphabet.
    Malformed,
    /// A version other than 1.
    Version,
    /// Correctly signed for another pool (another cluster, or the same one with another salt).
    OtherPool,
    /// No listed secret produces its tag: forged, corrupted, or signed by a removed secret
    /// (only [`Secrets::verify`] tells this apart; the filter uses [`Secrets::first_valid`]).
    #[cfg(any(test, feature = "testing"))]
    BadMac,
    /// Signed, but `now_s >= expires_s`.
    Expired,
}

impl Invalid {
    /// A short stable name, e.g. for a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::Malformed => "malformed",
            Invalid::Version => "version",
            Invalid::OtherPool => "other_pool",
            #[cfg(any(test, feature = "testing"))]
            Invalid::BadMac => "bad_mac",
            Invalid::Expired => "expired",
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use crate::backend::is_id_byte;
/// Whether `id` can be carried in a cookie: a backend id ([`crate::backend::is_valid_id`]),
/// which config refuses otherwise; [`Secrets::sign`] cannot sign other ids.
pub use crate::backend::is_valid_id as is_valid_backend_id;

/// Test-only counters of the work done on this thread: secrets keyed (a secret longer than
/// 64 bytes is hashed to key HMAC-SHA256) and tags computed.
#[cfg(test)]
pub(crate) mod work {
    use std::cell::Cell;
    use std::thread::LocalKey;

    thread_local! {
        pub(crate) static KEYED: Cell<usize> = const { Cell::new(0) };
        pub(crate) static TAGS: Cell<usize> = const { Cell::new(0) };
    }

    pub(crate) fn count(counter: &'static LocalKey<Cell<usize>>) {
        counter.with(|n| n.set(n.get() + 1));
    }

    /// What `f` returns, with the secrets it keyed and the tags it computed.
    pub(crate) fn of<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
        let read = || (KEYED.with(Cell::get), TAGS.with(Cell::get));
        let (keyed, tags) = read();
        let out = f();
        let (keyed_after, tags_after) = read();
        (out, keyed_after - keyed, tags_after - tags)
    }
}

/// Whether `tag` equals the first bytes of `full`, in time independent of where they differ.
fn same_tag(full: &[u8; 32], tag: &[u8]) -> bool {
    tag.len() == MAC_LEN && full.iter().zip(tag).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The signing and verifying secrets, each keyed once: HMAC-SHA256 (RFC 2104, the
/// `hmac-sha256` crate) with the key's block already absorbed, cloned for every tag. The first
/// signs; every one verifies. No `Debug`: nothing here reaches a log line.
#[derive(Clone)]
pub struct Secrets {
    keyed: Vec<hmac_sha256::HMAC>,
    /// Values these secrets verified lately, so a returning session costs no tag.
    verified: Verified,
}

/// Slots of the [`Verified`] cache.
const VERIFIED_SLOTS: usize = 256;

/// The cookie values this VM verified lately, each with the index of the secret that signed it:
/// a direct-mapped cache of [`VERIFIED_SLOTS`] slots indexed by the first byte of the value's
/// tag (an HMAC output: no one without a secret can aim a valid value at a slot). Only values
/// whose tag matched enter, so a value found here is one that would verify again; its id and
/// expiry are read from the value itself on every use, so an entry is never trusted past the
/// cookie's own expiry. It lives in [`Secrets`]: new secrets (a configuration) start empty.
/// Values are compared in time independent of where they differ. At most 256 × 98 bytes.
#[derive(Clone, Default)]
struct Verified {
    slots: Vec<Option<(Box<[u8]>, usize)>>,
}

impl Verified {
    fn slot(bytes: &[u8]) -> usize {
        split(bytes).and_then(|(_, tag)| tag.first()).map_or(0, |&b| usize::from(b))
            % VERIFIED_SLOTS
    }

    /// The secret that signed `bytes`, if this exact value verified lately.
    fn signed_by(&self, bytes: &[u8]) -> Option<usize> {
        let (value, signed_by) = self.slots.get(Self::slot(bytes))?.as_ref()?;
        let same = value.len() == bytes.len()
            && value.iter().zip(bytes).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        same.then_some(*signed_by)
    }

    fn insert(&mut self, bytes: &[u8], signed_by: usize) {
        if self.slots.is_empty() {
            self.slots.resize(VERIFIED_SLOTS, None);
        }
        if let Some(slot) = self.slots.get_mut(Self::slot(bytes)) {
            *slot = Some((bytes.into(), signed_by));
        }
    }
}

/// What [`Secrets::first_valid`] found among a request's cookie values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<T> {
    /// What `accept` returned for the first cookie it took.
    pub accepted: Option<T>,
    /// Values looked at (at most [`MAX_CANDIDATES`]).
    pub seen: usize,
    /// Values found signed for this pool and not expired (within the [`MAX_TAGS`] budget).
    pub verified: usize,
}

impl Secrets {
    /// Keys each secret (configuration time, not per request).
    pub fn new<S: AsRef<[u8]>>(secrets: &[S]) -> Secrets {
        let keyed = secrets
            .iter()
            .map(|secret| {
                #[cfg(test)]
                work::count(&work::KEYED);
                hmac_sha256::HMAC::new(secret)
            })
            .collect();
        Secrets { keyed, verified: Verified::default() }
    }

    /// HMAC-SHA256 of `body` under `key`.
    fn tag(key: &hmac_sha256::HMAC, body: &[u8]) -> [u8; 32] {
        #[cfg(test)]
        work::count(&work::TAGS);
        let mut mac = key.clone();
        mac.update(body);
        mac.finalize()
    }

    /// The cookie value naming `backend_id` in `pool` until `expires_s` (unix seconds, usually
    /// `now_s + ttl_s`), signed with the first secret.
    ///
    /// Returns an empty string, which [`Secrets::verify`] rejects, when the id is not
    /// [`is_valid_backend_id`] or there is no secret: the caller should then not set the
    /// cookie.
    pub fn sign(&self, pool: [u8; 8], backend_id: &str, expires_s: u64) -> String {
        let Some(key) = self.keyed.first() else { return String::new() };
        if !is_valid_backend_id(backend_id) {
            return String::new();
        }
        let Ok(id_len) = u8::try_from(backend_id.len()) else {
            return String::new();
        };
        let mut bytes = Vec::with_capacity(FIXED_LEN + backend_id.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(&pool);
        bytes.push(id_len);
        bytes.extend_from_slice(backend_id.as_bytes());
        bytes.extend_from_slice(&expires_s.to_be_bytes());
        let full = Self::tag(key, &bytes);
        let Some(tag) = full.get(..MAC_LEN) else {
            return String::new();
        };
        bytes.extend_from_slice(tag);
        b64_encode(&bytes)
    }

    /// The cookie `value` if one of the secrets signed it for `pool` and it has not expired at
    /// `now_s`. Checks, in order: length (at most [`MAX_VALUE_LEN`] characters), base64url,
    /// version, the lengths the version implies, the pool, the tag against each secret in order
    /// (constant-time comparison), then the id's alphabet and the expiry. With no secrets every
    /// value of this pool is `BadMac`.
    #[cfg(any(test, feature = "testing"))]
    pub fn verify(&self, pool: [u8; 8], value: &str, now_s: u64) -> Result<Sticky, Invalid> {
        let bytes = checked(value, pool)?;
        let (body, tag) = split(&bytes).ok_or(Invalid::Malformed)?;
        let signed_by = self
            .keyed
            .iter()
            .position(|key| same_tag(&Self::tag(key, body), tag))
            .ok_or(Invalid::BadMac)?;
        opened(body, signed_by, now_s)
    }

    /// The first of a request's cookie `values` that verifies (signed for `pool`, not expired
    /// at `now_s`) and that `accept` takes, with the work bounded: at most [`MAX_CANDIDATES`]
    /// values, each distinct one checked once per secret, at most [`MAX_TAGS`] tags, newest
    /// secret first (the module doc's "Work per request"). A value these secrets verified
    /// lately costs no tag: its secret is remembered (its expiry is checked anew).
    pub fn first_valid<'v, T>(
        &mut self,
        values: impl IntoIterator<Item = &'v str>,
        pool: [u8; 8],
        now_s: u64,
        mut accept: impl FnMut(Sticky) -> Option<T>,
    ) -> Found<T> {
        let mut found = Found { accepted: None, seen: 0, verified: 0 };
        // Well-formed values of this pool, until verified.
        let mut left: Vec<Option<Vec<u8>>> = Vec::with_capacity(MAX_CANDIDATES);
        for value in values.into_iter().take(MAX_CANDIDATES) {
            found.seen += 1;
            if let Ok(bytes) = checked(value, pool) {
                if !left.iter().flatten().any(|b| *b == bytes) {
                    left.push(Some(bytes));
                }
            }
        }
        let known: Vec<Option<usize>> =
            left.iter().map(|b| b.as_deref().and_then(|b| self.verified.signed_by(b))).collect();
        let mut tags = 0;
        for (signed_by, key) in self.keyed.iter().enumerate() {
            for (slot, known) in left.iter_mut().zip(&known) {
                let Some((body, tag)) = slot.as_deref().and_then(split) else { continue };
                match known {
                    Some(known) if *known != signed_by => continue,
                    Some(_) => {}
                    None => {
                        if tags == MAX_TAGS {
                            return found;
                        }
                        tags += 1;
                        if !same_tag(&Self::tag(key, body), tag) {
                            continue;
                        }
                        if let Some(bytes) = slot.as_deref() {
                            self.verified.insert(bytes, signed_by);
                        }
                    }
                }
                let sticky = opened(body, signed_by, now_s);
                *slot = None;
                let Ok(sticky) = sticky else { continue };
                found.verified += 1;
                if let Some(t) = accept(sticky) {
                    found.accepted = Some(t);
                    return found;
                }
            }
        }
        found
    }
}

/// [`Secrets::sign`] with `secret`, keyed for this one call (tests, fuzz targets, benches).
#[cfg(any(test, feature = "testing"))]
pub fn encode(secret: &[u8], pool: [u8; 8], backend_id: &str, expires_s: u64) -> String {
    Secrets::new(&[secret]).sign(pool, backend_id, expires_s)
}

/// [`Secrets::verify`] with `secrets`, keyed for this one call (tests, fuzz targets).
#[cfg(any(test, feature = "testing"))]
pub fn verify(
    secrets: &[&[u8]],
    pool: [u8; 8],
    value: &str,
    now_s: u64,
) -> Result<Sticky, Invalid> {
    Secrets::new(secrets).verify(pool, value, now_s)
}

/// The bytes of `value` if it passes every check that needs no tag: length, base64url,
/// version, the lengths it implies, and `pool`.
fn checked(value: &str, pool: [u8; 8]) -> Result<Vec<u8>, Invalid> {
    if value.len() > MAX_VALUE_LEN {
        return Err(Invalid::Malformed);
    }
    let bytes = b64_decode(value).ok_or(Invalid::Malformed)?;
    if *bytes.first().ok_or(Invalid::Malformed)? != VERSION {
        return Err(Invalid::Version);
    }
    let id_len = usize::from(*bytes.get(HEADER_LEN - 1).ok_or(Invalid::Malformed)?);
    if id_len == 0 || id_len > MAX_ID_LEN || bytes.len() != FIXED_LEN + id_len {
        return Err(Invalid::Malformed);
    }
    if bytes.get(1..HEADER_LEN - 1) != Some(&pool[..]) {
        return Err(Invalid::OtherPool);
    }
    Ok(bytes)
}

/// A checked value's signed part and its tag.
fn split(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    bytes.split_at_checked(bytes.len().checked_sub(MAC_LEN)?)
}

/// The cookie in a checked value's `body` whose tag matched secret `signed_by`, if its id is
/// in the alphabet and it has not expired at `now_s`.
fn opened(body: &[u8], signed_by: usize, now_s: u64) -> Result<Sticky, Invalid> {
    let id_len = usize::from(*body.get(HEADER_LEN - 1).ok_or(Invalid::Malformed)?);
    let id = body.get(HEADER_LEN..HEADER_LEN + id_len).ok_or(Invalid::Malformed)?;
    if !id.iter().copied().all(is_id_byte) {
        return Err(Invalid::Malformed);
    }
    let backend_id = std::str::from_utf8(id).map_err(|_| Invalid::Malformed)?.to_owned();
    let expiry = body.get(HEADER_LEN + id_len..).ok_or(Invalid::Malformed)?;
    let expires_s = u64::from_be_bytes(expiry.try_into().map_err(|_| Invalid::Malformed)?);
    if now_s >= expires_s {
        return Err(Invalid::Expired);
    }
    Ok(Sticky { backend_id, expires_s, signed_by })
}

/// Whether a valid cookie expiring at `expires_s` should be re-issued at `now_s` with a fresh
/// expiry, for a configured lifetime of `ttl_s`: when strictly less than half of the TTL is left
/// (`2 * (expires_s - now_s) < ttl_s`), so an active client keeps its backend and the cookie is
/// rewritten at most about twice per TTL. Exactly half left is not yet a refresh. An expired
/// cookie needs one whenever `ttl_s > 0`; with `ttl_s == 0` never. A cookie expiring further
/// out than `ttl_s` (the TTL was shortened) keeps its expiry.
pub fn needs_refresh(expires_s: u64, ttl_s: u64, now_s: u64) -> bool {
    expires_s.saturating_sub(now_s).saturating_mul(2) < ttl_s
}

/// The 8-byte identity of a pool that cookies are bound to: xxHash64 ([`crate::hash_key::hash`])
/// of the cluster name and `backends_salt`, big-endian. Cookies are therefore bound to the
/// cluster **name**: renaming the cluster, or changing the salt (an operator's string, e.g. to
/// invalidate every cookie of one pool without rotating the secret), makes every issued cookie
/// `OtherPool`. The name is length-prefixed so that `("ab", "c")` and `("a", "bc")` differ. The
/// hash needs no cryptographic strength: the tag covers it, and clients cannot choose names.
pub fn pool_identity(cluster: &str, backends_salt: &str) -> [u8; 8] {
    let len = u64::try_from(cluster.len()).unwrap_or(u64::MAX);
    let mut input = Vec::with_capacity(8 + cluster.len() + backends_salt.len());
    input.extend_from_slice(&len.to_be_bytes());
    input.extend_from_slice(cluster.as_bytes());
    input.extend_from_slice(backends_salt.as_bytes());
    crate::hash_key::hash(&input).to_be_bytes()
}

/// The `SameSite` attribute (RFC 6265bis §4.1.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    /// Browsers accept it only with `Secure`.
    None,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// How the sticky cookie is set: its name and attributes (from the plugin config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieAttributes {
    pub name: String,
    pub path: String,
    pub domain: Option<String>,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: SameSite,
    pub max_age_s: u64,
}

impl CookieAttributes {
    /// The first field that would make [`set_cookie`] render a header a browser rejects or that
    /// injects attributes, as its name (`"name"`, `"path"`, `"domain"`, `"same_site"`), for the
    /// config to report; `None` when all are valid. The name must be an RFC 6265 token, the path
    /// start with `/` and hold no control character or `;`, the domain be letters, digits, `-`
    /// and `.`, and `SameSite=None` come with `secure`.
    pub fn invalid_field(&self) -> Option<&'static str> {
        let token = |b: u8| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b);
        if self.name.is_empty() || !self.name.bytes().all(token) {
            return Some("name");
        }
        let path_ok = self.path.starts_with('/')
            && self.path.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b';');
        if !path_ok {
            return Some("path");
        }
        if let Some(domain) = &self.domain {
            let label = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
            if domain.is_empty() || !domain.bytes().all(label) {
                return Some("domain");
            }
        }
        if self.same_site == SameSite::None && !self.secure {
            return Some("same_site");
        }
        None
    }
}

/// The `Set-Cookie` header value setting the cookie to `value`, attributes in a fixed order:
/// `lb_session=<value>; Max-Age=3600; Path=/; Domain=example.com; Secure; HttpOnly;
/// SameSite=Lax`, `Domain` only when set, `Secure` and `HttpOnly` only when true. Rendered as
/// given: check the attributes once with [`CookieAttributes::invalid_field`].
pub fn set_cookie(attrs: &CookieAttributes, value: &str) -> String {
    let mut out = String::with_capacity(96 + attrs.name.len() + value.len() + attrs.path.len());
    // Writing to a String cannot fail.
    let _ =
        write!(out, "{}={}; Max-Age={}; Path={}", attrs.name, value, attrs.max_age_s, attrs.path);
    if let Some(domain) = &attrs.domain {
        let _ = write!(out, "; Domain={domain}");
    }
    if attrs.secure {
        out.push_str("; Secure");
    }
    if attrs.http_only {
        out.push_str("; HttpOnly");
    }
    let _ = write!(out, "; SameSite={}", attrs.same_site.as_str());
    out
}

#[cfg(test)]
mod tests;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding (RFC 4648 §5).
fn b64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..=chunk.len() {
            let six = (n >> (18 - 6 * k)) & 63;
            out.push(char::from(B64.get(six as usize).copied().unwrap_or(b'A')));
        }
    }
    out
}

fn b64_value(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Strict base64url without padding: no other characters, no impossible length, and the
/// unused low bits of the last character zero (so each value has exactly one encoding).
fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut n = 0u32;
        for (k, &c) in chunk.iter().enumerate() {
            n |= b64_value(c)? << (18 - 6 * k as u32);
        }
        let bytes = n.to_be_bytes();
        let keep = chunk.len() - 1;
        let extra = match keep {
            1 => n & 0xFFFF,
            2 => n & 0xFF,
            _ => 0,
        };
        if extra != 0 {
            return None;
        }
        out.extend_from_slice(bytes.get(1..1 + keep)?);
    }
    Some(out)
}
