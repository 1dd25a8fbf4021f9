//! The memory bound: the bytes of request bodies held (waiting or in
//! flight) and the gauge of items in memory. Past the bound, waiting
//! bodies are gzipped, then what waits longest goes to storage.

use super::payload::{Origin, Payload};
use super::AppInsightsSink;

impl AppInsightsSink {
    /// A payload enters memory.
    pub(super) fn hold(&mut self, payload: &Payload) {
        self.memory += payload.body.held();
        if payload.is_fresh() {
            self.fresh_items += payload.len() as u64;
        }
    }

    /// A payload leaves memory.
    pub(super) fn unhold(&mut self, payload: &Payload) {
        self.memory -= payload.body.held();
        if payload.is_fresh() {
            self.fresh_items -= payload.len() as u64;
        }
    }

    /// Publishes the gauge of items in memory.
    pub(super) fn publish(&self) {
        self.ledger
            .in_memory
            .store(self.fresh_items, std::sync::atomic::Ordering::Relaxed);
    }

    /// While the bodies held pass the memory bound, gzips the waiting
    /// payloads, then stores them, the one whose attempt is furthest away
    /// first.
    pub(super) fn enforce_memory(&mut self) {
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
            let lease = self.clock.wall_of(due);
            match payload.origin {
                // A blob waiting to be resent to a redirect's host: it is
                // still on disk; let it wait there.
                Origin::Stored(mut blob) => {
                    if let Some(storage) = &mut self.storage {
                        storage.release(&mut blob, lease.unwrap_or_else(|| self.clock.wall()));
                    }
                }
                Origin::Fresh => self.store(payload, lease),
            }
        }
    }
}
