//! Helpers for the delivery tests: private storage directories, endpoints
//! that refuse connections, a TCP forwarder to bring an endpoint "up", and
//! span emission with names the server side can check.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing_appinsights::{Builder, ExporterGuard};
use tracing_subscriber::prelude::*;

use super::{connection_string, FakeIngestion};

/// A fresh directory path under the system's temporary directory (not
/// created), removed with everything in it on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        TempDir(std::env::temp_dir().join(format!(
            "tai-test-{tag}-{}-{n}-{nanos:x}",
            std::process::id()
        )))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The storage directory an exporter made in this one (see
    /// [`storage_dir`]).
    pub fn storage(&self) -> Option<PathBuf> {
        storage_dir(&self.0)
    }

    /// The files in the storage directory, sorted (empty if there is
    /// none).
    pub fn files(&self) -> Vec<String> {
        let Some(storage) = self.storage() else {
            return Vec::new();
        };
        let Ok(dir) = std::fs::read_dir(storage) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// Polls until the storage directory holds no file, or `timeout`
    /// passes.
    pub fn wait_empty(&self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let files = self.files();
            if files.is_empty() || Instant::now() >= deadline {
                return files;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The storage directory an exporter made in `base` (given to
/// `with_storage_dir`): the one directory in it named
/// `tracing-appinsights-<16 hex digits>`; `None` before it was made.
pub fn storage_dir(base: &Path) -> Option<PathBuf> {
    let mut found = std::fs::read_dir(base).ok()?.filter_map(|entry| {
        let entry = entry.ok()?;
        let name = entry.file_name().into_string().ok()?;
        let hash = name.strip_prefix("tracing-appinsights-")?;
        let hex = hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        (hex && entry.file_type().ok()?.is_dir()).then(|| entry.path())
    });
    let dir = found.next()?;
    assert!(found.next().is_none(), "one storage directory in {base:?}");
    Some(dir)
}

/// A loopback address where nothing listens: connections are refused.
///
/// The port is picked below Linux's ephemeral range (32768 and up), so no
/// other test's outgoing connection takes it as its source port before a
/// [`Forwarder`] binds it again.
pub fn dead_addr() -> SocketAddr {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 997) as u16 * 10;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 2_700;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            let addr = listener.local_addr().unwrap();
            drop(listener);
            return addr;
        }
    }
}

/// The builder every delivery test starts from: `endpoint`, a private
/// storage directory, short timeouts, and an interval long enough that only
/// full batches and flushes export.
pub fn builder(endpoint: &str, storage: &Path) -> Builder {
    Builder::new()
        .with_connection_string(connection_string(endpoint))
        .with_storage_dir(storage)
        .with_export_interval(Duration::from_secs(3600))
        .with_request_timeout(Duration::from_secs(2))
        .with_connect_timeout(Duration::from_millis(500))
}

/// Builds the layer into a dispatcher of its own.
pub fn start(builder: Builder) -> (tracing::Dispatch, ExporterGuard) {
    let (layer, guard) = builder.build().expect("valid builder");
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    (dispatch, guard)
}

/// Moves `clock` on in `step`s (giving the worker a moment after each)
/// until `done`, for at most `limit` of clock time; whether it got there.
pub fn advance_until(
    clock: &tracing_appinsights::ManualClock,
    step: Duration,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let end = clock.elapsed() + limit;
    while clock.elapsed() < end {
        if done() {
            return true;
        }
        clock.advance(step);
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

/// Emits `n` spans without events (one item each) named `{prefix}-{i}`.
pub fn emit(dispatch: &tracing::Dispatch, prefix: &str, range: std::ops::Range<usize>) {
    tracing::dispatcher::with_default(dispatch, || {
        for i in range {
            tracing::info_span!("span", otel.name = format!("{prefix}-{i}").as_str())
                .in_scope(|| {});
        }
    });
}

/// The `baseData.name` of each envelope.
pub fn names(envelopes: &[Value]) -> Vec<String> {
    envelopes
        .iter()
        .map(|e| {
            e["data"]["baseData"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// How many times each name arrived.
fn counts(names: &[String]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for name in names {
        *counts.entry(name.clone()).or_insert(0) += 1;
    }
    counts
}

/// Asserts that `prefix-0 .. prefix-{n-1}` each arrived exactly once (and
/// nothing else with that prefix).
pub fn assert_exactly_once(names: &[String], prefix: &str, n: usize) {
    let counts = counts(names);
    let mine: HashMap<&String, &usize> = counts
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{prefix}-")))
        .collect();
    let duplicated: Vec<_> = mine.iter().filter(|(_, c)| ***c > 1).collect();
    assert!(duplicated.is_empty(), "duplicated: {duplicated:?}");
    let missing: Vec<usize> = (0..n)
        .filter(|i| !counts.contains_key(&format!("{prefix}-{i}")))
        .collect();
    assert!(
        missing.is_empty(),
        "missing {} of {n}: {missing:?}",
        missing.len()
    );
    assert_eq!(mine.len(), n);
}

/// An ingestion endpoint that is down (its port refuses connections) until
/// [`end`](Self::end) forwards it to a [`FakeIngestion`]: one URL before
/// and after, so one storage directory (there is one per key and
/// endpoint).
pub struct Outage {
    addr: SocketAddr,
}

impl Outage {
    pub fn new() -> Outage {
        Outage { addr: dead_addr() }
    }

    /// The endpoint's URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The endpoint is up: `server` answers, while the forwarder lives.
    pub fn end(&self, server: &FakeIngestion) -> Forwarder {
        Forwarder::start(self.addr, server.addr())
    }
}

/// Forwards every TCP connection on a port to `upstream`: an endpoint that
/// was down (the port refused connections) comes up.
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Listens on `addr` (which must be free) and forwards to `upstream`.
    pub fn start(addr: SocketAddr, upstream: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind(addr).expect("the dead port is free again");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_accepting = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stop_accepting.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(upstream) else {
                            continue;
                        };
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Forwarder {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies `from` to `to` on a thread until EOF, then half-closes `to`.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0_u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
