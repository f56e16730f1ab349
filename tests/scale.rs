//! A large pool on a real Envoy: 2,000 backends, each on its own loopback address, with active
//! health checks and outlier detection, two workers, under a steady client load. Asserted on
//! behaviour, not on speed (speed is `make bench`'s scale table, benches/scale.rs): requests
//! keep being answered 200, the admin API keeps answering, every backend is probed, the probes
//! of an interval are spread over it instead of sent in one burst, Envoy's circuit breakers
//! for the cluster never overflow with Envoy's default request limits, and every backend's
//! metrics exist.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// Backends in the pool.
const N: usize = 2_000;
const WORKERS: u32 = 2;
/// The health-check interval; the test watches [`INTERVALS`] of them after Envoy is ready.
const INTERVAL_MS: u64 = 2_000;
const INTERVALS: u64 = 3;
/// Probes are counted in bins of a tenth of the interval; no bin may hold more than this share
/// of one interval's probes (N). Spread evenly a bin holds 10%; one burst holds 100%.
const BIN_SHARE_MAX: f64 = 0.30;
/// Cluster `pool`'s connection circuit breaker: every keep-alive connection a warm Envoy holds
/// (one per backend per worker, and one per backend for the probes, which Envoy pools apart).
/// `max_requests` and `max_pending_requests` stay at Envoy's default, 1,024: probes spread over
/// the interval never come near it.
const MAX_CONNECTIONS: usize = N * (WORKERS as usize + 1) + 1_000;
/// Client tasks per worker, each sending requests one after another on its own connection,
/// and the most requests they send in all.
const CLIENTS_PER_WORKER: usize = 2;
const MAX_REQUESTS: u64 = 4_000;
/// The fewest answered requests the test accepts ("several hundred").
const MIN_REQUESTS: u64 = 300;
/// How long an admin or client request may take before it counts as not answered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Backend `i` listens on 127.3.(i / 250).(i % 250 + 1), port chosen by the kernel.
fn address(i: usize) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(127, 3, (i / 250) as u8, (i % 250 + 1) as u8), 0))
}

fn probes(b: &[Backend]) -> u64 {
    b.iter().map(|x| x.stats.health_checks.load(Ordering::Relaxed)).sum()
}

/// Sums of the backends' probe counters, sampled every 10 ms from before Envoy starts until
/// stopped: (time, probes received so far).
fn sample_probes(
    b: Arc<Vec<Backend>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(Instant, u64)>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            samples.push((Instant::now(), probes(&b)));
            std::thread::sleep(Duration::from_millis(10));
        }
        samples.push((Instant::now(), probes(&b)));
        samples
    })
}

/// Probes received in each bin of `width` from `from` to the last sample (the last, partial
/// bin left out).
fn per_bin(samples: &[(Instant, u64)], from: Instant, width: Duration) -> Vec<u64> {
    let at = |t: Instant| samples.iter().find(|(s, _)| *s >= t).map(|&(_, n)| n);
    let mut bins = Vec::new();
    let mut start = from;
    while let (Some(a), Some(b)) = (at(start), at(start + width)) {
        bins.push(b - a);
        start += width;
    }
    bins
}

/// One task per client, each sending GET / one after another on its one keep-alive connection
/// until stopped or until [`MAX_REQUESTS`] are sent in all: answers by status (0: no answer
/// within [`ANSWER_TIMEOUT`]).
async fn client_load(
    clients: Vec<reqwest::Client>,
    url: String,
    stop: Arc<AtomicBool>,
) -> std::collections::BTreeMap<u16, u64> {
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client in clients {
        let (url, stop, sent) = (url.clone(), Arc::clone(&stop), Arc::clone(&sent));
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed)
                && sent.fetch_add(1, Ordering::Relaxed) < MAX_REQUESTS
            {
                let status = match client.get(&url).timeout(ANSWER_TIMEOUT).send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                statuses.push(status);
                // Spread over the whole window, not all at its start.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            statuses
        }));
    }
    let mut by_status = std::collections::BTreeMap::new();
    for t in tasks {
        for s in t.await.unwrap() {
            *by_status.entry(s).or_insert(0) += 1;
        }
    }
    by_status
}

