//! Live Metrics end to end: runs the crate's `live_metrics` example
//! against a fake ingestion server and a fake Live Metrics service that is
//! always subscribed, once keeping every trace and once at 1 % sampling,
//! and checks what the service was shown against what the example says it
//! generated:
//!
//! - posts at 1 Hz (±10 %) over the run;
//! - request, dependency and exception counts exact (each post's rate times
//!   the interval it covers, summed), at both samplings;
//! - mean request and dependency durations within 1 ms;
//! - with every trace kept, a document for every failed request, failed
//!   dependency and exception, and every item delivered to ingestion.
//!
//! It prints one line per run and exits non-zero on any miss.
//!
//! ```sh
//! cargo build --release --example live_metrics
//! cargo run --release -p tracing-appinsights-load --bin live -- target/release/examples/live_metrics 30
//! ```

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Deserialize;
use tracing_appinsights_load::live::{FakeLive, Post};
use tracing_appinsights_load::{connection_string, counting_ingestion};

/// The standard metrics checked (names as on the wire).
const REQUESTS: &str = "\\ApplicationInsights\\Requests/Sec";
const REQUESTS_FAILED: &str = "\\ApplicationInsights\\Requests Failed/Sec";
const REQUEST_DURATION: &str = "\\ApplicationInsights\\Request Duration";
const DEPENDENCIES: &str = "\\ApplicationInsights\\Dependency Calls/Sec";
const DEPENDENCIES_FAILED: &str = "\\ApplicationInsights\\Dependency Calls Failed/Sec";
const DEPENDENCY_DURATION: &str = "\\ApplicationInsights\\Dependency Call Duration";
const EXCEPTIONS: &str = "\\ApplicationInsights\\Exceptions/Sec";

/// What the example says it generated (its `traffic:` line).
#[derive(Debug, Deserialize)]
struct Traffic {
    requests: u64,
    requests_failed: u64,
    request_ms: f64,
    dependencies: u64,
    dependencies_failed: u64,
    dependency_ms: f64,
    exceptions: u64,
}

/// What the posts add up to.
#[derive(Debug, Default)]
struct Shown {
    requests: f64,
    requests_failed: f64,
    request_ms: f64,
    dependencies: f64,
    dependencies_failed: f64,
    dependency_ms: f64,
    exceptions: f64,
    request_documents: u64,
    dependency_documents: u64,
    exception_documents: u64,
}

impl Shown {
    /// Each post's rates times the seconds since the previous post (by
    /// the client's transmission times); the first post covers the time
    /// before the example's traffic starts.
    fn of(posts: &[Post]) -> Shown {
        let mut shown = Shown::default();
        for pair in posts.windows(2) {
            let post = &pair[1];
            let seconds = post.ticks.saturating_sub(pair[0].ticks) as f64 / 1e7;
            let requests = post.metric(REQUESTS) * seconds;
            let dependencies = post.metric(DEPENDENCIES) * seconds;
            shown.requests += requests;
            shown.requests_failed += post.metric(REQUESTS_FAILED) * seconds;
            shown.request_ms += post.metric(REQUEST_DURATION) * requests;
            shown.dependencies += dependencies;
            shown.dependencies_failed += post.metric(DEPENDENCIES_FAILED) * seconds;
            shown.dependency_ms += post.metric(DEPENDENCY_DURATION) * dependencies;
            shown.exceptions += post.metric(EXCEPTIONS) * seconds;
        }
        for document in posts.iter().flat_map(Post::documents) {
            match document["DocumentType"].as_str() {
                Some("Request") => shown.request_documents += 1,
                Some("RemoteDependency") => shown.dependency_documents += 1,
                Some("Exception") => shown.exception_documents += 1,
                _ => {}
            }
        }
        shown
    }
}

