//! Deployment files: the Istio manifests in istio/ and docker-compose.yml with the Envoy config
//! it mounts (envoy/compose.yaml). Parsed and cross-checked (kinds, required fields, the same
//! cluster and steering header everywhere, live pools: the services the STRICT_DNS cluster
//! names exist, the admin cluster reaches the admin listener and no route reaches it, every
//! plugin config accepted by `Config::from_json`); the compose Envoy config and the Istio
//! cluster patch are loaded by the real Envoy (`--mode validate`, which also runs the filter's
//! configuration); the compose file is read by a real Compose client (`docker compose config`
//! or `docker-compose config`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use envoy_lb::config::{Config, Discovery, DiscoverySource};
use serde::Deserialize;
use serde_yaml_ng::Value;
use support::{envoy_bin, repo_root, wasm_path};

const STEERING_HEADER: &str = "x-gateway-destination-endpoint";
const OVERRIDE_HOST: &str = "envoy.load_balancing_policies.override_host";
const OVERRIDE_HOST_TYPE: &str =
    "type.googleapis.com/envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost";
const DEFAULT_ENVOY_IMAGE: &str = "envoyproxy/envoy:v1.40-latest";
/// The envoy binary's path in both envoyproxy/envoy and istio/proxyv2.
const ENVOY_ENTRYPOINT: &str = "/usr/local/bin/envoy";
const WASM_IN_REPO: &str = "./target/wasm32-wasip1/release/envoy_lb.wasm";
const COMPOSE_ENVOY_CONFIG: &str = "./envoy/compose.yaml";
/// Istio's bootstrap cluster whose only endpoint is the proxy's admin listener
/// (istio/istio tools/packaging/common/envoy_bootstrap.json: `{{ .localhost }}`, port
/// `ProxyAdminPort`, 15000 by default).
const ISTIO_ADMIN_CLUSTER: &str = "prometheus_stats";
const ISTIO_ADMIN_PORT: u64 = 15000;
/// The demo's weights (docs/deploy.md), given by the STRICT_DNS cluster per service.
const COMPOSE_WEIGHTS: &[(&str, u64)] = &[("b1", 1), ("b2", 2), ("b3", 3)];

// ---------------------------------------------------------------- YAML helpers

fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every document of a (multi-document) YAML file.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// The string at `v`, or a failure naming `what`.
fn text<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str().unwrap_or_else(|| panic!("{what}: expected a string, found {v:?}"))
}

fn seq<'a>(v: &'a Value, what: &str) -> &'a Vec<Value> {
    v.as_sequence().unwrap_or_else(|| panic!("{what}: expected a list, found {v:?}"))
}

/// Merges `patch` into `dst` as protobuf merge does (and so Istio's EnvoyFilter MERGE):
/// messages field by field, lists appended, scalars replaced.
fn proto_merge(dst: &mut Value, patch: &Value) {
    match (dst, patch) {
        (Value::Mapping(d), Value::Mapping(p)) => {
            for (k, v) in p {
                match d.get_mut(k) {
                    Some(existing) => proto_merge(existing, v),
                    None => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Sequence(d), Value::Sequence(p)) => d.extend(p.iter().cloned()),
        (d, p) => *d = p.clone(),
    }
}

/// Parses plugin config JSON with the filter's own validation; fails naming `what`.
fn plugin_config(json: &str, what: &str) -> Config {
    Config::from_json(json.as_bytes())
        .unwrap_or_else(|e| panic!("{what}: the filter refuses this plugin config: {e}\n{json}"))
}

/// The plugin config's `discovery` block: a live pool, with no backend given by address
/// (addresses come from Envoy; a fixed one goes stale when a container or pod is replaced).
fn live_pool<'a>(config: &'a Config, what: &str) -> &'a Discovery {
    let d = config.discovery.as_ref().unwrap_or_else(|| {
        panic!("{what}: no \"discovery\" block: the pool must follow Envoy's cluster")
    });
    assert!(
        config.overrides.is_empty() && config.pool.is_empty(),
        "{what}: backends listed by address ({:?}): the addresses are not fixed here",
        config.overrides.iter().map(|b| &b.id).collect::<Vec<_>>()
    );
    assert_eq!(d.cluster, config.cluster, "{what}: discovery follows the steered cluster");
    d
}

