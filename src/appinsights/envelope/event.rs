//! What the Message and Exception items of an event share: the view of
//! the event ([`EventView`]) and its [`SeverityLevel`].

use std::time::SystemTime;

use serde::Serialize;
use tracing_core::Level;

use crate::record::{Annotation, Attributes, EventData};

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
