//! Sampling: decided once per trace in `on_new_span`, inherited by children.

use crate::support::capture::capture_with;
use tracing::info_span;
use tracing_appinsights::{Builder, Sampler};

#[test]
fn always_off_records_nothing_and_queues_nothing() {
    let out = capture_with(Builder::new().with_sampler(Sampler::always_off()), || {
        let _root = info_span!("root", field = 1_u64).entered();
        info_span!("child").in_scope(|| tracing::info!("inside"));
    });
    assert!(out.spans.is_empty());
    assert_eq!(out.stats.queued, 0);
    assert_eq!(out.stats.exported, 0);
}

#[test]
fn children_inherit_the_roots_decision() {
    // At 50%, each trace is all in or all out: never a child without its root.
    let out = capture_with(
        Builder::new().with_sampler(Sampler::probability(0.5)),
        || {
            for _ in 0..200 {
                let _root = info_span!("root").entered();
                let _child = info_span!("child").entered();
                info_span!("grandchild").in_scope(|| tracing::info!("event"));
            }
        },
    );
    let roots = out.spans.iter().filter(|s| s.name == "root").count();
    assert!(roots > 0 && roots < 200, "{roots} of 200 sampled");
    assert_eq!(out.spans.len(), roots * 3);
    for span in out.spans.iter().filter(|s| s.name == "grandchild") {
        assert_eq!(span.annotations.len(), 1);
    }
}

#[test]
fn an_unsampled_trace_records_none_of_its_events() {
    let out = capture_with(Builder::new().with_sampler(Sampler::always_off()), || {
        let _root = info_span!("root").entered();
        tracing::info!("inside an unsampled span");
    });
    assert!(out.spans.is_empty());
    assert!(out.events.is_empty());
}

#[test]
fn half_of_20_000_roots_are_sampled_within_3_percent() {
    let builder = Builder::new()
        .with_sampler(Sampler::probability(0.5))
        .with_max_queue_size(32_768);
    let out = capture_with(builder, || {
        for _ in 0..20_000 {
            info_span!("root").in_scope(|| {});
        }
    });
    let sampled = out.spans.len() as f64 / 20_000.0;
    assert!(
        (0.47..=0.53).contains(&sampled),
        "sampled fraction {sampled}"
    );
    assert_eq!(out.stats.dropped_queue_full, 0);
}

/// Before, events outside spans were sampled at the trace rate: with
/// `probability(0.1)` about 200 of 2,000 log lines were kept. They have
/// their own sampler, which keeps all by default.
#[test]
fn events_outside_spans_are_kept_by_the_log_sampler_whatever_the_trace_rate() {
    let out = capture_with(
        Builder::new()
            .with_sampler(Sampler::probability(0.1))
            .with_max_queue_size(8_192),
        || {
            for i in 0..2_000 {
                tracing::info!(i, "a log line");
            }
        },
    );
    assert_eq!(out.events.len(), 2_000);
    assert!(out.events.iter().all(|e| e.sample_rate == Some(100.0)));
    let off = capture_with(Builder::new().with_sampler(Sampler::always_off()), || {
        tracing::info!("kept");
    });
    assert_eq!(off.events.len(), 1);
    let none = capture_with(
        Builder::new().with_log_sampler(Sampler::always_off()),
        || {
            tracing::info!("dropped");
            tracing::info_span!("s").in_scope(|| tracing::info!("in a sampled span: kept"));
        },
    );
    assert!(none.events.is_empty());
    assert_eq!(none.span("s").annotations.len(), 1);
    let quarter = capture_with(
        Builder::new()
            .with_log_sampler(Sampler::fixed_percentage(25.0))
            .with_max_queue_size(8_192),
        || {
            for i in 0..4_000 {
                tracing::info!(i, "a log line");
            }
        },
    );
    let kept = quarter.events.len();
    assert!((850..=1_150).contains(&kept), "{kept} of 4,000 at 25 %");
    assert!(quarter.events.iter().all(|e| e.sample_rate == Some(25.0)));
}

#[test]
fn an_invalid_probability_is_a_build_error() {
    for p in [-0.5, 1.5, f64::NAN] {
        let err = Builder::new()
            .with_sampler(Sampler::probability(p))
            .build::<tracing_subscriber::Registry>()
            .unwrap_err();
        assert!(err.to_string().contains("Sampler::probability"), "{err}");
    }
}

