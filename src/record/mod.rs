//! The finished records the layer produces: [`SpanData`] (OpenCensus style)
//! and [`EventData`] (an event, inside a span or outside any).
//!
//! These are plain public data, so an application can read, print and test
//! what the layer recorded (see [`InMemoryExporter`](crate::InMemoryExporter)).
//! The limits the layer applies are the `MAX_*` constants of this module.

use std::borrow::Cow;
use std::time::SystemTime;

use tracing_core::Level;

mod attributes;
pub(crate) mod ids;
pub(crate) mod text;

pub use attributes::{type_name_of, AttributeValue, Attributes, ErrorValue};
pub use ids::{SpanId, TraceId};
pub use text::Text;

/// Most attributes kept on a span, annotation or link (OpenCensus' bound).
pub const MAX_ATTRIBUTES: usize = 32;
/// Most annotations (events) kept on a span (OpenCensus' bound).
pub const MAX_ANNOTATIONS: usize = 32;
/// Most message events kept on a span (OpenCensus' bound).
pub const MAX_MESSAGE_EVENTS: usize = 128;
/// Most links (`follows_from`) kept on a span (OpenCensus' bound).
pub const MAX_LINKS: usize = 32;
/// Longest attribute value kept, in characters (the ingestion service's
/// property value limit); longer values are cut on a char boundary.
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 8192;
/// Longest event message kept, in characters (the service's message limit).
pub const MAX_MESSAGE_CHARS: usize = 32768;

/// A finished span, in the shape of OpenCensus' `SpanData`.
///
/// Unlike the Python print-out, `child_span_count` is counted,
/// `context.span_id` is the span's own id, and `status` prints readably.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SpanData {
    /// The span's name (`otel.name` overrides the `tracing` name).
    pub name: Cow<'static, str>,
    /// The span's own trace id, span id, trace flags and trace state.
    pub context: SpanContext,
    /// The name of the operation: the local root span's name, or
    /// `"METHOD route"` when the root has HTTP method and route fields
    /// (Application Insights' `ai.operation.name`). A child takes it from its
    /// parent when it is created.
    pub operation_name: Cow<'static, str>,
    /// The parent's span id; `None` for a root.
    pub parent_span_id: Option<SpanId>,
    /// What the span represents (from `otel.kind`, else server for a span
    /// with a remote parent, else internal).
    pub kind: SpanKind,
    /// The `tracing` target (usually the module path) of the span.
    pub target: &'static str,
    /// The `tracing` level of the span.
    pub level: Level,
    /// The span's fields, bounded by [`MAX_ATTRIBUTES`].
    pub attributes: Attributes,
    /// When the span was created.
    pub start_time: SystemTime,
    /// When the span closed.
    pub end_time: SystemTime,
    /// How many sampled child spans were created under this one.
    pub child_span_count: u32,
    /// The events recorded inside the span, oldest first, bounded by
    /// [`MAX_ANNOTATIONS`] (the oldest go first).
    pub annotations: Vec<Annotation>,
    /// How many annotations were dropped past the bound.
    pub dropped_annotations: u32,
    /// Message events (events with a `message.type` field of `SENT` or
    /// `RECEIVED`), bounded by [`MAX_MESSAGE_EVENTS`].
    pub message_events: Vec<MessageEvent>,
    /// How many message events were dropped past the bound.
    pub dropped_message_events: u32,
    /// Spans this one follows from, bounded by [`MAX_LINKS`].
    pub links: Vec<Link>,
    /// How many links were dropped past the bound.
    pub dropped_links: u32,
    /// The span's outcome.
    pub status: Status,
    /// `Some(true)` when the parent is in this process, `Some(false)` when it
    /// is remote, `None` for a root.
    pub same_process_as_parent_span: Option<bool>,
    /// Whether the trace was recorded because a remote caller sampled it
    /// (its `traceparent` flag), not by this process' sampler. Its items
    /// then carry `sampleRate` 100: the caller's rate is not known here, so
    /// each item stands for itself.
    pub sampled_remotely: bool,
    /// The percentage of traces this one was kept at by this process'
    /// sampler (its items' `sampleRate`): fixed for most samplers, the
    /// rate of the moment for [`Sampler::rate_limited`](crate::Sampler::rate_limited).
    /// `None` (records built by hand): the sampler's rate.
    pub sample_rate: Option<f64>,
}

