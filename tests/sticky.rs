//! Sticky sessions on a real Envoy: the first answer sets a signed cookie and later requests
//! with it reach the same backend; forged, expired and random cookies pin nothing; a pinned
//! backend that fails its health checks hands the session over with a new cookie; draining
//! backends keep their sessions but get no new ones; the upstream's own Set-Cookie survives;
//! the cookie never shows an address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const SECRET: &str = "a test secret of at least thirty-two bytes";
const COOKIE: &str = "lb_session";

fn sticky(extra: serde_json::Value) -> serde_json::Value {
    let mut s = json!({"cookie": COOKIE, "secrets": [SECRET], "ttl_s": 3600, "secure": false});
    if let serde_json::Value::Object(extra) = extra {
        for (k, v) in extra {
            s[k] = v;
        }
    }
    s
}

async fn start_with(backends: &[Backend], cfg: serde_json::Value) -> Envoy {
    let endpoints = backends.iter().map(|b| b.addr).collect();
    Envoy::start(EnvoySetup::new(cfg.to_string(), endpoints).concurrency(2)).await
}

fn config(backends: &[Backend], extra: serde_json::Value) -> serde_json::Value {
    let pool: Vec<_> =
        backends.iter().map(|b| json!({"id": b.id(), "address": b.addr.to_string()})).collect();
    let mut cfg = json!({"cluster": "pool", "backends": pool, "sticky": sticky(json!({}))});
    if let serde_json::Value::Object(extra) = extra {
        for (k, v) in extra {
            cfg[k] = v;
        }
    }
    cfg
}

/// One GET with `cookie` (if any): (backend id, our Set-Cookie value if any, all Set-Cookies).
async fn get(envoy: &Envoy, cookie: Option<&str>) -> (String, Option<String>, Vec<String>) {
    let mut req = client().get(envoy.url("/"));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-backend"].to_str().unwrap().to_string();
    let all: Vec<String> =
        r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let ours = all
        .iter()
        .find_map(|c| c.strip_prefix(&format!("{COOKIE}=")))
        .map(|c| c.split(';').next().unwrap().to_string());
    (id, ours, all)
}

/// (a) The first answer sets the cookie; 100 requests with it reach that backend, and no
/// new cookie is sent while the session is young.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_pins_the_session() {
    let backends = backends(3).await;
    let envoy = start_with(&backends, config(&backends, json!({}))).await;
    let (first, cookie, all) = get(&envoy, None).await;
    let cookie = cookie.expect("no session cookie on the first answer");
    let line = all.iter().find(|c| c.starts_with(COOKIE)).unwrap();
    assert!(line.contains("Max-Age=3600") && line.contains("Path=/") && line.contains("HttpOnly"));
    assert!(line.contains("SameSite=Lax") && !line.contains("Secure"), "{line}");
    for _ in 0..100 {
        let (id, again, _) = get(&envoy, Some(&format!("{COOKIE}={cookie}"))).await;
        assert_eq!(id, first);
        assert_eq!(again, None, "a valid young cookie is not re-issued");
    }
    assert_eq!(envoy.stat("wasmcustom.lb_sticky_hits_total.pool.pool").await, 100);
    assert_eq!(envoy.stat("wasmcustom.lb_sticky_misses_total.pool.pool").await, 1);
    // Without the cookie, round robin spreads the requests again.
    let mut seen = HashSet::new();
    for _ in 0..6 {
        seen.insert(get(&envoy, None).await.0);
    }
    assert!(seen.len() > 1);
}

/// (b) Forged, expired, other-pool and random values pin nothing and get a fresh cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_random_cookies_do_not_pin() {
    let backends = backends(3).await;
    let envoy = start_with(&backends, config(&backends, json!({}))).await;
    let pool = envoy_lb::sticky::pool_identity("pool", "");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let expired = envoy_lb::sticky::encode(SECRET.as_bytes(), pool, "b1", now - 1);
    let forged =
        envoy_lb::sticky::encode(b"another secret of thirty-two bytes!!", pool, "b1", now + 600);
    let other_pool = envoy_lb::sticky::encode(
        SECRET.as_bytes(),
        envoy_lb::sticky::pool_identity("other", ""),
        "b1",
        now + 600,
    );
    let valid = envoy_lb::sticky::encode(SECRET.as_bytes(), pool, "b1", now + 600);
    let mut tampered = valid.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [expired, forged, other_pool, tampered, "b1".into(), "random-junk".into()] {
        let mut ids = BTreeMap::new();
        for _ in 0..30 {
            let (id, fresh, _) = get(&envoy, Some(&format!("{COOKIE}={bad}"))).await;
            assert!(fresh.is_some(), "{bad}: no fresh cookie");
            *ids.entry(id).or_insert(0) += 1;
        }
        assert_eq!(ids.len(), 3, "{bad} pinned the requests: {ids:?}");
    }
    // Every one of them was counted as invalid.
    assert_eq!(envoy.stat("wasmcustom.lb_sticky_invalid_total.pool.pool").await, 6 * 30);
    // The genuine one pins.
    for _ in 0..10 {
        assert_eq!(get(&envoy, Some(&format!("{COOKIE}={valid}"))).await.0, "b1");
    }
}

