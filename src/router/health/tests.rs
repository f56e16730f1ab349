//! Health timing when the host's wall clock steps (an NTP correction of an hour either way,
//! mid-run): probes keep their interval, ejections and slow start keep their length, and a
//! dead prober's lease passes to another VM within its TTL. Time is true time `t`; the routers
//! only see the stepped wall clock, ticked as the adapter does (every 200 ms at most).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::rc::Rc;

use crate::config::Config;
use crate::router::{NoMetrics, Router};
use crate::state::memory::MemoryStore;

use crate::MS;
const S: u64 = 1_000 * MS;
const HOUR: i64 = 3_600 * S as i64;
/// Where the wall clock starts (Unix time, ns).
const START: u64 = 1_700_000_000 * S;
/// The adapter's longest tick period.
const TICK: u64 = 200 * MS;
const TWO: &str = r#""backends":[{"id":"a","address":"10.0.0.1:80"},
    {"id":"b","address":"10.0.0.2:80"}]"#;

/// The wall clock at true time `t`: `START + t`, stepped by `step` from true time `at` on.
#[derive(Clone, Copy)]
struct Wall {
    at: u64,
    step: i64,
}

impl Wall {
    fn read(self, t: u64) -> u64 {
        let w = START + t;
        if t >= self.at {
            w.saturating_add_signed(self.step)
        } else {
            w
        }
    }
}

