//! What the Envoy benches share: starting an Envoy per variant, loading it (with `wrk` in the
//! CPU bench; the latency bench has its own client), reading its CPU time and counters, and
//! writing bench/RESULTS.md. Included by benches/envoy.rs (CPU per request, [`cpu`]),
//! benches/latency.rs (client latency with a slow backend, [`latency`]), benches/scale.rs
//! (3 to 10,000 backends, [`scale`], backends in child processes: [`shards`]) and
//! tests/bench_smoke.rs (all three, one short round), each of which declares `mod support`
//! (tests/support/mod.rs) at its root.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cpu;
pub mod latency;
pub mod load_reports;
pub mod scale;
pub mod shards;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{client, envoy_bin, repo_root, shipped_config, wasm_path};

/// Keep-alive connections of the load (wrk's, one wrk thread, in the CPU bench; the latency
/// bench's own client's): the same load for every variant.
pub const CONNECTIONS: u32 = 16;
/// Sent on every request of every variant (maglev hashes it), so requests are alike.
pub const HASH_HEADER: &str = "x-user: user-42";
/// Where the latency section of bench/RESULTS.md starts; the CPU bench keeps it.
pub const LATENCY_HEADING: &str = "## Latency-aware balancing";
/// Where the scale section (benches/scale.rs) starts; the CPU and latency benches keep it.
pub const SCALE_HEADING: &str = "## Scale:";
/// The heading of benches/probes.rs's section.
pub const PROBES_HEADING: &str = "## Health checking: CPU per probe, native beside envoy-lb";

/// How a variant's Envoy is configured.
pub enum Kind {
    /// No wasm filter; cluster `pool` with a plain ROUND_ROBIN policy.
    Native,
    /// No wasm filter; cluster `pool` with `envoy.load_balancing_policies.least_request`.
    NativeLeastRequest,
    /// No wasm filter; Envoy's own sticky sessions: `envoy.filters.http.stateful_session` with
    /// the cookie extension ([`STATEFUL_COOKIE`]) before the router, cluster `pool` with a plain
    /// ROUND_ROBIN policy and Envoy's active health checks ([`NATIVE_HEALTH`]).
    NativeStatefulSession,
    /// No wasm filter; `envoy.filters.http.ext_proc` before the router asks the ext_proc picker
    /// (ext-proc-picker/, round robin, a process of its own started with the Envoy) about the
    /// request headers; it sets `x-gateway-destination-endpoint`, which cluster `pool` reads
    /// with the shipped override_host policy, as it reads the filter's.
    ExtProcPicker,
    /// The shipped config with the no-op filter's .wasm.
    Noop,
    /// The no-op filter's .wasm in its floor mode ([`floor_config`]): the steering header set on
    /// each request, and with `true` the response's two reads envoy-lb makes, and nothing else.
    Floor(bool),
    /// The shipped config with envoy-lb and these plugin-config fields.
    Ours(serde_json::Value),
    /// As `Ours`, with the .wasm named by BENCH_BASELINE_WASM (a before/after comparison).
    Baseline(serde_json::Value),
}

pub struct Variant {
    pub key: char,
    pub name: &'static str,
    pub kind: Kind,
    /// Returning sessions: every request of the load sends back the cookie the Envoy issued
    /// ([`session_cookie`], fetched once after it starts), and every answer must come from
    /// that cookie's backend (checked on each run). Otherwise every request is a new session.
    pub returning: bool,
}

impl Variant {
    /// The name shown in tables and logs.
    pub fn label(&self) -> String {
        match self.kind {
            Kind::Baseline(_) => format!("{}, baseline .wasm", self.name),
            _ => self.name.to_owned(),
        }
    }
}

/// BENCH_BASELINE_WASM: an envoy_lb.wasm to measure beside the built one (e.g. the last
/// commit's `make build`), so a change's effect is a ratio from one run.
pub fn baseline_wasm() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("BENCH_BASELINE_WASM")?);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("BENCH_BASELINE_WASM={}: {e}", path.display()));
    assert_eq!(bytes.get(..4), Some(&b"\0asm"[..]), "{} is not a wasm module", path.display());
    Some(path)
}

