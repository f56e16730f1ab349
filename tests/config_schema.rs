//! schema/plugin-config.schema.json against the filter's own validator (`Config::from_json`)
//! and the `check-config` binary. Native and fast: no Envoy, no wasm build.
//!
//! (a) the schema is a valid draft 2020-12 schema, closed everywhere, naming exactly the members
//!     the filter reads; (b) every example plugin config in envoy/*.yaml and istio/*.yaml passes
//!     both; (c) bad configs fail both; (d) good configs, every algorithm, target mode and
//!     optional block, pass both, and numeric bounds, defaults and string patterns agree with
//!     the filter; (e) check-config prints the filter's own refusal line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

use envoy_lb::config::Config;
use serde_json::{json, Value};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    let path = repo_root().join("schema/plugin-config.schema.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap()
});

static VALIDATOR: LazyLock<jsonschema::Validator> =
    LazyLock::new(|| jsonschema::draft202012::new(&SCHEMA).unwrap());

/// The schema's complaints about `config`, one line each (empty: valid).
fn schema_errors(config: &Value) -> Vec<String> {
    VALIDATOR.iter_errors(config).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

fn filter_verdict(config: &Value) -> Result<Config, String> {
    Config::from_json(config.to_string().as_bytes()).map_err(|e| e.to_string())
}

fn assert_both_accept(name: &str, config: &Value) {
    let errors = schema_errors(config);
    assert!(errors.is_empty(), "{name}: the schema refuses {config}:\n{}", errors.join("\n"));
    if let Err(e) = filter_verdict(config) {
        panic!("{name}: Config::from_json refuses {config}: {e}");
    }
}

fn assert_both_refuse(name: &str, config: &Value) {
    assert!(!VALIDATOR.is_valid(config), "{name}: the schema accepts {config}");
    assert!(filter_verdict(config).is_err(), "{name}: Config::from_json accepts {config}");
}

/// `base` with the top-level members of `extra` added or replaced.
fn with(base: &Value, extra: Value) -> Value {
    let mut out = base.clone();
    for (k, v) in extra.as_object().unwrap() {
        out[k] = v.clone();
    }
    out
}

/// Two backends located by cluster (target.mode cluster_header).
fn cluster_header() -> Value {
    json!({"cluster": "pool", "target": {"mode": "cluster_header"}, "backends": [
        {"id": "a", "cluster": "pool-a"},
        {"id": "b", "cluster": "pool-b", "weight": 2}
    ]})
}

fn minimal() -> Value {
    json!({"cluster": "pool", "backends": [
        {"id": "b1", "address": "10.0.0.1:8080"},
        {"id": "b2", "address": "10.0.0.2:8080"}
    ]})
}

// ---- (a) the schema itself ----

#[test]
fn schema_is_a_valid_draft_2020_12_schema() {
    assert_eq!(SCHEMA["$schema"], "https://json-schema.org/draft/2020-12/schema");
    if let Err(e) = jsonschema::draft202012::meta::validate(&SCHEMA) {
        panic!("not a valid draft 2020-12 schema: {e} at {}", e.instance_path());
    }
    // Compiles (every $ref resolves locally, every pattern is a valid regex).
    LazyLock::force(&VALIDATOR);
}

/// Every object schema that defines members is closed (the filter refuses unknown members) and
/// every member has a description.
#[test]
fn every_object_is_closed_and_every_member_described() {
    fn walk(s: &Value, at: &str, objects: &mut usize) {
        match s {
            Value::Object(m) => {
                let is_object = match m.get("type") {
                    Some(Value::String(t)) => t == "object",
                    Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
                    _ => false,
                };
                if is_object && m.contains_key("properties") {
                    *objects += 1;
                    assert_eq!(
                        m.get("additionalProperties"),
                        Some(&Value::Bool(false)),
                        "{at}: an object schema without additionalProperties: false"
                    );
                    for (name, p) in m.get("properties").and_then(Value::as_object).unwrap() {
                        assert!(
                            p.get("description").is_some(),
                            "{at}.properties.{name}: no description"
                        );
                    }
                }
                // An `if` only tests; what it names is defined elsewhere.
                for (k, v) in m.iter().filter(|(k, _)| *k != "if") {
                    walk(v, &format!("{at}.{k}"), objects);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{at}[{i}]"), objects);
                }
            }
            _ => {}
        }
    }
    let mut objects = 0;
    walk(&SCHEMA, "$", &mut objects);
    // config, backend, target, 4 algorithm blocks, hash_on, health_check, outlier, sticky, status
    assert!(objects >= 12, "only {objects} object schemas");
}

/// The members the filter lists in its `unknown field` message for the object at `path`
/// (`config` holds an unknown member `zz_unknown` there).
fn filter_fields(config: &Value, path: &str) -> Vec<String> {
    let err = Config::from_json(config.to_string().as_bytes()).unwrap_err();
    assert_eq!(err.path, format!("{path}.zz_unknown"), "{err}");
    let list = err.message.split("expected ").nth(1).unwrap();
    let names = list.trim_start_matches("one of ").split('`').skip(1).step_by(2);
    let mut names: Vec<String> = names.map(String::from).collect();
    names.sort();
    names
}

fn schema_members(schema: &Value) -> Vec<String> {
    let mut names: Vec<String> =
        schema["properties"].as_object().unwrap().keys().cloned().collect();
    names.sort();
    names
}

#[test]
fn schema_names_exactly_the_members_the_filter_reads() {
    let p = &SCHEMA["properties"];
    let unknown = json!({"zz_unknown": 1});
    let block = |name: &str| with(&minimal(), json!({ name: unknown }));
    let backend = with(&minimal(), json!({"backends": [{"id": "b1", "zz_unknown": 1}]}));
    let cases: Vec<(&str, Value, &Value)> = vec![
        ("$", with(&minimal(), unknown.clone()), &*SCHEMA),
        ("$.backends[0]", backend, &SCHEMA["$defs"]["backend"]),
        ("$.target", block("target"), &p["target"]),
        ("$.least_request", block("least_request"), &p["least_request"]),
        ("$.least_time", block("least_time"), &p["least_time"]),
        ("$.hash_on", block("hash_on"), &p["hash_on"]),
        ("$.maglev", block("maglev"), &p["maglev"]),
        ("$.ring_hash", block("ring_hash"), &p["ring_hash"]),
        ("$.health_check", block("health_check"), &p["health_check"]),
        ("$.outlier_detection", block("outlier_detection"), &p["outlier_detection"]),
        ("$.sticky", block("sticky"), &p["sticky"]),
        ("$.status", block("status"), &p["status"]),
    ];
    for (path, config, schema) in cases {
        assert_eq!(
            schema_members(schema),
            filter_fields(&config, path),
            "{path}: the schema's members (left) and the filter's (right)"
        );
    }
}

// ---- (b) the examples in the repository ----

/// Every plugin config in envoy/*.yaml (the StringValue `configuration` of each
/// envoy.filters.http.wasm filter) and istio/*.yaml (each WasmPlugin's `pluginConfig`).
fn examples() -> Vec<(String, Value)> {
    fn yaml_files(dir: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        files.sort();
        files
    }
    fn documents(file: &Path) -> Vec<Value> {
        let text = std::fs::read_to_string(file).unwrap();
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(|doc| {
                let yaml = <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc)
                    .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
                serde_json::to_value(yaml).unwrap()
            })
            .collect()
    }
    /// `f` on every object under `v`.
    fn objects<'a>(v: &'a Value, f: &mut dyn FnMut(&'a serde_json::Map<String, Value>)) {
        match v {
            Value::Object(m) => {
                f(m);
                m.values().for_each(|x| objects(x, f));
            }
            Value::Array(items) => items.iter().for_each(|x| objects(x, f)),
            _ => {}
        }
    }
    let root = repo_root();
    let mut found = Vec::new();
    for file in yaml_files(&root.join("envoy")) {
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        for doc in documents(&file) {
            objects(&doc, &mut |m| {
                if m.get("name").and_then(Value::as_str) != Some("envoy.filters.http.wasm") {
                    return;
                }
                let configuration = &m["typed_config"]["config"]["configuration"];
                let value = configuration["value"].as_str().unwrap_or_else(|| {
                    panic!("{name}: a wasm filter without a StringValue configuration")
                });
                let config = serde_json::from_str(value)
                    .unwrap_or_else(|e| panic!("{name}: the plugin config is not JSON: {e}"));
                found.push((name.clone(), config));
            });
        }
    }
    for file in yaml_files(&root.join("istio")) {
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        for doc in documents(&file) {
            objects(&doc, &mut |m| {
                if let Some(config) = m.get("pluginConfig") {
                    found.push((name.clone(), config.clone()));
                }
            });
        }
    }
    found
}

