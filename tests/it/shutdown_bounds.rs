//! Shutdown is bounded whatever the network, the name resolver or a sink
//! does, and when it returns `stats()` balances and stays put.
//!
//! Each test runs its application in a child process of this binary (a
//! role of [`child`]): one whose name lookups never answer (an
//! `LD_PRELOAD` shim built here with the C compiler that links Rust code),
//! one whose stdout is a pipe nobody reads. The child writes what it saw
//! to a file and leaves with `process::exit`, without waiting for the
//! threads that are still stuck. The watchdog here is not a timing
//! assertion: before the fix these children never ended.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tracing_appinsights::{Builder, ShutdownError};

use crate::support::child;
use crate::support::connection_string;
use crate::support::delivery::{emit, start, TempDir};

/// The role of [`shutdown_bounds_child`].
const ROLE: &str = "shutdown_bounds";

/// How long a child may take before it is taken to hang: far longer than
/// any of the shutdowns it runs (1 s each).
const WATCHDOG: Duration = Duration::from_secs(120);

/// The host name whose lookups the shim never answers.
const STALLED_HOST: &str = "ingestion.stalled-resolver.invalid";

/// The `LD_PRELOAD` shim: `getaddrinfo` of [`STALLED_HOST`] blocks forever
/// (as a resolver that does not answer, without any traffic); every other
/// name goes to the real one.
const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>

int getaddrinfo(const char *node, const char *service,
                const struct addrinfo *hints, struct addrinfo **res) {
    if (node && strstr(node, "stalled-resolver.invalid")) {
        for (;;) pause();
    }
    int (*real)(const char *, const char *, const struct addrinfo *,
                struct addrinfo **) = dlsym(RTLD_NEXT, "getaddrinfo");
    return real(node, service, hints, res);
}
"#;

/// Builds the shim into `dir` with the system's C compiler (`$CC`, else
/// `cc`: the linker Rust itself uses on Linux).
fn build_shim(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let source = dir.join("stall.c");
    let library = dir.join("libstall.so");
    std::fs::write(&source, SHIM).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .arg("-ldl")
        .output()
        .unwrap_or_else(|e| panic!("run the C compiler `{cc}`: {e}"));
    assert!(out.status.success(), "build the shim: {out:?}");
    library
}

/// Waits for the child, killing it past [`WATCHDOG`].
fn wait(mut child: Child) {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the child failed: {status}");
            return;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the child still runs after {WATCHDOG:?}: its shutdown hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the child wrote: `key=value` words.
fn report(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).expect("the child wrote its report");
    text.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn get<'a>(report: &'a [(String, String)], key: &str) -> &'a str {
    report
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {report:?}"))
}

fn command(scenario: &str, report: &Path, storage: &Path) -> Command {
    let test = child::test_name(module_path!(), "shutdown_bounds_child");
    let mut command = child::command(
        &test,
        ROLE,
        &[
            scenario.to_owned(),
            report.display().to_string(),
            storage.display().to_string(),
        ],
    );
    command.env_remove("APPLICATIONINSIGHTS_CONNECTION_STRING");
    command.env_remove("APPINSIGHTS_INSTRUMENTATIONKEY");
    command
}

/// Not a test of its own: the application of the tests below (the role
/// `shutdown_bounds` of [`child`]). Its arguments: the scenario, the
/// report file, a storage directory.
#[test]
fn shutdown_bounds_child() {
    let Some(args) = child::role_args(ROLE) else {
        return;
    };
    let [scenario, report, storage] = &args[..] else {
        panic!("{ROLE}: expected scenario, report and storage, got {args:?}");
    };
    let text = match scenario.as_str() {
        "dns" => dns_stall(Path::new(storage)),
        "stuck_sink" => stuck_sink(),
        other => panic!("{ROLE}: unknown scenario {other}"),
    };
    std::fs::write(report, text).unwrap();
    // Threads stuck in `getaddrinfo` or `write` are not waited for.
    std::process::exit(0);
}