/// Each `Ours` variant again on the baseline .wasm (key upper-cased), when one is given.
pub fn with_baselines(mut variants: Vec<Variant>) -> Vec<Variant> {
    if baseline_wasm().is_none() {
        return variants;
    }
    let twins: Vec<Variant> = variants
        .iter()
        .filter_map(|v| match &v.kind {
            Kind::Ours(extra) => Some(Variant {
                key: v.key.to_ascii_uppercase(),
                name: v.name,
                kind: Kind::Baseline(extra.clone()),
                returning: v.returning,
            }),
            _ => None,
        })
        .collect();
    variants.extend(twins);
    variants
}

/// A bench run's size, from the environment in `make bench`, given directly by the smoke test.
pub struct Params {
    /// Interleaved rounds (BENCH_ROUNDS).
    pub rounds: usize,
    /// wrk seconds per measurement (BENCH_SECONDS).
    pub seconds: u64,
    /// wrk seconds of warm-up per Envoy before the rounds; 0 skips it.
    pub warmup_seconds: u64,
    /// Envoy `--concurrency` values; every variant runs with each.
    pub workers: Vec<u32>,
    /// The markdown file (BENCH_OUT); each bench replaces only its own section.
    pub out: PathBuf,
}

impl Params {
    /// BENCH_ROUNDS (default 7), BENCH_SECONDS (default `seconds`), BENCH_OUT (default
    /// bench/RESULTS.md).
    pub fn from_env(seconds: u64, warmup_seconds: u64, workers: &[u32]) -> Params {
        Params {
            rounds: env_u64("BENCH_ROUNDS", 7) as usize,
            seconds: env_u64("BENCH_SECONDS", seconds),
            warmup_seconds,
            workers: workers.to_vec(),
            out: std::env::var_os("BENCH_OUT")
                .map_or_else(|| repo_root().join("bench/RESULTS.md"), PathBuf::from),
        }
    }
}

/// The ext_proc picker's binary: `EXT_PROC_PICKER` when set (`make test` and `make integration`
/// set it to their dev build, for the bench smoke), else the optimised build of
/// `make ext-proc-picker` (the `picker` profile), which `make bench` measures. Fails loudly.
pub fn picker_path() -> PathBuf {
    let path = std::env::var_os("EXT_PROC_PICKER")
        .map_or_else(|| repo_root().join("target/picker/ext-proc-picker"), PathBuf::from);
    assert!(
        path.is_file(),
        "{} missing: run `make ext-proc-picker` (`make bench` builds it; `make test` and \
         `make integration` build target/debug/ext-proc-picker and name it in EXT_PROC_PICKER)",
        path.display()
    );
    path
}

pub fn noop_wasm_path() -> PathBuf {
    let path = repo_root().join("target/wasm32-wasip1/release/noop_filter.wasm");
    assert!(
        path.is_file(),
        "{} missing: run `make noop-filter` (`make bench`, `make test` and `make integration` \
         build it)",
        path.display()
    );
    path
}

/// Fails loudly, before anything starts, when Envoy, the filter or (if asked) wrk or the no-op
/// filter is missing, or the ext_proc picker when one of `variants` needs it.
pub fn require_tools(wrk: bool, noop: bool, variants: &[Variant]) {
    assert!(
        !wrk || Command::new("wrk").arg("--version").output().is_ok(),
        "wrk not found: run `make wrk` (Debian's wrk; `make bench`, `make test` and \
         `make integration` install it)"
    );
    envoy_bin();
    wasm_path();
    if noop {
        noop_wasm_path();
    }
    if variants.iter().any(|v| matches!(v.kind, Kind::ExtProcPicker)) {
        picker_path();
    }
}

