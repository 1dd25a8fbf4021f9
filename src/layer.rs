//! [`AppInsightsLayer`]: spans and events into [`SpanData`] records.
//!
//! Nothing here blocks, does I/O or panics: finished records are handed to
//! the exporter worker with a bounded, lossy `try_send`.
//!
//! # Unsampled spans cost (almost) nothing
//!
//! A sampled span carries a [`SpanState`] in its registry extensions. An
//! unsampled span carries *nothing*: "no `SpanState`" is the marker, so the
//! unsampled path inserts nothing, visits no field and allocates nothing.
//! Its ids, needed only to propagate context, are derived on demand from the
//! registry's span id with a keyed mixing function (see [`IdKeys`]); the trace
//! id of an unsampled root is drawn the same way, and its low 8 bytes are what
//! the sampling rule was applied to, so the decision and the id agree.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use tracing_core::span::{Attributes as SpanAttributes, Id, Record as SpanRecordValues};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};
use tracing_subscriber::Registry;

use crate::exporter::Shared;
use crate::ids::{self, SpanId, TraceId};
use crate::sampler::SamplingRule;
use crate::span_data::{
    Annotation, EventData, Link, LinkType, MessageEvent, Record, SpanContext, SpanData, SpanKind,
    StatusCode, TraceOptions, MAX_ANNOTATIONS, MAX_LINKS, MAX_MESSAGE_EVENTS,
};
use crate::text::Text;
use crate::visitor::Fields;

/// The `tracing_subscriber` layer that records spans for Application Insights.
///
/// Build it with [`layer()`](crate::layer) or [`Builder`](crate::Builder) and
/// add it to a registry-based subscriber. It works beside other layers (such
/// as `fmt`) and under per-layer filters without changing what they see.
///
/// # Examples
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
///
/// # fn main() -> Result<(), tracing_appinsights::BuildError> {
/// let (layer, _guard) = tracing_appinsights::layer()?;
/// tracing_subscriber::registry()
///     .with(tracing_subscriber::fmt::layer())
///     .with(layer)
///     .init();
/// # Ok(()) }
/// ```
pub struct AppInsightsLayer<S = Registry> {
    shared: Arc<Shared>,
    _subscriber: PhantomData<fn(S)>,
}

impl<S> AppInsightsLayer<S> {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        AppInsightsLayer {
            shared,
            _subscriber: PhantomData,
        }
    }
}

impl<S> std::fmt::Debug for AppInsightsLayer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppInsightsLayer")
            .field("sampler", &self.shared.sampler)
            .finish_non_exhaustive()
    }
}

/// The in-flight state of a sampled span, kept in its extensions.
///
/// The record is boxed from the start and filled in place, so closing the
/// span moves one pointer into the queue, not the whole record.
pub(crate) struct SpanState {
    data: Box<SpanData>,
    /// `otel.kind` when given; else decided at close.
    kind: Option<SpanKind>,
    remote_parent: bool,
    /// A local root computes its operation name from its own fields.
    is_local_root: bool,
}

impl SpanState {
    pub(crate) fn trace_id(&self) -> TraceId {
        self.data.context.trace_id
    }

    pub(crate) fn span_id(&self) -> SpanId {
        self.data.context.span_id
    }

    /// Applies visited fields (creation or `record()`).
    fn apply(&mut self, fields: Fields) {
        self.apply_specials(&fields);
        for (key, value) in fields.attributes.iter() {
            self.data.attributes.insert(key, value.clone());
        }
    }

    fn apply_specials(&mut self, fields: &Fields) {
        if let Some(name) = &fields.name {
            self.data.name = name.clone();
        }
        if let Some(kind) = fields.kind {
            self.kind = Some(kind);
        }
        if let Some(code) = fields.status_code {
            self.data.status.code = code;
        }
        if let Some(description) = &fields.status_description {
            self.data.status.message = Some(description.clone());
        }
    }

