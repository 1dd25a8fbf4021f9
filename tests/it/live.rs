//! Live Metrics end to end, against the fake service of
//! [`crate::support::live`]: pinging until someone watches, then posting
//! the counters of every span (sampled or not), the documents of failures,
//! the collection configuration's derived metrics, streams and errors; back
//! to pinging when nobody watches; redirects; and a service that hangs,
//! refuses, answers garbage or redirects in a loop, which must not touch
//! ingestion.
//!
//! Counts are read back as the portal does: each post's rate times the
//! interval it covers (between the client's transmission times), summed;
//! traffic starts only once a post shows the client is counting. Waits are
//! liveness bounds ([`LIMIT`]), never assertions on how long things take.

use std::time::Duration;

use serde_json::{json, Value};
use tracing::Dispatch;
use tracing_appinsights::{Builder, ExporterGuard, Sampler};

use crate::support::delivery::{dead_addr, start};
use crate::support::live::{
    header, metric, FakeLiveMetrics, LiveKind, LiveOverride, LiveRequest, GARBAGE_BODY,
};
use crate::support::proxy::RecordingProxy;
use crate::support::FakeIngestion;

/// How long a wait may take before the test fails (liveness only).
const LIMIT: Duration = Duration::from_secs(60);

/// The layer, sending to `ingestion` and watched through `live`.
fn watched(
    ingestion: &FakeIngestion,
    live: &FakeLiveMetrics,
    sampler: Sampler,
) -> (Dispatch, ExporterGuard) {
    start(
        Builder::new()
            .with_connection_string(live.connection_string(ingestion))
            .with_sampler(sampler)
            .with_export_interval(Duration::from_millis(100)),
    )
}

/// The client's transmission time of a request (.NET ticks).
fn ticks(request: &LiveRequest) -> u64 {
    request
        .header(header::TRANSMISSION_TIME)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("a transmission time: {request:#?}"))
}

/// What the posts show of metric `name` over the time they cover: each
/// post's value times the seconds since the previous post, summed (the
/// first post only opens the sum).
fn shown(posts: &[LiveRequest], name: &str) -> f64 {
    posts
        .windows(2)
        .map(|pair| {
            let seconds = ticks(&pair[1]).saturating_sub(ticks(&pair[0])) as f64 / 1e7;
            pair[1].metric(name).unwrap_or(0.0) * seconds
        })
        .sum()
}

/// The posts among `requests`.
fn posts(requests: &[LiveRequest]) -> Vec<LiveRequest> {
    requests
        .iter()
        .filter(|r| r.kind == LiveKind::Post)
        .cloned()
        .collect()
}

/// Waits for a first post: from then on the client counts.
fn first_post(live: &FakeLiveMetrics) {
    let requests = live.wait_for(|r| r.iter().any(|r| r.kind == LiveKind::Post), LIMIT);
    assert!(
        requests.iter().any(|r| r.kind == LiveKind::Post),
        "a post: {requests:#?}"
    );
}

/// A server span, failed (HTTP 500) or not.
fn request(dispatch: &Dispatch, i: u64, failed: bool) {
    tracing::dispatcher::with_default(dispatch, || {
        let status: u64 = if failed { 500 } else { 200 };
        let span = tracing::info_span!(
            "GET /items/{id}",
            otel.kind = "server",
            http.request.method = "GET",
            http.route = "/items/{id}",
            url.full = format!("https://shop.example/items/{i}"),
            http.response.status_code = status,
            item = i,
        );
        span.in_scope(|| {});
    });
}

/// A client span, failed (HTTP 503) or not.
fn dependency(dispatch: &Dispatch, failed: bool) {
    tracing::dispatcher::with_default(dispatch, || {
        let status: u64 = if failed { 503 } else { 200 };
        let span = tracing::info_span!(
            "GET",
            otel.kind = "client",
            http.request.method = "GET",
            url.full = "https://stock.example/v1/items",
            server.address = "stock.example",
            http.response.status_code = status,
        );
        span.in_scope(|| {});
    });
}

/// An exception event.
fn exception(dispatch: &Dispatch) {
    tracing::dispatcher::with_default(dispatch, || {
        tracing::error!(
            exception.type = "StockError",
            exception.message = "the stock service is down",
            "lookup failed"
        );
    });
}

