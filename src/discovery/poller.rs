//! The one discovery poller of a proxy and every worker's view of what it found.
//!
//! [`Poller`]: run on every VM's tick; only the holder of the discovery lease
//! ([`crate::state::lease`], TTL three intervals) polls: one GET at a time to a fixed path,
//! every `interval_ms`. A good answer becomes the next [`Snapshot`] (published only when the
//! endpoints changed) and the [`PollStatus`] (after every poll). A failed poll — no answer,
//! timeout, a status other than 200, an answer over `max_response_bytes`, unreadable, the
//! cluster not in it, no endpoints — changes nothing but the status: the last good pool keeps
//! serving. Log lines are returned only on a change of state (first snapshot, a new
//! generation, failing, failing differently, working again), never per poll.
//!
//! [`Follower`]: every worker reads the status once per tick and the snapshot only when the
//! status names a newer generation. Per tick: one lease read and write for the holder, one
//! status read for everyone; O(endpoints) only when the endpoints change.

use super::admin::{self, AdminError};
use super::snapshot::{PollStatus, Snapshot};
use crate::config::{Discovery, DiscoverySource};
use crate::state::lease;
use crate::state::{keys, SharedStore};
use crate::MS;

/// A poll to send: a GET of `path` through `cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    pub cluster: String,
    pub path: String,
    pub timeout_ms: u64,
}

/// The answer to a poll, as the adapter got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// `:status` and the body (read only when within `max_response_bytes`).
    Body(Option<u16>, &'a [u8]),
    /// `:status` and the size of a body over `max_response_bytes` (not read).
    TooLarge(Option<u16>, usize),
}

/// What a poll's end changed: lines to log, and whether it failed (for the error counter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Polled {
    pub log: Vec<String>,
    pub failed: bool,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    token: u32,
    sent_ns: u64,
}

pub struct Poller {
    settings: Discovery,
    path: String,
    /// Where an EDS cluster's assignment is looked for: a cluster from CDS is under the
    /// dynamic endpoint configs, one defined in the bootstrap under the static ones; the poll
    /// after an answer without the cluster looks in the other.
    resource: admin::EdsResource,
    lease_key: String,
    snapshot_key: String,
    status_key: String,
    owner: u64,
    holder: bool,
    pending: Option<Pending>,
    next_poll_ns: u64,
    /// The status as this VM last wrote it (read from the store on taking the lease).
    status: Option<PollStatus>,
}

impl Poller {
    /// `pool_cluster` names the shared-data keys (the filter's `cluster`); `owner` is unique
    /// per VM.
    pub fn new(settings: &Discovery, pool_cluster: &str, owner: u64) -> Poller {
        let path = match settings.source {
            DiscoverySource::Eds => admin::eds_path(&settings.cluster, admin::EdsResource::Dynamic),
            DiscoverySource::Clusters => admin::clusters_path(&settings.cluster),
        };
        Poller {
            settings: settings.clone(),
            path,
            resource: admin::EdsResource::Dynamic,
            lease_key: keys::discovery_lease(pool_cluster),
            snapshot_key: keys::discovery(pool_cluster),
            status_key: keys::discovery_status(pool_cluster),
            owner,
            holder: false,
            pending: None,
            next_poll_ns: 0,
            status: None,
        }
    }

    /// Whether this VM held the discovery lease at its last tick.
    pub fn holds_lease(&self) -> bool {
        self.holder
    }

    fn interval_ns(&self) -> u64 {
        self.settings.interval_ms.saturating_mul(MS)
    }

