//! [`AppInsightsLayer`]: spans and events into [`SpanData`] records.
//!
//! Nothing here blocks, does I/O or panics: finished records are handed to
//! the exporter worker with a bounded, lossy `try_send`.
//!
//! # Unsampled spans cost (almost) nothing
//!
//! A sampled span has a [`SpanState`] in the layer's own [`SpanTable`],
//! keyed by its registry id (in its registry extensions only when the
//! table's bucket is full). An unsampled span has *nothing*: "no
//! `SpanState`" is the marker, so the unsampled path inserts nothing,
//! visits no field and allocates nothing.
//! Its ids, needed only to propagate context, are derived on demand from the
//! registry's span id with a keyed mixing function (see [`IdKeys`]); the trace
//! id of an unsampled root is drawn the same way, and its low 8 bytes are what
//! the sampling rule was applied to, so the decision and the id agree.
//!
//! # Remote parents
//!
//! A span created while a remote context is pending on its thread (see
//! [`crate::propagation`]) takes it as its parent: the caller's trace id,
//! its span id as parent id, and its sampled flag as the decision, both ways.
//! Such a span that is *not* sampled stores one small [`UnsampledRemote`]
//! marker (the caller's trace id and tracestate), so it and its children
//! propagate the caller's trace; local unsampled spans still store nothing.
//! The pending context is checked before the `always_off` fast path: a
//! sampled caller makes a sampled span whatever the local sampler says.
//!
//! An existing span is re-parented through [`WithContext`], found by
//! `downcast_raw`; the rules (and what is lost when an unsampled span is
//! upgraded) are on [`AppInsightsSpanExt::set_parent_from_headers`](crate::AppInsightsSpanExt::set_parent_from_headers).

use std::any::TypeId;
use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use tracing_core::span::{Attributes as SpanAttributes, Id, Record as SpanRecordValues};
use tracing_core::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{ExtensionsMut, LookupSpan, SpanRef};
use tracing_subscriber::Registry;

mod clock;
mod entered;
mod reparent;
pub(crate) mod sampler;
mod state;
mod table;
mod visitor;

use self::clock::Clock;
use self::sampler::{Sampler, SamplingRule};
use self::state::{push_bounded, SpanState};
use self::table::SpanTable;
use self::visitor::Fields;
use crate::pipeline::{add, Queue};
use crate::propagation::{self, RemoteContext, WithContext};
use crate::record::ids::{self, IdKeys, SpanId, TraceId};
use crate::record::text::Text;
use crate::record::{
    EventData, EventSpan, Link, LinkType, MessageEvent, Record, SpanContext, SpanData, StatusCode,
    TraceOptions, MAX_LINKS, MAX_MESSAGE_EVENTS,
};

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
    queue: Arc<Queue>,
    sampler: Sampler,
    rule: SamplingRule,
    id_keys: IdKeys,
    /// The states of the sampled spans alive. While there is none, no span
    /// can have a sampled parent, be closed with a record, or hold an
    /// event, so the unsampled path skips every registry lookup; while
    /// there are some, it tells an unsampled span from a sampled one
    /// without a lookup.
    table: SpanTable,
    clock: Clock,
    /// Set once a span was made sampled after its creation
    /// ([`upgrade`](Self::upgrade)): it may have been entered on some
    /// thread while unsampled, so [`entered::none_sampled`] no longer
    /// proves anything.
    upgraded: AtomicBool,
    _subscriber: PhantomData<fn(S)>,
}

impl<S> AppInsightsLayer<S> {
    /// A layer handing records to `queue`, sampling with `sampler` (a
    /// rate-limited one on the exporter's `clock`).
    pub(crate) fn new(queue: Arc<Queue>, sampler: Sampler, clock: &crate::pipeline::Clock) -> Self {
        AppInsightsLayer {
            queue,
            sampler,
            rule: sampler.rule(clock),
            id_keys: IdKeys::random(),
            table: SpanTable::default(),
            clock: Clock::new(),
            upgraded: AtomicBool::new(false),
            _subscriber: PhantomData,
        }
    }
}

