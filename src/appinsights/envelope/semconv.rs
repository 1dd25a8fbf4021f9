//! The OpenTelemetry semantic-convention fields the mapping reads (old and
//! new names; the new name wins when both are present), found in one pass
//! over a span's attributes, and what they derive: URLs, targets, codes.
//!
//! A recognized key is consumed: its value goes to a dedicated envelope
//! field or tag and not to `properties` (`component` is the exception: it is
//! read and kept, as `opencensus-ext-azure` keeps it).

use std::borrow::Cow;

use crate::record::{AttributeValue, Attributes, Status};

use super::properties::Properties;

/// The recognized fields of one span. Each is the attribute's value, if
/// present.
#[derive(Default)]
pub(crate) struct Semantic<'a> {
    pub(crate) method: Option<&'a AttributeValue>,
    pub(crate) url: Option<&'a AttributeValue>,
    pub(crate) route: Option<&'a AttributeValue>,
    pub(crate) status: Option<&'a AttributeValue>,
    pub(crate) url_path: Option<&'a AttributeValue>,
    /// `url.template`: the low-cardinality path template of a client call.
    pub(crate) url_template: Option<&'a AttributeValue>,
    pub(crate) http_target: Option<&'a AttributeValue>,
    pub(crate) query: Option<&'a AttributeValue>,
    pub(crate) scheme: Option<&'a AttributeValue>,
    pub(crate) host: Option<&'a AttributeValue>,
    pub(crate) server_address: Option<&'a AttributeValue>,
    pub(crate) server_port: Option<&'a AttributeValue>,
    pub(crate) peer_name: Option<&'a AttributeValue>,
    pub(crate) peer_port: Option<&'a AttributeValue>,
    pub(crate) peer_service: Option<&'a AttributeValue>,
    pub(crate) db_system: Option<&'a AttributeValue>,
    pub(crate) db_name: Option<&'a AttributeValue>,
    pub(crate) db_statement: Option<&'a AttributeValue>,
    pub(crate) db_operation: Option<&'a AttributeValue>,
    pub(crate) messaging_system: Option<&'a AttributeValue>,
    pub(crate) messaging_destination: Option<&'a AttributeValue>,
    pub(crate) enduser_id: Option<&'a AttributeValue>,
    pub(crate) client_ip: Option<&'a AttributeValue>,
    pub(crate) user_agent: Option<&'a AttributeValue>,
    /// `ai.request.source`: the caller's `Request-Context` appId.
    pub(crate) request_source: Option<&'a AttributeValue>,
    pub(crate) component: Option<&'a AttributeValue>,
}

/// An HTTP status: as sent (`responseCode`/`resultCode`) and as a number.
pub(crate) struct HttpStatus<'a> {
    pub(crate) text: Cow<'a, str>,
    pub(crate) code: Option<i64>,
}

impl<'a> Semantic<'a> {
    /// Reads the recognized fields of `attrs` and pushes every other
    /// attribute onto `props`. `request` says whether the span becomes a
    /// Request: only then are the client address and user agent consumed
    /// (into tags).
    pub(crate) fn scan(attrs: &'a Attributes, request: bool, props: &mut Properties<'a>) -> Self {
        let mut sem = Semantic::default();
        for (key, value) in attrs.iter() {
            if !sem.absorb(key, value, request) {
                props.push_attribute(key, value);
            }
        }
        sem
    }

    /// Takes `key` if it is recognized; `false` when it stays a property.
    fn absorb(&mut self, key: &str, v: &'a AttributeValue, request: bool) -> bool {
        let (slot, new) = match key {
            "http.request.method" => (&mut self.method, true),
            "http.method" => (&mut self.method, false),
            "url.full" => (&mut self.url, true),
            "http.url" => (&mut self.url, false),
            "http.route" => (&mut self.route, true),
            "http.response.status_code" => (&mut self.status, true),
            "http.status_code" => (&mut self.status, false),
            "url.path" => (&mut self.url_path, true),
            // A client call's template; a server span names itself by
            // `http.route`, so there it stays a property.
            "url.template" if !request => (&mut self.url_template, true),
            "http.target" => (&mut self.http_target, true),
            "url.query" => (&mut self.query, true),
            "url.scheme" => (&mut self.scheme, true),
            "http.scheme" => (&mut self.scheme, false),
            "http.host" => (&mut self.host, true),
            _ => return self.absorb_peer(key, v, request),
        };
        set(slot, v, new);
        true
    }

