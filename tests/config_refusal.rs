//! (e) Every class of invalid plugin config: Envoy refuses to start and its log names the JSON
//! path of the mistake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::*;

fn good_backends() -> String {
    r#"[{"id": "b1", "address": "127.0.0.1:9001"}, {"id": "b2", "address": "127.0.0.1:9002"}]"#
        .to_string()
}

/// (name, plugin config, text the log line must contain)
fn cases() -> Vec<(&'static str, String, &'static str)> {
    let b = good_backends();
    vec![
        ("invalid JSON", r#"{"cluster": "pool", "backends": ["#.to_string(), "invalid plugin config: $: not valid JSON: EOF while parsing a list"),
        (
            "unknown field",
            format!(r#"{{"cluster": "pool", "backends": {b}, "algorthm": "random"}}"#),
            "invalid plugin config: $.algorthm: unknown field `algorthm`",
        ),
        (
            "wrong type",
            r#"{"cluster": "pool", "backends": [{"id": "b1", "address": "127.0.0.1:9001", "weight": "3"}]}"#.to_string(),
            "invalid plugin config: $.backends[0].weight: invalid type: string \"3\", expected an integer from 1 to 10000",
        ),
        ("empty backends", r#"{"cluster": "pool", "backends": []}"#.to_string(), "invalid plugin config: $.backends: is empty"),
        (
            "duplicate id",
            r#"{"cluster": "pool", "backends": [{"id": "b1", "address": "127.0.0.1:9001"}, {"id": "b1", "address": "127.0.0.1:9002"}]}"#.to_string(),
            "invalid plugin config: $.backends[1].id: duplicate id \"b1\"",
        ),
        (
            "bad address",
            r#"{"cluster": "pool", "backends": [{"id": "b1", "address": "backend-1:80"}]}"#.to_string(),
            "invalid plugin config: $.backends[0].address: \"backend-1:80\" is not an address; valid: ip:port",
        ),
        (
            "weight out of range",
            r#"{"cluster": "pool", "backends": [{"id": "b1", "address": "127.0.0.1:9001", "weight": 0}]}"#.to_string(),
            "invalid plugin config: $.backends[0].weight: 0 is out of range; valid: an integer from 1 to 10000",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invalid_config_class_is_refused_with_its_path() {
    let endpoints = vec!["127.0.0.1:9001".parse().unwrap()];
    let runs = cases().into_iter().map(|(name, config, expected)| {
        let setup = EnvoySetup::new(config, endpoints.clone());
        async move { (name, expected, Envoy::start_refused(setup).await) }
    });
    for (name, expected, (status, log)) in futures_join_all(runs).await {
        assert!(!status.success(), "{name}: Envoy exited with {status}");
        let line = log.lines().find(|l| l.contains("invalid plugin config:"));
        let line =
            line.unwrap_or_else(|| panic!("{name}: no 'invalid plugin config' line in:\n{log}"));
        assert!(line.contains(expected), "{name}: expected {expected:?} in\n{line}");
        assert_eq!(
            log.matches("invalid plugin config:").count(),
            1,
            "{name}: the refusal is logged once:\n{log}"
        );
    }
}

/// Runs the futures concurrently on the current runtime.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
