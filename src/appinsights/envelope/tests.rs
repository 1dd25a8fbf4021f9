//! Mapping tests: one per rule of `docs/mapping.md`, asserting the JSON sent.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tracing_core::Level;

use super::{map_record, write_envelope, EnvelopeContext, TelemetrySettings};
use crate::record::ids::{SpanId, TraceId};
use crate::record::text::Text;
use crate::record::{
    Annotation, AttributeValue, Attributes, Link, LinkType, Record, SpanContext, SpanData,
    SpanKind, Status, StatusCode, TraceOptions,
};

pub(super) const IKEY: &str = "12345678-1234-5678-abcd-12345678abcd";
pub(super) const TRACE: &str = "6e0c63257de34c90bf9efcd03927272e";
pub(super) const SPAN: &str = "6e0c63257de34c92";
pub(super) const PARENT: &str = "6e0c63257de34c93";

/// 2010-10-25T11:15:18.123456Z
pub(super) fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(1_288_005_318_123_456)
}

pub(super) fn ctx() -> EnvelopeContext {
    let settings = TelemetrySettings {
        cloud_role: Some("shop".into()),
        cloud_role_instance: Some("shop-1".into()),
        application_version: Some("1.2.3".into()),
    };
    EnvelopeContext::new(IKEY, &settings, 0.25)
}

pub(super) fn s(v: &str) -> AttributeValue {
    AttributeValue::Str(Text::from(v))
}

