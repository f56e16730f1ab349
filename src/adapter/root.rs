//! Root context: reads and validates the plugin configuration (refusing a bad one, so Envoy
//! rejects it and keeps the old one), and hands each request's HTTP context the shared router.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use super::host::{self, HostMetrics, HostStore};
use super::http::Http;
use crate::config::Config;
use crate::router::Router;

pub struct Root {
    context_id: u32,
    router: Rc<RefCell<Option<Router>>>,
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        Root { context_id, router: Rc::new(RefCell::new(None)) }
    }

    /// A seed that differs per VM: std's RandomState draws from WASI `random_get`.
    fn seed(&self) -> u64 {
        RandomState::new().hash_one(self.context_id)
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => Vec::new(),
            Err(status) => {
                log::error!("invalid plugin config: $: cannot be read ({status:?})");
                return false;
            }
        };
        match Config::from_json(&bytes) {
            Ok(config) => {
                log::info!(
                    "configured: cluster {}, {} backends, algorithm {}, steering header {} (max_hosts {})",
                    config.cluster,
                    config.pool.len(),
                    config.algorithm.name(),
                    config.target.header,
                    config.target.max_hosts,
                );
                let metrics = Box::new(HostMetrics::define(&config.pool));
                let router =
                    Router::new(config, self.seed(), host::now_ns(), Box::new(HostStore), metrics);
                *self.router.borrow_mut() = Some(router);
                true
            }
            Err(e) => {
                log::error!("invalid plugin config: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(Rc::clone(&self.router))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
