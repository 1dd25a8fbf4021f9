//! The fake Live Metrics service of [`crate::support::live`], checked from
//! the outside with a raw HTTP/1.1 client on a `TcpStream`: its usual
//! answers (subscription, configuration and ETags, polling hint, redirect),
//! each scripted override, and what it makes of the requests it captures;
//! then once with the crate's own client.
//!
//! Nothing here bounds how long the fake takes: reads wait at most
//! [`READ_LIMIT`] (a liveness bound), and the only timing assertion is that
//! a delay is waited out (a lower bound).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::delivery::start;
use crate::support::live::{
    header, metric, FakeLiveMetrics, LiveAnswer, LiveKind, LiveOverride, LiveRequest, GARBAGE_BODY,
    PING_PATH, POST_PATH,
};
use crate::support::{FakeIngestion, TEST_IKEY};

/// The longest a read waits for the fake (liveness, not speed).
const READ_LIMIT: Duration = Duration::from_secs(60);

/// The query the crate's client sends.
fn query() -> String {
    format!("api-version=2024-04-01-preview&ikey={TEST_IKEY}")
}

/// An HTTP answer as the raw client read it.
#[derive(Debug)]
struct Reply {
    status: u16,
    /// Names lower-case.
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    /// The first value of header `name` (lower-case).
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics if it is not).
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// A connection to `fake` whose reads give up after [`READ_LIMIT`].
fn connect(fake: &FakeLiveMetrics) -> TcpStream {
    let stream = TcpStream::connect(fake.addr()).unwrap();
    stream.set_read_timeout(Some(READ_LIMIT)).unwrap();
    stream
}

/// Writes one request (`Connection: close`, so the answer ends the stream).
fn write_request(
    stream: &mut TcpStream,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) {
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
}

/// Reads the answer to the end of the stream: `Ok(None)` when the stream
/// ended without a byte.
fn read_reply(stream: &mut TcpStream) -> std::io::Result<Option<Reply>> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    if raw.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8(raw).expect("a UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Some(Reply {
        status,
        headers,
        body: body.to_owned(),
    }))
}

/// POSTs `body` to `path` (with the client's query) on a new connection,
/// with `x-ms-qps-configuration-etag: etag` unless `None`, and reads the
/// answer.
fn send(fake: &FakeLiveMetrics, path: &str, etag: Option<&str>, body: &str) -> Reply {
    let mut stream = connect(fake);
    let target = format!("{path}?{}", query());
    let headers: Vec<(&str, &str)> = etag
        .map(|etag| (header::CONFIGURATION_ETAG, etag))
        .into_iter()
        .collect();
    write_request(&mut stream, "POST", &target, &headers, body);
    read_reply(&mut stream)
        .expect("an answer")
        .expect("an answer, not an empty stream")
}

/// A ping with a small identity body.
fn ping(fake: &FakeLiveMetrics, etag: Option<&str>) -> Reply {
    send(
        fake,
        PING_PATH,
        etag,
        r#"{"StreamId":"s1","InvariantVersion":5}"#,
    )
}

/// A post with one data point without metrics.
fn post(fake: &FakeLiveMetrics, etag: Option<&str>) -> Reply {
    send(fake, POST_PATH, etag, r#"[{"StreamId":"s1","Metrics":[]}]"#)
}

/// Writes a ping on a new connection and returns the connection, unread.
fn ping_unread(fake: &FakeLiveMetrics) -> TcpStream {
    let mut stream = connect(fake);
    let target = format!("{PING_PATH}?{}", query());
    write_request(&mut stream, "POST", &target, &[], "{}");
    stream
}

/// Waits until `fake` has captured `n` requests (liveness bound only).
fn captured(fake: &FakeLiveMetrics, n: usize) -> Vec<LiveRequest> {
    let requests = fake.wait_for(|r| r.len() >= n, READ_LIMIT);
    assert!(requests.len() >= n, "{requests:#?}");
    requests
}

#[test]
fn an_unsubscribed_ping_is_answered_200_not_subscribed_with_an_empty_etag() {
    let fake = FakeLiveMetrics::start();
    let reply = ping(&fake, Some(""));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header(header::SUBSCRIBED), Some("false"), "{reply:?}");
    assert_eq!(
        reply.header(header::CONFIGURATION_ETAG),
        Some(""),
        "{reply:?}"
    );
    assert_eq!(reply.body, "");
    assert_eq!(reply.header(header::POLLING_HINT), None, "{reply:?}");
    assert_eq!(reply.header(header::REDIRECT), None, "{reply:?}");

    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0].kind, LiveKind::Ping);
    assert_eq!(requests[0].answer.status(), Some(200));
    assert!(!requests[0].answer.subscribed());
    assert_eq!(requests[0].answer.body(), Some(""));
}

