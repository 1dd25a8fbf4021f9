//! Trace and span identifiers, and the fast generator that draws them.

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, RandomState};

/// A 128-bit W3C / OpenCensus trace id, printed as 32 lowercase hex digits.
///
/// The all-zero value is invalid and never generated.
///
/// # Examples
///
/// ```
/// use tracing_appinsights::TraceId;
///
/// let id = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
/// assert_eq!(id.to_string(), "0af7651916cd43dd8448eb211c80319c");
/// assert!(id.is_valid());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId([u8; 16]);

/// A 64-bit span id, printed as 16 lowercase hex digits.
///
/// The all-zero value is invalid and never generated.
///
/// # Examples
///
/// ```
/// use tracing_appinsights::SpanId;
///
/// let id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
/// assert_eq!(id.to_string(), "00f067aa0ba902b7");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId([u8; 8]);

macro_rules! impl_id {
    ($ty:ident, $n:literal, $int:ty) => {
        impl $ty {
            /// The invalid, all-zero id.
            pub const INVALID: $ty = $ty([0; $n]);

            /// Builds an id from its big-endian bytes.
            pub const fn from_bytes(bytes: [u8; $n]) -> Self {
                $ty(bytes)
            }

            /// The id's big-endian bytes.
            pub const fn to_bytes(self) -> [u8; $n] {
                self.0
            }

            #[doc = concat!("Builds an id from a `", stringify!($int), "` (big-endian).")]
            pub const fn from_int(value: $int) -> Self {
                $ty(value.to_be_bytes())
            }

            #[doc = concat!("The id as a `", stringify!($int), "` (big-endian).")]
            pub const fn to_int(self) -> $int {
                <$int>::from_be_bytes(self.0)
            }

            /// `false` for the all-zero id, which W3C Trace Context calls invalid.
            pub fn is_valid(&self) -> bool {
                self.0 != [0; $n]
            }

            #[doc = concat!("Parses exactly ", stringify!($n), " * 2 hex digits (either case).")]
            ///
            /// Returns `None` for any other input; the all-zero id parses (check
            /// [`is_valid`](Self::is_valid) where that matters).
            pub fn from_hex(hex: &str) -> Option<Self> {
                let hex = hex.as_bytes();
                if hex.len() != $n * 2 {
                    return None;
                }
                let mut out = [0u8; $n];
                for (i, pair) in hex.chunks_exact(2).enumerate() {
                    out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
                }
                Some($ty(out))
            }

            /// Writes the lowercase hex form into a stack buffer, four
            /// bytes (eight digits) at a time ([`hex8`]): this runs for
            /// every item sent.
            pub(crate) fn hex_buf(&self) -> [u8; $n * 2] {
                let mut buf = [0u8; $n * 2];
                for (out, bytes) in buf.chunks_exact_mut(8).zip(self.0.chunks_exact(4)) {
                    let word = [bytes[0], bytes[1], bytes[2], bytes[3]];
                    out.copy_from_slice(&hex8(u32::from_be_bytes(word)));
                }
                buf
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let buf = self.hex_buf();
                // The buffer only ever holds ASCII hex digits.
                f.write_str(std::str::from_utf8(&buf).unwrap_or_default())
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($ty), self)
            }
        }
    };
}

impl_id!(TraceId, 16, u128);
impl_id!(SpanId, 8, u64);

