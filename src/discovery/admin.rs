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
//! Bounds: the answer is streamed through serde visitors, so memory is O(endpoints kept), at
//! most [`MAX_BACKENDS`](crate::backend::MAX_BACKENDS) of them, whatever the body holds; other
//! clusters' hosts and every unknown field are skipped without being materialised. More distinct
//! endpoints than that is [`AdminError::TooManyEndpoints`]. Nesting is bounded by serde_json's
//! recursion limit (128). Work is O(body bytes).

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

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
    parse(body, EdsAnswer { cluster, found: None })
}

/// The hosts of `cluster` in a `/clusters?format=json` answer ([`CLUSTERS_PATH`],
/// [`clusters_path`]).
pub fn parse_clusters(body: &[u8], cluster: &str) -> Result<Vec<Endpoint>, AdminError> {
    parse(body, ClustersAnswer { cluster, found: None })
}

/// What both answers share: a top-level object read by `answer`, which keeps the first
/// matching cluster's endpoints.
fn parse<'de, A>(body: &'de [u8], answer: A) -> Result<Vec<Endpoint>, AdminError>
where
    A: Visitor<'de, Value = Found>,
{
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = de.deserialize_map(answer).and_then(|found| de.end().map(|()| found));
    match found {
        Ok(Some(collected)) => collected.finish(),
        Ok(None) => Err(AdminError::UnknownCluster),
        Err(e) => Err(AdminError::Malformed(reason(&e))),
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

/// The collected endpoints of the cluster, once found.
type Found = Option<Collector>;

/// One cluster's endpoints, gathered while the answer streams by: distinct addresses in the
/// order listed, at most `MAX_BACKENDS` kept; past that only counted.
#[derive(Default)]
struct Collector {
    endpoints: Vec<Endpoint>,
    seen: HashSet<SocketAddr>,
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
            self.seen = HashSet::new();
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

// ---- the leaves: small typed structs, unknown fields skipped ----

/// `envoy.config.core.v3.Address`: only `socket_address` is followed (`pipe`,
/// `envoy_internal_address` are skipped).
#[derive(Deserialize)]
struct RawAddress {
    #[serde(default)]
    socket_address: Option<RawSocketAddress>,
}

#[derive(Deserialize)]
struct RawSocketAddress {
    #[serde(default)]
    address: Option<Ip>,
    #[serde(default)]
    port_value: Option<Num>,
}

/// An address string, parsed as an IP literal where it is read (`None`: a hostname, or
/// anything else).
struct Ip(Option<IpAddr>);

impl<'de> Deserialize<'de> for Ip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Ip;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ip, E> {
                Ok(Ip(v.parse().ok()))
            }
        }
        d.deserialize_str(V)
    }
}

fn socket_address(address: Option<RawAddress>) -> Option<SocketAddr> {
    let sa = address?.socket_address?;
    let ip = sa.address?.0?;
    let port = u16::try_from(sa.port_value?.0).ok().filter(|&p| p != 0)?;
    Some(SocketAddr::new(ip, port))
}

/// A proto3 JSON uint32: a number, or a decimal string.
struct Num(u32);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a uint32, as a number or a string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                u32::try_from(v).map(Num).map_err(|_| E::custom("number out of uint32 range"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                u32::try_from(v).map(Num).map_err(|_| E::custom("number out of uint32 range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
                v.parse().map(Num).map_err(|_| E::custom("string is not a uint32"))
            }
        }
        d.deserialize_any(V)
    }
}

/// `envoy.config.core.v3.HealthStatus`, by name or number; unrecognised values are Unknown.
struct Health(EnvoyHealth);

impl<'de> Deserialize<'de> for Health {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Health;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a HealthStatus name or number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Health, E> {
                Ok(Health(match v {
                    1 => EnvoyHealth::Healthy,
                    2 => EnvoyHealth::Unhealthy,
                    3 => EnvoyHealth::Draining,
                    4 => EnvoyHealth::Timeout,
                    5 => EnvoyHealth::Degraded,
                    _ => EnvoyHealth::Unknown,
                }))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Health, E> {
                Ok(Health(EnvoyHealth::Unknown))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Health, E> {
                Ok(Health(match v {
                    "HEALTHY" => EnvoyHealth::Healthy,
                    "UNHEALTHY" => EnvoyHealth::Unhealthy,
                    "DRAINING" => EnvoyHealth::Draining,
                    "TIMEOUT" => EnvoyHealth::Timeout,
                    "DEGRADED" => EnvoyHealth::Degraded,
                    _ => EnvoyHealth::Unknown,
                }))
            }
        }
        d.deserialize_any(V)
    }
}

/// `envoy.config.endpoint.v3.LbEndpoint`.
#[derive(Deserialize)]
struct RawLbEndpoint {
    #[serde(default)]
    endpoint: Option<RawEndpoint>,
    #[serde(default)]
    health_status: Option<Health>,
    #[serde(default)]
    load_balancing_weight: Option<Num>,
}

#[derive(Deserialize)]
struct RawEndpoint {
    #[serde(default)]
    address: Option<RawAddress>,
}

