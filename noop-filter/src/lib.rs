//! A proxy-wasm HTTP filter that does nothing: every callback keeps its default (continue).
//! `benches/envoy.rs` runs it to measure what loading any wasm filter costs Envoy per request,
//! the floor under the envoy-lb filter's own cost. Build:
//! `cargo build -p noop-filter --release --target wasm32-wasip1`
//! (→ `target/wasm32-wasip1/release/noop_filter.wasm`).
//!
//! With a `floor` member in its plugin configuration it is instead the least a steering
//! filter can do, the floor under envoy-lb's host calls (issue #17): each request's steering
//! header replaced by the next of a few values fixed at configure (one host call), and with
//! `read_response` the two reads envoy-lb makes on every response (`:status`, and the
//! `upstream.request_attempt_count` property), parsed and dropped. No other work per request.
//! `{"floor": {"header": "x-gateway-destination-endpoint", "values": ["a,b,c", "b,c,a"],
//! "read_response": true}}`; any other member is ignored.

#[cfg(target_arch = "wasm32")]
mod wasm {
    use std::cell::Cell;
    use std::rc::Rc;

    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
            Box::new(NoopRoot { floor: None })
        });
    }}

    #[derive(serde::Deserialize)]
    struct Config {
        floor: Option<FloorConfig>,
    }

    #[derive(serde::Deserialize)]
    struct FloorConfig {
        header: String,
        values: Vec<String>,
        #[serde(default)]
        read_response: bool,
    }

    /// The floor filter's state, shared by the VM's requests.
    struct Floor {
        config: FloorConfig,
        next: Cell<usize>,
    }

    struct NoopRoot {
        floor: Option<Rc<Floor>>,
    }

    impl Context for NoopRoot {}

    impl RootContext for NoopRoot {
        fn on_configure(&mut self, _size: usize) -> bool {
            let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX);
            let bytes = bytes.ok().flatten().unwrap_or_default();
            if bytes.is_empty() {
                return true;
            }
            match serde_json::from_slice::<Config>(&bytes) {
                Ok(Config { floor: Some(config) }) if !config.values.is_empty() => {
                    self.floor = Some(Rc::new(Floor { config, next: Cell::new(0) }));
                    true
                }
                Ok(Config { floor: Some(_) }) => {
                    log::error!("floor.values: at least one value");
                    false
                }
                Ok(Config { floor: None }) => true,
                // Not JSON of this shape: a pure no-op (the bench hands it envoy-lb's config).
                Err(_) => true,
            }
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            match &self.floor {
                None => Some(Box::new(Noop)),
                Some(floor) => Some(Box::new(Steer(Rc::clone(floor)))),
            }
        }
    }

    struct Noop;

    impl Context for Noop {}

    impl HttpContext for Noop {}

    struct Steer(Rc<Floor>);

    impl Context for Steer {}

    impl HttpContext for Steer {
        fn on_http_request_headers(&mut self, _headers: usize, _end: bool) -> Action {
            let floor = &self.0;
            let i = floor.next.get();
            floor.next.set((i + 1) % floor.config.values.len());
            let value = floor.config.values.get(i).map(String::as_str);
            let _ =
                hostcalls::set_map_value(MapType::HttpRequestHeaders, &floor.config.header, value);
            Action::Continue
        }

        fn on_http_response_headers(&mut self, _headers: usize, _end: bool) -> Action {
            if self.0.config.read_response {
                let attempts = hostcalls::get_property(vec!["upstream", "request_attempt_count"]);
                let status = hostcalls::get_map_value(MapType::HttpResponseHeaders, ":status");
                let status = status.ok().flatten().and_then(|s| s.parse::<u32>().ok());
                let attempts = attempts.ok().flatten().and_then(|b| <[u8; 8]>::try_from(b).ok());
                let attempts = attempts.map(u64::from_le_bytes);
                std::hint::black_box((status, attempts));
            }
            Action::Continue
        }
    }
}
