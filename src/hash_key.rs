//! A request's hash key for the consistent-hashing balancers (`lb::maglev`, `lb::ring_hash`):
//! the fixed 64-bit hash, and extraction of the key's text from the source address, a cookie or
//! a query parameter. Pure functions over borrowed text, no panic on any input, and no
//! allocation except to normalise an IPv4-mapped source address not written in dotted form.
//!
//! The hash is xxHash64 with seed 0 (Yann Collet, <https://github.com/Cyan4973/xxHash>), the
//! function Envoy's `HashUtil::xxHash64` uses for its ring hash and Maglev balancers. It is fixed
//! on purpose: the same key maps to the same backend on every proxy of the fleet and across
//! versions of this filter, so changing it is a breaking change.
//!
//! Cookie parsing follows the `cookie-string` grammar of RFC 6265 §4.2.1, leniently (as
//! browsers and Envoy's `Http::Utility::parseCookieValue` do); the query follows RFC 3986 §3.4
//! with `&`-separated `name=value` pairs.
//!
//! The rule for a request without its key: no header, no cookie, no query parameter, or a
//! source address that does not parse all give `None`, and a request without a key is balanced
//! by round robin (the hashing balancers' fallback), never hashed on an empty string.
//! A header key needs no extraction: the adapter reads the header's value and hashes it as is.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

/// xxHash64 of `bytes` with seed 0: the fixed hash of a request key (see the module doc).
pub fn hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(bytes, 0)
}

/// The IP part of Envoy's `source.address` property, the text a client's key is hashed from:
/// `"1.2.3.4:5678"` gives `"1.2.3.4"`, `"[::1]:5678"` gives `"::1"` (no brackets). `None` unless
/// the text is exactly an IP address and a decimal port (0-65535) in one of those two forms,
/// e.g. for a pipe path, a bare IP or stray spaces.
///
/// Normalised so that a client's key does not depend on how the listener saw it:
/// - an IPv4-mapped IPv6 address (`::ffff:0:0/96`, RFC 4291 §2.5.5.2), as a dual-stack listener
///   reports an IPv4 client, gives the IPv4 text: `"[::ffff:10.1.2.3]:5555"` gives
///   `"10.1.2.3"`, like `"10.1.2.3:5555"`. Borrowed when written with a dotted tail (as Envoy
///   writes it), owned otherwise (`"[::ffff:a01:203]:80"`). Other IPv6 addresses are returned as
///   written, the deprecated IPv4-compatible `::1.2.3.4` included;
/// - an IPv6 zone is dropped: `"[fe80::1%eth0]:80"` gives `"fe80::1"` (the zone names the
///   proxy's interface the packet came in on, not the client). It must be an interface name
///   or number, and the address before `%` must parse.
pub fn source_ip(address: &str) -> Option<Cow<'_, str>> {
    let (ip, port) = address.rsplit_once(':')?;
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse::<u16>().ok()?;
    if let Some(inner) = ip.strip_prefix('[') {
        let inner = inner.strip_suffix(']')?;
        let addr = match inner.split_once('%') {
            None => inner,
            Some((addr, zone)) if is_zone(zone) => addr,
            Some(_) => return None,
        };
        let Some(v4) = addr.parse::<Ipv6Addr>().ok()?.to_ipv4_mapped() else {
            return Some(Cow::Borrowed(addr));
        };
        // Ipv4Addr parses only the canonical dotted form, so a tail that parses is `v4`'s text.
        Some(match addr.rsplit_once(':') {
            Some((_, tail)) if tail.parse::<Ipv4Addr>().ok() == Some(v4) => Cow::Borrowed(tail),
            _ => Cow::Owned(v4.to_string()),
        })
    } else {
        ip.parse::<Ipv4Addr>().ok()?;
        Some(Cow::Borrowed(ip))
    }
}

/// An IPv6 zone id as written after `%`: an interface name or number.
fn is_zone(zone: &str) -> bool {
    !zone.is_empty() && zone.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Spaces and tabs around cookie pieces, names and values (RFC 6265 allows only one space
/// after `;`; clients send more, and tabs).
fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Every value of the cookies named exactly `name` (case-sensitive) in a `Cookie` header such
/// as `"a=1; b=2"`, in order, duplicates included (a browser sends the cookie of the most
/// specific path first, and a stale or foreign cookie of the same name may come before ours).
/// Pieces are split on `;` and on the first `=` of each piece, so a value may contain `=`;
/// spaces and tabs around names and values are ignored, as are empty pieces and pieces without
/// `=`. A value in double quotes is given without them. A cookie present with an empty value
/// gives `""`. An empty `name` never matches. Each value is a slice of the header; the work is
/// linear in the header's length.
pub fn cookies<'a, 'n>(
    cookie_header: &'a str,
    name: &'n str,
) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
    cookie_header.split(';').filter_map(move |piece| {
        let (n, v) = piece.split_once('=')?;
        if name.is_empty() || trim_ows(n) != name {
            return None;
        }
        let v = trim_ows(v);
        Some(v.strip_prefix('"').and_then(|inner| inner.strip_suffix('"')).unwrap_or(v))
    })
}

/// The value of the first cookie named exactly `name` ([`cookies`]).
pub fn cookie<'a>(cookie_header: &'a str, name: &str) -> Option<&'a str> {
    cookies(cookie_header, name).next()
}

/// The raw value of the first query parameter named exactly `name` in an HTTP `:path` such as
/// `"/x?a=1&b=2#frag"`: the text after the first `?` and before any `#`, split on `&`. Neither the
/// name nor the value is percent-decoded (`?k=a%20b` gives `"a%20b"`, and `name` must be written
/// as it appears on the wire); `+` is not turned into a space. A parameter without `=` (`?k&x=1`)
/// gives `Some("")`. An empty `name` never matches.
pub fn query<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    if name.is_empty() {
        return None;
    }
    let path = path.split_once('#').map_or(path, |(p, _)| p);
    let (_, q) = path.split_once('?')?;
    q.split('&').find_map(|param| match param.split_once('=') {
        Some((n, v)) if n == name => Some(v),
        None if param == name => Some(""),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