impl RawLbEndpoint {
    /// Priority 0 until its locality group ends ([`Collector::set_priority_from`]).
    fn into_endpoint(self) -> Option<Endpoint> {
        Some(Endpoint {
            address: socket_address(self.endpoint?.address)?,
            weight: weight(self.load_balancing_weight),
            priority: 0,
            health: self.health_status.map_or(EnvoyHealth::Unknown, |h| h.0),
        })
    }
}

/// Absent or 0 → 1 (Envoy: `HostImplBase::weight` stores `max(1, w)`).
fn weight(w: Option<Num>) -> u32 {
    w.map_or(1, |w| w.0.max(1))
}

/// `envoy.admin.v3.HostStatus` (its `stats`, `locality`, `hostname`… skipped).
#[derive(Deserialize)]
struct RawHost {
    #[serde(default)]
    address: Option<RawAddress>,
    #[serde(default)]
    weight: Option<Num>,
    #[serde(default)]
    priority: Option<Num>,
    #[serde(default)]
    health_status: Option<RawHostHealth>,
}

/// `envoy.admin.v3.HostHealthStatus`: false flags are omitted.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawHostHealth {
    failed_active_health_check: bool,
    failed_outlier_check: bool,
    failed_active_degraded_check: bool,
    pending_dynamic_removal: bool,
    pending_active_hc: bool,
    excluded_via_immediate_hc_fail: bool,
    active_hc_timeout: bool,
    failed_degraded_outlier_detection: bool,
    eds_health_status: Option<Health>,
}

impl RawHostHealth {
    /// The rules of the module doc, in order (most severe first).
    fn health(&self) -> EnvoyHealth {
        let eds = self.eds_health_status.as_ref().map_or(EnvoyHealth::Unknown, |h| h.0);
        if self.active_hc_timeout {
            EnvoyHealth::Timeout
        } else if self.failed_active_health_check
            || self.failed_outlier_check
            || self.excluded_via_immediate_hc_fail
            || self.pending_active_hc
            || eds == EnvoyHealth::Unhealthy
        {
            EnvoyHealth::Unhealthy
        } else if eds == EnvoyHealth::Timeout {
            EnvoyHealth::Timeout
        } else if eds == EnvoyHealth::Draining || self.pending_dynamic_removal {
            EnvoyHealth::Draining
        } else if self.failed_active_degraded_check
            || self.failed_degraded_outlier_detection
            || eds == EnvoyHealth::Degraded
        {
            EnvoyHealth::Degraded
        } else {
            eds
        }
    }
}

impl RawHost {
    fn into_endpoint(self) -> Option<Endpoint> {
        Some(Endpoint {
            address: socket_address(self.address)?,
            weight: weight(self.weight),
            priority: self.priority.map_or(0, |p| p.0),
            health: self.health_status.unwrap_or_default().health(),
        })
    }
}

// ---- the structure: visitors that stream lists and keep only the cluster asked for ----

/// A key of an object, compared without allocating; `Other` for any key not followed.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Key {
    Configs,
    EndpointConfig,
    ClusterName,
    Endpoints,
    LbEndpoints,
    Priority,
    ClusterStatuses,
    Name,
    HostStatuses,
    #[serde(other)]
    Other,
}

/// Skips the value of a key that is not followed, without keeping any of it.
fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(|_| ())
}

/// Reads a string and says whether it equals the cluster name (nothing is kept).
struct NameIs<'c>(&'c str);

impl<'de> DeserializeSeed<'de> for NameIs<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for NameIs<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a cluster name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

/// A JSON array read element by element by `S` (the shared shape of the list visitors below):
/// no element outlives its turn.
struct Seq<'s, S>(&'s mut S);

/// What reads the elements of a [`Seq`], one at a time, into itself.
trait Elements<'de> {
    /// Reads the next element; `false` at the end of the list.
    fn next<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error>;
}

impl<'de, S: Elements<'de>> DeserializeSeed<'de> for Seq<'_, S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: Elements<'de>> Visitor<'de> for Seq<'_, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while self.0.next(&mut seq)? {}
        Ok(())
    }
}

/// Reads one cluster's map (a `ClusterLoadAssignment` or a `ClusterStatus`): its name and its
/// endpoint list, in either order. Once the name is known not to match, the list is skipped;
/// before that it is collected (bounded) and dropped at the end if the name does not match.
fn read_cluster<'de, A, F>(
    mut map: A,
    cluster: &str,
    name_key: fn(&Key) -> bool,
    list_key: fn(&Key) -> bool,
    mut read_list: F,
) -> Result<Option<Collector>, A::Error>
where
    A: MapAccess<'de>,
    F: FnMut(&mut A, &mut Collector) -> Result<(), A::Error>,
{
    let mut matches: Option<bool> = None;
    let mut collector = Collector::default();
    while let Some(key) = map.next_key::<Key>()? {
        if name_key(&key) {
            matches = Some(map.next_value_seed(NameIs(cluster))?);
        } else if list_key(&key) && matches != Some(false) {
            read_list(&mut map, &mut collector)?;
        } else {
            skip(&mut map)?;
        }
    }
    // proto3 omits an empty name: a cluster named "" matches a map without one.
    let matches = matches.unwrap_or(cluster.is_empty());
    Ok(matches.then_some(collector))
}

