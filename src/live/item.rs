//! [`Item`]: what Live Metrics sees of a finished span, an event or an
//! exception, whether the span was sampled or not.
//!
//! The collection configuration's filters (`filter.rs`) and the documents
//! (`document.rs`) read only this view, so they need not know the layer's
//! records.

use std::borrow::Cow;

/// The telemetry type of an item, as the collection configuration names
/// them (`TelemetryType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ItemKind {
    /// A server or consumer span.
    Request,
    /// A client or producer span.
    Dependency,
    /// An exception: an event carrying an error or `exception.*` fields.
    Exception,
    /// Any other event (a log line).
    Trace,
}

/// An item's custom dimensions (its span's or event's fields).
pub(crate) trait Dimensions {
    /// The value of field `key`, as text.
    fn get(&self, key: &str) -> Option<Cow<'_, str>>;
    /// Calls `f` with each value until it returns `true`; returns whether
    /// one did (`*` filters search every field).
    fn any_value(&self, f: &mut dyn FnMut(&str) -> bool) -> bool;
    /// Calls `f` with each key and value (document `Properties`).
    fn for_each(&self, f: &mut dyn FnMut(&str, &str));
}

/// No custom dimensions.
pub(crate) struct NoDimensions;

impl Dimensions for NoDimensions {
    fn get(&self, _key: &str) -> Option<Cow<'_, str>> {
        None
    }
    fn any_value(&self, _f: &mut dyn FnMut(&str) -> bool) -> bool {
        false
    }
    fn for_each(&self, _f: &mut dyn FnMut(&str, &str)) {}
}

/// One item, borrowed from the record it was made from. Fields that do not
/// apply to its kind are empty (`""`, `None`).
pub(crate) struct Item<'a> {
    pub kind: ItemKind,
    /// Request or dependency `Name` (e.g. `GET /api/items/{id}`).
    pub name: &'a str,
    /// Request `Url`.
    pub url: &'a str,
    /// Request `ResponseCode` or dependency `ResultCode`, when numeric.
    pub result_code: Option<i64>,
    /// The result code as sent in documents (`"200"`, `"0"`, `"Canceled"`).
    pub result_text: &'a str,
    /// Requests and dependencies: the duration in milliseconds.
    pub duration_ms: f64,
    /// Requests and dependencies: whether it succeeded.
    pub success: bool,
    /// Dependency `Target` (host[:port]), `Type` (`HTTP`, `SQL`, …) and
    /// `Data` (full URL or command).
    pub target: &'a str,
    pub dependency_type: &'a str,
    pub data: &'a str,
    /// Trace `Message`, or exception `Exception.Message`.
    pub message: &'a str,
    /// Exception type and stack trace.
    pub exception_type: &'a str,
    pub stack: &'a str,
    pub dimensions: &'a dyn Dimensions,
}

impl<'a> Item<'a> {
    /// An item of `kind` with every field empty, to fill with struct update
    /// syntax.
    pub(crate) fn empty(kind: ItemKind) -> Item<'static> {
        Item {
            kind,
            name: "",
            url: "",
            result_code: None,
            result_text: "",
            duration_ms: 0.0,
            success: true,
            target: "",
            dependency_type: "",
            data: "",
            message: "",
            exception_type: "",
            stack: "",
            dimensions: &NoDimensions,
        }
    }
}