/// One run of the example; the problems found (none: passed).
fn run(example: &str, seconds: u64, probability: f64) -> Result<Vec<String>, String> {
    let received = Arc::new(AtomicU64::new(0));
    let ingestion = counting_ingestion(Arc::clone(&received));
    let live = FakeLive::start();
    let output = Command::new(example)
        .args([seconds.to_string(), probability.to_string()])
        .env(
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            format!(
                "{};LiveEndpoint={}",
                connection_string(ingestion),
                live.endpoint()
            ),
        )
        .env_remove("RUST_LOG")
        .output()
        .map_err(|e| format!("could not run {example}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let traffic = stdout
        .lines()
        .find_map(|l| l.strip_prefix("traffic: "))
        .ok_or_else(|| {
            format!(
                "the example printed no traffic line ({}); its stderr:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let traffic: Traffic =
        serde_json::from_str(traffic).map_err(|e| format!("bad traffic line: {e}"))?;
    let posts = live.posts();
    let shown = Shown::of(&posts);
    let mut problems = Vec::new();

    let (first, last) = match (posts.first(), posts.last()) {
        (Some(first), Some(last)) if posts.len() > 2 => (first, last),
        _ => return Err(format!("only {} posts arrived", posts.len())),
    };
    let span = last.at.duration_since(first.at).as_secs_f64();
    let hz = (posts.len() - 1) as f64 / span;
    let first_requests = first.metric(REQUESTS);
    if first_requests != 0.0 {
        problems.push(format!(
            "the first post already counted requests ({first_requests}/s): traffic began before \
             Live Metrics was watching"
        ));
    }
    if !(0.9..=1.1).contains(&hz) {
        problems.push(format!("posts at {hz:.3} Hz, not 1 Hz ±10 %"));
    }
    let mut exact = |what: &str, generated: u64, shown: f64| {
        if generated as f64 - shown.round() != 0.0 {
            problems.push(format!("{what}: generated {generated}, shown {shown:.3}"));
        }
    };
    exact("requests", traffic.requests, shown.requests);
    exact(
        "failed requests",
        traffic.requests_failed,
        shown.requests_failed,
    );
    exact("dependencies", traffic.dependencies, shown.dependencies);
    exact(
        "failed dependencies",
        traffic.dependencies_failed,
        shown.dependencies_failed,
    );
    exact("exceptions", traffic.exceptions, shown.exceptions);
    let mean = |ms: f64, n: f64| if n > 0.0 { ms / n } else { 0.0 };
    let request_mean = (
        mean(traffic.request_ms, traffic.requests as f64),
        mean(shown.request_ms, shown.requests),
    );
    let dependency_mean = (
        mean(traffic.dependency_ms, traffic.dependencies as f64),
        mean(shown.dependency_ms, shown.dependencies),
    );
    for (what, (generated, shown)) in [
        ("mean request duration", request_mean),
        ("mean dependency duration", dependency_mean),
    ] {
        if (generated - shown).abs() > 1.0 {
            problems.push(format!(
                "{what}: generated {generated:.3} ms, shown {shown:.3} ms"
            ));
        }
    }
    let items = traffic.requests + traffic.dependencies + traffic.exceptions;
    let received = received.load(Ordering::Relaxed);
    if probability == 1.0 {
        let documents = [
            (
                "failed requests",
                traffic.requests_failed,
                shown.request_documents,
            ),
            (
                "failed dependencies",
                traffic.dependencies_failed,
                shown.dependency_documents,
            ),
            ("exceptions", traffic.exceptions, shown.exception_documents),
        ];
        for (what, generated, documents) in documents {
            if generated != documents {
                problems.push(format!("{what}: {generated}, documents {documents}"));
            }
        }
        if received != items {
            problems.push(format!("ingestion received {received} items of {items}"));
        }
    }
    println!(
        "sampling {probability}: {} posts over {span:.1} s ({hz:.3} Hz), {} pings; requests {} \
         (shown {:.2}), failed {} ({:.2}), mean {:.3} ms ({:.3}); dependencies {} ({:.2}), \
         failed {} ({:.2}), mean {:.3} ms ({:.3}); exceptions {} ({:.2}); documents {}/{}/{}; \
         ingestion received {received} items",
        posts.len(),
        live.pings(),
        traffic.requests,
        shown.requests,
        traffic.requests_failed,
        shown.requests_failed,
        request_mean.0,
        request_mean.1,
        traffic.dependencies,
        shown.dependencies,
        traffic.dependencies_failed,
        shown.dependencies_failed,
        dependency_mean.0,
        dependency_mean.1,
        traffic.exceptions,
        shown.exceptions,
        shown.request_documents,
        shown.dependency_documents,
        shown.exception_documents,
    );
    Ok(problems)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let example = args
        .next()
        .unwrap_or_else(|| "target/release/examples/live_metrics".to_owned());
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let mut failed = false;
    for probability in [1.0, 0.01] {
        match run(&example, seconds, probability) {
            Ok(problems) => {
                for problem in &problems {
                    eprintln!("sampling {probability}: {problem}");
                }
                failed |= !problems.is_empty();
            }
            Err(err) => {
                eprintln!("sampling {probability}: {err}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
