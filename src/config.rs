//! Plugin configuration: JSON text -> [`de::Json`] tree -> `RawConfig` (shapes and types
//! checked, unknown fields refused) -> validated [`Config`]. Every error is a [`ConfigError`]
//! that names the JSON path and says what is valid.

mod algorithm;
mod de;
mod health_check;
mod outlier;
mod sticky;

use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;

use algorithm::RawAlgorithm;
pub use algorithm::{Algorithm, AlgorithmConfig, HashOn, ALGORITHMS, DEFAULT_MAGLEV_TABLE_SIZE};
use de::{array, boolean, header_name, int, object, shown, string, variant, Json};
pub use health_check::HealthCheck;
use health_check::RawHealthCheck;
pub use outlier::OutlierDetection;
use outlier::RawOutlier;
use sticky::RawSticky;
pub use sticky::{SameSite, Sticky};

use crate::backend::{Backend, Pool, MAX_BACKENDS};

/// Steering header used when `target.header` is absent: the one Envoy's override_host docs and
/// the Gateway API inference extension use.
pub const DEFAULT_STEERING_HEADER: &str = "x-gateway-destination-endpoint";
/// Upper bound of `target.max_hosts` (primary + retry hosts in the steering header).
pub const MAX_HOSTS_LIMIT: usize = 10;
const DEFAULT_MAX_HOSTS: usize = 3;
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

/// How the chosen backend is handed to Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetMode {
    /// `envoy.load_balancing_policies.override_host` reads `ip:port[,ip:port...]` from a header.
    #[default]
    OverrideHost,
}

/// Where and how the picks are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub mode: TargetMode,
    /// Lower-case request header name.
    pub header: String,
    /// Primary pick + up to `max_hosts - 1` distinct retry hosts.
    pub max_hosts: usize,
}

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
}

struct RawBackend {
    id: String,
    address: String,
    weight: Option<u32>,
    backup: bool,
    drain: bool,
}

#[derive(Default)]
struct RawTarget {
    mode: TargetMode,
    header: Option<String>,
    max_hosts: Option<u32>,
}

impl Config {
    /// Parses and validates the plugin configuration bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let json = Json::deserialize(&mut de).map_err(|e| {
            ConfigError::at(
                "$",
                format!("not valid JSON: {e}; valid: one JSON object (see the config reference)"),
            )
        })?;
        let raw = RawConfig::read(&json)?;
        de.end().map_err(|e| {
            ConfigError::at("$", format!("{e} after the JSON object; valid: one JSON object only"))
        })?;
        raw.validate()
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
                _ => raw.balancing.read(i, v, p)?,
            }
            Ok(())
        })?;
        Ok(raw)
    }

    fn validate(self) -> Result<Config, ConfigError> {
        let cluster_ok = !self.cluster.trim().is_empty()
            && self.cluster.len() <= MAX_CLUSTER_LEN
            && !self.cluster.chars().any(char::is_control);
        if !cluster_ok {
            return Err(ConfigError::at(
                "$.cluster",
                format!(
                    "{:?} is not a cluster name; valid: the name of the Envoy cluster that holds \
                     the backends, 1 to {MAX_CLUSTER_LEN} characters, no control characters",
                    shown(&self.cluster)
                ),
            ));
        }
        let pool = validate_backends(self.backends)?;
        let target = self.target.validate()?;
        let balancing = self.balancing.validate(pool.len())?;
        let health_check = self.health_check.map(RawHealthCheck::validate).transpose()?;
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
            address: String::new(),
            weight: None,
            backup: false,
            drain: false,
        };
        // `id` and `address` are required.
        let fields = &["id", "address", "weight", "backup", "drain"];
        object(v, path, fields, 0b011, &mut |i, v, p| {
            match i {
                0 => b.id = string(v, p)?,
                1 => b.address = string(v, p)?,
                2 => b.weight = Some(int(v, p, 1, MAX_WEIGHT)?),
                3 => b.backup = boolean(v, p)?,
                _ => b.drain = boolean(v, p)?,
            }
            Ok(())
        })?;
        Ok(b)
    }
}

impl RawTarget {
    fn read(v: &Json, path: &str) -> Result<RawTarget, ConfigError> {
        let mut t = RawTarget::default();
        object(v, path, &["mode", "header", "max_hosts"], 0, &mut |i, v, p| {
            match i {
                0 => {
                    variant(v, p, &["override_host"])?;
                    t.mode = TargetMode::OverrideHost;
                }
                1 => t.header = Some(string(v, p)?),
                _ => t.max_hosts = Some(int(v, p, 1, MAX_HOSTS_LIMIT as u32)?),
            }
            Ok(())
        })?;
        Ok(t)
    }

    fn validate(self) -> Result<Target, ConfigError> {
        let header = match self.header {
            None => DEFAULT_STEERING_HEADER.to_string(),
            Some(h) => header_name(&h, DEFAULT_STEERING_HEADER)
                .map_err(|m| ConfigError::at("$.target.header", m))?,
        };
        let max_hosts = self.max_hosts.map_or(DEFAULT_MAX_HOSTS, |n| n as usize);
        Ok(Target { mode: self.mode, header, max_hosts })
    }
}

fn validate_backends(raw: Vec<RawBackend>) -> Result<Pool, ConfigError> {
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
        let address = parse_address(&b.address)
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
        let weight = b.weight.unwrap_or(1);
        let backend = Backend::new(b.id.clone(), address, weight);
        let backend = if b.backup { backend.as_backup() } else { backend };
        backends.push(if b.drain { backend.draining() } else { backend });
    }
    Ok(Pool::new(backends))
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
