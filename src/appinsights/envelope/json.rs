//! The hand-written JSON writer: an [`Envelope`] straight into bytes.
//!
//! Why: serialising through `serde_json` was most of the export thread's
//! cost (its per-byte string escaping, a `Serializer` call per member, a
//! formatter per scalar). This writer appends the same bytes in far less
//! time: member names are literals, strings are escaped eight bytes at a
//! time, ids and times are already ASCII.
//!
//! What: **byte for byte what `serde_json::to_writer` writes** for the same
//! envelope through the types' `Serialize` impls, which stay the reference
//! (tests pin the two together on tricky inputs): the same member order,
//! the same omitted members, the same escaping (`\"`, `\\`, `\b`, `\f`,
//! `\n`, `\r`, `\t`, other control characters as `\u00xx` in lowercase hex;
//! nothing else, not even U+007F or U+2028), numbers as `serde_json`
//! formats them (`sampleRate` `100.0`, property scalars with `Display`).
//!
//! A `&str` is always valid UTF-8, so no input can make this writer emit
//! invalid JSON or panic; it never fails.

use std::io::Write as _;

use super::exception::ExceptionDetails;
use super::properties::{PropValue, Properties};
use super::tags::Tags;
use super::{
    Data, Envelope, ExceptionData, MessageData, RemoteDependencyData, RequestData,
    TelemetryEventData,
};
use crate::record::AttributeValue;

/// Appends the JSON of `env` to `out`, exactly as `serde_json` serialises
/// it.
pub(crate) fn write(env: &Envelope<'_>, out: &mut Vec<u8>) {
    let (name, start): (&str, &[u8]) = match env.data {
        Data::RequestData(_) => (
            REQUEST,
            b"{\"ver\":1,\"name\":\"Microsoft.ApplicationInsights.Request\",\"time\":\"",
        ),
        Data::RemoteDependencyData(_) => (
            DEPENDENCY,
            b"{\"ver\":1,\"name\":\"Microsoft.ApplicationInsights.RemoteDependency\",\"time\":\"",
        ),
        Data::MessageData(_) => (
            MESSAGE,
            b"{\"ver\":1,\"name\":\"Microsoft.ApplicationInsights.Message\",\"time\":\"",
        ),
        Data::ExceptionData(_) => (
            EXCEPTION,
            b"{\"ver\":1,\"name\":\"Microsoft.ApplicationInsights.Exception\",\"time\":\"",
        ),
        Data::EventData(_) => (
            EVENT,
            b"{\"ver\":1,\"name\":\"Microsoft.ApplicationInsights.Event\",\"time\":\"",
        ),
    };
    if env.name == name {
        out.extend_from_slice(start);
    } else {
        out.extend_from_slice(b"{\"ver\":1,\"name\":");
        string(out, env.name);
        out.extend_from_slice(b",\"time\":\"");
    }
    out.extend_from_slice(env.time.as_bytes());
    out.extend_from_slice(b"\",\"sampleRate\":");
    f64_value(out, env.sample_rate);
    let ctx = env.context;
    let mut first = true;
    if std::ptr::eq(env.ikey, ctx.ikey()) && same_base_tags(&env.tags, &ctx.base_tags()) {
        // The iKey and process-wide tags of nearly every item: written once
        // per exporter, copied here.
        let (head, has_members) = ctx.head_json();
        out.extend_from_slice(head);
        first = !has_members;
    } else {
        head(out, env.ikey, &env.tags, &mut first);
    }
    operation_tags(out, &env.tags, &mut first);
    out.extend_from_slice(b"},\"data\":{\"baseType\":");
    match &env.data {
        Data::RequestData(d) => {
            out.extend_from_slice(b"\"RequestData\",\"baseData\":");
            request(out, d);
        }
        Data::RemoteDependencyData(d) => {
            out.extend_from_slice(b"\"RemoteDependencyData\",\"baseData\":");
            dependency(out, d);
        }
        Data::MessageData(d) => {
            out.extend_from_slice(b"\"MessageData\",\"baseData\":");
            message(out, d);
        }
        Data::ExceptionData(d) => {
            out.extend_from_slice(b"\"ExceptionData\",\"baseData\":");
            exception(out, d);
        }
        Data::EventData(d) => {
            out.extend_from_slice(b"\"EventData\",\"baseData\":");
            event(out, d);
        }
    }
    out.extend_from_slice(b"}}");
}

