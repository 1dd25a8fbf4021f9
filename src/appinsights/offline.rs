//! The bridge to offline storage: what cannot be sent in time is written
//! there, and stored blobs are read back and sent while the endpoint is
//! healthy (or as the probe that finds out whether it is back).

use std::time::{Instant, SystemTime};

use super::payload::{Origin, Payload};
use super::storage::PutError;
use super::AppInsightsSink;
use crate::pipeline::add;

impl AppInsightsSink {
    /// A blob from storage as a payload, when the endpoint is healthy and
    /// memory has room.
    pub(super) fn read_back(&mut self) -> Option<Payload> {
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

    /// When storage is next worth reading, if it may be read at all.
    pub(super) fn storage_look(&self) -> Option<Instant> {
        let storage = self.storage.as_ref()?;
        if !self.may_read_back() {
            return None;
        }
        Some(storage.next_look().unwrap_or_else(|| self.clock.now()))
    }

    /// Whether a blob may be read back now: memory has room, and the
    /// endpoint is healthy or nothing else is pending (the blob is then
    /// the probe that finds out whether the endpoint is back; a pause
    /// still applies). Fresh data goes first: while some is pending, one
    /// blob at a time is in flight; otherwise as many as requests may be.
    /// During the shutdown, blobs go out only while the endpoint is healthy:
    /// the time left drains what earlier runs stored, and nothing probes.
    pub(super) fn may_read_back(&self) -> bool {
        let reading = self.in_flight.values().filter(|p| !p.is_fresh()).count();
        let fresh_pending = !self.waiting.is_empty() || self.in_flight.len() > reading;
        let healthy = self.health.is_healthy();
        (healthy || !self.stopping && !fresh_pending && reading == 0)
            && (reading == 0 || !fresh_pending && healthy)
            && self.memory < self.policy.max_memory / 2
    }

    /// Writes a fresh payload (already out of `waiting`/`in_flight`) to
    /// storage, leased until `lease_until`; when storage cannot take it,
    /// drops it, counted by why: full, or unavailable (off, or its
    /// directory cannot be used).
    pub(super) fn store(&mut self, payload: Payload, lease_until: Option<SystemTime>) {
        let Some((payload, why)) = self.try_store(payload, lease_until) else {
            return;
        };
        let n = payload.len() as u64;
        match why {
            Some(PutError::Full) => add(&self.ledger.dropped_storage_full, n),
            Some(PutError::Unavailable { .. }) => add(&self.ledger.dropped_storage_unavailable, n),
            None => {
                add(&self.ledger.dropped_storage_unavailable, n);
                self.warned.no_storage.warn(format_args!(
                    "Exporter.DroppedNoStorage: {n} items could not be sent in time and \
                     offline storage is off; they are dropped (ExporterStats::\
                     dropped_storage_unavailable)"
                ));
            }
        }
    }

    /// Writes a fresh payload to storage, counted; gives it back with why
    /// not when storage is full or unwritable (storage reports that
    /// itself), or off (`None`).
    pub(super) fn try_store(
        &mut self,
        payload: Payload,
        lease_until: Option<SystemTime>,
    ) -> Option<(Payload, Option<PutError>)> {
        let Some(storage) = &mut self.storage else {
            return Some((payload, None));
        };
        let raw = payload.body.raw();
        match storage.put(payload.item_slices(&raw), lease_until) {
            Ok(()) => {
                add(&self.ledger.stored, payload.len() as u64);
                None
            }
            Err(why) => Some((payload, Some(why))),
        }
    }

    /// Counts what storage deleted unsent.
    pub(super) fn collect_discarded(&mut self) {
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
                ));
            }
        }
    }

    /// Periodic housekeeping: storage cleanup.
    pub(super) fn maintain(&mut self) {
        if let Some(storage) = &mut self.storage {
            storage.maintain();
        }
        self.collect_discarded();
    }

    /// Stores the waiting fresh payloads below `mark`, each leased until
    /// its retry is due. What storage cannot take (it is off, full or
    /// unwritable) stays in memory and goes on being retried: a flush never
    /// drops what could still be delivered.
    pub(super) fn spill(&mut self, mark: u64) {
        self.store_waiting(mark, None);
    }

    /// While the endpoint is paused for longer than a payload may wait in
    /// memory (over its quota, or a long `Retry-After`), what waits goes to
    /// storage, leased until the pause ends, instead of holding memory.
    /// Without storage it stays in memory (bounded: past the bound, dropped
    /// and counted).
    pub(super) fn park_for_pause(&mut self) {
        let Some(until) = self.health.paused_until() else {
            return;
        };
        if self.storage.is_some() && until > self.clock.now() + self.policy.backoff.max_elapsed {
            self.store_waiting(u64::MAX, Some(until));
        }
    }

    /// Stores the waiting fresh payloads below `mark`, each leased until
    /// its retry is due or `until`, whichever is later; what storage cannot
    /// take stays.
    fn store_waiting(&mut self, mark: u64, until: Option<Instant>) {
        let keys: Vec<(Instant, u64)> = self
            .waiting
            .iter()
            .filter(|(_, p)| p.is_fresh() && p.seq < mark)
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            if let Some(payload) = self.waiting.remove(&key) {
                self.unhold(&payload);
                let lease = self.clock.wall_of(until.map_or(key.0, |u| u.max(key.0)));
                if let Some((payload, _)) = self.try_store(payload, lease) {
                    self.hold(&payload);
                    self.waiting.insert(key, payload);
                }
            }
        }
        self.publish();
    }

    /// Abandons the requests in flight and stores everything held, free for
    /// the next reader; blobs being sent go back to storage unleased.
    pub(super) fn spill_all(&mut self) {
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
}
