//! Gzip, the one implementation: request bodies are compressed once, when
//! first sent, and the same bytes are resent on every retry and held while
//! they wait (a JSON array of envelopes shrinks five to ten times).
//!
//! The deflate implementation is zlib-rs (`flate2`'s `zlib-rs` backend):
//! about twice as fast as miniz_oxide, at [`LEVEL`] 2 even, which sends a
//! quarter fewer bytes than miniz_oxide's level 1. [`compress`] keeps one deflate state per thread and
//! resets it for each body: a fresh state is some 300 KB of tables,
//! allocated and faulted in anew for every body otherwise. A reset state
//! writes what a fresh one writes (a test pins it): a standard gzip member
//! with `GzEncoder`'s header.

use std::cell::RefCell;
use std::io::Read as _;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// The gzip level. With zlib-rs, level 2 sends a quarter fewer bytes than
/// level 1 (its level 1 hashes for speed alone) for about a third more
/// CPU, and still takes half the time miniz_oxide took at level 1; levels
/// 3 and up cost two to five times as much for little more
/// (`benches/envelope.rs` compares the levels).
pub(crate) const LEVEL: u32 = 2;

/// The gzip header `GzEncoder` writes at [`LEVEL`]: no name, no time,
/// `XFL` 4 for the fastest level, 2 for the best, else 0, and OS 255
/// (unknown).
const HEADER: [u8; 10] = {
    let xfl = if LEVEL <= 1 {
        4
    } else if LEVEL >= 9 {
        2
    } else {
        0
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
};

thread_local! {
    /// This thread's raw deflate state at [`LEVEL`], reset before each use.
    static DEFLATE: RefCell<Option<Compress>> = const { RefCell::new(None) };
}

/// Gzips `data` at [`LEVEL`]; `None` only if the encoder fails (it writes
/// to memory, so in practice never).
pub(crate) fn compress(data: &[u8]) -> Option<Vec<u8>> {
    DEFLATE.with(|cell| {
        // A reentrant call (there is none) would find the state borrowed:
        // it gets a state of its own.
        let mut fresh = None;
        let mut borrowed = cell.try_borrow_mut().ok();
        let slot = borrowed.as_deref_mut().unwrap_or(&mut fresh);
        let deflate = slot.get_or_insert_with(|| Compress::new(Compression::new(LEVEL), false));
        deflate.reset();
        gzip_with(deflate, data)
    })
}

/// `data` as one gzip member, deflated by `deflate` (a fresh or reset
/// raw-deflate state).
fn gzip_with(deflate: &mut Compress, data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 4 + 64);
    out.extend_from_slice(&HEADER);
    loop {
        let consumed = deflate.total_in() as usize;
        let input = data.get(consumed..)?;
        match deflate.compress_vec(input, &mut out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) => break,
            Ok(Status::Ok | Status::BufError) => out.reserve(out.capacity().max(64)),
            Err(_) => return None,
        }
    }
    let mut crc = Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE: the input's length modulo 2^32.
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    Some(out)
}

/// Gzips `data` at `level` (0–9) with a fresh `GzEncoder`: the tests'
/// reference for [`compress`].
#[cfg(test)]
pub(crate) fn compress_at(data: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    let out = Vec::with_capacity(data.len() / 4 + 64);
    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::new(level));
    std::io::Write::write_all(&mut encoder, data)?;
    encoder.finish()
}

/// Gunzips `data`; `None` when it is not a whole gzip stream.
pub(crate) fn decompress(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(6));
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_level() {
        let data = br#"[{"name":"Microsoft.ApplicationInsights.Request"}]"#.repeat(50);
        for level in 0..=9 {
            let gz = compress_at(&data, level).unwrap();
            assert_eq!(decompress(&gz).unwrap(), data, "level {level}");
        }
        let gz = compress(&data).unwrap();
        assert!(gz.len() < data.len() / 5, "{} of {}", gz.len(), data.len());
        assert_eq!(decompress(b"not gzip"), None);
    }

    /// The reused state writes what a fresh state writes, body after body
    /// (the stream does not depend on what came before), a gzip stream
    /// that unzips to the body and is no larger than `GzEncoder`'s at the
    /// same level, for empty, small, compressible and incompressible
    /// bodies.
    #[test]
    fn compress_reuses_its_state_without_a_trace() {
        let mut noise = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..300_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push(x as u8);
        }
        let json = br#"{"name":"Microsoft.ApplicationInsights.Request","n":12}"#.repeat(40_000);
        for data in [
            &b""[..],
            b"x",
            &json[..],
            &noise[..],
            &json[..100],
            &json[..],
        ] {
            let fresh = gzip_with(&mut Compress::new(Compression::new(LEVEL), false), data);
            let fresh = fresh.unwrap();
            let reused = compress(data).unwrap();
            assert!(reused == fresh, "{} bytes: not a fresh state's", data.len());
            assert!(decompress(&reused).unwrap() == data, "{} bytes", data.len());
            let encoder = compress_at(data, LEVEL).unwrap();
            assert!(
                reused.len() <= encoder.len() + encoder.len() / 100,
                "{} bytes: {} vs GzEncoder's {}",
                data.len(),
                reused.len(),
                encoder.len()
            );
            assert_eq!(reused[..10], encoder[..10], "GzEncoder's header");
        }
    }
}
