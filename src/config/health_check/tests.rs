//! The `health_check` block: defaults, every member read, nulls, bounds, and each refusal at its
//! exact JSON path with a message that says what is valid.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::super::{Config, ConfigError};
use super::*;

const B: &str = r#""cluster":"c","backends":[{"id":"a","address":"10.0.0.1:80"}]"#;

fn parse(extra: &str) -> Result<Config, ConfigError> {
    let sep = if extra.is_empty() { "" } else { "," };
    Config::from_json(format!("{{{B}{sep}{extra}}}").as_bytes())
}

/// The validated block of `"health_check": <block>`.
fn ok(block: &str) -> HealthCheck {
    match parse(&format!(r#""health_check":{block}"#)) {
        Ok(c) => match c.health_check {
            Some(h) => h,
            None => panic!("{block}: no health check"),
        },
        Err(e) => panic!("{block}: refused: {e}"),
    }
}

/// Asserts `"health_check": <block>` is refused at `path` with a message holding `words` and a
/// `valid:` part.
#[track_caller]
fn refused(block: &str, path: &str, words: &[&str]) -> ConfigError {
    let e = match parse(&format!(r#""health_check":{block}"#)) {
        Ok(c) => panic!("{block}: accepted: {:?}", c.health_check),
        Err(e) => e,
    };
    assert_eq!(e.path, path, "{block}: {e}");
    for w in words.iter().chain(&["; valid: "]) {
        assert!(e.message.contains(w), "{block}: {e} lacks {w:?}");
    }
    e
}

/// Asserts a type error (serde's wording, which names what was expected) at `path`.
#[track_caller]
fn wrong_type(block: &str, path: &str, expected: &str) {
    let e = parse(&format!(r#""health_check":{block}"#)).unwrap_err();
    assert_eq!(e.path, path, "{block}: {e}");
    assert!(e.message.starts_with("invalid type: "), "{block}: {e}");
    assert!(e.message.contains(&format!("expected {expected}")), "{block}: {e}");
}

// ---------------------------------------------------------------------------------------------
// Accepted blocks
// ---------------------------------------------------------------------------------------------

#[test]
fn absent_or_null_block_means_no_health_checks() {
    assert_eq!(parse("").unwrap().health_check, None);
    assert_eq!(parse(r#""health_check":null"#).unwrap().health_check, None);
}

#[test]
fn an_empty_block_takes_every_default() {
    let h = ok("{}");
    assert_eq!(h.path, "/healthz");
    assert_eq!((h.interval_ms, h.timeout_ms, h.jitter_ms), (2_000, 1_000, 0));
    assert_eq!((h.healthy_threshold, h.unhealthy_threshold), (2, 3));
    assert_eq!(h.expected_statuses, vec![(200, 299)]);
    // The cluster name ("c") when it is a valid authority.
    assert_eq!(h.host.as_deref(), Some("c"));
    assert_eq!(HealthCheck { host: None, ..h }, HealthCheck::default());
}

/// The default probe authority is never the `|`-separated Istio cluster name (strict servers
/// answer 400 to it, which turned every backend unhealthy): the service host instead, or a
/// refusal that says to set `host`.
#[test]
fn the_default_authority_is_a_valid_one() {
    let istio = |cluster: &str, extra: &str| {
        let json = format!(
            r#"{{"cluster":"{cluster}","backends":[{{"id":"a","address":"10.0.0.1:80"}}],
                "health_check":{{{extra}}}}}"#
        );
        Config::from_json(json.as_bytes())
    };
    let c = istio("outbound|8080||backend.demo.svc.cluster.local", "").unwrap();
    let host = c.health_check.unwrap().host;
    assert_eq!(host.as_deref(), Some("backend.demo.svc.cluster.local"));
    let c = istio("outbound|8080|v1|backend.demo.svc.cluster.local", "").unwrap();
    assert_eq!(c.health_check.unwrap().host.as_deref(), Some("backend.demo.svc.cluster.local"));
    let c = istio("outbound|8080||backend", r#""host":"probe.example:8080""#).unwrap();
    assert_eq!(c.health_check.unwrap().host.as_deref(), Some("probe.example:8080"));
    for bad in ["my pool", "a|b", "outbound|http||svc", "outbound|8080||a b", "x|1|y|z|w"] {
        let e = istio(bad, "").unwrap_err();
        assert_eq!(e.path, "$.health_check.host", "{bad}: {e}");
        assert!(e.message.contains("is not set") && e.message.contains("valid: "), "{e}");
    }
    // Without health checks the cluster name needs no such shape.
    let json = r#"{"cluster":"a|b","backends":[{"id":"a","address":"10.0.0.1:80"}]}"#;
    assert!(Config::from_json(json.as_bytes()).is_ok());
}

#[test]
fn every_member_is_read() {
    let h = ok(r#"{
        "path": "/status/ready?full=1",
        "interval_ms": 5000,
        "timeout_ms": 4999,
        "healthy_threshold": 4,
        "unhealthy_threshold": 7,
        "expected_statuses": [[200, 204], [301, 302], [418, 418]],
        "jitter_ms": 2500,
        "host": "probe.example.com:8443"
    }"#);
    assert_eq!(
        h,
        HealthCheck {
            path: "/status/ready?full=1".into(),
            interval_ms: 5_000,
            timeout_ms: 4_999,
            healthy_threshold: 4,
            unhealthy_threshold: 7,
            expected_statuses: vec![(200, 204), (301, 302), (418, 418)],
            jitter_ms: 2_500,
            host: Some("probe.example.com:8443".into()),
        }
    );
}

#[test]
fn a_partial_block_keeps_the_other_defaults() {
    let h = ok(r#"{"interval_ms": 10000}"#);
    let host = Some("c".to_string());
    assert_eq!(h, HealthCheck { interval_ms: 10_000, host, ..HealthCheck::default() });
    let h = ok(r#"{"host": "[2001:db8::1]:8080", "unhealthy_threshold": 1}"#);
    assert_eq!(
        h,
        HealthCheck {
            host: Some("[2001:db8::1]:8080".into()),
            unhealthy_threshold: 1,
            ..HealthCheck::default()
        }
    );
}

#[test]
fn null_means_default_for_every_member() {
    let h = ok(r#"{"path":null,"interval_ms":null,"timeout_ms":null,"healthy_threshold":null,
        "unhealthy_threshold":null,"expected_statuses":null,"jitter_ms":null,"host":null}"#);
    assert_eq!(h, HealthCheck { host: Some("c".into()), ..HealthCheck::default() });
}

#[test]
fn bounds_are_inclusive() {
    let h = ok(r#"{"interval_ms": 10, "timeout_ms": 1, "jitter_ms": 5}"#);
    assert_eq!((h.interval_ms, h.timeout_ms, h.jitter_ms), (10, 1, 5));
    let h = ok(r#"{"interval_ms": 3600000, "timeout_ms": 3599999, "jitter_ms": 1800000}"#);
    assert_eq!((h.interval_ms, h.timeout_ms, h.jitter_ms), (3_600_000, 3_599_999, 1_800_000));
    let h = ok(r#"{"healthy_threshold": 1, "unhealthy_threshold": 100}"#);
    assert_eq!((h.healthy_threshold, h.unhealthy_threshold), (1, 100));
    let h = ok(r#"{"healthy_threshold": 100, "unhealthy_threshold": 1}"#);
    assert_eq!((h.healthy_threshold, h.unhealthy_threshold), (100, 1));
    // An odd interval: half is rounded down.
    assert_eq!(ok(r#"{"interval_ms": 11, "timeout_ms": 10, "jitter_ms": 5}"#).jitter_ms, 5);
    assert_eq!(ok(r#"{"expected_statuses": [[100, 599]]}"#).expected_statuses, vec![(100, 599)]);
    let ranges: Vec<String> = (0..32).map(|i| format!("[{0}, {0}]", 200 + i)).collect();
    let h = ok(&format!(r#"{{"expected_statuses": [{}]}}"#, ranges.join(",")));
    assert_eq!(h.expected_statuses.len(), 32);
    assert_eq!(h.expected_statuses[31], (231, 231));
    assert_eq!(ok(r#"{"path": "/"}"#).path, "/");
    let long = format!("/{}", "p".repeat(1023));
    assert_eq!(ok(&format!(r#"{{"path": "{long}"}}"#)).path, long);
    let host = "h".repeat(255);
    assert_eq!(ok(&format!(r#"{{"host": "{host}"}}"#)).host, Some(host));
    assert_eq!(ok(r#"{"host": "a"}"#).host.as_deref(), Some("a"));
}

#[test]
fn overlapping_and_unordered_ranges_are_kept_as_written() {
    let h = ok(r#"{"expected_statuses": [[500, 503], [200, 299], [250, 260]]}"#);
    assert_eq!(h.expected_statuses, vec![(500, 503), (200, 299), (250, 260)]);
}

#[test]
fn the_block_can_stand_anywhere_among_the_top_level_members() {
    let c = Config::from_json(
        br#"{"health_check":{"path":"/up"},"cluster":"c",
             "backends":[{"id":"a","address":"10.0.0.1:80"}],"algorithm":"random"}"#,
    )
    .unwrap();
    assert_eq!(c.health_check.unwrap().path, "/up");
}

// ---------------------------------------------------------------------------------------------
// expects()
// ---------------------------------------------------------------------------------------------

#[test]
fn expects_checks_inclusive_ranges() {
    let h = HealthCheck::default();
    assert!(!h.expects(199));
    assert!(h.expects(200) && h.expects(250) && h.expects(299));
    assert!(!h.expects(300) && !h.expects(404) && !h.expects(0));

    let h = ok(r#"{"expected_statuses": [[200, 200], [204, 206], [503, 503]]}"#);
    for s in [200, 204, 205, 206, 503] {
        assert!(h.expects(s), "{s}");
    }
    for s in [100, 201, 203, 207, 299, 502, 504, 599, 600, u16::MAX] {
        assert!(!h.expects(s), "{s}");
    }

    let all = ok(r#"{"expected_statuses": [[100, 599]]}"#);
    assert!((100..=599).all(|s| all.expects(s)));
    assert!(!all.expects(99) && !all.expects(600));
}

// ---------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_paths_are_refused() {
    let p = "$.health_check.path";
    for bad in [
        r#""""#,
        r#""healthz""#,
        r#"" /healthz""#,
        r#""/health z""#,
        r#""/health\tz""#,
        r#""/health\u0000""#,
        r#""/health\u007f""#,
        r#""/health\n""#,
    ] {
        refused(&format!(r#"{{"path": {bad}}}"#), p, &["is not a request path", "starting with /"]);
    }
    let long = format!("/{}", "p".repeat(1024));
    let e = refused(&format!(r#"{{"path": "{long}"}}"#), p, &["1 to 1024 characters"]);
    assert!(e.message.contains("(1025 bytes)"), "long path not cut: {e}");
}

#[test]
fn intervals_out_of_range_are_refused() {
    let p = "$.health_check.interval_ms";
    for n in ["9", "0", "3600001", "-1"] {
        refused(&format!(r#"{{"interval_ms": {n}}}"#), p, &["out of range", "from 10 to 3600000"]);
    }
    let p = "$.health_check.timeout_ms";
    for n in ["0", "3600001"] {
        refused(&format!(r#"{{"timeout_ms": {n}}}"#), p, &["out of range", "from 1 to 3600000"]);
    }
    let p = "$.health_check.jitter_ms";
    for n in ["-1", "3600001"] {
        refused(&format!(r#"{{"jitter_ms": {n}}}"#), p, &["out of range", "from 0 to 3600000"]);
    }
}

#[test]
fn timeout_must_be_below_the_interval() {
    let e =
        refused(r#"{"interval_ms": 1000, "timeout_ms": 1000}"#, "$.health_check.timeout_ms", &[]);
    assert_eq!(
        e.message,
        "1000 is not below interval_ms 1000; valid: a timeout shorter than the interval"
    );
    refused(
        r#"{"interval_ms": 1000, "timeout_ms": 5000}"#,
        "$.health_check.timeout_ms",
        &["5000 is not below interval_ms 1000"],
    );
    // The default timeout (1000 ms) against a short interval is named as the default.
    let e = refused(r#"{"interval_ms": 500}"#, "$.health_check.timeout_ms", &[]);
    assert_eq!(
        e.message,
        "1000 (the default) is not below interval_ms 500; valid: a timeout shorter than the \
         interval"
    );
    // And a timeout at the default interval (2000 ms).
    refused(r#"{"timeout_ms": 2000}"#, "$.health_check.timeout_ms", &["interval_ms 2000"]);
}

#[test]
fn jitter_is_at_most_half_the_interval() {
    let e = refused(r#"{"jitter_ms": 1001}"#, "$.health_check.jitter_ms", &[]);
    assert_eq!(e.message, "1001 is above half of interval_ms 2000; valid: 0 to 1000");
    refused(
        r#"{"interval_ms": 11, "timeout_ms": 10, "jitter_ms": 6}"#,
        "$.health_check.jitter_ms",
        &["valid: 0 to 5"],
    );
}

#[test]
fn thresholds_out_of_range_are_refused() {
    for field in ["healthy_threshold", "unhealthy_threshold"] {
        let p = format!("$.health_check.{field}");
        for n in ["0", "101", "-3"] {
            refused(
                &format!(r#"{{"{field}": {n}}}"#),
                &p,
                &[&format!("{n} is out of range"), "valid: an integer from 1 to 100"],
            );
        }
    }
}

#[test]
fn bad_status_ranges_are_refused_at_the_item() {
    let p = "$.health_check.expected_statuses";
    for (bad, shown) in [
        ("[99, 200]", "[99, 200]"),
        ("[200, 600]", "[200, 600]"),
        ("[300, 200]", "[300, 200]"),
        ("[200]", "[200]"),
        ("[200, 299, 300]", "[200, 299, 300]"),
        ("[]", "[]"),
        ("[200.0, 299]", "[200.0, 299]"),
        (r#"[200, "299"]"#, r#"[200, "299"]"#),
        ("[200, null]", "[200, null]"),
        ("[[200], 299]", "[[...], 299]"),
        ("[-200, 299]", "[-200, 299]"),
        ("[65736, 65736]", "[65736, 65736]"),
        ("200", "200"),
        (r#""2xx""#, r#""2xx""#),
        (r#"{"lo":200,"hi":299}"#, "an object"),
        ("null", "null"),
        ("[1, 2, 3, 4, 5]", "an array of 5 items"),
    ] {
        let e = refused(
            &format!(r#"{{"expected_statuses": [[200, 299], {bad}]}}"#),
            &format!("{p}[1]"),
            &[],
        );
        assert_eq!(
            e.message,
            format!(
                "{shown} is not a status range; valid: [lo, hi] with 100 <= lo <= hi <= 599, \
                 e.g. [200, 299]"
            )
        );
    }
    refused(r#"{"expected_statuses": [[0, 0]]}"#, &format!("{p}[0]"), &["[0, 0]"]);
    refused(
        r#"{"expected_statuses": [[200, 299], [300, 399], [500, 400]]}"#,
        &format!("{p}[2]"),
        &["[500, 400] is not a status range"],
    );
}

#[test]
fn status_range_counts_are_bounded() {
    let p = "$.health_check.expected_statuses";
    refused(r#"{"expected_statuses": []}"#, p, &["has 0 ranges", "valid: 1 to 32 ranges"]);
    let ranges: Vec<&str> = (0..33).map(|_| "[200, 299]").collect();
    refused(
        &format!(r#"{{"expected_statuses": [{}]}}"#, ranges.join(",")),
        p,
        &["has 33 ranges", "valid: 1 to 32 ranges"],
    );
}

#[test]
fn bad_hosts_are_refused() {
    let p = "$.health_check.host";
    for bad in [
        "",
        "a b",
        " a",
        "a\\t",
        "a\\u0000",
        "a\\u007f",
        "a\\u0085",
        "a\\u00a0b",
        "a/b",
        "a?b",
        "a#b",
        "user@host",
        "host/",
        "a|b",
        "outbound|8080||svc.cluster.local",
        "a\\\\b",
        "a\\\"b",
        "a{b}",
    ] {
        refused(
            &format!(r#"{{"host": "{bad}"}}"#),
            p,
            &["is not an HTTP authority", "1 to 255 characters", "or null"],
        );
    }
    let long = "h".repeat(256);
    refused(&format!(r#"{{"host": "{long}"}}"#), p, &["1 to 255 characters"]);
}

#[test]
fn wrong_types_are_refused() {
    wrong_type("[]", "$.health_check", "a JSON object");
    wrong_type("true", "$.health_check", "a JSON object");
    wrong_type(r#""/healthz""#, "$.health_check", "a JSON object");
    wrong_type(r#"{"path": 5}"#, "$.health_check.path", "a string");
    wrong_type(r#"{"path": ["/a"]}"#, "$.health_check.path", "a string");
    wrong_type(r#"{"host": 8080}"#, "$.health_check.host", "a string");
    wrong_type(
        r#"{"interval_ms": "2000"}"#,
        "$.health_check.interval_ms",
        "an integer from 10 to 3600000",
    );
    wrong_type(
        r#"{"timeout_ms": 1.5}"#,
        "$.health_check.timeout_ms",
        "an integer from 1 to 3600000",
    );
    wrong_type(
        r#"{"jitter_ms": false}"#,
        "$.health_check.jitter_ms",
        "an integer from 0 to 3600000",
    );
    wrong_type(
        r#"{"healthy_threshold": 2.0}"#,
        "$.health_check.healthy_threshold",
        "an integer from 1 to 100",
    );
    wrong_type(
        r#"{"unhealthy_threshold": {}}"#,
        "$.health_check.unhealthy_threshold",
        "an integer from 1 to 100",
    );
    wrong_type(r#"{"expected_statuses": {}}"#, "$.health_check.expected_statuses", "a sequence");
}

#[test]
fn unknown_and_repeated_members_are_refused() {
    let e = parse(r#""health_check":{"paht":"/x"}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "$.health_check.paht: unknown field `paht`, expected one of `path`, `interval_ms`, \
         `timeout_ms`, `healthy_threshold`, `unhealthy_threshold`, `expected_statuses`, \
         `jitter_ms`, `host`"
    );
    let e = parse(r#""health_check":{"path":null,"path":"/x"}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "$.health_check: duplicate field `path`; valid: each member at most once"
    );
    let e = parse(r#""health_check":null,"health_check":{}"#).unwrap_err();
    assert_eq!(e.to_string(), "$: duplicate field `health_check`; valid: each member at most once");
    // The top-level list of members names the block.
    let e = parse(r#""health_checks":{}"#).unwrap_err();
    assert_eq!(e.path, "$.health_checks");
    assert!(e.message.contains("`load_reports`, `health_check`, `panic_threshold_percent`"), "{e}");
}

/// Shapes and types of the whole block are checked (in document order) before values relate.
#[test]
fn members_are_checked_in_document_order() {
    let e = parse(r#""health_check":{"timeout_ms":5000,"host":7}"#).unwrap_err();
    assert_eq!(e.path, "$.health_check.host", "{e}");
    let e = parse(r#""health_check":{"host":"a b","interval_ms":1}"#).unwrap_err();
    assert_eq!(e.path, "$.health_check.interval_ms", "{e}");
    let e = parse(r#""health_check":{"expected_statuses":[[1,2]],"bogus":1}"#).unwrap_err();
    assert_eq!(e.path, "$.health_check.expected_statuses[0]", "{e}");
}