#[test]
fn pings_until_watched_then_counts_every_span_at_one_percent_sampling() {
    let ingestion = FakeIngestion::start();
    let live = FakeLiveMetrics::start();
    live.set_polling_hint(Some(Duration::from_millis(500)));
    let (dispatch, guard) = watched(&ingestion, &live, Sampler::probability(0.01));

    // Nobody watches: pings only, and spans are not counted.
    let requests = live.wait_for(|r| r.len() >= 2, LIMIT);
    assert!(
        requests.iter().all(|r| r.kind == LiveKind::Ping),
        "{requests:#?}"
    );
    let ping = &requests[0];
    let stream_id = ping.header(header::STREAM_ID).unwrap_or_default();
    assert_eq!(stream_id.len(), 32, "{ping:#?}");
    assert!(
        stream_id.chars().all(|c| c.is_ascii_hexdigit()),
        "{ping:#?}"
    );
    assert_eq!(ping.header(header::INVARIANT_VERSION), Some("5"));

    live.set_subscribed(true);
    first_post(&live);
    for i in 0..40 {
        request(&dispatch, i, i % 4 == 0);
    }
    for i in 0..20 {
        dependency(&dispatch, i % 4 == 0);
    }
    for _ in 0..6 {
        exception(&dispatch);
    }
    let requests = live.wait_for(
        |r| {
            let posts = posts(r);
            shown(&posts, metric::REQUESTS).round() >= 40.0
                && shown(&posts, metric::DEPENDENCIES).round() >= 20.0
                && shown(&posts, metric::EXCEPTIONS).round() >= 6.0
        },
        LIMIT,
    );
    drop(guard);
    let posts = posts(&requests);
    let counted = |name| shown(&posts, name).round();
    assert_eq!(counted(metric::REQUESTS), 40.0, "{posts:#?}");
    assert_eq!(counted(metric::REQUESTS_FAILED), 10.0, "{posts:#?}");
    assert_eq!(counted(metric::DEPENDENCIES), 20.0, "{posts:#?}");
    assert_eq!(counted(metric::DEPENDENCIES_FAILED), 5.0, "{posts:#?}");
    assert_eq!(counted(metric::EXCEPTIONS), 6.0, "{posts:#?}");
    for post in &posts {
        let names: Vec<String> = post.metrics().into_iter().map(|(n, _)| n).collect();
        for name in metric::ALL {
            assert!(names.iter().any(|n| n == name), "{name} in {post:#?}");
        }
    }
    // The client's own requests are never exported.
    for envelope in ingestion.envelopes() {
        let text = envelope.to_string();
        assert!(!text.contains("QuickPulse"), "{envelope:#}");
    }
}

#[test]
fn failures_exceptions_and_traces_become_documents_without_a_configuration() {
    let ingestion = FakeIngestion::start();
    let live = FakeLiveMetrics::start();
    live.set_subscribed(true);
    let (dispatch, guard) = watched(&ingestion, &live, Sampler::always_on());
    first_post(&live);
    request(&dispatch, 1, false);
    for i in 2..5 {
        request(&dispatch, i, true);
    }
    dependency(&dispatch, true);
    dependency(&dispatch, false);
    exception(&dispatch);
    tracing::dispatcher::with_default(&dispatch, || tracing::info!(batch = 7, "batch done"));

    let documents = |r: &[LiveRequest]| -> Vec<Value> {
        posts(r).iter().flat_map(LiveRequest::documents).collect()
    };
    let requests = live.wait_for(|r| documents(r).len() >= 6, LIMIT);
    drop(guard);
    let documents = documents(&requests);
    let of = |kind: &str| -> Vec<&Value> {
        documents
            .iter()
            .filter(|d| d["DocumentType"] == kind)
            .collect()
    };
    assert_eq!(of("Request").len(), 3, "{documents:#?}");
    for document in of("Request") {
        assert_eq!(document["ResponseCode"], "500", "{document:#}");
        assert_eq!(document["Name"], "GET /items/{id}", "{document:#}");
        let duration = document["Duration"].as_str().unwrap_or_default();
        assert!(
            duration.starts_with("PT") && duration.ends_with('S'),
            "{document:#}"
        );
        assert!(document.get("DocumentStreamIds").is_none(), "{document:#}");
    }
    let dependencies = of("RemoteDependency");
    assert_eq!(dependencies.len(), 1, "{documents:#?}");
    assert_eq!(dependencies[0]["ResultCode"], "503", "{documents:#?}");
    let exceptions = of("Exception");
    assert_eq!(exceptions.len(), 1, "{documents:#?}");
    assert_eq!(
        exceptions[0]["ExceptionType"], "StockError",
        "{documents:#?}"
    );
    assert_eq!(
        exceptions[0]["ExceptionMessage"], "the stock service is down",
        "{documents:#?}"
    );
    let traces = of("Trace");
    assert_eq!(traces.len(), 1, "{documents:#?}");
    assert_eq!(traces[0]["Message"], "batch done", "{documents:#?}");
    assert_eq!(documents.len(), 6, "{documents:#?}");
}

