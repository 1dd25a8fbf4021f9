//! Telemetry processors: code of the application's that sees each
//! Application Insights item on the exporter's thread, after the mapping
//! and before it is written, and may change or drop it
//! ([`Builder::with_processor`](crate::Builder::with_processor)); and the
//! properties every item carries
//! ([`Builder::with_property`](crate::Builder::with_property)).
//!
//! A processor is a closure `Fn(&mut Item<'_>) -> bool + Send + Sync +
//! 'static`: it reads and changes the [`Item`] through typed accessors, and
//! returns `false` to drop it. Processors run in the order they were added;
//! the first that returns `false` drops the item and the later ones do not
//! see it. A dropped item is never sent, retried or stored; it is counted in
//! [`ExporterStats::dropped_by_processor`](crate::ExporterStats::dropped_by_processor).
//!
//! Every setter applies the schema's limit to what it is given (lengths in
//! UTF-16 code units, cut on a char boundary; property names over 150 units
//! are refused, values cut to 8,192), and the item is kept under the
//! service's 64 KB when written, as every item is: no processor can make an
//! item the service would reject.
//!
//! A processor that panics does not stop the exporter: the panic is caught,
//! the item is **dropped** (it may be half changed: a redaction that
//! panicked half-way must not let the rest through), counted in both
//! [`dropped_by_processor`](crate::ExporterStats::dropped_by_processor) and
//! [`processor_panics`](crate::ExporterStats::processor_panics), and one
//! warning (`Exporter.ProcessorPanicked`) is logged; the rest of the batch
//! goes on. (The panic hook still runs, so the panic's message is printed
//! as any panic's is.)
//!
//! Processors see the items sent to Application Insights only: the stdout
//! and in-memory sinks show the records as the layer made them.
//!
//! # Examples
//!
//! Drop health checks, keep query strings out of URLs and set the user:
//!
//! ```
//! use tracing_appinsights::processor::{ItemKind, Tag};
//!
//! let builder = tracing_appinsights::Builder::new()
//!     .with_processor(|item| {
//!         !(item.kind() == ItemKind::Request && item.name() == Some("GET /health"))
//!     })
//!     .with_processor(|item| {
//!         if let Some((path, _query)) = item.url().and_then(|u| u.split_once('?')) {
//!             let redacted = format!("{path}?REDACTED");
//!             item.set_url(redacted);
//!         }
//!         if let Some(user) = item.properties().get("session.user").map(|u| u.into_owned()) {
//!             item.set_tag(Tag::UserId, user);
//!             item.properties().remove("session.user");
//!         }
//!         true
//!     })
//!     .with_property("deployment", "blue");
//! ```

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::envelope::{self, cut, Data, Envelope, EnvelopeContext, PropValue, Properties as Props};
use crate::error::BuildError;
use crate::record::text::truncate_utf16;

/// What kind of telemetry item an [`Item`] is (its envelope's type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ItemKind {
    /// An incoming request (`requests`): a server or consumer span.
    Request,
    /// An outgoing call or in-process work (`dependencies`): every other
    /// span kind.
    RemoteDependency,
    /// A trace message (`traces`): an event.
    Message,
    /// An exception (`exceptions`): an event carrying an error.
    Exception,
    /// A custom event (`customEvents`): an event with a
    /// `microsoft.custom_event.name` field.
    Event,
}

/// A context tag of an item that a processor may read and set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Tag {
    /// `ai.application.ver` (max 1024).
    ApplicationVersion,
    /// `ai.cloud.role`, the application map's node (max 256).
    CloudRole,
    /// `ai.cloud.roleInstance` (max 256).
    CloudRoleInstance,
    /// `ai.operation.name`, the operation's group in the portal (max 1024).
    OperationName,
    /// `ai.user.id` (max 128).
    UserId,
    /// `ai.location.ip`, the client's address (max 46).
    LocationIp,
    /// `ai.user.userAgent` (max 1024).
    UserAgent,
}

