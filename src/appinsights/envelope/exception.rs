//! `ExceptionData`: an exception, from an event carrying an error (an
//! `error` field recorded as `&dyn Error`, or `exception.type` /
//! `exception.message` fields).

use std::borrow::Cow;

use serde::Serialize;

use crate::record::text::truncate_utf16;
use crate::record::{AttributeValue, Attributes, ErrorValue};

use super::event::{EventView, SeverityLevel};
use super::properties::{PropValue, Properties};
use super::semconv::text;
use super::{cut, SchemaVersion};

/// `typeName`: max 1024.
pub(crate) const MAX_TYPE_NAME: usize = 1024;
/// `message`: max 32768.
pub(crate) const MAX_MESSAGE: usize = 32768;
/// `stack`: max 32768.
pub(crate) const MAX_STACK: usize = 32768;

/// The `error` field of an event.
const FIELD_ERROR: &str = "error";
/// OpenTelemetry's exception fields.
const FIELD_TYPE: &str = "exception.type";
const FIELD_MESSAGE: &str = "exception.message";
const FIELD_STACKTRACE: &str = "exception.stacktrace";
/// The property that keeps an exception event's own message.
const PROPERTY_MESSAGE: &str = "message";
/// The type name when it cannot be known (no `exception.type`, not a
/// standard library error): stable, so such failures group together.
const DEFAULT_TYPE_NAME: &str = "Error";

/// An instance of Exception represents a handled or unhandled exception
/// that occurred during execution of the monitored application.
///
/// Required by the schema: `exceptions`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExceptionData<'a> {
    /// Schema version; always 2.
    pub(crate) ver: SchemaVersion<2>,
    /// Exception chain: list of inner exceptions. We send one entry; the
    /// source chain is in its `stack`.
    pub(crate) exceptions: [ExceptionDetails<'a>; 1],
    /// Severity level, from the event's level.
    pub(crate) severity_level: SeverityLevel,
    /// Collection of custom properties (the event's other fields, and its
    /// message as `message`): names max 150, values max 8192.
    #[serde(skip_serializing_if = "Properties::is_empty")]
    pub(crate) properties: Properties<'a>,
}

/// Exception details of the exception in a chain.
///
/// Required by the schema: `message`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExceptionDetails<'a> {
    /// Exception type name: the error's type as its `Debug` shows it, else
    /// `exception.type`, else `Error`. Max 1024.
    pub(crate) type_name: Cow<'a, str>,
    /// Exception message: the error's `Display`, else `exception.message`,
    /// else the event's message. Max 32768.
    pub(crate) message: Cow<'a, str>,
    /// Indicates if full exception stack is provided in the exception
    /// (`false` when there is no stack or it was cut).
    pub(crate) has_full_stack: bool,
    /// Text describing the stack: `exception.stacktrace`, else the error
    /// and its source chain, one `caused by: …` line per source. Max 32768.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stack: Option<Cow<'a, str>>,
}

/// Whether the event's fields describe an error.
pub(crate) fn is_exception(attributes: &Attributes) -> bool {
    error_value(attributes).is_some()
        || attributes.get(FIELD_TYPE).is_some()
        || attributes.get(FIELD_MESSAGE).is_some()
}

/// The `error` field, when recorded as `&dyn Error`.
fn error_value(attributes: &Attributes) -> Option<&ErrorValue> {
    match attributes.get(FIELD_ERROR)? {
        AttributeValue::Error(e) => Some(e),
        _ => None,
    }
}

impl<'a> ExceptionData<'a> {
    /// The exception an error event stands for.
    pub(crate) fn from_event(event: &EventView<'a>) -> Self {
        let details = ExceptionDetails::from_fields(event);
        let mut properties = Properties::with_capacity(event.attributes.len() + 1);
        let error = error_value(event.attributes).is_some();
        for (key, value) in event.fields() {
            let consumed = matches!(key, FIELD_TYPE | FIELD_MESSAGE | FIELD_STACKTRACE)
                || (key == FIELD_ERROR && error);
            if !consumed {
                properties.push_attribute(key, value);
            }
        }
        event.push_log_properties(&mut properties);
        if !event.message.is_empty() && details.message != event.message {
            let message = truncate_utf16(event.message, super::properties::MAX_VALUE);
            properties.push(PROPERTY_MESSAGE, PropValue::Str(message));
        }
        ExceptionData {
            ver: SchemaVersion,
            exceptions: [details],
            severity_level: SeverityLevel::of(event.level),
            properties,
        }
    }
}

