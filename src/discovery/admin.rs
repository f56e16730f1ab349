//! Reading Envoy's admin API answers into [`Endpoint`]s: the paths the poller asks for, and the
//! parsers of their answers. Pure functions; the adapter sends the callout and hands the body in.
//!
//! Two views of a cluster, both captured from real Envoy 1.36.4 and 1.40.0 in `testdata/`
//! (`testdata/capture/capture.sh` makes them):
//!
//! - [`eds_path`] → `GET /config_dump?include_eds&resource=dynamic_endpoint_configs&name_regex=…`,
//!   read by [`parse_eds`]: the cluster's `ClusterLoadAssignment` as Envoy holds it. `name_regex`
//!   is an RE2 *full* match (`backend` does not match `outbound|8080||backend.demo…`; the Istio
//!   name unescaped matches nothing, since `|` is alternation), so the name is escaped like RE2's
//!   `QuoteMeta`. A regex that matches nothing answers `{}` (200) → [`AdminError::UnknownCluster`];
//!   an invalid one answers 400 with a text body. An EDS cluster defined in the bootstrap is listed
//!   under `static_endpoint_configs` only ([`EdsResource::Static`]); asking the other resource
//!   answers `{}`. The health shown is Envoy's *coarse* health (`ConfigDumpHandler::addLbEndpoint`
//!   in `source/server/admin/config_dump_handler.cc` switches on `host->coarseHealth()`): only
//!   `HEALTHY`, `UNHEALTHY` or `DEGRADED`, never absent. Observed on both versions: EDS `DRAINING`
//!   and `TIMEOUT` show as `UNHEALTHY`, an EDS endpoint without `health_status` as `HEALTHY`, a
//!   host failing active health checks as `UNHEALTHY`, one that passes `x-envoy-degraded` as
//!   `DEGRADED`, and a host EDS removed but that Envoy keeps until its health check fails
//!   (`pending_dynamic_removal`) as `HEALTHY`. `load_balancing_weight` is always printed (≥ 1:
//!   `HostImplBase::weight` stores `max(1, w)`), the locality's `priority` only when not 0.
//! - [`CLUSTERS_PATH`] (or [`clusters_path`]) → `GET /clusters?format=json`, read by
//!   [`parse_clusters`]: every cluster's hosts (the only view of a STRICT_DNS cluster's resolved
//!   addresses) with the health *flags*, mapped below. Envoy 1.40.0 also takes
//!   `filter=<RE2>` (a *partial* match: anchor it) and lists only the matching clusters; 1.36.4
//!   ignores it and lists every cluster, so the parser always selects the cluster by exact name.
//!   Cluster order varies between runs (a hash map).
//!
//! Both: a `pipe` address (accepted by Envoy in EDS, observed) or an internal address has no
//! `socket_address` and is skipped, as are addresses that are not IP literals, ports outside
//! 1..=65535, and repeated addresses (the first is kept). proto3 JSON: fields at their zero value
//! are omitted (priority 0, `false` flags, port 0), unknown fields are ignored (Envoy adds some:
//! 1.40.0 has an `rq_pending_active` host stat that 1.36.4 lacks), numbers are accepted as
//! JSON numbers or decimal strings, enums as names or numbers.
//!
//! `/clusters` health: the first rule that applies, most severe first. Envoy's own balancer is
//! the reference: `HostImplBase::coarseHealth()` and `healthStatus()` in
//! `source/common/upstream/upstream_impl.h`; `setEdsHealthFlag` and `excludeBasedOnHealthFlag`
//! in `source/common/upstream/upstream_impl.cc`; the JSON written by `setHealthFlag` in
//! `source/server/admin/clusters_handler.cc`.
//!
//! 1. `active_hc_timeout` → Timeout. Set only together with `failed_active_health_check`, when
//!    the failing check timed out (`HealthCheckerImplBase::ActiveHealthCheckSession::
//!    setUnhealthy`, `health_checker_base_impl.cc`); observed for a target that never answers.
//! 2. `failed_active_health_check`, `failed_outlier_check` → Unhealthy (`coarseHealth()`).
//!    `excluded_via_immediate_hc_fail`, `pending_active_hc` → Unhealthy: excluded by
//!    `excludeBasedOnHealthFlag`, and both come with `failed_active_health_check` (observed for
//!    the first after `x-envoy-immediate-health-check-fail`; for the second, `eds_test.cc`: "set
//!    only if FAILED_ACTIVE_HC is also set"). `eds_health_status: UNHEALTHY` → Unhealthy
//!    (`FAILED_EDS_HEALTH`; EDS `TIMEOUT` sets the same flag and is printed `UNHEALTHY`, observed).
//! 3. `eds_health_status: TIMEOUT` → Timeout (not printed by 1.36/1.40; kept for other versions).
//! 4. `eds_health_status: DRAINING` → Draining (`EDS_STATUS_DRAINING`: Unhealthy for
//!    `coarseHealth()` and excluded; with the runtime guard
//!    `envoy.reloadable_features.exclude_host_in_eds_status_draining` off, Envoy prints
//!    `UNHEALTHY` instead). `pending_dynamic_removal` → Draining: EDS removed the host and Envoy
//!    keeps it while its checks pass (observed); `coarseHealth()` leaves it Healthy, but it is
//!    going away, so it should take no new sessions.
//! 5. `failed_active_degraded_check` (observed after `x-envoy-degraded`),
//!    `failed_degraded_outlier_detection` (a flag of recent Envoy sources), `eds_health_status:
//!    DEGRADED` → Degraded (`coarseHealth()`).
//! 6. `eds_health_status: HEALTHY` → Healthy; otherwise (`UNKNOWN`, absent) → Unknown. Envoy
//!    itself always prints `eds_health_status` in this view.
//!
//! EDS `health_status` strings map one to one (`UNKNOWN`, `HEALTHY`, `UNHEALTHY`, `DRAINING`,
//! `TIMEOUT`, `DEGRADED`; absent or unrecognised → Unknown).
//!
//! Bounds: the answer is streamed through one serde visitor ([`Walk`]), so memory is O(endpoints kept), at
//! most [`MAX_BACKENDS`](crate::backend::MAX_BACKENDS) of them, whatever the body holds; other
//! clusters' hosts and every unknown field are skipped without being materialised. More distinct
//! endpoints than that is [`AdminError::TooManyEndpoints`]. Nesting is bounded by serde_json's
//! recursion limit (128). Work is O(body bytes).

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Endpoint, EnvoyHealth};
use crate::backend::MAX_BACKENDS;

