//! The status block: defaults, path and CIDR validation, and who is served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;

use super::Cidr;
use crate::config::{Config, ConfigError};

fn with_status(status: &str) -> String {
    format!(
        r#"{{"cluster":"c","backends":[{{"id":"a","address":"10.0.0.1:80"}}],"status":{status}}}"#
    )
}

fn refuse(json: &str) -> ConfigError {
    match Config::from_json(json.as_bytes()) {
        Ok(_) => panic!("expected {json} to be refused"),
        Err(e) => e,
    }
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn defaults_serve_loopback_only_on_the_default_path() {
    let c = Config::from_json(with_status("{}").as_bytes()).unwrap();
    let s = c.status.unwrap();
    assert_eq!(s.path, "/.lb/status");
    assert!(s.serves("/.lb/status", ip("127.0.0.1")));
    assert!(s.serves("/.lb/status?x=1", ip("127.9.9.9")));
    assert!(s.serves("/.lb/status", ip("::1")));
    assert!(s.serves("/.lb/status", ip("::ffff:127.0.0.1")), "IPv4-mapped loopback");
    assert!(!s.serves("/.lb/status", ip("10.0.0.1")));
    assert!(!s.serves("/.lb/status", ip("::2")));
    assert!(!s.serves("/.lb/status", None));
    assert!(!s.serves("/.lb/status/x", ip("127.0.0.1")));
    assert!(!s.serves("/.lb/statusx", ip("127.0.0.1")));
    assert!(Config::from_json(
        br#"{"cluster":"c","backends":[{"id":"a","address":"10.0.0.1:80"}]}"#
    )
    .unwrap()
    .status
    .is_none());
}

#[test]
fn cidrs_match_by_prefix() {
    let c = Cidr::parse("10.1.0.0/16").unwrap();
    assert!(c.contains("10.1.255.3".parse().unwrap()));
    assert!(!c.contains("10.2.0.1".parse().unwrap()));
    assert!(!c.contains("::1".parse().unwrap()));
    assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("203.0.113.9".parse().unwrap()));
    assert!(Cidr::parse("::/0").unwrap().contains("2001:db8::1".parse().unwrap()));
    let one = Cidr::parse("192.0.2.7").unwrap();
    assert!(one.contains("192.0.2.7".parse().unwrap()));
    assert!(!one.contains("192.0.2.8".parse().unwrap()));
    let v6 = Cidr::parse("2001:db8::/32").unwrap();
    assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
    assert!(!v6.contains("2001:db9::1".parse().unwrap()));
    // Host bits in a range are ignored: 10.0.0.9/8 is the range 10.0.0.0/8.
    let (with_host, plain) =
        (Cidr::parse("10.0.0.9/8").unwrap(), Cidr::parse("10.0.0.0/8").unwrap());
    for ip in ["10.0.0.0", "10.200.0.1", "10.255.255.255", "9.255.255.255", "11.0.0.0"] {
        let ip = ip.parse().unwrap();
        assert_eq!(with_host.contains(ip), plain.contains(ip), "{ip}");
    }
    assert!(with_host.contains("10.200.0.1".parse().unwrap()));
    assert!(!with_host.contains("11.0.0.0".parse().unwrap()));
}

#[test]
fn bad_paths_and_ranges_are_refused_at_their_path() {
    let cases = [
        (r#"{"path":"lb"}"#, "$.status.path", "is not a request path"),
        (r#"{"path":"/a?b"}"#, "$.status.path", "is not a request path"),
        (r#"{"path":"/a b"}"#, "$.status.path", "is not a request path"),
        (r#"{"path":7}"#, "$.status.path", "expected a string"),
        (r#"{"allow_cidrs":[]}"#, "$.status.allow_cidrs", "valid: 1 to 64"),
        (r#"{"allow_cidrs":"10.0.0.0/8"}"#, "$.status.allow_cidrs", "expected a sequence"),
        (r#"{"allow_cidrs":["10.0.0.0/33"]}"#, "$.status.allow_cidrs[0]", "not an address range"),
        (r#"{"allow_cidrs":["::1","::1/129"]}"#, "$.status.allow_cidrs[1]", "not an address range"),
        (r#"{"allow_cidrs":["10.0.0.0/+8"]}"#, "$.status.allow_cidrs[0]", "not an address range"),
        (r#"{"allow_cidrs":["10.0.0.0/"]}"#, "$.status.allow_cidrs[0]", "not an address range"),
        (r#"{"allow_cidrs":["host/8"]}"#, "$.status.allow_cidrs[0]", "not an address range"),
        (r#"{"allow_cidrs":[1]}"#, "$.status.allow_cidrs[0]", "expected a string"),
        (r#"{"paths":"/x"}"#, "$.status.paths", "unknown field"),
        (r#"true"#, "$.status", "expected a JSON object"),
    ];
    for (status, path, what) in cases {
        let e = refuse(&with_status(status));
        assert_eq!(e.path, path, "{status}: {e}");
        assert!(e.message.contains(what), "{status}: {e}");
    }
}