/// The plugin configuration of [`Kind::Floor`]: the shipped override_host header, set to the
/// pool's addresses in each rotation in turn (a round robin over `endpoints` with fallbacks, the
/// shape envoy-lb's round robin writes), and with `read_response` the response's reads.
pub fn floor_config(endpoints: &[SocketAddr], read_response: bool) -> String {
    let values: Vec<String> = (0..endpoints.len())
        .map(|i| {
            let rotation = endpoints[i..].iter().chain(&endpoints[..i]);
            rotation.map(SocketAddr::to_string).collect::<Vec<_>>().join(",")
        })
        .collect();
    serde_json::json!({"floor": {"header": "x-gateway-destination-endpoint", "values": values,
        "read_response": read_response}})
    .to_string()
}

/// The cookie of [`Kind::NativeStatefulSession`]: name, path and TTL as envoy-lb's sticky
/// variants have them (the filter's default `ttl_s` is 3600).
pub const STATEFUL_COOKIE: &str = "envoy_session";

/// The active health checks of [`Kind::NativeStatefulSession`]'s cluster: those of envoy-lb's
/// sticky variants (`GET /healthz` every 2 s, 1 s timeout).
pub const NATIVE_HEALTH: &str = "[{timeout: 1s, interval: 2s, unhealthy_threshold: 2, \
    healthy_threshold: 1, http_health_check: {path: /healthz}}]";

/// The HTTP filters that a kind puts before the router, in place of the wasm filter.
fn native_filters(kind: &Kind) -> Option<String> {
    match kind {
        Kind::NativeStatefulSession => Some(format!(
            "- name: envoy.filters.http.stateful_session
  typed_config:
    '@type': type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession
    session_state:
      name: envoy.http.stateful_session.cookie
      typed_config:
        '@type': type.googleapis.com/envoy.extensions.http.stateful_session.cookie.v3.CookieBasedSessionState
        cookie: {{name: {STATEFUL_COOKIE}, path: /, ttl: 3600s}}
"
        )),
        // Request headers only, as the Inference Extension's picker needs them for a pick
        // without the body; a picker that fails or is slow fails the request (no failure mode
        // allow: a request must never go unsteered).
        Kind::ExtProcPicker => Some(
            "- name: envoy.filters.http.ext_proc
  typed_config:
    '@type': type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
    grpc_service:
      envoy_grpc: {cluster_name: ext_proc_picker}
      timeout: 5s
    failure_mode_allow: false
    message_timeout: 5s
    processing_mode:
      request_header_mode: SEND
      response_header_mode: SKIP
      request_body_mode: NONE
      response_body_mode: NONE
      request_trailer_mode: SKIP
      response_trailer_mode: SKIP
"
            .to_owned(),
        ),
        _ => None,
    }
}

/// The STATIC cluster of the ext_proc picker at `picker`: gRPC, so HTTP/2.
fn picker_cluster(picker: SocketAddr) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(&format!(
        "name: ext_proc_picker
type: STATIC
connect_timeout: 1s
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    '@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: {{http2_protocol_options: {{}}}}
load_assignment:
  cluster_name: ext_proc_picker
  endpoints:
  - lb_endpoints:
    - endpoint: {{address: {{socket_address: {{address: '{}', port_value: {}}}}}}}
",
        picker.ip(),
        picker.port()
    ))
    .unwrap()
}

/// envoy/envoy.yaml for `kind` (the harness's rendering); the native kinds have no wasm filter
/// and their own cluster policy, with the same routes and retries. [`Kind::ExtProcPicker`]
/// needs its picker's address: [`render_with_picker`] (or [`start`], which starts both).
pub fn render(kind: &Kind, endpoints: &[SocketAddr], ours_config: &str) -> String {
    render_with_picker(kind, endpoints, ours_config, None)
}

