//! The `appinsights-viewer` binary: it prints its URL and the connection
//! string, serves on them, and refuses bad arguments.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_appinsights-viewer");

#[test]
fn the_binary_prints_its_url_and_connection_string_and_serves() {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--memory", "--max-items=10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref().take(5) {
        printed.push(line.unwrap());
    }
    let url = printed[0]
        .strip_prefix("Application Insights viewer on ")
        .unwrap()
        .to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "{printed:?}"
    );
    assert_eq!(printed[1], "Items: in memory (at most 10 items)");
    assert_eq!(
        printed[3],
        format!(
            "  APPLICATIONINSIGHTS_CONNECTION_STRING='InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={url};LiveEndpoint={url}'"
        )
    );
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let body = get_ok(addr, "/api/items");
    assert_eq!(body["items"], serde_json::json!([]));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn bad_arguments_exit_2_with_the_usage() {
    for args in [
        &["--bogus"][..],
        &["--max-items", "0"],
        &["--listen", "localhost"],
        &["--memory", "--db", "x.sqlite3"],
        &["--db"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage: appinsights-viewer"));
    }
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("usage: appinsights-viewer"));
}
