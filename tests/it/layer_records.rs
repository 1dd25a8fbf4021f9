//! Spans in, `SpanData` records out: what a user sees in the exporter.

use std::error::Error;
use std::fmt;
use std::time::{Duration, SystemTime};

use crate::support::capture::{capture, capture_with};
use tracing::{info_span, instrument, Level};
use tracing_appinsights::record::{
    AttributeValue, LinkType, MessageEventKind, SpanKind, StatusCode, MAX_ANNOTATIONS, MAX_LINKS,
    MAX_MESSAGE_EVENTS,
};
use tracing_appinsights::{Builder, ManualClock};

#[test]
fn nested_spans_share_a_trace_and_name_their_parents() {
    let out = capture(|| {
        let root = info_span!("root").entered();
        for _ in 0..3 {
            let child = info_span!("child").entered();
            info_span!("grandchild").in_scope(|| {});
            drop(child);
        }
        drop(root);
    });
    assert_eq!(out.spans.len(), 7);
    let root = out.span("root");
    assert_eq!(root.parent_span_id, None);
    assert_eq!(root.child_span_count, 3);
    assert_eq!(root.same_process_as_parent_span, None);
    assert!(root.context.trace_options.is_sampled());
    for span in &out.spans {
        assert_eq!(span.context.trace_id, root.context.trace_id);
        assert_eq!(span.operation_name, "root");
    }
    let children: Vec<_> = out.spans.iter().filter(|s| s.name == "child").collect();
    for child in &children {
        assert_eq!(child.parent_span_id, Some(root.context.span_id));
        assert_eq!(child.child_span_count, 1);
        assert_eq!(child.same_process_as_parent_span, Some(true));
    }
    for grandchild in out.spans.iter().filter(|s| s.name == "grandchild") {
        assert!(children
            .iter()
            .any(|c| Some(c.context.span_id) == grandchild.parent_span_id));
    }
    let mut ids: Vec<_> = out.spans.iter().map(|s| s.context.span_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 7, "span ids are distinct");
    assert!(ids.iter().all(|id| id.is_valid()));
}

#[test]
fn fields_at_creation_and_by_record_keep_their_types() {
    let out = capture(|| {
        let span = info_span!(
            "typed",
            s = "text",
            i = -3_i64,
            u = 7_u64,
            f = 1.5_f64,
            b = true,
            d = ?vec![1, 2],
            late = tracing::field::Empty,
            changed = 1_u64,
        );
        span.record("late", "filled");
        span.record("changed", 2_u64);
    });
    let span = out.span("typed");
    let a = &span.attributes;
    assert_eq!(a.get("s"), Some(&AttributeValue::Str("text".into())));
    assert_eq!(a.get("i"), Some(&AttributeValue::I64(-3)));
    assert_eq!(a.get("u"), Some(&AttributeValue::U64(7)));
    assert_eq!(a.get("f"), Some(&AttributeValue::F64(1.5)));
    assert_eq!(a.get("b"), Some(&AttributeValue::Bool(true)));
    assert_eq!(a.get("d"), Some(&AttributeValue::Debug("[1, 2]".into())));
    assert_eq!(a.get("late"), Some(&AttributeValue::Str("filled".into())));
    assert_eq!(a.get("changed"), Some(&AttributeValue::U64(2)));
    assert_eq!(a.len(), 8);
    assert_eq!(span.level, Level::INFO);
    assert!(span.end_time >= span.start_time);
}

/// The layer reads raw counter ticks and the worker turns them into
/// times when it takes the records, here a long moment later (at the
/// shutdown: the manual clock holds the export interval back): the times
/// are still when the span started and ended and the event happened.
#[test]
fn times_are_when_things_happened_not_when_they_were_exported() {
    // Far less than the wait below, far more than the counter's rate error.
    const TOLERANCE: Duration = Duration::from_millis(50);
    let mut window = None;
    let out = capture_with(
        Builder::new().with_manual_clock(&ManualClock::new()),
        || {
            let before = SystemTime::now();
            info_span!("timed").in_scope(|| tracing::info!("inside"));
            let after = SystemTime::now();
            window = Some((before, after));
            std::thread::sleep(4 * TOLERANCE);
        },
    );
    let (before, after) = window.unwrap();
    let within = |t: SystemTime| t + TOLERANCE >= before && t <= after + TOLERANCE;
    let span = out.span("timed");
    assert!(
        within(span.start_time),
        "{span:?} started outside {window:?}"
    );
    assert!(within(span.end_time), "{span:?} ended outside {window:?}");
    assert!(within(span.annotations[0].timestamp), "{span:?}");
}