/// `/ready` and `/stats` asked in turn every 100 ms until stopped: (path, status) of every
/// answer (0: none within [`ANSWER_TIMEOUT`]).
async fn admin_polls(admin: SocketAddr, stop: Arc<AtomicBool>) -> Vec<(&'static str, u16)> {
    let client = reqwest::Client::builder().no_proxy().timeout(ANSWER_TIMEOUT).build().unwrap();
    let mut answers = Vec::new();
    let paths = ["/ready", "/stats?filter=^cluster\\.pool\\.upstream_rq_total$"];
    while !stop.load(Ordering::Relaxed) {
        let path = paths[answers.len() % 2];
        let status = match client.get(format!("http://{admin}{path}")).send().await {
            Ok(r) => {
                let s = r.status().as_u16();
                let _ = r.bytes().await;
                s
            }
            Err(_) => 0,
        };
        answers.push((path, status));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_backends_with_health_checks_stay_responsive_and_probes_are_spread() {
    let mut b = Vec::with_capacity(N);
    for i in 0..N {
        b.push(
            demo_backend::start(address(i), BackendOptions::new(format!("n{i}"))).await.unwrap(),
        );
    }
    let pool: Vec<(&str, SocketAddr, u32)> = b.iter().map(|x| (x.id(), x.addr, 1)).collect();
    let cfg = plugin_config(
        &pool,
        json!({
            "algorithm": "least_request",
            "health_check": {"path": "/healthz", "interval_ms": INTERVAL_MS, "timeout_ms": 1000},
            "outlier_detection": {"consecutive_errors": 5},
            "status": {},
        }),
    );
    let endpoints = b.iter().map(|x| x.addr).collect();
    let setup = EnvoySetup::new(cfg, endpoints).concurrency(WORKERS).tweak(|doc| {
        let clusters = doc["static_resources"]["clusters"].as_sequence_mut().unwrap();
        let pool = clusters.iter_mut().find(|c| c["name"] == "pool").unwrap();
        let limits = &mut pool["circuit_breakers"]["thresholds"][0];
        limits["max_connections"] = (MAX_CONNECTIONS as u64).into();
        limits["max_requests"] = 1024.into();
        limits["max_pending_requests"] = 1024.into();
    });

    let b = Arc::new(b);
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = sample_probes(Arc::clone(&b), Arc::clone(&stop_sampling));
    let spawned = Instant::now();
    let envoy = Envoy::start(setup).await;
    let ready = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    // The load's connections are placed on the workers (the kernel spreads connections at
    // random: four of them all land on one of two workers one time in eight).
    let mut clients = Vec::new();
    for _ in 0..CLIENTS_PER_WORKER {
        clients.extend(envoy.client_per_worker().await);
    }
    let load = tokio::spawn(client_load(clients, envoy.url("/"), Arc::clone(&stop)));
    let admin = tokio::spawn(admin_polls(envoy.admin, Arc::clone(&stop)));

    // Every claim is checked and every failed one reported together.
    let mut failed: Vec<String> = Vec::new();

    // (c) Every backend is probed within two intervals of Envoy being ready.
    let deadline = ready + Duration::from_millis(2 * INTERVAL_MS + 1_000);
    loop {
        let unprobed: Vec<&str> = b
            .iter()
            .filter(|x| x.stats.health_checks.load(Ordering::Relaxed) == 0)
            .map(|x| x.id())
            .collect();
        if unprobed.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            failed.push(format!(
                "{} of {N} backends never probed in two intervals, e.g. {:?}",
                unprobed.len(),
                &unprobed[..unprobed.len().min(5)]
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let watched_until = ready + Duration::from_millis(INTERVALS * INTERVAL_MS);
    tokio::time::sleep(watched_until.saturating_duration_since(Instant::now())).await;
    stop.store(true, Ordering::Relaxed);
    let answers = load.await.unwrap();
    let polls = admin.await.unwrap();
    stop_sampling.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    let watched = spawned.elapsed();

    // (a) Requests kept being answered, every one 200.
    let answered: u64 = answers.values().sum();
    if answers.keys().any(|&s| s != 200) {
        failed.push(format!("answers by status (0: none in {ANSWER_TIMEOUT:?}): {answers:?}"));
    }
    if answered < MIN_REQUESTS {
        failed.push(format!("only {answered} requests answered in {watched:?}"));
    }

    // (b) The admin API kept answering.
    let not_ok: Vec<_> = polls.iter().filter(|(_, s)| *s != 200).collect();
    if !not_ok.is_empty() {
        failed.push(format!("admin answers not 200 (0: none in {ANSWER_TIMEOUT:?}): {not_ok:?}"));
    }
    if polls.len() < 10 {
        failed.push(format!("only {} admin requests in {watched:?}", polls.len()));
    }

    // (c) Probes are spread: no tenth of an interval holds more than BIN_SHARE_MAX of an
    // interval's probes, from Envoy's start (its first probes included) to the end.
    let bins = per_bin(&samples, spawned, Duration::from_millis(INTERVAL_MS / 10));
    let total = probes(&b);
    let busiest = bins.iter().copied().max().unwrap_or(0);
    eprintln!(
        "{total} probes in {watched:?}; per {} ms from Envoy's start: {bins:?}; {answered} \
         requests, {} admin answers",
        INTERVAL_MS / 10,
        polls.len()
    );
    if busiest as f64 > BIN_SHARE_MAX * N as f64 {
        failed.push(format!(
            "probes are sent in bursts: {busiest} probes within {} ms, over {:.0}% of the {N} \
             backends; probes per {} ms from Envoy's start: {bins:?}",
            INTERVAL_MS / 10,
            BIN_SHARE_MAX * 100.0,
            INTERVAL_MS / 10
        ));
    }
    // ... and no backend is probed more than once an interval (+1 for the window's edges).
    let most = b.iter().map(|x| x.stats.health_checks.load(Ordering::Relaxed)).max().unwrap();
    let allowed = watched.as_millis() as u64 / INTERVAL_MS + 2;
    if most > allowed {
        failed.push(format!("a backend probed {most} times in {watched:?} (at most {allowed})"));
    }

    // (d) No circuit-breaker overflow on the cluster the probes go through.
    for stat in ["upstream_rq_pending_overflow", "upstream_cx_overflow"] {
        let n = envoy.stat_now(&format!("cluster.pool.{stat}")).await;
        if n > 0 {
            failed.push(format!("cluster.pool.{stat} = {n}"));
        }
    }
    // (e) Every backend's metrics exist in Prometheus' output, at zero when unused: the filter
    // defines them a bounded number per tick after it is configured (#16), never all at once.
    let text = client()
        .get(envoy.admin_url("/stats/prometheus"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counters = envoy_lb::metrics::BackendCounter::ALL.map(|c| c.name());
    let gauges = envoy_lb::metrics::BackendGauge::ALL.map(|g| g.name());
    for name in counters.iter().chain(&gauges) {
        let prefix = format!("{name}{{pool=\"pool\",backend=\"n");
        let series = text.lines().filter(|l| l.starts_with(&prefix)).count();
        if series != N {
            failed.push(format!("{series} {name} series in Prometheus' output, not {N}"));
        }
    }
    let up = text
        .lines()
        .filter(|l| l.starts_with("lb_healthy{pool=\"pool\",backend=\"n") && l.ends_with(" 1"))
        .count();
    if up != N {
        failed.push(format!("lb_healthy is 1 for {up} of {N} backends"));
    }
    // Every backend is still healthy in the filter's view.
    let page = client().get(envoy.url("/.lb/status")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page: Value = serde_json::from_str(&page.text().await.unwrap()).unwrap();
    let entries = page["backends"].as_array().unwrap();
    assert_eq!(entries.len(), N);
    let unhealthy: Vec<&Value> = entries.iter().filter(|e| e["healthy"] != true).collect();
    if !unhealthy.is_empty() {
        failed.push(format!(
            "{} backends not healthy, e.g. {:?}",
            unhealthy.len(),
            &unhealthy[..unhealthy.len().min(2)]
        ));
    }
    envoy.assert_every_worker_served().await;
    assert!(failed.is_empty(), "{} claims failed:\n- {}", failed.len(), failed.join("\n- "));
}