/// Every cluster's hosts, with health flags ([`clusters_path`] adds a filter Envoy 1.40 honours).
pub const CLUSTERS_PATH: &str = "/clusters?format=json";

/// Longest [`AdminError::Malformed`] reason, in bytes.
const MAX_REASON: usize = 160;

/// Why an admin answer gave no endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// Not the JSON expected; a short reason (at most 160 printable ASCII bytes).
    Malformed(String),
    /// The answer does not list the cluster.
    UnknownCluster,
    /// The cluster lists more than `MAX_BACKENDS` distinct endpoints; the number of endpoints
    /// the answer lists for it (repeats included).
    TooManyEndpoints(usize),
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Malformed(reason) => write!(f, "malformed admin answer: {reason}"),
            AdminError::UnknownCluster => f.write_str("the admin answer does not list the cluster"),
            AdminError::TooManyEndpoints(n) => {
                write!(f, "the cluster lists {n} endpoints; at most {MAX_BACKENDS} are followed")
            }
        }
    }
}

impl std::error::Error for AdminError {}

/// Where `/config_dump` lists a cluster's endpoints: EDS clusters that came from CDS under
/// `dynamic_endpoint_configs`, clusters of the bootstrap (EDS or not) under
/// `static_endpoint_configs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdsResource {
    Dynamic,
    Static,
}

/// The path of the EDS view of `cluster`: `/config_dump?include_eds&resource=…&name_regex=…`, the
/// name regex-escaped and percent-encoded.
pub fn eds_path(cluster: &str, resource: EdsResource) -> String {
    let resource = match resource {
        EdsResource::Dynamic => "dynamic_endpoint_configs",
        EdsResource::Static => "static_endpoint_configs",
    };
    let mut path = format!("/config_dump?include_eds&resource={resource}&name_regex=");
    percent_encode_into(&re2_quote(cluster), &mut path);
    path
}

