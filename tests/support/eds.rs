//! Endpoints delivered as a control plane delivers them: cluster `pool` (or an Istio-shaped
//! name) comes from a watched CDS file as an `EDS` cluster whose endpoints come from a watched
//! EDS file ([`EnvoySetup::eds`], [`Envoy::set_endpoints`]), or is a `STRICT_DNS` cluster
//! ([`EnvoySetup::strict_dns`]). Either way the bootstrap also has an admin cluster whose one
//! endpoint is Envoy's own admin listener, which the filter may call (`dispatch_http_call`);
//! no route leads to it.
//!
//! Envoy 1.36 and 1.40 behave alike here:
//! - a file source is reloaded when a file is renamed onto its path (with `watched_directory`:
//!   when any file is renamed into that directory, every source watching it is reloaded); a
//!   file written in place is not seen. The files are written to a temporary name and renamed.
//! - an update is applied 2-5 ms after the rename (median; at most ~20 ms seen);
//!   `cluster.<name>.version_text` then shows the file's `version_info` (the EDS config dump
//!   carries no version). Every read of the file counts in `update_success`, unchanged ones too
//!   (also in `update_no_rebuild`).
//! - each resource needs its `@type`: without it the update fails (`update_failure`) and the
//!   old endpoints stay. `resources: []` also leaves them (`update_empty`): no endpoints is a
//!   ClusterLoadAssignment with none.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_yaml_ng::Value;

use super::{set_node, watched_file, Envoy, EnvoySetup};

/// The admin cluster of [`EnvoySetup::eds`] and [`EnvoySetup::strict_dns`].
pub const ADMIN_CLUSTER: &str = "envoy_admin";
/// Istio's name for the outbound cluster of `backend.demo` port 8080 (istio/wasmplugin.yaml).
pub const ISTIO_CLUSTER: &str = "outbound|8080||backend.demo.svc.cluster.local";
/// Istio's bootstrap cluster whose endpoint is the proxy's admin listener.
pub const ISTIO_ADMIN_CLUSTER: &str = "prometheus_stats";

/// Starts with another admin port after Envoy could not bind the chosen one, up to this many
/// starts in all.
pub(super) const ADMIN_PORT_ATTEMPTS: u32 = 5;

/// How long [`Envoy::set_endpoints`] waits for Envoy to apply and show the update.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(10);

const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const CLA_TYPE: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// Where the steered cluster's endpoints come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Discovery {
    /// Cluster `pool` renamed `cluster`, from CDS (cds.yaml) as type EDS (eds.yaml).
    Eds { cluster: String, admin_cluster: String },
    /// Cluster `pool` as STRICT_DNS: `localhost:<port>` for each endpoint.
    StrictDns { admin_cluster: String },
}

impl Discovery {
    fn admin_cluster(&self) -> &str {
        match self {
            Discovery::Eds { admin_cluster, .. } | Discovery::StrictDns { admin_cluster } => {
                admin_cluster
            }
        }
    }
}

/// One endpoint of an EDS update: Envoy's `LbEndpoint` (address, `health_status`,
/// `load_balancing_weight`) in the `LocalityLbEndpoints` of `priority`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EdsEndpoint {
    pub address: SocketAddr,
    /// "HEALTHY", "UNHEALTHY", "DRAINING", "DEGRADED" or "TIMEOUT"; `None`: not given (Envoy
    /// reports it HEALTHY).
    pub health: Option<&'static str>,
    /// `None`: not given (Envoy reports 1).
    pub weight: Option<u32>,
    pub priority: u32,
}

impl EdsEndpoint {
    /// Priority 0, no health status, no weight: what a control plane sends for a ready pod.
    pub fn healthy(address: SocketAddr) -> Self {
        EdsEndpoint { address, health: None, weight: None, priority: 0 }
    }

    pub fn health(mut self, health: &'static str) -> Self {
        assert!(
            ["HEALTHY", "UNHEALTHY", "DRAINING", "DEGRADED", "TIMEOUT", "UNKNOWN"]
                .contains(&health),
            "not an Envoy health status: {health}"
        );
        self.health = Some(health);
        self
    }

    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = Some(weight);
        self
    }

    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    /// As Envoy's EDS config dump shows it (1.36 and 1.40 alike): weight 1 when not given,
    /// health HEALTHY when not given or UNKNOWN, and UNHEALTHY for DRAINING and TIMEOUT (the
    /// dump has only HEALTHY, UNHEALTHY and DEGRADED; `/clusters?format=json` keeps DRAINING as
    /// `eds_health_status`, see [`Envoy::cluster_hosts`]).
    pub fn as_reported(self) -> EdsEndpoint {
        let health = match self.health {
            None | Some("UNKNOWN") => "HEALTHY",
            Some("DRAINING" | "TIMEOUT") => "UNHEALTHY",
            Some(h) => h,
        };
        EdsEndpoint { health: Some(health), weight: Some(self.weight.unwrap_or(1)), ..self }
    }
}

