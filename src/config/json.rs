//! RFC 8259 JSON text -> [`Json`] tree, for the plugin config only: UTF-8 checked, nesting
//! bounded, numbers kept as written (messages quote them so), and syntax errors worded like
//! serde_json's with their line and column. Hand-written because serde_json's parser cost the
//! filter about 15 KB (tested against serde_json in `json/tests.rs`).

/// A parsed JSON value. Objects keep their members in document order, repeated keys
/// included, so the walker reports the first problem in the document and refuses duplicates.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Json {
    Null,
    Bool(bool),
    Num(Number),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

/// A JSON number as written, with its value.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Number {
    text: String,
    /// The value, when written as a non-negative integer (no fraction, no exponent) that fits.
    int: Option<u64>,
    /// A float as serde_json reads it: a fraction, an exponent, or an integer beyond u64 (i64
    /// when negative).
    float: bool,
    /// The value as a double ([`decimal_value`]).
    value: f64,
}

impl Number {
    /// Not an integer: written with a fraction or an exponent (`3.0`, `1e3`), or an integer
    /// beyond 64 bits.
    pub(super) fn is_f64(&self) -> bool {
        self.float
    }

    /// The value as a non-negative integer written without fraction or exponent.
    pub(super) fn as_u64(&self) -> Option<u64> {
        self.int
    }

