//! Golden test of the complete HTTP request for a representative trace: a
//! reviewer reads `tests/it/snapshots/representative_trace.json` and sees
//! exactly what goes on the wire (ids, times and durations normalised).
//!
//! Run with `UPDATE_SNAPSHOTS=1` to rewrite the snapshot after an intended
//! change, then review the diff.

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::support::{schema, FakeIngestion};
use serde_json::{json, Value};
use tracing::info_span;
use tracing_appinsights::{Builder, Sampler};
use tracing_subscriber::prelude::*;

#[derive(Debug)]
struct PaymentError(std::io::Error);

impl fmt::Display for PaymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("payment declined")
    }
}

impl Error for PaymentError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

/// A server span with HTTP fields, an HTTP client child, a database child,
/// an internal child, an info event, an error event, a `follows_from` link
/// and an event outside spans.
fn representative_trace() {
    let producer = info_span!(
        "enqueue order",
        otel.kind = "producer",
        messaging.system = "servicebus",
        messaging.destination.name = "orders"
    );
    producer.in_scope(|| {});
    let server = info_span!(
        "handle",
        otel.kind = "server",
        http.request.method = "POST",
        http.route = "/orders/{id}",
        url.full = "https://shop.example/orders/42?expand=lines",
        http.response.status_code = tracing::field::Empty,
        client.address = "203.0.113.9",
        user_agent.original = "curl/8.5.0",
        enduser.id = "alice",
        order.id = 42_u64,
    );
    server.follows_from(&producer);
    let _entered = server.enter();
    tracing::info!(items = 3_u64, "order loaded");
    info_span!(
        "GET",
        otel.kind = "client",
        http.request.method = "GET",
        url.full = "https://inventory.example:8443/items?id=42",
        server.address = "inventory.example",
        server.port = 8443_u64,
        http.response.status_code = 503_u64,
    )
    .in_scope(|| {});
    info_span!(
        "SELECT orders",
        otel.kind = "client",
        db.system = "postgresql",
        db.namespace = "shop",
        db.query.text = "SELECT * FROM orders WHERE id = $1",
        server.address = "db.internal",
        server.port = 5432_u64,
    )
    .in_scope(|| {});
    info_span!("price order", currency = "EUR", total = 99.5_f64).in_scope(|| {});
    let err = PaymentError(std::io::Error::other("card expired"));
    tracing::error!(error = &err as &dyn Error, "charging failed");
    server.record("http.response.status_code", 402_u64);
    drop(_entered);
    drop(server);
    tracing::warn!(disk = "sda1", "disk almost full");
}

/// Replaces ids, times and durations by stable placeholders: each distinct
/// id gets the next `<trace-N>` / `<span-N>` in order of appearance.
struct Normaliser {
    ids: HashMap<String, String>,
    traces: usize,
    spans: usize,
}

impl Normaliser {
    fn id(&mut self, id: &str) -> String {
        if let Some(name) = self.ids.get(id) {
            return name.clone();
        }
        let name = if id.len() == 32 {
            self.traces += 1;
            format!("<trace-{}>", self.traces)
        } else {
            self.spans += 1;
            format!("<span-{}>", self.spans)
        };
        self.ids.insert(id.to_owned(), name.clone());
        name
    }

    fn value(&mut self, key: &str, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    self.value(k, v);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.value(key, v)),
            Value::String(s) => match key {
                "time" => *s = "<time>".into(),
                "duration" => *s = "<duration>".into(),
                "ai.internal.sdkVersion" => *s = "<sdk version>".into(),
                "id" | "ai.operation.id" | "ai.operation.parentId" | "operation_Id" => {
                    *s = self.id(s)
                }
                "_MS.links" => {
                    let mut links: Value = serde_json::from_str(s).unwrap();
                    self.value(key, &mut links);
                    *s = links.to_string();
                }
                _ => {}
            },
            _ => {}
        }
    }
}

fn normalise(envelopes: &mut [Value]) {
    let mut n = Normaliser {
        ids: HashMap::new(),
        traces: 0,
        spans: 0,
    };
    for e in envelopes {
        n.value("", e);
    }
}

#[test]
fn the_representative_trace_on_the_wire() {
    let server = FakeIngestion::start();
    let (layer, guard) = Builder::new()
        .with_connection_string(server.connection_string())
        // Storage is not under test here: no blob from another run may leak in.
        .with_offline_storage(false)
        .with_cloud_role("checkout")
        .with_cloud_role_instance("checkout-1")
        .with_application_version("1.2.3")
        .with_sampler(Sampler::always_on())
        .build()
        .unwrap();
    tracing::subscriber::with_default(
        tracing_subscriber::registry().with(layer),
        representative_trace,
    );
    guard.shutdown(Duration::from_secs(10)).unwrap();

    let requests = server.requests();
    assert_eq!(requests.len(), 1, "one batch, one request");
    let request = &requests[0];
    let mut envelopes = request.envelopes.clone();
    schema::assert_valid(&envelopes);
    normalise(&mut envelopes);
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|(k, _)| k != "host" && k != "content-length")
        .cloned()
        .collect();
    headers.sort();
    let actual = json!({
        "method": request.method,
        "path": request.path,
        "headers": headers,
        "body": envelopes,
    });
    let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/snapshots/representative_trace.json"
    );
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &text).unwrap();
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        expected == text,
        "the request differs from {path}; rerun with UPDATE_SNAPSHOTS=1 and review the diff.\nactual:\n{text}"
    );
    // Counted in telemetry items: five spans, the two events inside the
    // server span, and the event outside spans.
    assert_eq!(guard.stats().exported, 8, "eight items");
}
