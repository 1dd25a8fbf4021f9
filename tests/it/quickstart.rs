//! The quickstart example, run as a process with piped stdin: it prints the
//! three values and three span records, and exits cleanly at end of input.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::example;

#[test]
fn quickstart_prints_three_values_and_three_records() {
    let mut child = Command::new(example("quickstart"))
        .env_remove("APPLICATIONINSIGHTS_CONNECTION_STRING")
        .env_remove("APPINSIGHTS_INSTRUMENTATIONKEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"4\n25\n100\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let values: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.starts_with("SpanData("))
        .collect();
    assert_eq!(values, ["4", "25", "100"]);
    let records: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("SpanData("))
        .collect();
    assert_eq!(records.len(), 3, "{stdout}");
    for (record, value) in records.iter().zip(["4", "25", "100"]) {
        assert!(record.starts_with("SpanData(name='value_prompt', context=SpanContext(trace_id="));
        assert!(
            record.contains(&format!("attributes=BoundedDict({{'value': '{value}'}}")),
            "{record}"
        );
        assert!(record.contains("parent_span_id=None"));
        assert!(record.contains("trace_options=TraceOptions(enabled=True)"));
        assert!(record.ends_with("span_kind=INTERNAL)"));
    }
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.matches("span records are printed to stdout").count(),
        1,
        "one warning: {stderr}"
    );
}
