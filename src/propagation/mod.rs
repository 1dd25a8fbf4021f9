//! Distributed tracing: trace context in and out of the process
//! (`docs/distributed-tracing.md` has the rules and the API).
//!
//! * In: [`RemoteContext::from_headers`] reads W3C `traceparent` +
//!   `tracestate`, else the legacy `Request-Id`, plus `Request-Context`'s
//!   `appId`. The context becomes the *remote parent* of a span, either
//!   before the span exists ([`with_remote_parent`], [`RemoteContext::in_scope`]:
//!   a thread-local consumed by the next span created on the thread) or
//!   just after ([`AppInsightsSpanExt::set_parent_from_headers`]).
//! * Out: [`AppInsightsSpanExt::inject_context`] writes `traceparent`,
//!   `tracestate` and `Request-Id` for any span the layer saw, sampled or
//!   not.
//!
//! The layer is reached from a `tracing::Span` through its dispatcher: the
//! layer answers `downcast_raw` for [`WithContext`], a small table of
//! functions monomorphised for the layer's subscriber type (the pattern of
//! `tracing-opentelemetry`'s `WithContext`).

use std::cell::{Cell, RefCell};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use tracing_core::span::Id;
use tracing_core::Dispatch;

use crate::record::ids::{SpanId, TraceId};
use crate::record::text::Text;
use crate::record::SpanContext;

mod legacy;
mod w3c;

#[cfg(test)]
mod tests;

/// The span field the layer stores the caller's `Request-Context` `appId`
/// in; the Request item's `source` comes from it.
///
/// A span may also set it itself (`info_span!("…", ai.request.source = "…")`)
/// to name where a request came from.
pub const FIELD_REQUEST_SOURCE: &str = "ai.request.source";

/// The trace context of a caller in another process: the parent of a span
/// whose work it asked for.
///
/// Read it from HTTP headers with [`from_headers`](Self::from_headers), or
/// from other carriers (message properties, …) with
/// [`from_traceparent`](Self::from_traceparent); attach it with
/// [`in_scope`](Self::in_scope) or [`AppInsightsSpanExt::set_remote_parent`].
///
/// # Examples
///
/// ```
/// use tracing_appinsights::RemoteContext;
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert(
///     "traceparent",
///     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse().unwrap(),
/// );
/// let parent = RemoteContext::from_headers(&headers).unwrap();
/// assert_eq!(parent.trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
/// assert_eq!(parent.span_id().to_string(), "b7ad6b7169203331");
/// assert_eq!(parent.sampled(), Some(true));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteContext {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) sampled: Option<bool>,
    pub(crate) tracestate: Option<Text>,
    pub(crate) source: Option<Text>,
}

impl RemoteContext {
    /// A remote parent from its ids; `sampled` is the caller's decision, or
    /// `None` when it sent none (the local sampler then decides from the
    /// trace id). `None` when an id is all zero (invalid).
    pub fn new(trace_id: TraceId, span_id: SpanId, sampled: Option<bool>) -> Option<Self> {
        (trace_id.is_valid() && span_id.is_valid()).then_some(RemoteContext {
            trace_id,
            span_id,
            sampled,
            tracestate: None,
            source: None,
        })
    }

