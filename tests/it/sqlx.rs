//! sqlx's query events as SQL dependencies: real statements run by sqlx on
//! an in-memory SQLite database, inside a request span, exported to the
//! fake ingestion endpoint. sqlx runs SQLite statements on a thread of its
//! own (entering the caller's span there), so the subscriber is the
//! process's global one, in a process of its own.

use std::time::Duration;

use crate::support::child::own_process;
use crate::support::{schema, FakeIngestion};
use serde_json::Value;
use sqlx::sqlite::SqlitePoolOptions;
use tracing::Instrument;
use tracing_appinsights::Builder;
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

fn base_type(item: &Value) -> &str {
    item["data"]["baseType"].as_str().unwrap_or_default()
}

#[test]
fn sqlx_queries_are_sql_dependencies_of_the_span_they_run_in() {
    let Some(_own_process) = own_process(
        module_path!(),
        "sqlx_queries_are_sql_dependencies_of_the_span_they_run_in",
    ) else {
        return;
    };
    let ingestion = FakeIngestion::start();
    let (layer, guard) = Builder::new()
        .with_connection_string(ingestion.connection_string())
        .with_offline_storage(false)
        .with_cloud_role("orders")
        .build()
        .unwrap();
    // The README's filter: sqlx's statements are DEBUG events.
    let filter = EnvFilter::new(format!("info,{}", tracing_appinsights::targets::DIRECTIVES));
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .init();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        async {
            sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL)")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("INSERT INTO orders (item) VALUES (?), (?)")
                .bind("book")
                .bind("lamp")
                .execute(&pool)
                .await
                .unwrap();
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
                .fetch_one(&pool)
                .await
                .unwrap();
            tracing::info!(count, "orders counted");
            // A statement SQLite refuses: sqlx's event says nothing of the
            // error, the span's `error` field does.
            let error = sqlx::query("SELECT nope FROM nowhere")
                .execute(&pool)
                .await
                .unwrap_err();
            tracing::info!(%error, "refused");
        }
        .instrument(tracing::info_span!(
            "POST /orders",
            otel.kind = "server",
            http.request.method = "POST",
            http.route = "/orders",
            http.response.status_code = 201,
        ))
        .await;
        pool.close().await;
    });
    guard.shutdown(Duration::from_secs(30)).unwrap();

    let items = ingestion.envelopes();
    schema::assert_valid(&items);
    let request = items
        .iter()
        .find(|i| base_type(i) == "RequestData")
        .unwrap_or_else(|| panic!("no Request: {items:#?}"));
    let operation = &request["tags"]["ai.operation.id"];
    let request_id = &request["data"]["baseData"]["id"];
    let in_request: Vec<&Value> = items
        .iter()
        .filter(|i| &i["tags"]["ai.operation.id"] == operation)
        .collect();
    let sql: Vec<&Value> = in_request
        .iter()
        .copied()
        .filter(|i| base_type(i) == "RemoteDependencyData")
        .collect();
    let names: Vec<&str> = sql
        .iter()
        .map(|i| i["data"]["baseData"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "CREATE TABLE orders (id …",
            "INSERT INTO orders (item) …",
            "SELECT COUNT(*) FROM orders",
            "SELECT nope FROM nowhere",
        ],
        "{in_request:#?}"
    );
    let statements: Vec<&str> = sql
        .iter()
        .map(|i| i["data"]["baseData"]["data"].as_str().unwrap())
        .collect();
    assert_eq!(
        statements,
        [
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL)",
            "INSERT INTO orders (item) VALUES (?), (?)",
            "SELECT COUNT(*) FROM orders",
            "SELECT nope FROM nowhere",
        ]
    );
    let request_time = request["time"].as_str().unwrap();
    for dependency in &sql {
        let data = &dependency["data"]["baseData"];
        assert_eq!(data["type"], "SQL", "{dependency:#?}");
        assert_eq!(data["success"], true);
        assert_eq!(data["resultCode"], "0");
        assert_eq!(&dependency["tags"]["ai.operation.parentId"], request_id);
        assert_eq!(dependency["tags"]["ai.operation.name"], "POST /orders");
        assert_eq!(dependency["tags"]["ai.cloud.role"], "orders");
        // Started inside the request (times are RFC 3339 in UTC with the
        // same width: text order is time order).
        assert!(dependency["time"].as_str().unwrap() >= request_time);
        let props = &data["properties"];
        for sqlx_own in ["summary", "elapsed", "elapsed_secs", "db.statement"] {
            assert!(props.get(sqlx_own).is_none(), "{dependency:#?}");
        }
        assert_ne!(data["id"], *request_id);
    }
    assert_eq!(
        sql[1]["data"]["baseData"]["properties"]["rows_affected"],
        "2"
    );
    assert_eq!(
        sql[2]["data"]["baseData"]["properties"]["rows_returned"],
        "1"
    );
    let ids: std::collections::HashSet<&Value> =
        sql.iter().map(|d| &d["data"]["baseData"]["id"]).collect();
    assert_eq!(ids.len(), sql.len(), "each dependency its own id");
    // The log line is a trace of the same operation.
    assert!(in_request
        .iter()
        .any(|i| base_type(i) == "MessageData"
            && i["data"]["baseData"]["message"] == "orders counted"));
}
