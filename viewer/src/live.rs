//! Live Metrics like the service (QuickPulse, API `2024-04-01-preview`):
//! `POST /QuickPulseService.svc/ping` and `/post` answer
//! `x-ms-qps-subscribed: true` while a Live Metrics page is open (it polled
//! `/api/live` within the last [`WATCH_WINDOW`]), and the posted data
//! points of the last [`KEEP`] are kept in memory, bounded, per role and
//! instance. Nothing is written to the store.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long after its last poll of `/api/live` a page counts as open.
pub const WATCH_WINDOW: Duration = Duration::from_secs(5);

/// How much posted data is kept (and shown).
pub const KEEP: Duration = Duration::from_secs(60);

/// The ping interval asked of exporters
/// (`x-ms-qps-service-polling-interval-hint`, milliseconds): short, so a
/// page opened while an exporter pings shows data within a second or two.
pub const POLLING_HINT_MS: &str = "1000";

/// The most role/instance streams kept; the stalest is dropped first.
pub const MAX_STREAMS: usize = 64;

/// The most data points kept per stream (one a second for [`KEEP`]).
const MAX_POINTS: usize = 64;

/// The most sample documents kept, newest first.
pub const MAX_DOCUMENTS: usize = 100;

/// The most documents taken from one data point.
const MAX_DOCUMENTS_PER_POINT: usize = 30;

/// The largest ping or post body read.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The most bytes of one string of a document kept.
const MAX_STRING_BYTES: usize = 1024;

/// The standard counters of one posted data point.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    requests: f64,
    requests_failed: f64,
    request_duration_ms: f64,
    dependencies: f64,
    dependencies_failed: f64,
    dependency_duration_ms: f64,
    exceptions: f64,
    /// How many data points were summed into these counters.
    points: f64,
}

struct Point {
    /// The second it arrived, in seconds since the epoch (the viewer's
    /// clock: an exporter's clock may be off).
    second: i64,
    at: Instant,
    counters: Counters,
}

#[derive(Default)]
struct Stream {
    points: VecDeque<Point>,
    last_seen: Option<Instant>,
}

struct Document {
    at_micros: i64,
    role: String,
    instance: String,
    document: Value,
}

#[derive(Default)]
struct Inner {
    last_poll: Option<Instant>,
    streams: HashMap<(String, String), Stream>,
    documents: VecDeque<Document>,
}

/// The Live Metrics state a viewer shares between its handlers.
#[derive(Default)]
pub struct Live {
    inner: Mutex<Inner>,
}

/// What a ping or post is answered.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// `x-ms-qps-subscribed`.
    pub subscribed: bool,
    /// An error message for the body, if any.
    pub error: Option<String>,
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_STRING_BYTES {
        return s.to_owned();
    }
    let mut end = MAX_STRING_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A document with its strings cut and at most 16 fields.
