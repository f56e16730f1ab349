//! The `discovery` block: follow the endpoints Envoy itself has for a cluster (EDS, DNS, Istio)
//! instead of a typed list, by polling Envoy's admin API through a cluster that reaches it.

use serde::Deserialize;

use super::read::{name_of, Int, Name, Named, Opt, Str};
use super::target::cluster_name;
use super::ConfigError;

/// Which admin API answer the endpoints are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoverySource {
    /// `GET /config_dump?include_eds&resource=dynamic_endpoint_configs&name_regex=...`: the
    /// cluster's ClusterLoadAssignment as EDS delivered it (small: Envoy filters by name).
    Eds,
    /// `GET /clusters?format=json`: every cluster's resolved hosts with Envoy's own health
    /// flags (STRICT_DNS and static clusters, Envoy's active health checks and outlier
    /// detection); as large as the proxy's whole cluster list.
    Clusters,
}

impl Named for DiscoverySource {
    const NAMES: &'static [(Self, &'static str)] =
        &[(DiscoverySource::Eds, "eds"), (DiscoverySource::Clusters, "clusters")];
}

impl DiscoverySource {
    pub fn name(self) -> &'static str {
        name_of(self)
    }
}

/// Validated discovery settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// The Envoy cluster whose endpoint is Envoy's admin listener (Istio: `prometheus_stats`).
    pub admin_cluster: String,
    /// The Envoy cluster whose endpoints become the pool (the top-level `cluster` unless set).
    pub cluster: String,
    pub source: DiscoverySource,
    /// Time between two polls.
    pub interval_ms: u64,
    /// How long one poll may take before it counts as failed.
    pub timeout_ms: u64,
    /// Larger answers are refused (the last good pool keeps serving).
    pub max_response_bytes: usize,
}

pub const DEFAULT_INTERVAL_MS: u32 = 1_000;
pub const DEFAULT_MAX_RESPONSE_BYTES: u32 = 8 * 1024 * 1024;
const MIN_INTERVAL_MS: u32 = 100;
const MAX_MS: u32 = 3_600_000;
const MAX_RESPONSE_BYTES: u32 = 256 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscovery {
    admin_cluster: Str,
    cluster: Option<Str>,
    source: Option<Name<DiscoverySource>>,
    #[serde(default)]
    interval_ms: Opt<Int<MIN_INTERVAL_MS, MAX_MS>>,
    #[serde(default)]
    timeout_ms: Opt<Int<1, MAX_MS>>,
    #[serde(default)]
    max_response_bytes: Opt<Int<4096, MAX_RESPONSE_BYTES>>,
}

impl RawDiscovery {
    /// `pool_cluster` is the top-level `cluster`.
    pub(super) fn validate(self, pool_cluster: &str) -> Result<Discovery, ConfigError> {
        let admin_cluster = self.admin_cluster.0;
        cluster_name(&admin_cluster)
            .map_err(|m| ConfigError::at("$.discovery.admin_cluster", m))?;
        let cluster = match self.cluster {
            Some(c) => {
                cluster_name(&c.0).map_err(|m| ConfigError::at("$.discovery.cluster", m))?;
                c.0
            }
            None => pool_cluster.to_string(),
        };
        if admin_cluster == cluster || admin_cluster == pool_cluster {
            return Err(ConfigError::at(
                "$.discovery.admin_cluster",
                "is the cluster the filter steers to; valid: a separate cluster whose only \
                 endpoint is Envoy's admin listener, never reachable from a route",
            ));
        }
        let interval_ms = self.interval_ms.map_or(DEFAULT_INTERVAL_MS, |n| n.0);
        let timeout_ms = self.timeout_ms.map_or(interval_ms.min(1_000), |n| n.0);
        if timeout_ms > interval_ms {
            return Err(ConfigError::at(
                "$.discovery.timeout_ms",
                format!(
                    "{timeout_ms} is longer than interval_ms ({interval_ms}); valid: 1 to \
                     {interval_ms}"
                ),
            ));
        }
        Ok(Discovery {
            admin_cluster,
            cluster,
            source: self.source.map_or(DiscoverySource::Eds, |n| n.0),
            interval_ms: u64::from(interval_ms),
            timeout_ms: u64::from(timeout_ms),
            max_response_bytes: self
                .max_response_bytes
                .map_or(DEFAULT_MAX_RESPONSE_BYTES, |n| n.0)
                .try_into()
                .unwrap_or(usize::MAX),
        })
    }
}
