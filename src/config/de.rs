//! The plugin config's JSON reader: the text is parsed once into a [`Json`] tree, then plain
//! functions walk it with explicit JSON paths. Objects only, unknown and repeated members
//! refused, bounded numbers, and error messages worded like serde's that say what is valid.
//! Nothing here is generic over the config's types, so the filter carries one copy of it.

pub(super) use super::json::Json;
use super::ConfigError;

/// What serde calls a value of the wrong type: `integer `5``, `string "x"`, `null`, ...
fn unexpected(v: &Json) -> String {
    match v {
        Json::Null => "null".to_string(),
        Json::Bool(b) => format!("boolean `{b}`"),
        // The number as written (`3.0`, `1e300`).
        Json::Num(n) if n.is_f64() => format!("floating point `{n}`"),
        Json::Num(n) => format!("integer `{n}`"),
        Json::Str(s) => format!("string {:?}", shown(s)),
        Json::Arr(_) => "sequence".to_string(),
        Json::Obj(_) => "map".to_string(),
    }
}

/// `invalid type: <what was found>, expected <expected>` at `path`.
pub(super) fn invalid_type(path: &str, v: &Json, expected: &str) -> ConfigError {
    ConfigError::at(path, format!("invalid type: {}, expected {expected}", unexpected(v)))
}

/// serde's list of alternatives: `` `a` ``, `` `a` or `b` ``, `` one of `a`, `b`, `c` ``.
fn one_of(names: &[&str]) -> String {
    let mut out = String::new();
    if names.len() > 2 {
        out.push_str("one of ");
    }
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push_str(if names.len() == 2 { " or " } else { ", " });
        }
        out.push('`');
        out.push_str(name);
        out.push('`');
    }
    out
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

/// Walks the JSON object `v` at `path`. `fields` are its members in declaration order (the
/// order messages list them in, at most 32); bit `i` of `required` is set when `fields[i]`
/// must be present. Calls `member(i, value, value_path)` for each member in document order,
/// except an optional member whose value is `null`: that means absent. Refuses a value that
/// is not an object, an unknown member (at its own path), a repeated member and a missing
/// required one (at `path`).
pub(super) fn object(
    v: &Json,
    path: &str,
    fields: &[&str],
    required: u32,
    member: &mut dyn FnMut(usize, &Json, &str) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let Json::Obj(members) = v else {
        return Err(invalid_type(path, v, "a JSON object"));
    };
    let mut seen = 0u32;
    for (key, value) in members {
        let value_path = key_path(path, key);
        let Some(i) = fields.iter().position(|f| f == key) else {
            return Err(ConfigError::at(
                value_path,
                format!("unknown field `{}`, expected {}", shown(key), one_of(fields)),
            ));
        };
        let bit = 1u32 << i;
        if seen & bit != 0 {
            return Err(ConfigError::at(path, format!("duplicate field `{key}`")));
        }
        seen |= bit;
        if required & bit != 0 || !matches!(value, Json::Null) {
            member(i, value, &value_path)?;
        }
    }
    for (i, field) in fields.iter().enumerate() {
        if (required & !seen) & (1u32 << i) != 0 {
            return Err(ConfigError::at(
                path,
                format!(
                    "missing field `{field}`; valid: an object with that field \
                     (see the config reference)"
                ),
            ));
        }
    }
    Ok(())
}

/// The items of the JSON array `v` at `path`.
pub(super) fn array<'a>(v: &'a Json, path: &str) -> Result<&'a [Json], ConfigError> {
    match v {
        Json::Arr(items) => Ok(items),
        _ => Err(invalid_type(path, v, "a sequence")),
    }
}

/// A JSON string.
pub(super) fn string(v: &Json, path: &str) -> Result<String, ConfigError> {
    match v {
        Json::Str(s) => Ok(s.clone()),
        _ => Err(invalid_type(path, v, "a string")),
    }
}

/// A JSON boolean.
pub(super) fn boolean(v: &Json, path: &str) -> Result<bool, ConfigError> {
    match v {
        Json::Bool(b) => Ok(*b),
        _ => Err(invalid_type(path, v, "a boolean")),
    }
}

/// One of `names`, as its index.
pub(super) fn variant(v: &Json, path: &str, names: &[&str]) -> Result<usize, ConfigError> {
    let Json::Str(s) = v else {
        return Err(invalid_type(path, v, &one_of(names)));
    };
    names.iter().position(|n| n == s).ok_or_else(|| {
        ConfigError::at(path, format!("unknown variant `{}`, expected {}", shown(s), one_of(names)))
    })
}

/// A JSON integer within `min..=max` (a float such as `3.0` is not an integer).
pub(super) fn int(v: &Json, path: &str, min: u32, max: u32) -> Result<u32, ConfigError> {
    let expected = format!("an integer from {min} to {max}");
    match v {
        Json::Num(n) if !n.is_f64() => n
            .as_u64()
            .and_then(|u| u32::try_from(u).ok())
            .filter(|u| (min..=max).contains(u))
            .ok_or_else(|| {
                ConfigError::at(path, format!("{n} is out of range; valid: {expected}"))
            }),
        _ => Err(invalid_type(path, v, &expected)),
    }
}

/// A JSON number (integers accepted too) within `min..=max`.
pub(super) fn number(v: &Json, path: &str, min: u32, max: u32) -> Result<f64, ConfigError> {
    let expected = format!("a number from {min} to {max}");
    let Json::Num(n) = v else {
        return Err(invalid_type(path, v, &expected));
    };
    // A JSON number is always finite; `as_f64` rounds a large integer to the nearest double,
    // which is compared, while the message quotes the number as written.
    match n.as_f64() {
        x if x >= f64::from(min) && x <= f64::from(max) => Ok(x),
        _ => Err(ConfigError::at(path, format!("{n} is out of range; valid: {expected}"))),
    }
}

/// A value quoted in an error message, cut to 80 characters so a huge input makes a short line.
pub(super) fn shown(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}... ({} bytes)", s.get(..cut).unwrap_or(""), s.len()),
    }
}

/// 1 to 256 token characters (RFC 9110 `tchar`): header and cookie names.
pub(super) fn is_token(s: &str) -> bool {
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
