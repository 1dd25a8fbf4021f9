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
//! visits no field and allocates nothing. (While someone watches Live
//! Metrics it is counted, in the table's lock-free live part: see
//! `layer/live.rs` and `layer/table.rs`.)
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

use tracing_core::span::{Attributes as SpanAttributes, Id, Record as SpanRecordValues};
use tracing_core::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{ExtensionsMut, LookupSpan, SpanRef};
use tracing_subscriber::Registry;

mod entered;
mod live;
mod reparent;
pub(crate) mod sampler;
mod state;
mod table;
#[cfg(test)]
mod tests;
mod visitor;

use self::entered::Depth;
use self::sampler::{Sampler, SamplingRule};
use self::state::{push_bounded, NewSpan, SpanState};
use self::table::{LiveTable, SpanTable};
use self::visitor::{EventFields, FieldVisitor, Staged};
use crate::pipeline::{add, Queue, Queued};
use crate::propagation::{self, RemoteContext, WithContext};
use crate::record::ids::{self, IdKeys, SpanId, TraceId};
use crate::record::text::Text;
use crate::record::{
    EventData, EventSpan, Link, LinkType, MessageEvent, SpanContext, SpanData, StatusCode,
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
    /// The rule for events outside spans (`Builder::with_log_sampler`).
    log_rule: SamplingRule,
    id_keys: IdKeys,
    /// The states of the sampled spans alive. While there is none, no span
    /// can have a sampled parent, be closed with a record, or hold an
    /// event, so the unsampled path skips every registry lookup; while
    /// there are some, it tells an unsampled span from a sampled one
    /// without a lookup. With Live Metrics on, it also holds the unsampled
    /// spans Live Metrics counts ([`SpanTable::live`]).
    table: SpanTable,
    /// Set once a span was made sampled after its creation
    /// ([`upgrade`](Self::upgrade)), or unsampled while it may be entered
    /// (re-parented on an unsampled caller): some thread's list of entered
    /// sampled spans may then miss it or keep it, so neither
    /// [`entered::none`] nor [`entered::current`] proves anything.
    upgraded: AtomicBool,
    /// Live Metrics (`layer/live.rs`); when it is off, one nobody ever
    /// watches, so that the check every new span makes is the same two
    /// loads whether it is on or not.
    live: Arc<crate::live::Live>,
    _subscriber: PhantomData<fn(S)>,
}

