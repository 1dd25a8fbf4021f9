//! Field visitors: `tracing` field values into typed attributes, with the
//! special fields (`otel.*`, `error`, `message`) read into the record instead.
//!
//! One visitor, [`FieldVisitor`], reads every field; where the values go is
//! its [`Target`]: straight into a new span's record (nothing staged, no
//! lock held: the record is not shared yet), straight into an event's
//! record ([`EventFields`]), or, for `record()` on a span already shared,
//! into a [`Staged`] set of values applied under the span's lock afterwards
//! (a field's `Debug` impl may itself emit `tracing` events, which re-enter
//! the layer and would deadlock on the span's lock).

use std::borrow::Cow;
use std::fmt::{self, Write};

use tracing_core::field::{Field, Visit};
use tracing_core::Metadata;

use crate::record::text::{Text, TextWriter};
use crate::record::{
    AttributeValue, Attributes, ErrorValue, EventData, EventSpan, MessageEventKind, SpanKind,
    StatusCode, MAX_ATTRIBUTE_VALUE_CHARS, MAX_MESSAGE_CHARS,
};

/// `otel.kind`: `server`, `client`, `producer`, `consumer` or `internal`.
pub(crate) const FIELD_KIND: &str = "otel.kind";
/// `otel.name`: replaces the span's name.
pub(crate) const FIELD_NAME: &str = "otel.name";
/// `otel.status_code`: `ok` or `error` (or `unset`).
pub(crate) const FIELD_STATUS_CODE: &str = "otel.status_code";
/// `otel.status_description`: the status message.
pub(crate) const FIELD_STATUS_DESCRIPTION: &str = "otel.status_description";
/// `otel.status_message`: the same, by tracing-opentelemetry's name.
pub(crate) const FIELD_STATUS_MESSAGE: &str = "otel.status_message";
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

/// Where a [`FieldVisitor`] puts what it reads. Span targets take the
/// `otel.*` fields; an event's ignores them (they are not attributes
/// either), and takes its `message`, `message.*` and `error` fields.
pub(crate) trait Target {
    /// Whether the fields are an event's.
    const EVENT: bool;
    /// An ordinary field.
    fn attribute(&mut self, key: &'static str, value: AttributeValue);
    /// `otel.name`.
    fn name(&mut self, _name: Cow<'static, str>) {}
    /// `otel.kind`.
    fn kind(&mut self, _kind: SpanKind) {}
    /// `otel.status_code`, or a span's `error`.
    fn status(&mut self, _code: StatusCode) {}
    /// `otel.status_description`, or the message of a span's `error`.
    fn status_description(&mut self, _description: Text) {}
    /// An event's `message`.
    fn message(&mut self, _message: Text) {}
    /// An event's `error` (boxed, as an attribute value keeps it).
    #[allow(clippy::boxed_local)]
    fn error(&mut self, _error: Box<ErrorValue>) {}
    /// An event's `message.type` and sizes, when it is a message event.
    fn message_event(&mut self) -> Option<&mut MessageEventFields> {
        None
    }
}

/// Visits fields into a [`Target`].
pub(crate) struct FieldVisitor<'t, T> {
    target: &'t mut T,
    /// An `otel.status_code` was seen: a later `error` leaves the code.
    explicit_status: bool,
}

impl<'t, T: Target> FieldVisitor<'t, T> {
    pub(crate) fn new(target: &'t mut T) -> Self {
        FieldVisitor {
            target,
            explicit_status: false,
        }
    }

    /// A span's `error` field: the span failed (unless these fields said
    /// otherwise), with this description.
    fn span_error(&mut self, description: Text) {
        if !self.explicit_status {
            self.target.status(StatusCode::Error);
        }
        self.target.status_description(description);
    }

