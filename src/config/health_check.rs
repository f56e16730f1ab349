//! The `health_check` block: active HTTP checks of every backend, sent by one prober per proxy.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::read::{Int, List, Opt, Str};
use super::text::shown;
use super::ConfigError;

/// Validated active health-check settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Request path, starting with `/`.
    pub path: String,
    pub interval_ms: u64,
    /// Strictly below `interval_ms`.
    pub timeout_ms: u64,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// Inclusive status ranges counted as healthy.
    pub expected_statuses: Vec<(u16, u16)>,
    /// Each backend's interval is shifted by up to ± this much (at most half the interval).
    pub jitter_ms: u64,
    /// `:authority` of the probe. In a validated [`crate::config::Config`] always set: when
    /// the JSON has none, derived from the cluster name (`default_host`).
    pub host: Option<String>,
}

impl HealthCheck {
    /// Whether `status` is in one of the expected ranges.
    pub fn expects(&self, status: u16) -> bool {
        self.expected_statuses.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

/// `path` when the JSON has none.
const DEFAULT_HEALTH_CHECK_PATH: &str = "/healthz";
const MAX_PATH_LEN: usize = 1024;
const MAX_HOST_LEN: usize = 255;
const MIN_INTERVAL_MS: u32 = 10;
const MAX_MS: u32 = 3_600_000;
const MAX_THRESHOLD: u32 = 100;
const MIN_STATUS: u16 = 100;
const MAX_STATUS: u16 = 599;
const MAX_STATUS_RANGES: usize = 32;
const STATUS_VALID: &str = "valid: [lo, hi] with 100 <= lo <= hi <= 599, e.g. [200, 299]";

impl Default for HealthCheck {
    /// The settings of `"health_check": {}`.
    fn default() -> Self {
        HealthCheck {
            path: DEFAULT_HEALTH_CHECK_PATH.to_string(),
            interval_ms: 2_000,
            timeout_ms: 1_000,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            expected_statuses: vec![(200, 299)],
            jitter_ms: 0,
            host: None,
        }
    }
}

/// The `health_check` object, shapes and types checked (and numbers bounded); `validate`
/// checks the strings and how the values relate.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    path: Option<Str>,
    #[serde(default)]
    interval_ms: Opt<Int<MIN_INTERVAL_MS, MAX_MS>>,
    #[serde(default)]
    timeout_ms: Opt<Int<1, MAX_MS>>,
    #[serde(default)]
    healthy_threshold: Opt<Int<1, MAX_THRESHOLD>>,
    #[serde(default)]
    unhealthy_threshold: Opt<Int<1, MAX_THRESHOLD>>,
    expected_statuses: Option<List<StatusRange>>,
    #[serde(default)]
    jitter_ms: Opt<Int<0, MAX_MS>>,
    host: Option<Str>,
}

impl RawHealthCheck {
    pub(super) fn validate(self) -> Result<HealthCheck, ConfigError> {
        let d = HealthCheck::default();
        let path = match self.path {
            None => d.path,
            Some(Str(p)) => {
                validate_path(&p).map_err(|m| ConfigError::at("$.health_check.path", m))?
            }
        };
        let interval_ms = self.interval_ms.map_or(d.interval_ms, |n| u64::from(n.0));
        let timeout_ms = self.timeout_ms.as_ref().map_or(d.timeout_ms, |n| u64::from(n.0));
        if timeout_ms >= interval_ms {
            let default = if self.timeout_ms.is_none() { " (the default)" } else { "" };
            return Err(ConfigError::at(
                "$.health_check.timeout_ms",
                format!(
                    "{timeout_ms}{default} is not below interval_ms {interval_ms}; valid: a \
                     timeout shorter than the interval"
                ),
            ));
        }
        let jitter_ms = self.jitter_ms.map_or(d.jitter_ms, |n| u64::from(n.0));
        if jitter_ms > interval_ms / 2 {
            return Err(ConfigError::at(
                "$.health_check.jitter_ms",
                format!(
                    "{jitter_ms} is above half of interval_ms {interval_ms}; valid: 0 to {}",
                    interval_ms / 2
                ),
            ));
        }
        let expected_statuses = match self.expected_statuses.map(|l| l.0) {
            None => d.expected_statuses,
            Some(s) if s.is_empty() || s.len() > MAX_STATUS_RANGES => {
                return Err(ConfigError::at(
                    "$.health_check.expected_statuses",
                    format!(
                        "has {} ranges; valid: 1 to {MAX_STATUS_RANGES} ranges [lo, hi], \
                         e.g. [[200, 299]]",
                        s.len()
                    ),
                ));
            }
            Some(s) => s.into_iter().map(|r| (r.0, r.1)).collect(),
        };
        let host = match self.host {
            None => None,
            Some(Str(h)) => {
                Some(validate_host(&h).map_err(|m| ConfigError::at("$.health_check.host", m))?)
            }
        };
        Ok(HealthCheck {
            path,
            interval_ms,
            timeout_ms,
            healthy_threshold: self.healthy_threshold.map_or(d.healthy_threshold, |n| n.0),
            unhealthy_threshold: self.unhealthy_threshold.map_or(d.unhealthy_threshold, |n| n.0),
            expected_statuses,
            jitter_ms,
            host,
        })
    }
}

/// An `expected_statuses` item: `[lo, hi]`, integer status codes from 100 to 599 with
/// `lo <= hi`; anything else is refused at the item's path, quoted short.
pub(super) struct StatusRange(u16, u16);

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let item = Value::deserialize(d)?;
        let range = match &item {
            Value::Array(pair) => match pair.as_slice() {
                [lo, hi] => status(lo).zip(status(hi)).filter(|(lo, hi)| lo <= hi),
                _ => None,
            },
            _ => None,
        };
        range.map(|(lo, hi)| StatusRange(lo, hi)).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{} is not a status range; {STATUS_VALID}",
                rendered(&item)
            ))
        })
    }
}

