//! (f) Every YAML under envoy/ passes `envoy --mode validate` (which also loads the filter and
//! runs its configuration), fails closed when the filter's VM fails, and routes nothing to the
//! original_dst probe cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use serde_yaml_ng::Value;
use support::*;

fn shipped_yaml() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("envoy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML under envoy/");
    files
}

/// Every value under `key` anywhere in `doc`, with whether it sits in a `route` mapping.
fn values_of<'a>(doc: &'a Value, key: &str, in_route: bool, out: &mut Vec<(&'a Value, bool)>) {
    match doc {
        Value::Mapping(m) => {
            for (k, v) in m {
                if k.as_str() == Some(key) {
                    out.push((v, in_route));
                }
                values_of(v, key, in_route || k.as_str() == Some("route"), out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|v| values_of(v, key, in_route, out)),
        _ => {}
    }
}

/// The promises of docs/routing.md and docs/security.md about the shipped configs: the filter
/// fails closed (FAIL_RELOAD: a failed VM is replaced, requests meanwhile are refused, never
/// passed unbalanced), and the probe cluster (which honours a client's
/// x-envoy-original-dst-host) has no route.
#[test]
fn every_envoy_yaml_fails_closed_and_routes_nothing_to_the_probe_cluster() {
    for file in shipped_yaml() {
        let doc: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let mut policies = Vec::new();
        values_of(&doc, "failure_policy", false, &mut policies);
        assert!(!policies.is_empty(), "{}: no failure_policy", file.display());
        for (p, _) in policies {
            assert_eq!(p.as_str(), Some("FAIL_RELOAD"), "{}", file.display());
        }
        let mut clusters = Vec::new();
        values_of(&doc, "cluster", false, &mut clusters);
        let routed: Vec<&str> =
            clusters.iter().filter(|(_, r)| *r).filter_map(|(v, _)| v.as_str()).collect();
        assert!(!routed.contains(&"pool_probe"), "{}: a route to pool_probe", file.display());
    }
}

#[test]
fn every_envoy_yaml_validates() {
    let envoy = envoy_bin();
    wasm_path();
    for file in shipped_yaml() {
        let out = Command::new(&envoy)
            .current_dir(repo_root())
            .args(["--mode", "validate", "--disable-hot-restart", "-c"])
            .arg(&file)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{} does not validate:\n{log}", file.display());
        assert!(log.contains("OK"), "{}: no OK in:\n{log}", file.display());
        assert!(
            log.contains("configured: cluster pool"),
            "{}: the filter was not configured during validation:\n{log}",
            file.display()
        );
    }
}
