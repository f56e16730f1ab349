//! Native tests of the sticky cookie: round trips, tamper detection at every byte and character,
//! expiry boundary, secret rotation, pool binding, malformed values, cookie-header parsing,
//! exact `Set-Cookie` renderings, and property tests on arbitrary input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;

const OLD: &[u8] = b"old secret, 32 bytes or more!!!!";
const NEW: &[u8] = b"new secret, 32 bytes or more!!!!";
const NOW: u64 = 1_700_000_000;
const TTL: u64 = 3600;

/// RustCrypto's HMAC-SHA256, independent of the `hmac-sha256` crate the filter signs with.
type HmacSha256 = hmac::Hmac<sha2::Sha256>;
use hmac::Mac as _;

fn pool() -> [u8; 8] {
    pool_identity("web", "")
}

fn cookie(id: &str) -> String {
    encode(NEW, pool(), id, NOW + TTL)
}

fn decode(value: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(value).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `body` followed by its tag under `secret`: a correctly signed value of any content.
fn signed(secret: &[u8], mut body: Vec<u8>) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).unwrap();
    mac.update(&body);
    body.extend_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
    b64(&body)
}

#[test]
fn round_trip() {
    for id in ["web-1", "a", "A.b_c-9", &"x".repeat(MAX_ID_LEN)] {
        let value = cookie(id);
        let got = verify(&[NEW], pool(), &value, NOW).unwrap();
        assert_eq!(got, Sticky { backend_id: id.to_owned(), expires_s: NOW + TTL, signed_by: 0 });
        assert_eq!(decode(&value).len(), FIXED_LEN + id.len());
    }
}