/// The envelope names, as [`Data::envelope_name`] gives them.
const REQUEST: &str = "Microsoft.ApplicationInsights.Request";
/// See [`REQUEST`].
const DEPENDENCY: &str = "Microsoft.ApplicationInsights.RemoteDependency";
/// See [`REQUEST`].
const MESSAGE: &str = "Microsoft.ApplicationInsights.Message";
/// See [`REQUEST`].
const EXCEPTION: &str = "Microsoft.ApplicationInsights.Exception";
/// See [`REQUEST`].
const EVENT: &str = "Microsoft.ApplicationInsights.Event";

/// `,"iKey":"…","tags":{` and the process-wide tags (role, role instance,
/// SDK and application version) of `ikey` and `base`, as [`write`] writes
/// them; and whether there is any tag. Computed once per
/// [`EnvelopeContext`](super::EnvelopeContext).
pub(crate) fn context_head(ikey: &str, base: &Tags<'_>) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut first = true;
    head(&mut out, ikey, base, &mut first);
    (out, !first)
}

/// Whether `tags` holds exactly the strings `base` does (the same slices,
/// not equal copies) for the process-wide tags: they were not cut.
fn same_base_tags(tags: &Tags<'_>, base: &Tags<'_>) -> bool {
    let same = |a: Option<&str>, b: Option<&str>| match (a, b) {
        (Some(a), Some(b)) => std::ptr::eq(a, b),
        (None, None) => true,
        _ => false,
    };
    same(
        tags.application_ver.as_deref(),
        base.application_ver.as_deref(),
    ) && same(tags.cloud_role.as_deref(), base.cloud_role.as_deref())
        && same(
            tags.cloud_role_instance.as_deref(),
            base.cloud_role_instance.as_deref(),
        )
        && same(tags.sdk_version.as_deref(), base.sdk_version.as_deref())
}

/// One member of `tags`: `"key":value`, after a comma unless `first`.
fn tag(out: &mut Vec<u8>, first: &mut bool, key: &[u8]) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    out.extend_from_slice(key);
}

/// `,"iKey":"…","tags":{` then the process-wide tags that are present.
fn head(out: &mut Vec<u8>, ikey: &str, tags: &Tags<'_>, first: &mut bool) {
    out.extend_from_slice(b",\"iKey\":");
    string(out, ikey);
    out.extend_from_slice(b",\"tags\":{");
    let texts = [
        (&b"\"ai.application.ver\":"[..], &tags.application_ver),
        (b"\"ai.cloud.role\":", &tags.cloud_role),
        (b"\"ai.cloud.roleInstance\":", &tags.cloud_role_instance),
        (b"\"ai.internal.sdkVersion\":", &tags.sdk_version),
    ];
    for (key, value) in texts {
        if let Some(value) = value {
            tag(out, first, key);
            string(out, value);
        }
    }
}

/// The operation and end-user tags that are present, in the struct's
/// order (the `tags` object's closing brace is the caller's).
fn operation_tags(out: &mut Vec<u8>, tags: &Tags<'_>, first: &mut bool) {
    if let Some(id) = &tags.operation_id {
        tag(out, first, b"\"ai.operation.id\":\"");
        out.extend_from_slice(id.as_bytes());
        out.push(b'"');
    }
    if let Some(id) = &tags.operation_parent_id {
        tag(out, first, b"\"ai.operation.parentId\":\"");
        out.extend_from_slice(id.as_bytes());
        out.push(b'"');
    }
    let texts = [
        (&b"\"ai.operation.name\":"[..], &tags.operation_name),
        (b"\"ai.user.id\":", &tags.user_id),
        (b"\"ai.location.ip\":", &tags.location_ip),
        (b"\"ai.user.userAgent\":", &tags.user_agent),
    ];
    for (key, value) in texts {
        if let Some(value) = value {
            tag(out, first, key);
            string(out, value);
        }
    }
}

