//! Envoy's CPU time per request and its memory, with the filter and without, on a real Envoy in
//! front of three fast demo backends, loaded by `wrk` (keep-alive).
//!
//! Variants: (a) Envoy's native round robin, no wasm filter; (b) a no-op wasm filter
//! (`noop-filter/`, the floor of any wasm filter); (c)–(g) envoy-lb with several algorithms;
//! (h) envoy-lb round robin + sticky + health checks with returning sessions (wrk sends back the
//! cookie the filter issued); beside them what users would pick instead (issue #17): (i), (j)
//! Envoy's own sticky sessions (`stateful_session` cookie, native round robin, Envoy's health
//! checks) for new and returning sessions, and (k) an external endpoint picker over ext_proc (ext-proc-picker/, the
//! Gateway API Inference Extension's design) steering the same override_host cluster; (l), (m)
//! the floors under round robin's host calls (the no-op filter setting the steering header,
//! and also reading what envoy-lb reads of each response).
//! CPU per request = (utime + stime of the Envoy process, and of the picker's for (k),
//! /proc/<pid>/stat) / (increase of `http.ingress.downstream_rq_total`) over one wrk run.
//! A returning-session run must have every answer from the cookie's backend (the demo
//! backends' counters), so it cannot silently measure new sessions. Every Envoy (variant ×
//! workers) stays up for the whole run and rounds are interleaved, so slow drift of the machine spreads over
//! all variants; every ratio is the median of the ratios within each round (the two variants
//! measured back to back, [`ORDER`]).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{
    baseline_wasm, command_line, median, min_max, require_tools, run_header, run_wrk,
    session_cookie, start, with_baselines, write_cpu_section, wrk_command, Kind, Params, Proxy,
    RunStart, Variant, STATEFUL_COOKIE,
};
use crate::support::{backends, plugin_config, Backend};

/// `make bench`'s Envoy worker counts.
pub const WORKERS: [u32; 2] = [1, 2];
/// `make bench`'s wrk seconds per measurement and per warm-up.
pub const SECONDS: u64 = 3;
pub const WARMUP_SECONDS: u64 = 1;

/// Keys of the variants that the side-by-side ratios (issue #17) divide.
const ROUND_ROBIN: char = 'c';
const STICKY: char = 'd';
const STICKY_RETURNING: char = 'h';
const STATEFUL: char = 'i';
const STATEFUL_RETURNING: char = 'j';
const PICKER: char = 'k';
/// The floors under round robin's host calls (the no-op filter in its floor mode).
const FLOOR_STEER: char = 'l';
const FLOOR_READ: char = 'm';

/// The order in which a round measures the variants (see [`run`]).
const ORDER: &str = "ablmckdihjefg";

/// The median over rounds of `num`'s CPU per request ÷ `den`'s in the same round, with the
/// smallest and largest of those ratios.
fn paired(num: &Cell, den: &Cell) -> (f64, f64, f64) {
    let ratios: Vec<f64> =
        num.samples.iter().zip(&den.samples).map(|(a, b)| a.us_per_req / b.us_per_req).collect();
    let (lo, hi) = min_max(&ratios);
    (median(&ratios), lo, hi)
}

/// The side-by-side ratios: numerator, denominator, what they compare, the goal (≤).
const SIDE_BY_SIDE: [(char, char, &str, f64); 3] = [
    (STICKY, STATEFUL, "sticky sessions, new sessions: envoy-lb ÷ Envoy's stateful_session", 1.15),
    (
        STICKY_RETURNING,
        STATEFUL_RETURNING,
        "sticky sessions, returning sessions: envoy-lb ÷ Envoy's stateful_session",
        1.15,
    ),
    (ROUND_ROBIN, PICKER, "round robin: envoy-lb ÷ the ext_proc picker (Envoy + picker)", 0.5),
];