/// [`render`], with the address of the ext_proc picker for [`Kind::ExtProcPicker`].
pub fn render_with_picker(
    kind: &Kind,
    endpoints: &[SocketAddr],
    ours_config: &str,
    picker: Option<SocketAddr>,
) -> String {
    let wasm = match kind {
        Kind::Native
        | Kind::NativeLeastRequest
        | Kind::NativeStatefulSession
        | Kind::ExtProcPicker => None,
        Kind::Noop | Kind::Floor(_) => Some(noop_wasm_path()),
        Kind::Ours(_) => Some(wasm_path()),
        Kind::Baseline(_) => baseline_wasm(),
    };
    let mut doc = shipped_config(wasm.as_deref(), ours_config, endpoints);
    if let Some(filters) = native_filters(kind) {
        let hcm = &mut doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        let chain = hcm["http_filters"].as_sequence_mut().unwrap();
        let router = chain.iter().position(|f| f["name"] == "envoy.filters.http.router").unwrap();
        let filters: Vec<serde_yaml_ng::Value> = serde_yaml_ng::from_str(&filters).unwrap();
        for (i, f) in filters.into_iter().enumerate() {
            chain.insert(router + i, f);
        }
    }
    if matches!(kind, Kind::ExtProcPicker) {
        let picker = picker.expect("Kind::ExtProcPicker needs the picker's address");
        let clusters = doc["static_resources"]["clusters"].as_sequence_mut().unwrap();
        clusters.push(picker_cluster(picker));
    }
    if matches!(kind, Kind::Native | Kind::NativeLeastRequest | Kind::NativeStatefulSession) {
        let clusters = doc["static_resources"]["clusters"].as_sequence_mut().unwrap();
        let pool = clusters.iter_mut().find(|c| c["name"] == "pool").expect("no cluster pool");
        let pool = pool.as_mapping_mut().unwrap();
        pool.remove("load_balancing_policy");
        if matches!(kind, Kind::NativeStatefulSession) {
            // The twin of envoy-lb's sticky variants, which probe every 2 s too.
            pool.insert("health_checks".into(), serde_yaml_ng::from_str(NATIVE_HEALTH).unwrap());
        }
        if !matches!(kind, Kind::NativeLeastRequest) {
            pool.insert("lb_policy".into(), "ROUND_ROBIN".into());
        } else {
            let policy: serde_yaml_ng::Value = serde_yaml_ng::from_str(
                "policies: [{typed_extension_config: {name: envoy.load_balancing_policies.least_request, \
                 typed_config: {'@type': type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest}}}]",
            )
            .unwrap();
            pool.insert("load_balancing_policy".into(), policy);
        }
    }
    serde_yaml_ng::to_string(&doc).unwrap()
}

/// A running ext_proc picker (ext-proc-picker/); killed on drop.
pub struct Picker {
    child: Child,
    pub addr: SocketAddr,
}

impl Picker {
    /// Starts the picker on a loopback port the kernel picks, round robin over `backends`.
    pub fn start(backends: &[SocketAddr]) -> Picker {
        use std::io::BufRead as _;
        let mut child = Command::new(picker_path())
            .args(["--listen", "127.0.0.1:0"])
            .args(backends.iter().map(SocketAddr::to_string))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", picker_path().display()));
        // Its first line names the bound address; a picker that fails prints none and exits.
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on ").and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            panic!("ext-proc-picker did not start: {:?} ({:?})", line, child.wait());
        };
        Picker { child, addr }
    }
}

impl Drop for Picker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the Envoy of `kind` with `concurrency` workers, and first, for
/// [`Kind::ExtProcPicker`], its picker (over `endpoints`), which lives as long as the Envoy.
pub async fn start(
    kind: &Kind,
    endpoints: &[SocketAddr],
    ours_config: &str,
    concurrency: u32,
) -> Proxy {
    let picker = matches!(kind, Kind::ExtProcPicker).then(|| Picker::start(endpoints));
    let yaml = render_with_picker(kind, endpoints, ours_config, picker.as_ref().map(|p| p.addr));
    let mut proxy = Proxy::start(&yaml, concurrency).await;
    proxy.picker = picker;
    if matches!(kind, Kind::ExtProcPicker) {
        picker_steers(&proxy, endpoints).await;
    }
    if matches!(kind, Kind::Floor(_)) {
        floor_steers(&proxy, endpoints).await;
    }
    proxy
}

