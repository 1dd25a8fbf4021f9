//! The Live Metrics client (the shared state is `crate::live`): a task on the exporter's runtime that pings,
//! posts and applies the service's answers (timings in `machine.rs`).
//!
//! Requests are plain JSON over the exporter's hyper + rustls stack, one at
//! a time, each bounded by a timeout; a slow service skips ticks, never
//! queues posts. The service may move the client to another host with
//! `x-ms-qps-service-endpoint-redirect-v2`: only to an `https` host of the
//! Azure Monitor domains ([`ALLOWED_REDIRECT_SUFFIXES`]), for the rest of
//! the process. Nothing runs on an application thread.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use super::auth::Auth;
use super::envelope::{Data, Envelope};
use super::transport::{origin, RawAnswer, Transport, TransportConfig};
use crate::diag::{Once, TARGET};
use crate::live::filter::Configuration;
use crate::live::item::{Dimensions, Item, ItemKind};
use crate::live::machine::{Answer, Machine};
use crate::live::process::{Cpu, Gauges};
use crate::live::wire::{self, header, metric, DataPoint, Identity, MetricPoint};
use crate::live::{Interval, Live};
use crate::record::Record;

/// The bound on a ping.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// The bound on a post: a post slower than this is abandoned, and the
/// next one covers its interval too.
pub(crate) const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// The host suffixes a redirect may name.
pub(crate) const ALLOWED_REDIRECT_SUFFIXES: &[&str] = &[
    ".livediagnostics.monitor.azure.com",
    ".monitor.azure.com",
    ".services.visualstudio.com",
    ".applicationinsights.azure.com",
    ".monitor.azure.us",
    ".applicationinsights.azure.us",
    ".monitor.azure.cn",
    ".applicationinsights.azure.cn",
];

/// What the client needs to start.
#[derive(Debug)]
pub(crate) struct ClientConfig {
    /// `LiveEndpoint`, without the path.
    pub(crate) endpoint: String,
    pub(crate) ikey: String,
    pub(crate) identity: Identity,
    pub(crate) auth: Auth,
    /// The transport to `endpoint`, and its settings: a redirect builds a
    /// new one to the host it names (each transport routes to its own
    /// host: direct, or through the proxy with a tunnel for `https`).
    pub(crate) transport: Transport,
    pub(crate) transport_config: TransportConfig,
}

/// The client's state between requests.
#[derive(Debug)]
pub(crate) struct Client {
    live: Arc<Live>,
    config: ClientConfig,
    /// Where requests go: the endpoint, or where a redirect sent them.
    base: String,
    /// The ETag of the configuration applied (`""`: none).
    etag: String,
    /// Problems of a configuration that could not be read at all, sent in
    /// every post until the next one.
    parse_errors: Vec<serde_json::Value>,
    machine: Machine,
    cpu: Cpu,
    /// When the counters were last taken.
    collected: Instant,
    warned: Warnings,
}

#[derive(Debug, Default)]
struct Warnings {
    failing: Once,
    redirect: Once,
    configuration: Once,
}

impl Client {
    /// Identifies this process to the service: the role and instance the
    /// items carry, the host, a random stream id (32 hex digits).
    pub(crate) fn identity(context: &super::envelope::EnvelopeContext) -> Identity {
        let (role, instance) = context.role();
        let stream_id = format!(
            "{:016x}{:016x}",
            crate::record::ids::next_u64(),
            crate::record::ids::next_u64()
        );
        Identity {
            version: context.sdk_version().to_owned(),
            invariant_version: wire::INVARIANT_VERSION,
            instance: instance.to_owned(),
            role_name: role.to_owned(),
            machine_name: super::envelope::host_name(),
            stream_id,
            is_web_app: std::env::var_os("WEBSITE_SITE_NAME").is_some(),
            performance_collection_supported: true,
        }
    }