    /// Reads the caller's context from request headers; `None` when there
    /// is no valid one (the span then stays a root).
    ///
    /// * `traceparent` (exactly one header, valid by W3C Trace Context level
    ///   1, flags read as hex) with `tracestate` (ignored when invalid);
    /// * else a legacy `Request-Id` of the form `|<trace id>.<span id>.`,
    ///   as older Application Insights SDKs send it; it carries no sampling
    ///   decision;
    /// * in either case, `Request-Context: appId=…` becomes the
    ///   [`source`](Self::source).
    ///
    /// Never panics, whatever the bytes.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        Self::from_header_fn(|name| headers.get_all(name).iter().map(HeaderValue::as_bytes))
    }

    /// [`from_headers`](Self::from_headers) for any carrier of HTTP
    /// headers: `get_all(name)` gives every value of the header `name`
    /// (lowercase), in order. The one parser of incoming headers, whatever
    /// crate's header types hold them (actix-web's are `http` 0.2's).
    pub(crate) fn from_header_fn<'a, I>(get_all: impl Fn(&str) -> I) -> Option<Self>
    where
        I: Iterator<Item = &'a [u8]>,
    {
        let mut context = match single(get_all(w3c::TRACEPARENT)) {
            Some(value) => Self::from_w3c(value, get_all(w3c::TRACESTATE)),
            None => None,
        }
        .or_else(|| {
            let value = single(get_all(legacy::REQUEST_ID))?;
            let (trace_id, span_id) = legacy::parse_request_id(value)?;
            Self::new(trace_id, span_id, None)
        })?;
        context.source = legacy::parse_request_context_app_id(get_all(legacy::REQUEST_CONTEXT));
        Some(context)
    }

    /// Parses a `traceparent` value and, optionally, a `tracestate` value,
    /// from any carrier; `None` when the `traceparent` is invalid. An
    /// invalid `tracestate` is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use tracing_appinsights::RemoteContext;
    ///
    /// let parent = RemoteContext::from_traceparent(
    ///     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    ///     Some("congo=t61rcWkgMzE"),
    /// )
    /// .unwrap();
    /// assert_eq!(parent.sampled(), Some(false));
    /// assert_eq!(parent.tracestate(), Some("congo=t61rcWkgMzE"));
    /// assert!(RemoteContext::from_traceparent("00-garbage", None).is_none());
    /// ```
    pub fn from_traceparent(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        Self::from_w3c(traceparent.as_bytes(), tracestate.map(str::as_bytes))
    }

    fn from_w3c<'a>(
        traceparent: &[u8],
        tracestate: impl IntoIterator<Item = &'a [u8]>,
    ) -> Option<Self> {
        let parent = w3c::parse_traceparent(traceparent)?;
        let mut context = Self::new(parent.trace_id, parent.span_id, Some(parent.sampled()))?;
        context.tracestate = w3c::parse_tracestate(tracestate);
        Some(context)
    }

    /// Parses a legacy `Request-Id` value, `|<trace id>.<span id>.`; `None`
    /// for any other form.
    pub fn from_request_id(request_id: &str) -> Option<Self> {
        let (trace_id, span_id) = legacy::parse_request_id(request_id.as_bytes())?;
        Self::new(trace_id, span_id, None)
    }

    /// The caller's trace id: the operation id shared by both sides.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The caller's span id: the parent id of the span it becomes the
    /// parent of (in Application Insights, the caller's dependency id).
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The caller's sampling decision (`traceparent`'s sampled flag), or
    /// `None` when the headers carried none (legacy `Request-Id`).
    pub fn sampled(&self) -> Option<bool> {
        self.sampled
    }

    /// The validated `tracestate`, normalised (`k=v,k2=v2`), if any.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The caller's Application Insights id from `Request-Context: appId=…`
    /// (e.g. `cid-v1:…`), if any: the Request's `source`.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// Sets the `tracestate` carried along (validated as a header would
    /// be; an invalid one clears it).
    pub fn with_tracestate(mut self, tracestate: &str) -> Self {
        self.tracestate = w3c::parse_tracestate([tracestate.as_bytes()]);
        self
    }

    /// Sets the request's source (see [`source`](Self::source)).
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(Text::from(source.into()));
        self
    }

    /// Runs `f`, making this context the remote parent of the **first span
    /// created on this thread** while `f` runs (spans this crate ignores,
    /// such as its own diagnostics, do not count). That span's local
    /// parent, if any, is ignored for its ids and its sampling decision;
    /// spans created after it are its children (or roots) as usual.
    ///
    /// This is the way to attach a remote parent with nothing lost: the
    /// span's fields are recorded and its sampling decision is made once,
    /// at creation, knowing the parent. If `f` creates no span, the context
    /// is dropped when `f` returns (or unwinds).
    ///
    /// # Examples
    ///
    /// ```
    /// use tracing_appinsights::RemoteContext;
    ///
    /// let parent = RemoteContext::from_traceparent(
    ///     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ///     None,
    /// )
    /// .unwrap();
    /// let span = parent.in_scope(|| tracing::info_span!("handle message", otel.kind = "consumer"));
    /// let _entered = span.enter();
    /// ```
    pub fn in_scope<R>(self, f: impl FnOnce() -> R) -> R {
        let _restore = Pending::set(Some(self));
        f()
    }

    /// [`in_scope`](Self::in_scope), giving the context back when no span
    /// took it while `f` ran (the span meant to take it was disabled by a
    /// filter, say), so it can be made pending again for the next step of
    /// the same work.
    pub(crate) fn in_scope_unused<R>(self, f: impl FnOnce() -> R) -> (R, Option<RemoteContext>) {
        let _restore = Pending::set(Some(self));
        let result = f();
        // Still pending: no span took it (nested scopes restore on exit).
        (result, take_pending())
    }
}

