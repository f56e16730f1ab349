//! Live configuration updates (LDS from a watched file) on a real Envoy with two workers:
//! a refused config leaves the old one serving without failing a single request, and an
//! accepted one keeps the health state and the sticky sessions of the pool.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const SECRET: &str = "the secret of both configurations, 32+ bytes";
const COOKIE: &str = "lb_session";

/// Phases of the client loop in [`refused_update_keeps_serving_without_a_failed_request`].
const BEFORE: usize = 0;
const DURING: usize = 1;
const AFTER: usize = 2;
/// While the good update is being applied: a request of this phase may meet either config.
const SWITCHING: usize = 3;
const NEXT_GOOD: usize = 4;
const PHASES: [&str; 5] =
    ["before", "during", "after", "during the good update", "after the good update"];

/// What one client request got: the phase it started in, then `Ok(backend id)` for a 200
/// from a backend, or `Err(what happened)`.
type Outcome = (usize, Result<String, String>);

/// `clients` loops, each sending GETs on fresh connections until `stop`; every request's
/// outcome is recorded with the phase it started in.
fn client_loops(
    url: String,
    clients: usize,
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|_| {
            let (url, phase, stop, outcomes) =
                (url.clone(), Arc::clone(&phase), Arc::clone(&stop), Arc::clone(&outcomes));
            tokio::spawn(async move {
                let client = client();
                while !stop.load(Ordering::SeqCst) {
                    let p = phase.load(Ordering::SeqCst);
                    let outcome = match client.get(&url).send().await {
                        Err(e) => Err(format!("transport error: {e}")),
                        Ok(r) => {
                            let status = r.status();
                            let id = r
                                .headers()
                                .get("x-backend")
                                .map(|v| v.to_str().unwrap().to_string());
                            let body = r.text().await.unwrap_or_default();
                            match id {
                                Some(id) if status == 200 => Ok(id),
                                _ => {
                                    Err(format!("status {status}, x-backend {id:?}, body {body:?}"))
                                }
                            }
                        }
                    };
                    outcomes.lock().unwrap().push((p, outcome));
                }
            })
        })
        .collect()
}

fn count_in(outcomes: &[Outcome], phase: usize) -> usize {
    outcomes.iter().filter(|(p, _)| *p == phase).count()
}

