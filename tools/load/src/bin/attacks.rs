//! The attacks of issue 10 ("Delivery hardening"), as a hostile operator
//! would run them, each against applications in child processes (this
//! binary with `--app`) that use the crate's public API, and endpoints on
//! 127.0.0.1 in this process that count what they accept by an id in each
//! span:
//!
//! 1. the endpoint accepts TCP and never answers;
//! 2. it answers one byte a second;
//! 3. 200 with garbage bodies (a), 206 with garbage bodies (b);
//! 4. 307 to itself, for ever;
//! 5. 401 for ever (a), 403 for ever (b);
//! 6. a flapping endpoint (503s, 429s with `Retry-After: 1`, hang-ups,
//!    206s with per-item 500s) with two applications on one storage
//!    directory, then a third that drains it;
//! 7. ten `kill -9` of an application while it writes to storage (the
//!    endpoint refuses connections), then a restart that drains it;
//! 8. garbage lines in the crate's files, and foreign files in the
//!    directory (a `README`, a `notes.blob`, and two named as the crate
//!    names its own), which must stay byte-identical;
//! 9. storage full (a 2 MB tmpfs, or `with_storage_max_size` when it
//!    cannot be mounted);
//! 10. a slow healthy endpoint (200 after 500 ms) and far more spans than
//!     it takes.
//!
//! ```sh
//! cargo run --release -p tracing-appinsights-load --bin attacks         # all of them
//! cargo run --release -p tracing-appinsights-load --bin attacks -- 6 7  # scenarios 6 and 7 (5: 5a and 5b)
//! ```
//!
//! The peak RSS is the application's alone (the endpoints run here). What
//! an application leaves in storage is sent by a drain: one more
//! application on the same directory with a healthy endpoint.
//!
//! It prints a markdown table, one row per scenario, and exits non-zero if
//! an item is lost without being counted (produced != delivered + counted
//! drops + left in storage, what was left being sent by a drain with a
//! healthy endpoint), an item is delivered twice where `docs/delivery.md`
//! rules it out, `stats()` does not balance after a shutdown, a shutdown
//! takes longer than its timeout plus 500 ms, or a scenario's own check
//! fails. Items in a killed process's memory are lost by design: they are
//! reported as lost with the process (produced minus what was on disk).

#[path = "attacks/app.rs"]
mod app;
#[path = "attacks/scenarios.rs"]
mod scenarios;
#[path = "attacks/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::time::Instant;

use scenarios::Outcome;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, config] = &args[..] {
        if flag == "--app" {
            return app::run(config);
        }
    }
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    // `attacks 6 7` runs scenarios 6 and 7 alone.
    let chosen = |title: &str| {
        let number = title.split('.').next().unwrap_or_default();
        args.is_empty()
            || args
                .iter()
                .any(|a| a == number || number.trim_end_matches(char::is_alphabetic) == a)
    };
    for (title, scenario) in scenarios::all().into_iter().filter(|(t, _)| chosen(t)) {
        let began = Instant::now();
        let row = match scenario() {
            Ok(outcome) => judge(title, &outcome),
            Err(error) => Row::broken(title, error),
        };
        eprintln!(
            "attacks: {title}: {:.1} s{}",
            began.elapsed().as_secs_f64(),
            if row.failures.is_empty() {
                ""
            } else {
                ", FAILED"
            }
        );
        failures.extend(row.failures.iter().map(|f| format!("{title}: {f}")));
        rows.push(row);
    }
    println!(
        "| scenario | produced | delivered once | duplicates | lost by reason | left in storage \
         for a later run | shutdown (ms) | peak RSS (MiB) | `stats().balances()` |"
    );
    println!("|---|--:|--:|--:|---|---|--:|--:|---|");
    for row in &rows {
        println!("{}", row.cells.join(" | ").replace("\n", " "));
    }
    println!(
        "\nall scenarios in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        for failure in &failures {
            eprintln!("attacks: FAILED: {failure}");
        }
        std::process::exit(1);
    }
    Ok(())
}

/// One line of the table, and what failed.
struct Row {
    cells: Vec<String>,
    failures: Vec<String>,
}

impl Row {
    fn broken(title: &str, error: String) -> Row {
        let mut cells = vec![format!("| {title}")];
        cells.extend(std::iter::repeat_n("-".to_owned(), 7));
        cells.push("- |".into());
        Row {
            cells,
            failures: vec![format!("could not run: {error}")],
        }
    }
}