    /// The value as a double: correctly rounded for up to 19 significant digits and
    /// exponents within ±22 (every config number), within a few units in the last place
    /// otherwise. Always finite: larger numbers are refused when parsed. (Not `str::parse`,
    /// whose tables would add 10 KB to the filter.)
    pub(super) fn as_f64(&self) -> f64 {
        self.value
    }
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// 2^1024 - 2^970, halfway between the largest double and 2^1024: the least number that
/// rounds to infinity (a tie rounds to the even 2^1024), as 0.LEAST_INFINITE × 10^309.
const LEAST_INFINITE: &str =
    "17976931348623158079372897140530341507993413271003782693617377898044496829\
    276475094664901797758720709633028641669288791094655554785194040263065748867150582068190890\
    200070838367627385484581771153176447573027006985557136695962284291481986083493647529271907\
    4168444365510704342711559699508093042880177904174497792";

/// The value of a JSON number's text (grammar already checked) as serde_json reads it, or
/// `Err(at)` when it is out of range, which serde_json reports after `at` bytes of the text.
/// serde_json reads the written exponent into an i32: beyond that, a number is ±0 when the
/// exponent is negative or the digits are all zero, and out of range (at the digit that
/// overflowed) otherwise. Any other number is out of range (at its end) when it rounds to
/// infinity, decided exactly.
fn decimal_value(text: &str) -> Result<f64, usize> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let signed = |v: f64| if negative { -v } else { v };
    let (digits, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (rest.get(..at).unwrap_or(""), rest.get(at + 1..).unwrap_or("")),
        None => (rest, ""),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    // From the first non-zero digit on: the number is 0.`significant` × 10^`point`.
    let significant = || int.bytes().chain(frac.bytes()).skip_while(|&c| c == b'0');
    if significant().next().is_none() {
        return Ok(signed(0.0));
    }
    let magnitude = exponent.trim_start_matches(['+', '-']);
    let mut written: i32 = 0;
    for (i, c) in magnitude.chars().enumerate() {
        let d = c.to_digit(10).unwrap_or(0) as i32;
        match written.checked_mul(10).and_then(|w| w.checked_add(d)) {
            Some(w) => written = w,
            None if exponent.starts_with('-') => return Ok(signed(0.0)),
            None => return Err(text.len() - magnitude.len() + i + 1),
        }
    }
    let written = if exponent.starts_with('-') { -written } else { written };
    let len = |s: &str| i64::try_from(s.len()).unwrap_or(i64::MAX);
    let int_digits = len(int.trim_start_matches('0'));
    let point = if int_digits > 0 {
        i64::from(written).saturating_add(int_digits)
    } else {
        i64::from(written).saturating_sub(len(frac) - len(frac.trim_start_matches('0')))
    };
    if point > 309 || (point == 309 && significant().ge(LEAST_INFINITE.bytes())) {
        return Err(text.len());
    }
    // The first 19 significant digits: the value within a few units in the last place.
    let (m, taken) = significant().take(19).fold((0u64, 0), |(m, n), c| {
        (m * 10 + u64::from(char::from(c).to_digit(10).unwrap_or(0)), n + 1)
    });
    // Beyond ±400 the value is 0 or the largest double whatever the digits.
    let exp = point.saturating_sub(taken).clamp(-400, 400) as i32;
    let m = m as f64;
    let v = if exp >= 0 {
        m * 10f64.powi(exp)
    } else if exp >= -22 {
        m / 10f64.powi(-exp)
    } else {
        m / 1e22 / 10f64.powi(-exp - 22)
    };
    // Just below the limit, rounding errors may overshoot it.
    Ok(signed(v.min(f64::MAX)))
}

/// Deepest nesting of arrays and objects: serde_json's default limit of 128 refuses the
/// 128th level.
const MAX_DEPTH: usize = 127;

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

/// Parses `bytes` as exactly one JSON value (whitespace around it allowed).
pub(super) fn parse(bytes: &[u8]) -> Result<Json, String> {
    let mut p = Parser { bytes, pos: 0, depth: 0 };
    let value = p.value()?;
    p.skip_ws();
    if p.pos < bytes.len() {
        p.pos += 1;
        return Err(p.error("trailing characters"));
    }
    Ok(value)
}

impl Parser<'_> {
    /// `what` at the line and column of the last byte read (serde_json's convention).
    fn error(&self, what: &str) -> String {
        let read = self.bytes.get(..self.pos).unwrap_or(self.bytes);
        let line = 1 + read.iter().filter(|&&c| c == b'\n').count();
        let column = read.iter().rev().take_while(|&&c| c != b'\n').count();
        format!("{what} at line {line} column {column}")
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.error("EOF while parsing a value")),
            Some(b'{') => self.nested(Parser::object),
            Some(b'[') => self.nested(Parser::array),
            Some(b'"') => {
                self.pos += 1;
                self.string().map(Json::Str)
            }
            Some(b'-' | b'0'..=b'9') => self.number().map(Json::Num),
            Some(b't') => self.word(b"true", Json::Bool(true)),
            Some(b'f') => self.word(b"false", Json::Bool(false)),
            Some(b'n') => self.word(b"null", Json::Null),
            Some(_) => {
                self.pos += 1;
                Err(self.error("expected value"))
            }
        }
    }

    /// `true`, `false` or `null`, whose first letter is next.
    fn word(&mut self, word: &[u8], value: Json) -> Result<Json, String> {
        for &expected in word {
            match self.next() {
                Some(c) if c == expected => {}
                Some(_) => return Err(self.error("expected ident")),
                None => return Err(self.error("EOF while parsing a value")),
            }
        }
        Ok(value)
    }

    fn nested(&mut self, f: fn(&mut Self) -> Result<Json, String>) -> Result<Json, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.pos += 1;
            return Err(self.error("recursion limit exceeded"));
        }
        self.pos += 1;
        let value = f(self);
        self.depth -= 1;
        value
    }

    /// After `[`.
    fn array(&mut self) -> Result<Json, String> {
        let mut items = Vec::new();
        self.skip_ws();
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                return Ok(Json::Arr(items));
            }
            None => return Err(self.error("EOF while parsing a list")),
            Some(_) => {}
        }
        loop {
            items.push(self.value()?);
            self.skip_ws();
            match self.next() {
                Some(b']') => return Ok(Json::Arr(items)),
                Some(b',') => {
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        return Err(self.error("trailing comma"));
                    }
                }
                None => return Err(self.error("EOF while parsing a list")),
                Some(_) => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    /// After `{`.
    fn object(&mut self) -> Result<Json, String> {
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Obj(members));
        }
        let mut first = true;
        loop {
            self.skip_ws();
            match self.next() {
                Some(b'"') => {}
                None if first => return Err(self.error("EOF while parsing an object")),
                None => return Err(self.error("EOF while parsing a value")),
                Some(b'}') => return Err(self.error("trailing comma")),
                Some(_) => return Err(self.error("key must be a string")),
            }
            let key = self.string()?;
            self.skip_ws();
            match self.next() {
                Some(b':') => {}
                None => return Err(self.error("EOF while parsing an object")),
                Some(_) => return Err(self.error("expected `:`")),
            }
            members.push((key, self.value()?));
            first = false;
            self.skip_ws();
            match self.next() {
                Some(b'}') => return Ok(Json::Obj(members)),
                Some(b',') => {}
                None => return Err(self.error("EOF while parsing an object")),
                Some(_) => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    /// After the opening quote.
    fn string(&mut self) -> Result<String, String> {
        let mut out: Vec<u8> = Vec::new();
        let opened = self.pos;
        loop {
            let start = self.pos;
            while self.peek().is_some_and(|c| c != b'"' && c != b'\\' && c >= 0x20) {
                self.pos += 1;
            }
            out.extend_from_slice(self.bytes.get(start..self.pos).unwrap_or_default());
            match self.next() {
                Some(b'"') => break,
                Some(b'\\') => self.escape(&mut out)?,
                Some(_) => {
                    return Err(self
                        .error("control character (\\u0000-\\u001F) found while parsing a string"))
                }
                None => return Err(self.error("EOF while parsing a string")),
            }
        }
        String::from_utf8(out).map_err(|e| {
            // At the offending byte (escapes before it would shift this; they are ASCII-only
            // in practice, and the message still names the string).
            self.pos = opened + e.utf8_error().valid_up_to() + 1;
            self.error("invalid unicode code point")
        })
    }

    /// After a backslash.
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        let c = match self.next() {
            Some(b'"') => b'"',
            Some(b'\\') => b'\\',
            Some(b'/') => b'/',
            Some(b'b') => 8,
            Some(b'f') => 12,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'u') => {
                let mut code = self.hex4()?;
                if (0xD800..0xDC00).contains(&code) {
                    // A leading surrogate must be followed by `\u` and a trailing one.
                    for expected in [b'\\', b'u'] {
                        match self.next() {
                            Some(c) if c == expected => {}
                            Some(_) => return Err(self.error("unexpected end of hex escape")),
                            None => return Err(self.error("EOF while parsing a string")),
                        }
                    }
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(self.error("lone leading surrogate in hex escape"));
                    }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                }
                let ch = char::from_u32(code)
                    .ok_or_else(|| self.error("lone leading surrogate in hex escape"))?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                return Ok(());
            }
            None => return Err(self.error("EOF while parsing a string")),
            Some(_) => return Err(self.error("invalid escape")),
        };
        out.push(c);
        Ok(())
    }

    /// Four hex digits, read before they are judged (serde_json's error position).
    fn hex4(&mut self) -> Result<u32, String> {
        let mut v = Some(0u32);
        for _ in 0..4 {
            let c = self.next().ok_or_else(|| self.error("EOF while parsing a string"))?;
            v = v.zip(char::from(c).to_digit(16)).map(|(v, d)| v * 16 + d);
        }
        v.ok_or_else(|| self.error("invalid escape"))
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// At least one digit, else serde_json's error: EOF, or the offending character.
    fn need_digits(&mut self) -> Result<(), String> {
        if self.digits() > 0 {
            return Ok(());
        }
        if self.next().is_none() {
            return Err(self.error("EOF while parsing a value"));
        }
        Err(self.error("invalid number"))
    }

    fn number(&mut self) -> Result<Number, String> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        if self.peek() == Some(b'0') {
            // A leading zero ends the integer part; a digit after it is the error.
            self.pos += 1;
            if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
                return Err(self.error("invalid number"));
            }
        } else {
            self.need_digits()?;
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.pos += 1;
            self.need_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integer = false;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.need_digits()?;
        }
        let text = self.bytes.get(start..self.pos).unwrap_or_default();
        let text = String::from_utf8_lossy(text).into_owned();
        let value = decimal_value(&text).map_err(|at| {
            self.pos = start + at;
            self.error("number out of range")
        })?;
        let int = if integer && !negative { text.parse().ok() } else { None };
        let float = !integer || (int.is_none() && text.parse::<i64>().is_err());
        Ok(Number { text, int, float, value })
    }
}

#[cfg(test)]
mod tests;
