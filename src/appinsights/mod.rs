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

use tokio::task::JoinSet;

use std::task::{Context, Poll};

use self::encode::Encoder;
use self::envelope::EnvelopeContext;
use self::payload::{Origin, Payload};
use self::response::{DropReason, Outcome, RetryReason};
use self::retry::{Backoff, Health, Redirects};
use self::storage::Storage;
use self::transport::{SendOutcome, Transport, TransportConfig, TransportError};
use crate::diag::{self, TARGET};
use crate::pipeline::{add, items_of, Clock, Ledger, Sink, Sleep};
use crate::record::Record;

pub(crate) mod encode;
pub(crate) mod envelope;
pub(crate) mod gzip;
mod payload;
mod response;
mod retry;
pub(crate) mod storage;
pub(crate) mod transport;


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

/// Which kinds of trouble were already reported at warning level (later
/// ones go to debug level, so a dead endpoint does not flood the logs).
#[derive(Debug, Default)]
struct Warned {
    retry: diag::Once,
    network: diag::Once,
    partial: diag::Once,
    dropped: diag::Once,
    no_storage: diag::Once,
    unencodable: diag::Once,
    too_old: diag::Once,
    corrupt: diag::Once,
    oversize: diag::Once,
}

/// What the Application Insights sink is made of, from the settings.
#[derive(Debug)]
pub(crate) struct SinkConfig {
    pub(crate) transport: TransportConfig,
    pub(crate) context: EnvelopeContext,
    pub(crate) policy: Policy,
}

/// Sends batches to the ingestion endpoint. See the module docs.
pub(crate) struct AppInsightsSink {
    transport: Arc<Transport>,
    /// The transport's settings, to build one for a redirect's host.
    transport_config: TransportConfig,
    encoder: Encoder,
    policy: Policy,
    storage: Option<Storage>,
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
    ledger: Ledger,
    clock: Clock,
    /// The sleep until [`next_due`](Self::next_due), and its instant.
    timer: Option<(Instant, Sleep)>,
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
    /// A sink for `config`, counting in `ledger`, timed by `clock`.
    ///
    /// # Errors
    ///
    /// When the transport cannot be built (see [`Transport::new`]).
    pub(crate) fn new(
        config: SinkConfig,
        storage: Option<Storage>,
        ledger: Ledger,
        clock: Clock,
    ) -> Result<Self, TransportError> {
        let SinkConfig {
            transport: transport_config,
            context,
            policy,
        } = config;
        Ok(AppInsightsSink {
            transport: Arc::new(Transport::new(transport_config.clone())?),
            transport_config,
            encoder: Encoder::new(context),
            policy,
            storage,
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
            ledger,
            clock,
            timer: None,
        })
    }

    // === taking batches ===

    /// Serialises a batch into payloads of at most about [`MAX_BODY_BYTES`]
    /// and queues them for sending. Never waits.
    fn encode(&mut self, batch: &[Record]) {
        let encoded = self.encoder.encode(batch);
        if encoded.extra > 0 {
            add(&self.ledger.queued, encoded.extra);
            add(&self.ledger.taken, encoded.extra);
        }
        if encoded.unencodable > 0 {
            add(&self.ledger.dropped_rejected, encoded.unencodable);
            self.warned.unencodable.warn(format_args!(
                "Exporter.Unencodable: {} items could not be encoded and were dropped",
                encoded.unencodable
            ));
        }
        let now = self.clock.now();
        for builder in encoded.bodies {
            let payload = builder.finish(self.next_seq, Origin::Fresh);
            self.next_seq += 1;
            self.hold(&payload);
            self.waiting.insert((now, payload.seq), payload);
        }
        self.enforce_memory();
        self.publish();
    }

    // === sending ===

