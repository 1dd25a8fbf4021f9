//! Entry points for the crate's own benchmarks (`benches/envelope.rs`):
//! not part of the public API, no stability promise.

use crate::envelope::{map_span, write_envelope, Envelope, EnvelopeContext, TelemetrySettings};
use crate::SpanData;

/// Encodes spans exactly as the exporter does: envelopes, one JSON array,
/// gzip.
#[derive(Debug)]
pub struct Encoder {
    context: EnvelopeContext,
    item: Vec<u8>,
    body: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            context: EnvelopeContext::new(
                "00000000-0000-0000-0000-000000000000",
                &TelemetrySettings {
                    cloud_role: Some("bench".into()),
                    cloud_role_instance: Some("bench-1".into()),
                    application_version: None,
                },
                1.0,
            ),
            item: Vec::new(),
            body: Vec::new(),
        }
    }
}

impl Encoder {
    /// Maps and serialises `spans` into one JSON array (kept in the
    /// encoder), returning its length in bytes.
    pub fn to_json(&mut self, spans: &[SpanData]) -> usize {
        self.body.clear();
        self.body.push(b'[');
        let mut envelopes: Vec<Envelope<'_>> = Vec::new();
        for span in spans {
            envelopes.clear();
            map_span(span, &self.context, &mut envelopes);
            for envelope in &envelopes {
                self.item.clear();
                write_envelope(envelope, &mut self.item);
                if self.body.len() > 1 {
                    self.body.push(b',');
                }
                self.body.extend_from_slice(&self.item);
            }
        }
        self.body.push(b']');
        self.body.len()
    }

    /// The JSON array of the last [`to_json`](Self::to_json).
    pub fn json(&self) -> &[u8] {
        &self.body
    }

    /// [`to_json`](Self::to_json) then gzip: the request body's size on the
    /// wire, in bytes.
    pub fn to_wire(&mut self, spans: &[SpanData]) -> usize {
        self.to_json(spans);
        crate::exporter::transport::gzip(&self.body).len()
    }
}
