//! Parsing of Application Insights connection strings.
//!
//! A connection string is what the Azure portal shows on an Application
//! Insights resource's *Overview* page, for example
//! `InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/;LiveEndpoint=https://westeurope.livediagnostics.monitor.azure.com/`.
//! [`ConnectionString`] parses it with [`str::parse`] and yields the
//! instrumentation key and the endpoints the exporter talks to.
//!
//! [`ConnectionString`]'s documentation lists the accepted syntax and the
//! rules applied. Error messages never repeat a value from the connection
//! string (values may be secrets).
//!
//! # Examples
//!
//! ```
//! use tracing_appinsights::ConnectionString;
//!
//! let cs: ConnectionString = "InstrumentationKey=0A1B2C3D-0000-0000-0000-000000000000;\
//!      IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/"
//!     .parse()
//!     .unwrap();
//! assert_eq!(cs.instrumentation_key(), "0a1b2c3d-0000-0000-0000-000000000000");
//! assert_eq!(
//!     cs.ingestion_endpoint(),
//!     "https://westeurope-5.in.applicationinsights.azure.com"
//! );
//! assert_eq!(cs.live_endpoint(), "https://rt.services.visualstudio.com");
//!
//! // The key never shows in full in debug output.
//! assert!(format!("{cs:?}").contains("0a1b2c3d…"));
//!
//! // Errors say what to fix without echoing the value.
//! let err = "InstrumentationKey=not-a-guid".parse::<ConnectionString>().unwrap_err();
//! assert!(err.to_string().contains("00000000-0000-0000-0000-000000000000"));
//! ```

use std::fmt;
use std::str::FromStr;

/// The ingestion endpoint used when the connection string names none.
const DEFAULT_INGESTION_ENDPOINT: &str = "https://dc.services.visualstudio.com";
/// The live metrics endpoint used when the connection string names none.
const DEFAULT_LIVE_ENDPOINT: &str = "https://rt.services.visualstudio.com";

/// How many characters of an instrumentation key may appear in output.
const SHORTENED_KEY_CHARS: usize = 8;

const KEY_INSTRUMENTATION_KEY: &str = "InstrumentationKey";
const KEY_INGESTION_ENDPOINT: &str = "IngestionEndpoint";
const KEY_LIVE_ENDPOINT: &str = "LiveEndpoint";
const KEY_ENDPOINT_SUFFIX: &str = "EndpointSuffix";
const KEY_LOCATION: &str = "Location";
const KEY_AUTHORIZATION: &str = "Authorization";
const KEY_AAD_AUDIENCE: &str = "AADAudience";

/// A parsed and validated Application Insights connection string.
///
/// Build one with [`str::parse`] (it implements [`FromStr`]). Its
/// [`Debug`](fmt::Debug) output shows only the first eight characters of the
/// instrumentation key.
///
/// # Syntax
///
/// * The string is split on `;`. Empty or whitespace-only segments are
///   ignored, so a trailing `;` (or `;;`) is fine.
/// * Each segment is `Key=Value`, split on the **first** `=` only, so values
///   may contain `=`. Whitespace around keys and values is trimmed.
/// * Keys are case-insensitive. Unknown keys are ignored. When a key appears
///   more than once, **the last one wins** (earlier values are not validated).
/// * `InstrumentationKey` is required and must be a GUID
///   (`8-4-4-4-12` hex digits). Upper case is accepted and normalised to lower
///   case (the Python `opencensus-ext-azure` exporter rejects it).
/// * `IngestionEndpoint` and `LiveEndpoint` must be `https://` (or `http://`,
///   for local tests and emulators) URLs with a host, in printable ASCII,
///   without user information (`user@`), query or fragment; a port and a
///   path prefix are allowed. The scheme is matched case-insensitively and
///   normalised to lower case. Trailing `/`s are trimmed, so the exporter
///   never posts to `…//v2.1/track`.
/// * Without `IngestionEndpoint` but with `EndpointSuffix`, the endpoint is
///   `https://` + `<Location>.` (if `Location` is given) + `dc.` + the suffix;
///   `LiveEndpoint` is derived the same way with `live.` in place of `dc.`.
///   Both must be DNS names (letters, digits, `-`, `.`). `Location` without
///   `EndpointSuffix` does nothing.
/// * Otherwise the defaults are `https://dc.services.visualstudio.com` and
///   `https://rt.services.visualstudio.com`.
/// * `Authorization` is `ikey` (the default) or `aad`, case-insensitive.
/// * `AADAudience` is the Microsoft Entra ID audience tokens are requested
///   for (sovereign clouds, e.g. `https://monitor.azure.us/`); kept as given,
///   it must be printable ASCII without spaces.
///
/// Error messages never repeat a value from the connection string (values
/// may be secrets): they name the segment number or the key, and show at most
/// a shortened prefix of an invalid instrumentation key.
///
/// # Examples
///
/// ```
/// use tracing_appinsights::{Authorization, ConnectionString};
///
/// let cs: ConnectionString =
///     "InstrumentationKey=00000000-0000-0000-0000-000000000000;EndpointSuffix=applicationinsights.azure.cn"
///         .parse()
///         .unwrap();
/// assert_eq!(cs.ingestion_endpoint(), "https://dc.applicationinsights.azure.cn");
/// assert_eq!(cs.live_endpoint(), "https://live.applicationinsights.azure.cn");
/// assert_eq!(cs.authorization(), Authorization::Ikey);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    instrumentation_key: String,
    ingestion_endpoint: String,
    live_endpoint: String,
    /// `LiveEndpoint` or `EndpointSuffix` was given: Live Metrics is on by
    /// default (every connection string the portal hands out names one).
    names_live_endpoint: bool,
    authorization: Authorization,
    aad_audience: Option<String>,
}