impl EnvoySetup {
    /// Cluster `pool` delivered through CDS (a watched file) as an EDS cluster whose endpoints
    /// (initially `endpoints`, then [`Envoy::set_endpoints`]) come from a watched EDS file,
    /// plus the admin cluster [`ADMIN_CLUSTER`].
    pub fn eds(self) -> Self {
        self.eds_named("pool", ADMIN_CLUSTER)
    }

    /// [`EnvoySetup::eds`] with the cluster named `cluster` (the route follows; the plugin
    /// config is the test's) and the admin cluster named `admin_cluster`, e.g.
    /// [`ISTIO_CLUSTER`] and [`ISTIO_ADMIN_CLUSTER`].
    pub fn eds_named(mut self, cluster: &str, admin_cluster: &str) -> Self {
        self.discovery = Some(Discovery::Eds {
            cluster: cluster.to_string(),
            admin_cluster: admin_cluster.to_string(),
        });
        self
    }

    /// Cluster `pool` as a static STRICT_DNS cluster, `localhost:<port>` for each endpoint
    /// (each must be on 127.0.0.1; looked up IPv4 only), plus the admin cluster
    /// [`ADMIN_CLUSTER`].
    pub fn strict_dns(mut self) -> Self {
        self.discovery = Some(Discovery::StrictDns { admin_cluster: ADMIN_CLUSTER.to_string() });
        self
    }

    /// The admin port of the first start (later ones choose their own): lets a test make it
    /// busy. Only with an admin cluster.
    pub fn admin_port(mut self, port: u16) -> Self {
        self.admin_port = Some(port);
        self
    }
}

/// A loopback port nothing listens on now (bound and released).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Chooses the admin port of a setup with an admin cluster: the admin address must be known
/// before Envoy starts. Another process may take it before Envoy binds it: Envoy then exits at
/// once ([`admin_port_taken`]) and is started again on another.
pub(super) fn choose_admin_port(setup: &mut EnvoySetup, attempt: u32) {
    if setup.discovery.is_some() && (attempt > 1 || setup.admin_port.is_none()) {
        setup.admin_port = Some(free_port());
    }
}

/// Whether Envoy exited because it could not bind the admin port chosen for it. Both
/// versions log ``error `cannot bind '127.0.0.1:PORT': Address already in use` initializing
/// config`` and exit with status 1 within 0.1 s.
pub(super) fn admin_port_taken(setup: &EnvoySetup, log: &str) -> bool {
    match (&setup.discovery, setup.admin_port) {
        (Some(_), Some(port)) => log.contains(&format!("cannot bind '127.0.0.1:{port}'")),
        _ => false,
    }
}

/// The admin cluster as Istio's bootstrap (tools/packaging/common/envoy_bootstrap.json)
/// defines `prometheus_stats`: STATIC, 0.25 s connect timeout, the admin address.
fn admin_cluster(name: &str, port: u16) -> Value {
    serde_yaml_ng::from_str(&format!(
        "{{name: '{name}', type: STATIC, connect_timeout: 0.250s, lb_policy: ROUND_ROBIN, \
         load_assignment: {{cluster_name: '{name}', endpoints: [{{lb_endpoints: [{{endpoint: \
         {{address: {{socket_address: {{protocol: TCP, address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]}}}}"
    ))
    .unwrap()
}

fn socket_address(host: &str, port: u16) -> Value {
    serde_yaml_ng::from_str(&format!(
        "{{address: {{socket_address: {{address: '{host}', port_value: {port}}}}}}}"
    ))
    .unwrap()
}

