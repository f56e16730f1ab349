//! The `sticky` block and `backends[].drain`: defaults, every member read, nulls, and each
//! refusal at its exact JSON path with a message that says what is valid.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::super::{Config, ConfigError};
use super::*;

const B: &str = r#""cluster":"c","backends":[{"id":"a","address":"10.0.0.1:80"}]"#;
const S1: &str = "0123456789abcdef0123456789abcdef";
const S2: &str = "fedcba9876543210fedcba9876543210";

fn parse(extra: &str) -> Result<Config, ConfigError> {
    let sep = if extra.is_empty() { "" } else { "," };
    Config::from_json(format!("{{{B}{sep}{extra}}}").as_bytes())
}

/// The validated block of `"sticky": <block>`.
#[track_caller]
fn ok(block: &str) -> Sticky {
    match parse(&format!(r#""sticky":{block}"#)) {
        Ok(c) => match c.sticky {
            Some(s) => s,
            None => panic!("{block}: no sticky block"),
        },
        Err(e) => panic!("{block}: refused: {e}"),
    }
}

/// Asserts `"sticky": <block>` is refused at `path` with a message holding `words` and a
/// `valid:` part.
#[track_caller]
fn refused(block: &str, path: &str, words: &[&str]) -> ConfigError {
    let e = match parse(&format!(r#""sticky":{block}"#)) {
        Ok(c) => panic!("{block}: accepted: {:?}", c.sticky),
        Err(e) => e,
    };
    assert_eq!(e.path, path, "{block}: {e}");
    for w in words.iter().chain(&["; valid: "]) {
        assert!(e.message.contains(w), "{block}: {e} lacks {w:?}");
    }
    e
}

/// Asserts a serde-worded error (type or variant) at `path` naming what was expected.
#[track_caller]
fn wrong(block: &str, path: &str, starts: &str, expected: &str) {
    let e = parse(&format!(r#""sticky":{block}"#)).unwrap_err();
    assert_eq!(e.path, path, "{block}: {e}");
    assert!(e.message.starts_with(starts), "{block}: {e}");
    assert!(e.message.contains(&format!("expected {expected}")), "{block}: {e}");
}

// ---------------------------------------------------------------------------------------------
// Accepted
// ---------------------------------------------------------------------------------------------

#[test]
fn absent_and_null_mean_no_affinity() {
    assert_eq!(parse("").unwrap().sticky, None);
    assert_eq!(parse(r#""sticky":null"#).unwrap().sticky, None);
}

#[test]
fn defaults() {
    let s = ok("{}");
    assert_eq!(s, Sticky::default());
    assert_eq!(s.cookie, "lb_session");
    assert!(s.secrets.is_empty(), "empty: a per-process random secret");
    assert_eq!(s.ttl_s, 3600);
    assert_eq!(s.path, "/");
    assert_eq!(s.domain, None);
    assert!(s.secure);
    assert!(s.http_only);
    assert_eq!(s.same_site, SameSite::Lax);
}

#[test]
fn null_members_are_defaults() {
    let s = ok(r#"{"cookie":null,"secrets":null,"ttl_s":null,"path":null,"domain":null,
        "secure":null,"http_only":null,"same_site":null}"#);
    assert_eq!(s, Sticky::default());
    assert_eq!(ok(r#"{"secrets":[]}"#), Sticky::default());
}

#[test]
fn every_member_is_read() {
    let s = ok(&format!(
        r#"{{"cookie":"srv-id","secrets":["{S1}","{S2}"],"ttl_s":60,"path":"/app/v1",
            "domain":"shop.example.com","secure":false,"http_only":false,"same_site":"Strict"}}"#
    ));
    assert_eq!(
        s,
        Sticky {
            cookie: "srv-id".to_string(),
            secrets: vec![S1.to_string(), S2.to_string()],
            ttl_s: 60,
            path: "/app/v1".to_string(),
            domain: Some("shop.example.com".to_string()),
            secure: false,
            http_only: false,
            same_site: SameSite::Strict,
        }
    );
    assert_eq!(ok(r#"{"same_site":"None"}"#).same_site, SameSite::None);
    assert_eq!(ok(r#"{"same_site":"None","secure":true}"#).same_site, SameSite::None);
    assert_eq!(ok(r#"{"same_site":"Lax","secure":false}"#).same_site, SameSite::Lax);
}

#[test]
fn same_site_as_str() {
    assert_eq!(SameSite::Strict.as_str(), "Strict");
    assert_eq!(SameSite::Lax.as_str(), "Lax");
    assert_eq!(SameSite::None.as_str(), "None");
}

#[test]
fn bounds_are_accepted() {
    assert_eq!(ok(r#"{"ttl_s":1}"#).ttl_s, 1);
    assert_eq!(ok(r#"{"ttl_s":31536000}"#).ttl_s, 31_536_000);
    let long = "k".repeat(1024);
    assert_eq!(ok(&format!(r#"{{"secrets":["{long}"]}}"#)).secrets, vec![long]);
    let eight: Vec<String> = (0..8).map(|i| format!(r#""{i}{}""#, &S1[1..])).collect();
    assert_eq!(ok(&format!(r#"{{"secrets":[{}]}}"#, eight.join(","))).secrets.len(), 8);
    let path = format!("/{}", "p".repeat(1023));
    assert_eq!(ok(&format!(r#"{{"path":"{path}"}}"#)).path, path);
    assert_eq!(ok(r#"{"path":"/a b:c=d?e"}"#).path, "/a b:c=d?e");
    let label = "a".repeat(63);
    let domain = [label.as_str(), label.as_str(), label.as_str(), &"b".repeat(61)].join(".");
    assert_eq!(domain.len(), 253);
    assert_eq!(ok(&format!(r#"{{"domain":"{domain}"}}"#)).domain, Some(domain));
    assert_eq!(ok(r#"{"domain":"localhost"}"#).domain.as_deref(), Some("localhost"));
    assert_eq!(ok(r#"{"cookie":"a!#$%&'*+-.^_`|~9"}"#).cookie, "a!#$%&'*+-.^_`|~9");
}

#[test]
fn debug_does_not_show_secrets() {
    let s = ok(&format!(r#"{{"secrets":["{S1}"]}}"#));
    let shown = format!("{s:?}");
    assert!(!shown.contains(S1), "{shown}");
    assert!(shown.contains("<1 redacted>"), "{shown}");
    let c = parse(&format!(r#""sticky":{{"secrets":["{S1}"]}}"#)).unwrap();
    assert!(!format!("{c:?}").contains(S1));
}

// ---------------------------------------------------------------------------------------------
// Refused
// ---------------------------------------------------------------------------------------------

#[test]
fn cookie_must_be_a_token() {
    for bad in ["", "a b", "a;b", "a=b", "sess\\u00e9", "a\\\"b", "(x)"] {
        refused(
            &format!(r#"{{"cookie":"{bad}"}}"#),
            "$.sticky.cookie",
            &["is not a cookie name", "valid: 1 to 256 token characters (RFC 6265)"],
        );
    }
    refused(&format!(r#"{{"cookie":"{}"}}"#, "c".repeat(257)), "$.sticky.cookie", &["(257 bytes)"]);
    wrong(r#"{"cookie":1}"#, "$.sticky.cookie", "invalid type: integer `1`", "a string");
}

#[test]
fn secrets_are_checked_and_never_quoted() {
    let e = refused(
        &format!(r#"{{"secrets":["{S1}","short-secret"]}}"#),
        "$.sticky.secrets[1]",
        &["is 12 bytes long", "valid: a string of 32 to 1024 bytes"],
    );
    assert!(!e.message.contains("short-secret"), "{e}");
    refused(
        &format!(r#"{{"secrets":["{S1}","{}"]}}"#, "x".repeat(1025)),
        "$.sticky.secrets[1]",
        &["is 1025 bytes long"],
    );
    // 31 bytes.
    refused(r#"{"secrets":[""]}"#, "$.sticky.secrets[0]", &["is 0 bytes long"]);
    refused(
        &format!(r#"{{"secrets":["{}"]}}"#, &S1[1..]),
        "$.sticky.secrets[0]",
        &["is 31 bytes long"],
    );
    let e = refused(
        &format!(r#"{{"secrets":["{S1}","{S2}","{S1}"]}}"#),
        "$.sticky.secrets[2]",
        &["repeats $.sticky.secrets[0]", "valid: distinct secrets"],
    );
    assert!(!e.message.contains(S1), "{e}");
    let nine: Vec<String> = (0..9).map(|i| format!(r#""{i}{}""#, &S1[1..])).collect();
    refused(
        &format!(r#"{{"secrets":[{}]}}"#, nine.join(",")),
        "$.sticky.secrets",
        &["has 9 secrets", "valid: at most 8"],
    );
    let e = refused(
        r#"{"secrets":"a-secret-given-as-a-plain-string-not-a-list"}"#,
        "$.sticky.secrets",
        &["is not an array", "valid: an array of 0 to 8 strings"],
    );
    assert!(!e.message.contains("plain-string"), "{e}");
    refused(
        &format!(r#"{{"secrets":["{S1}",7]}}"#),
        "$.sticky.secrets[1]",
        &["is not a string", "valid: a string of 32 to 1024 bytes"],
    );
    refused(r#"{"secrets":[null]}"#, "$.sticky.secrets[0]", &["is not a string"]);
}

#[test]
fn ttl_is_bounded() {
    for bad in ["0", "31536001", "-1", "18446744073709551615"] {
        refused(
            &format!(r#"{{"ttl_s":{bad}}}"#),
            "$.sticky.ttl_s",
            &["is out of range", "valid: an integer from 1 to 31536000"],
        );
    }
    // Beyond u64 (which serde_json reads as a float): out of range too.
    refused(
        r#"{"ttl_s":18446744073709551616}"#,
        "$.sticky.ttl_s",
        &["1.8446744073709552e19 is out of range", "valid: an integer from 1 to 31536000"],
    );
    wrong(r#"{"ttl_s":1.5}"#, "$.sticky.ttl_s", "invalid type", "an integer from 1 to 31536000");
    wrong(r#"{"ttl_s":"60"}"#, "$.sticky.ttl_s", "invalid type", "an integer from 1 to 31536000");
}

#[test]
fn path_is_a_cookie_path() {
    for bad in ["", "app", "/a;b", "/a\\tb", "/a\\u007fb", "/caf\\u00e9", "/a\\nb"] {
        refused(
            &format!(r#"{{"path":"{bad}"}}"#),
            "$.sticky.path",
            &["is not a cookie path", "valid: a path starting with /", "except ;"],
        );
    }
    refused(
        &format!(r#"{{"path":"/{}"}}"#, "p".repeat(1024)),
        "$.sticky.path",
        &["(1025 bytes)", "1 to 1024"],
    );
    wrong(r#"{"path":[]}"#, "$.sticky.path", "invalid type: sequence", "a string");
}

#[test]
fn domain_is_a_host_name() {
    for bad in [
        "",
        "example.com.",
        "a..b",
        "ex ample.com",
        "example.com:80",
        "exa_mple.com",
        "b\\u00fccher.de",
        ".",
        "a/b",
    ] {
        refused(
            &format!(r#"{{"domain":"{bad}"}}"#),
            "$.sticky.domain",
            &["is not a host name", "valid: a host name of letters, digits, - and .", "or null"],
        );
    }
    refused(
        r#"{"domain":".example.com"}"#,
        "$.sticky.domain",
        &["has a leading dot, which RFC 6265 ignores", "(write \"example.com\")"],
    );
    let long = ["a".repeat(63), "a".repeat(63), "a".repeat(63), "b".repeat(62)].join(".");
    refused(&format!(r#"{{"domain":"{long}"}}"#), "$.sticky.domain", &["is not a host name"]);
    let label = format!("{}.com", "a".repeat(64));
    refused(&format!(r#"{{"domain":"{label}"}}"#), "$.sticky.domain", &["labels of 1 to 63"]);
    wrong(r#"{"domain":false}"#, "$.sticky.domain", "invalid type: boolean `false`", "a string");
}

#[test]
fn booleans_are_booleans() {
    wrong(r#"{"secure":"true"}"#, "$.sticky.secure", "invalid type: string \"true\"", "a boolean");
    wrong(r#"{"http_only":1}"#, "$.sticky.http_only", "invalid type: integer `1`", "a boolean");
}

#[test]
fn same_site_is_a_case_sensitive_variant() {
    for bad in ["lax", "none", "STRICT", ""] {
        let e = parse(&format!(r#""sticky":{{"same_site":"{bad}"}}"#)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "$.sticky.same_site: unknown variant `{bad}`, expected one of `Strict`, `Lax`, \
                 `None`"
            )
        );
    }
    wrong(r#"{"same_site":0}"#, "$.sticky.same_site", "invalid type", "one of `Strict`");
}

#[test]
fn same_site_none_requires_secure() {
    let e = refused(r#"{"same_site":"None","secure":false}"#, "$.sticky.same_site", &[]);
    assert_eq!(
        e.to_string(),
        "$.sticky.same_site: \"None\" requires secure: true (browsers refuse it otherwise); \
         valid: secure: true, or Lax / Strict"
    );
    // Member order does not matter.
    refused(r#"{"secure":false,"same_site":"None"}"#, "$.sticky.same_site", &["requires secure"]);
}

#[test]
fn block_shape_and_members() {
    wrong("[]", "$.sticky", "invalid type: sequence", "a JSON object");
    wrong(r#""on""#, "$.sticky", "invalid type: string \"on\"", "a JSON object");
    let e = parse(r#""sticky":{"cookies":"x"}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "$.sticky.cookies: unknown field `cookies`, expected one of `cookie`, `secrets`, \
         `ttl_s`, `path`, `domain`, `secure`, `http_only`, `same_site`"
    );
    let e = parse(r#""sticky":{"ttl_s":5,"ttl_s":6}"#).unwrap_err();
    assert_eq!(e.to_string(), "$.sticky: duplicate field `ttl_s`; valid: each member at most once");
    let e = parse(r#""sticky":null,"sticky":{}"#).unwrap_err();
    assert_eq!(e.to_string(), "$: duplicate field `sticky`; valid: each member at most once");
    // Shapes are read in document order before values are validated.
    let e = parse(r#""sticky":{"cookie":"a b","ttl_s":0}"#).unwrap_err();
    assert_eq!(e.path, "$.sticky.ttl_s", "{e}");
}

// ---------------------------------------------------------------------------------------------
// backends[].drain
// ---------------------------------------------------------------------------------------------

fn backends(items: &str) -> Result<Config, ConfigError> {
    Config::from_json(format!(r#"{{"cluster":"c","backends":{items}}}"#).as_bytes())
}

#[test]
fn drain_is_read() {
    let c = backends(
        r#"[{"id":"a","address":"10.0.0.1:80","drain":true},
            {"id":"b","address":"10.0.0.2:80","drain":false},
            {"id":"c","address":"10.0.0.3:80","drain":null},
            {"id":"d","address":"10.0.0.4:80"},
            {"id":"e","address":"10.0.0.5:80","backup":true,"drain":true}]"#,
    )
    .unwrap();
    let flags: Vec<(bool, bool)> = c.pool.iter().map(|b| (b.backup, b.drain)).collect();
    assert_eq!(
        flags,
        vec![(false, true), (false, false), (false, false), (false, false), (true, true)]
    );
    let b = crate::backend::Backend::new("x".into(), "10.0.0.9:80".parse().unwrap(), 1);
    assert!(!b.drain);
    assert!(b.draining().drain);
}

#[test]
fn all_backends_draining_is_refused() {
    let e = backends(
        r#"[{"id":"a","address":"10.0.0.1:80","drain":true},
            {"id":"b","address":"10.0.0.2:80","backup":true,"drain":true}]"#,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "$.backends: all backends drain; valid: at least one backend without \"drain\": true"
    );
    let e = backends(r#"[{"id":"a","address":"10.0.0.1:80","drain":"yes"}]"#).unwrap_err();
    assert_eq!(e.path, "$.backends[0].drain");
    assert!(e.message.contains("expected a boolean"), "{e}");
    let e = backends(r#"[{"id":"a","address":"10.0.0.1:80","drains":true}]"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "$.backends[0].drains: unknown field `drains`, expected one of `id`, `address`, \
         `cluster`, `weight`, `backup`, `drain`"
    );
}