    fn absorb_peer(&mut self, key: &str, v: &'a AttributeValue, request: bool) -> bool {
        let (slot, new) = match key {
            "server.address" => (&mut self.server_address, true),
            "server.port" => (&mut self.server_port, true),
            "net.peer.name" => (&mut self.peer_name, true),
            "net.peer.port" => (&mut self.peer_port, true),
            "peer.service" => (&mut self.peer_service, true),
            // Tags are text: a value of another type stays a property.
            // (Matched, not `as_str`: that would check the text's UTF-8.)
            _ if !matches!(v, AttributeValue::Str(_) | AttributeValue::Debug(_)) => {
                return self.absorb_db(key, v)
            }
            "enduser.id" => (&mut self.enduser_id, true),
            "client.address" if request => (&mut self.client_ip, true),
            "http.client_ip" if request => (&mut self.client_ip, false),
            "user_agent.original" if request => (&mut self.user_agent, true),
            "http.user_agent" if request => (&mut self.user_agent, false),
            crate::propagation::FIELD_REQUEST_SOURCE if request => (&mut self.request_source, true),
            _ => return self.absorb_db(key, v),
        };
        set(slot, v, new);
        true
    }

    fn absorb_db(&mut self, key: &str, v: &'a AttributeValue) -> bool {
        let (slot, new) = match key {
            "db.system" => (&mut self.db_system, true),
            "db.namespace" => (&mut self.db_name, true),
            "db.name" => (&mut self.db_name, false),
            "db.query.text" => (&mut self.db_statement, true),
            "db.statement" => (&mut self.db_statement, false),
            "db.operation.name" => (&mut self.db_operation, true),
            "db.operation" => (&mut self.db_operation, false),
            "messaging.system" => (&mut self.messaging_system, true),
            "messaging.destination.name" => (&mut self.messaging_destination, true),
            "messaging.destination" => (&mut self.messaging_destination, false),
            "component" => {
                self.component = Some(v);
                return false; // read, and kept as a property
            }
            _ => return false,
        };
        set(slot, v, new);
        true
    }

