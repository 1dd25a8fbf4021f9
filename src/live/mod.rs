//! Live Metrics (QuickPulse): the portal's 1-second view of the service.
//!
//! * [`Live`] is shared by the layer and the exporter's worker. While
//!   nobody watches (`watching` false) the layer only reads one flag. While
//!   someone does, the layer counts **every** request, dependency and
//!   exception on the application thread, sampled or not
//!   ([`Live::count_span`], [`Live::count_exception`]): the counters show
//!   the true load whatever the sampler keeps.
//! * The worker's encoder shows each *sampled* item to [`Live::observe`]:
//!   the collection configuration's derived metrics and document streams
//!   (`filter.rs`), and the sample documents (`document.rs`).
//! * `appinsights/live.rs` runs the protocol on the worker's runtime: pings, posts,
//!   the configuration, redirects (state machine in `machine.rs`).

pub(crate) mod document;
pub(crate) mod filter;
pub(crate) mod item;
pub(crate) mod machine;
pub(crate) mod process;
pub(crate) mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use self::document::{Document, Documents};
use self::filter::Configuration;
use self::item::{Item, ItemKind};
use crate::aligned::CacheAligned;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The counts of one post interval, updated from application threads.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    requests_failed: AtomicU64,
    /// Sum of request durations, microseconds.
    request_micros: AtomicU64,
    dependencies: AtomicU64,
    dependencies_failed: AtomicU64,
    dependency_micros: AtomicU64,
    exceptions: AtomicU64,
}

/// What [`Live::take`] hands the client for one post.
#[derive(Debug, Default)]
pub(crate) struct Interval {
    pub(crate) requests: u64,
    pub(crate) requests_failed: u64,
    pub(crate) request_micros: u64,
    pub(crate) dependencies: u64,
    pub(crate) dependencies_failed: u64,
    pub(crate) dependency_micros: u64,
    pub(crate) exceptions: u64,
    pub(crate) documents: Vec<Document>,
    /// Derived metrics of the configuration, by id.
    pub(crate) derived: Vec<(String, f64)>,
}

/// The kinds of span Live Metrics counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counted {
    Request,
    Dependency,
}

/// What the layer and the worker share (see the module docs).
#[derive(Debug)]
pub(crate) struct Live {
    watching: CacheAligned<AtomicBool>,
    counters: CacheAligned<Counters>,
    feed: Mutex<Feed>,
    /// The origin of the filters' quota clock.
    epoch: Instant,
}

#[derive(Debug, Default)]
struct Feed {
    configuration: Option<Arc<Configuration>>,
    documents: Documents,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            watching: CacheAligned::default(),
            counters: CacheAligned::default(),
            feed: Mutex::default(),
            epoch: Instant::now(),
        }
    }
}

impl Live {
    /// Whether someone watches (the client is posting): the one read the
    /// layer makes while nobody does.
    #[inline]
    pub(crate) fn watching(&self) -> bool {
        self.watching.load(Ordering::Relaxed)
    }

    /// A request or dependency ended (`nanos` long).
    pub(crate) fn count_span(&self, kind: Counted, nanos: u64, failed: bool) {
        let c = &*self.counters;
        let micros = nanos / 1_000;
        let (count, failures, sum) = match kind {
            Counted::Request => (&c.requests, &c.requests_failed, &c.request_micros),
            Counted::Dependency => (
                &c.dependencies,
                &c.dependencies_failed,
                &c.dependency_micros,
            ),
        };
        count.fetch_add(1, Ordering::Relaxed);
        sum.fetch_add(micros, Ordering::Relaxed);
        if failed {
            failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An exception was logged.
    pub(crate) fn count_exception(&self) {
        self.counters.exceptions.fetch_add(1, Ordering::Relaxed);
    }

    /// A sampled item, as exported: the configuration's derived metrics
    /// and document streams, or the default documents.
    pub(crate) fn observe(&self, item: &Item<'_>) {
        if !self.watching() {
            return;
        }
        let mut feed = lock(&self.feed);
        let stream_ids = match feed.configuration.clone() {
            Some(configuration) => {
                configuration.observe(item);
                let now = self.epoch.elapsed().as_secs_f64();
                configuration.stream_ids(item, now)
            }
            None => document::sampled_by_default(item).then(Vec::new),
        };
        if let Some(ids) = stream_ids {
            if feed.documents.has_room_for(item.kind != ItemKind::Trace) {
                feed.documents.push(Document::of(item, ids));
            } else {
                feed.documents.dropped += 1;
            }
        }
    }

    /// Starts or stops the counting (the client posts or not), clearing
    /// what was collected either way; stopping also drops the collection
    /// configuration (the service sends it again on the next subscription).
    pub(crate) fn set_watching(&self, watching: bool) {
        self.watching.store(watching, Ordering::Relaxed);
        drop(self.take());
        if !watching {
            lock(&self.feed).configuration = None;
        }
    }

    /// Applies a collection configuration (`None`: none), clearing the
    /// state of the previous one.
    pub(crate) fn set_configuration(&self, configuration: Option<Arc<Configuration>>) {
        let mut feed = lock(&self.feed);
        feed.configuration = configuration;
        feed.documents = Documents::default();
    }

    /// The configuration in force.
    pub(crate) fn configuration(&self) -> Option<Arc<Configuration>> {
        lock(&self.feed).configuration.clone()
    }

    /// Takes (and resets) what was collected since the last call, and the
    /// number of documents dropped over the bound since then.
    pub(crate) fn take(&self) -> (Interval, u64) {
        let c = &*self.counters;
        let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
        let mut interval = Interval {
            requests: take(&c.requests),
            requests_failed: take(&c.requests_failed),
            request_micros: take(&c.request_micros),
            dependencies: take(&c.dependencies),
            dependencies_failed: take(&c.dependencies_failed),
            dependency_micros: take(&c.dependency_micros),
            exceptions: take(&c.exceptions),
            ..Interval::default()
        };
        let mut feed = lock(&self.feed);
        let documents = std::mem::take(&mut feed.documents);
        interval.documents = documents.kept;
        if let Some(configuration) = &feed.configuration {
            configuration.take_metrics(&mut interval.derived);
        }
        (interval, documents.dropped)
    }
}
