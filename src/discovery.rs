//! Where the pool comes from when it follows Envoy's own cluster: the endpoints Envoy's admin
//! API reports ([`admin`]), turned into a [`Pool`](crate::backend::Pool) with Envoy's health
//! respected and the operator's `backends` entries applied on top ([`pool`]), and the versioned
//! snapshot the one poller of a proxy shares with every worker ([`snapshot`]). No host calls:
//! the adapter sends the callout and hands the answer in.

pub mod admin;
pub mod poller;
pub mod pool;
pub mod snapshot;

use std::net::SocketAddr;

/// An endpoint's health as Envoy reports it (EDS `health_status`, or `/clusters` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnvoyHealth {
    Unknown,
    Healthy,
    Unhealthy,
    Draining,
    Timeout,
    Degraded,
}

/// One endpoint of the followed cluster, as Envoy reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub address: SocketAddr,
    /// `load_balancing_weight` (1 when absent or 0).
    pub weight: u32,
    /// The locality's priority (0 when absent).
    pub priority: u32,
    pub health: EnvoyHealth,
}
