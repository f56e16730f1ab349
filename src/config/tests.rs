//! Native tests of configuration parsing and validation: what is accepted, the defaults, and one
//! test per refusal class asserting the exact JSON path and that the message says what is valid.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::target::DEFAULT_STEERING_HEADER;
use super::*;

/// One valid backend, for configs whose point is elsewhere.
const ONE_BACKEND: &str = r#"[{"id":"a","address":"10.0.0.1:80"}]"#;

fn parse(json: &str) -> Config {
    match Config::from_json(json.as_bytes()) {
        Ok(c) => c,
        Err(e) => panic!("expected {json:?} to parse, got error {e}"),
    }
}

fn refuse_bytes(bytes: &[u8]) -> ConfigError {
    match Config::from_json(bytes) {
        Ok(c) => panic!("expected {:?} to be refused, got {c:?}", String::from_utf8_lossy(bytes)),
        Err(e) => e,
    }
}

fn refuse(json: &str) -> ConfigError {
    refuse_bytes(json.as_bytes())
}

/// A config with `backends` set to the given JSON array text.
fn with_backends(backends: &str) -> String {
    format!(r#"{{"cluster":"c","backends":{backends}}}"#)
}

/// A config with one backend whose fields are the given JSON object body.
fn with_backend(fields: &str) -> String {
    with_backends(&format!("[{{{fields}}}]"))
}

/// A config with one valid backend and the given `target` JSON.
fn with_target(target: &str) -> String {
    format!(r#"{{"cluster":"c","backends":{ONE_BACKEND},"target":{target}}}"#)
}

/// Asserts the error's path is exactly `path` and its message contains each of `needles`.
#[track_caller]
fn assert_err(e: &ConfigError, path: &str, needles: &[&str]) {
    assert_eq!(e.path, path, "wrong path for error {e}");
    for n in needles {
        assert!(e.message.contains(n), "message of {e} does not contain {n:?}");
    }
}

/// `n` distinct valid backends as a JSON array.
fn many_backends(n: usize) -> String {
    let items: Vec<String> = (1..=n)
        .map(|i| {
            format!(
                r#"{{"id":"b{i}","address":"10.{}.{}.{}:80"}}"#,
                (i >> 16) & 0xff,
                (i >> 8) & 0xff,
                i & 0xff
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

// ---------------------------------------------------------------------------------------------
// Accepted configurations
// ---------------------------------------------------------------------------------------------

#[test]
fn full_config_parses_every_field() {
    let c = parse(
        r#"{
            "cluster": "lb_backends",
            "algorithm": "random",
            "backends": [
                {"id": "a", "address": "10.0.0.1:8080", "weight": 5},
                {"id": "b-2.x_Y", "address": "[2001:db8::1]:8080", "weight": 10000},
                {"id": "c", "address": "10.0.0.3:65535", "weight": 1}
            ],
            "target": {"mode": "override_host", "header": "x-steer", "max_hosts": 10}
        }"#,
    );
    assert_eq!(c.cluster, "lb_backends");
    assert_eq!(c.algorithm, Algorithm::Random);
    assert_eq!(c.pool.len(), 3);
    let a = c.pool.get(0).unwrap();
    assert_eq!(a.id, "a");
    assert_eq!(a.address, Some("10.0.0.1:8080".parse::<SocketAddr>().unwrap()));
    assert_eq!(a.host, "10.0.0.1:8080");
    assert_eq!(a.weight, 5);
    let b = c.pool.get(1).unwrap();
    assert_eq!(b.id, "b-2.x_Y");
    assert_eq!(b.host, "[2001:db8::1]:8080");
    assert_eq!(b.weight, 10_000);
    let last = c.pool.get(2).unwrap();
    assert_eq!((last.id.as_str(), last.host.as_str(), last.weight), ("c", "10.0.0.3:65535", 1));
    assert!(c.pool.get(3).is_none());
    assert_eq!(c.pool.weights().collect::<Vec<_>>(), vec![5, 10_000, 1]);
    assert_eq!(
        c.target,
        Target {
            mode: TargetMode::OverrideHost,
            header: "x-steer".into(),
            max_hosts: 10,
            allow_header_fallback: false,
            probe_cluster: None,
        }
    );
}

#[test]
fn defaults_apply_to_a_minimal_config() {
    let c = parse(&with_backends(
        r#"[{"id":"a","address":"10.0.0.1:80"},{"id":"b","address":"10.0.0.2:80"}]"#,
    ));
    assert_eq!(c.algorithm, Algorithm::RoundRobin);
    assert_eq!(c.algorithm.name(), "round_robin");
    assert_eq!(c.target.mode, TargetMode::OverrideHost);
    assert_eq!(c.target.header, "x-gateway-destination-endpoint");
    assert_eq!(c.target.header, DEFAULT_STEERING_HEADER);
    assert_eq!(c.target.max_hosts, 3);
    assert_eq!(c.pool.weights().collect::<Vec<_>>(), vec![1, 1]);
}

#[test]
fn defaults_apply_inside_an_empty_or_partial_target() {
    let c = parse(&with_target("{}"));
    assert_eq!(c.target.header, DEFAULT_STEERING_HEADER);
    assert_eq!(c.target.max_hosts, 3);
    let c = parse(&with_target(r#"{"max_hosts": 1}"#));
    assert_eq!(c.target.header, DEFAULT_STEERING_HEADER);
    assert_eq!(c.target.max_hosts, 1);
    let c = parse(&with_target(r#"{"header": "x-h"}"#));
    assert_eq!(c.target.header, "x-h");
    assert_eq!(c.target.max_hosts, 3);
}

#[test]
fn algorithm_names_parse() {
    let rr =
        parse(&format!(r#"{{"cluster":"c","algorithm":"round_robin","backends":{ONE_BACKEND}}}"#));
    assert_eq!(rr.algorithm, Algorithm::RoundRobin);
    let random =
        parse(&format!(r#"{{"cluster":"c","algorithm":"random","backends":{ONE_BACKEND}}}"#));
    assert_eq!(random.algorithm, Algorithm::Random);
    assert_eq!(random.algorithm.name(), "random");
}

#[test]
fn header_name_is_lower_cased() {
    let c = parse(&with_target(r#"{"header": "X-Gateway-Destination-ENDPOINT"}"#));
    assert_eq!(c.target.header, "x-gateway-destination-endpoint");
    // Every RFC 9110 tchar is accepted.
    let c = parse(&with_target(r#"{"header": "A0!#$%&'*+-.^_`|~z"}"#));
    assert_eq!(c.target.header, "a0!#$%&'*+-.^_`|~z");
}

#[test]
fn ipv6_is_accepted_and_rendered_as_envoy_spells_it() {
    let c = parse(&with_backend(r#""id":"v6","address":"[2001:db8::1]:8080""#));
    let b = c.pool.get(0).unwrap();
    assert_eq!(b.address, Some("[2001:db8::1]:8080".parse::<SocketAddr>().unwrap()));
    assert!(b.address.is_some_and(|a| a.is_ipv6()));
    assert_eq!(b.host, "[2001:db8::1]:8080");

    // A non-canonical spelling is rendered canonically (RFC 5952: lower case, `::`).
    let c = parse(&with_backend(r#""id":"v6","address":"[2001:0DB8:0000:0:0:0:0:0001]:8080""#));
    assert_eq!(c.pool.get(0).unwrap().host, "[2001:db8::1]:8080");
}

#[test]
fn bounds_are_inclusive() {
    let c = parse(&with_backends(
        r#"[{"id":"a","address":"10.0.0.1:1","weight":1},
            {"id":"b","address":"10.0.0.2:65535","weight":10000}]"#,
    ));
    assert_eq!(c.pool.weights().collect::<Vec<_>>(), vec![1, 10_000]);
    assert_eq!(c.pool.get(0).unwrap().host, "10.0.0.1:1");
    assert_eq!(c.pool.get(1).unwrap().host, "10.0.0.2:65535");
    assert_eq!(parse(&with_target(r#"{"max_hosts":1}"#)).target.max_hosts, 1);
    assert_eq!(parse(&with_target(r#"{"max_hosts":10}"#)).target.max_hosts, MAX_HOSTS_LIMIT);
    let id64 = "x".repeat(64);
    assert_eq!(
        parse(&with_backend(&format!(r#""id":"{id64}","address":"10.0.0.1:80""#)))
            .pool
            .get(0)
            .unwrap()
            .id,
        id64
    );
    let h256 = "h".repeat(256);
    assert_eq!(parse(&with_target(&format!(r#"{{"header":"{h256}"}}"#))).target.header, h256);
}

#[test]
fn exactly_max_backends_is_accepted() {
    let c = parse(&with_backends(&many_backends(MAX_BACKENDS)));
    assert_eq!(c.pool.len(), MAX_BACKENDS);
}

#[test]
fn surrounding_whitespace_is_accepted() {
    let c = parse(&format!(" \n\t{} \n", with_backends(ONE_BACKEND)));
    assert_eq!(c.pool.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Display
// ---------------------------------------------------------------------------------------------

#[test]
fn display_renders_path_colon_message() {
    let e = ConfigError { path: "$.backends[1].weight".into(), message: "too big".into() };
    assert_eq!(e.to_string(), "$.backends[1].weight: too big");

    let e = refuse(&with_backends("[]"));
    assert_eq!(e.to_string(), format!("{}: {}", e.path, e.message));
    assert!(e.to_string().starts_with("$.backends: "), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Refusals: JSON syntax and shape
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_json_is_refused_at_root() {
    for bad in ["", "not json", "}", "{\"cluster\" \"c\"", "   "] {
        let e = refuse(bad);
        assert_err(&e, "$", &["not valid JSON", "valid:", "JSON object"]);
    }
}

/// A syntax error between object members is reported at `$` (a real JSON path, never `$.?`),
/// with the line and column in the message.
#[test]
fn invalid_json_inside_an_object_has_a_real_path() {
    for bad in [
        "{",
        r#"{"cluster":"c","#,
        r#"{"cluster":"c",}"#,
        r#"{cluster:"c"}"#,
        r#"{"cluster":"c" "backends":[]}"#,
    ] {
        let e = refuse(bad);
        assert_err(&e, "$", &["not valid JSON", "valid:"]);
    }
}

/// The text is parsed before any member is looked at, so a syntax error anywhere is reported
/// at `$`; the message gives the line and column.
#[test]
fn invalid_json_inside_a_value_is_refused_at_root_with_its_position() {
    let e = refuse(r#"{"cluster":"#);
    assert_err(&e, "$", &["not valid JSON", "line 1 column 11", "valid:"]);
    let e = refuse(&with_backends(r#"[{"id":"a","address":"10.0.0.1:80"},]"#));
    assert_err(&e, "$", &["not valid JSON", "trailing comma", "line 1 column", "valid:"]);
}

#[test]
fn trailing_garbage_after_the_object_is_refused() {
    for tail in [" x", "{}", " {\"cluster\":\"d\"}", "]", "0"] {
        let e = refuse(&format!("{}{tail}", with_backends(ONE_BACKEND)));
        assert_eq!(e.path, "$", "{e}");
        assert!(e.message.contains("trailing characters"), "{e}");
    }
}

/// The module contract: every error says what is valid. The trailing-garbage error is
/// serde_json's bare "trailing characters at line 1 column N".
#[test]
fn trailing_garbage_message_says_what_is_valid() {
    let e = refuse(&format!("{} x", with_backends(ONE_BACKEND)));
    assert_err(&e, "$", &["valid:"]);
}

#[test]
fn non_object_json_is_refused_at_root() {
    for bad in ["5", "null", "true", r#""cluster""#, "[]", "1.5"] {
        let e = refuse(bad);
        assert_eq!(e.path, "$", "{bad}: {e}");
    }
}

/// A top-level non-object is refused with "expected struct RawConfig": an internal type name,
/// not what is valid (a JSON object).
#[test]
fn non_object_json_message_says_a_json_object_is_valid() {
    for bad in ["5", "null", r#""cluster""#, "[]"] {
        let e = refuse(bad);
        assert_err(&e, "$", &["object"]);
        assert!(!e.message.contains("RawConfig"), "internal type name leaked: {e}");
    }
}

/// serde's derived `Deserialize` for structs also accepts a JSON array of the fields in
/// declaration order, which bypasses field names (and `deny_unknown_fields`). The documented
/// shape is a JSON object.
#[test]
fn positional_array_form_is_refused() {
    let e = refuse(r#"["c","round_robin",[{"id":"a","address":"10.0.0.1:80"}],{}]"#);
    assert_eq!(e.path, "$", "{e}");
    let e = refuse(&with_backends(r#"[["a","10.0.0.1:80",1]]"#));
    assert_eq!(e.path, "$.backends[0]", "{e}");
    let e = refuse(&with_target(r#"["override_host","x-h",2]"#));
    assert_eq!(e.path, "$.target", "{e}");
}

#[test]
fn invalid_utf8_is_refused() {
    let e = refuse_bytes(b"\xff");
    assert_err(&e, "$", &["not valid JSON", "valid:"]);
    let e = refuse_bytes(
        b"{\"cluster\":\"c\xff\",\"backends\":[{\"id\":\"a\",\"address\":\"10.0.0.1:80\"}]}",
    );
    assert_err(&e, "$", &["not valid JSON", "line 1 column 14", "valid:"]);
    let e = refuse_bytes(
        b"{\"cluster\":\"c\",\"backends\":[{\"id\":\"\xc3\x28\",\"address\":\"10.0.0.1:80\"}]}",
    );
    assert_err(&e, "$", &["not valid JSON", "line 1 column", "valid:"]);
}

#[test]
fn deeply_nested_json_is_refused_without_crashing() {
    let deep = 10_000;
    let inputs = [
        "[".repeat(deep),
        format!("{}{}", "[".repeat(deep), "]".repeat(deep)),
        format!(r#"{{"cluster":{}"#, "[".repeat(deep)),
        format!(r#"{{"cluster":"c","backends":{}"#, "[".repeat(deep)),
        format!(r#"{{"cluster":{}"#, r#"{"a":"#.repeat(deep)),
        format!(
            r#"{{"cluster":"c","backends":{ONE_BACKEND},"target":{}"#,
            r#"{"header":"#.repeat(deep)
        ),
    ];
    for input in &inputs {
        let e = refuse(input);
        assert!(e.path.starts_with('$'), "{e}");
        assert!(!e.message.is_empty());
    }
}

#[test]
fn a_one_megabyte_string_value_is_handled() {
    let big = "a".repeat(1 << 20);
    // Too long for an id: refused at the id, without crashing.
    let e = refuse(&with_backend(&format!(r#""id":"{big}","address":"10.0.0.1:80""#)));
    assert_err(&e, "$.backends[0].id", &["valid: 1 to 64 characters"]);
    // Too long for a header name.
    let e = refuse(&with_target(&format!(r#"{{"header":"{big}"}}"#)));
    assert_err(&e, "$.target.header", &["valid: 1 to 256 token characters"]);
    // Not an address.
    let e = refuse(&with_backend(&format!(r#""id":"a","address":"{big}""#)));
    assert_err(&e, "$.backends[0].address", &["valid: ip:port"]);
}

// ---------------------------------------------------------------------------------------------
// Refusals: unknown fields, wrong types, missing fields
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_field_at_top_level_is_refused() {
    let e = refuse(&format!(r#"{{"cluster":"c","backends":{ONE_BACKEND},"bogus":1}}"#));
    assert_err(
        &e,
        "$.bogus",
        &["unknown field `bogus`", "`cluster`", "`algorithm`", "`backends`", "`target`"],
    );
}

#[test]
fn unknown_field_in_a_backend_is_refused() {
    let e = refuse(&with_backends(
        r#"[{"id":"a","address":"10.0.0.1:80"},{"id":"b","address":"10.0.0.2:80","wieght":2}]"#,
    ));
    assert_err(
        &e,
        "$.backends[1].wieght",
        &["unknown field `wieght`", "`id`", "`address`", "`weight`"],
    );
}

#[test]
fn unknown_field_in_target_is_refused() {
    let e = refuse(&with_target(r#"{"max_host":2}"#));
    assert_err(
        &e,
        "$.target.max_host",
        &["unknown field `max_host`", "`mode`", "`header`", "`max_hosts`"],
    );
}

#[test]
fn wrong_types_are_refused() {
    let e = refuse(&format!(r#"{{"cluster":5,"backends":{ONE_BACKEND}}}"#));
    assert_err(&e, "$.cluster", &["invalid type", "expected a string"]);

    let e = refuse(r#"{"cluster":"c","backends":{}}"#);
    assert_err(&e, "$.backends", &["invalid type", "expected a sequence"]);

    let e = refuse(&with_backend(r#""id":7,"address":"10.0.0.1:80""#));
    assert_err(&e, "$.backends[0].id", &["expected a string"]);

    let e = refuse(&with_backend(r#""id":"a","address":["10.0.0.1",80]"#));
    assert_err(&e, "$.backends[0].address", &["expected a string"]);

    let e = refuse(&format!(r#"{{"cluster":"c","algorithm":1,"backends":{ONE_BACKEND}}}"#));
    assert_eq!(e.path, "$.algorithm", "{e}");

    let e = refuse(&with_target(r#"{"header":1}"#));
    assert_err(&e, "$.target.header", &["expected a string"]);

    let e = refuse(&with_target(r#"{"max_hosts":"3"}"#));
    assert_err(&e, "$.target.max_hosts", &["expected an integer from 1 to 10"]);

    let e = refuse(&with_target(r#"{"max_hosts":2.0}"#));
    assert_err(&e, "$.target.max_hosts", &["expected an integer from 1 to 10"]);
}

#[test]
fn weight_of_the_wrong_type_is_refused() {
    for w in [r#""3""#, "1.5", "3.0", "true", "[3]"] {
        let e = refuse(&with_backend(&format!(r#""id":"a","address":"10.0.0.1:80","weight":{w}"#)));
        assert_err(
            &e,
            "$.backends[0].weight",
            &["invalid type", "expected an integer from 1 to 10000"],
        );
    }
    // An integer beyond 64 bits (serde_json reads it as a float) is out of range, not a float.
    for w in ["100000000000000000000", "-100000000000000000000", "1e300"] {
        let e = refuse(&with_backend(&format!(r#""id":"a","address":"10.0.0.1:80","weight":{w}"#)));
        assert_err(
            &e,
            "$.backends[0].weight",
            &["is out of range; valid: an integer from 1 to 10000"],
        );
    }
}

#[test]
fn missing_required_fields_are_refused() {
    let e = refuse(&format!(r#"{{"backends":{ONE_BACKEND}}}"#));
    assert_err(&e, "$", &["missing field `cluster`"]);

    let e = refuse(r#"{"cluster":"c"}"#);
    assert_err(&e, "$.backends", &["is empty or missing", "or a \"discovery\" block"]);

    let e =
        refuse(&with_backends(r#"[{"id":"a","address":"10.0.0.1:80"},{"address":"10.0.0.2:80"}]"#));
    assert_err(&e, "$.backends[1]", &["missing field `id`"]);

    let e = refuse(&with_backend(r#""id":"a""#));
    assert_err(&e, "$.backends[0]", &["missing field `address`"]);

    let e = refuse("{}");
    assert_eq!(e.path, "$", "{e}");
    assert!(e.message.starts_with("missing field"), "{e}");
}

#[test]
fn duplicate_json_key_is_refused() {
    let e = refuse(&format!(r#"{{"cluster":"c","cluster":"d","backends":{ONE_BACKEND}}}"#));
    assert_err(&e, "$", &["duplicate field `cluster`"]);
}

// ---------------------------------------------------------------------------------------------
// Refusals: validation
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_backends_is_refused() {
    let e = refuse(&with_backends("[]"));
    assert_err(&e, "$.backends", &["empty", "valid: at least one backend"]);
}

#[test]
fn more_than_max_backends_is_refused() {
    let e = refuse(&with_backends(&many_backends(MAX_BACKENDS + 1)));
    assert_err(&e, "$.backends", &["has 10001 backends", "valid: at most 10000"]);
}

#[test]
fn duplicate_id_names_the_first() {
    let e = refuse(&with_backends(
        r#"[{"id":"a","address":"10.0.0.1:80"},{"id":"b","address":"10.0.0.2:80"},
            {"id":"a","address":"10.0.0.3:80"}]"#,
    ));
    assert_err(
        &e,
        "$.backends[2].id",
        &["duplicate id \"a\"", "$.backends[0].id", "valid: unique ids"],
    );
}

#[test]
fn ids_are_case_sensitive() {
    let c = parse(&with_backends(
        r#"[{"id":"a","address":"10.0.0.1:80"},{"id":"A","address":"10.0.0.2:80"}]"#,
    ));
    assert_eq!(c.pool.len(), 2);
}

#[test]
fn duplicate_address_names_the_first() {
    let e = refuse(&with_backends(
        r#"[{"id":"a","address":"10.0.0.1:80"},{"id":"b","address":"10.0.0.2:80"},
            {"id":"c","address":"10.0.0.2:80"}]"#,
    ));
    assert_err(
        &e,
        "$.backends[2].address",
        &[
            "duplicate address 10.0.0.2:80",
            "$.backends[1].address",
            "valid: one backend per address",
        ],
    );
}

#[test]
fn duplicate_address_is_found_across_spellings() {
    let e = refuse(&with_backends(
        r#"[{"id":"a","address":"[2001:db8::1]:80"},{"id":"b","address":"[2001:0DB8:0:0::1]:80"}]"#,
    ));
    assert_err(
        &e,
        "$.backends[1].address",
        &["duplicate address [2001:db8::1]:80", "$.backends[0].address"],
    );
    // Same IP, different ports are different backends.
    let c = parse(&with_backends(
        r#"[{"id":"a","address":"10.0.0.1:80"},{"id":"b","address":"10.0.0.1:81"}]"#,
    ));
    assert_eq!(c.pool.len(), 2);
}

#[test]
fn bad_addresses_are_refused() {
    let cases = [
        ("localhost:80", "is not an address"),
        ("example.com:443", "is not an address"),
        ("10.0.0.1", "is not an address"),
        ("[2001:db8::1]", "is not an address"),
        ("10.0.0.1:", "is not an address"),
        ("", "is not an address"),
        (" 10.0.0.1:80", "is not an address"),
        ("10.0.0.1:0", "port 0"),
        ("[2001:db8::1]:0", "port 0"),
        ("10.0.0.1:65536", "is not an address"),
        ("10.0.0.1:70000", "is not an address"),
        ("10.0.0.1:-1", "is not an address"),
        ("[fe80::1%2]:80", "zone id"),
        ("0.0.0.0:80", "unspecified"),
        ("[::]:80", "unspecified"),
        ("2001:db8::1:8080", "is not an address"),
        ("2001:db8::1", "is not an address"),
        ("http://10.0.0.1:80", "is not an address"),
        ("256.0.0.1:80", "is not an address"),
    ];
    for (addr, what) in cases {
        let e = refuse(&with_backend(&format!(r#""id":"a","address":"{addr}""#)));
        assert_err(&e, "$.backends[0].address", &[what, &format!("{addr:?}"), "valid: ip:port"]);
    }
}

#[test]
fn bad_address_in_a_later_backend_names_its_index() {
    let e = refuse(&with_backends(
        r#"[{"id":"a","address":"10.0.0.1:80"},{"id":"b","address":"nope"}]"#,
    ));
    assert_err(&e, "$.backends[1].address", &["\"nope\" is not an address", "valid: ip:port"]);
}

#[test]
fn bad_ids_are_refused() {
    let long = "x".repeat(65);
    for id in ["", long.as_str(), "a b", "é", "a/b", "a:b", "a,b", "\t"] {
        let json_id = serde_json::to_string(id).unwrap();
        let e = refuse(&with_backend(&format!(r#""id":{json_id},"address":"10.0.0.1:80""#)));
        assert_err(
            &e,
            "$.backends[0].id",
            &[
                &format!("{id:?} is not a valid id"),
                "valid: 1 to 64 characters from [A-Za-z0-9_.-]",
            ],
        );
    }
}

#[test]
fn out_of_range_weights_are_refused() {
    for w in ["0", "10001", "-1", "4294967297", "-9223372036854775808", "18446744073709551615"] {
        let e = refuse(&with_backend(&format!(r#""id":"a","address":"10.0.0.1:80","weight":{w}"#)));
        assert_err(
            &e,
            "$.backends[0].weight",
            &[&format!("{w} is out of range"), "valid: an integer from 1 to 10000"],
        );
    }
}

#[test]
fn out_of_range_max_hosts_is_refused() {
    for n in ["0", "11", "-1", "1000"] {
        let e = refuse(&with_target(&format!(r#"{{"max_hosts":{n}}}"#)));
        assert_err(
            &e,
            "$.target.max_hosts",
            &[&format!("{n} is out of range"), "valid: an integer from 1 to 10"],
        );
    }
}

/// `null` for an optional field means "absent": its default applies.
#[test]
fn null_optional_fields_take_their_defaults() {
    let c =
        Config::from_json(with_target(r#"{"max_hosts":null,"header":null}"#).as_bytes()).unwrap();
    assert_eq!(c.target.max_hosts, 3);
    assert_eq!(c.target.header, DEFAULT_STEERING_HEADER);
    let c = Config::from_json(
        with_backend(r#""id":"a","address":"10.0.0.1:80","weight":null"#).as_bytes(),
    )
    .unwrap();
    assert_eq!(c.pool.get(0).unwrap().weight, 1);
}

#[test]
fn unknown_algorithm_lists_valid_variants() {
    let e = refuse(&format!(r#"{{"cluster":"c","algorithm":"rr","backends":{ONE_BACKEND}}}"#));
    assert_err(&e, "$.algorithm", &["unknown variant `rr`", "`round_robin`", "`random`"]);
    // Names are case-sensitive snake_case.
    let e =
        refuse(&format!(r#"{{"cluster":"c","algorithm":"RoundRobin","backends":{ONE_BACKEND}}}"#));
    assert_err(&e, "$.algorithm", &["unknown variant `RoundRobin`", "`round_robin`"]);
}

#[test]
fn unknown_target_mode_lists_valid_variants() {
    let e = refuse(&with_target(r#"{"mode":"header"}"#));
    assert_err(&e, "$.target.mode", &["unknown variant `header`", "`override_host`"]);
}

#[test]
fn empty_cluster_is_refused() {
    for cluster in ["", "   ", "\t"] {
        let json_cluster = serde_json::to_string(cluster).unwrap();
        let e = refuse(&format!(r#"{{"cluster":{json_cluster},"backends":{ONE_BACKEND}}}"#));
        assert_err(
            &e,
            "$.cluster",
            &["is not a cluster name", "valid: the name of the Envoy cluster"],
        );
    }
}

/// A huge value is quoted cut short, with its size, so the log line stays short.
#[test]
fn huge_values_are_cut_in_messages() {
    let long = "h".repeat(257);
    let e = refuse(&with_target(&format!(r#"{{"header":"{long}"}}"#)));
    assert_eq!(e.path, "$.target.header");
    assert!(
        e.message.contains(&format!("\"{}... (257 bytes)\" is not a header name", "h".repeat(80))),
        "{e}"
    );
    let huge = "c".repeat(1 << 20);
    let e = refuse(&format!(r#"{{"cluster":"{huge}","backends":{ONE_BACKEND}}}"#));
    assert_eq!(e.path, "$.cluster");
    assert!(e.message.len() < 400, "message of {} bytes", e.message.len());
}

#[test]
fn bad_header_names_are_refused() {
    for h in ["x bad", "", ":authority", "x:y", "x\"y", "é", "a,b", "x(y)"] {
        let json_h = serde_json::to_string(h).unwrap();
        let e = refuse(&with_target(&format!(r#"{{"header":{json_h}}}"#)));
        assert_err(
            &e,
            "$.target.header",
            &[
                &format!("{h:?} is not a header name"),
                "valid: 1 to 256 token characters (RFC 9110)",
            ],
        );
    }
}

#[test]
fn first_error_in_document_order_is_reported() {
    // Backend 0's id is bad and backend 1's address is bad: backend 0 is reported.
    let e = refuse(&with_backends(
        r#"[{"id":"a b","address":"10.0.0.1:80"},{"id":"b","address":"x"}]"#,
    ));
    assert_eq!(e.path, "$.backends[0].id", "{e}");
}

// ---------------------------------------------------------------------------------------------
// The JSON reader: exact messages, document order, duplicates, nulls
// ---------------------------------------------------------------------------------------------

#[test]
fn messages_read_like_serde() {
    let e = refuse(&format!(r#"{{"cluster":"c","algorthm":"random","backends":{ONE_BACKEND}}}"#));
    assert_eq!(
        e.to_string(),
        "$.algorthm: unknown field `algorthm`, expected one of `cluster`, `algorithm`, \
         `backends`, `discovery`, `target`, `least_request`, `least_time`, `hash_on`, `maglev`, `ring_hash`, \
         `balance_factor`, `client_side_weighted_round_robin`, `least_load`, `load_reports`, \
         `health_check`, `panic_threshold_percent`, `outlier_detection`, `slow_start_ms`, \
         `sticky`, `status`"
    );
    let e = refuse(&format!(r#"{{"backends":{ONE_BACKEND}}}"#));
    assert_eq!(
        e.to_string(),
        "$: missing field `cluster`; valid: an object with that field (see the config reference)"
    );
    let e = refuse(&with_backend(r#""id":"a","address":"10.0.0.1:80","weight":"3""#));
    assert_eq!(
        e.to_string(),
        r#"$.backends[0].weight: invalid type: string "3", expected an integer from 1 to 10000"#
    );
    let e = refuse(&with_backend(r#""id":"a","address":"10.0.0.1:80","weight":1.5"#));
    assert_eq!(
        e.to_string(),
        "$.backends[0].weight: invalid type: floating point `1.5`, expected an integer from 1 \
         to 10000"
    );
    let e = refuse(&with_backend(r#""id":"a","address":"10.0.0.1:80","weight":0"#));
    assert_eq!(
        e.to_string(),
        "$.backends[0].weight: 0 is out of range; valid: an integer from 1 to 10000"
    );
    let e = refuse(&format!(r#"{{"cluster":"c","algorithm":"rr","backends":{ONE_BACKEND}}}"#));
    assert_eq!(
        e.to_string(),
        "$.algorithm: unknown variant `rr`, expected one of `round_robin`, `random`, \
         `least_request`, `least_time`, `ring_hash`, `maglev`, `source_ip_hash`, \
         `client_side_weighted_round_robin`, `least_load`"
    );
    let e = refuse(&with_target(r#"{"mode":"header"}"#));
    assert_eq!(
        e.to_string(),
        "$.target.mode: unknown variant `header`, expected one of `override_host`, \
         `original_dst`, `cluster_header`"
    );
    let e = refuse(&with_target("[]"));
    assert_eq!(e.to_string(), "$.target: invalid type: sequence, expected a JSON object");
    let e = refuse("5");
    assert_eq!(e.to_string(), "$: invalid type: integer `5`, expected a JSON object");
}

#[test]
fn every_json_type_is_named_in_type_errors() {
    let not_strings = [
        ("true", "boolean `true`"),
        ("-1", "integer `-1`"),
        ("18446744073709551615", "integer `18446744073709551615`"),
        ("3.0", "floating point `3.0`"),
        ("1e300", "floating point `1e300`"),
        ("[1]", "sequence"),
        ("{}", "map"),
    ];
    for (value, found) in not_strings {
        let e = refuse(&with_target(&format!(r#"{{"header":{value}}}"#)));
        assert_eq!(e.path, "$.target.header");
        assert_eq!(e.message, format!("invalid type: {found}, expected a string"));
    }
    let not_integers = [
        ("false", "boolean `false`"),
        ("3.0", "floating point `3.0`"),
        (r#""x""#, r#"string "x""#),
        ("[1]", "sequence"),
        ("{}", "map"),
    ];
    for (value, found) in not_integers {
        let e = refuse(&with_target(&format!(r#"{{"max_hosts":{value}}}"#)));
        assert_eq!(e.path, "$.target.max_hosts");
        assert_eq!(e.message, format!("invalid type: {found}, expected an integer from 1 to 10"));
    }
}

#[test]
fn odd_keys_are_quoted_in_paths() {
    let e = refuse(&format!(r#"{{"cluster":"c","backends":{ONE_BACKEND},"odd key":1}}"#));
    assert_err(&e, r#"$["odd key"]"#, &["unknown field `odd key`"]);
    let e = refuse(&with_target(r#"{"":1}"#));
    assert_err(&e, r#"$.target[""]"#, &["unknown field ``"]);
    let long = "k".repeat(100);
    let e = refuse(&with_target(&format!(r#"{{"{long}":1}}"#)));
    let cut = format!("{}... (100 bytes)", "k".repeat(80));
    assert_eq!(e.path, format!(r#"$.target["{cut}"]"#));
    assert!(e.message.starts_with(&format!("unknown field `{cut}`")), "{e}");
}

#[test]
fn long_values_in_type_and_variant_errors_are_cut() {
    let long = "v".repeat(100);
    let cut = format!("{}... (100 bytes)", "v".repeat(80));
    let e = refuse(&with_target(&format!(r#"{{"max_hosts":"{long}"}}"#)));
    assert_eq!(
        e.message,
        format!(r#"invalid type: string "{cut}", expected an integer from 1 to 10"#)
    );
    let e = refuse(&with_target(&format!(r#"{{"mode":"{long}"}}"#)));
    assert_eq!(
        e.message,
        format!(
            "unknown variant `{cut}`, expected one of `override_host`, `original_dst`, \
             `cluster_header`"
        )
    );
}

#[test]
fn members_are_checked_in_document_order() {
    let e = refuse(r#"{"cluster":5,"bogus":1}"#);
    assert_eq!(e.path, "$.cluster", "{e}");
    let e = refuse(r#"{"bogus":1,"cluster":5}"#);
    assert_eq!(e.path, "$.bogus", "{e}");
    let e = refuse(r#"{"backends":7,"cluster":5}"#);
    assert_eq!(e.path, "$.backends", "{e}");
    // Shapes and types of the whole document are checked before any value is validated.
    let e = refuse(r#"{"cluster":"","backends":[{"id":"a","address":"10.0.0.1:80","weight":0}]}"#);
    assert_eq!(e.path, "$.backends[0].weight", "{e}");
    // Missing fields are reported after the object's members are checked.
    let e = refuse(r#"{"backends":[{"id":"a","address":"10.0.0.1:80","weight":0}]}"#);
    assert_eq!(e.path, "$.backends[0].weight", "{e}");
}

#[test]
fn duplicate_keys_are_refused_in_every_object() {
    let e = refuse(&with_backend(r#""id":"a","id":"b","address":"10.0.0.1:80""#));
    assert_eq!(
        e.to_string(),
        "$.backends[0]: duplicate field `id`; valid: each member at most once"
    );
    // A null counts as given: null then a value is still a duplicate.
    let e = refuse(&with_target(r#"{"header":null,"header":"x-h"}"#));
    assert_eq!(
        e.to_string(),
        "$.target: duplicate field `header`; valid: each member at most once"
    );
    let e = refuse(&format!(
        r#"{{"cluster":"c","backends":{ONE_BACKEND},"target":null,"target":{{}}}}"#
    ));
    assert_err(&e, "$", &["duplicate field `target`"]);
}

#[test]
fn null_means_absent_for_every_optional_field() {
    let c = parse(&format!(
        r#"{{"cluster":"c","algorithm":null,"backends":{ONE_BACKEND},"target":null,
            "least_request":null,"least_time":null,"hash_on":null,"maglev":null,
            "ring_hash":null,"balance_factor":null}}"#
    ));
    assert_eq!(c.algorithm, Algorithm::RoundRobin);
    assert_eq!(c.balancing, AlgorithmConfig::defaults(Algorithm::RoundRobin));
    assert_eq!(c.target.max_hosts, 3);
    let c = parse(&with_target(r#"{"mode":null}"#));
    assert_eq!(c.target.mode, TargetMode::OverrideHost);
    // A required field cannot be null.
    let e = refuse(&format!(r#"{{"cluster":null,"backends":{ONE_BACKEND}}}"#));
    assert_eq!(e.to_string(), "$.cluster: invalid type: null, expected a string");
    // backends is optional (with discovery): null means absent, refused without discovery.
    let e = refuse(r#"{"cluster":"c","backends":null}"#);
    assert_eq!(e.path, "$.backends", "{e}");
    assert!(e.message.starts_with("is empty or missing"), "{e}");
}

#[test]
fn enums_are_strings_only() {
    let e = refuse(&format!(r#"{{"cluster":"c","algorithm":1,"backends":{ONE_BACKEND}}}"#));
    assert_err(&e, "$.algorithm", &["invalid type: integer `1`", "`round_robin`"]);
    // serde's externally tagged form of a unit variant is not a documented spelling.
    let e = refuse(&format!(
        r#"{{"cluster":"c","algorithm":{{"random":null}},"backends":{ONE_BACKEND}}}"#
    ));
    assert_err(&e, "$.algorithm", &["invalid type: map", "`random`"]);
    let e = refuse(&with_target(r#"{"mode":{"override_host":null}}"#));
    assert_err(&e, "$.target.mode", &["invalid type: map", "expected one of `override_host`"]);
}

#[test]
fn type_errors_carry_no_position_but_syntax_errors_do() {
    let e = refuse(&with_target(r#"{"max_hosts":"3"}"#));
    assert!(!e.message.contains("line"), "{e}");
    let e = refuse(&format!("{}\n x", with_backends(ONE_BACKEND)));
    assert_err(&e, "$", &["trailing characters at line 2 column 2", "valid:"]);
}

#[test]
fn backups_and_panic_threshold() {
    let c = Config::from_json(
        br#"{"cluster":"c","backends":[{"id":"a","address":"10.0.0.1:80"},
            {"id":"b","address":"10.0.0.2:80","backup":true}],"panic_threshold_percent":0}"#,
    )
    .unwrap();
    assert_eq!(c.pool.iter().map(|b| b.backup).collect::<Vec<_>>(), vec![false, true]);
    assert_eq!(c.panic_threshold_percent, 0);
    let c = Config::from_json(with_backends(ONE_BACKEND).as_bytes()).unwrap();
    assert_eq!(c.panic_threshold_percent, 50, "Envoy's default");
    let e =
        refuse(r#"{"cluster":"c","backends":[{"id":"a","address":"10.0.0.1:80","backup":true}]}"#);
    assert_eq!(e.path, "$.backends");
    assert!(e.message.contains("only backups"), "{e}");
    let e = refuse(r#"{"cluster":"c","backends":[{"id":"a","address":"10.0.0.1:80","backup":1}]}"#);
    assert_eq!(e.path, "$.backends[0].backup");
    let e = refuse(&format!(
        r#"{{"cluster":"c","backends":{ONE_BACKEND},"panic_threshold_percent":101}}"#
    ));
    assert_eq!(e.path, "$.panic_threshold_percent");
    assert!(e.message.contains("from 0 to 100"), "{e}");
}

/// Where an array or an object is expected, serde_json words the wrong type itself: a long
/// string is still cut and a float still written short.
#[test]
fn long_values_where_a_block_is_expected_are_cut() {
    let long = "v".repeat(1 << 20);
    let e = refuse(&format!(r#"{{"cluster":"c","backends":{ONE_BACKEND},"target":"{long}"}}"#));
    assert_eq!(e.path, "$.target");
    let cut = format!("{}... ({} bytes)", "v".repeat(80), 1 << 20);
    assert_eq!(e.message, format!(r#"invalid type: string "{cut}", expected a JSON object"#));
    let e = refuse(r#"{"cluster":"c","backends":1e300}"#);
    assert_eq!(
        e.to_string(),
        "$.backends: invalid type: floating point `1e300`, expected a sequence"
    );
    let e = refuse(r#"{"cluster":"c","backends":[{"id":"a","address":"10.0.0.1:80"},"x"]}"#);
    assert_eq!(e.to_string(), r#"$.backends[1]: invalid type: string "x", expected a JSON object"#);
}

/// serde derive refuses a repeated member in every block, at the block's path, null or not.
#[test]
fn duplicate_keys_are_refused_at_every_nesting_level() {
    let base = r#""cluster":"c","backends":[{"id":"a","address":"10.0.0.1:80"}]"#;
    let cases = [
        (r#""algorithm":"ring_hash","hash_on":{"header":"x","header":"y"}"#, "$.hash_on", "header"),
        (
            r#""algorithm":"least_time","least_time":{"decay_ms":5,"decay_ms":null}"#,
            "$.least_time",
            "decay_ms",
        ),
        (
            r#""algorithm":"maglev","hash_on":{"source_ip":true},"maglev":{"table_size":null,"table_size":7}"#,
            "$.maglev",
            "table_size",
        ),
        (
            r#""outlier_detection":{"consecutive_errors":2,"consecutive_errors":2}"#,
            "$.outlier_detection",
            "consecutive_errors",
        ),
        (r#""status":{"allow_cidrs":["::1"],"allow_cidrs":["::1"]}"#, "$.status", "allow_cidrs"),
        (
            r#""health_check":{"expected_statuses":[[200,299]],"expected_statuses":[[200,299]]}"#,
            "$.health_check",
            "expected_statuses",
        ),
    ];
    for (extra, path, field) in cases {
        let e = refuse(&format!("{{{base},{extra}}}"));
        assert_eq!(
            e.to_string(),
            format!("{path}: duplicate field `{field}`; valid: each member at most once"),
            "{extra}"
        );
    }
}

/// `null` means absent inside blocks too: each member takes its default.
#[test]
fn null_means_absent_inside_blocks() {
    let c = parse(&format!(
        r#"{{"cluster":"c","backends":{ONE_BACKEND},
            "health_check":{{"path":null,"interval_ms":null,"timeout_ms":null,"healthy_threshold":null,
              "unhealthy_threshold":null,"expected_statuses":null,"jitter_ms":null,"host":null}},
            "outlier_detection":{{"consecutive_errors":null,"base_ejection_ms":null,
              "max_ejection_ms":null,"max_ejection_percent":null}},
            "sticky":{{"cookie":null,"secrets":null,"ttl_s":null,"path":null,"domain":null,
              "secure":null,"http_only":null,"same_site":null}},
            "status":{{"path":null,"allow_cidrs":null}},
            "panic_threshold_percent":null,"slow_start_ms":null}}"#
    ));
    let check = c.health_check.unwrap();
    assert_eq!((check.path.as_str(), check.interval_ms), ("/healthz", 2_000));
    assert_eq!(c.outlier_detection, Some(OutlierDetection::default()));
    assert_eq!(c.sticky.map(|s| s.ttl_s), Some(3600));
    assert_eq!(c.status.map(|s| s.path), Some(status::DEFAULT_STATUS_PATH.to_string()));
    assert_eq!((c.panic_threshold_percent, c.slow_start_ms), (50, 0));
    // A backend's optional members too.
    let c = parse(&with_backend(
        r#""id":"a","address":"10.0.0.1:80","cluster":null,"weight":null,"backup":null,"drain":null"#,
    ));
    assert_eq!(c.pool.get(0).map(|b| (b.weight, b.backup, b.drain)), Some((1, false, false)));
}

/// An unknown member deep inside is reported at its own path, with the block's members.
#[test]
fn unknown_fields_are_reported_at_their_own_path() {
    let e = refuse(&format!(
        r#"{{"cluster":"c","backends":{ONE_BACKEND},"status":{{"path":"/s","allow":[]}}}}"#
    ));
    assert_eq!(
        e.to_string(),
        "$.status.allow: unknown field `allow`, expected `path` or `allow_cidrs`"
    );
    let e = refuse(&with_backends(
        r#"[{"id":"a","address":"10.0.0.1:80"},{"id":"b","address":"10.0.0.2:80","Weight":2}]"#,
    ));
    assert_eq!(e.path, "$.backends[1].Weight", "{e}");
}

/// Huge, negative and fractional numbers where integers go: refused at their path with the
/// valid range (or, for a fraction, the expected integer).
#[test]
fn huge_and_negative_numbers_are_refused_with_the_range() {
    let cases = [
        ("4294967296", "4294967296 is out of range; valid: an integer from 0 to 100"),
        ("18446744073709551615", "18446744073709551615 is out of range"),
        ("1e400", "not valid JSON: number out of range"),
        ("-9223372036854775808", "-9223372036854775808 is out of range"),
        ("-1e30", "-1e30 is out of range; valid: an integer from 0 to 100"),
        ("50.5", "invalid type: floating point `50.5`, expected an integer from 0 to 100"),
    ];
    for (n, said) in cases {
        let e = refuse(&format!(
            r#"{{"cluster":"c","backends":{ONE_BACKEND},"panic_threshold_percent":{n}}}"#
        ));
        let path =
            if said.starts_with("not valid JSON") { "$" } else { "$.panic_threshold_percent" };
        assert_err(&e, path, &[said]);
    }
    let e = refuse(&format!(
        r#"{{"cluster":"c","algorithm":"maglev","hash_on":{{"source_ip":true}},"balance_factor":1e300,"backends":{ONE_BACKEND}}}"#
    ));
    assert_eq!(
        e.to_string(),
        "$.balance_factor: 1e300 is out of range; valid: a number from 1 to 100"
    );
}

/// Nesting deeper than serde_json's limit is a syntax error at `$`, wherever it is; inside a
/// status range it is quoted short.
#[test]
fn deep_nesting_is_refused_at_any_level() {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let e = refuse(&format!(
        r#"{{"cluster":"c","backends":{ONE_BACKEND},"health_check":{{"expected_statuses":[{deep}]}}}}"#
    ));
    assert_err(&e, "$", &["not valid JSON: recursion limit exceeded", "valid:"]);
    let nested = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let e = refuse(&format!(
        r#"{{"cluster":"c","backends":{ONE_BACKEND},"health_check":{{"expected_statuses":[{nested}]}}}}"#
    ));
    assert_eq!(e.path, "$.health_check.expected_statuses[0]");
    assert!(e.message.starts_with("[[...]] is not a status range"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// discovery
// ---------------------------------------------------------------------------------------------

#[test]
fn discovery_takes_defaults_and_makes_backends_optional() {
    let c = parse(r#"{"cluster":"pool","discovery":{"admin_cluster":"envoy_admin"}}"#);
    let d = c.discovery.unwrap();
    assert_eq!(d.admin_cluster, "envoy_admin");
    assert_eq!(d.cluster, "pool", "the top-level cluster by default");
    assert_eq!(d.source, DiscoverySource::Eds);
    assert_eq!((d.interval_ms, d.timeout_ms), (1000, 1000));
    assert_eq!(d.max_response_bytes, 8 * 1024 * 1024);
    assert!(c.pool.is_empty() && c.overrides.is_empty(), "the pool waits for a snapshot");
    let c = parse(
        r#"{"cluster":"pool","discovery":{"admin_cluster":"a","cluster":"dns","source":"clusters",
            "interval_ms":250,"max_response_bytes":65536},
            "backends":[{"id":"blue","address":"10.0.0.1:80","weight":5,"backup":true}]}"#,
    );
    let d = c.discovery.unwrap();
    assert_eq!(
        (d.cluster.as_str(), d.source, d.interval_ms, d.timeout_ms),
        ("dns", DiscoverySource::Clusters, 250, 250)
    );
    assert!(c.pool.is_empty());
    assert_eq!(c.overrides.len(), 1);
    assert!(c.overrides[0].backup && c.overrides[0].weight == 5);
}

#[test]
fn discovery_refusals_name_the_path_and_what_is_valid() {
    let cases = [
        (
            r#"{"admin_cluster":"pool"}"#,
            "$.discovery.admin_cluster",
            "is the cluster the filter steers to",
        ),
        (
            r#"{"admin_cluster":"a","cluster":"a"}"#,
            "$.discovery.admin_cluster",
            "valid: a separate cluster",
        ),
        (r#"{"admin_cluster":""}"#, "$.discovery.admin_cluster", "is not a cluster name"),
        (
            r#"{"admin_cluster":"a","interval_ms":99}"#,
            "$.discovery.interval_ms",
            "from 100 to 3600000",
        ),
        (
            r#"{"admin_cluster":"a","interval_ms":500,"timeout_ms":600}"#,
            "$.discovery.timeout_ms",
            "valid: 1 to 500",
        ),
        (
            r#"{"admin_cluster":"a","source":"dns"}"#,
            "$.discovery.source",
            "expected `eds` or `clusters`",
        ),
        (
            r#"{"admin_cluster":"a","max_response_bytes":10}"#,
            "$.discovery.max_response_bytes",
            "from 4096",
        ),
        (r#"{"interval_ms":1000}"#, "$.discovery", "missing field `admin_cluster`"),
        (r#"{"admin_cluster":"a","polling":1}"#, "$.discovery.polling", "unknown field"),
    ];
    for (block, path, says) in cases {
        let e = refuse(&format!(r#"{{"cluster":"pool","discovery":{block}}}"#));
        assert_err(&e, path, &[says]);
    }
    let e = refuse(
        r#"{"cluster":"pool","discovery":{"admin_cluster":"a"},"target":{"mode":"cluster_header"}}"#,
    );
    assert_err(&e, "$.discovery", &["does not apply with target.mode \"cluster_header\""]);
    // An id that would be another address's derived id is refused; its own address's is fine.
    let e = refuse(
        r#"{"cluster":"pool","discovery":{"admin_cluster":"a"},
            "backends":[{"id":"10.0.0.9_80","address":"10.0.0.1:80"}]}"#,
    );
    assert_err(&e, "$.backends[0].id", &["derived for the discovered endpoint 10.0.0.9:80"]);
    parse(
        r#"{"cluster":"pool","discovery":{"admin_cluster":"a"},
            "backends":[{"id":"10.0.0.1_80","address":"10.0.0.1:80","drain":true}]}"#,
    );
}
