//! What the load harnesses (`src/bin/*`) share: reading the envelopes out
//! of a request body, the process's peak memory, a connection string to a
//! loopback endpoint and a cheap random number generator.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

/// A request's whole body (empty when it could not be read).
pub async fn body_of(req: hyper::Request<hyper::body::Incoming>) -> hyper::body::Bytes {
    use http_body_util::BodyExt as _;
    req.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

/// The connection string of an ingestion endpoint on `addr` (loopback).
pub fn connection_string(addr: std::net::SocketAddr) -> String {
    format!(
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://{addr}/"
    )
}

/// The process's peak resident memory in MiB, from `/proc/self/status`
/// (Linux); `None` elsewhere.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A request body as JSON: gunzipped when it is gzip, else as it is.
pub fn unzipped(body: &[u8]) -> Vec<u8> {
    let mut json = Vec::new();
    match flate2::read::GzDecoder::new(body).read_to_end(&mut json) {
        Ok(_) => json,
        Err(_) => body.to_vec(),
    }
}

/// The envelopes of a request body (a JSON array, gzipped or not), or
/// `None` when it is not one.
pub fn envelopes(body: &[u8]) -> Option<Vec<Envelope>> {
    serde_json::from_slice(&unzipped(body)).ok()
}

/// The parts of an envelope the harnesses look at. Anything else in it is
/// ignored; an envelope without them parses with empty values.
#[derive(Debug, Default, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    data: Data,
}

#[derive(Debug, Default, Deserialize)]
struct Data {
    #[serde(rename = "baseData", default)]
    base_data: BaseData,
}

#[derive(Debug, Default, Deserialize)]
struct BaseData {
    #[serde(default)]
    id: String,
    #[serde(default)]
    properties: HashMap<String, serde_json::Value>,
}

impl Envelope {
    /// `baseData.id`: the span id, in hex (empty for events).
    pub fn id(&self) -> &str {
        &self.data.base_data.id
    }

    /// The span field `name` as a number, from `baseData.properties`
    /// (where span fields go, as text).
    pub fn number_field(&self, name: &str) -> Option<u64> {
        self.data
            .base_data
            .properties
            .get(name)?
            .as_str()?
            .parse()
            .ok()
    }
}

/// A xorshift generator seeded from the clock: the harnesses' answers and
/// timings only need to be mixed, not unpredictable. Shared by threads
/// without a lock (two of them may now and then draw the same number).
#[derive(Debug)]
pub struct Rng(AtomicU64);

impl Default for Rng {
    fn default() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Rng(AtomicU64::new(seed | 1))
    }
}

impl Rng {
    /// A number in `0..n` (`n` > 0).
    pub fn below(&self, n: u64) -> u64 {
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.store(x, Ordering::Relaxed);
        x % n
    }
}
