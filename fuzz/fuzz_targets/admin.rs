//! Envoy admin API answers (`/config_dump?include_eds…` and `/clusters?format=json`):
//! `discovery::admin::parse_eds` and `parse_clusters` never panic, return at most
//! `MAX_BACKENDS` endpoints, each with a weight of at least 1, a non-zero port and an address
//! of its own; `TooManyEndpoints` counts more than `MAX_BACKENDS`; a `Malformed` reason is
//! short and printable. The seeds are the answers of real Envoy 1.36.4 and 1.40.0
//! (src/discovery/testdata/); the clusters looked up are those the seeds name, plus the input
//! itself as a name (which also goes through `eds_path` and `clusters_path`).
#![no_main]

use std::collections::HashSet;

use envoy_lb::backend::MAX_BACKENDS;
use envoy_lb::discovery::admin::{self, AdminError, EdsResource};
use envoy_lb::discovery::Endpoint;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 7] =
    ["backend", "hc", "static", "dns", "outbound|8080||backend.demo.svc.cluster.local", "a", ""];

fuzz_target!(|data: &[u8]| {
    let own = String::from_utf8_lossy(data.get(..64).unwrap_or(data));
    for name in NAMES.iter().copied().chain([own.as_ref()]) {
        check(admin::parse_eds(data, name));
        check(admin::parse_clusters(data, name));
    }
    for resource in [EdsResource::Dynamic, EdsResource::Static] {
        assert!(admin::eds_path(&own, resource).is_ascii());
    }
    assert!(admin::clusters_path(&own).is_ascii());
});

fn check(result: Result<Vec<Endpoint>, AdminError>) {
    match result {
        Ok(endpoints) => {
            assert!(endpoints.len() <= MAX_BACKENDS, "{} endpoints", endpoints.len());
            let mut seen = HashSet::new();
            for e in &endpoints {
                assert!(e.weight >= 1, "{e:?}");
                assert!(e.address.port() != 0, "{e:?}");
                assert!(seen.insert(e.address), "{} twice", e.address);
            }
        }
        Err(AdminError::TooManyEndpoints(n)) => assert!(n > MAX_BACKENDS, "too many: {n}"),
        Err(AdminError::Malformed(reason)) => {
            assert!(!reason.is_empty() && reason.len() <= 160, "{reason:?}");
            assert!(reason.bytes().all(|b| b.is_ascii_graphic() || b == b' '), "{reason:?}");
        }
        Err(AdminError::UnknownCluster) => {}
    }
}
