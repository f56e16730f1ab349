//! envoy-lb: a proxy-wasm load balancer for Envoy and Istio.
//!
//! The core (config, pool, algorithms, routing) is pure Rust, tested natively. Only
//! `adapter` talks to the proxy-wasm host, and it exists only in the wasm32 build.
//!
//! No panics outside tests: `unwrap`, `expect` and `panic!` are denied for the whole crate
//! (Cargo.toml), indexing and slicing for non-test code here — a panic would kill a worker's VM.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod backend;
pub mod config;
pub mod hash_key;
pub mod health;
pub mod lb;
pub mod metrics;
pub mod original_dst;
pub mod router;
pub mod state;
pub mod sticky;

#[cfg(target_arch = "wasm32")]
mod adapter;
