//! The soak in CI: the same run as `make soak` (tests/support/soak.rs), for 60 s, asserting
//! every goal: no VM failure, RSS growth under 5 MiB, no client-seen 5xx, every ejection and
//! its end logged, every in-flight gauge back to 0, a constant configuration, and that the load
//! and the failures really happened (the run proves something). `SOAK_SECONDS` overrides the
//! duration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/soak.rs"]
mod soak;
mod support;

use soak::{attribute, run, Cause, Event, Failure, SoakOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_60_seconds_meets_the_goals() {
    let report = run(SoakOptions::from_env(60)).await;
    let md = report.markdown("-", &soak::machine(), "`cargo test --test soak`");
    eprintln!("{md}");
    let missed: Vec<String> =
        report.goals().into_iter().filter(|(_, met)| !met).map(|(what, _)| what).collect();
    assert!(missed.is_empty(), "soak goals missed:\n  {}", missed.join("\n  "));
}

/// Client failures are matched to ejections of the backend that answered (or to any ejection
/// when Envoy answered itself), at most one failure per ejection; the rest near a stop of b1
/// are kill edges.
#[test]
fn failures_are_attributed_to_their_backends_ejection() {
    let failure = |at_ms: u64, backend: Option<&str>| Failure {
        at_ms,
        status: Some(if backend.is_some() { 500 } else { 503 }),
        backend: backend.map(str::to_owned),
        lb_error: None,
        detail: String::new(),
    };
    let event = |at_ms: u64, what: &str| Event { at_ms, what: what.to_owned() };
    let events = [
        event(10_000, "b1 stopped"),
        event(10_100, "b1 ejected for 5000 ms: 5 consecutive errors (ejection 1)"),
        event(30_000, "b2 ejected for 5000 ms: 5 consecutive errors (ejection 1)"),
    ];
    let failures = [
        failure(10_050, None),       // Envoy's 503 just before b1's ejection
        failure(10_060, None),       // a second one: the ejection is taken, but b1 just stopped
        failure(10_070, Some("b2")), // b2's 500 next to b1's ejection: not b2's ejection
        failure(29_900, Some("b2")), // b2's 500 just before b2's ejection
        failure(50_000, Some("b2")),
    ];
    assert_eq!(
        attribute(&failures, &events),
        [
            Cause::FirstOfEjection,
            Cause::KillEdge,
            Cause::KillEdge,
            Cause::FirstOfEjection,
            Cause::Other
        ]
    );
}