#[test]
fn every_example_config_passes_schema_and_filter() {
    let examples = examples();
    assert!(!examples.is_empty(), "no plugin config found in envoy/*.yaml or istio/*.yaml");
    for (file, config) in &examples {
        assert_both_accept(file, config);
    }
}

// ---- (c) bad configs: both refuse ----

#[rustfmt::skip]
#[test]
fn bad_configs_are_refused_by_both() {
    let m = minimal();
    let cl = cluster_header();
    let b = |backend: Value| with(&m, json!({"backends": [backend]}));
    let t = |target: Value| with(&m, json!({"target": target}));
    let algo = |extra: Value| with(&m, extra);
    let hc = |block: Value| with(&m, json!({"health_check": block}));
    let od = |block: Value| with(&m, json!({"outlier_detection": block}));
    let st = |block: Value| with(&m, json!({"sticky": block}));
    let status = |block: Value| with(&m, json!({"status": block}));
    let secrets9: Vec<String> = (0..9).map(|i| format!("{i:0>32}")).collect();
    // (name, config, the JSON path of Config::from_json's refusal)
    let cases: Vec<(&str, Value, &str)> = vec![
        ("not an object", json!([1, 2]), "$"),
        ("empty object", json!({}), "$"),
        ("missing backends", json!({"cluster": "pool"}), "$.backends"),
        ("empty backends without discovery", json!({"cluster": "pool", "backends": []}), "$.backends"),
        ("discovery without admin_cluster", json!({"cluster": "pool", "discovery": {}}), "$.discovery"),
        ("discovery unknown member", json!({"cluster": "pool", "discovery": {"admin_cluster": "a", "every": 1}}), "$.discovery.every"),
        ("discovery source unknown", json!({"cluster": "pool", "discovery": {"admin_cluster": "a", "source": "dns"}}), "$.discovery.source"),
        ("discovery interval too short", json!({"cluster": "pool", "discovery": {"admin_cluster": "a", "interval_ms": 99}}), "$.discovery.interval_ms"),
        ("discovery response cap too small", json!({"cluster": "pool", "discovery": {"admin_cluster": "a", "max_response_bytes": 4095}}), "$.discovery.max_response_bytes"),
        ("missing cluster", json!({"backends": m["backends"]}), "$"),
        ("unknown top-level member", with(&m, json!({"clustr": "x"})), "$.clustr"),
        ("cluster not a string", with(&m, json!({"cluster": 7})), "$.cluster"),
        ("cluster null", with(&m, json!({"cluster": null})), "$.cluster"),
        ("cluster empty", with(&m, json!({"cluster": ""})), "$.cluster"),
        ("cluster blank", with(&m, json!({"cluster": "  "})), "$.cluster"),
        ("cluster too long", with(&m, json!({"cluster": "c".repeat(257)})), "$.cluster"),
        ("cluster control character", with(&m, json!({"cluster": "po\u{1}ol"})), "$.cluster"),
        ("unknown algorithm", with(&m, json!({"algorithm": "fastest"})), "$.algorithm"),
        ("algorithm not a string", with(&m, json!({"algorithm": 1})), "$.algorithm"),
        // backends
        ("backends empty", with(&m, json!({"backends": []})), "$.backends"),
        ("backends an object", with(&m, json!({"backends": {"id": "b1"}})), "$.backends"),
        ("backend missing id", b(json!({"address": "10.0.0.1:80"})), "$.backends[0]"),
        ("backend missing address", b(json!({"id": "b1"})), "$.backends[0]"),
        ("backend unknown member", b(json!({"id": "b1", "address": "10.0.0.1:80", "port": 80})), "$.backends[0].port"),
        ("id with a space", b(json!({"id": "b 1", "address": "10.0.0.1:80"})), "$.backends[0].id"),
        ("id too long", b(json!({"id": "b".repeat(65), "address": "10.0.0.1:80"})), "$.backends[0].id"),
        ("address host name", b(json!({"id": "b1", "address": "backend:80"})), "$.backends[0].address"),
        ("address without port", b(json!({"id": "b1", "address": "10.0.0.1"})), "$.backends[0].address"),
        ("address port 0", b(json!({"id": "b1", "address": "10.0.0.1:0"})), "$.backends[0].address"),
        ("address port 65536", b(json!({"id": "b1", "address": "10.0.0.1:65536"})), "$.backends[0].address"),
        ("address unspecified v4", b(json!({"id": "b1", "address": "0.0.0.0:80"})), "$.backends[0].address"),
        ("address unspecified v6", b(json!({"id": "b1", "address": "[::]:80"})), "$.backends[0].address"),
        ("address v6 without brackets", b(json!({"id": "b1", "address": "2001:db8::1:80"})), "$.backends[0].address"),
        ("address v6 zone id", b(json!({"id": "b1", "address": "[fe80::1%eth0]:80"})), "$.backends[0].address"),
        ("address octet 256", b(json!({"id": "b1", "address": "10.0.0.256:80"})), "$.backends[0].address"),
        ("weight 0", b(json!({"id": "b1", "address": "10.0.0.1:80", "weight": 0})), "$.backends[0].weight"),
        ("weight 10001", b(json!({"id": "b1", "address": "10.0.0.1:80", "weight": 10001})), "$.backends[0].weight"),
        ("weight a string", b(json!({"id": "b1", "address": "10.0.0.1:80", "weight": "3"})), "$.backends[0].weight"),
        ("weight a fraction", b(json!({"id": "b1", "address": "10.0.0.1:80", "weight": 1.5})), "$.backends[0].weight"),
        ("backup a string", b(json!({"id": "b1", "address": "10.0.0.1:80", "backup": "no"})), "$.backends[0].backup"),
        ("backend cluster with override_host", b(json!({"id": "a", "address": "10.0.0.1:80", "cluster": "x"})), "$.backends[0].cluster"),
        ("backend cluster with original_dst", with(&b(json!({"id": "a", "address": "10.0.0.1:80", "cluster": "x"})), json!({"target": {"mode": "original_dst"}})), "$.backends[0].cluster"),
        ("original_dst backend without address", with(&b(json!({"id": "a"})), json!({"target": {"mode": "original_dst"}})), "$.backends[0]"),
        ("cluster_header backend with an address", with(&cl, json!({"backends": [{"id": "a", "cluster": "c", "address": "10.0.0.1:80"}]})), "$.backends[0].address"),
        ("cluster_header backend without cluster", with(&cl, json!({"backends": [{"id": "a"}]})), "$.backends[0]"),
        ("cluster_header backend cluster null", with(&cl, json!({"backends": [{"id": "a", "cluster": null}]})), "$.backends[0]"),
        ("cluster_header backend cluster empty", with(&cl, json!({"backends": [{"id": "a", "cluster": ""}]})), "$.backends[0].cluster"),
        ("cluster_header backend cluster too long", with(&cl, json!({"backends": [{"id": "a", "cluster": "c".repeat(257)}]})), "$.backends[0].cluster"),
        ("cluster_header backend cluster a number", with(&cl, json!({"backends": [{"id": "a", "cluster": 7}]})), "$.backends[0].cluster"),
        // target
        ("target unknown member", t(json!({"hosts": 3})), "$.target.hosts"),
        ("target not an object", t(json!("override_host")), "$.target"),
        ("target mode unknown", t(json!({"mode": "redirect"})), "$.target.mode"),
        ("target header not a token", t(json!({"header": "x lb"})), "$.target.header"),
        ("target header empty", t(json!({"header": ""})), "$.target.header"),
        ("max_hosts 0", t(json!({"max_hosts": 0})), "$.target.max_hosts"),
        ("max_hosts 11", t(json!({"max_hosts": 11})), "$.target.max_hosts"),
        ("max_hosts with original_dst", t(json!({"mode": "original_dst", "max_hosts": 2})), "$.target.max_hosts"),
        ("max_hosts with cluster_header", with(&cl, json!({"target": {"mode": "cluster_header", "max_hosts": 1}})), "$.target.max_hosts"),
        ("allow_header_fallback with override_host", t(json!({"allow_header_fallback": false})), "$.target.allow_header_fallback"),
        ("allow_header_fallback with cluster_header", with(&cl, json!({"target": {"mode": "cluster_header", "allow_header_fallback": true}})), "$.target.allow_header_fallback"),
        ("allow_header_fallback a string", t(json!({"mode": "original_dst", "allow_header_fallback": "yes"})), "$.target.allow_header_fallback"),
        ("probe_cluster with override_host", t(json!({"probe_cluster": "probes"})), "$.target.probe_cluster"),
        ("probe_cluster with cluster_header", with(&cl, json!({"target": {"mode": "cluster_header", "probe_cluster": "p"}})), "$.target.probe_cluster"),
        ("probe_cluster empty", t(json!({"mode": "original_dst", "probe_cluster": ""})), "$.target.probe_cluster"),
        ("probe_cluster blank", t(json!({"mode": "original_dst", "probe_cluster": " "})), "$.target.probe_cluster"),
        ("probe_cluster too long", t(json!({"mode": "original_dst", "probe_cluster": "p".repeat(257)})), "$.target.probe_cluster"),
        ("original_dst health checks without probe_cluster", with(&t(json!({"mode": "original_dst"})), json!({"health_check": {}})), "$.target"),
        ("original_dst header not a token", t(json!({"mode": "original_dst", "header": "a b"})), "$.target.header"),
        // algorithms and their blocks
        ("least_request without its algorithm", algo(json!({"least_request": {}})), "$.least_request"),
        ("choice_count 101", algo(json!({"algorithm": "least_request", "least_request": {"choice_count": 101}})), "$.least_request.choice_count"),
        ("active_request_bias 10.5", algo(json!({"algorithm": "least_request", "least_request": {"active_request_bias": 10.5}})), "$.least_request.active_request_bias"),
        ("least_time without its algorithm", algo(json!({"least_time": {}})), "$.least_time"),
        ("default_rtt_ms 0", algo(json!({"algorithm": "least_time", "least_time": {"default_rtt_ms": 0}})), "$.least_time.default_rtt_ms"),
        ("decay_ms 600001", algo(json!({"algorithm": "least_time", "least_time": {"decay_ms": 600_001}})), "$.least_time.decay_ms"),
        ("ring_hash without hash_on", algo(json!({"algorithm": "ring_hash"})), "$.hash_on"),
        ("maglev without hash_on", algo(json!({"algorithm": "maglev"})), "$.hash_on"),
        ("maglev with hash_on null", algo(json!({"algorithm": "maglev", "hash_on": null})), "$.hash_on"),
        ("hash_on with round_robin", algo(json!({"hash_on": {"source_ip": true}})), "$.hash_on"),
        ("hash_on with source_ip_hash", algo(json!({"algorithm": "source_ip_hash", "hash_on": {"source_ip": true}})), "$.hash_on"),
        ("hash_on empty", algo(json!({"algorithm": "maglev", "hash_on": {}})), "$.hash_on"),
        ("hash_on two sources", algo(json!({"algorithm": "maglev", "hash_on": {"header": "x-u", "cookie": "c"}})), "$.hash_on"),
        ("hash_on source_ip false", algo(json!({"algorithm": "maglev", "hash_on": {"source_ip": false}})), "$.hash_on.source_ip"),
        ("hash_on source_ip false and a header", algo(json!({"algorithm": "maglev", "hash_on": {"source_ip": false, "header": "x-u"}})), "$.hash_on"),
        ("hash_on bad header", algo(json!({"algorithm": "ring_hash", "hash_on": {"header": "x u"}})), "$.hash_on.header"),
        ("hash_on bad cookie", algo(json!({"algorithm": "ring_hash", "hash_on": {"cookie": "a;b"}})), "$.hash_on.cookie"),
        ("hash_on bad query", algo(json!({"algorithm": "ring_hash", "hash_on": {"query": "a=b"}})), "$.hash_on.query"),
        ("maglev block with ring_hash", algo(json!({"algorithm": "ring_hash", "hash_on": {"source_ip": true}, "maglev": {}})), "$.maglev"),
        ("table_size over the bound", algo(json!({"algorithm": "source_ip_hash", "maglev": {"table_size": 5_000_012}})), "$.maglev.table_size"),
        ("ring_hash block with maglev", algo(json!({"algorithm": "maglev", "hash_on": {"source_ip": true}, "ring_hash": {}})), "$.ring_hash"),
        ("max_ring_size 0", algo(json!({"algorithm": "ring_hash", "hash_on": {"source_ip": true}, "ring_hash": {"max_ring_size": 0}})), "$.ring_hash.max_ring_size"),
        ("balance_factor with least_request", algo(json!({"algorithm": "least_request", "balance_factor": 1.25})), "$.balance_factor"),
        ("balance_factor 0.5", algo(json!({"algorithm": "source_ip_hash", "balance_factor": 0.5})), "$.balance_factor"),
        // health_check
        ("health_check not an object", hc(json!(true)), "$.health_check"),
        ("health_check unknown member", hc(json!({"port": 8080})), "$.health_check.port"),
        ("health_check path relative", hc(json!({"path": "healthz"})), "$.health_check.path"),
        ("health_check path with a space", hc(json!({"path": "/health z"})), "$.health_check.path"),
        ("interval_ms 9", hc(json!({"interval_ms": 9, "timeout_ms": 1})), "$.health_check.interval_ms"),
        ("healthy_threshold 0", hc(json!({"healthy_threshold": 0})), "$.health_check.healthy_threshold"),
        ("expected_statuses empty", hc(json!({"expected_statuses": []})), "$.health_check.expected_statuses"),
        ("expected_statuses a flat pair", hc(json!({"expected_statuses": [200, 299]})), "$.health_check.expected_statuses[0]"),
        ("expected_statuses out of range", hc(json!({"expected_statuses": [[99, 200]]})), "$.health_check.expected_statuses[0]"),
        ("expected_statuses a triple", hc(json!({"expected_statuses": [[200, 250, 299]]})), "$.health_check.expected_statuses[0]"),
        ("expected_statuses 33 ranges", hc(json!({"expected_statuses": vec![[200, 299]; 33]})), "$.health_check.expected_statuses"),
        ("health_check host with a slash", hc(json!({"host": "a/b"})), "$.health_check.host"),
        // panic, outlier detection, slow start
        ("panic_threshold_percent 101", with(&m, json!({"panic_threshold_percent": 101})), "$.panic_threshold_percent"),
        ("panic_threshold_percent negative", with(&m, json!({"panic_threshold_percent": -1})), "$.panic_threshold_percent"),
        ("outlier unknown member", od(json!({"errors": 5})), "$.outlier_detection.errors"),
        ("consecutive_errors 1001", od(json!({"consecutive_errors": 1001})), "$.outlier_detection.consecutive_errors"),
        ("max_ejection_percent 101", od(json!({"max_ejection_percent": 101})), "$.outlier_detection.max_ejection_percent"),
        ("slow_start_ms over an hour", with(&m, json!({"slow_start_ms": 3_600_001})), "$.slow_start_ms"),
        // sticky
        ("sticky unknown member", st(json!({"name": "x"})), "$.sticky.name"),
        ("sticky cookie not a token", st(json!({"cookie": "a b"})), "$.sticky.cookie"),
        ("sticky secret short", st(json!({"secrets": ["short"]})), "$.sticky.secrets[0]"),
        ("sticky secrets repeated", st(json!({"secrets": ["s".repeat(32), "s".repeat(32)]})), "$.sticky.secrets[1]"),
        ("sticky nine secrets", st(json!({"secrets": secrets9})), "$.sticky.secrets"),
        ("sticky secrets a string", st(json!({"secrets": "s".repeat(32)})), "$.sticky.secrets"),
        ("sticky secret null", st(json!({"secrets": [null]})), "$.sticky.secrets[0]"),
        ("sticky ttl_s 0", st(json!({"ttl_s": 0})), "$.sticky.ttl_s"),
        ("sticky path with ;", st(json!({"path": "/a;b"})), "$.sticky.path"),
        ("sticky domain leading dot", st(json!({"domain": ".example.com"})), "$.sticky.domain"),
        ("sticky domain with _", st(json!({"domain": "a_b.example"})), "$.sticky.domain"),
        ("sticky same_site lower-case", st(json!({"same_site": "lax"})), "$.sticky.same_site"),
        ("sticky SameSite None without Secure", st(json!({"same_site": "None", "secure": false})), "$.sticky.same_site"),
        ("sticky secure a string", st(json!({"secure": "true"})), "$.sticky.secure"),
        // status
        ("status not an object", status(json!("/.lb/status")), "$.status"),
        ("status unknown member", status(json!({"enabled": true})), "$.status.enabled"),
        ("status path relative", status(json!({"path": "lb/status"})), "$.status.path"),
        ("status path with a query", status(json!({"path": "/s?x=1"})), "$.status.path"),
        ("status path too long", status(json!({"path": "/".repeat(257)})), "$.status.path"),
        ("status path not a string", status(json!({"path": 1})), "$.status.path"),
        ("status allow_cidrs a string", status(json!({"allow_cidrs": "::1/128"})), "$.status.allow_cidrs"),
        ("status allow_cidrs empty", status(json!({"allow_cidrs": []})), "$.status.allow_cidrs"),
        ("status 65 cidrs", status(json!({"allow_cidrs": vec!["10.0.0.0/8"; 65]})), "$.status.allow_cidrs"),
        ("status cidr v4 prefix 33", status(json!({"allow_cidrs": ["10.0.0.0/33"]})), "$.status.allow_cidrs[0]"),
        ("status cidr v6 prefix 129", status(json!({"allow_cidrs": ["::/129"]})), "$.status.allow_cidrs[0]"),
        ("status cidr empty prefix", status(json!({"allow_cidrs": ["::1/"]})), "$.status.allow_cidrs[0]"),
        ("status cidr host name", status(json!({"allow_cidrs": ["localhost/8"]})), "$.status.allow_cidrs[0]"),
        ("status cidr null item", status(json!({"allow_cidrs": [null]})), "$.status.allow_cidrs[0]"),
    ];
    for (name, config, path) in &cases {
        assert_both_refuse(name, config);
        let err = Config::from_json(config.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.path, *path, "{name}: {err}");
    }
}

