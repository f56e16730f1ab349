//! The plugin config's JSON reader, on serde: serde_json parses, serde derive matches each
//! object's members BY NAME (`deny_unknown_fields`, repeated members refused), and
//! serde_path_to_error names the JSON path of a refusal. The leaf types here ([`Str`],
//! [`Flag`], [`Int`], [`Num`], [`List`], [`Obj`], [`Name`]) accept only their own JSON type
//! (no struct from an array, no enum from a map) and word every refusal: what was found
//! (long strings cut, numbers as written) and what is valid. `null` for an optional member
//! (`Option<_>`) means absent.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::error::Category;
use serde_path_to_error::Segment;

use super::text::{key_path, one_of, shown};
use super::ConfigError;

/// Reads `bytes` as a `T`: syntax first, over the whole text, so a syntax error anywhere is
/// reported as such at `$` with its line and column; then shapes and types, member by member
/// in document order, each refusal at its JSON path.
pub(super) fn parse<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, ConfigError> {
    serde_json::from_slice::<Syntax>(bytes).map_err(|e| not_json(&e))?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| located(&e))?;
    de.end().map_err(|e| not_json(&e))?;
    Ok(value)
}

/// A JSON document as a `Value`, read by the same code as the configuration (so the filter holds
/// one copy of serde_json's `Value` reader, not two: a load report's JSON form uses it).
pub(crate) fn json_value(bytes: &[u8]) -> Option<serde_json::Value> {
    parse(bytes).ok()
}

/// Any JSON value, read as serde_json reads a `Value` (same errors: UTF-8, escapes, nesting
/// limit, trailing commas) but kept nowhere.
struct Syntax;

impl<'de> Deserialize<'de> for Syntax {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SyntaxVisitor)
    }
}

struct SyntaxVisitor;

impl<'de> Visitor<'de> for SyntaxVisitor {
    type Value = Syntax;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Syntax, E> {
        Ok(Syntax)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Syntax, E> {
        Ok(Syntax)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Syntax, E> {
        Ok(Syntax)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Syntax, E> {
        Ok(Syntax)
    }
    fn visit_str<E>(self, _: &str) -> Result<Syntax, E> {
        Ok(Syntax)
    }
    fn visit_unit<E>(self) -> Result<Syntax, E> {
        Ok(Syntax)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Syntax, A::Error> {
        while a.next_element::<Syntax>()?.is_some() {}
        Ok(Syntax)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Syntax, A::Error> {
        while a.next_entry::<Syntax, Syntax>()?.is_some() {}
        Ok(Syntax)
    }
}

fn not_json(e: &serde_json::Error) -> ConfigError {
    ConfigError::at(
        "$",
        format!("not valid JSON: {e}; valid: one JSON object (see the config reference)"),
    )
}

/// A refusal of the typed pass at its JSON path; serde_json's position is dropped (the path
/// says where), and serde derive's own messages get what is valid.
fn located(e: &serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
    let inner = e.inner();
    if inner.classify() != Category::Data {
        return not_json(inner);
    }
    let mut path = String::from("$");
    let mut last_key = None;
    for segment in e.path().iter() {
        last_key = None;
        match segment {
            Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                path = key_path(&path, key);
                last_key = Some(key.as_str());
            }
            Segment::Unknown => path.push_str("[?]"),
        }
    }
    let text = inner.to_string();
    let position = format!(" at line {} column {}", inner.line(), inner.column());
    let text = text.strip_suffix(&position).unwrap_or(&text);
    let message = if let Some(rest) = last_key
        .and_then(|key| text.strip_prefix(&format!("unknown field `{key}`")).map(|r| (key, r)))
    {
        // serde quotes the whole key: cut it like every other quoted value.
        format!("unknown field `{}`{}", shown(rest.0), rest.1)
    } else if text.starts_with("missing field") {
        format!("{text}; valid: an object with that field (see the config reference)")
    } else if text.starts_with("duplicate field") {
        format!("{text}; valid: each member at most once")
    } else {
        reworded(text).unwrap_or_else(|| text.to_string())
    };
    ConfigError::at(path, message)
}

/// serde_json words a wrong type itself where an array or an object is expected: a long
/// string is quoted cut (its size counted as quoted, escapes included) and a float written
/// short (`1e300`, not 301 digits), as [`Found`] does.
fn reworded(text: &str) -> Option<String> {
    let (found, expected) = text.strip_prefix("invalid type: ")?.rsplit_once(", expected ")?;
    if !matches!(expected, "a JSON object" | "a sequence") {
        return None;
    }
    let found = if let Some(quoted) = found.strip_prefix("string \"") {
        format!("string \"{}\"", shown(quoted.strip_suffix('"')?))
    } else {
        let x: f64 = found.strip_prefix("floating point `")?.strip_suffix('`')?.parse().ok()?;
        Found::Float(x).to_string()
    };
    Some(format!("invalid type: {found}, expected {expected}"))
}

/// A JSON value of the wrong type, worded like serde.
pub(super) enum Found<'a> {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(&'a str),
    Seq,
    Map,
}

impl fmt::Display for Found<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Null => f.write_str("null"),
            Found::Bool(b) => write!(f, "boolean `{b}`"),
            Found::Unsigned(n) => write!(f, "integer `{n}`"),
            Found::Signed(n) => write!(f, "integer `{n}`"),
            // `{:?}` keeps `3.0` and writes `1e300` short.
            Found::Float(x) => write!(f, "floating point `{x:?}`"),
            Found::Str(s) => write!(f, "string {:?}", shown(s)),
            Found::Seq => f.write_str("sequence"),
            Found::Map => f.write_str("map"),
        }
    }
}

