//! Remote parents: spans created under `with_remote_parent`, existing spans
//! re-parented with `set_parent_from_headers`, sampling honouring the
//! caller's flag both ways, and `inject_context` for sampled and unsampled
//! spans.

use std::sync::{Arc, Mutex};

use crate::support::capture::{capture_with, Captured};
use http::HeaderMap;
use tracing::info_span;
use tracing_appinsights::record::{AttributeValue, SpanContext, SpanKind};
use tracing_appinsights::{
    with_remote_parent, AppInsightsSpanExt, Builder, RemoteContext, Sampler,
};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN: &str = "b7ad6b7169203331";

fn incoming(flags: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "traceparent",
        format!("00-{TRACE}-{SPAN}-{flags}").parse().unwrap(),
    );
    h.insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
    h.insert("request-context", "appId=cid-v1:caller".parse().unwrap());
    h
}

fn sampler(s: Sampler) -> Builder {
    Builder::new().with_sampler(s)
}

/// A request handled under a remote parent: the server span and a child
/// with an event.
fn handle(headers: &HeaderMap) {
    let server = with_remote_parent(headers, || {
        info_span!("handle", http.request.method = "GET", http.route = "/items")
    });
    let _entered = server.enter();
    info_span!("load").in_scope(|| tracing::info!("loaded"));
}

fn assert_joined_caller(c: &Captured) {
    let server = c.span("handle");
    assert_eq!(server.context.trace_id.to_string(), TRACE);
    assert_eq!(server.parent_span_id.unwrap().to_string(), SPAN);
    assert_ne!(server.context.span_id.to_string(), SPAN);
    assert_eq!(server.kind, SpanKind::Server, "remote parent, no otel.kind");
    assert_eq!(server.same_process_as_parent_span, Some(false));
    assert_eq!(
        server.context.tracestate.as_deref(),
        Some("congo=t61rcWkgMzE")
    );
    assert_eq!(server.operation_name, "GET /items");
    assert_eq!(
        server
            .attributes
            .get("ai.request.source")
            .and_then(|v| v.as_str()),
        Some("cid-v1:caller")
    );
    let child = c.span("load");
    assert_eq!(child.context.trace_id, server.context.trace_id);
    assert_eq!(child.parent_span_id, Some(server.context.span_id));
    assert_eq!(child.kind, SpanKind::Internal);
    assert_eq!(child.same_process_as_parent_span, Some(true));
    assert_eq!(child.operation_name, "GET /items");
    assert_eq!(child.annotations.len(), 1);
    assert!(server.sampled_remotely && child.sampled_remotely);
}

#[test]
fn a_sampled_caller_is_joined() {
    let c = capture_with(Builder::new(), || handle(&incoming("01")));
    assert_joined_caller(&c);
}

#[test]
fn a_sampled_caller_is_recorded_whatever_the_local_sampler() {
    for s in [Sampler::always_off(), Sampler::probability(0.0)] {
        let c = capture_with(sampler(s), || handle(&incoming("01")));
        assert_joined_caller(&c);
        // Flags are hex: 03 is sampled too.
        let c = capture_with(sampler(s), || handle(&incoming("03")));
        assert_eq!(c.spans.len(), 2, "{s:?}");
    }
}

#[test]
fn an_unsampled_caller_is_not_recorded_whatever_the_local_sampler() {
    for s in [Sampler::always_on(), Sampler::probability(1.0)] {
        for flags in ["00", "0a"] {
            let c = capture_with(sampler(s), || handle(&incoming(flags)));
            assert!(c.spans.is_empty(), "{s:?} {flags}: {:#?}", c.spans);
            assert_eq!(c.stats.queued, 0);
        }
    }
}

