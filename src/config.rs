//! Plugin configuration: JSON text -> `RawConfig` (serde: members matched by name, shapes and
//! types checked, unknown and repeated members refused; see [`read`]) -> `validate()` (ranges
//! that relate, address syntax, uniqueness, cross-field rules) -> [`Config`]. Every error is a
//! [`ConfigError`] that names the JSON path and says what is valid.

mod algorithm;
mod discovery;
mod health_check;
mod outlier;
mod read;
pub(crate) use read::json_value;
mod status;
mod sticky;
mod target;
mod text;

use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;

#[cfg(any(test, feature = "testing"))]
pub use algorithm::ALGORITHMS;
pub use algorithm::{Algorithm, AlgorithmConfig, HashOn};
use algorithm::{
    RawAlgorithm, RawCswrr, RawHashOn, RawLeastLoad, RawLeastRequest, RawLeastTime, RawMaglev,
    RawRingHash,
};
use discovery::RawDiscovery;
pub use discovery::{Discovery, DiscoverySource};
pub use health_check::HealthCheck;
use health_check::RawHealthCheck;
pub use outlier::OutlierDetection;
use outlier::RawOutlier;
use read::{Flag, Int, List, Name, Num, Obj, Opt, Str};
use status::RawStatus;
pub use status::Status;
use sticky::RawSticky;
#[cfg(test)]
pub use sticky::SameSite;
pub use sticky::Sticky;
use target::{cluster_name, RawTarget};
pub use target::{Target, TargetMode, MAX_HOSTS_LIMIT};

use crate::backend::{is_valid_id, Backend, Pool, MAX_BACKENDS, MAX_ID_LEN};
use text::shown;

const MAX_WEIGHT: u32 = 10_000;
const MAX_CLUSTER_LEN: usize = 256;

/// A refused configuration: `path` is a JSON path such as `$.backends[1].weight`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A validated plugin configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub cluster: String,
    pub algorithm: Algorithm,
    /// The algorithm with its tuning (defaults where the JSON has no block).
    pub balancing: AlgorithmConfig,
    /// The backends: the configured list, or with `discovery` the last snapshot of the
    /// followed cluster (empty until the first one).
    pub pool: Pool,
    /// With `discovery`: the configured `backends`, applied by address to discovered
    /// endpoints (id, weight, backup, drain). Empty otherwise.
    pub overrides: Vec<Backend>,
    /// Following Envoy's own cluster; `None` when the JSON has no `discovery` block.
    pub discovery: Option<Discovery>,
    pub target: Target,
    /// Active health checks; `None` when the JSON has no `health_check` block.
    pub health_check: Option<HealthCheck>,
    /// Panic (pick across all primaries) when fewer than this percent of primaries are
    /// available; 0 disables.
    pub panic_threshold_percent: u32,
    /// Passive ejection; `None` when the JSON has no `outlier_detection` block.
    pub outlier_detection: Option<OutlierDetection>,
    /// Linear ramp of a backend's share from 10% to 100% after it becomes available; 0: off.
    pub slow_start_ms: u64,
    /// Cookie affinity; `None` when the JSON has no `sticky` block.
    pub sticky: Option<Sticky>,
    /// The local status endpoint; `None` when the JSON has no `status` block.
    pub status: Option<Status>,
    /// How load reports are asked for and shown to clients (used by the algorithms that read
    /// them).
    pub load_reports: LoadReports,
    /// xxHash64 of the configuration text: tells configurations apart (status page).
    pub digest: u64,
}

/// Envoy's default healthy panic threshold.
const DEFAULT_PANIC_PERCENT: u32 = 50;

