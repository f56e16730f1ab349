//! The `algorithm` choice and its tuning blocks (`least_request`, `least_time`, `hash_on`,
//! `maglev`, `ring_hash`, `balance_factor`): their raw JSON shapes and their validation. A
//! block that the chosen algorithm does not use is refused, so a leftover cannot silently do
//! nothing.

use serde::Deserialize;

use super::read::{name_of, Flag, Int, List, Named, Num, Opt, Str};
use super::text::{cookie_name, header_name, shown};
use super::ConfigError;

/// How backends are chosen; the JSON names are the public interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Smooth weighted round robin (nginx).
    #[default]
    RoundRobin,
    /// Weighted random.
    Random,
    /// Fewest requests in flight across all workers, power of two choices.
    LeastRequest,
    /// Peak-EWMA response time × requests in flight.
    LeastTime,
    /// Ketama-style consistent hashing ring on `hash_on`.
    RingHash,
    /// Maglev consistent hashing on `hash_on`.
    Maglev,
    /// Maglev on the client address.
    SourceIpHash,
    /// Round robin weighted by the backends' ORCA load reports (Envoy's, gRFC A58).
    ClientSideWeightedRoundRobin,
    /// Power of two choices on a load metric the backends report.
    LeastLoad,
}

/// Every algorithm and its JSON name: the one place the names are written (the public
/// interface).
pub const ALGORITHMS: [(Algorithm, &str); 9] = [
    (Algorithm::RoundRobin, "round_robin"),
    (Algorithm::Random, "random"),
    (Algorithm::LeastRequest, "least_request"),
    (Algorithm::LeastTime, "least_time"),
    (Algorithm::RingHash, "ring_hash"),
    (Algorithm::Maglev, "maglev"),
    (Algorithm::SourceIpHash, "source_ip_hash"),
    (Algorithm::ClientSideWeightedRoundRobin, "client_side_weighted_round_robin"),
    (Algorithm::LeastLoad, "least_load"),
];

impl Named for Algorithm {
    const NAMES: &'static [(Self, &'static str)] = &ALGORITHMS;
}

impl Algorithm {
    /// The JSON name.
    pub fn name(self) -> &'static str {
        name_of(self)
    }

    fn hashes(self) -> bool {
        matches!(self, Algorithm::RingHash | Algorithm::Maglev | Algorithm::SourceIpHash)
    }

    /// Whether it reads the backends' load reports.
    pub fn reads_reports(self) -> bool {
        matches!(self, Algorithm::ClientSideWeightedRoundRobin | Algorithm::LeastLoad)
    }
}

/// `client_side_weighted_round_robin`'s settings, named and defaulted as Envoy's
/// (`ClientSideWeightedRoundRobin` proto; durations in ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Cswrr {
    pub blackout_period_ms: u64,
    pub weight_expiration_period_ms: u64,
    pub weight_update_period_ms: u64,
    pub error_utilization_penalty: f64,
    /// Full names (`named_metrics.x`, `utilization.x`, `request_cost.x`).
    pub metric_names_for_computing_utilization: Vec<String>,
}

impl Default for Cswrr {
    /// Envoy's defaults.
    fn default() -> Self {
        Cswrr {
            blackout_period_ms: 10_000,
            weight_expiration_period_ms: 180_000,
            weight_update_period_ms: 1_000,
            error_utilization_penalty: 1.0,
            metric_names_for_computing_utilization: Vec::new(),
        }
    }
}

impl Default for LeastLoadConfig {
    fn default() -> Self {
        LeastLoadConfig { metric: String::new(), max_report_age_ms: 2_000, in_flight_weight: 1.0 }
    }
}

/// `least_load`'s settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LeastLoadConfig {
    /// The reported metric (an ORCA field or `named_metrics.x` / `utilization.x` /
    /// `request_cost.x`); empty unless the algorithm is `least_load`.
    pub metric: String,
    /// A report older than this is stale: the backend's cost is its requests in flight.
    pub max_report_age_ms: u64,
    /// What one request in flight (or more in flight than at the report) adds to the metric.
    pub in_flight_weight: f64,
}

/// Where a hashing algorithm takes the request's key from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// The client IP (Envoy's `source.address`, port dropped).
    SourceIp,
    /// A request header (lower-case name).
    Header(String),
    /// A cookie of the request's Cookie header.
    Cookie(String),
    /// A query parameter of the request path (raw, not percent-decoded).
    Query(String),
}

