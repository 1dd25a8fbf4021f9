//! The ingestion endpoints of the attacks, each on 127.0.0.1 and on a
//! runtime of its own (dropping the [`Server`] closes it and every
//! connection), and the [`Tally`] of what they accepted, by item id.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing_appinsights_load::{envelopes, Rng};

use super::app::ID_FIELD;

/// How an endpoint answers.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// 200 at once, accepting every item of the run (refusing, per item,
    /// those that are not).
    Healthy,
    /// Accepts the connection and never reads or answers.
    Hang,
    /// Reads the request and answers one byte per second: on every other
    /// connection from the status line on, on the others with the head at
    /// once and the body one byte per second.
    Trickle,
    /// This status (200 or 206) with a body that is no `TrackResponse`.
    Garbage(u16),
    /// 307 to itself.
    RedirectLoop,
    /// This status, always.
    Status(u16),
    /// Up for 1.1 s, then 503 for 0.4 s, and so on; while up, 25% 503,
    /// 5% 429 with `Retry-After: 1`, 5% the connection closed without an
    /// answer, 15% 206 with a per-item 500 for about a third of the
    /// items, 50% 200.
    Flapping,
    /// 200 after this long.
    Slow(Duration),
}

/// What the endpoints of a scenario accepted: item ids with how many
/// times, and the items without an id of the run that they refused.
#[derive(Default)]
pub struct Tally {
    accepted: Mutex<HashMap<u64, u32>>,
    foreign_refused: AtomicU64,
}

/// A [`Tally`] read against what was produced.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Produced items accepted at least once.
    pub once: u64,
    /// Acceptances past the first.
    pub duplicates: u64,
    /// Accepted items with an id nobody produced.
    pub unknown: u64,
}

impl Tally {
    /// Counts `ids` accepted once more.
    fn accept(&self, ids: impl IntoIterator<Item = u64>) {
        let mut accepted = self.accepted.lock().unwrap();
        for id in ids {
            *accepted.entry(id).or_insert(0) += 1;
        }
    }

    /// What was accepted, where `produced(id)` says whether an id was
    /// produced.
    pub fn delivered(&self, produced: impl Fn(u64) -> bool) -> Delivered {
        let accepted = self.accepted.lock().unwrap();
        let mut delivered = Delivered::default();
        for (&id, &times) in accepted.iter() {
            if produced(id) {
                delivered.once += 1;
                delivered.duplicates += u64::from(times - 1);
            } else {
                delivered.unknown += u64::from(times);
            }
        }
        delivered
    }

    /// Whether `id` was accepted.
    pub fn has(&self, id: u64) -> bool {
        self.accepted.lock().unwrap().contains_key(&id)
    }

    /// Items without an id of the run, refused (per item, 400).
    pub fn foreign_refused(&self) -> u64 {
        self.foreign_refused.load(Ordering::Relaxed)
    }
}

/// An endpoint; dropping it closes it.
pub struct Server {
    pub addr: SocketAddr,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What the connections of one endpoint share.
struct State {
    behaviour: Mutex<Behaviour>,
    tally: Arc<Tally>,
    addr: SocketAddr,
    started: Instant,
    rng: Rng,
    connections: AtomicU64,
}

impl Server {
    /// Starts an endpoint answering as `behaviour`, counting in `tally`.
    pub fn start(behaviour: Behaviour, tally: &Arc<Tally>) -> std::io::Result<Server> {
        Server::start_at(SocketAddr::from(([127, 0, 0, 1], 0)), behaviour, tally)
    }

    /// [`Server::start`] on `addr` (a [`Server::dead`] one coming back).
    pub fn start_at(
        addr: SocketAddr,
        behaviour: Behaviour,
        tally: &Arc<Tally>,
    ) -> std::io::Result<Server> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let state = Arc::new(State {
            behaviour: Mutex::new(behaviour),
            tally: Arc::clone(tally),
            addr,
            started: Instant::now(),
            rng: Rng::default(),
            connections: AtomicU64::new(0),
        });
        let accepting = Arc::clone(&state);
        runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(connection(stream, Arc::clone(&accepting)));
            }
        });
        Ok(Server {
            addr,
            state,
            runtime: Some(runtime),
        })
    }

    /// From now on, new connections and requests are answered as
    /// `behaviour` (the same endpoint: the crate keeps the storage of each
    /// endpoint apart).
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap() = behaviour;
    }

    /// A loopback address where nothing listens: connections are refused.
    pub fn dead() -> std::io::Result<SocketAddr> {
        std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
    }
}

