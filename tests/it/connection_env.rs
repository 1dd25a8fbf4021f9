//! Where the connection string comes from: builder beats environment, a
//! connection string beats a bare key, and bad strings name their fault
//! without printing the key. One test, because it changes the process's
//! environment; it runs in a process of its own.

use std::time::Duration;

use crate::support::child::own_process;
use crate::support::FakeIngestion;
use tracing_appinsights::{BuildError, Builder};
use tracing_subscriber::prelude::*;

const CS: &str = "APPLICATIONINSIGHTS_CONNECTION_STRING";
const IKEY: &str = "APPINSIGHTS_INSTRUMENTATIONKEY";

/// Sends one span with `builder` and returns the iKeys the servers saw.
fn ikeys_seen(builder: Builder, servers: &[&FakeIngestion]) -> Vec<Vec<String>> {
    // Storage is not under test here: no blob from another run may leak in.
    let (layer, guard) = builder.with_offline_storage(false).build().unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info_span!("s").in_scope(|| {});
    });
    guard.shutdown(Duration::from_secs(10)).unwrap();
    servers
        .iter()
        .map(|s| {
            s.envelopes()
                .iter()
                .map(|e| e["iKey"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

fn cs(server: &FakeIngestion, key: &str) -> String {
    format!(
        "InstrumentationKey={key};IngestionEndpoint={}/",
        server.endpoint()
    )
}

#[test]
fn precedence_and_errors() {
    let Some(_own_process) = own_process(module_path!(), "precedence_and_errors") else {
        return;
    };
    let code = FakeIngestion::start();
    let env = FakeIngestion::start();
    let key_a = "aaaaaaaa-0000-0000-0000-000000000000";
    let key_b = "bbbbbbbb-0000-0000-0000-000000000000";
    std::env::set_var(CS, cs(&env, key_b));
    std::env::set_var(IKEY, "cccccccc-0000-0000-0000-000000000000");

    // The builder's connection string beats the environment.
    let seen = ikeys_seen(
        Builder::new().with_connection_string(cs(&code, key_a)),
        &[&code, &env],
    );
    assert_eq!(seen, [vec![key_a.to_owned()], vec![]]);

    // Without one in code, the environment's connection string is used
    // (and beats the environment's bare key).
    let seen = ikeys_seen(Builder::new(), &[&code, &env]);
    assert_eq!(seen[1], [key_b]);

    // A bare key from the builder beats the environment's connection string
    // and goes to the global endpoint; only its parsing is observable here.
    let err = Builder::new()
        .with_instrumentation_key("not-a-guid")
        .build::<tracing_subscriber::Registry>()
        .unwrap_err();
    assert!(
        err.to_string().contains("with_instrumentation_key"),
        "{err}"
    );
    let err = Builder::new()
        .with_instrumentation_key("00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://x")
        .build::<tracing_subscriber::Registry>()
        .unwrap_err();
    assert!(matches!(
        err,
        BuildError::ConnectionString {
            origin: "with_instrumentation_key",
            ..
        }
    ));

    // A malformed environment string names its variable and segment, and
    // never prints the key.
    std::env::set_var(
        CS,
        "InstrumentationKey=dddddddd-secret-key;IngestionEndpoint=ftp://x",
    );
    let err = Builder::new()
        .build::<tracing_subscriber::Registry>()
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains(CS), "{text}");
    assert!(!text.contains("secret-key"), "{text}");

    // AAD needs a token provider this version does not have.
    let err = Builder::new()
        .with_connection_string(format!("{};Authorization=AAD", cs(&code, key_a)))
        .build::<tracing_subscriber::Registry>()
        .unwrap_err();
    assert!(
        matches!(err, BuildError::AadNeedsTokenProvider { .. }),
        "{err}"
    );

    // In memory and a connection string in code contradict each other.
    let err = Builder::new()
        .with_connection_string(cs(&code, key_a))
        .with_in_memory_exporter(tracing_appinsights::InMemoryExporter::new())
        .build::<tracing_subscriber::Registry>()
        .unwrap_err();
    assert!(err.to_string().contains("with_in_memory_exporter"), "{err}");

    std::env::remove_var(CS);
    std::env::remove_var(IKEY);
}

/// The process-wide tags one span carries with `builder`, with `env` set
/// (and every other variable of the table unset).
fn tags_with(env: &[(&str, &str)], builder: Builder) -> serde_json::Value {
    const TABLE: [&str; 11] = [
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "WEBSITE_SITE_NAME",
        "WEBSITE_INSTANCE_ID",
        "CONTAINER_APP_NAME",
        "CONTAINER_APP_REPLICA_NAME",
        "KUBERNETES_SERVICE_HOST",
        "POD_NAME",
        "HOSTNAME",
        CS,
        IKEY,
    ];
    for name in TABLE {
        std::env::remove_var(name);
    }
    for (name, value) in env {
        std::env::set_var(name, value);
    }
    let server = FakeIngestion::start();
    let (layer, guard) = builder
        .with_connection_string(cs(&server, "aaaaaaaa-0000-0000-0000-000000000000"))
        .with_offline_storage(false)
        .build()
        .unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info_span!("s").in_scope(|| {});
    });
    guard.shutdown(Duration::from_secs(10)).unwrap();
    server.envelopes()[0]["tags"].clone()
}

#[test]
fn the_standard_environment_names_the_service() {
    let Some(_own_process) =
        own_process(module_path!(), "the_standard_environment_names_the_service")
    else {
        return;
    };
    let tag = |tags: &serde_json::Value, name: &str| tags[name].as_str().map(str::to_owned);
    // App Service: the site and the instance.
    let tags = tags_with(
        &[
            ("WEBSITE_SITE_NAME", "shop-web"),
            ("WEBSITE_INSTANCE_ID", "a1b2c3"),
        ],
        Builder::new(),
    );
    assert_eq!(tag(&tags, "ai.cloud.role").as_deref(), Some("shop-web"));
    assert_eq!(
        tag(&tags, "ai.cloud.roleInstance").as_deref(),
        Some("a1b2c3")
    );
    // Container Apps.
    let tags = tags_with(
        &[
            ("CONTAINER_APP_NAME", "orders"),
            ("CONTAINER_APP_REPLICA_NAME", "orders--rev1-7d9f"),
        ],
        Builder::new(),
    );
    assert_eq!(tag(&tags, "ai.cloud.role").as_deref(), Some("orders"));
    assert_eq!(
        tag(&tags, "ai.cloud.roleInstance").as_deref(),
        Some("orders--rev1-7d9f")
    );
    // Kubernetes: the pod.
    let tags = tags_with(
        &[
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("POD_NAME", "api-5f7c9-xk2p"),
        ],
        Builder::new(),
    );
    assert_eq!(
        tag(&tags, "ai.cloud.roleInstance").as_deref(),
        Some("api-5f7c9-xk2p")
    );
    // OpenTelemetry's variables beat the platform's.
    let otel = [
        ("WEBSITE_SITE_NAME", "shop-web"),
        ("WEBSITE_INSTANCE_ID", "a1b2c3"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.namespace=shop,service.name=cart,service.instance.id=i-7,service.version=1.4.2",
        ),
    ];
    let tags = tags_with(&otel, Builder::new());
    assert_eq!(tag(&tags, "ai.cloud.role").as_deref(), Some("shop.cart"));
    assert_eq!(tag(&tags, "ai.cloud.roleInstance").as_deref(), Some("i-7"));
    assert_eq!(tag(&tags, "ai.application.ver").as_deref(), Some("1.4.2"));
    // Settings in code beat the environment.
    let tags = tags_with(
        &otel,
        Builder::new()
            .with_cloud_role("from-code")
            .with_cloud_role_instance("instance-from-code")
            .with_application_version("9.9"),
    );
    assert_eq!(tag(&tags, "ai.cloud.role").as_deref(), Some("from-code"));
    assert_eq!(
        tag(&tags, "ai.cloud.roleInstance").as_deref(),
        Some("instance-from-code")
    );
    assert_eq!(tag(&tags, "ai.application.ver").as_deref(), Some("9.9"));
    // A malformed list is skipped entry by entry: the good ones still count.
    let tags = tags_with(
        &[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "garbage,service.name=%zz,service.version=2.0",
        )],
        Builder::new(),
    );
    assert_eq!(tag(&tags, "ai.application.ver").as_deref(), Some("2.0"));
    assert!(
        tag(&tags, "ai.cloud.role").is_some(),
        "the executable's name"
    );
}