/// Fails unless the picker's header steers: the cluster's override_host policy falls back to
/// round robin when the header is missing, so a picker that is not asked, or whose answer is
/// dropped, would go unnoticed ([`run_wrk`] also checks that Envoy rejected none of its header
/// mutations). Requests that name the first backend in the steering header themselves must
/// reach every backend, each as often, one at a time: the picker replaced the client's value
/// with its own round robin.
async fn picker_steers(proxy: &Proxy, endpoints: &[SocketAddr]) {
    let picker = proxy.picker.as_ref().unwrap();
    let seen = answers_despite_client_header(proxy, endpoints).await;
    assert!(
        seen.len() == endpoints.len() && seen.values().all(|&n| n == 2),
        "the ext_proc picker at {} does not steer: backends answered {seen:?}",
        picker.addr
    );
}

/// A [`Kind::Floor`] Envoy replaces the client's steering header: every backend answers
/// (each worker's VM rotates over them from the first, so whichever worker takes the larger
/// share of the six requests reaches all three).
async fn floor_steers(proxy: &Proxy, endpoints: &[SocketAddr]) {
    let seen = answers_despite_client_header(proxy, endpoints).await;
    assert!(
        seen.len() == endpoints.len(),
        "the floor filter does not steer: backends answered {seen:?}\n{}",
        proxy.log()
    );
}

/// Which backends answered 2 × `endpoints` requests, each on a new connection, that name the
/// first endpoint in the steering header (override_host would honour a header left as is).
async fn answers_despite_client_header(
    proxy: &Proxy,
    endpoints: &[SocketAddr],
) -> std::collections::BTreeMap<String, usize> {
    let url = format!("http://{}/", proxy.listener);
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..2 * endpoints.len() {
        let r = client()
            .get(&url)
            .header("x-gateway-destination-endpoint", endpoints[0].to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {url}: {e}"));
        assert_eq!(r.status(), 200, "{r:?}\n{}", proxy.log());
        let backend = r.headers().get("x-backend").and_then(|v| v.to_str().ok()).unwrap_or("?");
        *seen.entry(backend.to_owned()).or_default() += 1;
    }
    seen
}

/// One running Envoy (with its ext_proc picker, if any); killed on drop.
pub struct Proxy {
    child: Child,
    dir: tempfile::TempDir,
    pub admin: SocketAddr,
    pub listener: SocketAddr,
    /// The ext_proc picker of a [`Kind::ExtProcPicker`] Envoy: its CPU time counts as the
    /// Envoy's ([`Proxy::cpu_ticks`]).
    pub picker: Option<Picker>,
}

impl Proxy {
    pub async fn start(yaml: &str, concurrency: u32) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("envoy.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        let log = std::fs::File::create(dir.path().join("envoy.log")).unwrap();
        let child = Command::new(envoy_bin())
            .current_dir(repo_root())
            .arg("-c")
            .arg(&cfg)
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(dir.path().join("admin.txt"))
            .arg("--log-level")
            .arg("warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", envoy_bin().display()));
        let unknown: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut proxy = Proxy { child, dir, admin: unknown, listener: unknown, picker: None };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = proxy.child.try_wait().unwrap() {
                panic!("Envoy exited ({status}) while starting:\n{}", proxy.log());
            }
            assert!(Instant::now() < deadline, "Envoy not ready in time:\n{}", proxy.log());
            if proxy.admin == unknown {
                if let Ok(text) = std::fs::read_to_string(proxy.dir.path().join("admin.txt")) {
                    proxy.admin = text.trim().parse().unwrap_or(unknown);
                }
            } else if proxy.get("/ready").await.is_some_and(|(s, _)| s == 200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, body) = proxy.get("/listeners?format=json").await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let sa = &v["listener_statuses"][0]["local_address"]["socket_address"];
        proxy.listener =
            format!("{}:{}", sa["address"].as_str().unwrap(), sa["port_value"]).parse().unwrap();
        proxy
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = client().get(format!("http://{}{path}", self.admin)).send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    pub async fn counter(&self, name: &str) -> u64 {
        let (_, body) = self
            .get(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))
            .await
            .expect("admin /stats unreachable");
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    /// 4xx + 5xx answers so far.
    async fn bad_answers(&self) -> u64 {
        self.counter("http.ingress.downstream_rq_4xx").await
            + self.counter("http.ingress.downstream_rq_5xx").await
    }

    /// utime + stime in clock ticks, of Envoy and of its ext_proc picker if it has one.
    /// The Envoy process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn cpu_ticks(&self) -> u64 {
        process_ticks(self.child.id()) + self.picker_ticks()
    }

    /// utime + stime of the ext_proc picker in clock ticks; 0 without one.
    pub fn picker_ticks(&self) -> u64 {
        self.picker.as_ref().map_or(0, |p| process_ticks(p.child.id()))
    }

    /// VmRSS in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

/// utime + stime of process `pid` (all its threads) in clock ticks.
fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap()
}