/// Every cluster named by a route anywhere under `v` (`route.cluster`, weighted clusters);
/// fails on `cluster_header` routes, which would let a client name any cluster.
fn route_targets(v: &Value, what: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                if k.as_str() == Some("route") && child.is_mapping() {
                    assert!(
                        child.get("cluster_header").is_none(),
                        "{what}: a cluster_header route could reach any cluster: {child:?}"
                    );
                    if let Some(c) = child["cluster"].as_str() {
                        out.insert(c.to_string());
                    }
                    for w in
                        child["weighted_clusters"]["clusters"].as_sequence().into_iter().flatten()
                    {
                        out.insert(text(&w["name"], what).to_string());
                    }
                }
                route_targets(child, what, out);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|i| route_targets(i, what, out)),
        _ => {}
    }
}

/// The cluster named `name` in `clusters`.
fn find_cluster<'a>(clusters: &'a [Value], name: &str, what: &str) -> &'a Value {
    clusters
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{what}: no cluster {name:?}"))
}

/// Every `lb_endpoints` entry of a cluster's `load_assignment` (all localities).
fn lb_endpoints<'a>(cluster: &'a Value, what: &str) -> Vec<&'a Value> {
    seq(&cluster["load_assignment"]["endpoints"], &format!("{what}: load_assignment.endpoints"))
        .iter()
        .flat_map(|l| seq(&l["lb_endpoints"], &format!("{what}: lb_endpoints")).iter())
        .collect()
}

/// Checks `admin_cluster` as a way to Envoy's admin listener `admin` (bootstrap `admin`
/// block): STATIC, one endpoint, the admin port, the admin address or (for a wildcard admin
/// address) loopback; and no route of `bootstrap` leads to it.
fn check_admin_cluster(bootstrap: &Value, admin_cluster: &str, what: &str) {
    let clusters = seq(&bootstrap["static_resources"]["clusters"], &format!("{what}: clusters"));
    let cluster = find_cluster(clusters, admin_cluster, what);
    let what = format!("{what}: admin cluster {admin_cluster}");
    assert_eq!(cluster["type"], "STATIC", "{what}: type");
    let endpoints = lb_endpoints(cluster, &what);
    assert_eq!(endpoints.len(), 1, "{what}: exactly one endpoint, the admin listener");
    let (host, port) = endpoint_socket(endpoints[0], &what);
    let admin = &bootstrap["admin"]["address"]["socket_address"];
    let admin_host: IpAddr = text(&admin["address"], &format!("{what}: admin address"))
        .parse()
        .unwrap_or_else(|e| panic!("{what}: admin address: {e}"));
    assert_eq!(Some(port), admin["port_value"].as_u64(), "{what}: port vs the admin port");
    let host: IpAddr = host.parse().unwrap_or_else(|e| panic!("{what}: {host:?}: {e}"));
    if admin_host.is_unspecified() {
        assert!(
            host.is_loopback(),
            "{what}: admin listens on {admin_host}: use loopback, not {host}"
        );
    } else {
        assert_eq!(host, admin_host, "{what}: endpoint vs admin address");
    }
    let mut targets = BTreeSet::new();
    route_targets(&bootstrap["static_resources"]["listeners"], &what, &mut targets);
    assert!(
        !targets.contains(admin_cluster),
        "{what}: a route leads to the admin API (POST /quitquitquit): {targets:?}"
    );
}

/// Runs `envoy --mode validate` on `bootstrap`; asserts success and that the filter was
/// configured for `cluster`.
fn envoy_validates(bootstrap: &Value, cluster: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("envoy.yaml");
    std::fs::write(&file, serde_yaml_ng::to_string(bootstrap).unwrap()).unwrap();
    let out = Command::new(envoy_bin())
        .current_dir(dir.path())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{what}: Envoy refuses it:\n{log}");
    assert!(log.contains("OK"), "{what}: no OK in:\n{log}");
    assert!(
        log.contains(&format!("configured: cluster {cluster},")),
        "{what}: the filter was not configured for cluster {cluster}:\n{log}"
    );
}

// ---------------------------------------------------------------- Istio

