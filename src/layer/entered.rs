//! The sampled spans entered on each thread, per layer: so that a
//! contextual event on a thread where none is entered, in a service where
//! some sampled span is alive elsewhere, is known to be in no sampled span
//! without looking its span up (a contextual event's span is always one
//! entered on its thread: the current one, or, under a per-layer filter,
//! the nearest one the filter shows).
//!
//! Each thread keeps a small list of `(layer, span id)` for the spans it
//! entered while they were sampled, in entry order; exiting removes the
//! newest matching entry. The list only grows as deep as the thread's
//! entered sampled spans nest. A span made sampled while entered somewhere
//! is missing from that thread's list; the layer then stops trusting the
//! lists (`AppInsightsLayer::upgraded`). An entry for a span that stopped
//! being sampled only sends events down the exact path.

use std::cell::{Cell, RefCell};

use tracing_core::span::Id;

thread_local! {
    static ENTERED: RefCell<Vec<(usize, u64)>> = const { RefCell::new(Vec::new()) };
    /// How deep this thread is in entered spans (sampled or not) of one
    /// layer: `(layer, depth)`; the layer is `MIXED` while spans of two
    /// layers are entered at once (then nothing is known from it).
    static DEPTH: Cell<(usize, u32)> = const { Cell::new((0, 0)) };
}

/// Spans of more than one layer are entered on this thread.
const MIXED: usize = usize::MAX;

/// A span of layer `key` was entered here (sampled or not).
#[inline]
pub(super) fn enter(key: usize) {
    let _ = DEPTH.try_with(|depth| {
        let (layer, n) = depth.get();
        let layer = if n == 0 || layer == key { key } else { MIXED };
        depth.set((layer, n.saturating_add(1)));
    });
}

/// A span of layer `key` was exited here.
#[inline]
pub(super) fn exit(_key: usize) {
    let _ = DEPTH.try_with(|depth| {
        let (layer, n) = depth.get();
        depth.set(if n <= 1 { (0, 0) } else { (layer, n - 1) });
    });
}

/// How deep this thread is in entered spans of a layer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Depth {
    /// None entered.
    Zero,
    /// Only this layer's are entered (at least one).
    Ours,
    /// Another layer's too: nothing is known from the depth.
    Unknown,
}

/// How deep this thread is in entered spans, as layer `key` sees it.
#[inline]
pub(super) fn depth(key: usize) -> Depth {
    DEPTH
        .try_with(|depth| match depth.get() {
            (_, 0) => Depth::Zero,
            (layer, _) if layer == key => Depth::Ours,
            _ => Depth::Unknown,
        })
        .unwrap_or(Depth::Unknown)
}

/// Notes that the sampled span `id` of layer `key` was entered here.
#[inline]
pub(super) fn push(key: usize, id: &Id) {
    let _ = ENTERED.try_with(|entered| {
        if let Ok(mut entered) = entered.try_borrow_mut() {
            entered.push((key, id.into_u64()));
        }
    });
}

/// Notes that the span `id` of layer `key` was exited here (nothing if it
/// was not entered while sampled).
#[inline]
pub(super) fn pop(key: usize, id: &Id) {
    let _ = ENTERED.try_with(|entered| {
        let Ok(mut entered) = entered.try_borrow_mut() else {
            return;
        };
        if entered.is_empty() {
            return;
        }
        let id = id.into_u64();
        if let Some(at) = entered.iter().rposition(|&e| e == (key, id)) {
            entered.remove(at);
        }
    });
}

/// The span a contextual event or span of layer `key` happens in, as far
/// as this thread's lists tell without a registry lookup.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Current {
    /// No span is entered here.
    None,
    /// Every span entered here is a sampled span of this layer: this one
    /// is the innermost.
    Span(Id),
    /// The lists cannot tell (spans of another layer, or unsampled ones,
    /// are entered too): ask the registry.
    Unknown,
}

/// The innermost span entered on this thread, when every span entered
/// here is a sampled span of layer `key` (the depth counts them all, and
/// the list holds as many) or none is. The caller must know the list is
/// complete (no sampled span of the layer entered before it was sampled,
/// none kept outside the table).
#[inline]
pub(super) fn current(key: usize) -> Current {
    let Ok((layer, n)) = DEPTH.try_with(Cell::get) else {
        return Current::Unknown;
    };
    if n == 0 {
        return Current::None;
    }
    if layer != key {
        return Current::Unknown;
    }
    ENTERED
        .try_with(|entered| {
            let Ok(entered) = entered.try_borrow() else {
                return Current::Unknown;
            };
            match entered.last() {
                Some(&(k, id)) if k == key && entered.len() == n as usize => {
                    Current::Span(Id::from_u64(id))
                }
                _ => Current::Unknown,
            }
        })
        .unwrap_or(Current::Unknown)
}

/// Whether no sampled span of layer `key` is entered on this thread;
/// `false` when it cannot be told (the thread is exiting).
#[inline]
pub(super) fn none(key: usize) -> bool {
    ENTERED
        .try_with(|entered| {
            entered
                .try_borrow()
                .is_ok_and(|entered| entered.iter().all(|&(k, _)| k != key))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_depth_is_per_layer_until_two_mix() {
        let (a, b) = (11, 12);
        assert_eq!(depth(a), Depth::Zero);
        enter(a);
        enter(a);
        assert_eq!((depth(a), depth(b)), (Depth::Ours, Depth::Unknown));
        enter(b);
        assert_eq!((depth(a), depth(b)), (Depth::Unknown, Depth::Unknown));
        exit(b);
        exit(a);
        exit(a);
        assert_eq!((depth(a), depth(b)), (Depth::Zero, Depth::Zero));
        exit(a);
        assert_eq!(depth(a), Depth::Zero, "an exit too many changes nothing");
    }

    #[test]
    fn the_current_span_is_known_only_when_every_entered_span_is_listed() {
        let key = 21;
        assert_eq!(current(key), Current::None);
        enter(key);
        assert_eq!(
            current(key),
            Current::Unknown,
            "entered, not listed: unsampled"
        );
        enter(key);
        push(key, &Id::from_u64(8));
        assert_eq!(current(key), Current::Unknown, "one of two listed");
        exit(key);
        pop(key, &Id::from_u64(8));
        exit(key);
        enter(key);
        push(key, &Id::from_u64(3));
        enter(key);
        push(key, &Id::from_u64(4));
        assert_eq!(current(key), Current::Span(Id::from_u64(4)));
        assert_eq!(current(key + 1), Current::Unknown, "another layer's view");
        pop(key, &Id::from_u64(4));
        exit(key);
        assert_eq!(current(key), Current::Span(Id::from_u64(3)));
        pop(key, &Id::from_u64(3));
        exit(key);
        assert_eq!(current(key), Current::None);
    }

    #[test]
    fn entries_are_per_layer_and_removed_newest_first() {
        let (a, b) = (1, 2);
        assert!(none(a) && none(b));
        push(a, &Id::from_u64(5));
        push(b, &Id::from_u64(5));
        push(a, &Id::from_u64(5));
        assert!(!none(a) && !none(b));
        pop(b, &Id::from_u64(5));
        assert!(none(b), "b's entry went, a's stayed");
        pop(a, &Id::from_u64(5));
        assert!(!none(a), "entered twice, exited once");
        pop(a, &Id::from_u64(7));
        assert!(
            !none(a),
            "a span never entered while sampled changes nothing"
        );
        pop(a, &Id::from_u64(5));
        assert!(none(a));
    }
}