    fn finish(mut self, end_time: SystemTime) -> Box<SpanData> {
        self.data.kind = match self.kind {
            Some(kind) => kind,
            None if self.remote_parent => SpanKind::Server,
            None => SpanKind::Internal,
        };
        self.data.same_process_as_parent_span =
            self.data.parent_span_id.map(|_| !self.remote_parent);
        if self.is_local_root {
            self.data.operation_name = self.root_operation_name();
        }
        self.data.end_time = end_time;
        self.data
    }

    /// The operation name this span gives its children.
    fn operation_name(&self) -> Cow<'static, str> {
        if self.is_local_root {
            self.root_operation_name()
        } else {
            self.data.operation_name.clone()
        }
    }

    /// A local root's operation name: `"METHOD route"` when it has both
    /// fields (old or new semantic-convention names), else its name.
    fn root_operation_name(&self) -> Cow<'static, str> {
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

    fn add_annotation(&mut self, annotation: Annotation) {
        let data = &mut *self.data;
        push_bounded(
            &mut data.annotations,
            &mut data.dropped_annotations,
            MAX_ANNOTATIONS,
            annotation,
        );
    }
}

/// Pushes onto a list bounded at `max`, dropping the oldest (OpenCensus'
/// `BoundedList`).
fn push_bounded<T>(list: &mut Vec<T>, dropped: &mut u32, max: usize, item: T) {
    if list.len() >= max {
        list.remove(0);
        *dropped = dropped.saturating_add(1);
    }
    list.push(item);
}

/// Per-layer random keys that turn registry span ids into trace and span ids
/// for unsampled spans (a bijective mix, so distinct live spans get distinct
/// ids).
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdKeys {
    trace_hi: u64,
    trace_lo: u64,
    span: u64,
}

impl IdKeys {
    pub(crate) fn random() -> Self {
        IdKeys {
            trace_hi: ids::next_u64(),
            trace_lo: ids::next_u64(),
            span: ids::next_u64(),
        }
    }

    fn trace_id(&self, id: &Id) -> TraceId {
        let x = id.into_u64();
        let hi = mix(x ^ self.trace_hi);
        let lo = mix(x ^ self.trace_lo);
        TraceId::from_int((u128::from(hi) << 64) | u128::from(lo.max(1)))
    }

    fn span_id(&self, id: &Id) -> SpanId {
        SpanId::from_int(mix(id.into_u64() ^ self.span).max(1))
    }
}

/// The splitmix64 finaliser: a bijection with full avalanche.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

