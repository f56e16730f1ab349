//! Steering: a router built from a small valid config (1 to 8 of a fixed set of backends, any
//! algorithm, weights, backups, draining, sticky cookies, passive ejection, slow start, chosen
//! by the input) serves a sequence of requests with arbitrary facts (source address, Cookie
//! header, path, hash header; a valid session cookie spliced in when the input asks). The
//! steering value lists 1 to max_hosts distinct configured hosts, so never an address the
//! request carried; a draining backend only as a pinned primary; a backup only when every
//! primary drains; a valid cookie pins its backend; a hash key keeps its hosts; a Set-Cookie names the backend that served; and every
//! in-flight count is released exactly once.
#![no_main]

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;

use arbitrary::Arbitrary;
use envoy_lb::config::{Config, ALGORITHMS};
use envoy_lb::router::{KeySource, Metrics, Router, Ticket};
use envoy_lb::state::memory::MemoryStore;
use envoy_lb::{hash_key, sticky};
use libfuzzer_sys::fuzz_target;

/// The addresses a config may hold, as Envoy renders them (`Backend::host`).
const ADDRS: [&str; 8] = [
    "10.0.0.1:8080",
    "10.0.0.2:8080",
    "[2001:db8::3]:8080",
    "192.168.1.4:80",
    "[::1]:9000",
    "10.0.0.6:8080",
    "127.0.0.1:8081",
    "[fd00::8]:443",
];
const IDS: [&str; 8] = ["b0", "b1", "web-2", "b.3", "b_4", "b5", "B6", "b7"];
const HASH_ON: [&str; 5] = [
    r#"{"source_ip":true}"#,
    r#"{"header":"x-user"}"#,
    r#"{"cookie":"user"}"#,
    r#"{"cookie":"lb_session"}"#,
    r#"{"query":"k"}"#,
];
const SECRET: &str = "fuzz-steering-secret-0123456789abcdef";
const COOKIE: &str = "lb_session";
const TTL_S: u64 = 3600;
const START_NS: u64 = 1_700_000_000_000_000_000;
const MAX_REQUESTS: usize = 16;

#[derive(Debug, Arbitrary)]
struct Input {
    seed: u64,
    backends: u8,
    backup: u8,
    drain: u8,
    weights: [u8; 8],
    algorithm: u8,
    hash_on: u8,
    max_hosts: u8,
    sticky: bool,
    passive: bool,
    slow_start: bool,
    requests: Vec<Request>,
}

#[derive(Debug, Arbitrary)]
struct Request {
    source: String,
    cookie: Option<String>,
    path: String,
    header: String,
    /// Splice a valid session cookie for this backend (index mod N), valid this many seconds.
    pin: Option<(u8, u16)>,
    dt_ms: u16,
    served: Served,
    status: u16,
    attempts: u8,
    /// Keep the request open until the end of the input (overlapping requests).
    keep_open: bool,
}

#[derive(Debug, Arbitrary)]
enum Served {
    Nobody,
    Backend(u8),
    Text(String),
}

/// In-flight deltas per backend, shared with the test.
#[derive(Clone, Default)]
struct Counts(Rc<RefCell<[i64; 8]>>);

impl Metrics for Counts {
    fn in_flight(&mut self, backend: usize, delta: i64) {
        let mut c = self.0.borrow_mut();
        let slot = c.get_mut(backend).unwrap_or_else(|| panic!("in_flight of backend {backend}"));
        *slot += delta;
        assert!(*slot >= 0, "in-flight count of backend {backend} went negative");
    }
}

struct Setup {
    n: usize,
    backup: Vec<bool>,
    drain: Vec<bool>,
    max_hosts: usize,
    hashing: bool,
    sticky: bool,
    /// Passive ejection: backends may become unavailable.
    passive: bool,
    slow_start: bool,
}

