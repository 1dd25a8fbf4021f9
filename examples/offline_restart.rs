//! Offline storage across process restarts: produce spans, optionally wait
//! until the storage directory is empty (everything stored earlier was
//! sent), shut down, and print the exporter's counters.
//!
//! Run it once against an endpoint that refuses connections: the spans are
//! stored at shutdown. Run it again against a healthy endpoint with
//! `--spans=0 --drain-secs=10`: the stored spans are read back and sent.
//! `tests/offline_storage.rs` does exactly that.
//!
//! ```sh
//! dir=$(mktemp -d)/storage
//! cargo run --example offline_restart -- --endpoint=http://127.0.0.1:9 --dir=$dir --spans=100
//! ls $dir
//! ```
//!
//! Options: `--endpoint=URL` (required), `--dir=PATH` (required),
//! `--spans=N` (default 100), `--prefix=NAME` (span names are
//! `NAME-0` … `NAME-{N-1}`, default `span`), `--batch=N` (default 512),
//! `--drain-secs=S` (wait up to S seconds for the directory to be empty,
//! default 0), `--shutdown-ms=MS` (default 2000).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing_subscriber::prelude::*;

struct Args {
    endpoint: String,
    dir: PathBuf,
    spans: usize,
    prefix: String,
    batch: usize,
    drain: Duration,
    shutdown: Duration,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        endpoint: String::new(),
        dir: PathBuf::new(),
        spans: 100,
        prefix: "span".into(),
        batch: 512,
        drain: Duration::ZERO,
        shutdown: Duration::from_secs(2),
    };
    for arg in std::env::args().skip(1) {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("expected --key=value, got {arg}"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{key}: {e}"));
        match key {
            "--endpoint" => args.endpoint = value.to_owned(),
            "--dir" => args.dir = value.into(),
            "--spans" => args.spans = number()? as usize,
            "--prefix" => args.prefix = value.to_owned(),
            "--batch" => args.batch = number()? as usize,
            "--drain-secs" => args.drain = Duration::from_secs(number()?),
            "--shutdown-ms" => args.shutdown = Duration::from_millis(number()?),
            _ => return Err(format!("unknown option {key}")),
        }
    }
    if args.endpoint.is_empty() || args.dir.as_os_str().is_empty() {
        return Err("--endpoint and --dir are required".into());
    }
    Ok(args)
}

/// Whether the storage directory holds a blob (leased or not).
fn has_blobs(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".blob") || name.ends_with(".lock")
        })
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse().map_err(|e| format!("offline_restart: {e}"))?;
    let (layer, guard) = tracing_appinsights::Builder::new()
        .with_connection_string(format!(
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={}",
            args.endpoint
        ))
        .with_storage_dir(&args.dir)
        .with_max_batch_size(args.batch)
        .with_export_interval(Duration::from_millis(100))
        .with_request_timeout(Duration::from_secs(2))
        .with_connect_timeout(Duration::from_millis(500))
        .build()?;
    tracing_subscriber::registry().with(layer).init();

    for i in 0..args.spans {
        let name = format!("{}-{i}", args.prefix);
        tracing::info_span!("span", otel.name = name.as_str()).in_scope(|| {});
    }
    if !args.drain.is_zero() {
        guard.flush(Duration::from_secs(5))?;
        let deadline = Instant::now() + args.drain;
        while has_blobs(&args.dir) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    guard.shutdown(args.shutdown)?;
    let s = guard.stats();
    println!(
        "queued={} exported={} stored={} read_back={} retried={} dropped={} balances={}",
        s.queued,
        s.exported,
        s.stored,
        s.read_back,
        s.retried,
        s.dropped(),
        s.balances()
    );
    Ok(())
}