#[test]
fn a_subscribed_answer_carries_the_configuration_only_when_the_etag_differs() {
    let fake = FakeLiveMetrics::start();
    fake.set_subscribed(true);
    fake.set_configuration(
        "etag-1",
        &json!({"Metrics": [], "DocumentStreams": [], "QuotaInfo": null}),
    );

    // A client without the configuration gets it, on a ping or a post,
    // whether it sends the ETag empty, not at all, or an old one.
    for reply in [
        ping(&fake, Some("")),
        ping(&fake, None),
        post(&fake, Some("")),
        post(&fake, Some("etag-0")),
    ] {
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.header(header::SUBSCRIBED), Some("true"), "{reply:?}");
        assert_eq!(
            reply.header(header::CONFIGURATION_ETAG),
            Some("etag-1"),
            "{reply:?}"
        );
        // The service's configurations name their ETag; the fake adds it.
        assert_eq!(
            reply.json(),
            json!({"ETag": "etag-1", "Metrics": [], "DocumentStreams": [], "QuotaInfo": null})
        );
    }
    // A client that has it gets the ETag alone.
    for reply in [ping(&fake, Some("etag-1")), post(&fake, Some("etag-1"))] {
        assert_eq!(
            reply.header(header::CONFIGURATION_ETAG),
            Some("etag-1"),
            "{reply:?}"
        );
        assert_eq!(reply.body, "", "{reply:?}");
    }

    // Nobody watching: the ETag, but no body.
    fake.set_subscribed(false);
    let reply = ping(&fake, Some(""));
    assert_eq!(reply.header(header::SUBSCRIBED), Some("false"), "{reply:?}");
    assert_eq!(
        reply.header(header::CONFIGURATION_ETAG),
        Some("etag-1"),
        "{reply:?}"
    );
    assert_eq!(reply.body, "", "{reply:?}");
    fake.set_subscribed(true);

    // An ETag the configuration names itself is kept.
    fake.set_configuration("etag-2", &json!({"ETag": "inner", "Metrics": []}));
    let reply = post(&fake, Some("etag-1"));
    assert_eq!(reply.json(), json!({"ETag": "inner", "Metrics": []}));

    // A raw configuration goes out verbatim.
    fake.set_configuration_raw("etag-3", "{not a configuration");
    let reply = post(&fake, Some("etag-2"));
    assert_eq!(
        reply.header(header::CONFIGURATION_ETAG),
        Some("etag-3"),
        "{reply:?}"
    );
    assert_eq!(reply.body, "{not a configuration");

    // No configuration: an empty ETag and no body.
    fake.clear_configuration();
    let reply = post(&fake, Some("etag-3"));
    assert_eq!(
        reply.header(header::CONFIGURATION_ETAG),
        Some(""),
        "{reply:?}"
    );
    assert_eq!(reply.body, "", "{reply:?}");
}