#[test]
fn an_unsampled_remote_child_propagates_the_callers_trace() {
    let seen = Arc::new(Mutex::new(Vec::<SpanContext>::new()));
    let c = capture_with(Builder::new(), || {
        let server = with_remote_parent(&incoming("00"), || info_span!("handle"));
        let _entered = server.enter();
        let call = info_span!("call");
        let mut out = HeaderMap::new();
        call.inject_context(&mut out);
        let got = RemoteContext::from_headers(&out).unwrap();
        assert_eq!(got.trace_id().to_string(), TRACE);
        assert_eq!(got.sampled(), Some(false));
        assert_eq!(got.tracestate(), Some("congo=t61rcWkgMzE"));
        assert_eq!(Some(got.span_id()), call.span_id());
        assert_ne!(got.span_id().to_string(), SPAN);
        let mut seen = seen.lock().unwrap();
        seen.push(server.span_context().unwrap());
        seen.push(call.span_context().unwrap());
    });
    assert!(c.spans.is_empty());
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].trace_id, seen[1].trace_id);
    assert_ne!(seen[0].span_id, seen[1].span_id);
    assert!(!seen[0].trace_options.is_sampled());
}

#[test]
fn a_legacy_caller_is_sampled_by_the_local_rule_on_its_trace_id() {
    let legacy = |trace: &str| {
        let mut h = HeaderMap::new();
        h.insert("request-id", format!("|{trace}.{SPAN}.").parse().unwrap());
        h
    };
    let c = capture_with(Builder::new(), || handle(&legacy(TRACE)));
    assert_eq!(c.span("handle").context.trace_id.to_string(), TRACE);
    assert_eq!(c.span("handle").parent_span_id.unwrap().to_string(), SPAN);
    assert!(!c.span("handle").sampled_remotely, "our rule decided");
    // OpenCensus' vectors (reference §e1) at 1e-4.
    let c = capture_with(sampler(Sampler::probability(1e-4)), || {
        handle(&legacy("f8739df974a4481f98748cd92b27177d"))
    });
    assert!(c.spans.is_empty());
    let c = capture_with(sampler(Sampler::probability(1e-4)), || {
        handle(&legacy("ffffffffffffffff00068db8bac710cb"))
    });
    assert_eq!(c.spans.len(), 2);
}

#[test]
fn the_pending_parent_goes_to_the_first_span_only() {
    let c = capture_with(Builder::new(), || {
        let outer = info_span!("outer");
        let _outer = outer.enter();
        let (first, second) = with_remote_parent(&incoming("01"), || {
            // This crate's own diagnostics do not take it.
            let own = info_span!(target: "tracing_appinsights", "own");
            let first = info_span!("first");
            let second = info_span!("second");
            drop(own);
            (first, second)
        });
        drop((first, second));
    });
    let first = c.span("first");
    assert_eq!(first.context.trace_id.to_string(), TRACE);
    assert_eq!(first.kind, SpanKind::Server);
    let outer = c.span("outer");
    let second = c.span("second");
    assert_eq!(second.context.trace_id, outer.context.trace_id);
    assert_eq!(second.parent_span_id, Some(outer.context.span_id));
    assert_eq!(outer.child_span_count, 1, "first is not outer's child");
}

#[test]
fn set_parent_re_parents_a_sampled_span_before_it_is_entered() {
    let attached = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&attached);
    let c = capture_with(Builder::new(), move || {
        let outer = info_span!("outer");
        let _outer = outer.enter();
        let server = info_span!("handle", http.request.method = "GET", http.route = "/items");
        *flag.lock().unwrap() = server.set_parent_from_headers(&incoming("01"));
        let _entered = server.enter();
        info_span!("load").in_scope(|| tracing::info!("loaded"));
    });
    assert!(*attached.lock().unwrap());
    assert_joined_caller(&c);
    assert_eq!(c.span("outer").child_span_count, 0);
}

#[test]
fn set_parent_with_an_explicit_kind_keeps_it() {
    let c = capture_with(Builder::new(), || {
        let span = info_span!("consume", otel.kind = "consumer");
        span.set_parent_from_headers(&incoming("01"));
    });
    assert_eq!(c.span("consume").kind, SpanKind::Consumer);
}

#[test]
fn set_parent_with_an_unsampled_caller_drops_a_sampled_span() {
    let c = capture_with(Builder::new(), || {
        let span = info_span!("handle");
        assert!(span.set_parent_from_headers(&incoming("00")));
        let _entered = span.enter();
        info_span!("child").in_scope(|| {});
        let mut out = HeaderMap::new();
        span.inject_context(&mut out);
        assert!(out["traceparent"].to_str().unwrap().ends_with("-00"));
        assert!(out["traceparent"].to_str().unwrap().contains(TRACE));
    });
    assert!(c.spans.is_empty(), "{:#?}", c.spans);
    assert_eq!(c.stats.queued, 0);
}

