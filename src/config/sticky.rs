//! The `sticky` block: session affinity through a signed cookie that names the backend.

use std::fmt;

use serde::{Deserialize, Deserializer};

use super::read::{any, name_of, scalar, Flag, Int, Name, Named, Opt, Shape, Str};
use super::text::{cookie_name, shown};
use super::ConfigError;

/// The `SameSite` attribute of the affinity cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    Strict,
    #[default]
    Lax,
    None,
}

impl Named for SameSite {
    /// The JSON names, as written in `Set-Cookie`.
    const NAMES: &'static [(Self, &'static str)] =
        &[(SameSite::Strict, "Strict"), (SameSite::Lax, "Lax"), (SameSite::None, "None")];
}

impl SameSite {
    /// The attribute value as written in `Set-Cookie`.
    pub fn as_str(self) -> &'static str {
        name_of(self)
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

/// The `sticky` object, shapes and types checked (numbers bounded); `validate` checks the
/// strings and how the values relate.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSticky {
    cookie: Option<Str>,
    secrets: Option<Secrets>,
    #[serde(default)]
    ttl_s: Opt<Int<1, MAX_TTL_S>>,
    path: Option<Str>,
    domain: Option<Str>,
    secure: Option<Flag>,
    http_only: Option<Flag>,
    same_site: Option<Name<SameSite>>,
}

impl RawSticky {
    pub(super) fn validate(self) -> Result<Sticky, ConfigError> {
        let d = Sticky::default();
        let cookie = match self.cookie {
            None => d.cookie,
            Some(Str(c)) => cookie_name(&c, DEFAULT_COOKIE)
                .map_err(|m| ConfigError::at("$.sticky.cookie", m))?,
        };
        let secrets = self.secrets.map(|s| s.0).unwrap_or_default();
        validate_secrets(&secrets)?;
        let path = match self.path {
            None => d.path,
            Some(Str(p)) => validate_path(&p).map_err(|m| ConfigError::at("$.sticky.path", m))?,
        };
        let domain = match self.domain {
            None => None,
            Some(Str(h)) => {
                Some(validate_domain(&h).map_err(|m| ConfigError::at("$.sticky.domain", m))?)
            }
        };
        let secure = self.secure.map_or(d.secure, |f| f.0);
        let same_site = self.same_site.map_or(d.same_site, |n| n.0);
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
            ttl_s: self.ttl_s.map_or(d.ttl_s, |n| u64::from(n.0)),
            path,
            domain,
            secure,
            http_only: self.http_only.map_or(d.http_only, |f| f.0),
            same_site,
        })
    }
}

/// `secrets`: an array of at most [`MAX_SECRETS`] strings. Lengths and duplicates are checked
/// by `validate_secrets`. Wrong types are named without quoting the value: it may be a secret.
struct Secrets(Vec<String>);

impl<'de> Shape<'de> for Secrets {
    fn expecting() -> String {
        format!(
            "an array of 0 to {MAX_SECRETS} strings of {MIN_SECRET_LEN} to {MAX_SECRET_LEN} bytes"
        )
    }
    fn wrong(_: super::read::Found<'_>) -> String {
        format!("is not an array; valid: {}", Self::expecting())
    }
    fn seq<A: serde::de::SeqAccess<'de>>(mut a: A) -> Result<Self, A::Error> {
        let mut secrets = Vec::new();
        while let Some(Secret(s)) = a.next_element()? {
            secrets.push(s);
        }
        if secrets.len() > MAX_SECRETS {
            return Err(serde::de::Error::custom(format!(
                "has {} secrets; valid: at most {MAX_SECRETS} (the first signs, all verify), \
                 or [] for a random per-process secret",
                secrets.len()
            )));
        }
        Ok(Secrets(secrets))
    }
}

/// One secret, a string; not quoted when it is not one.
struct Secret(String);

impl Shape<'_> for Secret {
    fn expecting() -> String {
        format!("a string of {MIN_SECRET_LEN} to {MAX_SECRET_LEN} bytes")
    }
    fn wrong(_: super::read::Found<'_>) -> String {
        format!("is not a string; valid: {}", Self::expecting())
    }
    fn string(s: &str) -> Result<Self, String> {
        Ok(Secret(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for Secrets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        any(d)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d)
    }
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
