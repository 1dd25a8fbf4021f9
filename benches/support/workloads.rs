//! The workloads of the layer benchmark, shared by `benches/layer.rs`
//! (criterion, wall time) and `examples/span_cost.rs` (callgrind,
//! instruction counts) so both measure the same thing.

/// A span with three fields (str, u64, bool), entered, one event with one
/// field and a message inside it, exited, closed.
#[inline(never)]
pub fn span_event(i: u64) {
    let span = tracing::info_span!("request", route = "/orders", id = i, cached = true);
    let _entered = span.enter();
    tracing::info!(n = i, "handled");
}

/// A parent span with one field, entered, with three children (no fields,
/// no events) each entered, exited and closed inside it.
#[inline(never)]
pub fn parent_3_children(i: u64) {
    let parent = tracing::info_span!("parent", id = i);
    let _p = parent.enter();
    for _ in 0..3 {
        let child = tracing::info_span!("child");
        let _c = child.enter();
    }
}

/// A workload: one iteration, given its number.
pub type Workload = fn(u64);

/// Every workload, by name.
#[allow(dead_code)] // each including target uses what it needs
pub const WORKLOADS: [(&str, Workload); 2] = [
    ("span_event", span_event),
    ("parent_3_children", parent_3_children),
];

/// The workload called `name`.
#[allow(dead_code)]
pub fn by_name(name: &str) -> Option<Workload> {
    WORKLOADS.iter().find(|(n, _)| *n == name).map(|(_, w)| *w)
}

/// For the `ours_unsampled_busy` rung: a span of a trace its caller
/// sampled, created here and kept open by the caller (as in a service where
/// some requests are recorded), so the layer cannot skip the lookups of the
/// unsampled spans made meanwhile. Call with the rung's dispatcher as the
/// default.
#[allow(dead_code)]
pub fn sampled_trace_in_flight() -> Option<tracing::Span> {
    use tracing_appinsights::{RemoteContext, SpanId, TraceId};
    let caller = RemoteContext::new(TraceId::from_int(1), SpanId::from_int(1), Some(true));
    caller.map(|c| c.in_scope(|| tracing::info_span!(target: "busy", "in flight")))
}
