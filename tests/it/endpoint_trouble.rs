//! An endpoint that is in trouble, or that tries to lead the exporter
//! astray: a daily quota (402, 439) pauses sending and stores instead;
//! redirects are followed only where they are safe, and not for ever;
//! items that partial answers keep sending back wait longer and longer.
//!
//! Timers run on a [`ManualClock`]: these tests move it, so nothing
//! depends on how fast the machine is.

use std::time::Duration;

use tracing::Level;
use tracing_appinsights::ManualClock;

use crate::support::child::own_process;
use crate::support::delivery::{
    advance_until, assert_exactly_once, builder, dead_addr, emit, names, start, TempDir,
};
use crate::support::diagnostics::Diagnostics;
use crate::support::{FakeIngestion, ScriptedResponse};

/// The names of what `server` took after its first answer (the scripted
/// refusal or redirect).
fn accepted(server: &FakeIngestion) -> Vec<String> {
    let later: Vec<_> = server
        .requests()
        .into_iter()
        .skip(1)
        .flat_map(|r| r.envelopes)
        .collect();
    names(&later)
}

#[test]
fn a_daily_quota_pauses_sending_and_stores_instead() {
    let Some(_own_process) = own_process(
        module_path!(),
        "a_daily_quota_pauses_sending_and_stores_instead",
    ) else {
        return;
    };
    let diagnostics = Diagnostics::install();
    let server = FakeIngestion::start();
    server.script([ScriptedResponse::status(402).with_body(
        r#"{"itemsReceived":5,"itemsAccepted":0,"errors":[{"index":0,"statusCode":402,"message":"Daily quota exceeded"}]}"#,
    )]);
    let dir = TempDir::new("quota");
    let clock = ManualClock::new();
    let (dispatch, guard) =
        start(builder(&server.endpoint(), dir.path()).with_manual_clock(&clock));
    emit(&dispatch, "q1", 0..5);
    // Over the quota: the batch goes to storage, and the flush is done.
    guard.flush(Duration::from_secs(10)).unwrap();
    // Three more minutes of spans: nothing is posted, everything stored.
    for round in 2..=4 {
        emit(&dispatch, &format!("q{round}"), 0..5);
        guard.flush(Duration::from_secs(10)).unwrap();
        clock.advance(Duration::from_secs(60));
    }
    assert_eq!(
        server.requests().len(),
        1,
        "paused: no request after the 402"
    );
    let stats = guard.stats();
    assert_eq!((stats.stored, stats.exported), (20, 0), "{stats:?}");
    assert!(stats.balances(), "{stats:?}");
    // Said once, at warning level, with the service's words and the pause.
    let said = diagnostics.with("daily cap");
    let warnings: Vec<_> = said.iter().filter(|(l, _)| *l == Level::WARN).collect();
    assert_eq!(warnings.len(), 1, "{said:?}");
    assert!(
        warnings[0].1.contains("402 (Daily quota exceeded)"),
        "{said:?}"
    );
    assert!(warnings[0].1.contains("5 minutes"), "{said:?}");

    // Five minutes after the 402, one probe; it is accepted and the rest
    // follows.
    let all_sent = advance_until(
        &clock,
        Duration::from_secs(1),
        Duration::from_secs(300),
        || accepted(&server).len() >= 20,
    );
    assert!(all_sent, "{:?}", guard.stats());
    let arrived = accepted(&server);
    for round in 1..=4 {
        assert_exactly_once(&arrived, &format!("q{round}"), 5);
    }
    guard.flush(Duration::from_secs(10)).unwrap();
    let stats = guard.stats();
    assert_eq!((stats.exported, stats.read_back), (20, 20), "{stats:?}");
    assert!(stats.balances(), "{stats:?}");
    guard.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_redirect_with_user_information_is_not_followed() {
    let Some(_own_process) = own_process(
        module_path!(),
        "a_redirect_with_user_information_is_not_followed",
    ) else {
        return;
    };
    let diagnostics = Diagnostics::install();
    let first = FakeIngestion::start();
    let second = FakeIngestion::start();
    first.script([ScriptedResponse::status(307).with_header(
        "Location",
        format!("http://user:hunter2@{}/v2.1/track", second.addr()),
    )]);
    let dir = TempDir::new("redirect-userinfo");
    let (dispatch, guard) = start(builder(&first.endpoint(), dir.path()));
    emit(&dispatch, "u", 0..3);
    guard.flush(Duration::from_secs(20)).unwrap();
    // Retried where it was sent, never posted to the other host.
    assert_eq!(first.requests().len(), 2);
    assert!(second.requests().is_empty());
    assert_exactly_once(&accepted(&first), "u", 3);
    let stats = guard.stats();
    assert_eq!((stats.exported, stats.dropped()), (3, 0), "{stats:?}");
    assert!(stats.balances(), "{stats:?}");
    let all = diagnostics.all();
    assert!(
        all.iter().all(|(_, m)| !m.contains("hunter2")),
        "no secret in the logs: {all:?}"
    );
    assert!(
        all.iter().any(|(_, m)| m.contains("user information")),
        "{all:?}"
    );
    guard.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_redirect_ends_after_its_lifetime() {
    let first = FakeIngestion::start();
    let second = FakeIngestion::start();
    first.script([ScriptedResponse::status(308)
        .with_header("Location", format!("{}/v2.1/track", second.endpoint()))]);
    let dir = TempDir::new("redirect-lifetime");
    let clock = ManualClock::new();
    let (dispatch, guard) = start(builder(&first.endpoint(), dir.path()).with_manual_clock(&clock));
    emit(&dispatch, "a", 0..2);
    guard.flush(Duration::from_secs(10)).unwrap();
    clock.advance(Duration::from_secs(9 * 60));
    emit(&dispatch, "b", 0..2);
    guard.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(names(&second.envelopes()), ["a-0", "a-1", "b-0", "b-1"]);
    // Ten minutes after the redirect, the configured endpoint again.
    clock.advance(Duration::from_secs(60));
    emit(&dispatch, "c", 0..2);
    guard.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(accepted(&first), ["c-0", "c-1"]);
    assert_eq!(second.requests().len(), 2);
    let stats = guard.stats();
    assert_eq!(stats.exported, 6, "{stats:?}");
    assert!(stats.balances(), "{stats:?}");
    guard.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_failing_redirected_endpoint_falls_back_to_the_configured_one() {
    let first = FakeIngestion::start();
    // Redirected to a port where nothing listens.
    first.script([ScriptedResponse::status(307)
        .with_header("Location", format!("http://{}/v2.1/track", dead_addr()))]);
    let dir = TempDir::new("redirect-dead");
    let clock = ManualClock::new();
    let (dispatch, guard) = start(builder(&first.endpoint(), dir.path()).with_manual_clock(&clock));
    emit(&dispatch, "f", 0..3);
    let flushing = std::thread::spawn(move || {
        let result = guard.flush(Duration::from_secs(60));
        (result, guard)
    });
    // Each refused connection backs off; the clock moves them along.
    let delivered = advance_until(
        &clock,
        Duration::from_millis(100),
        Duration::from_secs(55),
        || accepted(&first).len() >= 3,
    );
    assert!(delivered, "{:?}", first.requests().len());
    let (result, guard) = flushing.join().unwrap();
    result.unwrap();
    assert_eq!(first.requests().len(), 2, "the 307, then the batch again");
    assert_exactly_once(&accepted(&first), "f", 3);
    let stats = guard.stats();
    assert!(stats.retried >= 3, "{stats:?}");
    assert!(stats.balances(), "{stats:?}");
    guard.shutdown(Duration::from_secs(5)).unwrap();
}

/// Before, each partial answer reset the backoff (the endpoint answered),
/// so a batch whose item kept failing was resent every ~0.25 s: ten
/// resends within 5 s of the clock. Now the n-th waits up to
/// `0.5 s × 2^(n-1)`: ten resends within 6 s would take jitter draws with
/// a chance below one in a million.
#[test]
fn repeated_partial_500s_grow_the_backoff() {
    let server = FakeIngestion::start();
    let partial = ScriptedResponse::status(206).with_body(
        r#"{"itemsReceived":2,"itemsAccepted":1,"errors":[{"index":0,"statusCode":500,"message":"internal"}]}"#,
    );
    server.script(std::iter::repeat_n(partial, 12));
    let dir = TempDir::new("partial-backoff");
    let clock = ManualClock::new();
    let (dispatch, guard) =
        start(builder(&server.endpoint(), dir.path()).with_manual_clock(&clock));
    emit(&dispatch, "p", 0..2);
    let flushing = std::thread::spawn(move || {
        let result = guard.flush(Duration::from_secs(60));
        (result, guard)
    });
    server.wait_for_requests(1, Duration::from_secs(10));
    let ten_resends = advance_until(
        &clock,
        Duration::from_millis(50),
        Duration::from_secs(6),
        || server.requests().len() > 10,
    );
    assert!(
        !ten_resends,
        "{} requests in 6 s of the clock",
        server.requests().len()
    );
    assert!(server.requests().len() >= 3, "resent, though");
    // Let it finish: the script runs out and the item is accepted.
    let finished = advance_until(
        &clock,
        Duration::from_millis(500),
        Duration::from_secs(600),
        || flushing.is_finished(),
    );
    assert!(finished);
    let (result, guard) = flushing.join().unwrap();
    result.unwrap();
    let stats = guard.stats();
    assert_eq!(stats.exported + stats.stored, 2, "{stats:?}");
    assert!(stats.balances(), "{stats:?}");
    guard.shutdown(Duration::from_secs(5)).unwrap();
}

/// Before, every batch was taken off the queue and encoded while the
/// requests of a slow (but healthy) endpoint were under way: past the
/// memory bound, the waiting ones went to disk, or were dropped as if
/// storage had failed. Now the records wait in the queue, and what does
/// not fit there is counted as `dropped_queue_full`: the application
/// produces faster than the endpoint takes. More requests go out at once
/// while the endpoint keeps answering.
#[test]
fn a_slow_healthy_endpoint_is_overload_not_a_storage_failure() {
    let server = FakeIngestion::start();
    // Every answer a success, half a second late.
    server.script(std::iter::repeat_n(
        ScriptedResponse::ok().with_delay(Duration::from_millis(500)),
        100_000,
    ));
    let dir = TempDir::new("slow-healthy");
    let (dispatch, guard) = start(
        builder(&server.endpoint(), dir.path())
            .with_max_batch_size(50)
            .with_max_queue_size(1_000)
            .with_max_retry_memory(256 * 1024)
            .with_request_timeout(Duration::from_secs(30))
            .with_export_interval(Duration::from_millis(50)),
    );
    emit(&dispatch, "o", 0..50_000);
    guard.flush(Duration::from_secs(120)).unwrap();
    let stats = guard.stats();
    assert_eq!(
        (
            stats.stored,
            stats.dropped_storage_full,
            stats.dropped_rejected
        ),
        (0, 0, 0),
        "nothing goes to disk or is dropped past the queue: {stats:?}"
    );
    assert_eq!(
        stats.exported + stats.dropped_queue_full,
        50_000,
        "{stats:?}"
    );
    assert!(stats.balances(), "{stats:?}");
    assert_eq!(stats.exported as usize, server.envelopes().len());
    // More than the four requests at once of the start, at most sixteen.
    let most = server.max_concurrent_requests();
    assert!((5..=16).contains(&most), "{most} requests at once");
    guard.shutdown(Duration::from_secs(30)).unwrap();
}