/// How telemetry sent with a [`ConnectionString`] is authorised, from its
/// `Authorization` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Authorization {
    /// `Authorization=ikey`, or no `Authorization` key: the instrumentation
    /// key inside each envelope identifies the resource; no token is sent.
    Ikey,
    /// `Authorization=AAD`: the resource expects Microsoft Entra ID (Azure
    /// AD) bearer tokens with each request.
    Aad,
}

/// Why a connection string could not be parsed.
///
/// Messages name the segment (counted from 1, in the order of the `;`
/// separated pieces, empty ones included) or the key that is wrong and say
/// what to write instead. They never contain a value from the connection
/// string, except a shortened prefix of an invalid instrumentation key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The connection string is empty, or holds only whitespace and `;`.
    #[error(
        "the connection string is empty; expected `InstrumentationKey=<guid>` optionally \
         followed by `;IngestionEndpoint=https://…`, as shown on the Application Insights \
         resource's Overview page"
    )]
    Empty,
    /// A segment has no `=`, so it is not a `Key=Value` pair.
    #[error(
        "segment {segment} of the connection string has no `=`; every `;`-separated segment \
         must be `Key=Value` (if you only have an instrumentation key, write \
         `InstrumentationKey=<key>`)"
    )]
    MissingEquals {
        /// The 1-based position of the segment among the `;`-separated pieces.
        segment: usize,
    },
    /// A segment has nothing (or only whitespace) before its `=`.
    #[error(
        "segment {segment} of the connection string has an empty key before `=`; every \
         `;`-separated segment must be `Key=Value`"
    )]
    EmptyKey {
        /// The 1-based position of the segment among the `;`-separated pieces.
        segment: usize,
    },
    /// There is no `InstrumentationKey`, or its value is empty.
    #[error(
        "the connection string has no `InstrumentationKey` (or its value is empty); add \
         `InstrumentationKey=<guid>` as shown on the Application Insights resource's Overview page"
    )]
    MissingInstrumentationKey,
    /// The `InstrumentationKey` value is not a GUID.
    #[error(
        "the `InstrumentationKey` value `{shortened}` is not a GUID; it must be 8-4-4-4-12 hex \
         digits such as `00000000-0000-0000-0000-000000000000`"
    )]
    InvalidInstrumentationKey {
        /// At most the first eight characters of the value (never more than
        /// half of it), control characters escaped, followed by `…`.
        shortened: String,
    },
    /// An endpoint (or the `EndpointSuffix`/`Location` it is derived from) is
    /// not usable. The value itself is not included, since a URL may carry
    /// credentials (`https://user:password@host`).
    #[error("the connection string's `{key}` {reason}")]
    InvalidEndpoint {
        /// The offending key: `IngestionEndpoint`, `LiveEndpoint`,
        /// `EndpointSuffix` or `Location`.
        key: &'static str,
        /// What is wrong with it and what to write instead.
        reason: &'static str,
    },
    /// The `AADAudience` value is empty or holds spaces or characters
    /// outside printable ASCII.
    #[error(
        "the connection string's `AADAudience` must be a URL such as \
         `https://monitor.azure.com/` (printable ASCII, no spaces); remove it to use the \
         public cloud's audience"
    )]
    InvalidAadAudience,
    /// The `Authorization` value is neither `ikey` nor `aad`.
    #[error(
        "the connection string's `Authorization` must be `ikey` or `aad` (case-insensitive); \
         remove it to use the instrumentation key"
    )]
    InvalidAuthorization,
}

