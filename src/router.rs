//! Per-VM routing state and the life of one request: the validated config, its balancer, RNG
//! and in-flight counters. A request is steered (hash key in, steering value
//! `ip:port[,ip:port...]` out, primary first, then retry hosts), its response is attributed to
//! the backend that really served it, and its end releases what it held, exactly once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use crate::config::{Config, HashOn, TargetMode};
mod discovery;
mod health;
mod reports;
mod status;
mod steering;
mod sticky;

pub use sticky::{StickyOutcome, StickyTicket};

use crate::discovery::poller::{Follower, Poller};
use crate::hash_key;
use crate::health::prober::Prober;
use crate::health::Availability;
use crate::lb::{self, Balancer, LoadView, NoLoad, Outcome, PickCtx, Picks};
pub use crate::metrics::Metrics;
#[cfg(any(test, feature = "testing"))]
pub use crate::metrics::NoMetrics;
use crate::metrics::{BackendCounter, PoolCounter};
use crate::state::clock::Clock;
use crate::state::in_flight::InFlight;
use crate::state::registry::Registered;
use crate::state::SharedStore;

/// The header to set and its value, for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steering<'a> {
    pub header: &'a str,
    pub value: &'a str,
}

/// What the adapter must do with a response: log lines, and a `Set-Cookie` to add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub log: Vec<String>,
    pub set_cookie: Option<String>,
}

/// What the adapter must read from the request for the hash key, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource<'a> {
    None,
    /// Envoy's `source.address` property.
    SourceAddress,
    /// The value of this request header.
    Header(&'a str),
    /// The request's `cookie` header.
    CookieHeader,
    /// The request's `:path`.
    Path,
}

/// What one request holds between its callbacks. Created by [`Router::steer`].
#[derive(Debug, Clone)]
pub struct Ticket {
    /// The hosts written into the steering header, in order: try `k` went to `picks[k]`.
    picks: Picks,
    /// What the request's sticky cookie said.
    sticky: StickyTicket,
    /// The backend the request is attributed to (the primary, then whoever served it).
    backend: usize,
    /// When the request was steered: wall time as given, and on the proxy's clock.
    started_ns: u64,
    started_mono_ns: u64,
    /// Still counted in flight against `backend`.
    held: bool,
    answered: bool,
    /// The pool the indexes above point into ([`Router`]'s `pool_generation`).
    pool_generation: u64,
    /// With discovery, `backend`'s key, to find it again after the pool changed.
    key: Option<Rc<str>>,
}

impl Ticket {
    /// When the request was steered (the wall time [`Router::steer`] was given).
    pub fn started_ns(&self) -> u64 {
        self.started_ns
    }

    /// Whether its response was seen.
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// The backend try `k` (0-based) went to, as far as the filter decided it: the `k`-th
    /// pick with override_host (`None` past the list: the cluster's fallback chose), the only
    /// pick otherwise (original_dst and cluster_header retry the same backend).
    fn tried(&self, k: usize, mode: TargetMode) -> Option<usize> {
        let picks = self.picks.as_slice();
        let i = if mode == TargetMode::OverrideHost { picks.get(k) } else { picks.first() };
        i.map(|&i| i as usize)
    }

    /// How many of `retried` earlier tries can be attributed to a backend: with override_host
    /// only those within the picks (past the list the cluster's fallback chose), otherwise at
    /// most [`MAX_SAME_BACKEND_TRIES`]. Bounds the work a response causes, whatever the count.
    fn attributable(&self, retried: usize, mode: TargetMode) -> usize {
        let limit = match mode {
            TargetMode::OverrideHost => self.picks.as_slice().len(),
            _ => MAX_SAME_BACKEND_TRIES,
        };
        retried.min(limit)
    }
}

/// Earlier tries counted against the one backend of an original_dst or cluster_header
/// request (each retry goes to the same backend): more than any sane retry policy makes.
const MAX_SAME_BACKEND_TRIES: usize = 8;

