//! The seam the crate's own benchmarks measure through (`benches/envelope.rs`),
//! behind the `bench-internals` feature: the exporter's real encoder and
//! gzip, not a copy. Not part of the public API; no stability promise.

use crate::appinsights::encode;
use crate::appinsights::envelope::{EnvelopeContext, TelemetrySettings};
use crate::record::{Record, SpanData};

/// Encodes spans exactly as the Application Insights sink does: envelopes,
/// JSON arrays of at most 1 MiB, then gzip as on the first attempt.
#[derive(Debug)]
pub struct Encoder {
    encoder: encode::Encoder,
    records: Vec<Record>,
    bodies: Vec<bytes::Bytes>,
}

impl Encoder {
    /// An encoder of `spans` (copied once, outside any measurement).
    pub fn new(spans: &[SpanData]) -> Self {
        let context = EnvelopeContext::new(
            "00000000-0000-0000-0000-000000000000",
            &TelemetrySettings {
                cloud_role: Some("bench".into()),
                cloud_role_instance: Some("bench-1".into()),
                application_version: None,
            },
            1.0,
        );
        Encoder {
            encoder: encode::Encoder::new(context),
            records: spans
                .iter()
                .map(|s| Record::Span(Box::new(s.clone())))
                .collect(),
            bodies: Vec::new(),
        }
    }

    /// Maps, serialises and frames the spans, returning the bytes of the
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
