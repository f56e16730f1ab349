//! The work a request's cookies cost (issue #12 item 7): forged cookies against the most
//! secrets a config may list compute a bounded number of tags and key no secret, and cookies
//! signed by any listed secret still pin.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::config::Config;
use crate::router::{NoMetrics, Router};
use crate::state::memory::MemoryStore;
use crate::sticky::{self, work};

const NOW_S: u64 = 1_700_000_000;
const NOW_NS: u64 = NOW_S * 1_000_000_000;
/// The most tags one request may cost.
const MAX_TAGS: usize = 16;

/// 8 secrets of 1 KB: the most a config may list, of the longest length.
fn secrets() -> Vec<String> {
    (0..8).map(|i| format!("{i}").repeat(1024)).collect()
}

fn router() -> Router {
    let config = serde_json::json!({
        "cluster": "pool",
        "sticky": {"secrets": secrets()},
        "backends": [
            {"id": "b1", "address": "10.0.0.1:80"},
            {"id": "b2", "address": "10.0.0.2:80"},
            {"id": "b3", "address": "10.0.0.3:80"},
        ],
    });
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    Router::new(config, 1, 0, Box::new(MemoryStore::new()), Box::new(NoMetrics))
}

fn pool() -> [u8; 8] {
    sticky::pool_identity("pool", "")
}

/// A well-formed cookie for `pool` naming `id`, signed with a secret the proxies do not have.
fn forged(pool: [u8; 8], id: &str) -> String {
    sticky::encode(&[b'x'; 64], pool, id, NOW_S + 600)
}

/// `lb_session=` cookies with these values, as one `Cookie` header.
fn header(values: &[String]) -> String {
    values.iter().map(|v| format!("lb_session={v}")).collect::<Vec<_>>().join("; ")
}

/// The backend the request's cookie pinned, with the secrets keyed and tags computed.
fn pinned(router: &mut Router, header: &str) -> (Option<usize>, usize, usize) {
    work::of(|| router.steer(None, Some(header), NOW_NS).map(|(_, t)| t.sticky.pinned).unwrap())
}

/// Before: 64 tags, each keying its 1 KB secret again (8 cookies × 8 secrets).
#[test]
fn forged_cookies_cost_a_bounded_number_of_tags_and_key_no_secret() {
    let mut r = router();
    let cookies: Vec<String> = (0..8).map(|i| forged(pool(), &format!("b{}", 1 + i % 3))).collect();
    let (pin, keyed, tags) = pinned(&mut r, &header(&cookies));
    assert_eq!(pin, None);
    assert_eq!(keyed, 0, "secrets keyed per request");
    assert!(tags <= MAX_TAGS, "{tags} tags for one request");
}

/// Each distinct value is checked once per secret: the same forged value 8 times costs one
/// tag per secret. Before: 64 tags.
#[test]
fn a_repeated_value_is_checked_once() {
    let mut r = router();
    let (pin, keyed, tags) = pinned(&mut r, &header(&vec![forged(pool(), "b1"); 8]));
    assert_eq!((pin, keyed, tags), (None, 0, 8));
}

/// Cookies of another pool (another cluster on the same site, with the same cookie name) are
/// refused before any tag. Before: 64 tags.
#[test]
fn other_pools_cookies_cost_no_tag() {
    let mut r = router();
    let other = sticky::pool_identity("other", "");
    let cookies: Vec<String> = (0..8).map(|_| forged(other, "b1")).collect();
    let (pin, keyed, tags) = pinned(&mut r, &header(&cookies));
    assert_eq!((pin, keyed, tags), (None, 0, 0));
}

/// The newest secret signs every cookie issued: it is tried on every value first, so a
/// valid cookie behind 7 forged ones still pins, within the bound. Before: 57 tags.
#[test]
fn a_valid_cookie_behind_forged_ones_still_pins() {
    let mut r = router();
    let mut cookies: Vec<String> = (0..7).map(|_| forged(pool(), "b1")).collect();
    let newest = secrets()[0].clone();
    cookies.push(sticky::encode(newest.as_bytes(), pool(), "b3", NOW_S + 600));
    let (pin, keyed, tags) = pinned(&mut r, &header(&cookies));
    assert_eq!(pin, Some(2));
    assert_eq!(keyed, 0);
    assert!(tags <= MAX_TAGS, "{tags} tags");
}