/// A config value read from exactly one JSON type; every other type is refused by `wrong`.
pub(super) trait Shape<'de>: Sized {
    /// What is valid, after "expected ".
    fn expecting() -> String;
    /// The refusal of a value of the wrong type.
    fn wrong(found: Found<'_>) -> String {
        format!("invalid type: {found}, expected {}", Self::expecting())
    }
    fn boolean(b: bool) -> Result<Self, String> {
        Err(Self::wrong(Found::Bool(b)))
    }
    fn unsigned(n: u64) -> Result<Self, String> {
        Err(Self::wrong(Found::Unsigned(n)))
    }
    fn signed(n: i64) -> Result<Self, String> {
        Err(Self::wrong(Found::Signed(n)))
    }
    fn float(x: f64) -> Result<Self, String> {
        Err(Self::wrong(Found::Float(x)))
    }
    fn string(s: &str) -> Result<Self, String> {
        Err(Self::wrong(Found::Str(s)))
    }
    fn seq<A: SeqAccess<'de>>(_: A) -> Result<Self, A::Error> {
        Err(de::Error::custom(Self::wrong(Found::Seq)))
    }
    fn map<A: MapAccess<'de>>(_: A) -> Result<Self, A::Error> {
        Err(de::Error::custom(Self::wrong(Found::Map)))
    }
}

struct Via<T>(PhantomData<T>);

/// Deserializes a [`Shape`] that is a JSON array or object: serde_json hands every JSON type
/// to the shape.
pub(super) fn any<'de, T: Shape<'de>, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(Via(PhantomData))
}

impl<'de, T: Shape<'de>> Visitor<'de> for Via<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&T::expecting())
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<T, E> {
        T::boolean(b).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<T, E> {
        T::unsigned(n).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
        T::signed(n).map_err(E::custom)
    }
    fn visit_f64<E: de::Error>(self, x: f64) -> Result<T, E> {
        T::float(x).map_err(E::custom)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        T::string(s).map_err(E::custom)
    }
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Err(E::custom(T::wrong(Found::Null)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, a: A) -> Result<T, A::Error> {
        T::seq(a)
    }
    fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<T, A::Error> {
        T::map(a)
    }
}

/// Deserializes a [`Shape`] that is a JSON array; serde_json refuses other types itself.
fn seq<'de, T: Shape<'de>, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_seq(Via(PhantomData))
}

/// Deserializes a [`Shape`] that is a JSON object; serde_json refuses other types itself.
fn map<'de, T: Shape<'de>, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_map(Via(PhantomData))
}

/// A JSON scalar as read, before a [`Shape`] checks it. One visitor type for every scalar
/// shape keeps serde_json's reader instantiated once for them (the .wasm stays small).
enum Scalar {
    /// `null` where it means absent ([`Opt`]).
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(String),
}

struct ScalarVisitor<'a> {
    wrong: &'a dyn Fn(Found<'_>) -> String,
    expecting: &'a str,
    /// `null` is [`Scalar::Null`] (an optional member), not refused.
    nullable: bool,
}

