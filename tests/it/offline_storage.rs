//! Offline storage: a process restart delivers what the last run stored,
//! two processes sharing a directory deliver each blob once, and the
//! storage limits (max size, retention, corrupt blobs) hold.

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::delivery::{
    assert_exactly_once, builder, dead_addr, emit, names, start, TempDir,
};
use crate::support::{example, FakeIngestion};

/// Runs the `offline_restart` example and returns its counters line.
fn run(args: &[String]) -> Output {
    let out = Command::new(example("offline_restart"))
        .args(args)
        .env_remove("APPLICATIONINSIGHTS_CONNECTION_STRING")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    out
}

fn args(endpoint: &str, dir: &TempDir, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        format!("--endpoint={endpoint}"),
        format!("--dir={}", dir.path().display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The text after `key=` in the example's counters line.
fn value(out: &Output, key: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        .to_owned()
}

/// A counter of the example's counters line.
fn counter(out: &Output, key: &str) -> u64 {
    value(out, key).parse().unwrap()
}

/// A first run against an endpoint that refuses connections: everything
/// ends up in `dir`, one blob per batch.
fn store(dir: &TempDir, prefix: &str, spans: usize, batch: usize) {
    let dead = format!("http://{}", dead_addr());
    let out = run(&args(
        &dead,
        dir,
        &[
            &format!("--spans={spans}"),
            &format!("--prefix={prefix}"),
            &format!("--batch={batch}"),
            "--shutdown-ms=1000",
        ],
    ));
    assert_eq!(counter(&out, "stored"), spans as u64, "{out:?}");
    assert_eq!(counter(&out, "exported"), 0);
    let blobs = dir.files();
    assert_eq!(blobs.len(), spans.div_ceil(batch), "{blobs:?}");
    assert!(blobs.iter().all(|b| b.ends_with(".blob")), "{blobs:?}");
}

#[test]
fn a_restarted_process_delivers_what_the_last_one_stored_once() {
    let dir = TempDir::new("restart");
    store(&dir, "restart", 300, 50);

    let server = FakeIngestion::start();
    let out = run(&args(
        &server.endpoint(),
        &dir,
        &["--spans=0", "--drain-secs=20"],
    ));
    assert_eq!(counter(&out, "read_back"), 300, "{out:?}");
    assert_eq!(counter(&out, "exported"), 300, "{out:?}");
    assert_eq!(value(&out, "balances"), "true", "{out:?}");
    assert_exactly_once(&names(&server.envelopes()), "restart", 300);
    assert!(dir.files().is_empty(), "{:?}", dir.files());
}

#[test]
fn two_processes_sharing_a_directory_deliver_each_blob_once() {
    let dir = TempDir::new("shared");
    store(&dir, "shared", 400, 10);

    let server = FakeIngestion::start();
    let drain = args(&server.endpoint(), &dir, &["--spans=0", "--drain-secs=20"]);
    let spawn = || {
        Command::new(example("offline_restart"))
            .args(&drain)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (one, two) = (spawn(), spawn());
    let (one, two) = (
        one.wait_with_output().unwrap(),
        two.wait_with_output().unwrap(),
    );
    assert!(
        one.status.success() && two.status.success(),
        "{one:?} {two:?}"
    );
    assert_exactly_once(&names(&server.envelopes()), "shared", 400);
    assert_eq!(
        counter(&one, "exported") + counter(&two, "exported"),
        400,
        "{one:?} {two:?}"
    );
    assert!(dir.files().is_empty(), "{:?}", dir.files());
}

#[test]
fn a_full_storage_drops_new_data_and_keeps_old() {
    let dir = TempDir::new("full");
    let dead = format!("http://{}", dead_addr());
    // A first exporter stores ten spans; its blob's size sets the bound.
    let (dispatch, guard) = start(builder(&dead, dir.path()));
    emit(&dispatch, "old", 0..10);
    guard.shutdown(Duration::from_secs(1)).unwrap();
    let files = dir.files();
    assert_eq!(files.len(), 1);
    let size = std::fs::metadata(dir.path().join(&files[0])).unwrap().len();

    // Room for one and a half of those: the next ten do not fit.
    let (dispatch, guard) =
        start(builder(&dead, dir.path()).with_storage_max_size(size + size / 2));
    emit(&dispatch, "new", 0..10);
    guard.shutdown(Duration::from_secs(1)).unwrap();
    let stats = guard.stats();
    assert_eq!(
        (stats.stored, stats.dropped_storage_full),
        (0, 10),
        "{stats:?}"
    );
    assert!(stats.balances(), "{stats:?}");
    // The old blob is kept (perhaps leased: the second exporter tried to
    // send it at start, and will not again for a moment).
    let blob_name = |f: &String| f.split('@').next().unwrap().to_owned();
    let kept: Vec<String> = dir.files().iter().map(blob_name).collect();
    assert_eq!(kept, files, "the old blob is kept");

    // The old data is still delivered.
    let server = FakeIngestion::start();
    let (_dispatch, guard) = start(builder(&server.endpoint(), dir.path()));
    assert!(dir.wait_empty(Duration::from_secs(20)).is_empty());
    guard.shutdown(Duration::from_secs(5)).unwrap();
    assert_exactly_once(&names(&server.envelopes()), "old", 10);
}

#[test]
fn expired_and_corrupt_blobs_are_deleted_and_counted() {
    let dir = TempDir::new("expired");
    let dead = format!("http://{}", dead_addr());
    let (dispatch, guard) = start(builder(&dead, dir.path()));
    emit(&dispatch, "keep", 0..5);
    guard.shutdown(Duration::from_secs(1)).unwrap();
    let good = dir.files().pop().unwrap();
    let lines = std::fs::read(dir.path().join(&good)).unwrap();
    // The same five items, stored in the year 2000: past any retention.
    std::fs::write(
        dir.path().join("2000-01-01T000000.000000-0000000a.blob"),
        &lines,
    )
    .unwrap();
    // Two lines that are not envelopes, in a blob from the future.
    std::fs::write(
        dir.path().join("2999-01-01T000000.000000-0000000b.blob"),
        b"garbage\n{\"unterminated\":\n",
    )
    .unwrap();

    let server = FakeIngestion::start();
    let (_dispatch, guard) = start(
        builder(&server.endpoint(), dir.path()).with_storage_retention(Duration::from_secs(3600)),
    );
    assert!(
        dir.wait_empty(Duration::from_secs(20)).is_empty(),
        "{:?}",
        dir.files()
    );
    guard.flush(Duration::from_secs(5)).unwrap();
    let stats = guard.stats();
    assert_eq!(
        (
            stats.exported,
            stats.dropped_too_old,
            stats.dropped_corrupt,
            stats.read_back
        ),
        (5, 5, 2, 12),
        "{stats:?}"
    );
    assert!(stats.balances(), "{stats:?}");
    guard.shutdown(Duration::from_secs(5)).unwrap();
    assert_exactly_once(&names(&server.envelopes()), "keep", 5);
}
