//! The admin parsers on answers captured from real Envoy 1.36.4 and 1.40.0 (`../testdata/`),
//! the paths they answer, hand-made edge cases (order, encodings, skips, bounds, errors), and
//! properties: no input panics or yields more than `MAX_BACKENDS`, repeated or zero-weight
//! endpoints.
#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;
use EnvoyHealth::*;

const ISTIO: &str = "outbound|8080||backend.demo.svc.cluster.local";

/// The answers of both Envoy versions captured as `testdata/<name>_<version>.json`.
macro_rules! captured {
    ($name:literal) => {
        [
            include_str!(concat!("../testdata/", $name, "_1.40.0.json")),
            include_str!(concat!("../testdata/", $name, "_1.36.4.json")),
        ]
    };
}

const EDS: [&str; 2] = captured!("eds");
const EDS_ISTIO: [&str; 2] = captured!("eds_istio");
const EDS_HC: [&str; 2] = captured!("eds_hc");
const EDS_STATIC: [&str; 2] = captured!("eds_static");
const EDS_NOMATCH: [&str; 2] = captured!("eds_nomatch");
const CLUSTERS: [&str; 2] = captured!("clusters");
/// `filter=^backend$`: 1.40.0 lists only `backend`, 1.36.4 ignores the filter.
const CLUSTERS_FILTERED: [&str; 2] = captured!("clusters_filtered");

fn ep(address: &str, weight: u32, priority: u32, health: EnvoyHealth) -> Endpoint {
    Endpoint { address: address.parse().unwrap(), weight, priority, health }
}

fn eds(body: &str, cluster: &str) -> Result<Vec<Endpoint>, AdminError> {
    parse_eds(body.as_bytes(), cluster)
}

fn clusters(body: &str, cluster: &str) -> Result<Vec<Endpoint>, AdminError> {
    parse_clusters(body.as_bytes(), cluster)
}

// ---- real answers ----

#[test]
fn eds_view_of_an_eds_cluster_from_cds() {
    // EDS gave: .11 HEALTHY w3, .12 DRAINING, .13 UNHEALTHY w2, .14 DEGRADED, .15 (none),
    // [::1] w6 (none); priority 1: .21 HEALTHY w5, .22 TIMEOUT, a pipe. Envoy shows its coarse
    // health: DRAINING and TIMEOUT as UNHEALTHY, none as HEALTHY; the pipe is skipped.
    let want = vec![
        ep("127.0.0.11:8001", 3, 0, Healthy),
        ep("127.0.0.12:8002", 1, 0, Unhealthy),
        ep("127.0.0.13:8003", 2, 0, Unhealthy),
        ep("127.0.0.14:8004", 1, 0, Degraded),
        ep("127.0.0.15:8005", 1, 0, Healthy),
        ep("[::1]:8006", 6, 0, Healthy),
        ep("127.0.0.21:9001", 5, 1, Healthy),
        ep("127.0.0.22:9002", 1, 1, Unhealthy),
    ];
    for body in EDS {
        assert_eq!(eds(body, "backend").unwrap(), want);
    }
}

#[test]
fn eds_view_of_an_istio_named_cluster() {
    for body in EDS_ISTIO {
        assert_eq!(
            eds(body, ISTIO).unwrap(),
            vec![ep("127.0.0.31:8080", 1, 0, Healthy), ep("127.0.0.32:8080", 4, 0, Healthy)]
        );
        assert_eq!(eds(body, "backend"), Err(AdminError::UnknownCluster));
    }
}

#[test]
fn eds_view_shows_active_health_checks_coarsely() {
    // .61 removed by EDS but kept (pending_dynamic_removal), .62 x-envoy-degraded, .63
    // x-envoy-immediate-health-check-fail, .64 check timed out, .65 passes.
    for body in EDS_HC {
        assert_eq!(
            eds(body, "hc").unwrap(),
            vec![
                ep("127.0.0.61:7100", 1, 0, Healthy),
                ep("127.0.0.62:7100", 1, 0, Degraded),
                ep("127.0.0.63:7100", 1, 0, Unhealthy),
                ep("127.0.0.64:7100", 1, 0, Unhealthy),
                ep("127.0.0.65:7100", 1, 0, Healthy),
            ]
        );
    }
}