pub(super) fn attrs(fields: &[(&'static str, AttributeValue)]) -> Attributes {
    let mut attributes = Attributes::new();
    for (key, value) in fields {
        attributes.insert(key, value.clone());
    }
    attributes
}

/// A child span of `kind`, 111,111 µs long, with `fields`.
pub(super) fn span(kind: SpanKind, fields: &[(&'static str, AttributeValue)]) -> SpanData {
    SpanData {
        name: Cow::Borrowed("span-name"),
        context: SpanContext {
            trace_id: TraceId::from_hex(TRACE).unwrap(),
            span_id: SpanId::from_hex(SPAN).unwrap(),
            trace_options: TraceOptions::SAMPLED,
            tracestate: None,
        },
        operation_name: Cow::Borrowed("GET /orders/{id}"),
        parent_span_id: Some(SpanId::from_hex(PARENT).unwrap()),
        kind,
        target: "shop::orders",
        attributes: attrs(fields),
        start_time: start(),
        end_time: start() + Duration::from_micros(111_111),
        same_process_as_parent_span: Some(true),
        ..SpanData::default()
    }
}

pub(super) fn annotation(
    level: Level,
    message: &str,
    fields: &[(&'static str, AttributeValue)],
) -> Annotation {
    Annotation::new(
        start() + Duration::from_micros(5),
        message,
        level,
        "shop::orders",
        attrs(fields),
    )
}

/// The JSON items `record` maps to, through `write_envelope`.
pub(super) fn items(record: &Record) -> Vec<Value> {
    let ctx = ctx();
    let mut envelopes = Vec::new();
    map_record(record, &ctx, &mut envelopes);
    envelopes
        .iter()
        .map(|env| {
            let mut buf = b"prefix".to_vec();
            write_envelope(env, &mut buf);
            assert_eq!(&buf[..6], b"prefix", "write_envelope appends");
            serde_json::from_slice(&buf[6..]).unwrap()
        })
        .collect()
}

/// The single item of a span.
pub(super) fn one(span: SpanData) -> Value {
    let mut items = items(&Record::Span(Box::new(span)));
    assert_eq!(items.len(), 1);
    items.remove(0)
}

pub(super) fn base_data(item: &Value) -> &Value {
    &item["data"]["baseData"]
}

#[test]
fn error_status_fails_and_says_why() {
    let mut failed = span(SpanKind::Internal, &[]);
    failed.status = Status {
        code: StatusCode::Error,
        message: Some(Text::from("disk full")),
    };
    let item = one(failed);
    assert_eq!(base_data(&item)["success"], false);
    assert_eq!(
        base_data(&item)["properties"],
        json!({ "otel.status_description": "disk full" })
    );
}

#[test]
fn http_404_fails_with_its_code() {
    for kind in [SpanKind::Server, SpanKind::Client] {
        let item = one(span(
            kind,
            &[("http.method", s("GET")), ("http.status_code", s("404"))],
        ));
        let data = base_data(&item);
        let code = data.get("responseCode").or(data.get("resultCode"));
        assert_eq!(code, Some(&json!("404")));
        assert_eq!(data["success"], false);
    }
}

#[test]
fn links_become_ms_links() {
    let mut linked = span(SpanKind::Internal, &[]);
    let (t, s1, s2) = (0xabc_u128, 0x1_u64, 0x2_u64);
    for id in [s1, s2] {
        linked.links.push(Link::new(
            TraceId::from_int(t),
            SpanId::from_int(id),
            LinkType::ParentLinkedSpan,
        ));
    }
    let item = one(linked);
    let links = base_data(&item)["properties"]["_MS.links"]
        .as_str()
        .unwrap();
    let want = concat!(
        r#"[{"operation_Id":"00000000000000000000000000000abc","id":"0000000000000001"},"#,
        r#"{"operation_Id":"00000000000000000000000000000abc","id":"0000000000000002"}]"#
    );
    assert_eq!(links, want);
}

#[test]
fn long_property_keys_are_dropped() {
    let long: &'static str = Box::leak("k".repeat(151).into_boxed_str());
    let max: &'static str = Box::leak("m".repeat(150).into_boxed_str());
    let item = one(span(SpanKind::Internal, &[(long, s("x")), (max, s("y"))]));
    assert_eq!(base_data(&item)["properties"], json!({ max: "y" }));
}

#[test]
fn property_values_are_stringified() {
    let item = one(span(
        SpanKind::Internal,
        &[
            ("i", AttributeValue::I64(-3)),
            ("u", AttributeValue::U64(u64::MAX)),
            ("f", AttributeValue::F64(0.5)),
            ("b", AttributeValue::Bool(false)),
            ("d", AttributeValue::Debug(Text::from("Some(\"x\")"))),
        ],
    ));
    let want = json!({ "i": "-3", "u": "18446744073709551615", "f": "0.5", "b": "false",
                       "d": "Some(\"x\")" });
    assert_eq!(base_data(&item)["properties"], want);
}

#[test]
fn semantic_keys_are_consumed_others_kept() {
    let item = one(span(
        SpanKind::Client,
        &[
            ("http.method", s("GET")),
            ("http.url", s("http://a/b")),
            ("http.flavor", s("1.1")),
            ("net.peer.name", s("a")),
            ("thread.name", s("main")),
        ],
    ));
    let want = json!({ "http.flavor": "1.1", "thread.name": "main" });
    assert_eq!(base_data(&item)["properties"], want);
}

#[test]
fn durations_and_times_have_six_digits_and_clamp() {
    let mut backwards = span(SpanKind::Internal, &[]);
    backwards.end_time = backwards.start_time - Duration::from_secs(1);
    let item = one(backwards);
    assert_eq!(base_data(&item)["duration"], "0.00:00:00.000000");
    let mut long = span(SpanKind::Internal, &[]);
    long.end_time = long.start_time + Duration::from_secs(90_061) + Duration::from_micros(7);
    let item = one(long);
    assert_eq!(base_data(&item)["duration"], "1.01:01:01.000007");
    assert_eq!(item["time"], "2010-10-25T11:15:18.123456Z");
}

#[test]
fn sample_rate_is_a_percentage() {
    let settings = TelemetrySettings::default();
    for (ratio, rate) in [(1.0, 100.0), (0.25, 25.0), (1e-4, 0.01), (7.0, 100.0)] {
        let ctx = EnvelopeContext::new(IKEY, &settings, ratio);
        assert!((ctx.sample_rate() - rate).abs() < 1e-12, "{ratio}");
    }
    let ctx = EnvelopeContext::new(IKEY, &settings, f64::NAN);
    assert_eq!(ctx.sample_rate(), 100.0);
}

#[test]
fn context_defaults_and_limits() {
    let ctx = EnvelopeContext::new(IKEY, &TelemetrySettings::default(), 1.0);
    let tags = serde_json::to_value(ctx.base_tags()).unwrap();
    assert!(!tags["ai.cloud.role"].as_str().unwrap().is_empty());
    assert!(!tags["ai.cloud.roleInstance"].as_str().unwrap().is_empty());
    assert!(tags.get("ai.application.ver").is_none());
    let sdk = tags["ai.internal.sdkVersion"].as_str().unwrap();
    let rustc = env!("TAI_RUSTC_VERSION");
    assert!(
        rustc.starts_with("1."),
        "the compiler version is recorded: {rustc:?}"
    );
    assert_eq!(sdk, format!("rs{rustc}:tai{}", env!("CARGO_PKG_VERSION")));
    assert!(sdk.len() <= 64);

    let settings = TelemetrySettings {
        cloud_role: Some("😀".repeat(300)),
        cloud_role_instance: Some("  ".into()),
        application_version: Some(" 2.0 ".into()),
    };
    let ctx = EnvelopeContext::new(IKEY, &settings, 1.0);
    let tags = serde_json::to_value(ctx.base_tags()).unwrap();
    assert_eq!(tags["ai.cloud.role"], "😀".repeat(128), "256 UTF-16 units");
    assert!(!tags["ai.cloud.roleInstance"]
        .as_str()
        .unwrap()
        .trim()
        .is_empty());
    assert_eq!(tags["ai.application.ver"], "2.0");
}

#[test]
fn every_field_is_cut_on_a_char_boundary() {
    let long = |n: usize| s(&"é😀\u{1}".repeat(n));
    let mut big = span(
        SpanKind::Server,
        &[
            ("http.method", long(400)),
            ("http.route", long(400)),
            ("url.full", long(1000)),
            ("http.status_code", long(400)),
            ("user_agent.original", long(400)),
            ("client.address", long(20)),
            ("enduser.id", long(50)),
        ],
    );
    big.operation_name = Cow::Owned("é".repeat(2000));
    let item = one(big);
    // In UTF-16 units, as the service counts: an emoji that would straddle
    // the limit is left out whole.
    let fits = |v: &Value, max: usize| {
        let units = v.as_str().unwrap().encode_utf16().count();
        assert!((max - 1..=max).contains(&units), "{units} for {max}");
    };
    let data = base_data(&item);
    fits(&data["name"], 1024);
    fits(&data["url"], 2048);
    fits(&data["responseCode"], 1024);
    let tags = &item["tags"];
    assert_eq!(tags["ai.operation.name"], "é".repeat(1024));
    fits(&tags["ai.user.userAgent"], 1024);
    fits(&tags["ai.location.ip"], 46);
    fits(&tags["ai.user.id"], 128);
}
