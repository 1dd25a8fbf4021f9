//! The ingestion wire format: [`SpanData`](crate::SpanData) and
//! [`EventData`](crate::EventData) records into Application Insights
//! envelopes (`TelemetryItem`s), and envelopes into JSON. No networking.
//!
//! ```text
//!  Record ──map_record──▶ Vec<Envelope<'a>> ──write_envelope──▶ JSON bytes (< 64 KB each)
//! ```
//!
//! * [`map_record`] follows `docs/mapping.md`: server/consumer spans become
//!   [`RequestData`], every other kind [`RemoteDependencyData`], each event
//!   inside a span its own [`MessageData`] or [`ExceptionData`].
//! * Envelopes **borrow** from the record and the [`EnvelopeContext`]: span
//!   names, string attributes, the context tags. Times and durations are
//!   kept inline; mapping a span allocates its properties list (when it
//!   has any) and composed names (`"GET /orders/{id}"`), and nothing per
//!   attribute.
//! * Every schema length limit is applied while mapping, in UTF-16 code
//!   units (as the service counts), cut on a char boundary;
//!   [`write_envelope`] then keeps each item under the service's 64 KB.
//! * The JSON is written by hand ([`json`]), byte for byte what
//!   `serde_json` writes through the types' `Serialize` impls (which stay
//!   the reference the tests compare against): the export thread's cost.
//!
//! One wire type per file: [`request`], [`dependency`], [`message`],
//! [`exception`], [`tags`], [`properties`]; `docs/mapping.md` is the
//! field-by-field table.

use std::borrow::Cow;
use std::time::SystemTime;

use serde::{Serialize, Serializer};

use crate::record::ids::{SpanId, TraceId};
use crate::record::text::truncate_utf16;

pub(crate) mod dependency;
pub(crate) mod event;
pub(crate) mod exception;
mod json;
mod map;
pub(crate) mod message;
mod properties;
pub(crate) mod request;
mod semconv;
pub(crate) mod tags;
mod write;

#[cfg(test)]
mod tests;
/// For the JSON writer's tests, which check what `shrink` makes.
#[cfg(test)]
use write::shrink;

pub(crate) use dependency::RemoteDependencyData;
pub(crate) use event::TelemetryEventData;
pub(crate) use exception::ExceptionData;
pub(crate) use message::MessageData;
pub(crate) use properties::{
    key_fits, PropValue, Properties, MAX_KEY as MAX_PROPERTY_KEY, MAX_VALUE as MAX_PROPERTY_VALUE,
};
pub(crate) use request::RequestData;
pub(crate) use tags::Tags;
// The exporter's entry points. `map_span` and `MAX_ITEM_BYTES` have no user
// outside their own files, hence the `allow`.
#[allow(unused_imports)]
pub(crate) use {
    map::{map_record, map_span},
    write::{write_envelope, MAX_ITEM_BYTES},
};

/// One telemetry item (`TelemetryEnvelope`, client name `TelemetryItem`).
///
/// Required by the schema: `name` and `time`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Envelope<'a> {
    /// Envelope version; always 1 (the schema's default, sent anyway).
    pub(crate) ver: SchemaVersion<1>,
    /// Type name of telemetry data item:
    /// `Microsoft.ApplicationInsights.<Request|RemoteDependency|Message|Exception|Event>`.
    pub(crate) name: &'static str,
    /// Event date time when telemetry item was created: UTC ISO 8601 with a
    /// trailing `Z`, here always `YYYY-MM-DDTHH:MM:SS.ffffffZ`. The service
    /// rejects items older than 48 hours.
    pub(crate) time: Timestamp,
    /// Sampling rate used in application: the item represents
    /// `100 / sampleRate` items. Default 100.
    #[serde(rename = "sampleRate")]
    pub(crate) sample_rate: f64,
    /// The instrumentation key of the Application Insights resource.
    #[serde(rename = "iKey")]
    pub(crate) ikey: &'a str,
    /// Key/value collection of context properties (the `ai.*` tags).
    pub(crate) tags: Tags<'a>,
    /// Telemetry data item: `{ "baseType": …, "baseData": { … } }`.
    pub(crate) data: Data<'a>,
    /// The exporter's context the item was made in (not sent: the JSON
    /// writer copies its pre-written iKey and process-wide tags).
    #[serde(skip)]
    pub(crate) context: &'a EnvelopeContext,
}