/// The eight lowercase hex digits of `v`, most significant first, computed
/// for all eight at once: each nibble is spread into a byte of a `u64`,
/// then `'0'` is added, plus `'a' - '0' - 10` where the nibble is ten or
/// more.
fn hex8(v: u32) -> [u8; 8] {
    let mut x = u64::from(v);
    x = (x | x << 16) & 0x0000_ffff_0000_ffff;
    x = (x | x << 8) & 0x00ff_00ff_00ff_00ff;
    x = (x | x << 4) & 0x0f0f_0f0f_0f0f_0f0f;
    // Byte k (from the least significant) now holds nibble k.
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    let digits = x + 0x3030_3030_3030_3030 + letters * u64::from(b'a' - b'0' - 10);
    digits.to_be_bytes()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

// === the generator ===

thread_local! {
    /// Per-thread wyrand state, seeded from the std `RandomState` keys (which
    /// come from the OS's random source once per process and differ per thread).
    static RNG_STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let s = RandomState::new().hash_one(std::thread::current().id());
    s | 1
}

/// The next 64 random bits of this thread's wyrand generator.
///
/// wyrand passes BigCrush and PractRand and costs one multiply; ids need
/// uniqueness and uniformity (the sampler reads their bits), not secrecy.
pub(crate) fn next_u64() -> u64 {
    RNG_STATE.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// A random non-zero 64-bit span id.
pub(crate) fn new_span_id() -> SpanId {
    loop {
        let v = next_u64();
        if v != 0 {
            return SpanId::from_int(v);
        }
    }
}

/// A random non-zero trace id.
pub(crate) fn new_trace_id() -> TraceId {
    let high = u128::from(next_u64()) << 64;
    // A non-zero low half makes the id non-zero.
    TraceId::from_int(high | u128::from(new_span_id().to_int()))
}

/// Per-layer random keys that turn registry span ids into trace and span ids
/// for unsampled spans (a bijective mix, so distinct live spans get distinct
/// ids).
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdKeys {
    trace_hi: u64,
    trace_lo: u64,
    span: u64,
}

impl IdKeys {
    pub(crate) fn random() -> Self {
        IdKeys {
            trace_hi: next_u64(),
            trace_lo: next_u64(),
            span: next_u64(),
        }
    }

    pub(crate) fn trace_id(&self, id: &tracing_core::span::Id) -> TraceId {
        let x = id.into_u64();
        let hi = mix(x ^ self.trace_hi);
        let lo = mix(x ^ self.trace_lo);
        TraceId::from_int((u128::from(hi) << 64) | u128::from(lo.max(1)))
    }

    pub(crate) fn span_id(&self, id: &tracing_core::span::Id) -> SpanId {
        SpanId::from_int(mix(id.into_u64() ^ self.span).max(1))
    }
}

/// The splitmix64 finaliser: a bijection with full avalanche.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_digits_are_formats() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for v in [0, 1, 9, 10, 15, 16, 0xdead_beef, u32::MAX] {
            assert_eq!(super::hex8(v), *format!("{v:08x}").as_bytes());
        }
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = x as u32;
            assert_eq!(super::hex8(v), *format!("{v:08x}").as_bytes());
            let id = super::TraceId::from_int(u128::from(x) << 64 | u128::from(!x));
            let want = format!("{:032x}", id.to_int());
            assert_eq!(&id.hex_buf()[..], want.as_bytes());
        }
    }

    use super::*;
    use std::collections::HashSet;

    #[test]
    fn hex_round_trip() {
        let cases = [
            "0af7651916cd43dd8448eb211c80319c",
            "00000000000000000000000000000001",
            "ffffffffffffffffffffffffffffffff",
        ];
        for hex in cases {
            assert_eq!(TraceId::from_hex(hex).unwrap().to_string(), hex);
        }
        assert_eq!(
            TraceId::from_hex("0AF7651916CD43DD8448EB211C80319C")
                .unwrap()
                .to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
    }

    #[test]
    fn bad_hex_is_rejected() {
        for bad in ["", "0af7", "0af7651916cd43dd8448eb211c80319", "zz", "é0"] {
            assert_eq!(TraceId::from_hex(bad), None, "{bad:?}");
            assert_eq!(SpanId::from_hex(bad), None, "{bad:?}");
        }
        assert_eq!(SpanId::from_hex("00f067aa0ba902bg"), None);
        // 16 bytes of multi-byte characters must not be sliced mid-char.
        assert_eq!(SpanId::from_hex("éééééééé"), None);
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let s = new_span_id();
            assert!(s.is_valid());
            assert!(seen.insert(s.to_int()));
        }
    }

    #[test]
    fn threads_draw_different_ids() {
        let a = std::thread::spawn(new_span_id).join().unwrap();
        let b = std::thread::spawn(new_span_id).join().unwrap();
        assert_ne!(a, b);
    }
}
