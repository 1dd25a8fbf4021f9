//! The layer beside `fmt`, `EnvFilter` and per-layer filters changes
//! nothing the other layers see.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{debug, info, info_span, warn};
use tracing_appinsights::{Builder, InMemoryExporter};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// A `fmt` writer collecting everything into one buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn workload() {
    let _outer = info_span!("outer", user = "bob").entered();
    debug!("debug detail");
    let inner = tracing::debug_span!("inner", n = 1_u64);
    inner.in_scope(|| info!(k = 2_u64, "inside inner"));
    warn!("a warning");
}

fn fmt_layer<S>(buffer: &Buffer) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(buffer.clone())
        .without_time()
        .with_ansi(false)
}

/// What `fmt` alone prints for the workload.
fn fmt_alone() -> String {
    let alone = Buffer::default();
    tracing::subscriber::with_default(
        tracing_subscriber::registry().with(fmt_layer(&alone)),
        workload,
    );
    alone.text()
}

/// Our layer, recording into an in-memory exporter.
fn ours<S>() -> (
    tracing_appinsights::AppInsightsLayer<S>,
    tracing_appinsights::ExporterGuard,
    InMemoryExporter,
)
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let exporter = InMemoryExporter::new();
    let (layer, guard) = Builder::new()
        .with_in_memory_exporter(exporter.clone())
        .build()
        .unwrap();
    (layer, guard, exporter)
}

#[test]
fn fmt_output_is_the_same_with_and_without_the_layer() {
    let alone = fmt_alone();
    let beside = Buffer::default();
    let (layer, guard, exporter) = ours();
    tracing::subscriber::with_default(
        tracing_subscriber::registry()
            .with(fmt_layer(&beside))
            .with(layer),
        workload,
    );
    guard.flush(Duration::from_secs(5)).unwrap();

    assert_eq!(alone, beside.text());
    assert!(alone.contains("debug detail"));
    assert_eq!(exporter.spans().len(), 2);
}

#[test]
fn a_global_env_filter_applies_to_both() {
    let text = Buffer::default();
    let (layer, guard, exporter) = ours();
    let subscriber = tracing_subscriber::registry()
        .with(EnvFilter::new("info"))
        .with(fmt_layer(&text))
        .with(layer);
    tracing::subscriber::with_default(subscriber, workload);
    guard.flush(Duration::from_secs(5)).unwrap();

    assert!(!text.text().contains("debug detail"));
    let spans = exporter.spans();
    assert_eq!(spans.len(), 1, "the debug span is filtered out");
    assert_eq!(spans[0].name, "outer");
    // The info event inside the filtered-out debug span lands on `outer`.
    let messages: Vec<_> = spans[0]
        .annotations
        .iter()
        .map(|a| a.description.to_string())
        .collect();
    assert_eq!(messages, ["inside inner", "a warning"]);
}

#[test]
fn a_per_layer_filter_on_ours_leaves_fmt_untouched() {
    let alone = fmt_alone();
    let beside = Buffer::default();
    let (layer, guard, exporter) = ours();
    let subscriber = tracing_subscriber::registry()
        .with(fmt_layer(&beside))
        .with(layer.with_filter(LevelFilter::WARN));
    tracing::subscriber::with_default(subscriber, workload);
    guard.flush(Duration::from_secs(5)).unwrap();

    assert_eq!(alone, beside.text());
    assert!(exporter.spans().is_empty(), "no span is at WARN");
    let events = exporter.events();
    assert_eq!(events.len(), 1, "the warning, outside any span we see");
    assert_eq!(events[0].message, "a warning");
}

/// Reloading at run time: the filter is what changes, so it is the filter
/// that goes in `reload::Layer` (the README's advice). The propagation API
/// still reaches the layer through the reloadable filter.
#[test]
fn a_reloadable_filter_on_ours_keeps_the_propagation_api() {
    use tracing_appinsights::AppInsightsSpanExt;
    use tracing_subscriber::reload;

    let (layer, guard, exporter) = ours();
    let (filter, handle) = reload::Layer::new(EnvFilter::new("info"));
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(filter));
    tracing::subscriber::with_default(subscriber, || {
        let span = info_span!("call", otel.kind = "client");
        let mut headers = http::HeaderMap::new();
        span.inject_context(&mut headers);
        let traceparent = headers["traceparent"].to_str().unwrap().to_owned();
        let trace_id = span.trace_id().expect("the span's trace id").to_string();
        assert_eq!(&traceparent[3..35], trace_id);
        drop(span);
        handle.reload(EnvFilter::new("warn")).unwrap();
        info_span!("after reload").in_scope(|| {});
        warn!("kept");
    });
    guard.flush(Duration::from_secs(5)).unwrap();

    let names: Vec<_> = exporter
        .spans()
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(
        names,
        ["call"],
        "the INFO span after the reload is filtered out"
    );
    assert_eq!(exporter.events().len(), 1);
}