impl<'a> Envelope<'a> {
    /// An item of `ctx`'s resource at `time`; `name` follows from `data`.
    pub(crate) fn new(
        ctx: &'a EnvelopeContext,
        time: SystemTime,
        tags: Tags<'a>,
        data: Data<'a>,
    ) -> Self {
        Envelope {
            ver: SchemaVersion,
            name: data.envelope_name(),
            time: Timestamp(crate::time::iso8601_bytes(time)),
            sample_rate: ctx.sample_rate(),
            ikey: ctx.ikey(),
            tags,
            data,
            context: ctx,
        }
    }
}

/// The `data` member: adjacently tagged, `baseType` names the `baseData`
/// domain type.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "baseType", content = "baseData")]
#[allow(clippy::enum_variant_names)] // the names are the wire's `baseType`s
pub(crate) enum Data<'a> {
    /// An incoming request (server and consumer spans).
    RequestData(RequestData<'a>),
    /// An outgoing call or in-process work (every other span kind).
    RemoteDependencyData(RemoteDependencyData<'a>),
    /// A trace message (an event).
    MessageData(MessageData<'a>),
    /// An exception (an event carrying an error).
    ExceptionData(ExceptionData<'a>),
    /// A custom event (an event with `microsoft.custom_event.name`).
    EventData(TelemetryEventData<'a>),
}

impl<'a> Data<'a> {
    /// The envelope `name` for this domain type.
    pub(crate) fn envelope_name(&self) -> &'static str {
        match self {
            Data::RequestData(_) => "Microsoft.ApplicationInsights.Request",
            Data::RemoteDependencyData(_) => "Microsoft.ApplicationInsights.RemoteDependency",
            Data::MessageData(_) => "Microsoft.ApplicationInsights.Message",
            Data::ExceptionData(_) => "Microsoft.ApplicationInsights.Exception",
            Data::EventData(_) => "Microsoft.ApplicationInsights.Event",
        }
    }

    /// The domain's custom properties.
    pub(crate) fn properties_mut(&mut self) -> &mut Properties<'a> {
        match self {
            Data::RequestData(d) => &mut d.properties,
            Data::RemoteDependencyData(d) => &mut d.properties,
            Data::MessageData(d) => &mut d.properties,
            Data::ExceptionData(d) => &mut d.properties,
            Data::EventData(d) => &mut d.properties,
        }
    }
}

/// A schema version number fixed by the type: envelopes are version 1,
/// domains (`baseData`) version 2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SchemaVersion<const V: u8>;

impl<const V: u8> Serialize for SchemaVersion<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(V)
    }
}

/// An id as lowercase hex, kept inline (no allocation): 32 digits for a
/// trace id, 16 for a span id.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct HexId<const N: usize>([u8; N]);

/// A trace id's 32 hex digits.
pub(crate) type TraceHex = HexId<32>;
/// A span id's 16 hex digits.
pub(crate) type SpanHex = HexId<16>;

impl TraceHex {
    /// The hex form of a trace id.
    pub(crate) fn trace(id: TraceId) -> Self {
        HexId(id.hex_buf())
    }
}

impl SpanHex {
    /// The hex form of a span id.
    pub(crate) fn span(id: SpanId) -> Self {
        HexId(id.hex_buf())
    }
}

