//! Native tests of the request hash and key extraction: golden xxHash64 vectors, source
//! addresses, cookie and query parsing edge cases, and property tests on arbitrary text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use proptest::prelude::*;
use std::borrow::Cow;
use std::net::Ipv4Addr;

/// Golden vectors, computed independently with the reference C library (libxxhash 0.8.1,
/// `XXH64(data, len, 0)` through Python ctypes). `""` and `"a"` are also xxHash's own published
/// sanity values. A change here moves every key to another backend on every proxy.
#[test]
fn hash_golden_vectors() {
    assert_eq!(hash(b""), 0xEF46_DB37_51D8_E999);
    assert_eq!(hash(b"a"), 0xD24E_C4F1_A98C_6E5B);
    assert_eq!(hash(b"10.0.0.1"), 0xED16_CB68_C786_E3D7);
}

#[test]
fn hash_depends_on_every_byte() {
    assert_ne!(hash(b"10.0.0.1"), hash(b"10.0.0.2"));
    assert_ne!(hash(b"a"), hash(b"a\0"));
}

/// `source_ip` as a borrowed slice of its input (panics when it is owned).
fn ip(address: &str) -> Option<&str> {
    source_ip(address).map(|ip| match ip {
        Cow::Borrowed(ip) => ip,
        Cow::Owned(ip) => panic!("{address:?} gave an owned {ip:?}"),
    })
}

#[test]
fn source_ip_v4_and_v6() {
    assert_eq!(ip("1.2.3.4:5678"), Some("1.2.3.4"));
    assert_eq!(ip("10.0.0.1:0"), Some("10.0.0.1"));
    assert_eq!(ip("255.255.255.255:65535"), Some("255.255.255.255"));
    assert_eq!(ip("[::1]:5678"), Some("::1"));
    assert_eq!(ip("[2001:db8::8a2e:370:7334]:443"), Some("2001:db8::8a2e:370:7334"));
    // IPv6 is returned as written, not canonicalised.
    assert_eq!(ip("[2001:DB8:0::1]:443"), Some("2001:DB8:0::1"));
}

/// A dual-stack listener reports an IPv4 client as IPv4-mapped IPv6: the same key either way.
#[test]
fn source_ip_ipv4_mapped_is_the_ipv4_address() {
    assert_eq!(ip("[::ffff:10.1.2.3]:5555"), Some("10.1.2.3"));
    assert_eq!(ip("[::ffff:1.2.3.4]:80"), Some("1.2.3.4"));
    assert_eq!(ip("[::FFFF:1.2.3.4]:80"), Some("1.2.3.4"));
    assert_eq!(ip("[0:0:0:0:0:ffff:1.2.3.4]:80"), Some("1.2.3.4"));
    assert_eq!(ip("[::ffff:0.0.0.0]:80"), Some("0.0.0.0"));
    assert_eq!(ip("[::ffff:10.1.2.3%eth0]:80"), Some("10.1.2.3"));
    let key = |a: &str| hash(source_ip(a).unwrap().as_bytes());
    assert_eq!(key("[::ffff:10.1.2.3]:5555"), key("10.1.2.3:443"));
    assert_eq!(key("[::ffff:10.1.2.3]:5555"), hash(b"10.1.2.3"));
    // Written in hex, the IPv4 text must be built: owned, same text.
    for hex in ["[::ffff:a01:203]:80", "[::ffff:0a01:0203]:80", "[0:0:0:0:0:FFFF:A01:203]:1"] {
        assert!(matches!(source_ip(hex), Some(Cow::Owned(t)) if t == "10.1.2.3"), "{hex}");
    }
    // Not mapped: IPv4-compatible (deprecated), IPv4-translated and NAT64 addresses stay IPv6.
    assert_eq!(ip("[::1.2.3.4]:80"), Some("::1.2.3.4"));
    assert_eq!(ip("[::ffff:0:1.2.3.4]:80"), Some("::ffff:0:1.2.3.4"));
    assert_eq!(ip("[64:ff9b::1.2.3.4]:80"), Some("64:ff9b::1.2.3.4"));
    assert_eq!(ip("[::fffe:1.2.3.4]:80"), Some("::fffe:1.2.3.4"));
}

#[test]
fn source_ip_drops_the_ipv6_zone() {
    assert_eq!(ip("[fe80::1%eth0]:80"), Some("fe80::1"));
    assert_eq!(ip("[fe80::1%3]:80"), Some("fe80::1"));
    assert_eq!(ip("[fe80::1%en0.100_a-b]:80"), Some("fe80::1"));
    let key = |a: &str| hash(source_ip(a).unwrap().as_bytes());
    assert_eq!(key("[fe80::1%eth0]:80"), key("[fe80::1%eth1]:80"));
    assert_eq!(key("[fe80::1%eth0]:80"), key("[fe80::1]:81"));
}

