//! The `algorithm` choice and its tuning blocks (`least_request`, `least_time`, `hash_on`,
//! `maglev`, `ring_hash`, `balance_factor`): their raw JSON shapes and their validation. A
//! block that the chosen algorithm does not use is refused, so a leftover cannot silently do
//! nothing.

use super::de::{
    boolean, header_name, int, is_token, number, object, shown, string, variant, Json,
};
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
}

/// Every algorithm, in the order of [`ALGORITHM_NAMES`].
pub const ALGORITHMS: [Algorithm; 7] = [
    Algorithm::RoundRobin,
    Algorithm::Random,
    Algorithm::LeastRequest,
    Algorithm::LeastTime,
    Algorithm::RingHash,
    Algorithm::Maglev,
    Algorithm::SourceIpHash,
];
/// The JSON names of [`ALGORITHMS`] (the same as [`Algorithm::name`]).
const ALGORITHM_NAMES: &[&str] = &[
    "round_robin",
    "random",
    "least_request",
    "least_time",
    "ring_hash",
    "maglev",
    "source_ip_hash",
];

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::Random => "random",
            Algorithm::LeastRequest => "least_request",
            Algorithm::LeastTime => "least_time",
            Algorithm::RingHash => "ring_hash",
            Algorithm::Maglev => "maglev",
            Algorithm::SourceIpHash => "source_ip_hash",
        }
    }

    fn hashes(self) -> bool {
        matches!(self, Algorithm::RingHash | Algorithm::Maglev | Algorithm::SourceIpHash)
    }
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
        }
    }
}
const MAX_MAGLEV_TABLE_SIZE: u32 = 5_000_011;
const MAX_RING_SIZE: u32 = 8_388_608;

#[derive(Default)]
pub(super) struct RawLeastRequest {
    choice_count: Option<u32>,
    active_request_bias: Option<f64>,
}

#[derive(Default)]
pub(super) struct RawLeastTime {
    default_rtt_ms: Option<u32>,
    decay_ms: Option<u32>,
    error_penalty_ms: Option<u32>,
}

#[derive(Default)]
pub(super) struct RawHashOn {
    source_ip: Option<bool>,
    header: Option<String>,
    cookie: Option<String>,
    query: Option<String>,
}

#[derive(Default)]
pub(super) struct RawMaglev {
    table_size: Option<u32>,
}

#[derive(Default)]
pub(super) struct RawRingHash {
    min_ring_size: Option<u32>,
    max_ring_size: Option<u32>,
}

/// The algorithm-related members of the top-level JSON object.
#[derive(Default)]
pub(super) struct RawAlgorithm {
    pub algorithm: Algorithm,
    pub least_request: Option<RawLeastRequest>,
    pub least_time: Option<RawLeastTime>,
    pub hash_on: Option<RawHashOn>,
    pub maglev: Option<RawMaglev>,
    pub ring_hash: Option<RawRingHash>,
    pub balance_factor: Option<f64>,
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
    /// Reads the top-level member `i` of `super::FIELDS` (one of the algorithm's) at `path`.
    pub fn read(&mut self, i: usize, v: &Json, path: &str) -> Result<(), ConfigError> {
        match i {
            1 => {
                let n = variant(v, path, ALGORITHM_NAMES)?;
                self.algorithm = ALGORITHMS.get(n).copied().unwrap_or_default();
            }
            4 => self.least_request = Some(RawLeastRequest::read(v, path)?),
            5 => self.least_time = Some(RawLeastTime::read(v, path)?),
            6 => self.hash_on = Some(RawHashOn::read(v, path)?),
            7 => self.maglev = Some(RawMaglev::read(v, path)?),
            8 => self.ring_hash = Some(RawRingHash::read(v, path)?),
            _ => self.balance_factor = Some(number(v, path, 1, 100)?),
        }
        Ok(())
    }

