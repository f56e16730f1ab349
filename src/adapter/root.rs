//! Root context: reads and validates the plugin configuration (refusing a bad one, so Envoy
//! rejects it and keeps the old one), hands each request's HTTP context the shared router, and
//! on every tick runs active health checking: refresh who may be picked, take or renew the
//! prober lease, send the probes that are due as callouts, and apply their answers.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};

use super::host::{self, HostMetrics, HostStore};
use super::http::Http;
use crate::config::Config;
use crate::health::prober::Prober;
use crate::health::{ActivePolicy, HealthPolicy, Transition};
use crate::router::Router;

/// Longest pause between two ticks: how stale a worker's view of health may get.
const MAX_TICK: Duration = Duration::from_millis(200);

/// What a tick needs besides the router: the prober and how to address a probe.
struct Probing {
    prober: Prober,
    cluster: String,
    header: String,
    hosts: Vec<String>,
}

pub struct Root {
    context_id: u32,
    router: Rc<RefCell<Option<Router>>>,
    probing: Option<Probing>,
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        Root { context_id, router: Rc::new(RefCell::new(None)), probing: None }
    }

    /// A number that differs per VM and root context: std's RandomState draws from WASI
    /// `random_get`.
    fn random(&self) -> u64 {
        RandomState::new().hash_one(self.context_id)
    }

    fn configure(&mut self, config: Config) {
        let now = host::now_ns();
        self.probing = config.health_check.as_ref().and_then(|check| {
            let policy = HealthPolicy {
                active: Some(ActivePolicy {
                    healthy_threshold: check.healthy_threshold,
                    unhealthy_threshold: check.unhealthy_threshold,
                }),
                outlier: None,
                slow_start_ns: 0,
                panic_threshold_percent: config.panic_threshold_percent,
            };
            let prober = Prober::new(&config, policy, self.random())?;
            prober.publish_initial(&HostStore, now);
            let tick = Duration::from_millis(check.interval_ms / 4)
                .clamp(Duration::from_millis(10), MAX_TICK);
            if let Err(status) = hostcalls::set_tick_period(tick) {
                log::error!("cannot set the tick period: {status:?}");
            }
            Some(Probing {
                prober,
                cluster: config.cluster.clone(),
                header: config.target.header.clone(),
                hosts: config.pool.iter().map(|b| b.host.clone()).collect(),
            })
        });
        let metrics = Box::new(HostMetrics::define(&config.pool));
        let router = Router::new(config, self.random(), now, Box::new(HostStore), metrics);
        *self.router.borrow_mut() = Some(router);
        self.refresh(now);
    }

    /// Hands the router the current availability.
    fn refresh(&mut self, now: u64) {
        let Some(p) = self.probing.as_mut() else { return };
        let availability = p.prober.availability(&HostStore, now);
        if let Ok(mut guard) = self.router.try_borrow_mut() {
            if let Some(router) = guard.as_mut() {
                router.set_availability(availability);
            }
        }
    }

    /// Sends a probe to every backend that is due, if this VM holds the prober lease.
    fn probe(&mut self, now: u64) {
        let Some(p) = self.probing.as_mut() else { return };
        for index in p.prober.due(&HostStore, now) {
            let Some(host) = p.hosts.get(index) else { continue };
            let check = p.prober.check();
            let authority = check.host.as_deref().unwrap_or(&p.cluster);
            let headers = vec![
                (":method", "GET"),
                (":path", check.path.as_str()),
                (":authority", authority),
                (":scheme", "http"),
                ("user-agent", "envoy-lb-health-check"),
                (p.header.as_str(), host.as_str()),
            ];
            let timeout = Duration::from_millis(check.timeout_ms);
            match hostcalls::dispatch_http_call(&p.cluster, headers, None, vec![], timeout) {
                Ok(token) => p.prober.sent(token, index, now),
                Err(status) => {
                    log::warn!("health check of {host} not sent: {status:?}");
                    log_transition(p.prober.not_sent(&HostStore, index, now));
                }
            }
        }
    }
}

fn log_transition(t: Option<Transition>) {
    if let Some(t) = t {
        log::info!("{t}");
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        _body: usize,
        _trailers: usize,
    ) {
        let now = host::now_ns();
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.parse::<u16>().ok());
        if let Some(p) = self.probing.as_mut() {
            log_transition(p.prober.answered(&HostStore, token_id, status, now));
        }
        self.refresh(now);
    }
}

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
                    "configured: cluster {}, {} backends, algorithm {}, steering header {} (max_hosts {}), health checks {}",
                    config.cluster,
                    config.pool.len(),
                    config.algorithm.name(),
                    config.target.header,
                    config.target.max_hosts,
                    if config.health_check.is_some() { "on" } else { "off" },
                );
                self.configure(config);
                true
            }
            Err(e) => {
                log::error!("invalid plugin config: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let now = host::now_ns();
        self.probe(now);
        self.refresh(now);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(Rc::clone(&self.router))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
