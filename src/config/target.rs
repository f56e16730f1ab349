//! `target`: how the chosen backend is handed to Envoy — the override_host header, the
//! ORIGINAL_DST filter state, or a cluster name for a `cluster_header` route — and the
//! mode-dependent defaults and refusals.

use serde::Deserialize;

use super::read::{name_of, Flag, Int, Name, Named, Opt, Str};
use super::text::{header_name, shown};
use super::{ConfigError, MAX_CLUSTER_LEN};

/// Steering header used by `override_host` when `target.header` is absent: the one Envoy's
/// override_host docs and the Gateway API inference extension use.
pub const DEFAULT_STEERING_HEADER: &str = "x-gateway-destination-endpoint";
/// The header Envoy's ORIGINAL_DST cluster reads with `use_http_header`.
pub const ORIGINAL_DST_HEADER: &str = "x-envoy-original-dst-host";
/// Header of the `cluster_header` mode when `target.header` is absent.
pub const DEFAULT_CLUSTER_HEADER: &str = "x-lb-cluster";
/// Upper bound of `target.max_hosts` (primary + retry hosts in the steering header).
pub const MAX_HOSTS_LIMIT: usize = 10;
const DEFAULT_MAX_HOSTS: usize = 3;

/// How the chosen backend is handed to Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetMode {
    /// `envoy.load_balancing_policies.override_host` reads `ip:port[,ip:port...]` from a header.
    #[default]
    OverrideHost,
    /// An ORIGINAL_DST cluster connects to the address the filter puts in the filter state
    /// `envoy.network.transport_socket.original_dst_address` (and, only with
    /// `allow_header_fallback`, in the `x-envoy-original-dst-host` header).
    OriginalDst,
    /// The route's `cluster_header` names the cluster: one Envoy cluster per backend.
    ClusterHeader,
}

impl Named for TargetMode {
    const NAMES: &'static [(Self, &'static str)] = &[
        (TargetMode::OverrideHost, "override_host"),
        (TargetMode::OriginalDst, "original_dst"),
        (TargetMode::ClusterHeader, "cluster_header"),
    ];
}

impl TargetMode {
    /// The JSON name.
    pub fn name(self) -> &'static str {
        name_of(self)
    }
}

/// Where and how the picks are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub mode: TargetMode,
    /// Lower-case request header name: always stripped from client requests; written with
    /// the picks (override_host, cluster_header) or, in original_dst mode, only with
    /// `allow_header_fallback`.
    pub header: String,
    /// Primary pick + up to `max_hosts - 1` distinct retry hosts (1 outside override_host:
    /// the other modes name one backend per request).
    pub max_hosts: usize,
    /// original_dst: also write the address into `header` (for an ORIGINAL_DST cluster with
    /// `use_http_header`).
    pub allow_header_fallback: bool,
    /// original_dst: the cluster health probes are sent to (an ORIGINAL_DST cluster with
    /// `use_http_header`, since callouts carry no filter state).
    pub probe_cluster: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    mode: Option<Name<TargetMode>>,
    header: Option<Str>,
    #[serde(default)]
    max_hosts: Opt<Int<1, { MAX_HOSTS_LIMIT as u32 }>>,
    allow_header_fallback: Option<Flag>,
    probe_cluster: Option<Str>,
}

impl RawTarget {
    /// `probing`: the pool has active health checks.
    pub(super) fn validate(self, probing: bool) -> Result<Target, ConfigError> {
        let mode = self.mode.map(|m| m.0).unwrap_or_default();
        let only = |field: &str, valid_mode: TargetMode| {
            ConfigError::at(
                format!("$.target.{field}"),
                format!(
                    "is not used with mode \"{}\"; valid: only with \"mode\": \"{}\", or remove it",
                    mode.name(),
                    valid_mode.name()
                ),
            )
        };
        if mode != TargetMode::OverrideHost && self.max_hosts.is_some() {
            return Err(only("max_hosts", TargetMode::OverrideHost));
        }
        if mode != TargetMode::OriginalDst {
            if self.allow_header_fallback.is_some() {
                return Err(only("allow_header_fallback", TargetMode::OriginalDst));
            }
            if self.probe_cluster.is_some() {
                return Err(only("probe_cluster", TargetMode::OriginalDst));
            }
        }
        let default_header = match mode {
            TargetMode::OverrideHost => DEFAULT_STEERING_HEADER,
            TargetMode::OriginalDst => ORIGINAL_DST_HEADER,
            TargetMode::ClusterHeader => DEFAULT_CLUSTER_HEADER,
        };
        let header = match self.header {
            None => default_header.to_string(),
            Some(Str(h)) => header_name(&h, default_header)
                .map_err(|m| ConfigError::at("$.target.header", m))?,
        };
        let probe_cluster = self
            .probe_cluster
            .map(|Str(c)| cluster_name(&c).map(|()| c))
            .transpose()
            .map_err(|m| ConfigError::at("$.target.probe_cluster", m))?;
        if mode == TargetMode::OriginalDst && probing && probe_cluster.is_none() {
            return Err(ConfigError::at(
                "$.target",
                "mode \"original_dst\" with health_check needs \"probe_cluster\"; valid: the \
                 name of an ORIGINAL_DST cluster with use_http_header: true (probes carry no \
                 filter state)",
            ));
        }
        let max_hosts = match mode {
            TargetMode::OverrideHost => self.max_hosts.map_or(DEFAULT_MAX_HOSTS, |n| n.0 as usize),
            _ => 1,
        };
        Ok(Target {
            mode,
            header,
            max_hosts,
            allow_header_fallback: self.allow_header_fallback.is_some_and(|f| f.0),
            probe_cluster,
        })
    }
}

/// An Envoy cluster name: 1 to 256 characters, no control characters, not blank.
pub(super) fn cluster_name(name: &str) -> Result<(), String> {
    let ok = !name.trim().is_empty()
        && name.len() <= MAX_CLUSTER_LEN
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a cluster name; valid: the name of the Envoy cluster to use, 1 to \
             {MAX_CLUSTER_LEN} characters, no control characters",
            shown(name)
        ))
    }
}

#[cfg(test)]
mod tests;