/// Rotation: a cookie signed by any listed secret pins, one tag per secret tried. Before: each
/// tag keyed its secret again.
#[test]
fn a_cookie_signed_by_any_listed_secret_pins() {
    let mut r = router();
    for (i, secret) in secrets().iter().enumerate() {
        let value = sticky::encode(secret.as_bytes(), pool(), "b2", NOW_S + 600);
        let (pin, keyed, tags) = pinned(&mut r, &header(&[value]));
        assert_eq!(pin, Some(1), "signed by secret {i}");
        assert_eq!((keyed, tags), (0, i + 1), "signed by secret {i}");
    }
}

/// Issuing a cookie signs with the newest secret without keying it again. Before: 1 keying.
#[test]
fn issuing_a_cookie_keys_no_secret() {
    let mut r = router();
    let (cookie, keyed, tags) = work::of(|| {
        let (_, mut ticket) = r.steer(None, None, NOW_NS).unwrap();
        r.on_response(&mut ticket, None, 200, 1, NOW_NS).set_cookie
    });
    assert!(cookie.is_some_and(|c| c.starts_with("lb_session=")));
    assert_eq!((keyed, tags), (0, 1));
}

/// The `Set-Cookie` issued for a new session served by `backend` (its address, as Envoy
/// reports it after a retry) at `now_s`, with the tags computed.
fn issued(router: &mut Router, backend: &str, now_s: u64) -> (String, usize) {
    let now_ns = now_s * 1_000_000_000;
    let (cookie, _, tags) = work::of(|| {
        let (_, mut ticket) = router.steer(None, None, now_ns).unwrap();
        router.on_response(&mut ticket, Some(backend), 200, 2, now_ns).set_cookie
    });
    (cookie.unwrap(), tags)
}

/// The backend a `Set-Cookie` value pins when sent back.
fn pins(router: &mut Router, set_cookie: &str, now_s: u64) -> Option<usize> {
    let pair = set_cookie.split(';').next().unwrap();
    let now_ns = now_s * 1_000_000_000;
    router.steer(None, Some(pair), now_ns).map(|(_, t)| t.sticky.pinned).unwrap()
}

/// New sessions served by one backend within one second get one value, signed once; the next
/// second, or another backend, signs again, and every value pins its own backend. Before: a
/// tag per new session.
#[test]
fn new_sessions_of_one_backend_and_second_share_one_signature() {
    let mut r = router();
    let (first, tags) = issued(&mut r, "10.0.0.2:80", NOW_S);
    assert_eq!(tags, 1);
    for _ in 0..3 {
        assert_eq!(issued(&mut r, "10.0.0.2:80", NOW_S), (first.clone(), 0));
    }
    let (other, tags) = issued(&mut r, "10.0.0.3:80", NOW_S);
    assert_eq!(tags, 1);
    let (later, tags) = issued(&mut r, "10.0.0.2:80", NOW_S + 1);
    assert_eq!(tags, 1);
    assert!(first != other && first != later, "{first} {other} {later}");
    assert_eq!(pins(&mut r, &first, NOW_S + 1), Some(1));
    assert_eq!(pins(&mut r, &later, NOW_S + 1), Some(1));
    assert_eq!(pins(&mut r, &other, NOW_S + 1), Some(2));
}

/// Backends that share a slot of the issued values (pool indexes 0 and 64) never get each
/// other's value.
#[test]
fn backends_sharing_a_slot_of_issued_values_get_their_own() {
    let backends: Vec<_> = (0..65)
        .map(|i| serde_json::json!({"id": format!("b{i}"), "address": format!("10.0.1.{i}:80")}))
        .collect();
    let config = serde_json::json!({"cluster": "pool", "sticky": {"secrets": secrets()},
        "backends": backends});
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    let mut r = Router::new(config, 1, 0, Box::new(MemoryStore::new()), Box::new(NoMetrics));
    let (zero, _) = issued(&mut r, "10.0.1.0:80", NOW_S);
    let (sixty_four, tags) = issued(&mut r, "10.0.1.64:80", NOW_S);
    assert_eq!(tags, 1);
    assert_eq!(pins(&mut r, &zero, NOW_S), Some(0));
    assert_eq!(pins(&mut r, &sixty_four, NOW_S), Some(64));
    // Each still signs again after the other took the slot.
    assert_eq!(issued(&mut r, "10.0.1.0:80", NOW_S), (zero, 1));
}
