//! `appinsights-viewer`: a local Application Insights. See `README.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use tracing_appinsights_viewer::{
    default_db_path, Config, Viewer, DEFAULT_LISTEN, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_ITEMS,
};

const USAGE: &str = "\
usage: appinsights-viewer [--listen ADDR] [--db PATH | --memory] [--max-items N]

  --listen ADDR   the address to listen on (default 127.0.0.1:8321; port 0: any free port)
  --db PATH       the SQLite database file (default: $XDG_DATA_HOME or ~/.local/share,
                  then tracing-appinsights-viewer/items.sqlite3)
  --memory        keep the items in memory only
  --max-items N   the most items kept, the oldest deleted first (default 1000000)
";

fn parse(args: impl Iterator<Item = String>) -> Result<Config, String> {
    let mut listen = DEFAULT_LISTEN.to_owned();
    let mut db = None::<PathBuf>;
    let mut memory = false;
    let mut max_items = DEFAULT_MAX_ITEMS;
    let mut args = args;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--listen" => listen = value("--listen")?,
            "--db" => db = Some(PathBuf::from(value("--db")?)),
            "--memory" => memory = true,
            "--max-items" => {
                let v = value("--max-items")?;
                max_items =
                    v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("--max-items must be a positive integer, not {v:?}")
                    })?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if memory && db.is_some() {
        return Err("--db and --memory exclude each other".into());
    }
    let listen = listen
        .parse()
        .map_err(|_| format!("--listen needs an IP:PORT address, not {listen:?}"))?;
    Ok(Config {
        listen,
        db: if memory {
            None
        } else {
            Some(db.unwrap_or_else(default_db_path))
        },
        max_items,
        max_body_bytes: DEFAULT_MAX_BODY_BYTES,
    })
}

fn main() -> ExitCode {
    let config = match parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("appinsights-viewer: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let storage = match &config.db {
        Some(p) => format!("{} (at most {} items)", p.display(), config.max_items),
        None => format!("in memory (at most {} items)", config.max_items),
    };
    let running = match Viewer::start(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("appinsights-viewer: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("Application Insights viewer on {}", running.url());
    println!("Items: {storage}");
    println!("Point an exporter at it with:");
    println!(
        "  APPLICATIONINSIGHTS_CONNECTION_STRING='{}'",
        running.connection_string()
    );
    println!("Query what arrived: {}api/items", running.url());
    running.wait();
    ExitCode::SUCCESS
}
