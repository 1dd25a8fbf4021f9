//! Delivery against the fake ingestion server: every status code the
//! exporter acts on (`docs/delivery.md`), partial success, `Retry-After`, redirects, an endpoint that is down
//! then up, a slow endpoint, flush and shutdown with a failing endpoint,
//! and the memory bound. Every test checks that each item is accounted for
//! exactly once (`ExporterStats::balances`).

use std::time::{Duration, Instant};

use crate::support::delivery::{
    assert_exactly_once, builder, dead_addr, emit, names, start, Forwarder, TempDir,
};
use crate::support::{wait_until, FakeIngestion, ScriptedResponse};
use tracing_appinsights::ManualClock;

/// One span through a server that answers `status` first (then 200).
fn one_status(status: u16) -> (tracing_appinsights::ExporterStats, usize) {
    let server = FakeIngestion::start();
    let mut first = ScriptedResponse::status(status);
    if status == 307 || status == 308 {
        // A redirect to the same server: followed, and answered 200.
        first = first.with_header("Location", format!("{}/v2.1/track", server.endpoint()));
    }
    server.script([first]);
    let dir = TempDir::new(&format!("status-{status}"));
    let (dispatch, guard) = start(builder(&server.endpoint(), dir.path()));
    emit(&dispatch, "s", 0..1);
    guard.flush(Duration::from_secs(10)).unwrap();
    let stats = guard.stats();
    guard.shutdown(Duration::from_secs(5)).unwrap();
    (stats, server.requests().len())
}

#[test]
fn each_status_code_of_the_design_once() {
    let accepted = [200];
    let retried = [401, 403, 408, 429, 500, 502, 503, 504, 307, 308];
    // Over the quota: stored at once (the endpoint is left alone for a
    // while; `endpoint_trouble` follows what happens next).
    let paused = [402, 439];
    let dropped = [400, 404, 413, 418];
    let codes: Vec<u16> = accepted
        .iter()
        .chain(&retried)
        .chain(&paused)
        .chain(&dropped)
        .copied()
        .collect();
    // In parallel: each waits out at most one backoff step.
    let results: Vec<(u16, tracing_appinsights::ExporterStats, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = codes
            .iter()
            .map(|&code| s.spawn(move || (code, one_status(code))))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let (code, (stats, requests)) = h.join().unwrap();
                (code, stats, requests)
            })
            .collect()
    });
    for (code, stats, requests) in results {
        assert!(stats.balances(), "{code}: {stats:?}");
        assert_eq!(stats.queued, 1, "{code}");
        if accepted.contains(&code) {
            assert_eq!(
                (requests, stats.exported, stats.retried),
                (1, 1, 0),
                "{code}: {stats:?}"
            );
        } else if retried.contains(&code) {
            // After a 408 the server closes the connection; a request
            // hyper had already started on it is resent by hyper itself
            // (the server saw it, the service never answered it).
            let seen = if code == 408 { 2..=3 } else { 2..=2 };
            assert!(seen.contains(&requests), "{code}: {requests} requests");
            assert_eq!(
                (stats.requests, stats.exported, stats.retried),
                (2, 1, 1),
                "{code}: {stats:?}"
            );
            assert_eq!(stats.dropped(), 0, "{code}");
        } else if paused.contains(&code) {
            assert_eq!(
                (requests, stats.exported, stats.stored),
                (1, 0, 1),
                "{code}: {stats:?}"
            );
            assert_eq!(stats.dropped(), 0, "{code}");
        } else {
            assert_eq!((requests, stats.exported), (1, 0), "{code}: {stats:?}");
            assert_eq!(stats.dropped_rejected, 1, "{code}: {stats:?}");
        }
    }
}

