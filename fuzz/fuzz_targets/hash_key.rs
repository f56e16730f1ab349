//! Hash-key extraction: `source_ip`, `query` and `cookie` never panic on arbitrary text, and
//! what they return is sound (an IP address; a slice of the query; a slice of the header).
//! The input is also read as a socket address rendered the way Envoy writes
//! `source.address` (IPv4, IPv6, IPv4-mapped, with a zone): its key is that address's IP,
//! IPv4-mapped addresses as IPv4.
#![no_main]

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use arbitrary::{Arbitrary, Unstructured};
use envoy_lb::hash_key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;
    source_ip(text);
    query(text);
    cookie(text);
    let _ = rendered(&mut Unstructured::new(data));
    assert_eq!(hash_key::hash(data), hash_key::hash(data));
});

fn source_ip(text: &str) {
    let Some(ip) = hash_key::source_ip(text) else { return };
    let parsed: IpAddr = ip.parse().unwrap_or_else(|_| panic!("{ip:?} from {text:?} is no IP"));
    if let IpAddr::V6(v6) = parsed {
        assert_eq!(v6.to_ipv4_mapped(), None, "{text:?} gave the mapped {ip:?}");
    }
    if let Cow::Borrowed(b) = ip {
        assert!(is_slice_of(b, text), "{b:?} is not a slice of {text:?}");
    }
    let (_, port) = text.rsplit_once(':').unwrap_or_else(|| panic!("{text:?} has no port"));
    assert!(port.parse::<u16>().is_ok(), "port {port:?} of {text:?}");
}

fn query(path: &str) {
    let first = path
        .split_once('?')
        .and_then(|(_, q)| q.split('&').next())
        .map(|p| p.split_once('=').map_or(p, |(n, _)| n));
    for name in ["k", "user", ""].into_iter().chain(first) {
        let Some(v) = hash_key::query(path, name) else { continue };
        assert!(!name.is_empty(), "empty name matched {v:?}");
        if v.is_empty() {
            continue; // `?k` gives a static "", not a slice
        }
        assert!(is_slice_of(v, path), "{v:?} is not a slice of {path:?}");
        assert!(!v.contains('&') && !v.contains('#'), "{v:?} from {path:?}");
        let at = v.as_ptr() as usize - path.as_ptr() as usize;
        let q = path.find('?').unwrap_or_else(|| panic!("{v:?} from {path:?} without '?'"));
        assert!(q < at, "{v:?} at {at} before the '?' at {q}");
        if let Some(h) = path.find('#') {
            assert!(q < h && at <= h, "{v:?} at {at} from the fragment of {path:?}");
        }
    }
}

fn cookie(header: &str) {
    for name in ["lb_session", "k", ""] {
        if let Some(v) = hash_key::cookie(header, name) {
            assert!(!name.is_empty() && is_slice_of(v, header) && !v.contains(';'), "{v:?}");
        }
    }
}

/// A socket address as Envoy renders `source.address`, and the key it must give.
fn rendered(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let port = u16::arbitrary(u)?;
    let (text, want) = match u8::arbitrary(u)? % 4 {
        0 => {
            let ip = Ipv4Addr::from(u32::arbitrary(u)?);
            (SocketAddrV4::new(ip, port).to_string(), ip.to_string())
        }
        1 => {
            let ip = Ipv6Addr::from(u128::arbitrary(u)?);
            let scope = if bool::arbitrary(u)? { u32::arbitrary(u)? } else { 0 };
            let text = SocketAddrV6::new(ip, port, 0, scope).to_string();
            let want = ip.to_ipv4_mapped().map_or_else(|| ip.to_string(), |v4| v4.to_string());
            (text, want)
        }
        2 => {
            // IPv4-mapped, dotted tail (Envoy) or hex groups.
            let v4 = Ipv4Addr::from(u32::arbitrary(u)?);
            let text = if bool::arbitrary(u)? {
                SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), port).to_string()
            } else {
                let [a, b, c, d] = v4.octets();
                let (hi, lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
                format!("[::ffff:{hi:x}:{lo:x}]:{port}")
            };
            (text, v4.to_string())
        }
        _ => {
            // A named zone, as Envoy writes a link-local client.
            let ip = Ipv6Addr::from(u128::arbitrary(u)?);
            let zone: String = (0..1 + u8::arbitrary(u)? % 8)
                .map(|i| char::from(b"eth0wlan1-_."[usize::from(i.wrapping_mul(7)) % 12]))
                .collect();
            let want = ip.to_ipv4_mapped().map_or_else(|| ip.to_string(), |v4| v4.to_string());
            (format!("[{ip}%{zone}]:{port}"), want)
        }
    };
    let got = hash_key::source_ip(&text);
    assert_eq!(got.as_deref(), Some(want.as_str()), "source_ip({text:?})");
    Ok(())
}

/// Whether `part` lies inside `whole` (a borrowed slice of it, not merely equal text).
fn is_slice_of(part: &str, whole: &str) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}
