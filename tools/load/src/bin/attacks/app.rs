//! The application under attack: a child process (this binary with
//! `--app CONFIG`) that builds an exporter with the crate's public API and
//! obeys commands, one a line on its stdin, answering each with one JSON
//! line on its stdout. [`App`] is the parent's handle on it.
//!
//! | command | does | answers |
//! |---|---|---|
//! | `produce N RATE` | N spans (one item each) at RATE a second | `produced` (in all), `peak_rss_mib` |
//! | `stats` | | `stats` |
//! | `flush MS` | `ExporterGuard::flush` | `flushed`, `stats` |
//! | `shutdown MS` | `ExporterGuard::shutdown`, then exits | `shutdown_ms`, `timed_out`, `stats`, `peak_rss_mib` |

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing_appinsights::ExporterStats;
use tracing_appinsights_load::{connection_string, peak_rss_mib};
use tracing_subscriber::prelude::*;

/// The span field holding an item's id, unique in a scenario: the
/// application's number times 2^32 plus the item's rank in it.
pub const ID_FIELD: &str = "attack_id";

/// The id of the `n`th item of application `process`.
pub fn item_id(process: u64, n: u64) -> u64 {
    process << 32 | n
}

/// How the application builds its exporter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppConfig {
    pub endpoint: SocketAddr,
    pub storage: PathBuf,
    /// Its number in the scenario (the high half of its item ids).
    pub process: u64,
    pub request_timeout_ms: Option<u64>,
    pub max_retry_memory: Option<usize>,
    pub storage_max_size: Option<u64>,
}

impl AppConfig {
    /// Application `process` sending to `endpoint`, storing in `storage`,
    /// with the crate's defaults otherwise.
    pub fn new(endpoint: SocketAddr, storage: impl Into<PathBuf>, process: u64) -> Self {
        AppConfig {
            endpoint,
            storage: storage.into(),
            process,
            request_timeout_ms: None,
            max_retry_memory: None,
            storage_max_size: None,
        }
    }
}

/// The `dropped_*` counters of `ExporterStats` that count parts of items
/// (outside the balance), not items.
const PARTS: [&str; 3] = [
    "dropped_attributes",
    "dropped_links",
    "dropped_message_events",
];

/// `ExporterStats` as the child reports them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    pub queued: u64,
    pub in_queue: u64,
    pub in_memory: u64,
    pub exported: u64,
    pub stored: u64,
    pub read_back: u64,
    pub dropped_queue_full: u64,
    pub dropped_after_shutdown: u64,
    /// `ExporterStats::dropped()`: the items the worker dropped.
    pub dropped_by_worker: u64,
    /// Every `dropped_*` counter of items by name, read from the
    /// `ExporterStats` `Debug` output, so that a counter added to the crate
    /// is shown by its name too.
    pub drops: BTreeMap<String, u64>,
    /// `ExporterStats::balances()`.
    pub balances: bool,
}

impl Stats {
    fn of(s: &ExporterStats) -> Self {
        let debug = format!("{s:?}");
        let drops = debug
            .split(['{', ',', '}'])
            .filter_map(|field| field.split_once(':'))
            .filter_map(|(name, n)| Some((name.trim(), n.trim().parse().ok()?)))
            .filter(|(name, _)| name.starts_with("dropped_") && !PARTS.contains(name))
            .map(|(name, n)| (name.to_owned(), n))
            .collect();
        Stats {
            queued: s.queued,
            in_queue: s.in_queue,
            in_memory: s.in_memory,
            exported: s.exported,
            stored: s.stored,
            read_back: s.read_back,
            dropped_queue_full: s.dropped_queue_full,
            dropped_after_shutdown: s.dropped_after_shutdown,
            dropped_by_worker: s.dropped(),
            drops,
            balances: s.balances(),
        }
    }

