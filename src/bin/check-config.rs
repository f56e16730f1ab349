//! `check-config FILE`: validates a plugin configuration (JSON) natively with the code the
//! filter runs in `on_configure` (`Config::from_json`). Exit 0: accepted, one summary line on
//! stdout. Exit 1: refused, the line the filter would log on stderr. Exit 2: usage error or
//! unreadable file. `make check-config FILE=path` runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use envoy_lb::Config;

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
    match check(&file.display().to_string(), &bytes) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(refusal) => {
            eprintln!("{refusal}");
            ExitCode::from(1)
        }
    }
}

/// The summary line of an accepted config, or the line the filter logs when it refuses it
/// (src/adapter/root.rs). `name` names the file in the summary.
fn check(name: &str, bytes: &[u8]) -> Result<String, String> {
    match Config::from_json(bytes) {
        Ok(config) => Ok(format!(
            "ok: {name}: algorithm {}, {}, target mode {}",
            config.algorithm.name(),
            config.pool_summary(),
            config.target.mode.name(),
        )),
        Err(e) => Err(format!("invalid plugin config: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::check;

    fn config(bias: &str) -> String {
        format!(
            r#"{{"cluster": "pool", "algorithm": "least_request",
  "least_request": {{"active_request_bias": {bias}}},
  "backends": [{{"id": "b1", "address": "10.0.0.1:80"}}]}}"#
        )
    }

    /// Issue #12 item 5: a number whose exponent is beyond any integer is read as serde_json
    /// reads it, without a panic (tests run in a debug build, with overflow checks).
    #[test]
    fn extreme_exponents_are_read_or_refused_without_a_panic() {
        // Far below the smallest double: 0, a valid bias.
        let tiny = config("1.5e-9223372036854775808");
        assert_eq!(
            check("tiny.json", tiny.as_bytes()),
            Ok("ok: tiny.json: algorithm least_request, 1 backends, target mode override_host"
                .to_string())
        );
        let live = br#"{"cluster": "pool", "discovery": {"admin_cluster": "envoy_admin"}}"#;
        assert_eq!(
            check("live.json", live),
            Ok("ok: live.json: algorithm round_robin, backends of cluster pool through admin \
                cluster envoy_admin (eds, every 1000 ms; 0 listed), target mode override_host"
                .to_string())
        );
        // Far beyond the largest double: refused where serde_json refuses it.
        let huge = config("11111111111111111111e9223372036854775807");
        let theirs = serde_json::from_str::<serde_json::Value>(&huge).unwrap_err();
        assert_eq!(theirs.to_string(), "number out of range at line 2 column 74");
        assert_eq!(
            check("huge.json", huge.as_bytes()),
            Err(format!(
                "invalid plugin config: $: not valid JSON: {theirs}; valid: one JSON object \
                 (see the config reference)"
            ))
        );
    }
}