#[test]
fn the_polling_hint_and_the_redirect_are_sent_when_set() {
    let fake = FakeLiveMetrics::start();
    let target = "https://westus2.livediagnostics.monitor.azure.com:18605/";
    fake.set_polling_hint(Some(Duration::from_secs(2)));
    fake.set_redirect(Some(target.to_owned()));
    fake.script([LiveOverride::status(500).only(LiveKind::Post)]);
    // On pings and posts, and on an error answer too (clients read the
    // redirect of any answer).
    for reply in [
        ping(&fake, Some("")),
        post(&fake, Some("")),
        post(&fake, None),
    ] {
        assert_eq!(
            reply.header(header::POLLING_HINT),
            Some("2000"),
            "{reply:?}"
        );
        assert_eq!(reply.header(header::REDIRECT), Some(target), "{reply:?}");
    }
    let statuses: Vec<_> = fake.requests().iter().map(|r| r.answer.status()).collect();
    assert_eq!(statuses, [Some(200), Some(500), Some(200)]);

    fake.set_polling_hint(None);
    fake.set_redirect(None);
    let reply = ping(&fake, Some(""));
    assert_eq!(reply.header(header::POLLING_HINT), None, "{reply:?}");
    assert_eq!(reply.header(header::REDIRECT), None, "{reply:?}");
}

#[test]
fn a_delayed_answer_is_the_usual_one_after_its_delay() {
    let fake = FakeLiveMetrics::start();
    fake.set_subscribed(true);
    let delay = Duration::from_millis(200);
    fake.script([LiveOverride::delay(delay)]);
    let sent = Instant::now();
    let reply = ping(&fake, Some(""));
    // The fake sleeps after the request arrived: this can only be longer.
    assert!(sent.elapsed() >= delay);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header(header::SUBSCRIBED), Some("true"), "{reply:?}");
    assert_eq!(fake.script_left(), 0);
}

#[test]
fn a_delay_holds_up_only_its_own_connection() {
    let fake = FakeLiveMetrics::start();
    fake.script([LiveOverride::delay(Duration::from_secs(3600))]);
    let mut slow = ping_unread(&fake);
    // The slow one has taken the override before the next one is sent.
    captured(&fake, 1);
    let reply = post(&fake, Some(""));
    assert_eq!(reply.status, 200, "{reply:?}");
    // Dropping the fake cuts the delay short: the slow one gets no answer.
    drop(fake);
    let rest = read_reply(&mut slow);
    assert!(!matches!(rest, Ok(Some(_))), "{rest:?}");
}

#[test]
fn a_scripted_status_is_a_service_error_with_the_usual_headers() {
    let fake = FakeLiveMetrics::start();
    fake.set_subscribed(true);
    fake.set_configuration("etag-1", &json!({"Metrics": []}));
    fake.script([
        LiveOverride::status(503),
        LiveOverride::status(1000),
        LiveOverride::status(200),
    ]);

    let reply = post(&fake, Some(""));
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.header(header::SUBSCRIBED), Some("true"), "{reply:?}");
    assert_eq!(
        reply.header(header::CONFIGURATION_ETAG),
        Some("etag-1"),
        "{reply:?}"
    );
    let error = reply.json();
    for field in [
        "RequestId",
        "ResponseDateTime",
        "Code",
        "Message",
        "Exception",
    ] {
        assert!(error.get(field).is_some(), "{field} in {error}");
    }

    // An invalid code is answered 500.
    assert_eq!(post(&fake, Some("")).status, 500);
    // 200 is the usual answer, configuration included.
    let reply = post(&fake, Some(""));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["ETag"], "etag-1");
    // The script is used up: the usual answer again.
    assert_eq!(post(&fake, Some("etag-1")).status, 200);
    assert_eq!(fake.script_left(), 0);
}