    /// One tick at `now_ns` (wall clock): take or renew the lease; as holder, the poll to send
    /// now, if one is due and none is on its way. A poll with no answer long past its timeout
    /// is given up (the host answers timeouts itself; this only guards a lost callback).
    pub fn tick(&mut self, store: &dyn SharedStore, now_ns: u64) -> (Option<Poll>, Polled) {
        let ttl = self.interval_ns().saturating_mul(lease::TTL_INTERVALS);
        let status = lease::acquire(store, &self.lease_key, self.owner, now_ns, ttl);
        let was_holder = self.holder;
        self.holder = status.may_probe();
        let mut polled = Polled::default();
        if !self.holder {
            self.pending = None;
            return (None, polled);
        }
        if !was_holder || self.status.is_none() {
            self.status = Some(read_status(store, &self.status_key).unwrap_or_default());
        }
        if let Some(p) = self.pending {
            let limit =
                self.settings.timeout_ms.saturating_mul(MS).saturating_add(self.interval_ns());
            if now_ns.saturating_sub(p.sent_ns) <= limit {
                return (None, polled);
            }
            self.pending = None;
            polled = self.failed(store, "no answer from the admin cluster".to_string(), now_ns);
        }
        if now_ns < self.next_poll_ns {
            return (None, polled);
        }
        self.next_poll_ns = now_ns.saturating_add(self.interval_ns());
        let poll = Poll {
            cluster: self.settings.admin_cluster.clone(),
            path: self.path.clone(),
            timeout_ms: self.settings.timeout_ms,
        };
        (Some(poll), polled)
    }

    /// The poll went out as callout `token`.
    pub fn sent(&mut self, token: u32, now_ns: u64) {
        self.pending = Some(Pending { token, sent_ns: now_ns });
    }

    /// The poll could not be sent (e.g. the admin cluster does not exist).
    pub fn not_sent(&mut self, store: &dyn SharedStore, why: &str, now_ns: u64) -> Polled {
        let why = format!("cannot call admin cluster {}: {why}", self.settings.admin_cluster);
        self.failed(store, why, now_ns)
    }

    /// Whether callout `token` is this poller's.
    pub fn owns(&self, token: u32) -> bool {
        self.pending.is_some_and(|p| p.token == token)
    }

    /// The answer to callout `token`.
    pub fn answered(
        &mut self,
        store: &dyn SharedStore,
        token: u32,
        answer: Answer<'_>,
        now_ns: u64,
    ) -> Polled {
        if !self.owns(token) {
            return Polled::default();
        }
        self.pending = None;
        let max = self.settings.max_response_bytes;
        let body = match answer {
            Answer::TooLarge(_, size) => {
                let why =
                    format!("admin answer of {size} bytes is over max_response_bytes ({max})");
                return self.failed(store, why, now_ns);
            }
            Answer::Body(None, _) => {
                return self.failed(store, "no answer from the admin cluster".into(), now_ns)
            }
            Answer::Body(Some(200), body) if body.len() <= max => body,
            Answer::Body(Some(200), body) => {
                let why = format!(
                    "admin answer of {} bytes is over max_response_bytes ({max})",
                    body.len()
                );
                return self.failed(store, why, now_ns);
            }
            Answer::Body(Some(status), _) => {
                return self.failed(store, format!("admin answered {status}"), now_ns)
            }
        };
        let cluster = &self.settings.cluster;
        let parsed = match self.settings.source {
            DiscoverySource::Eds => admin::parse_eds(body, cluster),
            DiscoverySource::Clusters => admin::parse_clusters(body, cluster),
        };
        let endpoints = match parsed {
            Ok(e) if e.is_empty() => {
                return self.failed(store, format!("cluster {cluster} has no endpoints"), now_ns)
            }
            Ok(e) => e,
            Err(AdminError::UnknownCluster) => {
                let why = format!(
                    "cluster {cluster} is not in the admin answer (unknown cluster, or not an \
                     EDS cluster: try source \"clusters\")"
                );
                if self.settings.source == DiscoverySource::Eds {
                    self.resource = match self.resource {
                        admin::EdsResource::Dynamic => admin::EdsResource::Static,
                        admin::EdsResource::Static => admin::EdsResource::Dynamic,
                    };
                    self.path = admin::eds_path(cluster, self.resource);
                }
                return self.failed(store, why, now_ns);
            }
            Err(e) => return self.failed(store, format!("admin answer refused: {e}"), now_ns),
        };
        self.succeeded(store, endpoints, now_ns)
    }