/// [`CLUSTERS_PATH`] with `filter=^<name>$`: Envoy 1.40.0 then lists only `cluster`; 1.36.4
/// ignores the filter and lists every cluster (both observed). [`parse_clusters`] reads either.
pub fn clusters_path(cluster: &str) -> String {
    let mut path = format!("{CLUSTERS_PATH}&filter=");
    percent_encode_into(&format!("^{}$", re2_quote(cluster)), &mut path);
    path
}

/// `s` as an RE2 regex that matches exactly `s`: RE2's `QuoteMeta` (every ASCII byte but
/// `[A-Za-z0-9_]` gets a backslash, NUL becomes `\x00`, UTF-8 passes as is).
fn re2_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len().saturating_mul(2));
    for c in s.chars() {
        if c == '\0' {
            out.push_str("\\x00");
        } else if c.is_ascii() && !c.is_ascii_alphanumeric() && c != '_' {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
    }
    out
}

/// Appends `s` to `out` with every byte but the URL-unreserved ones (`A-Za-z0-9-._~`) as `%XX`.
fn percent_encode_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            for nibble in [b >> 4, b & 0xF] {
                out.push(HEX.get(usize::from(nibble)).map_or('0', |&h| char::from(h)));
            }
        }
    }
}

/// The endpoints of `cluster` in a `/config_dump?include_eds&resource=…` answer ([`eds_path`]).
pub fn parse_eds(body: &[u8], cluster: &str) -> Result<Vec<Endpoint>, AdminError> {
    parse(body, cluster, At::EdsAnswer)
}

/// The hosts of `cluster` in a `/clusters?format=json` answer ([`CLUSTERS_PATH`],
/// [`clusters_path`]).
pub fn parse_clusters(body: &[u8], cluster: &str) -> Result<Vec<Endpoint>, AdminError> {
    parse(body, cluster, At::ClustersAnswer)
}