/// `RequestData`'s `baseData`.
fn request(out: &mut Vec<u8>, d: &RequestData<'_>) {
    out.extend_from_slice(b"{\"ver\":2,\"id\":\"");
    out.extend_from_slice(d.id.as_bytes());
    out.extend_from_slice(b"\",\"name\":");
    string(out, &d.name);
    out.extend_from_slice(b",\"duration\":\"");
    out.extend_from_slice(d.duration.as_bytes());
    out.extend_from_slice(b"\",\"success\":");
    bool_value(out, d.success);
    out.extend_from_slice(b",\"responseCode\":");
    string(out, &d.response_code);
    if let Some(source) = &d.source {
        out.extend_from_slice(b",\"source\":");
        string(out, source);
    }
    if let Some(url) = &d.url {
        out.extend_from_slice(b",\"url\":");
        string(out, url);
    }
    properties(out, &d.properties);
    out.push(b'}');
}

/// `RemoteDependencyData`'s `baseData`.
fn dependency(out: &mut Vec<u8>, d: &RemoteDependencyData<'_>) {
    out.extend_from_slice(b"{\"ver\":2,\"name\":");
    string(out, &d.name);
    out.extend_from_slice(b",\"id\":\"");
    out.extend_from_slice(d.id.as_bytes());
    out.extend_from_slice(b"\",\"resultCode\":");
    string(out, &d.result_code);
    out.extend_from_slice(b",\"duration\":\"");
    out.extend_from_slice(d.duration.as_bytes());
    out.extend_from_slice(b"\",\"success\":");
    bool_value(out, d.success);
    if let Some(data) = &d.data {
        out.extend_from_slice(b",\"data\":");
        string(out, data);
    }
    out.extend_from_slice(b",\"type\":");
    string(out, &d.dependency_type);
    if let Some(target) = &d.target {
        out.extend_from_slice(b",\"target\":");
        string(out, target);
    }
    properties(out, &d.properties);
    out.push(b'}');
}

/// `MessageData`'s `baseData`.
fn message(out: &mut Vec<u8>, d: &MessageData<'_>) {
    out.extend_from_slice(b"{\"ver\":2,\"message\":");
    string(out, &d.message);
    out.extend_from_slice(b",\"severityLevel\":\"");
    out.extend_from_slice(d.severity_level.as_str().as_bytes());
    out.push(b'"');
    properties(out, &d.properties);
    out.push(b'}');
}

/// `EventData`'s `baseData`.
fn event(out: &mut Vec<u8>, d: &TelemetryEventData<'_>) {
    out.extend_from_slice(b"{\"ver\":2,\"name\":");
    string(out, &d.name);
    properties(out, &d.properties);
    out.push(b'}');
}

/// `ExceptionData`'s `baseData`.
fn exception(out: &mut Vec<u8>, d: &ExceptionData<'_>) {
    out.extend_from_slice(b"{\"ver\":2,\"exceptions\":[");
    for (i, details) in d.exceptions.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        exception_details(out, details);
    }
    out.extend_from_slice(b"],\"severityLevel\":\"");
    out.extend_from_slice(d.severity_level.as_str().as_bytes());
    out.push(b'"');
    properties(out, &d.properties);
    out.push(b'}');
}

/// One entry of `exceptions`.
fn exception_details(out: &mut Vec<u8>, e: &ExceptionDetails<'_>) {
    out.extend_from_slice(b"{\"typeName\":");
    string(out, &e.type_name);
    out.extend_from_slice(b",\"message\":");
    string(out, &e.message);
    out.extend_from_slice(b",\"hasFullStack\":");
    bool_value(out, e.has_full_stack);
    if let Some(stack) = &e.stack {
        out.extend_from_slice(b",\"stack\":");
        string(out, stack);
    }
    out.push(b'}');
}