/// The session cookie the Envoy at `proxy` issues to a new session, as a `Cookie` header value
/// (each `Set-Cookie` of the answer, its `name=value` part), and the id of the backend that
/// answered. Fails unless the cookie is honoured: three more requests carrying it must be
/// answered by that backend, without a new `Set-Cookie`.
pub async fn session_cookie(proxy: &Proxy) -> (String, String) {
    let url = format!("http://{}/", proxy.listener);
    let (name, value) = HASH_HEADER.split_once(": ").unwrap();
    let answer = |cookie: Option<String>| {
        let mut rq = client().get(&url).header(name, value);
        if let Some(cookie) = cookie {
            rq = rq.header("cookie", cookie);
        }
        let url = url.clone();
        async move {
            let r = rq.send().await.unwrap_or_else(|e| panic!("request to {url}: {e}"));
            assert_eq!(r.status(), 200, "{r:?}");
            let h = r.headers();
            let backend = h.get("x-backend").and_then(|v| v.to_str().ok()).unwrap_or("?");
            let set: Vec<String> = h
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok()?.split(';').next().map(|c| c.trim().to_owned()))
                .collect();
            (backend.to_owned(), set)
        }
    };
    let (backend, set) = answer(None).await;
    assert!(!set.is_empty(), "no Set-Cookie for a new session:\n{}", proxy.log());
    let cookie = set.join("; ");
    for _ in 0..3 {
        let again = answer(Some(cookie.clone())).await;
        assert_eq!(again, (backend.clone(), vec![]), "cookie `{cookie}` not honoured");
    }
    (cookie, backend)
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The wrk command line of one measurement; `cookie`: a `Cookie` header value sent on every
/// request (returning sessions).
pub fn wrk_args(url: &str, seconds: u64, cookie: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> =
        ["-t1", &format!("-c{CONNECTIONS}"), &format!("-d{seconds}s"), "-H", HASH_HEADER]
            .map(str::to_owned)
            .to_vec();
    if let Some(cookie) = cookie {
        args.extend(["-H".to_owned(), format!("Cookie: {cookie}")]);
    }
    args.push(url.to_owned());
    args
}

/// [`wrk_args`] (new sessions) as shown in RESULTS.md.
pub fn wrk_command(seconds: u64) -> String {
    let args = wrk_args("http://127.0.0.1:<port>/", seconds, None);
    format!("wrk {}", args.join(" ").replace(HASH_HEADER, &format!("'{HASH_HEADER}'")))
}

