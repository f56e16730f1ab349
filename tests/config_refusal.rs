//! (e) Every class of invalid plugin config: Envoy refuses to start and its log names the JSON
//! path of the mistake. The matrix covers, per field class: wrong types, out-of-range values,
//! missing required fields, duplicates (ids, addresses, object members, secrets), unknown
//! fields at the top level and nested, megabyte inputs, deep nesting, invalid UTF-8, the target
//! mode rules, the status, sticky and health_check blocks, and algorithm blocks next to the
//! wrong algorithm. Each case runs in its own Envoy; they run a few at a time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_yaml_ng::Value;
use support::*;

/// How many Envoys start at once: each refused one costs about 0.3 s of CPU (mostly Envoy's
/// start and loading the Wasm module); more than this only queues on 2 cores.
const PARALLEL: usize = 4;

const MB: usize = 1 << 20;

fn good_backends() -> String {
    r#"[{"id": "b1", "address": "127.0.0.1:9001"}, {"id": "b2", "address": "127.0.0.1:9002"}]"#
        .to_string()
}

/// A valid config with `extra` members (JSON text, without braces) added at the end.
fn with(extra: &str) -> String {
    format!(r#"{{"cluster": "pool", "backends": {}, {extra}}}"#, good_backends())
}

/// One malformed config and what Envoy's log must say about it.
struct Case {
    name: &'static str,
    config: String,
    /// The exact JSON path that the log line names: `invalid plugin config: <path>: ...`.
    path: &'static str,
    /// Text the message after the path must contain.
    message: String,
    /// A change to Envoy's bootstrap (how the config is handed over).
    tweak: Option<fn(&mut Value)>,
}

fn case(name: &'static str, config: String, path: &'static str, message: &str) -> Case {
    Case { name, config, path, message: message.to_string(), tweak: None }
}

/// Every case; a few more come from [`huge_cases`] and [`utf8_cases`].
fn cases() -> Vec<Case> {
    let b = good_backends();
    let mut v = vec![
        // The original cases of this file, unchanged in what they assert.
        case("invalid JSON", r#"{"cluster": "pool", "backends": ["#.to_string(), "$", "not valid JSON: EOF while parsing a list"),
        case(
            "unknown field",
            format!(r#"{{"cluster": "pool", "backends": {b}, "algorthm": "random"}}"#),
            "$.algorthm",
            "unknown field `algorthm`",
        ),
        case(
            "wrong type",
            r#"{"cluster": "pool", "backends": [{"id": "b1", "address": "127.0.0.1:9001", "weight": "3"}]}"#.to_string(),
            "$.backends[0].weight",
            "invalid type: string \"3\", expected an integer from 1 to 10000",
        ),
        case("empty backends", r#"{"cluster": "pool", "backends": []}"#.to_string(), "$.backends", "is empty"),
        case(
            "duplicate id",
            r#"{"cluster": "pool", "backends": [{"id": "b1", "address": "127.0.0.1:9001"}, {"id": "b1", "address": "127.0.0.1:9002"}]}"#.to_string(),
            "$.backends[1].id",
            "duplicate id \"b1\"",
        ),
        case(
            "bad address",
            r#"{"cluster": "pool", "backends": [{"id": "b1", "address": "backend-1:80"}]}"#.to_string(),
            "$.backends[0].address",
            "\"backend-1:80\" is not an address; valid: ip:port",
        ),
        case(
            "weight out of range",
            r#"{"cluster": "pool", "backends": [{"id": "b1", "address": "127.0.0.1:9001", "weight": 0}]}"#.to_string(),
            "$.backends[0].weight",
            "0 is out of range; valid: an integer from 1 to 10000",
        ),
        // Wrong types.
        case("cluster not a string", format!(r#"{{"cluster": 5, "backends": {b}}}"#), "$.cluster", "invalid type: integer `5`, expected a string"),
        case("backends an object", r#"{"cluster": "pool", "backends": {"b1": "127.0.0.1:9001"}}"#.into(), "$.backends", "invalid type: map, expected a sequence"),
        case("config an array", format!(r#"[{{"cluster": "pool", "backends": {b}}}]"#), "$", "invalid type: sequence, expected a JSON object"),
        case("health_check a boolean", with(r#""health_check": true"#), "$.health_check", "invalid type: boolean `true`, expected a JSON object"),
        case("max_hosts a float", with(r#""target": {"max_hosts": 2.0}"#), "$.target.max_hosts", "invalid type: floating point `2.0`, expected an integer from 1 to 10"),
        case("sticky.secure a string", with(r#""sticky": {"secure": "yes"}"#), "$.sticky.secure", "invalid type: string \"yes\", expected a boolean"),
        case("sticky.secrets a string", with(r#""sticky": {"secrets": "0123456789abcdef0123456789abcdef"}"#), "$.sticky.secrets", "is not an array"),
        case("algorithm a number", with(r#""algorithm": 1"#), "$.algorithm", "invalid type: integer `1`, expected one of `round_robin`"),
        // Out of range.
        case("max_hosts above 10", with(r#""target": {"max_hosts": 11}"#), "$.target.max_hosts", "11 is out of range; valid: an integer from 1 to 10"),
        case("weight beyond 32 bits", r#"{"cluster": "pool", "backends": [{"id": "b1", "address": "127.0.0.1:9001", "weight": 4294967297}]}"#.into(), "$.backends[0].weight", "4294967297 is out of range"),
        case("negative weight", r#"{"cluster": "pool", "backends": [{"id": "b1", "address": "127.0.0.1:9001", "weight": -1}]}"#.into(), "$.backends[0].weight", "-1 is out of range"),
        case("panic percent 101", with(r#""panic_threshold_percent": 101"#), "$.panic_threshold_percent", "101 is out of range; valid: an integer from 0 to 100"),
        case("interval below 10 ms", with(r#""health_check": {"interval_ms": 5}"#), "$.health_check.interval_ms", "5 is out of range; valid: an integer from 10 to 3600000"),
        case("balance_factor below 1", with(r#""algorithm": "maglev", "hash_on": {"header": "x-user"}, "balance_factor": 0.5"#), "$.balance_factor", "0.5 is out of range; valid: a number from 1 to 100"),
        case("port 0", r#"{"cluster": "pool", "backends": [{"id": "b1", "address": "127.0.0.1:0"}]}"#.into(), "$.backends[0].address", "has port 0"),
        case("maglev table not prime", with(r#""algorithm": "maglev", "hash_on": {"source_ip": true}, "maglev": {"table_size": 65536}"#), "$.maglev.table_size", "65536 is not a prime"),
        // Missing required fields.
        case("no cluster", format!(r#"{{"backends": {b}}}"#), "$", "missing field `cluster`"),
        case("no backends", r#"{"cluster": "pool"}"#.into(), "$.backends", "is empty or missing; valid: at least one backend, or a \"discovery\" block"),
        case("discovery through the steered cluster", r#"{"cluster": "pool", "discovery": {"admin_cluster": "pool"}}"#.into(), "$.discovery.admin_cluster", "is the cluster the filter steers to"),
        case("discovery timeout over its interval", r#"{"cluster": "pool", "discovery": {"admin_cluster": "a", "interval_ms": 500, "timeout_ms": 900}}"#.into(), "$.discovery.timeout_ms", "valid: 1 to 500"),
        case("backend without id", r#"{"cluster": "pool", "backends": [{"address": "127.0.0.1:9001"}]}"#.into(), "$.backends[0]", "missing field `id`"),
        case("backend without address", r#"{"cluster": "pool", "backends": [{"id": "b1", "address": "127.0.0.1:9001"}, {"id": "b2"}]}"#.into(), "$.backends[1]", "missing field `address`"),
        case("ring_hash without hash_on", with(r#""algorithm": "ring_hash""#), "$.hash_on", "is required with algorithm ring_hash"),
        // Duplicates.
        case("duplicate address", r#"{"cluster": "pool", "backends": [{"id": "b1", "address": "127.0.0.1:9001"}, {"id": "b2", "address": "127.0.0.1:9001"}]}"#.into(), "$.backends[1].address", "duplicate address 127.0.0.1:9001 (also $.backends[0].address)"),
        case("duplicate IPv6 address, spelled differently", r#"{"cluster": "pool", "backends": [{"id": "b1", "address": "[::1]:9001"}, {"id": "b2", "address": "[0:0::0:1]:9001"}]}"#.into(), "$.backends[1].address", "duplicate address [::1]:9001"),
        case("duplicate top-level member", format!(r#"{{"cluster": "pool", "backends": {b}, "cluster": "other"}}"#), "$", "duplicate field `cluster`"),
        case("duplicate member in a backend", r#"{"cluster": "pool", "backends": [{"id": "b1", "weight": 1, "address": "127.0.0.1:9001", "weight": 2}]}"#.into(), "$.backends[0]", "duplicate field `weight`"),
        case("duplicate member in sticky", with(r#""sticky": {"ttl_s": 60, "ttl_s": 60}"#), "$.sticky", "duplicate field `ttl_s`"),
        case("repeated secret", with(r#""sticky": {"secrets": ["0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"]}"#), "$.sticky.secrets[1]", "repeats $.sticky.secrets[0]"),
        // Unknown fields, top-level and nested.
        case("unknown field in a backend", r#"{"cluster": "pool", "backends": [{"id": "b1", "address": "127.0.0.1:9001", "wieght": 2}]}"#.into(), "$.backends[0].wieght", "unknown field `wieght`"),
        case("unknown field in health_check", with(r#""health_check": {"interval": 1000}"#), "$.health_check.interval", "unknown field `interval`"),
        case("unknown field in target", with(r#""target": {"mode": "override_host", "hosts": 3}"#), "$.target.hosts", "unknown field `hosts`"),
        case("unknown field in hash_on", with(r#""algorithm": "ring_hash", "hash_on": {"ip": true}"#), "$.hash_on.ip", "unknown field `ip`"),
        case("unknown key that is not an identifier", with(r#""bad key": 1"#), "$[\"bad key\"]", "unknown field `bad key`"),
        // Target mode rules.
        case("max_hosts with original_dst", with(r#""target": {"mode": "original_dst", "max_hosts": 2}"#), "$.target.max_hosts", "is not used with mode \"original_dst\""),
        case("backend cluster outside cluster_header", r#"{"cluster": "pool", "backends": [{"id": "b1", "address": "127.0.0.1:9001", "cluster": "b1"}]}"#.into(), "$.backends[0].cluster", "is not used with target.mode \"override_host\""),
        case("backend address in cluster_header mode", r#"{"cluster": "pool", "target": {"mode": "cluster_header"}, "backends": [{"id": "b1", "cluster": "b1", "address": "127.0.0.1:9001"}]}"#.into(), "$.backends[0].address", "is not used with target.mode \"cluster_header\""),
        case("original_dst health checks without probe_cluster", with(r#""target": {"mode": "original_dst"}, "health_check": {}"#), "$.target", "mode \"original_dst\" with health_check needs \"probe_cluster\""),
        case("probe_cluster with override_host", with(r#""target": {"probe_cluster": "probe"}"#), "$.target.probe_cluster", "is not used with mode \"override_host\""),
        case("unknown mode", with(r#""target": {"mode": "direct"}"#), "$.target.mode", "unknown variant `direct`"),
        // Status block.
        case("status CIDR prefix too long", with(r#""status": {"allow_cidrs": ["127.0.0.0/8", "10.0.0.0/33"]}"#), "$.status.allow_cidrs[1]", "\"10.0.0.0/33\" is not an address range"),
        case("status CIDR not an address", with(r#""status": {"allow_cidrs": ["localhost"]}"#), "$.status.allow_cidrs[0]", "\"localhost\" is not an address range"),
        case("status path without slash", with(r#""status": {"path": "lb-status"}"#), "$.status.path", "\"lb-status\" is not a request path"),
        case("status path with a query", with(r#""status": {"path": "/status?x=1"}"#), "$.status.path", "is not a request path"),
        // Sticky.
        case("short secret", with(r#""sticky": {"secrets": ["short"]}"#), "$.sticky.secrets[0]", "is 5 bytes long"),
        case("nine secrets", with(&format!(r#""sticky": {{"secrets": [{}]}}"#, (0..9).map(|i| format!("\"{i}123456789abcdef0123456789abcdef\"")).collect::<Vec<_>>().join(", "))), "$.sticky.secrets", "has 9 secrets"),
        case("SameSite None without Secure", with(r#""sticky": {"same_site": "None", "secure": false}"#), "$.sticky.same_site", "\"None\" requires secure: true"),
        case("cookie name with a space", with(r#""sticky": {"cookie": "lb session"}"#), "$.sticky.cookie", "\"lb session\" is not a cookie name"),
        case("cookie domain with a leading dot", with(r#""sticky": {"domain": ".example.com"}"#), "$.sticky.domain", "has a leading dot"),
        case("cookie ttl 0", with(r#""sticky": {"ttl_s": 0}"#), "$.sticky.ttl_s", "0 is out of range"),
        // Health checks.
        case("timeout equal to interval", with(r#""health_check": {"interval_ms": 1000, "timeout_ms": 1000}"#), "$.health_check.timeout_ms", "1000 is not below interval_ms 1000"),
        case("default timeout above interval", with(r#""health_check": {"interval_ms": 500}"#), "$.health_check.timeout_ms", "1000 (the default) is not below interval_ms 500"),
        case("inverted status range", with(r#""health_check": {"expected_statuses": [[200, 299], [300, 200]]}"#), "$.health_check.expected_statuses[1]", "[300, 200] is not a status range"),
        case("jitter above half the interval", with(r#""health_check": {"interval_ms": 1000, "timeout_ms": 100, "jitter_ms": 501}"#), "$.health_check.jitter_ms", "501 is above half of interval_ms 1000"),
        case("probe path without slash", with(r#""health_check": {"path": "healthz"}"#), "$.health_check.path", "\"healthz\" is not a request path"),
        case("outlier max below base", with(r#""outlier_detection": {"base_ejection_ms": 60000, "max_ejection_ms": 1000}"#), "$.outlier_detection.max_ejection_ms", "1000 is below base_ejection_ms 60000"),
        // Algorithm blocks next to the wrong algorithm.
        case("least_request block with round_robin", with(r#""least_request": {"choice_count": 2}"#), "$.least_request", "does not apply to the chosen algorithm"),
        case("least_time block with random", with(r#""algorithm": "random", "least_time": {}"#), "$.least_time", "does not apply to the chosen algorithm"),
        case("maglev block with ring_hash", with(r#""algorithm": "ring_hash", "hash_on": {"header": "x-user"}, "maglev": {"table_size": 65537}"#), "$.maglev", "does not apply to the chosen algorithm"),
        case("hash_on with source_ip_hash", with(r#""algorithm": "source_ip_hash", "hash_on": {"header": "x-user"}"#), "$.hash_on", "does not apply to the chosen algorithm"),
        case("balance_factor with least_request", with(r#""algorithm": "least_request", "balance_factor": 1.25"#), "$.balance_factor", "does not apply to the chosen algorithm"),
        case("ring_hash block with maglev", with(r#""algorithm": "maglev", "hash_on": {"source_ip": true}, "ring_hash": {"min_ring_size": 1024}"#), "$.ring_hash", "does not apply to the chosen algorithm"),
    ];
    v.extend(huge_cases());
    v.extend(utf8_cases());
    v
}

/// A megabyte of input in one value, in whitespace, in garbage, in a backend list; and deep
/// nesting. Each refusal is one short line: values are quoted cut to 80 characters.
fn huge_cases() -> Vec<Case> {
    let b = good_backends();
    let long_header = "a".repeat(MB);
    let spaces = " ".repeat(MB);
    // 1 MB of printable garbage that is not JSON.
    let garbage: String = (0..MB).map(|i| char::from(b'!' + (i % 90) as u8)).collect();
    // 10,001 backends (about 600 KB): one more than the limit.
    let many: Vec<String> = (0..10_001)
        .map(|i| {
            format!(
                r#"{{"id": "b{i}", "address": "10.{}.{}.{}:80"}}"#,
                i >> 16,
                (i >> 8) & 255,
                i & 255
            )
        })
        .collect();
    let nesting = 10_000;
    vec![
        case(
            "1 MB header name",
            with(&format!(r#""target": {{"header": "{long_header}"}}"#)),
            "$.target.header",
            &format!("\"{}... ({MB} bytes)\" is not a header name", "a".repeat(80)),
        ),
        case(
            "1 MB backend id",
            format!(
                r#"{{"cluster": "pool", "backends": [{{"id": "{long_header}", "address": "127.0.0.1:9001"}}]}}"#
            ),
            "$.backends[0].id",
            &format!("({MB} bytes)\" is not a valid id"),
        ),
        case(
            "1 MB of whitespace, then a mistake",
            format!(
                r#"{{"cluster": "pool",{spaces}"backends": {b},{spaces}"panic_threshold_percent": 1000}}"#
            ),
            "$.panic_threshold_percent",
            "1000 is out of range",
        ),
        case(
            "a valid config, then 1 MB of whitespace and garbage",
            format!(r#"{{"cluster": "pool", "backends": {b}}}{spaces}x"#),
            "$",
            &format!("not valid JSON: trailing characters at line 1 column {}", 34 + b.len() + MB),
        ),
        case("1 MB of garbage", garbage, "$", "not valid JSON: expected value at line 1 column 1"),
        case(
            "10,001 backends",
            format!(r#"{{"cluster": "pool", "backends": [{}]}}"#, many.join(",")),
            "$.backends",
            "has 10001 backends; valid: at most 10000",
        ),
        case(
            "10,000 nested arrays",
            "[".repeat(nesting),
            "$",
            "not valid JSON: recursion limit exceeded at line 1 column 128",
        ),
        case(
            "10,000 nested objects in a field",
            format!(r#"{{"cluster": "pool", "backends": {}"#, r#"{"a": "#.repeat(nesting)),
            "$",
            "not valid JSON: recursion limit exceeded",
        ),
    ]
}

/// The marker that [`bytes_value`] replaces by a byte that is not UTF-8.
const NOT_UTF8: &str = "<0xFF>";

/// Invalid UTF-8. Envoy's bootstrap is YAML (or JSON) text and the usual `StringValue` must be
/// UTF-8: a raw 0xFF byte in the YAML never reaches the filter (Envoy refuses the file, see
/// [`invalid_utf8_in_the_yaml_is_refused_by_envoy`]), and YAML escapes such as "\xFF" denote
/// the code point U+00FF, valid UTF-8. The Wasm filter's `configuration` may instead be a
/// `google.protobuf.BytesValue` (base64 in YAML), which Envoy hands over byte for byte: that
/// is how these cases get invalid UTF-8 to the filter. (The native unit tests in
/// src/config/tests.rs cover invalid UTF-8 in a value, a key and outside strings.)
fn utf8_cases() -> Vec<Case> {
    let bytes = |name, config: String, path, message: &str| Case {
        tweak: Some(bytes_value as fn(&mut Value)),
        ..case(name, config, path, message)
    };
    vec![
        // The control: the same delivery with valid UTF-8 reaches the filter's validation.
        bytes(
            "BytesValue config (control)",
            r#"{"cluster": "pool", "backends": [{"id": "b1", "address": "127.0.0.1:9001", "weight": 0}]}"#.into(),
            "$.backends[0].weight",
            "0 is out of range",
        ),
        bytes(
            "invalid UTF-8 in a string",
            format!(r#"{{"cluster": "po{NOT_UTF8}ol", "backends": {}}}"#, good_backends()),
            "$",
            "not valid JSON: invalid unicode code point at line 1 column 16",
        ),
        bytes(
            "invalid UTF-8 outside strings",
            format!(r#"{{"cluster": "pool", {NOT_UTF8}"backends": {}}}"#, good_backends()),
            "$",
            "not valid JSON: key must be a string at line 1 column 21",
        ),
    ]
}

/// Tweak: hands the plugin config to the filter as a `BytesValue`, with [`NOT_UTF8`] replaced by
/// the byte 0xFF.
fn bytes_value(doc: &mut Value) {
    let filters = &mut doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"];
    let wasm = filters
        .as_sequence_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "envoy.filters.http.wasm")
        .unwrap();
    let configuration = &mut wasm["typed_config"]["config"]["configuration"];
    let text = configuration["value"].as_str().unwrap().to_string();
    let mut raw = Vec::new();
    for (i, piece) in text.split(NOT_UTF8).enumerate() {
        if i > 0 {
            raw.push(0xFF);
        }
        raw.extend_from_slice(piece.as_bytes());
    }
    configuration["@type"] = "type.googleapis.com/google.protobuf.BytesValue".into();
    configuration["value"] = base64::engine::general_purpose::STANDARD.encode(raw).into();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invalid_config_class_is_refused_with_its_path() {
    let started = Instant::now();
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    // Every expectation also holds for the filter's validation run natively, so a wrong
    // expectation shows up here, before any Envoy starts (the BytesValue cases are checked
    // with their real bytes below, through Envoy only).
    for c in cases.iter().filter(|c| c.tweak.is_none()) {
        let e = envoy_lb::config::Config::from_json(c.config.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("{}: the filter accepts this config", c.name));
        assert_eq!(e.path, c.path, "{}: {e}", c.name);
        assert!(e.message.contains(&c.message), "{}: expected {:?} in {e}", c.name, c.message);
    }
    let endpoints = vec!["127.0.0.1:9001".parse().unwrap()];
    let permits = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let runs = cases.into_iter().map(|c| {
        let mut setup = EnvoySetup::new(c.config.clone(), endpoints.clone());
        setup.tweak = c.tweak;
        let permits = Arc::clone(&permits);
        async move {
            let _permit = permits.acquire().await.unwrap();
            (c, Envoy::start_refused(setup).await)
        }
    });
    let mut n = 0;
    for (c, (status, log)) in futures_join_all(runs).await {
        let name = c.name;
        assert!(!status.success(), "{name}: Envoy exited with {status}");
        let line = log.lines().find(|l| l.contains("invalid plugin config:"));
        let line = line.unwrap_or_else(|| {
            panic!("{name}: no 'invalid plugin config' line in:\n{}", cut(&log))
        });
        let (_, said) = line.split_once("invalid plugin config: ").unwrap();
        let rest = said
            .strip_prefix(c.path)
            .and_then(|r| r.strip_prefix(": "))
            .unwrap_or_else(|| panic!("{name}: expected the path {:?} in\n{}", c.path, cut(line)));
        assert!(rest.contains(&c.message), "{name}: expected {:?} in\n{}", c.message, cut(line));
        assert_eq!(
            log.matches("invalid plugin config:").count(),
            1,
            "{name}: the refusal is logged once:\n{}",
            cut(&log)
        );
        // However big the input, the refusal is one short line that quotes at most a cut.
        assert!(line.len() < 1024, "{name}: a {}-byte log line", line.len());
        n += 1;
    }
    eprintln!("{n} configs refused in {:.1} s", started.elapsed().as_secs_f64());
}

/// A raw 0xFF byte in the YAML text, inside the `StringValue` that carries the plugin config,
/// as far as Envoy lets it through: Envoy parses the YAML and hands the filter a valid UTF-8
/// string with something else in the byte's place (Envoy 1.40.0: a space), so the filter's
/// own check for invalid UTF-8 cannot be reached this way (the BytesValue cases above reach
/// it). Whatever arrives is still validated: here the control character after it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_the_yaml_is_replaced_by_envoy_and_still_refused() {
    let endpoints = ["127.0.0.1:9001".parse().unwrap()];
    let config =
        format!(r#"{{"cluster": "po{NOT_UTF8}ol\u0001", "backends": {}}}"#, good_backends());
    let doc = shipped_config(Some(&wasm_path()), &config, &endpoints);
    let yaml = serde_yaml_ng::to_string(&doc).unwrap();
    assert_eq!(yaml.matches(NOT_UTF8).count(), 1);
    let (before, after) = yaml.split_once(NOT_UTF8).unwrap();
    let raw = [before.as_bytes(), &[0xFF], after.as_bytes()].concat();
    assert!(std::str::from_utf8(&raw).is_err());
    let dir = tempfile::tempdir().unwrap();
    let (status, log) = run_envoy_on(dir.path(), &raw).await;
    assert!(!status.success(), "Envoy started:\n{}", cut(&log));
    let line = log.lines().find(|l| l.contains("invalid plugin config:"));
    let line = line.unwrap_or_else(|| panic!("no refusal:\n{}", cut(&log)));
    let (_, said) = line.split_once("invalid plugin config: ").unwrap();
    let quoted = said
        .strip_prefix("$.cluster: \"po")
        .and_then(|r| r.strip_suffix("ol\\u{1}\" is not a cluster name; valid: the name of the Envoy cluster to use, 1 to 256 characters, no control characters"))
        .unwrap_or_else(|| panic!("{line}"));
    // Something valid took the byte's place.
    assert!(!quoted.is_empty() && !quoted.contains("\\u{fffd}"), "{line}");
    // The control: the same file without the byte.
    let (status, log) = run_envoy_on(dir.path(), yaml.replace(NOT_UTF8, "").as_bytes()).await;
    assert!(!status.success());
    assert!(
        log.contains(r#"invalid plugin config: $.cluster: "pool\u{1}" is not a cluster name"#),
        "{}",
        cut(&log)
    );
}

/// Runs Envoy on the bootstrap `bytes` (written to `dir`) until it exits (at most 30 s).
async fn run_envoy_on(dir: &Path, bytes: &[u8]) -> (std::process::ExitStatus, String) {
    let cfg = dir.join("raw.yaml");
    let log_path = dir.join("raw.log");
    std::fs::write(&cfg, bytes).unwrap();
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(envoy_bin())
        .current_dir(repo_root())
        .arg("-c")
        .arg(&cfg)
        .args(["--concurrency", "1", "--disable-hot-restart", "--log-level", "info"])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read(&log_path).unwrap_or_default();
            return (status, String::from_utf8_lossy(&log).into_owned());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "Envoy is still running:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A log or line shortened for a failure message: Envoy's list of extensions dropped, at most
/// 4000 characters (a megabyte config must not flood the output), the end kept.
fn cut(text: &str) -> String {
    let kept: Vec<&str> = text.lines().filter(|l| !l.contains("server.cc:467]")).collect();
    let kept = kept.join("\n");
    match kept.char_indices().rev().nth(4000) {
        None => kept,
        Some((at, _)) => format!("({} bytes)...{}", kept.len(), &kept[at..]),
    }
}

/// Runs the futures concurrently on the current runtime.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