/// The one value of a header that must appear once; `None` when it is
/// absent or repeated (two `traceparent`s are invalid, W3C §3.2).
fn single<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Option<&'a [u8]> {
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// Runs `f` with the caller's context from `headers` as the remote parent
/// of the first span created on this thread inside `f`; see
/// [`RemoteContext::in_scope`]. Without valid trace headers, `f` runs as is
/// and its span is a root (or a child of the current span).
///
/// # Examples
///
/// ```
/// use tracing_appinsights::with_remote_parent;
///
/// # let request = http::Request::new(());
/// let span = with_remote_parent(request.headers(), || {
///     tracing::info_span!("GET /items", otel.kind = "server", http.route = "/items")
/// });
/// let _entered = span.enter();
/// ```
pub fn with_remote_parent<R>(headers: &HeaderMap, f: impl FnOnce() -> R) -> R {
    with_remote_parent_unused(headers, f).0
}

/// [`with_remote_parent`], giving the caller's context back when no span
/// took it (see [`RemoteContext::in_scope_unused`]).
pub(crate) fn with_remote_parent_unused<R>(
    headers: &HeaderMap,
    f: impl FnOnce() -> R,
) -> (R, Option<RemoteContext>) {
    with_remote_context_unused(RemoteContext::from_headers(headers), f)
}

/// [`with_remote_parent_unused`] with the caller's context already read
/// (`None`: the request carried none).
pub(crate) fn with_remote_context_unused<R>(
    context: Option<RemoteContext>,
    f: impl FnOnce() -> R,
) -> (R, Option<RemoteContext>) {
    match context {
        Some(context) => context.in_scope_unused(f),
        None => {
            // Headers without a context still hide an outer pending one:
            // this request is not that caller's child.
            let _restore = Pending::set(None);
            (f(), None)
        }
    }
}

// === the pending remote parent (thread-local) ===

thread_local! {
    /// Whether `PENDING` holds a context: read on every new span, so it is
    /// a plain flag with no destructor (no registration, no allocation).
    static HAS_PENDING: Cell<bool> = const { Cell::new(false) };
    static PENDING: RefCell<Option<RemoteContext>> = const { RefCell::new(None) };
}

/// Restores the previous pending context when a scope ends (or unwinds).
struct Pending(Option<RemoteContext>);

impl Pending {
    fn set(context: Option<RemoteContext>) -> Pending {
        Pending(replace_pending(context))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        replace_pending(self.0.take());
    }
}

fn replace_pending(context: Option<RemoteContext>) -> Option<RemoteContext> {
    let has = context.is_some();
    if !has && !HAS_PENDING.try_with(Cell::get).unwrap_or(false) {
        return None; // nothing to replace: leave the thread-local untouched
    }
    let previous = PENDING
        .try_with(|p| match p.try_borrow_mut() {
            Ok(mut p) => std::mem::replace(&mut *p, context),
            Err(_) => None,
        })
        .ok()
        .flatten();
    let _ = HAS_PENDING.try_with(|flag| flag.set(has));
    previous
}