/// One wrk run against an Envoy.
pub struct WrkRun {
    pub stdout: String,
    /// Increase of `http.ingress.downstream_rq_total`.
    pub requests: u64,
    pub elapsed_s: f64,
    /// Envoy's utime + stime over the run (with its ext_proc picker's), seconds.
    pub cpu_s: f64,
    /// The ext_proc picker's part of `cpu_s`; 0 without one.
    pub picker_cpu_s: f64,
    /// VmRSS half-way through, when asked.
    pub rss_mid_kib: Option<u64>,
}

/// Header mutations of the ext_proc picker that Envoy refused (0 without ext_proc).
const REJECTED_MUTATIONS: &str = "http.ingress.ext_proc.rejected_header_mutations";

/// Runs wrk against `proxy` for `seconds` (sending `cookie` on every request, if any); fails on
/// a wrk error, on no request counted and on any 4xx/5xx answer.
pub async fn run_wrk(proxy: &Proxy, seconds: u64, rss_mid: bool, cookie: Option<&str>) -> WrkRun {
    let url = format!("http://{}/", proxy.listener);
    let rq0 = proxy.counter("http.ingress.downstream_rq_total").await;
    let bad0 = proxy.bad_answers().await;
    let rejected0 = proxy.counter(REJECTED_MUTATIONS).await;
    let (cpu0, picker0) = (proxy.cpu_ticks(), proxy.picker_ticks());
    let started = Instant::now();
    let wrk = tokio::process::Command::new("wrk")
        .args(wrk_args(&url, seconds, cookie))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk not found: run `make wrk`");
    let mut rss_mid_kib = None;
    if rss_mid {
        tokio::time::sleep(Duration::from_millis(seconds * 500)).await;
        rss_mid_kib = Some(proxy.rss_kib());
    }
    let out = wrk.wait_with_output().await.unwrap();
    let (cpu1, picker1) = (proxy.cpu_ticks(), proxy.picker_ticks());
    let elapsed_s = started.elapsed().as_secs_f64();
    let rq1 = proxy.counter("http.ingress.downstream_rq_total").await;
    let bad1 = proxy.bad_answers().await;
    let rejected1 = proxy.counter(REJECTED_MUTATIONS).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    let requests = rq1 - rq0;
    assert!(requests > 0, "no requests counted:\n{stdout}");
    // Requests cut off when wrk stops have no answer; none may be answered 4xx/5xx.
    assert_eq!(bad1, bad0, "4xx/5xx answers:\n{}", proxy.log());
    // A rejected steering header would leave the request to the fallback policy, unseen.
    assert_eq!(rejected1, rejected0, "Envoy rejected ext_proc header mutations");
    WrkRun {
        stdout,
        requests,
        elapsed_s,
        cpu_s: (cpu1 - cpu0) as f64 / clock_ticks_per_s(),
        picker_cpu_s: (picker1 - picker0) as f64 / clock_ticks_per_s(),
        rss_mid_kib,
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

pub fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter().fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)))
}

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(default)
}

pub fn shell(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

pub fn clock_ticks_per_s() -> f64 {
    shell("getconf", &["CLK_TCK"]).parse().unwrap_or(100.0)
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':'])))
        .unwrap_or("unknown")
        .to_owned()
}

/// The 1-minute load average (/proc/loadavg).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// The version field of `envoy --version`.
pub fn envoy_version() -> String {
    let text = shell(envoy_bin().to_str().unwrap(), &["--version"]);
    text.split_once("version: ").map_or(text.clone(), |(_, v)| v.to_owned())
}

/// What a section's header says about the start of its run.
pub struct RunStart {
    /// The 1-minute load average: other work on the machine.
    load: f64,
    /// `git rev-parse --short HEAD`, and whether src/ had uncommitted changes.
    head: String,
    src_dirty: bool,
}

impl RunStart {
    pub fn now() -> RunStart {
        let root = repo_root();
        let git = |args: &[&str]| {
            let mut all = vec!["-C", root.to_str().unwrap()];
            all.extend_from_slice(args);
            shell("git", &all)
        };
        RunStart {
            load: load_average(),
            head: git(&["rev-parse", "--short", "HEAD"]),
            src_dirty: !git(&["status", "--porcelain", "src"]).is_empty(),
        }
    }
}