/// What both answers share: a top-level object, read by [`Walk`] from `root` on, which keeps
/// the first matching cluster's endpoints.
fn parse(body: &[u8], cluster: &str, root: At) -> Result<Vec<Endpoint>, AdminError> {
    let mut state = State {
        cluster,
        found: None,
        collector: Collector::default(),
        matches: None,
        priority: 0,
        host: RawHost::default(),
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let read = Walk { at: root, st: &mut state }.deserialize(&mut de).and_then(|()| de.end());
    match (read, state.found) {
        (Ok(()), Some(collected)) => collected.finish(),
        (Ok(()), None) => Err(AdminError::UnknownCluster),
        (Err(e), _) => Err(AdminError::Malformed(reason(&e))),
    }
}

/// A short, printable reason for a JSON error: serde's message (it quotes hostile strings with
/// `{:?}`), cut, and where it happened.
fn reason(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let message = full.rsplit_once(" at line ").map_or(full.as_str(), |(m, _)| m);
    let mut out: String = message
        .chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .take(MAX_REASON - 40)
        .collect();
    out.push_str(&format!(" at line {} column {}", e.line(), e.column()));
    out.truncate(MAX_REASON);
    out
}

/// One cluster's endpoints, gathered while the answer streams by: distinct addresses in the
/// order listed, at most `MAX_BACKENDS` kept; past that only counted.
#[derive(Default)]
struct Collector {
    endpoints: Vec<Endpoint>,
    /// FNV, as the snapshot's own sets of addresses (`snapshot.rs`): one hasher in the filter.
    seen: HashSet<SocketAddr, fnv::FnvBuildHasher>,
    /// Endpoints listed with a usable address, repeats included.
    listed: usize,
    overflow: bool,
}

impl Collector {
    fn push(&mut self, endpoint: Option<Endpoint>) {
        let Some(endpoint) = endpoint else { return };
        self.listed = self.listed.saturating_add(1);
        if self.overflow || self.seen.contains(&endpoint.address) {
            return;
        }
        if self.endpoints.len() >= MAX_BACKENDS {
            self.overflow = true;
            self.endpoints = Vec::new();
            self.seen = HashSet::default();
            return;
        }
        self.seen.insert(endpoint.address);
        self.endpoints.push(endpoint);
    }

    /// Sets the priority of the endpoints kept since the `start`-th (a locality group's
    /// `priority` may follow its `lb_endpoints`).
    fn set_priority_from(&mut self, start: usize, priority: u32) {
        for e in self.endpoints.iter_mut().skip(start) {
            e.priority = priority;
        }
    }

    fn finish(self) -> Result<Vec<Endpoint>, AdminError> {
        if self.overflow {
            Err(AdminError::TooManyEndpoints(self.listed))
        } else {
            Ok(self.endpoints)
        }
    }
}

// ---- the schema: what each value is, by where it sits ----
//
// One visitor type, [`Walk`], reads every value of an answer, told by [`At`] what the value
// is; [`MEMBERS`] says which members of each object are followed. A visitor type per shape
// (serde-derived structs and a visitor per object, before) made serde_json instantiate its
// reading code once per type: 21 KB more of the wasm filter (`make build`), for the same
// reading. Same rules as the derived structs had: `null` is absent where the field was an
// `Option`, a repeated member of a leaf object is an error, unknown members are skipped
// (`IgnoredAny`); an array where an object is expected is an error everywhere (serde derive
// also read a struct from an array, by position).

/// Where a value sits in an answer: what it must be, and what is kept of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    // `/config_dump?include_eds&resource=…`: `{"configs": [{"endpoint_config": CLA}, …]}`.
    EdsAnswer,
    Configs,
    EdsConfig,
    /// `envoy.config.endpoint.v3.ClusterLoadAssignment`: `cluster_name`, `endpoints[]`.
    Cla,
    Localities,
    /// `envoy.config.endpoint.v3.LocalityLbEndpoints`: `lb_endpoints[]`, `priority`.
    Locality,
    LocalityPriority,
    LbEndpoints,
    /// `envoy.config.endpoint.v3.LbEndpoint`.
    LbEndpoint,
    Endpoint,
    // `/clusters?format=json`: `{"cluster_statuses": [ClusterStatus, …]}`.
    ClustersAnswer,
    ClusterStatuses,
    /// `envoy.admin.v3.ClusterStatus`: `name`, `host_statuses[]`.
    ClusterStatus,
    Hosts,
    /// `envoy.admin.v3.HostStatus` (its `stats`, `locality`, `hostname`… skipped).
    Host,
    HostPriority,
    /// `envoy.admin.v3.HostHealthStatus`: false flags are omitted.
    HostHealth,
    /// One of its flags (a bit of [`RawHost::flags`]).
    Flag(u8),
    // Both.
    /// A cluster's name: compared, not kept.
    Name,
    /// `envoy.config.core.v3.Address`: only `socket_address` is followed (`pipe`,
    /// `envoy_internal_address` are skipped).
    Address,
    SocketAddress,
    /// An address string, parsed as an IP literal (a hostname, or anything else: none).
    Ip,
    Port,
    Weight,
    /// `envoy.config.core.v3.HealthStatus`, by name or number; unrecognised values are Unknown.
    Health,
}

/// `/clusters` health flags ([`health`]).
const FAILED_ACTIVE_HC: u8 = 1;
const FAILED_OUTLIER: u8 = 1 << 1;
const FAILED_ACTIVE_DEGRADED: u8 = 1 << 2;
const PENDING_DYNAMIC_REMOVAL: u8 = 1 << 3;
const PENDING_ACTIVE_HC: u8 = 1 << 4;
const EXCLUDED_IMMEDIATE_HC_FAIL: u8 = 1 << 5;
const ACTIVE_HC_TIMEOUT: u8 = 1 << 6;
const FAILED_DEGRADED_OUTLIER: u8 = 1 << 7;

