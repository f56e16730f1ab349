//! A proxy-wasm HTTP filter that does nothing: every callback keeps its default (continue).
//! `benches/envoy.rs` runs it to measure what loading any wasm filter costs Envoy per request,
//! the floor under the envoy-lb filter's own cost. Build:
//! `cargo build -p noop-filter --release --target wasm32-wasip1`
//! (→ `target/wasm32-wasip1/release/noop_filter.wasm`).

#[cfg(target_arch = "wasm32")]
mod wasm {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{ContextType, LogLevel};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot) });
    }}

    struct NoopRoot;

    impl Context for NoopRoot {}

    impl RootContext for NoopRoot {
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Noop))
        }
    }

    struct Noop;

    impl Context for Noop {}

    impl HttpContext for Noop {}
}
