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
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use std::task::{Context, Poll};

use self::auth::Auth;
use self::encode::Encoder;
use self::envelope::EnvelopeContext;
use self::payload::{Origin, Payload};
use self::response::SendOutcome;
use self::response::{DropReason, Outcome, RetryReason};
use self::retry::{Backoff, Concurrency, Health, Redirects};
use self::storage::Storage;
use self::transport::{Transport, TransportConfig, TransportError};
use crate::diag::TARGET;
use crate::live::Live;
use crate::pipeline::{add, Clock, Ledger, Sink, Sleep};
use crate::record::Record;

pub(crate) mod auth;
mod diagnostics;
pub(crate) mod encode;
pub(crate) mod envelope;
pub(crate) mod gzip;
#[cfg(feature = "managed-identity")]
pub(crate) mod identity_http;
pub(crate) mod live;
mod memory;
mod offline;
mod payload;
pub mod processor;
mod response;
mod retry;
pub(crate) mod storage;
pub(crate) mod transport;

/// A stored blob whose send failed is not read again for at least this
/// long (its failure count is not kept on disk).
const MIN_STORED_RETRY: Duration = Duration::from_secs(1);

/// The export interval while someone watches Live Metrics.
const LIVE_TICK: Duration = Duration::from_secs(1);

/// How the sink retries and how much it may hold.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    /// Delays between attempts, and how long a batch is retried in memory.
    pub(crate) backoff: Backoff,
    /// Requests in flight at once while the endpoint is healthy, at first:
    /// it grows up to [`retry::MAX_IN_FLIGHT`] while payloads wait for a
    /// slot of a slow endpoint.
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

    /// The longest lease this sink takes on a stored blob: while it is
    /// sent ([`lease`](Self::lease)), or until its retry is due (a backoff
    /// delay, at most [`Backoff::cap`]; a `Retry-After`, at most
    /// [`response::MAX_RETRY_AFTER`]; the pause over a quota, at most
    /// [`retry::QUOTA_PROBE_INTERVAL`] without one; never less than
    /// [`MIN_STORED_RETRY`]). Storage takes none longer and honours none
    /// for longer.
    pub(crate) fn max_lease(&self) -> Duration {
        self.lease
            .max(self.backoff.cap)
            .max(response::MAX_RETRY_AFTER)
            .max(retry::QUOTA_PROBE_INTERVAL)
            .max(MIN_STORED_RETRY)
    }
}

/// What the Application Insights sink is made of, from the settings.
#[derive(Debug)]
pub(crate) struct SinkConfig {
    pub(crate) transport: TransportConfig,
    /// How requests are authorised (to every endpoint, redirects included).
    pub(crate) auth: Auth,
    pub(crate) context: EnvelopeContext,
    pub(crate) policy: Policy,
    /// `Builder::with_processor`'s, in order.
    pub(crate) processors: processor::Processors,
}