    pub(crate) fn new(live: Arc<Live>, config: ClientConfig) -> Self {
        let now = Instant::now();
        let seed = crate::record::ids::next_u64();
        Client {
            live,
            base: config.endpoint.trim_end_matches('/').to_owned(),
            config,
            etag: String::new(),
            parse_errors: Vec::new(),
            // The first ping goes out at once.
            machine: Machine::new(now, seed),
            cpu: Cpu::default(),
            collected: now,
            warned: Warnings::default(),
        }
    }

    /// Pings and posts until the runtime shuts down.
    pub(crate) async fn run(mut self) {
        loop {
            let due = self.machine.due();
            tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
            let started = Instant::now();
            if self.machine.posting() {
                let answer = self.post().await;
                let change = self.machine.post_done(started, Instant::now(), answer);
                if change.reset {
                    self.stop_watching();
                }
            } else {
                let answer = self.ping().await;
                let change = self.machine.ping_done(started, Instant::now(), answer);
                if change.reset {
                    self.start_watching();
                }
            }
        }
    }

    fn start_watching(&mut self) {
        self.live.set_watching(true);
        // The configuration a subscribed ping brought stays.
        self.collected = Instant::now();
        self.cpu.sample();
    }

    fn stop_watching(&mut self) {
        self.live.set_watching(false);
        self.etag.clear();
        self.parse_errors.clear();
    }

    async fn ping(&mut self) -> Answer {
        let body = match serde_json::to_vec(&self.config.identity) {
            Ok(body) => body,
            Err(_) => return Answer::Failed,
        };
        let mut headers = self.common_headers();
        let identity = &self.config.identity;
        insert(&mut headers, header::MACHINE_NAME, &identity.machine_name);
        insert(&mut headers, header::INSTANCE_NAME, &identity.instance);
        insert(&mut headers, header::STREAM_ID, &identity.stream_id);
        insert(&mut headers, header::ROLE_NAME, &identity.role_name);
        insert(
            &mut headers,
            header::INVARIANT_VERSION,
            &wire::INVARIANT_VERSION.to_string(),
        );
        self.exchange(wire::PING_PATH, headers, body, PING_TIMEOUT)
            .await
    }

    async fn post(&mut self) -> Answer {
        let body = self.data_point();
        let headers = self.common_headers();
        self.exchange(wire::POST_PATH, headers, body, POST_TIMEOUT)
            .await
    }

