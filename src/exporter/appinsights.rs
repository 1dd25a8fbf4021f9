//! The Application Insights sink: records → envelopes → JSON array bodies
//! of about 1 MiB → gzip → POST `{endpoint}/v2.1/track`.

use bytes::Bytes;

use super::sink::ExportOutcome;
use super::transport::{parse_track_response, SendOutcome, Transport};
use crate::envelope::{map_record, write_envelope, Envelope, EnvelopeContext};
use crate::span_data::Record;

/// Largest request body before gzip (design §6: about 1 MiB).
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Sends batches to the ingestion endpoint.
pub(crate) struct AppInsightsSink {
    transport: Transport,
    context: EnvelopeContext,
    /// Reused between batches: serialised items and their records.
    scratch: Vec<u8>,
    warned: Warned,
}

impl std::fmt::Debug for AppInsightsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppInsightsSink")
            .field("url", &self.transport.track_url())
            .finish_non_exhaustive()
    }
}

/// Which failures were already reported at warning level (later ones are
/// logged at debug level, so a dead endpoint does not flood the logs).
#[derive(Debug, Default)]
struct Warned {
    status: bool,
    network: bool,
    partial: bool,
}

/// One request body: items of whole records, in order.
struct Chunk {
    body: Vec<u8>,
    /// For each item in the body, the index of its record in the batch.
    item_records: Vec<usize>,
}

impl Chunk {
    fn new() -> Self {
        Chunk {
            body: Vec::with_capacity(64 * 1024),
            item_records: Vec::new(),
        }
    }

    fn push_item(&mut self, item: &[u8], record: usize) {
        self.body.push(if self.item_records.is_empty() {
            b'['
        } else {
            b','
        });
        self.body.extend_from_slice(item);
        self.item_records.push(record);
    }

    fn finish(mut self) -> (Bytes, Vec<usize>) {
        self.body.push(b']');
        (Bytes::from(self.body), self.item_records)
    }
}

impl AppInsightsSink {
    pub(crate) fn new(transport: Transport, context: EnvelopeContext) -> Self {
        AppInsightsSink {
            transport,
            context,
            scratch: Vec::new(),
            warned: Warned::default(),
        }
    }

    /// Maps and sends one batch; every record ends up exported or failed.
    pub(crate) async fn export(&mut self, batch: &[Record]) -> ExportOutcome {
        let chunks = self.serialize(batch);
        let mut failed_records = vec![false; batch.len()];
        for chunk in chunks {
            let (body, item_records) = chunk.finish();
            for item in self.send(body, item_records.len()).await {
                if let Some(&record) = item_records.get(item) {
                    failed_records[record] = true;
                }
            }
        }
        let failed = failed_records.iter().filter(|f| **f).count();
        ExportOutcome {
            exported: batch.len() - failed,
            failed,
        }
    }

    /// Serialises every record's envelopes into bodies of at most about
    /// [`MAX_BODY_BYTES`].
    fn serialize(&mut self, batch: &[Record]) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        let mut current = Chunk::new();
        let mut envelopes: Vec<Envelope<'_>> = Vec::new();
        for (index, record) in batch.iter().enumerate() {
            envelopes.clear();
            map_record(record, &self.context, &mut envelopes);
            for envelope in &envelopes {
                self.scratch.clear();
                write_envelope(envelope, &mut self.scratch);
                let full = current.body.len() + self.scratch.len() + 2 > MAX_BODY_BYTES;
                if full && !current.item_records.is_empty() {
                    chunks.push(std::mem::replace(&mut current, Chunk::new()));
                }
                current.push_item(&self.scratch, index);
            }
        }
        if !current.item_records.is_empty() {
            chunks.push(current);
        }
        chunks
    }

    /// Sends one body; returns the indices of the items that were not
    /// accepted.
    async fn send(&mut self, body: Bytes, items: usize) -> Vec<usize> {
        match self.transport.send(body).await {
            SendOutcome::Response { status, body, .. } if status == 200 || status == 206 => {
                self.rejected_items(status, &body, items)
            }
            SendOutcome::Response { status, body, .. } => {
                let message = service_message(&body);
                warn_or_debug(
                    &mut self.warned.status,
                    format_args!(
                        "Exporter.SendFailed: the ingestion service answered {status} ({message}); \
                         {items} items dropped"
                    ),
                );
                (0..items).collect()
            }
            SendOutcome::Timeout => {
                warn_or_debug(
                    &mut self.warned.network,
                    format_args!(
                        "Exporter.SendFailed: the request timed out; {items} items dropped"
                    ),
                );
                (0..items).collect()
            }
            SendOutcome::Connect(error) => {
                warn_or_debug(
                    &mut self.warned.network,
                    format_args!(
                        "Exporter.SendFailed: could not reach the ingestion endpoint ({error}); \
                         {items} items dropped"
                    ),
                );
                (0..items).collect()
            }
        }
    }

    /// The items a 200/206 answer did not accept, from its per-item errors.
    fn rejected_items(&mut self, status: u16, body: &[u8], items: usize) -> Vec<usize> {
        let Some(response) = parse_track_response(body) else {
            // A 200 without a readable body: the service took the request.
            if status == 200 {
                return Vec::new();
            }
            warn_or_debug(
                &mut self.warned.partial,
                format_args!("Exporter.PartialSuccess: unreadable 206 body; {items} items dropped"),
            );
            return (0..items).collect();
        };
        let rejected: Vec<usize> = response
            .errors
            .iter()
            .map(|e| e.index)
            .filter(|i| *i < items)
            .collect();
        if !rejected.is_empty() || (response.items_accepted as usize) < items {
            let first = response.errors.first();
            warn_or_debug(
                &mut self.warned.partial,
                format_args!(
                    "Exporter.PartialSuccess: {} of {items} items accepted; first error: {} {}",
                    response.items_accepted,
                    first.map_or(0, |e| e.status_code),
                    first.map_or("", |e| e.message.as_str()),
                ),
            );
        }
        rejected
    }
}

/// The service's own words from an error body (`errors[0].message`), or
/// the start of the body, bounded.
fn service_message(body: &[u8]) -> String {
    if let Some(message) = parse_track_response(body)
        .and_then(|r| r.errors.into_iter().next())
        .map(|e| e.message)
    {
        return crate::text::truncate_str(&message, 256).to_owned();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(256)]);
    text.trim().to_owned()
}

/// Logs the first occurrence of a kind of failure as a warning, the rest at
/// debug level.
fn warn_or_debug(warned: &mut bool, message: std::fmt::Arguments<'_>) {
    if *warned {
        tracing::debug!(target: "tracing_appinsights", "{message}");
    } else {
        *warned = true;
        tracing::warn!(target: "tracing_appinsights", "{message}");
    }
}