    /// The HTTP status, if any.
    pub(crate) fn http_status(&self) -> Option<HttpStatus<'a>> {
        let v = self.status?;
        let code = match v {
            AttributeValue::I64(c) => Some(*c),
            AttributeValue::U64(c) => i64::try_from(*c).ok(),
            other => other.as_str().and_then(|s| s.trim().parse().ok()),
        };
        Some(HttpStatus {
            text: text(v),
            code,
        })
    }

    /// `responseCode` / `resultCode`: the HTTP status, else `"0"`.
    pub(crate) fn result_code(&self) -> Cow<'a, str> {
        self.http_status()
            .map_or(Cow::Borrowed("0"), |status| status.text)
    }

    /// Not an error status and, when there is an HTTP status, below 400.
    pub(crate) fn success(&self, status: &Status) -> bool {
        let http_ok = match self.http_status().and_then(|s| s.code) {
            Some(code) => code < 400,
            None => true,
        };
        !status.is_error() && http_ok
    }

    /// `"METHOD route"` when both are present.
    pub(crate) fn method_and_route(&self) -> Option<String> {
        let (method, route) = (self.method?, self.route?);
        Some(joined(&text(method), &text(route)))
    }

    /// `"METHOD template"` for an HTTP span with a `url.template`, else
    /// `"METHOD path"` (the path without its query; `/` when unknown or
    /// empty).
    pub(crate) fn method_and_path(&self) -> Option<String> {
        let method = self.method?;
        let path = match self.url_template {
            Some(template) => text(template),
            None => self.http_path(),
        };
        let path = if path.is_empty() { "/" } else { &path };
        Some(joined(&text(method), path))
    }

    /// The request path: `url.path`, else `http.target` without its query,
    /// else the URL's path.
    fn http_path(&self) -> Cow<'a, str> {
        if let Some(path) = self.url_path {
            return text(path);
        }
        if let Some(target) = self.http_target {
            return match text(target) {
                Cow::Borrowed(s) => Cow::Borrowed(strip_query(s)),
                Cow::Owned(s) => Cow::Owned(strip_query(&s).to_owned()),
            };
        }
        let url = self.url.and_then(AttributeValue::as_str);
        Cow::Borrowed(url.and_then(UrlParts::parse).map_or("", |u| u.path))
    }

    /// The full URL: `url.full` / `http.url`, else built from scheme, host
    /// and target when the scheme and the host are known.
    pub(crate) fn full_url(&self) -> Option<Cow<'a, str>> {
        if let Some(url) = self.url {
            return Some(strip_userinfo(text(url)));
        }
        let scheme = text(self.scheme?);
        let host = match self.host {
            Some(host) => text(host),
            None => self.address_port(self.server_address?, self.server_port, &scheme, None),
        };
        let mut url = format!("{scheme}://{host}");
        if let Some(path) = self.url_path {
            url.push_str(&text(path));
            if let Some(query) = self.query {
                url.push('?');
                url.push_str(&text(query));
            }
        } else if let Some(target) = self.http_target {
            url.push_str(&text(target));
        }
        Some(Cow::Owned(url))
    }

    /// The URL's scheme: `url.scheme` / `http.scheme`, else the URL's.
    fn url_scheme(&self) -> Option<Cow<'a, str>> {
        if let Some(scheme) = self.scheme {
            return Some(text(scheme));
        }
        let url = self.url.and_then(AttributeValue::as_str)?;
        UrlParts::parse(url).map(|u| Cow::Borrowed(u.scheme))
    }

    /// An HTTP dependency's `target`: `server.address[:port]`, else
    /// `peer.service`, else `http.host`, else the URL's `host[:port]`, else
    /// the peer; default ports (80 for http, 443 for https) omitted.
    pub(crate) fn http_target(&self) -> Option<Cow<'a, str>> {
        let scheme = self.url_scheme().unwrap_or_default();
        if let Some(address) = self.server_address {
            return Some(self.address_port(address, self.server_port, &scheme, None));
        }
        if let Some(service) = self.peer_service {
            return Some(text(service));
        }
        if let Some(host) = self.host {
            return Some(without_default_port(text(host), &scheme));
        }
        let url = self.url.and_then(AttributeValue::as_str);
        match url.and_then(UrlParts::parse) {
            Some(u) => Some(u.target()),
            None => self.peer_target(None),
        }
    }

    /// The default target: `peer.service`, else `server.address` /
    /// `net.peer.name` with `:port` unless it is the HTTP default for the
    /// scheme or the database default for `db_system`.
    pub(crate) fn peer_target(&self, db_system: Option<&str>) -> Option<Cow<'a, str>> {
        if let Some(service) = self.peer_service {
            return Some(text(service));
        }
        let address = self.server_address.or(self.peer_name)?;
        let port = self.server_port.or(self.peer_port);
        let scheme = self.url_scheme().unwrap_or_default();
        Some(self.address_port(address, port, &scheme, db_system))
    }

    /// `host[:port]`, the port omitted when it is a default one.
    fn address_port(
        &self,
        address: &'a AttributeValue,
        port: Option<&'a AttributeValue>,
        scheme: &str,
        db_system: Option<&str>,
    ) -> Cow<'a, str> {
        let host = text(address);
        match port.and_then(port_number) {
            Some(p) if !is_default_port(p, scheme, db_system) => Cow::Owned(format!("{host}:{p}")),
            _ => host,
        }
    }
}

/// `host[:port]` without the port when it is the scheme's default.
fn without_default_port<'a>(host: Cow<'a, str>, scheme: &str) -> Cow<'a, str> {
    let len = match split_port(&host) {
        (h, Some(p)) if is_default_port(p, scheme, None) => h.len(),
        _ => return host,
    };
    match host {
        Cow::Borrowed(b) => Cow::Borrowed(&b[..len]),
        Cow::Owned(mut o) => {
            o.truncate(len);
            Cow::Owned(o)
        }
    }
}

/// Stores `v` unless a value under the new name is already there.
fn set<'a>(slot: &mut Option<&'a AttributeValue>, v: &'a AttributeValue, new: bool) {
    if new || slot.is_none() {
        *slot = Some(v);
    }
}