#[instrument(fields(extra = 1_u64))]
fn handle(order: u64, customer: &str) {
    tracing::info!(step = "validated", "order checked");
}

#[test]
fn instrument_arguments_become_attributes() {
    let out = capture(|| handle(42, "alice"));
    let span = out.span("handle");
    assert_eq!(span.attributes.get("order"), Some(&AttributeValue::U64(42)));
    assert_eq!(
        span.attributes.get("customer"),
        Some(&AttributeValue::Str("alice".into()))
    );
    assert_eq!(span.attributes.get("extra"), Some(&AttributeValue::U64(1)));
    assert_eq!(span.annotations.len(), 1);
}

#[test]
fn events_become_annotations_with_level_message_and_fields() {
    let out = capture(|| {
        let _s = info_span!("work").entered();
        tracing::debug!(n = 1_u64, "first");
        tracing::warn!(code = "E1", "second {}", 2);
    });
    let span = out.span("work");
    let a = &span.annotations;
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].description, "first");
    assert_eq!(a[0].level, Level::DEBUG);
    assert_eq!(a[0].attributes.get("n"), Some(&AttributeValue::U64(1)));
    assert_eq!(a[1].description, "second 2");
    assert_eq!(a[1].level, Level::WARN);
    assert_eq!(
        a[1].attributes.get("code"),
        Some(&AttributeValue::Str("E1".into()))
    );
    assert!(a[0].timestamp <= a[1].timestamp);
    assert!(a[1].attributes.get("message").is_none());
    assert_eq!(span.status.code, StatusCode::Unset);
}

#[test]
fn bounds_keep_the_newest_and_count_the_dropped() {
    let out = capture(|| {
        let span = info_span!("busy");
        let _e = span.enter();
        for i in 0..(MAX_ANNOTATIONS as u64 + 8) {
            tracing::info!(i, "event");
        }
        for i in 0..(MAX_MESSAGE_EVENTS as u64 + 2) {
            tracing::info!(message.type = "SENT", message.id = i, message.uncompressed_size = 10_u64);
        }
        for _ in 0..(MAX_LINKS + 5) {
            let other = info_span!("other");
            span.follows_from(&other);
        }
    });
    let span = out.span("busy");
    assert_eq!(span.annotations.len(), MAX_ANNOTATIONS);
    assert_eq!(span.dropped_annotations, 8);
    assert_eq!(
        span.annotations[0].attributes.get("i"),
        Some(&AttributeValue::U64(8)),
        "the oldest are dropped"
    );
    assert_eq!(span.message_events.len(), MAX_MESSAGE_EVENTS);
    assert_eq!(span.dropped_message_events, 2);
    let m = &span.message_events[0];
    assert_eq!(
        (
            m.kind,
            m.id,
            m.uncompressed_size_bytes,
            m.compressed_size_bytes
        ),
        (MessageEventKind::Sent, 2, 10, 10)
    );
    assert_eq!(span.links.len(), MAX_LINKS);
    assert_eq!(span.dropped_links, 5);
    // Counted in the statistics too: a dropped event is an item (in the
    // balance); a dropped link or message event is part of one.
    let stats = &out.stats;
    assert_eq!(stats.dropped_annotations, 8);
    assert_eq!(stats.dropped_message_events, 2);
    assert_eq!(stats.dropped_links, 5);
    assert!(stats.balances(), "{stats:#?}");
}

#[test]
fn follows_from_becomes_a_link() {
    let out = capture(|| {
        let cause = info_span!("cause");
        let effect = info_span!("effect");
        effect.follows_from(&cause);
    });
    let cause = out.span("cause");
    let effect = out.span("effect");
    assert_eq!(effect.links.len(), 1);
    assert_eq!(effect.links[0].trace_id, cause.context.trace_id);
    assert_eq!(effect.links[0].span_id, cause.context.span_id);
    assert_eq!(effect.links[0].link_type, LinkType::ParentLinkedSpan);
}