/// Whether a remote context is pending on this thread (see
/// [`take_pending`]), without taking it.
#[inline]
pub(crate) fn has_pending() -> bool {
    HAS_PENDING.try_with(Cell::get).unwrap_or(false)
}

/// Takes the pending remote parent, if any: called by the layer for each
/// new span it records. One thread-local read when there is none.
#[inline]
pub(crate) fn take_pending() -> Option<RemoteContext> {
    if !HAS_PENDING.try_with(Cell::get).unwrap_or(false) {
        return None;
    }
    let _ = HAS_PENDING.try_with(|flag| flag.set(false));
    PENDING
        .try_with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.take()))
        .ok()
        .flatten()
}

// === reaching the layer from a `Span` ===

/// Functions of the layer, for the subscriber type it was built for, found
/// through `Dispatch::downcast_ref` (the layer answers `downcast_raw` for
/// this type).
pub(crate) struct WithContext {
    /// Attaches a remote parent to an existing span; `false` when ignored.
    pub(crate) set_parent: fn(&Dispatch, &Id, RemoteContext) -> bool,
    /// The span's context (sampled or not); marks a sampled span's context
    /// as used, so it can no longer be re-parented.
    pub(crate) context: fn(&Dispatch, &Id) -> Option<SpanContext>,
}

fn with_layer<T>(
    span: &tracing::Span,
    f: impl FnOnce(&WithContext, &Dispatch, &Id) -> T,
) -> Option<T> {
    span.with_subscriber(|(id, dispatch)| {
        let with_context = dispatch.downcast_ref::<WithContext>()?;
        Some(f(with_context, dispatch, id))
    })
    .flatten()
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for tracing::Span {}
}

/// Trace context for a [`tracing::Span`]: attach a remote parent from
/// incoming headers, write the span's context into outgoing headers, read
/// its ids.
///
/// Every method works through the span's subscriber; for a span no
/// [`AppInsightsLayer`](crate::AppInsightsLayer) saw (disabled, or another
/// subscriber) they do nothing and return `false` / `None`.
///
/// # Examples
///
/// A server handler, then a call to another service:
///
/// ```
/// use tracing_appinsights::AppInsightsSpanExt;
///
/// fn handle(incoming: &http::HeaderMap) -> http::HeaderMap {
///     let span = tracing::info_span!("GET /orders", otel.kind = "server");
///     span.set_parent_from_headers(incoming); // before the span is entered
///     let _entered = span.enter();
///
///     let call = tracing::info_span!("GET inventory", otel.kind = "client");
///     let mut outgoing = http::HeaderMap::new();
///     call.inject_context(&mut outgoing);
///     outgoing
/// }
/// # handle(&http::HeaderMap::new());
/// ```
pub trait AppInsightsSpanExt: sealed::Sealed {
    /// Makes the caller described by `headers` the span's remote parent
    /// (see [`RemoteContext::from_headers`] for the headers read). Returns
    /// whether it did; invalid or absent headers leave the span as it was.
    ///
    /// **Call it before the span is first entered.** The span then takes the
    /// caller's trace id, its parent id becomes the caller's span id, it
    /// carries the caller's `tracestate` and `Request-Context` source, and,
    /// unless it names another `otel.kind`, it becomes a server span (a
    /// Request). Its sampling decision follows the caller's flag, both ways:
    ///
    /// * sampled here, caller sampled: the span is re-parented in place;
    /// * sampled here, caller not sampled: the span is dropped (it and its
    ///   future children record nothing);
    /// * not sampled here, caller sampled: the span becomes sampled from
    ///   now on. What was lost: the **field values given at creation** (an
    ///   unsampled span visits none; fields declared `Empty` and recorded
    ///   later are kept), including `otel.name` and `otel.kind`, and its
    ///   start time is the time of this call. Create the span inside
    ///   [`with_remote_parent`] instead to lose nothing.
    ///
    /// A call that comes too late is ignored, with a debug event (target
    /// `tracing_appinsights`) saying why: while the span is entered on the
    /// calling thread, and, for a sampled span, once it has a child span or
    /// an event or had its context read
    /// ([`inject_context`](Self::inject_context),
    /// [`span_context`](Self::span_context)). Entries are not tracked (that
    /// would cost a lookup on every poll of an instrumented future), so a
    /// span entered and exited with nothing recorded in it is still
    /// re-parented: nothing observed its identity. An unsampled span's
    /// existing children keep the trace they started with.
    ///
    /// Under a per-layer filter, call it only on spans the filter enables.
    fn set_parent_from_headers(&self, headers: &HeaderMap) -> bool;