/// A configuration with a derived metric, a document stream and an entry
/// the client must refuse and report.
fn failures_configuration() -> Value {
    json!({
        "Metrics": [
            {
                "Id": "failed-count",
                "TelemetryType": "Request",
                "FilterGroups": [{"Filters": [
                    {"FieldName": "ResponseCode", "Predicate": "GreaterThanOrEqual", "Comparand": "400"}
                ]}],
                "Projection": "Count()",
                "Aggregation": "Sum",
                "BackEndAggregation": "Sum"
            },
            {
                "Id": "counter-metric",
                "TelemetryType": "PerformanceCounter",
                "FilterGroups": [],
                "Projection": "Count()",
                "Aggregation": "Sum",
                "BackEndAggregation": "Sum"
            }
        ],
        "DocumentStreams": [
            {
                "Id": "failures",
                "DocumentFilterGroups": [{
                    "TelemetryType": "Request",
                    "Filters": {"Filters": [
                        {"FieldName": "Success", "Predicate": "Equal", "Comparand": "false"}
                    ]}
                }]
            }
        ]
    })
}

#[test]
fn a_configuration_from_the_ping_filters_documents_derives_metrics_and_reports_errors() {
    let ingestion = FakeIngestion::start();
    let live = FakeLiveMetrics::start();
    live.set_configuration("etag-1", &failures_configuration());
    live.set_subscribed(true);
    let (dispatch, guard) = watched(&ingestion, &live, Sampler::always_on());
    first_post(&live);
    for i in 0..9 {
        request(&dispatch, i, i % 3 == 0);
    }
    exception(&dispatch);

    let derived = |r: &[LiveRequest]| -> f64 {
        posts(r)
            .iter()
            .filter_map(|p| p.metric("failed-count"))
            .sum()
    };
    let requests = live.wait_for(|r| derived(r) >= 3.0, LIMIT);
    let posts_1 = posts(&requests);
    // The configuration came with the subscribed ping: every post says so.
    for post in &posts_1 {
        assert_eq!(post.etag(), Some("etag-1"), "{post:#?}");
        let errors = post.errors();
        assert_eq!(errors.len(), 1, "{post:#?}");
        assert_eq!(
            errors[0]["CollectionConfigurationErrorType"], "MetricTelemetryTypeUnsupported",
            "{errors:#?}"
        );
        assert!(
            errors[0]["Data"]
                .as_array()
                .is_some_and(|d| d.iter().any(|kv| kv["value"] == "counter-metric")),
            "{errors:#?}"
        );
        assert!(post.metric("counter-metric").is_none(), "{post:#?}");
    }
    assert_eq!(derived(&requests), 3.0, "{posts_1:#?}");
    let documents: Vec<Value> = posts_1.iter().flat_map(LiveRequest::documents).collect();
    // Only the stream's failed requests: no exception, no successful request.
    assert_eq!(documents.len(), 3, "{documents:#?}");
    for document in &documents {
        assert_eq!(document["DocumentType"], "Request", "{document:#}");
        assert_eq!(
            document["DocumentStreamIds"],
            json!(["failures"]),
            "{document:#}"
        );
    }

    // A new ETag replaces it all: the new metric, no errors left.
    live.set_configuration(
        "etag-2",
        &json!({"Metrics": [{
            "Id": "all-requests",
            "TelemetryType": "Request",
            "FilterGroups": [],
            "Projection": "Count()",
            "Aggregation": "Sum",
            "BackEndAggregation": "Sum"
        }], "DocumentStreams": []}),
    );
    let requests = live.wait_for(
        |r| posts(r).iter().any(|p| p.etag() == Some("etag-2")),
        LIMIT,
    );
    drop(guard);
    let latest = posts(&requests)
        .into_iter()
        .find(|p| p.etag() == Some("etag-2"))
        .unwrap_or_else(|| panic!("a post with etag-2: {requests:#?}"));
    assert!(latest.errors().is_empty(), "{latest:#?}");
    assert!(latest.metric("failed-count").is_none(), "{latest:#?}");
    assert_eq!(latest.metric("all-requests"), Some(0.0), "{latest:#?}");
}

