//! The Application Insights sink: records → envelopes → JSON array bodies
//! of about 1 MiB ([`Payload`]s) → gzip → POST `{endpoint}/v2.1/track`, with
//! retries, redirects and offline storage.
//!
//! The worker never waits on the network. [`AppInsightsSink::accept`]
//! serialises a batch into payloads and returns; payloads are sent by tasks
//! on the worker's runtime, at most a few at a time, while the worker goes
//! on draining the queue. A payload whose send fails waits in memory for
//! its next attempt (exponential backoff with full jitter, or the
//! service's `Retry-After`), bounded in time and in bytes: past the bytes
//! bound, waiting payloads are gzipped in memory first; past either bound
//! a payload goes to offline storage ([`Storage`]), or, without storage, is
//! dropped and counted. Stored blobs are read back and sent while the
//! endpoint is healthy. See `docs/delivery.md`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::task::JoinSet;

use super::retry::{self, Backoff, DropReason, Health, Outcome, Redirects, RetryReason};
use super::storage::{Blob, Storage};
use super::transport::{SendOutcome, Transport, TransportConfig};
use super::{add, items_of, Counters};
use crate::envelope::{map_record, write_envelope, Envelope, EnvelopeContext};
use crate::span_data::Record;

/// Largest request body before gzip (design §6: about 1 MiB).
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The diagnostics target (the layer ignores its own target).
const TARGET: &str = "tracing_appinsights";

/// A stored blob whose send failed is not read again for at least this
/// long (its failure count is not kept on disk).
const MIN_STORED_RETRY: Duration = Duration::from_secs(1);

/// How the sink retries and how much it may hold.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    /// Delays between attempts, and how long a batch is retried in memory.
    pub(crate) backoff: Backoff,
    /// Requests in flight at once while the endpoint is healthy.
    pub(crate) max_in_flight: usize,
    /// Bytes of request bodies held in memory, in flight or waiting; past
    /// it, waiting payloads are gzipped, then the one whose retry is
    /// furthest away is stored (or dropped).
    pub(crate) max_memory: usize,
    /// How long a blob read back from storage is leased while it is sent.
    /// Longer than a request may take, so no other process takes it over
    /// while the answer is awaited.
    pub(crate) lease: Duration,
}

impl Policy {
    /// The defaults, for a request timeout.
    pub(crate) fn new(request_timeout: Duration, max_memory: usize) -> Self {
        Policy {
            backoff: Backoff::default(),
            max_in_flight: 4,
            max_memory,
            lease: request_timeout * 2 + Duration::from_secs(5),
        }
    }
}

/// What the sink woke up for.
#[derive(Debug)]
pub(crate) enum Wake {
    /// A request finished.
    Sent {
        /// The payload's sequence number.
        seq: u64,
        /// What happened.
        outcome: SendOutcome,
    },
    /// A retry (or the end of a pause) is due.
    Timer,
}

/// One request's worth of items: a JSON array and where each item is in it.
#[derive(Debug)]
struct Payload {
    /// Identifies the payload while in flight; orders payloads for flush.
    seq: u64,
    /// `[item,item,…]`: as built, or gzipped while it waits when memory
    /// is tight.
    body: Body,
    /// Each item's byte range in `body`.
    items: Vec<(u32, u32)>,
    origin: Origin,
    /// Whether it was sent before (a send is then counted as a retry).
    sent: bool,
    /// When it was first sent: retries stop `max_elapsed` after.
    first_attempt: Option<Instant>,
    /// The service's `Retry-After`: no attempt before this.
    not_before: Option<Instant>,
}

/// Where a payload's items are counted while it is being sent.
#[derive(Debug)]
enum Origin {
    /// Taken from the queue (or what is left of a payload): in memory.
    Fresh,
    /// Read back from storage: still in storage (the blob is leased) until
    /// the answer settles it.
    Stored(Blob),
}

/// A payload's JSON array.
#[derive(Debug, Clone)]
enum Body {
    /// As built: sent as is (the transport gzips it on the way).
    Raw(Bytes),
    /// Gzipped to take less memory while it waits (a JSON array of
    /// envelopes shrinks five to ten times); unzipped for each attempt.
    Gzipped(Bytes),
}

impl Body {
    /// The bytes it holds in memory.
    fn held(&self) -> usize {
        match self {
            Body::Raw(b) | Body::Gzipped(b) => b.len(),
        }
    }

    fn is_raw(&self) -> bool {
        matches!(self, Body::Raw(_))
    }

    /// The JSON array.
    fn raw(&self) -> Bytes {
        match self {
            Body::Raw(raw) => raw.clone(),
            // Our own gzip stream: it unzips (else, an empty array's worth
            // of nothing rather than a panic on the worker).
            Body::Gzipped(gz) => Bytes::from(gunzip(gz).unwrap_or_default()),
        }
    }

