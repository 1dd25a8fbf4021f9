//! What `#[instrument]`'s options and the OpenTelemetry field names
//! produce on the wire: `ret` (a trace of the return value), `err` (an
//! Exception of a stable type), `exception.type` and the standard
//! library's errors (their real type names), and `otel.status_message`
//! (tracing-opentelemetry's name for the status description).

use std::error::Error;
use std::time::Duration;

use serde_json::Value;
use tracing_appinsights::Builder;
use tracing_subscriber::prelude::*;

use crate::support::FakeIngestion;

/// Runs `f` under a layer exporting to a fake ingestion service and
/// returns the envelopes it received.
fn envelopes(f: impl FnOnce()) -> Vec<Value> {
    let server = FakeIngestion::start();
    let (layer, guard) = Builder::new()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .build()
        .unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    guard.shutdown(Duration::from_secs(30)).unwrap();
    server.envelopes()
}

fn of_type<'a>(envelopes: &'a [Value], base_type: &str) -> Vec<&'a Value> {
    envelopes
        .iter()
        .filter(|e| e["data"]["baseType"] == base_type)
        .collect()
}

fn base(envelope: &Value) -> &Value {
    &envelope["data"]["baseData"]
}

#[derive(Debug)]
struct Order {
    id: u32,
}

#[tracing::instrument(ret)]
fn load_order(id: u32) -> Order {
    Order { id }
}

#[test]
fn instrument_ret_is_a_trace_of_the_return_value_in_the_functions_operation() {
    let sent = envelopes(|| {
        assert_eq!(load_order(7).id, 7);
    });
    let dependency = of_type(&sent, "RemoteDependencyData");
    let traces = of_type(&sent, "MessageData");
    assert_eq!((dependency.len(), traces.len()), (1, 1), "{sent:#?}");
    let (span, trace) = (dependency[0], traces[0]);
    assert_eq!(base(span)["name"], "load_order");
    assert_eq!(base(trace)["properties"]["return"], "Order { id: 7 }");
    assert_eq!(
        trace["tags"]["ai.operation.id"],
        span["tags"]["ai.operation.id"]
    );
    assert_eq!(trace["tags"]["ai.operation.parentId"], base(span)["id"]);
    assert_eq!(base(trace)["severityLevel"], "Information");
}

#[derive(Debug)]
enum StockError {
    OutOfStock,
}

impl std::fmt::Display for StockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("out of stock")
    }
}

impl Error for StockError {}

#[tracing::instrument(err)]
fn reserve() -> Result<(), StockError> {
    Err(StockError::OutOfStock)
}

fn exception(envelopes: &[Value]) -> &Value {
    let found = of_type(envelopes, "ExceptionData");
    assert_eq!(found.len(), 1, "{envelopes:#?}");
    &base(found[0])["exceptions"][0]
}

/// `#[instrument(err)]` records the error as text: its type cannot be
/// known, and it is the stable `Error`, not a variant's name.
#[test]
fn instrument_err_is_an_exception_of_the_stable_fallback_type() {
    let sent = envelopes(|| {
        let _ = reserve();
    });
    let exception = exception(&sent);
    assert_eq!(exception["typeName"], "Error");
    assert_eq!(exception["message"], "out of stock");
}

#[test]
fn an_error_value_of_an_unknown_type_is_not_named_by_its_debug_output() {
    let sent = envelopes(|| {
        let err = StockError::OutOfStock;
        tracing::error!(error = &err as &dyn Error, "could not reserve");
    });
    assert_eq!(exception(&sent)["typeName"], "Error", "not `OutOfStock`");
}

#[test]
fn exception_type_names_the_type() {
    let sent = envelopes(|| {
        let err = StockError::OutOfStock;
        tracing::error!(
            error = &err as &dyn Error,
            exception.type = tracing_appinsights::type_name_of(&err),
            "could not reserve"
        );
    });
    let exception = exception(&sent);
    assert_eq!(
        exception["typeName"],
        concat!(module_path!(), "::StockError")
    );
    assert_eq!(exception["message"], "out of stock");
}

#[test]
fn a_standard_library_error_has_its_real_type() {
    let sent = envelopes(|| {
        let err = std::fs::read("/nonexistent/tracing-appinsights").unwrap_err();
        tracing::error!(error = &err as &dyn Error, "could not read");
    });
    assert_eq!(exception(&sent)["typeName"], "std::io::Error", "not `Os`");
}

#[test]
fn otel_status_message_is_the_status_description() {
    let sent = envelopes(|| {
        tracing::info_span!(
            "charge card",
            otel.kind = "client",
            otel.status_code = "error",
            otel.status_message = "card declined"
        )
        .in_scope(|| {});
    });
    let dependency = of_type(&sent, "RemoteDependencyData");
    assert_eq!(dependency.len(), 1, "{sent:#?}");
    let data = base(dependency[0]);
    assert_eq!(data["success"], false);
    assert_eq!(
        data["properties"]["otel.status_description"],
        "card declined"
    );
    assert!(data["properties"].get("otel.status_message").is_none());
}
