//! The JSON query API over what arrived, and the retention bound.

use serde_json::{json, Value};

use crate::support::*;

/// Two services: `front` serves `GET /checkout`, calls `back` (whose
/// request is the dependency's child) and `db.example`; `back` logs and
/// throws. Posted out of order, in two batches.
fn two_services(viewer: &tracing_appinsights_viewer::Running, op: &str, code: &str) {
    let late = vec![
        exception("back", op, "b1", "KeyError", &at(25)),
        message("back", op, "b1", "looking up", &at(21)),
        request(
            "back",
            op,
            "b1",
            Some("d1"),
            "GET /stock",
            &at(20),
            30,
            code,
        ),
    ];
    let early = vec![
        dependency(
            "front",
            op,
            "d2",
            "f1",
            "SELECT",
            "db.example",
            &at(60),
            4,
            "0",
        ),
        dependency(
            "front",
            op,
            "d1",
            "f1",
            "GET /stock",
            "back.example",
            &at(10),
            40,
            code,
        ),
        request("front", op, "f1", None, "GET /checkout", &at(0), 70, code),
    ];
    for batch in [late, early] {
        let answer = track(viewer.addr, &batch);
        assert_eq!(answer.status, 200, "{answer:?}");
    }
}

fn names(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{} {} {}",
                i["role"].as_str().unwrap_or("-"),
                i["type"].as_str().unwrap(),
                i["name"].as_str().or(i["message"].as_str()).unwrap_or("-")
            )
        })
        .collect()
}

#[test]
fn an_operation_is_every_item_across_roles_ordered_by_time() {
    let viewer = start();
    two_services(&viewer, "op-a", "200");
    two_services(&viewer, "op-b", "200");
    let op = get_ok(viewer.addr, "/api/operations/op-a");
    assert_eq!(op["operation_id"], "op-a");
    assert_eq!(
        names(&op["items"]),
        [
            "front request GET /checkout",
            "front dependency GET /stock",
            "back request GET /stock",
            "back trace looking up",
            "back exception KeyError",
            "front dependency SELECT",
        ]
    );
    let first = &op["items"][0];
    assert_eq!(first["time"], "2026-12-01T10:00:00.000000Z");
    assert_eq!(first["duration_ms"], 70.0);
    assert_eq!(first["success"], true);
    assert_eq!(first["result_code"], "200");
    assert_eq!(first["id"], "f1");
    assert_eq!(first["role_instance"], "front-1");
    assert_eq!(first["url"], "http://front.example/checkout");
    assert_eq!(first["properties"], json!({ "k": "v" }));
    assert_eq!(first["item"]["data"]["baseData"]["name"], "GET /checkout");
    let back = &op["items"][2];
    assert_eq!(back["parent_id"], "d1");
    let dependency = &op["items"][1];
    assert_eq!(dependency["target"], "back.example");
    assert_eq!(dependency["dependency_type"], "HTTP");
    assert_eq!(dependency["data"], "http://back.example/");
}

#[test]
fn items_are_searched_newest_first_by_type_role_text_code_and_time() {
    let viewer = start();
    two_services(&viewer, "op-a", "200");
    two_services(&viewer, "op-b", "503");
    let search = |q: &str| names(&get_ok(viewer.addr, &format!("/api/items?{q}"))["items"]);
    assert_eq!(search("").len(), 12);
    assert_eq!(
        search("type=request&role=back"),
        ["back request GET /stock", "back request GET /stock"]
    );
    assert_eq!(
        search("type=dependency&result_code=503"),
        ["front dependency GET /stock"]
    );
    assert_eq!(search("q=looking").len(), 2);
    // Free text covers URLs and dependency data; `_` and `%` are literal.
    assert_eq!(search("q=front.example%2Fcheckout").len(), 2);
    assert_eq!(search("q=db.example%2F").len(), 2);
    assert_eq!(search("q=%25").len(), 0);
    assert_eq!(search("operation_id=op-b").len(), 6);
    assert_eq!(
        search("from=2026-12-01T10:00:00.021Z&to=2026-12-01T10:00:00.025Z&operation_id=op-a"),
        ["back exception KeyError", "back trace looking up"]
    );
    assert_eq!(search("limit=3").len(), 3);
    // Newest first.
    let items = get_ok(viewer.addr, "/api/items?limit=2&operation_id=op-a");
    assert_eq!(items["items"][0]["name"], "SELECT");
}

