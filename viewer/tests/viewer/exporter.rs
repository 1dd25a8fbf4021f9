//! The real exporter, pointed at the viewer with the connection string it
//! prints: a server span with a client child and an event arrive as one
//! operation, in order.

use std::time::Duration;

use tracing_appinsights::Builder;
use tracing_subscriber::prelude::*;

use crate::support::*;

#[test]
fn the_exporter_s_operation_arrives_whole_and_in_order() {
    let viewer = start();
    let (layer, guard) = Builder::new()
        .with_connection_string(viewer.connection_string())
        .with_offline_storage(false)
        .with_cloud_role("checkout")
        .build()
        .unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        let server = tracing::info_span!(
            "GET /orders/{id}",
            otel.kind = "server",
            http.request.method = "GET",
            http.route = "/orders/{id}",
            http.response.status_code = 200_u64,
        );
        server.in_scope(|| {
            std::thread::sleep(Duration::from_millis(3));
            let client = tracing::info_span!(
                "GET",
                otel.kind = "client",
                http.request.method = "GET",
                url.full = "http://inventory.example/items?id=42",
                http.response.status_code = 503_u64,
            );
            client.in_scope(|| std::thread::sleep(Duration::from_millis(3)));
            drop(client);
            std::thread::sleep(Duration::from_millis(3));
            tracing::info!(order = 42_u64, "order loaded");
        });
    });
    guard.shutdown(Duration::from_secs(10)).unwrap();

    let requests = get_ok(viewer.addr, "/api/items?type=request");
    let request = &requests["items"][0];
    let op = request["operation_id"].as_str().unwrap();
    let items = get_ok(viewer.addr, &format!("/api/operations/{op}"))["items"].clone();
    let items = items.as_array().unwrap();
    let summary: Vec<(&str, &str)> = items
        .iter()
        .map(|i| {
            (
                i["type"].as_str().unwrap(),
                i["name"].as_str().or(i["message"].as_str()).unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("request", "GET /orders/{id}"),
            ("dependency", "GET /items"),
            ("trace", "order loaded"),
        ],
        "{items:#?}"
    );
    assert!(items.iter().all(|i| i["role"] == "checkout"));
    assert_eq!(items[1]["parent_id"], items[0]["id"]);
    assert_eq!(items[1]["success"], false);
    assert_eq!(items[1]["result_code"], "503");
    assert_eq!(items[1]["target"], "inventory.example");
    assert_eq!(items[2]["properties"]["order"], "42");
    // Nothing was refused.
    let rejections = get_ok(viewer.addr, "/api/rejections");
    assert_eq!(rejections["rejections"], serde_json::json!([]));
    // The map shows the role and its external dependency.
    let map = get_ok(viewer.addr, "/api/map");
    assert_eq!(map["edges"][0]["source"], "role:checkout");
    assert_eq!(map["edges"][0]["target"], "external:inventory.example");
}
