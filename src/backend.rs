//! The backend pool: ids, where each backend is (an address, or an Envoy cluster of its own),
//! and configured weights.

use std::net::SocketAddr;

/// Most backends one pool may hold (bounds per-VM memory and per-request work).
pub const MAX_BACKENDS: usize = 10_000;

/// Longest backend id: the id is carried in the sticky cookie.
pub const MAX_ID_LEN: usize = 64;

/// Whether `id` is a backend id: 1 to [`MAX_ID_LEN`] bytes of `[A-Za-z0-9_.-]` (the config
/// refuses others; the sticky cookie carries only these).
pub fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && id.bytes().all(is_id_byte)
}

/// A byte of a backend id: `[A-Za-z0-9_.-]`.
pub fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-'
}

/// One configured upstream endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub id: String,
    /// `None` for a backend that is an Envoy cluster (`cluster_header` mode).
    pub address: Option<SocketAddr>,
    /// What the steering names: `address` rendered once in the `ip:port` / `[ipv6]:port`
    /// form override_host and ORIGINAL_DST expect, or the backend's cluster name.
    pub host: String,
    pub weight: u32,
    /// Receives traffic only when no primary backend is available.
    pub backup: bool,
    /// Keeps the sessions pinned to it (sticky cookies) but receives no new ones.
    pub drain: bool,
    /// A discovered endpoint's slot ([`crate::discovery::snapshot`]): names its per-endpoint
    /// shared-data keys. `None` for a configured backend (keys named by id and address).
    pub slot: Option<u32>,
}

impl Backend {
    pub fn new(id: String, address: SocketAddr, weight: u32) -> Self {
        let host = address.to_string();
        Backend {
            id,
            address: Some(address),
            host,
            weight,
            backup: false,
            drain: false,
            slot: None,
        }
    }

    /// A backend that is a whole Envoy cluster, named by the `cluster_header` route.
    pub fn in_cluster(id: String, cluster: String, weight: u32) -> Self {
        Backend {
            id,
            address: None,
            host: cluster,
            weight,
            backup: false,
            drain: false,
            slot: None,
        }
    }

    /// This backend as a backup.
    pub fn into_backup(mut self) -> Self {
        self.backup = true;
        self
    }

    /// This backend draining: no new sessions, existing sticky sessions kept.
    pub fn draining(mut self) -> Self {
        self.drain = true;
        self
    }
}

/// The ordered backends of one configuration; a backend is named by its index.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    backends: Vec<Backend>,
}

impl Pool {
    pub fn new(backends: Vec<Backend>) -> Self {
        Pool { backends }
    }

    pub fn len(&self) -> usize {
        self.backends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<&Backend> {
        self.backends.get(index)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Backend> {
        self.backends.iter()
    }

    /// Configured weights, in pool order.
    pub fn weights(&self) -> impl Iterator<Item = u32> + '_ {
        self.backends.iter().map(|b| b.weight)
    }
}