/// Allowed values of the WasmPlugin enums (istio/api extensions/v1alpha1/wasm.proto, 1.27).
const FAIL_STRATEGIES: &[&str] = &["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"];
const PHASES: &[&str] = &["UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"];
const PLUGIN_TYPES: &[&str] = &["UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK"];
const WASM_PLUGIN_FIELDS: &[&str] = &[
    "selector",
    "targetRef",
    "targetRefs",
    "url",
    "sha256",
    "imagePullPolicy",
    "imagePullSecret",
    "verificationKey",
    "pluginConfig",
    "pluginName",
    "phase",
    "priority",
    "failStrategy",
    "vmConfig",
    "match",
    "type",
];
/// EnvoyFilter patch contexts and operations (networking/v1alpha3/envoy_filter.proto).
const CONTEXTS: &[&str] = &["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"];
const OPERATIONS: &[&str] = &[
    "MERGE",
    "ADD",
    "REMOVE",
    "INSERT_BEFORE",
    "INSERT_AFTER",
    "INSERT_FIRST",
    "REPLACE",
    "MERGE_AND_REPLACE_LIST",
];

/// Every manifest under istio/, with the file it came from.
fn istio_manifests() -> Vec<(PathBuf, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("istio"))
        .expect("istio/ is missing")
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifest under istio/");
    files.into_iter().flat_map(|f| documents(&f).into_iter().map(move |d| (f.clone(), d))).collect()
}

/// What a checked WasmPlugin contributes to the cross-checks.
struct Plugin {
    namespace: String,
    labels: Value,
    config: Config,
    ports: Vec<u64>,
}

/// What a checked EnvoyFilter CLUSTER patch contributes to the cross-checks.
struct ClusterPatch {
    namespace: String,
    labels: Value,
    /// Istio's name of the patched cluster, `outbound|<port>||<service>`.
    cluster: String,
    port: u64,
    header: String,
}

fn check_wasm_plugin(what: &str, doc: &Value) -> Plugin {
    assert_eq!(doc["apiVersion"], "extensions.istio.io/v1alpha1", "{what}: apiVersion");
    let spec = doc["spec"].as_mapping().unwrap_or_else(|| panic!("{what}: no spec"));
    for key in spec.keys() {
        let key = text(key, what);
        assert!(WASM_PLUGIN_FIELDS.contains(&key), "{what}: unknown field spec.{key}");
    }
    let spec = &doc["spec"];
    let url = text(&spec["url"], &format!("{what}: spec.url"));
    assert!(url.starts_with("oci://") && url.len() > 6, "{what}: url {url:?} is not oci://...");
    assert_eq!(spec["pluginName"], "envoy_lb", "{what}: pluginName must be the root_id envoy_lb");
    let fail = text(&spec["failStrategy"], &format!("{what}: spec.failStrategy"));
    assert!(
        FAIL_STRATEGIES.contains(&fail),
        "{what}: failStrategy {fail} is not one of {FAIL_STRATEGIES:?}"
    );
    assert_ne!(
        fail, "FAIL_OPEN",
        "{what}: FAIL_OPEN would let the client's own steering header choose the backend"
    );
    let phase = text(&spec["phase"], &format!("{what}: spec.phase"));
    assert!(PHASES.contains(&phase), "{what}: phase {phase} is not one of {PHASES:?}");
    let ty = text(&spec["type"], &format!("{what}: spec.type"));
    assert!(PLUGIN_TYPES.contains(&ty), "{what}: type {ty} is not one of {PLUGIN_TYPES:?}");
    assert_eq!(ty, "HTTP", "{what}: envoy-lb is an HTTP filter");
    let selector = spec.get("selector").is_some();
    let target_refs = spec.get("targetRefs").is_some() || spec.get("targetRef").is_some();
    assert!(selector != target_refs, "{what}: exactly one of selector and targetRefs");
    let ports: Vec<u64> = spec
        .get("match")
        .map(|m| seq(m, what).iter())
        .into_iter()
        .flatten()
        .flat_map(|m| m["ports"].as_sequence().cloned().unwrap_or_default())
        .map(|p| p["number"].as_u64().unwrap_or_else(|| panic!("{what}: match port {p:?}")))
        .collect();
    let json =
        serde_json::to_string(&serde_json::to_value(&spec["pluginConfig"]).unwrap()).unwrap();
    assert!(spec["pluginConfig"].is_mapping(), "{what}: pluginConfig must be an object");
    let config = plugin_config(&json, &format!("{what}: pluginConfig"));
    Plugin {
        namespace: text(&doc["metadata"]["namespace"], what).to_string(),
        labels: spec["selector"]["matchLabels"].clone(),
        config,
        ports,
    }
}

