//! (f) Every YAML under envoy/ passes `envoy --mode validate` (which also loads the filter and
//! runs its configuration), fails closed when the filter's VM fails, and routes nothing to the
//! original_dst probe cluster; no shipped or test config routes to the admin cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use serde_json::json;
use serde_yaml_ng::Value;
use support::*;

fn shipped_yaml() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("envoy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML under envoy/");
    files
}

/// Every value under `key` anywhere in `doc`, with whether it sits in a `route` mapping.
fn values_of<'a>(doc: &'a Value, key: &str, in_route: bool, out: &mut Vec<(&'a Value, bool)>) {
    match doc {
        Value::Mapping(m) => {
            for (k, v) in m {
                if k.as_str() == Some(key) {
                    out.push((v, in_route));
                }
                values_of(v, key, in_route || k.as_str() == Some("route"), out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|v| values_of(v, key, in_route, out)),
        _ => {}
    }
}

/// The promises of docs/routing.md and docs/security.md about the shipped configs: the filter
/// fails closed (FAIL_RELOAD: a failed VM is replaced, requests meanwhile are refused, never
/// passed unbalanced), and the probe cluster (which honours a client's
/// x-envoy-original-dst-host) has no route.
#[test]
fn every_envoy_yaml_fails_closed_and_routes_nothing_to_the_probe_cluster() {
    for file in shipped_yaml() {
        let doc: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let mut policies = Vec::new();
        values_of(&doc, "failure_policy", false, &mut policies);
        assert!(!policies.is_empty(), "{}: no failure_policy", file.display());
        for (p, _) in policies {
            assert_eq!(p.as_str(), Some("FAIL_RELOAD"), "{}", file.display());
        }
        let mut clusters = Vec::new();
        values_of(&doc, "cluster", false, &mut clusters);
        let routed: Vec<&str> =
            clusters.iter().filter(|(_, r)| *r).filter_map(|(v, _)| v.as_str()).collect();
        assert!(!routed.contains(&"pool_probe"), "{}: a route to pool_probe", file.display());
    }
}

#[test]
fn every_envoy_yaml_validates() {
    let envoy = envoy_bin();
    wasm_path();
    for file in shipped_yaml() {
        let out = Command::new(&envoy)
            .current_dir(repo_root())
            .args(["--mode", "validate", "--disable-hot-restart", "-c"])
            .arg(&file)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{} does not validate:\n{log}", file.display());
        assert!(log.contains("OK"), "{}: no OK in:\n{log}", file.display());
        assert!(
            log.contains("configured: cluster pool"),
            "{}: the filter was not configured during validation:\n{log}",
            file.display()
        );
    }
}

/// The admin clusters a config may have (the harness's `EnvoySetup::eds`, Istio's bootstrap):
/// their one endpoint is Envoy's admin listener, for the filter's own `dispatch_http_call`.
const ADMIN_CLUSTERS: [&str; 2] = [ADMIN_CLUSTER, ISTIO_ADMIN_CLUSTER];

/// Whether `m` is an admin cluster's own definition: a Cluster (static or CDS) or its
/// ClusterLoadAssignment, which name the cluster themselves.
fn defines_admin_cluster(m: &serde_yaml_ng::Mapping) -> bool {
    let named =
        |key: &str| m.get(key).and_then(Value::as_str).is_some_and(|n| ADMIN_CLUSTERS.contains(&n));
    let cluster = named("name")
        && ["type", "load_assignment", "eds_cluster_config", "connect_timeout"]
            .iter()
            .any(|k| m.contains_key(*k));
    cluster || (named("cluster_name") && m.contains_key("endpoints"))
}

/// Where `doc` names an admin cluster outside its definition and the filter's `admin_cluster`
/// setting (as a route's `cluster`, a `weighted_clusters` entry, a mirror policy, a tcp_proxy,
/// a gRPC service...): the paths. A plugin config held as a JSON string is one string, never
/// equal to a cluster name.
fn admin_cluster_mentions(doc: &Value, path: &str, out: &mut Vec<String>) {
    match doc {
        Value::Mapping(m) if defines_admin_cluster(m) => {}
        Value::Mapping(m) => {
            for (k, v) in m {
                let key = k.as_str().unwrap_or("?");
                // The filter's own setting (istio/wasmplugin.yaml's pluginConfig is YAML): the
                // cluster its admin API calls go through.
                if key == "admin_cluster" {
                    continue;
                }
                admin_cluster_mentions(v, &format!("{path}.{key}"), out);
            }
        }
        Value::Sequence(s) => {
            for (i, v) in s.iter().enumerate() {
                admin_cluster_mentions(v, &format!("{path}[{i}]"), out);
            }
        }
        Value::String(s) if ADMIN_CLUSTERS.contains(&s.as_str()) => {
            out.push(format!("{path}: {s}"))
        }
        _ => {}
    }
}

/// The YAML files docker-compose.yml mounts (`./envoy/compose.yaml:/srv/...`).
fn compose_mounted_yaml() -> Vec<std::path::PathBuf> {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    let compose: Value = serde_yaml_ng::from_str(&text).unwrap();
    let mut files = Vec::new();
    for service in compose["services"].as_mapping().unwrap().values() {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let host = volume.as_str().unwrap_or_default().split(':').next().unwrap();
            if host.ends_with(".yaml") || host.ends_with(".yml") {
                files.push(repo_root().join(host));
            }
        }
    }
    assert!(!files.is_empty(), "docker-compose.yml mounts no Envoy config");
    files
}

/// No config routes to the admin cluster: a route to it would put Envoy's admin API
/// (config_dump, /quitquitquit, /runtime_modify) behind the public listener. Walked: every
/// shipped YAML (envoy/, what docker-compose.yml mounts, the Istio resources) and every
/// bootstrap, LDS, CDS and EDS file the test harness renders with an admin cluster. Nothing
/// may name an admin cluster except its own definition. Not checkable here: a route's
/// `cluster_header` or `cluster_specifier_plugin` (the cluster comes from the request; the
/// shipped cluster_header.yaml's header is written by the filter, which names only its
/// backends), and the filter's own calls to the cluster (its intended use).
#[test]
fn no_config_routes_to_the_admin_cluster() {
    let mut docs: Vec<(String, Value)> = Vec::new();
    let mut files = shipped_yaml();
    files.extend(compose_mounted_yaml());
    files.extend(
        std::fs::read_dir(repo_root().join("istio"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))),
    );
    files.sort();
    files.dedup();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, de) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let doc = <Value as serde::Deserialize>::deserialize(de).unwrap();
            docs.push((format!("{}#{i}", file.display()), doc));
        }
    }
    let addr: std::net::SocketAddr = "127.0.0.1:8081".parse().unwrap();
    type Variant = fn(EnvoySetup) -> EnvoySetup;
    let setups: [(&str, Variant); 6] = [
        ("eds", |s| s.eds()),
        ("eds live", |s| s.eds().live()),
        ("eds istio", |s| s.eds_named(ISTIO_CLUSTER, ISTIO_ADMIN_CLUSTER)),
        ("eds istio live", |s| s.eds_named(ISTIO_CLUSTER, ISTIO_ADMIN_CLUSTER).live()),
        ("strict_dns", |s| s.strict_dns()),
        ("strict_dns live", |s| s.strict_dns().live()),
    ];
    for (what, make) in setups {
        let setup = make(EnvoySetup::new(plugin_config(&[("b1", addr, 1)], json!({})), vec![addr]));
        let rendered = rendered_documents(&setup);
        let bootstrap = &rendered[0].1;
        let defined = bootstrap["static_resources"]["clusters"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|c| ADMIN_CLUSTERS.contains(&c["name"].as_str().unwrap_or_default()))
            .count();
        assert_eq!(defined, 1, "harness {what}: no admin cluster, the check would be vacuous");
        docs.extend(
            rendered.into_iter().map(|(name, doc)| (format!("harness {what}: {name}"), doc)),
        );
    }
    for (name, doc) in &docs {
        let mut mentions = Vec::new();
        admin_cluster_mentions(doc, "", &mut mentions);
        assert!(mentions.is_empty(), "{name} names an admin cluster: {mentions:?}");
    }
}

