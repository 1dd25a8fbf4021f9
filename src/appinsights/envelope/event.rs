//! What the items of an event share: the view of the event
//! ([`EventView`]) and its [`SeverityLevel`]; and the custom event item,
//! [`TelemetryEventData`] (`customEvents`), for an event that names one
//! with [`CUSTOM_EVENT_NAME`].

use std::borrow::Cow;
use std::time::SystemTime;

use serde::Serialize;
use tracing_core::Level;

use crate::record::text::truncate_utf16;
use crate::record::{Annotation, Attributes, EventData};

use super::properties::{PropValue, Properties};
use super::semconv::text;
use super::{cut, SchemaVersion};

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
        for (key, value) in event.attributes.iter() {
            if key != CUSTOM_EVENT_NAME {
                properties.push_attribute(key, value);
            }
        }
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
    /// Its target.
    pub(crate) target: &'a str,
    /// Its other fields.
    pub(crate) attributes: &'a Attributes,
}

impl<'a> EventView<'a> {
    pub(super) fn of_annotation(a: &'a Annotation) -> Self {
        EventView {
            timestamp: a.timestamp,
            message: &a.description,
            level: a.level,
            target: a.target,
            attributes: &a.attributes,
        }
    }

    pub(super) fn of_event(e: &'a EventData) -> Self {
        EventView {
            timestamp: e.timestamp,
            message: &e.message,
            level: e.level,
            target: e.target,
            attributes: &e.attributes,
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
