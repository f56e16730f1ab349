//! The `outlier_detection` block (passive ejection of a backend after consecutive errors,
//! counted across every worker of the proxy) and `slow_start_ms`.

use serde::Deserialize;

use super::read::{Int, Opt};
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

/// The `outlier_detection` object, numbers bounded; `validate` relates them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutlier {
    #[serde(default)]
    consecutive_errors: Opt<Int<1, 1000>>,
    #[serde(default)]
    base_ejection_ms: Opt<Int<1, MAX_MS>>,
    #[serde(default)]
    max_ejection_ms: Opt<Int<1, MAX_MS>>,
    #[serde(default)]
    max_ejection_percent: Opt<Int<0, 100>>,
}

impl RawOutlier {
    pub(super) fn validate(self) -> Result<OutlierDetection, ConfigError> {
        let d = OutlierDetection::default();
        let base = self.base_ejection_ms.map_or(d.base_ejection_ms, |n| u64::from(n.0));
        let max = self.max_ejection_ms.as_ref().map_or(d.max_ejection_ms, |n| u64::from(n.0));
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
            consecutive_errors: self.consecutive_errors.map_or(d.consecutive_errors, |n| n.0),
            base_ejection_ms: base,
            max_ejection_ms: max,
            max_ejection_percent: self.max_ejection_percent.map_or(d.max_ejection_percent, |n| n.0),
        })
    }
}

#[cfg(test)]
mod tests;