/// While sampled spans are alive, the layer keeps their state in a table of
/// its own and tells unsampled spans apart without looking them up. With
/// more alive than the table holds, the states that do not fit go to the
/// registry's extensions (counted): every sampled span's events and
/// children are still recorded, and nothing of the unsampled ones.
#[test]
fn with_thousands_of_sampled_spans_alive_each_keeps_its_events_and_unsampled_ones_none() {
    use tracing_appinsights::{RemoteContext, SpanId, TraceId};
    const SAMPLED: u64 = 10_000; // more than the table's 8,192 slots
    let builder = Builder::new()
        .with_sampler(Sampler::always_off())
        .with_max_queue_size(65_536);
    let out = capture_with(builder, || {
        let sampled: Vec<_> = (1..=SAMPLED)
            .map(|i| {
                let caller = RemoteContext::new(
                    TraceId::from_int(i.into()),
                    SpanId::from_int(i),
                    Some(true),
                )
                .expect("valid ids");
                caller.in_scope(|| info_span!("sampled", i))
            })
            .collect();
        let unsampled: Vec<_> = (0..1_000).map(|i| info_span!("unsampled", i)).collect();
        for span in sampled.iter().chain(&unsampled) {
            span.in_scope(|| {
                tracing::info!("inside");
                info_span!("child").in_scope(|| {});
            });
        }
        for span in &unsampled {
            span.record("i", 0_u64);
        }
        drop(unsampled);
        drop(sampled);
    });
    let sampled: Vec<_> = out.spans.iter().filter(|s| s.name == "sampled").collect();
    assert_eq!(sampled.len() as u64, SAMPLED);
    assert!(sampled
        .iter()
        .all(|s| s.annotations.len() == 1 && s.child_span_count == 1));
    let children = out.spans.iter().filter(|s| s.name == "child").count();
    assert_eq!(children as u64, SAMPLED);
    assert!(out.spans.iter().all(|s| s.name != "unsampled"));
    assert!(out.events.is_empty());
    assert_eq!(out.stats.dropped_queue_full, 0);
    // More than the table holds: some states went to the extensions,
    // counted, and none was lost.
    assert!(out.stats.table_overflows > 0, "{:#?}", out.stats);
}

/// With a sampled span alive on one thread, an event on another thread is
/// recorded exactly when it is in that span: entered there (the layer
/// notes the sampled spans each thread enters) or named as its parent; an
/// event in an unsampled span there is not.
#[test]
fn events_on_other_threads_are_recorded_exactly_when_in_a_sampled_span() {
    use tracing_appinsights::{RemoteContext, SpanId, TraceId};
    let builder = Builder::new().with_sampler(Sampler::always_off());
    let out = capture_with(builder, || {
        let caller = RemoteContext::new(TraceId::from_int(7), SpanId::from_int(7), Some(true))
            .expect("valid ids");
        let sampled = caller.in_scope(|| info_span!("sampled"));
        let _here = sampled.enter();
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        std::thread::scope(|scope| {
            scope.spawn(|| {
                tracing::dispatcher::with_default(&dispatch, || {
                    info_span!("unsampled").in_scope(|| tracing::info!("not recorded"));
                    tracing::info!(parent: &sampled, "named parent");
                    sampled.in_scope(|| {
                        tracing::info!("entered here too");
                        info_span!("child").in_scope(|| tracing::info!("in the child"));
                    });
                    tracing::info!("outside, for the log sampler");
                })
            });
        });
    });
    let span = out.span("sampled");
    let messages: Vec<&str> = span
        .annotations
        .iter()
        .map(|a| a.description.as_str())
        .collect();
    assert_eq!(messages, ["named parent", "entered here too"]);
    let child = out.span("child");
    assert_eq!(child.annotations[0].description, "in the child");
    assert_eq!(child.parent_span_id, Some(span.context.span_id));
    let outside: Vec<&str> = out.events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(outside, ["outside, for the log sampler"]);
}

