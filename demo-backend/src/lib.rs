//! A small real HTTP backend (axum) for the demo and the integration tests: answers every path
//! with its id (body and `x-backend` header), serves `/healthz`, and can be made slow or failing.
//! It can also report its load to Envoy in ORCA's `endpoint-load-metrics` answer header (for
//! weighted round robin and least-load balancing), optionally serving through a simulated queue.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};

/// How a backend behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Id returned in the body and the `x-backend` header.
    pub id: String,
    /// Added before answering any request but `/healthz`.
    pub delay: Duration,
    /// Fraction (0.0..=1.0) of requests answered with `fail_status`.
    pub fail_rate: f64,
    /// Status of the failed answers.
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
    /// ORCA load reports in each answer but `/healthz`; none when `None`.
    pub load_report: Option<LoadReport>,
    /// Serve requests through a simulated queue (an inference server, say); none when `None`.
    pub queue: Option<QueueSim>,
}

impl Options {
    /// A healthy, fast backend that never fails, with every optional behaviour off.
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
            load_report: None,
            queue: None,
        }
    }
}

/// The encoding of an ORCA load report in the `endpoint-load-metrics` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// `TEXT key=value, ...`.
    Text,
    /// `JSON {...}`.
    Json,
}

impl FromStr for ReportFormat {
    type Err = String;

    /// `text` or `json`, in any case.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("text") {
            Ok(ReportFormat::Text)
        } else if s.eq_ignore_ascii_case("json") {
            Ok(ReportFormat::Json)
        } else {
            Err(format!("{s:?} is neither text nor json"))
        }
    }
}

/// ORCA load reports: each answer but `/healthz` carries `endpoint-load-metrics` with the
/// backend's request rate (`rps_fractional`, over the last second), its utilization
/// (`application_utilization` and `cpu_utilization`), and `named_metrics.queue_depth` and
/// `named_metrics.in_flight`.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The encoding used unless the request asks for another one.
    pub format: ReportFormat,
    /// Requests per second the backend can take: utilization is rate / capacity, so Envoy's
    /// weight (rate / utilization) comes out as the capacity. Without it (or when not positive
    /// and finite) utilization is requests in flight / queue slots (1 without a queue).
    pub capacity_rps: Option<f64>,
    /// Report only to requests carrying `endpoint-load-metrics-format`. Whatever this says,
    /// that header's value `TEXT` or `JSON` (any case) picks the encoding of the answer's report.
    pub only_when_asked: bool,
}

impl LoadReport {
    /// Reports in `format` to every request, without a capacity.
    pub fn new(format: ReportFormat) -> Self {
        LoadReport { format, capacity_rps: None, only_when_asked: false }
    }
}

/// A simulated queue: at most `slots` requests are served at once, each holding its slot for
/// `service` plus [`Options::delay`]; the others wait their turn, so latency grows with the
/// queue like an inference server's.
#[derive(Debug, Clone)]
pub struct QueueSim {
    /// Requests served at once (0 counts as 1).
    pub slots: usize,
    /// Time a request holds its slot, on top of [`Options::delay`].
    pub service: Duration,
}

/// What a backend has seen; shared with the test or process that started it.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests other than `/healthz`.
    pub requests: AtomicU64,
    /// Requests to `/healthz`.
    pub health_checks: AtomicU64,
    /// Requests (other than `/healthz`) received and not yet answered, queued ones included.
    pub in_flight: AtomicU64,
    /// The most requests (other than `/healthz`) this backend has had in flight at once.
    pub max_in_flight: AtomicU64,
    /// Requests waiting for a slot of the simulated queue now (0 without [`Options::queue`]).
    pub queued: AtomicU64,
}

/// Length of one bucket of the [`RateMeter`].
const RATE_BUCKET: Duration = Duration::from_millis(100);
/// Buckets the rate is measured over: a window of about a second.
const RATE_BUCKETS: u64 = 10;

/// Requests per second over the last [`RATE_BUCKETS`] buckets of [`RATE_BUCKET`].
struct RateMeter {
    start: Instant,
    /// Per slot: the number of the bucket it counts, and its count.
    buckets: Mutex<[(u64, u64); RATE_BUCKETS as usize]>,
}

