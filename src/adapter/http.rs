//! HTTP context: for one request, removes every client-supplied value of the steering header
//! and sets it to the router's picks. Anything unexpected fails closed with a local 503, never
//! passing a client's header through.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use crate::router::Router;

pub struct Http {
    router: Rc<RefCell<Option<Router>>>,
}

impl Http {
    pub fn new(router: Rc<RefCell<Option<Router>>>) -> Self {
        Http { router }
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

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Ok(mut guard) = self.router.try_borrow_mut() else {
            return reject(503, "internal");
        };
        let Some(router) = guard.as_mut() else {
            return reject(503, "not_configured");
        };
        // Strip the client's values first, whatever happens next.
        if hostcalls::remove_map_value(MapType::HttpRequestHeaders, router.header()).is_err() {
            return reject(503, "internal");
        }
        let Some(steering) = router.steer() else {
            return reject(503, "no_healthy_backend");
        };
        let (header, value) = (steering.header, steering.value);
        if hostcalls::add_map_value(MapType::HttpRequestHeaders, header, value).is_err() {
            return reject(503, "internal");
        }
        Action::Continue
    }
}