    /// Takes the interval's counters and documents into a post body.
    fn data_point(&mut self) -> Vec<u8> {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.collected).as_secs_f64();
        self.collected = now;
        let (interval, _dropped) = self.live.take();
        let gauges = self.cpu.sample();
        let metrics = standard_metrics(&interval, elapsed, gauges);
        let mut metrics = metrics.to_vec();
        metrics.extend(
            interval
                .derived
                .iter()
                .map(|(id, value)| MetricPoint::new(id.clone(), *value)),
        );
        let mut errors = self.parse_errors.clone();
        if let Some(configuration) = self.live.configuration() {
            errors.extend(
                configuration
                    .errors()
                    .iter()
                    .filter_map(|e| serde_json::to_value(e).ok()),
            );
        }
        let point = DataPoint {
            identity: &self.config.identity,
            timestamp: wire::timestamp(SystemTime::now()),
            metrics: &metrics,
            documents: &interval.documents,
            collection_configuration_errors: &errors,
        };
        serde_json::to_vec(&[point]).unwrap_or_default()
    }

    fn common_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(8);
        insert(
            &mut headers,
            header::TRANSMISSION_TIME,
            &wire::dotnet_ticks(SystemTime::now()).to_string(),
        );
        insert(&mut headers, header::CONFIGURATION_ETAG, &self.etag);
        headers
    }

    /// One request and what its answer says.
    async fn exchange(
        &mut self,
        path: &str,
        mut headers: HeaderMap,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Answer {
        let url = wire::url(&self.base, path, &self.config.ikey);
        let Ok(uri) = url.parse::<Uri>() else {
            return Answer::Failed;
        };
        if let Some(authorization) = self.config.auth.authorization(&self.base).await {
            match authorization {
                Ok(value) => {
                    headers.insert(http::header::AUTHORIZATION, value);
                }
                Err(reason) => {
                    self.failed(&uri, &reason);
                    return Answer::Failed;
                }
            }
        }
        let result = self
            .config
            .transport
            .post_json(uri.clone(), headers, Bytes::from(body), timeout)
            .await;
        match result {
            Ok(answer) => self.read(&uri, answer),
            Err(reason) => {
                self.failed(&uri, &reason);
                Answer::Failed
            }
        }
    }

    fn failed(&self, uri: &Uri, reason: &str) {
        self.warned.failing.warn(format_args!(
            "LiveMetrics.RequestFailed: a Live Metrics request to {} failed: {reason}; \
             retrying (further failures are logged at debug level)",
            origin(uri)
        ));
    }

    /// Applies an answer: the redirect, the configuration, whether someone
    /// watches.
    fn read(&mut self, uri: &Uri, answer: RawAnswer) -> Answer {
        if let Some(target) = text(&answer.headers, header::REDIRECT) {
            self.redirect(&target);
        }
        if answer.status != 200 {
            self.failed(uri, &format!("the service answered {}", answer.status));
            return Answer::Failed;
        }
        let subscribed = text(&answer.headers, header::SUBSCRIBED)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let hint = text(&answer.headers, header::POLLING_HINT)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis);
        let etag = text(&answer.headers, header::CONFIGURATION_ETAG).unwrap_or_default();
        if subscribed {
            self.configure(&etag, &answer.body);
        }
        Answer::Ok { subscribed, hint }
    }

    /// A configuration ETag different from the applied one: read the body
    /// (from a ping or a post alike); an empty ETag clears it.
    fn configure(&mut self, etag: &str, body: &[u8]) {
        if etag == self.etag {
            return;
        }
        if etag.is_empty() {
            self.etag.clear();
            self.parse_errors.clear();
            self.live.set_configuration(None);
            return;
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            // The ETag changed but the body is not there: keep asking.
            return;
        }
        self.etag = etag.to_owned();
        self.parse_errors.clear();
        match Configuration::parse(body) {
            Ok(configuration) => self.live.set_configuration(Some(Arc::new(configuration))),
            Err(err) => {
                self.warned.configuration.warn(format_args!(
                    "LiveMetrics.InvalidConfiguration: the collection configuration {etag} \
                     could not be read ({err}); it is reported to the service"
                ));
                self.live.set_configuration(None);
                self.parse_errors.push(serde_json::json!({
                    "CollectionConfigurationErrorType":
                        "CollectionConfigurationFailureToCreateUnexpected",
                    "Message": format!("the collection configuration could not be read: {err}"),
                    "FullException": "",
                    "Data": [{"key": "ETag", "value": etag}],
                }));
            }
        }
    }

    /// Follows a redirect when it names an `https` host of the allowed
    /// domains, without user information.
    fn redirect(&mut self, target: &str) {
        match allowed_redirect(target) {
            Ok(base) => {
                if base == self.base {
                    return;
                }
                let config = TransportConfig {
                    endpoint: base.clone(),
                    ..self.config.transport_config.clone()
                };
                match Transport::new(config) {
                    Ok(transport) => {
                        tracing::info!(
                            target: TARGET,
                            "LiveMetrics.Redirected: the service moved Live Metrics to {base}"
                        );
                        self.config.transport = transport;
                        self.base = base;
                    }
                    Err(err) => self.warned.redirect.warn(format_args!(
                        "LiveMetrics.RedirectRefused: a redirect to {base} was not followed: {err}"
                    )),
                }
            }
            Err(reason) => self.warned.redirect.warn(format_args!(
                "LiveMetrics.RedirectRefused: a redirect was not followed: {reason}"
            )),
        }
    }
}