#[test]
fn eds_view_of_a_bootstrap_eds_cluster_is_static() {
    assert!(
        eds_path("static_eds", EdsResource::Static).contains("resource=static_endpoint_configs")
    );
    for body in EDS_STATIC {
        // EDS said DRAINING.
        assert_eq!(eds(body, "static_eds").unwrap(), vec![ep("127.0.0.51:7003", 1, 0, Unhealthy)]);
    }
}

#[test]
fn a_regex_that_matches_nothing_is_an_unknown_cluster() {
    for body in EDS_NOMATCH {
        assert_eq!(body.trim(), "{}");
        assert_eq!(eds(body, "nomatch"), Err(AdminError::UnknownCluster));
    }
    for body in EDS {
        assert_eq!(eds(body, "backen"), Err(AdminError::UnknownCluster));
        assert_eq!(eds(body, "BACKEND"), Err(AdminError::UnknownCluster));
    }
}

#[test]
fn clusters_view_keeps_drains_and_flags() {
    let backend = vec![
        ep("127.0.0.11:8001", 3, 0, Healthy),
        ep("127.0.0.12:8002", 1, 0, Draining),
        ep("127.0.0.13:8003", 2, 0, Unhealthy),
        ep("127.0.0.14:8004", 1, 0, Degraded),
        ep("127.0.0.15:8005", 1, 0, Healthy),
        ep("[::1]:8006", 6, 0, Healthy),
        ep("127.0.0.21:9001", 5, 1, Healthy),
        // EDS TIMEOUT: printed as eds_health_status UNHEALTHY.
        ep("127.0.0.22:9002", 1, 1, Unhealthy),
    ];
    let hc = vec![
        ep("127.0.0.61:7100", 1, 0, Draining),
        ep("127.0.0.62:7100", 1, 0, Degraded),
        ep("127.0.0.63:7100", 1, 0, Unhealthy),
        ep("127.0.0.64:7100", 1, 0, Timeout),
        ep("127.0.0.65:7100", 1, 0, Healthy),
    ];
    for body in CLUSTERS {
        assert_eq!(clusters(body, "backend").unwrap(), backend);
        assert_eq!(clusters(body, "hc").unwrap(), hc);
        assert_eq!(
            clusters(body, ISTIO).unwrap(),
            vec![ep("127.0.0.31:8080", 1, 0, Healthy), ep("127.0.0.32:8080", 4, 0, Healthy)]
        );
        assert_eq!(clusters(body, "dns").unwrap(), vec![ep("127.0.0.1:7001", 1, 0, Healthy)]);
        assert_eq!(
            clusters(body, "static").unwrap(),
            vec![ep("127.0.0.41:7002", 7, 0, Unhealthy), ep("127.0.0.42:7002", 1, 0, Unhealthy)]
        );
        assert_eq!(
            clusters(body, "static_eds").unwrap(),
            vec![ep("127.0.0.51:7003", 1, 0, Draining)]
        );
        assert_eq!(clusters(body, "backen"), Err(AdminError::UnknownCluster));
    }
    for body in CLUSTERS_FILTERED {
        assert_eq!(clusters(body, "backend").unwrap(), backend);
    }
    assert_eq!(clusters(CLUSTERS_FILTERED[0], "hc"), Err(AdminError::UnknownCluster));
    assert_eq!(clusters(CLUSTERS_FILTERED[1], "hc").unwrap(), hc);
}

#[test]
fn both_views_agree_on_addresses_weights_and_priorities() {
    for (view, all) in [(EDS[0], CLUSTERS[0]), (EDS[1], CLUSTERS[1])] {
        let key = |e: &Endpoint| (e.address, e.weight, e.priority);
        let a: Vec<_> = eds(view, "backend").unwrap().iter().map(key).collect();
        let b: Vec<_> = clusters(all, "backend").unwrap().iter().map(key).collect();
        assert_eq!(a, b);
    }
}

