//! Field visitors: `tracing` field values into typed attributes, with the
//! special fields (`otel.*`, `error`, `message`) read into the record instead.
//!
//! Visiting happens into a local [`Fields`] value with no lock held: a
//! field's `Debug` impl may itself emit `tracing` events, which re-enter the
//! layer and would deadlock on the span's extensions.

use std::borrow::Cow;
use std::fmt::{self, Write};

use tracing_core::field::{Field, Visit};

use crate::record::text::{Text, TextWriter};
use crate::record::{
    AttributeValue, Attributes, ErrorValue, MessageEventKind, SpanKind, StatusCode,
    MAX_ATTRIBUTE_VALUE_CHARS, MAX_MESSAGE_CHARS,
};

/// `otel.kind`: `server`, `client`, `producer`, `consumer` or `internal`.
pub(crate) const FIELD_KIND: &str = "otel.kind";
/// `otel.name`: replaces the span's name.
pub(crate) const FIELD_NAME: &str = "otel.name";
/// `otel.status_code`: `ok` or `error` (or `unset`).
pub(crate) const FIELD_STATUS_CODE: &str = "otel.status_code";
/// `otel.status_description`: the status message.
pub(crate) const FIELD_STATUS_DESCRIPTION: &str = "otel.status_description";
/// `error`: a recorded `&dyn Error` (or a string) marks the span failed.
pub(crate) const FIELD_ERROR: &str = "error";
/// `message`: an event's text.
pub(crate) const FIELD_MESSAGE: &str = "message";
/// `exception.message`: an event describing an exception.
pub(crate) const FIELD_EXCEPTION_MESSAGE: &str = "exception.message";
/// `exception.type`: an event describing an exception.
pub(crate) const FIELD_EXCEPTION_TYPE: &str = "exception.type";
const FIELD_MESSAGE_TYPE: &str = "message.type";
const FIELD_MESSAGE_ID: &str = "message.id";
const FIELD_MESSAGE_UNCOMPRESSED: &str = "message.uncompressed_size";
const FIELD_MESSAGE_COMPRESSED: &str = "message.compressed_size";

/// What one visit of a span's or event's fields found.
#[derive(Default)]
pub(crate) struct Fields {
    pub(crate) attributes: Attributes,
    /// Whether attribute keys are known to be distinct (a span's creation).
    distinct_keys: bool,
    is_event: bool,
    pub(crate) name: Option<Cow<'static, str>>,
    pub(crate) kind: Option<SpanKind>,
    pub(crate) status_code: Option<StatusCode>,
    pub(crate) status_description: Option<Text>,
    /// An error carried by the fields (`error`), with its message.
    pub(crate) error: Option<Box<ErrorValue>>,
    /// The event's message.
    pub(crate) message: Option<Text>,
    /// An event field `exception.message` or `exception.type` was seen.
    exception: bool,
    pub(crate) message_event: MessageEventFields,
}

#[derive(Default)]
pub(crate) struct MessageEventFields {
    pub(crate) kind: Option<MessageEventKind>,
    pub(crate) id: u64,
    pub(crate) uncompressed: u64,
    pub(crate) compressed: Option<u64>,
}

impl Fields {
    /// For a span's creation fields (distinct keys), filling `attributes`
    /// (empty, possibly with capacity from a recycled record).
    pub(crate) fn for_new_span(mut attributes: Attributes, n_fields: usize) -> Self {
        attributes.reserve(n_fields);
        Fields {
            attributes,
            distinct_keys: true,
            ..Fields::default()
        }
    }

    /// For `record()` on an existing span.
    pub(crate) fn for_record() -> Self {
        Fields::default()
    }

    /// For an event's fields.
    /// `attributes` is empty, possibly with capacity from a recycled record.
    pub(crate) fn for_event(mut attributes: Attributes, n_fields: usize) -> Self {
        attributes.reserve(n_fields.saturating_sub(1));
        Fields {
            attributes,
            distinct_keys: true,
            is_event: true,
            ..Fields::default()
        }
    }

    /// Whether the fields carry an error (an `error` value or an
    /// `exception.message`).
    pub(crate) fn carries_error(&self) -> bool {
        self.error.is_some() || self.exception
    }

    fn attr(&mut self, key: &'static str, value: AttributeValue) {
        if self.is_event && (key == FIELD_EXCEPTION_MESSAGE || key == FIELD_EXCEPTION_TYPE) {
            self.exception = true;
        }
        if self.distinct_keys {
            self.attributes.push_new(key, value);
        } else {
            self.attributes.insert(key, value);
        }
    }

