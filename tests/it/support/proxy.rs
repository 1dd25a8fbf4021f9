//! A recording HTTP proxy on loopback: it keeps the request line and
//! headers of everything it is asked, forwards absolute-form requests and
//! CONNECT tunnels to loopback destinations only, and answers anything
//! else 502: nothing leaves 127.0.0.1.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What the proxy was asked: the request line and the headers, names
/// lower-cased.
#[derive(Clone, Debug)]
pub struct ProxyRequest {
    pub line: String,
    pub headers: Vec<(String, String)>,
}

impl ProxyRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// See the module docs. Runs until the process ends (its thread is
/// detached; each test starts its own on a fresh port).
pub struct RecordingProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<ProxyRequest>>>,
}

impl RecordingProxy {
    /// Starts one that refuses non-loopback destinations with 502.
    pub fn start() -> RecordingProxy {
        RecordingProxy::spawn(None)
    }

    /// Starts one that answers `status` to every request (407 to ask for
    /// credentials, say) instead of forwarding anything.
    pub fn answering(status: u16) -> RecordingProxy {
        RecordingProxy::spawn(Some(status))
    }

    fn spawn(always: Option<u16>) -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&seen);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let recorded = Arc::clone(&recorded);
                std::thread::spawn(move || serve(client, &recorded, always));
            }
        });
        RecordingProxy { addr, seen }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://user:password@127.0.0.1:PORT`.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@{}", self.addr)
    }

    pub fn requests(&self) -> Vec<ProxyRequest> {
        self.seen.lock().unwrap().clone()
    }
}

/// One client connection: read its head, record it, then forward, tunnel
/// or refuse.
fn serve(mut client: TcpStream, seen: &Mutex<Vec<ProxyRequest>>, always: Option<u16>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    seen.lock().unwrap().push(ProxyRequest {
        line: line.clone(),
        headers,
    });
    let answer = |client: &mut TcpStream, status: u16| {
        let _ = write!(
            client,
            "HTTP/1.1 {status} Proxy Says No\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
    };
    if let Some(status) = always {
        answer(&mut client, status);
        return;
    }
    let mut words = line.split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let authority = if method == "CONNECT" {
        target.to_owned()
    } else {
        target
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or("")
            .to_owned()
    };
    let loopback = authority.starts_with("127.0.0.1:") || authority.starts_with("localhost:");
    let upstream = loopback
        .then(|| TcpStream::connect(&authority).ok())
        .flatten();
    let Some(mut upstream) = upstream else {
        answer(&mut client, 502);
        return;
    };
    if method == "CONNECT" {
        let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
    } else if upstream.write_all(&head).is_err() {
        return;
    }
    let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(Shutdown::Write);
}