/// `/config_dump?include_eds&resource=…`: `{"configs": [{"endpoint_config": CLA, …}, …]}`.
struct EdsAnswer<'c> {
    cluster: &'c str,
    found: Found,
}

impl<'de> Visitor<'de> for EdsAnswer<'_> {
    type Value = Found;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a config_dump object")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Found, A::Error> {
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Configs => map.next_value_seed(Seq(&mut self))?,
                _ => skip(&mut map)?,
            }
        }
        Ok(self.found)
    }
}

/// One element of `configs`: an object whose `endpoint_config` is a `ClusterLoadAssignment`.
impl<'de> Elements<'de> for EdsAnswer<'_> {
    fn next<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        seq.next_element_seed(EdsConfig(self)).map(|e| e.is_some())
    }
}

struct EdsConfig<'a, 'c>(&'a mut EdsAnswer<'c>);

impl<'de> DeserializeSeed<'de> for EdsConfig<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EdsConfig<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an endpoint config object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::EndpointConfig if self.0.found.is_none() => {
                    self.0.found = map.next_value_seed(Cla(self.0.cluster))?;
                }
                _ => skip(&mut map)?,
            }
        }
        Ok(())
    }
}

/// `envoy.config.endpoint.v3.ClusterLoadAssignment`: `cluster_name`, `endpoints[]`.
struct Cla<'c>(&'c str);

impl<'de> DeserializeSeed<'de> for Cla<'_> {
    type Value = Found;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Found, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Cla<'_> {
    type Value = Found;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a ClusterLoadAssignment object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Found, A::Error> {
        read_cluster(
            map,
            self.0,
            |k| matches!(k, Key::ClusterName),
            |k| matches!(k, Key::Endpoints),
            |map, collector| map.next_value_seed(Seq(&mut Localities(collector))),
        )
    }
}

/// `endpoints[]`: `LocalityLbEndpoints` objects.
struct Localities<'a>(&'a mut Collector);

impl<'de> Elements<'de> for Localities<'_> {
    fn next<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        seq.next_element_seed(Locality(self.0)).map(|e| e.is_some())
    }
}

/// `envoy.config.endpoint.v3.LocalityLbEndpoints`: `lb_endpoints[]`, `priority`.
struct Locality<'a>(&'a mut Collector);

impl<'de> DeserializeSeed<'de> for Locality<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Locality<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a LocalityLbEndpoints object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let start = self.0.endpoints.len();
        let mut priority = 0;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::LbEndpoints => map.next_value_seed(Seq(&mut LbEndpoints(self.0)))?,
                Key::Priority => priority = map.next_value::<Option<Num>>()?.map_or(0, |p| p.0),
                _ => skip(&mut map)?,
            }
        }
        self.0.set_priority_from(start, priority);
        Ok(())
    }
}

/// `lb_endpoints[]`.
struct LbEndpoints<'a>(&'a mut Collector);

impl<'de> Elements<'de> for LbEndpoints<'_> {
    fn next<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        let Some(e) = seq.next_element::<RawLbEndpoint>()? else { return Ok(false) };
        self.0.push(e.into_endpoint());
        Ok(true)
    }
}

/// `/clusters?format=json`: `{"cluster_statuses": [ClusterStatus, …]}`.
struct ClustersAnswer<'c> {
    cluster: &'c str,
    found: Found,
}

impl<'de> Visitor<'de> for ClustersAnswer<'_> {
    type Value = Found;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a clusters object")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Found, A::Error> {
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::ClusterStatuses => map.next_value_seed(Seq(&mut self))?,
                _ => skip(&mut map)?,
            }
        }
        Ok(self.found)
    }
}

/// One element of `cluster_statuses`; skipped whole once the cluster is found.
impl<'de> Elements<'de> for ClustersAnswer<'_> {
    fn next<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        if self.found.is_some() {
            return seq.next_element::<IgnoredAny>().map(|e| e.is_some());
        }
        match seq.next_element_seed(ClusterStatus(self.cluster))? {
            None => Ok(false),
            Some(found) => {
                self.found = found;
                Ok(true)
            }
        }
    }
}

/// `envoy.admin.v3.ClusterStatus`: `name`, `host_statuses[]`.
struct ClusterStatus<'c>(&'c str);

impl<'de> DeserializeSeed<'de> for ClusterStatus<'_> {
    type Value = Found;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Found, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClusterStatus<'_> {
    type Value = Found;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a ClusterStatus object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Found, A::Error> {
        read_cluster(
            map,
            self.0,
            |k| matches!(k, Key::Name),
            |k| matches!(k, Key::HostStatuses),
            |map, collector| map.next_value_seed(Seq(&mut Hosts(collector))),
        )
    }
}

/// `host_statuses[]`.
struct Hosts<'a>(&'a mut Collector);

impl<'de> Elements<'de> for Hosts<'_> {
    fn next<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        let Some(h) = seq.next_element::<RawHost>()? else { return Ok(false) };
        self.0.push(h.into_endpoint());
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