async fn connection(stream: tokio::net::TcpStream, state: Arc<State>) {
    let behaviour = *state.behaviour.lock().unwrap();
    match behaviour {
        Behaviour::Hang => {
            // Hold the connection open, unread, until the server is dropped.
            let _held = stream;
            std::future::pending::<()>().await;
        }
        Behaviour::Trickle => trickle(stream, state).await,
        _ => {
            let service = hyper::service::service_fn(move |req| answer(req, Arc::clone(&state)));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    }
}

/// The item ids of a request body: `None` for an item without one (not
/// produced by the run), and no items for a body that is not envelopes.
fn ids_of(body: &[u8]) -> Vec<Option<u64>> {
    envelopes(body)
        .unwrap_or_default()
        .iter()
        .map(|e| e.number_field(ID_FIELD))
        .collect()
}

/// A body no client can read as a `TrackResponse`, one of ten kinds.
fn garbage(state: &State) -> Vec<u8> {
    match state.rng.below(10) {
        0 => {
            let mut bytes: Vec<u8> = (0..1 + state.rng.below(2048))
                .map(|_| state.rng.below(256) as u8)
                .collect();
            bytes[0] = b'#';
            bytes
        }
        1 => br#"{"itemsReceived":3,"itemsAccepted":1,"errors":[{"index":0,"statusCode":500"#
            .to_vec(),
        2 => b"[]".to_vec(),
        3 => b"null".to_vec(),
        4 => b"<html><body><h1>502 Bad Gateway</h1></body></html>".to_vec(),
        5 => Vec::new(),
        // Over the 1 MiB a client reads of an answer.
        6 => vec![b'x'; 2 << 20],
        7 => b"\xff\xfe\x00{\"errors\"".to_vec(),
        8 => br#"{"errors":"everything failed"}"#.to_vec(),
        // Deeper than any JSON parser nests.
        _ => {
            let mut bytes = br#"{"errors":"#.to_vec();
            bytes.resize(bytes.len() + 100_000, b'[');
            bytes
        }
    }
}

type Answer = Result<Response<Full<Bytes>>, std::io::Error>;

fn respond(status: u16, headers: &[(&'static str, String)], body: impl Into<Bytes>) -> Answer {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = hyper::StatusCode::from_u16(status).expect("a valid status");
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(*name, value.parse().expect("a valid header"));
    }
    Ok(response)
}

/// Accepts the items of the run but those at `retry` (answered 500 per
/// item); items without an id are refused per item (400): 200 when all
/// were accepted, else 206 naming the others.
fn accept(state: &State, ids: &[Option<u64>], retry: &[usize]) -> Answer {
    let mut errors = Vec::new();
    let mut accepted = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        match id {
            None => {
                state.tally.foreign_refused.fetch_add(1, Ordering::Relaxed);
                errors.push(format!(
                    r#"{{"index":{index},"statusCode":400,"message":"not an item of this run"}}"#
                ));
            }
            Some(_) if retry.contains(&index) => errors.push(format!(
                r#"{{"index":{index},"statusCode":500,"message":"try again"}}"#
            )),
            Some(id) => accepted.push(*id),
        }
    }
    let n = ids.len();
    let body = format!(
        r#"{{"itemsReceived":{n},"itemsAccepted":{},"errors":[{}]}}"#,
        accepted.len(),
        errors.join(",")
    );
    state.tally.accept(accepted);
    respond(if errors.is_empty() { 200 } else { 206 }, &[], body)
}

async fn answer(req: Request<Incoming>, state: Arc<State>) -> Answer {
    let body = tracing_appinsights_load::body_of(req).await;
    let ids = ids_of(&body);
    let behaviour = *state.behaviour.lock().unwrap();
    match behaviour {
        // (`connection` serves `Hang` and `Trickle` without hyper.)
        Behaviour::Healthy | Behaviour::Hang | Behaviour::Trickle => accept(&state, &ids, &[]),
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            accept(&state, &ids, &[])
        }
        Behaviour::Garbage(status) => {
            // A 200 took everything, whatever its body says; a 206 that
            // names no item took nothing (the client cannot know which).
            if status == 200 {
                state.tally.accept(ids.iter().flatten().copied());
            }
            respond(status, &[], garbage(&state))
        }
        Behaviour::RedirectLoop => respond(
            307,
            &[("Location", format!("http://{}/v2.1/track", state.addr))],
            Bytes::new(),
        ),
        Behaviour::Status(status) => respond(status, &[], "{}"),
        Behaviour::Flapping => {
            let down = state.started.elapsed().as_millis() % 1500 >= 1100;
            match state.rng.below(20) {
                _ if down => respond(503, &[], "{}"),
                0..=4 => respond(503, &[], "{}"),
                5 => respond(429, &[("Retry-After", "1".to_owned())], "{}"),
                6 => Err(std::io::Error::other("hung up without an answer")),
                7..=9 => {
                    let retry: Vec<usize> =
                        (0..ids.len()).filter(|_| state.rng.below(3) == 0).collect();
                    accept(&state, &ids, &retry)
                }
                _ => accept(&state, &ids, &[]),
            }
        }
    }
}

/// [`Behaviour::Trickle`]: reads each request, then writes the answer a
/// byte a second; its items count as accepted only once all of it went out.
async fn trickle(mut stream: tokio::net::TcpStream, state: Arc<State>) {
    let head_at_once = state.connections.fetch_add(1, Ordering::Relaxed) % 2 == 1;
    while let Some(body) = read_request(&mut stream).await {
        let ids: Vec<u64> = ids_of(&body).into_iter().flatten().collect();
        let n = ids.len();
        let json = format!(r#"{{"itemsReceived":{n},"itemsAccepted":{n},"errors":[]}}"#);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            json.len()
        );
        let mut slow = Vec::new();
        if head_at_once {
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
        } else {
            slow.extend_from_slice(head.as_bytes());
        }
        slow.extend_from_slice(json.as_bytes());
        for byte in slow {
            if stream.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        state.tally.accept(ids);
    }
}

/// Reads one HTTP/1.1 request with a `Content-Length` body; `None` when
/// the connection ends first or the head is over 64 KiB.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 16 * 1024];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + length].to_vec())
}