fn bounded(doc: &Value) -> Value {
    match doc {
        Value::Object(map) => Value::Object(
            map.iter()
                .take(16)
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => Value::String(cut(s)),
                        Value::Array(a) => Value::Array(
                            a.iter()
                                .take(16)
                                .map(|x| match x {
                                    Value::String(s) => Value::String(cut(s)),
                                    Value::Object(_) => bounded(x),
                                    other => other.clone(),
                                })
                                .collect(),
                        ),
                        Value::Object(_) => Value::Null,
                        other => other.clone(),
                    };
                    (cut(k), v)
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

fn counters(point: &Value) -> Counters {
    let mut c = Counters::default();
    let Some(metrics) = point.get("Metrics").and_then(Value::as_array) else {
        return c;
    };
    for m in metrics {
        let (Some(name), Some(value)) = (
            m.get("Name").and_then(Value::as_str),
            m.get("Value").and_then(Value::as_f64),
        ) else {
            continue;
        };
        if !value.is_finite() {
            continue;
        }
        let slot = match name {
            r"\ApplicationInsights\Requests/Sec" => &mut c.requests,
            r"\ApplicationInsights\Requests Failed/Sec" => &mut c.requests_failed,
            r"\ApplicationInsights\Request Duration" => &mut c.request_duration_ms,
            r"\ApplicationInsights\Dependency Calls/Sec" => &mut c.dependencies,
            r"\ApplicationInsights\Dependency Calls Failed/Sec" => &mut c.dependencies_failed,
            r"\ApplicationInsights\Dependency Call Duration" => &mut c.dependency_duration_ms,
            r"\ApplicationInsights\Exceptions/Sec" => &mut c.exceptions,
            _ => continue,
        };
        *slot = value;
    }
    c
}

fn header_or(body: &Value, header: Option<&str>, field: &str) -> String {
    header
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .or_else(|| body.get(field).and_then(Value::as_str).map(str::to_owned))
        .map(|s| cut(&s))
        .unwrap_or_else(|| "unknown".to_owned())
}

impl Live {
    /// Whether a Live Metrics page is open.
    pub fn watching(&self) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Self::watching_at(&inner, Instant::now())
    }

    fn watching_at(inner: &Inner, now: Instant) -> bool {
        inner
            .last_poll
            .is_some_and(|t| now.saturating_duration_since(t) <= WATCH_WINDOW)
    }

    /// A ping: only whether anyone watches.
    pub fn ping(&self) -> Answer {
        Answer {
            status: 200,
            subscribed: self.watching(),
            error: None,
        }
    }

    /// A post: a JSON array of `MonitoringDataPoint`s (a single object is
    /// taken too); `role` and `instance` from the ping headers when the
    /// post repeats them, else from each data point.
    pub fn post(&self, body: &[u8], role: Option<&str>, instance: Option<&str>) -> Answer {
        let watching = self.watching();
        let parsed: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return Answer {
                    status: 400,
                    subscribed: watching,
                    error: Some(format!("the body is not JSON: {e}")),
                }
            }
        };
        let points: Vec<&Value> = match &parsed {
            Value::Array(a) => a.iter().take(16).collect(),
            v @ Value::Object(_) => vec![v],
            _ => {
                return Answer {
                    status: 400,
                    subscribed: watching,
                    error: Some("the body is not an array of data points".into()),
                }
            }
        };
        let now = Instant::now();
        let now_micros = crate::store::now_micros();
        let second = now_micros.div_euclid(1_000_000);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for point in points {
            if !point.is_object() {
                continue;
            }
            let role = header_or(point, role, "RoleName");
            let instance = header_or(point, instance, "Instance");
            let key = (role.clone(), instance.clone());
            if !inner.streams.contains_key(&key) && inner.streams.len() >= MAX_STREAMS {
                let stalest = inner
                    .streams
                    .iter()
                    .min_by_key(|(_, s)| s.last_seen)
                    .map(|(k, _)| k.clone());
                if let Some(k) = stalest {
                    inner.streams.remove(&k);
                }
            }
            let stream = inner.streams.entry(key).or_default();
            stream.last_seen = Some(now);
            stream.points.push_back(Point {
                second,
                at: now,
                counters: counters(point),
            });
            while stream.points.len() > MAX_POINTS
                || stream
                    .points
                    .front()
                    .is_some_and(|p| now.saturating_duration_since(p.at) > KEEP)
            {
                stream.points.pop_front();
            }
            if let Some(docs) = point.get("Documents").and_then(Value::as_array) {
                for doc in docs.iter().take(MAX_DOCUMENTS_PER_POINT) {
                    let document = bounded(doc);
                    if document.is_null() {
                        continue;
                    }
                    inner.documents.push_front(Document {
                        at_micros: now_micros,
                        role: role.clone(),
                        instance: instance.clone(),
                        document,
                    });
                }
                inner.documents.truncate(MAX_DOCUMENTS);
            }
        }
        Answer {
            status: 200,
            subscribed: watching,
            error: None,
        }
    }

    /// `/api/live`: marks a page as open, and answers the last 60 seconds,
    /// one entry per second (oldest first, summed over every role and
    /// instance; durations are means weighted by the calls), the streams
    /// and the newest sample documents.
    pub fn snapshot(&self) -> Value {
        let now = Instant::now();
        let now_second = crate::store::now_micros().div_euclid(1_000_000);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.last_poll = Some(now);
        inner.streams.retain(|_, s| {
            s.last_seen
                .is_some_and(|t| now.saturating_duration_since(t) <= KEEP)
        });
        inner
            .documents
            .retain(|d| now_second - d.at_micros.div_euclid(1_000_000) <= KEEP.as_secs() as i64);
        let n = KEEP.as_secs() as i64;
        let mut buckets = vec![Counters::default(); n as usize];
        // Calls behind each bucket's durations, for the weighted means.
        let mut weights = vec![(0.0f64, 0.0f64); n as usize];
        for stream in inner.streams.values() {
            // Two posts of one stream in the same second (a late one and
            // the next) are averaged, not added: each is a rate.
            let mut posts_in = vec![0.0f64; n as usize];
            let bucket = |p: &Point| {
                let age = now_second - p.second;
                (0..n).contains(&age).then(|| (n - 1 - age) as usize)
            };
            for p in &stream.points {
                if let Some(i) = bucket(p) {
                    posts_in[i] += 1.0;
                }
            }
            for p in &stream.points {
                let Some(i) = bucket(p) else {
                    continue;
                };
                let share = 1.0 / posts_in[i].max(1.0);
                let b = &mut buckets[i];
                let c = &p.counters;
                b.requests += c.requests * share;
                b.requests_failed += c.requests_failed * share;
                b.dependencies += c.dependencies * share;
                b.dependencies_failed += c.dependencies_failed * share;
                b.exceptions += c.exceptions * share;
                b.points += 1.0;
                let w = &mut weights[i];
                let rw = c.requests.max(if c.request_duration_ms > 0.0 {
                    1.0
                } else {
                    0.0
                });
                let dw = c.dependencies.max(if c.dependency_duration_ms > 0.0 {
                    1.0
                } else {
                    0.0
                });
                let (rw, dw) = (rw * share, dw * share);
                b.request_duration_ms += c.request_duration_ms * rw;
                b.dependency_duration_ms += c.dependency_duration_ms * dw;
                w.0 += rw;
                w.1 += dw;
            }
        }
        let seconds: Vec<Value> = buckets
            .iter()
            .zip(&weights)
            .enumerate()
            .map(|(i, (b, w))| {
                let second = now_second - (n - 1 - i as i64);
                let mean = |sum: f64, w: f64| if w > 0.0 { sum / w } else { 0.0 };
                json!({
                    "time": crate::validate::format_time(second * 1_000_000),
                    "requests_per_sec": b.requests,
                    "failed_requests_per_sec": b.requests_failed,
                    "request_duration_ms": mean(b.request_duration_ms, w.0),
                    "dependency_calls_per_sec": b.dependencies,
                    "failed_dependency_calls_per_sec": b.dependencies_failed,
                    "dependency_duration_ms": mean(b.dependency_duration_ms, w.1),
                    "exceptions_per_sec": b.exceptions,
                    "posts": b.points,
                })
            })
            .collect();
        let mut streams: Vec<Value> = inner
            .streams
            .iter()
            .map(|((role, instance), s)| {
                json!({
                    "role": role,
                    "instance": instance,
                    "seconds_since_last_post": s.last_seen
                        .map(|t| now.saturating_duration_since(t).as_secs_f64()),
                })
            })
            .collect();
        streams.sort_by(|a, b| {
            (a["role"].as_str(), a["instance"].as_str())
                .cmp(&(b["role"].as_str(), b["instance"].as_str()))
        });
        let documents: Vec<Value> = inner
            .documents
            .iter()
            .map(|d| {
                json!({
                    "time": crate::validate::format_time(d.at_micros),
                    "role": d.role,
                    "instance": d.instance,
                    "document": d.document,
                })
            })
            .collect();
        json!({
            "watching": Self::watching_at(&inner, now),
            "seconds": seconds,
            "streams": streams,
            "documents": documents,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_are_summed_per_second_and_bounded() {
        let live = Live::default();
        assert!(!live.ping().subscribed);
        let _ = live.snapshot();
        assert!(live.ping().subscribed);
        let point = |rps: u32, dur: f64| {
            format!(
                r#"[{{"RoleName":"r","Instance":"i","Metrics":[
                {{"Name":"\\ApplicationInsights\\Requests/Sec","Value":{rps},"Weight":1}},
                {{"Name":"\\ApplicationInsights\\Request Duration","Value":{dur},"Weight":1}}],
                "Documents":[{{"DocumentType":"Request","Name":"GET /","Duration":"PT0.1S"}}]}}]"#
            )
        };
        assert_eq!(live.post(point(3, 10.0).as_bytes(), None, None).status, 200);
        assert_eq!(
            live.post(point(1, 30.0).as_bytes(), None, Some("j")).status,
            200
        );
        let snap = live.snapshot();
        let last = snap["seconds"].as_array().unwrap().last().unwrap().clone();
        // Possibly split over two seconds when the clock ticked between.
        let total: f64 = snap["seconds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["requests_per_sec"].as_f64().unwrap())
            .sum();
        assert_eq!(total, 4.0, "{snap}");
        if last["requests_per_sec"] == 4.0 {
            assert_eq!(last["request_duration_ms"], 15.0);
        }
        assert_eq!(snap["streams"].as_array().unwrap().len(), 2);
        // Two posts of one stream in one second: averaged.
        let again = Live::default();
        let _ = again.snapshot();
        loop {
            again.post(point(4, 10.0).as_bytes(), None, None);
            again.post(point(2, 10.0).as_bytes(), None, None);
            let snap = again.snapshot();
            let counts: Vec<f64> = snap["seconds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["requests_per_sec"].as_f64().unwrap())
                .filter(|&r| r > 0.0)
                .collect();
            if counts == [3.0] {
                break;
            }
            // The clock ticked between the two posts: again, afresh.
            assert_eq!(counts.len(), 2, "{snap}");
            again.inner.lock().unwrap().streams.clear();
        }
        assert_eq!(snap["documents"].as_array().unwrap().len(), 2);
        assert_eq!(live.post(b"{not json", None, None).status, 400);
        assert_eq!(live.post(b"42", None, None).status, 400);
        for i in 0..200 {
            live.post(point(1, 1.0).as_bytes(), Some(&format!("r{i}")), None);
        }
        let snap = live.snapshot();
        assert_eq!(snap["streams"].as_array().unwrap().len(), MAX_STREAMS);
        assert_eq!(snap["documents"].as_array().unwrap().len(), MAX_DOCUMENTS);
    }
}
