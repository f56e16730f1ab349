//! The router's side of live pools: on each tick, poll as the discovery lease holder and
//! follow the published snapshot; when it moves, rebuild everything that depends on the pool
//! (balancer, health view, in-flight counters, metrics, address and id maps) while keeping,
//! for every endpoint that stays, what the proxy knows about it: health and ejection (the
//! shared table, re-keyed), in-flight counts (moved with it), latency estimates (carried),
//! sticky sessions (cookies name ids, and ids are stable). Requests steered before the change
//! find their backend again by key ([`Ticket`]'s `key`).

use std::rc::Rc;

use super::{health, Router};
use crate::discovery::poller::{Answer, Poll, Polled};
use crate::discovery::pool::pool_of;
use crate::discovery::snapshot::Snapshot;
use crate::metrics::{PoolCounter, PoolGauge};
use crate::state::keys;
use crate::MS;

impl Router {
    /// Once per tick, before health: as lease holder, the poll to send; for every VM, the
    /// pool rebuilt when a newer snapshot was published. Returns lines to log.
    pub(super) fn discovery_tick(&mut self, now_ns: u64, log: &mut Vec<String>) -> Option<Poll> {
        let mut poll = None;
        if let Some(poller) = self.poller.as_mut() {
            let (p, polled) = poller.tick(&self.store, now_ns);
            poll = p;
            self.note_polled(polled, log);
        }
        self.follow_snapshot(now_ns, log);
        poll
    }

    /// Rebuilds the pool when a newer snapshot is published (also called at configure).
    pub(super) fn follow_snapshot(&mut self, now_ns: u64, log: &mut Vec<String>) {
        let Some(follower) = self.follower.as_mut() else { return };
        let snapshot = follower.refresh(&self.store);
        if let Some(status) = &follower.status {
            let age_ms = now_ns.saturating_sub(status.last_ok_ns) / MS;
            let age_ms = if status.last_ok_ns == 0 { 0 } else { age_ms };
            self.metrics.pool_gauge(PoolGauge::DiscoveryAgeMs, age_ms);
            self.metrics.pool_gauge(PoolGauge::DiscoveryEndpoints, u64::from(status.endpoints));
        }
        if let Some(snapshot) = snapshot {
            self.repool(&snapshot, now_ns, log);
        }
    }

    fn note_polled(&mut self, polled: Polled, log: &mut Vec<String>) {
        if polled.failed {
            self.metrics.pool(PoolCounter::DiscoveryErrors);
        }
        log.extend(polled.log);
    }

    /// Whether callout `token` is a discovery poll of this router.
    pub fn owns_poll(&self, token: u32) -> bool {
        self.poller.as_ref().is_some_and(|p| p.owns(token))
    }

    /// The discovery poll went out as callout `token`.
    pub fn poll_sent(&mut self, token: u32, now_ns: u64) {
        if let Some(p) = self.poller.as_mut() {
            p.sent(token, now_ns);
        }
    }

    /// The discovery poll could not be sent; returns lines to log.
    pub fn poll_not_sent(&mut self, why: &str, now_ns: u64) -> Vec<String> {
        let mut log = Vec::new();
        if let Some(p) = self.poller.as_mut() {
            let polled = p.not_sent(&self.store, why, now_ns);
            self.note_polled(polled, &mut log);
        }
        log
    }

    /// The answer to discovery poll `token`; the pool follows at once when it changed.
    /// Returns lines to log.
    pub fn poll_answered(&mut self, token: u32, answer: Answer<'_>, now_ns: u64) -> Vec<String> {
        let mut log = Vec::new();
        if let Some(p) = self.poller.as_mut() {
            let polled = p.answered(&self.store, token, answer, now_ns);
            self.note_polled(polled, &mut log);
        }
        self.follow_snapshot(now_ns, &mut log);
        log
    }

    /// The most bytes of a poll's answer to read.
    pub fn max_poll_bytes(&self) -> usize {
        self.config.discovery.as_ref().map_or(0, |d| d.max_response_bytes)
    }

    /// Whether the pool is still waiting for its first snapshot (nothing to steer to yet).
    pub fn awaits_pool(&self) -> bool {
        self.follower.is_some() && self.config.pool.is_empty()
    }

    /// Makes the pool `snapshot`'s.
    fn repool(&mut self, snapshot: &Snapshot, now_ns: u64, log: &mut Vec<String>) {
        let pool = pool_of(snapshot, &self.config.overrides);
        if pool.is_empty() {
            return;
        }
        let mono_ns = self.clock.at(now_ns);
        let new_keys: Vec<Rc<str>> = pool.iter().map(|b| Rc::from(keys::backend(b))).collect();
        let by_key: fnv::FnvHashMap<Rc<str>, usize> =
            new_keys.iter().enumerate().map(|(i, k)| (Rc::clone(k), i)).collect();
        let moved: Vec<Option<usize>> =
            self.backend_keys.iter().map(|k| by_key.get(k).copied()).collect();
        let old_balancer = std::mem::replace(
            &mut self.balancer,
            crate::lb::build(&self.config.balancing, &pool, mono_ns),
        );
        for (old, new) in moved.iter().enumerate() {
            if let (Some(new), Some(learned)) = (new, old_balancer.learned(old)) {
                self.balancer.relearn(*new, learned);
            }
        }
        let mut shown_up = vec![None; pool.len()];
        for (old, new) in moved.iter().enumerate() {
            if let (Some(new), Some(&shown)) = (new, self.shown_up.get(old)) {
                if let Some(s) = shown_up.get_mut(*new) {
                    *s = shown;
                }
            }
        }
        self.by_address =
            pool.iter().enumerate().filter_map(|(i, b)| Some((b.address?, i))).collect();
        self.by_id = pool.iter().enumerate().map(|(i, b)| (b.id.clone(), i)).collect();
        self.config.pool = pool;
        if let Some(counters) = &mut self.in_flight {
            let cluster = &self.config.cluster;
            let fresh: Vec<String> =
                self.config.pool.iter().map(|b| keys::in_flight(cluster, b)).collect();
            self.store.register_all(fresh.iter().map(String::as_str));
            counters.repool(&self.store, &self.config.cluster, &self.config.pool, &moved);
        }
        self.metrics.repool(&self.config.pool, &moved);
        self.reports_repool(&moved);
        self.shown_up = shown_up;
        self.backend_keys = new_keys;
        self.by_key = by_key;
        self.pool_generation = self.pool_generation.wrapping_add(1);
        self.steering.repooled();
        match self.prober.as_mut() {
            Some(p) => {
                p.repool(&self.config, &moved);
                if let Some((prefix, count)) = p.streak_keys() {
                    self.store.reserve_family(prefix, count);
                }
                let refreshed = p.refresh(&self.store, mono_ns);
                self.take_refreshed(refreshed);
            }
            None => {
                let fixed = health::fixed_availability(&self.config, mono_ns);
                self.availability_is(fixed);
            }
        }
        if self.config.pool.len() != snapshot.endpoints.len() && self.holds_discovery_lease() {
            let left =
                snapshot.endpoints.len() - self.config.pool.len().min(snapshot.endpoints.len());
            log.push(format!(
                "discovery: {left} of {} endpoints left out (Envoy reports them UNHEALTHY or TIMEOUT)",
                snapshot.endpoints.len()
            ));
        }
    }

    /// Whether this VM polls for the proxy (logs once per proxy come from it).
    pub(super) fn holds_discovery_lease(&self) -> bool {
        self.poller.as_ref().is_some_and(|p| p.holds_lease())
    }
}