// ---- (d) good configs: both accept ----

#[rustfmt::skip]
#[test]
fn good_configs_are_accepted_by_both() {
    let m = minimal();
    let cl = cluster_header();
    let secret = |c: char| c.to_string().repeat(32);
    let cases: Vec<(&str, Value)> = vec![
        ("minimal", m.clone()),
        ("discovery alone", json!({"cluster": "pool", "discovery": {"admin_cluster": "envoy_admin"}})),
        ("discovery with every member and overrides", json!({"cluster": "pool",
            "discovery": {"admin_cluster": "a", "cluster": "dns", "source": "clusters", "interval_ms": 100,
                "timeout_ms": 100, "max_response_bytes": 4096},
            "backends": [{"id": "blue", "address": "10.0.0.1:80", "weight": 3, "backup": true}]})),
        ("discovery with empty backends", json!({"cluster": "pool", "discovery": {"admin_cluster": "a"}, "backends": []})),
        ("round_robin with weights, backup, drain", with(&m, json!({"algorithm": "round_robin", "backends": [
            {"id": "a", "address": "10.0.0.1:8080", "weight": 10000},
            {"id": "b", "address": "10.0.0.2:8080", "weight": 1, "backup": true},
            {"id": "c.3_x-y", "address": "[2001:db8::1]:65535", "drain": true},
            {"id": "d", "address": "[::ffff:10.0.0.9]:1"}]}))),
        ("random", with(&m, json!({"algorithm": "random"}))),
        ("least_request with defaults", with(&m, json!({"algorithm": "least_request"}))),
        ("least_request tuned", with(&m, json!({"algorithm": "least_request",
            "least_request": {"choice_count": 0, "active_request_bias": 0.5}}))),
        ("least_time tuned", with(&m, json!({"algorithm": "least_time",
            "least_time": {"default_rtt_ms": 60000, "decay_ms": 1, "error_penalty_ms": 600000}}))),
        ("ring_hash on a header", with(&m, json!({"algorithm": "ring_hash", "hash_on": {"header": "X-User-Id"},
            "ring_hash": {"min_ring_size": 1, "max_ring_size": 8_388_608}, "balance_factor": 1.25}))),
        ("ring_hash on a cookie", with(&m, json!({"algorithm": "ring_hash", "hash_on": {"cookie": "session_id"}}))),
        ("maglev on a query parameter", with(&m, json!({"algorithm": "maglev", "hash_on": {"query": "user"},
            "maglev": {"table_size": 655_373}, "balance_factor": 100}))),
        ("maglev on the source ip", with(&m, json!({"algorithm": "maglev", "hash_on": {"source_ip": true}}))),
        ("source_ip_hash", with(&m, json!({"algorithm": "source_ip_hash",
            "maglev": {"table_size": 5_000_011}, "balance_factor": 1}))),
        ("override_host spelled out", with(&m, json!({"target": {"mode": "override_host",
            "header": "x-gateway-destination-endpoint", "max_hosts": 10}}))),
        ("target empty", with(&m, json!({"target": {}}))),
        ("original_dst", with(&m, json!({"target": {"mode": "original_dst"}}))),
        ("original_dst spelled out", with(&m, json!({"target": {"mode": "original_dst",
            "header": "x-envoy-original-dst-host", "allow_header_fallback": true, "probe_cluster": "probes"}}))),
        ("original_dst with health checks and a probe cluster", with(&m, json!({
            "target": {"mode": "original_dst", "probe_cluster": "probes"}, "health_check": {}}))),
        ("original_dst with null max_hosts", with(&m, json!({"target": {"mode": "original_dst", "max_hosts": null}}))),
        ("cluster_header", cl.clone()),
        ("cluster_header spelled out", with(&cl, json!({"algorithm": "least_request", "target": {
            "mode": "cluster_header", "header": "x-lb-cluster", "max_hosts": null, "probe_cluster": null}}))),
        ("cluster_header with health checks and hashing", with(&cl, json!({"health_check": {},
            "algorithm": "maglev", "hash_on": {"cookie": "u"}}))),
        ("cluster_header with a null address", with(&cl, json!({"backends": [{"id": "a", "cluster": "c", "address": null}]}))),
        ("backend cluster null outside cluster_header", with(&m, json!({"backends": [
            {"id": "a", "address": "10.0.0.1:80", "cluster": null}]}))),
        ("health_check defaults", with(&m, json!({"health_check": {}}))),
        ("health_check spelled out", with(&m, json!({"health_check": {"path": "/ready?full=1",
            "interval_ms": 10, "timeout_ms": 9, "healthy_threshold": 100, "unhealthy_threshold": 1,
            "expected_statuses": [[200, 299], [301, 301], [599, 599]], "jitter_ms": 5,
            "host": "backend.example.com:8080"}}))),
        ("outlier_detection defaults", with(&m, json!({"outlier_detection": {}}))),
        ("outlier_detection spelled out", with(&m, json!({"outlier_detection": {"consecutive_errors": 1000,
            "base_ejection_ms": 1, "max_ejection_ms": 3_600_000, "max_ejection_percent": 0}}))),
        ("panic and slow start", with(&m, json!({"panic_threshold_percent": 0, "slow_start_ms": 3_600_000}))),
        ("sticky defaults", with(&m, json!({"sticky": {}}))),
        ("sticky spelled out", with(&m, json!({"sticky": {"cookie": "lb", "secrets": [secret('a'), secret('b')],
            "ttl_s": 31_536_000, "path": "/app", "domain": "example.com", "secure": true,
            "http_only": false, "same_site": "None"}}))),
        ("sticky strict, not secure", with(&m, json!({"sticky": {"same_site": "Strict", "secure": false, "secrets": []}}))),
        ("status defaults", with(&m, json!({"status": {}}))),
        ("status null", with(&m, json!({"status": null}))),
        ("status spelled out", with(&m, json!({"status": {"path": "/.lb/status", "allow_cidrs": [
            "127.0.0.0/8", "::1/128", "10.0.0.0/8", "0.0.0.0/0", "::/0", "fd00::/8", "192.168.1.7/32",
            "10.1.2.3", "::ffff:10.0.0.0/104", "10.0.0.0/08"]}}))),
        ("status 64 cidrs", with(&m, json!({"status": {"allow_cidrs": vec!["10.0.0.0/8"; 64]}}))),
        ("null means the default", with(&m, json!({"algorithm": null,
            "target": {"mode": null, "header": null, "max_hosts": null, "allow_header_fallback": null},
            "least_request": null, "hash_on": null, "health_check": {"path": null, "host": null},
            "sticky": {"domain": null, "same_site": null}, "status": {"path": null, "allow_cidrs": null},
            "panic_threshold_percent": null, "slow_start_ms": null,
            "backends": [{"id": "b", "address": "10.0.0.1:1", "weight": null, "backup": null, "drain": null}]}))),
        ("hash_on with one source and nulls", with(&m, json!({"algorithm": "maglev",
            "hash_on": {"source_ip": null, "header": "x-u", "cookie": null}}))),
        ("everything at once", with(&m, json!({"algorithm": "least_request",
            "least_request": {"choice_count": 3}, "target": {"max_hosts": 2},
            "health_check": {"interval_ms": 5000}, "outlier_detection": {"consecutive_errors": 3},
            "slow_start_ms": 30000, "sticky": {"secrets": [secret('k')]}, "panic_threshold_percent": 75,
            "status": {"path": "/lb", "allow_cidrs": ["10.0.0.0/8"]}}))),
    ];
    for (name, config) in &cases {
        assert_both_accept(name, config);
    }
}