#[test]
fn set_parent_upgrades_an_unsampled_span_when_the_caller_sampled() {
    let ids = Arc::new(Mutex::new(None));
    let ids2 = Arc::clone(&ids);
    let c = capture_with(sampler(Sampler::always_off()), move || {
        let span = info_span!(
            "handle",
            given = "at creation",
            later = tracing::field::Empty
        );
        let unsampled = span.span_context().unwrap();
        assert!(!unsampled.trace_options.is_sampled());
        assert!(span.set_parent_from_headers(&incoming("01")));
        span.record("later", 7_u64);
        let _entered = span.enter();
        info_span!("child").in_scope(|| {});
        *ids2.lock().unwrap() = Some(unsampled.span_id);
    });
    let server = c.span("handle");
    assert_eq!(server.context.trace_id.to_string(), TRACE);
    assert_eq!(server.parent_span_id.unwrap().to_string(), SPAN);
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(
        Some(server.context.span_id),
        *ids.lock().unwrap(),
        "keeps the span id it had"
    );
    // What is lost: the values given at creation; later ones are kept.
    assert!(server.attributes.get("given").is_none());
    assert_eq!(
        server.attributes.get("later"),
        Some(&AttributeValue::U64(7))
    );
    assert_eq!(c.span("child").parent_span_id, Some(server.context.span_id));
}

/// Counts this crate's debug diagnostics about ignored calls.
#[derive(Clone, Default)]
struct Ignored(Arc<Mutex<usize>>);

impl<S: tracing::Subscriber> Layer<S> for Ignored {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Message(bool);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 |= format!("{v:?}").contains("Propagation.SetParentIgnored");
                }
            }
        }
        let mut m = Message(false);
        event.record(&mut m);
        if m.0 && event.metadata().target() == "tracing_appinsights" {
            *self.0.lock().unwrap() += 1;
        }
    }
}

/// Runs `f` with the layer and [`Ignored`]; returns records and the count.
fn with_ignored(s: Sampler, f: impl FnOnce()) -> (Vec<tracing_appinsights::SpanData>, usize) {
    let exporter = tracing_appinsights::InMemoryExporter::new();
    let (layer, guard) = sampler(s)
        .with_in_memory_exporter(exporter.clone())
        .build()
        .unwrap();
    let ignored = Ignored::default();
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(ignored.clone());
    tracing::subscriber::with_default(subscriber, f);
    guard.shutdown(std::time::Duration::from_secs(10)).unwrap();
    let n = *ignored.0.lock().unwrap();
    (exporter.spans(), n)
}

#[test]
fn set_parent_too_late_is_ignored_with_a_debug_event() {
    type Misuse = fn(&tracing::Span);
    let misuses: [(&str, Misuse); 4] = [
        ("a child", |s| drop(info_span!(parent: s, "child"))),
        ("an event", |s| tracing::info!(parent: s, "event")),
        ("ids read", |s| assert!(s.trace_id().is_some())),
        ("injected", |s| s.inject_context(&mut HeaderMap::new())),
    ];
    for (what, misuse) in misuses {
        let (spans, ignored) = with_ignored(Sampler::always_on(), || {
            let span = info_span!("handle");
            misuse(&span);
            assert!(!span.set_parent_from_headers(&incoming("01")), "{what}");
        });
        let handle = spans.iter().find(|s| s.name == "handle").unwrap();
        assert_ne!(handle.context.trace_id.to_string(), TRACE, "{what}");
        assert_eq!(handle.parent_span_id, None, "{what}");
        assert_eq!(ignored, 1, "{what}");
    }
}

#[test]
fn set_parent_on_an_entered_sampled_span_is_ignored() {
    let (spans, ignored) = with_ignored(Sampler::always_on(), || {
        let span = info_span!("handle");
        let _entered = span.enter();
        assert!(!span.set_parent_from_headers(&incoming("01")));
    });
    let handle = spans.iter().find(|s| s.name == "handle").unwrap();
    assert_eq!(handle.parent_span_id, None);
    assert_eq!(ignored, 1);
}

