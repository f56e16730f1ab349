//! The `outlier_detection` block and `slow_start_ms`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::super::Config;
use super::*;

fn parse(extra: &str) -> Result<Config, ConfigError> {
    Config::from_json(
        format!(r#"{{"cluster":"c","backends":[{{"id":"a","address":"10.0.0.1:80"}}],{extra}}}"#)
            .as_bytes(),
    )
}

#[test]
fn defaults_and_fields() {
    let c = parse(r#""outlier_detection":{}"#).unwrap();
    assert_eq!(c.outlier_detection, Some(OutlierDetection::default()));
    let c = parse(
        r#""outlier_detection":{"consecutive_errors":3,"base_ejection_ms":100,"max_ejection_ms":400,"max_ejection_percent":34},"slow_start_ms":500"#,
    )
    .unwrap();
    let o = c.outlier_detection.unwrap();
    assert_eq!(
        (o.consecutive_errors, o.base_ejection_ms, o.max_ejection_ms, o.max_ejection_percent),
        (3, 100, 400, 34)
    );
    assert_eq!(c.slow_start_ms, 500);
    let c = parse(r#""outlier_detection":null,"slow_start_ms":null"#).unwrap();
    assert_eq!((c.outlier_detection, c.slow_start_ms), (None, 0));
}

#[test]
fn refusals_name_their_path() {
    for (extra, path, words) in [
        (
            r#""outlier_detection":{"consecutive_errors":0}"#,
            "$.outlier_detection.consecutive_errors",
            "from 1 to 1000",
        ),
        (
            r#""outlier_detection":{"max_ejection_percent":101}"#,
            "$.outlier_detection.max_ejection_percent",
            "from 0 to 100",
        ),
        (
            r#""outlier_detection":{"base_ejection_ms":500,"max_ejection_ms":100}"#,
            "$.outlier_detection.max_ejection_ms",
            "below base_ejection_ms 500",
        ),
        (
            r#""outlier_detection":{"base_ejection_ms":400000}"#,
            "$.outlier_detection.max_ejection_ms",
            "(the default) is below",
        ),
        (r#""outlier_detection":{"errors":1}"#, "$.outlier_detection.errors", "unknown field"),
        (r#""outlier_detection":[]"#, "$.outlier_detection", "expected a JSON object"),
        (r#""slow_start_ms":-1"#, "$.slow_start_ms", "from 0 to 3600000"),
    ] {
        let e = parse(extra).unwrap_err();
        assert_eq!(e.path, path, "{extra}: {e}");
        assert!(e.message.contains(words), "{extra}: {e}");
    }
}
