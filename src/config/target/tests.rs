//! The three target modes: defaults per mode, mode-only fields refused elsewhere, backends
//! located by address or by cluster, and the probe cluster original_dst needs for checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::config::{Config, ConfigError, TargetMode};

fn parse(json: &str) -> Config {
    Config::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn refuse(json: &str) -> ConfigError {
    match Config::from_json(json.as_bytes()) {
        Ok(_) => panic!("expected {json} to be refused"),
        Err(e) => e,
    }
}

fn config(target: &str, backends: &str, extra: &str) -> String {
    format!(r#"{{"cluster":"pool","target":{target},"backends":{backends}{extra}}}"#)
}

const ADDRS: &str = r#"[{"id":"a","address":"10.0.0.1:80"},{"id":"b","address":"10.0.0.2:80"}]"#;
const CLUSTERS: &str = r#"[{"id":"a","cluster":"svc_a"},{"id":"b","cluster":"svc_b"}]"#;
const CHECK: &str = r#","health_check":{"path":"/healthz"}"#;

#[test]
fn each_mode_has_its_default_header_and_one_host_outside_override_host() {
    let c = parse(&config(r#"{"mode":"override_host"}"#, ADDRS, ""));
    assert_eq!(
        (c.target.mode, c.target.header.as_str(), c.target.max_hosts),
        (TargetMode::OverrideHost, "x-gateway-destination-endpoint", 3)
    );
    let c = parse(&config(r#"{"mode":"original_dst"}"#, ADDRS, ""));
    assert_eq!(
        (c.target.mode, c.target.header.as_str(), c.target.max_hosts),
        (TargetMode::OriginalDst, "x-envoy-original-dst-host", 1)
    );
    assert!(!c.target.allow_header_fallback);
    assert_eq!(c.target.probe_cluster, None);
    let c = parse(&config(r#"{"mode":"cluster_header"}"#, CLUSTERS, ""));
    assert_eq!(
        (c.target.mode, c.target.header.as_str(), c.target.max_hosts),
        (TargetMode::ClusterHeader, "x-lb-cluster", 1)
    );
    let hosts: Vec<_> = c.pool.iter().map(|b| (b.host.as_str(), b.address)).collect();
    assert_eq!(hosts, [("svc_a", None), ("svc_b", None)]);
}

#[test]
fn original_dst_takes_the_fallback_flag_and_a_probe_cluster() {
    let t = r#"{"mode":"original_dst","allow_header_fallback":true,"probe_cluster":"probe","header":"X-Dst"}"#;
    let c = parse(&config(t, ADDRS, CHECK));
    assert!(c.target.allow_header_fallback);
    assert_eq!(c.target.probe_cluster.as_deref(), Some("probe"));
    assert_eq!(c.target.header, "x-dst");
}

#[test]
fn original_dst_with_health_checks_needs_a_probe_cluster() {
    let e = refuse(&config(r#"{"mode":"original_dst"}"#, ADDRS, CHECK));
    assert_eq!(e.path, "$.target");
    assert!(e.message.contains("needs \"probe_cluster\"") && e.message.contains("valid:"), "{e}");
    let e = refuse(&config(r#"{"mode":"original_dst","probe_cluster":" "}"#, ADDRS, CHECK));
    assert_eq!(e.path, "$.target.probe_cluster");
    assert!(e.message.contains("is not a cluster name"), "{e}");
}

#[test]
fn fields_of_another_mode_are_refused_with_the_mode_that_takes_them() {
    let cases = [
        (r#"{"mode":"original_dst","max_hosts":2}"#, "$.target.max_hosts", "override_host"),
        (r#"{"mode":"cluster_header","max_hosts":1}"#, "$.target.max_hosts", "override_host"),
        (r#"{"allow_header_fallback":false}"#, "$.target.allow_header_fallback", "original_dst"),
        (r#"{"probe_cluster":"p"}"#, "$.target.probe_cluster", "original_dst"),
        (
            r#"{"mode":"cluster_header","probe_cluster":"p"}"#,
            "$.target.probe_cluster",
            "original_dst",
        ),
    ];
    for (target, path, mode) in cases {
        let backends = if target.contains("cluster_header") { CLUSTERS } else { ADDRS };
        let e = refuse(&config(target, backends, ""));
        assert_eq!(e.path, path, "{target}: {e}");
        assert!(e.message.contains(&format!("valid: only with \"mode\": \"{mode}\"")), "{e}");
    }
    let e = refuse(&config(r#"{"mode":"sideways"}"#, ADDRS, ""));
    assert_eq!(e.path, "$.target.mode");
    assert!(e.message.contains("`override_host`, `original_dst`, `cluster_header`"), "{e}");
}

#[test]
fn backends_are_located_by_cluster_only_in_cluster_header_mode() {
    let cluster_mode = r#"{"mode":"cluster_header"}"#;
    let e = refuse(&config(cluster_mode, ADDRS, ""));
    assert_eq!(e.path, "$.backends[0].address");
    assert!(e.message.contains("each backend names its Envoy cluster"), "{e}");
    let e = refuse(&config(cluster_mode, r#"[{"id":"a"}]"#, ""));
    assert_eq!(e.path, "$.backends[0]");
    assert!(e.message.contains("missing field `cluster`"), "{e}");
    let dup = r#"[{"id":"a","cluster":"s"},{"id":"b","cluster":"s"}]"#;
    let e = refuse(&config(cluster_mode, dup, ""));
    assert_eq!(e.path, "$.backends[1].cluster");
    assert!(e.message.contains("duplicate cluster") && e.message.contains("$.backends[0]"), "{e}");
    let bad = "[{\"id\":\"a\",\"cluster\":\"a\\u0000b\"}]";
    assert_eq!(refuse(&config(cluster_mode, bad, "")).path, "$.backends[0].cluster");

    let e = refuse(&config("{}", CLUSTERS, ""));
    assert_eq!(e.path, "$.backends[0].cluster");
    assert!(e.message.contains("is for target.mode \"cluster_header\""), "{e}");
    let e = refuse(&config("{}", r#"[{"id":"a"}]"#, ""));
    assert_eq!(e.path, "$.backends[0]");
    assert!(e.message.contains("missing field `address`"), "{e}");
}

#[test]
fn mode_names_are_the_accepted_spellings() {
    let modes = [TargetMode::OverrideHost, TargetMode::OriginalDst, TargetMode::ClusterHeader];
    assert_eq!(modes.map(TargetMode::name), ["override_host", "original_dst", "cluster_header"]);
    for mode in modes {
        let json =
            format!(r#"{{"cluster":"c","target":{{"mode":"{}"}},"backends":[]}}"#, mode.name());
        // Empty backends are refused after the target was read: the name was accepted.
        let e = crate::config::Config::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(e.path, "$.backends", "{e}");
    }
}
