//! (f) Every YAML under envoy/ passes `envoy --mode validate` (which also loads the filter and
//! runs its configuration).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use support::*;

#[test]
fn every_envoy_yaml_validates() {
    let envoy = envoy_bin();
    wasm_path();
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("envoy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML under envoy/");
    for file in files {
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