    /// Every item dropped, before the queue or by the worker.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_after_shutdown + self.dropped_by_worker
    }

    /// The drop counter `name` (0 when the crate has none of that name).
    pub fn drop(&self, name: &str) -> u64 {
        self.drops.get(name).copied().unwrap_or(0)
    }

    /// The drops for want of storage (`dropped_storage_full`, and any
    /// other `dropped_storage_*`).
    pub fn dropped_for_storage(&self) -> u64 {
        self.drops
            .iter()
            .filter(|(name, _)| name.starts_with("dropped_storage"))
            .map(|(_, n)| n)
            .sum()
    }

    /// What this exporter left in storage (`stored - read_back`; negative
    /// when it read back more than it stored).
    pub fn left_in_storage(&self) -> i64 {
        self.stored as i64 - self.read_back as i64
    }
}

// === the child ===

/// The child's main: `--app CONFIG` (JSON).
pub fn run(config: &str) -> Result<(), Box<dyn std::error::Error>> {
    let config: AppConfig = serde_json::from_str(config)?;
    let mut builder = tracing_appinsights::Builder::new()
        .with_connection_string(connection_string(config.endpoint))
        // Whatever the environment's proxy variables say: loopback only.
        .without_proxy()
        .with_storage_dir(&config.storage);
    if let Some(ms) = config.request_timeout_ms {
        builder = builder.with_request_timeout(Duration::from_millis(ms));
    }
    if let Some(bytes) = config.max_retry_memory {
        builder = builder.with_max_retry_memory(bytes);
    }
    if let Some(bytes) = config.storage_max_size {
        builder = builder.with_storage_max_size(bytes);
    }
    let (layer, guard) = builder.build()?;
    tracing_subscriber::registry().with(layer).init();
    let mut produced = 0_u64;
    let peak = || peak_rss_mib().unwrap_or(f64::NAN);
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let ms = |word: &str| Duration::from_millis(word.parse().unwrap_or(0));
        let reply = match words[..] {
            ["produce", n, rate] => {
                let (n, rate) = (n.parse()?, rate.parse()?);
                produce(config.process, &mut produced, n, rate);
                json!({ "produced": produced, "peak_rss_mib": peak() })
            }
            ["stats"] => json!({ "stats": Stats::of(&guard.stats()) }),
            ["flush", timeout] => {
                let flushed = guard.flush(ms(timeout)).is_ok();
                json!({ "flushed": flushed, "stats": Stats::of(&guard.stats()) })
            }
            ["shutdown", timeout] => {
                let started = Instant::now();
                let result = guard.shutdown(ms(timeout));
                let took = started.elapsed();
                let reply = json!({
                    "shutdown_ms": took.as_secs_f64() * 1000.0,
                    "timed_out": result.is_err(),
                    "stats": Stats::of(&guard.stats()),
                    "peak_rss_mib": peak(),
                });
                println!("{reply}");
                return Ok(());
            }
            _ => return Err(format!("unknown command {line:?}").into()),
        };
        println!("{reply}");
    }
    Ok(())
}

