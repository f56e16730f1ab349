//! The config's JSON parser against serde_json: the same trees for any JSON text serde_json
//! writes, the same verdict on mutated and truncated texts, and serde_json's wording and
//! positions for syntax errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::Value;

use super::{parse, Json};

/// Whether our tree says what serde_json's value says (numbers compared by value).
fn same(ours: &Json, theirs: &Value) -> bool {
    match (ours, theirs) {
        (Json::Null, Value::Null) => true,
        (Json::Bool(a), Value::Bool(b)) => a == b,
        (Json::Str(a), Value::String(b)) => a == b,
        (Json::Num(a), Value::Number(b)) => {
            if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
                return x == y && !a.is_f64();
            }
            let (x, y) = (a.as_f64(), b.as_f64().unwrap());
            // Correctly rounded where config numbers live; a few ULPs off elsewhere, and
            // subnormals lose precision (no config field gets near them).
            x == y || ((x - y) / y).abs() < 1e-14 || (x - y).abs() < 1e-300
        }
        (Json::Arr(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Json::Obj(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same(v, w)))
        }
        _ => false,
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        (0u32..1000, 0u32..1000)
            .prop_map(|(a, b)| Value::from(f64::from(a) + f64::from(b) / 1000.0)),
        "\\PC{0,12}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,6}|\\PC{0,4}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Whether `text` reads as serde_json reads it: the same value (a zero's sign included), or
/// the same error, worded and placed alike.
fn reads_like_serde_json(text: &str) -> Result<(), String> {
    let theirs = serde_json::from_str::<Value>(text);
    match (parse(text.as_bytes()), theirs) {
        (Ok(ours), Ok(theirs)) => {
            let signed_alike = match (&ours, &theirs) {
                (Json::Num(a), Value::Number(b)) => {
                    let (x, y) = (a.as_f64(), b.as_f64().unwrap_or(f64::NAN));
                    x.is_sign_negative() == y.is_sign_negative()
                }
                _ => true,
            };
            if same(&ours, &theirs) && signed_alike {
                Ok(())
            } else {
                Err(format!("{text}: ours {ours:?}, serde_json {theirs}"))
            }
        }
        (Err(ours), Err(theirs)) if ours == theirs.to_string() => Ok(()),
        (ours, theirs) => Err(format!("{text}: ours {ours:?}, serde_json {theirs:?}")),
    }
}

/// A JSON number at the extremes: long mantissas, negative zero, and exponents near 0, near
/// the i32 limits (where serde_json stops reading an exponent), near i64::MIN and i64::MAX,
/// and beyond 64 bits, some with leading zeros.
fn extreme_number() -> impl Strategy<Value = String> {
    let integer = prop_oneof!["0", "[1-9][0-9]{0,40}"];
    let fraction = prop::option::of("[0-9]{1,30}");
    let magnitude = prop_oneof![
        (0u64..400).prop_map(|e| e.to_string()),
        (2_147_483_600u64..2_147_483_700).prop_map(|e| e.to_string()),
        (9_223_372_036_854_775_700u64..=9_223_372_036_854_775_808).prop_map(|e| e.to_string()),
        any::<u64>().prop_map(|e| e.to_string()),
        "[1-9][0-9]{19,30}",
    ];
    let marker = prop::sample::select(vec!["e", "E", "e+", "E+", "e-", "E-"]);
    let exponent = prop::option::of((marker, "0{0,3}", magnitude));
    let any_digits =
        (any::<bool>(), integer, fraction, exponent).prop_map(|(minus, int, frac, exp)| {
            let mut text = if minus { format!("-{int}") } else { int };
            if let Some(frac) = frac {
                text = format!("{text}.{frac}");
            }
            if let Some((marker, zeros, magnitude)) = exp {
                text = format!("{text}{marker}{zeros}{magnitude}");
            }
            text
        });
    // Around the least number that rounds to infinity: its first digits, then others.
    let near_the_largest_double = (1..=309usize, "[0-9]{0,3}").prop_map(|(n, tail)| {
        let digits = format!("{}{tail}", &super::LEAST_INFINITE[..n]);
        format!("{}.{}e308", &digits[..1], &digits[1..])
    });
    prop_oneof![4 => any_digits, 1 => near_the_largest_double]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Issue #12 item 5: no overflow (this runs in a debug build), and the verdict and value
    /// of serde_json.
    #[test]
    fn extreme_numbers_read_as_serde_json_reads_them(text in extreme_number()) {
        prop_assert_eq!(reads_like_serde_json(&text), Ok(()));
    }

    #[test]
    fn parses_what_serde_json_writes(v in json_value(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) };
        let text = text.unwrap();
        let ours = parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}"));
        prop_assert!(same(&ours, &v), "{text}");
    }

    #[test]
    fn agrees_with_serde_json_on_mutated_text(
        v in json_value(),
        at in any::<prop::sample::Index>(),
        byte in prop::sample::select(b"{}[]\":,.-+eE0129 \\ntfnu\x00\xff".to_vec()),
        cut in any::<bool>(),
    ) {
        let mut text = serde_json::to_vec(&v).unwrap();
        let i = at.index(text.len().max(1)).min(text.len().saturating_sub(1));
        if cut { text.truncate(i) } else if let Some(b) = text.get_mut(i) { *b = byte }
        let theirs = serde_json::from_slice::<Value>(&text);
        let ours = parse(&text);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => prop_assert!(same(a, b), "{}", String::from_utf8_lossy(&text)),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "ours {:?} theirs {:?} on {:?}", ours.is_ok(), theirs.is_ok(), String::from_utf8_lossy(&text)),
        }
    }
}