    /// The gzipped form of a raw body (unchanged if gzip fails).
    fn compressed(self) -> Body {
        match self {
            Body::Raw(raw) => match gzip(&raw) {
                Some(gz) => Body::Gzipped(Bytes::from(gz)),
                None => Body::Raw(raw),
            },
            gz => gz,
        }
    }
}

/// Gzips at the fastest level (only memory is at stake, not the wire).
fn gzip(data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(data).ok()?;
    encoder.finish().ok()
}

fn gunzip(data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut out = Vec::with_capacity(data.len() * 6);
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

impl Payload {
    /// A payload of `items`, each a serialised envelope.
    fn new<'a>(seq: u64, items: impl Iterator<Item = &'a [u8]>, origin: Origin) -> Self {
        let mut builder = PayloadBuilder::default();
        for item in items {
            builder.push(item);
        }
        builder.finish(seq, origin)
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn is_fresh(&self) -> bool {
        matches!(self.origin, Origin::Fresh)
    }

    /// Item `i` of `raw`, this payload's JSON array.
    fn item<'a>(&self, raw: &'a [u8], i: usize) -> &'a [u8] {
        let (start, end) = self.items[i];
        raw.get(start as usize..end as usize).unwrap_or_default()
    }

    /// The items of `raw`, this payload's JSON array.
    fn item_slices<'a>(&'a self, raw: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + Clone {
        (0..self.len()).map(move |i| self.item(raw, i))
    }

    /// The items at `indices`, as a fresh payload with the same sequence
    /// number and retry history.
    fn subset(&self, indices: &[usize]) -> Payload {
        let raw = self.body.raw();
        let mut rest = Payload::new(
            self.seq,
            indices.iter().map(|i| self.item(&raw, *i)),
            Origin::Fresh,
        );
        rest.sent = true;
        rest.first_attempt = self.first_attempt;
        rest
    }
}

/// Builds a payload's body item by item.
#[derive(Default)]
struct PayloadBuilder {
    body: Vec<u8>,
    items: Vec<(u32, u32)>,
}

impl PayloadBuilder {
    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether adding an item of `len` bytes would pass [`MAX_BODY_BYTES`].
    fn would_overflow(&self, len: usize) -> bool {
        self.body.len() + len + 2 > MAX_BODY_BYTES
    }

    fn push(&mut self, item: &[u8]) {
        if self.body.is_empty() {
            self.body.reserve(64 * 1024);
        }
        self.body
            .push(if self.items.is_empty() { b'[' } else { b',' });
        let start = self.body.len() as u32;
        self.body.extend_from_slice(item);
        self.items.push((start, self.body.len() as u32));
    }

    fn finish(mut self, seq: u64, origin: Origin) -> Payload {
        if self.items.is_empty() {
            self.body.push(b'[');
        }
        self.body.push(b']');
        Payload {
            seq,
            body: Body::Raw(Bytes::from(self.body)),
            items: self.items,
            origin,
            sent: false,
            first_attempt: None,
            not_before: None,
        }
    }
}

/// Which kinds of trouble were already reported at warning level (later
/// ones go to debug level, so a dead endpoint does not flood the logs).
#[derive(Debug, Default)]
struct Warned {
    retry: bool,
    network: bool,
    partial: bool,
    dropped: bool,
    no_storage: bool,
    unencodable: bool,
    too_old: bool,
    corrupt: bool,
    oversize: bool,
}

/// Sends batches to the ingestion endpoint. See the module docs.
pub(crate) struct AppInsightsSink {
    transport: Arc<Transport>,
    /// The transport's settings, to build one for a redirect's host.
    transport_config: TransportConfig,
    context: EnvelopeContext,
    policy: Policy,
    storage: Option<Storage>,
    /// Reused between items.
    scratch: Vec<u8>,
    /// Payloads waiting for their next attempt, by (due time, seq).
    waiting: BTreeMap<(Instant, u64), Payload>,
    /// Payloads being sent, by seq.
    in_flight: HashMap<u64, Payload>,
    /// The sends, each answering with its payload's seq.
    tasks: JoinSet<(u64, SendOutcome)>,
    /// Which seq each task sends (to settle a send whose task died).
    task_seqs: HashMap<tokio::task::Id, u64>,
    next_seq: u64,
    /// Bytes of bodies in `waiting` and `in_flight`.
    memory: usize,
    /// Items of fresh payloads in `waiting` and `in_flight`.
    fresh_items: u64,
    health: Health,
    redirects: Redirects,
    /// Whether stored blobs are read back (not once stopping).
    reading: bool,
    warned: Warned,
}

