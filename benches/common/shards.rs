//! Thousands of demo backends, each on its own loopback address, served by child processes
//! ("shards") of at most [`SHARD_SIZE`] backends: one process may hold 20,000 open files (the
//! machine's hard `ulimit -n`), and a backend costs a listener plus one accepted connection per
//! Envoy worker that uses it, so 10,000 backends in one process would not fit.
//!
//! A shard is the bench's own executable started again with [`SHARD_ENV`] set: the scale bench
//! (benches/scale.rs) runs [`serve_if_shard`] first thing in `main`, the bench smoke test
//! (tests/bench_smoke.rs) in a test that does nothing unless the variable is set. Backend `i`
//! listens on 127.2.(i / 250).(i % 250 + 1), port chosen by the kernel, and answers with its id
//! `s<i>` (demo-backend: `/healthz` 200, every other path 200 with the id, and an ORCA load
//! report when the request carries `endpoint-load-metrics-format`). A shard prints one
//! `shard-backend <id> <address>` line per backend, then `shard-ready`, and exits when its
//! standard input closes (the parent's end is dropped with [`Shards`], or the parent died).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};

/// Set in a shard's environment: `<first index>,<count>`.
pub const SHARD_ENV: &str = "ENVOY_LB_SCALE_SHARD";
/// Backends per shard process: a listener and up to 4 connections each (Envoy at one and two
/// workers using it, plus probe connections) stays well inside 20,000 open files.
pub const SHARD_SIZE: usize = 1_000;

/// The loopback address of backend `i` (port 0: any free port).
pub fn address(i: usize) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(127, 2, (i / 250) as u8, (i % 250 + 1) as u8), 0))
}

/// The id of backend `i`.
pub fn id(i: usize) -> String {
    format!("s{i}")
}

/// In a process started by [`Shards::start`]: serves its backends and exits when standard input
/// closes; returns at once in any other process.
pub fn serve_if_shard() {
    let Ok(spec) = std::env::var(SHARD_ENV) else { return };
    let (first, count) = spec
        .split_once(',')
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
        .unwrap_or_else(|| panic!("{SHARD_ENV}={spec:?}: want <first>,<count>"));
    // One thread per shard: the shards together use every CPU, each stays small.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let mut running = Vec::with_capacity(count);
        let mut out = String::new();
        for i in first..first + count {
            let mut options = demo_backend::Options::new(id(i));
            // Reports for the algorithms that ask (scale::ALGORITHMS): each backend's weight
            // comes out as its capacity, 1,000 req/s.
            options.load_report = Some(demo_backend::LoadReport {
                format: demo_backend::ReportFormat::Text,
                capacity_rps: Some(1000.0),
                only_when_asked: true,
            });
            let b = demo_backend::start(address(i), options)
                .await
                .unwrap_or_else(|e| panic!("shard: cannot listen on {}: {e}", address(i)));
            out.push_str(&format!("shard-backend {} {}\n", id(i), b.addr));
            running.push(b);
        }
        out.push_str("shard-ready\n");
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(out.as_bytes()).unwrap();
        stdout.flush().unwrap();
        drop(stdout);
        // Until the parent closes our standard input (or dies).
        let _ = tokio::task::spawn_blocking(|| {
            let mut buf = [0u8; 64];
            while std::io::stdin().read(&mut buf).is_ok_and(|n| n > 0) {}
        })
        .await;
        drop(running);
    });
    std::process::exit(0);
}

/// The shard processes of one run; killed on drop.
pub struct Shards {
    children: Vec<Child>,
    /// Backend `i`'s address, for every `i` below the count started.
    pub addrs: Vec<SocketAddr>,
}

impl Shards {
    /// Starts `n` backends in shards of [`SHARD_SIZE`], each shard from `launcher()` (a command
    /// that runs [`serve_if_shard`] first), and waits until every one listens.
    pub fn start(n: usize, launcher: &dyn Fn() -> Command) -> Shards {
        let mut shards = Shards { children: Vec::new(), addrs: Vec::with_capacity(n) };
        let mut first = 0;
        while first < n {
            let count = SHARD_SIZE.min(n - first);
            let child = launcher()
                .env(SHARD_ENV, format!("{first},{count}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start a backend shard: {e}"));
            shards.children.push(child);
            first += count;
        }
        for (k, child) in shards.children.iter_mut().enumerate() {
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let mut got = 0;
            loop {
                let line = match lines.next() {
                    Some(Ok(line)) => line,
                    _ => panic!("backend shard {k} ended before it was ready"),
                };
                // The test harness that runs a shard in tests/bench_smoke.rs prints too (its
                // `test <name> ... ` starts the shard's first line).
                if line.ends_with("shard-ready") {
                    break;
                }
                let Some((_, rest)) = line.split_once("shard-backend ") else { continue };
                let (_, addr) = rest.split_once(' ').unwrap();
                shards.addrs.push(addr.parse().unwrap());
                got += 1;
            }
            assert_eq!(got, SHARD_SIZE.min(n - k * SHARD_SIZE), "backend shard {k}");
        }
        shards
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        for child in &mut self.children {
            drop(child.stdin.take());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
