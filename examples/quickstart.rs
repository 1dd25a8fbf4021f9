//! The seed program in Rust: read values from stdin, one span per value.
//!
//! ```sh
//! printf '4\n25\n100\n' | cargo run --example quickstart
//! ```
//!
//! Without `APPLICATIONINSIGHTS_CONNECTION_STRING`, each span is printed to
//! stdout as one OpenCensus-style `SpanData(...)` line; with it, the spans go
//! to Application Insights. Diagnostics (such as "records go to stdout") are
//! printed to stderr by the `fmt` layer.

use std::io::{self, BufRead, IsTerminal, Write};
use std::time::Duration;

use tracing::instrument;
use tracing_subscriber::prelude::*;

/// Reads one value and prints it, inside the span `value_prompt`.
#[instrument(skip(input), fields(value))]
fn value_prompt(input: &mut impl BufRead) -> io::Result<()> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    let value = line.trim_end_matches(['\r', '\n']);
    tracing::Span::current().record("value", value);
    println!("{value}");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (layer, guard) = tracing_appinsights::layer()?;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(io::stderr))
        .with(layer)
        .init();

    let interactive = io::stdin().is_terminal();
    let mut input = io::stdin().lock();
    loop {
        if interactive {
            print!("Enter a value: ");
            io::stdout().flush()?;
        }
        // Stop at end of input without opening a span for it.
        if input.fill_buf()?.is_empty() {
            break;
        }
        value_prompt(&mut input)?;
    }

    // Export every record before the process exits.
    guard.shutdown(Duration::from_secs(10))?;
    Ok(())
}
