//! ORCA load reports that backends send in response headers, read as Envoy's ORCA parser reads
//! them (`source/common/orca/orca_parser.cc`, `orca_load_metrics.cc`): the `endpoint-load-metrics`
//! header holds `TEXT k=v, k=v` (`:` also accepted, as Envoy before 1.33 wrote it) or
//! `JSON {...}` (proto3 JSON of `xds.data.orca.v3.OrcaLoadReport`: snake_case or lowerCamelCase
//! names, numbers or decimal strings), or `BIN <base64 OrcaLoadReport>`, as does the legacy
//! `endpoint-load-metrics-bin` header. Fields: `cpu_utilization`, `mem_utilization`,
//! `application_utilization`, `rps_fractional`, `eps`, and the maps `named_metrics.<name>`,
//! `utilization.<name>`, `request_cost.<name>`.
//!
//! As in Envoy, a TEXT report with a repeated name, an unknown name, an empty name or value, or a
//! value that is not a finite number is refused as a whole. The binary form is not decoded yet:
//! it is refused as [`ReportError::Unsupported`], and counted, like every refused report; a
//! refused report never fails its request. Bounded: a header over [`MAX_HEADER_LEN`] bytes or
//! with more than [`MAX_FIELDS`] fields is refused without further reading; O(length) per
//! report, and only the configured named metrics ([`Wanted`]) are kept, so no allocation for
//! TEXT.

use serde_json::Value;

/// Longest report read (Envoy's default header size limit is 60 KiB; a report is ~100 bytes).
pub const MAX_HEADER_LEN: usize = 4096;
/// Most fields in one report.
pub const MAX_FIELDS: usize = 64;
/// Most named metrics a configuration may ask for.
pub const MAX_WANTED: usize = 8;

/// The response header that carries reports.
pub const HEADER: &str = "endpoint-load-metrics";
/// The legacy binary header (gRPC's).
pub const HEADER_BIN: &str = "endpoint-load-metrics-bin";

/// The map-valued metrics a configuration reads, as full names (`named_metrics.queue_depth`,
/// `utilization.kv_cache`); a report's value for each lands in [`Report::wanted`] in this order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    names: Vec<String>,
}

impl Wanted {
    /// At most [`MAX_WANTED`] names; later ones are dropped (the config refuses more).
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        Wanted { names: names.into_iter().take(MAX_WANTED).collect() }
    }

    fn slot(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

/// What one report said; absent fields are 0, as in the proto (proto3 cannot tell them apart).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Report {
    pub cpu_utilization: f64,
    pub mem_utilization: f64,
    pub application_utilization: f64,
    pub rps_fractional: f64,
    pub eps: f64,
    /// The [`Wanted`] metrics, in its order; `None` when the report did not have it.
    pub wanted: [Option<f64>; MAX_WANTED],
}

/// Why a report was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportError {
    /// Not TEXT or JSON, or TEXT/JSON that does not follow the rules above.
    Malformed,
    /// Longer than [`MAX_HEADER_LEN`] or more than [`MAX_FIELDS`] fields.
    TooLarge,
    /// The binary (`BIN`, `endpoint-load-metrics-bin`) form.
    Unsupported,
}

/// Reads the value of an `endpoint-load-metrics` header.
pub fn parse(header: &str, wanted: &Wanted) -> Result<Report, ReportError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(ReportError::TooLarge);
    }
    if let Some(text) = header.strip_prefix("TEXT ") {
        parse_text(text, wanted)
    } else if let Some(json) = header.strip_prefix("JSON ") {
        parse_json(json, wanted)
    } else if header.starts_with("BIN ") {
        Err(ReportError::Unsupported)
    } else {
        Err(ReportError::Malformed)
    }
}

/// Which field a name sets: the five scalars by index, or a wanted slot, or nothing (a map
/// entry nobody asked for).
enum Field {
    Scalar(usize),
    Wanted(usize),
    Ignored,
}

/// The scalars, in [`Report::set`]'s order; JSON also takes the lowerCamelCase spelling.
const SCALARS: [(&str, &str); 5] = [
    ("cpu_utilization", "cpuUtilization"),
    ("mem_utilization", "memUtilization"),
    ("application_utilization", "applicationUtilization"),
    ("rps_fractional", "rpsFractional"),
    ("eps", "eps"),
];

/// The map fields: their TEXT prefix and their JSON member names.
const MAPS: [(&str, &str, &str); 3] = [
    ("named_metrics.", "named_metrics", "namedMetrics"),
    ("utilization.", "utilization", "utilization"),
    ("request_cost.", "request_cost", "requestCost"),
];

impl Report {
    fn set(&mut self, field: &Field, value: f64) {
        let slot = match *field {
            Field::Scalar(0) => &mut self.cpu_utilization,
            Field::Scalar(1) => &mut self.mem_utilization,
            Field::Scalar(2) => &mut self.application_utilization,
            Field::Scalar(3) => &mut self.rps_fractional,
            Field::Scalar(_) => &mut self.eps,
            Field::Wanted(i) => {
                if let Some(w) = self.wanted.get_mut(i) {
                    *w = Some(value);
                }
                return;
            }
            Field::Ignored => return,
        };
        *slot = value;
    }

