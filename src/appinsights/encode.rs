//! Records into request bodies: each record is mapped to its envelopes
//! (`envelope`), each envelope serialised, and the serialised items framed
//! into JSON arrays of at most [`MAX_BODY_BYTES`](super::payload::MAX_BODY_BYTES).

use super::envelope::{map_record, write_envelope, Envelope, EnvelopeContext};
use super::payload::{PayloadBuilder, Written};
use crate::pipeline::items_of;
use crate::record::Record;

/// Encodes batches for one instrumentation key and resource.
#[derive(Debug)]
pub(crate) struct Encoder {
    context: EnvelopeContext,
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

/// A guess at the JSON bytes of one record's items (a typical span or
/// event item is 500 to 700 bytes), to size a body once.
const BYTES_PER_RECORD: usize = 640;

impl Encoder {
    pub(crate) fn new(context: EnvelopeContext) -> Self {
        Encoder { context }
    }

    /// Maps, serialises and frames `batch`. Items are written straight
    /// into the body being built: no copy, except of the one item that
    /// starts the next body.
    pub(crate) fn encode(&mut self, batch: &[Record]) -> Encoded {
        let mut encoded = Encoded::default();
        let mut builder = PayloadBuilder::default();
        builder.reserve(batch.len() * BYTES_PER_RECORD);
        let mut envelopes: Vec<Envelope<'_>> = Vec::with_capacity(2);
        for (i, record) in batch.iter().enumerate() {
            envelopes.clear();
            map_record(record, &self.context, &mut envelopes);
            let expected = items_of(record);
            let mapped = envelopes.len() as u64;
            encoded.extra += mapped.saturating_sub(expected);
            encoded.unencodable += expected.saturating_sub(mapped);
            for envelope in &envelopes {
                match builder.push_with(|body| write_envelope(envelope, body)) {
                    Written::Pushed => {}
                    Written::Nothing => encoded.unencodable += 1,
                    Written::Overflow(item) => {
                        encoded.bodies.push(std::mem::take(&mut builder));
                        builder.reserve((batch.len() - i) * BYTES_PER_RECORD);
                        builder.push(&item);
                    }
                }
            }
        }
        if !builder.is_empty() {
            encoded.bodies.push(builder);
        }
        encoded
    }
}