/// The request's attempt count from Envoy's `upstream.request_attempt_count` property (a
/// little-endian u64: 1 for the first try); 1 when absent or malformed. Never a response
/// header: the upstream writes those.
pub fn attempt_count(property: Option<&[u8]>) -> u32 {
    let count = property.and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes);
    count.and_then(|c| u32::try_from(c).ok()).filter(|&c| c >= 1).unwrap_or(1)
}

/// Every `now_ns` the router is given is the host's wall clock (Unix epoch ns). Health and
/// latency are timed on the proxy's monotonic clock made of it ([`crate::state::clock`]);
/// cookie expiry and the status page's `now_ms` use it as is.
pub struct Router {
    config: Config,
    balancer: Box<dyn Balancer>,
    rng: fastrand::Rng,
    picks: Picks,
    value: String,
    /// Who may be picked (health, backups, panic); `None`: everyone.
    availability: Option<Availability>,
    /// Health checking, passive ejection and slow start of this pool, when configured.
    prober: Option<Prober>,
    /// The proxy's monotonic clock, synced on ticks when there is a prober (else wall time).
    clock: Clock,
    /// Panic state last logged by this VM as lease holder.
    panic_logged: bool,
    /// Whether this VM held the prober lease at its last tick (taking it is logged).
    held_lease: bool,
    /// Sticky sessions, when configured.
    sticky: Option<sticky::StickyState>,
    /// Shared in-flight counters, kept only when the algorithm reads load.
    in_flight: Option<InFlight>,
    by_address: HashMap<SocketAddr, usize, fnv::FnvBuildHasher>,
    /// Backend index by id (sticky cookies name ids).
    by_id: HashMap<String, usize, fnv::FnvBuildHasher>,
    /// With discovery: the one poller's part (every VM runs it; the lease holder polls) and
    /// this VM's view of the published snapshot.
    poller: Option<Poller>,
    follower: Option<Follower>,
    /// With discovery: each backend's key and the index of each key, so requests steered
    /// before a pool change find their backend again.
    backend_keys: Vec<Rc<str>>,
    by_key: HashMap<Rc<str>, usize, fnv::FnvBuildHasher>,
    /// Goes up with every pool change.
    pool_generation: u64,
    /// Whether the cluster honours the steering, from sampled responses.
    steering: steering::SteeringCheck,
    store: Registered<Box<dyn SharedStore>>,
    metrics: Box<dyn Metrics>,
    /// Availability of each backend as last reported to the `lb_healthy` gauge by this VM.
    shown_up: Vec<Option<bool>>,
    /// This configuration's generation ([`crate::state::generation`]).
    generation: u64,
    /// Load reports, for the algorithms that read them.
    reports: Option<reports::Reports>,
}