#[test]
fn source_ip_malformed_is_none() {
    for bad in [
        "",
        ":",
        "1.2.3.4",
        "1.2.3.4:",
        "1.2.3.4:65536",
        "1.2.3.4:99999999999999999999",
        "1.2.3.4:-1",
        "1.2.3.4:+80",
        "1.2.3.4:8a",
        "1.2.3:80",
        "256.1.1.1:80",
        "01.2.3.4:80",
        "a.b.c.d:80",
        " 1.2.3.4:80",
        "1.2.3.4:80 ",
        "1.2.3.4 :80",
        "::1",
        "::1:80",
        "[::1]",
        "[::1]:",
        "[::1:80",
        "::1]:80",
        "[[::1]]:80",
        "[1.2.3.4]:80",
        "[fe80::1%]:80",
        "[fe80::1%a b]:80",
        "[%eth0]:80",
        "/var/run/envoy.sock",
        "@abstract",
        "localhost:80",
    ] {
        assert_eq!(source_ip(bad), None, "{bad:?}");
    }
}

#[test]
fn cookie_basic_and_spacing() {
    let h = "a=1; b=2";
    assert_eq!(cookie(h, "a"), Some("1"));
    assert_eq!(cookie(h, "b"), Some("2"));
    assert_eq!(cookie(h, "c"), None);
    let odd = "  a = 1 ;b=2;;  ;\tc\t=\t3\t; ;d=";
    assert_eq!(cookie(odd, "a"), Some("1"));
    assert_eq!(cookie(odd, "b"), Some("2"));
    assert_eq!(cookie(odd, "c"), Some("3"));
    assert_eq!(cookie(odd, "d"), Some(""));
}