fn check_envoy_filter(what: &str, doc: &Value) -> Vec<ClusterPatch> {
    assert_eq!(doc["apiVersion"], "networking.istio.io/v1alpha3", "{what}: apiVersion");
    let patches = seq(&doc["spec"]["configPatches"], &format!("{what}: spec.configPatches"));
    let mut out = Vec::new();
    for (i, p) in patches.iter().enumerate() {
        let what = format!("{what}: configPatches[{i}]");
        let context = p["match"]["context"].as_str().unwrap_or("ANY");
        assert!(CONTEXTS.contains(&context), "{what}: context {context}");
        let op = text(&p["patch"]["operation"], &what);
        assert!(OPERATIONS.contains(&op), "{what}: operation {op}");
        if p["applyTo"] != "CLUSTER" {
            continue;
        }
        assert!(
            matches!(context, "SIDECAR_OUTBOUND" | "GATEWAY"),
            "{what}: the filter steers outbound requests: context SIDECAR_OUTBOUND or GATEWAY"
        );
        let service =
            text(&p["match"]["cluster"]["service"], &format!("{what}: match.cluster.service"));
        let port = p["match"]["cluster"]["portNumber"]
            .as_u64()
            .unwrap_or_else(|| panic!("{what}: match.cluster.portNumber"));
        assert_eq!(op, "MERGE", "{what}: the patch merges into Istio's cluster");
        let value = &p["patch"]["value"];
        let policies = seq(
            &value["load_balancing_policy"]["policies"],
            &format!("{what}: load_balancing_policy"),
        );
        let ext = &policies[0]["typed_extension_config"];
        assert_eq!(ext["name"], OVERRIDE_HOST, "{what}: policy name");
        let typed = &ext["typed_config"];
        assert_eq!(typed["@type"], OVERRIDE_HOST_TYPE, "{what}: typed_config @type");
        let sources =
            seq(&typed["override_host_sources"], &format!("{what}: override_host_sources"));
        let header = sources
            .iter()
            .find_map(|s| s["header"].as_str())
            .unwrap_or_else(|| panic!("{what}: no header in override_host_sources"));
        let fallback =
            seq(&typed["fallback_policy"]["policies"], &format!("{what}: fallback_policy"));
        let name =
            text(&fallback[0]["typed_extension_config"]["name"], &format!("{what}: fallback"));
        assert!(name.starts_with("envoy.load_balancing_policies."), "{what}: fallback {name}");
        assert_ne!(name, OVERRIDE_HOST, "{what}: the fallback must be a balancing policy");
        out.push(ClusterPatch {
            namespace: text(&doc["metadata"]["namespace"], &what).to_string(),
            labels: doc["spec"]["workloadSelector"]["labels"].clone(),
            cluster: format!("outbound|{port}||{service}"),
            port,
            header: header.to_string(),
        });
    }
    out
}

#[test]
fn istio_manifests_are_complete_and_agree() {
    let mut plugins = Vec::new();
    let mut patches = Vec::new();
    for (file, doc) in istio_manifests() {
        let kind = text(&doc["kind"], &format!("{}: kind", file.display()));
        let what = format!(
            "{} ({kind} {})",
            file.display(),
            doc["metadata"]["name"].as_str().unwrap_or("?")
        );
        assert!(doc["metadata"]["name"].is_string(), "{what}: metadata.name");
        assert!(doc["metadata"]["namespace"].is_string(), "{what}: metadata.namespace");
        match kind {
            "WasmPlugin" => plugins.push((what.clone(), check_wasm_plugin(&what, &doc))),
            "EnvoyFilter" => patches.extend(check_envoy_filter(&what, &doc)),
            other => panic!("{what}: unexpected kind {other}"),
        }
    }
    assert!(!plugins.is_empty(), "istio/ has no WasmPlugin");
    assert!(!patches.is_empty(), "istio/ has no EnvoyFilter with a CLUSTER patch");
    for (what, plugin) in &plugins {
        // The EnvoyFilter that makes the same workloads honour this plugin's steering header.
        let patch = patches
            .iter()
            .find(|p| p.namespace == plugin.namespace && p.labels == plugin.labels)
            .unwrap_or_else(|| {
                panic!("{what}: no EnvoyFilter CLUSTER patch for the same namespace and workloads")
            });
        assert_eq!(plugin.config.cluster, patch.cluster, "{what}: pluginConfig.cluster");
        // A live pool: the EDS endpoints of the patched cluster, read through the admin
        // cluster of Istio's bootstrap.
        let discovery = live_pool(&plugin.config, what);
        assert_eq!(discovery.admin_cluster, ISTIO_ADMIN_CLUSTER, "{what}: discovery.admin_cluster");
        assert_eq!(discovery.source, DiscoverySource::Eds, "{what}: Istio's clusters are EDS");
        assert_eq!(plugin.config.target.header, patch.header, "{what}: steering header");
        assert!(
            plugin.ports.is_empty() || plugin.ports.contains(&patch.port),
            "{what}: match ports {:?} leave out the service port {}",
            plugin.ports,
            patch.port
        );
    }
}

