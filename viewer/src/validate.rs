//! The ingestion schema, checked as the service checks it: required fields
//! per base type, their JSON types and their maximum lengths in UTF-16 code
//! units (the service counts .NET string lengths), and the 64 KB item limit.
//!
//! The rules are those of the crate's own test checker
//! (`tests/it/support/schema.rs`, from the reference's swagger v2.1 and the
//! limits table of `docs/mapping.md`), relaxed where the service is lenient
//! and real exporters rely on it, so that the Python exporters' output is
//! accepted: unknown fields and tags are ignored, `null` counts as absent
//! for an optional field, property values may be numbers, booleans or
//! arrays (only strings are length-checked), severity levels may be the
//! integers 0–4, the envelope `name` may carry the instrumentation key
//! (`Microsoft.ApplicationInsights.<ikey>.Request`), `ver` may be absent,
//! and the 48-hour age limit on `time` is not applied (a viewer also
//! replays old captures).
//!
//! The first violation found is the item's error, worded as the service
//! words its refusals (`Field 'time' on type 'Envelope' …`).

use serde_json::{Map, Value};

/// The largest item the service accepts, in bytes of compact JSON: an item
/// of this size or more is refused.
pub const MAX_ITEM_BYTES: usize = 65_536;

/// The longest property name, in UTF-16 code units.
pub const MAX_PROPERTY_NAME: usize = 150;

/// The longest property value, in UTF-16 code units.
pub const MAX_PROPERTY_VALUE: usize = 8192;

/// The kind of telemetry an item is, from its `data.baseType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemType {
    /// `RequestData`.
    Request,
    /// `RemoteDependencyData`.
    Dependency,
    /// `MessageData` (a trace).
    Trace,
    /// `ExceptionData`.
    Exception,
    /// `EventData` (a custom event).
    Event,
    /// `MetricData`.
    Metric,
}

impl ItemType {
    /// The name the query API uses (`type=` and the `type` field).
    pub fn as_str(self) -> &'static str {
        match self {
            ItemType::Request => "request",
            ItemType::Dependency => "dependency",
            ItemType::Trace => "trace",
            ItemType::Exception => "exception",
            ItemType::Event => "event",
            ItemType::Metric => "metric",
        }
    }

    fn from_base_type(base_type: &str) -> Option<(ItemType, &'static [Field])> {
        Some(match base_type {
            "RequestData" => (ItemType::Request, REQUEST),
            "RemoteDependencyData" => (ItemType::Dependency, DEPENDENCY),
            "MessageData" => (ItemType::Trace, MESSAGE),
            "ExceptionData" => (ItemType::Exception, EXCEPTION),
            "EventData" => (ItemType::Event, EVENT),
            "MetricData" => (ItemType::Metric, METRIC),
            _ => return None,
        })
    }
}

/// Context tags the schema knows, with their maximum lengths.
const TAGS: &[(&str, usize)] = &[
    ("ai.application.ver", 1024),
    ("ai.device.id", 1024),
    ("ai.device.locale", 64),
    ("ai.device.model", 256),
    ("ai.device.oemName", 256),
    ("ai.device.osVersion", 256),
    ("ai.device.type", 64),
    ("ai.location.ip", 46),
    ("ai.location.country", 256),
    ("ai.location.province", 256),
    ("ai.location.city", 256),
    ("ai.operation.id", 128),
    ("ai.operation.name", 1024),
    ("ai.operation.parentId", 128),
    ("ai.operation.syntheticSource", 1024),
    ("ai.operation.correlationVector", 64),
    ("ai.session.id", 64),
    ("ai.session.isFirst", 5),
    ("ai.user.accountId", 1024),
    ("ai.user.id", 128),
    ("ai.user.authUserId", 1024),
    ("ai.cloud.role", 256),
    ("ai.cloud.roleInstance", 256),
    ("ai.internal.sdkVersion", 64),
    ("ai.internal.agentVersion", 64),
    ("ai.internal.nodeName", 256),
    // Not in the swagger's enum, but sent by Microsoft's own exporters.
    ("ai.user.userAgent", 8192),
];