impl Tag {
    /// The tag's key on the wire, e.g. `ai.user.id`.
    pub fn key(self) -> &'static str {
        match self {
            Tag::ApplicationVersion => "ai.application.ver",
            Tag::CloudRole => "ai.cloud.role",
            Tag::CloudRoleInstance => "ai.cloud.roleInstance",
            Tag::OperationName => "ai.operation.name",
            Tag::UserId => "ai.user.id",
            Tag::LocationIp => "ai.location.ip",
            Tag::UserAgent => "ai.user.userAgent",
        }
    }

    /// The longest value sent, in UTF-16 code units.
    fn limit(self) -> usize {
        use envelope::tags as t;
        match self {
            Tag::ApplicationVersion => t::MAX_APPLICATION_VER,
            Tag::CloudRole => t::MAX_CLOUD_ROLE,
            Tag::CloudRoleInstance => t::MAX_CLOUD_ROLE_INSTANCE,
            Tag::OperationName => t::MAX_OPERATION_NAME,
            Tag::UserId => t::MAX_USER_ID,
            Tag::LocationIp => t::MAX_LOCATION_IP,
            Tag::UserAgent => t::MAX_USER_AGENT,
        }
    }
}

/// One telemetry item on its way to Application Insights, as a processor
/// sees it: typed, mutable access to what the service shows (see the
/// [module docs](self)). Accessors of a field the item's kind does not have
/// return `None`, and its setters do nothing and return `false`.
pub struct Item<'a> {
    pub(crate) env: Envelope<'a>,
}