/// An attribute as text, borrowed when it is text.
pub(crate) fn text(v: &AttributeValue) -> Cow<'_, str> {
    match v {
        AttributeValue::Str(s) | AttributeValue::Debug(s) => Cow::Borrowed(s),
        AttributeValue::Error(e) => Cow::Borrowed(&e.message),
        // Status codes and ports: `Display`'s digits, without a formatter
        // (and, for an HTTP status, without allocating).
        AttributeValue::U64(n) => {
            three_digits(*n).map_or_else(|| Cow::Owned(decimal(false, *n)), Cow::Borrowed)
        }
        AttributeValue::I64(n) => match u64::try_from(*n).ok().and_then(three_digits) {
            Some(digits) => Cow::Borrowed(digits),
            None => Cow::Owned(decimal(*n < 0, n.unsigned_abs())),
        },
        other => Cow::Owned(other.to_string()),
    }
}

/// The digits of 100 to 999, back to back: `"100101102…999"`.
static THREE_DIGITS: [u8; 2700] = {
    let mut digits = [0u8; 2700];
    let mut n = 100;
    while n < 1000 {
        let at = (n - 100) * 3;
        digits[at] = b'0' + (n / 100) as u8;
        digits[at + 1] = b'0' + (n / 10 % 10) as u8;
        digits[at + 2] = b'0' + (n % 10) as u8;
        n += 1;
    }
    digits
};

/// `n` as text when it has three digits (every HTTP status), borrowed from
/// [`THREE_DIGITS`].
fn three_digits(n: u64) -> Option<&'static str> {
    if !(100..1000).contains(&n) {
        return None;
    }
    let at = (n as usize - 100) * 3;
    std::str::from_utf8(THREE_DIGITS.get(at..at + 3)?).ok()
}

/// `n` in decimal, after a `-` when `negative`: what `Display` prints.
fn decimal(negative: bool, mut n: u64) -> String {
    let mut buf = [0u8; 21];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        i -= 1;
        buf[i] = b'-';
    }
    buf[i..].iter().map(|&b| char::from(b)).collect()
}

/// `a b`: two texts joined by a space (`format!` without its formatter).
fn joined(a: &str, b: &str) -> String {
    let mut out = String::with_capacity(a.len() + 1 + b.len());
    out.push_str(a);
    out.push(' ');
    out.push_str(b);
    out
}

/// A port number from an integer or a numeric string.
fn port_number(v: &AttributeValue) -> Option<u16> {
    match v {
        AttributeValue::I64(p) => u16::try_from(*p).ok(),
        AttributeValue::U64(p) => u16::try_from(*p).ok(),
        other => other.as_str()?.trim().parse().ok(),
    }
}

/// Whether `port` is the default for the URL scheme or the database.
fn is_default_port(port: u16, scheme: &str, db_system: Option<&str>) -> bool {
    let http = match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    http == Some(port) || db_system.and_then(default_db_port) == Some(port)
}

/// The default port of a `db.system` (the successor's table).
fn default_db_port(system: &str) -> Option<u16> {
    Some(match system {
        "postgresql" => 5432,
        "cassandra" => 9042,
        "mysql" | "mariadb" => 3306,
        "mssql" => 1433,
        "memcached" => 11211,
        "db2" => 50000,
        "oracle" => 1521,
        "h2" => 8082,
        "derby" => 1527,
        "redis" => 6379,
        _ => return None,
    })
}

/// A dependency `type` for a `db.system`: the SQL family is `SQL`, any
/// other system (mysql, postgresql, mongodb, redis, …) its own name.
pub(crate) fn db_type(system: &str) -> &str {
    match system {
        "db2" | "derby" | "mariadb" | "mssql" | "oracle" | "sqlite" | "other_sql" | "hsqldb"
        | "h2" => "SQL",
        other => other,
    }
}

/// `url` without the `user:password@` part of its authority: credentials
/// must not travel in telemetry (the semantic conventions say so too).
fn strip_userinfo(url: Cow<'_, str>) -> Cow<'_, str> {
    let userinfo = url.split_once("://").and_then(|(scheme, rest)| {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let at = rest[..end].rfind('@')?;
        Some((scheme.len() + 3, scheme.len() + 3 + at + 1))
    });
    match userinfo {
        Some((start, end)) => Cow::Owned(format!("{}{}", &url[..start], &url[end..])),
        None => url,
    }
}

/// `s` up to its `?` or `#`.
fn strip_query(s: &str) -> &str {
    s.find(['?', '#']).map_or(s, |i| &s[..i])
}

/// The parts of an absolute URL the mapping needs.
pub(crate) struct UrlParts<'a> {
    pub(crate) scheme: &'a str,
    pub(crate) host: &'a str,
    pub(crate) port: Option<u16>,
    pub(crate) path: &'a str,
}

