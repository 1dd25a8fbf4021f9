//! Gzip, the one implementation: request bodies are compressed once, when
//! first sent, and the same bytes are resent on every retry and held while
//! they wait (a JSON array of envelopes shrinks five to ten times).

use std::io::{Read as _, Write as _};

/// The gzip level. Level 1 compresses a typical batch about as well as 3 or
/// 6 (ids and timestamps dominate what is left) at a fraction of the CPU
/// cost; `benches/envelope.rs` compares the levels.
pub(crate) const LEVEL: u32 = 1;

/// Gzips `data` at [`LEVEL`]; `None` only if the encoder fails (it writes
/// to memory, so in practice never).
pub(crate) fn compress(data: &[u8]) -> Option<Vec<u8>> {
    compress_at(data, LEVEL).ok()
}

/// Gzips `data` at `level` (0–9).
pub(crate) fn compress_at(data: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    let out = Vec::with_capacity(data.len() / 4 + 64);
    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::new(level));
    encoder.write_all(data)?;
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
}
