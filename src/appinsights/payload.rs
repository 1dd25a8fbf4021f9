//! [`Payload`]: one request's worth of items, a JSON array of envelopes of
//! at most [`MAX_BODY_BYTES`], with where each item is in it (to resend
//! only some after a partial answer, or store them one per line).

use std::time::Instant;

use bytes::Bytes;

use super::gzip;
use super::storage::Blob;

/// Largest request body before gzip (about 1 MiB; the service takes up to
/// 64 MB, but smaller requests retry cheaper).
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// One request's worth of items: a JSON array and where each item is in it.
#[derive(Debug)]
pub(super) struct Payload {
    /// Identifies the payload while in flight; orders payloads for flush.
    pub(super) seq: u64,
    /// `[item,item,…]`: as built until its first attempt (or until memory
    /// is tight), then gzipped.
    pub(super) body: Body,
    /// Each item's byte range in `body`.
    pub(super) items: Vec<(u32, u32)>,
    pub(super) origin: Origin,
    /// Whether it was sent before (a send is then counted as a retry).
    pub(super) sent: bool,
    /// When it was first sent: retries stop `max_elapsed` after.
    pub(super) first_attempt: Option<Instant>,
    /// The service's `Retry-After`: no attempt before this.
    pub(super) not_before: Option<Instant>,
    /// Partial answers in a row that sent some of its items back: the
    /// backoff step of its next attempt is at least this (the endpoint
    /// answers, so its own failure count stays at zero).
    pub(super) partial_retries: u32,
}

/// Where a payload's items are counted while it is being sent.
#[derive(Debug)]
pub(super) enum Origin {
    /// Taken from the queue (or what is left of a payload): in memory.
    Fresh,
    /// Read back from storage: still in storage (the blob is leased) until
    /// the answer settles it.
    Stored(Blob),
}

/// A payload's JSON array.
#[derive(Debug, Clone)]
pub(super) enum Body {
    /// As built.
    Raw(Bytes),
    /// Gzipped once, when first sent (or earlier, to take less memory while
    /// it waits): these bytes go on the wire, on every attempt.
    Gzipped(Bytes),
}

impl Body {
    /// The bytes it holds in memory.
    pub(super) fn held(&self) -> usize {
        match self {
            Body::Raw(b) | Body::Gzipped(b) => b.len(),
        }
    }

    pub(super) fn is_raw(&self) -> bool {
        matches!(self, Body::Raw(_))
    }

    /// The bytes to send: gzipped (compressed now if it was not yet, and
    /// kept so for the retries) when `gzip`, else the JSON array.
    pub(super) fn for_wire(&mut self, gzip: bool) -> (Bytes, bool) {
        if gzip {
            *self = std::mem::replace(self, Body::Raw(Bytes::new())).compressed();
        }
        match self {
            Body::Gzipped(gz) if gzip => (gz.clone(), true),
            Body::Raw(raw) => (raw.clone(), false),
            // Gzipped while waiting, but the endpoint takes plain JSON.
            Body::Gzipped(_) => (self.raw(), false),
        }
    }

    /// The JSON array.
    pub(super) fn raw(&self) -> Bytes {
        match self {
            Body::Raw(raw) => raw.clone(),
            // Our own gzip stream: it unzips (else, an empty array's worth
            // of nothing rather than a panic on the worker).
            Body::Gzipped(gz) => Bytes::from(gzip::decompress(gz).unwrap_or_default()),
        }
    }

    /// The gzipped form of a raw body (unchanged if gzip fails).
    pub(super) fn compressed(self) -> Body {
        match self {
            Body::Raw(raw) => match gzip::compress(&raw) {
                Some(gz) => Body::Gzipped(Bytes::from(gz)),
                None => Body::Raw(raw),
            },
            gz => gz,
        }
    }
}

