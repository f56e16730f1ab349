//! Metric names and the stats_tags that turn their segments into Prometheus labels: checked
//! with a regex engine (Envoy's are RE2; these patterns use nothing RE2 lacks) and against the
//! regexes shipped in envoy/envoy.yaml.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

/// What Envoy's tag extraction makes of `name`: the name with every extractor's first group
/// removed (all extractors match the original name), and the tags.
fn extract(name: &str) -> (String, Vec<(String, String)>) {
    let mut remove = Vec::new();
    let mut tags = Vec::new();
    for (tag, re) in STATS_TAGS {
        let re = regex::Regex::new(re).unwrap();
        if let Some(c) = re.captures(name) {
            let (outer, inner) = (c.get(1).unwrap(), c.get(2).unwrap());
            remove.push(outer.range());
            tags.push((tag.to_string(), inner.as_str().to_string()));
        }
    }
    let kept = name
        .char_indices()
        .filter(|(i, _)| !remove.iter().any(|r| r.contains(i)))
        .map(|(_, c)| c)
        .collect();
    (kept, tags)
}

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn backend_metrics_become_a_name_with_pool_and_backend_labels() {
    let pool = pool_label("demo");
    for name in BackendCounter::ALL.map(BackendCounter::name) {
        let stat = format!("wasmcustom.{}", backend_metric(name, &pool, "b1"));
        assert_eq!(
            extract(&stat),
            (format!("wasmcustom.{name}"), tags(&[("pool", "demo"), ("backend", "b1")]))
        );
    }
    for name in BackendGauge::ALL.map(BackendGauge::name) {
        let stat = format!("wasmcustom.{}", backend_metric(name, &pool, "api-2.eu_west"));
        assert_eq!(
            extract(&stat),
            (format!("wasmcustom.{name}"), tags(&[("pool", "demo"), ("backend", "api-2.eu_west")]))
        );
    }
}

#[test]
fn pool_metrics_get_a_pool_label_only() {
    let pool = pool_label("outbound|80||reviews.default.svc.cluster.local");
    assert_eq!(pool, "outbound_80__reviews_default_svc_cluster_local");
    for name in PoolCounter::ALL.map(PoolCounter::name) {
        let stat = format!("wasmcustom.{}", pool_metric(name, &pool));
        assert_eq!(extract(&stat), (format!("wasmcustom.{name}"), tags(&[("pool", &pool)])));
    }
}

#[test]
fn names_start_with_a_letter_and_are_distinct() {
    let mut names: Vec<&str> = BackendCounter::ALL.map(BackendCounter::name).to_vec();
    names.extend(BackendGauge::ALL.map(BackendGauge::name));
    names.extend(PoolCounter::ALL.map(PoolCounter::name));
    for n in &names {
        assert!(n.starts_with("lb_") && n.bytes().all(|c| c.is_ascii_lowercase() || c == b'_'));
    }
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len());
}

#[test]
fn envoy_yaml_ships_these_stats_tags() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("envoy/envoy.yaml")).unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let shipped: Vec<(String, String)> = doc["stats_config"]["stats_tags"]
        .as_sequence()
        .expect("envoy.yaml has stats_config.stats_tags")
        .iter()
        .map(|t| {
            (t["tag_name"].as_str().unwrap().to_string(), t["regex"].as_str().unwrap().to_string())
        })
        .collect();
    let ours: Vec<(String, String)> =
        STATS_TAGS.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(shipped, ours);
}