// ---- paths ----

#[test]
fn eds_path_escapes_the_istio_name_as_curl_asked_for_it() {
    // The very path the fixtures were captured with.
    assert_eq!(
        eds_path(ISTIO, EdsResource::Dynamic),
        "/config_dump?include_eds&resource=dynamic_endpoint_configs&name_regex=\
         outbound%5C%7C8080%5C%7C%5C%7Cbackend%5C.demo%5C.svc%5C.cluster%5C.local"
    );
    assert_eq!(
        eds_path("backend", EdsResource::Static),
        "/config_dump?include_eds&resource=static_endpoint_configs&name_regex=backend"
    );
    assert_eq!(clusters_path("backend"), "/clusters?format=json&filter=%5Ebackend%24");
    assert!(clusters_path(ISTIO).starts_with(CLUSTERS_PATH));
}

/// The query value `path` carries for `key`, percent-decoded.
fn query_value(path: &str, key: &str) -> String {
    let raw = path.split(['?', '&']).find_map(|kv| kv.strip_prefix(&format!("{key}="))).unwrap();
    let bytes = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&raw[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Whether the RE2 `regex` matches all of `name`, checked with the regex crate: the two read
/// escaped punctuation alike, except `\<` and `\>` (word boundaries for the regex crate,
/// literals for RE2: Envoy accepts `a\<b` and every other escape `re2_quote` makes, checked
/// with 1.40.0), which are unescaped first.
fn full_match(regex: &str, name: &str) -> bool {
    let mut translated = String::new();
    let mut chars = regex.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next().unwrap() {
                c @ ('<' | '>') => translated.push(c),
                c => {
                    translated.push('\\');
                    translated.push(c);
                }
            },
            (c, false) => translated.push(c),
        }
    }
    regex::Regex::new(&format!("^(?:{translated})$")).unwrap().is_match(name)
}

#[test]
fn the_escaped_name_matches_itself_only() {
    let names = [
        ISTIO,
        "backend",
        "a.b",
        "outbound|8080|v1|reviews.default.svc.cluster.local",
        "weird ^$*+?()[]{}\\/#&=%~-_ name",
        "ünïcode-clüster",
    ];
    for name in names {
        let path = eds_path(name, EdsResource::Dynamic);
        assert!(path.is_ascii(), "{path}");
        let regex = query_value(&path, "name_regex");
        assert!(full_match(&regex, name), "{regex} vs {name}");
        for other in names.iter().filter(|&&o| o != name) {
            assert!(!full_match(&regex, other), "{regex} matches {other}");
        }
        // `.` is literal: a near miss does not match.
        assert!(!full_match(&regex, &name.replace('.', "x")) || !name.contains('.'));
        let filter = query_value(&clusters_path(name), "filter");
        assert!(regex::Regex::new(&filter).unwrap().is_match(name));
        assert!(!regex::Regex::new(&filter).unwrap().is_match(&format!("x{name}")));
    }
}

proptest! {
    #[test]
    fn any_name_round_trips_through_eds_path(name in "\\PC{0,40}") {
        let path = eds_path(&name, EdsResource::Dynamic);
        prop_assert!(path.is_ascii());
        prop_assert!(full_match(&query_value(&path, "name_regex"), &name));
    }
}

// ---- hand-made edge cases ----

#[test]
fn unknown_fields_string_numbers_enum_numbers_and_escapes_are_read() {
    let body = r#"{"future": {"x": [1, {"y": null}]}, "configs": [
        {"@type": "t", "version_info": "7", "endpoint_config": {
            "cluster_name": "b\u0061ckend", "policy": {"overprovisioning_factor": 140},
            "endpoints": [{"priority": "2", "lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "10.0.0.\u0031",
                    "port_value": "80", "protocol": "TCP"}}, "hostname": "h"},
                 "health_status": 3, "load_balancing_weight": "0", "metadata": {}},
                {"endpoint": {"address": {"socket_address": {"address": "10.0.0.2",
                    "port_value": 80}}}, "health_status": "SOMETHING_NEW"}
            ], "locality": {"zone": "z"}}]}}]}"#;
    assert_eq!(
        eds(body, "backend").unwrap(),
        vec![ep("10.0.0.1:80", 1, 2, Draining), ep("10.0.0.2:80", 1, 2, Unknown)]
    );
}