    /// Handles a string-valued special field; returns `false` when `name` is
    /// not special or the value does not fit it (it then stays an attribute).
    fn special_str(&mut self, name: &'static str, value: &str) -> bool {
        match name {
            FIELD_KIND => match SpanKind::parse(value) {
                Some(kind) => self.kind = Some(kind),
                None => return false,
            },
            FIELD_NAME => self.name = Some(Cow::Owned(truncated_string(value))),
            FIELD_STATUS_CODE => match parse_status_code(value) {
                Some(code) => self.status_code = Some(code),
                None => return false,
            },
            FIELD_STATUS_DESCRIPTION => {
                self.status_description = Some(Text::truncated(value, MAX_MESSAGE_CHARS))
            }
            FIELD_ERROR if !self.is_event => {
                self.status_code.get_or_insert(StatusCode::Error);
                self.status_description = Some(Text::truncated(value, MAX_MESSAGE_CHARS));
            }
            // `#[instrument(err)]` records the error with `%` or `?`: an
            // error all the same, only without its type and source chain.
            FIELD_ERROR => {
                self.error = Some(Box::new(ErrorValue::from_message(Text::truncated(
                    value,
                    MAX_MESSAGE_CHARS,
                ))))
            }
            FIELD_MESSAGE if self.is_event => {
                self.message = Some(Text::truncated(value, MAX_MESSAGE_CHARS))
            }
            FIELD_MESSAGE_TYPE if self.is_event => match value {
                v if v.eq_ignore_ascii_case("sent") => {
                    self.message_event.kind = Some(MessageEventKind::Sent)
                }
                v if v.eq_ignore_ascii_case("received") => {
                    self.message_event.kind = Some(MessageEventKind::Received)
                }
                _ => return false,
            },
            _ => return false,
        }
        true
    }

    fn special_u64(&mut self, name: &'static str, value: u64) -> bool {
        if !self.is_event {
            return false;
        }
        match name {
            FIELD_MESSAGE_ID => self.message_event.id = value,
            FIELD_MESSAGE_UNCOMPRESSED => self.message_event.uncompressed = value,
            FIELD_MESSAGE_COMPRESSED => self.message_event.compressed = Some(value),
            _ => return false,
        }
        true
    }
}

fn parse_status_code(s: &str) -> Option<StatusCode> {
    let s = s.trim();
    [
        ("ok", StatusCode::Ok),
        ("error", StatusCode::Error),
        ("unset", StatusCode::Unset),
    ]
    .into_iter()
    .find(|(name, _)| name.eq_ignore_ascii_case(s))
    .map(|(_, code)| code)
}

fn truncated_string(s: &str) -> String {
    crate::record::text::truncate_str(s, MAX_ATTRIBUTE_VALUE_CHARS).to_owned()
}

/// Formats a `Debug` value once, bounded.
fn debug_text(value: &dyn fmt::Debug, max_chars: usize) -> Text {
    let mut w = TextWriter::new(max_chars);
    let _ = write!(w, "{value:?}");
    w.finish()
}

fn is_special(name: &str) -> bool {
    matches!(
        name,
        FIELD_KIND
            | FIELD_NAME
            | FIELD_STATUS_CODE
            | FIELD_STATUS_DESCRIPTION
            | FIELD_ERROR
            | FIELD_MESSAGE
            | FIELD_MESSAGE_TYPE
    )
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let name = field.name();
        if !self.special_str(name, value) {
            self.attr(
                name,
                AttributeValue::Str(Text::truncated(value, MAX_ATTRIBUTE_VALUE_CHARS)),
            );
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if name == FIELD_MESSAGE && self.is_event {
            // The common case of every event: format once, straight in.
            self.message = Some(debug_text(value, MAX_MESSAGE_CHARS));
            return;
        }
        if is_special(name) {
            let text = debug_text(value, MAX_ATTRIBUTE_VALUE_CHARS);
            if self.special_str(name, &text) {
                return;
            }
            self.attr(name, AttributeValue::Debug(text));
            return;
        }
        self.attr(
            name,
            AttributeValue::Debug(debug_text(value, MAX_ATTRIBUTE_VALUE_CHARS)),
        );
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let name = field.name();
        if value >= 0 && self.special_u64(name, value as u64) {
            return;
        }
        self.attr(name, AttributeValue::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let name = field.name();
        if !self.special_u64(name, value) {
            self.attr(name, AttributeValue::U64(value));
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attr(field.name(), AttributeValue::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        let name = field.name();
        if name == FIELD_ERROR && !self.is_event {
            // `error = true` marks the span failed; `error = false` says nothing.
            if value {
                self.status_code.get_or_insert(StatusCode::Error);
            }
            return;
        }
        self.attr(name, AttributeValue::Bool(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.attr(
            field.name(),
            AttributeValue::Debug(debug_text(&value, MAX_ATTRIBUTE_VALUE_CHARS)),
        );
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.attr(
            field.name(),
            AttributeValue::Debug(debug_text(&value, MAX_ATTRIBUTE_VALUE_CHARS)),
        );
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let name = field.name();
        let error = Box::new(ErrorValue::from_error(value));
        if name == FIELD_ERROR {
            if !self.is_event {
                self.status_code.get_or_insert(StatusCode::Error);
                self.status_description = Some(error.message.clone());
            }
            self.error = Some(error);
        } else {
            self.attr(name, AttributeValue::Error(error));
        }
    }
}
