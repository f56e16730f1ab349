//! Arbitrary bytes as the plugin configuration: `Config::from_json` never panics, a refusal
//! names a JSON path, and an accepted config holds every invariant docs/configuration.md
//! promises. An accepted config that is cheap to build also gets a router that
//! steers once, listing only configured backends.
#![no_main]

use std::collections::HashSet;
use std::net::SocketAddr;

use envoy_lb::config::{Algorithm, Config, HashOn, TargetMode, MAX_HOSTS_LIMIT};
use envoy_lb::router::{NoMetrics, Router};
use envoy_lb::state::memory::MemoryStore;
use envoy_lb::sticky;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Config::from_json(data) {
        Err(e) => {
            assert!(e.path.starts_with('$'), "error path {:?}", e.path);
            assert!(!e.message.is_empty(), "empty message at {}", e.path);
            let _ = e.to_string();
        }
        Ok(config) => {
            check(&config);
            if cheap_to_build(&config) {
                steer_once(config);
            }
        }
    }
});

fn check(c: &Config) {
    assert!(!c.cluster.trim().is_empty() && c.cluster.len() <= 256, "cluster {:?}", c.cluster);
    assert!(!c.cluster.chars().any(char::is_control), "cluster {:?}", c.cluster);

    // The pool: 1..=10000 backends, valid unique ids; unique usable addresses, or unique
    // cluster names in cluster_header mode.
    assert!(!c.pool.is_empty(), "empty pool accepted");
    assert!(c.pool.len() <= envoy_lb::backend::MAX_BACKENDS);
    let by_cluster = c.target.mode == TargetMode::ClusterHeader;
    let mut ids = HashSet::new();
    let mut hosts = HashSet::new();
    for b in c.pool.iter() {
        assert!(sticky::is_valid_backend_id(&b.id), "id {:?}", b.id);
        assert!(ids.insert(b.id.as_str()), "duplicate id {:?}", b.id);
        assert!(hosts.insert(b.host.as_str()), "duplicate host {:?}", b.host);
        assert_eq!(b.address.is_none(), by_cluster, "{b:?} in mode {:?}", c.target.mode);
        if let Some(address) = b.address {
            assert_ne!(address.port(), 0, "port 0: {address}");
            assert!(!address.ip().is_unspecified(), "unspecified: {address}");
            if let SocketAddr::V6(v6) = address {
                assert_eq!((v6.scope_id(), v6.flowinfo()), (0, 0), "zone/flow: {address}");
            }
            assert_eq!(b.host.parse::<SocketAddr>().ok(), Some(address), "host {:?}", b.host);
        } else {
            let ok = !b.host.trim().is_empty() && b.host.len() <= 256;
            assert!(ok && !b.host.chars().any(char::is_control), "cluster {:?}", b.host);
        }
        assert!((1..=10_000).contains(&b.weight), "weight {}", b.weight);
    }
    assert!(c.pool.iter().any(|b| !b.backup), "only backups accepted");
    assert!(c.pool.iter().any(|b| !b.drain), "only draining backends accepted");

    // The steering header.
    let t = &c.target;
    assert!((1..=MAX_HOSTS_LIMIT).contains(&t.max_hosts), "max_hosts {}", t.max_hosts);
    if t.mode != TargetMode::OverrideHost {
        assert_eq!(t.max_hosts, 1, "max_hosts {} in mode {:?}", t.max_hosts, t.mode);
    }
    if t.mode != TargetMode::OriginalDst {
        assert!(!t.allow_header_fallback && t.probe_cluster.is_none(), "{t:?}");
    }
    assert!(!t.header.is_empty() && t.header.len() <= 256, "header {:?}", t.header);
    assert!(
        t.header.bytes().all(|b| (b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            && !b.is_ascii_uppercase()),
        "header {:?}",
        t.header
    );

    // The algorithm and its tuning.
    let a = &c.balancing;
    assert_eq!(a.algorithm, c.algorithm);
    let hashes =
        matches!(c.algorithm, Algorithm::RingHash | Algorithm::Maglev | Algorithm::SourceIpHash);
    assert_eq!(a.hash_on.is_some(), hashes, "hash_on {:?} with {:?}", a.hash_on, c.algorithm);
    if c.algorithm == Algorithm::SourceIpHash {
        assert_eq!(a.hash_on, Some(HashOn::SourceIp));
    }
    match &a.hash_on {
        Some(HashOn::Header(n) | HashOn::Cookie(n) | HashOn::Query(n)) => {
            assert!(!n.is_empty(), "empty hash_on name")
        }
        Some(HashOn::SourceIp) | None => {}
    }
    assert!(a.maglev_table_size >= c.pool.len() && a.maglev_table_size <= 5_000_011);
    assert!(is_prime(a.maglev_table_size), "table {}", a.maglev_table_size);
    assert!(
        1 <= a.min_ring_size && a.min_ring_size <= a.max_ring_size && a.max_ring_size <= 8_388_608
    );
    assert!(a.choice_count <= 100);
    assert!((0.0..=10.0).contains(&a.active_request_bias), "bias {}", a.active_request_bias);
    if let Some(f) = a.balance_factor {
        assert!(hashes && (1.0..=100.0).contains(&f), "balance_factor {f} with {:?}", c.algorithm);
    }

    if let Some(h) = &c.health_check {
        assert!(h.path.starts_with('/'), "path {:?}", h.path);
        assert!(h.timeout_ms >= 1 && h.timeout_ms < h.interval_ms, "{h:?}");
        assert!(h.jitter_ms <= h.interval_ms / 2, "{h:?}");
        assert!(
            (1..=100).contains(&h.healthy_threshold) && (1..=100).contains(&h.unhealthy_threshold)
        );
        assert!(!h.expected_statuses.is_empty() && h.expected_statuses.len() <= 32);
        for &(lo, hi) in &h.expected_statuses {
            assert!(100 <= lo && lo <= hi && hi <= 599, "status range {lo}..{hi}");
        }
    }
    if let Some(o) = &c.outlier_detection {
        assert!(o.base_ejection_ms >= 1 && o.base_ejection_ms <= o.max_ejection_ms, "{o:?}");
        assert!(o.max_ejection_percent <= 100 && o.consecutive_errors >= 1, "{o:?}");
    }
    assert!(c.panic_threshold_percent <= 100);
    assert!(c.slow_start_ms <= 3_600_000);

    if let Some(s) = &c.sticky {
        assert!(s.secrets.len() <= 8, "{} secrets", s.secrets.len());
        let distinct: HashSet<&String> = s.secrets.iter().collect();
        assert_eq!(distinct.len(), s.secrets.len(), "repeated secret accepted");
        for k in &s.secrets {
            assert!((32..=1024).contains(&k.len()), "secret of {} bytes accepted", k.len());
        }
        assert!((1..=31_536_000).contains(&s.ttl_s), "ttl {}", s.ttl_s);
        let attrs = s.cookie_attributes();
        assert_eq!(attrs.invalid_field(), None, "accepted cookie attributes {s:?}");
        let header = sticky::set_cookie(&attrs, "v");
        assert!(!header.bytes().any(|b| b.is_ascii_control()), "Set-Cookie {header:?}");
        // Every id of a sticky pool can be signed.
        for b in c.pool.iter() {
            assert!(!sticky::encode(b"k", [0; 8], &b.id, 1).is_empty(), "unsignable id {}", b.id);
        }
    }
}

/// Routers whose tables are small enough to build on every input.
fn cheap_to_build(c: &Config) -> bool {
    let a = &c.balancing;
    c.pool.len() <= 64
        && match c.algorithm {
            Algorithm::Maglev | Algorithm::SourceIpHash => a.maglev_table_size <= 1_009,
            Algorithm::RingHash => a.min_ring_size <= 4_096 && a.max_ring_size <= 65_536,
            _ => true,
        }
}

/// An accepted config builds a router whose first steering value lists 1..=max_hosts distinct
/// configured hosts.
fn steer_once(config: Config) {
    let hosts: HashSet<String> = config.pool.iter().map(|b| b.host.clone()).collect();
    let max_hosts = config.target.max_hosts;
    let now_ns = 1_700_000_000_000_000_000;
    let mut router =
        Router::new(config, 7, now_ns, Box::new(MemoryStore::new()), Box::new(NoMetrics));
    router.tick(now_ns);
    let Some((steering, mut ticket)) = router.steer(Some("10.1.2.3:4567"), None, now_ns) else {
        return;
    };
    // One backend per request outside override_host, and a cluster name may hold a comma.
    let listed: Vec<&str> =
        if max_hosts == 1 { vec![steering.value] } else { steering.value.split(',').collect() };
    assert!(!listed.is_empty() && listed.len() <= max_hosts, "{:?}", steering.value);
    let distinct: HashSet<&str> = listed.iter().copied().collect();
    assert_eq!(distinct.len(), listed.len(), "repeated host: {:?}", steering.value);
    for h in &listed {
        assert!(hosts.contains(*h), "unconfigured host {h:?} in {:?}", steering.value);
    }
    router.on_end(&mut ticket, now_ns);
}

fn is_prime(n: usize) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}