#[test]
fn an_unreadable_configuration_is_reported_and_not_asked_for_again() {
    let ingestion = FakeIngestion::start();
    let live = FakeLiveMetrics::start();
    live.set_configuration_raw("etag-bad", GARBAGE_BODY);
    live.set_subscribed(true);
    let (_dispatch, guard) = watched(&ingestion, &live, Sampler::always_on());
    let requests = live.wait_for(|r| posts(r).len() >= 2, LIMIT);
    drop(guard);
    for post in posts(&requests) {
        assert_eq!(post.etag(), Some("etag-bad"), "{post:#?}");
        let errors = post.errors();
        assert_eq!(errors.len(), 1, "{post:#?}");
        assert_eq!(
            errors[0]["CollectionConfigurationErrorType"],
            "CollectionConfigurationFailureToCreateUnexpected",
            "{errors:#?}"
        );
        assert_eq!(
            errors[0]["Data"],
            json!([{"key": "ETag", "value": "etag-bad"}]),
            "{errors:#?}"
        );
    }
}

#[test]
fn nobody_watching_any_more_means_pinging_again_without_the_configuration() {
    let ingestion = FakeIngestion::start();
    let live = FakeLiveMetrics::start();
    live.set_configuration("etag-1", &failures_configuration());
    live.set_polling_hint(Some(Duration::from_millis(500)));
    live.set_subscribed(true);
    let (_dispatch, guard) = watched(&ingestion, &live, Sampler::always_on());
    first_post(&live);
    live.set_subscribed(false);
    let seen = live.requests().len();
    let requests = live.wait_for(
        |r| r[seen..].iter().any(|r| r.kind == LiveKind::Ping),
        LIMIT,
    );
    let ping = requests[seen..]
        .iter()
        .find(|r| r.kind == LiveKind::Ping)
        .cloned()
        .unwrap_or_else(|| panic!("a ping: {requests:#?}"));
    // The configuration is dropped with the subscription: the service
    // sends it again on the next one.
    assert_eq!(ping.etag(), Some(""), "{ping:#?}");
    live.set_subscribed(true);
    let seen = live.requests().len();
    let requests = live.wait_for(
        |r| r[seen..].iter().any(|r| r.kind == LiveKind::Post),
        LIMIT,
    );
    drop(guard);
    let post = requests[seen..]
        .iter()
        .find(|r| r.kind == LiveKind::Post)
        .unwrap_or_else(|| panic!("a post: {requests:#?}"));
    assert_eq!(post.etag(), Some("etag-1"), "{post:#?}");
}

#[test]
fn a_redirect_is_followed_only_to_an_https_azure_monitor_host() {
    let ingestion = FakeIngestion::start();
    let live = FakeLiveMetrics::start();
    let proxy = RecordingProxy::start();
    live.set_polling_hint(Some(Duration::from_millis(500)));
    // Refused: not https, then not an Azure Monitor host.
    live.set_redirect(Some(live.endpoint()));
    let (_dispatch, guard) = start(
        Builder::new()
            .with_connection_string(live.connection_string(&ingestion))
            .with_proxy(proxy.url()),
    );
    live.wait_for(|r| r.len() >= 2, LIMIT);
    live.set_redirect(Some("https://evil.example/".into()));
    let seen = live.requests().len();
    live.wait_for(|r| r.len() >= seen + 2, LIMIT);
    let connects = |host: &str| {
        proxy
            .requests()
            .iter()
            .filter(|r| r.line.starts_with(&format!("CONNECT {host}")))
            .count()
    };
    assert_eq!(connects("evil.example"), 0, "{:#?}", proxy.requests());

    // Followed, and kept: through the proxy, which never lets it leave
    // loopback (it answers 502).
    live.set_redirect(Some(
        "https://westeurope.livediagnostics.monitor.azure.com/".into(),
    ));
    crate::support::wait_until(|| {
        (connects("westeurope.livediagnostics.monitor.azure.com:443") >= 2).then_some(())
    });
    drop(guard);
    assert!(
        proxy
            .requests()
            .iter()
            .filter(|r| r.line.starts_with("CONNECT"))
            .all(|r| r
                .line
                .starts_with("CONNECT westeurope.livediagnostics.monitor.azure.com:443")),
        "{:#?}",
        proxy.requests()
    );
}

