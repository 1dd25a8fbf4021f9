//! [`Text`]: an immutable string that stores short values inline.
//!
//! Field values are copied out of `tracing`'s borrowed `&str`s. Most are short
//! (ids, verbs, routes, status words), so keeping up to 22 bytes inline means
//! recording them costs no heap allocation on the application thread.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

const INLINE_CAP: usize = 22;

/// An immutable UTF-8 string; values of up to 22 bytes live inline, longer
/// ones on the heap. It dereferences to `str`.
///
/// # Examples
///
/// ```
/// use tracing_appinsights::record::Text;
///
/// let t = Text::from("GET /orders/{id}");
/// assert_eq!(&*t, "GET /orders/{id}");
/// assert_eq!(t, "GET /orders/{id}");
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text(Repr);

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Repr {
    Inline { len: u8, buf: [u8; INLINE_CAP] },
    Heap(Box<str>),
}

impl Text {
    /// The empty string.
    pub const fn new() -> Self {
        Text(Repr::Inline {
            len: 0,
            buf: [0; INLINE_CAP],
        })
    }

    /// The text as a `&str`.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Inline bytes are always copied from a `&str` cut on a char
            // boundary, so this never fails; the fallback keeps it panic-free.
            Repr::Inline { len, buf } => std::str::from_utf8(&buf[..*len as usize]).unwrap_or(""),
            Repr::Heap(s) => s,
        }
    }

    /// Copies `s`, cut to at most `max_chars` characters on a char boundary.
    pub(crate) fn truncated(s: &str, max_chars: usize) -> Self {
        Text::from(truncate_str(s, max_chars))
    }
}

/// `s` cut to at most `max_chars` characters, on a char boundary.
pub(crate) fn truncate_str(s: &str, max_chars: usize) -> &str {
    // A string of at most `max_chars` bytes has at most that many chars.
    if s.len() <= max_chars {
        return s;
    }
    match s.char_indices().nth(max_chars) {
        Some((idx, _)) => &s[..idx],
        None => s,
    }
}

/// `s` cut to at most `max_units` UTF-16 code units, on a char boundary: the
/// length the ingestion service (.NET) counts, so the unit of every schema
/// limit. A char of four UTF-8 bytes (outside the BMP) is two units, every
/// other char one.
pub(crate) fn truncate_utf16(s: &str, max_units: usize) -> &str {
    // A char takes at least as many UTF-8 bytes as UTF-16 units, so a string
    // of at most `max_units` bytes fits.
    if s.len() <= max_units {
        return s;
    }
    let mut units = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        // Each char starts with a byte that is not a continuation byte
        // (`10xxxxxx`); a four-byte char starts with `11110xxx`.
        if b & 0xc0 != 0x80 {
            units += if b >= 0xf0 { 2 } else { 1 };
            if units > max_units {
                return &s[..i];
            }
        }
    }
    s
}