#[test]
fn partial_success_resends_only_the_retryable_items() {
    let server = FakeIngestion::start();
    server.script([ScriptedResponse::status(206).with_body(
        r#"{"itemsReceived":5,"itemsAccepted":2,"errors":[
            {"index":1,"statusCode":500,"message":"internal"},
            {"index":3,"statusCode":400,"message":"invalid field"},
            {"index":4,"statusCode":429,"message":"throttled"}]}"#,
    )]);
    let dir = TempDir::new("partial");
    let (dispatch, guard) = start(builder(&server.endpoint(), dir.path()));
    emit(&dispatch, "p", 0..5);
    guard.flush(Duration::from_secs(10)).unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        names(&requests[0].envelopes),
        ["p-0", "p-1", "p-2", "p-3", "p-4"]
    );
    assert_eq!(names(&requests[1].envelopes), ["p-1", "p-4"]);
    let stats = guard.stats();
    assert_eq!(
        (stats.exported, stats.dropped_rejected, stats.retried),
        (4, 1, 2),
        "{stats:?}"
    );
    assert!(stats.balances(), "{stats:?}");
}

/// On the exporter's clock, the batch is not resent before the service's
/// `Retry-After` has passed, and is resent once it has.
#[test]
fn retry_after_is_waited_out() {
    let server = FakeIngestion::start();
    server.script([ScriptedResponse::status(429).with_header("Retry-After", "2")]);
    let dir = TempDir::new("retry-after");
    let clock = ManualClock::new();
    let (dispatch, guard) =
        start(builder(&server.endpoint(), dir.path()).with_manual_clock(&clock));
    emit(&dispatch, "r", 0..3);
    // The flush sends at once (and then waits for the retry).
    let flushing = std::thread::spawn(move || {
        let result = guard.flush(Duration::from_secs(30));
        (result, guard)
    });
    assert_eq!(
        server.wait_for_requests(1, Duration::from_secs(10)).len(),
        1
    );
    // 1.9 s on the exporter's clock: too early, whenever the worker read
    // the answer (its Retry-After counts from then).
    clock.advance(Duration::from_millis(1900));
    // Then on in small steps until the batch comes again.
    let at_first = clock.elapsed();
    let mut resent_at = None;
    for _ in 0..3000 {
        if server.requests().len() >= 2 {
            resent_at = Some(clock.elapsed());
            break;
        }
        clock.advance(Duration::from_millis(100));
        std::thread::sleep(Duration::from_millis(5));
    }
    let resent_at = resent_at.expect("resent once the clock passed Retry-After");
    assert!(resent_at > at_first, "not resent before 2 s on the clock");
    assert!(
        resent_at >= Duration::from_secs(2),
        "resent at {resent_at:?}"
    );
    let (result, guard) = flushing.join().unwrap();
    result.unwrap();
    assert_eq!(server.requests().len(), 2);
    let stats = guard.stats();
    assert_eq!((stats.exported, stats.retried), (3, 3), "{stats:?}");
    assert!(stats.balances());
}

#[test]
fn a_307_sends_to_the_location_host_from_then_on() {
    let first = FakeIngestion::start();
    let second = FakeIngestion::start();
    first.script([ScriptedResponse::status(307).with_header(
        "Location",
        format!("{}/v2.1/track?from=redirect", second.endpoint()),
    )]);
    let dir = TempDir::new("redirect");
    let (dispatch, guard) = start(builder(&first.endpoint(), dir.path()));
    emit(&dispatch, "a", 0..2);
    guard.flush(Duration::from_secs(10)).unwrap();
    emit(&dispatch, "b", 0..2);
    guard.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(first.requests().len(), 1);
    let requests = second.requests();
    // The Location's path is not kept: the track path is ours.
    assert!(
        requests.iter().all(|r| r.path == "/v2.1/track"),
        "{requests:?}"
    );
    let arrived = names(&second.envelopes());
    assert_eq!(arrived, ["a-0", "a-1", "b-0", "b-1"]);
    let stats = guard.stats();
    assert_eq!((stats.exported, stats.requests), (4, 3), "{stats:?}");
    assert!(stats.balances());
}

#[test]
fn ten_redirects_in_a_row_drop_the_batch() {
    let server = FakeIngestion::start();
    let location = format!("{}/v2.1/track", server.endpoint());
    server
        .script((0..10).map(|_| ScriptedResponse::status(308).with_header("Location", &location)));
    let dir = TempDir::new("redirect-loop");
    let (dispatch, guard) = start(builder(&server.endpoint(), dir.path()));
    emit(&dispatch, "loop", 0..2);
    guard.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(server.requests().len(), 10);
    let stats = guard.stats();
    assert_eq!(
        (stats.exported, stats.dropped_rejected),
        (0, 2),
        "{stats:?}"
    );
    assert!(stats.balances());
    // The count starts again: the next batch goes through.
    emit(&dispatch, "after", 0..1);
    guard.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(guard.stats().exported, 1);
}

