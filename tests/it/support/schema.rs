//! A checker of envelopes against the ingestion schema (reference §f, the
//! service's swagger v2.1): field types, required fields, maximum lengths
//! (in UTF-16 code units, as the service counts), tag keys and the 64 KB item
//! limit. It returns every violation found, so a failing test says all
//! that is wrong at once.

use serde_json::{Map, Value};

/// The service rejects items larger than this many bytes.
pub const MAX_ITEM_BYTES: usize = 65_536;

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
    ("ai.operation.id", 128),
    ("ai.operation.name", 1024),
    ("ai.operation.parentId", 128),
    ("ai.operation.syntheticSource", 1024),
    ("ai.session.id", 64),
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
    /// A duration `D.HH:MM:SS.ffffff`, less than 1000 days.
    Duration,
    Bool,
    Int,
    /// A string property map.
    Properties,
    /// A number map.
    Measurements,
    Severity,
    Exceptions,
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
    req("ver", Kind::Int),
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
    req("ver", Kind::Int),
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
    req("ver", Kind::Int),
    req("message", Kind::Str(32768)),
    opt("severityLevel", Kind::Severity),
    opt("properties", Kind::Properties),
    opt("measurements", Kind::Measurements),
];

const EVENT: &[Field] = &[
    req("ver", Kind::Int),
    req("name", Kind::Str(512)),
    opt("properties", Kind::Properties),
    opt("measurements", Kind::Measurements),
];

const EXCEPTION: &[Field] = &[
    req("ver", Kind::Int),
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
];

/// Every violation of the schema in one envelope; empty when it is valid.
pub fn violations(envelope: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let size = serde_json::to_vec(envelope).map_or(0, |v| v.len());
    if size >= MAX_ITEM_BYTES {
        errors.push(format!(
            "item is {size} bytes, the limit is {MAX_ITEM_BYTES}"
        ));
    }
    let Some(env) = envelope.as_object() else {
        return vec!["envelope is not an object".into()];
    };
    check_envelope_fields(env, &mut errors);
    check_tags(env.get("tags"), &mut errors);
    check_data(env, &mut errors);
    errors
}

/// Panics with every violation of every envelope.
pub fn assert_valid(envelopes: &[Value]) {
    let all: Vec<String> = envelopes
        .iter()
        .enumerate()
        .flat_map(|(i, e)| {
            violations(e)
                .into_iter()
                .map(move |v| format!("item {i}: {v}"))
        })
        .collect();
    assert!(all.is_empty(), "schema violations:\n{}", all.join("\n"));
}

fn check_envelope_fields(env: &Map<String, Value>, errors: &mut Vec<String>) {
    for key in env.keys() {
        if ![
            "ver",
            "name",
            "time",
            "sampleRate",
            "seq",
            "iKey",
            "tags",
            "data",
        ]
        .contains(&key.as_str())
        {
            errors.push(format!("unknown envelope field {key:?}"));
        }
    }
    match env.get("time").and_then(Value::as_str) {
        Some(t) if is_utc_time(t) => {}
        other => errors.push(format!(
            "time must be an ISO 8601 UTC string, got {other:?}"
        )),
    }
    if !env.get("name").is_some_and(Value::is_string) {
        errors.push("name is required".into());
    }
    if let Some(rate) = env.get("sampleRate") {
        if !rate.as_f64().is_some_and(|r| r > 0.0 && r <= 100.0) {
            errors.push(format!("sampleRate must be in (0, 100], got {rate}"));
        }
    }
    if env.get("ver").is_some_and(|v| !v.is_i64()) {
        errors.push("ver must be an integer".into());
    }
    if !env.get("iKey").is_some_and(Value::is_string) {
        errors.push("iKey must be a string".into());
    }
}

fn check_tags(tags: Option<&Value>, errors: &mut Vec<String>) {
    let Some(tags) = tags else { return };
    let Some(tags) = tags.as_object() else {
        errors.push("tags must be an object".into());
        return;
    };
    for (key, value) in tags {
        let Some((_, max)) = TAGS.iter().find(|(k, _)| k == key) else {
            errors.push(format!("unknown tag {key:?}"));
            continue;
        };
        check_str(&format!("tag {key}"), value, *max, errors);
    }
}