#[test]
fn a_garbage_or_given_body_replaces_the_usual_one() {
    let fake = FakeLiveMetrics::start();
    fake.set_subscribed(true);
    fake.set_configuration("etag-1", &json!({"Metrics": []}));
    fake.script([
        // Even to a client that has the configuration.
        LiveOverride::garbage(),
        // Even while nobody watches.
        LiveOverride::body(r#"{"ETag":"etag-9"}"#).with_header(header::SUBSCRIBED, "false"),
    ]);
    let reply = ping(&fake, Some("etag-1"));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, GARBAGE_BODY);
    assert!(serde_json::from_str::<Value>(&reply.body).is_err());
    assert_eq!(reply.header(header::SUBSCRIBED), Some("true"), "{reply:?}");

    let reply = ping(&fake, Some("etag-1"));
    assert_eq!(reply.header(header::SUBSCRIBED), Some("false"), "{reply:?}");
    assert_eq!(reply.json(), json!({"ETag": "etag-9"}));
}

#[test]
fn a_close_ends_the_connection_without_an_answer() {
    let fake = FakeLiveMetrics::start();
    fake.script([LiveOverride::close()]);
    let mut stream = ping_unread(&fake);
    let rest = read_reply(&mut stream);
    assert!(matches!(rest, Ok(None)), "{rest:?}");
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0].answer, LiveAnswer::Closed);
    // The next connection is served as usual.
    assert_eq!(ping(&fake, Some("")).status, 200);
    assert_eq!(fake.connections_accepted(), 2);
}