pub fn variants() -> Vec<Variant> {
    let sticky = json!({"cookie": "lb_session", "secrets": ["a benchmark secret, at least 32 bytes"],
        "secure": false});
    let health = json!({"path": "/healthz", "interval_ms": 2000, "timeout_ms": 1000});
    let sticky_rr = json!({"algorithm": "round_robin", "sticky": sticky, "health_check": health});
    let v = |key, name, kind| Variant { key, name, kind, returning: false };
    let returning = |key, name, kind| Variant { key, name, kind, returning: true };
    vec![
        v('a', "native round_robin (no wasm)", Kind::Native),
        v('b', "no-op wasm filter", Kind::Noop),
        v(ROUND_ROBIN, "envoy-lb round_robin", Kind::Ours(json!({"algorithm": "round_robin"}))),
        v(STICKY, "envoy-lb round_robin + sticky + health_check", Kind::Ours(sticky_rr.clone())),
        v('e', "envoy-lb least_request", Kind::Ours(json!({"algorithm": "least_request"}))),
        v('f', "envoy-lb least_time", Kind::Ours(json!({"algorithm": "least_time"}))),
        v(
            'g',
            "envoy-lb maglev (hash_on header)",
            Kind::Ours(json!({"algorithm": "maglev", "hash_on": {"header": "x-user"}})),
        ),
        returning(
            STICKY_RETURNING,
            "envoy-lb round_robin + sticky + health_check, returning sessions",
            Kind::Ours(sticky_rr),
        ),
        v(STATEFUL, "native round_robin + stateful_session cookie", Kind::NativeStatefulSession),
        returning(
            STATEFUL_RETURNING,
            "native round_robin + stateful_session cookie, returning sessions",
            Kind::NativeStatefulSession,
        ),
        v(PICKER, "ext_proc picker (round robin) + override_host", Kind::ExtProcPicker),
        v(FLOOR_STEER, "floor: the no-op filter setting the steering header", Kind::Floor(false)),
        v(FLOOR_READ, "floor: the steering header + the response's two reads", Kind::Floor(true)),
    ]
}

struct Sample {
    us_per_req: f64,
    /// The ext_proc picker's part of `us_per_req`.
    picker_us_per_req: f64,
    rps: f64,
    rss_load_kib: Option<u64>,
}

/// A returning-session cell's cookie and the backend that honours it.
struct Session {
    cookie: String,
    backend: String,
}

/// Requests (not health checks) each backend has answered so far.
fn served(backends: &[Backend]) -> Vec<u64> {
    backends.iter().map(|b| b.stats.requests.load(std::sync::atomic::Ordering::Relaxed)).collect()
}

async fn measure(
    proxy: &Proxy,
    seconds: u64,
    rss_mid: bool,
    session: Option<&Session>,
    backends: &[Backend],
) -> Sample {
    let before = served(backends);
    let run = run_wrk(proxy, seconds, rss_mid, session.map(|s| s.cookie.as_str())).await;
    if let Some(session) = session {
        // Every answer from the cookie's backend: the cookie was sent and honoured.
        let after = served(backends);
        for (b, (n0, n1)) in backends.iter().zip(before.iter().zip(&after)) {
            let mine = b.id() == session.backend;
            assert!(
                if mine { n1 > n0 } else { n1 == n0 },
                "returning sessions with `{}` (backend {}): {} answered {} requests",
                session.cookie,
                session.backend,
                b.id(),
                n1 - n0
            );
        }
    }
    let per_req = |cpu_s: f64| cpu_s * 1e6 / run.requests as f64;
    Sample {
        us_per_req: per_req(run.cpu_s),
        picker_us_per_req: per_req(run.picker_cpu_s),
        rps: run.requests as f64 / run.elapsed_s,
        rss_load_kib: run.rss_mid_kib,
    }
}

struct Cell {
    variant: usize,
    workers: u32,
    proxy: Proxy,
    session: Option<Session>,
    samples: Vec<Sample>,
    rss_idle_kib: u64,
}

/// The ratios that split round robin's cost over the no-op filter (#17's goal: ≤ 1.04) into the
/// host calls it needs and its own work: (l) and (m) are the no-op filter making only those
/// calls.
const FLOORS: [(char, char, &str); 4] = [
    (FLOOR_STEER, 'b', "the steering header set (one host call) ÷ the no-op filter"),
    (
        FLOOR_READ,
        'b',
        "the steering header + the response's `:status` and attempt count ÷ the no-op filter",
    ),
    (ROUND_ROBIN, FLOOR_READ, "envoy-lb round_robin ÷ the floor with the same host calls"),
    (ROUND_ROBIN, 'b', "envoy-lb round_robin ÷ the no-op filter (goal ≤ 1.04)"),
];