impl<S> std::fmt::Debug for AppInsightsLayer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppInsightsLayer")
            .field("sampler", &self.sampler)
            .finish_non_exhaustive()
    }
}

/// The marker of an unsampled span whose parent is remote: the caller's
/// trace, which the span and its (unsampled) children propagate.
struct UnsampledRemote {
    trace_id: TraceId,
    tracestate: Option<Text>,
}

impl UnsampledRemote {
    fn new(remote: &RemoteContext) -> Self {
        UnsampledRemote {
            trace_id: remote.trace_id,
            tracestate: remote.tracestate.clone(),
        }
    }
}

/// The ids of the span that becomes a new span's parent.
struct ParentIds {
    operation_name: Cow<'static, str>,
    trace_id: TraceId,
    span_id: SpanId,
    tracestate: Option<Text>,
    sampled_remotely: bool,
}

/// The span a new span or an event belongs to (see
/// [`AppInsightsLayer::owner`]).
enum Owner {
    /// A sampled span of ours, by id.
    Sampled(Id),
    /// A span of ours that is not sampled.
    Unsampled,
    /// No span: a new span is a root, an event is outside spans.
    None,
}

/// Where the trace of a new sampled span comes from.
enum Origin {
    /// A sampled local parent.
    Local(ParentIds),
    /// A remote parent whose decision (or ours) was to sample.
    Remote(RemoteContext),
    /// A new sampled root with this trace id.
    Root(TraceId),
}

