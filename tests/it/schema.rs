//! Every envelope the exporter sends passes the ingestion schema, hostile
//! input included: huge strings, many fields, multi-byte characters at every
//! cut point, control characters.

use std::error::Error;
use std::time::Duration;

use crate::support::schema::{self, utf16_len};
use crate::support::FakeIngestion;
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

/// The first item of `base_type` (and `severity`, when given).
fn item<'e>(
    envelopes: &'e [serde_json::Value],
    base_type: &str,
    severity: Option<&str>,
) -> &'e serde_json::Value {
    envelopes
        .iter()
        .find(|e| {
            e["data"]["baseType"] == base_type
                && severity.is_none_or(|s| e["data"]["baseData"]["severityLevel"] == s)
        })
        .unwrap_or_else(|| panic!("no {base_type} item of severity {severity:?}"))
}

/// `s` is the longest prefix of `whole` within `max` UTF-16 units: cut on
/// a char boundary, never half a surrogate pair.
fn assert_cut_to(s: &str, whole: &str, max: usize) {
    assert!(whole.starts_with(s), "a prefix");
    assert!(utf16_len(s) <= max, "{} units, limit {max}", utf16_len(s));
    let next = whole[s.len()..].chars().next().map_or(0, char::len_utf16);
    assert!(
        next == 0 || utf16_len(s) + next > max,
        "cut short: {} units",
        utf16_len(s)
    );
}

#[test]
fn limits_are_counted_in_utf16_units() {
    // 1,023 emoji are 1,023 characters but 2,046 UTF-16 units, the length
    // the service counts (.NET strings): over the 1,024 limit.
    let name = "😀".repeat(1023);
    let value = "a".to_owned() + &"😀".repeat(8192);
    // 36,000 units in 60 KB: cut to its limit, the item fits in 64 KB.
    let message = "a😀".repeat(12_000);
    let user = "é😀".repeat(100);
    let envelopes = export(|| {
        let span = info_span!(
            "emoji",
            otel.kind = "server",
            otel.name = name.as_str(),
            http.request.method = "GET",
            url.full = value.as_str(),
            enduser.id = user.as_str(),
            v = value.as_str(),
        );
        span.in_scope(|| tracing::info!("{}", message));
    });
    schema::assert_valid(&envelopes);
    let request = item(&envelopes, "RequestData", None);
    let data = &request["data"]["baseData"];
    assert_cut_to(data["name"].as_str().unwrap(), &name, 1024);
    assert_eq!(data["name"], "😀".repeat(512));
    assert_cut_to(data["url"].as_str().unwrap(), &value, 2048);
    assert_cut_to(data["properties"]["v"].as_str().unwrap(), &value, 8192);
    let tags = &request["tags"];
    assert_cut_to(tags["ai.operation.name"].as_str().unwrap(), &name, 1024);
    assert_cut_to(tags["ai.user.id"].as_str().unwrap(), &user, 128);
    let trace = item(&envelopes, "MessageData", None);
    let data = &trace["data"]["baseData"];
    assert_cut_to(data["message"].as_str().unwrap(), &message, 32768);
    assert!(data.get("properties").is_none(), "not shrunk");
}

#[test]
fn shrinking_keeps_small_properties() {
    // Over 64 KB however the fields are cut to their limits: a 100 KB
    // message (32,768 three-byte characters are 96 KB), a huge message and
    // stack, many huge properties; the small `case` and `n` stay whole.
    let huge = "€".repeat(34_000);
    let astral = "😀\u{1}".repeat(20_000);
    let envelopes = export(|| {
        tracing::info!(case = "c-17", n = 3_u64, "{}", huge);
        let _s = info_span!("work").entered();
        tracing::error!(
            case = "c-19",
            n = 5_u64,
            exception.message = huge.as_str(),
            exception.stacktrace = astral.as_str(),
            a = huge.as_str(),
            b = astral.as_str(),
            c = huge.as_str(),
            d = astral.as_str(),
            "failed"
        );
        tracing::warn!(
            case = "c-20",
            n = 6_u64,
            a = huge.as_str(),
            b = astral.as_str(),
            c = huge.as_str(),
            d = astral.as_str(),
            e = huge.as_str(),
            f = astral.as_str(),
            g = huge.as_str(),
            h = astral.as_str(),
            i = huge.as_str(),
            j = astral.as_str(),
            "{}",
            astral
        );
    });
    schema::assert_valid(&envelopes);
    for e in &envelopes {
        let size = serde_json::to_vec(e).unwrap().len();
        assert!(size <= 64_000, "{size} bytes");
    }
    let plain = item(&envelopes, "MessageData", Some("Information"));
    let props = &plain["data"]["baseData"]["properties"];
    assert_eq!((&props["case"], &props["n"]), (&"c-17".into(), &"3".into()));
    assert_eq!(props["tai.truncated"], "over 64 KB; cut: message");
    let message = plain["data"]["baseData"]["message"].as_str().unwrap();
    assert!(huge.starts_with(message) && message.len() > 60_000);

    let failed = item(&envelopes, "ExceptionData", Some("Error"));
    let props = &failed["data"]["baseData"]["properties"];
    assert_eq!((&props["case"], &props["n"]), (&"c-19".into(), &"5".into()));
    for key in ["a", "b", "c", "d"] {
        assert!(props[key].as_str().is_some(), "{key} cut, not dropped");
    }
    let detail = &failed["data"]["baseData"]["exceptions"][0];
    assert!(huge.starts_with(detail["message"].as_str().unwrap()));
    assert!(astral.starts_with(detail["stack"].as_str().unwrap()));
    assert_eq!(detail["hasFullStack"], false);

    let many = item(&envelopes, "MessageData", Some("Warning"));
    let props = &many["data"]["baseData"]["properties"];
    assert_eq!((&props["case"], &props["n"]), (&"c-20".into(), &"6".into()));
    assert!(!props["tai.truncated"].as_str().unwrap().contains("dropped"));
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
        "tags": {
            "ai.operation.id": "x".repeat(129),
            "ai.user.id": "😀".repeat(65),
            "ai.made.up": "1"
        },
        "data": { "baseType": "RequestData", "baseData": {
            "ver": 2, "id": "1", "duration": "00:00:01", "success": "yes",
            "properties": { "k": 5, "y".repeat(151): "v" }, "extra": 1
        } }
    });
    let found = schema::violations(&bad).join("\n");
    for expected in [
        "time must be",
        "tag ai.operation.id is 129 UTF-16 units",
        "tag ai.user.id is 130 UTF-16 units",
        "unknown tag \"ai.made.up\"",
        "RequestData.responseCode is required",
        "RequestData.duration must be",
        "RequestData.success must be a boolean",
        "must be a string, got 5",
        "a key of 151 UTF-16 units",
        "unknown field \"extra\"",
    ] {
        assert!(
            found.contains(expected),
            "missing {expected:?} in:\n{found}"
        );
    }
}