impl<S> AppInsightsLayer<S> {
    /// A layer handing records to `queue`, sampling with `sampler` (a
    /// rate-limited one on the exporter's `clock`).
    pub(crate) fn new(
        queue: Arc<Queue>,
        sampler: Sampler,
        log_sampler: Sampler,
        clock: &crate::pipeline::Clock,
        live: Option<Arc<crate::live::Live>>,
    ) -> Self {
        AppInsightsLayer {
            queue,
            sampler,
            rule: sampler.rule(clock),
            log_rule: log_sampler.rule(clock),
            id_keys: IdKeys::random(),
            // Live Metrics' part of the table only when it is on.
            table: SpanTable::new(live.is_some()),
            live: live.unwrap_or_default(),
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
    sample_rate: Option<f64>,
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
    /// A new sampled root with this trace id, kept at this percentage.
    Root(TraceId, f64),
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

    /// The current span for a contextual event or span: from this thread's
    /// lists of entered spans when they tell (no registry lookup), else the
    /// registry's (the nearest span this layer's filter shows).
    #[inline]
    fn current_span(&self, ctx: &Context<'_, S>) -> Option<Id> {
        let complete = !self.table.overflowing() && !self.upgraded.load(Ordering::Acquire);
        match entered::current(self.key()) {
            entered::Current::None => return None,
            entered::Current::Span(id) if complete => return Some(id),
            _ => {}
        }
        ctx.current_span().id().cloned()
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

    /// Live Metrics while someone watches it.
    #[inline]
    fn live_watching(&self) -> Option<&crate::live::Live> {
        Some(&*self.live).filter(|live| live.watching())
    }

    /// Starts counting an unsampled span for Live Metrics: in the live
    /// table, found by id (no registry lookup), or in the span's extensions
    /// when its bucket is full (counted in `table_overflows`).
    fn track_unsampled(
        &self,
        live: LiveTable<'_>,
        attrs: &SpanAttributes<'_>,
        id: &Id,
        ctx: &Context<'_, S>,
        remote_parent: bool,
    ) {
        let mut fields = live::LiveFields::default();
        if live::has_live_fields(attrs.metadata()) {
            attrs.record(&mut fields);
        }
        let tracked = live::LiveSpan {
            start: self.queue.clock.ticks(),
            fields: fields.with_remote_parent(remote_parent),
        };
        let Err(tracked) = live.insert(id, tracked) else {
            return;
        };
        match ctx.span(id) {
            Some(span) => {
                add(&self.queue.counters.table_overflows, 1);
                span.extensions_mut().insert(tracked);
            }
            None => live.removed_overflow(),
        }
    }

    /// `record()` on an unsampled span Live Metrics may count.
    fn record_unsampled(
        &self,
        live: LiveTable<'_>,
        id: &Id,
        values: &SpanRecordValues<'_>,
        ctx: &Context<'_, S>,
    ) {
        if !live.may_hold(id) {
            return;
        }
        // Visited first, applied after (under the extensions' lock when
        // the span overflowed): a `Debug` impl may log, which re-enters
        // the layer.
        let mut fields = live::LiveFields::default();
        values.record(&mut fields);
        if live.update(id, fields) || !live.overflowing() {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(tracked) = extensions.get_mut::<live::LiveSpan>() {
            tracked.fields.update(fields);
        }
    }

    /// Counts a closing unsampled span, if Live Metrics counts it.
    fn close_unsampled(&self, live: LiveTable<'_>, id: &Id, ctx: &Context<'_, S>) {
        let tracked = match live.remove(id) {
            Some(tracked) => tracked,
            None if live.overflowing() => {
                let Some(span) = ctx.span(id) else {
                    return;
                };
                let Some(tracked) = span.extensions_mut().remove::<live::LiveSpan>() else {
                    return;
                };
                live.removed_overflow();
                tracked
            }
            None => return,
        };
        if let Some(live) = self.live_watching() {
            let clock = &self.queue.clock;
            let nanos = clock.nanos_between(tracked.start, clock.ticks());
            live.count_span(tracked.counted(), nanos, tracked.fields.failed());
        }
    }

    /// Stops counting a span made sampled: it is counted as a sampled span
    /// when it closes. Its extensions are locked by the caller.
    fn untrack(&self, id: &Id, ext: &mut ExtensionsMut<'_>) {
        let Some(live) = self.table.live_counting() else {
            return;
        };
        if live.remove(id).is_none()
            && live.overflowing()
            && ext.remove::<live::LiveSpan>().is_some()
        {
            live.removed_overflow();
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
        if !self.table.may_hold(id) {
            return None;
        }
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
            self.current_span(ctx)
        } else {
            attrs.parent().cloned()
        };
        let visible = || ctx.span(id).and_then(|span| span.parent());
        match self.owner(candidate, ctx, visible) {
            // A root no rule takes: no trace id to derive.
            Owner::None if self.rule.is_none() => None,
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
                    sample_rate: state.data.sample_rate,
                })
            }),
        }
    }

    /// The origin of a new local root, if the sampling rule takes it.
    fn root_origin(&self, id: &Id) -> Option<Origin> {
        // The derived id's low 8 bytes and fresh random high bytes, so
        // sampled trace ids never repeat when the registry reuses a slot.
        // The rule decides on that id, the one recorded and propagated:
        // Application Insights' score reads all 16 bytes, and another
        // service scoring the same id must come to the same decision.
        let low = self.id_keys.trace_id(id).to_int() as u64;
        let trace_id = TraceId::from_int((u128::from(ids::next_u64()) << 64) | u128::from(low));
        let rate = self.rule.decide_root(trace_id)?;
        Some(Origin::Root(trace_id, rate))
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
        data.attributes.reserve(meta.fields().len());
        let (mut state, source) = self.blank_state(data, meta, origin, ids::new_span_id());
        attrs.record(&mut FieldVisitor::new(&mut NewSpan(&mut state)));
        state.set_source(source);
        state.refresh_operation_name();
        state
    }