/// Waits until at least `n` requests of `phase` are recorded (at most 30 s).
async fn wait_for(outcomes: &Arc<Mutex<Vec<Outcome>>>, phase: usize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_in(&outcomes.lock().unwrap(), phase) < n {
        assert!(
            Instant::now() < deadline,
            "only {} requests {}",
            count_in(&outcomes.lock().unwrap(), phase),
            PHASES[phase]
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Backend id -> requests served, over the outcomes of `phases`.
fn shares(outcomes: &[Outcome], phases: &[usize]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (_, o) in outcomes.iter().filter(|(p, _)| phases.contains(p)) {
        if let Ok(id) = o {
            *m.entry(id.clone()).or_insert(0) += 1;
        }
    }
    m
}

/// Asserts the served shares follow `weights` (b1, b2, b3) within ±10% each.
fn assert_shares(what: &str, got: &BTreeMap<String, usize>, weights: [u32; 3]) {
    let total: usize = got.values().sum();
    let sum: u32 = weights.iter().sum();
    for (i, w) in weights.iter().enumerate() {
        let id = format!("b{}", i + 1);
        let expected = total as f64 * f64::from(*w) / f64::from(sum);
        assert_near(
            &format!("{what}: {id} in {got:?}"),
            got.get(&id).copied().unwrap_or(0),
            expected,
            10.0,
        );
    }
}

/// (1) good -> bad: each refused update (invalid JSON, a bad value, an unknown field) is
/// rejected by Envoy with the filter's refusal in the log, while four clients keep sending
/// requests: before, during and after the updates every request is answered 200 by a backend,
/// in the old configuration's weights. A good update afterwards is applied (the control: the
/// test sees a configuration change when there is one), still without a failed request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_update_keeps_serving_without_a_failed_request() {
    let backends = backends(3).await;
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let config = |weights: [u32; 3]| {
        let pool: Vec<_> = backends.iter().zip(weights).map(|(b, w)| (b.id(), b.addr, w)).collect();
        plugin_config(&pool, json!({}))
    };
    let old = config([1, 2, 3]);
    let mut envoy =
        Envoy::start(EnvoySetup::new(old.clone(), endpoints).concurrency(2).live()).await;

    let phase = Arc::new(AtomicUsize::new(BEFORE));
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let loops = client_loops(
        envoy.url("/"),
        4,
        Arc::clone(&phase),
        Arc::clone(&stop),
        Arc::clone(&outcomes),
    );
    wait_for(&outcomes, BEFORE, 100).await;

    let bad_weight = old.replacen("\"weight\":1", "\"weight\":0", 1);
    assert_ne!(bad_weight, old);
    let refused = [
        (
            "invalid JSON",
            old[..old.len() - 1].to_string(),
            "invalid plugin config: $: not valid JSON: EOF while parsing an object",
        ),
        ("weight 0", bad_weight, "invalid plugin config: $.backends[0].weight: 0 is out of range"),
        (
            "unknown field",
            old.replacen('{', r#"{"algorthm": "random", "#, 1),
            "invalid plugin config: $.algorthm: unknown field `algorthm`",
        ),
    ];
    let started = Instant::now();
    phase.store(DURING, Ordering::SeqCst);
    for (name, bad, line) in &refused {
        assert!(
            !envoy.update_plugin_config(bad.clone()).await,
            "{name}: Envoy accepted the update"
        );
        assert!(envoy.log().contains(line), "{name}: no {line:?} in\n{}", envoy.log_tail(20));
    }
    let during = started.elapsed();
    phase.store(AFTER, Ordering::SeqCst);
    assert_eq!(envoy.stat("listener_manager.lds.update_rejected").await, 3);
    assert_eq!(envoy.log().matches("invalid plugin config:").count(), 3, "{}", envoy.log_tail(20));
    wait_for(&outcomes, AFTER, 300).await;

    // The control: a good update is applied, and the shares change with it. Requests that
    // start while it is being applied may meet either configuration: they count for the
    // failure check only.
    phase.store(SWITCHING, Ordering::SeqCst);
    assert!(envoy.update_plugin_config(config([1, 1, 1])).await, "{}", envoy.log_tail(20));
    phase.store(NEXT_GOOD, Ordering::SeqCst);
    wait_for(&outcomes, NEXT_GOOD, 300).await;
    stop.store(true, Ordering::SeqCst);
    for l in loops {
        tokio::time::timeout(Duration::from_secs(15), l).await.unwrap().unwrap();
    }

    assert_eq!(
        envoy.stat("listener_manager.lds.update_success").await,
        2,
        "the initial load and the good update"
    );
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let failed: Vec<_> = outcomes.iter().filter(|(_, o)| o.is_err()).collect();
    let per_phase: Vec<_> =
        (0..PHASES.len()).map(|p| (PHASES[p], count_in(&outcomes, p))).collect();
    eprintln!("requests per phase: {per_phase:?}; the refused updates took {during:?}");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(10)]
    );
    assert!(
        count_in(&outcomes, DURING) >= 20,
        "too few requests during the updates: {per_phase:?}"
    );
    assert!(outcomes.len() >= 700, "{per_phase:?}");
    // The old configuration (1:2:3, not the cluster's unweighted fallback) served throughout.
    assert_shares("old config", &shares(&outcomes, &[BEFORE, DURING, AFTER]), [1, 2, 3]);
    assert_shares("after refusals", &shares(&outcomes, &[AFTER]), [1, 2, 3]);
    // The good update took effect.
    assert_shares("new config", &shares(&outcomes, &[NEXT_GOOD]), [1, 1, 1]);
    envoy.assert_every_worker_served().await;
}

/// One GET: (backend id, our Set-Cookie value if any).
async fn get(envoy: &Envoy, cookie: Option<&str>) -> (String, Option<String>) {
    let mut req = client().get(envoy.url("/"));
    if let Some(c) = cookie {
        req = req.header("cookie", format!("{COOKIE}={c}"));
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-backend"].to_str().unwrap().to_string();
    let ours = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().unwrap().strip_prefix(&format!("{COOKIE}=")))
        .map(|c| c.split(';').next().unwrap().to_string())
        .next();
    (id, ours)
}

/// The status page (served by whichever worker takes the connection).
async fn status(envoy: &Envoy) -> Value {
    let r = client().get(envoy.url("/.lb/status")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-backend").is_none(), "the status page reached a backend");
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

/// (2) good -> good, with health checks and sticky sessions: b3 is unhealthy when the weights
/// change; right after the update (before a new probe could have judged it: three failures
/// 1 s apart) every worker still reports it unhealthy with its last change, sends it nothing,
/// and cookies issued before the update still pin their backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_update_keeps_health_state_and_sessions() {
    let backends = backends(3).await;
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let config = |weights: [u32; 3]| {
        let pool: Vec<_> = backends.iter().zip(weights).map(|(b, w)| (b.id(), b.addr, w)).collect();
        plugin_config(
            &pool,
            json!({
                "health_check": {"interval_ms": 1000, "timeout_ms": 100, "unhealthy_threshold": 3, "healthy_threshold": 2},
                "sticky": {"cookie": COOKIE, "secrets": [SECRET], "secure": false},
                "status": {}
            }),
        )
    };
    let mut envoy =
        Envoy::start(EnvoySetup::new(config([1, 1, 1]), endpoints).concurrency(2).live()).await;

    // A session cookie for each backend.
    let mut cookies: BTreeMap<String, String> = BTreeMap::new();
    for _ in 0..60 {
        let (id, cookie) = get(&envoy, None).await;
        cookies.entry(id).or_insert_with(|| cookie.expect("no cookie for a new session"));
        if cookies.len() == 3 {
            break;
        }
    }
    assert_eq!(cookies.len(), 3, "{cookies:?}");

    backends[2].set_healthy(false);
    let change = "unhealthy: 3 probe failures, last: status 503";
    envoy.wait_log(&format!("b3 {change}"), 10).await;
    let before = status(&envoy).await;
    assert_eq!(before["generation"], 1);
    assert_eq!(before["backends"][2]["healthy"], false, "{before}");
    assert_eq!(before["backends"][2]["last_change"], change, "{before}");

    let probes = backends[2].stats.health_checks.load(Ordering::SeqCst);
    let b3_served = backends[2].stats.requests.load(Ordering::SeqCst);
    let hits = envoy.stat("wasmcustom.lb_sticky_hits_total.pool.pool").await;
    assert!(
        envoy.update_plugin_config(config([3, 1, 1])).await,
        "update refused:\n{}",
        envoy.log_tail(20)
    );
    let updated = Instant::now();

    // Every worker's new VM: the new weights, b3 still unhealthy with its last change.
    for _ in 0..6 {
        let doc = status(&envoy).await;
        assert_eq!(doc["generation"], 2, "{doc}");
        assert_eq!(doc["backends"][0]["weight"], 3, "{doc}");
        let b3 = &doc["backends"][2];
        assert_eq!((&b3["healthy"], &b3["available"]), (&json!(false), &json!(false)), "{doc}");
        assert_eq!(b3["last_change"], change, "{doc}");
        assert_eq!(doc["backends"][0]["healthy"], true, "{doc}");
    }
    // A configuration that had forgotten b3 would need 3 failed probes to mark it unhealthy
    // again: fewer have been sent, so the state above is the one from before the update.
    let new_probes = backends[2].stats.health_checks.load(Ordering::SeqCst) - probes;
    assert!(new_probes < 3, "{new_probes} probes of b3 since the update began: cannot tell");
    // Requests without a cookie: none to b3, b1 and b2 at 3:1.
    let mut counts = BTreeMap::new();
    for _ in 0..40 {
        *counts.entry(get(&envoy, None).await.0).or_insert(0usize) += 1;
    }
    assert!(!counts.contains_key("b3"), "the unhealthy backend got traffic: {counts:?}");
    assert_near(&format!("b1 in {counts:?}"), counts.get("b1").copied().unwrap_or(0), 30.0, 15.0);
    // Cookies from before the update: b1's and b2's still pin (b2 would get a quarter
    // without it), b3's moves elsewhere with a new cookie.
    for id in ["b1", "b2"] {
        for _ in 0..20 {
            let (served, fresh) = get(&envoy, Some(&cookies[id])).await;
            assert_eq!(served, id, "a cookie issued before the update lost its backend");
            assert_eq!(fresh, None, "a young valid cookie is not re-issued");
        }
    }
    let (served, fresh) = get(&envoy, Some(&cookies["b3"])).await;
    assert_ne!(served, "b3");
    assert!(fresh.is_some(), "no new cookie for a session whose backend is unhealthy");
    eprintln!(
        "checked {:?} after the update, {new_probes} probes of b3 in between",
        updated.elapsed()
    );
    assert_eq!(envoy.stat("wasmcustom.lb_sticky_hits_total.pool.pool").await, hits + 40);
    assert_eq!(backends[2].stats.requests.load(Ordering::SeqCst), b3_served, "b3 served a request");
    envoy.assert_every_worker_served().await;
}

/// (3) good -> good adding a backend that fails its health checks: the new configuration
/// probes it at once and marks it unhealthy as fast as one configured from the start
/// (2 failures 300 ms apart), although the previous configuration's root contexts live on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_added_by_an_update_is_health_checked() {
    for concurrency in [2, 4] {
        added_backend_is_checked_at(concurrency).await;
    }
}

async fn added_backend_is_checked_at(concurrency: u32) {
    let backends = backends(3).await;
    backends[2].set_healthy(false);
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let config = |n: usize| {
        let pool: Vec<_> = backends.iter().take(n).map(|b| (b.id(), b.addr, 1)).collect();
        let check = json!({"interval_ms": 300, "timeout_ms": 100, "unhealthy_threshold": 2});
        plugin_config(&pool, json!({ "health_check": check, "status": {} }))
    };
    let setup = EnvoySetup::new(config(2), endpoints).concurrency(concurrency).live();
    let mut envoy = Envoy::start(setup).await;
    count_by_backend(&envoy, 10, &[]).await;
    assert!(envoy.update_plugin_config(config(3)).await, "refused:\n{}", envoy.log_tail(20));
    envoy.wait_log("b3 unhealthy: 2 probe failures", 3).await;
    let served = backends[2].stats.requests.load(Ordering::SeqCst);
    let counts = count_by_backend(&envoy, 30, &[]).await;
    assert!(!counts.contains_key("b3"), "{counts:?}");
    assert_eq!(backends[2].stats.requests.load(Ordering::SeqCst), served);
    // And it stays so: the previous configuration does not undo it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let doc = status(&envoy).await;
    assert_eq!(doc["backends"][2]["healthy"], false, "{doc}");
    let counts = count_by_backend(&envoy, 30, &[]).await;
    assert!(!counts.contains_key("b3"), "{counts:?}");
    envoy.assert_every_worker_served().await;
}

/// Adds a second listener `other`, a copy of the first, and drops the last backend from the
/// first listener's plugin config: two filters naming the same `cluster`, the first one
/// configured holding fewer backends.
fn second_filter_with_one_backend_more(doc: &mut serde_yaml_ng::Value) {
    let listeners = doc["static_resources"]["listeners"].as_sequence_mut().unwrap();
    let mut other = listeners[0].clone();
    other["name"] = "other".into();
    let filters = listeners[0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        .as_sequence_mut()
        .unwrap();
    let wasm = filters.iter_mut().find(|f| f["name"] == "envoy.filters.http.wasm").unwrap();
    let value = &mut wasm["typed_config"]["config"]["configuration"]["value"];
    let mut config: Value = serde_json::from_str(value.as_str().unwrap()).unwrap();
    config["backends"].as_array_mut().unwrap().pop();
    *value = config.to_string().into();
    listeners.push(other);
}

/// (4) Two filters (two listeners) name the same cluster: the first balances over b1, b2,
/// `other` over b1..b3. b3 fails its health checks: `other` marks it unhealthy and stops
/// sending to it, the first keeps serving b1 and b2, and b1 and b2 are probed once per
/// interval, not once per filter. Failed before the configurations were fenced: the first
/// filter's prober held the cluster's one lease and never probed b3, so `other` kept sending
/// a third of its requests there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_filters_on_one_cluster_keep_their_own_backends_checked() {
    let backends = backends(3).await;
    backends[2].set_healthy(false);
    let pool: Vec<_> = backends.iter().map(|b| (b.id(), b.addr, 1)).collect();
    let check = json!({"interval_ms": 300, "timeout_ms": 100, "unhealthy_threshold": 2});
    let config = plugin_config(&pool, json!({ "health_check": check }));
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let setup = EnvoySetup::new(config, endpoints)
        .concurrency(2)
        .tweak(second_filter_with_one_backend_more);
    let mut envoy = Envoy::start(setup).await;
    envoy.wait_log("b3 unhealthy: 2 probe failures", 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let probes = |b: &Backend| b.stats.health_checks.load(Ordering::SeqCst);
    let before: Vec<u64> = backends.iter().map(probes).collect();
    let counts = count_by_backend(&envoy, 30, &[]).await;
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["b1", "b2"], "{counts:?}");
    let first = envoy.listener;
    envoy.listener = envoy.listener_named("other").await;
    let counts = count_by_backend(&envoy, 30, &[]).await;
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["b1", "b2"], "other sent to b3: {counts:?}");
    envoy.listener = first;
    // Over 3 intervals (at most 4 probes with the schedule's slack), per backend.
    tokio::time::sleep(Duration::from_millis(900)).await;
    for (b, before) in backends.iter().zip(before) {
        let n = probes(b) - before;
        assert!((2..=4).contains(&n), "{} probed {n} times in 3 intervals", b.id());
    }
    let log = envoy.log();
    assert_eq!(log.matches("b3 unhealthy").count(), 1, "{}", envoy.log_tail(20));
    assert!(!log.contains("b1 unhealthy") && !log.contains("b2 unhealthy"));
}