// === impl ConnectionString ===

impl ConnectionString {
    /// The instrumentation key, a GUID in lower case
    /// (e.g. `00000000-0000-0000-0000-000000000000`).
    #[must_use]
    pub fn instrumentation_key(&self) -> &str {
        &self.instrumentation_key
    }

    /// The ingestion endpoint without a trailing `/`, e.g.
    /// `https://westeurope-5.in.applicationinsights.azure.com`. Telemetry is
    /// posted to this plus `/v2.1/track`.
    #[must_use]
    pub fn ingestion_endpoint(&self) -> &str {
        &self.ingestion_endpoint
    }

    /// The live metrics endpoint without a trailing `/`, e.g.
    /// `https://rt.services.visualstudio.com`.
    #[must_use]
    pub fn live_endpoint(&self) -> &str {
        &self.live_endpoint
    }

    /// Whether the connection string names its Live Metrics endpoint
    /// (`LiveEndpoint`, or `EndpointSuffix` to derive it from): then Live
    /// Metrics is on unless `Builder::with_live_metrics(false)`. Without
    /// either, [`live_endpoint`](Self::live_endpoint) is the public default
    /// and Live Metrics stays off unless enabled, so a connection string
    /// pointing ingestion at a local endpoint never makes the process call
    /// the public host.
    ///
    /// ```
    /// use tracing_appinsights::ConnectionString;
    /// let local: ConnectionString =
    ///     "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"
    ///         .parse()?;
    /// assert!(!local.names_live_endpoint());
    /// let portal: ConnectionString = "InstrumentationKey=00000000-0000-0000-0000-000000000000;\
    ///     IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/;\
    ///     LiveEndpoint=https://westeurope.livediagnostics.monitor.azure.com/"
    ///     .parse()?;
    /// assert!(portal.names_live_endpoint());
    /// # Ok::<(), tracing_appinsights::ParseError>(())
    /// ```
    #[must_use]
    pub fn names_live_endpoint(&self) -> bool {
        self.names_live_endpoint
    }

    /// How requests are authorised (the `Authorization` key).
    #[must_use]
    pub fn authorization(&self) -> Authorization {
        self.authorization
    }

    /// The `AADAudience`, as given: the Microsoft Entra ID audience that
    /// tokens are requested for (`AADAudience` + `/.default` is the scope);
    /// `None` for the public cloud's, `https://monitor.azure.com/`.
    #[must_use]
    pub fn aad_audience(&self) -> Option<&str> {
        self.aad_audience.as_deref()
    }

    /// The instrumentation key shortened for logs: its first eight characters
    /// followed by `…`, e.g. `12345678…`.
    #[must_use]
    pub(crate) fn shortened_key(&self) -> String {
        shorten(&self.instrumentation_key)
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("instrumentation_key", &self.shortened_key())
            .field("ingestion_endpoint", &self.ingestion_endpoint)
            .field("live_endpoint", &self.live_endpoint)
            .field("authorization", &self.authorization)
            .field("aad_audience", &self.aad_audience)
            .finish()
    }
}