/// The Istio CLUSTER patch merged into a cluster shaped like Istio's outbound one (a STATIC
/// stand-in for its EDS endpoints), behind the filter running the WasmPlugin's plugin config:
/// the real Envoy accepts the result and configures the filter.
#[test]
fn istio_cluster_patch_loads_in_envoy() {
    wasm_path();
    let manifests = istio_manifests();
    let mut checked = 0;
    for (file, doc) in manifests.iter().filter(|(_, d)| d["kind"] == "WasmPlugin") {
        let what = format!("{}", file.display());
        let plugin = check_wasm_plugin(&what, doc);
        let json =
            serde_json::to_string(&serde_json::to_value(&doc["spec"]["pluginConfig"]).unwrap())
                .unwrap();
        let filters: Vec<&Value> = manifests
            .iter()
            .map(|(_, d)| d)
            .filter(|d| {
                d["kind"] == "EnvoyFilter"
                    && d["metadata"]["namespace"].as_str() == Some(plugin.namespace.as_str())
                    && d["spec"]["workloadSelector"]["labels"] == plugin.labels
            })
            .collect();
        assert!(!filters.is_empty(), "{what}: no matching EnvoyFilter");
        let discovery = live_pool(&plugin.config, &what);
        // Stand-ins for the EDS endpoints Istio would send (documentation addresses).
        let endpoints: Vec<SocketAddr> =
            (1..=3).map(|i| SocketAddr::from(([192, 0, 2, i], 8080))).collect();
        let mut boot = compose_bootstrap(&wasm_path(), &json);
        // Istio's admin listener and the bootstrap cluster that reaches it.
        boot["admin"]["address"]["socket_address"]["address"] = "127.0.0.1".into();
        boot["admin"]["address"]["socket_address"]["port_value"] = ISTIO_ADMIN_PORT.into();
        let listener_hcm = &mut boot["static_resources"]["listeners"][0]["filter_chains"][0]
            ["filters"][0]["typed_config"];
        let vhost = &mut listener_hcm["route_config"]["virtual_hosts"][0];
        vhost["routes"][0]["route"]["cluster"] = plugin.config.cluster.clone().into();
        let mut cluster = istio_like_cluster(&plugin.config.cluster, &endpoints);
        for f in &filters {
            for p in seq(&f["spec"]["configPatches"], &what) {
                match p["applyTo"].as_str() {
                    Some("CLUSTER") => proto_merge(&mut cluster, &p["patch"]["value"]),
                    Some("VIRTUAL_HOST") => proto_merge(vhost, &p["patch"]["value"]),
                    other => panic!("{what}: no stand-in for applyTo {other:?}"),
                }
            }
        }
        let admin: Value = serde_yaml_ng::from_str(&format!(
            "{{name: {ISTIO_ADMIN_CLUSTER}, type: STATIC, connect_timeout: 0.250s, \
             lb_policy: ROUND_ROBIN, load_assignment: {{cluster_name: {ISTIO_ADMIN_CLUSTER}, \
             endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: \
             {{protocol: TCP, address: 127.0.0.1, port_value: {ISTIO_ADMIN_PORT}}}}}}}}}]}}]}}}}"
        ))
        .unwrap();
        boot["static_resources"]["clusters"] = Value::Sequence(vec![cluster, admin]);
        check_admin_cluster(&boot, &discovery.admin_cluster, &what);
        envoy_validates(&boot, &plugin.config.cluster, &what);
        checked += 1;
    }
    assert!(checked > 0, "no WasmPlugin under istio/");
}

/// An outbound cluster as Istio builds it by default (least request, empty common_lb_config).
fn istio_like_cluster(name: &str, endpoints: &[SocketAddr]) -> Value {
    let lb_endpoints: Vec<Value> = endpoints
        .iter()
        .map(|a| {
            serde_yaml_ng::from_str(&format!(
                "endpoint: {{address: {{socket_address: {{address: '{}', port_value: {}}}}}}}",
                a.ip(),
                a.port()
            ))
            .unwrap()
        })
        .collect();
    let mut c: Value = serde_yaml_ng::from_str(&format!(
        "{{name: '{name}', type: STATIC, connect_timeout: 10s, lb_policy: LEAST_REQUEST, \
         common_lb_config: {{}}, load_assignment: {{cluster_name: '{name}', endpoints: [{{}}]}}}}"
    ))
    .unwrap();
    c["load_assignment"]["endpoints"][0]["lb_endpoints"] = Value::Sequence(lb_endpoints);
    c
}