/// The row of a scenario, with the checks every scenario must pass.
fn judge(title: &str, o: &Outcome) -> Row {
    let mut failures = o.failures.clone();
    let produced: u64 = o.produced.values().sum();
    let delivered = o.tally.delivered(|id| o.was_produced(id));
    let runs: Vec<_> = o.ended.iter().chain(&o.drain).collect();

    let mut drops: BTreeMap<&str, u64> = BTreeMap::new();
    for run in &runs {
        for (name, n) in &run.stats.drops {
            *drops.entry(name).or_default() += n;
        }
    }
    let dropped: u64 = runs.iter().map(|r| r.stats.dropped()).sum();
    // The crate counts the garbage lines the harness planted too.
    let counted = dropped as i64 - o.planted as i64;
    let left_before = o.left_before_drain();
    // Items nobody produced that the endpoints accepted came from files
    // the harness planted: they were read back, not stored.
    let left_after = o.left_after_drain() + delivered.unknown as i64;
    let uncounted =
        produced as i64 - delivered.once as i64 - counted - left_after - o.lost_with_process as i64;

    if uncounted > 0 {
        failures.push(format!("{uncounted} items lost without being counted"));
    } else if uncounted < 0 {
        failures.push(format!("{} items counted twice", -uncounted));
    }
    if delivered.duplicates > 0 && !o.duplicates_possible {
        failures.push(format!("{} duplicates", delivered.duplicates));
    }
    if delivered.unknown > 0 {
        failures.push(format!(
            "{} items accepted that nobody produced (read from the harness's files)",
            delivered.unknown
        ));
    }
    if o.drain.is_some() && left_after != 0 {
        failures.push(format!(
            "{left_after} items still in storage after the drain"
        ));
    }
    if o.on_disk_at_end as i64 != left_after.max(0) {
        failures.push(format!(
            "{} items of the run on disk at the end, the stats say {left_after}",
            o.on_disk_at_end
        ));
    }
    let exported: u64 = runs.iter().map(|r| r.stats.exported).sum();
    let accepted = delivered.once + delivered.duplicates + delivered.unknown;
    if exported != accepted && !o.duplicates_possible {
        failures.push(format!(
            "exported {exported}, but the endpoints accepted {accepted}"
        ));
    }
    for run in &runs {
        let s = &run.stats;
        let who = format!("application {}", run.process);
        if !s.balances {
            failures.push(format!("{who}: stats do not balance after shutdown: {s:?}"));
        }
        if run.shutdown_ms > run.shutdown_timeout_ms as f64 + 500.0 {
            failures.push(format!(
                "{who}: shutdown({} ms) took {:.0} ms",
                run.shutdown_timeout_ms, run.shutdown_ms
            ));
        }
        let layer = s.queued + s.dropped_queue_full + s.dropped_after_shutdown;
        if layer != run.produced {
            failures.push(format!(
                "{who}: produced {} spans, the stats know of {layer}",
                run.produced
            ));
        }
    }

    let mut lost: Vec<String> = drops
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| format!("{name} {}", thousands(*n)))
        .collect();
    let named: u64 = drops.values().sum();
    if named != dropped {
        lost.push(format!(
            "{} in counters without a name here",
            dropped as i64 - named as i64
        ));
    }
    if o.planted > 0 {
        lost.push(format!("(of which {} planted garbage lines)", o.planted));
    }
    if o.lost_with_process > 0 {
        lost.push(format!(
            "lost with the process {}",
            thousands(o.lost_with_process)
        ));
    }
    if uncounted != 0 {
        lost.push(format!("**UNCOUNTED {uncounted}**"));
    }
    // Of the items produced (the planted lines are no items).
    let left = match left_before - o.planted as i64 {
        0 => "0".to_owned(),
        n if left_after == 0 => format!("{}, then drained", thousands(n as u64)),
        n => format!("{n}, {left_after} still there after the drain"),
    };
    let shutdowns: Vec<String> = o
        .ended
        .iter()
        .map(|e| {
            let result = if e.timed_out { " (Err)" } else { "" };
            format!("{:.0}{result}", e.shutdown_ms)
        })
        .collect();
    let balances = runs.iter().all(|r| r.stats.balances);
    let title = if o.note.is_empty() {
        title.to_owned()
    } else {
        format!("{title} ({})", o.note)
    };
    let verdict = if failures.is_empty() {
        ""
    } else {
        " **FAILED**"
    };
    Row {
        cells: vec![
            format!("| {title}{verdict}"),
            thousands(produced),
            thousands(delivered.once),
            thousands(delivered.duplicates),
            if lost.is_empty() {
                "none".into()
            } else {
                lost.join(", ")
            },
            left,
            if shutdowns.is_empty() {
                "-".into()
            } else {
                shutdowns.join(" / ")
            },
            format!("{:.1}", o.peak_rss_mib),
            format!("{} |", if balances { "yes" } else { "**no**" }),
        ],
        failures,
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let groups: Vec<_> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(String::from_utf8_lossy)
        .collect();
    groups.join(",")
}
