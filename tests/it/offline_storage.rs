//! Offline storage: a process restart delivers what the last run stored,
//! two processes sharing a directory deliver each blob once, and the
//! storage limits (max size, retention, corrupt blobs) hold.
//!
//! The restarted application is this test binary, started again as a child
//! process running [`offline_restart_child`].

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::child;
use crate::support::delivery::{
    assert_exactly_once, builder, emit, names, start, storage_dir, Outage, TempDir,
};
use crate::support::FakeIngestion;

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
