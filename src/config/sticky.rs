//! The `sticky` block: session affinity through a signed cookie that names the backend.

use std::fmt;

use super::de::{boolean, int, is_token, object, shown, string, variant, Json};
use super::ConfigError;

/// The `SameSite` attribute of the affinity cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    Strict,
    #[default]
    Lax,
    None,
}

impl SameSite {
    /// The attribute value as written in `Set-Cookie`.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// Validated cookie affinity settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Sticky {
    /// Cookie name (RFC 6265 token).
    pub cookie: String,
    /// Signing keys, each 32 to 1024 bytes: the first signs, every one verifies (rotation).
    /// Empty: the filter picks a random secret per process.
    pub secrets: Vec<String>,
    /// Cookie lifetime (`Max-Age`), 1 s to 365 days.
    pub ttl_s: u64,
    pub path: String,
    /// `Domain` attribute; `None`: a host-only cookie.
    pub domain: Option<String>,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: SameSite,
}

impl Default for Sticky {
    /// The settings of `"sticky": {}`.
    fn default() -> Self {
        Sticky {
            cookie: DEFAULT_COOKIE.to_string(),
            secrets: Vec::new(),
            ttl_s: 3600,
            path: "/".to_string(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
        }
    }
}

/// Secrets never reach a log line: `Debug` shows how many there are.
impl Sticky {
    /// The Set-Cookie attributes this configuration gives its cookies.
    pub fn cookie_attributes(&self) -> crate::sticky::CookieAttributes {
        use crate::sticky::SameSite as S;
        crate::sticky::CookieAttributes {
            name: self.cookie.clone(),
            path: self.path.clone(),
            domain: self.domain.clone(),
            secure: self.secure,
            http_only: self.http_only,
            same_site: match self.same_site {
                SameSite::Strict => S::Strict,
                SameSite::Lax => S::Lax,
                SameSite::None => S::None,
            },
            max_age_s: self.ttl_s,
        }
    }
}

impl fmt::Debug for Sticky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sticky")
            .field("cookie", &self.cookie)
            .field("secrets", &format_args!("<{} redacted>", self.secrets.len()))
            .field("ttl_s", &self.ttl_s)
            .field("path", &self.path)
            .field("domain", &self.domain)
            .field("secure", &self.secure)
            .field("http_only", &self.http_only)
            .field("same_site", &self.same_site)
            .finish()
    }
}

const DEFAULT_COOKIE: &str = "lb_session";
/// Most secrets one config may list.
pub const MAX_SECRETS: usize = 8;
/// Shortest secret in bytes (256 bits for HMAC-SHA256).
pub const MIN_SECRET_LEN: usize = 32;
const MAX_SECRET_LEN: usize = 1024;
const MAX_TTL_S: u32 = 31_536_000;
const MAX_PATH_LEN: usize = 1024;
const MAX_DOMAIN_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;
const SAME_SITE: &[&str] = &["Strict", "Lax", "None"];

/// The JSON members of the `sticky` block, in the order messages list them.
const FIELDS: &[&str] =
    &["cookie", "secrets", "ttl_s", "path", "domain", "secure", "http_only", "same_site"];

/// The `sticky` object, shapes and types checked (numbers bounded); `validate` checks the
/// strings and how the values relate.
#[derive(Default)]
pub(super) struct RawSticky {
    cookie: Option<String>,
    secrets: Option<Vec<String>>,
    ttl_s: Option<u32>,
    path: Option<String>,
    domain: Option<String>,
    secure: Option<bool>,
    http_only: Option<bool>,
    same_site: Option<SameSite>,
}

impl RawSticky {
    /// Reads the `sticky` object at `path`; members are checked in document order.
    pub(super) fn read(v: &Json, path: &str) -> Result<RawSticky, ConfigError> {
        let mut s = RawSticky::default();
        object(v, path, FIELDS, 0, &mut |i, v, p| {
            match i {
                0 => s.cookie = Some(string(v, p)?),
                1 => s.secrets = Some(read_secrets(v, p)?),
                2 => s.ttl_s = Some(int(v, p, 1, MAX_TTL_S)?),
                3 => s.path = Some(string(v, p)?),
                4 => s.domain = Some(string(v, p)?),
                5 => s.secure = Some(boolean(v, p)?),
                6 => s.http_only = Some(boolean(v, p)?),
                _ => {
                    s.same_site = Some(match variant(v, p, SAME_SITE)? {
                        0 => SameSite::Strict,
                        1 => SameSite::Lax,
                        _ => SameSite::None,
                    })
                }
            }
            Ok(())
        })?;
        Ok(s)
    }

