//! Plugin configuration: JSON text -> serde `RawConfig` (unknown fields refused) -> validated
//! [`Config`]. Every error is a [`ConfigError`] that names the JSON path and says what is valid.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_path_to_error::Segment;

use crate::backend::{Backend, Pool, MAX_BACKENDS};

/// Steering header used when `target.header` is absent: the one Envoy's override_host docs and
/// the Gateway API inference extension use.
pub const DEFAULT_STEERING_HEADER: &str = "x-gateway-destination-endpoint";
/// Upper bound of `target.max_hosts` (primary + retry hosts in the steering header).
pub const MAX_HOSTS_LIMIT: usize = 10;
const DEFAULT_MAX_HOSTS: usize = 3;
const MAX_WEIGHT: i64 = 10_000;
const MAX_ID_LEN: usize = 64;
const MAX_CLUSTER_LEN: usize = 256;

/// A refused configuration: `path` is a JSON path such as `$.backends[1].weight`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// How backends are chosen; the JSON names are the public interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Smooth weighted round robin (nginx).
    #[default]
    RoundRobin,
    /// Weighted random.
    Random,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::Random => "random",
        }
    }
}

/// How the chosen backend is handed to Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    pub pool: Pool,
    pub target: Target,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cluster: String,
    #[serde(default)]
    algorithm: Algorithm,
    backends: Vec<Obj<RawBackend>>,
    #[serde(default)]
    target: Option<Obj<RawTarget>>,
}

/// A struct that must be written as a JSON object: serde's derive would also accept an array
/// of the field values in order, skipping field names and `deny_unknown_fields`.
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectOnly<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOnly<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(ObjectOnly(std::marker::PhantomData)).map(Obj)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    id: String,
    address: String,
    #[serde(default = "default_weight", deserialize_with = "weight")]
    weight: i64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    #[serde(default)]
    mode: TargetMode,
    header: Option<String>,
    #[serde(default, deserialize_with = "max_hosts")]
    max_hosts: Option<i64>,
}

fn default_weight() -> i64 {
    1
}

fn weight<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(BoundedInt { min: 1, max: MAX_WEIGHT })
}

fn max_hosts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    d.deserialize_any(BoundedInt { min: 1, max: MAX_HOSTS_LIMIT as i64 }).map(Some)
}

/// Accepts a JSON integer within `min..=max`; the serde error says so in words.
struct BoundedInt {
    min: i64,
    max: i64,
}

impl BoundedInt {
    fn check<E: de::Error>(&self, v: i128) -> Result<i64, E> {
        if v < i128::from(self.min) || v > i128::from(self.max) {
            return Err(E::custom(format!(
                "{v} is out of range; valid: an integer from {} to {}",
                self.min, self.max
            )));
        }
        i64::try_from(v).map_err(|_| E::custom("integer out of range"))
    }
}

impl<'de> Visitor<'de> for BoundedInt {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an integer from {} to {}", self.min, self.max)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        self.check(i128::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        self.check(i128::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        Err(E::invalid_type(de::Unexpected::Float(v), &self))
    }
}

impl Config {
    /// Parses and validates the plugin configuration bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw: Obj<RawConfig> = serde_path_to_error::deserialize(&mut de).map_err(serde_error)?;
        de.end().map_err(|e| {
            ConfigError::at("$", format!("{e} after the JSON object; valid: one JSON object only"))
        })?;
        raw.0.validate()
    }
}

fn serde_error(e: serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
    let path = json_path(e.path());
    let inner = e.into_inner();
    let text = inner.to_string();
    let message = if inner.is_syntax() || inner.is_eof() {
        format!("not valid JSON: {text}; valid: one JSON object (see the config reference)")
    } else if text.starts_with("missing field") {
        format!("{text}; valid: an object with that field (see the config reference)")
    } else {
        text
    };
    ConfigError::at(path, message)
}

/// `$`, then `.name` or `["odd name"]` per object key and `[i]` per array index; stops at the
/// first segment serde could not name (a syntax error between members).
fn json_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::from("$");
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                let plain = !key.is_empty()
                    && key.len() <= 64
                    && key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
                if plain {
                    out.push('.');
                    out.push_str(key);
                } else {
                    out.push_str(&format!("[{:?}]", shown(key)));
                }
            }
            Segment::Unknown => break,
        }
    }
    out
}

/// A value quoted in an error message, cut to 80 characters so a huge input makes a short line.
fn shown(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}... ({} bytes)", &s[..cut], s.len()),
    }
}

impl RawConfig {
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
        let pool = validate_backends(self.backends.into_iter().map(|b| b.0).collect())?;
        let target = self.target.map(|t| t.0).unwrap_or_default().validate()?;
        Ok(Config { cluster: self.cluster, algorithm: self.algorithm, pool, target })
    }
}

impl RawTarget {
    fn validate(self) -> Result<Target, ConfigError> {
        let header = match self.header {
            None => DEFAULT_STEERING_HEADER.to_string(),
            Some(h) => {
                validate_header_name(&h).map_err(|m| ConfigError::at("$.target.header", m))?
            }
        };
        let max_hosts = match self.max_hosts {
            None => DEFAULT_MAX_HOSTS,
            Some(n) => usize::try_from(n).unwrap_or(DEFAULT_MAX_HOSTS),
        };
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
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(raw.len());
    let mut addrs: HashMap<SocketAddr, usize> = HashMap::with_capacity(raw.len());
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
        let weight = u32::try_from(b.weight).unwrap_or(1);
        backends.push(Backend::new(b.id.clone(), address, weight));
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

/// An HTTP header name (RFC 9110 token), stored lower-case as Envoy does.
fn validate_header_name(h: &str) -> Result<String, String> {
    const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~";
    let ok = !h.is_empty()
        && h.len() <= 256
        && h.bytes().all(|c| c.is_ascii_alphanumeric() || TCHAR.contains(&c));
    if ok {
        Ok(h.to_ascii_lowercase())
    } else {
        Err(format!(
            "{:?} is not a header name; valid: 1 to 256 token characters (RFC 9110), \
             e.g. {DEFAULT_STEERING_HEADER}",
            shown(h)
        ))
    }
}

#[cfg(test)]
mod tests;
