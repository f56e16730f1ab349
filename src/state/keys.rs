//! Every shared-data key this filter uses, and the `id@host` key of a backend: the only place
//! that knows their names. Shared data is one map per process keyed by (vm_id, key), and Istio
//! leaves vm_id empty, so every key starts with [`PREFIX`]. The strings must not change: workers
//! and filter versions share them during a rollout (the test below pins each one).
//!
//! | key | owner | writer | value | version |
//! |---|---|---|---|---|
//! | `envoy_lb/keys` | [`registry`](super::registry) | every VM, before its first write of a key | key names, one per line | none |
//! | `envoy_lb/clock` | [`clock`](super::clock) | every VM, each tick (CAS) | [`clock::encode`](super::clock::encode) | 1 |
//! | `envoy_lb/{cluster}/generation` | [`generation`](super::generation) | every VM, at configure (CAS) | `[generation u64][digest u64]` ([`generation`](super::generation)) | none |
//! | `envoy_lb/{cluster}/sticky_secret` | `router::sticky` | the first VM that needs it (no configured secrets) | 32 random bytes | none |
//! | `envoy_lb/{cluster}/in_flight/{id}@{host}` | [`in_flight`](super::in_flight) | every worker VM, its own entry (CAS) | [`in_flight`](super::in_flight) entries | 2 |
//! | `envoy_lb/{cluster}/in_flight_total` | [`in_flight`](super::in_flight) | the same, with bounded load only | as above | 2 |
//! | `envoy_lb/{cluster}/in_flight_owners` | [`owners`](super::in_flight::owners) | every worker VM, its heartbeat (CAS) | [`owners`](super::in_flight::owners) list | 1 |
//! | `envoy_lb/{cluster}/health_current` | [`current`](super::current) | every VM with a prober, at configure (last wins) | [`current::encode`](super::current::encode) | 1 |
//! | `envoy_lb/{cluster}/health/{fence:016x}` | [`health_table`](super::health_table) | created at configure; the lease holder (probes, ejection ends) and every worker (passive outcomes) (CAS) | [`health_table::encode`](super::health_table::encode) | 1 |
//! | `envoy_lb/{cluster}/health/{fence:016x}/version` | [`health_table`](super::health_table) | every writer of the table, after each write (CAS; a lost race means another bump) | `[count u64]`: only its CAS is compared, so workers read the table only when it changed | none |
//! | `envoy_lb/{cluster}/health/{fence:016x}/errors/{n}` | [`prober`](crate::health::prober) | every worker VM, on a failed request (CAS) and on a success after errors | `[streak u32][backend key hash u64]`; `n` the backend's index, or its slot in a discovered pool | none |
//! | `envoy_lb/{cluster}/prober/{fence:016x}` | [`lease`](super::lease) | the VM taking or renewing the prober lease (CAS) | [`lease::encode`](super::lease::encode) | 1 |
//! | `envoy_lb/{cluster}/in_flight/slot/{slot}` | [`in_flight`](super::in_flight) | as `in_flight/{id}@{host}`, for a discovered endpoint | as above | 2 |
//! | `envoy_lb/{cluster}/load/{shard}` | [`load_reports`](super::load_reports) | every worker VM that got load reports, each tick (CAS) | [`load_reports`](super::load_reports) entries of 64 backends | 1 |
//! | `envoy_lb/{cluster}/discovery` | `discovery::snapshot` | the discovery poller, when the endpoints change (CAS) | `Snapshot::encode` | 1 |
//! | `envoy_lb/{cluster}/discovery_status` | `discovery::snapshot` | the discovery poller, after each poll | `PollStatus::encode` | 1 |
//! | `envoy_lb/{cluster}/discovery_lease` | [`lease`](super::lease) | the VM taking or renewing the discovery lease (CAS) | [`lease::encode`](super::lease::encode) | 1 |
//!
//! `{cluster}` is the configured pool name, `{fence}` a configuration's digest
//! ([`current`](super::current)), `{id}@{host}` the [`backend`] key (also the entry key inside
//! the health table).

use crate::backend::Backend;

/// Prefix of every key.
pub const PREFIX: &str = "envoy_lb";
/// The record of every key written ([`registry`](super::registry)).
pub const REGISTRY: &str = "envoy_lb/keys";
/// The proxy's monotonic clock anchor ([`clock`](super::clock)).
pub const CLOCK: &str = "envoy_lb/clock";

/// The stable key of a backend: `id@host`, so a config reload keeps the state of a backend
/// whose id and address did not change.
pub fn backend(b: &Backend) -> String {
    format!("{}@{}", b.id, b.host)
}

/// The id part of a [`backend`] key.
pub fn backend_id(key: &str) -> &str {
    key.rsplit_once('@').map_or(key, |(id, _)| id)
}

fn pool(cluster: &str, name: &str) -> String {
    format!("{PREFIX}/{cluster}/{name}")
}

/// The configuration generation of `cluster`.
pub fn generation(cluster: &str) -> String {
    pool(cluster, "generation")
}