impl Router {
    /// `seed` should differ per VM so that workers do not draw the same random sequence.
    pub fn new(
        config: Config,
        seed: u64,
        now_ns: u64,
        store: Box<dyn SharedStore>,
        metrics: Box<dyn Metrics>,
    ) -> Self {
        // Every key is recorded before its first write, so the status page can count them.
        let store = Registered::new(store);
        let mut clock = Clock::new();
        let prober = health::prober_for(&config, seed, &store, &mut clock, now_ns);
        let mono_ns = clock.at(now_ns);
        let sticky = sticky::state_for(&config, &store);
        let balancer = lb::build(&config.balancing, &config.pool, mono_ns);
        let mut in_flight = balancer.uses_load().then(|| {
            InFlight::new(&config.cluster, &config.pool, config.balancing.balance_factor.is_some())
        });
        if let Some(counters) = &mut in_flight {
            store.register_all(counters.keys());
            counters.start(&store, seed, now_ns);
        }
        let by_address =
            config.pool.iter().enumerate().filter_map(|(i, b)| Some((b.address?, i))).collect();
        let by_id = config.pool.iter().enumerate().map(|(i, b)| (b.id.clone(), i)).collect();
        let poller = config
            .discovery
            .as_ref()
            .map(|d| Poller::new(d, &config.cluster, seed.rotate_left(17)));
        let follower = config.discovery.as_ref().map(|_| Follower::new(&config.cluster));
        let picks = Picks::with_capacity(config.target.max_hosts);
        let value = String::with_capacity(config.target.max_hosts * 48);
        let rng = fastrand::Rng::with_seed(seed);
        let generation = crate::state::generation::register(&store, &config.cluster, config.digest);
        let shown_up = vec![None; config.pool.len()];
        let reports = reports::Reports::for_config(&config);
        let mut router = Router {
            config,
            balancer,
            rng,
            picks,
            value,
            availability: None,
            prober,
            clock,
            panic_logged: false,
            held_lease: false,
            sticky,
            in_flight,
            by_address,
            by_id,
            poller,
            follower,
            backend_keys: Vec::new(),
            by_key: HashMap::default(),
            pool_generation: 0,
            steering: steering::SteeringCheck::default(),
            store,
            metrics,
            shown_up,
            generation,
            reports,
        };
        router.reports_start();
        if router.prober.is_none() {
            let fixed = health::fixed_availability(&router.config, mono_ns);
            router.availability_is(fixed);
        }
        // A snapshot already published (a config update, a new worker) is used at once.
        router.follow_snapshot(now_ns, &mut Vec::new());
        router
    }

