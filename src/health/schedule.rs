//! When each backend is probed: spread over the interval, the same on every VM, no shared state.
//!
//! Each backend has a phase in `[0, interval)`, a hash of its key, so probes of N backends are
//! spread evenly over the interval (N / interval per second, not N at once) and a backend's
//! phase survives config reloads and lease handovers: whoever holds the prober lease probes
//! the backend at `phase + k × interval`. A jitter `j` (at most half the interval) shifts each
//! round of each backend by a hash of (key, round) in `[-j, +j]`. Like Envoy's active health
//! checker, which starts each host's timer independently, nothing is probed in bursts.
//!
//! Cost: built once per pool, O(N log N); each [`Schedule::due`] is O(log N + due), so a tick
//! does work in proportion to the probes it sends, never to the pool.

use std::collections::BinaryHeap;

/// splitmix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The probe schedule of one pool.
#[derive(Debug, Clone)]
pub struct Schedule {
    interval_ns: u64,
    jitter_ns: u64,
    /// `(phase, index, key hash)`, sorted by phase.
    order: Vec<(u64, u32, u64)>,
    /// Probes whose round came but whose jitter holds them back: `(Reverse(at), index)`.
    held: BinaryHeap<(std::cmp::Reverse<u64>, u32)>,
    /// Every round up to this instant has been handed out; `None` before the first call.
    cursor_ns: Option<u64>,
    /// After [`Schedule::restart`], the first call takes up the rounds whose jitter was still
    /// running (the previous holder held them back and is gone) but not those due before.
    resume: bool,
    /// After [`Schedule::resume_from`]: rounds due by this instant are skipped once.
    resume_after: Option<u64>,
}

