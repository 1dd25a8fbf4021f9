//! [`SpanTable`]: the state of the sampled spans alive, by registry id,
//! in a fixed table the layer owns; and, when Live Metrics is on, its
//! [`LiveTable`] part: the unsampled spans alive that Live Metrics counts.
//!
//! Keeping a span's state here rather than in the registry's extensions
//! saves, for every sampled span, the extension's allocation, its insert
//! and remove, and a registry lookup in each callback that only has the
//! span's id (`on_record`, `on_close`, an event's current span). It also
//! answers, for an *unsampled* span, "no state" from one cache line without
//! a lookup or a lock, which matters in a service where some sampled span
//! is nearly always alive.
//!
//! The table is buckets of eight slots: eight ids on one cache line, and
//! beside them eight states, each behind its own lock (a span's callbacks
//! may come from several threads at once). An id lives in the bucket its
//! hash names. When that bucket is full the span's state goes to the
//! registry's extensions instead, counted (`ExporterStats::table_overflows`)
//! and found there: while anything overflows, "not in the table" is no
//! longer proof, and the layer looks in the extensions too. The table never
//! grows; a burst of live sampled spans beyond its room costs speed, never
//! a span.
//!
//! # Live Metrics' unsampled spans
//!
//! While someone watches Live Metrics, every span is counted, sampled or
//! not (`layer/live.rs`); an unsampled one needs only its start and a word
//! of flags ([`LiveSpan`]) until it closes. The [`LiveTable`] keeps those
//! the same way, by id, in buckets of eight (the ids on one cache line, the
//! starts on the next, the flags after: 192 bytes a bucket, 192 KiB in
//! all, allocated only when Live Metrics is on), but with no lock: a slot
//! is claimed with a compare-exchange on its id, its start and flags are
//! atomics, a `record()` merges its flags in with a compare-exchange loop,
//! and a close reads the slot and frees it with a compare-exchange on the
//! id. Nothing a span's callbacks do can block, and the registry is not
//! looked up at all (it was twice per span with the state in the
//! extensions, beside their allocation).
//!
//! When a span's bucket is full, the span is kept in the registry's
//! extensions as a sampled state would be, counted in
//! `ExporterStats::table_overflows` too, and found there while any is: it
//! is counted in full (kind, duration, failure), never lost and never
//! counted without its duration. This costs speed only past 8,192
//! unsampled spans alive at once, most likely never in a bucket but the
//! crowded one.
//!
//! Both parts share one count word ([`Counts::alive`]: sampled spans in its
//! low half, Live Metrics' in its high half), so that `on_close` and
//! `on_record` of an unsampled span nobody counts return after one load, as
//! they did before Live Metrics, whether it is on or not; the sampled
//! path's "none alive" is the low half, one load too.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use tracing_core::span::Id;

use super::live::{LiveFields, LiveSpan};
use super::state::SpanState;
use crate::pipeline::{CacheAligned, Ticks};

const SLOTS_PER_BUCKET: usize = 8;
/// 1,024 buckets of 8 slots: 256 KiB, room for a few thousand live sampled
/// spans before buckets start to overflow.
const BUCKET_BITS: u32 = 10;
const EMPTY: u64 = 0;

/// The bucket of `id` (a multiplicative hash: registry ids are dense).
#[inline]
fn bucket_index(id: u64) -> usize {
    (id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - BUCKET_BITS)) as usize
}

/// The slot of a bucket's `ids` holding `id`, if any (both tables).
#[inline]
fn slot_of(ids: &[AtomicU64; SLOTS_PER_BUCKET], id: u64) -> Option<usize> {
    ids.iter()
        .position(|slot| slot.load(Ordering::Acquire) == id)
}

#[repr(align(64))]
#[derive(Default)]
struct Bucket {
    ids: [AtomicU64; SLOTS_PER_BUCKET],
    states: [Mutex<Option<SpanState>>; SLOTS_PER_BUCKET],
}

/// The states of the live sampled spans, and Live Metrics' unsampled
/// spans when it is on (see the module docs).
pub(crate) struct SpanTable {
    counts: CacheAligned<Counts>,
    buckets: Box<[Bucket]>,
    /// Live Metrics' part ([`LiveTable`]); empty when it is off.
    live: Box<[LiveBucket]>,
}