/// `,"properties":{…}`, or nothing when there is none (the member is
/// skipped when empty).
fn properties(out: &mut Vec<u8>, props: &Properties<'_>) {
    if props.is_empty() {
        return;
    }
    out.extend_from_slice(b",\"properties\":{");
    for (i, (key, value)) in props.entries().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, key);
        out.push(b':');
        match value {
            PropValue::Str(s) => string(out, s),
            PropValue::Owned(s) => string(out, s),
            PropValue::Text(s) => string(out, s),
            PropValue::Scalar(v) => scalar(out, v),
        }
    }
    out.push(b'}');
}

/// A scalar property as a string of its `Display` form, as `serde_json`'s
/// `collect_str` writes it.
fn scalar(out: &mut Vec<u8>, value: &AttributeValue) {
    match value {
        AttributeValue::U64(v) => {
            out.push(b'"');
            u64_digits(out, *v);
            out.push(b'"');
        }
        AttributeValue::I64(v) => {
            out.push(b'"');
            if *v < 0 {
                out.push(b'-');
            }
            u64_digits(out, v.unsigned_abs());
            out.push(b'"');
        }
        AttributeValue::Bool(true) => out.extend_from_slice(b"\"true\""),
        AttributeValue::Bool(false) => out.extend_from_slice(b"\"false\""),
        // Rare: `Display` of a float (digits, `.`, `-`, `inf`, `NaN`: nothing
        // to escape), or a text value (not a scalar, but correct anyway).
        AttributeValue::F64(v) => {
            out.push(b'"');
            // Writing to a `Vec` cannot fail.
            let _ = write!(out, "{v}");
            out.push(b'"');
        }
        AttributeValue::Str(s) | AttributeValue::Debug(s) => string(out, s),
        AttributeValue::Error(e) => string(out, &e.message),
    }
}

/// The decimal digits of `v`, as `Display` writes them.
fn u64_digits(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// `true` or `false`.
fn bool_value(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

/// A float as `serde_json` writes it (`null` when not finite); `100.0`, the
/// rate of nearly every item, without formatting.
fn f64_value(out: &mut Vec<u8>, v: f64) {
    if v.to_bits() == 100f64.to_bits() {
        out.extend_from_slice(b"100.0");
    } else if serde_json::to_writer(&mut *out, &v).is_err() {
        // Serialising a float into a `Vec` cannot fail; should it ever,
        // the schema's default rate is still a valid item.
        out.extend_from_slice(b"100.0");
    }
}

/// `s` as a JSON string, quoted and escaped as `serde_json` escapes it.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    string_bytes(out, s.as_bytes());
}

/// Eight ones: a byte-wise constant multiplier.
const ONES: u64 = u64::from_ne_bytes([1; 8]);
/// The high bit of every byte.
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Whether any byte of `x` is a control character, `"` or `\` (the bytes
/// JSON escapes). The classic SWAR tests, exact as a yes/no answer: a byte
/// below 0x20, or a byte equal to `"` or `\` (a zero byte after XOR).
#[inline]
fn needs_escape(x: u64) -> bool {
    let below_space = x.wrapping_sub(ONES * 0x20) & !x;
    let quote = x ^ (ONES * u64::from(b'"'));
    let backslash = x ^ (ONES * u64::from(b'\\'));
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    (below_space | zero(quote) | zero(backslash)) & HIGHS != 0
}

/// The escape of each byte: 0 for none, `u` for `\u00xx`, else the letter
/// after the backslash (`serde_json`'s table).
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Lowercase hex digits, as `serde_json` writes `\u00xx`.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// The UTF-8 bytes of a `&str` as a JSON string, eight bytes at a time:
/// a chunk with nothing to escape is appended whole (a fixed-size copy,
/// no call), a chunk that needs an escape is walked byte by byte. The last
/// few bytes are tested padded with spaces (which need no escape) and, when
/// clean, appended padded then cut back. Only ASCII bytes are ever escaped,
/// so multi-byte characters pass unchanged.
fn string_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 10);
    out.push(b'"');
    let mut rest = bytes;
    while let Some((chunk, tail)) = rest.split_first_chunk::<8>() {
        if needs_escape(u64::from_ne_bytes(*chunk)) {
            escape_each(out, chunk);
        } else {
            out.extend_from_slice(chunk);
        }
        rest = tail;
    }
    if !rest.is_empty() {
        let mut padded = [b' '; 8];
        for (to, from) in padded.iter_mut().zip(rest) {
            *to = *from;
        }
        if needs_escape(u64::from_ne_bytes(padded)) {
            escape_each(out, rest);
        } else {
            let end = out.len() + rest.len();
            out.extend_from_slice(&padded);
            out.truncate(end);
        }
    }
    out.push(b'"');
}