#[test]
fn a_reset_resets_the_connection() {
    let fake = FakeLiveMetrics::start();
    fake.script([LiveOverride::reset()]);
    let mut stream = ping_unread(&fake);
    let rest = read_reply(&mut stream);
    assert!(
        matches!(&rest, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "{rest:?}"
    );
    assert_eq!(fake.requests()[0].answer, LiveAnswer::Reset);
    assert_eq!(ping(&fake, Some("")).status, 200);
}

#[test]
fn a_hang_never_answers_and_holds_the_connection_until_the_fake_is_dropped() {
    let fake = FakeLiveMetrics::start();
    fake.script([LiveOverride::hang()]);
    let mut stream = ping_unread(&fake);
    captured(&fake, 1);
    // The client gives up waiting; the connection is still open.
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut byte = [0u8; 1];
    let waited = stream.read(&mut byte);
    assert!(
        matches!(&waited, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "{waited:?}"
    );
    assert_eq!(fake.requests()[0].answer, LiveAnswer::Hung);
    // Other connections are served meanwhile.
    assert_eq!(post(&fake, Some("")).status, 200);

    drop(fake);
    stream.set_read_timeout(Some(READ_LIMIT)).unwrap();
    let rest = read_reply(&mut stream);
    assert!(
        matches!(&rest, Ok(None))
            || matches!(&rest, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "closed once the fake is dropped: {rest:?}"
    );
}

#[test]
fn overrides_are_consumed_in_order_and_wait_for_their_turn() {
    let fake = FakeLiveMetrics::start();
    fake.set_subscribed(true);
    fake.script([
        LiveOverride::status(500).after(2),
        LiveOverride::status(503).only(LiveKind::Post),
        LiveOverride::usual()
            .with_header(header::SUBSCRIBED, "false")
            .without_header(header::CONFIGURATION_ETAG),
    ]);
    let statuses = [
        ping(&fake, Some("")).status, // 1 of the 2 let through
        post(&fake, Some("")).status, // 2 of 2
        ping(&fake, Some("")).status, // 500
        ping(&fake, Some("")).status, // not a post: usual
        // Another path is answered 404 and leaves the script alone.
        send(&fake, "/QuickPulseService.svc/other", Some(""), "{}").status,
        post(&fake, Some("")).status, // 503
    ];
    assert_eq!(statuses, [200, 200, 500, 200, 404, 503]);
    assert_eq!(fake.script_left(), 1);

    let reply = post(&fake, Some(""));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header(header::SUBSCRIBED), Some("false"), "{reply:?}");
    assert_eq!(reply.header(header::CONFIGURATION_ETAG), None, "{reply:?}");
    let reply = post(&fake, Some(""));
    assert_eq!(reply.header(header::SUBSCRIBED), Some("true"), "{reply:?}");
    assert_eq!(fake.script_left(), 0);
}

#[test]
fn requests_are_captured_and_their_data_points_read() {
    let fake = FakeLiveMetrics::start();
    let identity = json!({
        "Version": "v", "InvariantVersion": 5, "Instance": "i-1", "RoleName": "svc",
        "MachineName": "vm", "StreamId": "abc", "IsWebApp": false,
        "PerformanceCollectionSupported": true,
    });
    let mut stream = connect(&fake);
    write_request(
        &mut stream,
        "POST",
        &format!("{PING_PATH}?{}", query()),
        &[
            ("X-MS-QPS-Stream-Id", "abc"),
            ("x-ms-qps-machine-name", "vm"),
            ("x-ms-qps-configuration-etag", ""),
        ],
        &identity.to_string(),
    );
    read_reply(&mut stream).unwrap().unwrap();

    let point = |requests: f64, documents: Value| {
        json!({
            "StreamId": "abc", "Timestamp": "2026-01-01T00:00:00.000000Z",
            "Metrics": [
                {"Name": metric::REQUESTS, "Value": requests, "Weight": 1},
                {"Name": metric::REQUEST_DURATION, "Value": 12.5, "Weight": 1},
                {"Name": "no value", "Weight": 1},
            ],
            "Documents": documents,
        })
    };
    let mut second = point(4.0, json!([{"DocumentType": "Trace", "Message": "m"}]));
    second["CollectionConfigurationErrors"] = json!([{
        "CollectionConfigurationErrorType": "MetricFailureToCreate", "Message": "no",
        "FullException": "", "Data": [],
    }]);
    let body = json!([
        point(2.0, json!([{"DocumentType": "Request", "Name": "GET /"}])),
        second
    ]);
    post_raw(&fake, &body.to_string());
    // Neither a ping nor a post: a GET, a doubled slash.
    let mut stream = connect(&fake);
    write_request(&mut stream, "GET", PING_PATH, &[], "");
    assert_eq!(read_reply(&mut stream).unwrap().unwrap().status, 404);
    assert_eq!(
        send(&fake, &format!("/{POST_PATH}"), None, "[]").status,
        404
    );

    let requests = fake.requests();
    assert_eq!(requests.len(), 4, "{requests:#?}");
    let (ping, post) = (&requests[0], &requests[1]);
    assert!(requests.windows(2).all(|w| w[0].arrived <= w[1].arrived));

    assert_eq!(ping.kind, LiveKind::Ping);
    assert_eq!(ping.method, "POST");
    assert_eq!(ping.path, PING_PATH);
    assert_eq!(ping.query, query());
    assert_eq!(ping.ikey(), Some(TEST_IKEY));
    assert_eq!(ping.query_param("api-version"), Some("2024-04-01-preview"));
    assert_eq!(ping.query_param("missing"), None);
    assert_eq!(ping.header("x-ms-qps-stream-id"), Some("abc"));
    assert_eq!(ping.header("X-MS-QPS-MACHINE-NAME"), Some("vm"));
    assert_eq!(ping.etag(), Some(""));
    assert_eq!(ping.json(), Some(identity.clone()));
    assert_eq!(ping.data_points(), [identity]);
    assert!(ping.metrics().is_empty());

    assert_eq!(post.kind, LiveKind::Post);
    assert_eq!(post.etag(), None);
    assert_eq!(post.data_points().len(), 2);
    assert_eq!(
        post.metrics(),
        [
            (metric::REQUESTS.to_owned(), 2.0),
            (metric::REQUEST_DURATION.to_owned(), 12.5),
            (metric::REQUESTS.to_owned(), 4.0),
            (metric::REQUEST_DURATION.to_owned(), 12.5),
        ]
    );
    // The last data point's value.
    assert_eq!(post.metric(metric::REQUESTS), Some(4.0));
    assert_eq!(post.metric(metric::EXCEPTIONS), None);
    let types: Vec<_> = post
        .documents()
        .iter()
        .map(|d| d["DocumentType"].clone())
        .collect();
    assert_eq!(types, [json!("Request"), json!("Trace")]);
    assert_eq!(post.errors().len(), 1);
    assert_eq!(
        post.errors()[0]["CollectionConfigurationErrorType"],
        "MetricFailureToCreate"
    );

    assert_eq!(requests[2].kind, LiveKind::Other);
    assert_eq!(requests[2].method, "GET");
    assert_eq!(requests[3].kind, LiveKind::Other);
    assert_eq!(requests[3].answer.status(), Some(404));
    assert!(requests[3].data_points().is_empty());
    assert_eq!(fake.pings().len(), 1);
    assert_eq!(fake.posts().len(), 1);
}

/// POSTs `body` to the post path without an ETag header.
fn post_raw(fake: &FakeLiveMetrics, body: &str) {
    assert_eq!(send(fake, POST_PATH, None, body).status, 200);
}

#[test]
fn wait_for_returns_the_requests_whether_or_not_they_are_ready() {
    let fake = FakeLiveMetrics::start();
    ping(&fake, Some(""));
    let requests = fake.wait_for(|r| r.len() >= 2, Duration::from_millis(50));
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let requests = fake.wait_for(|r| r.iter().any(|r| r.kind == LiveKind::Ping), READ_LIMIT);
    assert_eq!(requests.len(), 1, "{requests:#?}");
}

#[test]
fn the_connection_string_and_the_metric_names_are_the_clients() {
    let ingestion = FakeIngestion::start();
    let fake = FakeLiveMetrics::start();
    assert_eq!(fake.endpoint(), format!("http://{}/", fake.addr()));
    assert_eq!(
        fake.connection_string(&ingestion),
        format!(
            "InstrumentationKey={TEST_IKEY};IngestionEndpoint={}/;LiveEndpoint=http://{}/",
            ingestion.endpoint(),
            fake.addr()
        )
    );
    let mut names = metric::ALL.to_vec();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 11);
    assert!(metric::ALL.iter().all(|n| n.starts_with('\\')));
}

#[test]
fn the_crates_client_pings_it_and_posts_the_standard_metrics_once_subscribed() {
    let ingestion = FakeIngestion::start();
    let fake = FakeLiveMetrics::start();
    fake.set_subscribed(true);
    let (_dispatch, guard) = start(
        tracing_appinsights::Builder::new()
            .with_connection_string(fake.connection_string(&ingestion))
            .with_live_metrics(true),
    );
    let requests = fake.wait_for(|r| r.iter().any(|r| r.kind == LiveKind::Post), READ_LIMIT);
    drop(guard);
    let ping = requests
        .iter()
        .find(|r| r.kind == LiveKind::Ping)
        .unwrap_or_else(|| panic!("a ping: {requests:#?}"));
    assert_eq!(ping.ikey(), Some(TEST_IKEY), "{ping:#?}");
    assert_eq!(ping.query_param("api-version"), Some("2024-04-01-preview"));
    assert_eq!(ping.etag(), Some(""), "{ping:#?}");
    for name in [
        header::STREAM_ID,
        header::MACHINE_NAME,
        header::ROLE_NAME,
        header::INSTANCE_NAME,
        header::INVARIANT_VERSION,
        header::TRANSMISSION_TIME,
    ] {
        assert!(ping.header(name).is_some(), "{name}: {ping:#?}");
    }
    let points = ping.data_points();
    assert_eq!(points.len(), 1, "{ping:#?}");
    assert_eq!(
        points[0]["StreamId"].as_str(),
        ping.header(header::STREAM_ID)
    );

    let post = requests
        .iter()
        .find(|r| r.kind == LiveKind::Post)
        .unwrap_or_else(|| panic!("a post: {requests:#?}"));
    let sent: Vec<String> = post.metrics().into_iter().map(|(n, _)| n).collect();
    for name in metric::ALL {
        assert!(sent.iter().any(|s| s == name), "{name} in {sent:?}");
    }
    assert!(
        post.header(header::TRANSMISSION_TIME).is_some(),
        "{post:#?}"
    );
}