#[test]
fn an_endpoint_down_then_up_gets_every_span_exactly_once() {
    let server = FakeIngestion::start();
    let addr = dead_addr();
    let dir = TempDir::new("down-up");
    let (dispatch, guard) = start(
        builder(&format!("http://{addr}"), dir.path())
            .with_max_batch_size(20)
            .with_export_interval(Duration::from_millis(50)),
    );
    // Two seconds of spans while nothing listens.
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(2) {
        emit(&dispatch, "d", n..n + 10);
        n += 10;
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = guard.stats();
    assert!(stats.requests > 0 && stats.exported == 0, "{stats:?}");
    assert_eq!(stats.dropped_queue_full, 0, "spans keep being accepted");
    // Up.
    let _forwarder = Forwarder::start(addr, server.addr());
    let arrived = server.wait_for_envelopes(n, Duration::from_secs(30));
    assert_exactly_once(&names(&arrived), "d", n);
    guard.flush(Duration::from_secs(10)).unwrap();
    let stats = guard.stats();
    assert_eq!(stats.exported, n as u64, "{stats:?}");
    assert!(stats.retried > 0);
    assert!(stats.balances(), "{stats:?}");
    guard.shutdown(Duration::from_secs(5)).unwrap();
    assert_exactly_once(&names(&server.envelopes()), "d", n);
}

#[test]
fn a_slow_endpoint_is_counted_as_timeouts_and_retried() {
    let server = FakeIngestion::start();
    // The first answer comes after the request timeout.
    server.script([ScriptedResponse::ok().with_delay(Duration::from_secs(2))]);
    let dir = TempDir::new("slow");
    let (dispatch, guard) = start(
        builder(&server.endpoint(), dir.path()).with_request_timeout(Duration::from_millis(300)),
    );
    emit(&dispatch, "slow", 0..4);
    guard.flush(Duration::from_secs(10)).unwrap();
    let stats = guard.stats();
    assert!(stats.timeouts >= 1, "{stats:?}");
    assert_eq!(stats.exported, 4, "{stats:?}");
    assert_eq!(stats.retried, 4 * stats.timeouts, "{stats:?}");
    assert!(stats.balances());
    // The server took each request that timed out before it stalled: each
    // timeout makes one duplicate, unavoidably, and nothing more does.
    let requests = server.requests();
    assert_eq!(requests.len() as u64, stats.timeouts + 1, "{stats:?}");
    for request in &requests {
        assert_eq!(
            names(&request.envelopes),
            ["slow-0", "slow-1", "slow-2", "slow-3"]
        );
    }
}

#[test]
fn flush_against_a_failing_endpoint_stores_in_time() {
    let server = FakeIngestion::start();
    server.script((0..1000).map(|_| ScriptedResponse::status(503)));
    let dir = TempDir::new("flush-store");
    let (dispatch, guard) = start(builder(&server.endpoint(), dir.path()));
    emit(&dispatch, "f", 0..10);
    // `Ok` means settled within the flush's timeout.
    guard.flush(Duration::from_secs(2)).unwrap();
    let stats = guard.stats();
    assert_eq!(
        (stats.stored, stats.in_memory, stats.exported),
        (10, 0, 0),
        "{stats:?}"
    );
    assert!(stats.balances(), "{stats:?}");
    assert!(!dir.files().is_empty());
}

#[test]
fn shutdown_with_a_dead_endpoint_returns_in_time_and_stores_everything() {
    let dir = TempDir::new("dead-shutdown");
    let (dispatch, guard) = start(builder(&format!("http://{}", dead_addr()), dir.path()));
    emit(&dispatch, "x", 0..50);
    // `Ok` means done within the shutdown's timeout.
    guard.shutdown(Duration::from_secs(1)).unwrap();
    let stats = guard.stats();
    assert_eq!((stats.stored, stats.exported), (50, 0), "{stats:?}");
    assert!(stats.balances(), "{stats:?}");
    // A blob per batch, readable only by us.
    let files = dir.files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".blob"), "{files:?}");
    let storage = dir.storage().unwrap();
    let content = std::fs::read_to_string(storage.join(&files[0])).unwrap();
    assert_eq!(content.lines().count(), 50);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path()), 0o700, "created for us");
        assert_eq!(mode(&storage), 0o700);
        assert_eq!(mode(&storage.join(&files[0])), 0o600);
    }
}

