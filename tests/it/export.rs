//! The Application Insights sink on the wire: connection reuse, gzip on and
//! off, and request bodies bounded in size.

use std::time::Duration;

use crate::support::FakeIngestion;
use tracing_appinsights::Builder;
use tracing_subscriber::prelude::*;

fn run(
    builder: Builder,
    server: &FakeIngestion,
    f: impl FnOnce(&tracing_appinsights::ExporterGuard),
) {
    let (layer, guard) = builder
        .with_connection_string(server.connection_string())
        // Storage is not under test here: no blob from another run may leak in.
        .with_offline_storage(false)
        .build()
        .unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || f(&guard));
    guard.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn batches_reuse_one_keep_alive_connection() {
    let server = FakeIngestion::start();
    run(Builder::new(), &server, |guard| {
        for _ in 0..3 {
            tracing::info_span!("s").in_scope(|| {});
            guard.flush(Duration::from_secs(10)).unwrap();
        }
    });
    assert_eq!(server.requests().len(), 3);
    assert_eq!(server.connections_accepted(), 1);
}

#[test]
fn gzip_can_be_turned_off() {
    let server = FakeIngestion::start();
    run(Builder::new().with_gzip(false), &server, |_| {
        tracing::info_span!("plain").in_scope(|| {});
    });
    let request = &server.requests()[0];
    assert_eq!(request.header("content-encoding"), None);
    assert_eq!(request.raw_body, request.body);
    assert_eq!(request.envelopes.len(), 1);
    assert_eq!(request.header("content-type"), Some("application/json"));
}

#[test]
fn gzip_is_on_by_default_and_decodes() {
    let server = FakeIngestion::start();
    run(Builder::new(), &server, |_| {
        tracing::info_span!("zipped").in_scope(|| {});
    });
    let request = &server.requests()[0];
    assert_eq!(request.header("content-encoding"), Some("gzip"));
    assert_eq!(&request.raw_body[..2], &[0x1f, 0x8b], "gzip magic");
    assert_eq!(request.envelopes[0]["data"]["baseData"]["name"], "zipped");
}

#[test]
fn large_batches_are_split_into_bodies_of_about_one_mebibyte() {
    let server = FakeIngestion::start();
    let big = "x".repeat(8000);
    run(Builder::new().with_max_batch_size(512), &server, |_| {
        for _ in 0..500 {
            tracing::info_span!("big", a = big.as_str(), b = big.as_str()).in_scope(|| {});
        }
    });
    let requests = server.requests();
    assert!(requests.len() >= 8, "{} requests", requests.len());
    for r in &requests {
        assert!(
            r.body.len() <= 1024 * 1024,
            "a body of {} bytes",
            r.body.len()
        );
    }
    let total: usize = requests.iter().map(|r| r.envelopes.len()).sum();
    assert_eq!(total, 500);
}