impl Default for SpanData {
    /// An empty record: invalid ids, times at the Unix epoch, level INFO.
    /// Useful to build records by hand, for example in tests of code that
    /// reads them.
    fn default() -> Self {
        SpanData {
            name: Cow::Borrowed(""),
            context: SpanContext::default(),
            operation_name: Cow::Borrowed(""),
            parent_span_id: None,
            kind: SpanKind::Unspecified,
            target: "",
            level: Level::INFO,
            attributes: Attributes::new(),
            start_time: std::time::UNIX_EPOCH,
            end_time: std::time::UNIX_EPOCH,
            child_span_count: 0,
            annotations: Vec::new(),
            dropped_annotations: 0,
            message_events: Vec::new(),
            dropped_message_events: 0,
            links: Vec::new(),
            dropped_links: 0,
            status: Status::default(),
            same_process_as_parent_span: None,
            sampled_remotely: false,
            sample_rate: None,
        }
    }
}

impl SpanData {
    /// Empties the record for reuse, keeping its vectors' capacity.
    pub(crate) fn clear_for_reuse(&mut self) {
        self.attributes.clear();
        self.annotations.clear();
        self.message_events.clear();
        self.links.clear();
        self.context.tracestate = None;
        self.status = Status::default();
        self.name = Cow::Borrowed("");
        self.operation_name = Cow::Borrowed("");
    }

    /// How many telemetry items the record becomes: itself, and each
    /// annotation a record built by hand may carry.
    pub(crate) fn items(&self) -> u64 {
        1 + self.annotations.len() as u64
    }

    /// How long the span was open; zero if the clock went backwards.
    pub fn duration(&self) -> std::time::Duration {
        self.end_time
            .duration_since(self.start_time)
            .unwrap_or_default()
    }
}

/// The identity of a span as it travels: trace id, span id, flags, state.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SpanContext {
    /// The trace (operation) the span belongs to.
    pub trace_id: TraceId,
    /// The span's own id.
    pub span_id: SpanId,
    /// The W3C trace flags; bit 0 is "sampled".
    pub trace_options: TraceOptions,
    /// The W3C `tracestate` carried along, if any (validated header value).
    pub tracestate: Option<Text>,
}

/// W3C trace flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TraceOptions(u8);

impl TraceOptions {
    /// The flags of a `traceparent` header's last field (bits other than
    /// "sampled" are kept, as W3C Trace Context asks).
    ///
    /// ```
    /// use tracing_appinsights::record::TraceOptions;
    /// assert!(TraceOptions::from_bits(0x01).is_sampled());
    /// assert_eq!(TraceOptions::from_bits(0x03).bits(), 0x03);
    /// ```
    pub const fn from_bits(bits: u8) -> Self {
        TraceOptions(bits)
    }

    /// The flags as a byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Flags with only "sampled" set.
    pub const SAMPLED: TraceOptions = TraceOptions(1);
    /// No flags: not sampled.
    pub const NOT_SAMPLED: TraceOptions = TraceOptions(0);

    /// Whether the sampled bit is set.
    pub fn is_sampled(self) -> bool {
        self.0 & 1 == 1
    }
}

/// What a span represents, as in OpenTelemetry and OpenCensus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SpanKind {
    /// Not said.
    #[default]
    Unspecified,
    /// Handles an incoming request (becomes a Request).
    Server,
    /// Makes an outgoing call (becomes a dependency).
    Client,
    /// Sends a message to a queue (becomes a dependency).
    Producer,
    /// Handles a message from a queue (becomes a Request).
    Consumer,
    /// Work inside the process (becomes an `InProc` dependency).
    Internal,
}