    fn succeeded(
        &mut self,
        store: &dyn SharedStore,
        endpoints: Vec<super::Endpoint>,
        now_ns: u64,
    ) -> Polled {
        let mut log = Vec::new();
        let mut status = self.status.take().unwrap_or_default();
        if status.failures > 0 || !status.error.is_empty() {
            log.push(format!(
                "discovery: polls of cluster {} work again (after {} failed)",
                self.settings.cluster, status.failures
            ));
        }
        // Continue from the published snapshot (another VM may have held the lease before).
        let (published, cas) = match store.get(&self.snapshot_key) {
            Ok(Some((bytes, cas))) => (Snapshot::decode(&bytes), cas),
            _ => (None, 0),
        };
        let published = published.unwrap_or_default();
        if let Some(next) = published.next(endpoints, now_ns) {
            if store.set(&self.snapshot_key, &next.encode(), cas).is_ok() {
                let (old, new) = (published.endpoints.len(), next.endpoints.len());
                let before: fnv::FnvHashSet<_> =
                    published.endpoints.iter().map(|s| s.endpoint.address).collect();
                let added =
                    next.endpoints.iter().filter(|s| !before.contains(&s.endpoint.address)).count();
                let removed = old.saturating_sub(new.saturating_sub(added));
                log.push(format!(
                    "discovery: cluster {} generation {}: {new} endpoints ({added} new, {removed} removed)",
                    self.settings.cluster, next.generation
                ));
                status.generation = next.generation;
                status.endpoints = u32::try_from(new).unwrap_or(u32::MAX);
            }
        } else {
            status.generation = published.generation;
            status.endpoints = u32::try_from(published.endpoints.len()).unwrap_or(u32::MAX);
        }
        status.last_ok_ns = now_ns;
        status.last_poll_ns = now_ns;
        status.failures = 0;
        status.error.clear();
        let _ = store.set(&self.status_key, &status.encode(), 0);
        self.status = Some(status);
        Polled { log, failed: false }
    }

    fn failed(&mut self, store: &dyn SharedStore, why: String, now_ns: u64) -> Polled {
        let mut status = self.status.take().unwrap_or_default();
        let mut log = Vec::new();
        let why = super::snapshot::cut(&why, 240).to_string();
        if status.error != why {
            let serving = if status.generation > 0 {
                format!(
                    "the last pool (generation {}, {} endpoints) keeps serving",
                    status.generation, status.endpoints
                )
            } else {
                "no snapshot yet: requests are not steered".to_string()
            };
            log.push(format!(
                "discovery: polls of cluster {} fail: {why}; {serving}",
                self.settings.cluster
            ));
        }
        status.failures = status.failures.saturating_add(1);
        status.last_poll_ns = now_ns;
        status.error = why;
        let _ = store.set(&self.status_key, &status.encode(), 0);
        self.status = Some(status);
        Polled { log, failed: true }
    }
}

fn read_status(store: &dyn SharedStore, key: &str) -> Option<PollStatus> {
    let (bytes, _) = store.get(key).ok().flatten()?;
    PollStatus::decode(&bytes)
}

/// A worker's view: the last status read and the generation its pool was built from.
#[derive(Debug, Clone, Default)]
pub struct Follower {
    snapshot_key: String,
    status_key: String,
    /// The generation the router's pool was built from (0: none yet).
    pub generation: u64,
    /// The status as last read.
    pub status: Option<PollStatus>,
}

impl Follower {
    pub fn new(pool_cluster: &str) -> Follower {
        Follower {
            snapshot_key: keys::discovery(pool_cluster),
            status_key: keys::discovery_status(pool_cluster),
            generation: 0,
            status: None,
        }
    }

    /// Once per tick (and at configure): the snapshot to build the pool from, when the
    /// published one is newer than this worker's. One read of the status; the snapshot is
    /// read only when the status names another generation.
    pub fn refresh(&mut self, store: &dyn SharedStore) -> Option<Snapshot> {
        self.status = read_status(store, &self.status_key).or(self.status.take());
        let named = self.status.as_ref().map_or(0, |s| s.generation);
        if named == self.generation && self.generation > 0 {
            return None;
        }
        let (bytes, _) = store.get(&self.snapshot_key).ok().flatten()?;
        let snapshot = Snapshot::decode(&bytes)?;
        if snapshot.generation == self.generation || snapshot.endpoints.is_empty() {
            return None;
        }
        self.generation = snapshot.generation;
        Some(snapshot)
    }
}

#[cfg(test)]
mod tests;
