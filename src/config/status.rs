//! `status`: the opt-in local status endpoint — its path and the client networks allowed to
//! see it ([`Cidr`]). A request from anywhere else is passed upstream as if the endpoint did
//! not exist.

use std::net::IpAddr;

use serde::Deserialize;

use super::read::{List, Str};
use super::text::shown;
use super::ConfigError;

pub const DEFAULT_STATUS_PATH: &str = "/.lb/status";
const DEFAULT_ALLOW: &[&str] = &["127.0.0.0/8", "::1/128"];
const MAX_CIDRS: usize = 64;
const MAX_PATH_LEN: usize = 256;

/// The status endpoint's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Matched against the request path without its query string.
    pub path: String,
    pub allow: Vec<Cidr>,
}

impl Status {
    /// Whether a request for `request_path` (query included) from `client` is a status request.
    pub fn serves(&self, request_path: &str, client: Option<IpAddr>) -> bool {
        let path = request_path.split_once('?').map_or(request_path, |(p, _)| p);
        path == self.path && client.is_some_and(|ip| self.allow.iter().any(|c| c.contains(ip)))
    }
}

/// An address range such as `10.0.0.0/8` or `::1/128` (host bits ignored, as Envoy's CidrRange
/// does); an IPv4 client seen as an IPv4-mapped IPv6 address matches IPv4 ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let bad = || {
            format!(
                "{:?} is not an address range; valid: CIDR notation such as \"10.0.0.0/8\" or \
                 \"::1/128\"",
                shown(s)
            )
        };
        let (ip, prefix) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() && !s.contains('/') {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max && !prefix.starts_with('+'))
                .ok_or_else(bad)?
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(u128::from(net), u128::from(ip), self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the top `prefix` bits of `a` and `b` are equal.
fn same_prefix(a: u128, b: u128, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    a & mask == b & mask
}

/// The `status` object; `validate` checks the path and the ranges.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStatus {
    path: Option<Str>,
    allow_cidrs: Option<List<Str>>,
}

impl RawStatus {
    pub(super) fn validate(self) -> Result<Status, ConfigError> {
        let path = match self.path {
            None => DEFAULT_STATUS_PATH.to_string(),
            Some(Str(s)) => {
                let ok = s.starts_with('/')
                    && s.len() <= MAX_PATH_LEN
                    && !s.bytes().any(|c| c <= b' ' || matches!(c, b'?' | b'#' | 0x7f));
                if !ok {
                    return Err(ConfigError::at(
                        "$.status.path",
                        format!(
                            "{:?} is not a request path; valid: \"/\" then up to {MAX_PATH_LEN} \
                             characters without spaces, controls, ? or #, e.g. \"{DEFAULT_STATUS_PATH}\"",
                            shown(&s)
                        ),
                    ));
                }
                s
            }
        };
        let allow = match self.allow_cidrs {
            None => DEFAULT_ALLOW.iter().filter_map(|s| Cidr::parse(s).ok()).collect(),
            Some(List(items)) => {
                if items.is_empty() || items.len() > MAX_CIDRS {
                    return Err(ConfigError::at(
                        "$.status.allow_cidrs",
                        format!(
                            "has {} entries; valid: 1 to {MAX_CIDRS} address ranges",
                            items.len()
                        ),
                    ));
                }
                let mut list = Vec::with_capacity(items.len());
                for (n, Str(item)) in items.iter().enumerate() {
                    let cidr = Cidr::parse(item)
                        .map_err(|m| ConfigError::at(format!("$.status.allow_cidrs[{n}]"), m))?;
                    list.push(cidr);
                }
                list
            }
        };
        Ok(Status { path, allow })
    }
}

#[cfg(test)]
mod tests;
