//! The exporter's own diagnostics while delivering: a read-only storage
//! directory and a full one are reported once (and counted), a rejected
//! batch is an error naming the status and the service's message, later
//! ones go to debug level, and the exporter keeps working in memory.
//!
//! The worker thread reports through the global subscriber, so this file
//! installs one and runs its steps in one test, in a process of its own
//! (where no other test's exporter reports to it).

use std::time::Duration;

use crate::support::child::own_process;
use crate::support::delivery::{builder, emit, start, TempDir};
use crate::support::diagnostics::Diagnostics;
use crate::support::{FakeIngestion, ScriptedResponse};
use tracing::Level;

/// Emits spans carrying 2,000 random hex digits each: a batch of them
/// gzips to about half its size (about 5.5 KiB for five), so memory bounds
/// hold exactly as many gzipped batches as the test means.
fn emit_bulky(dispatch: &tracing::Dispatch, prefix: &str, range: std::ops::Range<usize>) {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new();
    tracing::dispatcher::with_default(dispatch, || {
        for i in range {
            let bulk: String = (0..125)
                .map(|j| format!("{:016x}", random.hash_one((prefix, i, j))))
                .collect();
            let name = format!("{prefix}-{i}");
            tracing::info_span!("span", otel.name = name.as_str(), bulk = bulk.as_str())
                .in_scope(|| {});
        }
    });
}

#[test]
fn trouble_is_reported_once_counted_and_survived() {
    let Some(_own_process) = own_process(
        module_path!(),
        "trouble_is_reported_once_counted_and_survived",
    ) else {
        return;
    };
    let captured = Diagnostics::install();

    // A storage directory that cannot exist: its parent is a regular file
    // (permission bits would not stop root; this stops everyone).
    let parent = TempDir::new("read-only");
    std::fs::create_dir_all(parent.path()).unwrap();
    let file = parent.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let server = FakeIngestion::start();
    server.script((0..2).map(|_| ScriptedResponse::status(503)));
    // Memory for one gzipped batch of five: the second batch must go to
    // storage, which fails: it is dropped and counted.
    let (dispatch, guard) = start(
        builder(&server.endpoint(), &file.join("storage"))
            .with_max_batch_size(5)
            .with_max_retry_memory(8 * 1024),
    );
    for round in 1..=2_u64 {
        emit_bulky(&dispatch, &format!("ro-{round}"), 0..10);
        // The batch kept in memory is retried through the 503s and
        // delivered: the exporter keeps working in memory.
        guard.flush(Duration::from_secs(10)).unwrap();
        let stats = guard.stats();
        assert_eq!(
            (stats.exported, stats.dropped_storage_unavailable),
            (5 * round, 5 * round),
            "{stats:?}"
        );
        assert!(stats.balances(), "{stats:?}");
    }
    // Reported once as an error, when it first kept items out; the same
    // trouble again at debug level.
    let levels = captured.levels("Storage.Unavailable");
    assert_eq!(levels[0], Level::ERROR, "{levels:?}");
    assert!(levels[1..].iter().all(|l| *l == Level::DEBUG), "{levels:?}");
    assert_eq!(captured.with("Exporter.Retrying")[0].0, Level::WARN);
    guard.shutdown(Duration::from_secs(5)).unwrap();

    // A full storage: one warning, however often it refuses. Each batch,
    // even gzipped, is over the memory bound, so it must go to storage,
    // which is full.
    let dir = TempDir::new("full-diag");
    let server = FakeIngestion::start();
    server.script((0..1000).map(|_| ScriptedResponse::status(503)));
    let (dispatch, guard) = start(
        builder(&server.endpoint(), dir.path())
            .with_storage_max_size(10)
            .with_max_batch_size(3)
            .with_max_retry_memory(1024),
    );
    for round in 1..=2 {
        emit_bulky(&dispatch, "full", 0..3);
        guard.flush(Duration::from_secs(5)).unwrap();
        assert_eq!(guard.stats().dropped_storage_full, 3 * round);
    }
    let levels = captured.levels("Storage.Full");
    assert_eq!(levels[0], Level::WARN, "{levels:?}");
    assert!(levels[1..].iter().all(|l| *l == Level::DEBUG), "{levels:?}");
    drop(guard);

    // Rejected batches: an error with the status and the service's words,
    // then debug.
    let dir = TempDir::new("rejected-diag");
    let server = FakeIngestion::start();
    let body = r#"{"itemsReceived":1,"itemsAccepted":0,"errors":[{"index":0,"statusCode":400,"message":"Invalid instrumentation key"}]}"#;
    server.script((0..2).map(|_| ScriptedResponse::status(400).with_body(body)));
    let (dispatch, guard) = start(builder(&server.endpoint(), dir.path()));
    for _ in 0..2 {
        emit(&dispatch, "rejected", 0..1);
        guard.flush(Duration::from_secs(5)).unwrap();
    }
    assert_eq!(guard.stats().dropped_rejected, 2);
    let dropped = captured.with("Exporter.Dropped");
    let levels: Vec<Level> = dropped.iter().map(|(l, _)| *l).collect();
    assert_eq!(levels, [Level::ERROR, Level::DEBUG], "{dropped:?}");
    assert!(
        dropped[0].1.contains("400") && dropped[0].1.contains("Invalid instrumentation key"),
        "{dropped:?}"
    );
}
