//! The sticky cookie's value: `sticky::verify` never panics on an arbitrary value, and nothing
//! verifies except what `sticky::encode` produced with one of the secrets. The input is read
//! twice: as the cookie value (the seeds are real values), and as the parameters of a
//! round trip (backend id, expiry, time, signer, one flipped character) whose value must verify
//! to exactly its id and expiry, and must stop verifying when changed in any way.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use envoy_lb::sticky::{self, Invalid, Sticky, MAX_ID_LEN};
use libfuzzer_sys::fuzz_target;

/// The proxies' secrets: the first signs, both verify.
const SECRETS: [&[u8]; 2] =
    [b"fuzz-secret-0-0123456789abcdef0123456789", b"fuzz-secret-1-fedcba9876543210fedcba9876"];
/// A secret the proxies do not have.
const FOREIGN: &[u8] = b"fuzz-secret-x-not-configured-0123456789abc";
/// 2023-11-14T22:13:20Z: the seeds' "now" (their expiries are in 2100, or 2000 for the expired one).
const NOW_S: u64 = 1_700_000_000;
/// The longest value `encode` writes: 98 bytes in base64url.
const MAX_ENCODED: usize = 131;
const ID_BYTES: &[u8; 65] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";

fn pool() -> [u8; 8] {
    sticky::pool_identity("pool", "")
}

fuzz_target!(|data: &[u8]| {
    forged(data);
    let _ = round_trip(&mut Unstructured::new(data));
});

/// The input as a cookie value, checked at the seeds' time and at both ends of time, with the
/// proxies' secrets, with none, and with a secret they do not have.
fn forged(data: &[u8]) {
    let value = String::from_utf8_lossy(data);
    for now in [NOW_S, 0, u64::MAX] {
        only_encoded(&SECRETS, &value, now);
        only_encoded(&[FOREIGN], &value, now);
        assert!(sticky::verify(&[], pool(), &value, now).is_err(), "verified with no secret");
    }
}

/// If `value` verifies with `secrets`, it is exactly what `encode` writes for what it says.
fn only_encoded(secrets: &[&[u8]], value: &str, now: u64) {
    if let Ok(s) = sticky::verify(secrets, pool(), value, now) {
        assert!(now < s.expires_s, "verified at {now} but expires at {}", s.expires_s);
        let secret = secrets.get(s.signed_by).copied().unwrap_or_default();
        let issued = sticky::encode(secret, pool(), &s.backend_id, s.expires_s);
        assert_eq!(value, issued, "a value encode did not write verified as {s:?}");
    }
}

#[derive(Debug, Arbitrary)]
struct Trip {
    id_len: u8,
    id_raw: bool,
    expires_s: u64,
    now_s: u64,
    signer: bool,
    flip_at: u16,
    flip_xor: u8,
}

fn round_trip(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let t = Trip::arbitrary(u)?;
    // Mostly ids from the id alphabet (1..=64 bytes), sometimes raw text.
    let id: String = if t.id_raw {
        String::arbitrary(u)?
    } else {
        let len = usize::from(t.id_len) % (MAX_ID_LEN + 1);
        let mut id = String::with_capacity(len);
        for _ in 0..len {
            let b = u8::arbitrary(u)?;
            id.push(char::from(ID_BYTES[usize::from(b) % ID_BYTES.len()]));
        }
        id
    };
    let k = usize::from(t.signer);
    let value = sticky::encode(SECRETS[k], pool(), &id, t.expires_s);
    if !sticky::is_valid_backend_id(&id) {
        assert!(value.is_empty(), "encoded invalid id {id:?}");
        assert_eq!(sticky::verify(&SECRETS, pool(), &value, t.now_s), Err(Invalid::Malformed));
        return Ok(());
    }
    assert!(!value.is_empty() && value.len() <= MAX_ENCODED, "{id:?} -> {value:?}");
    assert!(
        value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{value:?}"
    );

    let got = sticky::verify(&SECRETS, pool(), &value, t.now_s);
    if t.now_s < t.expires_s {
        let want = Sticky { backend_id: id.clone(), expires_s: t.expires_s, signed_by: k };
        assert_eq!(got, Ok(want), "round trip of {value:?}");
    } else {
        assert_eq!(got, Err(Invalid::Expired), "expired {value:?}");
    }

    // Valid at `now`, so each refusal below is the change's doing.
    let now = t.expires_s.saturating_sub(1);
    if t.expires_s == 0 {
        return Ok(());
    }
    let other_pool = sticky::pool_identity("pool", "salt");
    assert_eq!(sticky::verify(&SECRETS, other_pool, &value, now), Err(Invalid::OtherPool));
    assert_eq!(sticky::verify(&[FOREIGN], pool(), &value, now), Err(Invalid::BadMac));
    assert_eq!(sticky::verify(&[SECRETS[1 - k]], pool(), &value, now), Err(Invalid::BadMac));

    // One changed character, one character less or more: never valid.
    let mut flipped = value.clone().into_bytes();
    let at = usize::from(t.flip_at) % flipped.len();
    flipped[at] ^= t.flip_xor.max(1);
    if let Ok(flipped) = String::from_utf8(flipped) {
        let r = sticky::verify(&SECRETS, pool(), &flipped, now);
        assert!(r.is_err(), "{value:?} with byte {at} changed to {flipped:?} verified: {r:?}");
    }
    let shorter = &value[..value.len() - 1];
    assert!(sticky::verify(&SECRETS, pool(), shorter, now).is_err(), "{shorter:?} verified");
    for extra in ["A", "_", "="] {
        let longer = format!("{value}{extra}");
        assert!(sticky::verify(&SECRETS, pool(), &longer, now).is_err(), "{longer:?} verified");
    }
    Ok(())
}
