//! `MessageData`: a trace message, from an event (inside a span or not).

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Serialize;

use crate::record::text::truncate_utf16;
use crate::record::Attributes;

use super::event::{EventView, SeverityLevel};
use super::properties::Properties;
use super::{cut, SchemaVersion};

/// `message`: max 32768.
pub(crate) const MAX_MESSAGE: usize = 32768;

/// Instances of Message represent printf-like trace statements that are
/// text-searched.
///
/// Required by the schema: `message`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageData<'a> {
    /// Schema version; always 2.
    pub(crate) ver: SchemaVersion<2>,
    /// Trace message: the event's `message` field; for an event without
    /// one, its fields as `key=value` (else its target). Max 32768.
    pub(crate) message: Cow<'a, str>,
    /// Trace severity level, from the event's level.
    pub(crate) severity_level: SeverityLevel,
    /// Collection of custom properties (the event's fields): names max 150,
    /// values max 8192.
    #[serde(skip_serializing_if = "Properties::is_empty")]
    pub(crate) properties: Properties<'a>,
}

impl<'a> MessageData<'a> {
    /// The trace message an event stands for; all its fields become
    /// properties.
    pub(crate) fn from_event(event: &EventView<'a>) -> Self {
        let mut properties = Properties::with_capacity(event.attributes.len());
        for (key, value) in event.fields() {
            properties.push_attribute(key, value);
        }
        event.push_log_properties(&mut properties);
        MessageData {
            ver: SchemaVersion,
            message: cut(message_text(event), MAX_MESSAGE),
            severity_level: SeverityLevel::of(event.level),
            properties,
        }
    }
}

/// The event's message; without one, its fields as `key=value` (what `fmt`
/// prints), or its target when it has no field either.
fn message_text<'a>(event: &EventView<'a>) -> Cow<'a, str> {
    if !event.message.is_empty() {
        return Cow::Borrowed(event.message);
    }
    if event.attributes.is_empty() {
        return Cow::Borrowed(event.target);
    }
    Cow::Owned(fields_text(event.attributes))
}

/// `k1=v1 k2=v2`, at most [`MAX_MESSAGE`] UTF-16 code units.
fn fields_text(attributes: &Attributes) -> String {
    let mut out = String::new();
    for (key, value) in attributes.iter() {
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{key}={value}");
        if out.len() > 4 * MAX_MESSAGE {
            break;
        }
    }
    let len = truncate_utf16(&out, MAX_MESSAGE).len();
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use crate::record::text::Text;
    use crate::record::{AttributeValue, EventData, Record, SpanKind};
    use serde_json::json;
    use tracing_core::Level;

    #[test]
    fn events_in_a_span_are_messages_under_the_span() {
        let mut traced = span(SpanKind::Internal, &[]);
        traced.parent_span_id = None;
        for (level, severity) in [
            (Level::TRACE, "Verbose"),
            (Level::DEBUG, "Verbose"),
            (Level::INFO, "Information"),
            (Level::WARN, "Warning"),
            (Level::ERROR, "Error"),
        ] {
            traced.annotations.push(annotation(
                level,
                severity,
                &[("step", AttributeValue::I64(1))],
            ));
        }
        let items = items(&Record::Span(Box::new(traced)));
        assert_eq!(items.len(), 6);
        assert!(items[0]["tags"].get("ai.operation.parentId").is_none());
        for item in &items[1..] {
            let severity = base_data(item)["message"].clone();
            assert_eq!(item["name"], "Microsoft.ApplicationInsights.Message");
            assert_eq!(item["time"], "2010-10-25T11:15:18.123461Z");
            assert_eq!(item["tags"]["ai.operation.id"], TRACE);
            assert_eq!(item["tags"]["ai.operation.parentId"], SPAN);
            assert_eq!(item["tags"]["ai.operation.name"], "GET /orders/{id}");
            let want = json!({ "ver": 2, "message": severity, "severityLevel": severity,
                           "properties": { "step": "1" } });
            assert_eq!(
                item["data"],
                json!({ "baseType": "MessageData", "baseData": want })
            );
        }
    }

    #[test]
    fn message_without_text_shows_its_fields() {
        let mut traced = span(SpanKind::Internal, &[]);
        traced.annotations.push(annotation(
            Level::WARN,
            "",
            &[
                ("error", s("timed out")),
                ("retry", AttributeValue::Bool(true)),
            ],
        ));
        traced.annotations.push(annotation(Level::INFO, "", &[]));
        let items = items(&Record::Span(Box::new(traced)));
        assert_eq!(
            base_data(&items[1])["message"],
            "error=timed out retry=true"
        );
        assert_eq!(base_data(&items[2])["message"], "shop::orders");
    }

    #[test]
    fn event_outside_spans_is_a_message_without_operation() {
        let event = EventData {
            timestamp: start(),
            level: Level::INFO,
            target: "shop",
            message: Text::from("started"),
            attributes: attrs(&[("port", AttributeValue::U64(8080))]),
            span: None,
            sample_rate: None,
        };
        let items = items(&Record::Event(Box::new(event)));
        assert_eq!(items.len(), 1);
        let want = json!({
            "ver": 1,
            "name": "Microsoft.ApplicationInsights.Message",
            "time": "2010-10-25T11:15:18.123456Z",
            "sampleRate": 25.0,
            "iKey": IKEY,
            "tags": {
                "ai.application.ver": "1.2.3",
                "ai.cloud.role": "shop",
                "ai.cloud.roleInstance": "shop-1",
                "ai.internal.sdkVersion": concat!("rs", env!("TAI_RUSTC_VERSION"), ":tai", env!("CARGO_PKG_VERSION")),
            },
            "data": { "baseType": "MessageData", "baseData": {
                "ver": 2, "message": "started", "severityLevel": "Information",
                "properties": { "port": "8080" },
            } },
        });
        assert_eq!(items[0], want);
    }
}