    pub(super) fn validate(self) -> Result<Sticky, ConfigError> {
        let d = Sticky::default();
        let cookie = match self.cookie {
            None => d.cookie,
            Some(c) if is_token(&c) => c,
            Some(c) => {
                return Err(ConfigError::at(
                    "$.sticky.cookie",
                    format!(
                        "{:?} is not a cookie name; valid: 1 to 256 token characters \
                         (RFC 6265), e.g. {DEFAULT_COOKIE}",
                        shown(&c)
                    ),
                ));
            }
        };
        let secrets = self.secrets.unwrap_or_default();
        validate_secrets(&secrets)?;
        let path = match self.path {
            None => d.path,
            Some(p) => validate_path(&p).map_err(|m| ConfigError::at("$.sticky.path", m))?,
        };
        let domain = match self.domain {
            None => None,
            Some(h) => {
                Some(validate_domain(&h).map_err(|m| ConfigError::at("$.sticky.domain", m))?)
            }
        };
        let secure = self.secure.unwrap_or(d.secure);
        let same_site = self.same_site.unwrap_or(d.same_site);
        if same_site == SameSite::None && !secure {
            return Err(ConfigError::at(
                "$.sticky.same_site",
                "\"None\" requires secure: true (browsers refuse it otherwise); valid: \
                 secure: true, or Lax / Strict",
            ));
        }
        Ok(Sticky {
            cookie,
            secrets,
            ttl_s: self.ttl_s.map_or(d.ttl_s, u64::from),
            path,
            domain,
            secure,
            http_only: self.http_only.unwrap_or(d.http_only),
            same_site,
        })
    }
}

/// `secrets`: an array of at most [`MAX_SECRETS`] strings. Lengths and duplicates are checked
/// by `validate_secrets`.
fn read_secrets(v: &Json, path: &str) -> Result<Vec<String>, ConfigError> {
    // Wrong types are named without quoting the value: it may be a secret.
    let Json::Arr(items) = v else {
        return Err(ConfigError::at(
            path,
            format!(
                "is not an array; valid: an array of 0 to {MAX_SECRETS} strings of \
                 {MIN_SECRET_LEN} to {MAX_SECRET_LEN} bytes"
            ),
        ));
    };
    if items.len() > MAX_SECRETS {
        return Err(ConfigError::at(
            path,
            format!(
                "has {} secrets; valid: at most {MAX_SECRETS} (the first signs, all verify), \
                 or [] for a random per-process secret",
                items.len()
            ),
        ));
    }
    let mut secrets = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Json::Str(s) = item else {
            return Err(ConfigError::at(
                p,
                format!(
                    "is not a string; valid: a string of {MIN_SECRET_LEN} to {MAX_SECRET_LEN} \
                     bytes"
                ),
            ));
        };
        secrets.push(s.clone());
    }
    Ok(secrets)
}

/// Each secret 32 to 1024 bytes, no two equal. Messages never quote a secret.
fn validate_secrets(secrets: &[String]) -> Result<(), ConfigError> {
    for (i, s) in secrets.iter().enumerate() {
        let path = format!("$.sticky.secrets[{i}]");
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&s.len()) {
            return Err(ConfigError::at(
                path,
                format!(
                    "is {} bytes long; valid: a string of {MIN_SECRET_LEN} to {MAX_SECRET_LEN} \
                     bytes (e.g. 32 random bytes, base64-encoded)",
                    s.len()
                ),
            ));
        }
        if let Some(first) = secrets.iter().take(i).position(|t| t == s) {
            return Err(ConfigError::at(
                path,
                format!(
                    "repeats $.sticky.secrets[{first}]; valid: distinct secrets (drop the \
                     repeat)"
                ),
            ));
        }
    }
    Ok(())
}

/// The cookie's `Path`: starts with `/`, at most 1024 characters of RFC 6265 `path-value`
/// (printable ASCII except `;`).
fn validate_path(p: &str) -> Result<String, String> {
    let ok = p.starts_with('/')
        && p.len() <= MAX_PATH_LEN
        && p.bytes().all(|c| (0x20..0x7f).contains(&c) && c != b';');
    if ok {
        Ok(p.to_string())
    } else {
        Err(format!(
            "{:?} is not a cookie path; valid: a path starting with /, 1 to {MAX_PATH_LEN} \
             printable ASCII characters except ; (RFC 6265), e.g. /",
            shown(p)
        ))
    }
}

/// The cookie's `Domain`: a host name of letters, digits, `-` and `.`, labels of 1 to 63
/// characters, at most 253 characters, no leading or trailing dot.
fn validate_domain(h: &str) -> Result<String, String> {
    let valid = format!(
        "valid: a host name of letters, digits, - and ., 1 to {MAX_DOMAIN_LEN} characters, \
         labels of 1 to {MAX_LABEL_LEN}, no leading or trailing dot, e.g. example.com, or null \
         for a host-only cookie"
    );
    if h.starts_with('.') && h.len() > 1 {
        return Err(format!(
            "{:?} has a leading dot, which RFC 6265 ignores; {valid} (write {:?})",
            shown(h),
            shown(h.trim_start_matches('.'))
        ));
    }
    let ok = !h.is_empty()
        && h.len() <= MAX_DOMAIN_LEN
        && h.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
        && h.split('.').all(|l| !l.is_empty() && l.len() <= MAX_LABEL_LEN);
    if ok {
        Ok(h.to_string())
    } else {
        Err(format!("{:?} is not a host name; {valid}", shown(h)))
    }
}

#[cfg(test)]
mod tests;