fn write_floors(md: &mut String, p: &Params, variants: &[Variant], cells: &[Cell]) {
    let _ = writeln!(
        md,
        "\n### The floor under round robin's host calls\n\n({FLOOR_STEER}) and ({FLOOR_READ}) are \
         the no-op filter in its floor mode (`noop-filter/`): each request's \
         `x-gateway-destination-endpoint` set to the next rotation of the three addresses (the \
         value envoy-lb's round robin writes), and for ({FLOOR_READ}) the response's `:status` \
         and `upstream.request_attempt_count` read, as envoy-lb reads them on every response; \
         no other work. Ratios: the median of the ratios within each round, smallest–largest.\n"
    );
    let _ = writeln!(md, "| workers | ratio | variants | median | min–max |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    for &w in &p.workers {
        let of = |key: char| {
            let i = variants.iter().position(|v| v.key == key).unwrap();
            cells.iter().find(|c| c.variant == i && c.workers == w).unwrap()
        };
        for (num, den, what) in FLOORS {
            let (ratio, lo, hi) = paired(of(num), of(den));
            let _ =
                writeln!(md, "| {w} | {what} | ({num}) ÷ ({den}) | {ratio:.2} | {lo:.2}–{hi:.2} |");
        }
    }
}

/// Runs the bench, writes its section (the head of `p.out`, a latency section already there is
/// kept) and returns the section's markdown.
pub async fn run(p: &Params) -> String {
    let variants = with_baselines(variants());
    require_tools(true, true, &variants);
    let run_start = RunStart::now();
    let backends = backends(3).await;
    let endpoints: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let pool: Vec<(&str, SocketAddr, u32)> = backends.iter().map(|b| (b.id(), b.addr, 1)).collect();

    eprintln!("CPU bench: starting {} Envoys", variants.len() * p.workers.len());
    let mut cells = Vec::new();
    for &workers in &p.workers {
        for (i, v) in variants.iter().enumerate() {
            let cfg = match &v.kind {
                Kind::Ours(extra) | Kind::Baseline(extra) => plugin_config(&pool, extra.clone()),
                Kind::Floor(read) => super::floor_config(&endpoints, *read),
                _ => plugin_config(&pool, json!({})),
            };
            let proxy = start(&v.kind, &endpoints, &cfg, workers).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let rss_idle_kib = proxy.rss_kib();
            let session = if v.returning {
                let (cookie, backend) = session_cookie(&proxy).await;
                eprintln!("({}) x{workers}: returning sessions with `{cookie}` ({backend})", v.key);
                Some(Session { cookie, backend })
            } else {
                None
            };
            // Warm-up: connections to the backends, V8 tier-up.
            if p.warmup_seconds > 0 {
                measure(&proxy, p.warmup_seconds, false, session.as_ref(), &backends).await;
            }
            cells.push(Cell {
                variant: i,
                workers,
                proxy,
                session,
                samples: Vec::new(),
                rss_idle_kib,
            });
        }
    }
    // The measuring order of a round: the variants that a ratio divides back to back (the
    // no-op after native, round robin after the no-op, each side-by-side pair), a baseline right
    // after its own variant; every other round in reverse, so neither side of a pair is always
    // first. This machine's speed drifts over tens of seconds (a shared VM): the ratios are
    // taken within each round, of measurements seconds apart.
    let position = |c: &Cell| {
        let key = variants[c.variant].key;
        let at = ORDER.find(key.to_ascii_lowercase()).unwrap_or(ORDER.len());
        (c.workers, at, key.is_ascii_uppercase())
    };
    cells.sort_by_key(position);
    let t0 = Instant::now();
    for round in 0..p.rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..cells.len()).collect()
        } else {
            (0..cells.len()).rev().collect()
        };
        for i in order {
            let cell = &mut cells[i];
            let s =
                measure(&cell.proxy, p.seconds, round == 0, cell.session.as_ref(), &backends).await;
            eprintln!(
                "round {}/{} ({}) {} x{}: {:.1} µs CPU/req, {:.0} req/s",
                round + 1,
                p.rounds,
                variants[cell.variant].key,
                variants[cell.variant].label(),
                cell.workers,
                s.us_per_req,
                s.rps
            );
            cell.samples.push(s);
        }
    }
    let measured = t0.elapsed();

    let mut md = String::new();
    let _ = writeln!(md, "# Envoy benchmark: CPU per request and memory\n");
    md.push_str(&run_header(&run_start));
    md.push_str(&command_line("envoy", p, measured));
    let workers: Vec<String> = p.workers.iter().map(u32::to_string).collect();
    let _ = writeln!(
        md,
        "- load: `{}` per measurement (keep-alive), 3 demo backends (weights 1) on loopback; \
         Envoy `--concurrency {} --log-level warn`, all Envoys up for the whole run",
        wrk_command(p.seconds),
        workers.join("|")
    );
    let _ = writeln!(
        md,
        "- returning sessions ({STICKY_RETURNING}, {STATEFUL_RETURNING}): wrk adds `-H 'Cookie: \
         <cookie>'`, the cookie the Envoy set on its first answer (fetched once after start; \
         three more requests with it checked to be answered by the same backend without a new \
         `Set-Cookie`); every answer of every run came from that backend (the backends' \
         counters, checked). The other variants send no cookie: every request is a new session"
    );
    let _ = writeln!(
        md,
        "- ({STATEFUL}), ({STATEFUL_RETURNING}): the shipped envoy.yaml without the wasm filter, \
         `envoy.filters.http.stateful_session` with `envoy.http.stateful_session.cookie` \
         (`{STATEFUL_COOKIE}`, path `/`, ttl 3600 s; not strict) before the router, cluster \
         `pool` ROUND_ROBIN with Envoy's active health checks (`GET /healthz` every 2 s, as \
         the envoy-lb sticky variants probe). ({PICKER}): the shipped envoy.yaml without the \
         wasm filter, `envoy.filters.http.ext_proc` before the router (request headers SEND, \
         all else SKIP/NONE, `failure_mode_allow: false`) calling ext-proc-picker (this \
         repository's, tonic + envoy-types, `{}`; round robin, sets \
         `x-gateway-destination-endpoint`) over a STATIC HTTP/2 cluster on 127.0.0.1; cluster \
         `pool` and its override_host policy as shipped",
        super::picker_path()
            .strip_prefix(super::repo_root())
            .unwrap_or(&super::picker_path())
            .display()
    );
    let _ = writeln!(
        md,
        "- CPU/req = Δ(utime+stime) of the Envoy process (/proc/<pid>/stat, CLK_TCK {}), plus \
         the picker process's for ({PICKER}), / Δ `http.ingress.downstream_rq_total`; no 4xx/5xx \
         answer (checked)\n",
        super::clock_ticks_per_s()
    );
    let _ = writeln!(
        md,
        "## Envoy CPU per request (µs)\n\nThe × columns: the median over rounds of the ratio \
         to (a), (b) measured in the same round.\n"
    );
    let _ = writeln!(
        md,
        "| variant | workers | median µs/req | min–max | × native (a) | × no-op (b) | req/s (median) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    let med = |c: &Cell| median(&c.samples.iter().map(|s| s.us_per_req).collect::<Vec<_>>());
    for &w in &p.workers {
        let of = |i: usize| cells.iter().find(|c| c.variant == i && c.workers == w);
        let (native, noop) = (of(0).unwrap(), of(1).unwrap());
        for (i, v) in variants.iter().enumerate() {
            let c = of(i).unwrap();
            let us: Vec<f64> = c.samples.iter().map(|s| s.us_per_req).collect();
            let rps: Vec<f64> = c.samples.iter().map(|s| s.rps).collect();
            let (lo, hi) = min_max(&us);
            let m = median(&us);
            let (x_native, x_noop) = (paired(c, native).0, paired(c, noop).0);
            let _ = writeln!(
                md,
                "| ({}) {} | {w} | {m:.1} | {lo:.1}–{hi:.1} | {x_native:.2} | {x_noop:.2} | {:.0} |",
                v.key,
                v.label(),
                median(&rps)
            );
        }
    }
    write_floors(&mut md, p, &variants, &cells);
    let _ = writeln!(
        md,
        "\n## Side by side with what users would pick instead (issue #17)\n\nThe ratio of the \
         two variants' CPU per request: the median over rounds of the ratio within each round \
         (the two measured back to back), its smallest and largest; beside it the medians of \
         each. The goal is ≤ the given ratio.\n"
    );
    let _ = writeln!(
        md,
        "| workers | comparison | variants | median µs/req | ratio | ratio min–max | goal | met |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for &w in &p.workers {
        let of = |key: char| {
            let i = variants.iter().position(|v| v.key == key).unwrap();
            cells.iter().find(|c| c.variant == i && c.workers == w).unwrap()
        };
        for (num, den, what, goal) in SIDE_BY_SIDE {
            let (a, b) = (med(of(num)), med(of(den)));
            let (ratio, lo, hi) = paired(of(num), of(den));
            let _ = writeln!(
                md,
                "| {w} | {what} | ({num}) ÷ ({den}) | {a:.1} ÷ {b:.1} | {ratio:.2} | \
                 {lo:.2}–{hi:.2} | ≤ {goal:.2} | {} |",
                if ratio <= goal { "yes" } else { "no" }
            );
        }
    }
    let _ = writeln!(md);
    for &w in &p.workers {
        let i = variants.iter().position(|v| v.key == PICKER).unwrap();
        let c = cells.iter().find(|c| c.variant == i && c.workers == w).unwrap();
        let picker = median(&c.samples.iter().map(|s| s.picker_us_per_req).collect::<Vec<_>>());
        let envoy = median(
            &c.samples.iter().map(|s| s.us_per_req - s.picker_us_per_req).collect::<Vec<_>>(),
        );
        let _ = writeln!(
            md,
            "- ({PICKER}) at {w} worker{}: Envoy {envoy:.1} µs/req + picker {picker:.1} µs/req \
             (medians of each part)",
            if w == 1 { "" } else { "s" }
        );
    }
    if let Some(base) = baseline_wasm() {
        let _ = writeln!(
            md,
            "\n## Before / after\n\nThe built envoy_lb.wasm ÷ the baseline `{}` ({} bytes; \
             upper-case keys), median µs/req of the same run; the ratio is the median of the ratios \
             within each round.\n",
            base.display(),
            std::fs::metadata(&base).map_or(0, |m| m.len())
        );
        let _ = writeln!(md, "| variant | workers | built | baseline | built ÷ baseline |");
        let _ = writeln!(md, "|---|---|---|---|---|");
        for &w in &p.workers {
            let of = |i: usize| cells.iter().find(|c| c.variant == i && c.workers == w);
            for (i, v) in
                variants.iter().enumerate().filter(|(_, v)| matches!(v.kind, Kind::Ours(_)))
            {
                let twin = variants.iter().position(|b| {
                    matches!(b.kind, Kind::Baseline(_)) && b.key == v.key.to_ascii_uppercase()
                });
                let (Some(built), Some(base)) = (of(i), twin.and_then(of)) else {
                    continue;
                };
                let _ = writeln!(
                    md,
                    "| ({}) {} | {w} | {:.1} | {:.1} | {:.3} |",
                    v.key,
                    v.name,
                    med(built),
                    med(base),
                    paired(built, base).0
                );
            }
        }
    }
    let _ = writeln!(md, "\n## Envoy memory (VmRSS, MiB)\n");
    let _ = writeln!(md, "Idle: after start, before any request. Under load: half-way through the first round's wrk run.\n");
    let _ = writeln!(md, "| variant | workers | idle | under load |");
    let _ = writeln!(md, "|---|---|---|---|");
    for c in cells.iter().filter(|c| c.variant == 0 || c.variant == 2) {
        let v = &variants[c.variant];
        let load = c.samples.first().and_then(|s| s.rss_load_kib).unwrap_or(0);
        let _ = writeln!(
            md,
            "| ({}) {} | {} | {:.1} | {:.1} |",
            v.key,
            v.name,
            c.workers,
            c.rss_idle_kib as f64 / 1024.0,
            load as f64 / 1024.0
        );
    }
    write_cpu_section(&p.out, &md);
    drop(cells);
    drop(backends);
    md
}