impl<'de> Visitor<'de> for ScalarVisitor<'_> {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(b))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Scalar, E> {
        Ok(Scalar::Unsigned(n))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Scalar, E> {
        Ok(Scalar::Signed(n))
    }
    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(x))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(s.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        if self.nullable {
            return Ok(Scalar::Null);
        }
        Err(E::custom((self.wrong)(Found::Null)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Scalar, A::Error> {
        Err(de::Error::custom((self.wrong)(Found::Seq)))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Scalar, A::Error> {
        Err(de::Error::custom((self.wrong)(Found::Map)))
    }
}

/// Deserializes a [`Shape`] that is a JSON scalar.
pub(super) fn scalar<'de, T: Shape<'de>, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    let expecting = T::expecting();
    let value = d.deserialize_any(ScalarVisitor {
        wrong: &T::wrong,
        expecting: &expecting,
        nullable: false,
    })?;
    match value {
        Scalar::Null => Err(T::wrong(Found::Null)),
        Scalar::Bool(b) => T::boolean(b),
        Scalar::Unsigned(n) => T::unsigned(n),
        Scalar::Signed(n) => T::signed(n),
        Scalar::Float(x) => T::float(x),
        Scalar::Str(s) => T::string(&s),
    }
    .map_err(de::Error::custom)
}

/// A JSON string.
pub(super) struct Str(pub String);

impl Shape<'_> for Str {
    fn expecting() -> String {
        "a string".into()
    }
    fn string(s: &str) -> Result<Self, String> {
        Ok(Str(s.to_string()))
    }
}

/// A JSON boolean.
pub(super) struct Flag(pub bool);

impl Shape<'_> for Flag {
    fn expecting() -> String {
        "a boolean".into()
    }
    fn boolean(b: bool) -> Result<Self, String> {
        Ok(Flag(b))
    }
}

/// A JSON integer from `MIN` to `MAX` (`3.0` is not an integer).
#[derive(Clone, Copy)]
pub(super) struct Int<const MIN: u32, const MAX: u32>(pub u32);

/// A JSON number (integers too) from `MIN` to `MAX`.
#[derive(Clone, Copy)]
pub(super) struct Num<const MIN: u32, const MAX: u32>(pub f64);

/// The range of an [`Int`] or a [`Num`], checked at run time: one copy of the reading code
/// serves every range (a copy per `MIN`, `MAX` cost 17 KB of the .wasm after wasm-opt).
#[derive(Clone, Copy)]
struct Range {
    min: u32,
    max: u32,
    /// An [`Int`]: integers only.
    integer: bool,
}

impl Range {
    /// What is valid, after "expected ".
    fn expecting(self) -> String {
        let kind = if self.integer { "an integer" } else { "a number" };
        format!("{kind} from {} to {}", self.min, self.max)
    }
    /// The refusal of a value of the wrong type, worded as [`Shape::wrong`].
    fn wrong(self, found: Found<'_>) -> String {
        format!("invalid type: {found}, expected {}", self.expecting())
    }
    fn out_of_range(self, n: &dyn fmt::Display) -> String {
        format!("{n} is out of range; valid: {}", self.expecting())
    }
    /// An [`Int`]'s value.
    fn int(self, value: Scalar) -> Result<u32, String> {
        match value {
            Scalar::Null => Err(self.wrong(Found::Null)),
            Scalar::Bool(b) => Err(self.wrong(Found::Bool(b))),
            Scalar::Unsigned(n) => self.unsigned(n),
            Scalar::Signed(n) => {
                u64::try_from(n).map_err(|_| self.out_of_range(&n)).and_then(|n| self.unsigned(n))
            }
            Scalar::Float(x) => {
                // serde_json reads an integer beyond 64 bits as a float: out of range, not a
                // float.
                const BEYOND_64_BITS: f64 = 18_446_744_073_709_551_616.0;
                if x.abs() >= BEYOND_64_BITS {
                    Err(self.out_of_range(&format_args!("{x:?}")))
                } else {
                    Err(self.wrong(Found::Float(x)))
                }
            }
            Scalar::Str(s) => Err(self.wrong(Found::Str(&s))),
        }
    }
    fn unsigned(self, n: u64) -> Result<u32, String> {
        u32::try_from(n)
            .ok()
            .filter(|n| (self.min..=self.max).contains(n))
            .ok_or_else(|| self.out_of_range(&n))
    }
    /// A [`Num`]'s value.
    fn num(self, value: Scalar) -> Result<f64, String> {
        match value {
            Scalar::Null => Err(self.wrong(Found::Null)),
            Scalar::Bool(b) => Err(self.wrong(Found::Bool(b))),
            Scalar::Unsigned(n) => self.within(n as f64, &n),
            Scalar::Signed(n) => self.within(n as f64, &n),
            Scalar::Float(x) => self.within(x, &format_args!("{x:?}")),
            Scalar::Str(s) => Err(self.wrong(Found::Str(&s))),
        }
    }
    fn within(self, x: f64, written: &dyn fmt::Display) -> Result<f64, String> {
        if x >= f64::from(self.min) && x <= f64::from(self.max) {
            Ok(x)
        } else {
            Err(self.out_of_range(written))
        }
    }
    /// Reads a JSON scalar for this range, an array and an object refused; `null` is
    /// [`Scalar::Null`] if `nullable`, else refused.
    fn read<'de, D: Deserializer<'de>>(self, d: D, nullable: bool) -> Result<Scalar, D::Error> {
        let expecting = self.expecting();
        let wrong = |found: Found<'_>| self.wrong(found);
        d.deserialize_any(ScalarVisitor { wrong: &wrong, expecting: &expecting, nullable })
    }
}