/// `bytes` with each byte that JSON escapes escaped ([`ESCAPE`]).
fn escape_each(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        match ESCAPE[usize::from(b)] {
            0 => out.push(b),
            b'u' => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
            escape => out.extend_from_slice(&[b'\\', escape]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{annotation, attrs, ctx, s, span, start};
    use super::super::{map_record, write_envelope, EnvelopeContext, TelemetrySettings};
    use super::*;
    use crate::record::ids::{SpanId, TraceId};
    use crate::record::text::Text;
    use crate::record::{
        ErrorValue, EventData, EventSpan, Link, LinkType, Record, SpanKind, Status, StatusCode,
    };
    use proptest::prelude::*;
    use tracing_core::Level;

    /// Strings that have tripped JSON writers: every escape, control
    /// characters at chunk edges, multi-byte characters, U+007F, U+2028.
    fn tricky() -> Vec<String> {
        let mut all: Vec<String> = [
            "",
            "plain",
            "q\"b\\",
            "\n\r\t\u{8}\u{c}",
            "\u{0}\u{1f}\u{7f}",
            "é😀",
            "\u{2028}\u{2029}</script>",
            "\u{fffd}\u{feff}",
            "1234567\"",
            "12345678\\",
            "1234567\u{1}89",
            "𝄞 \\u0041 \\ud83d",
            "slash/and\\/",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for b in 0u8..0x80 {
            all.push(format!("abcdefg{}hij", b as char));
            all.push(format!("{}", b as char).repeat(17));
        }
        all
    }

    fn via_serde(s: &str) -> Vec<u8> {
        serde_json::to_vec(s).unwrap()
    }

    fn via_writer(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        string(&mut out, s);
        out
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        for s in tricky() {
            assert_eq!(via_writer(&s), via_serde(&s), "{s:?}");
        }
    }

    #[test]
    fn the_swar_test_agrees_with_the_table() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut chunk = [b'a'; 8];
                chunk[pos] = b;
                let want = ESCAPE[usize::from(b)] != 0;
                assert_eq!(
                    needs_escape(u64::from_ne_bytes(chunk)),
                    want,
                    "{b:#x}@{pos}"
                );
            }
        }
    }

    #[test]
    fn scalars_format_as_display_does() {
        for v in [
            AttributeValue::U64(0),
            AttributeValue::U64(u64::MAX),
            AttributeValue::I64(i64::MIN),
            AttributeValue::I64(-1),
            AttributeValue::I64(42),
            AttributeValue::F64(1.5),
            AttributeValue::F64(-0.0),
            AttributeValue::F64(1e300),
            AttributeValue::F64(f64::NAN),
            AttributeValue::F64(f64::NEG_INFINITY),
            AttributeValue::Bool(true),
            AttributeValue::Bool(false),
        ] {
            let mut out = Vec::new();
            scalar(&mut out, &v);
            assert_eq!(out, serde_json::to_vec(&v.to_string()).unwrap(), "{v:?}");
        }
    }

    #[test]
    fn floats_format_as_serde_json_does() {
        for v in [100.0, 25.0, 0.0, -0.0, 33.333333333333336, 1e-7, f64::NAN] {
            let mut out = Vec::new();
            f64_value(&mut out, v);
            assert_eq!(out, serde_json::to_vec(&v).unwrap(), "{v}");
        }
    }

    /// Records carrying `t` in every text the mapping sends (keys, values,
    /// names, tags, messages, stacks, status), of every item type and
    /// member that may be present or absent.
    fn hostile_records(t: &str) -> Vec<Record> {
        let key: &'static str = Box::leak(format!("k{t}").into_boxed_str());
        let error = || {
            let mut e = ErrorValue::from_message(Text::from(t));
            e.type_name = Some(Text::from(t));
            e.sources = vec![Text::from(t), Text::from("io")];
            AttributeValue::Error(Box::new(e))
        };
        let scalars = [
            ("i", AttributeValue::I64(-42)),
            ("u", AttributeValue::U64(7)),
            ("f", AttributeValue::F64(0.1)),
            ("b", AttributeValue::Bool(true)),
            ("d", AttributeValue::Debug(Text::from(t))),
            (key, s(t)),
        ];
        let url = format!("https://u:p@h.example:8443/{t}?q={t}");
        let mut server = span(
            SpanKind::Server,
            &[
                ("http.request.method", s(t)),
                ("http.route", s(t)),
                ("url.full", s(&url)),
                ("http.response.status_code", s(t)),
                ("enduser.id", s(t)),
                ("client.address", s(t)),
                ("user_agent.original", s(t)),
                (crate::propagation::FIELD_REQUEST_SOURCE, s(t)),
            ],
        );
        for (k, v) in &scalars {
            server.attributes.insert(k, v.clone());
        }
        server.name = t.to_owned().into();
        server.operation_name = t.to_owned().into();
        server.status = Status {
            code: StatusCode::Error,
            message: Some(Text::from(t)),
        };
        server.links.push(Link::new(
            TraceId::from_int(1),
            SpanId::from_int(2),
            LinkType::ParentLinkedSpan,
        ));
        server
            .annotations
            .push(annotation(Level::WARN, t, &scalars));
        server.annotations.push(annotation(
            Level::ERROR,
            t,
            &[("error", error()), (key, s(t))],
        ));
        server.annotations.push(annotation(
            Level::DEBUG,
            "",
            &[("exception.type", s(t)), ("exception.stacktrace", s(t))],
        ));
        server
            .annotations
            .push(annotation(Level::TRACE, "", &scalars));
        server.annotations.push(annotation(
            Level::INFO,
            t,
            &[(super::super::event::CUSTOM_EVENT_NAME, s(t)), (key, s(t))],
        ));
        let mut remote = server.clone();
        remote.sampled_remotely = true;
        remote.parent_span_id = None;
        let db = span(
            SpanKind::Client,
            &[
                ("db.system", s(t)),
                ("db.name", s(t)),
                ("db.statement", s(t)),
                ("server.address", s(t)),
                ("server.port", AttributeValue::I64(1433)),
            ],
        );
        let producer = span(
            SpanKind::Producer,
            &[("messaging.system", s(t)), ("messaging.destination", s(t))],
        );
        let consumer = span(
            SpanKind::Consumer,
            &[
                ("messaging.system", s(t)),
                ("messaging.destination", s(t)),
                ("net.peer.name", s(t)),
            ],
        );
        let http_client = span(
            SpanKind::Client,
            &[("http.method", s(t)), ("http.url", s(&url))],
        );
        let internal = span(SpanKind::Internal, &[]);
        let mut records: Vec<Record> = [server, remote, db, producer, consumer, http_client]
            .into_iter()
            .chain([internal])
            .map(|span| Record::Span(Box::new(span)))
            .collect();
        for in_span in [false, true] {
            let event = EventData {
                timestamp: start(),
                level: Level::INFO,
                target: "shop",
                message: Text::from(t),
                attributes: attrs(&scalars),
                span: in_span.then(|| EventSpan {
                    trace_id: TraceId::from_int(3),
                    span_id: SpanId::from_int(4),
                    operation_name: t.to_owned().into(),
                    sampled_remotely: true,
                    sample_rate: None,
                }),
                sample_rate: None,
            };
            records.push(Record::Event(Box::new(event)));
        }
        records
    }

    /// Every envelope of `t`'s records: the writer's bytes are
    /// `serde_json`'s (before and after shrinking), and parse.
    fn assert_envelopes_match(t: &str) {
        let ctx = ctx();
        let records = hostile_records(t);
        for record in &records {
            let mut envelopes = Vec::new();
            map_record(record, &ctx, &mut envelopes);
            for env in &envelopes {
                let mut ours = Vec::new();
                write(env, &mut ours);
                let theirs = serde_json::to_vec(env).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&theirs),
                    "{t:?}"
                );
                // Not the usual name, iKey or process-wide tags: the
                // members are written one by one, still as serde_json does.
                let mut odd = env.clone();
                odd.name = "n\"ame";
                odd.ikey = t;
                odd.tags.cloud_role = Some(t.into());
                let mut ours_odd = Vec::new();
                write(&odd, &mut ours_odd);
                assert_eq!(ours_odd, serde_json::to_vec(&odd).unwrap(), "{t:?}");
                let mut written = Vec::new();
                write_envelope(env, &mut written);
                if ours.len() <= super::super::MAX_ITEM_BYTES {
                    assert_eq!(written, ours);
                } else {
                    let small = super::super::shrink(env.clone());
                    let mut shrunk = Vec::new();
                    write(&small, &mut shrunk);
                    assert_eq!(shrunk, serde_json::to_vec(&small).unwrap());
                    assert_eq!(written, shrunk);
                    assert!(written.len() <= super::super::MAX_ITEM_BYTES);
                }
                serde_json::from_slice::<serde_json::Value>(&written).unwrap();
            }
        }
    }

    #[test]
    fn envelopes_are_written_as_serde_json_writes_them() {
        for t in tricky() {
            assert_envelopes_match(&t);
        }
        // Oversize items take the shrinking path.
        assert_envelopes_match(&"\u{1}\"\u{7f}😀".repeat(9000));
    }

    #[test]
    fn every_sample_rate_is_written_as_serde_json_writes_it() {
        for ratio in [0.0, 0.25, 1.0 / 3.0, 0.5, 1.0, f64::NAN] {
            let settings = TelemetrySettings {
                cloud_role: Some("r\"ole".into()),
                cloud_role_instance: None,
                application_version: Some("1.0\n".into()),
            };
            let ctx = EnvelopeContext::new("ik\u{1}ey", &settings, ratio);
            let record = Record::Span(Box::new(span(SpanKind::Internal, &[])));
            let mut envelopes = Vec::new();
            map_record(&record, &ctx, &mut envelopes);
            let mut ours = Vec::new();
            write(&envelopes[0], &mut ours);
            assert_eq!(ours, serde_json::to_vec(&envelopes[0]).unwrap(), "{ratio}");
        }
    }

    proptest! {
        #[test]
        fn any_envelope_is_written_as_serde_json_writes_it(t in any::<String>()) {
            assert_envelopes_match(&t);
        }

        #[test]
        fn any_string_escapes_as_serde_json_does(s in any::<String>()) {
            prop_assert_eq!(via_writer(&s), via_serde(&s));
        }

        #[test]
        fn control_heavy_strings_escape_as_serde_json_does(
            s in "[\\x00-\\x20\"\\\\a-z\u{80}-\u{10ffff}]{0,40}"
        ) {
            prop_assert_eq!(via_writer(&s), via_serde(&s));
        }
    }
}