// ---------------------------------------------------------------- Docker Compose

/// envoy/compose.yaml with the filter's file replaced by `wasm` and its plugin config by
/// `plugin_config`.
fn compose_bootstrap(wasm: &Path, plugin_config: &str) -> Value {
    let mut doc: Value = serde_yaml_ng::from_str(&read("envoy/compose.yaml")).unwrap();
    let config = wasm_filter_config(&mut doc);
    config["vm_config"]["code"]["local"]["filename"] = wasm.to_string_lossy().into_owned().into();
    config["configuration"]["value"] = plugin_config.into();
    doc
}

/// The `config` block of the wasm HTTP filter of the first listener.
fn wasm_filter_config(doc: &mut Value) -> &mut Value {
    let hcm = &mut doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    let filters = hcm["http_filters"].as_sequence_mut().expect("no http_filters");
    let wasm = filters
        .iter_mut()
        .find(|f| f["name"] == "envoy.filters.http.wasm")
        .expect("envoy/compose.yaml has no envoy.filters.http.wasm filter");
    &mut wasm["typed_config"]["config"]
}

/// The address (IP or DNS name) and port of a cluster endpoint.
fn endpoint_socket(e: &Value, what: &str) -> (String, u64) {
    let sa = &e["endpoint"]["address"]["socket_address"];
    let port = sa["port_value"].as_u64().unwrap_or_else(|| panic!("{what}: endpoint port {e:?}"));
    (text(&sa["address"], &format!("{what}: endpoint address")).to_string(), port)
}

/// Whether any mapping under `v` has the key `key`.
fn has_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Mapping(m) => m.iter().any(|(k, c)| k.as_str() == Some(key) || has_key(c, key)),
        Value::Sequence(items) => items.iter().any(|i| has_key(i, key)),
        _ => false,
    }
}

/// The container port of a published port ("10000:10000", "127.0.0.1:9901:9901/tcp").
fn container_port(p: &Value) -> u64 {
    let s = match p {
        Value::Number(n) => return n.as_u64().unwrap(),
        other => text(other, "ports entry"),
    };
    let s = s.split('/').next().unwrap();
    s.rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("ports entry {s:?}"))
}

