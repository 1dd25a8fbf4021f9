//! Records of the `log` crate, through tracing-log, as the README sets it
//! up: `.init()` installs tracing-log's `LogTracer` (tracing-subscriber's
//! default `tracing-log` feature), and `log` records become trace items
//! with their severity, message, operation context, and the record's
//! target as `category`. Each test owns the process's global logger and
//! subscriber, so each runs in a process of its own.

use std::time::Duration;

use crate::support::child::own_process;
use crate::support::{schema, FakeIngestion};
use serde_json::{json, Value};
use tracing_appinsights::{Builder, ExporterGuard};
use tracing_subscriber::prelude::*;

/// The README's setup: the layer on a registry, `.init()`.
fn init(builder: Builder, ingestion: &FakeIngestion) -> ExporterGuard {
    let (layer, guard) = builder
        .with_connection_string(ingestion.connection_string())
        .with_offline_storage(false)
        .build()
        .unwrap();
    tracing_subscriber::registry().with(layer).init();
    guard
}

/// The Message items of this test's own records: the test's dependencies
/// log too (mio, in the fake ingestion's runtime, when a crate in the build
/// turns on its `log` feature), and with no filter those arrive as well.
fn messages(items: &[Value]) -> Vec<&Value> {
    let ours = ["billing", "billing::refunds", module_path!()];
    items
        .iter()
        .filter(|i| i["data"]["baseType"] == "MessageData")
        .filter(|i| {
            let category = &i["data"]["baseData"]["properties"]["category"];
            ours.iter().any(|c| category == c)
        })
        .collect()
}

#[test]
fn log_records_are_traces_with_severity_category_and_operation() {
    let Some(_own_process) = own_process(
        module_path!(),
        "log_records_are_traces_with_severity_category_and_operation",
    ) else {
        return;
    };
    let ingestion = FakeIngestion::start();
    let guard = init(Builder::new(), &ingestion);
    tracing::info_span!("checkout", otel.kind = "server").in_scope(|| {
        log::info!(target: "billing", "charged {} cents", 1250);
        log::debug!("a detail");
    });
    log::warn!("outside any span");
    log::error!(target: "billing::refunds", "refund failed");
    guard.shutdown(Duration::from_secs(30)).unwrap();

    let items = ingestion.envelopes();
    schema::assert_valid(&items);
    let request = items
        .iter()
        .find(|i| i["data"]["baseType"] == "RequestData")
        .expect("the span's Request");
    let messages = messages(&items);
    let shown: Vec<(&str, &str, &Value)> = messages
        .iter()
        .map(|m| {
            let data = &m["data"]["baseData"];
            (
                data["message"].as_str().unwrap(),
                data["severityLevel"].as_str().unwrap(),
                &data["properties"],
            )
        })
        .collect();
    let module = module_path!();
    assert_eq!(
        shown,
        [
            (
                "charged 1250 cents",
                "Information",
                &json!({ "category": "billing" })
            ),
            ("a detail", "Verbose", &json!({ "category": module })),
            (
                "outside any span",
                "Warning",
                &json!({ "category": module })
            ),
            (
                "refund failed",
                "Error",
                &json!({ "category": "billing::refunds" })
            ),
        ],
        "{messages:#?}"
    );
    for in_span in &messages[..2] {
        assert_eq!(
            in_span["tags"]["ai.operation.id"],
            request["tags"]["ai.operation.id"]
        );
        assert_eq!(
            in_span["tags"]["ai.operation.parentId"],
            request["data"]["baseData"]["id"]
        );
        assert_eq!(in_span["tags"]["ai.operation.name"], "checkout");
    }
    for outside in &messages[2..] {
        assert!(
            outside["tags"].get("ai.operation.id").is_none(),
            "{outside:#?}"
        );
    }
}

#[test]
fn log_locations_are_sent_when_asked() {
    let Some(_own_process) = own_process(module_path!(), "log_locations_are_sent_when_asked")
    else {
        return;
    };
    let ingestion = FakeIngestion::start();
    let guard = init(Builder::new().with_log_location(true), &ingestion);
    let line = line!() + 1;
    log::info!(target: "billing", "charged");
    guard.shutdown(Duration::from_secs(30)).unwrap();

    let items = ingestion.envelopes();
    let messages = messages(&items);
    assert_eq!(messages.len(), 1, "{items:#?}");
    let props = &messages[0]["data"]["baseData"]["properties"];
    assert_eq!(props["category"], "billing");
    assert!(
        props["code.file.path"]
            .as_str()
            .unwrap()
            .ends_with("log_records.rs"),
        "{props:#?}"
    );
    assert_eq!(props["code.line.number"], line.to_string());
    assert_eq!(props.as_object().unwrap().len(), 3, "{props:#?}");
}