#[test]
fn cookie_values_names_duplicates_quotes() {
    // A value may contain '=': only the first '=' separates.
    assert_eq!(cookie("tok=abc==; x=1", "tok"), Some("abc=="));
    assert_eq!(cookie("a=b=c", "a"), Some("b=c"));
    // Duplicates: the first wins.
    assert_eq!(cookie("a=1; a=2", "a"), Some("1"));
    assert_eq!(cookie("x=0; a=; a=2", "a"), Some(""));
    // Names are compared exactly and case-sensitively.
    assert_eq!(cookie("A=1; a=2", "a"), Some("2"));
    assert_eq!(cookie("A=1; a=2", "A"), Some("1"));
    assert_eq!(cookie("ab=1; b=2", "a"), None);
    assert_eq!(cookie("a=1", "ab"), None);
    assert_eq!(cookie("xa=1", "a"), None);
    // A piece without '=' is no cookie, even when it spells the name.
    assert_eq!(cookie("a; b=2", "a"), None);
    assert_eq!(cookie("b=a", "a"), None);
    // Quotes around the value are removed; a lone quote stays.
    assert_eq!(cookie(r#"s="xyz"; t=1"#, "s"), Some("xyz"));
    assert_eq!(cookie(r#"s= "x y" "#, "s"), Some("x y"));
    assert_eq!(cookie(r#"s="""#, "s"), Some(""));
    assert_eq!(cookie(r#"s=""#, "s"), Some("\""));
    assert_eq!(cookie(r#"s="abc"#, "s"), Some("\"abc"));
    // Empty headers and empty names.
    assert_eq!(cookie("", "a"), None);
    assert_eq!(cookie(";;; ;", "a"), None);
    assert_eq!(cookie("=v; a=1", ""), None);
    assert_eq!(cookie("a=1", ""), None);
}

#[test]
fn cookie_many_and_huge_headers() {
    let many: String = (0..200).map(|i| format!("c{i}=v{i}")).collect::<Vec<_>>().join("; ");
    for i in 0..200 {
        assert_eq!(cookie(&many, &format!("c{i}")), Some(format!("v{i}").as_str()));
    }
    assert_eq!(cookie(&many, "c200"), None);

    let mut huge = "x=1; ".repeat(200_000); // 1 MB
    huge.push_str("target=found; ");
    huge.push_str(&"y".repeat(1 << 20));
    assert_eq!(cookie(&huge, "target"), Some("found"));
    assert_eq!(cookie(&huge, "x"), Some("1"));
    assert_eq!(cookie(&huge, "missing"), None);
    let long_value = format!("big={}", "v".repeat(1 << 20));
    assert_eq!(cookie(&long_value, "big").map(str::len), Some(1 << 20));
}

#[test]
fn query_basic_and_fragment() {
    let p = "/x?a=1&b=2#frag";
    assert_eq!(query(p, "a"), Some("1"));
    assert_eq!(query(p, "b"), Some("2"));
    assert_eq!(query(p, "frag"), None);
    assert_eq!(query("/x?a=1#c=3&d=4", "c"), None);
    assert_eq!(query("/x?a=1#c=3&d=4", "d"), None);
    assert_eq!(query("/x#f?a=1", "a"), None);
    assert_eq!(query("/x?a=1#", "a"), Some("1"));
}

#[test]
fn query_edge_cases() {
    // Present without '=' gives an empty value; the first occurrence wins.
    assert_eq!(query("/x?a&b=2", "a"), Some(""));
    assert_eq!(query("/x?a=&b=2", "a"), Some(""));
    assert_eq!(query("/x?a&a=2", "a"), Some(""));
    assert_eq!(query("/x?b=1&a=2&a=3", "a"), Some("2"));
    // Raw: no percent-decoding, no '+' to space, exact case-sensitive names.
    assert_eq!(query("/x?q=a%20b+c", "q"), Some("a%20b+c"));
    assert_eq!(query("/x?k%65y=1", "key"), None);
    assert_eq!(query("/x?k%65y=1", "k%65y"), Some("1"));
    assert_eq!(query("/x?A=1", "a"), None);
    assert_eq!(query("/x?ab=1", "a"), None);
    // Values may hold '=' and '?'.
    assert_eq!(query("/x?a=b=c", "a"), Some("b=c"));
    assert_eq!(query("/x?a=1?b=2", "a"), Some("1?b=2"));
    assert_eq!(query("/x?a=1?b=2", "b"), None);
    // Empty pieces, no query, empty names.
    assert_eq!(query("/x?&&a=1&", "a"), Some("1"));
    assert_eq!(query("/x", "a"), None);
    assert_eq!(query("/x?", "a"), None);
    assert_eq!(query("?a=1", "a"), Some("1"));
    assert_eq!(query("", "a"), None);
    assert_eq!(query("/x?=1&a=2", ""), None);
    assert_eq!(query("/x?a=1", ""), None);
}

#[test]
fn query_many_and_huge() {
    let many: String =
        format!("/p?{}", (0..200).map(|i| format!("k{i}=v{i}")).collect::<Vec<_>>().join("&"));
    for i in 0..200 {
        assert_eq!(query(&many, &format!("k{i}")), Some(format!("v{i}").as_str()));
    }
    let huge = format!("/p?{}&target=found", "x=1&".repeat(250_000));
    assert_eq!(query(&huge, "target"), Some("found"));
}

proptest! {
    /// Every IPv4 client gets the same key whether reported as IPv4 or IPv4-mapped IPv6, in
    /// dotted or hex form (the hex form is the only owned result), any port, any zone.
    #[test]
    fn ipv4_and_ipv4_mapped_sources_give_the_same_text(
        v4 in any::<u32>(),
        port in any::<u16>(),
        zone in prop::option::of("[a-z0-9]{1,6}"),
    ) {
        let v4 = Ipv4Addr::from(v4);
        let text = v4.to_string();
        let zone = zone.map_or(String::new(), |z| format!("%{z}"));
        let [a, b, c, d] = v4.octets();
        let (hi, lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
        let mapped = v4.to_ipv6_mapped();
        let dotted = format!("[::ffff:{v4}{zone}]:{port}");
        for address in [format!("{v4}:{port}"), dotted, format!("[{mapped}{zone}]:{port}")] {
            prop_assert_eq!(ip(&address), Some(text.as_str()));
        }
        let hex = format!("[::ffff:{hi:x}:{lo:x}{zone}]:{port}");
        prop_assert!(matches!(source_ip(&hex), Some(Cow::Owned(t)) if t == text), "{}", hex);
    }
}

/// The separators a client may put between cookies.
fn separator() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("; "), Just(";"), Just(" ;  "), Just(";\t"), Just("; ; ")]
}

proptest! {
    #[test]
    fn nothing_panics_and_results_are_slices_of_the_input(s in any::<String>(), name in any::<String>()) {
        let _ = hash(s.as_bytes());
        if let Some(ip) = source_ip(&s) {
            // Borrowed: a slice of the input; an IP address, no zone, never IPv4-mapped.
            prop_assert!(matches!(ip, Cow::Owned(_)) || s.contains(&*ip));
            match ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(v6)) => prop_assert!(v6.to_ipv4_mapped().is_none()),
                Ok(std::net::IpAddr::V4(_)) => {}
                Err(e) => prop_assert!(false, "{ip:?}: {e}"),
            }
        }
        if let Some(v) = cookie(&s, &name) {
            prop_assert!(s.contains(v));
            prop_assert!(!v.contains(';'));
        }
        if let Some(v) = query(&s, &name) {
            prop_assert!(s.contains(v));
            prop_assert!(!v.contains('&') && !v.contains('#'));
        }
    }

    #[test]
    fn structured_text_does_not_panic(s in "[\\[\\]:;=&?#%\" \t0-9a-f.]{0,40}", name in "[a=;]{0,2}") {
        let _ = (source_ip(&s), cookie(&s, &name), query(&s, &name));
    }

    #[test]
    fn cookie_finds_the_first_pair_of_a_name(
        pairs in prop::collection::vec(("[a-c]{1,2}", "[a-z0-9=]{0,5}"), 0..12),
        seps in prop::collection::vec(separator(), 12),
        name in "[a-c]{1,2}",
    ) {
        let mut header = String::new();
        for (k, ((n, v), sep)) in pairs.iter().zip(&seps).enumerate() {
            if k > 0 {
                header.push_str(sep);
            }
            header.push_str(&format!("{n}={v}"));
        }
        let expected = pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        prop_assert_eq!(cookie(&header, &name), expected);
    }

    #[test]
    fn query_finds_the_first_param_of_a_name(
        params in prop::collection::vec(("[a-c]{1,2}", prop::option::of("[a-z0-9=%+]{0,5}")), 0..12),
        name in "[a-c]{1,2}",
    ) {
        let rendered: Vec<String> = params
            .iter()
            .map(|(n, v)| v.as_ref().map_or(n.clone(), |v| format!("{n}={v}")))
            .collect();
        let path = format!("/p?{}#{}=frag", rendered.join("&"), name);
        let expected = params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""));
        prop_assert_eq!(query(&path, &name), expected);
    }
}

fn all(header: &str, name: &str) -> Vec<String> {
    cookies(header, name).map(str::to_owned).collect()
}

#[test]
fn cookies_in_order_with_duplicates() {
    assert_eq!(all("a=1; lb=x; b=2; lb=y", "lb"), ["x", "y"]);
    assert_eq!(all("lb=x;lb=x", "lb"), ["x", "x"]);
    assert_eq!(all("lb=a=b==; c=d", "lb"), ["a=b=="]);
    assert_eq!(all("  lb \t=\t \"quoted\"  ;;; ; lb=\"\" ;lb=", "lb"), ["quoted", "", ""]);
    assert_eq!(all("lb=\"half; lb=\"", "lb"), ["\"half", "\""]);
    assert_eq!(all("LB=1; lb2=2; xlb=3; lb; =lb; lb =4", "lb"), ["4"]);
    assert_eq!(all("", "lb"), Vec::<String>::new());
    assert_eq!(all(";;;", "lb"), Vec::<String>::new());
    assert_eq!(all("=1; a=2", ""), Vec::<String>::new());
}

#[test]
fn cookies_on_a_huge_header() {
    let header = "x=1; ".repeat(100_000) + "lb=found";
    assert_eq!(all(&header, "lb"), ["found"]);
    let many = "lb=v;".repeat(50_000);
    assert_eq!(cookies(&many, "lb").count(), 50_000);
}

proptest! {
    #[test]
    fn cookies_never_panics_and_yields_slices(
        header in "[a-c=; \t\"]{0,64}|\\PC{0,64}",
        name in "[a-c]{0,2}|\\PC{0,4}",
    ) {
        for v in cookies(&header, &name) {
            prop_assert!(header.contains(v));
            prop_assert!(is_slice_of(v, &header));
        }
    }

    #[test]
    fn cookies_finds_what_was_put(
        before in prop::collection::vec(("[a-z]{1,4}", "[a-zA-Z0-9=_-]{0,8}"), 0..8),
        value in "[A-Za-z0-9_=-]{0,20}",
    ) {
        let mut header: Vec<String> = before.iter().map(|(n, v)| format!("{n}={v}")).collect();
        header.push(format!("lb_session={value}"));
        let header = header.join("; ");
        prop_assert_eq!(cookies(&header, "lb_session").next(), Some(value.as_str()));
    }
}

/// `part` lies inside `whole` (pointer range), i.e. it is a slice of it, not a copy.
fn is_slice_of(part: &str, whole: &str) -> bool {
    let (start, end) = (whole.as_ptr() as usize, whole.as_ptr() as usize + whole.len());
    let p = part.as_ptr() as usize;
    p >= start && p + part.len() <= end
}
