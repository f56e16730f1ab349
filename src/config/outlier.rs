//! The `outlier_detection` block (passive ejection of a backend after consecutive errors,
//! counted across every worker of the proxy) and `slow_start_ms`.

use super::de::{int, object, Json};
use super::ConfigError;

/// Validated passive ejection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Consecutive 5xx answers or connection failures that eject a backend.
    pub consecutive_errors: u32,
    /// The n-th ejection of a backend lasts `n × base`, at most `max`.
    pub base_ejection_ms: u64,
    pub max_ejection_ms: u64,
    /// Never more than this percent of the backends ejected at once.
    pub max_ejection_percent: u32,
}

impl Default for OutlierDetection {
    /// The settings of `"outlier_detection": {}` (Envoy's defaults).
    fn default() -> Self {
        OutlierDetection {
            consecutive_errors: 5,
            base_ejection_ms: 30_000,
            max_ejection_ms: 300_000,
            max_ejection_percent: 50,
        }
    }
}

const MAX_MS: u32 = 3_600_000;
const FIELDS: &[&str] =
    &["consecutive_errors", "base_ejection_ms", "max_ejection_ms", "max_ejection_percent"];

/// The `outlier_detection` object, numbers bounded; `validate` relates them.
#[derive(Default)]
pub(super) struct RawOutlier {
    consecutive_errors: Option<u32>,
    base_ejection_ms: Option<u32>,
    max_ejection_ms: Option<u32>,
    max_ejection_percent: Option<u32>,
}

impl RawOutlier {
    pub(super) fn read(v: &Json, path: &str) -> Result<RawOutlier, ConfigError> {
        let mut o = RawOutlier::default();
        object(v, path, FIELDS, 0, &mut |i, v, p| {
            match i {
                0 => o.consecutive_errors = Some(int(v, p, 1, 1000)?),
                1 => o.base_ejection_ms = Some(int(v, p, 1, MAX_MS)?),
                2 => o.max_ejection_ms = Some(int(v, p, 1, MAX_MS)?),
                _ => o.max_ejection_percent = Some(int(v, p, 0, 100)?),
            }
            Ok(())
        })?;
        Ok(o)
    }

    pub(super) fn validate(self) -> Result<OutlierDetection, ConfigError> {
        let d = OutlierDetection::default();
        let base = self.base_ejection_ms.map_or(d.base_ejection_ms, u64::from);
        let max = self.max_ejection_ms.map_or(d.max_ejection_ms, u64::from);
        if max < base {
            let default = if self.max_ejection_ms.is_none() { " (the default)" } else { "" };
            return Err(ConfigError::at(
                "$.outlier_detection.max_ejection_ms",
                format!(
                    "{max}{default} is below base_ejection_ms {base}; valid: at least the base \
                     ejection time"
                ),
            ));
        }
        Ok(OutlierDetection {
            consecutive_errors: self.consecutive_errors.unwrap_or(d.consecutive_errors),
            base_ejection_ms: base,
            max_ejection_ms: max,
            max_ejection_percent: self.max_ejection_percent.unwrap_or(d.max_ejection_percent),
        })
    }
}

#[cfg(test)]
mod tests;