impl std::fmt::Debug for Item<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("kind", &self.kind())
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl<'a> Item<'a> {
    /// What kind of item this is.
    pub fn kind(&self) -> ItemKind {
        match &self.env.data {
            Data::RequestData(_) => ItemKind::Request,
            Data::RemoteDependencyData(_) => ItemKind::RemoteDependency,
            Data::MessageData(_) => ItemKind::Message,
            Data::ExceptionData(_) => ItemKind::Exception,
            Data::EventData(_) => ItemKind::Event,
        }
    }

    /// The name of a request (`"GET /orders/{id}"`), a dependency or a
    /// custom event; `None` for messages and exceptions.
    pub fn name(&self) -> Option<&str> {
        match &self.env.data {
            Data::RequestData(d) => Some(&d.name),
            Data::RemoteDependencyData(d) => Some(&d.name),
            Data::EventData(d) => Some(&d.name),
            Data::MessageData(_) | Data::ExceptionData(_) => None,
        }
    }

    /// Sets the name of a request, dependency (max 1024) or custom event
    /// (max 512); whether the item has one.
    pub fn set_name(&mut self, name: impl Into<String>) -> bool {
        let (slot, max) = match &mut self.env.data {
            Data::RequestData(d) => (&mut d.name, envelope::request::MAX_NAME),
            Data::RemoteDependencyData(d) => (&mut d.name, envelope::dependency::MAX_NAME),
            Data::EventData(d) => (&mut d.name, envelope::event::MAX_EVENT_NAME),
            Data::MessageData(_) | Data::ExceptionData(_) => return false,
        };
        *slot = owned(name, max);
        true
    }

    /// A request's URL, with its query string; `None` for other items or
    /// a request without one.
    pub fn url(&self) -> Option<&str> {
        match &self.env.data {
            Data::RequestData(d) => d.url.as_deref(),
            _ => None,
        }
    }

    /// Sets a request's URL (max 2048); whether the item is a request.
    pub fn set_url(&mut self, url: impl Into<String>) -> bool {
        match &mut self.env.data {
            Data::RequestData(d) => {
                d.url = Some(owned(url, envelope::request::MAX_URL));
                true
            }
            _ => false,
        }
    }

    /// A dependency's command: the full URL of an HTTP call, the statement
    /// of a database call; `None` for other items or without one.
    pub fn data(&self) -> Option<&str> {
        match &self.env.data {
            Data::RemoteDependencyData(d) => d.data.as_deref(),
            _ => None,
        }
    }

    /// Sets a dependency's command (max 8192); whether the item is a
    /// dependency.
    pub fn set_data(&mut self, data: impl Into<String>) -> bool {
        match &mut self.env.data {
            Data::RemoteDependencyData(d) => {
                d.data = Some(owned(data, envelope::dependency::MAX_DATA));
                true
            }
            _ => false,
        }
    }

    /// A dependency's type (`HTTP`, `SQL`, `postgresql`, `InProc`, …).
    pub fn dependency_type(&self) -> Option<&str> {
        match &self.env.data {
            Data::RemoteDependencyData(d) => Some(&d.dependency_type),
            _ => None,
        }
    }

    /// A dependency's target (`host[:port]`, `host|database`, a queue).
    pub fn target(&self) -> Option<&str> {
        match &self.env.data {
            Data::RemoteDependencyData(d) => d.target.as_deref(),
            _ => None,
        }
    }

    /// Sets a dependency's target (max 1024); whether the item is a
    /// dependency.
    pub fn set_target(&mut self, target: impl Into<String>) -> bool {
        match &mut self.env.data {
            Data::RemoteDependencyData(d) => {
                d.target = Some(owned(target, envelope::dependency::MAX_TARGET));
                true
            }
            _ => false,
        }
    }

    /// The text of a message, or an exception's message.
    pub fn message(&self) -> Option<&str> {
        match &self.env.data {
            Data::MessageData(d) => Some(&d.message),
            Data::ExceptionData(d) => Some(&d.exceptions[0].message),
            _ => None,
        }
    }

    /// Sets the text of a message or an exception's message (max 32768);
    /// whether the item has one.
    pub fn set_message(&mut self, message: impl Into<String>) -> bool {
        match &mut self.env.data {
            Data::MessageData(d) => {
                d.message = owned(message, envelope::message::MAX_MESSAGE);
                true
            }
            Data::ExceptionData(d) => {
                d.exceptions[0].message = owned(message, envelope::exception::MAX_MESSAGE);
                true
            }
            _ => false,
        }
    }

    /// A request's response code or a dependency's result code (the HTTP
    /// status, else `"0"`).
    pub fn result_code(&self) -> Option<&str> {
        match &self.env.data {
            Data::RequestData(d) => Some(&d.response_code),
            Data::RemoteDependencyData(d) => Some(&d.result_code),
            _ => None,
        }
    }

    /// Sets a request's response code or a dependency's result code (max
    /// 1024); whether the item has one.
    pub fn set_result_code(&mut self, code: impl Into<String>) -> bool {
        match &mut self.env.data {
            Data::RequestData(d) => {
                d.response_code = owned(code, envelope::request::MAX_RESPONSE_CODE);
                true
            }
            Data::RemoteDependencyData(d) => {
                d.result_code = owned(code, envelope::dependency::MAX_RESULT_CODE);
                true
            }
            _ => false,
        }
    }

    /// Whether a request or dependency succeeded.
    pub fn success(&self) -> Option<bool> {
        match &self.env.data {
            Data::RequestData(d) => Some(d.success),
            Data::RemoteDependencyData(d) => Some(d.success),
            _ => None,
        }
    }

    /// Sets whether a request or dependency succeeded (a 404 that is
    /// expected, say); whether the item has the field.
    pub fn set_success(&mut self, success: bool) -> bool {
        match &mut self.env.data {
            Data::RequestData(d) => d.success = success,
            Data::RemoteDependencyData(d) => d.success = success,
            _ => return false,
        }
        true
    }

    /// The item's custom properties (its span's or event's fields, the
    /// process-wide ones of [`with_property`](crate::Builder::with_property)),
    /// to read and change.
    pub fn properties(&mut self) -> Properties<'_, 'a> {
        Properties {
            props: self.env.data.properties_mut(),
        }
    }

    /// The value of a context tag, when the item has it.
    pub fn tag(&self, tag: Tag) -> Option<&str> {
        let tags = &self.env.tags;
        let value = match tag {
            Tag::ApplicationVersion => &tags.application_ver,
            Tag::CloudRole => &tags.cloud_role,
            Tag::CloudRoleInstance => &tags.cloud_role_instance,
            Tag::OperationName => &tags.operation_name,
            Tag::UserId => &tags.user_id,
            Tag::LocationIp => &tags.location_ip,
            Tag::UserAgent => &tags.user_agent,
        };
        value.as_deref()
    }

    /// Sets a context tag, cut to its limit.
    pub fn set_tag(&mut self, tag: Tag, value: impl Into<String>) {
        *self.tag_slot(tag) = Some(owned(value, tag.limit()));
    }

    /// Removes a context tag.
    pub fn remove_tag(&mut self, tag: Tag) {
        *self.tag_slot(tag) = None;
    }

    fn tag_slot(&mut self, tag: Tag) -> &mut Option<Cow<'a, str>> {
        let tags = &mut self.env.tags;
        match tag {
            Tag::ApplicationVersion => &mut tags.application_ver,
            Tag::CloudRole => &mut tags.cloud_role,
            Tag::CloudRoleInstance => &mut tags.cloud_role_instance,
            Tag::OperationName => &mut tags.operation_name,
            Tag::UserId => &mut tags.user_id,
            Tag::LocationIp => &mut tags.location_ip,
            Tag::UserAgent => &mut tags.user_agent,
        }
    }

    /// The operation (trace) id, 32 hex digits; `None` for an event
    /// outside spans.
    pub fn operation_id(&self) -> Option<&str> {
        self.env.tags.operation_id.as_ref().map(|id| id.as_str())
    }

    /// The parent's id (the span's for an event in it), 16 hex digits;
    /// `None` for a root span and an event outside spans.
    pub fn parent_id(&self) -> Option<&str> {
        self.env
            .tags
            .operation_parent_id
            .as_ref()
            .map(|id| id.as_str())
    }
}