#[test]
fn key_order_does_not_matter() {
    // The name after the list, the priority before it.
    let cla = r#"{"configs": [{"endpoint_config": {"endpoints": [{"priority": 3, "lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 1}}}}]}],
        "cluster_name": "a"}}]}"#;
    assert_eq!(eds(cla, "a").unwrap(), vec![ep("10.0.0.1:1", 1, 3, Unknown)]);
    assert_eq!(eds(cla, "b"), Err(AdminError::UnknownCluster));
    let status = r#"{"cluster_statuses": [{"host_statuses": [{"address": {"socket_address":
        {"address": "10.0.0.1", "port_value": 1}}, "priority": 2, "weight": 9}], "name": "a"}]}"#;
    assert_eq!(clusters(status, "a").unwrap(), vec![ep("10.0.0.1:1", 9, 2, Unknown)]);
    assert_eq!(clusters(status, "b"), Err(AdminError::UnknownCluster));
}

#[test]
fn the_first_matching_cluster_and_the_first_of_repeated_addresses_are_kept() {
    let host = |a: &str, w: u32| {
        format!(
            r#"{{"address": {{"socket_address": {{"address": "{a}", "port_value": 80}}}}, "weight": {w}}}"#
        )
    };
    let body = format!(
        r#"{{"cluster_statuses": [{{"name": "x", "host_statuses": [{}]}},
            {{"name": "a", "host_statuses": [{}, {}, {}]}}, {{"name": "a", "host_statuses": [{}]}}]}}"#,
        host("10.0.0.9", 1),
        host("10.0.0.1", 2),
        host("10.0.0.2", 3),
        host("10.0.0.1", 4),
        host("10.0.0.3", 5),
    );
    assert_eq!(
        clusters(&body, "a").unwrap(),
        vec![ep("10.0.0.1:80", 2, 0, Unknown), ep("10.0.0.2:80", 3, 0, Unknown)]
    );
}

