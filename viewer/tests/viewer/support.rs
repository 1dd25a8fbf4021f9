//! What the viewer's tests share: an in-process viewer on a free port, a
//! small blocking HTTP/1.1 client and envelope builders.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use tracing_appinsights_viewer::{Config, Running, Viewer};

/// An in-memory viewer on a free loopback port.
pub fn start() -> Running {
    start_with(|_| {})
}

/// An in-memory viewer on a free loopback port, its config changed by `f`.
pub fn start_with(f: impl FnOnce(&mut Config)) -> Running {
    let mut config = Config::in_memory("127.0.0.1:0".parse().unwrap());
    f(&mut config);
    Viewer::start(config).unwrap()
}

/// An HTTP response: status and body (as JSON when it parses, else a
/// string).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The status line and headers, lowercased.
    pub head: String,
    pub body: Value,
}

/// Sends a raw request (head and body) and reads the answer to the end of
/// the connection.
pub fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (and close) before the whole body is sent.
    let _ = stream.write_all(body);
    read_answer(&mut stream)
}

/// Reads one response to the end of the connection.
pub fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        body,
    }
}

/// `POST path` with `body` and extra header lines (`"Name: value\r\n"`).
pub fn post(addr: SocketAddr, path: &str, headers: &str, body: &[u8]) -> Answer {
    raw(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n{headers}\r\n",
            body.len()
        ),
        body,
    )
}

/// `POST /v2.1/track` with these envelopes as a JSON array.
pub fn track(addr: SocketAddr, items: &[Value]) -> Answer {
    post(
        addr,
        "/v2.1/track",
        "",
        serde_json::to_string(items).unwrap().as_bytes(),
    )
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> Answer {
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        b"",
    )
}

/// `GET path`, which must answer 200; its JSON body.
pub fn get_ok(addr: SocketAddr, path: &str) -> Value {
    let answer = get(addr, path);
    assert_eq!(answer.status, 200, "{path}: {answer:?}");
    answer.body
}

/// Gzips `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// The common part of an envelope.
pub fn envelope(kind: &str, base_type: &str, time: &str, tags: Value, base: Value) -> Value {
    json!({
        "ver": 1,
        "name": format!("Microsoft.ApplicationInsights.{kind}"),
        "time": time,
        "iKey": "00000000-0000-0000-0000-000000000000",
        "tags": tags,
        "data": { "baseType": base_type, "baseData": base },
    })
}

/// Tags of an item of `role` in operation `op` under `parent`.
pub fn tags(role: &str, op: &str, parent: Option<&str>) -> Value {
    let mut tags = json!({
        "ai.cloud.role": role,
        "ai.cloud.roleInstance": format!("{role}-1"),
        "ai.operation.id": op,
    });
    if let Some(parent) = parent {
        tags["ai.operation.parentId"] = json!(parent);
    }
    tags
}

/// A duration of `ms` milliseconds, `D.HH:MM:SS.ffffff`.
pub fn duration(ms: u64) -> String {
    let micros = ms * 1000;
    let s = micros / 1_000_000;
    format!(
        "0.{:02}:{:02}:{:02}.{:06}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        micros % 1_000_000
    )
}

/// A Request item.
#[allow(clippy::too_many_arguments)]
pub fn request(
    role: &str,
    op: &str,
    id: &str,
    parent: Option<&str>,
    name: &str,
    time: &str,
    ms: u64,
    code: &str,
) -> Value {
    let success = code.parse::<u16>().is_ok_and(|c| c < 400);
    envelope(
        "Request",
        "RequestData",
        time,
        tags(role, op, parent),
        json!({
            "ver": 2, "id": id, "name": name, "duration": duration(ms),
            "responseCode": code, "success": success, "url": format!("http://{role}.example{}", name.split(' ').nth(1).unwrap_or("/")),
            "properties": { "k": "v" },
        }),
    )
}

/// A RemoteDependency item.
#[allow(clippy::too_many_arguments)]
pub fn dependency(
    role: &str,
    op: &str,
    id: &str,
    parent: &str,
    name: &str,
    target: &str,
    time: &str,
    ms: u64,
    code: &str,
) -> Value {
    let success = code.parse::<u16>().is_ok_and(|c| c < 400);
    envelope(
        "RemoteDependency",
        "RemoteDependencyData",
        time,
        tags(role, op, Some(parent)),
        json!({
            "ver": 2, "id": id, "name": name, "duration": duration(ms),
            "resultCode": code, "success": success, "type": "HTTP", "target": target,
            "data": format!("http://{target}/"),
        }),
    )
}

/// A Message item.
pub fn message(role: &str, op: &str, parent: &str, text: &str, time: &str) -> Value {
    envelope(
        "Message",
        "MessageData",
        time,
        tags(role, op, Some(parent)),
        json!({ "ver": 2, "message": text, "severityLevel": "Information" }),
    )
}

/// An Exception item.
pub fn exception(role: &str, op: &str, parent: &str, type_name: &str, time: &str) -> Value {
    envelope(
        "Exception",
        "ExceptionData",
        time,
        tags(role, op, Some(parent)),
        json!({ "ver": 2, "exceptions": [ { "typeName": type_name, "message": "it broke", "hasFullStack": false } ] }),
    )
}

/// `2026-12-01T10:00:00.{ms:03}000Z`-like times, `ms` after a fixed start.
pub fn at(ms: u64) -> String {
    format!(
        "2026-12-01T10:{:02}:{:02}.{:03}000Z",
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}