impl SpanKind {
    /// Parses `server`, `client`, `producer`, `consumer`, `internal`,
    /// `unspecified` (any case); `None` for anything else.
    pub fn parse(s: &str) -> Option<SpanKind> {
        const NAMES: [(&str, SpanKind); 6] = [
            ("server", SpanKind::Server),
            ("client", SpanKind::Client),
            ("producer", SpanKind::Producer),
            ("consumer", SpanKind::Consumer),
            ("internal", SpanKind::Internal),
            ("unspecified", SpanKind::Unspecified),
        ];
        let s = s.trim();
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, kind)| *kind)
    }

    /// The OpenCensus / OpenTelemetry name in upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "UNSPECIFIED",
            SpanKind::Server => "SERVER",
            SpanKind::Client => "CLIENT",
            SpanKind::Producer => "PRODUCER",
            SpanKind::Consumer => "CONSUMER",
            SpanKind::Internal => "INTERNAL",
        }
    }
}

/// A span's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Status {
    /// Unset, ok or error.
    pub code: StatusCode,
    /// A description, for errors (from `otel.status_description` or the
    /// recorded error's message).
    pub message: Option<Text>,
}

impl Status {
    /// Whether the status is an error.
    pub fn is_error(&self) -> bool {
        self.code == StatusCode::Error
    }
}

/// The code of a [`Status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum StatusCode {
    /// Nothing said: counts as success.
    #[default]
    Unset,
    /// Explicitly successful (`otel.status_code = "ok"`).
    Ok,
    /// Failed (`otel.status_code = "error"`, a recorded `error`, or an error
    /// event inside the span).
    Error,
}

impl StatusCode {
    /// `UNSET`, `OK` or `ERROR`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "UNSET",
            StatusCode::Ok => "OK",
            StatusCode::Error => "ERROR",
        }
    }
}

/// An event recorded inside a span (OpenCensus' time event annotation).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Annotation {
    /// When the event happened.
    pub timestamp: SystemTime,
    /// The event's message (its `message` field), cut to
    /// [`MAX_MESSAGE_CHARS`].
    pub description: Text,
    /// The event's level.
    pub level: Level,
    /// The event's target.
    pub target: &'static str,
    /// The event's other fields.
    pub attributes: Attributes,
}

impl Annotation {
    /// An annotation with the given parts.
    pub fn new(
        timestamp: SystemTime,
        description: impl Into<Text>,
        level: Level,
        target: &'static str,
        attributes: Attributes,
    ) -> Self {
        Annotation {
            timestamp,
            description: description.into(),
            level,
            target,
            attributes,
        }
    }
}

/// A message sent or received inside a span: an event carrying a
/// `message.type` field of `SENT` or `RECEIVED` (the OpenTelemetry RPC
/// convention), with optional `message.id`, `message.uncompressed_size` and
/// `message.compressed_size`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MessageEvent {
    /// When the event happened.
    pub timestamp: SystemTime,
    /// Sent or received.
    pub kind: MessageEventKind,
    /// The message id (`message.id`), 0 if absent.
    pub id: u64,
    /// `message.uncompressed_size`, 0 if absent.
    pub uncompressed_size_bytes: u64,
    /// `message.compressed_size`, else the uncompressed size.
    pub compressed_size_bytes: u64,
}

/// The direction of a [`MessageEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageEventKind {
    /// The message was sent.
    Sent,
    /// The message was received.
    Received,
}

/// A link to another span (from `Span::follows_from`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Link {
    /// The linked span's trace id.
    pub trace_id: TraceId,
    /// The linked span's id.
    pub span_id: SpanId,
    /// How the spans relate: `follows_from` gives
    /// [`LinkType::ParentLinkedSpan`] (the linked span caused this one).
    pub link_type: LinkType,
    /// Attributes of the link (none from `tracing`).
    pub attributes: Attributes,
}