/// (c) With health checks on, a pinned backend that fails moves its session elsewhere, with
/// a new cookie, and the new cookie sticks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_backend_hands_the_session_over() {
    let backends = backends(3).await;
    let health = json!({"interval_ms": 200, "timeout_ms": 100, "unhealthy_threshold": 2});
    let envoy = start_with(&backends, config(&backends, json!({"health_check": health}))).await;
    let (first, cookie, _) = get(&envoy, None).await;
    let cookie = cookie.unwrap();
    let pinned = backends.iter().find(|b| b.id() == first).unwrap();
    pinned.set_healthy(false);
    let deadline = Instant::now() + Duration::from_secs(5);
    let (moved, fresh) = loop {
        let (id, fresh, _) = get(&envoy, Some(&format!("{COOKIE}={cookie}"))).await;
        if id != first {
            break (id, fresh);
        }
        assert!(Instant::now() < deadline, "the session never left the failed backend");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let fresh = fresh.expect("no new cookie after the hand-over");
    for _ in 0..20 {
        assert_eq!(get(&envoy, Some(&format!("{COOKIE}={fresh}"))).await.0, moved);
    }
}

/// (d) A draining backend gets no new sessions and no other picks, but a valid cookie keeps
/// reaching it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_backend_keeps_only_its_sessions() {
    let backends = backends(3).await;
    let envoy = start_with(&backends, config(&backends, json!({}))).await;
    // A session on b3, opened before the drain.
    let mut cookie = None;
    for _ in 0..12 {
        let (id, c, _) = get(&envoy, None).await;
        if id == "b3" {
            cookie = c;
            break;
        }
    }
    let cookie = cookie.expect("no session landed on b3");
    drop(envoy);
    let mut cfg = config(&backends, json!({}));
    cfg["backends"][2]["drain"] = json!(true);
    let envoy = start_with(&backends, cfg).await;
    let before = backends[2].stats.requests.load(Ordering::SeqCst);
    for _ in 0..60 {
        let (id, _, _) = get(&envoy, None).await;
        assert_ne!(id, "b3", "a draining backend got a new session");
    }
    assert_eq!(backends[2].stats.requests.load(Ordering::SeqCst), before);
    for _ in 0..10 {
        assert_eq!(get(&envoy, Some(&format!("{COOKIE}={cookie}"))).await.0, "b3");
    }
}

/// (e) The upstream's own Set-Cookie is kept next to ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_set_cookie_survives() {
    let mut backends = Vec::new();
    for i in 1..=2 {
        let mut o = BackendOptions::new(format!("b{i}"));
        o.set_cookie = Some("app=42; Path=/".into());
        backends.push(backend(o).await);
    }
    let envoy = start_with(&backends, config(&backends, json!({}))).await;
    let (_, ours, all) = get(&envoy, None).await;
    assert!(ours.is_some(), "{all:?}");
    assert!(all.iter().any(|c| c == "app=42; Path=/"), "the upstream cookie was lost: {all:?}");
}

/// (f) The cookie holds no part of any backend address: decoded (base64url), it is exactly
/// version 1, the pool identity, the backend's id, an expiry and a 16-byte tag (src/sticky.rs),
/// and no address shows in its bytes as text or binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_reveals_no_address() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine as _;
    let backends = backends(3).await;
    let envoy = start_with(&backends, config(&backends, json!({}))).await;
    for _ in 0..6 {
        let (served_by, cookie, _) = get(&envoy, None).await;
        let cookie = cookie.unwrap();
        let bytes = B64.decode(&cookie).unwrap_or_else(|e| panic!("{cookie}: {e}"));
        let id = served_by.as_bytes();
        assert_eq!(bytes.len(), 1 + 8 + 1 + id.len() + 8 + 16, "{cookie}: {bytes:?}");
        assert_eq!((bytes[0], bytes[9] as usize), (1, id.len()), "{bytes:?}");
        assert_eq!(&bytes[10..10 + id.len()], id, "{bytes:?}");
        let expiry = u64::from_be_bytes(bytes[10 + id.len()..18 + id.len()].try_into().unwrap());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        assert!((now.as_secs()..now.as_secs() + 86_400).contains(&expiry), "expiry {expiry}");
        for b in &backends {
            let std::net::IpAddr::V4(ip) = b.addr.ip() else { panic!("{}", b.addr) };
            // The layout above accounts for every byte; these forms are long enough not to
            // turn up by chance in the tag or the pool identity.
            let forms = [
                b.addr.to_string().into_bytes(),
                b.addr.port().to_string().into_bytes(),
                ip.octets().to_vec(),
            ];
            for form in &forms {
                let found = bytes.windows(form.len()).any(|w| w == form);
                assert!(!found, "{cookie} holds {form:?} of {}: {bytes:?}", b.addr);
            }
        }
    }
}

/// Without configured secrets every worker signs with one random per-process secret (shared
/// data), so a cookie issued by one worker is honoured by the others; a warning says cookies
/// will not survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_secrets_all_workers_share_one_random_secret() {
    let backends = backends(3).await;
    let mut cfg = config(&backends, json!({}));
    cfg["sticky"] = json!({"cookie": COOKIE, "secure": false});
    let envoy = start_with(&backends, cfg).await;
    let (first, cookie, _) = get(&envoy, None).await;
    let cookie = cookie.unwrap();
    // New connections land on both workers; every one honours the cookie.
    for _ in 0..40 {
        assert_eq!(get(&envoy, Some(&format!("{COOKIE}={cookie}"))).await.0, first);
    }
    assert!(envoy.log().contains("sticky: no secrets configured"), "{}", envoy.log_tail(20));
    envoy.assert_every_worker_served().await;
}