/// The top-level object, shapes and types checked; `validate` checks the values. The members'
/// order is the order messages list them in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cluster: Str,
    algorithm: Option<Name<Algorithm>>,
    backends: Option<List<Obj<RawBackend>>>,
    discovery: Option<Obj<RawDiscovery>>,
    target: Option<Obj<RawTarget>>,
    least_request: Option<Obj<RawLeastRequest>>,
    least_time: Option<Obj<RawLeastTime>>,
    hash_on: Option<Obj<RawHashOn>>,
    maglev: Option<Obj<RawMaglev>>,
    ring_hash: Option<Obj<RawRingHash>>,
    #[serde(default)]
    balance_factor: Opt<Num<1, 100>>,
    client_side_weighted_round_robin: Option<Obj<RawCswrr>>,
    least_load: Option<Obj<RawLeastLoad>>,
    load_reports: Option<Obj<RawLoadReports>>,
    health_check: Option<Obj<RawHealthCheck>>,
    #[serde(default)]
    panic_threshold_percent: Opt<Int<0, 100>>,
    outlier_detection: Option<Obj<RawOutlier>>,
    #[serde(default)]
    slow_start_ms: Opt<Int<0, 3_600_000>>,
    sticky: Option<Obj<RawSticky>>,
    status: Option<Obj<RawStatus>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    id: Str,
    address: Option<Str>,
    cluster: Option<Str>,
    #[serde(default)]
    weight: Opt<Int<1, MAX_WEIGHT>>,
    backup: Option<Flag>,
    drain: Option<Flag>,
}

impl Config {
    /// Where the pool comes from, for log lines: `3 backends`, or with discovery `backends of
    /// cluster pool through admin cluster envoy_admin (eds, every 1000 ms; 1 listed)`.
    pub fn pool_summary(&self) -> String {
        match &self.discovery {
            None => format!("{} backends", self.pool.len()),
            Some(d) => format!(
                "backends of cluster {} through admin cluster {} ({}, every {} ms; {} listed)",
                d.cluster,
                d.admin_cluster,
                d.source.name(),
                d.interval_ms,
                self.overrides.len()
            ),
        }
    }

    /// Parses and validates the plugin configuration bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let raw: Obj<RawConfig> = read::parse(bytes)?;
        let mut config = raw.0.validate()?;
        config.digest = crate::hash_key::hash(bytes);
        Ok(config)
    }
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let cluster = self.cluster.0;
        cluster_name(&cluster).map_err(|m| ConfigError::at("$.cluster", m))?;
        let target = self.target.map(|t| t.0).unwrap_or_default();
        let target = target.validate(self.health_check.is_some())?;
        let discovery = self.discovery.map(|d| d.0.validate(&cluster)).transpose()?;
        let backends: Vec<RawBackend> =
            self.backends.map(|l| l.0.into_iter().map(|b| b.0).collect()).unwrap_or_default();
        if discovery.is_some() && target.mode == TargetMode::ClusterHeader {
            return Err(ConfigError::at(
                "$.discovery",
                "does not apply with target.mode \"cluster_header\" (each backend is a \
                 cluster); valid: remove it, or use target.mode \"override_host\" or \
                 \"original_dst\"",
            ));
        }
        if discovery.is_none() && backends.is_empty() {
            return Err(ConfigError::at(
                "$.backends",
                "is empty or missing; valid: at least one backend, or a \"discovery\" block \
                 to follow the endpoints of an Envoy cluster",
            ));
        }
        let listed = validate_backends(backends, target.mode)?;
        if discovery.is_some() {
            for (i, b) in listed.iter().enumerate() {
                let other = crate::discovery::pool::derived_address(&b.id);
                if let Some(other) = other.filter(|&a| Some(a) != b.address) {
                    return Err(ConfigError::at(
                        format!("$.backends[{i}].id"),
                        format!(
                            "{:?} is the id derived for the discovered endpoint {other}; \
                             valid: an id that is not of the form ip_port",
                            shown(&b.id)
                        ),
                    ));
                }
            }
        }
        let (pool, overrides) = if discovery.is_some() {
            (Pool::default(), listed.iter().cloned().collect())
        } else {
            (listed, Vec::new())
        };
        let balancing = RawAlgorithm {
            algorithm: self.algorithm.map(|a| a.0).unwrap_or_default(),
            least_request: self.least_request.map(|b| b.0),
            least_time: self.least_time.map(|b| b.0),
            hash_on: self.hash_on.map(|b| b.0),
            maglev: self.maglev.map(|b| b.0),
            ring_hash: self.ring_hash.map(|b| b.0),
            balance_factor: self.balance_factor.map(|n| n.0),
            client_side_weighted_round_robin: self.client_side_weighted_round_robin.map(|b| b.0),
            least_load: self.least_load.map(|b| b.0),
        }
        .validate(pool.len())?;
        if self.load_reports.is_some() && !balancing.algorithm.reads_reports() {
            return Err(ConfigError::at(
                "$.load_reports",
                "does not apply to the chosen algorithm; valid: remove it, or use it with \
                 client_side_weighted_round_robin or least_load",
            ));
        }
        let load_reports = self.load_reports.map(|r| r.0.validate()).transpose()?;
        let load_reports = load_reports.unwrap_or_default();
        let health_check = self.health_check.map(|h| h.0.validate()).transpose()?;
        let mut health_check = health_check;
        if let Some(check) = health_check.as_mut().filter(|c| c.host.is_none()) {
            let host = health_check::default_host(&cluster)
                .map_err(|m| ConfigError::at("$.health_check.host", m))?;
            check.host = Some(host);
        }
        if discovery.is_none() && pool.iter().all(|b| b.backup) {
            return Err(ConfigError::at(
                "$.backends",
                "holds only backups; valid: at least one backend without \"backup\": true",
            ));
        }
        if discovery.is_none() && pool.iter().all(|b| b.drain) {
            return Err(ConfigError::at(
                "$.backends",
                "all backends drain; valid: at least one backend without \"drain\": true",
            ));
        }
        Ok(Config {
            cluster,
            algorithm: balancing.algorithm,
            balancing,
            pool,
            overrides,
            discovery,
            target,
            health_check,
            panic_threshold_percent: self
                .panic_threshold_percent
                .map_or(DEFAULT_PANIC_PERCENT, |n| n.0),
            outlier_detection: self.outlier_detection.map(|o| o.0.validate()).transpose()?,
            slow_start_ms: self.slow_start_ms.map_or(0, |n| u64::from(n.0)),
            sticky: self.sticky.map(|s| s.0.validate()).transpose()?,
            status: self.status.map(|s| s.0.validate()).transpose()?,
            load_reports,
            digest: 0,
        })
    }
}