    /// A sampled span's state, all but its fields set, in `data` (a
    /// recycled or new record), and the `Request-Context` source of its
    /// remote parent, for [`SpanState::set_source`] once the fields are in.
    fn blank_state(
        &self,
        mut data: Box<SpanData>,
        meta: &'static Metadata<'static>,
        origin: Origin,
        span_id: SpanId,
    ) -> (SpanState, Option<Text>) {
        let mut sampled_remotely = false;
        let mut sample_rate = None;
        let (operation_name, trace_id, parent_span_id, tracestate, remote) = match origin {
            Origin::Local(p) => {
                sampled_remotely = p.sampled_remotely;
                sample_rate = p.sample_rate;
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
            Origin::Root(trace_id, rate) => {
                sample_rate = Some(rate);
                (None, trace_id, None, None, None)
            }
        };
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
        data.child_span_count = 0;
        data.dropped_annotations = 0;
        data.dropped_message_events = 0;
        data.dropped_links = 0;
        data.sampled_remotely = sampled_remotely;
        data.sample_rate = sample_rate;
        let state = SpanState {
            data,
            start: self.queue.clock.ticks(),
            kind: None,
            remote_parent: remote.is_some(),
            is_local_root,
            context_exposed: false,
            events: 0,
        };
        (state, remote.flatten())
    }

    /// An event in a span: a message event stays in the span's record;
    /// any other becomes a record of its own, sent now with the span's
    /// operation context (never held back, never evicted).
    fn record_event_in_span(&self, event: &Event<'_>, span: &Id, ctx: &Context<'_, S>) {
        let meta = event.metadata();
        // Visited before the span's state is locked: a field's `Debug` may
        // log into the same span.
        let mut record = self.event_record();
        let mut fields = EventFields::new(&mut record, meta.fields().len());
        event.record(&mut FieldVisitor::new(&mut fields));
        let at = self.queue.clock.ticks();
        let in_span = self.state_of(span, ctx, |state| {
            if let Some(kind) = fields.message_event.kind {
                let m = &fields.message_event;
                let event = MessageEvent {
                    timestamp: self.queue.clock.to_system(at),
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
                status.message = fields.error_message();
            }
            state.events = state.events.saturating_add(1);
            Some(EventSpan {
                trace_id: state.trace_id(),
                span_id: state.span_id(),
                operation_name: state.operation_name(),
                sampled_remotely: state.data.sampled_remotely,
                sample_rate: state.data.sample_rate,
            })
        });
        let Some(in_span) = in_span.flatten() else {
            return; // a message event, kept in the span; or the span is gone
        };
        // Sent with the span's state unlocked: a layer handling the warning
        // a send may log can look at the span.
        fields.finish(meta, Some(in_span));
        self.queue.send(Queued::Event { record, at });
    }

    /// A recycled event record (or a new one).
    fn event_record(&self) -> Box<EventData> {
        self.queue
            .pool
            .take_event()
            .unwrap_or_else(|| Box::new(EventData::blank(Default::default())))
    }

    /// Whether an event outside spans is kept, by the log sampler: the
    /// percentage it is kept at.
    fn root_event_rate(&self) -> Option<f64> {
        self.log_rule.decide_random(ids::next_u64())
    }

    /// An event outside spans: recorded if the log sampler keeps it (and
    /// it is not the exporter's own).
    fn root_event(&self, event: &Event<'_>) {
        if crate::pipeline::on_exporter_thread()
            || crate::diag::is_own_target(event.metadata().target())
        {
            return;
        }
        if let Some(rate) = self.root_event_rate() {
            self.record_root_event(event, rate);
        }
    }

    fn record_root_event(&self, event: &Event<'_>, rate: f64) {
        let meta = event.metadata();
        let mut record = self.event_record();
        record.sample_rate = Some(rate);
        let mut fields = EventFields::new(&mut record, meta.fields().len());
        event.record(&mut FieldVisitor::new(&mut fields));
        let at = self.queue.clock.ticks();
        fields.finish(meta, None);
        self.queue.send(Queued::Event { record, at });
    }
}

impl<S> tracing_subscriber::Layer<S> for AppInsightsLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &SpanAttributes<'_>, id: &Id, ctx: Context<'_, S>) {
        // The fast path first: no sampled parent can exist, no root is
        // sampled, and no caller's context is pending (a sampled caller
        // makes a sampled span even when no local root is ever sampled).
        if self.rule.is_none()
            && self.table.none_alive()
            && !propagation::has_pending()
            && self.live_watching().is_none()
        {
            return;
        }
        if crate::pipeline::on_exporter_thread()
            || crate::diag::is_own_target(attrs.metadata().target())
        {
            return; // and a pending context stays for the application's span
        }
        let remote = propagation::take_pending();
        let remote_parent = remote.is_some();
        let origin = match remote {
            Some(remote) => ctx
                .span(id)
                .and_then(|span| self.remote_origin(&span, remote)),
            // No sampled span alive to be the parent, no root sampled: the
            // span is unsampled, known without finding its parent (the path
            // of every span Live Metrics counts).
            None if self.rule.is_none() && self.table.none_alive() => None,
            None => self.local_origin(attrs, id, &ctx),
        };
        if let Some(origin) = origin {
            let state = self.new_state(attrs, origin);
            self.keep_state(id, &ctx, state);
        } else if self.live_watching().is_some() {
            if let Some(live) = self.table.live() {
                self.track_unsampled(live, attrs, id, &ctx, remote_parent);
            }
        }
    }

