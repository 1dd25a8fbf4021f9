//! How a real service writes its spans: a server span with HTTP fields, an
//! outgoing HTTP dependency, a database call, a log event and an error.
//!
//! ```sh
//! cargo run --example web_request                     # records on stdout
//! APPLICATIONINSIGHTS_CONNECTION_STRING='InstrumentationKey=…' cargo run --example web_request
//! ```
//!
//! In Application Insights this is one end-to-end transaction: a Request
//! `POST /orders/{id}` (failed: 502) with an HTTP dependency to
//! `payments.example`, a PostgreSQL dependency `db.internal | shop`, a trace
//! message and an exception.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use tracing::{field, info_span, instrument, Span};
use tracing_subscriber::prelude::*;

#[derive(Debug)]
struct PaymentDeclined {
    source: std::io::Error,
}

impl fmt::Display for PaymentDeclined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the payment provider declined the charge")
    }
}

impl Error for PaymentDeclined {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

/// A database call: `db.*` fields make it a SQL dependency.
#[instrument(
    name = "SELECT orders",
    fields(otel.kind = "client", db.system = "postgresql", db.namespace = "shop",
           server.address = "db.internal", db.query.text = "SELECT * FROM orders WHERE id = $1")
)]
fn load_order(id: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(3));
    4_200 // the order's total, in cents
}

/// An outgoing HTTP call: the client span's fields say where it went.
fn charge(total: u64) -> Result<(), PaymentDeclined> {
    let span = info_span!(
        "POST",
        otel.kind = "client",
        http.request.method = "POST",
        url.full = "https://payments.example/v1/charges",
        server.address = "payments.example",
        http.response.status_code = field::Empty,
        amount = total,
    );
    let _entered = span.enter();
    std::thread::sleep(Duration::from_millis(8));
    span.record("http.response.status_code", 402_u64);
    Err(PaymentDeclined {
        source: std::io::Error::other("card expired"),
    })
}

/// The incoming request: a server span with the HTTP semantic fields.
fn handle_checkout(order_id: u64) -> u16 {
    let span = info_span!(
        "checkout",
        otel.kind = "server",
        http.request.method = "POST",
        http.route = "/orders/{id}",
        url.full = format!("https://shop.example/orders/{order_id}"),
        client.address = "203.0.113.9",
        user_agent.original = "Mozilla/5.0",
        http.response.status_code = field::Empty,
    );
    let _entered = span.enter();
    let total = load_order(order_id);
    tracing::info!(order_id, total, "order loaded");
    let status = match charge(total) {
        Ok(()) => 200,
        Err(error) => {
            tracing::error!(error = &error as &dyn Error, "checkout failed");
            502
        }
    };
    Span::current().record("http.response.status_code", status);
    status
}

fn main() -> Result<(), Box<dyn Error>> {
    let (layer, guard) = tracing_appinsights::Builder::new()
        .with_cloud_role("shop-frontend")
        .build()?;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(layer)
        .init();

    let status = handle_checkout(42);
    eprintln!("answered {status}");

    guard.shutdown(Duration::from_secs(10))?;
    Ok(())
}