/// The `load_reports` block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadReports {
    /// A request header (lower-case name, value) added to ask backends for reports.
    pub request_header: Option<(String, String)>,
    /// Remove the report headers from the response the client gets.
    pub remove_from_response: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoadReports {
    request_header: Option<Str>,
    request_header_value: Option<Str>,
    remove_from_response: Option<Flag>,
}

impl RawLoadReports {
    fn validate(self) -> Result<LoadReports, ConfigError> {
        let request_header = match (self.request_header, self.request_header_value) {
            (None, None) => None,
            (Some(Str(name)), value) => {
                let name = text::header_name(&name, "endpoint-load-metrics-format")
                    .map_err(|m| ConfigError::at("$.load_reports.request_header", m))?;
                if name.starts_with(':') || name == "host" {
                    return Err(ConfigError::at(
                        "$.load_reports.request_header",
                        "names a header Envoy routes on; valid: e.g. endpoint-load-metrics-format",
                    ));
                }
                let value = value.map_or_else(|| "TEXT".to_string(), |v| v.0);
                let ok = value.len() <= 256
                    && value.bytes().all(|c| c == b'\t' || (b' '..0x7f).contains(&c));
                if !ok {
                    return Err(ConfigError::at(
                        "$.load_reports.request_header_value",
                        format!("{:?} is not a header value; valid: up to 256 visible ASCII characters, e.g. TEXT", shown(&value)),
                    ));
                }
                Some((name, value))
            }
            (None, Some(_)) => {
                return Err(ConfigError::at(
                    "$.load_reports.request_header_value",
                    "needs request_header; valid: set both, e.g. \"request_header\": \
                     \"endpoint-load-metrics-format\", \"request_header_value\": \"TEXT\"",
                ))
            }
        };
        Ok(LoadReports {
            request_header,
            remove_from_response: self.remove_from_response.is_some_and(|f| f.0),
        })
    }
}