impl<'a> ExceptionDetails<'a> {
    /// Type, message and stack from the event's fields.
    fn from_fields(event: &EventView<'a>) -> Self {
        let attrs = event.attributes;
        let error = error_value(attrs);
        // An explicit `exception.type` first: the application knows the
        // type; then a standard error's; never a guess.
        let type_name = match attrs.get(FIELD_TYPE) {
            Some(name) => text(name),
            None => error
                .and_then(|e| e.type_name.as_deref())
                .map_or(Cow::Borrowed(DEFAULT_TYPE_NAME), Cow::Borrowed),
        };
        let message = [
            error.map(|e| Cow::Borrowed(&*e.message)),
            attrs.get(FIELD_MESSAGE).map(text),
            Some(Cow::Borrowed(event.message)),
        ]
        .into_iter()
        .flatten()
        .find(|m| !m.is_empty())
        .unwrap_or_else(|| type_name.clone());
        let stack = match attrs.get(FIELD_STACKTRACE) {
            Some(trace) => Some(text(trace)),
            None => error.and_then(|e| chain(&type_name, e)).map(Cow::Owned),
        };
        let full = stack.as_ref().is_some_and(|s| fits(s, MAX_STACK));
        ExceptionDetails {
            type_name: cut(type_name, MAX_TYPE_NAME),
            message: cut(message, MAX_MESSAGE),
            has_full_stack: full,
            stack: stack.map(|s| cut(s, MAX_STACK)),
        }
    }
}

/// `Type: message` then one `caused by: …` line per source; `None` for an
/// error without sources (its message says it all).
fn chain(type_name: &str, error: &ErrorValue) -> Option<String> {
    if error.sources.is_empty() {
        return None;
    }
    let len = error.sources.iter().map(|s| s.len() + 12).sum::<usize>();
    let mut out = String::with_capacity(type_name.len() + error.message.len() + len + 2);
    out.push_str(type_name);
    out.push_str(": ");
    out.push_str(&error.message);
    for source in &error.sources {
        out.push_str("\ncaused by: ");
        out.push_str(source);
    }
    Some(out)
}

/// Whether `s` has at most `max` UTF-16 code units.
fn fits(s: &str, max: usize) -> bool {
    truncate_utf16(s, max).len() == s.len()
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use crate::record::text::Text;
    use crate::record::{AttributeValue, ErrorValue, EventData, Record, SpanKind};
    use serde_json::json;
    use tracing_core::Level;

    fn io_error() -> ErrorValue {
        ErrorValue {
            type_name: Some(Text::from("ConfigError")),
            message: Text::from("config is bad"),
            sources: vec![Text::from("invalid digit"), Text::from("line 3")],
        }
    }

    #[test]
    fn error_event_is_an_exception_with_its_chain() {
        let mut traced = span(SpanKind::Internal, &[]);
        traced.annotations.push(annotation(
            Level::ERROR,
            "loading failed",
            &[
                ("error", AttributeValue::Error(Box::new(io_error()))),
                ("path", s("/etc/app.toml")),
            ],
        ));
        let items = items(&Record::Span(Box::new(traced)));
        let item = &items[1];
        assert_eq!(item["name"], "Microsoft.ApplicationInsights.Exception");
        assert_eq!(item["tags"]["ai.operation.parentId"], SPAN);
        let want = json!({
            "baseType": "ExceptionData",
            "baseData": {
                "ver": 2,
                "exceptions": [{
                    "typeName": "ConfigError",
                    "message": "config is bad",
                    "hasFullStack": true,
                    "stack": "ConfigError: config is bad\ncaused by: invalid digit\ncaused by: line 3",
                }],
                "severityLevel": "Error",
                "properties": { "path": "/etc/app.toml", "message": "loading failed" },
            },
        });
        assert_eq!(item["data"], want);
    }

    #[test]
    fn exception_fields_make_an_exception() {
        let mut traced = span(SpanKind::Internal, &[]);
        traced.annotations.push(annotation(
            Level::WARN,
            "",
            &[
                ("exception.type", s("ValueError")),
                ("exception.message", s("boom")),
                ("exception.stacktrace", s("Traceback…\nValueError: boom")),
            ],
        ));
        let items = items(&Record::Span(Box::new(traced)));
        let data = base_data(&items[1]);
        let want = json!([{ "typeName": "ValueError", "message": "boom", "hasFullStack": true,
                        "stack": "Traceback…\nValueError: boom" }]);
        assert_eq!(data["exceptions"], want);
        assert_eq!(data["severityLevel"], "Warning");
        assert!(data.get("properties").is_none());
    }

    #[test]
    fn error_without_sources_or_type_has_no_stack() {
        let error = ErrorValue {
            type_name: None,
            message: Text::from("nope"),
            sources: Vec::new(),
        };
        let event = EventData {
            timestamp: start(),
            level: Level::ERROR,
            target: "shop",
            message: Text::from("nope"),
            attributes: attrs(&[("error", AttributeValue::Error(Box::new(error)))]),
            span: None,
            sample_rate: None,
        };
        let items = items(&Record::Event(Box::new(event)));
        let want = json!([{ "typeName": "Error", "message": "nope", "hasFullStack": false }]);
        assert_eq!(base_data(&items[0])["exceptions"], want);
    }
}
