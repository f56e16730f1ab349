//! A discovered snapshot as the pool the balancer works on: Envoy's health respected, the
//! operator's `backends` entries applied by address, and each endpoint given a stable id.
//!
//! Envoy's health, as Envoy's own load balancer treats it: HEALTHY and UNKNOWN endpoints are
//! used; UNHEALTHY and TIMEOUT are left out (unless that leaves none: then all are used, as
//! Envoy's panic mode would); DRAINING ones drain (pinned sessions kept, no new ones);
//! DEGRADED ones and those of priority > 0 are backups (used only when no primary is
//! available). A `backends` entry with the same address sets the id, weight, `backup` and
//! `drain` (either flag adds to what Envoy says); entries whose address Envoy does not list
//! are not added. EDS weights are capped at [`MAX_WEIGHT`].

use std::net::SocketAddr;

use super::snapshot::Snapshot;
use super::EnvoyHealth;
use crate::backend::{Backend, Pool};

/// The largest weight kept from EDS (the config's own maximum).
pub const MAX_WEIGHT: u32 = 10_000;

/// The id of a discovered endpoint that no `backends` entry names: its address with `_` before
/// the port and `-` for each `:` of an IPv6 address, so `10.0.0.7:8080` is `10.0.0.7_8080` and
/// `[fd00::7]:8080` is `fd00--7_8080`. Stable while the address is, distinct per address, and
/// within the id alphabet (`[A-Za-z0-9_.-]`, at most 46 bytes).
pub fn derived_id(address: SocketAddr) -> String {
    let ip = address.ip().to_string().replace(':', "-");
    format!("{ip}_{}", address.port())
}

/// The address whose [`derived_id`] `id` is, if it is one.
pub fn derived_address(id: &str) -> Option<SocketAddr> {
    let (ip, port) = id.rsplit_once('_')?;
    let ip: std::net::IpAddr =
        if ip.contains('-') { ip.replace('-', ":").parse().ok()? } else { ip.parse().ok()? };
    let address = SocketAddr::new(ip, port.parse().ok()?);
    (derived_id(address) == id).then_some(address)
}

/// Whether Envoy would send traffic to an endpoint in this state (outside panic).
fn usable(h: EnvoyHealth) -> bool {
    !matches!(h, EnvoyHealth::Unhealthy | EnvoyHealth::Timeout)
}

/// The pool of `snapshot`, with `overrides` (the configured `backends`) applied by address.
pub fn pool_of(snapshot: &Snapshot, overrides: &[Backend]) -> Pool {
    let by_address: fnv::FnvHashMap<SocketAddr, &Backend> =
        overrides.iter().filter_map(|b| Some((b.address?, b))).collect();
    let any_usable = snapshot.endpoints.iter().any(|s| usable(s.endpoint.health));
    let mut backends = Vec::with_capacity(snapshot.endpoints.len());
    for s in &snapshot.endpoints {
        let e = &s.endpoint;
        if any_usable && !usable(e.health) {
            continue;
        }
        let listed = by_address.get(&e.address);
        let id = listed.map_or_else(|| derived_id(e.address), |b| b.id.clone());
        let weight = listed.map_or(e.weight.clamp(1, MAX_WEIGHT), |b| b.weight);
        let mut b = Backend::new(id, e.address, weight);
        b.backup =
            e.priority > 0 || e.health == EnvoyHealth::Degraded || listed.is_some_and(|b| b.backup);
        b.drain = e.health == EnvoyHealth::Draining || listed.is_some_and(|b| b.drain);
        b.slot = Some(s.slot);
        backends.push(b);
    }
    Pool::new(backends)
}

#[cfg(test)]
mod tests;