/// The members followed: (object, key, what its value is). Any other member is skipped unread.
const MEMBERS: [(At, &str, At); 29] = [
    (At::EdsAnswer, "configs", At::Configs),
    (At::EdsConfig, "endpoint_config", At::Cla),
    (At::Cla, "cluster_name", At::Name),
    (At::Cla, "endpoints", At::Localities),
    (At::Locality, "lb_endpoints", At::LbEndpoints),
    (At::Locality, "priority", At::LocalityPriority),
    (At::LbEndpoint, "endpoint", At::Endpoint),
    (At::LbEndpoint, "health_status", At::Health),
    (At::LbEndpoint, "load_balancing_weight", At::Weight),
    (At::Endpoint, "address", At::Address),
    (At::ClustersAnswer, "cluster_statuses", At::ClusterStatuses),
    (At::ClusterStatus, "name", At::Name),
    (At::ClusterStatus, "host_statuses", At::Hosts),
    (At::Host, "address", At::Address),
    (At::Host, "weight", At::Weight),
    (At::Host, "priority", At::HostPriority),
    (At::Host, "health_status", At::HostHealth),
    (At::HostHealth, "failed_active_health_check", At::Flag(FAILED_ACTIVE_HC)),
    (At::HostHealth, "failed_outlier_check", At::Flag(FAILED_OUTLIER)),
    (At::HostHealth, "failed_active_degraded_check", At::Flag(FAILED_ACTIVE_DEGRADED)),
    (At::HostHealth, "pending_dynamic_removal", At::Flag(PENDING_DYNAMIC_REMOVAL)),
    (At::HostHealth, "pending_active_hc", At::Flag(PENDING_ACTIVE_HC)),
    (At::HostHealth, "excluded_via_immediate_hc_fail", At::Flag(EXCLUDED_IMMEDIATE_HC_FAIL)),
    (At::HostHealth, "active_hc_timeout", At::Flag(ACTIVE_HC_TIMEOUT)),
    (At::HostHealth, "failed_degraded_outlier_detection", At::Flag(FAILED_DEGRADED_OUTLIER)),
    (At::HostHealth, "eds_health_status", At::Health),
    (At::Address, "socket_address", At::SocketAddress),
    (At::SocketAddress, "address", At::Ip),
    (At::SocketAddress, "port_value", At::Port),
];

// A bit per member in [`Walk::visit_map`]'s `seen`.
const _: () = assert!(MEMBERS.len() <= 32);

impl At {
    /// The element of a list.
    fn element(self) -> Option<At> {
        match self {
            At::Configs => Some(At::EdsConfig),
            At::Localities => Some(At::Locality),
            At::LbEndpoints => Some(At::LbEndpoint),
            At::ClusterStatuses => Some(At::ClusterStatus),
            At::Hosts => Some(At::Host),
            _ => None,
        }
    }

    /// `null` reads as absent (proto3 JSON; an `Option` field of the types this replaced).
    fn nullable(self) -> bool {
        matches!(
            self,
            At::Endpoint
                | At::Address
                | At::SocketAddress
                | At::Ip
                | At::Port
                | At::Weight
                | At::LocalityPriority
                | At::HostPriority
                | At::Health
                | At::HostHealth
        )
    }

    /// A repeated member is an error ("duplicate field", as serde derive has it). The objects
    /// that do not refuse repeats read the last name, and every list.
    fn members_once(self) -> bool {
        matches!(
            self,
            At::LbEndpoint
                | At::Endpoint
                | At::Address
                | At::SocketAddress
                | At::Host
                | At::HostHealth
        )
    }

    fn expected(self) -> &'static str {
        match self {
            At::EdsAnswer => "a config_dump object",
            At::EdsConfig => "an endpoint config object",
            At::Cla => "a ClusterLoadAssignment object",
            At::Locality => "a LocalityLbEndpoints object",
            At::LbEndpoint => "an LbEndpoint object",
            At::Endpoint => "an Endpoint object",
            At::ClustersAnswer => "a clusters object",
            At::ClusterStatus => "a ClusterStatus object",
            At::Host => "a HostStatus object",
            At::HostHealth => "a HostHealthStatus object",
            At::Address => "an Address object",
            At::SocketAddress => "a SocketAddress object",
            At::Configs | At::Localities | At::LbEndpoints | At::ClusterStatuses | At::Hosts => {
                "an array"
            }
            At::Flag(_) => "a boolean",
            At::Name => "a cluster name",
            At::Ip => "an address string",
            At::Port | At::Weight | At::LocalityPriority | At::HostPriority => {
                "a uint32, as a number or a string"
            }
            At::Health => "a HealthStatus name or number",
        }
    }
}

/// What the walk keeps: the first matching cluster's endpoints, and the cluster, locality group
/// and endpoint being read (they do not nest).
struct State<'c> {
    cluster: &'c str,
    found: Option<Collector>,
    /// The endpoints of the cluster being read, kept (bounded) until its name is known.
    collector: Collector,
    /// Whether the cluster being read is `cluster`: `None` until its name is read.
    matches: Option<bool>,
    /// The `priority` of the locality group being read.
    priority: u32,
    host: RawHost,
}

