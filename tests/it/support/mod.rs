//! What the suite's modules share.
//!
//! - [`ingestion`]: the fake Application Insights ingestion endpoint (the
//!   crate's unit tests compile it too);
//! - [`schema`]: a checker of envelopes against the ingestion schema;
//! - [`capture`]: run code under the layer with the in-memory exporter and
//!   collect the records;
//! - [`delivery`]: storage directories, endpoints that refuse connections, a
//!   forwarder that brings one up, and spans with checkable names;
//! - [`child`]: a test of this binary run in a child process of its own;
//! - [`credential`] (feature `entra`): a fake Microsoft Entra ID credential;
//! - [`diagnostics`]: the crate's own log events, as a global subscriber
//!   in such a process sees them;
//! - [`live`]: the fake Live Metrics (QuickPulse) service, beside the
//!   fake ingestion;
//! - [`proxy`]: a recording HTTP proxy on loopback;
//! - [`tower`] (feature `tower`): tower services served over loopback.
//!
//! This module adds the test connection strings, the envelope helpers of
//! [`FakeIngestion`], and the path of an example binary.

pub mod capture;
pub mod child;
#[cfg(feature = "entra")]
pub mod credential;
pub mod delivery;
pub mod diagnostics;
pub mod ingestion;
pub mod live;
pub mod proxy;
pub mod schema;
#[cfg(feature = "tower")]
pub mod tower;

use std::time::{Duration, Instant};

use serde_json::Value;

pub use ingestion::{FakeIngestion, ScriptedResponse};

/// The instrumentation key of every test connection string.
pub const TEST_IKEY: &str = "00000000-0000-0000-0000-000000000000";

/// A connection string with [`TEST_IKEY`] for `endpoint`
/// (`http://127.0.0.1:PORT`), its `IngestionEndpoint` ending in `/` (as the
/// portal hands them out).
pub fn connection_string(endpoint: &str) -> String {
    format!("InstrumentationKey={TEST_IKEY};IngestionEndpoint={endpoint}/")
}

impl FakeIngestion {
    /// A [`connection_string`] pointing at this server.
    pub fn connection_string(&self) -> String {
        connection_string(&self.endpoint())
    }

    /// The envelopes of all requests captured so far, flattened, in order.
    pub fn envelopes(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .flat_map(|r| r.envelopes)
            .collect()
    }

    /// Polls until at least `n` envelopes have arrived or `timeout` passes;
    /// returns whatever has arrived by then (check the length).
    pub fn wait_for_envelopes(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let envelopes = self.envelopes();
            if envelopes.len() >= n || Instant::now() >= deadline {
                return envelopes;
            }
            std::thread::sleep(ingestion::POLL_INTERVAL);
        }
    }
}

/// The path of an example binary. A plain `cargo test` builds the examples
/// next to the test binaries' directory; a filtered run (`cargo test --test
/// it`) does not, so it is built then.
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", name, "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    assert!(path.exists(), "{} was built", path.display());
    path
}

/// Polls `ready` until it gives a value (a liveness wait, not a bound on
/// how long the exporter may take: it fails only after a minute).
pub fn wait_until<T>(mut ready: impl FnMut() -> Option<T>) -> T {
    for _ in 0..6000 {
        if let Some(value) = ready() {
            return value;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("not ready after a minute");
}

/// The one envelope of `kind` (`Request`, `RemoteDependency`, `Message`, …)
/// for `role` whose `baseData.name` (or, for a Message, `message`) is
/// `name`; fails the test unless there is exactly one.
#[cfg(feature = "tower")]
pub fn find<'a>(envelopes: &'a [Value], kind: &str, role: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = envelopes
        .iter()
        .filter(|e| {
            e["name"] == format!("Microsoft.ApplicationInsights.{kind}")
                && e["tags"]["ai.cloud.role"] == role
                && (e["data"]["baseData"]["name"] == name
                    || e["data"]["baseData"]["message"] == name)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {kind} {name:?} of {role}: {envelopes:#?}"
    );
    found[0]
}

/// An envelope's tag `key`.
#[cfg(any(feature = "tower", feature = "reqwest"))]
pub fn tag<'a>(e: &'a Value, key: &str) -> &'a Value {
    &e["tags"][key]
}

/// An envelope's `baseData` field `key`.
#[cfg(any(feature = "tower", feature = "reqwest"))]
pub fn data<'a>(e: &'a Value, key: &str) -> &'a Value {
    &e["data"]["baseData"][key]
}