    /// [`set_parent_from_headers`](Self::set_parent_from_headers) with a
    /// context read from another carrier.
    fn set_remote_parent(&self, parent: RemoteContext) -> bool;

    /// Writes the span's context into outgoing request headers:
    /// `traceparent` (`00-<trace id>-<span id>-<01|00>`), `tracestate` when
    /// the trace carries one (removed otherwise), and `Request-Id`
    /// (`|<trace id>.<span id>.`) for receivers using older Application
    /// Insights SDKs. Unsampled spans write their ids with the flags `00`,
    /// so the receiver makes the same decision. A span the layer did not
    /// see writes nothing.
    fn inject_context(&self, headers: &mut HeaderMap);

    /// The span's trace id, span id, flags and tracestate, sampled or not
    /// (`None` for a span the layer did not see). Reading it fixes the
    /// span's context: it can no longer be re-parented.
    fn span_context(&self) -> Option<SpanContext>;

    /// The span's trace id (the Application Insights operation id), for
    /// logs, error pages and response headers.
    fn trace_id(&self) -> Option<TraceId> {
        self.span_context().map(|c| c.trace_id)
    }

    /// The span's own id.
    fn span_id(&self) -> Option<SpanId> {
        self.span_context().map(|c| c.span_id)
    }
}

impl AppInsightsSpanExt for tracing::Span {
    fn set_parent_from_headers(&self, headers: &HeaderMap) -> bool {
        match RemoteContext::from_headers(headers) {
            Some(parent) => self.set_remote_parent(parent),
            None => false,
        }
    }

    fn set_remote_parent(&self, parent: RemoteContext) -> bool {
        with_layer(self, |w, dispatch, id| (w.set_parent)(dispatch, id, parent)).unwrap_or(false)
    }

    fn inject_context(&self, headers: &mut HeaderMap) {
        if let Some(context) = self.span_context() {
            inject(&context, headers);
        }
    }

    fn span_context(&self) -> Option<SpanContext> {
        with_layer(self, |w, dispatch, id| (w.context)(dispatch, id)).flatten()
    }
}

/// Writes `context` as `traceparent`, `tracestate` and `Request-Id`.
pub(crate) fn inject(context: &SpanContext, headers: &mut HeaderMap) {
    inject_w3c(context, headers);
    put(
        headers,
        legacy::REQUEST_ID,
        &legacy::format_request_id(context.trace_id, context.span_id),
    );
}

/// Writes `context` as `traceparent` and `tracestate` (removed when the
/// trace carries none) only: [`inject`] without the legacy `Request-Id`,
/// which is left as it was.
#[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
pub(crate) fn inject_w3c(context: &SpanContext, headers: &mut HeaderMap) {
    let SpanContext {
        trace_id,
        span_id,
        trace_options,
        tracestate,
    } = context;
    let sampled = trace_options.is_sampled();
    let traceparent = w3c::format_traceparent(*trace_id, *span_id, sampled);
    put(headers, w3c::TRACEPARENT, &traceparent);
    match tracestate {
        Some(state) => put(headers, w3c::TRACESTATE, state.as_bytes()),
        None => {
            headers.remove(w3c::TRACESTATE);
        }
    }
}

fn put(headers: &mut HeaderMap, name: &'static str, value: &[u8]) {
    if let Ok(value) = HeaderValue::from_bytes(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}