impl<'de, const MIN: u32, const MAX: u32> Deserialize<'de> for Int<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let range = Range { min: MIN, max: MAX, integer: true };
        range.int(range.read(d, false)?).map(Int).map_err(de::Error::custom)
    }
}

impl<'de, const MIN: u32, const MAX: u32> Deserialize<'de> for Opt<Int<MIN, MAX>> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let range = Range { min: MIN, max: MAX, integer: true };
        match range.read(d, true)? {
            Scalar::Null => Ok(Opt(None)),
            value => range.int(value).map(|n| Opt(Some(Int(n)))).map_err(de::Error::custom),
        }
    }
}

impl<'de, const MIN: u32, const MAX: u32> Deserialize<'de> for Num<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let range = Range { min: MIN, max: MAX, integer: false };
        range.num(range.read(d, false)?).map(Num).map_err(de::Error::custom)
    }
}

impl<'de, const MIN: u32, const MAX: u32> Deserialize<'de> for Opt<Num<MIN, MAX>> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let range = Range { min: MIN, max: MAX, integer: false };
        match range.read(d, true)? {
            Scalar::Null => Ok(Opt(None)),
            value => range.num(value).map(|x| Opt(Some(Num(x)))).map_err(de::Error::custom),
        }
    }
}

/// An optional member (`#[serde(default)]`: absent is `None`, as is `null`), read by its
/// value's own visitor rather than through serde's `Option`: serde_path_to_error wraps the
/// `Option` visitor once per type (3 KB of the .wasm for the integer and number members).
/// Reads as the `Option` it holds.
pub(super) struct Opt<T>(Option<T>);

impl<T> Default for Opt<T> {
    fn default() -> Self {
        Opt(None)
    }
}

impl<T> std::ops::Deref for Opt<T> {
    type Target = Option<T>;

    fn deref(&self) -> &Option<T> {
        &self.0
    }
}

/// A JSON array of `T`.
pub(super) struct List<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Shape<'de> for List<T> {
    fn expecting() -> String {
        "a sequence".into()
    }
    fn seq<A: SeqAccess<'de>>(mut a: A) -> Result<Self, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = a.next_element()? {
            items.push(item);
        }
        Ok(List(items))
    }
}

/// A JSON object read as `T` (a `#[derive(Deserialize)]` struct): never from an array, which
/// serde derive would otherwise take as the fields in declaration order.
pub(super) struct Obj<T>(pub T);

impl<'de, T: Deserialize<'de>> Shape<'de> for Obj<T> {
    fn expecting() -> String {
        "a JSON object".into()
    }
    fn map<A: MapAccess<'de>>(a: A) -> Result<Self, A::Error> {
        T::deserialize(MapAccessDeserializer::new(a)).map(Obj)
    }
}

/// A fixed set of JSON strings: the one table of an enum's names.
pub(super) trait Named: Copy + 'static {
    const NAMES: &'static [(Self, &'static str)];
}

/// The JSON name of `value` in its table.
pub(super) fn name_of<E: Named + PartialEq>(value: E) -> &'static str {
    E::NAMES.iter().find(|(v, _)| *v == value).map_or("", |(_, n)| n)
}

/// One of the names of `E`, as a JSON string.
pub(super) struct Name<E>(pub E);

impl<E: Named> Shape<'_> for Name<E> {
    fn expecting() -> String {
        one_of(E::NAMES.iter().map(|(_, n)| *n))
    }
    fn string(s: &str) -> Result<Self, String> {
        E::NAMES.iter().find(|(_, n)| *n == s).map(|(v, _)| Name(*v)).ok_or_else(|| {
            format!("unknown variant `{}`, expected {}", shown(s), Self::expecting())
        })
    }
}

macro_rules! deserialize_via_shape {
    ($($read:ident: impl[$($g:tt)*] $t:ty;)*) => {$(
        impl<'de, $($g)*> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $read(d)
            }
        }
    )*};
}

deserialize_via_shape! {
    scalar: impl[] Str;
    scalar: impl[] Flag;
    seq: impl[T: Deserialize<'de>] List<T>;
    map: impl[T: Deserialize<'de>] Obj<T>;
    scalar: impl[E: Named] Name<E>;
}