/// Two exporters to a host whose lookups never answer: one shut down by
/// `shutdown(1 s)`, one by dropping its guard (shutdown timeout 1 s).
fn dns_stall(storage: &Path) -> String {
    let endpoint = format!("http://{STALLED_HOST}:8080");
    let builder = || {
        Builder::new()
            .with_connection_string(connection_string(&endpoint))
            .with_storage_dir(storage)
            .with_request_timeout(Duration::from_secs(30))
            .with_shutdown_timeout(Duration::from_secs(1))
    };
    let (dispatch, guard) = start(builder());
    emit(&dispatch, "dns", 0..20);
    // The first send is stuck in the lookup by now or soon: either way the
    // shutdown must not wait for it.
    let began = Instant::now();
    let result = guard.shutdown(Duration::from_secs(1));
    let shutdown_ms = began.elapsed().as_millis();
    let stats = guard.stats();

    let (dispatch, dropped_guard) = start(builder());
    emit(&dispatch, "dns-drop", 0..20);
    let began = Instant::now();
    drop(dropped_guard);
    let drop_ms = began.elapsed().as_millis();
    format!(
        "result={result:?} shutdown_ms={shutdown_ms} drop_ms={drop_ms} queued={} stored={} \
         exported={} lost={} balances={}",
        stats.queued,
        stats.stored,
        stats.exported,
        stats.dropped(),
        stats.balances()
    )
}

/// The stdout sink writing to a pipe nobody reads: the worker blocks in
/// `write` in the middle of a step and never replies.
fn stuck_sink() -> String {
    let (dispatch, guard) = start(Builder::new().with_max_batch_size(64));
    // Far more than a pipe holds (64 KiB on Linux): the worker blocks.
    emit(&dispatch, "stuck", 0..5_000);
    let result = guard.shutdown(Duration::from_secs(1));
    let first = guard.stats();
    // Records produced after the shutdown are counted on their own.
    emit(&dispatch, "late", 0..7);
    std::thread::sleep(Duration::from_millis(50));
    let later = guard.stats();
    let unchanged = ExporterCounters::of(&first) == ExporterCounters::of(&later);
    format!(
        "timeout={} queued={} exported={} at_shutdown={} after_shutdown={} balances={} \
         later_balances={} unchanged={unchanged}",
        matches!(result, Err(ShutdownError::Timeout(_))),
        first.queued,
        first.exported,
        first.dropped_at_shutdown,
        later.dropped_after_shutdown,
        first.balances(),
        later.balances(),
    )
}

/// The counters that may no longer change once `shutdown` returned.
#[derive(PartialEq, Debug)]
struct ExporterCounters([u64; 5]);

impl ExporterCounters {
    fn of(s: &tracing_appinsights::ExporterStats) -> Self {
        ExporterCounters([
            s.queued,
            s.exported,
            s.stored,
            s.dropped(),
            s.in_memory + s.in_queue,
        ])
    }
}

#[test]
fn shutdown_is_bounded_while_a_name_lookup_hangs() {
    let dir = TempDir::new("dns-stall");
    let shim = build_shim(&dir.path().join("shim"));
    let report_path = dir.path().join("report");
    let child = command("dns", &report_path, &dir.path().join("storage"))
        .env("LD_PRELOAD", &shim)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait(child);
    let report = report(&report_path);
    // The lookups never answer, so nothing was sent: the 20 spans were
    // stored by the deadline (or counted as lost), and the counters balance.
    assert_eq!(get(&report, "balances"), "true", "{report:?}");
    assert_eq!(get(&report, "queued"), "20", "{report:?}");
    assert_eq!(get(&report, "exported"), "0", "{report:?}");
    let stored: u64 = get(&report, "stored").parse().unwrap();
    let lost: u64 = get(&report, "lost").parse().unwrap();
    assert_eq!(stored + lost, 20, "{report:?}");
    println!("dns stall: {report:?}");
}

#[test]
fn stats_balance_when_shutdown_returns_even_after_a_timeout() {
    let dir = TempDir::new("stuck-sink");
    let report_path = dir.path().join("report");
    std::fs::create_dir_all(dir.path()).unwrap();
    // stdout is a pipe that is never read: the stdout sink blocks.
    let mut child = command("stuck_sink", &report_path, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let unread = child.stdout.take();
    wait(child);
    drop(unread);
    let report = report(&report_path);
    assert_eq!(get(&report, "timeout"), "true", "{report:?}");
    assert_eq!(get(&report, "balances"), "true", "{report:?}");
    assert_eq!(get(&report, "later_balances"), "true", "{report:?}");
    assert_eq!(get(&report, "unchanged"), "true", "{report:?}");
    assert_eq!(get(&report, "after_shutdown"), "7", "{report:?}");
    let queued: u64 = get(&report, "queued").parse().unwrap();
    let exported: u64 = get(&report, "exported").parse().unwrap();
    let lost: u64 = get(&report, "at_shutdown").parse().unwrap();
    assert_eq!(queued, 5_000, "{report:?}");
    assert!(lost > 0, "the blocked worker held items: {report:?}");
    assert_eq!(exported + lost, queued, "{report:?}");
}
