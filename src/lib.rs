//! envoy-lb: a proxy-wasm load balancer for Envoy and Istio.
//!
//! The core (config, pool, algorithms, routing) is pure Rust, tested natively. Only
//! `adapter` talks to the proxy-wasm host, and it exists only in the wasm32 build.
//!
//! No panics outside tests: `unwrap`, `expect` and `panic!` are denied for the whole crate
//! (Cargo.toml), indexing and slicing for non-test code here — a panic would kill a worker's VM.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
// Dead code is reported by the wasm build (`make lint`), where the adapter uses the core; a
// native build without the `testing` feature uses only `Config` (check-config).
#![cfg_attr(not(any(target_arch = "wasm32", feature = "testing")), allow(dead_code))]

// The core modules: private to the crate, so the compiler reports what nothing uses; public
// with the `testing` feature, which the fuzz targets, benches and tests/ turn on. The public
// declarations come from a macro so that tools reading the module tree without evaluating
// `cfg` (cargo-mutants) find each file once, through the plain declarations below.
macro_rules! public_with_testing {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "testing")]
        pub mod $name;
    )*};
}

public_with_testing!(
    backend,
    config,
    discovery,
    hash_key,
    health,
    lb,
    metrics,
    orca,
    original_dst,
    router,
    state,
    sticky
);
#[cfg(not(feature = "testing"))]
mod backend;
#[cfg(not(feature = "testing"))]
mod config;
#[cfg(not(feature = "testing"))]
mod discovery;
#[cfg(not(feature = "testing"))]
mod hash_key;
#[cfg(not(feature = "testing"))]
mod health;
#[cfg(not(feature = "testing"))]
mod lb;
#[cfg(not(feature = "testing"))]
mod metrics;
#[cfg(not(feature = "testing"))]
mod orca;
#[cfg(not(feature = "testing"))]
mod original_dst;
#[cfg(not(feature = "testing"))]
mod router;
#[cfg(not(feature = "testing"))]
mod state;
#[cfg(not(feature = "testing"))]
mod sticky;

/// Nanoseconds per millisecond: every time in the core is a `u64` count of nanoseconds.
pub(crate) const MS: u64 = 1_000_000;

/// What `check-config` needs: the filter's own validation of a plugin configuration.
pub use config::{Config, ConfigError};

#[cfg(target_arch = "wasm32")]
mod adapter;