impl FromStr for ConnectionString {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fields = Fields::collect(s)?;
        let instrumentation_key = parse_instrumentation_key(fields.instrumentation_key)?;
        let authorization = parse_authorization(fields.authorization)?;
        let aad_audience = parse_aad_audience(fields.aad_audience)?;
        let ingestion_endpoint = endpoint(
            KEY_INGESTION_ENDPOINT,
            fields.ingestion_endpoint,
            &fields,
            "dc.",
            DEFAULT_INGESTION_ENDPOINT,
        )?;
        let live_endpoint = endpoint(
            KEY_LIVE_ENDPOINT,
            fields.live_endpoint,
            &fields,
            "live.",
            DEFAULT_LIVE_ENDPOINT,
        )?;
        let names_live_endpoint =
            fields.live_endpoint.is_some() || fields.endpoint_suffix.is_some();
        Ok(Self {
            instrumentation_key,
            ingestion_endpoint,
            live_endpoint,
            names_live_endpoint,
            authorization,
            aad_audience,
        })
    }
}

// === segment scanning ===

/// The values of the known keys (trimmed), last occurrence winning.
#[derive(Default)]
struct Fields<'a> {
    instrumentation_key: Option<&'a str>,
    ingestion_endpoint: Option<&'a str>,
    live_endpoint: Option<&'a str>,
    endpoint_suffix: Option<&'a str>,
    location: Option<&'a str>,
    authorization: Option<&'a str>,
    aad_audience: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn collect(s: &'a str) -> Result<Self, ParseError> {
        let mut fields = Fields::default();
        let mut any_segment = false;
        for (index, segment) in s.split(';').enumerate() {
            let segment = segment.trim();
            if segment.is_empty() {
                continue;
            }
            any_segment = true;
            let number = index + 1;
            let (key, value) = segment
                .split_once('=')
                .ok_or(ParseError::MissingEquals { segment: number })?;
            let key = key.trim();
            if key.is_empty() {
                return Err(ParseError::EmptyKey { segment: number });
            }
            fields.set(key, value.trim());
        }
        if any_segment {
            Ok(fields)
        } else {
            Err(ParseError::Empty)
        }
    }

    /// Records `value` under `key` if the key is known; unknown keys are ignored.
    fn set(&mut self, key: &str, value: &'a str) {
        let slot = if key.eq_ignore_ascii_case(KEY_INSTRUMENTATION_KEY) {
            &mut self.instrumentation_key
        } else if key.eq_ignore_ascii_case(KEY_INGESTION_ENDPOINT) {
            &mut self.ingestion_endpoint
        } else if key.eq_ignore_ascii_case(KEY_LIVE_ENDPOINT) {
            &mut self.live_endpoint
        } else if key.eq_ignore_ascii_case(KEY_ENDPOINT_SUFFIX) {
            &mut self.endpoint_suffix
        } else if key.eq_ignore_ascii_case(KEY_LOCATION) {
            &mut self.location
        } else if key.eq_ignore_ascii_case(KEY_AUTHORIZATION) {
            &mut self.authorization
        } else if key.eq_ignore_ascii_case(KEY_AAD_AUDIENCE) {
            &mut self.aad_audience
        } else {
            return;
        };
        *slot = Some(value);
    }
}

// === value validation ===

fn parse_instrumentation_key(value: Option<&str>) -> Result<String, ParseError> {
    match value {
        None | Some("") => Err(ParseError::MissingInstrumentationKey),
        Some(key) if is_guid(key) => Ok(key.to_ascii_lowercase()),
        Some(key) => Err(ParseError::InvalidInstrumentationKey {
            shortened: shorten(key),
        }),
    }
}

/// `8-4-4-4-12` ASCII hex digits, either case.
fn is_guid(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn parse_authorization(value: Option<&str>) -> Result<Authorization, ParseError> {
    match value {
        None => Ok(Authorization::Ikey),
        Some(v) if v.eq_ignore_ascii_case("ikey") => Ok(Authorization::Ikey),
        Some(v) if v.eq_ignore_ascii_case("aad") => Ok(Authorization::Aad),
        Some(_) => Err(ParseError::InvalidAuthorization),
    }
}

/// The audience as given, if any: printable ASCII without spaces.
fn parse_aad_audience(value: Option<&str>) -> Result<Option<String>, ParseError> {
    match value {
        None => Ok(None),
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(v.to_owned()))
        }
        Some(_) => Err(ParseError::InvalidAadAudience),
    }
}

