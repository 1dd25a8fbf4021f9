//! Two services as a new user would write them, each in its own process:
//! `frontend`, an axum service, calls `orders`, an actix-web service,
//! through reqwest; `orders` reads its stock with sqlx (SQLite in memory).
//! Both set up tracing as the README does (`RUST_LOG` for the console, plus
//! `targets::DIRECTIVES` for Application Insights, per-layer filters), so
//! even `RUST_LOG=full_stack=debug` keeps the whole transaction.
//!
//! ```sh
//! RUST_LOG=full_stack=debug cargo run --example full_stack --features axum,reqwest,actix-web
//! ```
//!
//! One request, `GET /checkout/42`, is one operation: Request(frontend) →
//! HTTP dependency (frontend → orders) → Request(orders) → SQL dependency,
//! with each service's log lines as traces, all under one
//! `ai.operation.id`, and within each service one `ai.operation.name`
//! (`GET /checkout/{item}`, `GET /stock/{item}`). With
//! `APPLICATIONINSIGHTS_CONNECTION_STRING` set, the portal shows it as one
//! end-to-end transaction and the application map draws frontend → orders
//! → SQL; without it, each process prints its records to stdout.
//!
//! The program is the frontend; it starts `orders` as a child process
//! (itself, with the argument `orders`), sends the one request, and stops
//! both, each flushing its exporter.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use tracing_appinsights::{targets, Builder, ExporterGuard};
use tracing_subscriber::{prelude::*, EnvFilter};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What `orders` prints first: the address it listens on.
const LISTENING: &str = "orders listening on ";

fn main() -> Result<(), BoxError> {
    match std::env::args().nth(1).as_deref() {
        Some("orders") => orders::run(),
        _ => frontend::run(),
    }
}

/// The README's setup: the console shows what `RUST_LOG` asks (default
/// `info`); Application Insights gets that plus the instrumentation's
/// targets.
fn telemetry(role: &str) -> Result<ExporterGuard, BoxError> {
    let (appinsights, guard) = Builder::new().with_cloud_role(role).build()?;
    let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let exported = format!("{rust_log},{}", targets::DIRECTIVES);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(EnvFilter::new(&rust_log)),
        )
        .with(appinsights.with_filter(EnvFilter::new(exported)))
        .init();
    Ok(guard)
}

mod frontend {
    use super::*;
    use axum::extract::{Path, State};
    use axum::routing::get;
    use axum::Router;
    use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
    use tracing_appinsights::reqwest::AppInsightsMiddleware;
    use tracing_appinsights::tower::ServerLayer;

    #[derive(Clone)]
    struct App {
        orders: String,
        client: ClientWithMiddleware,
    }

    /// `GET /checkout/{item}`: asks `orders` for the item's stock.
    async fn checkout(State(app): State<App>, Path(item): Path<u32>) -> String {
        tracing::info!(item, "checking out");
        let url = format!("{}/stock/{item}", app.orders);
        let stock = match app.client.get(url).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(error) => {
                tracing::error!(%error, "orders unreachable");
                return "orders unreachable".into();
            }
        };
        tracing::info!(%stock, "stock known");
        format!("item {item}: {stock}")
    }

    pub fn run() -> Result<(), BoxError> {
        let guard = telemetry("frontend")?;
        // `orders`, in a process of its own; the first line it prints is
        // its address, the rest (its records, without a connection string)
        // is passed through.
        let mut child = Command::new(std::env::current_exe()?)
            .arg("orders")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let orders = loop {
            let line = lines.next().ok_or("orders exited before listening")??;
            if let Some(addr) = line.strip_prefix(LISTENING) {
                break format!("http://{addr}");
            }
            println!("{line}");
        };
        let passthrough = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                println!("{line}");
            }
        });

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let answer = runtime.block_on(async {
            let client = ClientBuilder::new(reqwest::Client::new())
                .with(AppInsightsMiddleware::new())
                .build();
            let app = Router::new()
                .route("/checkout/{item}", get(checkout))
                .with_state(App { orders, client })
                .layer(ServerLayer::new());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            tokio::spawn(async move { axum::serve(listener, app).await });
            // The one request, from outside any service (no trace context).
            let answer = reqwest::get(format!("http://{addr}/checkout/42"))
                .await?
                .text()
                .await?;
            Ok::<_, BoxError>(answer)
        })?;
        println!("frontend answered: {answer}");
        runtime.shutdown_timeout(Duration::from_secs(1));

        // Closing its stdin stops `orders`, which flushes its exporter.
        drop(child.stdin.take());
        let status = child.wait()?;
        let _ = passthrough.join();
        guard.shutdown(Duration::from_secs(10))?;
        if !status.success() {
            return Err(format!("orders exited with {status}").into());
        }
        Ok(())
    }
}

mod orders {
    use super::*;
    use actix_web::{web, App, HttpResponse, HttpServer};
    use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
    use tracing::Instrument;
    use tracing_appinsights::actix_web::RequestTracing;

    /// `GET /stock/{item}`: reads the item's stock from the database.
    async fn stock(pool: web::Data<SqlitePool>, item: web::Path<i64>) -> HttpResponse {
        let item = item.into_inner();
        let quantity: Option<i64> =
            match sqlx::query_scalar("SELECT quantity FROM stock WHERE item = ?")
                .bind(item)
                .fetch_optional(pool.get_ref())
                .await
            {
                Ok(quantity) => quantity,
                Err(error) => {
                    tracing::error!(%error, "stock unreadable");
                    return HttpResponse::InternalServerError().finish();
                }
            };
        // A `log` record: through tracing-log, a trace like the others.
        log::info!("stock of item {item}: {quantity:?}");
        match quantity {
            Some(quantity) => HttpResponse::Ok().body(format!("{quantity} in stock")),
            None => HttpResponse::NotFound().body("unknown item"),
        }
    }

    pub fn run() -> Result<(), BoxError> {
        let guard = telemetry("orders")?;
        actix_web::rt::System::new().block_on(async {
            // Start-up work (the connection's own statements included) is
            // an operation of its own.
            let pool = async {
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect("sqlite::memory:")
                    .await?;
                sqlx::query("CREATE TABLE stock (item INTEGER PRIMARY KEY, quantity INTEGER)")
                    .execute(&pool)
                    .await?;
                sqlx::query("INSERT INTO stock (item, quantity) VALUES (42, 7)")
                    .execute(&pool)
                    .await?;
                Ok::<_, sqlx::Error>(pool)
            }
            .instrument(tracing::info_span!("start-up"))
            .await?;

            let data = web::Data::new(pool);
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            let addr: SocketAddr = listener.local_addr()?;
            let server = HttpServer::new(move || {
                App::new()
                    .wrap(RequestTracing::new())
                    .app_data(data.clone())
                    .route("/stock/{item}", web::get().to(stock))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)?
            .run();
            let handle = server.handle();
            println!("{LISTENING}{addr}");
            std::io::stdout().flush()?;
            // Stop when the frontend closes our stdin.
            std::thread::spawn(move || {
                let _ = std::io::stdin().lines().count();
                actix_web::rt::System::new().block_on(handle.stop(true));
            });
            server.await?;
            Ok::<_, BoxError>(())
        })?;
        guard.shutdown(Duration::from_secs(10))?;
        Ok(())
    }
}