#[test]
fn compose_file_matches_its_envoy_config() {
    let compose: Value = serde_yaml_ng::from_str(&read("docker-compose.yml")).unwrap();
    let services = compose["services"].as_mapping().expect("docker-compose.yml: no services");
    let envoy = &compose["services"]["envoy"];
    assert!(envoy.is_mapping(), "docker-compose.yml: no service `envoy`");

    // Envoy: the image (overridable), an explicit entrypoint, the config and the filter mounted.
    assert_eq!(
        envoy["image"],
        format!("${{ENVOY_IMAGE:-{DEFAULT_ENVOY_IMAGE}}}").as_str(),
        "envoy.image: the default image, overridable with ENVOY_IMAGE"
    );
    let entrypoint = match &envoy["entrypoint"] {
        Value::String(s) => s.split_whitespace().next().unwrap_or_default().to_string(),
        Value::Sequence(v) => text(&v[0], "envoy.entrypoint[0]").to_string(),
        other => {
            panic!("envoy.entrypoint must be set (istio/proxyv2 starts pilot-agent): {other:?}")
        }
    };
    assert_eq!(entrypoint, ENVOY_ENTRYPOINT, "envoy.entrypoint");
    let command: Vec<&str> =
        seq(&envoy["command"], "envoy.command").iter().map(|a| text(a, "envoy.command")).collect();
    let config_path = command
        .iter()
        .position(|a| *a == "-c" || *a == "--config-path")
        .and_then(|i| command.get(i + 1))
        .expect("envoy.command has no -c <config>");
    let mounts: Vec<(String, String, String)> = seq(&envoy["volumes"], "envoy.volumes")
        .iter()
        .map(|v| {
            let parts: Vec<&str> = text(v, "envoy.volumes").split(':').collect();
            assert_eq!(parts.len(), 3, "volume {v:?}: expected source:target:mode");
            (parts[0].to_string(), parts[1].to_string(), parts[2].to_string())
        })
        .collect();
    let mount = |source: &str| {
        let m = mounts
            .iter()
            .find(|m| m.0 == source)
            .unwrap_or_else(|| panic!("envoy.volumes does not mount {source}"));
        assert_eq!(m.2, "ro", "{source} must be mounted read-only");
        m.1.clone()
    };
    assert_eq!(&mount(COMPOSE_ENVOY_CONFIG), config_path, "the mounted config is the one -c loads");
    let wasm_target = mount(WASM_IN_REPO);

    // The filter file the config names is the mounted one (relative to the working dir).
    let mut envoy_config: Value = serde_yaml_ng::from_str(&read("envoy/compose.yaml")).unwrap();
    let filter = wasm_filter_config(&mut envoy_config).clone();
    let filename = text(&filter["vm_config"]["code"]["local"]["filename"], "filter filename");
    let resolved = if filename.starts_with('/') {
        filename.to_string()
    } else {
        let dir = text(&envoy["working_dir"], "envoy.working_dir (the config's path is relative)");
        format!("{}/{filename}", dir.trim_end_matches('/'))
    };
    assert_eq!(
        resolved, wasm_target,
        "envoy/compose.yaml loads {resolved}, the filter is at {wasm_target}"
    );

    // Published ports: the listener, and the admin interface on the host's loopback only.
    let published: Vec<u64> =
        seq(&envoy["ports"], "envoy.ports").iter().map(container_port).collect();
    let listener_port = envoy_config["static_resources"]["listeners"][0]["address"]
        ["socket_address"]["port_value"]
        .as_u64()
        .unwrap();
    let admin_port =
        envoy_config["admin"]["address"]["socket_address"]["port_value"].as_u64().unwrap();
    assert_eq!(admin_port, 9901, "admin port");
    for port in [listener_port, admin_port] {
        assert!(published.contains(&port), "envoy.ports does not publish {port}: {published:?}");
    }
    for p in seq(&envoy["ports"], "envoy.ports") {
        if container_port(p) == admin_port {
            let spec = p.as_str().unwrap_or_default();
            assert!(
                spec.starts_with("127.0.0.1:"),
                "envoy.ports: the admin API must be published on 127.0.0.1 only: {p:?}"
            );
        }
    }

    // No fixed addresses: Compose assigns them, Envoy finds the backends by service name.
    for key in ["ipv4_address", "ipv6_address", "ipam"] {
        assert!(!has_key(&compose, key), "docker-compose.yml: fixed addresses ({key})");
    }

    // The backends: whoami services (name -> port) that Envoy waits for.
    let depends = seq(&envoy["depends_on"], "envoy.depends_on");
    let mut compose_backends = BTreeMap::new();
    for (name, svc) in services {
        let name = text(name, "service name");
        if name == "envoy" {
            continue;
        }
        let port = svc["command"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str()?.strip_prefix("--port="))
            .map(|p| p.parse::<u64>().unwrap())
            .next()
            .unwrap_or(80);
        assert!(
            text(&svc["image"], &format!("{name}: image")).starts_with("traefik/whoami"),
            "{name}: a traefik/whoami backend"
        );
        assert!(depends.iter().any(|d| d == name), "envoy.depends_on lacks {name}");
        compose_backends.insert(name.to_string(), port);
    }
    assert_eq!(compose_backends.len(), 3, "three backends: {compose_backends:?}");

    // The plugin config: a live pool over the steered cluster, read from /clusters (the only
    // admin view with STRICT_DNS hosts).
    let json = text(&filter["configuration"]["value"], "plugin config");
    let config = plugin_config(json, "envoy/compose.yaml");
    let discovery = live_pool(&config, "envoy/compose.yaml");
    assert_eq!(discovery.source, DiscoverySource::Clusters, "discovery.source for STRICT_DNS");

    // The steered cluster resolves exactly those services by name, with the demo's weights.
    let clusters = seq(&envoy_config["static_resources"]["clusters"], "clusters");
    let pool = find_cluster(clusters, &config.cluster, "envoy/compose.yaml");
    assert_eq!(pool["type"], "STRICT_DNS", "cluster {}: type", config.cluster);
    let mut endpoints = BTreeMap::new();
    let mut weights = BTreeMap::new();
    for e in lb_endpoints(pool, "cluster pool") {
        let (host, port) = endpoint_socket(e, "cluster pool");
        assert!(
            host.parse::<IpAddr>().is_err(),
            "cluster pool: {host} is an IP address; name the Compose service"
        );
        weights.insert(host.clone(), e["load_balancing_weight"].as_u64().unwrap_or(1));
        assert!(endpoints.insert(host.clone(), port).is_none(), "cluster pool: {host} twice");
    }
    assert_eq!(endpoints, compose_backends, "cluster endpoints vs compose services (name, port)");
    let expected: BTreeMap<String, u64> =
        COMPOSE_WEIGHTS.iter().map(|(n, w)| (n.to_string(), *w)).collect();
    assert_eq!(weights, expected, "cluster pool: the demo's weights (docs/deploy.md)");

    // The admin cluster reaches the admin listener; no route reaches it.
    check_admin_cluster(&envoy_config, &discovery.admin_cluster, "envoy/compose.yaml");
    let mut targets = BTreeSet::new();
    route_targets(
        &envoy_config["static_resources"]["listeners"],
        "envoy/compose.yaml",
        &mut targets,
    );
    assert_eq!(targets, BTreeSet::from([config.cluster.clone()]), "route targets");

    // The cluster honours the filter's choice.
    let policy = &pool["load_balancing_policy"]["policies"][0]["typed_extension_config"];
    assert_eq!(policy["name"], OVERRIDE_HOST, "cluster policy");
    let sources = seq(&policy["typed_config"]["override_host_sources"], "override_host_sources");
    assert!(sources.iter().any(|s| s["header"] == config.target.header.as_str()));
    assert_eq!(config.target.header, STEERING_HEADER);
    let fallback = &policy["typed_config"]["fallback_policy"]["policies"][0];
    assert_eq!(
        fallback["typed_extension_config"]["name"],
        "envoy.load_balancing_policies.round_robin"
    );
}