#[test]
fn unusable_addresses_are_skipped() {
    let lb = |address: &str| format!(r#"{{"endpoint": {{"address": {address}}}}}"#);
    let body = format!(
        r#"{{"configs": [{{"endpoint_config": {{"cluster_name": "a", "endpoints": [{{"lb_endpoints": [{}]}}]}}}}]}}"#,
        [
            lb(r#"{"pipe": {"path": "/tmp/s"}}"#),
            lb(r#"{"envoy_internal_address": {"server_listener_name": "l"}}"#),
            lb(r#"{"socket_address": {"address": "localhost", "port_value": 80}}"#),
            lb(r#"{"socket_address": {"address": "10.0.0.1"}}"#),
            lb(r#"{"socket_address": {"address": "10.0.0.1", "port_value": 70000}}"#),
            lb(r#"{"socket_address": {"address": "fe80::1%eth0", "port_value": 80}}"#),
            lb(r#"{"socket_address": {"port_value": 80}}"#),
            lb(r#"{}"#),
            r#"{"health_status": "HEALTHY"}"#.to_owned(),
            lb(r#"{"socket_address": {"address": "2001:db8::1", "port_value": 443}}"#),
        ]
        .join(",")
    );
    assert_eq!(eds(&body, "a").unwrap(), vec![ep("[2001:db8::1]:443", 1, 0, Unknown)]);
}

#[test]
fn an_empty_cluster_is_known() {
    assert_eq!(
        eds(r#"{"configs": [{"endpoint_config": {"cluster_name": "a"}}]}"#, "a"),
        Ok(vec![])
    );
    assert_eq!(clusters(r#"{"cluster_statuses": [{"name": "a"}]}"#, "a"), Ok(vec![]));
    assert_eq!(
        clusters(r#"{"cluster_statuses": [{"name": "b"}]}"#, "a"),
        Err(AdminError::UnknownCluster)
    );
    assert_eq!(clusters("{}", "a"), Err(AdminError::UnknownCluster));
}

/// The health `/clusters` reports for one host's `health_status` object.
fn host_health(health_status: &str) -> EnvoyHealth {
    let body = format!(
        r#"{{"cluster_statuses": [{{"name": "a", "host_statuses": [{{"address": {{"socket_address":
            {{"address": "10.0.0.1", "port_value": 80}}}}, "health_status": {health_status}}}]}}]}}"#
    );
    clusters(&body, "a").unwrap()[0].health
}

#[test]
fn clusters_health_follows_envoys_precedence() {
    let cases = [
        (r#"{"eds_health_status": "HEALTHY"}"#, Healthy),
        (r#"{}"#, Unknown),
        (r#"{"eds_health_status": "UNKNOWN"}"#, Unknown),
        (r#"{"eds_health_status": "UNHEALTHY"}"#, Unhealthy),
        (r#"{"eds_health_status": "TIMEOUT"}"#, Timeout),
        (r#"{"eds_health_status": "DRAINING"}"#, Draining),
        (r#"{"eds_health_status": "DEGRADED"}"#, Degraded),
        (r#"{"eds_health_status": 5}"#, Degraded),
        (r#"{"failed_active_health_check": true, "eds_health_status": "HEALTHY"}"#, Unhealthy),
        (r#"{"failed_outlier_check": true, "eds_health_status": "HEALTHY"}"#, Unhealthy),
        (r#"{"excluded_via_immediate_hc_fail": true}"#, Unhealthy),
        (r#"{"pending_active_hc": true, "failed_active_health_check": true}"#, Unhealthy),
        (r#"{"active_hc_timeout": true, "failed_active_health_check": true}"#, Timeout),
        (r#"{"pending_dynamic_removal": true, "eds_health_status": "HEALTHY"}"#, Draining),
        (r#"{"failed_active_degraded_check": true, "eds_health_status": "HEALTHY"}"#, Degraded),
        (r#"{"failed_degraded_outlier_detection": true}"#, Degraded),
        // Most severe wins.
        (r#"{"failed_active_health_check": true, "eds_health_status": "DRAINING"}"#, Unhealthy),
        (r#"{"pending_dynamic_removal": true, "eds_health_status": "UNHEALTHY"}"#, Unhealthy),
        (r#"{"failed_active_degraded_check": true, "eds_health_status": "DRAINING"}"#, Draining),
        (r#"{"failed_active_degraded_check": true, "pending_dynamic_removal": true}"#, Draining),
        (r#"{"failed_active_health_check": false, "eds_health_status": "HEALTHY"}"#, Healthy),
    ];
    for (status, want) in cases {
        assert_eq!(host_health(status), want, "{status}");
    }
}

// ---- bounds ----

fn many_hosts(cluster: &str, n: usize, distinct: usize) -> String {
    let hosts: Vec<String> = (0..n)
        .map(|i| {
            let i = i % distinct;
            format!(
                r#"{{"address":{{"socket_address":{{"address":"10.{}.{}.{}","port_value":80}}}},"stats":[{{"name":"rq_active","value":"3"}}]}}"#,
                i >> 16,
                (i >> 8) & 0xFF,
                i & 0xFF
            )
        })
        .collect();
    format!(r#"{{"name":"{cluster}","host_statuses":[{}]}}"#, hosts.join(","))
}

/// [`many_hosts`] with the name after the list.
fn many_hosts_name_last(cluster: &str, n: usize) -> String {
    let first = many_hosts(cluster, n, n);
    let list = first.strip_prefix(&format!(r#"{{"name":"{cluster}","#)).unwrap();
    format!(r#"{{{},"name":"{cluster}"}}"#, list.strip_suffix('}').unwrap())
}

fn many_eds(cluster: &str, n: usize) -> String {
    let lbs: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"endpoint":{{"address":{{"socket_address":{{"address":"10.{}.{}.{}","port_value":80}}}}}}}}"#,
                i >> 16,
                (i >> 8) & 0xFF,
                i & 0xFF
            )
        })
        .collect();
    format!(
        r#"{{"configs":[{{"endpoint_config":{{"cluster_name":"{cluster}","endpoints":[{{"lb_endpoints":[{}]}}]}}}}]}}"#,
        lbs.join(",")
    )
}

#[test]
fn at_most_max_backends_endpoints() {
    let body =
        format!(r#"{{"cluster_statuses":[{}]}}"#, many_hosts("a", MAX_BACKENDS, MAX_BACKENDS));
    assert_eq!(clusters(&body, "a").unwrap().len(), MAX_BACKENDS);
    let body = format!(
        r#"{{"cluster_statuses":[{}]}}"#,
        many_hosts("a", MAX_BACKENDS + 1, MAX_BACKENDS + 1)
    );
    assert_eq!(clusters(&body, "a"), Err(AdminError::TooManyEndpoints(MAX_BACKENDS + 1)));
    assert_eq!(eds(&many_eds("a", MAX_BACKENDS), "a").unwrap().len(), MAX_BACKENDS);
    assert_eq!(
        eds(&many_eds("a", MAX_BACKENDS + 5), "a"),
        Err(AdminError::TooManyEndpoints(MAX_BACKENDS + 5))
    );
}

#[test]
fn repeats_do_not_count_against_the_bound() {
    let body = format!(r#"{{"cluster_statuses":[{}]}}"#, many_hosts("a", MAX_BACKENDS + 100, 10));
    assert_eq!(clusters(&body, "a").unwrap().len(), 10);
}

#[test]
fn another_clusters_long_list_is_no_error() {
    // Before and after the name, the other cluster's list is skipped or dropped.
    let big = many_hosts("big", MAX_BACKENDS + 1, MAX_BACKENDS + 1);
    let big_name_last = many_hosts_name_last("big", MAX_BACKENDS + 1);
    assert!(
        big_name_last.starts_with(r#"{"host_statuses":["#)
            && big_name_last.ends_with(r#""name":"big"}"#)
    );
    for other in [big, big_name_last] {
        let body = format!(r#"{{"cluster_statuses":[{other},{}]}}"#, many_hosts("a", 2, 2));
        assert_eq!(clusters(&body, "a").unwrap().len(), 2);
        assert_eq!(clusters(&body, "big"), Err(AdminError::TooManyEndpoints(MAX_BACKENDS + 1)));
    }
}

// ---- errors ----

#[test]
fn malformed_answers_are_errors_with_short_printable_reasons() {
    let hostile = format!(r#"{{"configs": "{}\u0007\n"}}"#, "x".repeat(10_000));
    let bodies = [
        "",
        "INVALID_ARGUMENT: Error while parsing name_regex from (: missing ): (",
        "[]",
        "null",
        r#"{"configs": [1]}"#,
        r#"{"configs": [{"endpoint_config": {"cluster_name": 5}}]}"#,
        "{} trailing",
        r#"{"configs": [{"endpoint_config": {"cluster_name": "a", "endpoints": [{"lb_endpoints": [{"load_balancing_weight": -1}]}]}}]}"#,
        r#"{"configs": [{"endpoint_config": {"cluster_name": "a", "endpoints": [{"lb_endpoints": [{"load_balancing_weight": 4294967296}]}]}}]}"#,
        &hostile,
    ];
    let eds_bodies = bodies.iter().map(|b| (b.as_bytes(), parse_eds as Parser));
    let clusters_bodies = [
        r#"{"cluster_statuses": {}}"#,
        r#"{"cluster_statuses": [{"name": "a", "host_statuses": [{"health_status": {"pending_active_hc": 1}}]}]}"#,
        r#"{"cluster_statuses": [{"name": "a", "host_statuses": [{"weight": 1.5}]}]}"#,
        "\u{feff}{}",
    ]
    .map(|b| (b.as_bytes(), parse_clusters as Parser));
    let invalid_utf8 = (&b"\xff\xfe"[..], parse_clusters as Parser);
    for (body, parse) in eds_bodies.chain(clusters_bodies).chain([invalid_utf8]) {
        let e = parse(body, "a").unwrap_err();
        let body = String::from_utf8_lossy(body);
        let reason = match &e {
            AdminError::Malformed(reason) => reason.as_str(),
            _ => "",
        };
        assert!(!reason.is_empty(), "{body}: {e:?}");
        assert!(reason.len() <= MAX_REASON, "{reason}");
        assert!(reason.bytes().all(|b| b.is_ascii_graphic() || b == b' '), "{reason:?}");
        assert!(reason.contains("line"), "{reason}");
        assert!(e.to_string().starts_with("malformed admin answer: "));
    }
}

type Parser = fn(&[u8], &str) -> Result<Vec<Endpoint>, AdminError>;

#[test]
fn errors_display() {
    assert_eq!(
        AdminError::UnknownCluster.to_string(),
        "the admin answer does not list the cluster"
    );
    assert_eq!(
        AdminError::TooManyEndpoints(10_001).to_string(),
        format!("the cluster lists 10001 endpoints; at most {MAX_BACKENDS} are followed")
    );
}

// ---- properties ----

/// What every successful parse must hold.
fn check(result: &Result<Vec<Endpoint>, AdminError>) -> Result<(), TestCaseError> {
    match result {
        Ok(endpoints) => {
            prop_assert!(endpoints.len() <= MAX_BACKENDS);
            prop_assert!(endpoints.iter().all(|e| e.weight >= 1 && e.address.port() != 0));
            let distinct: HashSet<_> = endpoints.iter().map(|e| e.address).collect();
            prop_assert_eq!(distinct.len(), endpoints.len());
        }
        Err(AdminError::Malformed(reason)) => prop_assert!(reason.len() <= MAX_REASON),
        Err(AdminError::TooManyEndpoints(n)) => prop_assert!(*n > MAX_BACKENDS),
        Err(AdminError::UnknownCluster) => {}
    }
    Ok(())
}

const NAMES: [&str; 5] = ["backend", "hc", ISTIO, "a", ""];

/// Small JSON values built from the words the parsers look for.
fn json_ish() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let keys = prop::sample::select(vec![
        "configs",
        "endpoint_config",
        "cluster_name",
        "endpoints",
        "lb_endpoints",
        "priority",
        "endpoint",
        "address",
        "socket_address",
        "port_value",
        "health_status",
        "load_balancing_weight",
        "cluster_statuses",
        "name",
        "host_statuses",
        "weight",
        "eds_health_status",
        "failed_active_health_check",
        "active_hc_timeout",
        "x",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![
            "a",
            "backend",
            "10.0.0.1",
            "::1",
            "80",
            "HEALTHY",
            "DRAINING",
            "DEGRADED",
            "",
            "4294967296",
        ])
        .prop_map(Value::from),
        (0u8..4, 1u16..4).prop_map(|(a, p)| Value::from(format!("10.0.0.{a}:{p}"))),
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        for name in NAMES {
            check(&parse_eds(&body, name))?;
            check(&parse_clusters(&body, name))?;
        }
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0usize..9,
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..8),
    ) {
        let fixtures = [
            EDS[0], EDS[1], EDS_ISTIO[0], EDS_HC[0], EDS_STATIC[0],
            CLUSTERS[0], CLUSTERS[1], CLUSTERS_FILTERED[0], CLUSTERS_FILTERED[1],
        ];
        let mut body = fixtures[which].as_bytes().to_vec();
        for (at, op, byte) in edits {
            let i = at.index(body.len() + 1);
            match op {
                0 if i < body.len() => body[i] = byte,
                1 => body.insert(i, byte),
                _ if i < body.len() => { body.remove(i); }
                _ => {}
            }
        }
        for name in NAMES {
            check(&parse_eds(&body, name))?;
            check(&parse_clusters(&body, name))?;
        }
    }

    #[test]
    fn json_ish_values_never_panic(value in json_ish()) {
        let body = serde_json::to_vec(&value).unwrap();
        for name in NAMES {
            check(&parse_eds(&body, name))?;
            check(&parse_clusters(&body, name))?;
        }
    }
}

/// One host of a generated answer: (address index, port index, weight, priority, health index,
/// numbers as strings).
type ModelHost = (usize, usize, Option<u32>, u32, usize, bool);

const MODEL_IPS: [&str; 6] =
    ["10.0.0.1", "10.0.0.2", "::1", "2001:db8::2", "10.0.0.3", "not-an-ip"];
const MODEL_PORTS: [Option<u32>; 4] = [Some(80), Some(8080), None, Some(70_000)];
const MODEL_HEALTH: [(&str, EnvoyHealth); 7] = [
    ("HEALTHY", Healthy),
    ("UNHEALTHY", Unhealthy),
    ("DRAINING", Draining),
    ("TIMEOUT", Timeout),
    ("DEGRADED", Degraded),
    ("UNKNOWN", Unknown),
    ("NEW_VALUE", Unknown),
];

/// What the parsers must return for `hosts`: usable addresses, first of each kept.
fn model(hosts: &[ModelHost]) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::new();
    for &(ip, port, weight, priority, health, _) in hosts {
        let (Ok(ip), Some(Ok(port))) =
            (MODEL_IPS[ip].parse::<IpAddr>(), MODEL_PORTS[port].map(u16::try_from))
        else {
            continue;
        };
        let address = SocketAddr::new(ip, port);
        if !out.iter().any(|e| e.address == address) {
            let weight = weight.unwrap_or(1).max(1);
            out.push(Endpoint { address, weight, priority, health: MODEL_HEALTH[health].1 });
        }
    }
    out
}

fn number(n: u32, as_string: bool) -> String {
    if as_string {
        format!("\"{n}\"")
    } else {
        n.to_string()
    }
}

/// `"key": n, ` for a proto3 field, omitted at zero.
fn field(key: &str, n: Option<u32>, as_string: bool) -> String {
    n.filter(|&n| n != 0)
        .map_or(String::new(), |n| format!(r#""{key}": {}, "#, number(n, as_string)))
}

fn model_address(ip: usize, port: usize, s: bool) -> String {
    format!(
        r#"{{"socket_address": {{{}"address": "{}"}}}}"#,
        field("port_value", MODEL_PORTS[port], s),
        MODEL_IPS[ip]
    )
}

proptest! {
    #[test]
    fn generated_answers_parse_to_the_model(
        hosts in prop::collection::vec(
            (0usize..6, 0usize..4, prop::option::of(0u32..5), 0u32..3, 0usize..7, any::<bool>()),
            0..12,
        ),
    ) {
        let statuses: Vec<String> = hosts
            .iter()
            .map(|&(ip, port, weight, priority, health, s)| {
                format!(
                    r#"{{{}{}"address": {}, "health_status": {{"eds_health_status": "{}"}}, "stats": []}}"#,
                    field("weight", weight, s),
                    field("priority", Some(priority), s),
                    model_address(ip, port, s),
                    MODEL_HEALTH[health].0
                )
            })
            .collect();
        let all = format!(
            r#"{{"cluster_statuses": [{{"name": "x", "host_statuses": [{}]}}, {{"name": "a", "host_statuses": [{}]}}]}}"#,
            statuses.join(", "),
            statuses.join(", ")
        );
        prop_assert_eq!(clusters(&all, "a").unwrap(), model(&hosts));

        // EDS: each host in a locality group of its own, priority after the list.
        let groups: Vec<String> = hosts
            .iter()
            .map(|&(ip, port, weight, priority, health, s)| {
                format!(
                    r#"{{"lb_endpoints": [{{"endpoint": {{"address": {}}}, {}"health_status": "{}"}}], {}"locality": {{}}}}"#,
                    model_address(ip, port, s),
                    field("load_balancing_weight", weight, s),
                    MODEL_HEALTH[health].0,
                    field("priority", Some(priority), s)
                )
            })
            .collect();
        let dump = format!(
            r#"{{"configs": [{{"endpoint_config": {{"cluster_name": "a", "endpoints": [{}]}}}}]}}"#,
            groups.join(", ")
        );
        prop_assert_eq!(eds(&dump, "a").unwrap(), model(&hosts));
    }
}