/// The EDS file: one ClusterLoadAssignment, endpoints grouped by priority.
fn eds_file(cluster: &str, version: u64, endpoints: &[EdsEndpoint]) -> String {
    let mut priorities: Vec<u32> = endpoints.iter().map(|e| e.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    let groups: Vec<Value> = priorities
        .into_iter()
        .map(|p| {
            let lb: Vec<Value> = endpoints
                .iter()
                .filter(|e| e.priority == p)
                .map(|e| {
                    let mut v = Value::Mapping(Default::default());
                    v["endpoint"] = socket_address(&e.address.ip().to_string(), e.address.port());
                    if let Some(h) = e.health {
                        v["health_status"] = h.into();
                    }
                    if let Some(w) = e.weight {
                        v["load_balancing_weight"] = w.into();
                    }
                    v
                })
                .collect();
            let mut group = Value::Mapping(Default::default());
            if p > 0 {
                group["priority"] = p.into();
            }
            group["lb_endpoints"] = Value::Sequence(lb);
            group
        })
        .collect();
    let mut cla = Value::Mapping(Default::default());
    cla["@type"] = CLA_TYPE.into();
    cla["cluster_name"] = cluster.into();
    cla["endpoints"] = Value::Sequence(groups);
    let mut file = Value::Mapping(Default::default());
    file["version_info"] = format!("v{version}").into();
    file["resources"] = Value::Sequence(vec![cla]);
    serde_yaml_ng::to_string(&file).unwrap()
}

/// Makes `doc` (the rendered bootstrap) that of `setup.discovery`, and returns the files it
/// reads (name in `dir`, text). Nothing without discovery.
pub(super) fn render(
    setup: &EnvoySetup,
    doc: &mut Value,
    dir: &Path,
) -> Vec<(&'static str, String)> {
    let Some(discovery) = &setup.discovery else { return Vec::new() };
    let port = setup.admin_port.expect("the admin port is chosen by Envoy::start");
    doc["admin"]["address"]["socket_address"]["address"] = "127.0.0.1".into();
    doc["admin"]["address"]["socket_address"]["port_value"] = port.into();
    let clusters = doc["static_resources"]["clusters"].as_sequence_mut().unwrap();
    let at = clusters
        .iter()
        .position(|c| c["name"] == "pool")
        .unwrap_or_else(|| panic!("{}: no cluster `pool`", setup.file));
    let mut files = Vec::new();
    match discovery {
        Discovery::StrictDns { .. } => {
            let pool = &mut clusters[at];
            pool["type"] = "STRICT_DNS".into();
            pool["dns_lookup_family"] = "V4_ONLY".into();
            let lb: Vec<Value> = setup
                .endpoints
                .iter()
                .map(|a| {
                    assert_eq!(a.ip().to_string(), "127.0.0.1", "strict_dns: {a} is not localhost");
                    let mut v = Value::Mapping(Default::default());
                    v["endpoint"] = socket_address("localhost", a.port());
                    v
                })
                .collect();
            pool["load_assignment"]["endpoints"][0]["lb_endpoints"] = Value::Sequence(lb);
        }
        Discovery::Eds { cluster, .. } => {
            let mut pool = clusters.remove(at);
            pool.as_mapping_mut().unwrap().remove("load_assignment");
            pool["name"] = cluster.as_str().into();
            pool["type"] = "EDS".into();
            pool["eds_cluster_config"]["service_name"] = cluster.as_str().into();
            pool["eds_cluster_config"]["eds_config"] = watched_file(dir, "eds.yaml");
            let mut typed = serde_yaml_ng::Mapping::new();
            typed.insert("@type".into(), CLUSTER_TYPE.into());
            typed.extend(pool.as_mapping().unwrap().clone());
            let mut cds = Value::Mapping(Default::default());
            cds["version_info"] = "v1".into();
            cds["resources"] = Value::Sequence(vec![Value::Mapping(typed)]);
            files.push(("cds.yaml", serde_yaml_ng::to_string(&cds).unwrap()));
            let endpoints: Vec<EdsEndpoint> =
                setup.endpoints.iter().copied().map(EdsEndpoint::healthy).collect();
            files.push(("eds.yaml", eds_file(cluster, 1, &endpoints)));
            rename_route_targets(doc, "pool", cluster);
            // A static listener is loaded before CDS: its routes may name the CDS cluster only
            // if they are not checked against the clusters known then.
            set_in_route_configs(doc, "validate_clusters", false.into());
            doc["dynamic_resources"]["cds_config"] = watched_file(dir, "cds.yaml");
            set_node(doc);
        }
    }
    let clusters = doc["static_resources"]["clusters"].as_sequence_mut().unwrap();
    clusters.push(admin_cluster(discovery.admin_cluster(), port));
    for (name, address) in &setup.extra_clusters {
        let mut c = admin_cluster(name, address.port());
        c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"] =
            socket_address(&address.ip().to_string(), address.port());
        clusters.push(c);
    }
    files
}

/// Routes to cluster `from` go to `to`.
fn rename_route_targets(doc: &mut Value, from: &str, to: &str) {
    match doc {
        Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                if k.as_str() == Some("route") && v["cluster"] == from {
                    v["cluster"] = to.into();
                }
                rename_route_targets(v, from, to);
            }
        }
        Value::Sequence(s) => s.iter_mut().for_each(|v| rename_route_targets(v, from, to)),
        _ => {}
    }
}

