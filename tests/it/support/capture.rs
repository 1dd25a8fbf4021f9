//! Run code under a subscriber with the layer and the in-memory exporter,
//! and collect what the exporter received.

use std::time::Duration;

use tracing_appinsights::record::EventData;
use tracing_appinsights::{Builder, InMemoryExporter, SpanData};
use tracing_subscriber::prelude::*;

/// What a run produced.
pub struct Captured {
    pub spans: Vec<SpanData>,
    pub events: Vec<EventData>,
    pub stats: tracing_appinsights::ExporterStats,
}

impl Captured {
    /// The one span named `name`.
    pub fn span(&self, name: &str) -> &SpanData {
        let found: Vec<_> = self.spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(
            found.len(),
            1,
            "expected one span named {name:?}: {:#?}",
            self.spans
        );
        found[0]
    }
}

/// Runs `f` under `registry().with(layer)` built from `builder`, then shuts
/// the exporter down and returns every record.
pub fn capture_with(builder: Builder, f: impl FnOnce()) -> Captured {
    let exporter = InMemoryExporter::new();
    let (layer, guard) = builder
        .with_in_memory_exporter(exporter.clone())
        .build()
        .expect("valid builder");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, f);
    guard.shutdown(Duration::from_secs(10)).expect("shutdown");
    Captured {
        spans: exporter.spans(),
        events: exporter.events(),
        stats: guard.stats(),
    }
}

/// [`capture_with`] with the default builder.
pub fn capture(f: impl FnOnce()) -> Captured {
    capture_with(Builder::new(), f)
}