impl<S> AppInsightsLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    /// The trace and span ids of any span this layer sees, sampled or not.
    pub(crate) fn ids_of(&self, span: &SpanRef<'_, S>) -> (TraceId, SpanId, bool) {
        let c = self.context_of(span, false);
        (c.trace_id, c.span_id, c.trace_options.is_sampled())
    }

    /// The context of any span this layer sees. A sampled span's is in its
    /// state (`expose` marks it used); an unsampled span's is derived: its
    /// span id from its registry id, its trace from the nearest span up its
    /// scope that knows one (a remote marker, or a sampled span upgraded
    /// after the child was made), else from its local root's registry id.
    fn context_of(&self, span: &SpanRef<'_, S>, expose: bool) -> SpanContext {
        let own = self.state_in(span, |state| {
            state.context_exposed |= expose;
            state.data.context.clone()
        });
        if let Some(context) = own {
            return context;
        }
        let keys = &self.id_keys;
        let unsampled = |trace_id, tracestate| SpanContext {
            trace_id,
            span_id: keys.span_id(&span.id()),
            trace_options: TraceOptions::NOT_SAMPLED,
            tracestate,
        };
        let mut root = span.id();
        for s in span.scope() {
            let remote = s
                .extensions()
                .get::<UnsampledRemote>()
                .map(|r| (r.trace_id, r.tracestate.clone()));
            if let Some((trace_id, tracestate)) = remote {
                return unsampled(trace_id, tracestate);
            }
            let sampled = self.state_in(&s, |state| {
                (state.trace_id(), state.data.context.tracestate.clone())
            });
            if let Some((trace_id, tracestate)) = sampled {
                return unsampled(trace_id, tracestate);
            }
            root = s.id();
        }
        unsampled(keys.trace_id(&root), None)
    }

    // === where a span's state is ===

    /// This layer's key in the per-thread list of entered sampled spans.
    fn key(&self) -> usize {
        self as *const Self as usize
    }

    /// Whether no span of this layer entered on this thread is sampled (so
    /// a contextual event is in no sampled span), when that can be known:
    /// not while some state is kept in the extensions (`on_enter` notes
    /// only the spans of the table), nor after an upgrade.
    fn none_sampled_entered(&self) -> bool {
        !self.table.overflowing()
            && !self.upgraded.load(Ordering::Acquire)
            && entered::none(self.key())
    }

    /// Runs `f` on the state of `span` if it is sampled, wherever the
    /// state is kept.
    fn state_in<R>(&self, span: &SpanRef<'_, S>, f: impl FnOnce(&mut SpanState) -> R) -> Option<R> {
        match self.table.with(&span.id(), f) {
            Ok(r) => Some(r),
            Err(f) if self.table.overflowing() => {
                span.extensions_mut().get_mut::<SpanState>().map(f)
            }
            Err(_) => None,
        }
    }

    /// [`state_in`](Self::state_in) by id: the registry is asked only for
    /// a state kept in the extensions.
    fn state_of<R>(
        &self,
        id: &Id,
        ctx: &Context<'_, S>,
        f: impl FnOnce(&mut SpanState) -> R,
    ) -> Option<R> {
        match self.table.with(id, f) {
            Ok(r) => Some(r),
            Err(f) if self.table.overflowing() => {
                let span = ctx.span(id)?;
                let mut ext = span.extensions_mut();
                ext.get_mut::<SpanState>().map(f)
            }
            Err(_) => None,
        }
    }

    /// Keeps the state of a new sampled span: in the table, or, when its
    /// bucket is full, in the span's extensions (counted).
    fn keep_state(&self, id: &Id, ctx: &Context<'_, S>, state: SpanState) {
        let Err(state) = self.table.insert(id, state) else {
            return;
        };
        match ctx.span(id) {
            Some(span) => self.overflow_into(&mut span.extensions_mut(), state),
            None => self.table.removed_overflow(),
        }
    }

    /// Keeps a state the table had no room for in the span's extensions
    /// (already counted as overflowing by the table), and counts it.
    fn overflow_into(&self, ext: &mut ExtensionsMut<'_>, state: SpanState) {
        add(&self.queue.counters.table_overflows, 1);
        ext.insert(state);
    }

    /// Takes the state of a closing span out, wherever it is.
    fn take_state(&self, id: &Id, ctx: &Context<'_, S>) -> Option<SpanState> {
        if let Some(state) = self.table.remove(id) {
            return Some(state);
        }
        if !self.table.overflowing() {
            return None;
        }
        self.take_overflowed(&mut ctx.span(id)?.extensions_mut())
    }

    /// Takes a state kept in the extensions (it had overflowed) out of
    /// them, and uncounts it.
    fn take_overflowed(&self, ext: &mut ExtensionsMut<'_>) -> Option<SpanState> {
        let state = ext.remove::<SpanState>();
        if state.is_some() {
            self.table.removed_overflow();
        }
        state
    }

    /// Which span a new span or an event belongs to, for this layer:
    /// `candidate` is the registry's answer (the explicit parent, or the
    /// current span); when our per-layer filter hides it, `visible` finds
    /// the nearest span the filter shows.
    fn owner<'c>(
        &self,
        candidate: Option<Id>,
        ctx: &'c Context<'_, S>,
        visible: impl FnOnce() -> Option<SpanRef<'c, S>>,
    ) -> Owner {
        let Some(candidate) = candidate else {
            return Owner::None;
        };
        if self.table.holds(&candidate) {
            return Owner::Sampled(candidate); // the common case: no lookup
        }
        let Some(span) = ctx.span(&candidate).or_else(visible) else {
            return Owner::None;
        };
        let id = span.id();
        let sampled = self.table.holds(&id)
            || (self.table.overflowing() && span.extensions().get::<SpanState>().is_some());
        if sampled {
            Owner::Sampled(id)
        } else {
            Owner::Unsampled
        }
    }

    /// Where a new span's trace comes from when it has no remote parent;
    /// `None` when it is unsampled.
    fn local_origin(
        &self,
        attrs: &SpanAttributes<'_>,
        id: &Id,
        ctx: &Context<'_, S>,
    ) -> Option<Origin> {
        let candidate = if attrs.is_contextual() {
            ctx.current_span().id().cloned()
        } else {
            attrs.parent().cloned()
        };
        let visible = || ctx.span(id).and_then(|span| span.parent());
        match self.owner(candidate, ctx, visible) {
            Owner::None => self.root_origin(id),
            // A parent without state is unsampled: so is its subtree.
            Owner::Unsampled => None,
            Owner::Sampled(parent) => self.state_of(&parent, ctx, |state| {
                let data = &mut state.data;
                data.child_span_count = data.child_span_count.saturating_add(1);
                Origin::Local(ParentIds {
                    operation_name: state.operation_name(),
                    trace_id: state.trace_id(),
                    span_id: state.span_id(),
                    tracestate: state.data.context.tracestate.clone(),
                    sampled_remotely: state.data.sampled_remotely,
                })
            }),
        }
    }

    /// The origin of a new local root, if the sampling rule takes it.
    fn root_origin(&self, id: &Id) -> Option<Origin> {
        let derived = self.id_keys.trace_id(id);
        if !self.rule.sample_root(derived) {
            return None;
        }
        // Keep the low 8 bytes the rule was applied to; draw fresh random
        // high bytes so sampled trace ids never repeat when the registry
        // reuses a slot.
        let low = derived.to_int() as u64;
        let trace_id = TraceId::from_int((u128::from(ids::next_u64()) << 64) | u128::from(low));
        Some(Origin::Root(trace_id))
    }

    /// The origin of a new span with a remote parent; an unsampled one gets
    /// its marker here and `None` is returned.
    fn remote_origin(&self, span: &SpanRef<'_, S>, remote: RemoteContext) -> Option<Origin> {
        if self.rule.sample_remote(remote.sampled, remote.trace_id) {
            return Some(Origin::Remote(remote));
        }
        span.extensions_mut().replace(UnsampledRemote::new(&remote));
        None
    }

    /// Creates the state of a new sampled span, visiting its fields.
    fn new_state(&self, attrs: &SpanAttributes<'_>, origin: Origin) -> SpanState {
        let meta = attrs.metadata();
        let mut data = self.queue.pool.take().unwrap_or_default();
        let mut fields =
            Fields::for_new_span(std::mem::take(&mut data.attributes), meta.fields().len());
        attrs.record(&mut fields);
        data.attributes = std::mem::take(&mut fields.attributes);
        let mut state = self.blank_state(data, meta, origin, ids::new_span_id());
        state.apply_specials(&fields);
        state.refresh_operation_name();
        state
    }

    /// A sampled span's state with the fields already in `data.attributes`
    /// (a recycled or new record) and everything else set here.
    fn blank_state(
        &self,
        mut data: Box<SpanData>,
        meta: &'static Metadata<'static>,
        origin: Origin,
        span_id: SpanId,
    ) -> SpanState {
        let mut sampled_remotely = false;
        let (operation_name, trace_id, parent_span_id, tracestate, remote) = match origin {
            Origin::Local(p) => {
                sampled_remotely = p.sampled_remotely;
                let operation_name = Some(p.operation_name);
                (
                    operation_name,
                    p.trace_id,
                    Some(p.span_id),
                    p.tracestate,
                    None,
                )
            }
            Origin::Remote(r) => {
                sampled_remotely = r.sampled.is_some();
                (
                    None,
                    r.trace_id,
                    Some(r.span_id),
                    r.tracestate,
                    Some(r.source),
                )
            }
            Origin::Root(trace_id) => (None, trace_id, None, None, None),
        };
        let start_time = self.clock.now();
        data.name = Cow::Borrowed(meta.name());
        data.context = SpanContext {
            trace_id,
            span_id,
            trace_options: TraceOptions::SAMPLED,
            tracestate,
        };
        let is_local_root = operation_name.is_none();
        data.operation_name = operation_name.unwrap_or(Cow::Borrowed(""));
        data.parent_span_id = parent_span_id;
        data.target = meta.target();
        data.level = *meta.level();
        data.start_time = start_time;
        data.end_time = start_time;
        data.child_span_count = 0;
        data.dropped_annotations = 0;
        data.dropped_message_events = 0;
        data.dropped_links = 0;
        data.sampled_remotely = sampled_remotely;
        let mut state = SpanState {
            data,
            kind: None,
            remote_parent: remote.is_some(),
            is_local_root,
            context_exposed: false,
            events: 0,
        };
        state.set_source(remote.flatten());
        state
    }

    /// An event in a span: a message event stays in the span's record;
    /// any other becomes a record of its own, sent now with the span's
    /// operation context (never held back, never evicted).
    fn record_event_in_span(&self, event: &Event<'_>, span: &Id, ctx: &Context<'_, S>) {
        let meta = event.metadata();
        // Visited before the span's state is locked: a field's `Debug` may
        // log into the same span.
        let (mut record, mut fields) = self.event_fields(event);
        let timestamp = self.clock.now();
        let in_span = self.state_of(span, ctx, |state| {
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
                return None;
            }
            let status = &mut state.data.status;
            if fields.carries_error() && status.code == StatusCode::Unset {
                status.code = StatusCode::Error;
                status.message = error_message(&fields);
            }
            state.events = state.events.saturating_add(1);
            Some(EventSpan {
                trace_id: state.trace_id(),
                span_id: state.span_id(),
                operation_name: state.operation_name(),
                sampled_remotely: state.data.sampled_remotely,
            })
        });
        let Some(in_span) = in_span.flatten() else {
            return; // a message event, kept in the span; or the span is gone
        };
        // Sent with the span's state unlocked: a layer handling the warning
        // a send may log can look at the span.
        fill_event(&mut record, meta, timestamp, &mut fields, Some(in_span));
        self.queue.send(Record::Event(record));
    }

    /// A recycled event record (or a new one), and the event's fields
    /// visited into its attribute vector.
    fn event_fields(&self, event: &Event<'_>) -> (Box<EventData>, Fields) {
        let mut record = self
            .queue
            .pool
            .take_event()
            .unwrap_or_else(|| Box::new(EventData::blank(Default::default())));
        let attributes = std::mem::take(&mut record.attributes);
        let mut fields = Fields::for_event(attributes, event.metadata().fields().len());
        event.record(&mut fields);
        (record, fields)
    }

    /// Events outside spans are sampled at the root rate.
    fn root_event_sampled(&self) -> bool {
        self.rule.sample_low_bits(ids::next_u64())
    }

    fn record_root_event(&self, event: &Event<'_>) {
        let (mut record, mut fields) = self.event_fields(event);
        let timestamp = self.clock.now();
        fill_event(&mut record, event.metadata(), timestamp, &mut fields, None);
        self.queue.send(Record::Event(record));
    }
}

