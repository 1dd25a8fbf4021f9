//! Telemetry processors, process-wide properties and custom events, on the
//! wire: what a processor drops is never sent and is counted, what it
//! changes arrives changed and within the schema's limits, a panicking
//! processor costs its item only; `with_property` is on every item type;
//! an event naming a custom event is an `EventData` item.

use std::time::Duration;

use serde_json::Value;
use tracing::Level;
use tracing_appinsights::processor::{ItemKind, Tag};
use tracing_appinsights::{BuildError, Builder, ExporterStats};
use tracing_subscriber::prelude::*;

use crate::support::child::own_process;
use crate::support::diagnostics::Diagnostics;
use crate::support::schema::{assert_valid, utf16_len};
use crate::support::FakeIngestion;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `f` under a layer built from `builder` that exports to a fresh
/// fake ingestion; returns the envelopes received (at least `n`) and the
/// counters after a flush.
fn run(builder: Builder, n: usize, f: impl FnOnce()) -> (Vec<Value>, ExporterStats) {
    let server = FakeIngestion::start();
    let (layer, guard) = builder
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .build()
        .unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, f);
    guard.flush(TIMEOUT).unwrap();
    let envelopes = server.wait_for_envelopes(n, TIMEOUT);
    let stats = guard.stats();
    guard.shutdown(TIMEOUT).unwrap();
    assert_eq!(envelopes.len(), n, "{envelopes:#?}");
    assert_valid(&envelopes);
    (envelopes, stats)
}

fn base_data(envelope: &Value) -> &Value {
    &envelope["data"]["baseData"]
}

/// The envelope whose `baseData.name` is `name`.
fn named<'a>(envelopes: &'a [Value], name: &str) -> &'a Value {
    (envelopes.iter())
        .find(|e| base_data(e)["name"] == name)
        .unwrap_or_else(|| panic!("no item named {name}: {envelopes:#?}"))
}

/// A server span for `GET route`.
fn serve(route: &str, url: &str) {
    tracing::info_span!(
        "request",
        otel.kind = "server",
        http.request.method = "GET",
        http.route = route,
        url.full = url,
        http.response.status_code = 200,
    )
    .in_scope(|| {});
}

/// `url` with its query string replaced by `REDACTED`.
fn without_query(url: &str) -> String {
    match url.split_once('?') {
        Some((path, _)) => format!("{path}?REDACTED"),
        None => url.to_owned(),
    }
}

/// `sql` with its string and number literals replaced by `?`.
fn without_literals(sql: &str) -> String {
    let mut out = String::new();
    let mut chars = sql.chars().peekable();
    let mut prev_ident = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            for c in chars.by_ref() {
                if c == '\'' {
                    break;
                }
            }
            out.push('?');
            prev_ident = false;
        } else if c.is_ascii_digit() && !prev_ident {
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_digit() || *c == '.')
            {
                chars.next();
            }
            out.push('?');
        } else {
            prev_ident = c.is_alphanumeric() || c == '_';
            out.push(c);
        }
    }
    out
}

#[test]
fn a_processor_drops_health_checks_and_they_are_counted_never_sent() {
    let builder = Builder::new().with_processor(|item| {
        !(item.kind() == ItemKind::Request && item.name() == Some("GET /health"))
    });
    let (envelopes, stats) = run(builder, 1, || {
        for _ in 0..3 {
            serve("/health", "http://shop.example/health");
        }
        serve("/orders/{id}", "http://shop.example/orders/7");
    });
    assert_eq!(base_data(&envelopes[0])["name"], "GET /orders/{id}");
    assert_eq!(stats.dropped_by_processor, 3);
    assert_eq!(stats.processor_panics, 0);
    assert_eq!(stats.exported, 1);
    assert_eq!(stats.dropped(), 3);
    assert!(stats.balances(), "{stats:?}");
}