impl std::fmt::Debug for AppInsightsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppInsightsSink")
            .field("url", &self.transport.track_url())
            .field("waiting", &self.waiting.len())
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl AppInsightsSink {
    pub(crate) fn new(
        transport: Transport,
        transport_config: TransportConfig,
        context: EnvelopeContext,
        policy: Policy,
        storage: Option<Storage>,
    ) -> Self {
        AppInsightsSink {
            transport: Arc::new(transport),
            transport_config,
            context,
            policy,
            storage,
            scratch: Vec::new(),
            waiting: BTreeMap::new(),
            in_flight: HashMap::new(),
            tasks: JoinSet::new(),
            task_seqs: HashMap::new(),
            next_seq: 0,
            memory: 0,
            fresh_items: 0,
            health: Health::default(),
            redirects: Redirects::default(),
            reading: true,
            warned: Warned::default(),
        }
    }

    // === taking batches ===

    /// Serialises a batch into payloads of at most about [`MAX_BODY_BYTES`]
    /// and queues them for sending. Never waits.
    pub(crate) fn accept(&mut self, batch: &[Record], counters: &Counters) {
        let mut done = Vec::new();
        let mut builder = PayloadBuilder::default();
        let mut envelopes: Vec<Envelope<'_>> = Vec::new();
        let mut unencodable = 0_u64;
        for record in batch {
            envelopes.clear();
            map_record(record, &self.context, &mut envelopes);
            let expected = items_of(record);
            let mapped = envelopes.len() as u64;
            if mapped > expected {
                // Keep the books balanced if the mapping ever makes more
                // items than `items_of` says (a test pins the two together).
                add(&counters.queued, mapped - expected);
                add(&counters.taken, mapped - expected);
            }
            unencodable += expected.saturating_sub(mapped);
            for envelope in &envelopes {
                self.scratch.clear();
                write_envelope(envelope, &mut self.scratch);
                if self.scratch.is_empty() {
                    unencodable += 1;
                    continue;
                }
                if builder.would_overflow(self.scratch.len()) && !builder.is_empty() {
                    done.push(std::mem::take(&mut builder));
                }
                builder.push(&self.scratch);
            }
        }
        if !builder.is_empty() {
            done.push(builder);
        }
        if unencodable > 0 {
            add(&counters.dropped_rejected, unencodable);
            warn_or_debug(
                &mut self.warned.unencodable,
                format_args!("Exporter.Unencodable: {unencodable} items could not be encoded and were dropped"),
            );
        }
        let now = Instant::now();
        for builder in done {
            let payload = builder.finish(self.next_seq, Origin::Fresh);
            self.next_seq += 1;
            self.hold(&payload);
            self.waiting.insert((now, payload.seq), payload);
        }
        self.enforce_memory(counters);
        self.publish(counters);
    }

    // === sending ===

    /// Starts every send that may start now: due payloads first, then
    /// blobs read back from storage while the endpoint is healthy.
    pub(crate) fn pump(&mut self, counters: &Counters) {
        let now = Instant::now();
        loop {
            if self.in_flight.len() >= self.health.max_in_flight(self.policy.max_in_flight) {
                break;
            }
            if self.health.paused_until().is_some_and(|until| until > now) {
                break;
            }
            if let Some(entry) = self.waiting.first_entry() {
                if entry.key().0 <= now {
                    let payload = entry.remove();
                    self.start(payload, counters);
                    continue;
                }
            }
            match self.read_back(counters) {
                Some(payload) => self.start(payload, counters),
                None => break,
            }
        }
        self.publish(counters);
    }

    /// A blob from storage as a payload, when the endpoint is healthy and
    /// memory has room.
    fn read_back(&mut self, counters: &Counters) -> Option<Payload> {
        if !self.may_read_back() {
            return None;
        }
        let storage = self.storage.as_mut()?;
        let blob = storage.take(SystemTime::now() + self.policy.lease);
        self.collect_discarded(counters);
        let mut blob = blob?;
        let items = std::mem::take(&mut blob.items);
        let mut payload = Payload::new(
            self.next_seq,
            items.iter().map(Vec::as_slice),
            Origin::Stored(blob),
        );
        self.next_seq += 1;
        payload.sent = true;
        self.hold(&payload);
        Some(payload)
    }

    /// Sends a payload in a task of the worker's runtime.
    fn start(&mut self, mut payload: Payload, counters: &Counters) {
        if payload.sent {
            add(&counters.retried, payload.len() as u64);
        }
        payload.sent = true;
        payload.first_attempt.get_or_insert_with(Instant::now);
        add(&counters.requests, 1);
        let body = payload.body.raw();
        let transport = Arc::clone(&self.transport);
        let seq = payload.seq;
        // The task gzips the body (on this thread, like everything of this
        // runtime) and sends it.
        let task = self
            .tasks
            .spawn(async move { (seq, transport.send(body).await) });
        self.task_seqs.insert(task.id(), seq);
        self.in_flight.insert(seq, payload);
    }

    /// Waits for a send to finish or a retry to fall due. Cancel-safe.
    pub(crate) async fn wait(&mut self) -> Wake {
        let due = self.next_due();
        let timer = async move {
            match due {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => match joined {
                Ok((seq, outcome)) => Wake::Sent { seq, outcome },
                Err(err) => match self.task_seqs.get(&err.id()) {
                    // A send that panicked: treat it as a failed attempt.
                    Some(&seq) if !err.is_cancelled() => Wake::Sent {
                        seq,
                        outcome: SendOutcome::Connect(format!("the send task failed: {err}")),
                    },
                    _ => Wake::Timer,
                },
            },
            () = timer => Wake::Timer,
        }
    }

    /// When [`pump`](Self::pump) will next have something to start (a
    /// finished send wakes the worker anyway).
    fn next_due(&self) -> Option<Instant> {
        if self.in_flight.len() >= self.health.max_in_flight(self.policy.max_in_flight) {
            return None;
        }
        let retry = self.waiting.keys().next().map(|(due, _)| *due);
        let due = match (retry, self.storage_look()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(match self.health.paused_until() {
            Some(until) => due.max(until),
            None => due,
        })
    }

    /// When storage is next worth reading, if it may be read at all.
    fn storage_look(&self) -> Option<Instant> {
        let storage = self.storage.as_ref()?;
        if !self.may_read_back() {
            return None;
        }
        Some(storage.next_look().unwrap_or_else(Instant::now))
    }

    /// Whether a blob may be read back now: reading is on, memory has
    /// room, and the endpoint is healthy or nothing else is pending (the
    /// blob is then the probe that finds out whether the endpoint is back;
    /// a pause still applies). Fresh data goes first: while some is
    /// pending, one blob at a time is in flight; otherwise as many as
    /// requests may be.
    fn may_read_back(&self) -> bool {
        let reading = self.in_flight.values().filter(|p| !p.is_fresh()).count();
        let fresh_pending = !self.waiting.is_empty() || self.in_flight.len() > reading;
        self.reading
            && (self.health.is_healthy() || !fresh_pending && reading == 0)
            && (reading == 0 || !fresh_pending && self.health.is_healthy())
            && self.memory < self.policy.max_memory / 2
    }

    /// Handles a finished send.
    pub(crate) fn on_wake(&mut self, wake: Wake, counters: &Counters) {
        let Wake::Sent { seq, outcome } = wake else {
            return;
        };
        self.task_seqs.retain(|_, s| *s != seq);
        // Gone when it was stored while in flight (shutdown).
        let Some(payload) = self.in_flight.remove(&seq) else {
            return;
        };
        self.unhold(&payload);
        if outcome == SendOutcome::Timeout {
            add(&counters.timeouts, 1);
        }
        let n = payload.len();
        match retry::classify(&outcome, n, SystemTime::now()) {
            Outcome::Accepted => {
                self.endpoint_answered();
                self.settle(payload, n, 0, counters);
            }
            Outcome::Partial {
                retry,
                rejected,
                first_error,
            } => {
                self.endpoint_answered();
                let (code, message) = first_error.unwrap_or_default();
                warn_or_debug(
                    &mut self.warned.partial,
                    format_args!(
                        "Exporter.PartialSuccess: {} of {n} items accepted, {} to resend, \
                         {rejected} rejected; first error: {code} {message}",
                        n - retry.len() - rejected,
                        retry.len(),
                    ),
                );
                let rest = (!retry.is_empty()).then(|| payload.subset(&retry));
                self.settle(payload, n - retry.len() - rejected, rejected, counters);
                if let Some(rest) = rest {
                    self.retry_later(rest, None, counters);
                }
            }
            Outcome::RetryAll { after, reason } => {
                self.health.on_failure(
                    &reason,
                    after,
                    Instant::now(),
                    &self.policy.backoff,
                    crate::ids::next_u64(),
                );
                self.report_retry(&reason, after, n);
                self.retry_later(payload, after, counters);
            }
            Outcome::Drop(reason) => {
                self.endpoint_answered();
                self.report_drop(&reason, n);
                self.settle(payload, 0, n, counters);
            }
            Outcome::Redirect { endpoint } => self.redirect(payload, endpoint, counters),
        }
        self.publish(counters);
    }

    /// The endpoint gave an answer that is not a retryable failure: it
    /// works. If it was failing, the batches parked for a long backoff
    /// are retried soon (never before a `Retry-After`).
    fn endpoint_answered(&mut self) {
        let was_failing = !self.health.is_healthy();
        self.health.on_success();
        self.redirects.reset();
        if !was_failing {
            return;
        }
        let now = Instant::now();
        let soon = now + self.policy.backoff.base;
        let parked: Vec<(Instant, u64)> = self
            .waiting
            .keys()
            .filter(|(due, _)| *due > soon)
            .copied()
            .collect();
        for key in parked {
            if let Some(payload) = self.waiting.remove(&key) {
                let retry = now + self.policy.backoff.delay(1, crate::ids::next_u64());
                let due = payload
                    .not_before
                    .map_or(retry, |nb| nb.max(retry))
                    .min(key.0);
                self.waiting.insert((due, key.1), payload);
            }
        }
    }

    /// Follows a redirect: later sends go to `endpoint`; the payload is
    /// resent at once. The tenth in a row drops it.
    fn redirect(&mut self, payload: Payload, endpoint: String, counters: &Counters) {
        let n = payload.len();
        if !self.redirects.follow() {
            self.report_drop(
                &DropReason::BadRedirect(format!(
                    "{} redirects in a row, the last to {endpoint}",
                    retry::MAX_REDIRECTS
                )),
                n,
            );
            self.settle(payload, 0, n, counters);
            return;
        }
        let downgrade =
            self.transport_config.endpoint.starts_with("https:") && endpoint.starts_with("http:");
        let config = TransportConfig {
            endpoint: endpoint.clone(),
            ..self.transport_config.clone()
        };
        match (downgrade, Transport::new(config.clone())) {
            (false, Ok(transport)) => {
                tracing::info!(
                    target: TARGET,
                    from = %self.transport_config.endpoint,
                    to = %endpoint,
                    "Exporter.Redirected: the ingestion service redirected us; later requests go \
                     to the new endpoint"
                );
                self.transport = Arc::new(transport);
                self.transport_config = config;
                self.hold(&payload);
                self.waiting.insert((Instant::now(), payload.seq), payload);
            }
            (downgrade, result) => {
                let why = if downgrade {
                    "from https to plain http".to_owned()
                } else {
                    result.err().map(|e| e.to_string()).unwrap_or_default()
                };
                self.report_drop(&DropReason::BadRedirect(format!("{endpoint}: {why}")), n);
                self.settle(payload, 0, n, counters);
            }
        }
    }

    /// Counts a payload's items as accepted or rejected and, for a blob,
    /// deletes it (its items left storage).
    fn settle(&mut self, payload: Payload, accepted: usize, rejected: usize, counters: &Counters) {
        add(&counters.exported, accepted as u64);
        add(&counters.dropped_rejected, rejected as u64);
        if let Origin::Stored(blob) = payload.origin {
            add(&counters.read_back, payload.items.len() as u64);
            if let Some(storage) = &mut self.storage {
                storage.delete(blob);
            }
        }
    }

    /// Schedules the next attempt of a failed payload, or stores it when
    /// that would be past its retry time.
    ///
    /// The backoff step is the endpoint's failures in a row, not the
    /// payload's: a batch unlucky enough to meet a few of a healthy
    /// endpoint's occasional 503s in a row is not parked for long, while
    /// an endpoint that keeps failing is waited for longer and longer.
    fn retry_later(&mut self, mut payload: Payload, after: Option<Duration>, counters: &Counters) {
        let backoff = self.policy.backoff;
        let step = self.health.failures_in_row().max(1);
        let delay = backoff.next_delay(step, after, crate::ids::next_u64());
        let now = Instant::now();
        let due = now + delay;
        payload.not_before = after.map(|after| now + after);
        match payload.origin {
            Origin::Stored(mut blob) => {
                // Back to storage: the lease keeps everyone off until due.
                if let Some(storage) = &mut self.storage {
                    storage.release(&mut blob, SystemTime::now() + delay.max(MIN_STORED_RETRY));
                }
            }
            Origin::Fresh => {
                let first = payload.first_attempt.unwrap_or(now);
                if due.saturating_duration_since(first) > backoff.max_elapsed {
                    self.store(payload, Some(SystemTime::now() + delay), counters);
                } else {
                    self.hold(&payload);
                    self.waiting.insert((due, payload.seq), payload);
                    self.enforce_memory(counters);
                }
            }
        }
    }

    // === storage ===

    /// Writes a fresh payload (already out of `waiting`/`in_flight`) to
    /// storage, leased until `lease_until`; without room, drops it,
    /// counted.
    fn store(&mut self, payload: Payload, lease_until: Option<SystemTime>, counters: &Counters) {
        if let Some(payload) = self.try_store(payload, lease_until, counters) {
            let n = payload.len() as u64;
            add(&counters.dropped_storage_full, n);
            if self.storage.is_none() {
                warn_or_debug(
                    &mut self.warned.no_storage,
                    format_args!(
                        "Exporter.DroppedNoStorage: {n} items could not be sent in time and \
                         offline storage is off; they are dropped (ExporterStats::\
                         dropped_storage_full)"
                    ),
                );
            }
        }
    }

    /// Writes a fresh payload to storage, counted; gives it back when
    /// storage is off, full or unwritable (storage reports that itself).
    fn try_store(
        &mut self,
        payload: Payload,
        lease_until: Option<SystemTime>,
        counters: &Counters,
    ) -> Option<Payload> {
        let Some(storage) = &mut self.storage else {
            return Some(payload);
        };
        let raw = payload.body.raw();
        match storage.put(payload.item_slices(&raw), lease_until) {
            Ok(()) => {
                add(&counters.stored, payload.len() as u64);
                None
            }
            Err(_) => Some(payload),
        }
    }

    /// While the bodies held pass the memory bound, gzips the waiting
    /// payloads, then stores them, the one whose attempt is furthest away
    /// first.
    fn enforce_memory(&mut self, counters: &Counters) {
        while self.memory > self.policy.max_memory {
            let raw = self
                .waiting
                .iter()
                .rev()
                .find(|(_, p)| p.body.is_raw())
                .map(|(key, _)| *key);
            if let Some(key) = raw {
                if let Some(mut payload) = self.waiting.remove(&key) {
                    self.unhold(&payload);
                    payload.body = payload.body.compressed();
                    self.hold(&payload);
                    let gzipped = !payload.body.is_raw();
                    self.waiting.insert(key, payload);
                    if gzipped {
                        continue;
                    }
                }
            }
            let Some(((due, _), payload)) = self.waiting.pop_last() else {
                return;
            };
            self.unhold(&payload);
            let lease = due
                .checked_duration_since(Instant::now())
                .map(|left| SystemTime::now() + left);
            match payload.origin {
                // A blob waiting to be resent to a redirect's host: it is
                // still on disk; let it wait there.
                Origin::Stored(mut blob) => {
                    if let Some(storage) = &mut self.storage {
                        storage.release(&mut blob, lease.unwrap_or_else(SystemTime::now));
                    }
                }
                Origin::Fresh => self.store(payload, lease, counters),
            }
        }
    }

    /// Counts what storage deleted unsent.
    fn collect_discarded(&mut self, counters: &Counters) {
        let Some(storage) = &mut self.storage else {
            return;
        };
        let discarded = storage.take_discarded();
        if discarded.total() == 0 {
            return;
        }
        add(&counters.read_back, discarded.total());
        add(&counters.dropped_too_old, discarded.too_old);
        add(&counters.dropped_corrupt, discarded.corrupt);
        add(&counters.dropped_storage_full, discarded.oversize);
        let dir = storage.dir().display().to_string();
        for (count, warned, what) in [
            (
                discarded.too_old,
                &mut self.warned.too_old,
                "older than the retention (ExporterStats::dropped_too_old)",
            ),
            (
                discarded.corrupt,
                &mut self.warned.corrupt,
                "not telemetry: a damaged or foreign file (ExporterStats::dropped_corrupt)",
            ),
            (
                discarded.oversize,
                &mut self.warned.oversize,
                "in a blob larger than the storage may hold (ExporterStats::dropped_storage_full)",
            ),
        ] {
            if count > 0 {
                warn_or_debug(
                    warned,
                    format_args!(
                        "Storage.Discarded: {count} stored items deleted unsent from {dir}: {what}"
                    ),
                );
            }
        }
    }

    /// Periodic housekeeping: storage cleanup.
    pub(crate) fn maintain(&mut self, counters: &Counters) {
        if let Some(storage) = &mut self.storage {
            storage.maintain();
        }
        self.collect_discarded(counters);
    }

    // === flush and shutdown ===

    /// Every payload accepted so far has a seq below this.
    pub(crate) fn mark(&self) -> u64 {
        self.next_seq
    }

    /// Whether no fresh payload below `mark` is waiting or in flight.
    pub(crate) fn settled(&self, mark: u64) -> bool {
        let pending = |p: &Payload| p.is_fresh() && p.seq < mark;
        !self.waiting.values().any(pending) && !self.in_flight.values().any(pending)
    }

    /// Stores the waiting fresh payloads below `mark`, each leased until
    /// its retry is due. What storage cannot take (it is off, full or
    /// unwritable) stays in memory and goes on being retried: a flush never
    /// drops what could still be delivered.
    pub(crate) fn spill(&mut self, mark: u64, counters: &Counters) {
        let keys: Vec<(Instant, u64)> = self
            .waiting
            .iter()
            .filter(|(_, p)| p.is_fresh() && p.seq < mark)
            .map(|(k, _)| *k)
            .collect();
        let now = Instant::now();
        for key in keys {
            if let Some(payload) = self.waiting.remove(&key) {
                self.unhold(&payload);
                let lease = key
                    .0
                    .checked_duration_since(now)
                    .map(|d| SystemTime::now() + d);
                if let Some(payload) = self.try_store(payload, lease, counters) {
                    self.hold(&payload);
                    self.waiting.insert(key, payload);
                }
            }
        }
        self.publish(counters);
    }

    /// Abandons the requests in flight and stores everything held, free for
    /// the next reader; blobs being sent go back to storage unleased.
    pub(crate) fn spill_all(&mut self, counters: &Counters) {
        self.tasks.abort_all();
        self.task_seqs.clear();
        let payloads: Vec<Payload> = std::mem::take(&mut self.in_flight)
            .into_values()
            .chain(std::mem::take(&mut self.waiting).into_values())
            .collect();
        for payload in payloads {
            self.unhold(&payload);
            match payload.origin {
                Origin::Stored(blob) => {
                    if let Some(storage) = &mut self.storage {
                        storage.unlease(&blob);
                    }
                }
                Origin::Fresh => self.store(payload, None, counters),
            }
        }
        self.publish(counters);
    }

    /// Reads nothing more back from storage.
    pub(crate) fn stop_reading(&mut self) {
        self.reading = false;
    }

    /// Whether nothing is waiting or in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.in_flight.is_empty()
    }

    // === bookkeeping ===

    /// A payload enters memory.
    fn hold(&mut self, payload: &Payload) {
        self.memory += payload.body.held();
        if payload.is_fresh() {
            self.fresh_items += payload.len() as u64;
        }
    }

    /// A payload leaves memory.
    fn unhold(&mut self, payload: &Payload) {
        self.memory -= payload.body.held();
        if payload.is_fresh() {
            self.fresh_items -= payload.len() as u64;
        }
    }

    /// Publishes the gauge of items in memory.
    fn publish(&self, counters: &Counters) {
        counters
            .in_memory
            .store(self.fresh_items, std::sync::atomic::Ordering::Relaxed);
    }

    // === diagnostics ===

    fn report_retry(&mut self, reason: &RetryReason, after: Option<Duration>, n: usize) {
        let (warned, what) = match reason {
            RetryReason::Status(status) => (
                &mut self.warned.retry,
                format!("the ingestion service answered {status}"),
            ),
            RetryReason::Timeout => (&mut self.warned.network, "the request timed out".to_owned()),
            RetryReason::Connect(error) => (
                &mut self.warned.network,
                format!("could not reach the ingestion endpoint ({error})"),
            ),
        };
        let after = after.map_or(String::new(), |a| format!(" (Retry-After {a:?})"));
        warn_or_debug(
            warned,
            format_args!("Exporter.Retrying: {what}{after}; {n} items will be sent again"),
        );
    }

    fn report_drop(&mut self, reason: &DropReason, n: usize) {
        let what = match reason {
            DropReason::Status(status, message) => {
                format!("the ingestion service answered {status} ({message})")
            }
            DropReason::UnreadablePartial => {
                "the ingestion service answered 206 without saying which items it refused"
                    .to_owned()
            }
            DropReason::BadRedirect(why) => format!("unusable redirect: {why}"),
        };
        // An error: data is lost and the cause (a wrong key, a quota) is
        // the user's to fix. The first of each run; later ones at debug.
        let first = !std::mem::replace(&mut self.warned.dropped, true);
        if first {
            tracing::error!(
                target: TARGET,
                "Exporter.Dropped: {what}; {n} items dropped (ExporterStats::dropped_rejected)"
            );
        } else {
            tracing::debug!(
                target: TARGET,
                "Exporter.Dropped: {what}; {n} items dropped (ExporterStats::dropped_rejected)"
            );
        }
    }
}

/// Logs the first occurrence of a kind of trouble as a warning, the rest at
/// debug level.
fn warn_or_debug(warned: &mut bool, message: std::fmt::Arguments<'_>) {
    if *warned {
        tracing::debug!(target: TARGET, "{message}");
    } else {
        *warned = true;
        tracing::warn!(target: TARGET, "{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span_data::{Annotation, Attributes, EventData, SpanData};

    /// `items_of` says how many envelopes `map_record` makes: the counters
    /// rely on it.
    #[test]
    fn items_of_matches_the_mapping() {
        let context = EnvelopeContext::new(
            "00000000-0000-0000-0000-000000000000",
            &Default::default(),
            1.0,
        );
        let span = SpanData {
            name: "s".into(),
            ..Default::default()
        };
        let mut records = vec![Record::Span(Box::new(span.clone()))];
        for n in [1, 3] {
            let mut s = span.clone();
            for i in 0..n {
                s.annotations.push(Annotation::new(
                    SystemTime::now(),
                    format!("event {i}"),
                    tracing::Level::INFO,
                    "app",
                    Attributes::new(),
                ));
            }
            records.push(Record::Span(Box::new(s)));
        }
        records.push(Record::Event(EventData {
            timestamp: SystemTime::now(),
            level: tracing::Level::WARN,
            target: "app",
            message: "outside".into(),
            attributes: Attributes::new(),
        }));
        for record in &records {
            let mut envelopes = Vec::new();
            map_record(record, &context, &mut envelopes);
            assert_eq!(envelopes.len() as u64, items_of(record));
        }
    }

    #[test]
    fn payloads_slice_and_rebuild_items() {
        let items: [&[u8]; 3] = [b"{\"a\":1}", b"{\"b\":2}", b"{\"c\":3}"];
        let p = Payload::new(7, items.into_iter(), Origin::Fresh);
        let raw = p.body.raw();
        assert_eq!(&raw[..], b"[{\"a\":1},{\"b\":2},{\"c\":3}]");
        assert_eq!(p.item(&raw, 1), b"{\"b\":2}");
        let rest = p.subset(&[0, 2]);
        let rest_raw = rest.body.raw();
        assert_eq!(&rest_raw[..], b"[{\"a\":1},{\"c\":3}]");
        assert_eq!(rest.seq, 7);
        assert_eq!(
            rest.item_slices(&rest_raw).collect::<Vec<_>>(),
            [items[0], items[2]]
        );
        let empty = Payload::new(1, std::iter::empty(), Origin::Fresh);
        assert_eq!(&empty.body.raw()[..], b"[]");
        // Gzipped while waiting: the same items come back out.
        let mut p = p;
        p.body = p.body.compressed();
        assert!(!p.body.is_raw());
        assert_eq!(&p.body.raw()[..], &raw[..]);
        let again = p.subset(&[1]);
        assert_eq!(&again.body.raw()[..], b"[{\"b\":2}]");
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;
    use crate::exporter::storage::{tests::TempDir, StorageConfig};
    use crate::span_data::SpanData;

    /// A sink for an endpoint that refuses connections, retrying fast and
    /// for 200 ms at most.
    fn dead_sink(storage: Option<Storage>) -> AppInsightsSink {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = TransportConfig {
            endpoint: format!("http://{addr}"),
            gzip: true,
            connect_timeout: Duration::from_millis(200),
            request_timeout: Duration::from_millis(500),
            pool_idle_timeout: Duration::from_secs(1),
        };
        let policy = Policy {
            backoff: Backoff {
                base: Duration::from_millis(10),
                cap: Duration::from_millis(40),
                max_elapsed: Duration::from_millis(200),
            },
            max_in_flight: 4,
            max_memory: 1024 * 1024,
            lease: Duration::from_secs(5),
        };
        let context = EnvelopeContext::new(
            "00000000-0000-0000-0000-000000000000",
            &Default::default(),
            1.0,
        );
        AppInsightsSink::new(
            Transport::new(config.clone()).unwrap(),
            config,
            context,
            policy,
            storage,
        )
    }

    fn spans(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                Record::Span(Box::new(SpanData {
                    name: format!("s{i}").into(),
                    ..Default::default()
                }))
            })
            .collect()
    }

    /// Drives the sink as the worker does until it is idle (or 5 s pass).
    async fn drive(sink: &mut AppInsightsSink, counters: &Counters) {
        let deadline = Instant::now() + Duration::from_secs(5);
        sink.pump(counters);
        while !sink.is_idle() && Instant::now() < deadline {
            let wake = tokio::time::timeout(Duration::from_millis(100), sink.wait()).await;
            if let Ok(wake) = wake {
                sink.on_wake(wake, counters);
            }
            sink.pump(counters);
        }
    }

    fn run(sink: &mut AppInsightsSink, records: &[Record], counters: &Counters) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            sink.stop_reading();
            sink.accept(records, counters);
            drive(sink, counters).await;
        });
    }

    #[test]
    fn when_retries_run_out_the_batch_is_stored() {
        let dir = TempDir::new("retries-out");
        let storage = Storage::new(StorageConfig {
            dir: dir.0.clone(),
            max_bytes: 1024 * 1024,
            retention: Duration::from_secs(3600),
        });
        let mut sink = dead_sink(Some(storage));
        let counters = Counters::default();
        run(&mut sink, &spans(3), &counters);
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        assert!(sink.is_idle());
        assert_eq!(load(&counters.stored), 3);
        assert_eq!(load(&counters.in_memory), 0);
        assert!(load(&counters.retried) >= 3, "retried before storing");
        let files: Vec<String> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
    }

    #[test]
    fn without_storage_they_are_dropped_and_counted() {
        let mut sink = dead_sink(None);
        let counters = Counters::default();
        run(&mut sink, &spans(2), &counters);
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        assert!(sink.is_idle());
        assert_eq!(load(&counters.dropped_storage_full), 2);
        assert_eq!(load(&counters.stored), 0);
    }
}