/// An `LbEndpoint` or a `HostStatus` as read: its members, flattened (a member appears at most
/// once, so nothing is overwritten).
#[derive(Default)]
struct RawHost {
    ip: Option<IpAddr>,
    port: Option<u32>,
    weight: Option<u32>,
    priority: Option<u32>,
    health: Option<EnvoyHealth>,
    flags: u8,
}

impl RawHost {
    /// `None` without a usable address. An `LbEndpoint` has no priority until its locality
    /// group ends ([`Collector::set_priority_from`]) and no flags: its `health_status` maps one
    /// to one.
    fn endpoint(&self) -> Option<Endpoint> {
        let port = u16::try_from(self.port?).ok().filter(|&p| p != 0)?;
        Some(Endpoint {
            address: SocketAddr::new(self.ip?, port),
            // Absent or 0 → 1 (Envoy: `HostImplBase::weight` stores `max(1, w)`).
            weight: self.weight.map_or(1, |w| w.max(1)),
            priority: self.priority.unwrap_or(0),
            health: health(self.flags, self.health.unwrap_or(EnvoyHealth::Unknown)),
        })
    }
}

/// The rules of the module doc, in order (most severe first); `eds` as is without flags.
fn health(flags: u8, eds: EnvoyHealth) -> EnvoyHealth {
    let any = |mask: u8| flags & mask != 0;
    if any(ACTIVE_HC_TIMEOUT) {
        EnvoyHealth::Timeout
    } else if any(FAILED_ACTIVE_HC
        | FAILED_OUTLIER
        | EXCLUDED_IMMEDIATE_HC_FAIL
        | PENDING_ACTIVE_HC)
        || eds == EnvoyHealth::Unhealthy
    {
        EnvoyHealth::Unhealthy
    } else if eds == EnvoyHealth::Timeout {
        EnvoyHealth::Timeout
    } else if eds == EnvoyHealth::Draining || any(PENDING_DYNAMIC_REMOVAL) {
        EnvoyHealth::Draining
    } else if any(FAILED_ACTIVE_DEGRADED | FAILED_DEGRADED_OUTLIER) || eds == EnvoyHealth::Degraded
    {
        EnvoyHealth::Degraded
    } else {
        eds
    }
}

fn health_number(v: u64) -> EnvoyHealth {
    match v {
        1 => EnvoyHealth::Healthy,
        2 => EnvoyHealth::Unhealthy,
        3 => EnvoyHealth::Draining,
        4 => EnvoyHealth::Timeout,
        5 => EnvoyHealth::Degraded,
        _ => EnvoyHealth::Unknown,
    }
}

fn health_name(v: &str) -> EnvoyHealth {
    match v {
        "HEALTHY" => EnvoyHealth::Healthy,
        "UNHEALTHY" => EnvoyHealth::Unhealthy,
        "DRAINING" => EnvoyHealth::Draining,
        "TIMEOUT" => EnvoyHealth::Timeout,
        "DEGRADED" => EnvoyHealth::Degraded,
        _ => EnvoyHealth::Unknown,
    }
}

// ---- the walk: one visitor, streaming lists and keeping only the cluster asked for ----