/// The per-process sticky-cookie secret of `cluster`.
pub fn sticky_secret(cluster: &str) -> String {
    pool(cluster, "sticky_secret")
}

/// The in-flight counter of one backend of `cluster`: by id and address, or for a discovered
/// endpoint by its slot (reused after the endpoint leaves, so keys stay bounded).
pub fn in_flight(cluster: &str, b: &Backend) -> String {
    match b.slot {
        Some(slot) => pool(cluster, &format!("in_flight/slot/{slot}")),
        None => pool(cluster, &format!("in_flight/{}", backend(b))),
    }
}

/// The snapshot of the followed cluster (`discovery::snapshot`).
pub fn discovery(cluster: &str) -> String {
    pool(cluster, "discovery")
}

/// The discovery poller's status after its last poll.
pub fn discovery_status(cluster: &str) -> String {
    pool(cluster, "discovery_status")
}

/// The discovery poller's lease.
pub fn discovery_lease(cluster: &str) -> String {
    pool(cluster, "discovery_lease")
}

/// The in-flight total of `cluster` (bounded load).
pub fn in_flight_total(cluster: &str) -> String {
    pool(cluster, "in_flight_total")
}

/// The live owners of `cluster`'s in-flight counters.
pub fn in_flight_owners(cluster: &str) -> String {
    pool(cluster, "in_flight_owners")
}

/// Which configuration (fence) of `cluster` published its health state last.
pub fn health_current(cluster: &str) -> String {
    pool(cluster, "health_current")
}

/// The health table of `cluster`'s configuration `fence`.
pub fn health_table(cluster: &str, fence: u64) -> String {
    pool(cluster, &format!("health/{fence:016x}"))
}

/// The version of the health table `table_key` ([`health_table`]).
pub fn health_version(table_key: &str) -> String {
    format!("{table_key}/version")
}

/// The prefix of the error-streak keys of the health table `table_key`: the key of backend
/// (or slot) `n` is this prefix followed by `n`.
pub fn health_errors(table_key: &str) -> String {
    format!("{table_key}/errors/")
}

/// The prefix of `cluster`'s load-report shard keys ([`load_reports`]).
pub fn load_reports_prefix(cluster: &str) -> String {
    pool(cluster, "load/")
}

/// Shard `shard` of `cluster`'s load reports ([`load_reports`](super::load_reports)).
pub fn load_reports(cluster: &str, shard: usize) -> String {
    format!("{}{shard}", load_reports_prefix(cluster))
}

/// The prober lease of `cluster`'s configuration `fence`.
pub fn prober_lease(cluster: &str, fence: u64) -> String {
    pool(cluster, &format!("prober/{fence:016x}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Byte-for-byte what earlier filter versions wrote: a change here splits a rollout's
    /// workers into two views of the same state.
    #[test]
    fn every_key_keeps_its_format() {
        let b = Backend::new("b1".into(), "[::1]:8080".parse().unwrap(), 1);
        assert_eq!(REGISTRY, "envoy_lb/keys");
        assert_eq!(CLOCK, "envoy_lb/clock");
        assert_eq!(backend(&b), "b1@[::1]:8080");
        assert_eq!(backend_id("b1@[::1]:8080"), "b1");
        assert_eq!(backend_id("b@1@10.0.0.1:80"), "b@1", "the last @ splits");
        assert_eq!(generation("pool"), "envoy_lb/pool/generation");
        assert_eq!(sticky_secret("pool"), "envoy_lb/pool/sticky_secret");
        assert_eq!(in_flight("pool", &b), "envoy_lb/pool/in_flight/b1@[::1]:8080");
        assert_eq!(in_flight_total("pool"), "envoy_lb/pool/in_flight_total");
        assert_eq!(in_flight_owners("pool"), "envoy_lb/pool/in_flight_owners");
        assert_eq!(health_current("pool"), "envoy_lb/pool/health_current");
        assert_eq!(health_table("pool", 0xab), "envoy_lb/pool/health/00000000000000ab");
        let table = health_table("pool", 0xab);
        assert_eq!(health_version(&table), "envoy_lb/pool/health/00000000000000ab/version");
        assert_eq!(health_errors(&table), "envoy_lb/pool/health/00000000000000ab/errors/");
        assert_eq!(prober_lease("pool", u64::MAX), "envoy_lb/pool/prober/ffffffffffffffff");
        let mut d = b.clone();
        d.slot = Some(7);
        assert_eq!(in_flight("pool", &d), "envoy_lb/pool/in_flight/slot/7");
        assert_eq!(discovery("pool"), "envoy_lb/pool/discovery");
        assert_eq!(discovery_status("pool"), "envoy_lb/pool/discovery_status");
        assert_eq!(discovery_lease("pool"), "envoy_lb/pool/discovery_lease");
        assert_eq!(load_reports("pool", 3), "envoy_lb/pool/load/3");
        assert!(REGISTRY.starts_with(PREFIX) && CLOCK.starts_with(PREFIX));
    }
}