/// Sets `key` in every `route_config` of `doc`.
fn set_in_route_configs(doc: &mut Value, key: &str, value: Value) {
    match doc {
        Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                if k.as_str() == Some("route_config") && v.is_mapping() {
                    v[key] = value.clone();
                }
                set_in_route_configs(v, key, value.clone());
            }
        }
        Value::Sequence(s) => {
            s.iter_mut().for_each(|v| set_in_route_configs(v, key, value.clone()))
        }
        _ => {}
    }
}

/// What `setup` makes Envoy read: the bootstrap, then the LDS, CDS and EDS files it has (file
/// name, document), rendered with admin port 9901. For the static checks of tests/envoy_yaml.rs.
pub fn rendered_documents(setup: &EnvoySetup) -> Vec<(String, Value)> {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = EnvoySetup { admin_port: Some(9901), ..setup.clone_config() };
    choose_admin_port(&mut setup, 1);
    let (bootstrap, lds, files) = setup.render_files(dir.path());
    let mut docs = vec![("envoy.yaml".to_string(), serde_yaml_ng::from_str(&bootstrap).unwrap())];
    if let Some(lds) = lds {
        docs.push(("lds.yaml".to_string(), serde_yaml_ng::from_str(&lds).unwrap()));
    }
    for (name, text) in files {
        docs.push((name.to_string(), serde_yaml_ng::from_str(&text).unwrap()));
    }
    docs
}

impl EnvoySetup {
    fn clone_config(&self) -> EnvoySetup {
        EnvoySetup {
            concurrency: self.concurrency,
            live: self.live,
            plugin_config: self.plugin_config.clone(),
            endpoints: self.endpoints.clone(),
            file: self.file,
            tweak: self.tweak,
            discovery: self.discovery.clone(),
            admin_port: self.admin_port,
            extra_clusters: self.extra_clusters.clone(),
        }
    }
}

/// `s` with regex metacharacters escaped (cluster names hold `|` and `.`).
fn regex_escape(s: &str) -> String {
    regex::escape(s)
}

/// `s` percent-encoded for a query string.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn health_name(s: &str) -> &'static str {
    ["HEALTHY", "UNHEALTHY", "DRAINING", "DEGRADED", "TIMEOUT", "UNKNOWN"]
        .into_iter()
        .find(|h| *h == s)
        .unwrap_or_else(|| panic!("unexpected health_status {s:?}"))
}

impl Envoy {
    fn eds_cluster(&self) -> String {
        match &self.setup.discovery {
            Some(Discovery::Eds { cluster, .. }) => cluster.clone(),
            _ => panic!("start the Envoy with EnvoySetup::eds() or eds_named()"),
        }
    }

    /// The admin cluster's name (panics without one).
    pub fn admin_cluster(&self) -> String {
        self.setup.discovery.as_ref().expect("no admin cluster").admin_cluster().to_string()
    }

    /// A text readout or counter of cluster `cluster` from `/stats` as text (`version_text`
    /// is quoted there: the quotes are removed), `None` when absent.
    pub async fn cluster_stat_text(&self, cluster: &str, stat: &str) -> Option<String> {
        let name = format!("cluster.{cluster}.{stat}");
        let body = self
            .admin_get(&format!(
                "/stats?filter={}",
                query_escape(&format!("^{}$", regex_escape(&name)))
            ))
            .await;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(|v| v.trim().trim_matches('"').to_string())
    }

    /// A counter of cluster `cluster`, 0 when absent (unlike [`Envoy::stat`], any cluster name).
    pub async fn cluster_stat(&self, cluster: &str, stat: &str) -> u64 {
        self.cluster_stat_text(cluster, stat).await.map_or(0, |v| v.parse().unwrap())
    }