/// One VM of a proxy whose VMs share `store`.
fn vm(extra: &str, seed: u64, store: &Rc<MemoryStore>) -> Router {
    let json = format!(r#"{{"cluster":"pool",{TWO}{extra}}}"#);
    let config = Config::from_json(json.as_bytes()).unwrap();
    Router::new(config, seed, START, Box::new(Rc::clone(store)), Box::new(NoMetrics))
}

/// One tick at wall time `now`, its probes answered 200 at once: the backends probed.
fn tick(r: &mut Router, now: u64, token: &mut u32) -> Vec<usize> {
    let probes = r.tick(now).probes;
    let mut probed = Vec::new();
    for (index, _) in probes {
        *token += 1;
        r.probe_sent(*token, index, now);
        r.probe_answered(*token, Some(200), now);
        probed.push(index);
    }
    probed
}

fn holds_lease(r: &Router) -> bool {
    r.prober.as_ref().is_some_and(|p| p.holds_lease())
}

fn ms(times: &[u64]) -> Vec<u64> {
    times.iter().map(|t| t / MS).collect()
}

#[test]
fn probes_keep_their_interval_when_the_wall_clock_steps_an_hour() {
    let check = r#","health_check":{"interval_ms":10000,"timeout_ms":1000}"#;
    for step in [-HOUR, HOUR] {
        let wall = Wall { at: 25 * S, step };
        let store = Rc::new(MemoryStore::new());
        let mut r = vm(check, 1, &store);
        let (mut token, mut probed) = (0, Vec::new());
        let mut t = 0;
        while t <= 60 * S {
            if tick(&mut r, wall.read(t), &mut token).contains(&0) {
                probed.push(t);
            }
            t += TICK;
        }
        // Not stopped for an hour, not sent at once: one probe per 10 s interval, the step
        // moving one of them by at most a second and a half.
        let gaps_ok =
            probed.windows(2).all(|w| (8_500 * MS..=11_500 * MS).contains(&(w[1] - w[0])));
        assert!(
            probed.len() >= 6 && gaps_ok,
            "step {} s: a probed at {:?} ms",
            step / S as i64,
            ms(&probed)
        );
    }
}

#[test]
fn ejections_last_their_time_when_the_wall_clock_steps_an_hour() {
    let outlier = r#","outlier_detection":{"consecutive_errors":1,"base_ejection_ms":30000}"#;
    for step in [-HOUR, HOUR] {
        let wall = Wall { at: 10 * S, step };
        let store = Rc::new(MemoryStore::new());
        let mut r = vm(outlier, 1, &store);
        let (mut token, mut up_at) = (0, Vec::new());
        let mut t = 0;
        while t <= 40 * S {
            tick(&mut r, wall.read(t), &mut token);
            if t == 5 * S {
                // One failed request on a ejects it for 30 s.
                let (_, mut ticket) = r.steer(None, None, wall.read(t)).unwrap();
                assert_eq!(ticket.backend, 0);
                r.on_response(&mut ticket, None, 503, 1, wall.read(t));
                r.on_end(&mut ticket, wall.read(t));
            }
            if t > 5 * S && r.availability.as_ref().unwrap().accepts(0) {
                up_at.push(t);
            }
            t += TICK;
        }
        // Back after 30 s, give or take the step's second and a tick: not at the step, not an
        // hour later.
        let back = up_at.first().copied();
        assert!(
            back.is_some_and(|b| (33_500 * MS..=36_500 * MS).contains(&b))
                && up_at.len() as u64 == (40 * S - back.unwrap_or(0)) / TICK + 1,
            "step {} s: ejected at 5000 ms, accepted again at {:?} ms",
            step / S as i64,
            back.map(|b| b / MS)
        );
    }
}

#[test]
fn a_dead_probers_lease_passes_on_within_its_ttl_when_the_wall_clock_steps_an_hour() {
    // Interval 1 s: the lease lasts 3 s without renewal.
    let check = r#","health_check":{"interval_ms":1000,"timeout_ms":500}"#;
    for step in [-HOUR, HOUR] {
        let wall = Wall { at: 5_500 * MS, step };
        let store = Rc::new(MemoryStore::new());
        let (mut a, mut b) = (vm(check, 1, &store), vm(check, 2, &store));
        let (mut token, mut taken) = (0, None);
        let mut t = 0;
        while t <= 20 * S && taken.is_none() {
            // a ticks first and holds the lease; it dies at 5 s.
            if t < 5 * S {
                tick(&mut a, wall.read(t), &mut token);
            }
            tick(&mut b, wall.read(t), &mut token);
            if holds_lease(&b) {
                taken = Some(t);
            }
            t += TICK;
        }
        // a's last renewal was at 4.8 s: b takes over 3 s later, give or take the step's
        // second and a tick.
        assert!(
            taken.is_some_and(|t| (6_500 * MS..=9_500 * MS).contains(&t)),
            "step {} s: a died at 5000 ms, b took the lease at {:?} ms",
            step / S as i64,
            taken.map(|t| t / MS)
        );
    }
}

#[test]
fn slow_start_ramps_over_its_time_when_the_wall_clock_steps_an_hour() {
    for step in [-HOUR, HOUR] {
        let wall = Wall { at: 20 * S, step };
        let store = Rc::new(MemoryStore::new());
        let mut r = vm(r#","slow_start_ms":60000"#, 1, &store);
        let mut token = 0;
        let mut t = 0;
        while t <= 70 * S {
            tick(&mut r, wall.read(t), &mut token);
            // The ramp started with the router, at true time 0: 10% to 100% over 60 s.
            let expected = (10 + 90 * t / (60 * S)).min(100);
            let weight = u64::from(r.availability.as_ref().unwrap().weight_percent(0));
            assert!(
                weight.abs_diff(expected) <= 3,
                "step {} s: weight {weight}% at {} ms, expected {expected}%",
                step / S as i64,
                t / MS
            );
            t += TICK;
        }
    }
}

/// One tick at wall time `now`, probes answered at once: the lines it logged about the lease.
fn lease_lines(r: &mut Router, now: u64, token: &mut u32) -> usize {
    let t = r.tick(now);
    for (index, _) in t.probes {
        *token += 1;
        r.probe_sent(*token, index, now);
        r.probe_answered(*token, Some(200), now);
    }
    t.log.iter().filter(|l| l.starts_with("prober lease taken")).count()
}

#[test]
fn the_vm_that_takes_the_lease_says_so_once_and_keeps_it_while_it_lives() {
    let check = r#","health_check":{"interval_ms":1000,"timeout_ms":500}"#;
    let store = Rc::new(MemoryStore::new());
    let (mut a, mut b) = (vm(check, 1, &store), vm(check, 2, &store));
    let mut token = 0;
    let (mut said_a, mut said_b) = (0, 0);
    // a creates the lease at its first tick; from then on b always asks first.
    said_a += lease_lines(&mut a, START, &mut token);
    let mut t = TICK;
    while t <= 10 * S {
        said_b += lease_lines(&mut b, START + t, &mut token);
        said_a += lease_lines(&mut a, START + t, &mut token);
        assert!(!holds_lease(&b), "b took a live lease at {} ms", t / MS);
        t += TICK;
    }
    assert_eq!((said_a, said_b), (1, 0), "lease lines of a and b");
    // a dies: b takes over within the TTL (3 intervals) and says so once.
    while t <= 20 * S {
        said_b += lease_lines(&mut b, START + t, &mut token);
        t += TICK;
    }
    assert_eq!(said_b, 1);
    assert!(holds_lease(&b));
}