    fn on_record(&self, id: &Id, values: &SpanRecordValues<'_>, ctx: Context<'_, S>) {
        if self.table.nothing_alive() {
            return;
        }
        if let Some(live) = self.table.live_counting() {
            if !self.table.holds(id) {
                self.record_unsampled(live, id, values, &ctx);
            }
        }
        if !self.table.may_hold(id) {
            return;
        }
        let mut fields = Staged::default();
        values.record(&mut FieldVisitor::new(&mut fields));
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
        if let Some(live) = self.live_watching() {
            let metadata = event.metadata();
            if !crate::pipeline::on_exporter_thread()
                && !crate::diag::is_own_target(metadata.target())
            {
                if live::is_exception(metadata) {
                    live.count_exception();
                }
                if let Some(nanos) = live::sqlx_statement_nanos(event) {
                    let failed = live::is_exception(metadata);
                    live.count_span(crate::live::Counted::Dependency, nanos, failed);
                }
            }
        }
        if self.rule.is_none() && self.log_rule.is_none() && self.table.none_alive() {
            return; // no sampled span to be in, no log line kept
        }
        if event.is_contextual() {
            // A contextual event's span is one of ours entered here: with
            // none entered it is outside spans, for the log sampler; with
            // only ours entered and none of them sampled, it is in an
            // unsampled span. Neither needs a lookup.
            match entered::depth(self.key()) {
                Depth::Zero => return self.root_event(event),
                Depth::Ours if self.table.none_alive() || self.none_sampled_entered() => return,
                _ => {}
            }
        } else if self.table.none_alive() {
            // An explicit parent, and no sampled span alive: unsampled.
            if event.is_root() {
                self.root_event(event);
            }
            return;
        }
        if crate::pipeline::on_exporter_thread()
            || crate::diag::is_own_target(event.metadata().target())
        {
            return;
        }
        let candidate = if event.is_contextual() {
            self.current_span(&ctx)
        } else {
            event.parent().cloned()
        };
        match self.owner(candidate, &ctx, || ctx.event_span(event)) {
            Owner::Sampled(span) => self.record_event_in_span(event, &span, &ctx),
            Owner::None => self.root_event(event),
            Owner::Unsampled => {}
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
        entered::enter(self.key());
        if self.table.holds(id) {
            entered::push(self.key(), id);
        }
    }

    #[inline]
    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        entered::exit(self.key());
        // With no sampled span alive, an entry left (a span that stopped
        // being sampled while entered) only costs its thread speed.
        if !self.table.none_alive() {
            entered::pop(self.key(), id);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if self.table.nothing_alive() {
            return;
        }
        // A span is sampled or counted by Live Metrics, never both
        // (`untrack`): the sampled one first, so its path is as it was.
        let Some(state) = self.take_state(&id, &ctx) else {
            if let Some(live) = self.table.live_counting() {
                self.close_unsampled(live, &id, &ctx);
            }
            return;
        };
        let end = self.queue.clock.ticks();
        if let Some(live) = self.live_watching() {
            let nanos = self.queue.clock.nanos_between(state.start, end);
            let counted = live::counted(state.kind, state.remote_parent);
            live.count_span(counted, nanos, live::failed(&state.data));
        }
        self.queue.send(Queued::Span {
            record: state.data,
            start: state.start,
            end,
            kind: state.kind,
            remote_parent: state.remote_parent,
        });
    }
}
