//! Validation of the algorithm blocks: defaults, ranges, exclusivity, refusal paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::super::{Config, ConfigError};
use super::*;

const B: &str =
    r#""backends":[{"id":"a","address":"10.0.0.1:80"},{"id":"b","address":"10.0.0.2:80"}]"#;

fn parse(extra: &str) -> Result<Config, ConfigError> {
    let sep = if extra.is_empty() { "" } else { "," };
    Config::from_json(format!(r#"{{"cluster":"c",{B}{sep}{extra}}}"#).as_bytes())
}

fn ok(extra: &str) -> AlgorithmConfig {
    match parse(extra) {
        Ok(c) => c.balancing,
        Err(e) => panic!("{extra}: refused: {e}"),
    }
}

fn refused(extra: &str, path: &str, words: &[&str]) {
    let e = match parse(extra) {
        Ok(c) => panic!("{extra}: accepted: {c:?}"),
        Err(e) => e,
    };
    assert_eq!(e.path, path, "{extra}: {e}");
    for w in words {
        assert!(e.message.contains(w), "{extra}: {e:?} lacks {w:?}");
    }
}

#[test]
fn defaults() {
    let c = ok("");
    assert_eq!(c.algorithm, Algorithm::RoundRobin);
    assert_eq!((c.choice_count, c.active_request_bias), (2, 1.0));
    assert_eq!((c.default_rtt_ms, c.decay_ms, c.error_penalty_ms), (30, 10_000, 1_000));
    assert_eq!(c.hash_on, None);
    assert_eq!(c.maglev_table_size, 65_537);
    assert_eq!((c.min_ring_size, c.max_ring_size), (1024, 8_388_608));
    assert_eq!(c.balance_factor, None);
}

#[test]
fn every_algorithm_name_parses() {
    for (name, alg) in [
        ("least_request", Algorithm::LeastRequest),
        ("least_time", Algorithm::LeastTime),
        ("source_ip_hash", Algorithm::SourceIpHash),
    ] {
        let c = ok(&format!(r#""algorithm":"{name}""#));
        assert_eq!(c.algorithm, alg);
        assert_eq!(alg.name(), name);
    }
    let c = ok(r#""algorithm":"maglev","hash_on":{"header":"X-User"}"#);
    assert_eq!(c.hash_on, Some(HashOn::Header("x-user".into())));
    let c = ok(r#""algorithm":"ring_hash","hash_on":{"cookie":"sid"}"#);
    assert_eq!(c.hash_on, Some(HashOn::Cookie("sid".into())));
    let c = ok(r#""algorithm":"maglev","hash_on":{"query":"user"}"#);
    assert_eq!(c.hash_on, Some(HashOn::Query("user".into())));
    let c = ok(r#""algorithm":"maglev","hash_on":{"source_ip":true}"#);
    assert_eq!(c.hash_on, Some(HashOn::SourceIp));
    assert_eq!(ok(r#""algorithm":"source_ip_hash""#).hash_on, Some(HashOn::SourceIp));
}

#[test]
fn tuning_blocks_are_read() {
    let c = ok(
        r#""algorithm":"least_request","least_request":{"choice_count":0,"active_request_bias":0.5}"#,
    );
    assert_eq!((c.choice_count, c.active_request_bias), (0, 0.5));
    let c = ok(
        r#""algorithm":"least_time","least_time":{"default_rtt_ms":5,"decay_ms":2000,"error_penalty_ms":300}"#,
    );
    assert_eq!((c.default_rtt_ms, c.decay_ms, c.error_penalty_ms), (5, 2000, 300));
    let c = ok(
        r#""algorithm":"maglev","hash_on":{"source_ip":true},"maglev":{"table_size":251},"balance_factor":1.25"#,
    );
    assert_eq!((c.maglev_table_size, c.balance_factor), (251, Some(1.25)));
    let c = ok(
        r#""algorithm":"ring_hash","hash_on":{"source_ip":true},"ring_hash":{"min_ring_size":64,"max_ring_size":64}"#,
    );
    assert_eq!((c.min_ring_size, c.max_ring_size), (64, 64));
}

#[test]
fn hashing_needs_exactly_one_key_source() {
    refused(
        r#""algorithm":"maglev""#,
        "$.hash_on",
        &["is required with algorithm maglev", "valid:"],
    );
    refused(r#""algorithm":"ring_hash","hash_on":{}"#, "$.hash_on", &["exactly one"]);
    refused(
        r#""algorithm":"ring_hash","hash_on":{"header":"a","cookie":"b"}"#,
        "$.hash_on",
        &["exactly one"],
    );
    refused(
        r#""algorithm":"maglev","hash_on":{"source_ip":false}"#,
        "$.hash_on.source_ip",
        &["valid:"],
    );
    refused(
        r#""algorithm":"maglev","hash_on":{"header":"a b"}"#,
        "$.hash_on.header",
        &["not a header name"],
    );
    refused(
        r#""algorithm":"maglev","hash_on":{"cookie":"a;b"}"#,
        "$.hash_on.cookie",
        &["not a cookie name"],
    );
    refused(
        r#""algorithm":"maglev","hash_on":{"query":"a&b"}"#,
        "$.hash_on.query",
        &["not a query parameter name"],
    );
    refused(r#""algorithm":"maglev","hash_on":{"query":""}"#, "$.hash_on.query", &["valid:"]);
    refused(r#""algorithm":"maglev","hash_on":{"path":"x"}"#, "$.hash_on.path", &["unknown field"]);
    refused(
        r#""algorithm":"maglev","hash_on":"source_ip""#,
        "$.hash_on",
        &["expected a JSON object"],
    );
}

#[test]
fn blocks_of_another_algorithm_are_refused() {
    refused(
        r#""least_request":{"choice_count":3}"#,
        "$.least_request",
        &["does not apply", "least_request"],
    );
    refused(r#""algorithm":"least_request","least_time":{}"#, "$.least_time", &["does not apply"]);
    refused(r#""hash_on":{"source_ip":true}"#, "$.hash_on", &["ring_hash or maglev"]);
    refused(
        r#""algorithm":"source_ip_hash","hash_on":{"header":"x"}"#,
        "$.hash_on",
        &["does not apply"],
    );
    refused(
        r#""algorithm":"ring_hash","hash_on":{"source_ip":true},"maglev":{}"#,
        "$.maglev",
        &["does not apply"],
    );
    refused(
        r#""algorithm":"maglev","hash_on":{"source_ip":true},"ring_hash":{}"#,
        "$.ring_hash",
        &["does not apply"],
    );
    refused(
        r#""algorithm":"least_request","balance_factor":1.5"#,
        "$.balance_factor",
        &["does not apply"],
    );
}

#[test]
fn numbers_out_of_range_are_refused() {
    let lr = r#""algorithm":"least_request","least_request":"#;
    refused(
        &format!(r#"{lr}{{"choice_count":101}}"#),
        "$.least_request.choice_count",
        &["from 0 to 100"],
    );
    refused(
        &format!(r#"{lr}{{"choice_count":-1}}"#),
        "$.least_request.choice_count",
        &["out of range"],
    );
    refused(
        &format!(r#"{lr}{{"active_request_bias":-0.5}}"#),
        "$.least_request.active_request_bias",
        &["from 0 to 10"],
    );
    refused(
        &format!(r#"{lr}{{"active_request_bias":"1"}}"#),
        "$.least_request.active_request_bias",
        &["a number from 0 to 10"],
    );
    let lt = r#""algorithm":"least_time","least_time":"#;
    refused(
        &format!(r#"{lt}{{"default_rtt_ms":0}}"#),
        "$.least_time.default_rtt_ms",
        &["from 1 to 60000"],
    );
    refused(&format!(r#"{lt}{{"decay_ms":600001}}"#), "$.least_time.decay_ms", &["out of range"]);
    refused(
        &format!(r#"{lt}{{"error_penalty_ms":1.5}}"#),
        "$.least_time.error_penalty_ms",
        &["expected an integer"],
    );
    let hf = r#""algorithm":"maglev","hash_on":{"source_ip":true}"#;
    refused(&format!(r#"{hf},"balance_factor":0.9"#), "$.balance_factor", &["from 1 to 100"]);
    refused(
        &format!(r#"{hf},"maglev":{{"table_size":65536}}"#),
        "$.maglev.table_size",
        &["not a prime"],
    );
    refused(
        &format!(r#"{hf},"maglev":{{"table_size":1}}"#),
        "$.maglev.table_size",
        &["not a prime"],
    );
    refused(
        &format!(r#"{hf},"maglev":{{"table_size":5000012}}"#),
        "$.maglev.table_size",
        &["out of range"],
    );
    let rh = r#""algorithm":"ring_hash","hash_on":{"source_ip":true},"ring_hash":"#;
    refused(
        &format!(r#"{rh}{{"min_ring_size":2048,"max_ring_size":1024}}"#),
        "$.ring_hash.min_ring_size",
        &["above max_ring_size"],
    );
    refused(
        &format!(r#"{rh}{{"max_ring_size":8388609}}"#),
        "$.ring_hash.max_ring_size",
        &["out of range"],
    );
}

#[test]
fn maglev_table_must_hold_every_backend() {
    // 2 backends: 2 is prime and large enough, 1 is not prime.
    let c = ok(r#""algorithm":"maglev","hash_on":{"source_ip":true},"maglev":{"table_size":2}"#);
    assert_eq!(c.maglev_table_size, 2);
    let three: String = (1..=3)
        .map(|i| format!(r#"{{"id":"b{i}","address":"10.0.0.{i}:80"}}"#))
        .collect::<Vec<_>>()
        .join(",");
    let e = Config::from_json(
        format!(r#"{{"cluster":"c","backends":[{three}],"algorithm":"maglev","hash_on":{{"source_ip":true}},"maglev":{{"table_size":2}}}}"#)
            .as_bytes(),
    )
    .unwrap_err();
    assert_eq!(e.path, "$.maglev.table_size");
    assert!(e.message.contains("at least the number of backends (3)"), "{e}");
}

#[test]
fn primes() {
    let small: Vec<usize> = (0..30).filter(|&n| is_prime(n)).collect();
    assert_eq!(small, vec![2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
    assert!(is_prime(65_537) && is_prime(5_000_011) && !is_prime(65_535));
}

/// The one table of names is what the reader accepts and what `name()` says.
#[test]
fn each_algorithm_is_read_by_its_one_name() {
    for (a, name) in ALGORITHMS {
        assert_eq!(a.name(), name);
        let json = format!(
            r#"{{"algorithm":"{name}","backends":[{{"id":"a","address":"10.0.0.1:80"}}]}}"#
        );
        // Missing `cluster` is reported after the members are read: the name was accepted.
        let e = crate::config::Config::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(e.path, "$", "{name}: {e}");
        assert!(e.message.starts_with("missing field `cluster`"), "{name}: {e}");
    }
    let distinct: std::collections::HashSet<_> = ALGORITHMS.iter().map(|(_, n)| n).collect();
    assert_eq!(distinct.len(), ALGORITHMS.len());
}

#[test]
fn block_messages_list_their_fields() {
    let hf = r#""algorithm":"maglev","hash_on":{"source_ip":true}"#;
    let e = parse(&format!(r#"{hf},"maglev":{{"size":3}}"#)).unwrap_err();
    assert_eq!(e.to_string(), "$.maglev.size: unknown field `size`, expected `table_size`");
    let rh = r#""algorithm":"ring_hash","hash_on":{"source_ip":true}"#;
    let e = parse(&format!(r#"{rh},"ring_hash":{{"size":3}}"#)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "$.ring_hash.size: unknown field `size`, expected `min_ring_size` or `max_ring_size`"
    );
}

/// Numbers out of range are quoted as JSON writes them.
#[test]
fn out_of_range_numbers_are_quoted_as_json() {
    let hf = r#""algorithm":"maglev","hash_on":{"source_ip":true}"#;
    for (n, shown) in [
        ("0.9", "0.9"),
        ("200", "200"),
        ("200.0", "200.0"),
        ("1e300", "1e300"),
        ("-9223372036854775808", "-9223372036854775808"),
        ("18446744073709551615", "18446744073709551615"),
    ] {
        refused(
            &format!(r#"{hf},"balance_factor":{n}"#),
            "$.balance_factor",
            &[&format!("{shown} is out of range; valid: a number from 1 to 100")],
        );
    }
    let c = ok(&format!(r#"{hf},"balance_factor":100"#));
    assert_eq!(c.balance_factor, Some(100.0));
    let c = ok(r#""algorithm":"least_request","least_request":{"active_request_bias":0}"#);
    assert_eq!(c.active_request_bias, 0.0);
}

#[test]
fn client_side_weighted_round_robin_takes_envoys_defaults() {
    let c = ok(r#""algorithm":"client_side_weighted_round_robin""#);
    let w = &c.cswrr;
    assert_eq!(
        (w.blackout_period_ms, w.weight_expiration_period_ms, w.weight_update_period_ms),
        (10_000, 180_000, 1_000)
    );
    assert_eq!(w.error_utilization_penalty, 1.0);
    assert!(w.metric_names_for_computing_utilization.is_empty());
    let c =
        ok(r#""algorithm":"client_side_weighted_round_robin","client_side_weighted_round_robin":{
        "blackout_period_ms":0,"weight_expiration_period_ms":5000,"weight_update_period_ms":200,
        "error_utilization_penalty":2.5,
        "metric_names_for_computing_utilization":["named_metrics.gpu","utilization.kv"]}"#);
    let w = &c.cswrr;
    assert_eq!(
        (w.blackout_period_ms, w.weight_expiration_period_ms, w.weight_update_period_ms),
        (0, 5000, 200)
    );
    assert_eq!(w.error_utilization_penalty, 2.5);
    assert_eq!(w.metric_names_for_computing_utilization, ["named_metrics.gpu", "utilization.kv"]);
}

#[test]
fn client_side_weighted_round_robin_refusals_name_the_path() {
    let a = r#""algorithm":"client_side_weighted_round_robin""#;
    let base = "$.client_side_weighted_round_robin";
    refused(
        &format!(r#"{a},"client_side_weighted_round_robin":{{"weight_update_period_ms":10}}"#),
        &format!("{base}.weight_update_period_ms"),
        &["from 100 to 3600000"],
    );
    refused(
        &format!(
            r#"{a},"client_side_weighted_round_robin":{{"metric_names_for_computing_utilization":["cpu_utilization"]}}"#
        ),
        &format!("{base}.metric_names_for_computing_utilization[0]"),
        &["named_metrics.<name>", "utilization.<name>"],
    );
    refused(
        &format!(
            r#"{a},"client_side_weighted_round_robin":{{"metric_names_for_computing_utilization":["named_metrics."]}}"#
        ),
        &format!("{base}.metric_names_for_computing_utilization[0]"),
        &["not a load-report metric"],
    );
    let nine: Vec<String> = (0..9).map(|i| format!("\"named_metrics.m{i}\"")).collect();
    refused(
        &format!(
            r#"{a},"client_side_weighted_round_robin":{{"metric_names_for_computing_utilization":[{}]}}"#,
            nine.join(",")
        ),
        &format!("{base}.metric_names_for_computing_utilization"),
        &["at most 8"],
    );
    refused(
        r#""client_side_weighted_round_robin":{}"#,
        "$.client_side_weighted_round_robin",
        &["does not apply", "client_side_weighted_round_robin"],
    );
}

#[test]
fn least_load_needs_a_metric_and_takes_its_tuning() {
    refused(
        r#""algorithm":"least_load""#,
        "$.least_load.metric",
        &["is required", "named_metrics.queue_depth"],
    );
    refused(
        r#""algorithm":"least_load","least_load":{"metric":"queue"}"#,
        "$.least_load.metric",
        &["cpu_utilization", "named_metrics.<name>"],
    );
    refused(r#""least_load":{"metric":"eps"}"#, "$.least_load", &["does not apply"]);
    let c = ok(r#""algorithm":"least_load","least_load":{"metric":"named_metrics.queue_depth"}"#);
    assert_eq!(c.least_load.metric, "named_metrics.queue_depth");
    assert_eq!(
        (c.least_load.max_report_age_ms, c.least_load.in_flight_weight, c.choice_count),
        (2_000, 1.0, 2)
    );
    let c = ok(r#""algorithm":"least_load","least_load":{"metric":"utilization.kv_cache",
        "max_report_age_ms":500,"in_flight_weight":0.01,"choice_count":3}"#);
    assert_eq!(
        (c.least_load.max_report_age_ms, c.least_load.in_flight_weight, c.choice_count),
        (500, 0.01, 3)
    );
}

#[test]
fn load_reports_block_applies_to_the_algorithms_that_read_reports() {
    refused(r#""load_reports":{}"#, "$.load_reports", &["does not apply", "least_load"]);
    let cfg = |extra: &str| {
        parse(&format!(r#""algorithm":"least_load","least_load":{{"metric":"eps"}},{extra}"#))
    };
    let c = cfg(r#""load_reports":{"request_header":"Endpoint-Load-Metrics-Format","remove_from_response":true}"#).unwrap();
    assert_eq!(
        c.load_reports.request_header,
        Some(("endpoint-load-metrics-format".into(), "TEXT".into()))
    );
    assert!(c.load_reports.remove_from_response);
    let c =
        cfg(r#""load_reports":{"request_header":"x-orca","request_header_value":"JSON"}"#).unwrap();
    assert_eq!(c.load_reports.request_header, Some(("x-orca".into(), "JSON".into())));
    assert!(!c.load_reports.remove_from_response);
    let e = cfg(r#""load_reports":{"request_header_value":"JSON"}"#).unwrap_err();
    assert_eq!(e.path, "$.load_reports.request_header_value");
    let e =
        cfg(r#""load_reports":{"request_header":"x","request_header_value":"a\nb"}"#).unwrap_err();
    assert_eq!(e.path, "$.load_reports.request_header_value");
    let e = cfg(r#""load_reports":{"request_header":"host"}"#).unwrap_err();
    assert_eq!(e.path, "$.load_reports.request_header");
    let e = cfg(r#""load_reports":{"request_header":"bad name"}"#).unwrap_err();
    assert_eq!(e.path, "$.load_reports.request_header");
}