#[test]
fn processors_redact_query_strings_and_sql_literals() {
    let builder = Builder::new().with_processor(|item| {
        if let Some(url) = item.url().map(without_query) {
            item.set_url(url);
        }
        match item.dependency_type() {
            Some("HTTP") => {
                if let Some(data) = item.data().map(without_query) {
                    item.set_data(data);
                }
            }
            Some(_) => {
                if let Some(data) = item.data().map(without_literals) {
                    item.set_data(data);
                }
            }
            None => {}
        }
        true
    });
    let (envelopes, _) = run(builder, 3, || {
        tracing::info_span!(
            "request",
            otel.kind = "server",
            http.request.method = "GET",
            http.route = "/login",
            url.full = "https://shop.example/login?user=alice&password=hunter2",
        )
        .in_scope(|| {
            tracing::info_span!(
                "call",
                otel.kind = "client",
                http.request.method = "GET",
                url.full = "https://api.example/v1/items?token=s3cret",
                server.address = "api.example",
            )
            .in_scope(|| {});
            tracing::info_span!(
                "query users",
                otel.kind = "client",
                db.system = "postgresql",
                db.query.text = "SELECT * FROM users WHERE email = 'alice@example.com' AND id = 42",
            )
            .in_scope(|| {});
        });
    });
    let request = named(&envelopes, "GET /login");
    assert_eq!(
        base_data(request)["url"],
        "https://shop.example/login?REDACTED"
    );
    let call = named(&envelopes, "GET /v1/items");
    assert_eq!(
        base_data(call)["data"],
        "https://api.example/v1/items?REDACTED"
    );
    let query = named(&envelopes, "query users");
    assert_eq!(base_data(query)["type"], "postgresql");
    assert_eq!(
        base_data(query)["data"],
        "SELECT * FROM users WHERE email = ? AND id = ?"
    );
    let wire = serde_json::to_string(&envelopes).unwrap();
    for secret in ["hunter2", "s3cret", "alice@example.com"] {
        assert!(!wire.contains(secret), "{secret} went out: {wire}");
    }
}

#[test]
fn processors_run_in_order_and_set_names_tags_and_properties() {
    let builder = Builder::new()
        .with_processor(|item| {
            // The user id moves from a property to its tag.
            let user = item.properties().get("app.user").map(|u| u.into_owned());
            if let Some(user) = user {
                item.properties().remove("app.user");
                item.set_tag(Tag::UserId, user);
            }
            true
        })
        .with_processor(|item| {
            // Sees what the first one did.
            if item.tag(Tag::UserId) == Some("u-17") {
                item.properties().insert("seen.user", "yes");
            }
            if item.kind() == ItemKind::RemoteDependency {
                item.set_name("renamed");
                item.set_tag(Tag::CloudRole, "checkout");
                item.set_success(false);
                item.set_result_code("503");
            }
            true
        });
    let (envelopes, _) = run(builder, 1, || {
        tracing::info_span!("work", app.user = "u-17", kept = 3).in_scope(|| {});
    });
    let item = &envelopes[0];
    let data = base_data(item);
    assert_eq!(data["name"], "renamed");
    assert_eq!(data["success"], false);
    assert_eq!(data["resultCode"], "503");
    assert_eq!(item["tags"]["ai.user.id"], "u-17");
    assert_eq!(item["tags"]["ai.cloud.role"], "checkout");
    assert_eq!(
        data["properties"],
        serde_json::json!({ "kept": "3", "seen.user": "yes" })
    );
}

#[test]
fn what_a_processor_sets_is_cut_to_the_schema_limits() {
    let builder = Builder::new().with_processor(|item| {
        let long_key = "k".repeat(151);
        let stored = item.properties().insert(long_key, "refused");
        item.properties()
            .insert("stored.long.key", if stored { "yes" } else { "no" });
        item.properties().insert("big", "é".repeat(20_000));
        item.set_name("n".repeat(5_000));
        item.set_tag(Tag::UserId, "😀".repeat(100));
        item.set_data("d".repeat(10_000));
        true
    });
    let (envelopes, _) = run(builder, 1, || {
        tracing::info_span!("s", otel.kind = "client").in_scope(|| {});
    });
    let item = &envelopes[0];
    let data = base_data(item);
    let props = data["properties"].as_object().unwrap();
    assert_eq!(props["stored.long.key"], "no");
    assert!(!props.keys().any(|k| k.len() > 150), "{props:?}");
    assert_eq!(props["big"], "é".repeat(8192));
    assert_eq!(data["name"].as_str().unwrap().len(), 1024);
    assert_eq!(data["data"].as_str().unwrap().len(), 8192);
    let user = item["tags"]["ai.user.id"].as_str().unwrap();
    assert_eq!(utf16_len(user), 128);
    assert!(user.chars().all(|c| c == '😀'));
}

#[test]
fn a_panicking_processor_drops_its_item_and_the_worker_goes_on() {
    let Some(_own_process) = own_process(
        module_path!(),
        "a_panicking_processor_drops_its_item_and_the_worker_goes_on",
    ) else {
        return;
    };
    let captured = Diagnostics::install();
    let server = FakeIngestion::start();
    let (layer, guard) = Builder::new()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_processor(|item| {
            if item.name() == Some("boom") {
                panic!("processor bug");
            }
            true
        })
        .build()
        .unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    for round in 0..2 {
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info_span!("boom").in_scope(|| {});
            tracing::info_span!("fine", round).in_scope(|| {});
        });
        guard.flush(TIMEOUT).unwrap();
    }
    let envelopes = server.wait_for_envelopes(2, TIMEOUT);
    let names: Vec<&Value> = envelopes.iter().map(|e| &base_data(e)["name"]).collect();
    assert_eq!(names, ["fine", "fine"], "{envelopes:#?}");
    let stats = guard.stats();
    assert_eq!(stats.processor_panics, 2);
    assert_eq!(stats.dropped_by_processor, 2);
    assert_eq!(stats.exported, 2);
    assert!(stats.balances(), "{stats:?}");
    let said = captured.with("Exporter.ProcessorPanicked");
    assert_eq!(
        said.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        [Level::WARN, Level::DEBUG],
        "{said:?}"
    );
    assert!(said[0].1.contains("processor bug"), "{said:?}");
    guard.shutdown(TIMEOUT).unwrap();
}