fuzz_target!(|input: Input| {
    let (json, setup) = config(&input);
    let config = parsed(&json);
    let counts = Counts::default();
    let mut router = Router::new(
        config,
        input.seed,
        START_NS,
        Box::new(MemoryStore::new()),
        Box::new(counts.clone()),
    );
    let mut now_ns = START_NS;
    let mut open: Vec<Ticket> = Vec::new();
    for req in input.requests.iter().take(MAX_REQUESTS) {
        now_ns += u64::from(req.dt_ms) * 1_000_000;
        router.tick(now_ns);
        if let Some(ticket) = request(&mut router, &setup, req, now_ns) {
            open.push(ticket);
        }
    }
    for mut ticket in open {
        router.on_end(&mut ticket, now_ns);
    }
    assert_eq!(*counts.0.borrow(), [0; 8], "in-flight counts not released");
});

thread_local! {
    /// Configs already parsed (the `config` target fuzzes parsing; here it would only cost).
    static PARSED: RefCell<HashMap<String, Config>> = RefCell::new(HashMap::new());
}

fn parsed(json: &str) -> Config {
    PARSED.with_borrow_mut(|cache| {
        if let Some(c) = cache.get(json) {
            return c.clone();
        }
        let c = Config::from_json(json.as_bytes())
            .unwrap_or_else(|e| panic!("the target's own config is refused: {e}\n{json}"));
        if cache.len() >= 4096 {
            cache.clear();
        }
        cache.insert(json.to_string(), c.clone());
        c
    })
}

