//! A small real HTTP backend (axum) for the demo and the integration tests: answers every path
//! with its id (body and `x-backend` header), serves `/healthz`, and can be made slow or failing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How a backend behaves.
#[derive(Debug, Clone)]
pub struct Options {
    pub id: String,
    /// Added before answering any request but `/healthz`.
    pub delay: Duration,
    /// Fraction (0.0..=1.0) of requests answered with `fail_status`.
    pub fail_rate: f64,
    pub fail_status: u16,
    /// Whether `/healthz` answers 200 (else 503).
    pub healthy: bool,
    /// Added before answering `/healthz` (a hanging health endpoint).
    pub health_delay: Duration,
    /// A `Set-Cookie` header the backend adds to every answer but `/healthz`.
    pub set_cookie: Option<String>,
    /// Headers added to every answer, `/healthz` included (a hostile upstream's, in tests).
    pub extra_headers: Vec<(String, String)>,
    /// Answer 400 to a `Host` that is not an RFC 3986 authority, as strict servers do (Go's
    /// net/http, for one), `/healthz` included.
    pub strict_host: bool,
    /// Request headers to show back: each answer but `/healthz` carries `x-echo-<name>` with
    /// the values the backend received for `<name>`, joined by `,` (absent when it got none),
    /// so a test sees what the upstream request held.
    pub echo_headers: Vec<String>,
}

impl Options {
    pub fn new(id: impl Into<String>) -> Self {
        Options {
            id: id.into(),
            delay: Duration::ZERO,
            fail_rate: 0.0,
            fail_status: 500,
            healthy: true,
            health_delay: Duration::ZERO,
            set_cookie: None,
            extra_headers: Vec::new(),
            strict_host: false,
            echo_headers: Vec::new(),
        }
    }
}

/// What a backend has seen; shared with the test or process that started it.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests other than `/healthz`.
    pub requests: AtomicU64,
    pub health_checks: AtomicU64,
    pub in_flight: AtomicU64,
    /// The most requests (other than `/healthz`) this backend has had in flight at once.
    pub max_in_flight: AtomicU64,
}

struct Shared {
    options: Options,
    id_header: HeaderValue,
    stats: Arc<Stats>,
    healthy: AtomicBool,
}

/// A running backend; dropping it (or [`Running::stop`]) shuts the server down.
pub struct Running {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn id(&self) -> &str {
        &self.shared.options.id
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.shared.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Stops accepting and closes the listening socket; waits for the server task to end.
    pub async fn stop(mut self) {
        self.shutdown();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serves on `listener` until stopped. Must be called within a tokio runtime.
pub fn serve(listener: TcpListener, options: Options) -> std::io::Result<Running> {
    let addr = listener.local_addr()?;
    let id_header = HeaderValue::from_str(&options.id)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let stats = Arc::new(Stats::default());
    let healthy = AtomicBool::new(options.healthy);
    let shared = Arc::new(Shared { options, id_header, stats: Arc::clone(&stats), healthy });
    let app = Router::new().fallback(handle).with_state(Arc::clone(&shared));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(e) = server.await {
            eprintln!("backend {addr}: {e}");
        }
    });
    Ok(Running { addr, stats, shared, stop: Some(stop), task: Some(task) })
}

/// Binds `addr` (port 0 for any free port) and serves.
pub async fn start(addr: SocketAddr, options: Options) -> std::io::Result<Running> {
    serve(TcpListener::bind(addr).await?, options)
}

/// Whether `host` holds only what RFC 3986 allows in an authority.
fn valid_host(host: &[u8]) -> bool {
    let allowed = |c: &u8| c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:[]".contains(c);
    !host.is_empty() && host.iter().all(allowed)
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let host = request.headers().get("host").map(|h| h.as_bytes()).unwrap_or_default();
    let bad_host = shared.options.strict_host && !valid_host(host);
    let bad_request = || with_id(&shared, StatusCode::BAD_REQUEST, "malformed Host\n".into());
    if request.uri().path() == "/healthz" {
        shared.stats.health_checks.fetch_add(1, Ordering::Relaxed);
        if bad_host {
            return bad_request();
        }
        if !shared.options.health_delay.is_zero() {
            tokio::time::sleep(shared.options.health_delay).await;
        }
        let status = if shared.healthy.load(Ordering::SeqCst) {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return with_id(&shared, status, "ok\n".to_string());
    }
    if bad_host {
        return bad_request();
    }
    let stats = &shared.stats;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let now_in_flight = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_in_flight.fetch_max(now_in_flight, Ordering::SeqCst);
    let opts = &shared.options;
    if !opts.delay.is_zero() {
        tokio::time::sleep(opts.delay).await;
    }
    let fail = opts.fail_rate > 0.0 && fastrand::f64() < opts.fail_rate;
    stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    if fail {
        let status =
            StatusCode::from_u16(opts.fail_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return with_id(&shared, status, format!("{} failing\n", opts.id));
    }
    let mut response = with_id(&shared, StatusCode::OK, format!("{}\n", opts.id));
    echo(opts, request.headers(), response.headers_mut());
    if let Some(cookie) = opts.set_cookie.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().append("set-cookie", cookie);
    }
    response
}

/// `x-echo-<name>` for each of `options.echo_headers` the request carried.
fn echo(options: &Options, request: &HeaderMap, response: &mut HeaderMap) {
    for name in &options.echo_headers {
        let values: Vec<&str> =
            request.get_all(name.as_str()).iter().filter_map(|v| v.to_str().ok()).collect();
        let echo = HeaderName::from_bytes(format!("x-echo-{name}").as_bytes());
        if let (false, Ok(echo), Ok(value)) =
            (values.is_empty(), echo, HeaderValue::from_str(&values.join(",")))
        {
            response.insert(echo, value);
        }
    }
}

fn with_id(shared: &Shared, status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert("x-backend", shared.id_header.clone());
    for (name, value) in &shared.options.extra_headers {
        let name = HeaderName::from_bytes(name.as_bytes());
        if let (Ok(name), Ok(value)) = (name, HeaderValue::from_str(value)) {
            headers.append(name, value);
        }
    }
    response
}
