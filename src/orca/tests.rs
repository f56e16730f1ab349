#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;

use super::*;

fn wanted() -> Wanted {
    Wanted::new(["named_metrics.queue_depth".to_string(), "utilization.kv_cache".to_string()])
}

#[test]
fn text_report_with_every_field() {
    let r = parse(
        "TEXT cpu_utilization=0.3, mem_utilization=0.4,application_utilization=0.5, \
         rps_fractional=10, eps=0.1, named_metrics.queue_depth=7, named_metrics.other=1, \
         utilization.kv_cache=0.25, request_cost.db=3",
        &wanted(),
    )
    .unwrap();
    assert_eq!(r.cpu_utilization, 0.3);
    assert_eq!(r.mem_utilization, 0.4);
    assert_eq!(r.application_utilization, 0.5);
    assert_eq!(r.rps_fractional, 10.0);
    assert_eq!(r.eps, 0.1);
    assert_eq!(r.wanted[0], Some(7.0));
    assert_eq!(r.wanted[1], Some(0.25));
    assert_eq!(r.get("named_metrics.queue_depth", &wanted()), Some(7.0));
    assert_eq!(r.get("cpu_utilization", &wanted()), Some(0.3));
    assert_eq!(r.get("named_metrics.other", &wanted()), None);
}

#[test]
fn text_report_with_colons_as_envoy_before_1_33() {
    let r = parse("TEXT cpu_utilization:0.7,rps_fractional:1000", &Wanted::default()).unwrap();
    assert_eq!((r.cpu_utilization, r.rps_fractional), (0.7, 1000.0));
}

#[test]
fn absent_fields_are_zero_and_absent_wanted_metrics_none() {
    let r = parse("TEXT rps_fractional=5", &wanted()).unwrap();
    assert_eq!(r.cpu_utilization, 0.0);
    assert_eq!(r.wanted, [None; MAX_WANTED]);
}

#[test]
fn text_reports_envoy_refuses_are_refused() {
    for bad in [
        "TEXT cpu_utilization=0.3, cpu_utilization=0.4",
        "TEXT cpu_utilization=abc",
        "TEXT cpu_utilization=NaN",
        "TEXT cpu_utilization=inf",
        "TEXT cpu_utilization=",
        "TEXT =0.3",
        "TEXT bogus=1",
        "TEXT named_metrics.=1",
        "TEXT cpu_utilization",
        "TEXT named_metrics.a=1, named_metrics.a=2",
        "text cpu_utilization=1",
        "cpu_utilization=1",
        "",
    ] {
        assert_eq!(parse(bad, &wanted()), Err(ReportError::Malformed), "{bad:?}");
    }
}

#[test]
fn empty_elements_are_skipped_as_in_envoy() {
    let r = parse("TEXT , rps_fractional=2,, eps=1 ,", &wanted()).unwrap();
    assert_eq!((r.rps_fractional, r.eps), (2.0, 1.0));
}

#[test]
fn json_reports_in_both_spellings() {
    let r = parse(
        r#"JSON {"cpu_utilization":0.3,"rpsFractional":"12.5","eps":1,
            "named_metrics":{"queue_depth":4,"x":1},"utilization":{"kv_cache":0.5},"rps":9}"#,
        &wanted(),
    )
    .unwrap();
    assert_eq!(r.cpu_utilization, 0.3);
    assert_eq!(r.rps_fractional, 12.5);
    assert_eq!(r.eps, 1.0);
    assert_eq!(r.wanted[0], Some(4.0));
    assert_eq!(r.wanted[1], Some(0.5));
    let r =
        parse(r#"JSON {"applicationUtilization":0.9,"namedMetrics":{"queue_depth":2}}"#, &wanted())
            .unwrap();
    assert_eq!((r.application_utilization, r.wanted[0]), (0.9, Some(2.0)));
}

#[test]
fn json_reports_that_are_not_reports_are_refused() {
    for bad in [
        "JSON [1]",
        "JSON {",
        r#"JSON {"cpu_utilization":"x"}"#,
        r#"JSON {"cpu_utilization":true}"#,
        r#"JSON {"named_metrics":[1]}"#,
        r#"JSON {"named_metrics":{"a":"NaN"}}"#,
    ] {
        assert_eq!(parse(bad, &wanted()), Err(ReportError::Malformed), "{bad:?}");
    }
}

#[test]
fn binary_reports_are_told_apart() {
    assert_eq!(parse("BIN CgQIARAB", &wanted()), Err(ReportError::Unsupported));
}

#[test]
fn large_reports_are_refused_unread() {
    let long = format!("TEXT {}", "eps=1,".repeat(MAX_HEADER_LEN));
    assert_eq!(parse(&long, &wanted()), Err(ReportError::TooLarge));
    let many: Vec<String> = (0..=MAX_FIELDS).map(|i| format!("named_metrics.m{i}=1")).collect();
    assert_eq!(parse(&format!("TEXT {}", many.join(",")), &wanted()), Err(ReportError::TooLarge));
    let many: Vec<String> = (0..=MAX_FIELDS).map(|i| format!("\"m{i}\":1")).collect();
    let json = format!("JSON {{\"named_metrics\":{{{}}}}}", many.join(","));
    assert_eq!(parse(&json, &wanted()), Err(ReportError::TooLarge));
}

proptest! {
    #[test]
    fn never_panics_on_any_header(s in "\\PC{0,200}") {
        let _ = parse(&s, &wanted());
        let _ = parse(&format!("TEXT {s}"), &wanted());
        let _ = parse(&format!("JSON {s}"), &wanted());
    }

    #[test]
    fn text_reports_read_back_what_was_written(
        cpu in 0.0f64..10.0, rps in 0.0f64..1e6, queue in proptest::option::of(0u32..1000),
        colon in any::<bool>(), spaces in any::<bool>(),
    ) {
        let sep = if colon { ":" } else { "=" };
        let join = if spaces { ", " } else { "," };
        let mut fields = vec![format!("cpu_utilization{sep}{cpu}"), format!("rps_fractional{sep}{rps}")];
        if let Some(q) = queue {
            fields.push(format!("named_metrics.queue_depth{sep}{q}"));
        }
        let r = parse(&format!("TEXT {}", fields.join(join)), &wanted()).unwrap();
        prop_assert_eq!(r.cpu_utilization, cpu);
        prop_assert_eq!(r.rps_fractional, rps);
        prop_assert_eq!(r.wanted[0], queue.map(f64::from));
    }
}
