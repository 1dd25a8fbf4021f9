//! [`SpanState`]: what a sampled span keeps while it is open (in the
//! layer's span table), and how it becomes a record when it closes.

use std::borrow::Cow;

use crate::layer::visitor::{Staged, Target};
use crate::pipeline::Ticks;
use crate::propagation::{RemoteContext, FIELD_REQUEST_SOURCE};
use crate::record::ids::{SpanId, TraceId};
use crate::record::text::Text;
use crate::record::{AttributeValue, SpanData, SpanKind, StatusCode, TraceOptions};

/// The in-flight state of a sampled span, kept in the layer's
/// [`SpanTable`](super::table::SpanTable) (in its registry extensions when
/// the table's bucket is full).
///
/// The record is boxed from the start and filled in place, so closing the
/// span moves one pointer into the queue, not the whole record.
pub(crate) struct SpanState {
    pub(super) data: Box<SpanData>,
    /// When it started (converted into `data.start_time` on the worker).
    pub(super) start: Ticks,
    /// `otel.kind` when given; else decided on the worker.
    pub(super) kind: Option<SpanKind>,
    pub(super) remote_parent: bool,
    /// A local root computes its operation name from its own fields.
    pub(super) is_local_root: bool,
    /// Its context was read by the propagation API (injected, or ids read).
    pub(super) context_exposed: bool,
    /// Events recorded in it (sent as records of their own).
    pub(super) events: u32,
}

impl SpanState {
    /// A blank state, for the table's tests.
    #[cfg(test)]
    pub(super) fn for_tests() -> Self {
        SpanState {
            data: Box::default(),
            start: Ticks::default(),
            kind: None,
            remote_parent: false,
            is_local_root: false,
            context_exposed: false,
            events: 0,
        }
    }

    pub(crate) fn trace_id(&self) -> TraceId {
        self.data.context.trace_id
    }

    pub(crate) fn span_id(&self) -> SpanId {
        self.data.context.span_id
    }

    /// Whether anything may already depend on the span's trace context: it
    /// has children or events, or its ids went out. Then it can no longer be
    /// re-parented. (Being entered is checked on the calling thread by
    /// `is_entered_here`; a span entered and exited with nothing recorded
    /// can still be re-parented, since nothing observed its identity. Not
    /// tracking entries keeps `on_enter`, which async code calls on every
    /// poll, free.)
    pub(super) fn context_used(&self) -> bool {
        let data = &self.data;
        self.context_exposed
            || data.child_span_count > 0
            || self.events > 0
            || !data.message_events.is_empty()
    }

    /// Makes the span a child of `remote` (sampled); returns whether it had
    /// a local parent before.
    pub(super) fn reparent(&mut self, remote: RemoteContext) -> bool {
        let had_local_parent = self.data.parent_span_id.is_some() && !self.remote_parent;
        let context = &mut self.data.context;
        context.trace_id = remote.trace_id;
        context.trace_options = TraceOptions::SAMPLED;
        context.tracestate = remote.tracestate;
        self.data.parent_span_id = Some(remote.span_id);
        self.data.sampled_remotely = remote.sampled.is_some();
        self.remote_parent = true;
        self.is_local_root = true;
        self.set_source(remote.source);
        self.refresh_operation_name();
        had_local_parent
    }

    /// Keeps the caller's `Request-Context` source, unless the span names
    /// one itself.
    pub(super) fn set_source(&mut self, source: Option<Text>) {
        let attributes = &mut self.data.attributes;
        if let Some(source) = source {
            if attributes.get(FIELD_REQUEST_SOURCE).is_none() {
                attributes.insert(FIELD_REQUEST_SOURCE, AttributeValue::Str(source));
            }
        }
    }

    /// Applies the fields given to `record()`.
    pub(super) fn apply(&mut self, fields: Staged) {
        fields.apply_to(self);
        self.refresh_operation_name();
    }

    /// A local root names its operation after its own fields: derived
    /// again whenever they change, so its events and children (and its
    /// record) read it without deriving it each time.
    pub(super) fn refresh_operation_name(&mut self) {
        if self.is_local_root {
            self.data.operation_name = self.root_operation_name();
        }
    }

    /// The operation name this span gives its children and events.
    pub(super) fn operation_name(&self) -> Cow<'static, str> {
        self.data.operation_name.clone()
    }

    /// A local root's operation name: `"METHOD route"` when it has both
    /// fields (old or new semantic-convention names), else its name.
    pub(super) fn root_operation_name(&self) -> Cow<'static, str> {
        let attributes = &self.data.attributes;
        let Some(route) = attributes.get("http.route") else {
            return self.data.name.clone();
        };
        let method = ["http.request.method", "http.method"]
            .iter()
            .find_map(|k| attributes.get(k));
        match method {
            Some(method) => Cow::Owned(format!("{method} {route}")),
            None => self.data.name.clone(),
        }
    }
}

/// The fields of `record()` go into the span's state (applied from
/// [`Staged`], with the span locked).
impl Target for SpanState {
    const EVENT: bool = false;

    fn attribute(&mut self, key: &'static str, value: AttributeValue) {
        self.data.attributes.insert(key, value);
    }

    fn name(&mut self, name: Cow<'static, str>) {
        self.data.name = name;
    }

    fn kind(&mut self, kind: SpanKind) {
        self.kind = Some(kind);
    }

    fn status(&mut self, code: StatusCode) {
        self.data.status.code = code;
    }

    fn status_description(&mut self, description: Text) {
        self.data.status.message = Some(description);
    }
}

/// A new span's fields, visited straight into its state: its record is not
/// shared yet, so nothing is staged and no lock is held.
pub(super) struct NewSpan<'s>(pub(super) &'s mut SpanState);

impl Target for NewSpan<'_> {
    const EVENT: bool = false;

    fn attribute(&mut self, key: &'static str, value: AttributeValue) {
        // A span's creation fields are distinct.
        self.0.data.attributes.push_new(key, value);
    }

    fn name(&mut self, name: Cow<'static, str>) {
        self.0.name(name);
    }

    fn kind(&mut self, kind: SpanKind) {
        self.0.kind(kind);
    }

    fn status(&mut self, code: StatusCode) {
        self.0.status(code);
    }

    fn status_description(&mut self, description: Text) {
        self.0.status_description(description);
    }
}

/// Pushes onto a list bounded at `max`, dropping the oldest (OpenCensus'
/// `BoundedList`).
pub(super) fn push_bounded<T>(list: &mut Vec<T>, dropped: &mut u32, max: usize, item: T) {
    if list.len() >= max {
        list.remove(0);
        *dropped = dropped.saturating_add(1);
    }
    list.push(item);
}