    /// Sets who may be picked, reporting to the `lb_healthy` gauge the backends whose
    /// availability changed.
    fn availability_is(&mut self, availability: Availability) {
        for (i, shown) in self.shown_up.iter_mut().enumerate() {
            let up = availability.slots.get(i).is_some_and(|s| s.available);
            if *shown != Some(up) {
                *shown = Some(up);
                self.metrics.healthy(i, up);
            }
        }
        self.availability = Some(availability);
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Backends in the pool now (a discovered pool's current size).
    pub fn pool_len(&self) -> usize {
        self.config.pool.len()
    }

    /// The request header that carries the picks.
    #[cfg(test)]
    pub fn header(&self) -> &str {
        &self.config.target.header
    }

    /// Replaces who may be picked (from the health table, on every tick).
    #[cfg(test)]
    pub fn set_availability(&mut self, availability: Availability) {
        self.availability_is(availability);
    }

    /// Whether [`Router::on_response`] needs the address of the backend that served a
    /// response after `attempts` tries (attribution of in-flight counts, passive ejection,
    /// cookies). False saves a property read per response: without a retry the only try went
    /// to the primary (every backend is one of the cluster's endpoints), without attribution
    /// nothing asks, and in cluster mode the cluster named is the backend.
    pub fn needs_served_by(&self, attempts: u32) -> bool {
        let attributes = self.in_flight.is_some() || self.ejects() || self.sticky.is_some();
        attributes && attempts > 1 && self.config.target.mode != TargetMode::ClusterHeader
    }

    /// Whether the adapter should read `upstream.address` for this response: when
    /// [`Router::needs_served_by`], and with override_host for one response in
    /// [`steering::SAMPLE_EVERY`], to see that the cluster honours the steering.
    pub fn wants_served_by(&mut self, attempts: u32) -> bool {
        if self.needs_served_by(attempts) {
            return true;
        }
        if self.config.target.mode != TargetMode::OverrideHost {
            return false;
        }
        self.steering.wants_sample()
    }

    /// A sampled response's first try was served by `served` (a pool index): counted when
    /// it was not the primary pick ([`steering`]).
    fn check_steering(&mut self, ticket: &Ticket, served: Option<usize>, attempts: u32) {
        let picks = ticket.picks.as_slice();
        if attempts != 1 || picks.is_empty() {
            return;
        }
        let listed = served.is_some_and(|i| picks.first() == Some(&(i as u32)));
        if !listed {
            self.metrics.pool(PoolCounter::SteeringIgnored);
        }
        self.steering.sample(listed);
    }

    /// At a tick: the line to log when the judgement of the steering changed.
    fn judge_steering(&mut self, now_ns: u64) -> Option<String> {
        let interval_ms = self.config.discovery.as_ref().map_or(0, |d| d.interval_ms);
        let ignored = self.steering.judge(now_ns, interval_ms.saturating_mul(4 * crate::MS))?;
        Some(if ignored {
            format!(
                "steering ignored: most sampled responses came from hosts the filter did not \
                 pick; cluster {} does not honour header {} (is its load_balancing_policy \
                 override_host? In Istio: was the EnvoyFilter patch applied?)",
                self.config.cluster, self.config.target.header
            )
        } else {
            format!("steering honoured again by cluster {}", self.config.cluster)
        })
    }

    /// Whether [`Router::steer`] needs the time (session cookies' expiry, latency estimates,
    /// ejection); otherwise the adapter may pass 0 and save a clock read per request.
    pub fn needs_clock(&self) -> bool {
        self.sticky.is_some() || self.needs_response_time()
    }

    /// Whether [`Router::on_response`] needs the time the response arrived (latency-aware
    /// algorithms, passive ejection); otherwise the adapter may pass the ticket's
    /// [`Ticket::started_ns`] and save a clock read.
    pub fn needs_response_time(&self) -> bool {
        self.balancer.learns_latency() || self.ejects() || self.reports.is_some()
    }

    /// What [`Router::steer`] needs as `key_input`.
    pub fn key_source(&self) -> KeySource<'_> {
        match &self.config.balancing.hash_on {
            None => KeySource::None,
            Some(HashOn::SourceIp) => KeySource::SourceAddress,
            Some(HashOn::Header(h)) => KeySource::Header(h),
            Some(HashOn::Cookie(_)) => KeySource::CookieHeader,
            Some(HashOn::Query(_)) => KeySource::Path,
        }
    }

    /// The request's hash key from the input named by [`Router::key_source`].
    fn key(&self, input: Option<&str>) -> Option<u64> {
        let input = input?;
        let bytes = match self.config.balancing.hash_on.as_ref()? {
            HashOn::SourceIp => &*hash_key::source_ip(input)?,
            HashOn::Header(_) => input,
            HashOn::Cookie(name) => hash_key::cookie(input, name)?,
            HashOn::Query(name) => hash_key::query(input, name)?,
        };
        Some(hash_key::hash(bytes.as_bytes()))
    }

    /// Picks backends for one request, counts it in flight on the primary, and renders the
    /// steering value; `None` when no backend can be chosen.
    /// `cookie_header` is the request's `cookie` header when [`Router::wants_cookies`].
    pub fn steer(
        &mut self,
        key_input: Option<&str>,
        cookie_header: Option<&str>,
        now_ns: u64,
    ) -> Option<(Steering<'_>, Ticket)> {
        let key = self.key(key_input);
        let mono_ns = self.clock.at(now_ns);
        let (sticky, outcome) = self.pinned(cookie_header, now_ns);
        if let Some(outcome) = outcome {
            self.metrics.pool(match outcome {
                StickyOutcome::Hit => PoolCounter::StickyHits,
                StickyOutcome::Miss => PoolCounter::StickyMisses,
                StickyOutcome::Invalid => PoolCounter::StickyInvalid,
            });
        }
        let availability = self.availability.as_ref();
        if availability.is_some_and(|a| a.none) {
            self.metrics.pool(PoolCounter::NoHealthyBackend);
            return None;
        }
        // Slow start: a ramping backend is admitted to this pick with its ramp's probability;
        // when that leaves nobody (every backend ramping), the pick is made again without it.
        // Draining backends take no new sessions while anything else can (see
        // `Availability::draining_serve`); a pinned backend is put first below.
        let salt = self.rng.u64(..);
        let pool = &self.config.pool;
        let admission = std::cell::Cell::new(true);
        let draining_ok = availability.is_some_and(|a| a.draining_serve);
        let accept = |i: usize| {
            Some(i) != sticky.pinned
                && (draining_ok || !pool.get(i).is_some_and(|b| b.drain))
                && availability.is_none_or(|a| {
                    a.accepts(i) && (!admission.get() || health::admitted(a, i, salt))
                })
        };
        let (mut view, mut none);
        let load: &mut dyn LoadView = match &self.in_flight {
            Some(counters) => {
                view = counters.view(&self.store);
                &mut view
            }
            None => {
                none = NoLoad;
                &mut none
            }
        };
        let reported = self.reports.as_ref().map(|r| &r.table);
        let mut ctx =
            PickCtx { accept: &accept, rng: &mut self.rng, key, load, now_ns: mono_ns, reported };
        self.balancer.pick(&mut ctx, &mut self.picks);
        if self.picks.is_empty() && availability.is_some() {
            admission.set(false);
            self.balancer.pick(&mut ctx, &mut self.picks);
        }
        if let Some(pinned) = sticky.pinned {
            // The session's backend first, then the algorithm's picks for retries.
            let mut picks = Picks::with_capacity(self.picks.capacity());
            picks.push(pinned);
            for &i in self.picks.as_slice() {
                picks.push(i as usize);
            }
            self.picks = picks;
        }
        let Some(&primary) = self.picks.as_slice().first() else {
            self.metrics.pool(PoolCounter::NoHealthyBackend);
            return None;
        };
        let primary = primary as usize;
        self.metrics.count(primary, BackendCounter::Requests);
        self.value.clear();
        for (n, &i) in self.picks.as_slice().iter().enumerate() {
            let Some(backend) = self.config.pool.get(i as usize) else { continue };
            if n > 0 {
                self.value.push(',');
            }
            self.value.push_str(&backend.host);
        }
        let mut ticket = Ticket {
            picks: self.picks.clone(),
            sticky,
            backend: primary,
            started_ns: now_ns,
            started_mono_ns: mono_ns,
            held: false,
            answered: false,
            pool_generation: self.pool_generation,
            key: None,
        };
        self.hold(&mut ticket, primary);
        let steering = Steering { header: &self.config.target.header, value: &self.value };
        Some((steering, ticket))
    }

    /// Response headers arrived. `served_by` is Envoy's `upstream.address` ("ip:port") when
    /// [`Router::needs_served_by`] (else `None`, and the backend is inferred: try `k` went to
    /// the `k`-th pick, or to the only one outside override_host mode). `now_ns` may be the
    /// ticket's start unless [`Router::needs_response_time`].
    /// `attempts` is Envoy's attempt count ([`attempt_count`]; 1 when unknown): tries before
    /// the last failed (only the tries the filter can attribute are counted). Counts upstream errors, reports them for passive ejection, moves the request's
    /// in-flight count to the backend that really served it and reports the outcome to the
    /// algorithm. Returns lines to log (ejections) and the cookie to set, if any.
    pub fn on_response(
        &mut self,
        ticket: &mut Ticket,
        served_by: Option<&str>,
        status: u32,
        attempts: u32,
        now_ns: u64,
    ) -> Answer {
        if ticket.answered {
            return Answer::default();
        }
        ticket.answered = true;
        self.adopt(ticket);
        let mono_ns = self.clock.at(now_ns);
        let retried = usize::try_from(attempts.saturating_sub(1)).unwrap_or(0);
        let served = if self.needs_served_by(attempts) {
            // No upstream address: Envoy answered itself (e.g. every try failed to connect).
            let served = served_by.and_then(|a| a.parse::<SocketAddr>().ok());
            served.and_then(|a| self.by_address.get(&a).copied())
        } else if let Some(address) = served_by.and_then(|a| a.parse::<SocketAddr>().ok()) {
            // A sample (`wants_served_by`): where the only try really went.
            let served = self.by_address.get(&address).copied();
            self.check_steering(ticket, served, attempts);
            ticket.tried(retried, self.config.target.mode)
        } else {
            ticket.tried(retried, self.config.target.mode)
        };
        // An upstream error (counted, and judged by passive ejection like Envoy's
        // consecutive_5xx); the algorithm also learns from 429s.
        let errored = served.is_none() || status >= 500;
        let failed = errored || status == 429;
        let log = self.report_outcomes(ticket, served, errored, retried, mono_ns);
        // No session starts on a failed answer (e.g. Envoy's own 503 for a refused connection).
        let set_cookie =
            if errored { None } else { self.cookie_for(ticket.sticky, served, now_ns) };
        if let (Some(backend), Some(_)) = (served, &set_cookie) {
            if ticket.sticky.pinned != Some(backend) {
                self.metrics.count(backend, BackendCounter::StickyIssued);
            }
        }
        if let Some(backend) = served {
            if backend != ticket.backend && ticket.held {
                self.release(ticket);
                self.hold(ticket, backend);
            }
            ticket.backend = backend;
        }
        let rtt_ns = mono_ns.saturating_sub(ticket.started_mono_ns);
        self.balancer.observe(ticket.backend, Outcome::Response { rtt_ns, failed }, mono_ns);
        Answer { log, set_cookie }
    }

    /// The stream ended, however it ended: releases the in-flight count exactly once.
    pub fn on_end(&mut self, ticket: &mut Ticket, now_ns: u64) {
        self.adopt(ticket);
        if !ticket.answered {
            ticket.answered = true;
            self.balancer.observe(ticket.backend, Outcome::NoResponse, self.clock.at(now_ns));
        }
        self.release(ticket);
    }

    /// A ticket from before the last pool change: its backend found again by key (or, if it
    /// left the pool, no longer held: its count was dropped with it), its other picks
    /// forgotten (tries before a pool change are not attributed).
    fn adopt(&self, ticket: &mut Ticket) {
        if ticket.pool_generation == self.pool_generation {
            return;
        }
        ticket.pool_generation = self.pool_generation;
        ticket.picks.clear();
        ticket.sticky = StickyTicket::default();
        match ticket.key.as_ref().and_then(|k| self.by_key.get(k)) {
            Some(&i) => ticket.backend = i,
            None => {
                ticket.held = false;
                ticket.answered = true;
                ticket.backend = usize::MAX;
            }
        }
    }

    fn hold(&mut self, ticket: &mut Ticket, backend: usize) {
        ticket.key = self.backend_keys.get(backend).cloned();
        let applied = match &mut self.in_flight {
            Some(c) => c.add(&self.store, backend, 1).unwrap_or(0),
            None => 1,
        };
        self.metrics.in_flight(backend, applied);
        ticket.backend = backend;
        ticket.held = true;
    }

    fn release(&mut self, ticket: &mut Ticket) {
        if !ticket.held {
            return;
        }
        ticket.held = false;
        let applied = match &mut self.in_flight {
            Some(c) => c.add(&self.store, ticket.backend, -1).unwrap_or(0),
            None => -1,
        };
        self.metrics.in_flight(ticket.backend, applied);
    }

    /// Hands the metrics batched since the last tick to the host.
    pub fn flush_metrics(&mut self) {
        self.metrics.flush();
    }

    /// Ids of the backends chosen by the last [`Router::steer`], in order.
    #[cfg(any(test, feature = "testing"))]
    pub fn last_picks(&self) -> impl Iterator<Item = &str> {
        self.picks
            .as_slice()
            .iter()
            .filter_map(|&i| self.config.pool.get(i as usize))
            .map(|b| b.id.as_str())
    }
}

#[cfg(test)]
mod tests;