impl<const N: usize> HexId<N> {
    /// The digits as text.
    pub(crate) fn as_str(&self) -> &str {
        // `hex_buf` only writes ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The digits (ASCII: nothing to escape in JSON).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl<const N: usize> std::fmt::Debug for HexId<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> Serialize for HexId<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A span's `duration`: `end - start` as `D.HH:MM:SS.ffffff` (negative
/// clamps to zero).
pub(crate) fn span_duration(span: &crate::SpanData) -> DurationText {
    DurationText::of(crate::time::elapsed(span.start_time, span.end_time))
}

/// An envelope's `time`, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, kept inline (no
/// allocation per item).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timestamp([u8; 27]);

impl Timestamp {
    /// The text (ASCII digits and separators: nothing to escape in JSON).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        // `iso8601_bytes` only writes ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A `duration`, `D.HH:MM:SS.ffffff`, kept inline (no allocation per
/// item): `buf[skip..]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct DurationText {
    buf: [u8; 19],
    skip: usize,
}

impl DurationText {
    /// The text of `d` (capped at the schema's largest duration).
    pub(crate) fn of(d: std::time::Duration) -> Self {
        let (buf, skip) = crate::time::duration_bytes(d);
        DurationText { buf, skip }
    }

    /// The text (ASCII digits and separators: nothing to escape in JSON).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.buf.get(self.skip..).unwrap_or_default()
    }

    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        // `duration_bytes` only writes ASCII.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl std::fmt::Debug for DurationText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DurationText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// `s` cut to at most `max_units` UTF-16 code units on a char boundary,
/// without copying a borrowed string.
pub(crate) fn cut(s: Cow<'_, str>, max_units: usize) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(truncate_utf16(b, max_units)),
        Cow::Owned(mut o) => {
            let len = truncate_utf16(&o, max_units).len();
            o.truncate(len);
            Cow::Owned(o)
        }
    }
}

// === impl EnvelopeContext ===

/// Who is sending: the settings for the process-wide tags (the builder's,
/// completed from the environment by `config::environment`).
#[derive(Debug, Clone, Default)]
pub(crate) struct TelemetrySettings {
    /// `ai.cloud.role`; when `None`, the executable's name.
    pub(crate) cloud_role: Option<String>,
    /// `ai.cloud.roleInstance`; when `None`, the host name.
    pub(crate) cloud_role_instance: Option<String>,
    /// `ai.application.ver`; none when `None`.
    pub(crate) application_version: Option<String>,
}

/// What every envelope of one exporter shares, resolved once: the iKey,
/// the process-wide tags (already cut to their limits) and the sample rate.
#[derive(Debug, Clone)]
pub(crate) struct EnvelopeContext {
    ikey: String,
    cloud_role: String,
    cloud_role_instance: String,
    sdk_version: String,
    application_version: Option<String>,
    sample_rate: f64,
    /// `,"iKey":"…","tags":{` and the process-wide tags, as JSON; whether
    /// there is any such tag ([`json::context_head`]).
    head_json: (Vec<u8>, bool),
    /// The properties of `Builder::with_property`, checked, added to every
    /// item that does not have them.
    properties: Vec<(String, String)>,
    /// `Builder::with_log_location`: a `log` record's file and line become
    /// properties.
    log_location: bool,
}

/// The SDK name and version sent as `ai.internal.sdkVersion`:
/// `rs<rustc version>:tai<crate version>` (the rustc version comes from
/// `build.rs`).
const SDK_VERSION: &str = concat!(
    "rs",
    env!("TAI_RUSTC_VERSION"),
    ":tai",
    env!("CARGO_PKG_VERSION")
);

/// The role when neither the builder nor the environment names one and the
/// executable's name is unknown.
const FALLBACK_ROLE: &str = "rust-application";

/// The role instance when the host name is unknown.
const FALLBACK_HOST: &str = "unknown";

impl EnvelopeContext {
    /// Resolves the tags' defaults and cuts them to their limits;
    /// `sample_ratio` (0 to 1) becomes `sampleRate = 100 * ratio`.
    pub(crate) fn new(ikey: &str, settings: &TelemetrySettings, sample_ratio: f64) -> Self {
        let role = non_empty(settings.cloud_role.as_deref())
            .map(str::to_owned)
            .unwrap_or_else(default_role);
        let instance = non_empty(settings.cloud_role_instance.as_deref())
            .map(str::to_owned)
            .unwrap_or_else(host_name);
        let version = non_empty(settings.application_version.as_deref());
        let mut ctx = EnvelopeContext {
            ikey: ikey.to_owned(),
            cloud_role: truncate_utf16(&role, tags::MAX_CLOUD_ROLE).to_owned(),
            cloud_role_instance: truncate_utf16(&instance, tags::MAX_CLOUD_ROLE_INSTANCE)
                .to_owned(),
            sdk_version: truncate_utf16(SDK_VERSION, tags::MAX_SDK_VERSION).to_owned(),
            application_version: version
                .map(|v| truncate_utf16(v, tags::MAX_APPLICATION_VER).to_owned()),
            sample_rate: sample_rate(sample_ratio),
            head_json: (Vec::new(), false),
            properties: Vec::new(),
            log_location: false,
        };
        ctx.head_json = json::context_head(&ctx.ikey, &ctx.base_tags());
        ctx
    }