impl Default for Text {
    fn default() -> Self {
        Text::new()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        if s.len() <= INLINE_CAP {
            let mut buf = [0u8; INLINE_CAP];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            Text(Repr::Inline {
                len: s.len() as u8,
                buf,
            })
        } else {
            Text(Repr::Heap(s.into()))
        }
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        if s.len() <= INLINE_CAP {
            Text::from(s.as_str())
        } else {
            Text(Repr::Heap(s.into_boxed_str()))
        }
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The bytes a [`TextWriter`] holds before it moves to the heap: room for
/// most messages, so formatting one allocates at most once, at the end (and
/// not at all when the text fits a `Text` inline).
const WRITER_CAP: usize = 128;

/// A `fmt::Write` target that fills a buffer of its own first and moves to
/// the heap only when the text outgrows it, stopping at a character limit.
///
/// While the bytes written fit both the buffer and the limit (a text of at
/// most `n` bytes has at most `n` characters), a write is one copy: the
/// characters are counted only once the text could pass the limit.
pub(crate) struct TextWriter {
    buf: [u8; WRITER_CAP],
    /// Bytes in `buf`.
    len: usize,
    heap: Option<String>,
    /// A write that leaves `len` at most this is a plain copy: the smaller
    /// of the buffer and the limit, until [`write_counted`](Self::write_counted)
    /// takes over (then 0).
    fast_limit: usize,
    /// The characters still allowed, once they are counted.
    chars_left: usize,
    pub(crate) truncated: bool,
}

impl TextWriter {
    #[inline]
    pub(crate) fn new(max_chars: usize) -> Self {
        TextWriter {
            buf: [0; WRITER_CAP],
            len: 0,
            heap: None,
            fast_limit: max_chars.min(WRITER_CAP),
            chars_left: max_chars,
            truncated: false,
        }
    }

    /// What was written (the buffer holds whole `&str` pieces, cut on char
    /// boundaries, so it is always UTF-8; the fallback keeps this
    /// panic-free).
    fn buffered(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    #[inline]
    pub(crate) fn finish(self) -> Text {
        match self.heap {
            Some(s) => Text::from(s),
            // A fixed-size copy: the bytes past `len` are the buffer's
            // zeros, as an inline `Text` has them.
            None if self.len <= INLINE_CAP => Text(Repr::Inline {
                len: self.len as u8,
                buf: self.buf[..INLINE_CAP].try_into().unwrap_or_default(),
            }),
            None => Text::from(self.buffered()),
        }
    }

    /// A write past the fast path: characters counted, the text cut at the
    /// limit, moved to the heap when the buffer is full.
    #[cold]
    fn write_counted(&mut self, s: &str) {
        if self.fast_limit != 0 {
            // What the fast path wrote is not counted yet.
            self.fast_limit = 0;
            self.chars_left = self
                .chars_left
                .saturating_sub(self.buffered().chars().count());
        }
        let cut = truncate_str(s, self.chars_left);
        if cut.len() < s.len() {
            self.truncated = true;
        }
        self.chars_left -= cut.chars().count();
        match &mut self.heap {
            Some(heap) => heap.push_str(cut),
            None if self.len + cut.len() <= WRITER_CAP => {
                self.buf[self.len..self.len + cut.len()].copy_from_slice(cut.as_bytes());
                self.len += cut.len();
            }
            None => {
                let mut heap = String::with_capacity((self.len + cut.len()).max(2 * WRITER_CAP));
                heap.push_str(self.buffered());
                heap.push_str(cut);
                self.heap = Some(heap);
            }
        }
    }
}

impl fmt::Write for TextWriter {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end <= self.fast_limit {
            self.buf[self.len..end].copy_from_slice(s.as_bytes());
            self.len = end;
        } else if !self.truncated {
            self.write_counted(s);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    #[test]
    fn inline_and_heap() {
        for s in [
            "",
            "a",
            "exactly-22-bytes-long!",
            "this one is longer than 22 bytes",
        ] {
            assert_eq!(Text::from(s).as_str(), s);
            assert_eq!(Text::from(s.to_string()).as_str(), s);
        }
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        // 'é' is 2 bytes, '😀' 4: cut at every count.
        let s = "aé😀bé😀c";
        for n in 0..10 {
            let t = truncate_str(s, n);
            assert_eq!(t.chars().count(), n.min(7));
            assert!(s.starts_with(t));
        }
    }

    fn utf16_len(s: &str) -> usize {
        s.encode_utf16().count()
    }

    #[test]
    fn utf16_truncation_at_the_boundaries() {
        let emoji = "😀".repeat(512); // 1024 units, 2048 bytes
        assert_eq!(truncate_utf16(&emoji, 1024), emoji, "exactly at the limit");
        assert_eq!(
            truncate_utf16(&emoji, 1023),
            "😀".repeat(511),
            "never half a pair"
        );
        assert_eq!(truncate_utf16(&emoji, 1025), emoji);
        // 1,023 emoji: 2,046 units, cut to 512 of them.
        let over = "😀".repeat(1023);
        assert_eq!(truncate_utf16(&over, 1024), emoji);
        // An emoji straddling the limit goes whole.
        assert_eq!(truncate_utf16("ab😀", 3), "ab");
        assert_eq!(truncate_utf16("ab😀", 4), "ab😀");
        assert_eq!(truncate_utf16("😀", 1), "");
        assert_eq!(truncate_utf16("😀", 0), "");
        assert_eq!(truncate_utf16("", 0), "");
        // ASCII is cut at the byte count, whole strings are returned as is.
        assert_eq!(truncate_utf16("abcdef", 4), "abcd");
        assert_eq!(truncate_utf16("abcdef", 6), "abcdef");
        // BMP chars of two and three bytes are one unit each.
        assert_eq!(truncate_utf16("é€é€", 3), "é€é");
        assert_eq!(truncate_utf16("é€é€", 4), "é€é€");
    }

    #[test]
    fn utf16_truncation_of_mixed_text_at_every_limit() {
        // ASCII, two- and three-byte BMP chars, astral chars, a control.
        let s = "aé€😀\u{1}𝄞b😀é";
        for max in 0..=utf16_len(s) + 2 {
            let t = truncate_utf16(s, max);
            assert!(s.starts_with(t), "a prefix");
            assert!(utf16_len(t) <= max, "{max}: {t:?}");
            // The longest such prefix: the next char would not fit.
            if let Some(next) = s[t.len()..].chars().next() {
                assert!(utf16_len(t) + next.len_utf16() > max, "{max}: {t:?}");
            }
        }
    }

    #[test]
    fn writer_spills_to_heap_and_truncates() {
        let mut w = TextWriter::new(30);
        write!(w, "{:?}", "a string with \"quotes\" and é").unwrap();
        let t = w.finish();
        assert_eq!(t.chars().count(), 30);
        assert!(t.starts_with("\"a string with"));

        let mut w = TextWriter::new(100);
        write!(w, "{}", 42).unwrap();
        assert!(!w.truncated);
        assert_eq!(w.finish(), "42");

        let mut w = TextWriter::new(3);
        write!(w, "é😀xyz").unwrap();
        assert!(w.truncated);
        assert_eq!(w.finish(), "é😀x");
    }

    /// Piece by piece, in and past the buffer and the limit, the writer
    /// keeps exactly the first `max` characters.
    #[test]
    fn writer_keeps_the_first_characters_whatever_the_pieces() {
        let pieces = [
            "ab",
            "é",
            "😀😀",
            "",
            "x",
            &"y".repeat(150),
            "z€",
            &"é".repeat(70),
        ];
        let whole: String = pieces.concat();
        for max in [0, 1, 3, 5, 21, 22, 23, 64, 127, 128, 129, 200, 300, 1000] {
            let mut w = TextWriter::new(max);
            for piece in pieces {
                w.write_str(piece).unwrap();
            }
            let want: String = whole.chars().take(max).collect();
            assert_eq!(w.truncated, want.len() < whole.len(), "{max}");
            assert_eq!(w.finish().as_str(), want, "{max}");
        }
    }
}