fn config(input: &Input) -> (String, Setup) {
    let n = 1 + usize::from(input.backends) % ADDRS.len();
    let mask = (1u16 << n) - 1;
    let mut backup = u16::from(input.backup) & mask;
    let mut drain = u16::from(input.drain) & mask;
    // At least one primary and one backend not draining, as config validation requires.
    if backup == mask {
        backup &= !1;
    }
    if drain == mask {
        drain &= !1;
    }
    let backends: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id":"{}","address":"{}","weight":{},"backup":{},"drain":{}}}"#,
                IDS[i],
                ADDRS[i],
                1 + input.weights[i] % 5,
                backup >> i & 1 == 1,
                drain >> i & 1 == 1
            )
        })
        .collect();
    let algorithm = ALGORITHMS[usize::from(input.algorithm) % ALGORITHMS.len()].1;
    let max_hosts = 1 + usize::from(input.max_hosts) % 10;
    let mut json = format!(
        r#"{{"cluster":"pool","algorithm":"{}","backends":[{}],"target":{{"max_hosts":{max_hosts}}}"#,
        algorithm,
        backends.join(",")
    );
    match algorithm {
        "ring_hash" => {
            let h = HASH_ON[usize::from(input.hash_on) % HASH_ON.len()];
            json += &format!(
                r#","hash_on":{h},"ring_hash":{{"min_ring_size":64,"max_ring_size":1024}}"#
            );
        }
        "maglev" => {
            let h = HASH_ON[usize::from(input.hash_on) % HASH_ON.len()];
            json += &format!(r#","hash_on":{h},"maglev":{{"table_size":211}}"#);
        }
        "source_ip_hash" => json += r#","maglev":{"table_size":211}"#,
        _ => {}
    }
    if input.sticky {
        json += &format!(r#","sticky":{{"secrets":["{SECRET}"],"ttl_s":{TTL_S}}}"#);
    }
    if input.passive {
        json += r#","outlier_detection":{"consecutive_errors":2,"base_ejection_ms":1000}"#;
    }
    if input.slow_start {
        json += r#","slow_start_ms":5000"#;
    }
    json.push('}');
    let setup = Setup {
        n,
        backup: (0..n).map(|i| backup >> i & 1 == 1).collect(),
        drain: (0..n).map(|i| drain >> i & 1 == 1).collect(),
        max_hosts,
        hashing: matches!(algorithm, "ring_hash" | "maglev" | "source_ip_hash"),
        sticky: input.sticky,
        passive: input.passive,
        slow_start: input.slow_start,
    };
    (json, setup)
}

/// One request: steer, check the value, answer, end (or keep open). Returns the open ticket.
fn request(router: &mut Router, s: &Setup, req: &Request, now_ns: u64) -> Option<Ticket> {
    let now_s = now_ns / 1_000_000_000;
    let cookie = cookie_header(s, req, now_s);
    let key_input = match router.key_source() {
        KeySource::None => None,
        KeySource::SourceAddress => Some(req.source.as_str()),
        KeySource::Header(_) => Some(req.header.as_str()),
        KeySource::CookieHeader => cookie.as_deref(),
        KeySource::Path => Some(req.path.as_str()),
    };
    let has_key = match router.key_source() {
        KeySource::None => false,
        KeySource::SourceAddress => hash_key::source_ip(&req.source).is_some(),
        KeySource::Header(_) => true,
        KeySource::CookieHeader => {
            let name = if router.config().balancing.hash_on
                == Some(envoy_lb::config::HashOn::Cookie(COOKIE.into()))
            {
                COOKIE
            } else {
                "user"
            };
            cookie.as_deref().and_then(|c| hash_key::cookie(c, name)).is_some()
        }
        KeySource::Path => hash_key::query(&req.path, "k").is_some(),
    };
    let cookies = if router.wants_cookies() { cookie.as_deref() } else { None };
    // What the session cookies say, found independently: every verified id, and the pin.
    let verified: Vec<(usize, u64)> = match cookies {
        Some(c) if s.sticky => hash_key::cookies(c, COOKIE)
            .take(8)
            .filter_map(|v| sticky::verify(&[SECRET.as_bytes()], pool(), v, now_s).ok())
            .filter_map(|v| {
                IDS[..s.n].iter().position(|id| *id == v.backend_id).map(|i| (i, v.expires_s))
            })
            .collect(),
        _ => Vec::new(),
    };
    // Nobody is ever ejected: every backend stays available (slow start only ramps them).
    let stable = !s.passive;
    // Backups take new requests only when every primary drains (all are available here).
    let backups_open = (0..s.n).all(|i| s.backup[i] || s.drain[i]);
    // The pin: the first verified cookie whose backend may be picked (a backup only while
    // the backups are open).
    let pin = verified.iter().copied().find(|&(i, _)| !s.backup[i] || backups_open);

    let Some((steering, mut ticket)) = router.steer(key_input, cookies, now_ns) else {
        assert!(!stable, "no steering value while every backend is available");
        return None;
    };
    let value = steering.value.to_string();
    let hosts = check_value(s, &value, &verified);
    let ids: Vec<&str> = router.last_picks().collect();
    let want_ids: Vec<&str> = hosts.iter().map(|&i| IDS[i]).collect();
    assert_eq!(ids, want_ids, "last_picks and value {value:?} differ");

    if stable {
        if let Some((p, _)) = pin {
            assert_eq!(hosts[0], p, "a valid cookie for {} did not pin: {value:?}", IDS[p]);
        }
        // A primary takes new requests: no backup.
        if !backups_open {
            for (n, &i) in hosts.iter().enumerate() {
                let pinned = n == 0 && pin.is_some_and(|(p, _)| p == i);
                assert!(!s.backup[i] || pinned, "backup {} at {n} in {value:?}", IDS[i]);
            }
        }
        // Filled up to max_hosts with the backends that may be picked (slow start admits
        // ramping backends at random, so only without it).
        let mut may: HashSet<usize> =
            (0..s.n).filter(|&i| !s.drain[i] && (!s.backup[i] || backups_open)).collect();
        may.extend(pin.map(|(p, _)| p));
        if !s.slow_start {
            assert_eq!(hosts.len(), s.max_hosts.min(may.len()), "{value:?}: not filled");
        }
        if s.hashing && has_key && pin.is_none() && !s.slow_start {
            let (again, mut t2) = router.steer(key_input, cookies, now_ns).expect("a second value");
            assert_eq!(again.value, value, "the same key steered differently");
            router.on_end(&mut t2, now_ns);
        }
    }

    // As the adapter: Envoy's upstream.address only after a retry (and only when the router
    // attributes responses); otherwise try k went to the k-th host of the value.
    let attempts = u32::from(req.attempts);
    let (served, served_index) = if router.needs_served_by(attempts) {
        let served = match &req.served {
            Served::Nobody => None,
            Served::Backend(i) => Some(ADDRS[usize::from(*i) % s.n].to_string()),
            Served::Text(t) => Some(t.clone()),
        };
        let index = served.as_deref().and_then(|t| t.parse::<SocketAddr>().ok()).and_then(|a| {
            ADDRS[..s.n].iter().position(|h| h.parse::<SocketAddr>().ok() == Some(a))
        });
        (served, index)
    } else {
        let retried = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
        (None, hosts.get(retried).copied())
    };
    let answer = router.on_response(
        &mut ticket,
        served.as_deref(),
        u32::from(req.status),
        attempts,
        now_ns + 1_000_000,
    );
    // As the router judges an answer: no backend known, or a 5xx (e.g. Envoy's own 503 after a
    // refused connection). No session starts on one.
    let errored = served_index.is_none() || req.status >= 500;
    if let Some(set) = &answer.set_cookie {
        assert!(!errored, "Set-Cookie {set:?} on a failed answer ({}, {served:?})", req.status);
        let k =
            served_index.unwrap_or_else(|| panic!("cookie {set:?} for unconfigured {served:?}"));
        assert!(s.sticky, "Set-Cookie without sticky: {set:?}");
        let v = set
            .strip_prefix("lb_session=")
            .and_then(|r| r.split(';').next())
            .unwrap_or_else(|| panic!("Set-Cookie {set:?}"));
        let got = sticky::verify(&[SECRET.as_bytes()], pool(), v, now_s)
            .unwrap_or_else(|e| panic!("issued cookie {v:?} does not verify: {e}"));
        assert_eq!(got.backend_id, IDS[k], "cookie for {} but {served:?} served", got.backend_id);
    } else if s.sticky && stable && !errored {
        if let Some(k) = served_index {
            let kept = pin.is_some_and(|(p, exp)| {
                hosts[0] == p && p == k && !sticky::needs_refresh(exp, TTL_S, now_s)
            });
            assert!(kept, "no Set-Cookie for {} (pin {pin:?}, value {value:?})", IDS[k]);
        }
    }
    if req.keep_open {
        return Some(ticket);
    }
    router.on_end(&mut ticket, now_ns + 2_000_000);
    None
}

/// The request's Cookie header: the input's, with a valid session cookie after it if asked.
fn cookie_header(s: &Setup, req: &Request, now_s: u64) -> Option<String> {
    let Some((i, valid_s)) = req.pin else { return req.cookie.clone() };
    let id = IDS[usize::from(i) % s.n];
    let value = sticky::encode(SECRET.as_bytes(), pool(), id, now_s + u64::from(valid_s));
    Some(match &req.cookie {
        Some(c) => format!("{c}; {COOKIE}={value}"),
        None => format!("{COOKIE}={value}"),
    })
}

fn pool() -> [u8; 8] {
    sticky::pool_identity("pool", "")
}

/// The value's hosts as backend indexes, after checking that they are 1..=max_hosts distinct
/// configured hosts, a draining one only first and only when a verified cookie names it, or
/// when every host listed is draining (the last resort).
fn check_value(s: &Setup, value: &str, verified: &[(usize, u64)]) -> Vec<usize> {
    let hosts: Vec<usize> = value
        .split(',')
        .map(|h| {
            ADDRS[..s.n]
                .iter()
                .position(|a| *a == h)
                .unwrap_or_else(|| panic!("{h:?} in {value:?} is not a configured host"))
        })
        .collect();
    assert!(
        !hosts.is_empty() && hosts.len() <= s.max_hosts,
        "{value:?}: max_hosts {}",
        s.max_hosts
    );
    let distinct: HashSet<usize> = hosts.iter().copied().collect();
    assert_eq!(distinct.len(), hosts.len(), "repeated host in {value:?}");
    // Draining backends serve as a last resort (`Availability::draining_serve`: no primary
    // that is not draining serves, no backup is up); then every host listed is draining.
    let last_resort = hosts.iter().all(|&i| s.drain[i]);
    for (n, &i) in hosts.iter().enumerate() {
        if s.drain[i] {
            let pinned = n == 0 && verified.iter().any(|&(v, _)| v == i);
            assert!(
                pinned || last_resort,
                "draining {} at {n} in {value:?} without its cookie",
                IDS[i]
            );
        }
    }
    hosts
}
