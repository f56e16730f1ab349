//! Checks and renderings of config strings shared by every block: a hostile string quoted
//! bounded in messages ([`shown`]), RFC 9110 tokens (header and cookie names), JSON paths.

/// A value quoted in an error message, cut to 80 characters so a huge input makes a short line.
pub(super) fn shown(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}... ({} bytes)", s.get(..cut).unwrap_or(""), s.len()),
    }
}

/// 1 to 256 token characters (RFC 9110 `tchar`): header and cookie names.
fn is_token(s: &str) -> bool {
    const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~";
    !s.is_empty()
        && s.len() <= 256
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || TCHAR.contains(&c))
}

/// An HTTP header name (RFC 9110 token), returned lower-case as Envoy stores it.
pub(super) fn header_name(h: &str, example: &str) -> Result<String, String> {
    if is_token(h) {
        Ok(h.to_ascii_lowercase())
    } else {
        Err(format!(
            "{:?} is not a header name; valid: 1 to 256 token characters (RFC 9110), \
             e.g. {example}",
            shown(h)
        ))
    }
}

/// A cookie name: an RFC 6265 token (RFC 9110 tchar), 1 to 256 characters.
pub(super) fn cookie_name(c: &str, example: &str) -> Result<String, String> {
    if is_token(c) {
        Ok(c.to_string())
    } else {
        Err(format!(
            "{:?} is not a cookie name; valid: 1 to 256 token characters (RFC 6265), e.g. \
             {example}",
            shown(c)
        ))
    }
}

/// `path` extended by an object key: `.name`, or `["odd name"]` for a key that is not a plain
/// identifier.
pub(super) fn key_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{:?}]", shown(key))
    }
}

/// serde's list of alternatives: `` `a` ``, `` `a` or `b` ``, `` one of `a`, `b`, `c` ``.
pub(super) fn one_of<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> String {
    let n = names.len();
    let mut out = String::from(if n > 2 { "one of " } else { "" });
    for (i, name) in names.enumerate() {
        if i > 0 {
            out.push_str(if n == 2 { " or " } else { ", " });
        }
        out.push('`');
        out.push_str(name);
        out.push('`');
    }
    out
}