/// The walk above finds an admin cluster wherever a route or another user names it.
#[test]
fn the_admin_cluster_check_sees_every_way_to_name_it() {
    let planted = [
        "{route: {cluster: envoy_admin}}",
        "{route: {weighted_clusters: {clusters: [{name: pool, weight: 1}, {name: prometheus_stats, weight: 1}]}}}",
        "{route: {cluster: pool, request_mirror_policies: [{cluster: envoy_admin}]}}",
        "{typed_config: {stat_prefix: t, cluster: prometheus_stats}}",
        "{grpc_service: {envoy_grpc: {cluster_name: envoy_admin}}}",
        "{pluginConfig: {discovery: {admin_cluster: prometheus_stats}}, route: {cluster: prometheus_stats}}",
    ];
    for text in planted {
        let doc: Value = serde_yaml_ng::from_str(text).unwrap();
        let mut mentions = Vec::new();
        admin_cluster_mentions(&doc, "", &mut mentions);
        assert_eq!(mentions.len(), 1, "{text}: {mentions:?}");
    }
    let definition: Value = serde_yaml_ng::from_str(
        "{clusters: [{name: envoy_admin, type: STATIC, load_assignment: {cluster_name: envoy_admin, \
         endpoints: []}}], resources: [{cluster_name: prometheus_stats, endpoints: []}], \
         pluginConfig: {discovery: {admin_cluster: envoy_admin}}}",
    )
    .unwrap();
    let mut mentions = Vec::new();
    admin_cluster_mentions(&definition, "", &mut mentions);
    assert!(mentions.is_empty(), "{mentions:?}");
}