impl RateMeter {
    fn new() -> Self {
        RateMeter { start: Instant::now(), buckets: Mutex::new([(0, 0); RATE_BUCKETS as usize]) }
    }

    /// The number of the bucket `elapsed` (since start) falls in.
    fn bucket(elapsed: Duration) -> u64 {
        u64::try_from(elapsed.as_nanos() / RATE_BUCKET.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Counts one request now.
    fn record(&self) {
        let n = Self::bucket(self.start.elapsed());
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = &mut buckets[(n % RATE_BUCKETS) as usize];
        if slot.0 != n {
            *slot = (n, 0);
        }
        slot.1 += 1;
    }

    /// Requests per second since the start of the oldest bucket still in the window (or since
    /// the start, while the first window fills), over at least one bucket's length.
    fn rate(&self) -> f64 {
        let elapsed = self.start.elapsed();
        let n = Self::bucket(elapsed);
        let oldest = n.saturating_sub(RATE_BUCKETS - 1);
        let count: u64 = {
            let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
            buckets.iter().filter(|(b, _)| (oldest..=n).contains(b)).map(|(_, c)| c).sum()
        };
        let window_start = RATE_BUCKET.as_secs_f64() * oldest as f64;
        let window = (elapsed.as_secs_f64() - window_start).max(RATE_BUCKET.as_secs_f64());
        count as f64 / window
    }
}

struct Shared {
    options: Options,
    id_header: HeaderValue,
    stats: Arc<Stats>,
    healthy: AtomicBool,
    /// Counts requests for the load reports (only with [`Options::load_report`]).
    rate: RateMeter,
    /// `f64` bits of the capacity in requests per second; 0.0 for none.
    capacity_rps: AtomicU64,
    /// The queue's slots (with [`Options::queue`]).
    slots: Option<Semaphore>,
    /// The queue's service time, in nanoseconds.
    service_nanos: AtomicU64,
}

/// A running backend; dropping it (or [`Running::stop`]) shuts the server down.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// What it has seen so far.
    pub stats: Arc<Stats>,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// The backend's id.
    pub fn id(&self) -> &str {
        &self.shared.options.id
    }

    /// Makes `/healthz` answer 200 (`true`) or 503 (`false`) from now on.
    pub fn set_healthy(&self, healthy: bool) {
        self.shared.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Changes the capacity the load reports divide the rate by ([`LoadReport::capacity_rps`]);
    /// a value that is not positive and finite removes it. No effect without load reports.
    pub fn set_capacity_rps(&self, capacity_rps: f64) {
        self.shared.capacity_rps.store(capacity_bits(Some(capacity_rps)), Ordering::SeqCst);
    }

    /// Changes how long a request holds its queue slot ([`QueueSim::service`]), for requests
    /// that get a slot from now on. No effect without a queue.
    pub fn set_service(&self, service: Duration) {
        self.shared.service_nanos.store(nanos(service), Ordering::SeqCst);
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
    let capacity = options.load_report.as_ref().and_then(|r| r.capacity_rps);
    let capacity_rps = AtomicU64::new(capacity_bits(capacity));
    let slots =
        options.queue.as_ref().map(|q| Semaphore::new(q.slots.clamp(1, Semaphore::MAX_PERMITS)));
    let service_nanos = AtomicU64::new(options.queue.as_ref().map_or(0, |q| nanos(q.service)));
    let shared = Arc::new(Shared {
        options,
        id_header,
        stats: Arc::clone(&stats),
        healthy,
        rate: RateMeter::new(),
        capacity_rps,
        slots,
        service_nanos,
    });
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

/// The `f64` bits stored for `capacity`: 0.0 (none) unless it is positive and finite.
fn capacity_bits(capacity: Option<f64>) -> u64 {
    capacity.filter(|c| c.is_finite() && *c > 0.0).unwrap_or(0.0).to_bits()
}

/// `duration` in nanoseconds, saturated.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
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
    let stats = &shared.stats;
    if bad_host {
        let mut response = bad_request();
        let in_flight = stats.in_flight.load(Ordering::SeqCst);
        add_load_report(&shared, request.headers(), in_flight, response.headers_mut());
        return response;
    }
    stats.requests.fetch_add(1, Ordering::Relaxed);
    if shared.options.load_report.is_some() {
        shared.rate.record();
    }
    let in_flight = InFlight::enter(stats);
    let opts = &shared.options;
    if let Some(slots) = &shared.slots {
        let queued = Queued::enter(stats);
        let slot = slots.acquire().await;
        drop(queued);
        let service = Duration::from_nanos(shared.service_nanos.load(Ordering::SeqCst));
        let hold = opts.delay.saturating_add(service);
        if !hold.is_zero() {
            tokio::time::sleep(hold).await;
        }
        drop(slot);
    } else if !opts.delay.is_zero() {
        tokio::time::sleep(opts.delay).await;
    }
    let fail = opts.fail_rate > 0.0 && fastrand::f64() < opts.fail_rate;
    let was_in_flight = in_flight.leave();
    if fail {
        let status =
            StatusCode::from_u16(opts.fail_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = with_id(&shared, status, format!("{} failing\n", opts.id));
        add_load_report(&shared, request.headers(), was_in_flight, response.headers_mut());
        return response;
    }
    let mut response = with_id(&shared, StatusCode::OK, format!("{}\n", opts.id));
    echo(opts, request.headers(), response.headers_mut());
    if let Some(cookie) = opts.set_cookie.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().append("set-cookie", cookie);
    }
    add_load_report(&shared, request.headers(), was_in_flight, response.headers_mut());
    response
}

/// A request counted in [`Stats::in_flight`]; uncounted when left or dropped (the client gone).
struct InFlight<'a> {
    stats: &'a Stats,
    left: bool,
}

impl<'a> InFlight<'a> {
    fn enter(stats: &'a Stats) -> Self {
        let now_in_flight = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now_in_flight, Ordering::SeqCst);
        InFlight { stats, left: false }
    }

    /// Uncounts the request; returns the requests that were in flight, this one included.
    fn leave(mut self) -> u64 {
        self.left = true;
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.left {
            self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A request counted in [`Stats::queued`] until dropped.
struct Queued<'a>(&'a Stats);

impl<'a> Queued<'a> {
    fn enter(stats: &'a Stats) -> Self {
        stats.queued.fetch_add(1, Ordering::SeqCst);
        Queued(stats)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Adds `endpoint-load-metrics` to `response` when the options and the request call for it;
/// `in_flight` is the number of requests in flight to report.
fn add_load_report(shared: &Shared, request: &HeaderMap, in_flight: u64, response: &mut HeaderMap) {
    let Some(report) = &shared.options.load_report else { return };
    let asked = request.get("endpoint-load-metrics-format");
    if report.only_when_asked && asked.is_none() {
        return;
    }
    let format = asked
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(report.format);
    let rate = finite(shared.rate.rate());
    let capacity = f64::from_bits(shared.capacity_rps.load(Ordering::SeqCst));
    let utilization = if capacity > 0.0 {
        finite(rate / capacity)
    } else {
        let slots = shared.options.queue.as_ref().map_or(1, |q| q.slots.max(1));
        finite(in_flight as f64 / slots as f64)
    };
    let queue_depth = shared.stats.queued.load(Ordering::SeqCst);
    let value = match format {
        ReportFormat::Text => format!(
            "TEXT rps_fractional={rate}, application_utilization={utilization}, \
             cpu_utilization={utilization}, named_metrics.queue_depth={queue_depth}, \
             named_metrics.in_flight={in_flight}"
        ),
        ReportFormat::Json => format!(
            "JSON {{\"rps_fractional\":{rate},\"application_utilization\":{utilization},\
             \"cpu_utilization\":{utilization},\"named_metrics\":{{\"queue_depth\":{queue_depth},\
             \"in_flight\":{in_flight}}}}}"
        ),
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.insert("endpoint-load-metrics", value);
    }
}

/// `x` when it is finite and positive, else 0 (never NaN, infinite or `-0`).
fn finite(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        x
    } else {
        0.0
    }
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