/// The schema's objects that the filter reads; `place(block, member, value)` is a config
/// where that member of that block is `value` and counts.
const BLOCKS: &[&str] = &[
    "$",
    "$.backends[0]",
    "$.target",
    "$.least_request",
    "$.least_time",
    "$.maglev",
    "$.ring_hash",
    "$.health_check",
    "$.outlier_detection",
    "$.sticky",
    "$.status",
];

fn block_schema(block: &str) -> &'static Value {
    match block {
        "$" => &SCHEMA,
        "$.backends[0]" => &SCHEMA["$defs"]["backend"],
        _ => &SCHEMA["properties"][&block[2..]],
    }
}

fn place(block: &str, member: &str, value: Value) -> Value {
    match block {
        // balance_factor counts only with a hashing algorithm.
        "$" => with(&minimal(), json!({"algorithm": "source_ip_hash", member: value})),
        "$.backends[0]" => {
            let mut config = minimal();
            config["backends"][0][member] = value;
            config
        }
        _ => {
            let name = &block[2..];
            // The algorithm that reads the block, and other members that let this one reach
            // its own bounds.
            let (top, mut inner) = match name {
                "least_request" => (json!({"algorithm": "least_request"}), json!({})),
                "least_time" => (json!({"algorithm": "least_time"}), json!({})),
                "maglev" => (json!({"algorithm": "source_ip_hash"}), json!({})),
                "ring_hash" => (
                    json!({"algorithm": "ring_hash", "hash_on": {"source_ip": true}}),
                    json!({"min_ring_size": 1, "max_ring_size": 8_388_608}),
                ),
                "health_check" => (json!({}), json!({"interval_ms": 3_600_000, "timeout_ms": 1})),
                "outlier_detection" => {
                    (json!({}), json!({"base_ejection_ms": 1, "max_ejection_ms": 3_600_000}))
                }
                "target" if matches!(member, "allow_header_fallback" | "probe_cluster") => {
                    (json!({}), json!({"mode": "original_dst"}))
                }
                _ => (json!({}), json!({})),
            };
            inner[member] = value;
            let mut config = with(&minimal(), top);
            config[name] = inner;
            config
        }
    }
}