    /// `,"iKey":"…","tags":{` and the process-wide tags, as the JSON
    /// writer writes them, and whether there is any such tag.
    pub(crate) fn head_json(&self) -> (&[u8], bool) {
        (&self.head_json.0, self.head_json.1)
    }

    /// Adds `properties` (checked by `processor::check_properties`) to
    /// every item that does not have them.
    pub(crate) fn with_properties(mut self, properties: Vec<(String, String)>) -> Self {
        self.properties = properties;
        self
    }

    /// Sends a `log` record's file and line (`Builder::with_log_location`).
    pub(crate) fn with_log_location(mut self, on: bool) -> Self {
        self.log_location = on;
        self
    }

    /// Whether a `log` record's file and line are sent.
    pub(crate) fn log_location(&self) -> bool {
        self.log_location
    }

    /// The properties every item gets.
    pub(crate) fn properties(&self) -> &[(String, String)] {
        &self.properties
    }

    /// The instrumentation key.
    pub(crate) fn ikey(&self) -> &str {
        &self.ikey
    }

    /// `ai.cloud.role` and `ai.cloud.roleInstance`, as sent.
    pub(crate) fn role(&self) -> (&str, &str) {
        (&self.cloud_role, &self.cloud_role_instance)
    }

    /// `ai.internal.sdkVersion`, as sent.
    pub(crate) fn sdk_version(&self) -> &str {
        &self.sdk_version
    }

    /// `100 * ratio`: the percentage of items kept.
    pub(crate) fn sample_rate(&self) -> f64 {
        self.sample_rate
    }

    /// The process-wide tags: role, role instance, SDK and application
    /// version.
    pub(crate) fn base_tags(&self) -> Tags<'_> {
        Tags {
            cloud_role: Some(Cow::Borrowed(&self.cloud_role)),
            cloud_role_instance: Some(Cow::Borrowed(&self.cloud_role_instance)),
            sdk_version: Some(Cow::Borrowed(&self.sdk_version)),
            application_ver: self.application_version.as_deref().map(Cow::Borrowed),
            ..Tags::default()
        }
    }
}

/// `100 * ratio`, with the ratio clamped to 0..=1 (NaN counts as 1).
fn sample_rate(ratio: f64) -> f64 {
    if ratio.is_nan() {
        return 100.0;
    }
    100.0 * ratio.clamp(0.0, 1.0)
}

/// `s` trimmed, unless that leaves nothing.
fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// The executable's file stem.
fn default_role() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| FALLBACK_ROLE.to_owned())
}

/// The host name: the kernel's, else `HOSTNAME` or `COMPUTERNAME`.
pub(crate) fn host_name() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let candidates = [
        kernel,
        std::env::var("HOSTNAME").ok(),
        std::env::var("COMPUTERNAME").ok(),
    ];
    candidates
        .iter()
        .find_map(|c| non_empty(c.as_deref()))
        .unwrap_or(FALLBACK_HOST)
        .to_owned()
}
