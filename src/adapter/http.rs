//! HTTP context: for one request, removes every client-supplied value of the steering header,
//! answers the status page to allowed clients, hands the router's picks to Envoy (the
//! override_host or cluster header, or the ORIGINAL_DST filter state), and carries the
//! request's [`Ticket`] to its response and its end. Anything unexpected fails closed with a
//! local 503, never passing a client's header.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use super::host;
use crate::config::TargetMode;
use crate::original_dst;
use crate::router::{KeySource, Router, Ticket};

pub struct Http {
    router: Rc<RefCell<Option<Router>>>,
    ticket: Option<Ticket>,
}

impl Http {
    pub fn new(router: Rc<RefCell<Option<Router>>>) -> Self {
        Http { router, ticket: None }
    }
}

/// Answers the request locally; `error` goes in `x-lb-error` and the JSON body.
fn reject(status: u32, error: &str) -> Action {
    let body = format!("{{\"error\":\"{error}\"}}");
    let headers = vec![("x-lb-error", error), ("content-type", "application/json")];
    if let Err(status) = hostcalls::send_http_response(status, headers, Some(body.as_bytes())) {
        log::error!("cannot send local reply: {status:?}");
    }
    Action::Pause
}

/// The status page, answered locally.
fn status_reply(body: &str) -> Action {
    let headers = vec![("content-type", "application/json"), ("cache-control", "no-store")];
    if let Err(status) = hostcalls::send_http_response(200, headers, Some(body.as_bytes())) {
        log::error!("cannot send the status page: {status:?}");
    }
    Action::Pause
}

/// Whether this request is for the status page (read only when one is configured).
fn wants_status(router: &Router) -> bool {
    if !router.has_status() {
        return false;
    }
    let Some(path) = request_header(":path") else { return false };
    let source = host::property(&["source", "address"]);
    let client =
        source.as_deref().and_then(crate::hash_key::source_ip).and_then(|ip| ip.parse().ok());
    router.is_status_request(&path, client)
}

/// Hands the steering value to Envoy in the configured way (`fallback`: original_dst's
/// `allow_header_fallback`), and leaves no client value of `header` in the request: Envoy's
/// replace removes every value of the name before setting ours, in one host call.
fn hand_over(mode: TargetMode, fallback: bool, header: &str, value: &str) -> bool {
    let map = MapType::HttpRequestHeaders;
    let set = || hostcalls::set_map_value(map, header, Some(value)).is_ok();
    match mode {
        TargetMode::OverrideHost | TargetMode::ClusterHeader => set(),
        TargetMode::OriginalDst => {
            let args = original_dst::filter_state_args(value);
            let state =
                hostcalls::call_foreign_function(original_dst::FOREIGN_FUNCTION, Some(&args));
            let header_done =
                if fallback { set() } else { hostcalls::remove_map_value(map, header).is_ok() };
            state.is_ok() && header_done
        }
    }
}

/// Envoy's attempt count of the request (1 for the first try), on the response path.
const ATTEMPTS: &[&str] = &["upstream", "request_attempt_count"];

fn response_header(name: &str) -> Option<String> {
    host::header(MapType::HttpResponseHeaders, name)
}

fn request_header(name: &str) -> Option<String> {
    host::header(MapType::HttpRequestHeaders, name)
}

/// The raw input of the request's hash key, as the router asks for it.
fn key_input(source: KeySource<'_>) -> Option<String> {
    match source {
        KeySource::None => None,
        KeySource::SourceAddress => host::property(&["source", "address"]),
        KeySource::Header(name) => request_header(name),
        KeySource::CookieHeader => request_header("cookie"),
        KeySource::Path => request_header(":path"),
    }
}