/// How a field is checked.
#[derive(Clone, Copy)]
enum Kind {
    /// A string of at most this many UTF-16 code units.
    Str(usize),
    /// A duration `[D.]HH:MM:SS[.f…]`, less than 1000 days.
    Duration,
    Bool,
    Int,
    /// A property map: names of at most 150 units, string values of at
    /// most 8192.
    Properties,
    /// A map of names to numbers.
    Measurements,
    Severity,
    /// A non-empty array of exception details.
    Exceptions,
    /// An array of anything (stack frames: the seed sends strings).
    Array,
    /// A non-empty array of metric data points.
    Metrics,
}

struct Field {
    name: &'static str,
    kind: Kind,
    required: bool,
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: true,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
    }
}

const REQUEST: &[Field] = &[
    opt("ver", Kind::Int),
    req("id", Kind::Str(128)),
    req("duration", Kind::Duration),
    req("responseCode", Kind::Str(1024)),
    req("success", Kind::Bool),
    opt("name", Kind::Str(1024)),
    opt("source", Kind::Str(1024)),
    opt("url", Kind::Str(2048)),
    opt("properties", Kind::Properties),
    opt("measurements", Kind::Measurements),
];

const DEPENDENCY: &[Field] = &[
    opt("ver", Kind::Int),
    req("name", Kind::Str(1024)),
    req("duration", Kind::Duration),
    opt("id", Kind::Str(128)),
    opt("resultCode", Kind::Str(1024)),
    opt("data", Kind::Str(8192)),
    opt("type", Kind::Str(1024)),
    opt("target", Kind::Str(1024)),
    opt("success", Kind::Bool),
    opt("properties", Kind::Properties),
    opt("measurements", Kind::Measurements),
];

const MESSAGE: &[Field] = &[
    opt("ver", Kind::Int),
    req("message", Kind::Str(32768)),
    opt("severityLevel", Kind::Severity),
    opt("properties", Kind::Properties),
    opt("measurements", Kind::Measurements),
];

const EVENT: &[Field] = &[
    opt("ver", Kind::Int),
    req("name", Kind::Str(512)),
    opt("properties", Kind::Properties),
    opt("measurements", Kind::Measurements),
];

const EXCEPTION: &[Field] = &[
    opt("ver", Kind::Int),
    req("exceptions", Kind::Exceptions),
    opt("severityLevel", Kind::Severity),
    opt("problemId", Kind::Str(1024)),
    opt("properties", Kind::Properties),
    opt("measurements", Kind::Measurements),
];

const EXCEPTION_DETAILS: &[Field] = &[
    req("message", Kind::Str(32768)),
    opt("id", Kind::Int),
    opt("outerId", Kind::Int),
    opt("typeName", Kind::Str(1024)),
    opt("hasFullStack", Kind::Bool),
    opt("stack", Kind::Str(32768)),
    opt("parsedStack", Kind::Array),
];

const METRIC: &[Field] = &[
    opt("ver", Kind::Int),
    req("metrics", Kind::Metrics),
    opt("properties", Kind::Properties),
];

const DATA_POINT: &[Field] = &[
    opt("ns", Kind::Str(256)),
    req("name", Kind::Str(1024)),
    opt("kind", Kind::Str(64)),
];

/// Checks one envelope; `Ok` with its type when the service would accept
/// it, else the message the service would refuse it with.
pub fn check(envelope: &Value) -> Result<ItemType, String> {
    let size = serde_json::to_vec(envelope).map_or(usize::MAX, |v| v.len());
    if size >= MAX_ITEM_BYTES {
        return Err(format!(
            "Item is too large. Expected: less than {MAX_ITEM_BYTES} bytes. Actual: {size}"
        ));
    }
    let Some(env) = envelope.as_object() else {
        return Err(format!(
            "Item is not of the expected type. Expected: object. Actual: {}",
            json_type(envelope)
        ));
    };
    check_envelope(env)?;
    check_tags(env.get("tags"))?;
    check_data(env)
}

