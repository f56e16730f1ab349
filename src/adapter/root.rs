//! Root context: reads and validates the plugin configuration (refusing a bad one, so Envoy
//! rejects it and keeps the old one), hands each request's HTTP context the shared router, and
//! on every tick runs active health checking: refresh who may be picked, take or renew the
//! prober lease, send the probes that are due as callouts, and apply their answers.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};

use super::host::{self, HostMetrics, HostStore};
use super::http::Http;
use crate::config::Config;
use crate::discovery::poller::Answer;
use crate::router::Router;

/// Longest pause between two ticks: how stale a worker's view of health may get.
const MAX_TICK: Duration = Duration::from_millis(200);
/// Tick period without health checking: how long metrics may wait in a VM before the host
/// sees them.
const METRICS_TICK: Duration = Duration::from_millis(100);

pub struct Root {
    context_id: u32,
    router: Rc<RefCell<Option<Router>>>,
    /// How long the last `on_configure` worked (ns), until the first tick after it has run:
    /// the work a new configuration takes (configure plus first tick) is logged once.
    configure_took_ns: Option<u64>,
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        Root { context_id, router: Rc::new(RefCell::new(None)), configure_took_ns: None }
    }

    /// A number that differs per VM and root context: WASI `random_get` (the context id and
    /// the clock if that ever fails).
    fn random(&self) -> u64 {
        let mut bytes = [0u8; 8];
        match getrandom::fill(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => host::now_ns() ^ u64::from(self.context_id).rotate_left(32),
        }
    }

    fn configure(&mut self, config: Config) {
        let now = host::now_ns();
        // Every root context ticks: metrics are flushed on ticks, and with health checking
        // the tick also refreshes who may be picked (and probes, for the lease holder).
        let health = config.health_check.is_some()
            || config.outlier_detection.is_some()
            || config.slow_start_ms > 0;
        let interval = config.health_check.as_ref().map_or(400, |c| c.interval_ms);
        let tick = if health {
            Duration::from_millis(interval / 4).clamp(Duration::from_millis(10), MAX_TICK)
        } else {
            METRICS_TICK
        };
        if let Err(status) = hostcalls::set_tick_period(tick) {
            log::error!("cannot set the tick period: {status:?}");
        }
        if config.sticky.as_ref().is_some_and(|s| s.secrets.is_empty()) {
            log::warn!(
                "sticky: no secrets configured; cookies are signed with a random per-process \
                 secret and will not survive a restart or work across proxies"
            );
        }
        let metrics = Box::new(HostMetrics::define(&config.cluster, &config.pool));
        let router = Router::new(config, self.random(), now, Box::new(HostStore), metrics);
        // Only ticks take the prober lease: a root context that is configured but never ticks
        // (config validation) must not hold it.
        let mut router = router;
        router.refresh(now);
        *self.router.borrow_mut() = Some(router);
    }

    /// Runs the router's tick and does what it asks: send probes, log state changes.
    fn tick(&mut self, now: u64) {
        let Ok(mut guard) = self.router.try_borrow_mut() else { return };
        let Some(router) = guard.as_mut() else { return };
        let tick = router.tick(now);
        for line in &tick.log {
            log::info!("{line}");
        }
        if let Some(poll) = &tick.poll {
            // GET to a fixed path only: the admin API also takes POSTs that stop Envoy.
            let headers = vec![
                (":method", "GET"),
                (":path", poll.path.as_str()),
                (":authority", "envoy-admin"),
                (":scheme", "http"),
                ("user-agent", "envoy-lb-discovery"),
            ];
            let timeout = Duration::from_millis(poll.timeout_ms);
            match hostcalls::dispatch_http_call(&poll.cluster, headers, None, vec![], timeout) {
                Ok(token) => router.poll_sent(token, now),
                Err(status) => {
                    for line in router.poll_not_sent(&format!("{status:?}"), now) {
                        log::warn!("{line}");
                    }
                }
            }
        }
        router.flush_metrics();
        let Some(check) = router.health_check().cloned() else { return };
        // Always set once validated (derived from the cluster name when not configured).
        let authority = check.host.as_deref().unwrap_or("localhost");
        let timeout = Duration::from_millis(check.timeout_ms);
        for (index, host) in tick.probes {
            let (target, steering) = router.probe_route(&host);
            let mut headers = vec![
                (":method", "GET"),
                (":path", check.path.as_str()),
                (":authority", authority),
                (":scheme", "http"),
                ("user-agent", "envoy-lb-health-check"),
            ];
            headers.extend(steering);
            let sent = hostcalls::dispatch_http_call(target, headers, None, vec![], timeout);
            match sent {
                Ok(token) => router.probe_sent(token, index, now),
                Err(status) => {
                    log::warn!("health check of {host} not sent: {status:?}");
                    if let Some(line) = router.probe_not_sent(index, now) {
                        log::info!("{line}");
                    }
                }
            }
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let now = host::now_ns();
        let status = host::header(MapType::HttpCallResponseHeaders, ":status")
            .and_then(|s| s.parse::<u16>().ok());
        let Ok(mut guard) = self.router.try_borrow_mut() else { return };
        let Some(router) = guard.as_mut() else { return };
        if router.owns_poll(token_id) {
            // The body is read only within the configured bound.
            let body = if body_size > router.max_poll_bytes() {
                None
            } else {
                hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                    .ok()
                    .map(Option::unwrap_or_default)
            };
            let answer = match &body {
                Some(bytes) => Answer::Body(status, bytes),
                None if body_size > router.max_poll_bytes() => Answer::TooLarge(status, body_size),
                None => Answer::Body(None, &[]),
            };
            let lines = router.poll_answered(token_id, answer, now);
            router.flush_metrics();
            for line in lines {
                log::info!("{line}");
            }
            return;
        }
        if let Some(line) = router.probe_answered(token_id, status, now) {
            log::info!("{line}");
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let started = host::now_ns();
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
                    "configured: cluster {}, {}, algorithm {}, mode {}, header {} (max_hosts {}), health checks {}, outlier detection {}",
                    config.cluster,
                    config.pool_summary(),
                    config.algorithm.name(),
                    config.target.mode.name(),
                    config.target.header,
                    config.target.max_hosts,
                    if config.health_check.is_some() { "on" } else { "off" },
                    if config.outlier_detection.is_some() { "on" } else { "off" },
                );
                self.configure(config);
                self.configure_took_ns = Some(host::now_ns().saturating_sub(started));
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
        self.tick(now);
        if let Some(configure_ns) = self.configure_took_ns.take() {
            let tick_ns = host::now_ns().saturating_sub(now);
            let pool = self.router.try_borrow().ok().and_then(|r| r.as_ref().map(Router::pool_len));
            let took_us = configure_ns.saturating_add(tick_ns) / 1_000;
            log::info!(
                "ready: {} backends, configure and first tick took {}.{:03} ms",
                pool.unwrap_or(0),
                took_us / 1_000,
                took_us % 1_000
            );
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(Rc::clone(&self.router))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
