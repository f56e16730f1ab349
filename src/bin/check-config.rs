//! `check-config FILE`: validates a plugin configuration (JSON) natively with the code the
//! filter runs in `on_configure` (`Config::from_json`). Exit 0: accepted, one summary line on
//! stdout. Exit 1: refused, the line the filter would log on stderr. Exit 2: usage error or
//! unreadable file. `make check-config FILE=path` runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use envoy_lb::config::Config;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(file), None) = (args.next(), args.next()) else {
        eprintln!("usage: check-config FILE  (a plugin configuration in JSON)");
        return ExitCode::from(2);
    };
    let file = PathBuf::from(file);
    let bytes = match std::fs::read(&file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("check-config: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match Config::from_json(&bytes) {
        Ok(config) => {
            println!(
                "ok: {}: algorithm {}, {} backends, target mode {}",
                file.display(),
                config.algorithm.name(),
                config.pool.len(),
                config.target.mode.name(),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            // The same line as the filter's log (src/adapter/root.rs).
            eprintln!("invalid plugin config: {e}");
            ExitCode::from(1)
        }
    }
}