/// The message of an error carried by event fields.
fn error_message(fields: &Fields) -> Option<Text> {
    match &fields.error {
        Some(error) => Some(error.message.clone()),
        None => fields
            .attributes
            .get(visitor::FIELD_EXCEPTION_MESSAGE)
            .map(|v| Text::from(v.to_string())),
    }
}

/// Fills an event's record from its visited fields.
fn fill_event(
    record: &mut EventData,
    meta: &'static tracing_core::Metadata<'static>,
    timestamp: SystemTime,
    fields: &mut Fields,
    span: Option<EventSpan>,
) {
    if let Some(error) = fields.error.take() {
        fields.attributes.insert(
            visitor::FIELD_ERROR,
            crate::record::AttributeValue::Error(error),
        );
    }
    record.timestamp = timestamp;
    record.level = *meta.level();
    record.target = meta.target();
    record.message = fields.message.take().unwrap_or_default();
    record.attributes = std::mem::take(&mut fields.attributes);
    record.span = span;
}

impl<S> tracing_subscriber::Layer<S> for AppInsightsLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &SpanAttributes<'_>, id: &Id, ctx: Context<'_, S>) {
        // The fast path first: no sampled parent can exist, no root is
        // sampled, and no caller's context is pending (a sampled caller
        // makes a sampled span even when no local root is ever sampled).
        if self.rule.is_none() && self.table.none_alive() && !propagation::has_pending() {
            return;
        }
        if crate::pipeline::on_exporter_thread()
            || crate::diag::is_own_target(attrs.metadata().target())
        {
            return; // and a pending context stays for the application's span
        }
        let remote = propagation::take_pending();
        let origin = match remote {
            Some(remote) => ctx
                .span(id)
                .and_then(|span| self.remote_origin(&span, remote)),
            None => self.local_origin(attrs, id, &ctx),
        };
        if let Some(origin) = origin {
            let state = self.new_state(attrs, origin);
            self.keep_state(id, &ctx, state);
        }
    }

    fn on_record(&self, id: &Id, values: &SpanRecordValues<'_>, ctx: Context<'_, S>) {
        if !self.table.may_hold(id) {
            return;
        }
        let mut fields = Fields::for_record();
        values.record(&mut fields);
        self.state_of(id, &ctx, |state| state.apply(fields));
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        if !self.table.may_hold(id) {
            return;
        }
        let Some(follows) = ctx.span(follows) else {
            return;
        };
        let (trace_id, span_id, _) = self.ids_of(&follows);
        let link = Link::new(trace_id, span_id, LinkType::ParentLinkedSpan);
        self.state_of(id, &ctx, |state| {
            let data = &mut *state.data;
            push_bounded(&mut data.links, &mut data.dropped_links, MAX_LINKS, link);
        });
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if self.rule.is_none() && self.table.none_alive() {
            return; // no sampled span to be in, no root event sampled
        }
        if crate::pipeline::on_exporter_thread()
            || crate::diag::is_own_target(event.metadata().target())
        {
            return;
        }
        // With no sampled span alive, or (for a contextual event, whose span
        // is one entered on this thread) none of ours entered here, the
        // event is in an unsampled span or outside any span: only the
        // latter is recorded, and only if the root draw says so.
        if self.table.none_alive() || (event.is_contextual() && self.none_sampled_entered()) {
            if self.root_event_sampled() && ctx.event_span(event).is_none() {
                self.record_root_event(event);
            }
            return;
        }
        let candidate = if event.is_contextual() {
            ctx.current_span().id().cloned()
        } else {
            event.parent().cloned()
        };
        match self.owner(candidate, &ctx, || ctx.event_span(event)) {
            Owner::Sampled(span) => self.record_event_in_span(event, &span, &ctx),
            Owner::None if self.root_event_sampled() => self.record_root_event(event),
            Owner::None | Owner::Unsampled => {}
        }
    }

    /// Answers for [`WithContext`], so the propagation API reaches this
    /// layer from a `Span` (and for `Self`, as the default does).
    #[allow(unsafe_code)]
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else if id == TypeId::of::<WithContext>() {
            // A promoted constant: the pointer is valid for 'static, and it
            // points to a `WithContext` as `downcast_ref` expects.
            let with_context: &'static WithContext = &Self::WITH_CONTEXT;
            Some(with_context as *const WithContext as *const ())
        } else {
            None
        }
    }

    #[inline]
    fn on_enter(&self, id: &Id, _ctx: Context<'_, S>) {
        if self.table.holds(id) {
            entered::push(self.key(), id);
        }
    }

    #[inline]
    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        // With no sampled span alive, an entry left (a span that stopped
        // being sampled while entered) only costs its thread speed.
        if !self.table.none_alive() {
            entered::pop(self.key(), id);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if !self.table.may_hold(&id) {
            return;
        }
        if let Some(state) = self.take_state(&id, &ctx) {
            let data = state.finish(self.clock.now());
            self.queue.send(Record::Span(data));
        }
    }
}