fn validate_backends(raw: Vec<RawBackend>, mode: TargetMode) -> Result<Pool, ConfigError> {
    if raw.len() > MAX_BACKENDS {
        return Err(ConfigError::at(
            "$.backends",
            format!("has {} backends; valid: at most {MAX_BACKENDS}", raw.len()),
        ));
    }
    let mut ids: fnv::FnvHashMap<&str, usize> = fnv::FnvHashMap::default();
    let mut addrs: fnv::FnvHashMap<SocketAddr, usize> = fnv::FnvHashMap::default();
    let mut clusters: fnv::FnvHashMap<&str, usize> = fnv::FnvHashMap::default();
    let mut backends = Vec::with_capacity(raw.len());
    for (i, b) in raw.iter().enumerate() {
        let id = b.id.0.as_str();
        validate_id(id).map_err(|m| ConfigError::at(format!("$.backends[{i}].id"), m))?;
        if let Some(first) = ids.insert(id, i) {
            return Err(ConfigError::at(
                format!("$.backends[{i}].id"),
                format!(
                    "duplicate id {:?} (also $.backends[{first}].id); valid: unique ids",
                    shown(id)
                ),
            ));
        }
        let weight = b.weight.as_ref().map_or(1, |w| w.0);
        let backend = if mode == TargetMode::ClusterHeader {
            let cluster = located(&b.cluster, &b.address, i, "cluster", "address", mode)?;
            cluster_name(cluster)
                .map_err(|m| ConfigError::at(format!("$.backends[{i}].cluster"), m))?;
            if let Some(first) = clusters.insert(cluster, i) {
                return Err(ConfigError::at(
                    format!("$.backends[{i}].cluster"),
                    format!(
                        "duplicate cluster {:?} (also $.backends[{first}].cluster); \
                         valid: one backend per cluster",
                        shown(cluster)
                    ),
                ));
            }
            Backend::in_cluster(id.to_string(), cluster.to_string(), weight)
        } else {
            let address = located(&b.address, &b.cluster, i, "address", "cluster", mode)?;
            let address = parse_address(address)
                .map_err(|m| ConfigError::at(format!("$.backends[{i}].address"), m))?;
            if let Some(first) = addrs.insert(address, i) {
                return Err(ConfigError::at(
                    format!("$.backends[{i}].address"),
                    format!(
                        "duplicate address {address} (also $.backends[{first}].address); \
                         valid: one backend per address"
                    ),
                ));
            }
            Backend::new(id.to_string(), address, weight)
        };
        let backend =
            if b.backup.as_ref().is_some_and(|f| f.0) { backend.into_backup() } else { backend };
        backends.push(if b.drain.as_ref().is_some_and(|f| f.0) {
            backend.draining()
        } else {
            backend
        });
    }
    Ok(Pool::new(backends))
}

/// Where backend `i` is, in `mode`: `wanted` (`address` or `cluster`) must be there and
/// `other` must not.
fn located<'a>(
    wanted: &'a Option<Str>,
    other: &Option<Str>,
    i: usize,
    wanted_name: &str,
    other_name: &str,
    mode: TargetMode,
) -> Result<&'a str, ConfigError> {
    let valid = if mode == TargetMode::ClusterHeader {
        "with target.mode \"cluster_header\" each backend names its Envoy cluster"
    } else {
        "each backend has an ip:port address (\"cluster\" is for target.mode \"cluster_header\")"
    };
    if other.is_some() {
        return Err(ConfigError::at(
            format!("$.backends[{i}].{other_name}"),
            format!("is not used with target.mode \"{}\"; valid: {valid}", mode.name()),
        ));
    }
    wanted.as_ref().map(|s| s.0.as_str()).ok_or_else(|| {
        ConfigError::at(
            format!("$.backends[{i}]"),
            format!("missing field `{wanted_name}`; valid: {valid}"),
        )
    })
}

fn validate_id(id: &str) -> Result<(), String> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a valid id; valid: 1 to {MAX_ID_LEN} characters from [A-Za-z0-9_.-]",
            shown(id)
        ))
    }
}

/// `ip:port` with an IPv4 address or `[IPv6]:port`; port 1-65535; no host names, no zone ids.
fn parse_address(s: &str) -> Result<SocketAddr, String> {
    let valid = "valid: ip:port, e.g. 10.0.0.1:8080 or [2001:db8::1]:8080";
    let addr: SocketAddr = s.parse().map_err(|_| format!("{s:?} is not an address; {valid}"))?;
    if addr.port() == 0 {
        return Err(format!("{s:?} has port 0; {valid} with a port from 1 to 65535"));
    }
    if let SocketAddr::V6(v6) = addr {
        if v6.scope_id() != 0 || v6.flowinfo() != 0 {
            return Err(format!("{s:?} has a zone id; {valid}"));
        }
    }
    if addr.ip().is_unspecified() {
        return Err(format!("{s:?} is the unspecified address; {valid}"));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests;