#[test]
fn the_map_has_a_node_per_role_and_external_target_and_an_edge_per_call() {
    let viewer = start();
    two_services(&viewer, "op-a", "200");
    two_services(&viewer, "op-b", "503");
    let map = get_ok(viewer.addr, "/api/map");
    let ids: Vec<&str> = map["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["role:back", "role:front", "external:db.example"]);
    assert_eq!(map["nodes"][0]["requests"], 2);
    assert_eq!(map["nodes"][0]["failed_requests"], 1);
    assert_eq!(
        map["edges"],
        json!([
            { "source": "role:front", "target": "external:db.example", "calls": 2,
              "failures": 0, "mean_duration_ms": 4.0 },
            { "source": "role:front", "target": "role:back", "calls": 2, "failures": 1,
              "mean_duration_ms": 40.0 },
        ])
    );
}

#[test]
fn failures_are_grouped_by_operation_and_code_and_exceptions_by_type() {
    let viewer = start();
    two_services(&viewer, "op-a", "500");
    two_services(&viewer, "op-b", "500");
    two_services(&viewer, "op-c", "404");
    two_services(&viewer, "op-d", "200");
    let failures = get_ok(viewer.addr, "/api/failures");
    let requests = failures["requests"].as_array().unwrap();
    let groups: Vec<(String, String, u64)> = requests
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap().to_owned(),
                g["result_code"].as_str().unwrap().to_owned(),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("GET /checkout".to_owned(), "500".to_owned(), 2),
            ("GET /stock".to_owned(), "500".to_owned(), 2),
            ("GET /checkout".to_owned(), "404".to_owned(), 1),
            ("GET /stock".to_owned(), "404".to_owned(), 1),
        ]
    );
    assert!(["op-a", "op-b"].contains(&requests[0]["sample_operation_id"].as_str().unwrap()));
    assert_eq!(requests[2]["sample_operation_id"], "op-c");
    assert_eq!(
        failures["dependencies"],
        json!([
            { "name": "GET /stock", "result_code": "500", "count": 2, "sample_operation_id": "op-b" },
            { "name": "GET /stock", "result_code": "404", "count": 1, "sample_operation_id": "op-c" },
        ])
    );
    assert_eq!(
        failures["exceptions"],
        json!([{ "type": "KeyError", "count": 4, "sample_operation_id": "op-d" }])
    );
}

#[test]
fn performance_has_count_and_percentiles_per_role_and_operation() {
    let viewer = start();
    // 1..=100 ms, shuffled.
    let items: Vec<Value> = (1..=100u64)
        .map(|i| {
            let ms = (i * 37) % 100 + 1;
            request(
                "api",
                &format!("op{i}"),
                &format!("r{i}"),
                None,
                "GET /p",
                &at(i),
                ms,
                "200",
            )
        })
        .chain([request("api", "x", "x", None, "GET /q", &at(0), 7, "200")])
        .collect();
    assert_eq!(track(viewer.addr, &items).status, 200);
    let perf = get_ok(viewer.addr, "/api/performance");
    assert_eq!(
        perf["operations"],
        json!([
            { "role": "api", "name": "GET /p", "count": 100, "mean_ms": 50.5,
              "p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0 },
            { "role": "api", "name": "GET /q", "count": 1, "mean_ms": 7.0,
              "p50_ms": 7.0, "p95_ms": 7.0, "p99_ms": 7.0 },
        ])
    );
}

#[test]
fn the_retention_bound_deletes_the_oldest_items_first() {
    let viewer = start_with(|c| c.max_items = 5);
    for batch in 0..3u64 {
        let items: Vec<Value> = (0..3u64)
            .map(|i| {
                let n = batch * 3 + i;
                request(
                    "r",
                    "op",
                    &format!("id{n}"),
                    None,
                    "GET /",
                    &at(n),
                    1,
                    "200",
                )
            })
            .collect();
        assert_eq!(track(viewer.addr, &items).status, 200);
    }
    let items = get_ok(viewer.addr, "/api/items");
    let ids: Vec<&str> = items["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["id8", "id7", "id6", "id5", "id4"]);
}

#[test]
fn a_database_file_keeps_the_items_across_restarts() {
    let dir = std::env::temp_dir().join(format!("appinsights-viewer-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = dir.join("nested").join("items.sqlite3");
    let config = |db: &std::path::Path| {
        let mut c = tracing_appinsights_viewer::Config::in_memory("127.0.0.1:0".parse().unwrap());
        c.db = Some(db.to_owned());
        c
    };
    let viewer = tracing_appinsights_viewer::Viewer::start(config(&db)).unwrap();
    two_services(&viewer, "op-a", "200");
    viewer.stop();
    let viewer = tracing_appinsights_viewer::Viewer::start(config(&db)).unwrap();
    let op = get_ok(viewer.addr, "/api/operations/op-a");
    assert_eq!(op["items"].as_array().unwrap().len(), 6);
    viewer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