#[test]
fn syntax_errors_are_worded_and_placed_like_serde_json() {
    let cases = [
        "",
        "   ",
        "{",
        "[",
        "[ ",
        "[1,",
        "{\"a\":",
        "{\"a\"",
        "{\"a\":1,",
        "[1,]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{a:1}",
        "[1 2]",
        "{\"a\":1 \"b\":2}",
        "\"abc",
        "\"a\\qb\"",
        "\"a\u{1}b\"",
        "tru",
        "nul",
        "01",
        "1.",
        "-",
        "1e",
        "1e999",
        "{} x",
        "{}\n x",
        "[\"\\ud800\"]",
        "[\"\\ud800",
        "[\"\\ud800\\",
        "028",
        "-01",
        "[\"\\ud800\\u0041\"]",
        "[\"\\uZZZZ\"]",
    ];
    for text in cases {
        let theirs = serde_json::from_str::<Value>(text).unwrap_err().to_string();
        let ours = parse(text.as_bytes()).unwrap_err();
        assert_eq!(ours, theirs, "{text:?}");
    }
}

#[test]
fn nesting_is_bounded_like_serde_json() {
    let ok = format!("{}{}", "[".repeat(127), "]".repeat(127));
    assert!(parse(ok.as_bytes()).is_ok());
    assert!(serde_json::from_str::<Value>(&ok).is_ok());
    let deep = format!("{}{}", "[".repeat(128), "]".repeat(128));
    let theirs = serde_json::from_str::<Value>(&deep).unwrap_err().to_string();
    assert_eq!(parse(deep.as_bytes()).unwrap_err(), theirs);
    assert!(parse("[".repeat(100_000).as_bytes()).is_err());
}

#[test]
fn numbers_keep_their_text_and_value() {
    let Json::Arr(items) =
        parse(b"[0, 7, 18446744073709551615, 18446744073709551616, -3, 3.0, 1.25, 1e3, 2.5E-3]")
            .unwrap()
    else {
        panic!("not an array")
    };
    let nums: Vec<_> = items
        .iter()
        .map(|j| match j {
            Json::Num(n) => (n.to_string(), n.as_u64(), n.is_f64(), n.as_f64()),
            _ => panic!("not a number"),
        })
        .collect();
    assert_eq!(nums[0], ("0".into(), Some(0), false, 0.0));
    assert_eq!(nums[1], ("7".into(), Some(7), false, 7.0));
    assert_eq!(nums[2].1, Some(u64::MAX));
    assert_eq!((nums[3].1, nums[3].3), (None, 18446744073709551616.0));
    assert_eq!((nums[4].1, nums[4].2, nums[4].3), (None, false, -3.0));
    assert_eq!((nums[5].0.as_str(), nums[5].2, nums[5].3), ("3.0", true, 3.0));
    assert_eq!(nums[6].3, 1.25);
    assert_eq!((nums[7].2, nums[7].3), (true, 1000.0));
    assert_eq!(nums[8].3, 0.0025);
}

/// Found by the `config_json` fuzz target: zero with a huge exponent is zero, as serde_json
/// reads it.
#[test]
fn zero_with_any_exponent_is_zero() {
    for text in ["0e400", "-0e999", "0.0e-999", "0E+99999999999999999999"] {
        let theirs = serde_json::from_str::<Value>(text).unwrap();
        let Json::Num(n) = parse(text.as_bytes()).unwrap() else { panic!("{text}") };
        assert_eq!(n.as_f64(), theirs.as_f64().unwrap(), "{text}");
    }
}

#[test]
fn invalid_utf8_in_strings_is_refused() {
    assert!(parse(b"\"\xff\"").is_err());
    assert!(parse(b"\"\xc3\x28\"").is_err());
    assert!(parse(b"\xff").is_err());
    assert_eq!(
        parse("\"h\u{e9}\u{1F600}\"".as_bytes()).unwrap(),
        Json::Str("h\u{e9}\u{1F600}".into())
    );
}

/// Issue #12 item 5: an exponent near i64::MIN overflowed (a panic in a debug build), and a
/// long mantissa with an exponent near i64::MAX wrapped to about 0 in a release build, where
/// serde_json refuses it. serde_json reads an exponent into an i32: beyond it, a number is 0
/// when the exponent is negative or its digits are all zero, and out of range otherwise.
#[test]
fn exponents_beyond_any_integer_read_as_serde_json_reads_them() {
    for text in [
        "1.5e-9223372036854775808",
        "11111111111111111111e9223372036854775807",
        "-1.5e-9223372036854775808",
        "1e9223372036854775807",
        "1e-9223372036854775809",
        "1e2147483647",
        "1e2147483648",
        "1e-2147483647",
        "1e-2147483648",
        "-1E+0002147483648",
        "[1, 2e99999999999999999999999]",
        "{\"a\": \n 1e-99999999999999999999999}",
        "-0.0e9223372036854775807",
        "0.00000000000000000000000001e2147483647",
        "123456789012345678901234567890e-2147483647",
        "1.7976931348623157e308",
        "17976931348623158e292",
        "-0",
        "-0.0",
        "1.7976931348623158e308",
        "1.797693134862315808e308",
        &format!("0.{}e309", super::LEAST_INFINITE),
        &format!("{}e-1", super::LEAST_INFINITE),
        &format!("{}7e-1", super::LEAST_INFINITE.trim_end_matches('2')),
        &format!("{}1e-1", super::LEAST_INFINITE.trim_end_matches('2')),
    ] {
        assert_eq!(reads_like_serde_json(text), Ok(()));
    }
}