#[test]
fn special_fields_are_read_into_the_record() {
    let out = capture(|| {
        info_span!(
            "tracing-name",
            otel.kind = "client",
            otel.name = "GET /items",
            otel.status_code = "error",
            otel.status_description = "upstream said no",
            keep = 1_u64,
        )
        .in_scope(|| {});
        let late = info_span!(
            "late",
            otel.name = tracing::field::Empty,
            otel.kind = "server"
        );
        late.record("otel.name", "renamed");
    });
    let span = out.span("GET /items");
    assert_eq!(span.kind, SpanKind::Client);
    assert_eq!(span.status.code, StatusCode::Error);
    assert_eq!(span.status.message.as_deref(), Some("upstream said no"));
    assert_eq!(span.attributes.len(), 1, "only `keep` stays an attribute");
    let late = out.span("renamed");
    assert_eq!(late.kind, SpanKind::Server);
}

#[derive(Debug)]
struct DbError {
    source: std::io::Error,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("query failed")
    }
}

impl Error for DbError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

fn db_error() -> DbError {
    DbError {
        source: std::io::Error::new(std::io::ErrorKind::TimedOut, "socket timed out"),
    }
}

#[test]
fn a_recorded_error_fails_the_span() {
    let out = capture(|| {
        let span = info_span!("query", error = tracing::field::Empty);
        let err = db_error();
        span.record("error", &err as &dyn Error);
    });
    let span = out.span("query");
    assert_eq!(span.status.code, StatusCode::Error);
    assert_eq!(span.status.message.as_deref(), Some("query failed"));
    assert!(span.attributes.is_empty());
}

#[test]
fn an_error_event_fails_the_span_and_keeps_the_chain() {
    let out = capture(|| {
        let _s = info_span!("request").entered();
        let err = db_error();
        tracing::error!(error = &err as &dyn Error, "could not load");
    });
    let span = out.span("request");
    assert_eq!(span.status.code, StatusCode::Error);
    assert_eq!(span.status.message.as_deref(), Some("query failed"));
    let event = &span.annotations[0];
    assert_eq!(event.description, "could not load");
    match event.attributes.get("error") {
        Some(AttributeValue::Error(e)) => {
            assert_eq!(e.message, "query failed");
            assert_eq!(e.type_name, None, "not a standard error: unknown");
            assert_eq!(e.sources.len(), 1);
            assert_eq!(e.sources[0], "socket timed out");
        }
        other => panic!("expected an error attribute, got {other:?}"),
    }
}

#[test]
fn explicit_ok_status_is_not_overridden_by_an_error_event() {
    let out = capture(|| {
        let _s = info_span!("handled", otel.status_code = "ok").entered();
        tracing::error!(exception.message = "retried fine", "transient");
    });
    assert_eq!(out.span("handled").status.code, StatusCode::Ok);
}

#[test]
fn events_outside_spans_are_records_of_their_own() {
    let out = capture(|| {
        tracing::warn!(disk = "sda", "disk almost full");
    });
    assert!(out.spans.is_empty());
    assert_eq!(out.events.len(), 1);
    let e = &out.events[0];
    assert_eq!(e.message, "disk almost full");
    assert_eq!(e.level, Level::WARN);
    assert_eq!(
        e.attributes.get("disk"),
        Some(&AttributeValue::Str("sda".into()))
    );
    assert_eq!(e.target, module_path!());
}

#[test]
fn records_of_a_span_entered_on_one_thread_and_closed_on_another() {
    let out = capture(|| {
        let span = info_span!("moved", n = 1_u64);
        for _ in 0..1000 {
            let _e = span.enter();
        }
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                let _e = span.enter();
                tracing::info!("on another thread");
                drop(_e);
                drop(span);
            })
        })
        .join()
        .unwrap();
    });
    let span = out.span("moved");
    assert_eq!(span.annotations.len(), 1);
}

#[instrument(err)]
fn fails() -> Result<(), std::io::Error> {
    Err(std::io::Error::other("disk on fire"))
}

#[test]
fn instrument_err_fails_the_span_with_the_error() {
    let out = capture(|| {
        let _ = fails();
    });
    let span = out.span("fails");
    assert_eq!(span.status.code, StatusCode::Error);
    assert_eq!(span.status.message.as_deref(), Some("disk on fire"));
    match span.annotations[0].attributes.get("error") {
        Some(AttributeValue::Error(e)) => assert_eq!(e.message, "disk on fire"),
        other => panic!("expected the error, got {other:?}"),
    }
}

#[test]
fn an_exception_type_event_fails_the_span() {
    let out = capture(|| {
        let _s = info_span!("typed").entered();
        tracing::warn!(exception.type = "TimeoutError", "gave up");
    });
    assert_eq!(out.span("typed").status.code, StatusCode::Error);
}