/// envoy/compose.yaml, with the filter at $ENVOY_LB_WASM instead of the container's path,
/// passes `envoy --mode validate` and configures the filter.
#[test]
fn compose_envoy_config_validates() {
    let mut doc: Value = serde_yaml_ng::from_str(&read("envoy/compose.yaml")).unwrap();
    let json =
        text(&wasm_filter_config(&mut doc)["configuration"]["value"], "plugin config").to_string();
    let config = plugin_config(&json, "envoy/compose.yaml");
    let boot = compose_bootstrap(&wasm_path(), &json);
    envoy_validates(&boot, &config.cluster, "envoy/compose.yaml");
}

/// The Compose client: `docker compose` (v2 plugin), else Debian's `docker-compose`.
fn compose_client() -> Vec<&'static str> {
    let works = |args: &[&str]| {
        Command::new(args[0])
            .args(&args[1..])
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works(&["docker", "compose"]) {
        vec!["docker", "compose"]
    } else if works(&["docker-compose"]) {
        vec!["docker-compose"]
    } else {
        panic!(
            "no Docker Compose client (`docker compose` or `docker-compose`) to check \
             docker-compose.yml: run `make compose-client` (or `make test`, which installs it)"
        )
    }
}

fn compose_config(client: &[&str], envoy_image: Option<&str>) -> Output {
    let mut cmd = Command::new(client[0]);
    cmd.args(&client[1..]).args(["-f", "docker-compose.yml", "config"]).current_dir(repo_root());
    match envoy_image {
        Some(image) => cmd.env("ENVOY_IMAGE", image),
        None => cmd.env_remove("ENVOY_IMAGE"),
    };
    cmd.output().unwrap()
}

/// A real Compose client reads docker-compose.yml (no engine needed): valid, the default
/// image when ENVOY_IMAGE is unset, and ENVOY_IMAGE when it is set.
#[test]
fn compose_client_accepts_the_compose_file() {
    let client = compose_client();
    let out = compose_config(&client, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} config refuses docker-compose.yml:\n{stderr}{stdout}",
        client.join(" ")
    );
    let resolved: Value = serde_yaml_ng::from_str(&stdout).unwrap();
    assert_eq!(resolved["services"]["envoy"]["image"], DEFAULT_ENVOY_IMAGE, "{stdout}");

    let proxyv2 = "istio/proxyv2:1.27.0";
    let out = compose_config(&client, Some(proxyv2));
    assert!(out.status.success(), "with ENVOY_IMAGE: {}", String::from_utf8_lossy(&out.stderr));
    let resolved: Value = serde_yaml_ng::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(resolved["services"]["envoy"]["image"], proxyv2);
    println!("checked with `{} config`", client.join(" "));
}
