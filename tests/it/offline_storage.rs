//! Offline storage: a process restart delivers what the last run stored,
//! two processes sharing a directory deliver each blob once, and the
//! storage limits (max size, retention, corrupt blobs) hold.
//!
//! The restarted application is this test binary, started again as a child
//! process running [`offline_restart_child`].

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::child::{self, own_process};
use crate::support::delivery::{
    assert_exactly_once, builder, emit, names, start, storage_dir, Outage, TempDir,
};
use crate::support::diagnostics::Diagnostics;
use crate::support::FakeIngestion;
use tracing::Level;

/// The role of [`offline_restart_child`].
const ROLE: &str = "offline_restart";

/// What [`offline_restart_child`] prints before its counters.
const COUNTERS: &str = "offline_restart counters:";

/// A process of this binary running [`offline_restart_child`] with `args`.
fn restart_command(args: &[String]) -> Command {
    let test = child::test_name(module_path!(), "offline_restart_child");
    let mut command = child::command(&test, ROLE, args);
    command.env_remove("APPLICATIONINSIGHTS_CONNECTION_STRING");
    command
}

/// Runs [`offline_restart_child`] as a process and returns its output.
fn run(args: &[String]) -> Output {
    let out = restart_command(args).output().unwrap();
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

/// The text after `key=` in the child's counters line.
fn value(out: &Output, key: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once(COUNTERS).map(|(_, counters)| counters))
        .unwrap_or_else(|| panic!("no counters line in {stdout:?}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        .to_owned()
}

/// A counter of the child's counters line.
fn counter(out: &Output, key: &str) -> u64 {
    value(out, key).parse().unwrap()
}

/// The options of [`offline_restart_child`].
struct Restart {
    endpoint: String,
    dir: PathBuf,
    spans: usize,
    prefix: String,
    batch: usize,
    drain: Duration,
    shutdown: Duration,
}

impl Restart {
    /// Parses `--endpoint=URL` and `--dir=PATH` (required), `--spans=N`
    /// (default 100), `--prefix=NAME` (span names are `NAME-0` …
    /// `NAME-{N-1}`, default `span`), `--batch=N` (default 512),
    /// `--drain-secs=S` (wait up to S seconds for the directory to be empty,
    /// default 0) and `--shutdown-ms=MS` (default 2000).
    fn parse(args: &[String]) -> Result<Restart, String> {
        let mut restart = Restart {
            endpoint: String::new(),
            dir: PathBuf::new(),
            spans: 100,
            prefix: "span".into(),
            batch: 512,
            drain: Duration::ZERO,
            shutdown: Duration::from_secs(2),
        };
        for arg in args {
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| format!("expected --key=value, got {arg}"))?;
            let number = || value.parse::<u64>().map_err(|e| format!("{key}: {e}"));
            match key {
                "--endpoint" => restart.endpoint = value.to_owned(),
                "--dir" => restart.dir = value.into(),
                "--spans" => restart.spans = number()? as usize,
                "--prefix" => restart.prefix = value.to_owned(),
                "--batch" => restart.batch = number()? as usize,
                "--drain-secs" => restart.drain = Duration::from_secs(number()?),
                "--shutdown-ms" => restart.shutdown = Duration::from_millis(number()?),
                _ => return Err(format!("unknown option {key}")),
            }
        }
        if restart.endpoint.is_empty() || restart.dir.as_os_str().is_empty() {
            return Err("--endpoint and --dir are required".into());
        }
        Ok(restart)
    }
}

/// Whether the storage directory in `base` holds a blob (leased or not).
fn has_blobs(base: &Path) -> bool {
    let Some(dir) = storage_dir(base) else {
        return false;
    };
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".blob") || name.ends_with(".lock")
        })
    })
}