impl Schedule {
    /// The schedule of the backends whose stable keys are `keys` (pool order). An interval
    /// of 0 is taken as 1 ns; the jitter is capped at half the interval.
    pub fn new<'a>(
        keys: impl IntoIterator<Item = &'a str>,
        interval_ns: u64,
        jitter_ns: u64,
    ) -> Self {
        // Phases below 2^43 ns (the interval is at most an hour: 3.6e12 ns) and indexes below
        // 2^20 pack into one u64, sorted as plain numbers.
        let interval_ns = interval_ns.clamp(1, 1 << 43);
        let hashes: Vec<u64> =
            keys.into_iter().map(|k| crate::hash_key::hash(k.as_bytes())).collect();
        let mut packed: Vec<u64> = (0..hashes.len().min(1 << 20))
            .zip(&hashes)
            .map(|(i, h)| ((h % interval_ns) << 20) | i as u64)
            .collect();
        packed.sort_unstable();
        let order = packed
            .iter()
            .map(|&p| {
                let i = (p & 0xF_FFFF) as u32;
                (p >> 20, i, hashes.get(i as usize).copied().unwrap_or(0))
            })
            .collect();
        Schedule {
            interval_ns,
            jitter_ns: jitter_ns.min(interval_ns / 2),
            order,
            held: BinaryHeap::new(),
            cursor_ns: None,
            resume: false,
            resume_after: None,
        }
    }

    /// Forgets where it was: the next [`Schedule::due`] starts from its own `now` (a new lease
    /// holder does not probe the rounds it did not hold).
    pub fn restart(&mut self) {
        self.cursor_ns = None;
        self.held.clear();
        self.resume = true;
    }

    /// Takes over from a holder whose last tick was at `last_ns` (at most an interval back):
    /// the rounds that fell due after it are sent at the next call, the earlier ones were its
    /// to send.
    pub fn resume_from(&mut self, last_ns: u64) {
        self.held.clear();
        self.cursor_ns = Some(last_ns.saturating_sub(2 * self.jitter_ns));
        self.resume_after = Some(last_ns);
    }

    /// Takes over where `old` (the schedule of the pool before it changed) was: backends keep
    /// their phase, so nothing is probed twice or skipped for the change.
    pub fn continue_from(&mut self, old: &Schedule) {
        self.cursor_ns = old.cursor_ns;
    }

    /// Appends to `out` the backends due in `(last call, now]`: each at most once per call
    /// (a pause of more than an interval sends one round, not several). The first call after
    /// [`Schedule::new`] or [`Schedule::restart`] only sets the cursor.
    pub fn due(&mut self, now_ns: u64, out: &mut Vec<usize>) {
        let resume = std::mem::take(&mut self.resume) && self.jitter_ns > 0;
        let Some(from) = self.cursor_ns.replace(now_ns).or_else(|| {
            // Rounds that began within the last 2j may still be held back by their jitter.
            resume.then(|| now_ns.saturating_sub(2 * self.jitter_ns))
        }) else {
            return;
        };
        // Resuming, what fell due by then was the previous holder's to send.
        let skip_until = match self.resume_after.take() {
            Some(last) => last,
            None if resume => now_ns,
            None => 0,
        };
        if now_ns <= from {
            self.cursor_ns = Some(from);
            return;
        }
        let interval = self.interval_ns;
        let span = now_ns - from;
        let jitter = self.jitter_ns;
        let mut emit = |held: &mut BinaryHeap<_>, &(phase, index, h): &(u64, u32, u64)| {
            if jitter == 0 {
                out.push(index as usize);
                return;
            }
            // The round's start: the latest `phase + k × interval` at or before `now`.
            // (`phase < interval`: no underflow.)
            let into = (now_ns % interval + interval - phase) % interval;
            let round = now_ns.saturating_sub(into);
            // Held back by [0, 2j]: centred on `phase + j`, the round moves by up to ± j.
            let at = round.saturating_add(mix(h ^ round) % (2 * jitter + 1));
            if at <= skip_until {
                return;
            }
            if at <= now_ns {
                out.push(index as usize);
            } else {
                held.push((std::cmp::Reverse(at), index));
            }
        };
        if span >= interval {
            for e in &self.order {
                emit(&mut self.held, e);
            }
        } else {
            let (a, b) = (from % interval, now_ns % interval);
            let start = self.order.partition_point(|&(p, _, _)| p <= a);
            let end = self.order.partition_point(|&(p, _, _)| p <= b);
            if a <= b {
                for e in self.order.get(start..end).unwrap_or(&[]) {
                    emit(&mut self.held, e);
                }
            } else {
                for e in self.order.get(start..).unwrap_or(&[]) {
                    emit(&mut self.held, e);
                }
                for e in self.order.get(..end).unwrap_or(&[]) {
                    emit(&mut self.held, e);
                }
            }
        }
        while let Some(&(std::cmp::Reverse(at), index)) = self.held.peek() {
            if at > now_ns {
                break;
            }
            self.held.pop();
            out.push(index as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("b{i}@127.0.0.{i}:80")).collect()
    }

    fn run(s: &mut Schedule, start: u64, step: u64, steps: usize) -> Vec<(u64, usize)> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        s.due(start, &mut out);
        assert!(out.is_empty(), "the first call only sets the cursor");
        for k in 1..=steps as u64 {
            let now = start + k * step;
            out.clear();
            s.due(now, &mut out);
            seen.extend(out.iter().map(|&i| (now, i)));
        }
        seen
    }

    #[test]
    fn every_backend_once_per_interval_spread_evenly() {
        let k = keys(2_000);
        let mut s = Schedule::new(k.iter().map(String::as_str), 10_000, 0);
        // Ten intervals in ticks of 100 ns (a tenth of... a hundredth of the interval).
        let seen = run(&mut s, 1_000_000, 100, 1_000);
        let mut per = vec![0u32; 2_000];
        for &(_, i) in &seen {
            per[i] += 1;
        }
        assert!(per.iter().all(|&c| c == 10), "once per interval each: {:?}", &per[..10]);
        // Per tenth of an interval: about a tenth of the probes each (2,000 / 10 = 200).
        let mut buckets = [0u32; 10];
        for &(t, _) in seen.iter().filter(|&&(t, _)| t <= 1_010_000) {
            buckets[((t - 1_000_001) / 1_000) as usize] += 1;
        }
        assert!(buckets.iter().all(|&b| (120..=280).contains(&b)), "spread: {buckets:?}");
    }

    #[test]
    fn a_long_pause_sends_one_round_not_several() {
        let k = keys(50);
        let mut s = Schedule::new(k.iter().map(String::as_str), 1_000, 0);
        let mut out = Vec::new();
        s.due(5_000, &mut out);
        s.due(50_000, &mut out);
        out.sort_unstable();
        assert_eq!(out, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn phases_follow_the_key_not_the_index() {
        let k = keys(20);
        let mut a = Schedule::new(k.iter().map(String::as_str), 1_000, 0);
        let mut reversed: Vec<&str> = k.iter().map(String::as_str).collect();
        reversed.reverse();
        let mut b = Schedule::new(reversed.iter().copied(), 1_000, 0);
        let (sa, sb) = (run(&mut a, 0, 7, 300), run(&mut b, 0, 7, 300));
        let named = |v: Vec<(u64, usize)>, names: &[&str]| -> Vec<(u64, String)> {
            let mut v: Vec<_> = v.into_iter().map(|(t, i)| (t, names[i].to_string())).collect();
            v.sort();
            v
        };
        let ka: Vec<&str> = k.iter().map(String::as_str).collect();
        assert_eq!(named(sa, &ka), named(sb, &reversed));
    }

    #[test]
    fn jitter_shifts_rounds_within_its_bound_and_keeps_one_probe_per_round() {
        let k = keys(300);
        let mut s = Schedule::new(k.iter().map(String::as_str), 10_000, 2_000);
        let seen = run(&mut s, 100_000, 50, 2_000);
        let mut per = vec![Vec::new(); 300];
        for &(t, i) in &seen {
            per[i].push(t);
        }
        for times in &per {
            // 100 000 ns of schedule: 10 rounds, give or take the ones cut at both ends.
            assert!((9..=11).contains(&times.len()), "{times:?}");
            for w in times.windows(2) {
                let gap = w[1] - w[0];
                assert!((6_000 - 100..=14_000 + 100).contains(&gap), "gap {gap}: {times:?}");
            }
        }
        assert!(per.iter().any(|t| t.windows(2).any(|w| w[1] - w[0] != 10_000)), "jittered");
    }
}
