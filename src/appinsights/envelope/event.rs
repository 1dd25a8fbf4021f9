//! What the items of an event share: the view of the event
//! ([`EventView`]) and its [`SeverityLevel`]; and the custom event item,
//! [`TelemetryEventData`] (`customEvents`), for an event that names one
//! with [`CUSTOM_EVENT_NAME`].

use std::borrow::Cow;
use std::time::SystemTime;

use serde::Serialize;
use tracing_core::Level;

use crate::record::text::truncate_utf16;
use crate::record::{Annotation, AttributeValue, Attributes, EventData};

use super::properties::{PropValue, Properties};
use super::semconv::text;
use super::{cut, EnvelopeContext, SchemaVersion};

/// The field that makes an event a custom event (the Azure Monitor
/// OpenTelemetry distro's attribute): its value is the event's name.
pub(crate) const CUSTOM_EVENT_NAME: &str = "microsoft.custom_event.name";
/// `name` of an `EventData`: max 512.
pub(crate) const MAX_EVENT_NAME: usize = 512;
/// The property that keeps a custom event's message.
const PROPERTY_MESSAGE: &str = "message";

/// Instances of Event represent structured event records that can be
/// grouped and searched by their properties (`customEvents`).
///
/// Required by the schema: `name`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct TelemetryEventData<'a> {
    /// Schema version; always 2.
    pub(crate) ver: SchemaVersion<2>,
    /// Event name: the [`CUSTOM_EVENT_NAME`] field. Max 512.
    pub(crate) name: Cow<'a, str>,
    /// Collection of custom properties: the event's other fields, and its
    /// message as `message`. Names max 150, values max 8192.
    #[serde(skip_serializing_if = "Properties::is_empty")]
    pub(crate) properties: Properties<'a>,
}

/// The custom event's name, when the event names one (a non-empty
/// [`CUSTOM_EVENT_NAME`] field).
pub(crate) fn custom_event_name<'a>(attributes: &'a Attributes) -> Option<Cow<'a, str>> {
    let name = text(attributes.get(CUSTOM_EVENT_NAME)?);
    (!name.trim().is_empty()).then_some(name)
}

impl<'a> TelemetryEventData<'a> {
    /// The custom event an event named `name` stands for: every other
    /// field is a property, and so is its message (as `message`).
    pub(crate) fn from_event(event: &EventView<'a>, name: Cow<'a, str>) -> Self {
        let mut properties = Properties::with_capacity(event.attributes.len());
        for (key, value) in event.fields() {
            if key != CUSTOM_EVENT_NAME {
                properties.push_attribute(key, value);
            }
        }
        event.push_log_properties(&mut properties);
        if !event.message.is_empty() {
            let message = truncate_utf16(event.message, super::properties::MAX_VALUE);
            properties.push(PROPERTY_MESSAGE, PropValue::Str(message));
        }
        TelemetryEventData {
            ver: SchemaVersion,
            name: cut(name, MAX_EVENT_NAME),
            properties,
        }
    }
}

/// An event, inside a span ([`Annotation`]) or not ([`EventData`]).
pub(crate) struct EventView<'a> {
    /// When it happened.
    pub(crate) timestamp: SystemTime,
    /// Its `message` field (empty when it has none).
    pub(crate) message: &'a str,
    /// Its level.
    pub(crate) level: Level,
    /// Its target (a `log` record's own target, not `log`).
    pub(crate) target: &'a str,
    /// Its other fields (a `log` record's `log.*` fields included: see
    /// [`fields`](Self::fields)).
    pub(crate) attributes: &'a Attributes,
    /// What tracing-log says of a `log` record.
    log: Option<LogRecord<'a>>,
}