#[test]
fn with_property_is_on_every_item_type_and_an_items_own_wins() {
    let builder = Builder::new()
        .with_property("deployment", "blue")
        .with_property("region", "westeurope");
    let (envelopes, _) = run(builder, 6, || {
        tracing::info_span!("request", otel.kind = "server", region = "eastus").in_scope(|| {
            tracing::info_span!("call", otel.kind = "client").in_scope(|| {});
            tracing::info!("a message");
            let error = std::io::Error::other("broken");
            tracing::error!(error = &error as &dyn std::error::Error, "failed");
            tracing::info!(microsoft.custom_event.name = "checkout", "checked out");
        });
        tracing::info!("outside spans");
    });
    let mut kinds: Vec<&str> = Vec::new();
    for envelope in &envelopes {
        kinds.push(envelope["data"]["baseType"].as_str().unwrap());
        let props = &base_data(envelope)["properties"];
        assert_eq!(props["deployment"], "blue", "{envelope:#}");
        let region = if base_data(envelope)["name"] == "request" {
            "eastus"
        } else {
            "westeurope"
        };
        assert_eq!(props["region"], region, "{envelope:#}");
    }
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "EventData",
            "ExceptionData",
            "MessageData",
            "MessageData",
            "RemoteDependencyData",
            "RequestData"
        ]
    );
}

#[test]
fn with_property_refuses_empty_and_overlong_keys() {
    for key in [String::new(), "k".repeat(151)] {
        let err = Builder::new()
            .with_in_memory_exporter(tracing_appinsights::InMemoryExporter::new())
            .with_property(key, "v")
            .build::<tracing_subscriber::Registry>()
            .unwrap_err();
        assert!(
            matches!(
                err,
                BuildError::InvalidSetting {
                    setting: "with_property",
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn an_event_naming_a_custom_event_is_an_event_data_item_in_its_operation() {
    let (envelopes, _) = run(Builder::new(), 3, || {
        tracing::info_span!("checkout flow", otel.kind = "server").in_scope(|| {
            tracing::info!(
                microsoft.custom_event.name = "checkout",
                amount = 3,
                currency = "EUR",
                "user checked out"
            );
        });
        tracing::info!(microsoft.custom_event.name = "started");
    });
    let request = named(&envelopes, "checkout flow");
    let event = named(&envelopes, "checkout");
    assert_eq!(event["name"], "Microsoft.ApplicationInsights.Event");
    assert_eq!(
        event["data"],
        serde_json::json!({
            "baseType": "EventData",
            "baseData": {
                "ver": 2,
                "name": "checkout",
                "properties": { "amount": "3", "currency": "EUR", "message": "user checked out" },
            },
        })
    );
    let tags = &event["tags"];
    assert_eq!(tags["ai.operation.id"], request["tags"]["ai.operation.id"]);
    assert_eq!(tags["ai.operation.parentId"], base_data(request)["id"]);
    assert_eq!(tags["ai.operation.name"], "checkout flow");
    let outside = named(&envelopes, "started");
    assert_eq!(outside["data"]["baseType"], "EventData");
    assert!(outside["tags"].get("ai.operation.id").is_none());
    assert!(base_data(outside).get("properties").is_none());
}

#[test]
fn the_example_redacts_and_drops_health_checks() {
    let out = std::process::Command::new(crate::support::example("processors"))
        .env_remove("APPLICATIONINSIGHTS_CONNECTION_STRING")
        .env_remove("APPINSIGHTS_INSTRUMENTATIONKEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("/health"), "{stdout}");
    for secret in ["alice@example.com", "sk_live_123", "= 7"] {
        assert!(!stdout.contains(secret), "{secret}: {stdout}");
    }
    let want = [
        r#"RequestData "GET /orders/{id}" url=https://shop.example/orders/7?REDACTED deployment=blue"#,
        r#"RemoteDependencyData "load order" type=postgresql data=SELECT * FROM orders WHERE id = ? AND owner = ? deployment=blue"#,
        r#"RemoteDependencyData "POST /v1/charges" type=HTTP data=https://pay.example/v1/charges?REDACTED deployment=blue"#,
        "exported 3, dropped by processors 1",
    ];
    for line in want {
        assert!(stdout.lines().any(|l| l == line), "{line}\n{stdout}");
    }
}