fn check_data(env: &Map<String, Value>, errors: &mut Vec<String>) {
    let Some(data) = env.get("data").and_then(Value::as_object) else {
        errors.push("data must be an object".into());
        return;
    };
    let base_type = data.get("baseType").and_then(Value::as_str).unwrap_or("");
    let (fields, name) = match base_type {
        "RequestData" => (REQUEST, "Request"),
        "RemoteDependencyData" => (DEPENDENCY, "RemoteDependency"),
        "MessageData" => (MESSAGE, "Message"),
        "ExceptionData" => (EXCEPTION, "Exception"),
        "EventData" => (EVENT, "Event"),
        other => {
            errors.push(format!("unknown baseType {other:?}"));
            return;
        }
    };
    let expected = format!("Microsoft.ApplicationInsights.{name}");
    if env.get("name").and_then(Value::as_str) != Some(expected.as_str()) {
        errors.push(format!("name must be {expected:?} for {base_type}"));
    }
    match data.get("baseData").and_then(Value::as_object) {
        Some(base) => check_fields(base_type, base, fields, errors),
        None => errors.push("baseData must be an object".into()),
    }
}

fn check_fields(what: &str, obj: &Map<String, Value>, fields: &[Field], errors: &mut Vec<String>) {
    for key in obj.keys() {
        if !fields.iter().any(|f| f.name == key) {
            errors.push(format!("{what}: unknown field {key:?}"));
        }
    }
    for field in fields {
        let path = format!("{what}.{}", field.name);
        match obj.get(field.name) {
            None if field.required => errors.push(format!("{path} is required")),
            None => {}
            Some(value) => check_kind(&path, value, field.kind, errors),
        }
    }
}

fn check_kind(path: &str, value: &Value, kind: Kind, errors: &mut Vec<String>) {
    match kind {
        Kind::Str(max) => check_str(path, value, max, errors),
        Kind::Duration => match value.as_str() {
            Some(d) if is_duration(d) => {}
            _ => errors.push(format!("{path} must be D.HH:MM:SS.ffffff, got {value}")),
        },
        Kind::Bool if !value.is_boolean() => errors.push(format!("{path} must be a boolean")),
        Kind::Int if !value.is_i64() => errors.push(format!("{path} must be an integer")),
        Kind::Properties => check_properties(path, value, errors),
        Kind::Measurements
            if !value
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_number)) =>
        {
            errors.push(format!("{path} must map names to numbers"));
        }
        Kind::Severity => {
            let ok = ["Verbose", "Information", "Warning", "Error", "Critical"];
            if !value.as_str().is_some_and(|s| ok.contains(&s)) {
                errors.push(format!("{path} must be a severity level, got {value}"));
            }
        }
        Kind::Exceptions => match value.as_array() {
            Some(list) if !list.is_empty() => {
                for (i, detail) in list.iter().enumerate() {
                    match detail.as_object() {
                        Some(d) => {
                            check_fields(&format!("{path}[{i}]"), d, EXCEPTION_DETAILS, errors)
                        }
                        None => errors.push(format!("{path}[{i}] must be an object")),
                    }
                }
            }
            _ => errors.push(format!("{path} must be a non-empty array")),
        },
        _ => {}
    }
}

/// The length the service counts: UTF-16 code units (.NET strings).
pub fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

fn check_str(path: &str, value: &Value, max: usize, errors: &mut Vec<String>) {
    match value.as_str() {
        Some(s) if utf16_len(s) <= max => {}
        Some(s) => errors.push(format!(
            "{path} is {} UTF-16 units, the limit is {max}",
            utf16_len(s)
        )),
        None => errors.push(format!("{path} must be a string, got {value}")),
    }
}

fn check_properties(path: &str, value: &Value, errors: &mut Vec<String>) {
    let Some(props) = value.as_object() else {
        errors.push(format!("{path} must be an object"));
        return;
    };
    for (key, value) in props {
        if utf16_len(key) > 150 {
            errors.push(format!(
                "{path}: a key of {} UTF-16 units (limit 150)",
                utf16_len(key)
            ));
        }
        check_str(&format!("{path}[{key:.40}]"), value, 8192, errors);
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f+]Z`.
fn is_utc_time(t: &str) -> bool {
    let b = t.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && t.ends_with('Z')
}

/// `D.HH:MM:SS.ffffff` with D < 1000, or the 3-digit fraction the service
/// also accepts.
fn is_duration(d: &str) -> bool {
    let Some((days, rest)) = d.split_once('.') else {
        return false;
    };
    let days_ok = !days.is_empty() && days.len() <= 3 && days.bytes().all(|c| c.is_ascii_digit());
    let parts: Vec<&str> = rest.split([':', '.']).collect();
    days_ok
        && parts.len() == 4
        && parts[..3]
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_digit()))
        && matches!(parts[3].len(), 3 | 6 | 7)
        && parts[3].bytes().all(|c| c.is_ascii_digit())
}
