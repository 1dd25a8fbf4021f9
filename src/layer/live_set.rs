//! [`LiveSampled`]: which spans alive right now are sampled, answered
//! without a registry lookup or a lock.
//!
//! In a service that samples a few percent of its requests, some sampled
//! span is nearly always alive. Every callback for an *unsampled* span
//! would then have to look the span up in the registry and take its
//! extensions' lock only to find no state there. This set answers the
//! question from one cache line instead: a span whose registry id is not in
//! it carries no `SpanState`.
//!
//! It is a fixed table of buckets of eight slots (one cache line each); an
//! id lives in the bucket its hash names, or, when that bucket is full, is
//! only counted as overflowing. While anything overflows, "not found" is
//! not proof, and the layer takes its exact path. The table never grows:
//! its memory is fixed, and a burst of live sampled spans beyond its room
//! costs speed, never correctness.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tracing_core::span::Id;

use crate::pipeline::CacheAligned;

const SLOTS_PER_BUCKET: usize = 8;
/// 1,024 buckets of 8 slots: 64 KiB, room for a few thousand live sampled
/// spans before buckets start to overflow.
const BUCKET_BITS: u32 = 10;
const EMPTY: u64 = 0;

#[repr(align(64))]
#[derive(Default)]
struct Bucket([AtomicU64; SLOTS_PER_BUCKET]);

/// The live sampled spans (those with a `SpanState`), by registry id.
pub(crate) struct LiveSampled {
    counts: CacheAligned<Counts>,
    buckets: Box<[Bucket]>,
}

#[derive(Default)]
struct Counts {
    /// How many are alive; zero lets every callback return at once.
    count: AtomicUsize,
    /// How many alive are not in the table (their bucket was full).
    overflow: AtomicUsize,
}

impl Default for LiveSampled {
    fn default() -> Self {
        LiveSampled {
            counts: CacheAligned::default(),
            buckets: (0..1_usize << BUCKET_BITS)
                .map(|_| Bucket::default())
                .collect(),
        }
    }
}

impl LiveSampled {
    #[inline]
    fn bucket(&self, id: u64) -> &Bucket {
        let index = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - BUCKET_BITS);
        &self.buckets[index as usize]
    }

    /// Whether no sampled span is alive. A span is counted before it
    /// becomes visible to other threads, and uncounted only when its state
    /// is gone, so zero means the span at hand is not sampled.
    #[inline]
    pub(crate) fn none_alive(&self) -> bool {
        self.counts.count.load(Ordering::Acquire) == 0
    }

    /// How many sampled spans are alive.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.counts.count.load(Ordering::Acquire)
    }

    /// Whether the span may carry a `SpanState`: `false` is certain, `true`
    /// means "look".
    #[inline]
    pub(crate) fn may_be_sampled(&self, id: &Id) -> bool {
        if self.none_alive() {
            return false;
        }
        let id = id.into_u64();
        let found = self
            .bucket(id)
            .0
            .iter()
            .any(|slot| slot.load(Ordering::Acquire) == id);
        found || self.counts.overflow.load(Ordering::Acquire) != 0
    }

    /// Counts a span that is getting a `SpanState`; call it before the
    /// state is attached.
    pub(crate) fn insert(&self, id: &Id) {
        self.counts.count.fetch_add(1, Ordering::AcqRel);
        let id = id.into_u64();
        let placed = self.bucket(id).0.iter().any(|slot| {
            slot.compare_exchange(EMPTY, id, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        if !placed {
            self.counts.overflow.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Uncounts a span whose `SpanState` was removed; call it after.
    pub(crate) fn remove(&self, id: &Id) {
        let id = id.into_u64();
        let taken = self.bucket(id).0.iter().any(|slot| {
            slot.compare_exchange(id, EMPTY, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        if !taken {
            self.counts.overflow.fetch_sub(1, Ordering::AcqRel);
        }
        self.counts.count.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Id {
        Id::from_u64(n)
    }

    #[test]
    fn empty_set_knows_nothing_is_sampled() {
        let set = LiveSampled::default();
        assert!(set.none_alive());
        assert!(!set.may_be_sampled(&id(1)));
    }

    #[test]
    fn members_are_found_and_others_are_not() {
        let set = LiveSampled::default();
        set.insert(&id(7));
        assert!(set.may_be_sampled(&id(7)));
        assert!(!set.may_be_sampled(&id(8)));
        set.remove(&id(7));
        assert!(!set.may_be_sampled(&id(7)));
        assert!(set.none_alive());
    }

    #[test]
    fn a_full_bucket_overflows_into_may_be() {
        let set = LiveSampled::default();
        // Ids that all hash into one bucket, found by search.
        let target = set.bucket(1) as *const Bucket;
        let same_bucket: Vec<u64> = (1..)
            .filter(|&n| std::ptr::eq(set.bucket(n), target))
            .take(SLOTS_PER_BUCKET + 2)
            .collect();
        for &n in &same_bucket {
            set.insert(&id(n));
        }
        assert_eq!(set.len(), SLOTS_PER_BUCKET + 2);
        // Two overflowed: an id never inserted is now only "maybe".
        assert!(set.may_be_sampled(&id(u64::MAX)));
        // Removing the overflowed ones (not found in the table) settles it.
        for &n in same_bucket.iter().rev() {
            set.remove(&id(n));
        }
        assert!(set.none_alive());
        set.insert(&id(3));
        assert!(!set.may_be_sampled(&id(u64::MAX)));
        assert!(set.may_be_sampled(&id(3)));
    }

    #[test]
    fn the_same_id_twice_is_removed_once_each() {
        let set = LiveSampled::default();
        set.insert(&id(5));
        set.insert(&id(5));
        set.remove(&id(5));
        assert!(set.may_be_sampled(&id(5)));
        set.remove(&id(5));
        assert!(!set.may_be_sampled(&id(5)));
        assert!(set.none_alive());
    }

    #[test]
    fn concurrent_inserts_and_removes_balance() {
        let set = std::sync::Arc::new(LiveSampled::default());
        let threads: Vec<_> = (0..4_u64)
            .map(|t| {
                let set = set.clone();
                std::thread::spawn(move || {
                    for round in 0..2_000_u64 {
                        let ids: Vec<Id> =
                            (0..16).map(|k| id(1 + t + 4 * (k + 16 * round))).collect();
                        ids.iter().for_each(|i| set.insert(i));
                        assert!(ids.iter().all(|i| set.may_be_sampled(i)));
                        ids.iter().for_each(|i| set.remove(i));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        assert!(set.none_alive());
        assert!(!set.may_be_sampled(&id(1)));
    }
}
