//! A request's `Cookie` header: `hash_key::cookies` (the session cookie's candidates) and
//! `hash_key::cookie` (a hash key) never panic, return slices of the header that hold no `;`,
//! and agree: the key is the first candidate. The input is the header (the seeds are real
//! headers); the names looked up are fixed ones and names taken from the header itself, so that
//! lookups also hit.
#![no_main]

use envoy_lb::hash_key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let header = String::from_utf8_lossy(data);
    let header: &str = &header;
    let first = header.split(';').next().and_then(|p| p.split_once('=')).map(|(n, _)| n);
    let last = header.rsplit(';').next().and_then(|p| p.split_once('=')).map(|(n, _)| n);
    let mut names = vec!["lb_session", "session", "", " ", "="];
    for n in [first, last].into_iter().flatten() {
        names.push(n);
        names.push(n.trim_matches(|c| c == ' ' || c == '\t'));
    }
    for name in names {
        check(header, name);
    }
});

fn check(header: &str, name: &str) {
    let values: Vec<&str> = hash_key::cookies(header, name).collect();
    if name.is_empty() {
        assert!(values.is_empty(), "empty name matched {values:?}");
    }
    assert!(values.len() <= header.matches(';').count() + 1, "{values:?}");
    for v in &values {
        assert!(is_slice_of(v, header), "{v:?} is not a slice of {header:?}");
        assert!(!v.contains(';'), "{v:?} holds a ';'");
        // Each candidate comes after an `=` that follows the name.
        let at = v.as_ptr() as usize - header.as_ptr() as usize;
        assert!(header[..at].contains('='), "{v:?} at {at} follows no '='");
        assert!(header[..at].contains(name), "{v:?} at {at} follows no {name:?}");
    }
    let key = hash_key::cookie(header, name);
    assert_eq!(key, values.first().copied(), "hash key and first candidate differ for {name:?}");
    if let Some(k) = key {
        assert!(is_slice_of(k, header), "{k:?} is not a slice of {header:?}");
    }
}

/// Whether `part` lies inside `whole` (a borrowed slice of it, not merely equal text).
fn is_slice_of(part: &str, whole: &str) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}