/// Entering and leaving a span records nothing that depends on its
/// identity, so a later call still re-parents it (documented).
#[test]
fn set_parent_after_an_empty_visit_still_applies() {
    let (spans, ignored) = with_ignored(Sampler::always_on(), || {
        let span = info_span!("handle");
        span.in_scope(|| {});
        assert!(span.set_parent_from_headers(&incoming("01")));
    });
    let handle = spans.iter().find(|s| s.name == "handle").unwrap();
    assert_eq!(handle.context.trace_id.to_string(), TRACE);
    assert_eq!(ignored, 0);
}

#[test]
fn set_parent_on_an_entered_unsampled_span_is_ignored() {
    let (spans, ignored) = with_ignored(Sampler::always_off(), || {
        let span = info_span!("handle");
        let _entered = span.enter();
        assert!(!span.set_parent_from_headers(&incoming("01")));
        let inner = info_span!("inner");
        let _inner = inner.enter();
        assert!(
            !span.set_parent_from_headers(&incoming("01")),
            "an ancestor"
        );
    });
    assert!(spans.is_empty());
    assert_eq!(ignored, 2);
}

#[test]
fn without_the_layer_nothing_happens() {
    let none = tracing::Span::none();
    assert!(!none.set_parent_from_headers(&incoming("01")));
    assert_eq!(none.span_context(), None);
    let mut out = HeaderMap::new();
    none.inject_context(&mut out);
    assert!(out.is_empty());
    // A subscriber without our layer.
    tracing::subscriber::with_default(tracing_subscriber::registry(), || {
        let span = info_span!("x");
        assert!(!span.set_parent_from_headers(&incoming("01")));
        assert_eq!(span.trace_id(), None);
    });
    // Absent or invalid headers leave the span as it was.
    let c = capture_with(Builder::new(), || {
        let span = info_span!("root");
        assert!(!span.set_parent_from_headers(&HeaderMap::new()));
        let mut bad = HeaderMap::new();
        bad.insert("traceparent", "ff-garbage".parse().unwrap());
        assert!(!span.set_parent_from_headers(&bad));
    });
    assert_eq!(c.span("root").parent_span_id, None);
}

#[test]
fn ids_read_from_a_span_are_those_of_its_record() {
    let read = Arc::new(Mutex::new(None));
    let read2 = Arc::clone(&read);
    let c = capture_with(Builder::new(), move || {
        let span = info_span!("root");
        *read2.lock().unwrap() = Some((span.trace_id().unwrap(), span.span_id().unwrap()));
    });
    let root = c.span("root");
    assert_eq!(
        *read.lock().unwrap(),
        Some((root.context.trace_id, root.context.span_id))
    );
}

#[test]
fn unsampled_spans_inject_consistent_ids_with_flags_00() {
    let c = capture_with(sampler(Sampler::always_off()), || {
        let root = info_span!("root");
        let _entered = root.enter();
        let child = info_span!("child");
        let (mut a, mut b) = (HeaderMap::new(), HeaderMap::new());
        root.inject_context(&mut a);
        child.inject_context(&mut b);
        let (a, b) = (
            RemoteContext::from_headers(&a).unwrap(),
            RemoteContext::from_headers(&b).unwrap(),
        );
        assert_eq!(a.trace_id(), b.trace_id());
        assert_ne!(a.span_id(), b.span_id());
        assert_eq!((a.sampled(), b.sampled()), (Some(false), Some(false)));
    });
    assert!(c.spans.is_empty());
}

#[test]
fn inject_then_with_remote_parent_links_two_spans() {
    let c = capture_with(Builder::new(), || {
        let caller = info_span!("caller", otel.kind = "client");
        let mut wire = HeaderMap::new();
        caller.inject_context(&mut wire);
        drop(caller);
        let callee = with_remote_parent(&wire, || info_span!("callee"));
        drop(callee);
    });
    let (caller, callee) = (c.span("caller"), c.span("callee"));
    assert_eq!(callee.context.trace_id, caller.context.trace_id);
    assert_eq!(callee.parent_span_id, Some(caller.context.span_id));
    assert_eq!(callee.kind, SpanKind::Server);
    assert_eq!(caller.kind, SpanKind::Client);
}
