//! Deserialization helpers for the plugin config: objects only, bounded numbers whose serde
//! errors say what is valid, and JSON paths / short quoted values for error messages.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_path_to_error::Segment;

use super::ConfigError;

/// A struct that must be written as a JSON object: serde's derive would also accept an array
/// of the field values in order, skipping field names and `deny_unknown_fields`.
pub(super) struct Obj<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectOnly<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOnly<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(ObjectOnly(std::marker::PhantomData)).map(Obj)
    }
}

/// A JSON integer within `MIN..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Int<const MIN: i64, const MAX: i64>(pub i64);

impl<const MIN: i64, const MAX: i64> Int<MIN, MAX> {
    pub fn get(self) -> i64 {
        self.0
    }

    /// As usize: the bounds are checked, so only a negative MIN could fail (mapped to 0).
    pub fn usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(0)
    }
}

impl<'de, const MIN: i64, const MAX: i64> Deserialize<'de> for Int<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BoundedInt { min: MIN, max: MAX }).map(Int)
    }
}

/// Accepts a JSON integer within `min..=max`; the serde error says so in words.
struct BoundedInt {
    min: i64,
    max: i64,
}

impl BoundedInt {
    fn check<E: de::Error>(&self, v: i128) -> Result<i64, E> {
        if v < i128::from(self.min) || v > i128::from(self.max) {
            return Err(E::custom(format!(
                "{v} is out of range; valid: an integer from {} to {}",
                self.min, self.max
            )));
        }
        i64::try_from(v).map_err(|_| E::custom("integer out of range"))
    }
}

impl<'de> Visitor<'de> for BoundedInt {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an integer from {} to {}", self.min, self.max)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        self.check(i128::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        self.check(i128::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        Err(E::invalid_type(de::Unexpected::Float(v), &self))
    }
}

/// A JSON number within `min..=max` (integers accepted too).
pub(super) fn number_in<'de, D: Deserializer<'de>>(
    d: D,
    min: f64,
    max: f64,
) -> Result<f64, D::Error> {
    struct BoundedNumber {
        min: f64,
        max: f64,
    }
    impl BoundedNumber {
        fn check<E: de::Error>(&self, v: f64) -> Result<f64, E> {
            if v.is_finite() && v >= self.min && v <= self.max {
                Ok(v)
            } else {
                Err(E::custom(format!(
                    "{v} is out of range; valid: a number from {} to {}",
                    self.min, self.max
                )))
            }
        }
    }
    impl<'de> Visitor<'de> for BoundedNumber {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a number from {} to {}", self.min, self.max)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            self.check(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            self.check(v as f64)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            self.check(v as f64)
        }
    }
    d.deserialize_any(BoundedNumber { min, max })
}

pub(super) fn serde_error(e: serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
    let path = json_path(e.path());
    let inner = e.into_inner();
    let text = inner.to_string();
    let message = if inner.is_syntax() || inner.is_eof() {
        format!("not valid JSON: {text}; valid: one JSON object (see the config reference)")
    } else if text.starts_with("missing field") {
        format!("{text}; valid: an object with that field (see the config reference)")
    } else {
        text
    };
    ConfigError::at(path, message)
}

/// `$`, then `.name` or `["odd name"]` per object key and `[i]` per array index; stops at the
/// first segment serde could not name (a syntax error between members).
fn json_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::from("$");
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                let plain = !key.is_empty()
                    && key.len() <= 64
                    && key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
                if plain {
                    out.push('.');
                    out.push_str(key);
                } else {
                    out.push_str(&format!("[{:?}]", shown(key)));
                }
            }
            Segment::Unknown => break,
        }
    }
    out
}

/// A value quoted in an error message, cut to 80 characters so a huge input makes a short line.
pub(super) fn shown(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}... ({} bytes)", s.get(..cut).unwrap_or(""), s.len()),
    }
}

/// An HTTP header name (RFC 9110 token), returned lower-case as Envoy stores it.
pub(super) fn header_name(h: &str, example: &str) -> Result<String, String> {
    const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~";
    let ok = !h.is_empty()
        && h.len() <= 256
        && h.bytes().all(|c| c.is_ascii_alphanumeric() || TCHAR.contains(&c));
    if ok {
        Ok(h.to_ascii_lowercase())
    } else {
        Err(format!(
            "{:?} is not a header name; valid: 1 to 256 token characters (RFC 9110), \
             e.g. {example}",
            shown(h)
        ))
    }
}