thread_local! {
    /// Set on the exporter's own thread: nothing that happens there is
    /// recorded (design §8), whatever the subscriber it runs under.
    static IS_EXPORTER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the current thread as the exporter's.
pub(crate) fn mark_exporter_thread() {
    IS_EXPORTER_THREAD.with(|flag| flag.set(true));
}

fn on_exporter_thread() -> bool {
    IS_EXPORTER_THREAD.with(|flag| flag.get())
}

/// Whether a target is this crate's own diagnostics.
fn is_own_target(target: &str) -> bool {
    target.starts_with(env!("CARGO_CRATE_NAME"))
}

/// The ids of the span that becomes a new span's parent.
struct ParentIds {
    operation_name: Cow<'static, str>,
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceOptions,
    tracestate: Option<Text>,
}

impl<S> AppInsightsLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    /// The trace and span ids of any span this layer sees, sampled or not.
    pub(crate) fn ids_of(&self, span: &SpanRef<'_, S>) -> (TraceId, SpanId, bool) {
        if let Some(state) = span.extensions().get::<SpanState>() {
            return (state.trace_id(), state.span_id(), true);
        }
        let root = span.scope().from_root().next();
        let root_id = root.as_ref().map_or_else(|| span.id(), |r| r.id());
        let keys = &self.shared.id_keys;
        (keys.trace_id(&root_id), keys.span_id(&span.id()), false)
    }

    /// Creates the state of a sampled span, or `None` when it is unsampled.
    fn new_state(
        &self,
        attrs: &SpanAttributes<'_>,
        id: &Id,
        ctx: &Context<'_, S>,
    ) -> Option<SpanState> {
        let span = ctx.span(id)?;
        let parent = match span.parent() {
            Some(parent) => {
                let mut ext = parent.extensions_mut();
                // A parent without state is unsampled: so is its subtree.
                let state = ext.get_mut::<SpanState>()?;
                let data = &mut state.data;
                data.child_span_count = data.child_span_count.saturating_add(1);
                Some(ParentIds {
                    operation_name: state.operation_name(),
                    trace_id: state.trace_id(),
                    span_id: state.span_id(),
                    flags: state.data.context.trace_options,
                    tracestate: state.data.context.tracestate.clone(),
                })
            }
            None => None,
        };
        let (operation_name, trace_id, parent_span_id, flags, tracestate) = match parent {
            Some(p) => (
                Some(p.operation_name),
                p.trace_id,
                Some(p.span_id),
                p.flags,
                p.tracestate,
            ),
            None => {
                let derived = self.shared.id_keys.trace_id(id);
                if !self.shared.rule.sample_root(derived) {
                    return None;
                }
                // Keep the low 8 bytes the rule was applied to; draw fresh
                // random high bytes so sampled trace ids never repeat when the
                // registry reuses a slot.
                let low = derived.to_int() as u64;
                let trace_id =
                    TraceId::from_int((u128::from(ids::next_u64()) << 64) | u128::from(low));
                (None, trace_id, None, TraceOptions::SAMPLED, None)
            }
        };
        let meta = attrs.metadata();
        let mut data = self.shared.pool.take().unwrap_or_default();
        let mut fields =
            Fields::for_new_span(std::mem::take(&mut data.attributes), meta.fields().len());
        attrs.record(&mut fields);
        let start_time = SystemTime::now();
        let is_local_root = operation_name.is_none();
        data.name = Cow::Borrowed(meta.name());
        data.context = SpanContext {
            trace_id,
            span_id: ids::new_span_id(),
            trace_options: flags,
            tracestate,
        };
        data.operation_name = operation_name.unwrap_or(Cow::Borrowed(""));
        data.parent_span_id = parent_span_id;
        data.target = meta.target();
        data.level = *meta.level();
        data.attributes = std::mem::take(&mut fields.attributes);
        data.start_time = start_time;
        data.end_time = start_time;
        data.child_span_count = 0;
        data.dropped_annotations = 0;
        data.dropped_message_events = 0;
        data.dropped_links = 0;
        let mut state = SpanState {
            data,
            kind: None,
            remote_parent: false,
            is_local_root,
        };
        state.apply_specials(&fields);
        Some(state)
    }

    fn record_event_in_span(&self, event: &Event<'_>, span: &SpanRef<'_, S>) {
        if span.extensions().get::<SpanState>().is_none() {
            return; // unsampled trace: nothing to record, nothing visited
        }
        let meta = event.metadata();
        let mut fields = Fields::for_event(meta.fields().len());
        event.record(&mut fields);
        let timestamp = SystemTime::now();
        let mut ext = span.extensions_mut();
        let Some(state) = ext.get_mut::<SpanState>() else {
            return;
        };
        if let Some(kind) = fields.message_event.kind {
            let m = &fields.message_event;
            let event = MessageEvent {
                timestamp,
                kind,
                id: m.id,
                uncompressed_size_bytes: m.uncompressed,
                compressed_size_bytes: m.compressed.unwrap_or(m.uncompressed),
            };
            let data = &mut *state.data;
            push_bounded(
                &mut data.message_events,
                &mut data.dropped_message_events,
                MAX_MESSAGE_EVENTS,
                event,
            );
            return;
        }
        let status = &mut state.data.status;
        if fields.carries_error() && status.code == StatusCode::Unset {
            status.code = StatusCode::Error;
            status.message = error_message(&fields);
        }
        state.add_annotation(annotation(meta, timestamp, fields));
    }

    /// Events outside spans are sampled at the root rate.
    fn root_event_sampled(&self) -> bool {
        self.shared.rule.sample_low_bits(ids::next_u64())
    }

    fn record_root_event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut fields = Fields::for_event(meta.fields().len());
        event.record(&mut fields);
        let timestamp = SystemTime::now();
        let a = annotation(meta, timestamp, fields);
        self.shared.send(Record::Event(EventData {
            timestamp,
            level: a.level,
            target: a.target,
            message: a.description,
            attributes: a.attributes,
        }));
    }
}

