//! Every envelope the exporter sends passes the ingestion schema, hostile
//! input included: huge strings, many fields, multi-byte characters at every
//! cut point, control characters.

use std::error::Error;
use std::time::Duration;

use crate::support::{schema, FakeIngestion};
use tracing::info_span;
use tracing_subscriber::prelude::*;

fn export(f: impl FnOnce()) -> Vec<serde_json::Value> {
    let server = FakeIngestion::start();
    let (layer, guard) = tracing_appinsights::Builder::new()
        .with_connection_string(server.connection_string())
        // Storage is not under test here: no blob from another run may leak in.
        .with_offline_storage(false)
        .build()
        .unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    guard.shutdown(Duration::from_secs(10)).unwrap();
    let envelopes = server.envelopes();
    assert!(!envelopes.is_empty());
    envelopes
}

/// Strings of `n` characters made of `unit`, preceded by `offset` ASCII
/// characters, so that every byte position of a multi-byte character lands
/// on each limit.
fn shifted(unit: &str, offset: usize, n: usize) -> String {
    "a".repeat(offset) + &unit.repeat(n)
}

#[test]
fn huge_multibyte_values_at_every_cut_point() {
    let envelopes = export(|| {
        for unit in ["é", "€", "😀"] {
            for offset in 0..4 {
                let big = shifted(unit, offset, 40_000);
                let span = info_span!(
                    "GET",
                    otel.kind = "client",
                    otel.name = big.as_str(),
                    http.request.method = big.as_str(),
                    url.full = big.as_str(),
                    server.address = big.as_str(),
                    db.query.text = big.as_str(),
                    http.response.status_code = big.as_str(),
                    a = big.as_str(),
                    b = big.as_str(),
                    c = big.as_str(),
                    d = big.as_str(),
                    e = big.as_str(),
                    f = big.as_str(),
                    g = big.as_str(),
                    h = big.as_str(),
                    i = big.as_str(),
                    j = big.as_str(),
                    k = big.as_str(),
                    l = big.as_str(),
                );
                let _e = span.enter();
                tracing::error!(exception.type = big.as_str(), exception.message = big.as_str(), "{}", big);
                tracing::info!(x = big.as_str(), "{}", big);
            }
        }
        let server = info_span!(
            "srv",
            otel.kind = "server",
            http.request.method = "GET",
            http.route = shifted("😀", 1, 5000).as_str(),
            url.full = shifted("é", 3, 5000).as_str(),
            client.address = shifted("€", 2, 100).as_str(),
            user_agent.original = shifted("😀", 3, 5000).as_str(),
            enduser.id = shifted("é", 1, 500).as_str(),
        );
        server.in_scope(|| {});
    });
    schema::assert_valid(&envelopes);
}

#[test]
fn control_characters_and_odd_keys() {
    let nasty = "line\nbreak\r\0nul\u{1b}[31mansi\u{7f}\u{2028}\"quote\\";
    let envelopes = export(|| {
        let _s = info_span!(
            "ctl\n\0",
            otel.kind = "server",
            v = nasty,
            http.route = nasty
        )
        .entered();
        tracing::warn!(k = nasty, "{}", nasty);
        tracing::info!("");
    });
    schema::assert_valid(&envelopes);
    let text = serde_json::to_string(&envelopes).unwrap();
    assert!(text.contains("\\u0000nul"), "NUL is escaped, not dropped");
}

#[derive(Debug)]
struct Chain(u32);

impl std::fmt::Display for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "level {} {}", self.0, "😀".repeat(3000))
    }
}

impl Error for Chain {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        if self.0 == 0 {
            None
        } else {
            // Leaked to get a 'static source chain: a test-only shortcut.
            Some(Box::leak(Box::new(Chain(self.0 - 1))))
        }
    }
}

#[test]
fn long_error_chains_and_many_events() {
    let envelopes = export(|| {
        let _s = info_span!("busy", otel.kind = "server").entered();
        for i in 0..200_u64 {
            tracing::info!(i, field = "x".repeat(9000).as_str(), "event {i}");
        }
        let err = Chain(40);
        tracing::error!(error = &err as &dyn Error, "deep");
    });
    schema::assert_valid(&envelopes);
}

#[test]
fn events_outside_spans_have_no_operation() {
    let envelopes = export(|| {
        tracing::info!(k = 1_u64, "standalone");
    });
    schema::assert_valid(&envelopes);
    let tags = envelopes[0]["tags"].as_object().unwrap();
    assert!(!tags.contains_key("ai.operation.id"));
}

#[test]
fn the_checker_catches_violations() {
    let bad = serde_json::json!({
        "name": "Microsoft.ApplicationInsights.Request",
        "time": "yesterday",
        "iKey": "k",
        "tags": { "ai.operation.id": "x".repeat(129), "ai.made.up": "1" },
        "data": { "baseType": "RequestData", "baseData": {
            "ver": 2, "id": "1", "duration": "00:00:01", "success": "yes",
            "properties": { "k": 5, "y".repeat(151): "v" }, "extra": 1
        } }
    });
    let found = schema::violations(&bad).join("\n");
    for expected in [
        "time must be",
        "tag ai.operation.id is 129 characters",
        "unknown tag \"ai.made.up\"",
        "RequestData.responseCode is required",
        "RequestData.duration must be",
        "RequestData.success must be a boolean",
        "must be a string, got 5",
        "a key of 151 characters",
        "unknown field \"extra\"",
    ] {
        assert!(
            found.contains(expected),
            "missing {expected:?} in:\n{found}"
        );
    }
}
