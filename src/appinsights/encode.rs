//! Records into request bodies: each record is mapped to its envelopes
//! (`envelope`), each envelope serialised, and the serialised items framed
//! into JSON arrays of at most [`MAX_BODY_BYTES`](super::payload::MAX_BODY_BYTES).

use super::envelope::{map_record, write_envelope, Envelope, EnvelopeContext};
use super::payload::PayloadBuilder;
use crate::pipeline::items_of;
use crate::record::Record;

/// Encodes batches for one instrumentation key and resource.
#[derive(Debug)]
pub(crate) struct Encoder {
    context: EnvelopeContext,
    /// Reused between items.
    scratch: Vec<u8>,
}

/// What [`Encoder::encode`] made of a batch.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    /// The bodies, each at most about 1 MiB.
    pub(crate) bodies: Vec<PayloadBuilder>,
    /// Items the mapping made beyond what [`items_of`] counted (zero, as a
    /// test pins down; counted if it ever is not, to keep the books).
    pub(crate) extra: u64,
    /// Items that could not be encoded, dropped.
    pub(crate) unencodable: u64,
}

impl Encoder {
    pub(crate) fn new(context: EnvelopeContext) -> Self {
        Encoder {
            context,
            scratch: Vec::new(),
        }
    }

    /// Maps, serialises and frames `batch`.
    pub(crate) fn encode(&mut self, batch: &[Record]) -> Encoded {
        let mut encoded = Encoded::default();
        let mut builder = PayloadBuilder::default();
        let mut envelopes: Vec<Envelope<'_>> = Vec::new();
        for record in batch {
            envelopes.clear();
            map_record(record, &self.context, &mut envelopes);
            let expected = items_of(record);
            let mapped = envelopes.len() as u64;
            encoded.extra += mapped.saturating_sub(expected);
            encoded.unencodable += expected.saturating_sub(mapped);
            for envelope in &envelopes {
                self.scratch.clear();
                write_envelope(envelope, &mut self.scratch);
                if self.scratch.is_empty() {
                    encoded.unencodable += 1;
                    continue;
                }
                if builder.would_overflow(self.scratch.len()) && !builder.is_empty() {
                    encoded.bodies.push(std::mem::take(&mut builder));
                }
                builder.push(&self.scratch);
            }
        }
        if !builder.is_empty() {
            encoded.bodies.push(builder);
        }
        encoded
    }
}
