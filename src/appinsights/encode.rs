//! Records into request bodies: each record is mapped to its envelopes
//! (`envelope`), each envelope serialised, and the serialised items framed
//! into JSON arrays of at most [`MAX_BODY_BYTES`](super::payload::MAX_BODY_BYTES).

use std::sync::Arc;

use super::envelope::{map_record, write_envelope, Envelope, EnvelopeContext};
use super::payload::{PayloadBuilder, Written};
use super::processor::{enrich, Processed, Processors};
use crate::live::Live;
use crate::pipeline::items_of;
use crate::record::Record;

/// Encodes batches for one instrumentation key and resource.
#[derive(Debug)]
pub(crate) struct Encoder {
    context: EnvelopeContext,
    /// Live Metrics, shown every item while someone watches.
    live: Option<Arc<Live>>,
    /// `Builder::with_processor`'s, in order.
    processors: Processors,
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
    /// What the processors dropped, and their panics.
    pub(crate) processed: Processed,
}

/// A guess at the JSON bytes of one record's items (a typical span or
/// event item is 500 to 700 bytes), to size a body once.
const BYTES_PER_RECORD: usize = 640;

impl Encoder {
    pub(crate) fn new(context: EnvelopeContext) -> Self {
        Encoder {
            context,
            live: None,
            processors: Processors::default(),
        }
    }

    /// Runs `processors` over every item before it is written.
    pub(crate) fn with_processors(mut self, processors: Processors) -> Self {
        self.processors = processors;
        self
    }

    /// Shows the items to Live Metrics while someone watches.
    pub(crate) fn set_live(&mut self, live: Arc<Live>) {
        self.live = Some(live);
    }

    /// Maps, serialises and frames `batch`. Items are written straight
    /// into the body being built: no copy, except of the one item that
    /// starts the next body. With process-wide properties or processors,
    /// each record's items get the properties and go through the
    /// processors after the mapping (and before Live Metrics sees them).
    pub(crate) fn encode(&mut self, batch: &[Record]) -> Encoded {
        let mut encoded = Encoded::default();
        let mut builder = PayloadBuilder::default();
        builder.reserve(batch.len() * BYTES_PER_RECORD);
        let mut envelopes: Vec<Envelope<'_>> = Vec::with_capacity(2);
        let enriching = !self.processors.is_empty() || !self.context.properties().is_empty();
        let mut scratch: Vec<Envelope<'_>> = Vec::new();
        for (i, record) in batch.iter().enumerate() {
            envelopes.clear();
            map_record(record, &self.context, &mut envelopes);
            let expected = items_of(record);
            let mapped = envelopes.len() as u64;
            encoded.extra += mapped.saturating_sub(expected);
            encoded.unencodable += expected.saturating_sub(mapped);
            if enriching {
                enrich(
                    &self.context,
                    &self.processors,
                    &mut envelopes,
                    &mut scratch,
                    &mut encoded.processed,
                );
            }
            if let Some(live) = self.live.as_deref().filter(|l| l.watching()) {
                super::live::observe(live, record, &envelopes);
            }
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

#[cfg(test)]
mod tests {
    use super::super::envelope::TelemetrySettings;
    use super::super::payload::{Origin, MAX_BODY_BYTES};
    use super::*;
    use crate::record::{Attributes, EventData, Text};
    use std::time::{Duration, UNIX_EPOCH};

    /// An event whose item is about `size` bytes of JSON.
    fn event(i: u64, size: usize) -> Record {
        Record::Event(Box::new(EventData {
            timestamp: UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i),
            level: tracing_core::Level::INFO,
            target: "t",
            message: Text::from("m".repeat(size)),
            attributes: Attributes::new(),
            span: None,
            sample_rate: None,
        }))
    }

    /// Items are written straight into the bodies, and a body that would
    /// pass 1 MiB is closed before the item that does not fit: the same
    /// bodies as framing each item written on its own.
    #[test]
    fn bodies_split_before_the_item_that_does_not_fit() {
        let ctx = EnvelopeContext::new("ikey", &TelemetrySettings::default(), 1.0);
        let batch: Vec<Record> = (0..70).map(|i| event(i, 30_000 + i as usize)).collect();
        let encoded = Encoder::new(ctx.clone()).encode(&batch);
        assert_eq!((encoded.extra, encoded.unencodable), (0, 0));
        assert!(encoded.bodies.len() >= 2, "{}", encoded.bodies.len());

        // The reference: each item written alone, framed by `push`.
        let mut want = vec![PayloadBuilder::default()];
        for record in &batch {
            let mut envelopes = Vec::new();
            map_record(record, &ctx, &mut envelopes);
            let mut item = Vec::new();
            write_envelope(&envelopes[0], &mut item);
            let last = want.last_mut().unwrap();
            let body_len = last.finish_len();
            if !last.is_empty() && body_len + item.len() + 2 > MAX_BODY_BYTES {
                want.push(PayloadBuilder::default());
            }
            want.last_mut().unwrap().push(&item);
        }
        let got: Vec<_> = (encoded.bodies.into_iter())
            .map(|b| b.finish(0, Origin::Fresh))
            .collect();
        let want: Vec<_> = want
            .into_iter()
            .map(|b| b.finish(0, Origin::Fresh))
            .collect();
        assert_eq!(got.len(), want.len());
        let mut items = 0;
        for (got, want) in got.iter().zip(&want) {
            let raw = got.body.raw();
            assert_eq!(raw, want.body.raw());
            assert_eq!(got.items, want.items);
            assert!(raw.len() <= MAX_BODY_BYTES, "{}", raw.len());
            let array: Vec<serde_json::Value> = serde_json::from_slice(&raw).unwrap();
            assert_eq!(array.len(), got.len());
            items += got.len();
        }
        assert_eq!(items, batch.len());
    }
}