/// Sends batches to the ingestion endpoint. See the module docs.
pub(crate) struct AppInsightsSink {
    /// Where requests go now: the configured endpoint, or a redirect's.
    transport: Arc<Transport>,
    /// The settings of `transport`, to build one for a redirect's host.
    transport_config: TransportConfig,
    /// The configured endpoint's transport, to go back to after a redirect.
    configured: Arc<Transport>,
    /// Its settings.
    configured_config: TransportConfig,
    auth: Auth,
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
    /// Requests in flight at once while healthy, adapting to latency.
    concurrency: Concurrency,
    redirects: Redirects,
    /// Set when the exporter shuts down: from then on stored blobs are read
    /// back only while the endpoint is healthy, never as a probe.
    stopping: bool,
    warned: diagnostics::Warned,
    ledger: Ledger,
    clock: Clock,
    /// The sleep until [`next_due`](Self::next_due), and its instant.
    timer: Option<(Instant, Sleep)>,
    /// Live Metrics: what the items are shown to, and the client, spawned
    /// on the worker's runtime the first time the sink is polled.
    live: Option<Arc<Live>>,
    live_client: Option<live::Client>,
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
            auth,
            context,
            policy,
            processors,
        } = config;
        let transport = Arc::new(Transport::new(transport_config.clone())?);
        Ok(AppInsightsSink {
            concurrency: Concurrency::new(policy.max_in_flight),
            configured: Arc::clone(&transport),
            configured_config: transport_config.clone(),
            transport,
            transport_config,
            auth,
            encoder: Encoder::new(context).with_processors(processors),
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
            stopping: false,
            warned: diagnostics::Warned::default(),
            ledger,
            clock,
            timer: None,
            live: None,
            live_client: None,
        })
    }

    /// Sends Live Metrics with `client`, and shows the items to `live`.
    pub(crate) fn with_live(mut self, live: Arc<Live>, client: live::Client) -> Self {
        self.encoder.set_live(Arc::clone(&live));
        self.live = Some(live);
        self.live_client = Some(client);
        self
    }

    /// The proxy the configured endpoint is reached through, as it may be
    /// logged; `None` when direct.
    pub(crate) fn proxy(&self) -> Option<&str> {
        self.configured.proxy()
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
        add(&self.ledger.dropped_by_processor, encoded.processed.dropped);
        if encoded.processed.panics > 0 {
            add(&self.ledger.processor_panics, encoded.processed.panics);
            self.warned.processor_panic.warn(format_args!(
                "Exporter.ProcessorPanicked: a telemetry processor panicked ({}); {} items it \
                 was given were dropped, the exporter goes on",
                encoded.processed.panic.as_deref().unwrap_or(""),
                encoded.processed.panics
            ));
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
        self.park_for_pause();
        self.enforce_memory();
        self.publish();
    }

    // === sending ===

    /// Starts every send that may start now: due payloads first, then
    /// blobs read back from storage while the endpoint is healthy.
    fn pump(&mut self) {
        let now = self.clock.now();
        if let Some(why) = self.redirects.fall_back(now) {
            self.end_redirect(why);
        }
        loop {
            if self.in_flight.len() >= self.max_in_flight() {
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

    /// Sends a payload in a task of the worker's runtime. The request and,
    /// for a payload sent before, its items as resent are counted when the
    /// request goes out (a send without a token sends nothing).
    fn start(&mut self, mut payload: Payload) {
        let resent = payload.sent.then_some(payload.len() as u64);
        let now = self.clock.now();
        payload.first_attempt.get_or_insert(now);
        // Gzipped once, on the first attempt; retries send the same bytes.
        self.unhold(&payload);
        let (body, gzipped) = payload.body.for_wire(self.transport_config.gzip);
        self.hold(&payload);
        let transport = Arc::clone(&self.transport);
        let auth = self.auth.clone();
        let ledger = self.ledger.clone();
        let seq = payload.seq;
        let task = self.tasks.spawn(async move {
            let count = || {
                add(&ledger.requests, 1);
                if let Some(items) = resent {
                    add(&ledger.retried, items);
                }
            };
            (seq, auth.send(&transport, body, gzipped, count).await)
        });
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
        if self.in_flight.len() >= self.max_in_flight() {
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

    /// Handles a finished send.
    fn on_sent(&mut self, seq: u64, outcome: SendOutcome) {
        self.task_seqs.retain(|_, s| *s != seq);
        // Gone when it was stored while in flight (shutdown).
        let Some(mut payload) = self.in_flight.remove(&seq) else {
            return;
        };
        self.unhold(&payload);
        if outcome == SendOutcome::Timeout {
            add(&self.ledger.timeouts, 1);
        }
        // Without a token nothing went out: it is still unsent.
        if !matches!(outcome, SendOutcome::Credential(_)) {
            payload.sent = true;
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
                ));
                let rest = (!retry.is_empty()).then(|| payload.subset(&retry));
                self.settle(payload, n - retry.len() - rejected, rejected);
                if let Some(rest) = rest {
                    self.retry_later(rest, None);
                }
            }
            Outcome::RetryAll { after, reason } => {
                let now = self.clock.now();
                self.health.on_failure(
                    &reason,
                    after,
                    now,
                    &self.policy.backoff,
                    crate::record::ids::next_u64(),
                );
                self.redirects.on_failure();
                self.concurrency.on_failure();
                self.report_retry(&reason, after, n);
                let after = match reason {
                    // Over the quota the payload waits out the whole pause.
                    RetryReason::Quota(..) => self.health.paused_until().map(|u| u - now),
                    // The refused token was dropped: the first 401 in a row
                    // is sent again at once (unless the service said when),
                    // with a new one. A credential whose tokens keep being
                    // refused backs off.
                    RetryReason::Status(401)
                        if after.is_none()
                            && self.auth.is_bearer()
                            && self.health.failures_in_row() == 1 =>
                    {
                        Some(Duration::ZERO)
                    }
                    _ => after,
                };
                self.retry_later(payload, after);
                self.park_for_pause();
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
        self.redirects.on_success();
        self.concurrency.on_success(self.unsent(1) > 0);
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

    /// Follows a redirect: later sends go to `endpoint` (for at most
    /// [`retry::REDIRECT_LIFETIME`]); the payload is resent at once. The
    /// tenth in a row drops it. A redirect from `https` to plain `http` is
    /// not followed: the payload is retried where it was sent.
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
        if let Err(why) = retry::may_redirect(
            &self.configured_config.endpoint,
            &endpoint,
            self.auth.is_bearer(),
        ) {
            let reason = RetryReason::RefusedRedirect(format!("{why}, to {endpoint}"));
            self.health.on_failure(
                &reason,
                None,
                self.clock.now(),
                &self.policy.backoff,
                crate::record::ids::next_u64(),
            );
            self.report_retry(&reason, None, n);
            self.retry_later(payload, None);
            return;
        }
        let config = TransportConfig {
            endpoint: endpoint.clone(),
            ..self.transport_config.clone()
        };
        match Transport::new(config.clone()) {
            Ok(transport) => {
                tracing::info!(
                    target: TARGET,
                    from = %self.transport_config.endpoint,
                    to = %endpoint,
                    "Exporter.Redirected: the ingestion service redirected us; requests go \
                     to the new endpoint for up to 10 minutes"
                );
                self.transport = Arc::new(transport);
                self.transport_config = config;
                self.redirects.followed(self.clock.now());
                self.hold(&payload);
                self.waiting
                    .insert((self.clock.now(), payload.seq), payload);
            }
            Err(err) => {
                self.report_drop(&DropReason::BadRedirect(format!("{endpoint}: {err}")), n);
                self.settle(payload, 0, n);
            }
        }
    }

    /// Requests go to the configured endpoint again.
    fn end_redirect(&mut self, why: &str) {
        tracing::info!(
            target: TARGET,
            from = %self.transport_config.endpoint,
            to = %self.configured_config.endpoint,
            "Exporter.RedirectEnded: {why}; requests go to the configured endpoint again"
        );
        self.transport = Arc::clone(&self.configured);
        self.transport_config = self.configured_config.clone();
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
    /// an endpoint that keeps failing is waited for longer and longer. A
    /// payload that partial answers keep sending back (per-item 500s from
    /// an endpoint that answers) backs off by its own count.
    fn retry_later(&mut self, mut payload: Payload, after: Option<Duration>) {
        let backoff = self.policy.backoff;
        let step = self
            .health
            .failures_in_row()
            .max(payload.partial_retries)
            .max(1);
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

    /// Requests that may be in flight now.
    fn max_in_flight(&self) -> usize {
        self.health.max_in_flight(self.concurrency.limit())
    }

    /// Fresh payloads that wait for their first send, counted up to `up_to`.
    fn unsent(&self, up_to: usize) -> usize {
        self.waiting
            .values()
            .filter(|p| !p.sent && p.is_fresh())
            .take(up_to)
            .count()
    }

    /// Whether to take another batch: always while the endpoint fails
    /// (what waits goes to storage; the queue must not fill in an outage);
    /// while it is healthy, only when fewer payloads wait for their first
    /// send than twice the requests that may be in flight, and they hold
    /// less than half the memory bound. A healthy
    /// endpoint slower than the application then holds the records in the
    /// queue (dropped past it, counted as `dropped_queue_full`), said once,
    /// instead of having them encoded, stored or dropped here.
    fn has_room(&self) -> bool {
        if !self.health.is_healthy() {
            return true;
        }
        let bound = 2 * self.max_in_flight();
        if self.unsent(bound) < bound && self.memory < self.policy.max_memory / 2 {
            return true;
        }
        self.warned.slow.warn(format_args!(
            "Exporter.EndpointSlow: the ingestion endpoint takes items more slowly than the \
             application produces them ({} requests in flight, each answered); records wait in \
             the export queue, and past its bound are dropped (ExporterStats::dropped_queue_full)",
            self.in_flight.len()
        ));
        false
    }

    // === flush and shutdown ===

    /// Whether no fresh payload below `mark` is waiting or in flight.
    fn settled(&self, mark: u64) -> bool {
        let pending = |p: &Payload| p.is_fresh() && p.seq < mark;
        !self.waiting.values().any(pending) && !self.in_flight.values().any(pending)
    }
}

impl Sink for AppInsightsSink {
    fn accept(&mut self, batch: &mut Vec<Record>) {
        self.encode(batch);
    }

    fn poll_work(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(client) = self.live_client.take() {
            // Detached: it ends with the runtime, at shutdown.
            drop(tokio::spawn(client.run()));
        }
        self.poll_sends(cx)
    }

    /// While someone watches Live Metrics, batches go every second, so
    /// the sample documents are live too.
    fn tick_interval(&self, configured: Duration) -> Duration {
        match &self.live {
            Some(live) if live.watching() => configured.min(LIVE_TICK),
            _ => configured,
        }
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
        self.stopping = true;
    }

    fn abandon(&mut self) {
        self.spill_all();
    }

    fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.in_flight.is_empty()
    }

    fn has_room(&self) -> bool {
        AppInsightsSink::has_room(self)
    }
}

#[cfg(test)]
mod tests;