fn check_envelope(env: &Map<String, Value>) -> Result<(), String> {
    const ENVELOPE: &str = "Envelope";
    match present(env, "name") {
        None => return Err(missing("name", ENVELOPE)),
        Some(Value::String(s)) if s.is_empty() => return Err(missing("name", ENVELOPE)),
        Some(v @ Value::String(_)) => check_str("name", ENVELOPE, v, 1024)?,
        Some(v) => return Err(wrong_type("name", ENVELOPE, "string", v)),
    }
    match present(env, "time") {
        None => return Err(missing("time", ENVELOPE)),
        Some(Value::String(t)) => {
            if parse_time(t).is_none() {
                return Err(format!(
                    "Field 'time' on type '{ENVELOPE}' is not a valid date-time. \
                     Expected: ISO 8601 UTC (YYYY-MM-DDTHH:MM:SS[.f]Z). Actual: {}",
                    cut(t, 64)
                ));
            }
        }
        Some(v) => return Err(wrong_type("time", ENVELOPE, "string", v)),
    }
    match present(env, "iKey") {
        None => return Err(missing("iKey", ENVELOPE)),
        Some(Value::String(s)) if s.is_empty() => return Err(missing("iKey", ENVELOPE)),
        Some(v @ Value::String(_)) => check_str("iKey", ENVELOPE, v, 128)?,
        Some(v) => return Err(wrong_type("iKey", ENVELOPE, "string", v)),
    }
    if let Some(rate) = present(env, "sampleRate") {
        match rate.as_f64() {
            Some(r) if r > 0.0 && r <= 100.0 => {}
            Some(_) => {
                return Err(format!(
                    "Field 'sampleRate' on type '{ENVELOPE}' is out of range. \
                     Expected: a number in (0, 100]. Actual: {rate}"
                ))
            }
            None => return Err(wrong_type("sampleRate", ENVELOPE, "number", rate)),
        }
    }
    if let Some(ver) = present(env, "ver") {
        if !ver.is_i64() {
            return Err(wrong_type("ver", ENVELOPE, "integer", ver));
        }
    }
    if let Some(seq) = present(env, "seq") {
        check_str("seq", ENVELOPE, seq, 64)?;
    }
    Ok(())
}

fn check_tags(tags: Option<&Value>) -> Result<(), String> {
    let tags = match tags {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(tags)) => tags,
        Some(v) => return Err(wrong_type("tags", "Envelope", "object", v)),
    };
    for (key, value) in tags {
        if value.is_null() {
            continue;
        }
        if let Some((_, max)) = TAGS.iter().find(|(k, _)| k == key) {
            check_str(key, "ContextTagKeys", value, *max)?;
        }
    }
    Ok(())
}

fn check_data(env: &Map<String, Value>) -> Result<ItemType, String> {
    let data = match present(env, "data") {
        None => return Err(missing("data", "Envelope")),
        Some(Value::Object(data)) => data,
        Some(v) => return Err(wrong_type("data", "Envelope", "object", v)),
    };
    let base_type = match present(data, "baseType") {
        None => return Err(missing("baseType", "Data")),
        Some(Value::String(s)) => s.as_str(),
        Some(v) => return Err(wrong_type("baseType", "Data", "string", v)),
    };
    let Some((item_type, fields)) = ItemType::from_base_type(base_type) else {
        return Err(format!(
            "Field 'baseType' on type 'Data' is not a known type. Expected: RequestData, \
             RemoteDependencyData, MessageData, ExceptionData, EventData or MetricData. Actual: {}",
            cut(base_type, 64)
        ));
    };
    match present(data, "baseData") {
        None => Err(missing("baseData", "Data")),
        Some(Value::Object(base)) => {
            check_fields(base_type, base, fields)?;
            Ok(item_type)
        }
        Some(v) => Err(wrong_type("baseData", "Data", "object", v)),
    }
}