#[derive(Default)]
struct Counts {
    /// How many spans are alive: sampled ones in the low half
    /// ([`SAMPLED`] each), Live Metrics' unsampled ones in the high half
    /// ([`LIVE`] each). Zero lets every callback return at once, after one
    /// load whether Live Metrics is on or not.
    alive: AtomicU64,
    /// How many sampled spans keep their state in the extensions.
    overflow: AtomicUsize,
    /// How many of Live Metrics' spans are kept in the extensions.
    live_overflow: AtomicUsize,
}

/// A sampled span in [`Counts::alive`].
const SAMPLED: u64 = 1;
/// One of Live Metrics' unsampled spans in [`Counts::alive`] (there are
/// never 2³² sampled spans alive: each has a registry slot).
const LIVE: u64 = 1 << 32;

impl Default for SpanTable {
    fn default() -> Self {
        SpanTable::new(false)
    }
}

/// A slot's lock; a panic elsewhere cannot leave a state half written.
fn lock(state: &Mutex<Option<SpanState>>) -> MutexGuard<'_, Option<SpanState>> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl SpanTable {
    /// A table, with room for Live Metrics' spans if `live` (192 KiB).
    pub(crate) fn new(live: bool) -> Self {
        let buckets = if live { 1_usize << BUCKET_BITS } else { 0 };
        SpanTable {
            counts: CacheAligned::default(),
            buckets: (0..1_usize << BUCKET_BITS)
                .map(|_| Bucket::default())
                .collect(),
            live: (0..buckets).map(|_| LiveBucket::default()).collect(),
        }
    }

    #[inline]
    fn bucket(&self, id: u64) -> &Bucket {
        &self.buckets[bucket_index(id)]
    }

    /// The slot holding `id` in its bucket, if any.
    #[inline]
    fn find(&self, id: u64) -> Option<(&Bucket, usize)> {
        let bucket = self.bucket(id);
        Some((bucket, slot_of(&bucket.ids, id)?))
    }

    /// Whether no sampled span is alive. A span is counted before its state
    /// becomes visible to other threads, and uncounted only when the state
    /// is gone, so zero means the span at hand is not sampled.
    #[inline]
    pub(crate) fn none_alive(&self) -> bool {
        self.counts.alive.load(Ordering::Acquire) as u32 == 0
    }

    /// Whether no span at all is alive, sampled or counted by Live Metrics
    /// (one load, as [`none_alive`](Self::none_alive)).
    #[inline]
    pub(crate) fn nothing_alive(&self) -> bool {
        self.counts.alive.load(Ordering::Acquire) == 0
    }

    /// Live Metrics' part, when it is on and counts some span: `on_record`
    /// and `on_close` have one to look for.
    #[inline]
    pub(crate) fn live_counting(&self) -> Option<LiveTable<'_>> {
        self.live().filter(|live| !live.none_alive())
    }

    /// Live Metrics' part, when it is on.
    #[inline]
    pub(crate) fn live(&self) -> Option<LiveTable<'_>> {
        (!self.live.is_empty()).then_some(LiveTable {
            counts: &self.counts,
            buckets: &self.live,
        })
    }

    /// Whether some state is kept in the registry's extensions, so that a
    /// span not found here must be looked for there.
    #[inline]
    pub(crate) fn overflowing(&self) -> bool {
        self.counts.overflow.load(Ordering::Acquire) != 0
    }

    /// Whether the table holds the span's state (no lock taken: it may be
    /// gone a moment later).
    #[inline]
    pub(crate) fn holds(&self, id: &Id) -> bool {
        !self.none_alive() && self.find(id.into_u64()).is_some()
    }

    /// Whether the span may have a state: `false` is certain, `true` means
    /// "look".
    #[inline]
    pub(crate) fn may_hold(&self, id: &Id) -> bool {
        !self.none_alive() && (self.find(id.into_u64()).is_some() || self.overflowing())
    }

    /// Keeps the state of a new sampled span. When the span's bucket is
    /// full the state is handed back, already counted as overflowing: the
    /// caller keeps it in the extensions.
    pub(crate) fn insert(&self, id: &Id, state: SpanState) -> Result<(), SpanState> {
        self.counts.alive.fetch_add(SAMPLED, Ordering::AcqRel);
        let id = id.into_u64();
        let bucket = self.bucket(id);
        let claimed = bucket.ids.iter().position(|slot| {
            slot.compare_exchange(EMPTY, id, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        match claimed {
            Some(slot) => {
                *lock(&bucket.states[slot]) = Some(state);
                Ok(())
            }
            None => {
                self.counts.overflow.fetch_add(1, Ordering::AcqRel);
                Err(state)
            }
        }
    }

    /// Runs `f` on the span's state if the table holds it; else hands `f`
    /// back.
    #[inline]
    pub(crate) fn with<R, F>(&self, id: &Id, f: F) -> Result<R, F>
    where
        F: FnOnce(&mut SpanState) -> R,
    {
        if self.none_alive() {
            return Err(f);
        }
        let id = id.into_u64();
        let Some((bucket, slot)) = self.find(id) else {
            return Err(f);
        };
        let mut state = lock(&bucket.states[slot]);
        // Checked again under the lock: the slot may have changed hands.
        match state.as_mut() {
            Some(state) if bucket.ids[slot].load(Ordering::Acquire) == id => Ok(f(state)),
            _ => Err(f),
        }
    }

    /// Takes the state of a closing span out of the table.
    pub(crate) fn remove(&self, id: &Id) -> Option<SpanState> {
        if self.none_alive() {
            return None;
        }
        let id = id.into_u64();
        let (bucket, slot) = self.find(id)?;
        let mut guard = lock(&bucket.states[slot]);
        if bucket.ids[slot].load(Ordering::Acquire) != id {
            return None;
        }
        let state = guard.take();
        bucket.ids[slot].store(EMPTY, Ordering::Release);
        drop(guard);
        if state.is_some() {
            self.counts.alive.fetch_sub(SAMPLED, Ordering::AcqRel);
        }
        state
    }

    /// Uncounts a span whose state was taken out of the extensions (it had
    /// overflowed); call it after.
    pub(crate) fn removed_overflow(&self) {
        self.counts.overflow.fetch_sub(1, Ordering::AcqRel);
        self.counts.alive.fetch_sub(SAMPLED, Ordering::AcqRel);
    }

    /// How many sampled spans are alive.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.counts.alive.load(Ordering::Acquire) as u32 as usize
    }
}

// === Live Metrics' unsampled spans ===

#[repr(align(64))]
#[derive(Default)]
struct LiveBucket {
    ids: [AtomicU64; SLOTS_PER_BUCKET],
    /// Each slot's start, [`Ticks::to_raw`].
    starts: [AtomicU64; SLOTS_PER_BUCKET],
    /// Each slot's [`LiveFields::to_bits`].
    fields: [AtomicU32; SLOTS_PER_BUCKET],
}

/// The unsampled spans alive that Live Metrics counts, the [`SpanTable`]'s
/// part made only when Live Metrics is on (see the module docs): no lock.
#[derive(Clone, Copy)]
pub(crate) struct LiveTable<'a> {
    counts: &'a Counts,
    buckets: &'a [LiveBucket],
}