    /// Handles a string-valued special field; returns `false` when `name` is
    /// not special or the value does not fit it (it then stays an attribute).
    fn special_str(&mut self, name: &'static str, value: &str) -> bool {
        match name {
            FIELD_KIND => match SpanKind::parse(value) {
                Some(kind) => self.target.kind(kind),
                None => return false,
            },
            FIELD_NAME => self.target.name(Cow::Owned(truncated_string(value))),
            FIELD_STATUS_CODE => match parse_status_code(value) {
                Some(code) => {
                    self.explicit_status = true;
                    self.target.status(code);
                }
                None => return false,
            },
            FIELD_STATUS_DESCRIPTION | FIELD_STATUS_MESSAGE => self
                .target
                .status_description(Text::truncated(value, MAX_MESSAGE_CHARS)),
            FIELD_ERROR if !T::EVENT => {
                self.span_error(Text::truncated(value, MAX_MESSAGE_CHARS));
            }
            // `#[instrument(err)]` records the error with `%` or `?`: an
            // error all the same, only without its type and source chain.
            FIELD_ERROR => self
                .target
                .error(Box::new(ErrorValue::from_message(Text::truncated(
                    value,
                    MAX_MESSAGE_CHARS,
                )))),
            FIELD_MESSAGE if T::EVENT => {
                self.target
                    .message(Text::truncated(value, MAX_MESSAGE_CHARS));
            }
            FIELD_MESSAGE_TYPE if T::EVENT => {
                let kind = match value {
                    v if v.eq_ignore_ascii_case("sent") => MessageEventKind::Sent,
                    v if v.eq_ignore_ascii_case("received") => MessageEventKind::Received,
                    _ => return false,
                };
                match self.target.message_event() {
                    Some(m) => m.kind = Some(kind),
                    None => return false,
                }
            }
            _ => return false,
        }
        true
    }

    fn special_u64(&mut self, name: &'static str, value: u64) -> bool {
        if !T::EVENT {
            return false;
        }
        let Some(m) = self.target.message_event() else {
            return false;
        };
        match name {
            FIELD_MESSAGE_ID => m.id = value,
            FIELD_MESSAGE_UNCOMPRESSED => m.uncompressed = value,
            FIELD_MESSAGE_COMPRESSED => m.compressed = Some(value),
            _ => return false,
        }
        true
    }
}

/// The `message.*` fields of an event.
#[derive(Default)]
pub(crate) struct MessageEventFields {
    pub(crate) kind: Option<MessageEventKind>,
    pub(crate) id: u64,
    pub(crate) uncompressed: u64,
    pub(crate) compressed: Option<u64>,
}

/// The fields given to `record()` on a span, kept to be applied under the
/// span's lock ([`apply_to`](Self::apply_to)).
#[derive(Default)]
pub(crate) struct Staged {
    attributes: Attributes,
    name: Option<Cow<'static, str>>,
    kind: Option<SpanKind>,
    status: Option<StatusCode>,
    status_description: Option<Text>,
}

impl Staged {
    /// Hands what was visited to `target`, as visiting into it would have.
    pub(crate) fn apply_to(self, target: &mut impl Target) {
        if let Some(name) = self.name {
            target.name(name);
        }
        if let Some(kind) = self.kind {
            target.kind(kind);
        }
        if let Some(code) = self.status {
            target.status(code);
        }
        if let Some(description) = self.status_description {
            target.status_description(description);
        }
        for (key, value) in self.attributes.iter() {
            target.attribute(key, value.clone());
        }
    }
}

impl Target for Staged {
    const EVENT: bool = false;

    fn attribute(&mut self, key: &'static str, value: AttributeValue) {
        self.attributes.insert(key, value);
    }

    fn name(&mut self, name: Cow<'static, str>) {
        self.name = Some(name);
    }

    fn kind(&mut self, kind: SpanKind) {
        self.kind = Some(kind);
    }

    fn status(&mut self, code: StatusCode) {
        self.status = Some(code);
    }

    fn status_description(&mut self, description: Text) {
        self.status_description = Some(description);
    }
}

/// An event's fields, visited into its record: attributes and message in
/// place; an error and the `message.*` fields beside it, for the layer to
/// read ([`finish`](Self::finish) adds the error to the attributes).
pub(crate) struct EventFields<'r> {
    record: &'r mut EventData,
    error: Option<Box<ErrorValue>>,
    /// An `exception.message` or `exception.type` field was seen.
    exception: bool,
    pub(crate) message_event: MessageEventFields,
}