/// The fields tracing-log gives the event of a `log` record (target `log`):
/// its target, module, file and line.
const LOG_TARGET: &str = "log.target";
const LOG_MODULE: &str = "log.module_path";
const LOG_FILE: &str = "log.file";
const LOG_LINE: &str = "log.line";
/// The target of tracing-log's events.
const LOG_EVENT_TARGET: &str = "log";
/// The properties of a `log` record: its target (as `category`, what the
/// .NET and Java SDKs call a logger's name), and, when asked for, where it
/// was logged (OpenTelemetry's names).
pub(crate) const PROPERTY_CATEGORY: &str = "category";
pub(crate) const PROPERTY_FILE: &str = "code.file.path";
pub(crate) const PROPERTY_LINE: &str = "code.line.number";

/// A `log` record's location, when it is sent.
struct LogRecord<'a> {
    file: Option<&'a AttributeValue>,
    line: Option<&'a AttributeValue>,
}

impl<'a> EventView<'a> {
    pub(super) fn of_annotation(a: &'a Annotation, ctx: &EnvelopeContext) -> Self {
        Self::new(
            a.timestamp,
            &a.description,
            a.level,
            a.target,
            &a.attributes,
            ctx,
        )
    }

    pub(super) fn of_event(e: &'a EventData, ctx: &EnvelopeContext) -> Self {
        Self::new(
            e.timestamp,
            &e.message,
            e.level,
            e.target,
            &e.attributes,
            ctx,
        )
    }

    fn new(
        timestamp: SystemTime,
        message: &'a str,
        level: Level,
        target: &'a str,
        attributes: &'a Attributes,
        ctx: &EnvelopeContext,
    ) -> Self {
        let mut view = EventView {
            timestamp,
            message,
            level,
            target,
            attributes,
            log: None,
        };
        if target == LOG_EVENT_TARGET {
            if let Some(log_target) = attributes.get(LOG_TARGET).and_then(AttributeValue::as_str) {
                view.target = log_target;
                let location = ctx.log_location();
                view.log = Some(LogRecord {
                    file: attributes.get(LOG_FILE).filter(|_| location),
                    line: attributes.get(LOG_LINE).filter(|_| location),
                });
            }
        }
        view
    }

    /// The fields that become properties as they are: for a `log` record,
    /// all but tracing-log's `log.*` (see [`push_log_properties`](Self::push_log_properties)).
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&'static str, &'a AttributeValue)> + 'a {
        let log = self.log.is_some();
        self.attributes.iter().filter(move |(key, _)| {
            !(log && matches!(*key, LOG_TARGET | LOG_MODULE | LOG_FILE | LOG_LINE))
        })
    }

    /// A `log` record's properties: `category` (its target), and its file
    /// and line when `Builder::with_log_location` asks. Nothing for other
    /// events.
    pub(crate) fn push_log_properties(&self, properties: &mut Properties<'a>) {
        let Some(log) = &self.log else {
            return;
        };
        let category = truncate_utf16(self.target, super::properties::MAX_VALUE);
        properties.push(PROPERTY_CATEGORY, PropValue::Str(category));
        if let Some(file) = log.file {
            properties.push_attribute(PROPERTY_FILE, file);
        }
        if let Some(line) = log.line {
            properties.push_attribute(PROPERTY_LINE, line);
        }
    }
}

/// Defines the level of severity for the event (sent as its name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum SeverityLevel {
    /// `TRACE` and `DEBUG`.
    Verbose,
    /// `INFO`.
    Information,
    /// `WARN`.
    Warning,
    /// `ERROR`.
    Error,
}

impl SeverityLevel {
    /// The severity of a `tracing` level.
    pub(crate) fn of(level: Level) -> Self {
        match level {
            Level::TRACE | Level::DEBUG => SeverityLevel::Verbose,
            Level::INFO => SeverityLevel::Information,
            Level::WARN => SeverityLevel::Warning,
            Level::ERROR => SeverityLevel::Error,
        }
    }

    /// The name sent, as the derived `Serialize` writes it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SeverityLevel::Verbose => "Verbose",
            SeverityLevel::Information => "Information",
            SeverityLevel::Warning => "Warning",
            SeverityLevel::Error => "Error",
        }
    }
}