    /// The endpoints Envoy holds for the EDS cluster, from `/config_dump?include_eds`, sorted,
    /// health and weight as Envoy reports them (never `None`).
    pub async fn eds_endpoints(&self) -> Vec<EdsEndpoint> {
        let cluster = self.eds_cluster();
        let path = format!(
            "/config_dump?include_eds&resource=dynamic_endpoint_configs&name_regex={}",
            query_escape(&format!("^{}$", regex_escape(&cluster)))
        );
        let body = self.admin_get(&path).await;
        let dump: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("config_dump is not JSON ({e}): {body}"));
        let mut out = Vec::new();
        let configs = dump["configs"].as_array().cloned().unwrap_or_default();
        for config in configs.iter().filter(|c| c["endpoint_config"]["cluster_name"] == *cluster) {
            for group in config["endpoint_config"]["endpoints"].as_array().into_iter().flatten() {
                let priority = group["priority"].as_u64().unwrap_or(0) as u32;
                for lb in group["lb_endpoints"].as_array().into_iter().flatten() {
                    let sa = &lb["endpoint"]["address"]["socket_address"];
                    let address =
                        format!("{}:{}", sa["address"].as_str().unwrap(), sa["port_value"])
                            .parse()
                            .unwrap();
                    out.push(EdsEndpoint {
                        address,
                        health: Some(health_name(
                            lb["health_status"].as_str().unwrap_or("UNKNOWN"),
                        )),
                        weight: Some(lb["load_balancing_weight"].as_u64().unwrap_or(1) as u32),
                        priority,
                    });
                }
            }
        }
        out.sort();
        out
    }

    /// Replaces the EDS cluster's endpoints as a control plane would: writes the EDS file
    /// (new version_info) to a temporary name and renames it onto the watched one, waits until
    /// Envoy shows that version (`cluster.<name>.version_text`), then until its config dump
    /// holds exactly `endpoints`. Panics, with Envoy's log, if the update fails or times out.
    /// Returns how long Envoy took from the rename to showing the version.
    pub async fn set_endpoints(&mut self, endpoints: &[EdsEndpoint]) -> Duration {
        let cluster = self.eds_cluster();
        let failed_before = self.cluster_stat(&cluster, "update_failure").await
            + self.cluster_stat(&cluster, "update_rejected").await;
        self.eds_version += 1;
        let version = format!("v{}", self.eds_version);
        let tmp = self.dir.path().join("eds.yaml.tmp");
        std::fs::write(&tmp, eds_file(&cluster, self.eds_version, endpoints)).unwrap();
        let renamed = Instant::now();
        std::fs::rename(&tmp, self.dir.path().join("eds.yaml")).unwrap();
        let deadline = renamed + UPDATE_TIMEOUT;
        let took = loop {
            if self.cluster_stat_text(&cluster, "version_text").await.as_deref() == Some(&version) {
                break renamed.elapsed();
            }
            let failed = self.cluster_stat(&cluster, "update_failure").await
                + self.cluster_stat(&cluster, "update_rejected").await;
            assert!(failed == failed_before, "EDS update {version} failed:\n{}", self.log_tail(30));
            assert!(
                Instant::now() < deadline,
                "EDS update {version} not applied:\n{}",
                self.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let mut want: Vec<EdsEndpoint> = endpoints.iter().map(|e| e.as_reported()).collect();
        want.sort();
        loop {
            let held = self.eds_endpoints().await;
            if held == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after EDS update {version} Envoy holds {held:#?}\nnot {want:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        took
    }

    /// The hosts of `cluster` as `/clusters?format=json` lists them, sorted by address.
    pub async fn cluster_hosts(&self, cluster: &str) -> Vec<ClusterHost> {
        let body = self.admin_get("/clusters?format=json").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let statuses = v["cluster_statuses"].as_array().unwrap();
        let c = statuses
            .iter()
            .find(|c| c["name"] == cluster)
            .unwrap_or_else(|| panic!("no cluster {cluster} in {body}"));
        let mut hosts: Vec<ClusterHost> = c["host_statuses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| {
                let sa = &h["address"]["socket_address"];
                let addr = format!("{}:{}", sa["address"].as_str().unwrap(), sa["port_value"]);
                ClusterHost {
                    address: addr.parse().unwrap(),
                    hostname: h["hostname"].as_str().unwrap_or_default().to_string(),
                    eds_health_status: h["health_status"]["eds_health_status"]
                        .as_str()
                        .map(str::to_string),
                    weight: h["weight"].as_u64().unwrap_or(0) as u32,
                    priority: h["priority"].as_u64().unwrap_or(0) as u32,
                }
            })
            .collect();
        hosts.sort_by_key(|h| h.address);
        hosts
    }
}

/// A host of a cluster as `/clusters?format=json` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterHost {
    pub address: SocketAddr,
    /// The endpoint's hostname: `localhost` in [`EnvoySetup::strict_dns`], else empty.
    pub hostname: String,
    /// HEALTHY, UNHEALTHY, DRAINING or DEGRADED: EDS's TIMEOUT shows as UNHEALTHY, UNKNOWN
    /// (or none given) as HEALTHY.
    pub eds_health_status: Option<String>,
    pub weight: u32,
    pub priority: u32,
}