impl<'a> UrlParts<'a> {
    /// Splits `scheme://[userinfo@]host[:port][/path][?query][#fragment]`;
    /// `None` without `://`.
    pub(crate) fn parse(url: &'a str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = split_port(host_port);
        Some(UrlParts {
            scheme,
            host,
            port,
            path: strip_query(tail),
        })
    }

    /// `host[:port]` (never the userinfo), without a default port.
    fn target(&self) -> Cow<'a, str> {
        match self.port {
            Some(p) if !is_default_port(p, self.scheme, None) => {
                Cow::Owned(format!("{}:{p}", self.host))
            }
            _ => Cow::Borrowed(self.host),
        }
    }
}

/// `host:port` into host and numeric port (`[v6]:port` understood).
fn split_port(host_port: &str) -> (&str, Option<u16>) {
    let colon = match host_port.rfind(':') {
        Some(i) if !host_port[i..].contains(']') => i,
        _ => return (host_port, None),
    };
    let (host, port) = (&host_port[..colon], &host_port[colon + 1..]);
    match port.parse() {
        Ok(p) => (host, Some(p)),
        Err(_) if port.is_empty() => (host, None),
        Err(_) => (host_port, None),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn integers_are_their_display_text() {
        use crate::record::AttributeValue;
        for v in [0, 7, 99, 100, 200, 999, 1000, u64::MAX] {
            assert_eq!(super::text(&AttributeValue::U64(v)), v.to_string());
        }
        for v in (0..1100).chain([u64::MAX - 1]) {
            assert_eq!(super::text(&AttributeValue::U64(v)), v.to_string());
        }
        for v in [0, -1, -100, -404, 100, 404, 999, 1000, i64::MIN, i64::MAX] {
            assert_eq!(super::text(&AttributeValue::I64(v)), v.to_string());
        }
    }

    use super::*;

    #[test]
    fn urls_split() {
        let cases = [
            ("https://a.b/c?d#e", ("https", "a.b", None, "/c")),
            ("http://u:p@h:8080", ("http", "h", Some(8080), "")),
            ("http://[::1]:99/x", ("http", "[::1]", Some(99), "/x")),
            ("http://[::1]/x", ("http", "[::1]", None, "/x")),
            ("http://h:/x", ("http", "h", None, "/x")),
            ("http://h:port/x", ("http", "h:port", None, "/x")),
            ("http://é😀:1?q", ("http", "é😀", Some(1), "")),
        ];
        for (url, (scheme, host, port, path)) in cases {
            let u = UrlParts::parse(url).unwrap();
            assert_eq!(
                (u.scheme, u.host, u.port, u.path),
                (scheme, host, port, path)
            );
        }
        assert!(UrlParts::parse("not a url").is_none());
    }

    #[test]
    fn credentials_are_removed() {
        let cases = [
            ("https://u:p@h:1/x?a@b", "https://h:1/x?a@b"),
            ("http://h/x@y", "http://h/x@y"),
            ("no scheme@all", "no scheme@all"),
        ];
        for (url, want) in cases {
            assert_eq!(strip_userinfo(Cow::Borrowed(url)), want);
        }
    }

    #[test]
    fn http_host_loses_only_a_default_port() {
        for (host, scheme, want) in [
            ("h:443", "https", "h"),
            ("h:443", "http", "h:443"),
            ("h:8080", "http", "h:8080"),
            ("h", "http", "h"),
        ] {
            assert_eq!(without_default_port(Cow::Borrowed(host), scheme), want);
        }
    }

    #[test]
    fn default_ports() {
        assert!(is_default_port(443, "https", None));
        assert!(!is_default_port(443, "http", None));
        assert!(is_default_port(5432, "", Some("postgresql")));
        assert!(!is_default_port(5433, "", Some("postgresql")));
        assert!(!is_default_port(80, "", None));
    }

    #[test]
    fn sql_family() {
        for s in ["mssql", "sqlite", "h2", "other_sql"] {
            assert_eq!(db_type(s), "SQL");
        }
        for s in ["mysql", "postgresql", "mongodb", "redis", "cosmosdb"] {
            assert_eq!(db_type(s), s);
        }
    }
}