/// Every bounded number: both bounds accepted by both, one step past them refused by both.
#[test]
fn every_numeric_bound_agrees_with_the_filter() {
    // Reachable only with other members, in ways the schema cannot relate: a prime table
    // size, a timeout below the interval, a jitter of at most half the interval.
    let unreachable = [
        ("$.maglev", "table_size", 1.0),
        ("$.health_check", "timeout_ms", 3_600_000.0),
        ("$.health_check", "jitter_ms", 3_600_000.0),
    ];
    let mut checked = 0;
    for block in BLOCKS {
        for (member, s) in block_schema(block)["properties"].as_object().unwrap() {
            let (Some(min), Some(max)) = (s["minimum"].as_f64(), s["maximum"].as_f64()) else {
                continue;
            };
            let integer = s["type"].as_array().unwrap().contains(&json!("integer"));
            let step = if integer { 1.0 } else { 0.5 };
            let number = |x: f64| if integer { json!(x as i64) } else { json!(x) };
            for (x, ok) in [(min, true), (max, true), (min - step, false), (max + step, false)] {
                if unreachable.contains(&(*block, member.as_str(), x)) {
                    continue;
                }
                let name = format!("{block}.{member} = {x}");
                let config = place(block, member, number(x));
                if ok {
                    assert_both_accept(&name, &config);
                } else {
                    assert_both_refuse(&name, &config);
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 23, "only {checked} bounded numbers");
}

/// Every default the schema states is the filter's: writing it out changes nothing.
#[test]
fn every_schema_default_is_the_filters() {
    let mut checked = 0;
    for block in BLOCKS {
        for (member, s) in block_schema(block)["properties"].as_object().unwrap() {
            let Some(default) = s.get("default") else { continue };
            assert_same_config(
                &format!("{block}.{member} = {default}"),
                &place(block, member, Value::Null),
                &place(block, member, default.clone()),
            );
            checked += 1;
        }
    }
    // target.header's default by mode, stated in the schema's per-mode branches.
    for branch in SCHEMA["properties"]["target"]["allOf"].as_array().unwrap() {
        let Some(default) = branch["then"]["properties"]["header"].get("default") else {
            continue;
        };
        let mode = &branch["if"]["properties"]["mode"]["const"];
        let base = if mode == "cluster_header" { cluster_header() } else { minimal() };
        assert_same_config(
            &format!("target.header with mode {mode} = {default}"),
            &with(&base, json!({"target": {"mode": mode}})),
            &with(&base, json!({"target": {"mode": mode, "header": default}})),
        );
        checked += 1;
    }
    assert!(checked >= 35, "only {checked} defaults");
}

/// Both accepted and validated alike (the digest of the text aside).
fn assert_same_config(name: &str, a: &Value, b: &Value) {
    let shown = |config: &Value| match Config::from_json(config.to_string().as_bytes()) {
        Ok(c) => {
            let debug = format!("{c:?}");
            debug.split(", digest: ").next().unwrap().to_string()
        }
        Err(e) => panic!("{name}: {config} refused: {e}"),
    };
    assert_eq!(shown(a), shown(b), "{name}: not the default");
}

/// Strings at the edges of the schema's patterns: the schema and the filter agree either way.
#[test]
fn schema_patterns_agree_with_the_filter() {
    let addresses = [
        "1.2.3.4:80",
        "255.255.255.255:65535",
        "1.2.3.4:080",
        "01.2.3.4:80",
        "1.2.3:80",
        "1.2.3.4.5:80",
        "1.2.3.4:-1",
        " 1.2.3.4:80",
        "1.2.3.4:80 ",
        "1.2.3.4:80\n",
        "[::1]:80",
        "[::]:1",
        "[0:0::0]:1",
        "[::0.0.0.0]:1",
        "[1:2:3:4:5:6:7:8]:80",
        "[1:2:3:4:5:6:7:8:9]:80",
        "[1::2::3]:80",
        "[::ffff:1.2.3.4]:80",
        "[1:2:3:4:5:6:1.2.3.4]:80",
        "[1:2::1.2.3.4]:80",
        "[1:2:3:4:5::1.2.3.4]:80",
        "[1:2:3:4:5:6::1.2.3.4]:80",
        "[1::]:80",
        "[1:2:3:4:5:6:7::]:80",
        "[::2:3:4:5:6:7:8]:80",
        "[12345::]:80",
        "[fe80::1]:80",
        "[FE80::A]:80",
        "[::1]",
        "::1:80",
        "[::1]:65536",
        "[::1]:0",
        "localhost:80",
        "1.2.3.4:1e3",
        "1.2.3.4:٨٠",
    ];
    let ids = ["a", "A-z_0.9", "", "a/b", "ü", "a b"];
    let clusters =
        ["pool", "outbound|8080||backend.demo.svc.cluster.local", " x ", "\t", "a\u{85}b", "ü", ""];
    let headers = ["x-a", "X-A", "x:a", "x a", "!#$%&'*+-.^_`|~", "x\u{e9}", "a\"b", ""];
    let queries = ["q", "q=1", "a b", "a?b", "a#b", "ü", "a\u{7f}", "a%20b", ""];
    let hosts = ["h", "h:1", "a b", "a?b", "a@b", "a\u{a0}b", "ü.example", ""];
    let domains = ["example.com", "a", "a..b", "-a.b", "a.", ".", "", "ü.de"];
    let long_label = "x".repeat(64);
    let cidrs = [
        "10.0.0.0/8",
        "10.0.0.0",
        "10.0.0.0/",
        "10.0.0.0/+8",
        "10.0.0.0/008",
        "10.0.0.0/32",
        "10.0.0.0/33",
        "010.0.0.0/8",
        "::",
        "::/0",
        "::/128",
        "::/0128",
        "::/129",
        "[::1]/128",
        "fe80::1%1/64",
        "::ffff:1.2.3.4/120",
        "1.2.3.4/8/8",
        "/8",
        "",
        " 10.0.0.0/8",
    ];
    let paths = ["/", "/a b", "/a?b", "/a#b", "/ü", "/\u{85}", "//", "/a\u{7f}", "/a;b", "a"];
    let mut configs: Vec<Value> = Vec::new();
    let mut add = |extra: Value| configs.push(with(&minimal(), extra));
    for a in addresses {
        add(json!({"backends": [{"id": "b", "address": a}]}));
    }
    for id in ids {
        add(json!({"backends": [{"id": id, "address": "1.2.3.4:1"}]}));
    }
    for c in clusters {
        add(json!({"cluster": c}));
        add(json!({"target": {"mode": "cluster_header"}, "backends": [{"id": "b", "cluster": c}]}));
        add(json!({"target": {"mode": "original_dst", "probe_cluster": c}}));
    }
    for h in headers {
        add(json!({"target": {"header": h}}));
        add(json!({"algorithm": "maglev", "hash_on": {"header": h}}));
        add(json!({"algorithm": "maglev", "hash_on": {"cookie": h}}));
        add(json!({"sticky": {"cookie": h}}));
    }
    for q in queries {
        add(json!({"algorithm": "maglev", "hash_on": {"query": q}}));
    }
    for h in hosts {
        add(json!({"health_check": {"host": h}}));
    }
    for d in domains.into_iter().chain([long_label.as_str()]) {
        add(json!({"sticky": {"domain": d}}));
    }
    for c in cidrs {
        add(json!({"status": {"allow_cidrs": [c]}}));
    }
    for p in paths {
        add(json!({"health_check": {"path": p}}));
        add(json!({"sticky": {"path": p}}));
        add(json!({"status": {"path": p}}));
    }
    let mut disagreements = Vec::new();
    for config in &configs {
        let schema = schema_errors(config);
        let filter = filter_verdict(config);
        if schema.is_empty() != filter.is_ok() {
            let schema = if schema.is_empty() { "accepts".to_string() } else { schema.join("; ") };
            let filter = filter.map_or_else(|e| e, |_| "accepts".to_string());
            disagreements.push(format!("{config}\n  schema: {schema}\n  filter: {filter}"));
        }
    }
    assert!(disagreements.is_empty(), "schema and filter disagree:\n{}", disagreements.join("\n"));
}

// ---- (e) the check-config binary ----

fn check_config(args: &[&Path]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_check-config")).args(args).output().unwrap()
}

#[test]
fn check_config_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            with(&minimal(), json!({"algorithm": "least_request"})),
            "least_request, 2 backends, target mode override_host",
        ),
        (
            with(&cluster_header(), json!({"algorithm": "random"})),
            "random, 2 backends, target mode cluster_header",
        ),
    ];
    for (i, (config, summary)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("good{i}.json"));
        std::fs::write(&file, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        let out = check_config(&[&file]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout, format!("ok: {}: algorithm {summary}\n", file.display()));
        assert!(out.stderr.is_empty(), "{stderr}");
    }
}

#[test]
fn check_config_prints_the_filters_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let bad: &[&[u8]] = &[
        br#"{"cluster": "pool", "backends": [{"id": "b1", "address": "10.0.0.1:80", "weight": 0}]}"#,
        br#"{"cluster": "pool", "backends": [], "zz": 1}"#,
        b"{\"cluster\": \"pool\",\n \"backends\": [",
        b"not json",
        b"",
    ];
    for (i, bytes) in bad.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.json"));
        std::fs::write(&file, bytes).unwrap();
        let expected = Config::from_json(bytes).unwrap_err();
        let out = check_config(&[&file]);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(bytes));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr, format!("invalid plugin config: {expected}\n"));
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn check_config_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let m = missing.as_path();
    for args in [vec![], vec![m], vec![m, m], vec![dir.path()]] {
        let out = check_config(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