/// A rate-limited sampler decides at the root and every child and event
/// follows: a trace is kept whole, at one `sampleRate` (the Python
/// exporter decides again for each child and drops children of kept
/// roots). On a manual clock that does not move, a burst of 200 traces is
/// cut down to a few, at falling percentages of the form 100/n.
#[test]
fn a_rate_limited_trace_is_kept_whole_at_its_roots_rate() {
    let clock = tracing_appinsights::ManualClock::new();
    let out = capture_with(
        Builder::new()
            .with_sampler(Sampler::rate_limited(2.0))
            .with_manual_clock(&clock),
        || {
            for i in 0..200 {
                info_span!("root", i).in_scope(|| {
                    info_span!("child").in_scope(|| tracing::info!("in the child"));
                });
            }
        },
    );
    let roots: Vec<_> = out.spans.iter().filter(|s| s.name == "root").collect();
    assert!(
        !roots.is_empty() && roots.len() < 20,
        "{} roots kept",
        roots.len()
    );
    for root in &roots {
        let rate = root.sample_rate.expect("a kept root's rate");
        let n = 100.0 / rate;
        assert!((n - n.round()).abs() < 1e-9, "{rate} is 100/n");
        let children: Vec<_> = out
            .spans
            .iter()
            .filter(|s| s.name == "child" && s.parent_span_id == Some(root.context.span_id))
            .collect();
        assert_eq!(children.len(), 1, "the child of every kept root");
        assert_eq!(children[0].sample_rate, Some(rate));
        assert_eq!(children[0].annotations.len(), 1);
    }
    let children = out.spans.iter().filter(|s| s.name == "child").count();
    assert_eq!(children, roots.len(), "no child without its root");
    // The first trace after start is kept, at 100 %.
    assert!(roots.iter().any(|r| r.sample_rate == Some(100.0)));
}

/// On the wire, every item of a kept trace carries the rate its root was
/// kept at; a fixed percentage's items carry it too.
#[test]
fn every_item_of_a_kept_trace_carries_its_sample_rate() {
    use crate::support::delivery::{builder, start, TempDir};
    let server = crate::support::FakeIngestion::start();
    let dir = TempDir::new("sample-rate");
    let (dispatch, guard) = start(
        builder(&server.endpoint(), dir.path()).with_sampler(Sampler::fixed_percentage(50.0)),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..40 {
            info_span!("root").in_scope(|| {
                info_span!("child").in_scope(|| tracing::info!("line"));
            });
        }
        tracing::info!("outside spans");
    });
    guard.flush(std::time::Duration::from_secs(10)).unwrap();
    let envelopes = server.envelopes();
    let outside = envelopes
        .iter()
        .filter(|e| e["data"]["baseData"]["message"] == "outside spans")
        .count();
    assert_eq!(outside, 1, "kept by the log sampler");
    for e in &envelopes {
        let want = if e["data"]["baseData"]["message"] == "outside spans" {
            100.0
        } else {
            50.0
        };
        assert_eq!(e["sampleRate"].as_f64(), Some(want), "{e}");
    }
    // Each kept trace is whole: root, child and its message.
    let traces: std::collections::HashMap<&str, usize> =
        envelopes.iter().fold(Default::default(), |mut m, e| {
            if let Some(op) = e["tags"]["ai.operation.id"].as_str() {
                *m.entry(op).or_default() += 1;
            }
            m
        });
    assert!(!traces.is_empty());
    assert!(traces.values().all(|&n| n == 3), "{traces:?}");
    // Kept by the score of the id they carry, so any other SDK scoring
    // the same id at 50 % keeps them too.
    for id in traces.keys() {
        assert!(ai_score(id) < 0.5, "{id} scores {}", ai_score(id));
    }
    guard.shutdown(std::time::Duration::from_secs(5)).unwrap();
}

/// Application Insights' sampling score of a trace id in hex (its
/// published algorithm: djb2 over the text, as a 32-bit integer, made
/// positive, over `i32::MAX`).
fn ai_score(id: &str) -> f64 {
    let mut h: i32 = 5381;
    for c in id.bytes() {
        h = h.wrapping_mul(33).wrapping_add(i32::from(c));
    }
    let h = if h == i32::MIN { i32::MAX } else { h.abs() };
    f64::from(h) / f64::from(i32::MAX)
}