impl Payload {
    /// A payload of `items`, each a serialised envelope.
    pub(super) fn new<'a>(seq: u64, items: impl Iterator<Item = &'a [u8]>, origin: Origin) -> Self {
        let mut builder = PayloadBuilder::default();
        for item in items {
            builder.push(item);
        }
        builder.finish(seq, origin)
    }

    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    pub(super) fn is_fresh(&self) -> bool {
        matches!(self.origin, Origin::Fresh)
    }

    /// Item `i` of `raw`, this payload's JSON array.
    pub(super) fn item<'a>(&self, raw: &'a [u8], i: usize) -> &'a [u8] {
        let (start, end) = self.items[i];
        raw.get(start as usize..end as usize).unwrap_or_default()
    }

    /// The items of `raw`, this payload's JSON array.
    pub(super) fn item_slices<'a>(
        &'a self,
        raw: &'a [u8],
    ) -> impl Iterator<Item = &'a [u8]> + Clone {
        (0..self.len()).map(move |i| self.item(raw, i))
    }

    /// The items at `indices`, as a fresh payload with the same sequence
    /// number and retry history.
    pub(super) fn subset(&self, indices: &[usize]) -> Payload {
        let raw = self.body.raw();
        let mut rest = Payload::new(
            self.seq,
            indices.iter().map(|i| self.item(&raw, *i)),
            Origin::Fresh,
        );
        rest.sent = true;
        rest.first_attempt = self.first_attempt;
        rest.partial_retries = self.partial_retries + 1;
        rest
    }
}

/// What [`PayloadBuilder::push_with`] did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Written {
    /// The item is in the body.
    Pushed,
    /// Nothing was written: no item.
    Nothing,
    /// The item, which does not fit this body (it has items already).
    Overflow(Vec<u8>),
}

/// Builds a payload's body item by item.
#[derive(Debug, Default)]
pub(crate) struct PayloadBuilder {
    body: Vec<u8>,
    items: Vec<(u32, u32)>,
}

impl PayloadBuilder {
    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The bytes written so far (the body without its closing `]`).
    #[cfg(test)]
    pub(super) fn finish_len(&self) -> usize {
        self.body.len()
    }

    pub(super) fn push(&mut self, item: &[u8]) {
        if self.body.is_empty() {
            self.body.reserve(64 * 1024);
        }
        self.body
            .push(if self.items.is_empty() { b'[' } else { b',' });
        let start = self.body.len() as u32;
        self.body.extend_from_slice(item);
        self.items.push((start, self.body.len() as u32));
    }

    /// Makes room for about `bytes` more bytes of items (at most
    /// [`MAX_BODY_BYTES`] in all), so a body grows in one step rather than
    /// by doubling copies.
    pub(super) fn reserve(&mut self, bytes: usize) {
        let want = (self.body.len() + bytes).min(MAX_BODY_BYTES + 2);
        self.body.reserve(want.saturating_sub(self.body.len()));
    }

    /// Lets `write` append one item straight to the body, with no copy:
    /// the same body as [`push`](Self::push) of what `write` wrote. `write`
    /// may write nothing: no item is then added. When the item would pass
    /// [`MAX_BODY_BYTES`] and the body already has items, the item is taken
    /// back out and returned: it belongs to the next body.
    pub(super) fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Written {
        let mark = self.body.len();
        self.body
            .push(if self.items.is_empty() { b'[' } else { b',' });
        let start = self.body.len();
        write(&mut self.body);
        let len = self.body.len() - start;
        if len == 0 {
            self.body.truncate(mark);
            return Written::Nothing;
        }
        if !self.items.is_empty() && mark + len + 2 > MAX_BODY_BYTES {
            let item = self.body.split_off(start);
            self.body.truncate(mark);
            return Written::Overflow(item);
        }
        self.items.push((start as u32, self.body.len() as u32));
        Written::Pushed
    }

    /// The JSON array alone (for the benchmarks).
    #[cfg(feature = "bench-internals")]
    pub(crate) fn into_body(self) -> Bytes {
        self.finish(0, Origin::Fresh).body.raw()
    }

    pub(super) fn finish(mut self, seq: u64, origin: Origin) -> Payload {
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
            partial_retries: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