impl<'r> EventFields<'r> {
    /// For the fields of an event with `n_fields` fields, into `record`
    /// (empty: new, or recycled).
    pub(crate) fn new(record: &'r mut EventData, n_fields: usize) -> Self {
        // The message is not an attribute.
        record.attributes.reserve(n_fields.saturating_sub(1));
        EventFields {
            record,
            error: None,
            exception: false,
            message_event: MessageEventFields::default(),
        }
    }

    /// Whether the fields carry an error (an `error` value or an
    /// `exception.message` or `exception.type`).
    pub(crate) fn carries_error(&self) -> bool {
        self.error.is_some() || self.exception
    }

    /// The message of the error the fields carry.
    pub(crate) fn error_message(&self) -> Option<Text> {
        match &self.error {
            Some(error) => Some(error.message.clone()),
            None => self
                .record
                .attributes
                .get(FIELD_EXCEPTION_MESSAGE)
                .map(|v| Text::from(v.to_string())),
        }
    }

    /// Completes the record (all but its time, set on the worker).
    pub(crate) fn finish(self, meta: &'static Metadata<'static>, span: Option<EventSpan>) {
        let record = self.record;
        if let Some(error) = self.error {
            record
                .attributes
                .insert(FIELD_ERROR, AttributeValue::Error(error));
        }
        record.level = *meta.level();
        record.target = meta.target();
        record.span = span;
    }
}

impl Target for EventFields<'_> {
    const EVENT: bool = true;

    fn attribute(&mut self, key: &'static str, value: AttributeValue) {
        if key == FIELD_EXCEPTION_MESSAGE || key == FIELD_EXCEPTION_TYPE {
            self.exception = true;
        }
        // An event's fields are distinct.
        self.record.attributes.push_new(key, value);
    }

    fn message(&mut self, message: Text) {
        self.record.message = message;
    }

    fn error(&mut self, error: Box<ErrorValue>) {
        self.error = Some(error);
    }

    fn message_event(&mut self) -> Option<&mut MessageEventFields> {
        Some(&mut self.message_event)
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
            | FIELD_STATUS_MESSAGE
            | FIELD_ERROR
            | FIELD_MESSAGE
            | FIELD_MESSAGE_TYPE
    )
}

impl<T: Target> Visit for FieldVisitor<'_, T> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let name = field.name();
        if !self.special_str(name, value) {
            self.target.attribute(
                name,
                AttributeValue::Str(Text::truncated(value, MAX_ATTRIBUTE_VALUE_CHARS)),
            );
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if name == FIELD_MESSAGE && T::EVENT {
            // The common case of every event: format once, straight in.
            self.target.message(debug_text(value, MAX_MESSAGE_CHARS));
            return;
        }
        if is_special(name) {
            let text = debug_text(value, MAX_ATTRIBUTE_VALUE_CHARS);
            if self.special_str(name, &text) {
                return;
            }
            self.target.attribute(name, AttributeValue::Debug(text));
            return;
        }
        self.target.attribute(
            name,
            AttributeValue::Debug(debug_text(value, MAX_ATTRIBUTE_VALUE_CHARS)),
        );
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let name = field.name();
        if value >= 0 && self.special_u64(name, value as u64) {
            return;
        }
        self.target.attribute(name, AttributeValue::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let name = field.name();
        if !self.special_u64(name, value) {
            self.target.attribute(name, AttributeValue::U64(value));
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.target
            .attribute(field.name(), AttributeValue::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        let name = field.name();
        if name == FIELD_ERROR && !T::EVENT {
            // `error = true` marks the span failed; `error = false` says nothing.
            if value && !self.explicit_status {
                self.target.status(StatusCode::Error);
            }
            return;
        }
        self.target.attribute(name, AttributeValue::Bool(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.target.attribute(
            field.name(),
            AttributeValue::Debug(debug_text(&value, MAX_ATTRIBUTE_VALUE_CHARS)),
        );
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.target.attribute(
            field.name(),
            AttributeValue::Debug(debug_text(&value, MAX_ATTRIBUTE_VALUE_CHARS)),
        );
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let name = field.name();
        let error = Box::new(ErrorValue::from_error(value));
        if name != FIELD_ERROR {
            self.target.attribute(name, AttributeValue::Error(error));
        } else if T::EVENT {
            self.target.error(error);
        } else {
            self.span_error(error.message);
        }
    }
}