impl Link {
    /// A link of the given type with no attributes.
    pub fn new(trace_id: TraceId, span_id: SpanId, link_type: LinkType) -> Self {
        Link {
            trace_id,
            span_id,
            link_type,
            attributes: Attributes::new(),
        }
    }
}

/// How a [`Link`] relates the two spans (OpenCensus' link types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Not said.
    Unspecified,
    /// The linked span is a child of this one.
    ChildLinkedSpan,
    /// The linked span is a parent (cause) of this one.
    ParentLinkedSpan,
}

/// An event: it becomes a trace message (or an exception) of its own.
///
/// An event outside any span is one of these with no [`span`](Self::span).
/// An event inside a sampled span is one too, handed to the exporter when
/// it happens (so a long-lived span's logs arrive as they are written, and
/// none is ever evicted), with the span's operation context. The stdout and
/// in-memory sinks show such events inside their span's record, as
/// [`SpanData::annotations`], when the span closes; only the events of
/// spans still open when the exporter stops reach them as `EventData`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EventData {
    /// When the event happened.
    pub timestamp: SystemTime,
    /// The event's level.
    pub level: Level,
    /// The event's target.
    pub target: &'static str,
    /// The event's message (its `message` field), cut to
    /// [`MAX_MESSAGE_CHARS`].
    pub message: Text,
    /// The event's other fields.
    pub attributes: Attributes,
    /// The sampled span the event happened in; `None` outside spans.
    pub span: Option<EventSpan>,
    /// Outside spans: the percentage of such events the log sampler
    /// ([`Builder::with_log_sampler`](crate::Builder::with_log_sampler))
    /// kept, the item's `sampleRate`. `None` in a span (the span's rate
    /// applies) and for records built by hand.
    pub sample_rate: Option<f64>,
}

impl EventData {
    /// An empty record, to be filled in (or recycled).
    pub(crate) fn blank(attributes: Attributes) -> Self {
        EventData {
            timestamp: SystemTime::UNIX_EPOCH,
            level: Level::TRACE,
            target: "",
            message: Text::default(),
            attributes,
            span: None,
            sample_rate: None,
        }
    }

    /// Empties the record for reuse, keeping its attributes' capacity.
    pub(crate) fn clear_for_reuse(&mut self) {
        self.attributes.clear();
        self.message = Text::default();
        self.span = None;
        self.sample_rate = None;
    }

    /// The event as an annotation of its span's record.
    pub(crate) fn into_annotation(self) -> Annotation {
        Annotation {
            timestamp: self.timestamp,
            description: self.message,
            level: self.level,
            target: self.target,
            attributes: self.attributes,
        }
    }
}

/// The span an [`EventData`] happened in: what its trace item needs to
/// join the span's operation.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EventSpan {
    /// The span's trace (the item's `ai.operation.id`).
    pub trace_id: TraceId,
    /// The span's own id (the item's `ai.operation.parentId`).
    pub span_id: SpanId,
    /// The operation's name at the time of the event (see
    /// [`SpanData::operation_name`]).
    pub operation_name: Cow<'static, str>,
    /// Whether the trace was recorded on a remote caller's decision (see
    /// [`SpanData::sampled_remotely`]).
    pub sampled_remotely: bool,
    /// The percentage the span's trace was kept at (see
    /// [`SpanData::sample_rate`]).
    pub sample_rate: Option<f64>,
}

/// What the layer hands to the exporter worker. Both kinds are boxed (and
/// the boxes recycled): the queue moves a pointer, not the whole record.
#[derive(Debug)]
pub(crate) enum Record {
    Span(Box<SpanData>),
    Event(Box<EventData>),
}

#[cfg(test)]
mod tests;