/// Not a test of its own: the application process the tests below start
/// and restart (the role `offline_restart` of [`child`]). It produces
/// spans, optionally waits until the storage directory is empty
/// (everything stored earlier was sent), shuts down, and prints the
/// exporter's counters; see [`Restart::parse`] for its options.
///
/// In an ordinary run of the suite, where `TRACING_APPINSIGHTS_CHILD` is
/// not `offline_restart`, it returns at once.
#[test]
fn offline_restart_child() {
    let Some(args) = child::role_args(ROLE) else {
        return;
    };
    let restart = Restart::parse(&args).unwrap_or_else(|e| panic!("{ROLE}: {e}"));
    let (dispatch, guard) = start(
        builder(&restart.endpoint, &restart.dir)
            .with_max_batch_size(restart.batch)
            .with_export_interval(Duration::from_millis(100)),
    );
    emit(&dispatch, &restart.prefix, 0..restart.spans);
    if !restart.drain.is_zero() {
        guard.flush(Duration::from_secs(5)).unwrap();
        let deadline = Instant::now() + restart.drain;
        while has_blobs(&restart.dir) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    guard.shutdown(restart.shutdown).unwrap();
    let s = guard.stats();
    println!(
        "{COUNTERS} queued={} exported={} stored={} read_back={} retried={} dropped={} balances={}",
        s.queued,
        s.exported,
        s.stored,
        s.read_back,
        s.retried,
        s.dropped(),
        s.balances()
    );
}

/// A first run while `endpoint` is down: everything ends up in `dir`, one
/// blob per batch.
fn store(endpoint: &Outage, dir: &TempDir, prefix: &str, spans: usize, batch: usize) {
    let out = run(&args(
        &endpoint.endpoint(),
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
    let endpoint = Outage::new();
    store(&endpoint, &dir, "restart", 300, 50);

    let server = FakeIngestion::start();
    let _up = endpoint.end(&server);
    let out = run(&args(
        &endpoint.endpoint(),
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
    let endpoint = Outage::new();
    store(&endpoint, &dir, "shared", 400, 10);

    let server = FakeIngestion::start();
    let _up = endpoint.end(&server);
    let drain = args(
        &endpoint.endpoint(),
        &dir,
        &["--spans=0", "--drain-secs=20"],
    );
    let spawn = || {
        restart_command(&drain)
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
    let endpoint = Outage::new();
    let dead = endpoint.endpoint();
    // A first exporter stores ten spans; its blob's size sets the bound.
    let (dispatch, guard) = start(builder(&dead, dir.path()));
    emit(&dispatch, "old", 0..10);
    guard.shutdown(Duration::from_secs(1)).unwrap();
    let files = dir.files();
    assert_eq!(files.len(), 1);
    let size = std::fs::metadata(dir.storage().unwrap().join(&files[0]))
        .unwrap()
        .len();

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
    let _up = endpoint.end(&server);
    let (_dispatch, guard) = start(builder(&dead, dir.path()));
    assert!(dir.wait_empty(Duration::from_secs(20)).is_empty());
    guard.shutdown(Duration::from_secs(5)).unwrap();
    assert_exactly_once(&names(&server.envelopes()), "old", 10);
}

#[test]
fn expired_and_corrupt_blobs_are_deleted_and_counted() {
    let dir = TempDir::new("expired");
    let endpoint = Outage::new();
    let (dispatch, guard) = start(builder(&endpoint.endpoint(), dir.path()));
    emit(&dispatch, "keep", 0..5);
    guard.shutdown(Duration::from_secs(1)).unwrap();
    let storage = dir.storage().unwrap();
    let good = dir.files().pop().unwrap();
    let lines = std::fs::read(storage.join(&good)).unwrap();
    // The same five items, stored in the year 2000: past any retention.
    std::fs::write(
        storage.join("2000-01-01T000000.000000-0000000a.blob"),
        &lines,
    )
    .unwrap();
    // Two lines that are not envelopes, in a blob from the future.
    std::fs::write(
        storage.join("2999-01-01T000000.000000-0000000b.blob"),
        b"garbage\n{\"unterminated\":\n",
    )
    .unwrap();

    let server = FakeIngestion::start();
    let _up = endpoint.end(&server);
    let (_dispatch, guard) = start(
        builder(&endpoint.endpoint(), dir.path()).with_storage_retention(Duration::from_secs(3600)),
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

#[test]
fn a_restart_drains_its_backlog_before_a_quick_shutdown() {
    let dir = TempDir::new("backlog");
    let endpoint = Outage::new();
    store(&endpoint, &dir, "backlog", 2_000, 50);

    // A few spans and an immediate shutdown with time to spare: the
    // endpoint is healthy, so the time left goes into the backlog.
    let server = FakeIngestion::start();
    let _up = endpoint.end(&server);
    let out = run(&args(
        &endpoint.endpoint(),
        &dir,
        &["--spans=5", "--prefix=fresh", "--shutdown-ms=30000"],
    ));
    assert_eq!(counter(&out, "read_back"), 2_000, "{out:?}");
    assert_eq!(counter(&out, "exported"), 2_005, "{out:?}");
    assert_eq!(value(&out, "balances"), "true", "{out:?}");
    let names = names(&server.envelopes());
    assert_exactly_once(&names, "backlog", 2_000);
    assert_exactly_once(&names, "fresh", 5);
    assert!(dir.files().is_empty(), "{:?}", dir.files());
}

/// Pointed at a directory others use too (here: mode 1777 like `/tmp`, with
/// files of theirs that look like telemetry), the exporter makes a
/// directory of its own in it, stores and delivers from there, and touches
/// nothing else: not the directory's mode, not their files.
#[cfg(unix)]
#[test]
fn storage_dir_touches_only_its_own_files() {
    use std::os::unix::fs::PermissionsExt as _;
    let base = TempDir::new("their-dir");
    std::fs::create_dir(base.path()).unwrap();
    let theirs: [(&str, &[u8]); 4] = [
        ("2019-07-01-db-dump.tmp", b"-- PostgreSQL database dump\n"),
        ("project-notes-archive-2024.blob", br#"{"my":"notes"}"#),
        (
            "backup-of-important-data-v2.blob",
            b"\x00\x01\x02 not telemetry",
        ),
        ("README", b"Scratch space shared by the team.\n"),
    ];
    for (name, content) in theirs {
        std::fs::write(base.path().join(name), content).unwrap();
    }
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    assert_eq!(mode(base.path()), 0o1777);

    // Down: the flush stores what it could not send. Housekeeping runs
    // every tick of the export interval.
    let endpoint = Outage::new();
    let (dispatch, guard) = start(
        builder(&endpoint.endpoint(), base.path()).with_export_interval(Duration::from_millis(50)),
    );
    emit(&dispatch, "ours", 0..10);
    guard.flush(Duration::from_secs(2)).unwrap();
    assert_eq!(guard.stats().stored, 10, "{:?}", guard.stats());
    let storage = base.storage().expect("a directory of our own");
    assert_eq!(mode(&storage), 0o700);
    assert!(
        base.files().iter().any(|f| f.contains(".blob")),
        "{:?}",
        base.files()
    );

    // Up: what was stored is delivered, from our directory.
    let server = FakeIngestion::start();
    let _up = endpoint.end(&server);
    assert!(base.wait_empty(Duration::from_secs(30)).is_empty());
    guard.shutdown(Duration::from_secs(5)).unwrap();
    let stats = guard.stats();
    assert_eq!(
        (stats.read_back, stats.exported, stats.dropped()),
        (10, 10, 0),
        "{stats:?}"
    );
    assert!(stats.balances(), "{stats:?}");
    let arrived = names(&server.envelopes());
    assert_exactly_once(&arrived, "ours", 10);
    assert_eq!(arrived.len(), 10, "nothing of theirs was sent: {arrived:?}");
    let bodies: Vec<String> = server
        .requests()
        .iter()
        .map(|r| serde_json::to_string(&r.envelopes).unwrap())
        .collect();
    assert!(!bodies.iter().any(|b| b.contains("notes")), "{bodies:?}");

    // Their directory and files are as they were.
    assert_eq!(mode(base.path()), 0o1777, "mode and sticky bit kept");
    let mut entries: Vec<String> = std::fs::read_dir(base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    let ours = storage.file_name().unwrap().to_str().unwrap().to_owned();
    let mut expected: Vec<String> = theirs.iter().map(|(n, _)| n.to_string()).collect();
    expected.push(ours);
    expected.sort();
    assert_eq!(entries, expected);
    for (name, content) in theirs {
        assert_eq!(
            std::fs::read(base.path().join(name)).unwrap(),
            content,
            "{name}"
        );
    }
}

/// Leases on disk end: one whose expiry cannot be read is over at once,
/// and one that runs longer than any this exporter takes (a clock ahead of
/// ours, or a damaged name) is honoured for that longest lease (five
/// minutes here) from when it was first seen, and then its blob is sent,
/// or deleted if it is past the retention.
#[test]
fn leases_end_at_their_maximum_length() {
    let dir = TempDir::new("leases");
    let endpoint = Outage::new();
    // A first run stores one span: our directory, and a blob to copy.
    let (dispatch, guard) = start(builder(&endpoint.endpoint(), dir.path()));
    emit(&dispatch, "seed", 0..1);
    guard.shutdown(Duration::from_secs(1)).unwrap();
    let storage = dir.storage().unwrap();
    let seed = dir.files().pop().unwrap();
    let line = String::from_utf8(std::fs::read(storage.join(&seed)).unwrap()).unwrap();
    assert_eq!(line.lines().count(), 1);
    let now = &seed[..24]; // the seed's stamp: written just now
    let blob = |stamp: &str, hex: &str, expiry: &str, prefix: &str| {
        let content: String = (0..2)
            .map(|i| line.replace("seed-0", &format!("{prefix}-{i}")))
            .collect();
        let name = format!("{stamp}-{hex}.blob@{expiry}.lock");
        std::fs::write(storage.join(name), content).unwrap();
    };
    let far = "2999-01-01T000000.000000";
    blob(now, "0000000a", "zzzzzzzzzzzzzzzzzzzzzzzz", "damaged");
    blob(now, "0000000b", far, "far");
    blob("2000-01-01T000000.000000", "0000000c", far, "old");

    let server = FakeIngestion::start();
    let _up = endpoint.end(&server);
    let clock = tracing_appinsights::ManualClock::new();
    let (_dispatch, guard) = start(
        builder(&endpoint.endpoint(), dir.path())
            .with_manual_clock(&clock)
            .with_storage_retention(Duration::from_secs(3600)),
    );
    // The unleased blob and the damaged lease's go at once.
    let arrived = names(&server.wait_for_envelopes(3, Duration::from_secs(20)));
    let mut expected = vec!["damaged-0", "damaged-1", "seed-0"];
    let mut sorted = arrived.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected);
    // The far leases hold while the exporter's clock stands still (the
    // blobs sent are deleted once answered).
    let deadline = Instant::now() + Duration::from_secs(20);
    while dir.files().len() > 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<String> = dir.files().iter().map(|f| f[25..33].to_owned()).collect();
    assert_eq!(left, ["0000000c", "0000000b"], "{:?}", dir.files());
    assert_eq!(server.envelopes().len(), 3);

    // Five minutes on (the longest lease with a 2 s request timeout is the
    // longest Retry-After honoured): the far lease is over.
    clock.advance(Duration::from_secs(5 * 60 + 1));
    let arrived = names(&server.wait_for_envelopes(5, Duration::from_secs(20)));
    assert_exactly_once(&arrived, "far", 2);
    assert!(dir.wait_empty(Duration::from_secs(20)).is_empty());
    guard.flush(Duration::from_secs(5)).unwrap();
    let stats = guard.stats();
    assert_eq!(
        (stats.read_back, stats.exported, stats.dropped_too_old),
        (7, 5, 2),
        "{stats:?}"
    );
    assert!(stats.balances(), "{stats:?}");
    guard.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(server.envelopes().len(), 5);
}

/// A storage directory that cannot be used is reported when it first keeps
/// items out, even though the worker met it before the application
/// installed its subscriber (the README's order: build, then `init`), and
/// what it keeps out is counted as storage unavailable, not full.
#[test]
fn storage_failure_is_reported_when_it_affects_items() {
    let Some(_own_process) = own_process(
        module_path!(),
        "storage_failure_is_reported_when_it_affects_items",
    ) else {
        return;
    };
    // Under a regular file: no one can make it a directory, root included.
    let parent = TempDir::new("unusable");
    std::fs::create_dir_all(parent.path()).unwrap();
    let file = parent.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let endpoint = Outage::new();
    let (dispatch, guard) = start(builder(&endpoint.endpoint(), &file.join("storage")));
    // The worker has started, and tried to read storage back.
    guard.flush(Duration::from_secs(1)).unwrap();

    let captured = Diagnostics::install();
    assert!(captured.with("Storage.Unavailable").is_empty());
    emit(&dispatch, "kept-out", 0..5);
    // The flush cannot store them: they stay in memory (reported) ...
    assert!(guard.flush(Duration::from_secs(1)).is_err());
    // ... and the shutdown cannot either: dropped (reported at debug
    // level: the same trouble).
    guard.shutdown(Duration::from_secs(1)).unwrap();
    let stats = guard.stats();
    assert_eq!(
        (
            stats.dropped_storage_unavailable,
            stats.dropped_storage_full,
            stats.stored
        ),
        (5, 0, 0),
        "{stats:?}"
    );
    assert!(stats.balances(), "{stats:?}");
    let reports = captured.with("Storage.Unavailable");
    let levels: Vec<Level> = reports.iter().map(|(level, _)| *level).collect();
    assert_eq!(levels, [Level::ERROR, Level::DEBUG], "{reports:?}");
    let (_, text) = &reports[0];
    assert!(
        text.contains("dropped_storage_unavailable")
            && text.contains(&file.display().to_string())
            && text.contains("error="),
        "{text}"
    );
}

/// The key in full appears in no diagnostic and no path: the default
/// storage directory is named by a hash, and every report naming it (or
/// anything else) shows at most a shortened key.
#[test]
fn storage_logs_never_show_the_key() {
    let Some(_own_process) = own_process(module_path!(), "storage_logs_never_show_the_key") else {
        return;
    };
    const KEY: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    // The default directory is in the temporary directory: this process's
    // own, set before any thread of ours runs.
    let tmp = TempDir::new("tmpdir");
    std::fs::create_dir_all(tmp.path()).unwrap();
    std::env::set_var("TMPDIR", tmp.path());
    let captured = Diagnostics::install();
    let endpoint = Outage::new();
    let exporter = |max_size: u64| {
        start(
            tracing_appinsights::Builder::new()
                .with_connection_string(format!(
                    "InstrumentationKey={KEY};IngestionEndpoint={}/",
                    endpoint.endpoint()
                ))
                .with_export_interval(Duration::from_secs(3600))
                .with_connect_timeout(Duration::from_millis(500))
                .with_storage_max_size(max_size),
        )
    };

    // Stored while the endpoint is down, in the default directory.
    let (dispatch, guard) = exporter(1 << 20);
    emit(&dispatch, "keyless", 0..3);
    guard.shutdown(Duration::from_secs(1)).unwrap();
    assert_eq!(guard.stats().stored, 3);
    let base = default_base_in(tmp.path());
    let storage = storage_dir(&base).expect("the default storage directory");
    // A blob that is not telemetry: Storage.Discarded, when read back.
    std::fs::write(
        storage.join("2999-01-01T000000.000000-0000000b.blob"),
        b"garbage\n",
    )
    .unwrap();
    let server = FakeIngestion::start();
    let up = endpoint.end(&server);
    let (_dispatch, guard) = exporter(1 << 20);
    assert!(storage_dir(&base).is_some());
    let deadline = Instant::now() + Duration::from_secs(20);
    while has_blobs(&base) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    guard.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(guard.stats().dropped_corrupt, 1, "{:?}", guard.stats());
    drop(up);
    // Down again, and full: Storage.Full.
    let (dispatch, guard) = exporter(1);
    emit(&dispatch, "full", 0..1);
    guard.shutdown(Duration::from_secs(1)).unwrap();
    assert_eq!(guard.stats().dropped_storage_full, 1);
    // And unusable: our directory replaced by a file. Storage.Unavailable.
    std::fs::remove_dir_all(&storage).unwrap();
    std::fs::write(&storage, b"").unwrap();
    let (dispatch, guard) = exporter(1 << 20);
    emit(&dispatch, "unavailable", 0..1);
    guard.shutdown(Duration::from_secs(1)).unwrap();
    assert_eq!(guard.stats().dropped_storage_unavailable, 1);

    let events = captured.all();
    for report in ["Storage.Full", "Storage.Discarded", "Storage.Unavailable"] {
        let found = captured.with(report);
        assert!(!found.is_empty(), "{report} in {events:#?}");
        let dir = storage.display().to_string();
        assert!(found.iter().all(|(_, t)| t.contains(&dir)), "{found:#?}");
    }
    let secret = [KEY.to_owned(), KEY.to_uppercase(), KEY.replace('-', "")];
    for (_, text) in &events {
        assert!(!secret.iter().any(|s| text.contains(s.as_str())), "{text}");
    }
    for path in walk(tmp.path()) {
        let path = path.display().to_string();
        assert!(!secret.iter().any(|s| path.contains(s.as_str())), "{path}");
    }
}

/// The per-user default base under `tmp`: its one entry, named
/// `tracing-appinsights-uid-<uid>` on Unix.
fn default_base_in(tmp: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let name = entries[0].file_name().unwrap().to_str().unwrap();
    #[cfg(unix)]
    assert!(name.starts_with("tracing-appinsights-uid-"), "{name}");
    #[cfg(not(unix))]
    assert_eq!(name, "tracing-appinsights");
    entries[0].clone()
}

/// Every path under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            paths.extend(walk(&path));
        }
        paths.push(path);
    }
    paths
}