/// The base a redirect leads to (`https://host[:port]`), or why not.
pub(crate) fn allowed_redirect(target: &str) -> Result<String, &'static str> {
    let uri: Uri = target
        .trim()
        .parse()
        .map_err(|_| "it is not an absolute URL")?;
    let authority = uri.authority().ok_or("it is not an absolute URL")?;
    if !uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    {
        return Err("it is not https");
    }
    if authority.as_str().contains('@') {
        return Err("it carries user information");
    }
    let host = authority.host().trim_end_matches('.').to_ascii_lowercase();
    if !ALLOWED_REDIRECT_SUFFIXES.iter().any(|s| host.ends_with(s)) {
        return Err("its host is not in Azure Monitor's domains");
    }
    Ok(match authority.port_u16() {
        Some(port) => format!("https://{host}:{port}"),
        None => format!("https://{host}"),
    })
}

/// The eleven standard metrics of one interval of `elapsed` seconds.
pub(crate) fn standard_metrics(
    interval: &Interval,
    elapsed: f64,
    gauges: Gauges,
) -> [MetricPoint; 11] {
    let rate = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    let mean_ms = |micros: u64, n: u64| {
        if n == 0 {
            0.0
        } else {
            micros as f64 / n as f64 / 1000.0
        }
    };
    [
        MetricPoint::new(metric::REQUESTS, rate(interval.requests)),
        MetricPoint::new(metric::REQUESTS_FAILED, rate(interval.requests_failed)),
        MetricPoint::new(
            metric::REQUEST_DURATION,
            mean_ms(interval.request_micros, interval.requests),
        ),
        MetricPoint::new(metric::DEPENDENCIES, rate(interval.dependencies)),
        MetricPoint::new(
            metric::DEPENDENCIES_FAILED,
            rate(interval.dependencies_failed),
        ),
        MetricPoint::new(
            metric::DEPENDENCY_DURATION,
            mean_ms(interval.dependency_micros, interval.dependencies),
        ),
        MetricPoint::new(metric::EXCEPTIONS, rate(interval.exceptions)),
        MetricPoint::new(metric::COMMITTED_BYTES, gauges.committed_bytes),
        MetricPoint::new(metric::PHYSICAL_BYTES, gauges.physical_bytes),
        MetricPoint::new(metric::PROCESSOR_TIME, gauges.machine_cpu),
        MetricPoint::new(metric::PROCESS_CPU_NORMALIZED, gauges.process_cpu),
    ]
}

// === what the sink shows Live Metrics ===

/// Shows each item of `envelopes` (mapped from `record`) to Live Metrics.
pub(crate) fn observe(live: &Live, record: &Record, envelopes: &[Envelope<'_>]) {
    let duration_ms = match record {
        Record::Span(span) => span
            .end_time
            .duration_since(span.start_time)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        Record::Event(_) => 0.0,
    };
    for envelope in envelopes {
        observe_one(live, &envelope.data, duration_ms);
    }
}

fn observe_one(live: &Live, data: &Data<'_>, duration_ms: f64) {
    match data {
        Data::RequestData(d) => live.observe(&Item {
            name: &d.name,
            url: d.url.as_deref().unwrap_or(""),
            result_code: d.response_code.parse().ok(),
            result_text: &d.response_code,
            duration_ms,
            success: d.success,
            dimensions: &d.properties,
            ..Item::empty(ItemKind::Request)
        }),
        Data::RemoteDependencyData(d) => live.observe(&Item {
            name: &d.name,
            result_code: d.result_code.parse().ok(),
            result_text: &d.result_code,
            duration_ms,
            success: d.success,
            target: d.target.as_deref().unwrap_or(""),
            dependency_type: &d.dependency_type,
            data: d.data.as_deref().unwrap_or(""),
            dimensions: &d.properties,
            ..Item::empty(ItemKind::Dependency)
        }),
        Data::MessageData(d) => live.observe(&Item {
            message: &d.message,
            dimensions: &d.properties,
            ..Item::empty(ItemKind::Trace)
        }),
        Data::ExceptionData(d) => {
            let details = &d.exceptions[0];
            live.observe(&Item {
                message: &details.message,
                exception_type: &details.type_name,
                stack: details.stack.as_deref().unwrap_or(""),
                dimensions: &d.properties,
                ..Item::empty(ItemKind::Exception)
            });
        }
        // Live Metrics has no custom events: neither counters nor documents.
        Data::EventData(_) => {}
    }
}

impl Dimensions for super::envelope::Properties<'_> {
    fn get(&self, key: &str) -> Option<std::borrow::Cow<'_, str>> {
        let (_, value) = self.entries().iter().find(|(k, _)| k == key)?;
        Some(prop_text(value))
    }

    fn any_value(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.entries().iter().any(|(_, v)| f(&prop_text(v)))
    }

    fn for_each(&self, f: &mut dyn FnMut(&str, &str)) {
        for (k, v) in self.entries() {
            f(k, &prop_text(v));
        }
    }
}