fn check_fields(on: &str, obj: &Map<String, Value>, fields: &[Field]) -> Result<(), String> {
    for field in fields {
        match present(obj, field.name) {
            None if field.required => return Err(missing(field.name, on)),
            None => {}
            // The service refuses an empty required string, except a
            // response code (`""` is rare, but not missing).
            Some(Value::String(s))
                if s.is_empty() && field.required && field.name != "responseCode" =>
            {
                return Err(missing(field.name, on));
            }
            Some(value) => check_kind(field.name, on, value, field.kind)?,
        }
    }
    Ok(())
}

fn check_kind(field: &str, on: &str, value: &Value, kind: Kind) -> Result<(), String> {
    match kind {
        Kind::Str(max) => check_str(field, on, value, max),
        Kind::Duration => match value.as_str() {
            Some(d) if parse_duration_ms(d).is_some() => Ok(()),
            Some(d) => Err(format!(
                "Field '{field}' on type '{on}' is not a valid duration. \
                 Expected: D.HH:MM:SS.ffffff, less than 1000 days. Actual: {}",
                cut(d, 64)
            )),
            None => Err(wrong_type(field, on, "string", value)),
        },
        Kind::Bool if !value.is_boolean() => Err(wrong_type(field, on, "boolean", value)),
        Kind::Int if !value.is_i64() => Err(wrong_type(field, on, "integer", value)),
        Kind::Bool | Kind::Int => Ok(()),
        Kind::Properties => check_properties(field, on, value),
        Kind::Measurements => match value.as_object() {
            Some(m) => {
                for (name, v) in m {
                    check_name(field, on, name)?;
                    if !v.is_number() {
                        return Err(wrong_type(
                            &format!("{field}.{}", cut(name, 40)),
                            on,
                            "number",
                            v,
                        ));
                    }
                }
                Ok(())
            }
            None => Err(wrong_type(field, on, "object", value)),
        },
        Kind::Severity => {
            const LEVELS: [&str; 5] = ["Verbose", "Information", "Warning", "Error", "Critical"];
            let ok = match value {
                Value::String(s) => LEVELS.contains(&s.as_str()),
                Value::Number(n) => n.as_u64().is_some_and(|n| n <= 4),
                _ => false,
            };
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "Field '{field}' on type '{on}' is not a severity level. Expected: \
                     Verbose, Information, Warning, Error or Critical. Actual: {}",
                    cut(&value.to_string(), 64)
                ))
            }
        }
        Kind::Exceptions | Kind::Metrics => {
            let (details, detail_type) = match kind {
                Kind::Exceptions => (EXCEPTION_DETAILS, "TelemetryExceptionDetails"),
                _ => (DATA_POINT, "DataPoint"),
            };
            match value.as_array() {
                Some(list) if list.is_empty() => Err(missing(field, on)),
                Some(list) => {
                    for detail in list {
                        match detail.as_object() {
                            Some(d) => check_fields(detail_type, d, details)?,
                            None => return Err(wrong_type(field, on, "array of objects", detail)),
                        }
                    }
                    Ok(())
                }
                None => Err(wrong_type(field, on, "array", value)),
            }
        }
        Kind::Array if !value.is_array() => Err(wrong_type(field, on, "array", value)),
        Kind::Array => Ok(()),
    }
}

fn check_properties(field: &str, on: &str, value: &Value) -> Result<(), String> {
    let Some(props) = value.as_object() else {
        return Err(wrong_type(field, on, "object", value));
    };
    for (name, value) in props {
        check_name(field, on, name)?;
        if value.is_string() {
            check_str(
                &format!("{field}.{}", cut(name, 40)),
                on,
                value,
                MAX_PROPERTY_VALUE,
            )?;
        }
    }
    Ok(())
}

fn check_name(field: &str, on: &str, name: &str) -> Result<(), String> {
    let len = utf16_len(name);
    if len > MAX_PROPERTY_NAME {
        return Err(format!(
            "Field '{field}' on type '{on}' has a name that is too long. \
             Expected: at most {MAX_PROPERTY_NAME} UTF-16 code units. Actual: {len} ({}…)",
            cut(name, 40)
        ));
    }
    Ok(())
}

