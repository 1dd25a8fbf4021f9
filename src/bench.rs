//! The seam the crate's own benchmarks measure through, behind the
//! `bench-internals` feature: the exporter's real encoder
//! (`appinsights::encode::Encoder::encode`, the one the Application Insights
//! sink runs) and its gzip, not a copy (`benches/envelope.rs`), and a layer
//! with Live Metrics watching or not and no service behind it
//! (`examples/span_cost.rs`). Not part of the public API; no stability
//! promise.

use std::sync::Arc;

use tracing_core::Subscriber;
use tracing_subscriber::registry::LookupSpan;

use crate::appinsights::encode;
use crate::appinsights::envelope::{EnvelopeContext, TelemetrySettings};
use crate::live::Live;
use crate::record::{EventData, EventSpan, Record, SpanData};
use crate::{AppInsightsLayer, BuildError, Builder, ExporterGuard};

/// Builds `builder`'s layer as [`Builder::build`] does, with Live Metrics
/// counting as when the service says someone watches (`watching`) or not,
/// whatever the sink: the application thread's cost of Live Metrics without
/// a service. Nothing is ever posted.
pub fn build_with_live<S>(
    builder: Builder,
    watching: bool,
) -> Result<(AppInsightsLayer<S>, ExporterGuard), BuildError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    builder.build_with_sink(move |builder, sampler, ledger| {
        let (sink, notes, _) = builder.sink(sampler, ledger)?;
        let live = Arc::new(Live::default());
        live.set_watching(watching);
        Ok((sink, notes, Some(live)))
    })
}

/// Encodes records exactly as the Application Insights sink does: envelopes,
/// JSON arrays of at most 1 MiB, then gzip as on the first attempt.
#[derive(Debug)]
pub struct Encoder {
    encoder: encode::Encoder,
    records: Vec<Record>,
    bodies: Vec<bytes::Bytes>,
}

/// The context every benchmark encodes for.
fn context() -> EnvelopeContext {
    EnvelopeContext::new(
        "00000000-0000-0000-0000-000000000000",
        &TelemetrySettings {
            cloud_role: Some("bench".into()),
            cloud_role_instance: Some("bench-1".into()),
            application_version: None,
        },
        1.0,
    )
}

impl Encoder {
    /// An encoder of `spans` as span records, annotations included (copied
    /// once, outside any measurement).
    pub fn new(spans: &[SpanData]) -> Self {
        Self::of(
            spans
                .iter()
                .map(|s| Record::Span(Box::new(s.clone())))
                .collect(),
        )
    }

    /// An encoder of `spans` as the layer sends them: each span's record
    /// without annotations, then each of its annotations as an event record
    /// of its own, with the span's context (copied once, outside any
    /// measurement).
    pub fn traced(spans: &[SpanData]) -> Self {
        let mut records = Vec::with_capacity(spans.len() * 2);
        for span in spans {
            let mut span = span.clone();
            for annotation in std::mem::take(&mut span.annotations) {
                records.push(Record::Event(Box::new(EventData {
                    timestamp: annotation.timestamp,
                    level: annotation.level,
                    target: annotation.target,
                    message: annotation.description,
                    attributes: annotation.attributes,
                    span: Some(EventSpan {
                        trace_id: span.context.trace_id,
                        span_id: span.context.span_id,
                        operation_name: span.operation_name.clone(),
                        sampled_remotely: span.sampled_remotely,
                        sample_rate: span.sample_rate,
                    }),
                    sample_rate: None,
                })));
            }
            // The span closes after its events: its record comes last.
            records.push(Record::Span(Box::new(span)));
        }
        Self::of(records)
    }

    fn of(records: Vec<Record>) -> Self {
        Encoder {
            encoder: encode::Encoder::new(context()),
            records,
            bodies: Vec::new(),
        }
    }

    /// How many records there are (spans and events).
    pub fn records(&self) -> usize {
        self.records.len()
    }

    /// Maps, serialises and frames the records, returning the bytes of the
    /// request bodies.
    pub fn to_json(&mut self) -> usize {
        let encoded = self.encoder.encode(&self.records);
        self.bodies = encoded.bodies.into_iter().map(|b| b.into_body()).collect();
        self.bodies.iter().map(|b| b.len()).sum()
    }

    /// The first request body of the last [`to_json`](Self::to_json).
    pub fn json(&self) -> &[u8] {
        self.bodies.first().map_or(&[], |b| b)
    }

    /// [`to_json`](Self::to_json) then gzip: the bytes on the wire.
    pub fn to_wire(&mut self) -> usize {
        self.to_json();
        self.bodies
            .iter()
            .map(|b| crate::appinsights::gzip::compress(b).map_or(0, |gz| gz.len()))
            .sum()
    }
}