/// Validated algorithm settings; blocks absent from the JSON hold their defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct AlgorithmConfig {
    pub algorithm: Algorithm,
    /// Candidates compared per pick; 0 = all.
    pub choice_count: usize,
    pub active_request_bias: f64,
    pub default_rtt_ms: u64,
    pub decay_ms: u64,
    pub error_penalty_ms: u64,
    pub hash_on: Option<HashOn>,
    pub maglev_table_size: usize,
    pub min_ring_size: usize,
    pub max_ring_size: usize,
    /// Bounded-load factor (>= 1.0); `None` = off.
    pub balance_factor: Option<f64>,
    pub cswrr: Cswrr,
    pub least_load: LeastLoadConfig,
}

pub const DEFAULT_MAGLEV_TABLE_SIZE: usize = 65_537;

impl AlgorithmConfig {
    /// `algorithm` with every tuning value at its default (no hash key source).
    pub fn defaults(algorithm: Algorithm) -> Self {
        AlgorithmConfig {
            algorithm,
            choice_count: 2,
            active_request_bias: 1.0,
            default_rtt_ms: 30,
            decay_ms: 10_000,
            error_penalty_ms: 1_000,
            hash_on: None,
            maglev_table_size: DEFAULT_MAGLEV_TABLE_SIZE,
            min_ring_size: 1024,
            max_ring_size: MAX_RING_SIZE as usize,
            balance_factor: None,
            cswrr: Cswrr::default(),
            least_load: LeastLoadConfig::default(),
        }
    }
}
const MAX_MAGLEV_TABLE_SIZE: u32 = 5_000_011;
const MAX_RING_SIZE: u32 = 8_388_608;

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLeastRequest {
    #[serde(default)]
    choice_count: Opt<Int<0, 100>>,
    #[serde(default)]
    active_request_bias: Opt<Num<0, 10>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLeastTime {
    #[serde(default)]
    default_rtt_ms: Opt<Int<1, 60_000>>,
    #[serde(default)]
    decay_ms: Opt<Int<1, 600_000>>,
    #[serde(default)]
    error_penalty_ms: Opt<Int<1, 600_000>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHashOn {
    source_ip: Option<Flag>,
    header: Option<Str>,
    cookie: Option<Str>,
    query: Option<Str>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMaglev {
    #[serde(default)]
    table_size: Opt<Int<1, MAX_MAGLEV_TABLE_SIZE>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRingHash {
    #[serde(default)]
    min_ring_size: Opt<Int<1, MAX_RING_SIZE>>,
    #[serde(default)]
    max_ring_size: Opt<Int<1, MAX_RING_SIZE>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCswrr {
    #[serde(default)]
    blackout_period_ms: Opt<Int<0, 3_600_000>>,
    #[serde(default)]
    weight_expiration_period_ms: Opt<Int<1, 86_400_000>>,
    #[serde(default)]
    weight_update_period_ms: Opt<Int<100, 3_600_000>>,
    #[serde(default)]
    error_utilization_penalty: Opt<Num<0, 1_000>>,
    metric_names_for_computing_utilization: Option<List<Str>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLeastLoad {
    metric: Option<Str>,
    #[serde(default)]
    max_report_age_ms: Opt<Int<1, 3_600_000>>,
    #[serde(default)]
    in_flight_weight: Opt<Num<0, 1_000_000>>,
    #[serde(default)]
    choice_count: Opt<Int<0, 100>>,
}

/// A reported metric's name as Envoy's ORCA parser knows it; `maps_only` refuses the five
/// scalar fields.
fn metric_name(name: &str, maps_only: bool, path: &str) -> Result<String, ConfigError> {
    const SCALARS: [&str; 5] =
        ["cpu_utilization", "mem_utilization", "application_utilization", "rps_fractional", "eps"];
    let mapped = ["named_metrics.", "utilization.", "request_cost."]
        .iter()
        .any(|p| name.strip_prefix(p).is_some_and(|k| !k.is_empty()));
    let ok = name.len() <= 128 && (mapped || (!maps_only && SCALARS.contains(&name)));
    if ok {
        return Ok(name.to_string());
    }
    let scalars = if maps_only {
        ""
    } else {
        "one of cpu_utilization, mem_utilization, application_utilization, rps_fractional, eps, or "
    };
    Err(ConfigError::at(
        path,
        format!(
            "{:?} is not a load-report metric; valid: {scalars}named_metrics.<name>, \
             utilization.<name> or request_cost.<name> (up to 128 characters), e.g. \
             named_metrics.queue_depth",
            shown(name)
        ),
    ))
}

impl RawCswrr {
    fn validate(self) -> Result<Cswrr, ConfigError> {
        let d = Cswrr::default();
        let names = self.metric_names_for_computing_utilization.map(|l| l.0).unwrap_or_default();
        let base = "$.client_side_weighted_round_robin.metric_names_for_computing_utilization";
        if names.len() > crate::orca::MAX_WANTED {
            return Err(ConfigError::at(
                base,
                format!("has {} names; valid: at most {}", names.len(), crate::orca::MAX_WANTED),
            ));
        }
        let names = names
            .iter()
            .enumerate()
            .map(|(i, n)| metric_name(&n.0, true, &format!("{base}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Cswrr {
            blackout_period_ms: self
                .blackout_period_ms
                .map_or(d.blackout_period_ms, |n| n.0.into()),
            weight_expiration_period_ms: self
                .weight_expiration_period_ms
                .map_or(d.weight_expiration_period_ms, |n| n.0.into()),
            weight_update_period_ms: self
                .weight_update_period_ms
                .map_or(d.weight_update_period_ms, |n| n.0.into()),
            error_utilization_penalty: self
                .error_utilization_penalty
                .map_or(d.error_utilization_penalty, |n| n.0),
            metric_names_for_computing_utilization: names,
        })
    }
}

impl RawLeastLoad {
    fn validate(self) -> Result<(LeastLoadConfig, Option<usize>), ConfigError> {
        let d = LeastLoadConfig::default();
        let Some(Str(metric)) = self.metric else {
            return Err(ConfigError::at(
                "$.least_load.metric",
                "is required with algorithm least_load; valid: the reported metric to balance \
                 on, e.g. \"named_metrics.queue_depth\"",
            ));
        };
        let metric = metric_name(&metric, false, "$.least_load.metric")?;
        Ok((
            LeastLoadConfig {
                metric,
                max_report_age_ms: self
                    .max_report_age_ms
                    .map_or(d.max_report_age_ms, |n| n.0.into()),
                in_flight_weight: self.in_flight_weight.map_or(d.in_flight_weight, |n| n.0),
            },
            self.choice_count.map(|n| n.0 as usize),
        ))
    }
}

/// The algorithm-related members of the top-level JSON object.
pub(super) struct RawAlgorithm {
    pub algorithm: Algorithm,
    pub least_request: Option<RawLeastRequest>,
    pub least_time: Option<RawLeastTime>,
    pub hash_on: Option<RawHashOn>,
    pub maglev: Option<RawMaglev>,
    pub ring_hash: Option<RawRingHash>,
    pub balance_factor: Option<f64>,
    pub client_side_weighted_round_robin: Option<RawCswrr>,
    pub least_load: Option<RawLeastLoad>,
}

/// Refuses a `present` block at `$.name` when `used` is false.
fn only_with(present: bool, name: &str, used: bool, who: &str) -> Result<(), ConfigError> {
    if present && !used {
        return Err(ConfigError::at(
            format!("$.{name}"),
            format!(
                "does not apply to the chosen algorithm; valid: remove it, or use it with {who}"
            ),
        ));
    }
    Ok(())
}

impl RawAlgorithm {
    pub fn validate(self, backends: usize) -> Result<AlgorithmConfig, ConfigError> {
        use Algorithm::*;
        let a = self.algorithm;
        only_with(
            self.least_request.is_some(),
            "least_request",
            a == LeastRequest,
            LeastRequest.name(),
        )?;
        only_with(self.least_time.is_some(), "least_time", a == LeastTime, LeastTime.name())?;
        only_with(
            self.hash_on.is_some(),
            "hash_on",
            matches!(a, RingHash | Maglev),
            "ring_hash or maglev",
        )?;
        only_with(
            self.maglev.is_some(),
            "maglev",
            matches!(a, Maglev | SourceIpHash),
            "maglev or source_ip_hash",
        )?;
        only_with(self.ring_hash.is_some(), "ring_hash", a == RingHash, RingHash.name())?;
        only_with(
            self.client_side_weighted_round_robin.is_some(),
            "client_side_weighted_round_robin",
            a == ClientSideWeightedRoundRobin,
            ClientSideWeightedRoundRobin.name(),
        )?;
        only_with(self.least_load.is_some(), "least_load", a == LeastLoad, LeastLoad.name())?;
        only_with(
            self.balance_factor.is_some(),
            "balance_factor",
            a.hashes(),
            "ring_hash, maglev or source_ip_hash",
        )?;

        let lr = self.least_request.unwrap_or_default();
        let lt = self.least_time.unwrap_or_default();
        let mg = self.maglev.unwrap_or_default();
        let rh = self.ring_hash.unwrap_or_default();
        let cswrr = self.client_side_weighted_round_robin.unwrap_or_default().validate()?;
        let (least_load, load_choices) = match (a, self.least_load) {
            (LeastLoad, raw) => raw.unwrap_or_default().validate()?,
            _ => (LeastLoadConfig::default(), None),
        };

        let hash_on = match (a, self.hash_on) {
            (SourceIpHash, _) => Some(HashOn::SourceIp),
            (RingHash | Maglev, Some(h)) => Some(h.validate()?),
            (RingHash | Maglev, None) => {
                return Err(ConfigError::at(
                    "$.hash_on",
                    format!(
                        "is required with algorithm {}; valid: {{\"source_ip\": true}}, \
                         {{\"header\": \"name\"}}, {{\"cookie\": \"name\"}} or {{\"query\": \"name\"}}",
                        a.name()
                    ),
                ))
            }
            _ => None,
        };

        let table = mg.table_size.map_or(DEFAULT_MAGLEV_TABLE_SIZE, |n| n.0 as usize);
        if !is_prime(table) || table < backends {
            return Err(ConfigError::at(
                "$.maglev.table_size",
                format!(
                    "{table} is not a prime of at least the number of backends ({backends}); \
                     valid: a prime up to {MAX_MAGLEV_TABLE_SIZE}, ideally over 100 x backends, \
                     e.g. 65537 or 655373"
                ),
            ));
        }
        let min_ring = rh.min_ring_size.map_or(1024, |n| n.0 as usize);
        let max_ring = rh.max_ring_size.map_or(MAX_RING_SIZE as usize, |n| n.0 as usize);
        if min_ring > max_ring {
            return Err(ConfigError::at(
                "$.ring_hash.min_ring_size",
                format!("{min_ring} is above max_ring_size {max_ring}; valid: min_ring_size <= max_ring_size"),
            ));
        }
        Ok(AlgorithmConfig {
            algorithm: a,
            choice_count: load_choices.unwrap_or(lr.choice_count.map_or(2, |n| n.0 as usize)),
            active_request_bias: lr.active_request_bias.map_or(1.0, |n| n.0),
            default_rtt_ms: lt.default_rtt_ms.map_or(30, |n| u64::from(n.0)),
            decay_ms: lt.decay_ms.map_or(10_000, |n| u64::from(n.0)),
            error_penalty_ms: lt.error_penalty_ms.map_or(1_000, |n| u64::from(n.0)),
            hash_on,
            maglev_table_size: table,
            min_ring_size: min_ring,
            max_ring_size: max_ring,
            balance_factor: self.balance_factor,
            cswrr,
            least_load,
        })
    }
}

impl RawHashOn {
    fn validate(self) -> Result<HashOn, ConfigError> {
        let set = [
            self.source_ip.is_some(),
            self.header.is_some(),
            self.cookie.is_some(),
            self.query.is_some(),
        ];
        let valid = "valid: exactly one of {\"source_ip\": true}, {\"header\": \"name\"}, \
                     {\"cookie\": \"name\"}, {\"query\": \"name\"}";
        if set.iter().filter(|&&b| b).count() != 1 {
            return Err(ConfigError::at(
                "$.hash_on",
                format!("must name exactly one key source; {valid}"),
            ));
        }
        if let Some(Flag(v)) = self.source_ip {
            return if v {
                Ok(HashOn::SourceIp)
            } else {
                Err(ConfigError::at(
                    "$.hash_on.source_ip",
                    format!("false selects nothing; {valid}"),
                ))
            };
        }
        if let Some(Str(h)) = self.header {
            let name =
                header_name(&h, "x-user-id").map_err(|m| ConfigError::at("$.hash_on.header", m))?;
            return Ok(HashOn::Header(name));
        }
        if let Some(Str(c)) = self.cookie {
            return cookie_name(&c, "session_id")
                .map(HashOn::Cookie)
                .map_err(|m| ConfigError::at("$.hash_on.cookie", m));
        }
        let q = self.query.map(|q| q.0).unwrap_or_default();
        let ok = !q.is_empty()
            && q.len() <= 256
            && !q.bytes().any(|c| matches!(c, b'&' | b'=' | b'#' | b'?') || c <= b' ' || c == 0x7f);
        if ok {
            Ok(HashOn::Query(q))
        } else {
            Err(ConfigError::at(
                "$.hash_on.query",
                format!("{:?} is not a query parameter name; valid: 1 to 256 characters without spaces, controls, & = # ?", shown(&q)),
            ))
        }
    }
}

fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2usize;
    while d.saturating_mul(d) <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod tests;