/// The endpoint for `key`: explicit, else derived from `EndpointSuffix` with
/// `prefix` (`dc.` or `live.`), else `default`.
fn endpoint(
    key: &'static str,
    explicit: Option<&str>,
    fields: &Fields<'_>,
    prefix: &str,
    default: &str,
) -> Result<String, ParseError> {
    if let Some(url) = explicit {
        return validate_endpoint(url)
            .map_err(|reason| ParseError::InvalidEndpoint { key, reason });
    }
    match fields.endpoint_suffix {
        Some(suffix) => derive_endpoint(suffix, fields.location, prefix),
        None => Ok(default.to_owned()),
    }
}

/// `https://` + `<location>.` + `prefix` + `suffix`, as the Python exporter
/// builds it.
fn derive_endpoint(
    suffix: &str,
    location: Option<&str>,
    prefix: &str,
) -> Result<String, ParseError> {
    let suffix = suffix.trim_matches(|c| c == '.' || c == '/');
    if !is_dns_name(suffix) {
        return Err(ParseError::InvalidEndpoint {
            key: KEY_ENDPOINT_SUFFIX,
            reason: "must be a DNS suffix such as `applicationinsights.azure.cn` \
                     (letters, digits, `-` and `.` only)",
        });
    }
    let mut url = String::from("https://");
    if let Some(location) = location {
        let location = location.trim_matches('.');
        if !is_dns_name(location) {
            return Err(ParseError::InvalidEndpoint {
                key: KEY_LOCATION,
                reason: "must be a region name such as `westeurope` \
                         (letters, digits, `-` and `.` only)",
            });
        }
        url.push_str(location);
        url.push('.');
    }
    url.push_str(prefix);
    url.push_str(suffix);
    Ok(url)
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Checks an explicit endpoint URL and returns it with a lower-case scheme
/// and no trailing `/`. The error is the reason, phrased to follow the key.
fn validate_endpoint(url: &str) -> Result<String, &'static str> {
    if url.is_empty() {
        return Err(
            "is empty; give a URL such as `https://dc.services.visualstudio.com` \
                    or remove the segment",
        );
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "must contain only printable ASCII characters (no spaces; write an \
                    international host name in punycode)",
        );
    }
    let (scheme, rest) = split_scheme(url).ok_or(
        "must start with `https://` (or `http://` for a local test endpoint), \
         e.g. `https://dc.services.visualstudio.com`",
    )?;
    if rest.contains(['?', '#']) {
        return Err("must not contain a query (`?`) or fragment (`#`)");
    }
    let rest = rest.trim_end_matches('/');
    let authority = rest.split('/').next().unwrap_or_default();
    validate_authority(authority)?;
    Ok(format!("{scheme}{rest}"))
}

/// Splits off `https://` or `http://` (ASCII case-insensitive) and returns
/// the scheme in lower case with the rest.
fn split_scheme(url: &str) -> Option<(&'static str, &str)> {
    ["https://", "http://"].into_iter().find_map(|scheme| {
        let head = url.as_bytes().get(..scheme.len())?;
        // The head is ASCII when it matches, so `scheme.len()` is a char boundary.
        head.eq_ignore_ascii_case(scheme.as_bytes())
            .then(|| (scheme, &url[scheme.len()..]))
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; no user information.
fn validate_authority(authority: &str) -> Result<(), &'static str> {
    const NO_HOST: &str = "has no host after the scheme; give a URL such as \
                           `https://dc.services.visualstudio.com`";
    if authority.contains('@') {
        return Err("must not contain user information (`user@`); remove it");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or("has an unclosed `[` in its host")?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or("has text after the `]` of its host")?,
                ),
            };
            (host, port)
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err(NO_HOST);
    }
    match port {
        Some(port) if !is_port(port) => Err("has an invalid port (expected 1 to 65535)"),
        _ => Ok(()),
    }
}

fn is_port(s: &str) -> bool {
    s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && matches!(s.parse::<u32>(), Ok(1..=65535))
}

/// At most the first eight characters of `value`, and never more than half
/// of it, with control characters escaped, followed by `…`.
pub(crate) fn shorten(value: &str) -> String {
    let shown = SHORTENED_KEY_CHARS.min(value.chars().count() / 2);
    let mut out = String::with_capacity(shown * 4 + 3);
    for c in value.chars().take(shown) {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests;