    pub fn validate(self, backends: usize) -> Result<AlgorithmConfig, ConfigError> {
        use Algorithm::*;
        let a = self.algorithm;
        only_with(
            self.least_request.is_some(),
            "least_request",
            a == LeastRequest,
            "least_request",
        )?;
        only_with(self.least_time.is_some(), "least_time", a == LeastTime, "least_time")?;
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
        only_with(self.ring_hash.is_some(), "ring_hash", a == RingHash, "ring_hash")?;
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

        let table = mg.table_size.map_or(DEFAULT_MAGLEV_TABLE_SIZE, |n| n as usize);
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
        let min_ring = rh.min_ring_size.map_or(1024, |n| n as usize);
        let max_ring = rh.max_ring_size.map_or(MAX_RING_SIZE as usize, |n| n as usize);
        if min_ring > max_ring {
            return Err(ConfigError::at(
                "$.ring_hash.min_ring_size",
                format!("{min_ring} is above max_ring_size {max_ring}; valid: min_ring_size <= max_ring_size"),
            ));
        }
        Ok(AlgorithmConfig {
            algorithm: a,
            choice_count: lr.choice_count.map_or(2, |n| n as usize),
            active_request_bias: lr.active_request_bias.unwrap_or(1.0),
            default_rtt_ms: lt.default_rtt_ms.map_or(30, u64::from),
            decay_ms: lt.decay_ms.map_or(10_000, u64::from),
            error_penalty_ms: lt.error_penalty_ms.map_or(1_000, u64::from),
            hash_on,
            maglev_table_size: table,
            min_ring_size: min_ring,
            max_ring_size: max_ring,
            balance_factor: self.balance_factor,
        })
    }
}

impl RawLeastRequest {
    fn read(v: &Json, path: &str) -> Result<RawLeastRequest, ConfigError> {
        let mut lr = RawLeastRequest::default();
        object(v, path, &["choice_count", "active_request_bias"], 0, &mut |i, v, p| {
            match i {
                0 => lr.choice_count = Some(int(v, p, 0, 100)?),
                _ => lr.active_request_bias = Some(number(v, p, 0, 10)?),
            }
            Ok(())
        })?;
        Ok(lr)
    }
}

impl RawLeastTime {
    fn read(v: &Json, path: &str) -> Result<RawLeastTime, ConfigError> {
        let mut lt = RawLeastTime::default();
        let fields = ["default_rtt_ms", "decay_ms", "error_penalty_ms"];
        object(v, path, &fields, 0, &mut |i, v, p| {
            match i {
                0 => lt.default_rtt_ms = Some(int(v, p, 1, 60_000)?),
                1 => lt.decay_ms = Some(int(v, p, 1, 600_000)?),
                _ => lt.error_penalty_ms = Some(int(v, p, 1, 600_000)?),
            }
            Ok(())
        })?;
        Ok(lt)
    }
}

impl RawMaglev {
    fn read(v: &Json, path: &str) -> Result<RawMaglev, ConfigError> {
        let mut mg = RawMaglev::default();
        object(v, path, &["table_size"], 0, &mut |_, v, p| {
            mg.table_size = Some(int(v, p, 1, MAX_MAGLEV_TABLE_SIZE)?);
            Ok(())
        })?;
        Ok(mg)
    }
}

impl RawRingHash {
    fn read(v: &Json, path: &str) -> Result<RawRingHash, ConfigError> {
        let mut rh = RawRingHash::default();
        object(v, path, &["min_ring_size", "max_ring_size"], 0, &mut |i, v, p| {
            match i {
                0 => rh.min_ring_size = Some(int(v, p, 1, MAX_RING_SIZE)?),
                _ => rh.max_ring_size = Some(int(v, p, 1, MAX_RING_SIZE)?),
            }
            Ok(())
        })?;
        Ok(rh)
    }
}

impl RawHashOn {
    fn read(v: &Json, path: &str) -> Result<RawHashOn, ConfigError> {
        let mut h = RawHashOn::default();
        object(v, path, &["source_ip", "header", "cookie", "query"], 0, &mut |i, v, p| {
            match i {
                0 => h.source_ip = Some(boolean(v, p)?),
                1 => h.header = Some(string(v, p)?),
                2 => h.cookie = Some(string(v, p)?),
                _ => h.query = Some(string(v, p)?),
            }
            Ok(())
        })?;
        Ok(h)
    }

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
        if let Some(v) = self.source_ip {
            return if v {
                Ok(HashOn::SourceIp)
            } else {
                Err(ConfigError::at(
                    "$.hash_on.source_ip",
                    format!("false selects nothing; {valid}"),
                ))
            };
        }
        if let Some(h) = self.header {
            let name =
                header_name(&h, "x-user-id").map_err(|m| ConfigError::at("$.hash_on.header", m))?;
            return Ok(HashOn::Header(name));
        }
        if let Some(c) = self.cookie {
            return cookie_name(&c)
                .map(HashOn::Cookie)
                .map_err(|m| ConfigError::at("$.hash_on.cookie", m));
        }
        let q = self.query.unwrap_or_default();
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

/// A cookie name: an RFC 6265 token (RFC 9110 tchar), 1 to 256 characters.
pub(super) fn cookie_name(c: &str) -> Result<String, String> {
    if is_token(c) {
        Ok(c.to_string())
    } else {
        Err(format!("{:?} is not a cookie name; valid: 1 to 256 token characters (RFC 6265), e.g. session_id", shown(c)))
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