    /// Starts every send that may start now: due payloads first, then
    /// blobs read back from storage while the endpoint is healthy.
    fn pump(&mut self) {
        let now = self.clock.now();
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
                    self.start(payload);
                    continue;
                }
            }
            match self.read_back() {
                Some(payload) => self.start(payload),
                None => break,
            }
        }
        self.publish();
    }

    /// A blob from storage as a payload, when the endpoint is healthy and
    /// memory has room.
    fn read_back(&mut self) -> Option<Payload> {
        if !self.may_read_back() {
            return None;
        }
        let storage = self.storage.as_mut()?;
        let blob = storage.take(self.clock.wall() + self.policy.lease);
        self.collect_discarded();
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
    fn start(&mut self, mut payload: Payload) {
        if payload.sent {
            add(&self.ledger.retried, payload.len() as u64);
        }
        payload.sent = true;
        let now = self.clock.now();
        payload.first_attempt.get_or_insert(now);
        add(&self.ledger.requests, 1);
        // Gzipped once, on the first attempt; retries send the same bytes.
        self.unhold(&payload);
        let (body, gzipped) = payload.body.for_wire(self.transport_config.gzip);
        self.hold(&payload);
        let transport = Arc::clone(&self.transport);
        let seq = payload.seq;
        let task = self
            .tasks
            .spawn(async move { (seq, transport.send(body, gzipped).await) });
        self.task_seqs.insert(task.id(), seq);
        self.in_flight.insert(seq, payload);
    }

    /// Handles a finished send, or notices a retry that fell due:
    /// `Ready` when either happened. Cancel-safe.
    fn poll_sends(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Poll::Ready(Some(joined)) = self.tasks.poll_join_next(cx) {
            let sent = match joined {
                Ok((seq, outcome)) => Some((seq, outcome)),
                // A send that panicked: treat it as a failed attempt.
                Err(err) if !err.is_cancelled() => self.task_seqs.get(&err.id()).map(|&seq| {
                    (
                        seq,
                        SendOutcome::Connect(format!("the send task failed: {err}")),
                    )
                }),
                Err(_) => None,
            };
            if let Some((seq, outcome)) = sent {
                self.on_sent(seq, outcome);
            }
            return Poll::Ready(());
        }
        let Some(due) = self.next_due() else {
            self.timer = None;
            return Poll::Pending;
        };
        if self.timer.as_ref().is_none_or(|(at, _)| *at != due) {
            self.timer = Some((due, self.clock.sleep_until(due)));
        }
        let (_, sleep) = self.timer.as_mut().expect("set above");
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.timer = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
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
    fn on_sent(&mut self, seq: u64, outcome: SendOutcome) {
        self.task_seqs.retain(|_, s| *s != seq);
        // Gone when it was stored while in flight (shutdown).
        let Some(payload) = self.in_flight.remove(&seq) else {
            return;
        };
        self.unhold(&payload);
        if outcome == SendOutcome::Timeout {
            add(&self.ledger.timeouts, 1);
        }
        let n = payload.len();
        match response::classify(&outcome, n, self.clock.wall()) {
            Outcome::Accepted => {
                self.endpoint_answered();
                self.settle(payload, n, 0);
            }
            Outcome::Partial {
                retry,
                rejected,
                first_error,
            } => {
                self.endpoint_answered();
                let (code, message) = first_error.unwrap_or_default();
                self.warned.partial.warn(format_args!(
                        "Exporter.PartialSuccess: {} of {n} items accepted, {} to resend, \
                         {rejected} rejected; first error: {code} {message}",
                        n - retry.len() - rejected,
                        retry.len(),
                    ),
                );
                let rest = (!retry.is_empty()).then(|| payload.subset(&retry));
                self.settle(payload, n - retry.len() - rejected, rejected);
                if let Some(rest) = rest {
                    self.retry_later(rest, None);
                }
            }
            Outcome::RetryAll { after, reason } => {
                self.health.on_failure(
                    &reason,
                    after,
                    self.clock.now(),
                    &self.policy.backoff,
                    crate::record::ids::next_u64(),
                );
                self.report_retry(&reason, after, n);
                self.retry_later(payload, after);
            }
            Outcome::Drop(reason) => {
                self.endpoint_answered();
                self.report_drop(&reason, n);
                self.settle(payload, 0, n);
            }
            Outcome::Redirect { endpoint } => self.redirect(payload, endpoint),
        }
        self.publish();
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
        let now = self.clock.now();
        let soon = now + self.policy.backoff.base;
        let parked: Vec<(Instant, u64)> = self
            .waiting
            .keys()
            .filter(|(due, _)| *due > soon)
            .copied()
            .collect();
        for key in parked {
            if let Some(payload) = self.waiting.remove(&key) {
                let retry = now + self.policy.backoff.delay(1, crate::record::ids::next_u64());
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
    fn redirect(&mut self, payload: Payload, endpoint: String) {
        let n = payload.len();
        if !self.redirects.follow() {
            self.report_drop(
                &DropReason::BadRedirect(format!(
                    "{} redirects in a row, the last to {endpoint}",
                    retry::MAX_REDIRECTS
                )),
                n,
            );
            self.settle(payload, 0, n);
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
                self.waiting.insert((self.clock.now(), payload.seq), payload);
            }
            (downgrade, result) => {
                let why = if downgrade {
                    "from https to plain http".to_owned()
                } else {
                    result.err().map(|e| e.to_string()).unwrap_or_default()
                };
                self.report_drop(&DropReason::BadRedirect(format!("{endpoint}: {why}")), n);
                self.settle(payload, 0, n);
            }
        }
    }

    /// Counts a payload's items as accepted or rejected and, for a blob,
    /// deletes it (its items left storage).
    fn settle(&mut self, payload: Payload, accepted: usize, rejected: usize) {
        add(&self.ledger.exported, accepted as u64);
        add(&self.ledger.dropped_rejected, rejected as u64);
        if let Origin::Stored(blob) = payload.origin {
            add(&self.ledger.read_back, payload.items.len() as u64);
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
    fn retry_later(&mut self, mut payload: Payload, after: Option<Duration>) {
        let backoff = self.policy.backoff;
        let step = self.health.failures_in_row().max(1);
        let delay = backoff.next_delay(step, after, crate::record::ids::next_u64());
        let now = self.clock.now();
        let due = now + delay;
        payload.not_before = after.map(|after| now + after);
        match payload.origin {
            Origin::Stored(mut blob) => {
                // Back to storage: the lease keeps everyone off until due.
                if let Some(storage) = &mut self.storage {
                    storage.release(&mut blob, self.clock.wall() + delay.max(MIN_STORED_RETRY));
                }
            }
            Origin::Fresh => {
                let first = payload.first_attempt.unwrap_or(now);
                if due.saturating_duration_since(first) > backoff.max_elapsed {
                    self.store(payload, Some(self.clock.wall() + delay));
                } else {
                    self.hold(&payload);
                    self.waiting.insert((due, payload.seq), payload);
                    self.enforce_memory();
                }
            }
        }
    }

    // === storage ===

    /// Writes a fresh payload (already out of `waiting`/`in_flight`) to
    /// storage, leased until `lease_until`; without room, drops it,
    /// counted.
    fn store(&mut self, payload: Payload, lease_until: Option<SystemTime>) {
        if let Some(payload) = self.try_store(payload, lease_until) {
            let n = payload.len() as u64;
            add(&self.ledger.dropped_storage_full, n);
            if self.storage.is_none() {
                self.warned.no_storage.warn(format_args!(
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
        lease_until: Option<SystemTime>
    ) -> Option<Payload> {
        let Some(storage) = &mut self.storage else {
            return Some(payload);
        };
        let raw = payload.body.raw();
        match storage.put(payload.item_slices(&raw), lease_until) {
            Ok(()) => {
                add(&self.ledger.stored, payload.len() as u64);
                None
            }
            Err(_) => Some(payload),
        }
    }

    /// While the bodies held pass the memory bound, gzips the waiting
    /// payloads, then stores them, the one whose attempt is furthest away
    /// first.
    fn enforce_memory(&mut self) {
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
                .checked_duration_since(self.clock.now())
                .map(|left| self.clock.wall() + left);
            match payload.origin {
                // A blob waiting to be resent to a redirect's host: it is
                // still on disk; let it wait there.
                Origin::Stored(mut blob) => {
                    if let Some(storage) = &mut self.storage {
                        storage.release(&mut blob, lease.unwrap_or_else(SystemTime::now));
                    }
                }
                Origin::Fresh => self.store(payload, lease),
            }
        }
    }

    /// Counts what storage deleted unsent.
    fn collect_discarded(&mut self) {
        let Some(storage) = &mut self.storage else {
            return;
        };
        let discarded = storage.take_discarded();
        if discarded.total() == 0 {
            return;
        }
        add(&self.ledger.read_back, discarded.total());
        add(&self.ledger.dropped_too_old, discarded.too_old);
        add(&self.ledger.dropped_corrupt, discarded.corrupt);
        add(&self.ledger.dropped_storage_full, discarded.oversize);
        let dir = storage.dir().display().to_string();
        for (count, warned, what) in [
            (
                discarded.too_old,
                &self.warned.too_old,
                "older than the retention (ExporterStats::dropped_too_old)",
            ),
            (
                discarded.corrupt,
                &self.warned.corrupt,
                "not telemetry: a damaged or foreign file (ExporterStats::dropped_corrupt)",
            ),
            (
                discarded.oversize,
                &self.warned.oversize,
                "in a blob larger than the storage may hold (ExporterStats::dropped_storage_full)",
            ),
        ] {
            if count > 0 {
                warned.warn(format_args!(
                        "Storage.Discarded: {count} stored items deleted unsent from {dir}: {what}"
                    ),
                );
            }
        }
    }

    /// Periodic housekeeping: storage cleanup.
    fn maintain(&mut self) {
        if let Some(storage) = &mut self.storage {
            storage.maintain();
        }
        self.collect_discarded();
    }

    // === flush and shutdown ===

    /// Whether no fresh payload below `mark` is waiting or in flight.
    fn settled(&self, mark: u64) -> bool {
        let pending = |p: &Payload| p.is_fresh() && p.seq < mark;
        !self.waiting.values().any(pending) && !self.in_flight.values().any(pending)
    }

    /// Stores the waiting fresh payloads below `mark`, each leased until
    /// its retry is due. What storage cannot take (it is off, full or
    /// unwritable) stays in memory and goes on being retried: a flush never
    /// drops what could still be delivered.
    fn spill(&mut self, mark: u64) {
        let keys: Vec<(Instant, u64)> = self
            .waiting
            .iter()
            .filter(|(_, p)| p.is_fresh() && p.seq < mark)
            .map(|(k, _)| *k)
            .collect();
        let now = self.clock.now();
        for key in keys {
            if let Some(payload) = self.waiting.remove(&key) {
                self.unhold(&payload);
                let lease = key
                    .0
                    .checked_duration_since(now)
                    .map(|d| self.clock.wall() + d);
                if let Some(payload) = self.try_store(payload, lease) {
                    self.hold(&payload);
                    self.waiting.insert(key, payload);
                }
            }
        }
        self.publish();
    }

    /// Abandons the requests in flight and stores everything held, free for
    /// the next reader; blobs being sent go back to storage unleased.
    fn spill_all(&mut self) {
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
                Origin::Fresh => self.store(payload, None),
            }
        }
        self.publish();
    }

    /// Reads nothing more back from storage.
    fn stop_reading(&mut self) {
        self.reading = false;
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
    fn publish(&self) {
        self.ledger
            .in_memory
            .store(self.fresh_items, std::sync::atomic::Ordering::Relaxed);
    }

    // === diagnostics ===

    fn report_retry(&self, reason: &RetryReason, after: Option<Duration>, n: usize) {
        let (warned, what) = match reason {
            RetryReason::Status(status) => (
                &self.warned.retry,
                format!("the ingestion service answered {status}"),
            ),
            RetryReason::Timeout => (&self.warned.network, "the request timed out".to_owned()),
            RetryReason::Connect(error) => (
                &self.warned.network,
                format!("could not reach the ingestion endpoint ({error})"),
            ),
        };
        let after = after.map_or(String::new(), |a| format!(" (Retry-After {a:?})"));
        warned.warn(format_args!(
            "Exporter.Retrying: {what}{after}; {n} items will be sent again"
        ));
    }

    fn report_drop(&self, reason: &DropReason, n: usize) {
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
        self.warned.dropped.error(format_args!(
            "Exporter.Dropped: {what}; {n} items dropped (ExporterStats::dropped_rejected)"
        ));
    }
}

impl Sink for AppInsightsSink {
    fn accept(&mut self, batch: &mut Vec<Record>) {
        self.encode(batch);
    }

    fn poll_work(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_sends(cx)
    }

    fn start_due(&mut self) {
        self.pump();
    }

    fn housekeep(&mut self) {
        self.maintain();
    }

    /// Every payload accepted so far has a seq below this.
    fn mark(&self) -> u64 {
        self.next_seq
    }

    fn is_settled(&self, mark: u64) -> bool {
        self.settled(mark)
    }

    fn settle_now(&mut self, mark: u64) {
        self.spill(mark);
    }

    fn stop(&mut self) {
        self.stop_reading();
    }

    fn abandon(&mut self) {
        self.spill_all();
    }

    fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests;