/// Reads the value at `at` into the state. Unknown members, other clusters' lists once their
/// name is known not to match, and every cluster after the one found are skipped unread.
struct Walk<'s, 'c> {
    at: At,
    st: &'s mut State<'c>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Walk<'_, '_> {
    /// A proto3 JSON uint32 (a number, or a decimal string) into its place.
    fn number<E: de::Error>(self, v: Result<u32, E>) -> Result<(), E> {
        let v = v?;
        match self.at {
            At::Port => self.st.host.port = Some(v),
            At::Weight => self.st.host.weight = Some(v),
            At::HostPriority => self.st.host.priority = Some(v),
            At::LocalityPriority => self.st.priority = v,
            _ => return Err(E::invalid_type(de::Unexpected::Unsigned(v.into()), &self)),
        }
        Ok(())
    }

    fn is_number(&self) -> bool {
        matches!(self.at, At::Port | At::Weight | At::HostPriority | At::LocalityPriority)
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.at.expected())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        match self.at {
            At::Port => self.st.host.port = None,
            At::Weight => self.st.host.weight = None,
            At::HostPriority => self.st.host.priority = None,
            At::LocalityPriority => self.st.priority = 0,
            At::Ip => self.st.host.ip = None,
            At::Health => self.st.host.health = None,
            at if at.nullable() => {}
            _ => return Err(E::invalid_type(de::Unexpected::Unit, &self)),
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        match self.at {
            At::Flag(bit) if v => self.st.host.flags |= bit,
            At::Flag(_) => {}
            _ => return Err(E::invalid_type(de::Unexpected::Bool(v), &self)),
        }
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        if self.at == At::Health {
            self.st.host.health = Some(health_number(v));
            Ok(())
        } else if self.is_number() {
            let v = u32::try_from(v).map_err(|_| E::custom("number out of uint32 range"));
            self.number(v)
        } else {
            Err(E::invalid_type(de::Unexpected::Unsigned(v), &self))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        if self.at == At::Health {
            self.st.host.health = Some(EnvoyHealth::Unknown);
            Ok(())
        } else if self.is_number() {
            let v = u32::try_from(v).map_err(|_| E::custom("number out of uint32 range"));
            self.number(v)
        } else {
            Err(E::invalid_type(de::Unexpected::Signed(v), &self))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        match self.at {
            At::Name => self.st.matches = Some(v == self.st.cluster),
            At::Ip => self.st.host.ip = v.parse().ok(),
            At::Health => self.st.host.health = Some(health_name(v)),
            _ if self.is_number() => {
                return self.number(v.parse().map_err(|_| E::custom("string is not a uint32")))
            }
            _ => return Err(E::invalid_type(de::Unexpected::Str(v), &self)),
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some(element) = self.at.element() else {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        };
        let Walk { at, st } = self;
        loop {
            let more = if at == At::ClusterStatuses && st.found.is_some() {
                seq.next_element::<IgnoredAny>()?.is_some()
            } else {
                seq.next_element_seed(Walk { at: element, st: &mut *st })?.is_some()
            };
            if !more {
                return Ok(());
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let at = self.at;
        if at.element().is_some() || !MEMBERS.iter().any(|&(object, ..)| object == at) {
            return Err(de::Error::invalid_type(de::Unexpected::Map, &self));
        }
        let st = self.st;
        let start = st.collector.endpoints.len();
        match at {
            At::Cla | At::ClusterStatus => {
                st.collector = Collector::default();
                st.matches = None;
            }
            At::Locality => st.priority = 0,
            At::LbEndpoint | At::Host => st.host = RawHost::default(),
            _ => {}
        }
        let mut seen = 0u32;
        while let Some(member) = map.next_key_seed(Member(at))? {
            let Some((bit, key, value)) = member else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if at.members_once() && seen & bit != 0 {
                return Err(de::Error::duplicate_field(key));
            }
            seen |= bit;
            let skip = match value {
                At::Localities | At::Hosts => st.matches == Some(false),
                At::Cla => st.found.is_some(),
                _ => false,
            };
            if skip {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(Walk { at: value, st: &mut *st })?;
            }
        }
        match at {
            // proto3 omits an empty name: a cluster named "" matches a map without one.
            At::Cla | At::ClusterStatus if st.matches.unwrap_or(st.cluster.is_empty()) => {
                st.found = Some(std::mem::take(&mut st.collector));
            }
            At::Locality => st.collector.set_priority_from(start, st.priority),
            At::LbEndpoint | At::Host => {
                let endpoint = st.host.endpoint();
                st.collector.push(endpoint);
            }
            _ => {}
        }
        Ok(())
    }
}

/// A member's key, looked up in [`MEMBERS`] for the object at `.0` without allocating: a bit
/// of its own (for repeats), its key and what its value is; `None` for a member not followed.
struct Member(At);

type Followed = Option<(u32, &'static str, At)>;

impl<'de> DeserializeSeed<'de> for Member {
    type Value = Followed;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Followed, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Member {
    type Value = Followed;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Followed, E> {
        Ok(MEMBERS
            .iter()
            .zip(0..)
            .find(|&(&(object, key, _), _)| object == self.0 && key == v)
            .map(|(&(_, key, value), i)| (1u32 << i, key, value)))
    }
}

#[cfg(test)]
mod tests;
