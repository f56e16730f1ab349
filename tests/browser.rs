//! A real browser (Debian's headless Chromium, one persistent profile) loads the page through
//! Envoy 20 times and stays on one backend: the sticky cookie works as browsers handle it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::json;
use support::*;

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.is_file(),
        "Chromium not found at {}: run `make chromium` (or `make test`)",
        path.display()
    );
    path
}

/// Loads `url` in headless Chromium with the profile in `profile`; returns the page's text.
fn load(chromium: &PathBuf, profile: &std::path::Path, url: &str) -> String {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_stays_on_one_backend() {
    let chromium = chromium();
    let backends = backends(3).await;
    let pool: Vec<_> = backends.iter().map(|b| (b.id(), b.addr, 1)).collect();
    let extra = json!({"sticky": {"cookie": "lb_session", "secrets": ["a browser-test secret, 32 bytes long"],
        "secure": false}});
    let endpoints = backends.iter().map(|b| b.addr).collect();
    let envoy =
        Envoy::start(EnvoySetup::new(plugin_config(&pool, extra), endpoints).concurrency(2)).await;
    let profile = tempfile::tempdir().unwrap();
    let url = envoy.url("/");
    let mut seen = HashSet::new();
    for i in 0..20 {
        let (chromium, dir, url) = (chromium.clone(), profile.path().to_owned(), url.clone());
        let page = tokio::task::spawn_blocking(move || load(&chromium, &dir, &url)).await.unwrap();
        let id = backends.iter().map(|b| b.id()).find(|id| page.contains(&format!(">{id}\n")));
        let id = id.unwrap_or_else(|| panic!("load {i}: no backend id in {page:?}"));
        seen.insert(id.to_string());
    }
    assert_eq!(seen.len(), 1, "the browser moved between backends: {seen:?}");
    // The same loads, each with a new empty profile, are spread by round robin.
    let mut spread = HashSet::new();
    for _ in 0..6 {
        let (chromium, url) = (chromium.clone(), url.clone());
        let page = tokio::task::spawn_blocking(move || {
            let empty = tempfile::tempdir().unwrap();
            load(&chromium, empty.path(), &url)
        })
        .await
        .unwrap();
        let ids = backends.iter().map(|b| b.id()).filter(|id| page.contains(&format!(">{id}\n")));
        spread.extend(ids.map(String::from));
    }
    assert!(spread.len() > 1, "without a cookie the loads should spread: {spread:?}");
}