    /// The value of a full metric name as Envoy names them (`cpu_utilization`,
    /// `named_metrics.foo`, ...), for a name in [`Wanted`] or a scalar.
    pub fn get(&self, name: &str, wanted: &Wanted) -> Option<f64> {
        if let Some(i) = wanted.slot(name) {
            return self.wanted.get(i).copied().flatten();
        }
        let scalar = SCALARS.iter().position(|(s, _)| *s == name)?;
        Some(match scalar {
            0 => self.cpu_utilization,
            1 => self.mem_utilization,
            2 => self.application_utilization,
            3 => self.rps_fractional,
            _ => self.eps,
        })
    }
}

/// The field a TEXT name sets; `None` for an unknown name (refused, as Envoy does).
fn text_field(name: &str, wanted: &Wanted) -> Option<Field> {
    if let Some(i) = SCALARS.iter().position(|(s, _)| *s == name) {
        return Some(Field::Scalar(i));
    }
    let key = MAPS.iter().find_map(|(prefix, _, _)| name.strip_prefix(prefix))?;
    if key.is_empty() {
        return None;
    }
    Some(wanted.slot(name).map_or(Field::Ignored, Field::Wanted))
}

/// A finite number (Envoy refuses NaN and infinities).
fn number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// `s` without leading and trailing spaces and tabs. Byte by byte: the str methods that take
/// a set of chars decode every char first, which was most of a report's parsing time.
fn blank_trimmed(s: &str) -> &str {
    let bytes = s.as_bytes();
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !blank(b)).map_or(start, |e| e + 1);
    // Both ends sit next to an ASCII byte: char boundaries.
    s.get(start..end).unwrap_or_default()
}

fn parse_text(text: &str, wanted: &Wanted) -> Result<Report, ReportError> {
    let mut report = Report::default();
    // Names seen: a repeated name refuses the report.
    let mut seen: [&str; MAX_FIELDS] = [""; MAX_FIELDS];
    let mut count = 0;
    for part in text.split(',') {
        let trimmed = blank_trimmed(part);
        if trimmed.is_empty() {
            // Envoy's comma-delimited split drops empty elements.
            continue;
        }
        let cut = trimmed.bytes().position(|b| b == b'=' || b == b':');
        let cut = cut.ok_or(ReportError::Malformed)?;
        let (name, value) = (trimmed.get(..cut), trimmed.get(cut + 1..));
        let name = blank_trimmed(name.ok_or(ReportError::Malformed)?);
        let value = blank_trimmed(value.ok_or(ReportError::Malformed)?);
        if name.is_empty() || value.is_empty() {
            return Err(ReportError::Malformed);
        }
        let field = text_field(name, wanted).ok_or(ReportError::Malformed)?;
        let value = number(value).ok_or(ReportError::Malformed)?;
        if seen.iter().take(count).any(|&seen| seen == name) {
            return Err(ReportError::Malformed);
        }
        match seen.get_mut(count) {
            Some(slot) => *slot = name,
            None => return Err(ReportError::TooLarge),
        }
        count += 1;
        report.set(&field, value);
    }
    Ok(report)
}

/// A proto3 JSON double: a number, or a decimal string (also `"NaN"`/`"Infinity"`, refused
/// here as in TEXT).
fn json_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|v| v.is_finite()),
        Value::String(s) => number(s),
        _ => None,
    }
}

fn parse_json(json: &str, wanted: &Wanted) -> Result<Report, ReportError> {
    let Some(Value::Object(members)) = crate::config::json_value(json.as_bytes()) else {
        return Err(ReportError::Malformed);
    };
    let mut report = Report::default();
    let mut fields = 0usize;
    for (name, value) in &members {
        fields += 1;
        if let Some(i) = SCALARS.iter().position(|(s, c)| s == name || c == name) {
            let v = json_number(value).ok_or(ReportError::Malformed)?;
            report.set(&Field::Scalar(i), v);
        } else if let Some((prefix, _, _)) = MAPS.iter().find(|(_, s, c)| s == name || c == name) {
            let Value::Object(map) = value else { return Err(ReportError::Malformed) };
            for (key, value) in map {
                fields += 1;
                let v = json_number(value).ok_or(ReportError::Malformed)?;
                let full = format!("{prefix}{key}");
                if let Some(slot) = wanted.slot(&full) {
                    report.set(&Field::Wanted(slot), v);
                }
            }
        }
        // Other members (the deprecated integer `rps`, newer fields) are ignored, as proto3
        // JSON parsing with unknown fields allowed does.
        if fields > MAX_FIELDS {
            return Err(ReportError::TooLarge);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