/// Produces `n` spans at `rate` a second, in 1 ms slices.
fn produce(process: u64, produced: &mut u64, n: u64, rate: u64) {
    let per_slice = (rate / 1000).max(1);
    let started = Instant::now();
    let mut slice = 0;
    let end = *produced + n;
    while *produced < end {
        for _ in 0..per_slice.min(end - *produced) {
            tracing::info_span!("attack", attack_id = item_id(process, *produced)).in_scope(|| {});
            *produced += 1;
        }
        slice += 1;
        let next = started + Duration::from_millis(slice);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

// === the parent's handle ===

/// A running application.
pub struct App {
    child: Child,
    stdin: ChildStdin,
    replies: mpsc::Receiver<String>,
    pub config: AppConfig,
    /// Items produced so far.
    pub produced: u64,
    /// Its peak RSS as last reported.
    pub peak_rss_mib: f64,
}

/// How an application ended.
#[derive(Clone, Debug)]
pub struct Ended {
    pub process: u64,
    pub produced: u64,
    pub stats: Stats,
    /// How long `shutdown(timeout)` took, and the timeout.
    pub shutdown_ms: f64,
    pub shutdown_timeout_ms: u64,
    pub timed_out: bool,
    pub peak_rss_mib: f64,
}

impl App {
    /// Starts the application.
    pub fn start(config: AppConfig) -> Result<App, String> {
        let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .arg("--app")
            .arg(serde_json::to_string(&config).map_err(|e| e.to_string())?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the application: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(App {
            child,
            stdin,
            replies,
            config,
            produced: 0,
            peak_rss_mib: f64::NAN,
        })
    }

    /// Sends a command without waiting for its answer (see [`App::reply`]).
    pub fn send(&mut self, command: &str) -> Result<(), String> {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("application {}: {e}", self.config.process))
    }

    /// The answer to the last command sent, waiting at most `timeout`.
    pub fn reply(&mut self, timeout: Duration) -> Result<Value, String> {
        let line = self.replies.recv_timeout(timeout).map_err(|_| {
            format!(
                "application {} did not answer within {timeout:?}",
                self.config.process
            )
        })?;
        let reply: Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?;
        if let Some(produced) = reply["produced"].as_u64() {
            self.produced = produced;
        }
        if let Some(peak) = reply["peak_rss_mib"].as_f64() {
            self.peak_rss_mib = peak;
        }
        Ok(reply)
    }

    fn ask(&mut self, command: &str, timeout: Duration) -> Result<Value, String> {
        self.send(command)?;
        self.reply(timeout)
    }

    /// Produces `n` items at `rate` a second and waits for it.
    pub fn produce(&mut self, n: u64, rate: u64) -> Result<(), String> {
        self.ask(&produce_command(n, rate), produce_time(n, rate))
            .map(drop)
    }

    /// The exporter's statistics now.
    pub fn stats(&mut self) -> Result<Stats, String> {
        let reply = self.ask("stats", Duration::from_secs(10))?;
        stats_of(&reply)
    }

    /// Sends `shutdown(timeout)` (see [`App::ended`]).
    pub fn send_shutdown(&mut self, timeout: Duration) -> Result<(), String> {
        self.send(&format!("shutdown {}", timeout.as_millis()))
    }

    /// How the application ended after [`App::send_shutdown`]`(timeout)`.
    /// A shutdown that has not returned 10 s past its timeout is given up
    /// on: the process is killed.
    pub fn ended(mut self, timeout: Duration) -> Result<Ended, String> {
        let reply = self.reply(timeout + Duration::from_secs(10))?;
        Ok(Ended {
            process: self.config.process,
            produced: self.produced,
            stats: stats_of(&reply)?,
            shutdown_ms: reply["shutdown_ms"].as_f64().unwrap_or(f64::NAN),
            shutdown_timeout_ms: timeout.as_millis() as u64,
            timed_out: reply["timed_out"].as_bool().unwrap_or(true),
            peak_rss_mib: self.peak_rss_mib,
        })
    }

    /// `shutdown(timeout)` and how the application ended.
    pub fn shutdown(mut self, timeout: Duration) -> Result<Ended, String> {
        self.send_shutdown(timeout)?;
        self.ended(timeout)
    }

    /// `kill -9`.
    pub fn kill(self) {
        drop(self);
    }
}

/// The process is killed (`kill -9`) if it still runs.
impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command producing `n` items at `rate` a second.
pub fn produce_command(n: u64, rate: u64) -> String {
    format!("produce {n} {rate}")
}

/// How long producing `n` at `rate` may take, generously.
pub fn produce_time(n: u64, rate: u64) -> Duration {
    Duration::from_millis(n * 1000 / rate.max(1)) * 3 + Duration::from_secs(10)
}

fn stats_of(reply: &Value) -> Result<Stats, String> {
    serde_json::from_value(reply["stats"].clone()).map_err(|e| format!("{e}: {reply}"))
}