#[test]
fn without_storage_shutdown_drops_and_counts_what_it_could_not_send() {
    let dir = TempDir::new("no-storage");
    let (dispatch, guard) =
        start(builder(&format!("http://{}", dead_addr()), dir.path()).with_offline_storage(false));
    emit(&dispatch, "gone", 0..7);
    guard.shutdown(Duration::from_millis(500)).unwrap();
    let stats = guard.stats();
    assert_eq!(
        (stats.dropped_storage_unavailable, stats.stored),
        (7, 0),
        "{stats:?}"
    );
    assert!(stats.balances());
    assert!(!dir.path().exists(), "nothing written");
}

#[test]
fn without_storage_a_flush_keeps_what_it_could_not_send_in_memory() {
    let server = FakeIngestion::start();
    server.script((0..1000).map(|_| ScriptedResponse::status(503)));
    let dir = TempDir::new("no-storage-flush");
    let (dispatch, guard) =
        start(builder(&server.endpoint(), dir.path()).with_offline_storage(false));
    emit(&dispatch, "kept", 0..4);
    // Nothing lost yet: the items wait for their retry.
    assert_eq!(
        guard.flush(Duration::from_millis(800)),
        Err(tracing_appinsights::FlushError::Timeout(
            Duration::from_millis(800)
        ))
    );
    let stats = guard.stats();
    assert_eq!((stats.in_memory, stats.dropped()), (4, 0), "{stats:?}");
    assert!(stats.balances(), "{stats:?}");
    guard.shutdown(Duration::from_millis(500)).unwrap();
    assert_eq!(guard.stats().dropped_storage_unavailable, 4);
}

#[test]
fn an_outage_keeps_memory_bounded_by_storing_what_waits_longest() {
    let dir = TempDir::new("memory-bound");
    let (dispatch, guard) = start(
        builder(&format!("http://{}", dead_addr()), dir.path())
            .with_max_batch_size(10)
            .with_max_retry_memory(8 * 1024),
    );
    emit(&dispatch, "m", 0..200);
    // Let the worker take everything (the batches fill at once). Each
    // snapshot is taken between two of its steps, so it balances.
    let stats = wait_until(|| Some(guard.stats()).filter(|s| s.in_queue == 0));
    assert!(stats.stored > 0, "{stats:?}");
    // About 8 KiB of bodies, gzipped while they wait: a dozen or so
    // batches of ten spans at most (a gzipped batch is over 500 bytes).
    assert!(stats.in_memory <= 160, "{stats:?}");
    assert!(stats.balances(), "{stats:?}");
    guard.shutdown(Duration::from_secs(1)).unwrap();
    let stats = guard.stats();
    assert_eq!(stats.stored, 200, "{stats:?}");
}

/// A batch is gzipped once: its retry sends the very bytes of its first
/// attempt.
#[test]
fn a_retry_resends_the_same_gzipped_bytes() {
    let server = FakeIngestion::start();
    server.script([ScriptedResponse::status(503)]);
    let dir = TempDir::new("same-bytes");
    let (dispatch, guard) = start(builder(&server.endpoint(), dir.path()));
    emit(&dispatch, "g", 0..20);
    guard.flush(Duration::from_secs(10)).unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].header("content-encoding"), Some("gzip"));
    assert_eq!(requests[1].header("content-encoding"), Some("gzip"));
    assert_eq!(requests[0].raw_body, requests[1].raw_body);
    assert_exactly_once(&names(&requests[1].envelopes), "g", 20);
    let stats = guard.stats();
    assert_eq!((stats.exported, stats.retried), (20, 20), "{stats:?}");
    assert!(stats.balances(), "{stats:?}");
}