/// The `- command:` line of a section: how to repeat the run of `bench`.
pub fn command_line(bench: &str, p: &Params, measured: std::time::Duration) -> String {
    format!(
        "- command: `BENCH_ROUNDS={} BENCH_SECONDS={} cargo bench --bench {bench}` \
         (`make bench`); {} interleaved rounds, {:.0} s of measurement\n",
        p.rounds,
        p.seconds,
        p.rounds,
        measured.as_secs_f64()
    )
}

/// The header lines every section starts with: date, machine and its load, Envoy, the filter.
pub fn run_header(start: &RunStart) -> String {
    let date = shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let shared = if start.load >= 0.5 {
        " — other work shared the machine (figures are noisier than on an idle one)"
    } else {
        ""
    };
    let built = shell("date", &["-u", "-r", wasm_path().to_str().unwrap(), "+%Y-%m-%d %H:%M UTC"]);
    format!(
        "- date: {date}\n- machine: {} CPUs (nproc), {}; 1-minute load average {:.2} before the \
         run{shared}\n- Envoy: `{}`; envoy_lb.wasm built {built}; HEAD at the start of the run \
         {}{}\n",
        shell("nproc", &[]),
        cpu_model(),
        start.load,
        envoy_version(),
        start.head,
        if start.src_dirty { " (src/ had uncommitted changes)" } else { "" }
    )
}

/// Writes the CPU section (the file's head) to `out`, keeping a latency or scale section
/// already there (and what follows the first of them).
pub fn write_cpu_section(out: &Path, md: &str) {
    let old = std::fs::read_to_string(out).unwrap_or_default();
    let headings = [LATENCY_HEADING, SCALE_HEADING, PROBES_HEADING];
    let first = headings.iter().filter_map(|h| old.find(h)).min();
    let kept = first.map_or("", |at| &old[at..]);
    let sep = if kept.is_empty() { "" } else { "\n" };
    write(out, &format!("{}{sep}{kept}", md.trim_end_matches('\n').to_owned() + "\n"));
}

/// Replaces (or appends) the latency section of `out` (its heading up to the next `## `
/// heading), keeping what precedes and what follows it: sections written by hand, such as
/// the profile, stay.
pub fn write_latency_section(out: &Path, md: &str) {
    replace_section(out, LATENCY_HEADING, md);
}

/// Replaces (or appends) the scale section of `out` as [`write_latency_section`] does its own.
pub fn write_scale_section(out: &Path, md: &str) {
    replace_section(out, SCALE_HEADING, md);
}

/// Replaces (or appends) the health-checking section of `out` (benches/probes.rs).
pub fn write_probes_section(out: &Path, md: &str) {
    replace_section(out, PROBES_HEADING, md);
}

/// Replaces the section of `out` that starts with `heading` (up to the next `## ` heading), or
/// appends `md` when there is none; what precedes and what follows stays.
fn replace_section(out: &Path, heading: &str, md: &str) {
    assert!(md.starts_with(heading));
    let old = std::fs::read_to_string(out).unwrap_or_default();
    let (head, tail) = match old.find(heading) {
        Some(at) => {
            let after = at + heading.len();
            let end = old[after..].find("\n## ").map_or(old.len(), |e| after + e + 1);
            (&old[..at], &old[end..])
        }
        None => (&*old, ""),
    };
    let head = head.trim_end_matches('\n');
    let sep = if head.is_empty() { "" } else { "\n\n" };
    let tail = if tail.is_empty() { String::new() } else { format!("\n{tail}") };
    write(out, &format!("{head}{sep}{}{tail}", md.trim_end_matches('\n').to_owned() + "\n"));
}

fn write(out: &Path, text: &str) {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(out, text).unwrap();
    eprintln!("written to {}", out.display());
}