/// The message of an error carried by event fields.
fn error_message(fields: &Fields) -> Option<Text> {
    match &fields.error {
        Some(error) => Some(error.message.clone()),
        None => fields
            .attributes
            .get(crate::visitor::FIELD_EXCEPTION_MESSAGE)
            .map(|v| Text::from(v.to_string())),
    }
}

fn annotation(
    meta: &'static tracing_core::Metadata<'static>,
    timestamp: SystemTime,
    mut fields: Fields,
) -> Annotation {
    if let Some(error) = fields.error.take() {
        fields.attributes.insert(
            crate::visitor::FIELD_ERROR,
            crate::span_data::AttributeValue::Error(error),
        );
    }
    Annotation {
        timestamp,
        description: fields.message.unwrap_or_default(),
        level: *meta.level(),
        target: meta.target(),
        attributes: fields.attributes,
    }
}

impl<S> tracing_subscriber::Layer<S> for AppInsightsLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &SpanAttributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if on_exporter_thread() || is_own_target(attrs.metadata().target()) {
            return;
        }
        let shared = &self.shared;
        if shared.rule == SamplingRule::None && shared.no_sampled_span_alive() {
            return; // no sampled parent can exist and no root is sampled
        }
        if let Some(state) = self.new_state(attrs, id, &ctx) {
            if let Some(span) = ctx.span(id) {
                // Counted before it becomes visible (see `no_sampled_span_alive`).
                shared.live_sampled.fetch_add(1, Ordering::AcqRel);
                span.extensions_mut().insert(state);
            }
        }
    }

    fn on_record(&self, id: &Id, values: &SpanRecordValues<'_>, ctx: Context<'_, S>) {
        if self.shared.no_sampled_span_alive() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        if span.extensions().get::<SpanState>().is_none() {
            return;
        }
        let mut fields = Fields::for_record();
        values.record(&mut fields);
        let mut ext = span.extensions_mut();
        if let Some(state) = ext.get_mut::<SpanState>() {
            state.apply(fields);
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        if self.shared.no_sampled_span_alive() {
            return;
        }
        let (Some(span), Some(follows)) = (ctx.span(id), ctx.span(follows)) else {
            return;
        };
        if span.extensions().get::<SpanState>().is_none() {
            return;
        }
        let (trace_id, span_id, _) = self.ids_of(&follows);
        let mut ext = span.extensions_mut();
        if let Some(state) = ext.get_mut::<SpanState>() {
            let link = Link::new(trace_id, span_id, LinkType::ParentLinkedSpan);
            let data = &mut *state.data;
            push_bounded(&mut data.links, &mut data.dropped_links, MAX_LINKS, link);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if on_exporter_thread() || is_own_target(event.metadata().target()) {
            return;
        }
        if self.shared.no_sampled_span_alive() {
            // The event is in an unsampled span or outside any span: only
            // the latter is recorded, and only if the root draw says so.
            if self.root_event_sampled() && ctx.event_span(event).is_none() {
                self.record_root_event(event);
            }
            return;
        }
        match ctx.event_span(event) {
            Some(span) => self.record_event_in_span(event, &span),
            None if self.root_event_sampled() => self.record_root_event(event),
            None => {}
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if self.shared.no_sampled_span_alive() {
            return;
        }
        let Some(span) = ctx.span(&id) else { return };
        // Take the state out in its own scope: the lock is released before
        // the record is built and sent.
        let state = { span.extensions_mut().remove::<SpanState>() };
        if let Some(state) = state {
            self.shared.live_sampled.fetch_sub(1, Ordering::AcqRel);
            let data = state.finish(SystemTime::now());
            self.shared.send(Record::Span(data));
        }
    }
}
