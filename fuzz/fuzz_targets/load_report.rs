//! Load reports from upstreams (`endpoint-load-metrics`): `orca::parse` never panics on any
//! header value, a report it accepts holds only finite numbers, and what the table and the
//! weights make of it is bounded (a weight of at least 1, every backend weighed).
#![no_main]

use envoy_lb::lb::reports::{LoadTable, ReportRules};
use envoy_lb::orca::{self, Wanted};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let wanted = Wanted::new(["named_metrics.q".to_string(), "utilization.kv".to_string()]);
    let rules = ReportRules {
        wanted: wanted.clone(),
        utilization_metrics: 1,
        error_utilization_penalty: 1.0,
        metric: Some("utilization.kv".into()),
        blackout_ns: 0,
        expiration_ns: 1_000,
    };
    let mut table = LoadTable::new(2);
    for header in [text.to_string(), format!("TEXT {text}"), format!("JSON {text}")] {
        let Ok(report) = orca::parse(&header, &wanted) else { continue };
        let scalars = [
            report.cpu_utilization,
            report.mem_utilization,
            report.application_utilization,
            report.rps_fractional,
            report.eps,
        ];
        assert!(scalars.iter().chain(report.wanted.iter().flatten()).all(|v| v.is_finite()));
        if let Some(w) = rules.weight(&report) {
            assert!(w >= 1, "{header:?}");
        }
        table.record(0, &report, &rules, 10, 3);
    }
    let mut weights = Vec::new();
    table.weights(&rules, 10, &mut weights);
    assert_eq!(weights.len(), 2);
    assert!(weights.iter().all(|&w| w >= 1));
});