/// Hands the response's load report, if it has one, to the router: the text header, or the
/// legacy binary one without it. With `remove_from_response` both are removed from what the
/// client gets.
fn read_report(router: &mut Router, ticket: &Ticket, now: u64) {
    let remove = router.config().load_reports.remove_from_response;
    let mut read = false;
    for (name, binary) in [(crate::orca::HEADER, false), (crate::orca::HEADER_BIN, true)] {
        if read && !remove {
            return;
        }
        if let Some(value) = response_header(name) {
            if !read {
                router.on_report(ticket, &value, binary, now);
                read = true;
            }
            if remove {
                let _ = hostcalls::remove_map_value(MapType::HttpResponseHeaders, name);
            }
        }
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Ok(mut guard) = self.router.try_borrow_mut() else {
            return reject(503, "internal");
        };
        let Some(router) = guard.as_mut() else {
            return reject(503, "not_configured");
        };
        // A ticket from an earlier pass over this stream is released before a new one is held.
        if let Some(mut old) = self.ticket.take() {
            router.on_end(&mut old, host::now_ns());
        }
        // Every path but a successful hand-over answers locally, so a client's steering header
        // never leaves Envoy: the hand-over replaces it.
        if wants_status(router) {
            return status_reply(&router.status_json(host::now_ns()));
        }
        let target = &router.config().target;
        let (mode, fallback) = (target.mode, target.allow_header_fallback);
        let input = key_input(router.key_source());
        let cookies = if router.wants_cookies() { request_header("cookie") } else { None };
        let now = if router.needs_clock() { host::now_ns() } else { 0 };
        if router.awaits_pool() {
            // Discovery has no snapshot yet: with override_host the cluster's own fallback
            // balancer chooses (the client's header removed); other modes cannot be served.
            if mode == TargetMode::OverrideHost
                && hostcalls::remove_map_value(MapType::HttpRequestHeaders, &target.header).is_ok()
            {
                return Action::Continue;
            }
            return reject(503, "no_endpoints_yet");
        }
        let Some((steering, ticket)) = router.steer(input.as_deref(), cookies.as_deref(), now)
        else {
            return reject(503, "no_healthy_backend");
        };
        if !hand_over(mode, fallback, steering.header, steering.value) {
            let mut ticket = ticket;
            router.on_end(&mut ticket, host::now_ns());
            return reject(503, "internal");
        }
        if let Some((name, value)) = &router.config().load_reports.request_header {
            // Asks the backend for a load report (some send them only when asked).
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
        }
        self.ticket = Some(ticket);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(ticket) = self.ticket.as_mut() else { return Action::Continue };
        let Ok(mut guard) = self.router.try_borrow_mut() else { return Action::Continue };
        let Some(router) = guard.as_mut() else { return Action::Continue };
        // From Envoy itself: a response's x-envoy-attempt-count is the upstream's to forge.
        let attempts = crate::router::attempt_count(host::property_bytes(ATTEMPTS).as_deref());
        let status = response_header(":status").and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
        let served_by = if router.wants_served_by(attempts) {
            host::property(&["upstream", "address"])
        } else {
            None
        };
        let now = if router.needs_response_time() { host::now_ns() } else { ticket.started_ns() };
        let answer = router.on_response(ticket, served_by.as_deref(), status, attempts, now);
        if router.wants_reports() {
            read_report(router, ticket, now);
        }
        for line in answer.log {
            log::info!("{line}");
        }
        // Added, never replaced: the upstream's own Set-Cookie headers are kept.
        if let Some(cookie) = answer.set_cookie {
            let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, "set-cookie", &cookie);
        }
        Action::Continue
    }

    /// Called once at the end of every stream (completed, reset, timed out, aborted, or
    /// answered locally).
    fn on_log(&mut self) {
        let Some(mut ticket) = self.ticket.take() else { return };
        let Ok(mut guard) = self.router.try_borrow_mut() else { return };
        if let Some(router) = guard.as_mut() {
            // The clock matters only to a request that got no response.
            let clock = !ticket.answered() && router.needs_clock();
            let now = if clock { host::now_ns() } else { ticket.started_ns() };
            router.on_end(&mut ticket, now);
        }
    }
}
