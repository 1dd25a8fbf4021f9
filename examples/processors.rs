//! Telemetry processors: query strings and SQL literals redacted, health
//! checks dropped, a property on every item.
//!
//! ```sh
//! cargo run --example processors
//! ```
//!
//! Without `APPLICATIONINSIGHTS_CONNECTION_STRING`, the items go to a small
//! ingestion endpoint this example runs on 127.0.0.1, which prints each item
//! as it arrives: the health check is missing, the URLs end in `?REDACTED`,
//! the SQL statement has `?` for its literals. With the variable set, the
//! same items go to your Application Insights resource.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use tracing_appinsights::processor::{Item, ItemKind};
use tracing_appinsights::Builder;
use tracing_subscriber::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let connection_string = match std::env::var(Builder::ENV_CONNECTION_STRING) {
        Ok(set) if !set.trim().is_empty() => set,
        _ => format!(
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://{}/",
            local_ingestion()?
        ),
    };
    let (layer, guard) = Builder::new()
        .with_connection_string(connection_string)
        .with_offline_storage(false)
        .with_property("deployment", "blue")
        .with_processor(drop_health_checks)
        .with_processor(redact)
        .build()?;
    tracing_subscriber::registry().with(layer).init();

    handle("/health", "http://shop.example/health", None);
    handle(
        "/orders/{id}",
        "https://shop.example/orders/7?customer=alice@example.com",
        Some("SELECT * FROM orders WHERE id = 7 AND owner = 'alice@example.com'"),
    );

    guard.flush(Duration::from_secs(10))?;
    let stats = guard.stats();
    println!(
        "exported {}, dropped by processors {}",
        stats.exported, stats.dropped_by_processor
    );
    guard.shutdown(Duration::from_secs(5))?;
    Ok(())
}

/// A request for `route`, which calls a payment API and, when given one,
/// runs a query.
fn handle(route: &str, url: &str, sql: Option<&str>) {
    let request = tracing::info_span!(
        "request",
        otel.kind = "server",
        http.request.method = "GET",
        http.route = route,
        url.full = url,
        http.response.status_code = 200,
    );
    request.in_scope(|| {
        let Some(sql) = sql else { return };
        tracing::info_span!(
            "load order",
            otel.kind = "client",
            db.system = "postgresql",
            db.query.text = sql,
        )
        .in_scope(|| {});
        tracing::info_span!(
            "charge",
            otel.kind = "client",
            http.request.method = "POST",
            url.full = "https://pay.example/v1/charges?api_key=sk_live_123",
            server.address = "pay.example",
        )
        .in_scope(|| {});
    });
}

/// Health checks are noise: never sent (counted as dropped by processor).
fn drop_health_checks(item: &mut Item<'_>) -> bool {
    !(item.kind() == ItemKind::Request && item.name() == Some("GET /health"))
}

/// Query strings out of URLs, literals out of SQL.
fn redact(item: &mut Item<'_>) -> bool {
    if let Some(url) = item.url().map(without_query) {
        item.set_url(url);
    }
    let redacted = match item.dependency_type() {
        Some("HTTP") => item.data().map(without_query),
        Some(_) => item.data().map(without_literals),
        None => None,
    };
    if let Some(data) = redacted {
        item.set_data(data);
    }
    true
}

/// `url` with its query string replaced by `REDACTED`.
fn without_query(url: &str) -> String {
    match url.split_once('?') {
        Some((path, _)) => format!("{path}?REDACTED"),
        None => url.to_owned(),
    }
}

/// `sql` with its string and number literals replaced by `?`.
fn without_literals(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            // To the closing quote ('' inside a literal closes and reopens).
            for c in chars.by_ref() {
                if c == '\'' {
                    break;
                }
            }
            out.push('?');
            in_word = false;
        } else if c.is_ascii_digit() && !in_word {
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_digit() || *c == '.')
            {
                chars.next();
            }
            out.push('?');
        } else {
            in_word = c.is_alphanumeric() || c == '_';
            out.push(c);
        }
    }
    out
}

// === a small ingestion endpoint on loopback, printing what it receives ===

/// Starts the endpoint; its address.
fn local_ingestion() -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = serve(stream);
            });
        }
    });
    Ok(addr)
}

/// Answers `POST /v2.1/track` requests on one connection until it closes.
fn serve(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let (mut length, mut gzip) = (0, false);
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse().unwrap_or(0),
                    "content-encoding" => gzip = value.eq_ignore_ascii_case("gzip"),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        if gzip {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain)?;
            body = plain;
        }
        let items: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
        for item in &items {
            print_item(item);
        }
        let answer = format!(
            r#"{{"itemsReceived":{n},"itemsAccepted":{n},"errors":[]}}"#,
            n = items.len()
        );
        write!(
            writer,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        )?;
    }
}

/// One line per item: its type, name, and the fields the processors touch.
fn print_item(item: &serde_json::Value) {
    let data = &item["data"]["baseData"];
    let kind = item["data"]["baseType"].as_str().unwrap_or("?");
    let text = |key: &str| data[key].as_str().unwrap_or("").to_owned();
    let detail = match kind {
        "RequestData" => format!("url={}", text("url")),
        "RemoteDependencyData" => format!("type={} data={}", text("type"), text("data")),
        _ => String::new(),
    };
    println!(
        "{kind} {:?} {detail} deployment={}",
        text("name"),
        data["properties"]["deployment"].as_str().unwrap_or("")
    );
}
