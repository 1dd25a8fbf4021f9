//! Proxies: an `http` endpoint through a forward proxy (absolute-form
//! requests, credentials from the URL), an `https` one through a CONNECT
//! tunnel, the environment's `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`, and
//! the proxy's password in no log line. The proxy is
//! [`RecordingProxy`], on loopback; so is everything it reaches.

use std::time::Duration;

use tracing_appinsights::Builder;
use tracing_subscriber::prelude::*;

use crate::support::child::own_process;
use crate::support::delivery::{emit, names, start};
use crate::support::diagnostics::Diagnostics;
use crate::support::proxy::RecordingProxy;
use crate::support::{connection_string, FakeIngestion};

/// `Basic base64("user:s3cret")`.
const BASIC_USER_S3CRET: &str = "Basic dXNlcjpzM2NyZXQ=";

fn builder(endpoint: &str) -> Builder {
    Builder::new()
        .with_connection_string(connection_string(endpoint))
        .with_offline_storage(false)
        .with_export_interval(Duration::from_secs(3600))
}

#[test]
fn an_http_endpoint_goes_through_the_proxy_in_absolute_form_with_its_credentials() {
    let server = FakeIngestion::start();
    let proxy = RecordingProxy::start();
    let (dispatch, guard) =
        start(builder(&server.endpoint()).with_proxy(proxy.url_with("user", "s3cret")));
    emit(&dispatch, "p", 0..3);
    guard.flush(Duration::from_secs(10)).unwrap();
    let asked = proxy.requests();
    assert_eq!(
        asked[0].line,
        format!("POST {}/v2.1/track HTTP/1.1", server.endpoint()),
        "{asked:?}"
    );
    assert_eq!(
        asked[0].header("proxy-authorization"),
        Some(BASIC_USER_S3CRET)
    );
    assert_eq!(names(&server.envelopes()), ["p-0", "p-1", "p-2"]);
    guard.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn an_https_endpoint_goes_through_a_connect_tunnel() {
    let proxy = RecordingProxy::start();
    // Never resolved here: the tunnel asks the proxy for it, and this
    // proxy refuses every host outside loopback.
    let (dispatch, guard) = start(
        builder("https://ingestion.tunnel-test.invalid")
            .with_proxy(proxy.url_with("user", "s3cret"))
            .with_request_timeout(Duration::from_secs(5)),
    );
    emit(&dispatch, "t", 0..1);
    let _ = guard.flush(Duration::from_secs(2));
    let asked = proxy.requests();
    assert!(!asked.is_empty(), "the proxy was asked");
    assert_eq!(
        asked[0].line, "CONNECT ingestion.tunnel-test.invalid:443 HTTP/1.1",
        "{asked:?}"
    );
    assert_eq!(
        asked[0].header("proxy-authorization"),
        Some(BASIC_USER_S3CRET)
    );
    let stats = guard.stats();
    assert_eq!(stats.exported, 0);
    assert!(stats.requests >= 1 && stats.balances(), "{stats:?}");
    guard.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn the_environment_names_the_proxy_and_no_proxy_and_code_win() {
    let Some(_own_process) = own_process(
        module_path!(),
        "the_environment_names_the_proxy_and_no_proxy_and_code_win",
    ) else {
        return;
    };
    for name in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        std::env::remove_var(name);
    }
    let diagnostics = Diagnostics::default();
    tracing_subscriber::registry()
        .with(diagnostics.clone())
        .try_init()
        .unwrap();
    let server = FakeIngestion::start();
    let proxy = RecordingProxy::start();
    let send = |builder: Builder, prefix: &str| {
        let (dispatch, guard) = start(builder);
        emit(&dispatch, prefix, 0..1);
        guard.flush(Duration::from_secs(10)).unwrap();
        guard.shutdown(Duration::from_secs(5)).unwrap();
    };

    // http_proxy (lower case) for an http endpoint, with credentials.
    std::env::set_var("http_proxy", proxy.url_with("user", "s3cret"));
    send(builder(&server.endpoint()), "env");
    assert_eq!(proxy.requests().len(), 1, "through the environment's proxy");
    let configured = diagnostics.with("Exporter.Configured");
    assert!(
        configured[0]
            .1
            .contains(&format!("through the proxy {}", proxy.url())),
        "{configured:?}"
    );

    // NO_PROXY names the endpoint's host: straight to it.
    std::env::set_var("NO_PROXY", "127.0.0.1");
    send(builder(&server.endpoint()), "no-proxy");
    assert_eq!(proxy.requests().len(), 1, "not through the proxy");
    std::env::remove_var("NO_PROXY");

    // Code beats the environment: without_proxy.
    send(builder(&server.endpoint()).without_proxy(), "direct");
    assert_eq!(proxy.requests().len(), 1, "not through the proxy");
    let arrived = names(&server.envelopes());
    assert_eq!(arrived, ["env-0", "no-proxy-0", "direct-0"]);

    // A proxy that refuses: the failure is reported, its password never.
    let refusing = RecordingProxy::answering(407);
    send(
        builder(&server.endpoint())
            .with_proxy(refusing.url_with("user", "s3cret"))
            .with_request_timeout(Duration::from_secs(2)),
        "refused",
    );
    assert!(!refusing.requests().is_empty());
    let all = diagnostics.all();
    assert!(all.iter().any(|(_, m)| m.contains("407")), "{all:?}");
    assert!(
        all.iter()
            .all(|(_, m)| !m.contains("s3cret") && !m.contains(BASIC_USER_S3CRET)),
        "no proxy password in the logs: {all:?}"
    );
    std::env::remove_var("http_proxy");
}

#[test]
fn an_unusable_proxy_is_a_build_error_without_its_password() {
    let err = builder("https://example.invalid")
        .with_proxy("socks5://user:s3cret@127.0.0.1:1080")
        .build::<tracing_subscriber::Registry>()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("socks5://127.0.0.1:1080"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}