/// Text a setter was given, cut to `max` UTF-16 code units.
fn owned<'a>(value: impl Into<String>, max: usize) -> Cow<'a, str> {
    cut(Cow::Owned(value.into()), max)
}

/// An item's custom properties (`customDimensions` in the portal), from
/// [`Item::properties`]. Values are strings on the wire: numbers and
/// booleans read as their text.
pub struct Properties<'r, 'a> {
    props: &'r mut Props<'a>,
}

impl std::fmt::Debug for Properties<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> Properties<'_, 'a> {
    /// The value of `key`, as sent.
    pub fn get(&self, key: &str) -> Option<Cow<'_, str>> {
        self.props.get(key).map(PropValue::text)
    }

    /// Whether there is a property `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.props.get(key).is_some()
    }

    /// Sets `key` to `value`, replacing the value it had. The value is cut
    /// to 8,192 UTF-16 code units; an empty key, or one over 150 units, is
    /// refused (the service drops such properties): returns whether the
    /// property was set.
    pub fn insert(
        &mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> bool {
        self.props.insert(key.into(), value.into())
    }

    /// Removes `key`; whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        self.props.remove(key)
    }

    /// The properties, in the order they are sent.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Cow<'_, str>)> + '_ {
        (self.props.entries().iter()).map(|(key, value)| (&**key, value.text()))
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.props.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.props.is_empty()
    }
}

// === running them ===

/// A processor, as [`Builder::with_processor`](crate::Builder::with_processor)
/// keeps it.
pub(crate) type ProcessorFn = dyn Fn(&mut Item<'_>) -> bool + Send + Sync;

/// The processors of one exporter, in the order they were added.
#[derive(Clone, Default)]
pub(crate) struct Processors(Vec<Arc<ProcessorFn>>);

impl std::fmt::Debug for Processors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Processors({})", self.0.len())
    }
}

