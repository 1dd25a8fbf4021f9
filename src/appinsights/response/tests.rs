use super::*;
use crate::time::parse_http_date;
use bytes::Bytes;
use std::time::UNIX_EPOCH;

const NOW_SECS: u64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn response(
    status: u16,
    retry_after: Option<&str>,
    location: Option<&str>,
    body: &str,
) -> SendOutcome {
    SendOutcome::Response {
        status,
        retry_after: retry_after.map(str::to_owned),
        location: location.map(str::to_owned),
        body: Bytes::from(body.to_owned()),
    }
}

fn retry(status: u16, after: Option<Duration>) -> Outcome {
    Outcome::RetryAll {
        after,
        reason: RetryReason::Status(status),
    }
}

fn dropped(status: u16, message: &str) -> Outcome {
    Outcome::Drop(DropReason::Status(status, message.to_owned()))
}
/// Every code of the table above, once, and the malformed bodies.
#[test]
fn classification_table() {
    let errors_body = r#"{"itemsReceived":3,"itemsAccepted":1,"errors":[
        {"index":0,"statusCode":400,"message":"bad field"},
        {"index":2,"statusCode":500,"message":"try again"}]}"#;
    let partial_0_2 = Outcome::Partial {
        retry: vec![2],
        rejected: 1,
        first_error: Some((400, "bad field".into())),
    };
    let error_message = r#"{"itemsReceived":3,"itemsAccepted":0,"errors":[{"index":0,"statusCode":400,"message":"Invalid instrumentation key"}]}"#;
    #[rustfmt::skip]
    let table: Vec<(SendOutcome, Outcome)> = vec![
        // Accepted.
        (response(200, None, None, r#"{"itemsReceived":3,"itemsAccepted":3,"errors":[]}"#), Outcome::Accepted),
        (response(200, None, None, ""), Outcome::Accepted),
        (response(200, None, None, "not json"), Outcome::Accepted),
        (response(200, None, None, "[]"), Outcome::Accepted),
        // 200 with errors is partial.
        (response(200, None, None, errors_body), partial_0_2.clone()),
        // 206.
        (response(206, None, None, errors_body), partial_0_2),
        (response(206, None, None, ""), Outcome::Drop(DropReason::UnreadablePartial)),
        (response(206, None, None, "{not json"), Outcome::Drop(DropReason::UnreadablePartial)),
        (response(206, None, None, r#"{"errors":[]}"#), Outcome::Drop(DropReason::UnreadablePartial)),
        (response(206, None, None, r#"{"errors":[{"statusCode":500}]}"#), Outcome::Drop(DropReason::UnreadablePartial)),
        // Retry the whole batch.
        (response(401, None, None, "{}"), retry(401, None)),
        (response(403, None, None, "{}"), retry(403, None)),
        (response(408, None, None, "{}"), retry(408, None)),
        (response(429, Some("2"), None, "{}"), retry(429, Some(Duration::from_secs(2)))),
        (response(429, None, None, "{}"), retry(429, None)),
        (response(500, None, None, errors_body), retry(500, None)),
        (response(502, None, None, "<html>"), retry(502, None)),
        (response(503, Some("Sun, 06 Nov 1994 08:49:47 GMT"), None, ""), retry(503, Some(Duration::from_secs(10)))),
        (response(503, Some("soon"), None, ""), retry(503, None)),
        (response(504, None, None, ""), retry(504, None)),
        (SendOutcome::Timeout, Outcome::RetryAll { after: None, reason: RetryReason::Timeout }),
        (SendOutcome::Connect("refused".into()), Outcome::RetryAll { after: None, reason: RetryReason::Connect("refused".into()) }),
        (SendOutcome::Credential("no token".into()), Outcome::RetryAll { after: None, reason: RetryReason::Credential("no token".into()) }),
        // Redirects.
        (response(307, None, Some("https://westus-1.in.example.com/v2.1/track"), ""),
         Outcome::Redirect { endpoint: "https://westus-1.in.example.com".into() }),
        (response(308, None, Some("http://127.0.0.1:8080/x?y"), ""),
         Outcome::Redirect { endpoint: "http://127.0.0.1:8080".into() }),
        (response(307, None, None, ""), Outcome::Drop(DropReason::BadRedirect("no Location header".into()))),
        (response(307, None, Some("/relative/path"), ""), Outcome::Drop(DropReason::BadRedirect("/relative/path".into()))),
        (response(308, None, Some("ftp://host/"), ""), Outcome::Drop(DropReason::BadRedirect("ftp://host/".into()))),
        (response(307, None, Some("https://user:secret@evil.example.com/v2.1/track"), ""),
         Outcome::RetryAll { after: None, reason: RetryReason::RefusedRedirect("a Location with user information (host evil.example.com)".into()) }),
        // Daily quota and long-term throttling: retried, the endpoint paused.
        (response(402, None, None, "quota"), Outcome::RetryAll { after: None, reason: RetryReason::Quota(402, "quota".into()) }),
        (response(439, Some("60"), None, ""), Outcome::RetryAll { after: Some(Duration::from_secs(60)), reason: RetryReason::Quota(439, String::new()) }),
        // Dropped.
        (response(400, None, None, error_message), dropped(400, "Invalid instrumentation key")),
        (response(404, None, None, ""), dropped(404, "")),
        (response(413, None, None, ""), dropped(413, "")),
        (response(418, None, None, ""), dropped(418, "")),
        (response(204, None, None, ""), dropped(204, "")),
        (response(301, None, Some("https://x/"), ""), dropped(301, "")),
    ];
    for (input, expected) in table {
        assert_eq!(classify(&input, 3, now()), expected, "{input:?}");
    }
}

#[test]
fn partial_answers_resend_only_retryable_items() {
    let body = r#"{"itemsReceived":8,"itemsAccepted":2,"errors":[
        {"index":7,"statusCode":429,"message":"throttled"},
        {"index":1,"statusCode":401},
        {"index":2,"statusCode":403},
        {"index":3,"statusCode":408},
        {"index":4,"statusCode":439},
        {"index":5,"statusCode":206},
        {"index":5,"statusCode":500},
        {"index":9,"statusCode":500},
        {"index":6,"statusCode":400,"message":"too big"}]}"#;
    let outcome = classify_response(206, None, None, body.as_bytes(), 8, now());
    assert_eq!(
        outcome,
        Outcome::Partial {
            // 5 is named twice: its first entry (206) wins and is dropped;
            // 9 is out of range.
            retry: vec![1, 2, 3, 7],
            rejected: 3,
            first_error: Some((429, "throttled".into())),
        }
    );
    // Errors naming only out-of-range items: everything was accepted.
    let body = r#"{"errors":[{"index":10,"statusCode":500}]}"#;
    assert_eq!(
        classify_response(206, None, None, body.as_bytes(), 3, now()),
        Outcome::Accepted
    );
}

#[test]
fn retry_after_in_seconds_and_dates() {
    let n = now();
    assert_eq!(parse_retry_after("2", n), Some(Duration::from_secs(2)));
    assert_eq!(parse_retry_after(" 0 ", n), Some(Duration::ZERO));
    assert_eq!(parse_retry_after("86400", n), Some(MAX_RETRY_AFTER));
    assert_eq!(
        parse_retry_after("99999999999999999999999", n),
        Some(MAX_RETRY_AFTER)
    );
    assert_eq!(parse_retry_after("-1", n), None);
    assert_eq!(parse_retry_after("1.5", n), None);
    assert_eq!(parse_retry_after("", n), None);
    for date in [
        "Sun, 06 Nov 1994 08:50:07 GMT",
        "Sunday, 06-Nov-94 08:50:07 GMT",
        "Sun Nov  6 08:50:07 1994",
    ] {
        assert_eq!(
            parse_retry_after(date, n),
            Some(Duration::from_secs(30)),
            "{date}"
        );
    }
    // In the past: now.
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", n),
        Some(Duration::ZERO)
    );
    for bad in [
        "Sun, 06 Nov 1994 08:50:07 UTC",
        "Sun, 32 Nov 1994 08:50:07 GMT",
        "Sun, 06 Foo 1994 08:50:07 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:50 GMT",
        "tomorrow",
    ] {
        assert_eq!(parse_retry_after(bad, n), None, "{bad}");
    }
    assert_eq!(
        parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
        Some(UNIX_EPOCH)
    );
    assert_eq!(
        parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
        Some(UNIX_EPOCH + Duration::from_secs(1_835_438_400))
    );
}

// --- TrackResponse ---

#[test]
fn track_responses_parse() {
    let error = |index, status_code, message: &str| TrackError {
        index,
        status_code,
        message: message.to_owned(),
    };
    let response = |items_received, items_accepted, errors| TrackResponse {
        items_received,
        items_accepted,
        errors,
    };
    let cases: Vec<(&str, Option<TrackResponse>)> = vec![
        (
            r#"{"itemsReceived":3,"itemsAccepted":3,"errors":[]}"#,
            Some(response(3, 3, vec![])),
        ),
        (
            r#"{ "itemsReceived": 3, "itemsAccepted": 1,
                 "errors": [ { "index": 0, "statusCode": 400, "message": "103: Field 'time' is too old" },
                             { "index": 2, "statusCode": 500, "message": "Internal Server Error" } ] }"#,
            Some(response(
                3,
                1,
                vec![
                    error(0, 400, "103: Field 'time' is too old"),
                    error(2, 500, "Internal Server Error"),
                ],
            )),
        ),
        (r#"{"itemsReceived":2}"#, Some(response(2, 0, vec![]))),
        (
            r#"{"errors":[{"index":1}]}"#,
            Some(response(0, 0, vec![error(1, 0, "")])),
        ),
        (
            r#"{"itemsReceived":1,"appId":null,"extra":[1]}"#,
            Some(response(1, 0, vec![])),
        ),
        ("{}", Some(TrackResponse::default())),
        (r#"{"errors":[{"statusCode":500}]}"#, None),
        (r#"{"itemsReceived":-1}"#, None),
        ("[]", None),
        ("[3, 3, []]", None),
        ("  \n{\"itemsAccepted\": 1}", Some(response(0, 1, vec![]))),
        ("null", None),
        ("", None),
        ("<html>Bad Gateway</html>", None),
        ("\u{1f}\u{8b}garbage", None),
    ];
    for (body, expected) in cases {
        assert_eq!(parse_track_response(body.as_bytes()), expected, "{body}");
    }
}
