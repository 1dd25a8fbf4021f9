//! `examples/full_stack.rs`, run as a new user would, with a per-crate
//! `RUST_LOG` and the README's filter setup, against the fake ingestion
//! endpoint: an axum service calls an actix-web service through reqwest,
//! which runs a sqlx statement. Both processes' items must form one
//! operation, Request(frontend) → HTTP dependency → Request(orders) → SQL
//! dependency, with their log lines as traces, and within each service one
//! operation name on every item.

use std::collections::BTreeSet;

use crate::support::{example, schema, FakeIngestion};
use serde_json::Value;

fn base_type(item: &Value) -> &str {
    item["data"]["baseType"].as_str().unwrap_or_default()
}

fn base(item: &Value) -> &Value {
    &item["data"]["baseData"]
}

fn tag<'a>(item: &'a Value, name: &str) -> &'a str {
    item["tags"][name].as_str().unwrap_or_default()
}

#[test]
fn one_request_is_one_operation_across_axum_reqwest_actix_and_sqlx() {
    let ingestion = FakeIngestion::start();
    let out = std::process::Command::new(example("full_stack"))
        .env(
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            ingestion.connection_string(),
        )
        .env("RUST_LOG", "full_stack=debug")
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    assert!(
        stdout.contains("frontend answered: item 42: 7 in stock"),
        "{stdout}"
    );
    // Both exporters shut down before the program exited: all is there.
    let items = ingestion.envelopes();
    schema::assert_valid(&items);

    let frontend_request = items
        .iter()
        .find(|i| base_type(i) == "RequestData" && tag(i, "ai.cloud.role") == "frontend")
        .unwrap_or_else(|| panic!("no frontend Request: {items:#?}"));
    let operation = tag(frontend_request, "ai.operation.id");
    let op: Vec<&Value> = items
        .iter()
        .filter(|i| tag(i, "ai.operation.id") == operation)
        .collect();
    let find = |role: &str, ty: &str, dep_type: Option<&str>| -> &Value {
        op.iter()
            .copied()
            .find(|i| {
                tag(i, "ai.cloud.role") == role
                    && base_type(i) == ty
                    && dep_type.is_none_or(|t| base(i)["type"] == t)
            })
            .unwrap_or_else(|| panic!("no {ty} {dep_type:?} of {role} in {op:#?}"))
    };
    let http = find("frontend", "RemoteDependencyData", Some("HTTP"));
    let orders_request = find("orders", "RequestData", None);
    let sql = find("orders", "RemoteDependencyData", Some("SQL"));

    // The chain of parents.
    assert!(frontend_request["tags"]
        .get("ai.operation.parentId")
        .is_none());
    assert_eq!(
        tag(http, "ai.operation.parentId"),
        base(frontend_request)["id"]
    );
    assert_eq!(
        tag(orders_request, "ai.operation.parentId"),
        base(http)["id"]
    );
    assert_eq!(
        tag(sql, "ai.operation.parentId"),
        base(orders_request)["id"]
    );

    assert_eq!(base(frontend_request)["name"], "GET /checkout/{item}");
    assert_eq!(base(frontend_request)["responseCode"], "200");
    assert_eq!(base(http)["name"], "GET /stock/{id}");
    assert_eq!(base(http)["resultCode"], "200");
    assert!(base(http)["data"].as_str().unwrap().ends_with("/stock/42"));
    assert_eq!(base(orders_request)["name"], "GET /stock/{item}");
    assert_eq!(base(orders_request)["success"], true);
    assert_eq!(
        base(sql)["data"],
        "SELECT quantity FROM stock WHERE item = ?"
    );

    // Each service's log lines are traces of the operation.
    let messages = |role: &str| -> BTreeSet<&str> {
        op.iter()
            .filter(|i| tag(i, "ai.cloud.role") == role && base_type(i) == "MessageData")
            .map(|i| base(i)["message"].as_str().unwrap())
            .collect()
    };
    assert_eq!(
        messages("frontend"),
        BTreeSet::from(["checking out", "stock known"])
    );
    assert_eq!(
        messages("orders"),
        BTreeSet::from(["stock of item 42: Some(7)"])
    );

    // Within each service, one operation name on every item.
    for (role, name) in [
        ("frontend", "GET /checkout/{item}"),
        ("orders", "GET /stock/{item}"),
    ] {
        let names: BTreeSet<&str> = op
            .iter()
            .filter(|i| tag(i, "ai.cloud.role") == role)
            .map(|i| tag(i, "ai.operation.name"))
            .collect();
        assert_eq!(names, BTreeSet::from([name]), "{role}: {op:#?}");
    }
    // Nothing else in the operation: two Requests, two dependencies, three
    // traces.
    assert_eq!(op.len(), 7, "{op:#?}");
}