/// What the processors made of an item.
pub(crate) enum Verdict {
    /// Send it.
    Keep,
    /// A processor returned `false`.
    Drop,
    /// A processor panicked, with this message: dropped.
    Panicked(String),
}

impl Processors {
    /// Adds one, run after those already there.
    pub(crate) fn push(&mut self, processor: Arc<ProcessorFn>) {
        self.0.push(processor);
    }

    /// Whether there is none (the encoder then skips this step).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Runs each processor over `item` until one drops it.
    pub(crate) fn run(&self, item: &mut Item<'_>) -> Verdict {
        for processor in &self.0 {
            match catch_unwind(AssertUnwindSafe(|| processor(item))) {
                Ok(true) => {}
                Ok(false) => return Verdict::Drop,
                Err(panic) => return Verdict::Panicked(panic_message(&*panic)),
            }
        }
        Verdict::Keep
    }
}

/// A panic's message, when it is text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// What enriching a record's envelopes did.
#[derive(Debug, Default)]
pub(crate) struct Processed {
    /// Items a processor dropped (panics included).
    pub(crate) dropped: u64,
    /// Processors that panicked.
    pub(crate) panics: u64,
    /// The first panic's message.
    pub(crate) panic: Option<String>,
}

/// Adds the process-wide properties to `envelopes` (an item's own property
/// of the same key wins), then runs the processors over each, keeping the
/// items they keep, in order (`scratch` is an empty vector to reuse).
pub(crate) fn enrich<'a>(
    ctx: &'a EnvelopeContext,
    processors: &Processors,
    envelopes: &mut Vec<Envelope<'a>>,
    scratch: &mut Vec<Envelope<'a>>,
    processed: &mut Processed,
) {
    let globals = ctx.properties();
    if !globals.is_empty() {
        for env in envelopes.iter_mut() {
            let props = env.data.properties_mut();
            props.reserve(globals.len());
            for (key, value) in globals {
                props.push_default(key, value);
            }
        }
    }
    if processors.is_empty() {
        return;
    }
    scratch.clear();
    for env in envelopes.drain(..) {
        let mut item = Item { env };
        match processors.run(&mut item) {
            Verdict::Keep => scratch.push(item.env),
            Verdict::Drop => processed.dropped += 1,
            Verdict::Panicked(message) => {
                processed.dropped += 1;
                processed.panics += 1;
                processed.panic.get_or_insert(message);
            }
        }
    }
    std::mem::swap(envelopes, scratch);
}

/// The process-wide properties of
/// [`Builder::with_property`](crate::Builder::with_property), checked: a
/// key must be non-empty and at most 150 UTF-16 code units (else a
/// [`BuildError::InvalidSetting`]); a value is cut to 8,192 units. A key
/// set twice keeps its last value.
pub(crate) fn check_properties(
    properties: &[(String, String)],
) -> Result<Vec<(String, String)>, BuildError> {
    let mut checked: Vec<(String, String)> = Vec::with_capacity(properties.len());
    for (key, value) in properties {
        if key.is_empty() || !envelope::key_fits(key) {
            return Err(BuildError::InvalidSetting {
                setting: "with_property",
                reason: format!(
                    "a property name must be 1 to {} UTF-16 code units long (the service drops \
                     longer ones); {:?} is not",
                    envelope::MAX_PROPERTY_KEY,
                    truncate_utf16(key, 40)
                ),
            });
        }
        let value = truncate_utf16(value, envelope::MAX_PROPERTY_VALUE).to_owned();
        match checked.iter_mut().find(|(k, _)| k == key) {
            Some((_, old)) => *old = value,
            None => checked.push((key.clone(), value)),
        }
    }
    Ok(checked)
}