#[test]
fn layout_is_the_documented_one() {
    let bytes = decode(&encode(NEW, [1, 2, 3, 4, 5, 6, 7, 8], "web-1", 0x0102_0304_0506_0708));
    assert_eq!(bytes[0], 1);
    assert_eq!(&bytes[1..9], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(bytes[9], 5);
    assert_eq!(&bytes[10..15], b"web-1");
    assert_eq!(&bytes[15..23], &[1, 2, 3, 4, 5, 6, 7, 8]);
    let mut mac = HmacSha256::new_from_slice(NEW).unwrap();
    mac.update(&bytes[..23]);
    assert_eq!(&bytes[23..], &mac.finalize().into_bytes()[..16]);
}

#[test]
fn encoding_is_deterministic_and_url_safe() {
    let value = cookie("web-1");
    assert_eq!(value, cookie("web-1"));
    assert!(value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert!(!value.contains('='));
}

#[test]
fn invalid_ids_are_not_encoded() {
    let too_long = "x".repeat(MAX_ID_LEN + 1);
    for id in ["", "a b", "a;b", "a=b", "é", "10.0.0.1:8080", "a/b", &too_long] {
        assert!(!is_valid_backend_id(id), "{id:?}");
        assert_eq!(encode(NEW, pool(), id, NOW + TTL), "", "{id:?}");
    }
    assert_eq!(verify(&[NEW], pool(), "", NOW), Err(Invalid::Malformed));
}

#[test]
fn flipping_any_byte_is_rejected() {
    let bytes = decode(&cookie("web-1"));
    for i in 0..bytes.len() {
        for mask in [0x01, 0x80, 0xFF] {
            let mut tampered = bytes.clone();
            tampered[i] ^= mask;
            let got = verify(&[OLD, NEW], pool(), &b64(&tampered), NOW);
            // The pool is checked before the tag: a cookie of another pool costs no tag.
            let want = match i {
                0 => Invalid::Version,
                1..=8 => Invalid::OtherPool,
                9 => Invalid::Malformed,
                _ => Invalid::BadMac,
            };
            assert_eq!(got, Err(want), "byte {i} ^ {mask:#x}");
        }
    }
}

#[test]
fn changing_any_character_is_rejected() {
    let value = cookie("web-1");
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=.\" ;%";
    for i in 0..value.len() {
        for c in alphabet.chars() {
            if value[i..].starts_with(c) {
                continue;
            }
            let mut tampered = value.clone();
            tampered.replace_range(i..=i, c.encode_utf8(&mut [0; 4]));
            assert!(verify(&[OLD, NEW], pool(), &tampered, NOW).is_err(), "{i}: {tampered}");
        }
    }
}

#[test]
fn expiry_boundary() {
    let value = cookie("web-1");
    assert!(verify(&[NEW], pool(), &value, 0).is_ok());
    assert!(verify(&[NEW], pool(), &value, NOW + TTL - 1).is_ok());
    assert_eq!(verify(&[NEW], pool(), &value, NOW + TTL), Err(Invalid::Expired));
    assert_eq!(verify(&[NEW], pool(), &value, u64::MAX), Err(Invalid::Expired));
    assert_eq!(verify(&[NEW], pool(), &encode(NEW, pool(), "a", 0), 0), Err(Invalid::Expired));
    let forever = encode(NEW, pool(), "a", u64::MAX);
    assert_eq!(verify(&[NEW], pool(), &forever, u64::MAX - 1).unwrap().expires_s, u64::MAX);
}

#[test]
fn a_forged_expiry_is_bad_mac_not_expired() {
    let mut bytes = decode(&encode(NEW, pool(), "web-1", NOW - 1));
    bytes[15..23].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(verify(&[NEW], pool(), &b64(&bytes), NOW), Err(Invalid::BadMac));
}

#[test]
fn rotation() {
    let old_cookie = encode(OLD, pool(), "web-1", NOW + TTL);
    // Before the rotation only OLD is listed; during it NEW signs and OLD still verifies.
    assert_eq!(verify(&[OLD], pool(), &old_cookie, NOW).unwrap().signed_by, 0);
    assert_eq!(verify(&[NEW, OLD], pool(), &old_cookie, NOW).unwrap().signed_by, 1);
    let new_cookie = encode(NEW, pool(), "web-1", NOW + TTL);
    assert_eq!(verify(&[NEW, OLD], pool(), &new_cookie, NOW).unwrap().signed_by, 0);
    assert_eq!(verify(&[OLD], pool(), &new_cookie, NOW), Err(Invalid::BadMac));
    // After the rotation OLD is removed.
    assert_eq!(verify(&[NEW], pool(), &old_cookie, NOW), Err(Invalid::BadMac));
    assert_eq!(verify(&[], pool(), &new_cookie, NOW), Err(Invalid::BadMac));
}

#[test]
fn other_pool_is_rejected() {
    let web = pool_identity("web", "");
    let api = pool_identity("api", "");
    let value = encode(NEW, web, "web-1", NOW + TTL);
    assert_eq!(verify(&[NEW], api, &value, NOW), Err(Invalid::OtherPool));
    assert_eq!(verify(&[NEW], pool_identity("web", "salt2"), &value, NOW), Err(Invalid::OtherPool));
    assert!(verify(&[NEW], web, &value, NOW).is_ok());
}

#[test]
fn pool_identity_binds_name_and_salt() {
    assert_eq!(pool_identity("web", "s"), pool_identity("web", "s"));
    assert_ne!(pool_identity("web", ""), pool_identity("web2", ""));
    assert_ne!(pool_identity("web", ""), pool_identity("web", "s"));
    assert_ne!(pool_identity("ab", "c"), pool_identity("a", "bc"));
    let mut input = 3u64.to_be_bytes().to_vec();
    input.extend_from_slice(b"web");
    assert_eq!(pool_identity("web", ""), crate::hash_key::hash(&input).to_be_bytes());
}

#[test]
fn wrong_version() {
    let mut bytes = decode(&cookie("web-1"));
    for version in [0u8, 2, 255] {
        bytes[0] = version;
        let body = bytes[..bytes.len() - MAC_LEN].to_vec();
        // Correctly signed or not, an unknown version is reported as such.
        assert_eq!(verify(&[NEW], pool(), &signed(NEW, body), NOW), Err(Invalid::Version));
        assert_eq!(verify(&[NEW], pool(), &b64(&bytes), NOW), Err(Invalid::Version));
    }
}

#[test]
fn truncated_and_extended_values_are_malformed() {
    let value = cookie("web-1");
    let bytes = decode(&value);
    for n in 0..bytes.len() {
        assert!(verify(&[NEW], pool(), &b64(&bytes[..n]), NOW).is_err(), "{n} bytes");
    }
    for n in 1..value.len() {
        assert!(verify(&[NEW], pool(), &value[..n], NOW).is_err(), "{n} chars");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(verify(&[NEW], pool(), &b64(&longer), NOW), Err(Invalid::Malformed));
}

#[test]
fn lengths_are_checked_even_when_signed() {
    let mut body = vec![VERSION];
    body.extend_from_slice(&pool());
    body.push(0);
    body.extend_from_slice(&(NOW + TTL).to_be_bytes());
    assert_eq!(verify(&[NEW], pool(), &signed(NEW, body), NOW), Err(Invalid::Malformed));
    let mut body = vec![VERSION];
    body.extend_from_slice(&pool());
    body.push(65);
    body.extend_from_slice(&[b'x'; 65]);
    body.extend_from_slice(&(NOW + TTL).to_be_bytes());
    assert_eq!(verify(&[NEW], pool(), &signed(NEW, body), NOW), Err(Invalid::Malformed));
}

#[test]
fn a_signed_id_outside_the_alphabet_is_malformed() {
    let mut body = vec![VERSION];
    body.extend_from_slice(&pool());
    body.push(3);
    body.extend_from_slice(b"a b");
    body.extend_from_slice(&(NOW + TTL).to_be_bytes());
    assert_eq!(verify(&[NEW], pool(), &signed(NEW, body), NOW), Err(Invalid::Malformed));
}

#[test]
fn overlong_values_are_rejected_before_decoding() {
    let value = cookie("web-1");
    let padded = format!("{value}{}", "A".repeat(MAX_VALUE_LEN));
    assert_eq!(verify(&[NEW], pool(), &padded, NOW), Err(Invalid::Malformed));
    assert_eq!(
        verify(&[NEW], pool(), &"A".repeat(MAX_VALUE_LEN + 1), NOW),
        Err(Invalid::Malformed)
    );
    assert_eq!(verify(&[NEW], pool(), &"A".repeat(100_000), NOW), Err(Invalid::Malformed));
}

#[test]
fn non_base64url_is_malformed() {
    let value = cookie("web-1");
    let standard = base64::engine::general_purpose::STANDARD.encode(decode(&value));
    for bad in [
        "!!!!",
        "abc$",
        "é",
        " ",
        "\"quoted\"",
        &format!("{value}="),
        &format!("{value}=="),
        &format!(" {value}"),
        &format!("{value}\n"),
        &standard,
    ] {
        if *bad == value {
            continue;
        }
        assert_eq!(verify(&[NEW], pool(), bad, NOW), Err(Invalid::Malformed), "{bad:?}");
    }
}

#[test]
fn value_reveals_no_id_or_address() {
    let id = "web-1";
    let value = encode(NEW, pool(), id, NOW + TTL);
    assert_ne!(value, id);
    assert!(!value.contains(id), "{value}");
    // The format has no address field: the decoded bytes hold only pool, id, expiry and tag.
    let bytes = decode(&value);
    assert_eq!(bytes.len(), FIXED_LEN + id.len());
    for address in ["10.0.0.1", "10.0.0.1:8080"] {
        assert!(!value.contains(address));
        assert!(!bytes.windows(address.len()).any(|w| w == address.as_bytes()));
    }
}

#[test]
fn refresh_when_less_than_half_is_left() {
    assert!(!needs_refresh(NOW + TTL, TTL, NOW));
    assert!(!needs_refresh(NOW + TTL / 2, TTL, NOW));
    assert!(needs_refresh(NOW + TTL / 2 - 1, TTL, NOW));
    assert!(needs_refresh(NOW, TTL, NOW));
    assert!(needs_refresh(NOW - 10, TTL, NOW));
    assert!(!needs_refresh(NOW + 10 * TTL, TTL, NOW));
    assert!(!needs_refresh(u64::MAX, u64::MAX, 0));
    assert!(!needs_refresh(NOW, 0, NOW));
    // Odd TTL: 3 s, 1 s left is less than 1.5 s, 2 s is not.
    assert!(needs_refresh(NOW + 1, 3, NOW));
    assert!(!needs_refresh(NOW + 2, 3, NOW));
}

#[test]
fn the_first_verifying_value_wins() {
    let good = cookie("web-2");
    let foreign = encode(NEW, pool_identity("api", ""), "api-1", NOW + TTL);
    let header =
        format!("lb=garbage; other=1; lb={foreign}; lb=\"{good}\"; lb={}", cookie("web-3"));
    let got = crate::hash_key::cookies(&header, "lb")
        .find_map(|v| verify(&[NEW], pool(), v, NOW).ok())
        .unwrap();
    assert_eq!(got.backend_id, "web-2");
}

fn attrs() -> CookieAttributes {
    CookieAttributes {
        name: "lb_session".to_owned(),
        path: "/".to_owned(),
        domain: None,
        secure: true,
        http_only: true,
        same_site: SameSite::Lax,
        max_age_s: 3600,
    }
}

#[test]
fn set_cookie_renderings() {
    assert_eq!(
        set_cookie(&attrs(), "VALUE"),
        "lb_session=VALUE; Max-Age=3600; Path=/; Secure; HttpOnly; SameSite=Lax"
    );
    let a = CookieAttributes {
        domain: Some("example.com".to_owned()),
        same_site: SameSite::None,
        path: "/app".to_owned(),
        max_age_s: 0,
        ..attrs()
    };
    assert_eq!(
        set_cookie(&a, "v"),
        "lb_session=v; Max-Age=0; Path=/app; Domain=example.com; Secure; HttpOnly; SameSite=None"
    );
    let a = CookieAttributes {
        name: "s".to_owned(),
        secure: false,
        http_only: false,
        same_site: SameSite::Strict,
        max_age_s: u64::MAX,
        ..attrs()
    };
    assert_eq!(set_cookie(&a, ""), "s=; Max-Age=18446744073709551615; Path=/; SameSite=Strict");
}

#[test]
fn attribute_validation() {
    assert_eq!(attrs().invalid_field(), None);
    let with = |f: &dyn Fn(&mut CookieAttributes)| {
        let mut a = attrs();
        f(&mut a);
        a.invalid_field()
    };
    assert_eq!(with(&|a| a.name = String::new()), Some("name"));
    assert_eq!(with(&|a| a.name = "a;b".to_owned()), Some("name"));
    assert_eq!(with(&|a| a.name = "a b".to_owned()), Some("name"));
    assert_eq!(with(&|a| a.name = "a=b".to_owned()), Some("name"));
    assert_eq!(with(&|a| a.path = String::new()), Some("path"));
    assert_eq!(with(&|a| a.path = "app".to_owned()), Some("path"));
    assert_eq!(with(&|a| a.path = "/a;Domain=evil".to_owned()), Some("path"));
    assert_eq!(with(&|a| a.path = "/a\r\nX: y".to_owned()), Some("path"));
    assert_eq!(with(&|a| a.domain = Some(String::new())), Some("domain"));
    assert_eq!(with(&|a| a.domain = Some("a.com; x".to_owned())), Some("domain"));
    assert_eq!(with(&|a| a.domain = Some(".sub.example-1.com".to_owned())), None);
    assert_eq!(with(&|a| a.same_site = SameSite::None), None);
    assert_eq!(
        with(&|a| {
            a.same_site = SameSite::None;
            a.secure = false;
        }),
        Some("same_site")
    );
}

#[test]
fn invalid_names_are_stable() {
    let all = [
        Invalid::Malformed,
        Invalid::Version,
        Invalid::OtherPool,
        Invalid::BadMac,
        Invalid::Expired,
    ];
    let names: Vec<String> = all.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["malformed", "version", "other_pool", "bad_mac", "expired"]);
}

proptest! {
    #[test]
    fn verify_never_panics_on_arbitrary_text(value in "\\PC{0,200}|[A-Za-z0-9_-]{0,140}") {
        prop_assert!(verify(&[NEW, OLD], pool(), &value, NOW).is_err());
    }

    #[test]
    fn verify_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
        prop_assert!(verify(&[NEW, OLD], pool(), &b64(&bytes), NOW).is_err());
    }

    #[test]
    fn round_trip_any_valid_cookie(
        id in "[A-Za-z0-9_.-]{1,64}",
        pool in any::<[u8; 8]>(),
        expires in 1u64..,
        now in any::<u64>(),
    ) {
        let value = encode(NEW, pool, &id, expires);
        prop_assert!(value.len() <= MAX_VALUE_LEN);
        let got = verify(&[OLD, NEW], pool, &value, now);
        if now < expires {
            prop_assert_eq!(got, Ok(Sticky { backend_id: id, expires_s: expires, signed_by: 1 }));
        } else {
            prop_assert_eq!(got, Err(Invalid::Expired));
        }
    }
}

proptest! {
    /// The filter's base64url agrees with the base64 crate both ways, and refuses what the
    /// crate refuses.
    #[test]
    fn base64url_matches_the_base64_crate(bytes in proptest::collection::vec(any::<u8>(), 0..200), text in "[A-Za-z0-9_=+/ -]{0,40}") {
        let ours = b64_encode(&bytes);
        prop_assert_eq!(&ours, &URL_SAFE_NO_PAD.encode(&bytes));
        prop_assert_eq!(b64_decode(&ours), Some(bytes));
        prop_assert_eq!(b64_decode(&text), URL_SAFE_NO_PAD.decode(&text).ok());
    }
}

/// `first_valid` reports the values it looked at (at most MAX_CANDIDATES) and those that
/// verified, whether `accept` took them or not.
#[test]
fn first_valid_counts_what_it_saw_and_verified() {
    let mut secrets = Secrets::new(&[NEW]);
    let expired = secrets.sign(pool(), "web-1", NOW);
    let (a, b) = (cookie("web-1"), cookie("web-2"));
    let values = ["junk", expired.as_str(), a.as_str(), b.as_str()];
    let found = secrets
        .first_valid(values, pool(), NOW, |s| (s.backend_id == "web-2").then_some(s.backend_id));
    assert_eq!(found, Found { accepted: Some("web-2".to_string()), seen: 4, verified: 2 });
    let many = vec!["junk"; 12];
    let found = secrets.first_valid(many, pool(), NOW, |_| Some(()));
    assert_eq!(found, Found { accepted: None, seen: MAX_CANDIDATES, verified: 0 });
}

/// A value verified once costs no tag the next time (a returning session), with the same
/// answer: the secret that signed it, and its own id and expiry.
#[test]
fn a_value_verified_once_costs_no_tag_again() {
    let mut secrets = Secrets::new(&[NEW, OLD]);
    let by_old = encode(OLD, pool(), "web-3", NOW + TTL);
    let values = ["junk", by_old.as_str()];
    let (first, _, tags) = work::of(|| secrets.first_valid(values, pool(), NOW, Some));
    assert_eq!(tags, 2, "NEW then OLD on the one well-formed value");
    let (again, _, tags) = work::of(|| secrets.first_valid(values, pool(), NOW, Some));
    assert_eq!(tags, 0);
    assert_eq!(again, first);
    let sticky = again.accepted.unwrap();
    assert_eq!((sticky.backend_id.as_str(), sticky.signed_by), ("web-3", 1));
    assert_eq!(sticky.expires_s, NOW + TTL);
}

/// The cache never outlives what it caches: an expired value is refused though it verified
/// before; new secrets (a configuration without the old one) verify anew and refuse it; a
/// forged value never enters, and a value that differs from a cached one in any byte is
/// verified, not taken from the cache.
#[test]
fn the_verified_cache_is_never_trusted_past_expiry_secrets_or_exact_bytes() {
    let mut secrets = Secrets::new(&[NEW, OLD]);
    let short = encode(NEW, pool(), "web-1", NOW + 10);
    assert!(secrets.first_valid([short.as_str()], pool(), NOW, Some).accepted.is_some());
    let (late, _, tags) =
        work::of(|| secrets.first_valid([short.as_str()], pool(), NOW + 10, Some));
    assert_eq!((late.accepted, late.verified, tags), (None, 0, 0));

    let by_old = encode(OLD, pool(), "web-2", NOW + TTL);
    assert!(secrets.first_valid([by_old.as_str()], pool(), NOW, Some).accepted.is_some());
    let mut rotated = Secrets::new(&[NEW]);
    let (found, _, tags) = work::of(|| rotated.first_valid([by_old.as_str()], pool(), NOW, Some));
    assert_eq!((found.accepted, tags), (None, 1));

    let good = cookie("web-1");
    assert!(secrets.first_valid([good.as_str()], pool(), NOW, Some).accepted.is_some());
    let mut bytes = decode(&good);
    for i in 0..bytes.len() {
        bytes[i] ^= 1;
        let tampered = b64(&bytes);
        let (found, _, tags) =
            work::of(|| secrets.first_valid([tampered.as_str()], pool(), NOW, Some));
        assert!(found.accepted.is_none(), "byte {i} flipped, still accepted");
        bytes[i] ^= 1;
        // A flip in the header is refused before any tag; anywhere else it costs both tags,
        // and again the second time: nothing of it was cached.
        assert!(tags == 0 || tags == 2, "byte {i}: {tags} tags");
        let (again, _, tags_again) =
            work::of(|| secrets.first_valid([tampered.as_str()], pool(), NOW, Some));
        assert!(again.accepted.is_none(), "byte {i} flipped, accepted the second time");
        assert_eq!(tags_again, tags, "byte {i}");
    }
    let (found, _, tags) = work::of(|| secrets.first_valid([good.as_str()], pool(), NOW, Some));
    assert_eq!((found.accepted.map(|s| s.backend_id), tags), (Some("web-1".to_string()), 0));
}

proptest! {
    /// With or without the cache, the same answer: a fresh set of secrets and a warm one agree
    /// on every sequence of cookie headers.
    #[test]
    fn the_cache_changes_no_answer(picks in proptest::collection::vec((0usize..6, 0u64..3), 1..40)) {
        let values = [
            cookie("web-1"),
            encode(OLD, pool(), "web-2", NOW + TTL),
            encode(NEW, pool(), "web-3", NOW + 1),
            encode(b"a foreign secret, 32 bytes long!", pool(), "web-4", NOW + TTL),
            "junk".to_string(),
            encode(NEW, pool_identity("other", ""), "web-5", NOW + TTL),
        ];
        let mut warm = Secrets::new(&[NEW, OLD]);
        for (i, dt) in picks {
            let header = [values[i].as_str(), values[(i + 1) % values.len()].as_str()];
            let cold = Secrets::new(&[NEW, OLD]).first_valid(header, pool(), NOW + dt, Some);
            let hot = warm.first_valid(header, pool(), NOW + dt, Some);
            prop_assert_eq!(hot, cold);
        }
    }
}