fn prop_text<'a>(value: &'a super::envelope::PropValue<'_>) -> std::borrow::Cow<'a, str> {
    value.text()
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

fn text(headers: &HeaderMap, name: &'static str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_follow_only_https_hosts_of_azure_monitor() {
        let ok = allowed_redirect("https://westus2.livediagnostics.monitor.azure.com:18605/");
        assert_eq!(
            ok.as_deref(),
            Ok("https://westus2.livediagnostics.monitor.azure.com:18605")
        );
        assert_eq!(
            allowed_redirect("HTTPS://WestUS2.LiveDiagnostics.Monitor.Azure.com/x/y").as_deref(),
            Ok("https://westus2.livediagnostics.monitor.azure.com")
        );
        for bad in [
            "http://westus2.livediagnostics.monitor.azure.com:18605/",
            "https://evil.example.com:18605/",
            "https://user@westus2.livediagnostics.monitor.azure.com:18605/",
            "https://livediagnostics.monitor.azure.com.evil.com/",
            "https://monitor.azure.com/", // the bare domain is no host of it
            "not a url",
            "",
            "/relative",
        ] {
            assert!(allowed_redirect(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_reference_second_gives_the_reference_values() {
        // One second of the reference traffic: 3 requests OK 120 ms, one
        // failed 250 ms, one 404 5 ms (failed, by the envelope's rule: HTTP
        // status 400 or more); a client call OK 40 ms, one failed 1500 ms, a
        // database call 8 ms, an internal span 2 ms (a dependency, as the
        // exported item is); two exceptions.
        let live = Live::default();
        live.set_watching(true);
        let ms = |m: u64| m * 1_000_000;
        for (d, failed) in [
            (120, false),
            (120, false),
            (120, false),
            (250, true),
            (5, true),
        ] {
            live.count_span(crate::live::Counted::Request, ms(d), failed);
        }
        for (d, failed) in [(40, false), (1500, true), (8, false), (2, false)] {
            live.count_span(crate::live::Counted::Dependency, ms(d), failed);
        }
        live.count_exception();
        live.count_exception();
        let (interval, _) = live.take();
        let m = standard_metrics(&interval, 1.0, Default::default());
        let get = |name| m.iter().find(|p| p.name == name).unwrap().value;
        assert_eq!(get(metric::REQUESTS), 5.0);
        assert_eq!(get(metric::REQUESTS_FAILED), 2.0);
        assert!((get(metric::REQUEST_DURATION) - 123.0).abs() < 1e-9);
        assert_eq!(get(metric::DEPENDENCIES), 4.0);
        assert_eq!(get(metric::DEPENDENCIES_FAILED), 1.0);
        assert!((get(metric::DEPENDENCY_DURATION) - 387.5).abs() < 1e-9);
        assert_eq!(get(metric::EXCEPTIONS), 2.0);
        // Rates are divided by the real interval; empty ones are zeros.
        live.count_span(crate::live::Counted::Request, ms(10), false);
        let (interval, _) = live.take();
        let m = standard_metrics(&interval, 2.0, Default::default());
        assert_eq!(m[0].value, 0.5);
        assert_eq!(m[3].value, 0.0);
        assert_eq!(m.len(), 11);
    }
}
