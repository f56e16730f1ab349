//! Plugin configuration: JSON text -> [`de::Json`] tree -> `RawConfig` (shapes and types
//! checked, unknown fields refused) -> validated [`Config`]. Every error is a [`ConfigError`]
//! that names the JSON path and says what is valid.

mod algorithm;
mod de;
mod health_check;
mod json;
mod outlier;
mod status;
mod sticky;
mod target;

use std::fmt;
use std::net::SocketAddr;

use algorithm::RawAlgorithm;
#[cfg(any(test, feature = "testing"))]
pub use algorithm::ALGORITHMS;
pub use algorithm::{Algorithm, AlgorithmConfig, HashOn};
use de::{array, boolean, int, object, shown, string, Json};
pub use health_check::HealthCheck;
use health_check::RawHealthCheck;
pub use outlier::OutlierDetection;
use outlier::RawOutlier;
pub use status::Status;
use sticky::RawSticky;
#[cfg(test)]
pub use sticky::SameSite;
pub use sticky::Sticky;
use target::{cluster_name, RawTarget};
pub use target::{Target, TargetMode, MAX_HOSTS_LIMIT};

use crate::backend::{Backend, Pool, MAX_BACKENDS};

const MAX_WEIGHT: u32 = 10_000;
const MAX_ID_LEN: usize = 64;
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
    pub pool: Pool,
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
    /// xxHash64 of the configuration text: tells configurations apart (status page).
    pub digest: u64,
}

/// Envoy's default healthy panic threshold.
const DEFAULT_PANIC_PERCENT: u32 = 50;

/// The JSON members of the top-level object, in the order messages list them.
const FIELDS: &[&str] = &[
    "cluster",
    "algorithm",
    "backends",
    "target",
    "least_request",
    "least_time",
    "hash_on",
    "maglev",
    "ring_hash",
    "balance_factor",
    "health_check",
    "panic_threshold_percent",
    "outlier_detection",
    "slow_start_ms",
    "sticky",
    "status",
];
/// `cluster` and `backends`.
const REQUIRED: u32 = 0b101;

/// The top-level object, shapes and types checked; `validate` checks the values.
struct RawConfig {
    cluster: String,
    backends: Vec<RawBackend>,
    target: RawTarget,
    balancing: RawAlgorithm,
    health_check: Option<RawHealthCheck>,
    panic_threshold_percent: Option<u32>,
    outlier_detection: Option<RawOutlier>,
    slow_start_ms: Option<u32>,
    sticky: Option<RawSticky>,
    status: Option<Status>,
}

struct RawBackend {
    id: String,
    address: Option<String>,
    cluster: Option<String>,
    weight: Option<u32>,
    backup: bool,
    drain: bool,
}

impl Config {
    /// Parses and validates the plugin configuration bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let json = json::parse(bytes).map_err(|e| {
            ConfigError::at(
                "$",
                format!("not valid JSON: {e}; valid: one JSON object (see the config reference)"),
            )
        })?;
        let raw = RawConfig::read(&json)?;
        let mut config = raw.validate()?;
        config.digest = crate::hash_key::hash(bytes);
        Ok(config)
    }
}

impl RawConfig {
    /// Reads the top-level object; members are checked in document order.
    fn read(json: &Json) -> Result<RawConfig, ConfigError> {
        let mut raw = RawConfig {
            cluster: String::new(),
            backends: Vec::new(),
            target: RawTarget::default(),
            balancing: RawAlgorithm::default(),
            health_check: None,
            panic_threshold_percent: None,
            outlier_detection: None,
            slow_start_ms: None,
            sticky: None,
            status: None,
        };
        object(json, "$", FIELDS, REQUIRED, &mut |i, v, p| {
            match i {
                0 => raw.cluster = string(v, p)?,
                2 => raw.backends = read_backends(v, p)?,
                3 => raw.target = RawTarget::read(v, p)?,
                10 => raw.health_check = Some(RawHealthCheck::read(v, p)?),
                11 => raw.panic_threshold_percent = Some(int(v, p, 0, 100)?),
                12 => raw.outlier_detection = Some(RawOutlier::read(v, p)?),
                13 => raw.slow_start_ms = Some(int(v, p, 0, 3_600_000)?),
                14 => raw.sticky = Some(RawSticky::read(v, p)?),
                15 => raw.status = Some(status::read(v, p)?),
                _ => raw.balancing.read(i, v, p)?,
            }
            Ok(())
        })?;
        Ok(raw)
    }