/// Spans sent while the Live Metrics service misbehaves as `trouble` makes
/// it: all of them reach ingestion, nothing is dropped, and shutdown
/// returns in time.
fn ingestion_unaffected(live_endpoint: String, trouble: impl FnOnce()) {
    let ingestion = FakeIngestion::start();
    trouble();
    let (dispatch, guard) = start(
        Builder::new()
            .with_connection_string(format!(
                "{};LiveEndpoint={live_endpoint}",
                ingestion.connection_string()
            ))
            .with_export_interval(Duration::from_millis(100)),
    );
    for i in 0..50 {
        request(&dispatch, i, i % 5 == 0);
    }
    let envelopes = ingestion.wait_for_envelopes(50, LIMIT);
    assert_eq!(envelopes.len(), 50);
    guard
        .shutdown(Duration::from_secs(10))
        .expect("shutdown in time");
    let stats = guard.stats();
    assert_eq!(stats.dropped(), 0, "{stats:?}");
}

#[test]
fn a_hanging_live_metrics_service_does_not_touch_ingestion() {
    let live = FakeLiveMetrics::start();
    live.set_subscribed(true);
    ingestion_unaffected(live.endpoint(), || {
        live.script((0..100).map(|_| LiveOverride::hang()));
    });
    // It was tried, and is being waited on.
    assert!(!live.requests().is_empty());
}

#[test]
fn a_refusing_live_metrics_service_does_not_touch_ingestion() {
    ingestion_unaffected(format!("http://{}/", dead_addr()), || {});
}

#[test]
fn a_live_metrics_service_answering_garbage_does_not_touch_ingestion() {
    let live = FakeLiveMetrics::start();
    live.set_subscribed(true);
    ingestion_unaffected(live.endpoint(), || {
        live.script((0..1000).map(|i| match i % 4 {
            0 => LiveOverride::garbage(),
            1 => LiveOverride::status(500),
            2 => LiveOverride::reset(),
            _ => LiveOverride::close(),
        }));
    });
    assert!(live.requests().len() > 1);
}

#[test]
fn a_live_metrics_service_redirecting_in_a_loop_does_not_touch_ingestion() {
    let live = FakeLiveMetrics::start();
    live.set_subscribed(true);
    // Every answer sends the client back where it is (refused: not https).
    live.set_redirect(Some(live.endpoint()));
    ingestion_unaffected(live.endpoint(), || {});
    let requests = live.requests();
    assert!(
        requests.iter().all(|r| r.kind != LiveKind::Other),
        "{requests:#?}"
    );
}

#[cfg(feature = "entra")]
#[test]
fn with_a_credential_pings_and_posts_carry_its_bearer_token() {
    use crate::support::credential::{FakeCredential, TOKEN_PREFIX};

    let ingestion = FakeIngestion::start();
    let live = FakeLiveMetrics::start();
    live.set_subscribed(true);
    let clock = tracing_appinsights::ManualClock::new();
    let credential = FakeCredential::new(&clock, Duration::from_secs(3600));
    let (_dispatch, guard) = start(
        Builder::new()
            .with_connection_string(live.connection_string(&ingestion))
            .with_manual_clock(&clock)
            .with_credential(credential.clone()),
    );
    let requests = live.wait_for(|r| posts(r).len() >= 2, LIMIT);
    drop(guard);
    assert!(requests.len() >= 3, "{requests:#?}");
    for request in &requests {
        let authorization = request.header("authorization").unwrap_or_default();
        assert!(
            authorization.starts_with(&format!("Bearer {TOKEN_PREFIX}")),
            "{request:#?}"
        );
    }
    // One scope for ingestion and Live Metrics alike.
    for call in credential.calls() {
        assert_eq!(
            call.scopes,
            ["https://monitor.azure.com//.default"],
            "{call:?}"
        );
    }
}
