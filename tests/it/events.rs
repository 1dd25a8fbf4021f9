//! Every event inside a sampled span is an item of its own on the wire,
//! sent when it happens, in its span's operation: none is evicted, none
//! waits for the span to close.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use tracing::info_span;
use tracing_appinsights::{Builder, ExporterGuard, ManualClock, Sampler};
use tracing_subscriber::prelude::*;

use crate::support::FakeIngestion;

/// A layer sending to `server`, with room in the queue for `queue` records
/// (the tests log faster than any exporter sends).
fn to_server(server: &FakeIngestion, queue: usize) -> Builder {
    Builder::new()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_sampler(Sampler::always_on())
        .with_max_queue_size(queue)
}

fn base_type(envelope: &Value) -> &str {
    envelope["data"]["baseType"].as_str().unwrap_or_default()
}

fn tag<'a>(envelope: &'a Value, name: &str) -> &'a str {
    envelope["tags"][name].as_str().unwrap_or_default()
}

/// Shuts down and returns the envelopes the server received, checking
/// that every item is accounted for and none was dropped.
fn finish(server: &FakeIngestion, guard: ExporterGuard) -> Vec<Value> {
    guard.shutdown(Duration::from_secs(60)).expect("shutdown");
    let stats = guard.stats();
    assert!(stats.balances(), "{stats:#?}");
    assert_eq!(stats.dropped() + stats.dropped_queue_full, 0, "{stats:#?}");
    server.envelopes()
}

#[test]
fn a_span_with_100_000_events_delivers_every_one_and_its_span() {
    const EVENTS: u64 = 100_000;
    let server = FakeIngestion::start();
    let (layer, guard) = to_server(&server, 2 * EVENTS as usize).build().unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let _span = info_span!("connection", peer = "db-1").entered();
        for i in 0..EVENTS {
            tracing::info!(i, "line");
        }
    });
    let envelopes = finish(&server, guard);
    let span = envelopes
        .iter()
        .find(|e| base_type(e) == "RemoteDependencyData")
        .expect("the span's item");
    let span_id = span["data"]["baseData"]["id"].as_str().unwrap();
    let messages: Vec<&Value> = envelopes
        .iter()
        .filter(|e| base_type(e) == "MessageData")
        .collect();
    assert_eq!(messages.len() as u64, EVENTS);
    assert_eq!(envelopes.len() as u64, EVENTS + 1);
    let numbers: HashSet<&str> = messages
        .iter()
        .map(|m| m["data"]["baseData"]["properties"]["i"].as_str().unwrap())
        .collect();
    assert_eq!(numbers.len() as u64, EVENTS, "each line once");
    for m in &messages {
        assert_eq!(tag(m, "ai.operation.parentId"), span_id);
        assert_eq!(tag(m, "ai.operation.id"), tag(span, "ai.operation.id"));
        assert_eq!(tag(m, "ai.operation.name"), "connection");
    }
}

#[test]
fn events_from_four_threads_into_one_span_are_all_delivered() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 2_500;
    let server = FakeIngestion::start();
    let (layer, guard) = to_server(&server, 65_536).build().unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        let shared = info_span!("shared");
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let (shared, dispatch) = (shared.clone(), dispatch.clone());
                scope.spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        for i in 0..PER_THREAD {
                            tracing::info!(parent: &shared, t, i, "from a thread");
                        }
                    })
                });
            }
        });
    });
    let envelopes = finish(&server, guard);
    let span_id = envelopes
        .iter()
        .find(|e| base_type(e) == "RemoteDependencyData")
        .map(|e| e["data"]["baseData"]["id"].as_str().unwrap().to_owned())
        .expect("the span's item");
    let lines: HashSet<(String, String)> = envelopes
        .iter()
        .filter(|e| base_type(e) == "MessageData")
        .inspect(|m| assert_eq!(tag(m, "ai.operation.parentId"), span_id))
        .map(|m| {
            let p = &m["data"]["baseData"]["properties"];
            (p["t"].to_string(), p["i"].to_string())
        })
        .collect();
    assert_eq!(lines.len() as u64, THREADS * PER_THREAD);
}

/// A span that never closes (a connection, a background loop) still shows
/// its logs: the export interval sends them.
#[test]
fn the_events_of_a_span_still_open_arrive_with_the_export_interval() {
    let server = FakeIngestion::start();
    let clock = ManualClock::new();
    let interval = Duration::from_secs(5);
    let (layer, guard) = to_server(&server, 1024)
        .with_export_interval(interval)
        .with_manual_clock(&clock)
        .build()
        .unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let span = tracing::dispatcher::with_default(&dispatch, || {
        let span = info_span!("background loop");
        span.in_scope(|| tracing::info!(round = 1_u64, "tick"));
        span
    });
    // Nothing is sent before the interval passes (one event is no full batch).
    assert!(server.requests().is_empty());
    clock.advance(interval);
    let arrived = server.wait_for_envelopes(1, Duration::from_secs(60));
    assert_eq!(arrived.len(), 1, "the event, while its span is open");
    assert_eq!(base_type(&arrived[0]), "MessageData");
    assert_eq!(arrived[0]["data"]["baseData"]["message"], "tick");
    assert_eq!(tag(&arrived[0], "ai.operation.name"), "background loop");
    drop(span);
    let envelopes = finish(&server, guard);
    assert_eq!(envelopes.len(), 2, "then the span, when it closes");
    assert_eq!(
        tag(&envelopes[0], "ai.operation.parentId"),
        envelopes[1]["data"]["baseData"]["id"].as_str().unwrap()
    );
}

/// Events of spans still open when the exporter stops are shown on their
/// own, with their span's ids, not lost.
#[test]
fn events_of_spans_open_at_shutdown_are_shown_on_their_own() {
    let exporter = tracing_appinsights::InMemoryExporter::new();
    let (layer, guard) = Builder::new()
        .with_in_memory_exporter(exporter.clone())
        .build()
        .unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let span = tracing::dispatcher::with_default(&dispatch, || {
        let span = info_span!("open");
        span.in_scope(|| tracing::info!("still running"));
        span
    });
    guard.shutdown(Duration::from_secs(10)).unwrap();
    let events = exporter.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].message, "still running");
    let in_span = events[0].span.as_ref().expect("its span");
    use tracing_appinsights::AppInsightsSpanExt;
    assert_eq!(Some(in_span.trace_id), span.trace_id());
    assert_eq!(Some(in_span.span_id), span.span_id());
    let stats = guard.stats();
    assert_eq!((stats.exported, stats.in_memory), (1, 0));
    assert!(stats.balances(), "{stats:#?}");
    drop(span);
}
