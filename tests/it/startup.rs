//! What the exporter says about where the data goes: one line at build
//! time (or, when no subscriber was there to hear it, with the first
//! records), naming the endpoint's host and the sampler, never the key.

use std::time::Duration;

use tracing::Level;
use tracing_appinsights::{Builder, InMemoryExporter, Sampler};
use tracing_subscriber::prelude::*;

use crate::support::child::own_process;
use crate::support::diagnostics::Diagnostics;
use crate::support::FakeIngestion;

#[test]
fn build_says_where_the_data_goes() {
    let Some(_own_process) = own_process(module_path!(), "build_says_where_the_data_goes") else {
        return;
    };
    std::env::remove_var("APPLICATIONINSIGHTS_CONNECTION_STRING");
    std::env::remove_var("APPINSIGHTS_INSTRUMENTATIONKEY");
    let server = FakeIngestion::start();
    let key = "11111111-2222-3333-4444-555555555555";
    let connection = format!(
        "InstrumentationKey={key};IngestionEndpoint={}/",
        server.endpoint()
    );

    // Built before the application installs its subscriber (the usual
    // order): said with the first records instead of into the void.
    let (layer, guard) = Builder::new()
        .with_connection_string(&connection)
        .with_offline_storage(false)
        .build()
        .unwrap();
    let diagnostics = Diagnostics::default();
    tracing_subscriber::registry()
        .with(diagnostics.clone())
        .with(layer)
        .try_init()
        .unwrap();
    assert!(diagnostics.with("Exporter.Configured").is_empty());
    tracing::info_span!("first").in_scope(|| {});
    guard.flush(Duration::from_secs(10)).unwrap();
    let said = diagnostics.with("Exporter.Configured");
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(said[0].0, Level::INFO);
    let line = &said[0].1;
    assert!(
        line.contains(&format!("goes to {}", server.endpoint())),
        "{line}"
    );
    assert!(line.contains("sampler always_on"), "{line}");
    assert!(line.contains("offline storage off"), "{line}");
    assert!(!line.contains(key), "never the key in full: {line}");

    // With a subscriber there, `build` says it at once, and what in the
    // environment it ignored.
    std::env::set_var("OTEL_RESOURCE_ATTRIBUTES", "service.name=ok,no-equals-sign");
    let (_layer, _second) = Builder::new()
        .with_connection_string(&connection)
        .with_sampler(Sampler::probability(0.5))
        .build::<tracing_subscriber::Registry>()
        .unwrap();
    let said = diagnostics.with("Exporter.Configured");
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(said[1].1.contains("sampler probability(0.5)"), "{said:?}");
    assert!(said[1].1.contains("offline storage on"), "{said:?}");
    let malformed = diagnostics.with("Config.Malformed: OTEL_RESOURCE_ATTRIBUTES");
    assert_eq!(malformed.len(), 1, "{malformed:?}");
    assert_eq!(malformed[0].0, Level::WARN);
    assert!(malformed[0].1.contains("no-equals-sign"), "{malformed:?}");
    std::env::remove_var("OTEL_RESOURCE_ATTRIBUTES");

    // No connection string: a warning that records go to stdout.
    let (_layer, _third) = Builder::new()
        .build::<tracing_subscriber::Registry>()
        .unwrap();
    let said = diagnostics.with("printed to stdout");
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(said[0].0, Level::WARN);

    // The in-memory exporter is the test's own choice: nothing to say.
    let before = diagnostics.all().len();
    let (_layer, _fourth) = Builder::new()
        .with_in_memory_exporter(InMemoryExporter::new())
        .build::<tracing_subscriber::Registry>()
        .unwrap();
    assert_eq!(diagnostics.all().len(), before);
    guard.shutdown(Duration::from_secs(5)).unwrap();
}
