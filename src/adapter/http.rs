//! HTTP context: for one request, removes every client-supplied value of the steering header,
//! sets it to the router's picks, and carries the request's [`Ticket`] to its response and its
//! end. Anything unexpected fails closed with a local 503, never passing a client's header.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use super::host;
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

const ATTEMPTS: &str = "x-envoy-attempt-count";

fn response_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpResponseHeaders, name).ok().flatten()
}

fn request_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpRequestHeaders, name).ok().flatten()
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
        // Strip the client's values first, whatever happens next.
        if hostcalls::remove_map_value(MapType::HttpRequestHeaders, router.header()).is_err() {
            return reject(503, "internal");
        }
        let input = key_input(router.key_source());
        let cookies = if router.wants_cookies() { request_header("cookie") } else { None };
        let now = host::now_ns();
        let Some((steering, ticket)) = router.steer(input.as_deref(), cookies.as_deref(), now)
        else {
            return reject(503, "no_healthy_backend");
        };
        let (header, value) = (steering.header, steering.value);
        if hostcalls::add_map_value(MapType::HttpRequestHeaders, header, value).is_err() {
            let mut ticket = ticket;
            router.on_end(&mut ticket, host::now_ns());
            return reject(503, "internal");
        }
        self.ticket = Some(ticket);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(ticket) = self.ticket.as_mut() else { return Action::Continue };
        let Ok(mut guard) = self.router.try_borrow_mut() else { return Action::Continue };
        let Some(router) = guard.as_mut() else { return Action::Continue };
        // Envoy adds it for the filter (include_attempt_count_in_response); not for clients.
        // Read only when responses are tracked; removed either way.
        let tracks = router.tracks_responses();
        let attempts =
            if tracks { response_header(ATTEMPTS).and_then(|v| v.parse().ok()) } else { None };
        let _ = hostcalls::remove_map_value(MapType::HttpResponseHeaders, ATTEMPTS);
        if tracks {
            let status =
                response_header(":status").and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
            let served_by = host::property(&["upstream", "address"]);
            let now = host::now_ns();
            let answer = router.on_response(
                ticket,
                served_by.as_deref(),
                status,
                attempts.unwrap_or(1),
                now,
            );
            for line in answer.log {
                log::info!("{line}");
            }
            // Added, never replaced: the upstream's own Set-Cookie headers are kept.
            if let Some(cookie) = answer.set_cookie {
                let _ =
                    hostcalls::add_map_value(MapType::HttpResponseHeaders, "set-cookie", &cookie);
            }
        }
        Action::Continue
    }

    /// Called once at the end of every stream (completed, reset, timed out, aborted, or
    /// answered locally).
    fn on_log(&mut self) {
        let Some(mut ticket) = self.ticket.take() else { return };
        let Ok(mut guard) = self.router.try_borrow_mut() else { return };
        if let Some(router) = guard.as_mut() {
            router.on_end(&mut ticket, host::now_ns());
        }
    }
}