    fn validate(self) -> Result<Config, ConfigError> {
        cluster_name(&self.cluster).map_err(|m| ConfigError::at("$.cluster", m))?;
        let target = self.target.validate(self.health_check.is_some())?;
        let pool = validate_backends(self.backends, target.mode)?;
        let balancing = self.balancing.validate(pool.len())?;
        let mut health_check = self.health_check.map(RawHealthCheck::validate).transpose()?;
        if let Some(check) = health_check.as_mut().filter(|c| c.host.is_none()) {
            let host = health_check::default_host(&self.cluster)
                .map_err(|m| ConfigError::at("$.health_check.host", m))?;
            check.host = Some(host);
        }
        if pool.iter().all(|b| b.backup) {
            return Err(ConfigError::at(
                "$.backends",
                "holds only backups; valid: at least one backend without \"backup\": true",
            ));
        }
        if pool.iter().all(|b| b.drain) {
            return Err(ConfigError::at(
                "$.backends",
                "all backends drain; valid: at least one backend without \"drain\": true",
            ));
        }
        Ok(Config {
            cluster: self.cluster,
            algorithm: balancing.algorithm,
            balancing,
            pool,
            target,
            health_check,
            panic_threshold_percent: self.panic_threshold_percent.unwrap_or(DEFAULT_PANIC_PERCENT),
            outlier_detection: self.outlier_detection.map(RawOutlier::validate).transpose()?,
            slow_start_ms: self.slow_start_ms.map_or(0, u64::from),
            sticky: self.sticky.map(RawSticky::validate).transpose()?,
            status: self.status,
            digest: 0,
        })
    }
}

fn read_backends(v: &Json, path: &str) -> Result<Vec<RawBackend>, ConfigError> {
    let items = array(v, path)?;
    let mut backends = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        backends.push(RawBackend::read(item, &format!("{path}[{i}]"))?);
    }
    Ok(backends)
}

impl RawBackend {
    fn read(v: &Json, path: &str) -> Result<RawBackend, ConfigError> {
        let mut b = RawBackend {
            id: String::new(),
            address: None,
            cluster: None,
            weight: None,
            backup: false,
            drain: false,
        };
        // `id` is required; `address` or `cluster`, by target mode, when validated.
        let fields = &["id", "address", "cluster", "weight", "backup", "drain"];
        object(v, path, fields, 0b001, &mut |i, v, p| {
            match i {
                0 => b.id = string(v, p)?,
                1 => b.address = Some(string(v, p)?),
                2 => b.cluster = Some(string(v, p)?),
                3 => b.weight = Some(int(v, p, 1, MAX_WEIGHT)?),
                4 => b.backup = boolean(v, p)?,
                _ => b.drain = boolean(v, p)?,
            }
            Ok(())
        })?;
        Ok(b)
    }
}

fn validate_backends(raw: Vec<RawBackend>, mode: TargetMode) -> Result<Pool, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::at("$.backends", "is empty; valid: at least one backend"));
    }
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
        validate_id(&b.id).map_err(|m| ConfigError::at(format!("$.backends[{i}].id"), m))?;
        if let Some(first) = ids.insert(&b.id, i) {
            return Err(ConfigError::at(
                format!("$.backends[{i}].id"),
                format!(
                    "duplicate id {:?} (also $.backends[{first}].id); valid: unique ids",
                    shown(&b.id)
                ),
            ));
        }
        let weight = b.weight.unwrap_or(1);
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
            Backend::in_cluster(b.id.clone(), cluster.to_string(), weight)
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
            Backend::new(b.id.clone(), address, weight)
        };
        let backend = if b.backup { backend.into_backup() } else { backend };
        backends.push(if b.drain { backend.draining() } else { backend });
    }
    Ok(Pool::new(backends))
}

/// Where backend `i` is, in `mode`: `wanted` (`address` or `cluster`) must be there and
/// `other` must not.
fn located<'a>(
    wanted: &'a Option<String>,
    other: &Option<String>,
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
    wanted.as_deref().ok_or_else(|| {
        ConfigError::at(
            format!("$.backends[{i}]"),
            format!("missing field `{wanted_name}`; valid: {valid}"),
        )
    })
}

fn validate_id(id: &str) -> Result<(), String> {
    let ok_len = !id.is_empty() && id.len() <= MAX_ID_LEN;
    let ok_chars = id.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok_len && ok_chars {
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