/// The length the service counts: UTF-16 code units (.NET strings).
pub fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

fn check_str(field: &str, on: &str, value: &Value, max: usize) -> Result<(), String> {
    match value.as_str() {
        Some(s) => {
            let len = utf16_len(s);
            if len <= max {
                Ok(())
            } else {
                Err(format!(
                    "Field '{field}' on type '{on}' is too long. \
                     Expected: at most {max} UTF-16 code units. Actual: {len}"
                ))
            }
        }
        None => Err(wrong_type(field, on, "string", value)),
    }
}

/// A field that is there and not `null`.
fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn missing(field: &str, on: &str) -> String {
    format!("Field '{field}' on type '{on}' is required but missing or empty")
}

fn wrong_type(field: &str, on: &str, expected: &str, actual: &Value) -> String {
    format!(
        "Field '{field}' on type '{on}' is not of the expected type. Expected: {expected}. Actual: {}",
        json_type(actual)
    )
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// At most `max` characters of `s`, on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f…](Z|±HH:MM)` as microseconds since the Unix
/// epoch; `None` when it is not such a time.
pub fn parse_time(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = b.get(r)?;
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                micros = micros * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || digits > 9 {
            return None;
        }
        for _ in digits..6 {
            micros *= 10;
        }
    }
    let offset_minutes = match &b[i..] {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digit = |c: &u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
            let h = digit(h1)? * 10 + digit(h2)?;
            let m = digit(m1)? * 10 + digit(m2)?;
            if h > 23 || m > 59 {
                return None;
            }
            let total = h * 60 + m;
            if *sign == b'+' {
                total
            } else {
                -total
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000_000 + micros)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Microseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn format_time(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil_from_days, the inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `[D.]HH:MM:SS[.f…]` (fewer than 1000 days) in milliseconds; `None` when
/// it is not such a duration.
pub fn parse_duration_ms(d: &str) -> Option<f64> {
    let (days, rest) = match d.split_once('.') {
        // `D.HH:…`: a dot before the first colon separates the days.
        Some((days, rest)) if !days.contains(':') => (days, rest),
        _ => ("0", d),
    };
    if days.is_empty() || days.len() > 3 || !days.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (hms, frac) = match rest.split_once('.') {
        Some((hms, frac)) => (hms, frac),
        None => (rest, ""),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    if parts.len() != 3
        || !parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_digit()))
        || frac.len() > 7
        || !frac.bytes().all(|c| c.is_ascii_digit())
        || (rest.contains('.') && frac.is_empty())
    {
        return None;
    }
    let n = |s: &str| s.parse::<f64>().ok();
    let (h, m, s) = (n(parts[0])?, n(parts[1])?, n(parts[2])?);
    if h > 23.0 || m > 59.0 || s > 59.0 {
        return None;
    }
    let fraction = if frac.is_empty() {
        0.0
    } else {
        n(frac)? / 10f64.powi(i32::try_from(frac.len()).ok()?)
    };
    Some(((n(days)? * 24.0 + h) * 60.0 + m) * 60_000.0 + (s + fraction) * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        let t = parse_time("2026-11-25T15:02:00.334736Z").unwrap();
        assert_eq!(format_time(t), "2026-11-25T15:02:00.334736Z");
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_time("2026-02-30T00:00:00Z"), None);
        assert_eq!(parse_time("2026-11-25T15:02:00"), None);
        assert_eq!(parse_time("not a time at all!!"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("0.00:00:00.010"), Some(10.0));
        assert_eq!(parse_duration_ms("1.00:00:01.5"), Some(86_401_500.0));
        assert_eq!(parse_duration_ms("00:00:02"), Some(2000.0));
        assert_eq!(parse_duration_ms("1000.00:00:00"), None);
        assert_eq!(parse_duration_ms("0.00:60:00.000"), None);
        assert_eq!(parse_duration_ms("x"), None);
    }

    #[test]
    fn cut_keeps_char_boundaries() {
        assert_eq!(cut("héllo", 2), "hé");
        assert_eq!(cut("ab", 5), "ab");
    }
}