/// An integer HTTP status code from 100 to 599.
fn status(v: &Value) -> Option<u16> {
    v.as_u64().and_then(|u| u16::try_from(u).ok()).filter(|s| (MIN_STATUS..=MAX_STATUS).contains(s))
}

/// A short rendering of an `expected_statuses` item for messages: `[200, 99]`, `"2xx"`, ...
fn rendered(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{:?}", shown(s)),
        Value::Object(_) => "an object".to_string(),
        Value::Array(items) if items.len() <= 4 => {
            let mut out = String::from("[");
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                match x {
                    Value::Array(_) => out.push_str("[...]"),
                    Value::Object(_) => out.push_str("{...}"),
                    x => out.push_str(&rendered(x)),
                }
            }
            out.push(']');
            out
        }
        Value::Array(items) => format!("an array of {} items", items.len()),
    }
}

/// The probe's request path: starts with `/`, 1 to 1024 characters, no ASCII controls or spaces.
fn validate_path(p: &str) -> Result<String, String> {
    let ok = p.starts_with('/')
        && p.chars().count() <= MAX_PATH_LEN
        && !p.chars().any(|c| c.is_ascii_control() || c == ' ');
    if ok {
        Ok(p.to_string())
    } else {
        Err(format!(
            "{:?} is not a request path; valid: a path starting with /, 1 to {MAX_PATH_LEN} \
             characters, no spaces or control characters, e.g. {DEFAULT_HEALTH_CHECK_PATH}",
            shown(p)
        ))
    }
}

/// Whether `h` is an RFC 3986 authority as HTTP servers accept it in `Host`: 1 to 255
/// characters of reg-name, IP literal and port (letters, digits, `-._~!$&'()*+,;=%:[]`).
fn is_authority(h: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=%:[]".contains(c);
    !h.is_empty() && h.len() <= MAX_HOST_LEN && h.chars().all(allowed)
}

/// The probe's `:authority` (see [`is_authority`]).
fn validate_host(h: &str) -> Result<String, String> {
    if is_authority(h) {
        Ok(h.to_string())
    } else {
        Err(format!(
            "{:?} is not an HTTP authority; valid: host or host:port, 1 to {MAX_HOST_LEN} \
             characters of letters, digits and -._~!$&'()*+,;=%:[] (RFC 3986), e.g. \
             backend.example.com:8080, or null for one derived from the cluster name",
            shown(h)
        ))
    }
}

/// The probe's `:authority` when `health_check.host` is not set: the cluster name when it is
/// a valid authority, the service host of an Istio cluster name
/// (`outbound|8080||backend.demo.svc.cluster.local` -> `backend.demo.svc.cluster.local`), else
/// an error saying to set `host` (a `|` in `Host` makes strict servers answer 400).
pub(super) fn default_host(cluster: &str) -> Result<String, String> {
    if is_authority(cluster) {
        return Ok(cluster.to_string());
    }
    let mut parts = cluster.split('|');
    let (_direction, port, _subset, fqdn) =
        (parts.next(), parts.next(), parts.next(), parts.next());
    let istio = parts.next().is_none() && port.is_some_and(|p| p.parse::<u16>().is_ok());
    match fqdn {
        Some(fqdn) if istio && is_authority(fqdn) => Ok(fqdn.to_string()),
        _ => Err(format!(
            "is not set and the cluster name {:?} is not a valid HTTP authority for the \
             probes; valid: a host or host:port such as backend.example.com",
            shown(cluster)
        )),
    }
}

#[cfg(test)]
mod tests;
