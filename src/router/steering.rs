//! Whether the cluster honours the steering. One response in [`SAMPLE_EVERY`] is checked for
//! where its first try really went (Envoy's `upstream.address`); a window of at least
//! [`MIN_SAMPLES`] samples over at least [`WINDOW_NS`] (or four discovery intervals) is judged
//! at a tick: when most samples came from a host other than the filter's primary pick, the
//! cluster balances on its own (no override_host policy on it — in Istio, an EnvoyFilter patch
//! that was refused). A window in which the pool changed is not judged: right after an
//! endpoint leaves, Envoy skips it while the filter still lists it (for at most an interval
//! and a tick), which is the steering working, not ignored.

use crate::MS;

/// One response in this many is sampled.
pub const SAMPLE_EVERY: u32 = 32;
/// Fewest samples a window is judged on.
pub const MIN_SAMPLES: u32 = 8;
/// Shortest window.
pub const WINDOW_NS: u64 = 5_000 * MS;

#[derive(Debug, Clone, Default)]
pub struct SteeringCheck {
    responses: u32,
    samples: u32,
    unlisted: u32,
    /// When the current window began (0: not yet).
    window_start_ns: u64,
    /// The pool changed during the current window.
    repooled: bool,
    /// The last judgement: the steering is ignored.
    ignored: bool,
}

impl SteeringCheck {
    /// Whether this response is sampled (counts responses).
    pub fn wants_sample(&mut self) -> bool {
        self.responses = self.responses.wrapping_add(1);
        self.responses % SAMPLE_EVERY == 0
    }

    /// A sampled first try was served by the primary pick (`listed`) or not.
    pub fn sample(&mut self, listed: bool) {
        self.samples = self.samples.saturating_add(1);
        if !listed {
            self.unlisted = self.unlisted.saturating_add(1);
        }
    }

    /// The pool changed: the current window is not judged.
    pub fn repooled(&mut self) {
        self.repooled = true;
    }

    /// At a tick: judges the window when it is long and full enough; `Some(ignored)` when
    /// the judgement changed.
    pub fn judge(&mut self, now_ns: u64, min_window_ns: u64) -> Option<bool> {
        if self.window_start_ns == 0 || now_ns < self.window_start_ns {
            self.window_start_ns = now_ns.max(1);
            return None;
        }
        if now_ns - self.window_start_ns < min_window_ns.max(WINDOW_NS)
            || self.samples < MIN_SAMPLES
        {
            return None;
        }
        let judged = !self.repooled;
        let ignored = self.unlisted.saturating_mul(2) > self.samples;
        *self = SteeringCheck {
            responses: self.responses,
            window_start_ns: now_ns,
            ignored: self.ignored,
            ..SteeringCheck::default()
        };
        if !judged || ignored == self.ignored {
            return None;
        }
        self.ignored = ignored;
        Some(ignored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000 * MS;

    fn window(c: &mut SteeringCheck, listed: u32, unlisted: u32) {
        for _ in 0..listed {
            c.sample(true);
        }
        for _ in 0..unlisted {
            c.sample(false);
        }
    }

    #[test]
    fn a_majority_over_a_full_window_flips_the_judgement_once() {
        let mut c = SteeringCheck::default();
        assert_eq!(c.judge(S, 0), None, "the first tick starts a window");
        window(&mut c, 3, 6);
        assert_eq!(c.judge(3 * S, 0), None, "too short");
        assert_eq!(c.judge(6 * S, 0), Some(true));
        window(&mut c, 2, 7);
        assert_eq!(c.judge(12 * S, 0), None, "still ignored: no new line");
        window(&mut c, 9, 0);
        assert_eq!(c.judge(18 * S, 0), Some(false), "honoured again");
    }

    #[test]
    fn thin_windows_and_windows_with_a_pool_change_are_not_judged() {
        let mut c = SteeringCheck::default();
        c.judge(S, 0);
        window(&mut c, 0, MIN_SAMPLES - 1);
        assert_eq!(c.judge(7 * S, 0), None, "too few samples");
        window(&mut c, 0, 5);
        c.repooled();
        assert_eq!(c.judge(8 * S, 0), None, "the pool changed");
        window(&mut c, 0, 9);
        assert_eq!(c.judge(10 * S, 0), None, "the window restarted at 8 s: 2 s is too short");
        assert_eq!(c.judge(14 * S, 8 * S), None, "four discovery intervals of 2 s: 8 s");
        assert_eq!(c.judge(16 * S, 8 * S), Some(true));
    }

    #[test]
    fn one_response_in_thirty_two_is_sampled() {
        let mut c = SteeringCheck::default();
        let n = (0..320).filter(|_| c.wants_sample()).count();
        assert_eq!(n, 10);
    }
}