impl LiveTable<'_> {
    #[inline]
    fn bucket(&self, id: u64) -> &LiveBucket {
        &self.buckets[bucket_index(id)]
    }

    /// The slot holding `id` in its bucket, if any.
    #[inline]
    fn find(&self, id: u64) -> Option<(&LiveBucket, usize)> {
        let bucket = self.bucket(id);
        Some((bucket, slot_of(&bucket.ids, id)?))
    }

    /// Whether no span is counted, here or in the extensions: the span at
    /// hand is not (as for [`SpanTable::none_alive`]).
    #[inline]
    pub(crate) fn none_alive(&self) -> bool {
        self.counts.alive.load(Ordering::Acquire) < LIVE
    }

    /// Whether some span is kept in the registry's extensions, so that one
    /// not found here must be looked for there.
    #[inline]
    pub(crate) fn overflowing(&self) -> bool {
        self.counts.live_overflow.load(Ordering::Acquire) != 0
    }

    /// Whether the span may be counted: `false` is certain, `true` means
    /// "look" (here, or in the extensions while some overflow).
    #[inline]
    pub(crate) fn may_hold(&self, id: &Id) -> bool {
        !self.none_alive() && (self.find(id.into_u64()).is_some() || self.overflowing())
    }

    /// Starts counting a new unsampled span. When its bucket is full the
    /// span is handed back, already counted as overflowing: the caller
    /// keeps it in the extensions.
    pub(crate) fn insert(&self, id: &Id, span: LiveSpan) -> Result<(), LiveSpan> {
        // Counted before it can be found, as in `SpanTable::insert`.
        self.counts.alive.fetch_add(LIVE, Ordering::AcqRel);
        let id = id.into_u64();
        let bucket = self.bucket(id);
        // A slot is claimed by a compare-exchange, tried only where a plain
        // load saw it free: a full bucket costs loads, not locked writes.
        let claimed = bucket.ids.iter().position(|slot| {
            slot.load(Ordering::Relaxed) == EMPTY
                && slot
                    .compare_exchange(EMPTY, id, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
        });
        let Some(slot) = claimed else {
            self.counts.live_overflow.fetch_add(1, Ordering::AcqRel);
            return Err(span);
        };
        // Relaxed: whichever thread records or closes the span later got
        // its handle from this one, after this.
        bucket.starts[slot].store(span.start.to_raw(), Ordering::Relaxed);
        bucket.fields[slot].store(span.fields.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// Applies what a `record()` set to a span counted here; `false` when
    /// the table does not hold it.
    pub(crate) fn update(&self, id: &Id, newer: LiveFields) -> bool {
        if self.none_alive() {
            return false;
        }
        let Some((bucket, slot)) = self.find(id.into_u64()) else {
            return false;
        };
        if newer != LiveFields::default() {
            // A loop, not a lock: two threads may record one span at once.
            let _ = bucket.fields[slot].fetch_update(Ordering::AcqRel, Ordering::Acquire, |bits| {
                Some(LiveFields::from_bits(bits).merged(newer).to_bits())
            });
        }
        true
    }

    /// Takes a closing span out of the table (or one made sampled).
    pub(crate) fn remove(&self, id: &Id) -> Option<LiveSpan> {
        if self.none_alive() {
            return None;
        }
        let id = id.into_u64();
        let (bucket, slot) = self.find(id)?;
        let span = LiveSpan {
            start: Ticks::from_raw(bucket.starts[slot].load(Ordering::Relaxed)),
            fields: LiveFields::from_bits(bucket.fields[slot].load(Ordering::Acquire)),
        };
        // Read before the slot is freed (a release): the next owner's
        // writes come after. The compare-exchange lets one remover win.
        bucket.ids[slot]
            .compare_exchange(id, EMPTY, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        self.counts.alive.fetch_sub(LIVE, Ordering::AcqRel);
        Some(span)
    }

    /// Uncounts a span taken out of the extensions (it had overflowed);
    /// call it after.
    pub(crate) fn removed_overflow(&self) {
        self.counts.live_overflow.fetch_sub(1, Ordering::AcqRel);
        self.counts.alive.fetch_sub(LIVE, Ordering::AcqRel);
    }

    /// How many spans are counted (here or in the extensions).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        (self.counts.alive.load(Ordering::Acquire) >> 32) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Id {
        Id::from_u64(n)
    }

    fn state(marker: u32) -> SpanState {
        let mut state = SpanState::for_tests();
        state.events = marker;
        state
    }

    #[test]
    fn an_empty_table_knows_nothing_is_sampled() {
        let table = SpanTable::default();
        assert!(table.none_alive());
        assert!(!table.may_hold(&id(1)));
        assert!(table.with(&id(1), |_| ()).is_err());
        assert!(table.remove(&id(1)).is_none());
    }

    #[test]
    fn states_are_found_by_id_and_others_are_not() {
        let table = SpanTable::default();
        assert!(table.insert(&id(7), state(7)).is_ok());
        assert!(table.may_hold(&id(7)));
        assert!(!table.may_hold(&id(8)));
        assert_eq!(table.with(&id(7), |s| s.events).ok(), Some(7));
        assert!(table.with(&id(8), |s| s.events).is_err());
        assert_eq!(table.remove(&id(7)).map(|s| s.events), Some(7));
        assert!(!table.may_hold(&id(7)));
        assert!(table.none_alive());
    }

    #[test]
    fn a_full_bucket_overflows_and_says_so() {
        let table = SpanTable::default();
        // Ids that all hash into one bucket, found by search.
        let target = table.bucket(1) as *const Bucket;
        let same_bucket: Vec<u64> = (1..)
            .filter(|&n| std::ptr::eq(table.bucket(n), target))
            .take(SLOTS_PER_BUCKET + 2)
            .collect();
        let overflowed: Vec<u64> = same_bucket
            .iter()
            .filter(|&&n| table.insert(&id(n), state(n as u32)).is_err())
            .copied()
            .collect();
        assert_eq!(overflowed, same_bucket[SLOTS_PER_BUCKET..]);
        assert_eq!(table.len(), SLOTS_PER_BUCKET + 2);
        assert!(table.overflowing());
        // An id never inserted is now only "maybe".
        assert!(table.may_hold(&id(u64::MAX)));
        for _ in &overflowed {
            table.removed_overflow();
        }
        for &n in &same_bucket[..SLOTS_PER_BUCKET] {
            assert_eq!(table.remove(&id(n)).map(|s| s.events), Some(n as u32));
        }
        assert!(table.none_alive());
        assert!(!table.overflowing());
        assert!(table.insert(&id(3), state(3)).is_ok());
        assert!(!table.may_hold(&id(u64::MAX)));
    }

    #[test]
    fn concurrent_inserts_lookups_and_removes_balance() {
        let table = std::sync::Arc::new(SpanTable::default());
        let threads: Vec<_> = (0..4_u64)
            .map(|t| {
                let table = table.clone();
                std::thread::spawn(move || {
                    for round in 0..2_000_u64 {
                        let ids: Vec<u64> = (0..16).map(|k| 1 + t + 4 * (k + 16 * round)).collect();
                        let mut outside = 0;
                        for &n in &ids {
                            if table.insert(&id(n), state(n as u32)).is_err() {
                                outside += 1;
                            }
                        }
                        for &n in &ids {
                            if let Ok(events) = table.with(&id(n), |s| s.events) {
                                assert_eq!(events, n as u32);
                            }
                        }
                        for &n in &ids {
                            if table.remove(&id(n)).is_none() {
                                outside -= 1;
                                table.removed_overflow();
                            }
                        }
                        assert_eq!(outside, 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        assert!(table.none_alive());
        assert!(!table.overflowing());
    }

    // === LiveTable ===

    fn live(start: u64, remote_parent: bool) -> LiveSpan {
        LiveSpan {
            start: Ticks::from_raw(start),
            fields: LiveFields::default().with_remote_parent(remote_parent),
        }
    }

    /// `n` ids that all hash into the bucket of id 1.
    fn one_bucket(n: usize) -> Vec<u64> {
        let target = bucket_index(1);
        (1..)
            .filter(|&k| bucket_index(k) == target)
            .take(n)
            .collect()
    }

    #[test]
    fn a_live_bucket_is_three_cache_lines() {
        assert_eq!(std::mem::size_of::<LiveBucket>(), 192);
        assert!(SpanTable::default().live().is_none(), "off: no room made");
    }

    #[test]
    fn an_empty_live_table_holds_nothing() {
        let tables = SpanTable::new(true);
        let table = tables.live().expect("on");
        assert!(table.none_alive());
        assert!(!table.may_hold(&id(1)));
        assert!(!table.update(&id(1), LiveFields::default()));
        assert!(table.remove(&id(1)).is_none());
    }

    #[test]
    fn live_spans_are_found_updated_and_removed_by_id() {
        let tables = SpanTable::new(true);
        let table = tables.live().expect("on");
        assert!(table.insert(&id(7), live(70, true)).is_ok());
        assert!(table.may_hold(&id(7)));
        assert!(!table.may_hold(&id(8)));
        assert!(!table.update(&id(8), LiveFields::default()));
        let failed = LiveFields::from_bits(1 << 6); // an `error` field
        assert!(table.update(&id(7), failed));
        assert!(table.remove(&id(8)).is_none());
        let span = table.remove(&id(7)).expect("held");
        assert_eq!(span.start, Ticks::from_raw(70));
        assert!(span.fields.failed(), "the update is kept");
        assert_eq!(span.counted(), crate::live::Counted::Request);
        assert!(table.remove(&id(7)).is_none(), "removed once");
        assert!(table.none_alive());
    }

    #[test]
    fn a_full_live_bucket_overflows_and_its_slots_are_reused() {
        let tables = SpanTable::new(true);
        let table = tables.live().expect("on");
        let ids = one_bucket(SLOTS_PER_BUCKET + 2);
        let overflowed: Vec<u64> = ids
            .iter()
            .filter(|&&n| table.insert(&id(n), live(n, false)).is_err())
            .copied()
            .collect();
        assert_eq!(overflowed, ids[SLOTS_PER_BUCKET..]);
        assert_eq!(table.len(), SLOTS_PER_BUCKET + 2);
        assert!(table.overflowing());
        // Not in the table, but maybe in the extensions.
        assert!(table.may_hold(&id(overflowed[0])));
        assert!(table.remove(&id(overflowed[0])).is_none());
        // A slot freed is taken by the next span of the bucket.
        assert_eq!(
            table.remove(&id(ids[3])).map(|s| s.start.to_raw()),
            Some(ids[3])
        );
        assert!(table.insert(&id(ids[3]), live(1_000, false)).is_ok());
        assert_eq!(
            table.remove(&id(ids[3])).map(|s| s.start.to_raw()),
            Some(1_000)
        );
        for _ in &overflowed {
            table.removed_overflow();
        }
        assert!(!table.overflowing());
        for (k, &n) in ids[..SLOTS_PER_BUCKET].iter().enumerate() {
            if k != 3 {
                assert_eq!(table.remove(&id(n)).map(|s| s.start.to_raw()), Some(n));
            }
        }
        assert!(table.none_alive());
        assert!(!table.may_hold(&id(ids[0])));
    }

    #[test]
    fn concurrent_live_spans_balance_and_keep_their_own_values() {
        let tables = std::sync::Arc::new(SpanTable::new(true));
        // Every thread's spans share the few buckets of `ids`, so slots
        // change hands between threads all the time, and some overflow.
        let ids = one_bucket(4 * 6);
        let start = std::sync::Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4_usize)
            .map(|t| {
                let tables = tables.clone();
                let start = start.clone();
                let mine: Vec<u64> = ids[t * 6..(t + 1) * 6].to_vec();
                std::thread::spawn(move || {
                    let table = tables.live().expect("on");
                    start.wait();
                    let mut overflowed = 0;
                    for round in 0..5_000_u64 {
                        let mut outside = Vec::new();
                        for &n in &mine {
                            if table.insert(&id(n), live(n * round, false)).is_err() {
                                outside.push(n);
                            }
                        }
                        let failed = LiveFields::from_bits(1 << 6);
                        for &n in &mine {
                            assert_eq!(table.update(&id(n), failed), !outside.contains(&n));
                        }
                        for &n in &mine {
                            match table.remove(&id(n)) {
                                Some(span) => {
                                    assert_eq!(span.start.to_raw(), n * round);
                                    assert!(span.fields.failed());
                                }
                                None => {
                                    assert!(outside.contains(&n));
                                    table.removed_overflow();
                                    overflowed += 1;
                                }
                            }
                        }
                    }
                    overflowed
                })
            })
            .collect();
        let overflowed: u64 = threads
            .into_iter()
            .map(|t| t.join().expect("no panic"))
            .sum();
        // 24 spans for 8 slots: most likely some overflowed (not certain:
        // the threads may not overlap).
        eprintln!("{overflowed} overflowed");
        let table = tables.live().expect("on");
        assert!(table.none_alive());
        assert!(!table.overflowing());
        assert!(tables.nothing_alive());
    }
}
