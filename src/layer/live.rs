//! What the layer tells Live Metrics: every request, dependency and
//! exception, sampled or not, counted on the application thread while
//! someone watches (`crate::live`). While nobody does, the layer's only
//! cost is one relaxed load per span.
//!
//! A sampled span is counted when it closes, from its state. An unsampled
//! span started while someone watches gets a [`LiveSpan`] in the layer's
//! [`LiveTable`](super::table::LiveTable), by its id (in its registry
//! extensions only when its bucket is full; see `layer/table.rs`): its
//! start, and in one word of flags ([`LiveFields`]) its remote parent, its
//! kind and what says whether it failed (`otel.kind`, `otel.status_code`,
//! `error`, the HTTP status), the fields visited for that and nothing
//! else. A span whose callsite has none of those fields is not visited at
//! all; which callsites have some (and which events describe exceptions)
//! is worked out once per callsite ([`ByCallsite`]). What is left per
//! span: the checks the layer makes of any span, two clock reads, a slot
//! claimed and freed, and the counters (measured, `tools/span-cost.sh`:
//! about 240 instructions a span over nobody watching).
//!
//! A span made sampled after its creation (re-parented on a sampled remote
//! context) leaves the live table then, and is counted once, as sampled,
//! when it closes. A span counted while someone watched and closed after
//! the watch ended leaves the table uncounted.
//!
//! Spans count as the items they are exported as: server and consumer
//! spans (and spans with a remote parent and no `otel.kind`) as requests,
//! every other span, internal ones included, as a dependency. A request or
//! dependency failed when its status is an error or its HTTP status is
//! 400 or more (the exported item's `success`). An exception is an event
//! with an `error`, `exception.type` or `exception.message` field. sqlx's
//! query events are exported as SQL dependencies, and counted as such.

use std::sync::atomic::{AtomicUsize, Ordering};

use tracing_core::field::{Field, Visit};
use tracing_core::Metadata;

use super::visitor::{FIELD_ERROR, FIELD_EXCEPTION_MESSAGE, FIELD_EXCEPTION_TYPE, FIELD_KIND};
use crate::live::Counted;
use crate::pipeline::Ticks;
use crate::record::{AttributeValue, SpanData, SpanKind};

/// `otel.status_code`.
const FIELD_STATUS_CODE: &str = "otel.status_code";
/// The HTTP status fields, new and old convention names.
const FIELD_HTTP_STATUS: &str = "http.response.status_code";
const FIELD_HTTP_STATUS_OLD: &str = "http.status_code";

/// How Live Metrics counts a span of `kind` (`None`: not given).
pub(super) fn counted(kind: Option<SpanKind>, remote_parent: bool) -> Counted {
    match kind {
        Some(SpanKind::Server | SpanKind::Consumer) => Counted::Request,
        Some(_) => Counted::Dependency,
        None if remote_parent => Counted::Request,
        None => Counted::Dependency,
    }
}

/// Whether a sampled span's record says it failed (the exported item's
/// `success`, negated).
pub(super) fn failed(data: &SpanData) -> bool {
    let http = [FIELD_HTTP_STATUS, FIELD_HTTP_STATUS_OLD]
        .iter()
        .find_map(|k| data.attributes.get(k))
        .and_then(http_code);
    data.status.is_error() || http.is_some_and(|code| code >= 400)
}

fn http_code(value: &AttributeValue) -> Option<u64> {
    match value {
        AttributeValue::I64(v) => u64::try_from(*v).ok(),
        AttributeValue::U64(v) => Some(*v),
        AttributeValue::Str(s) | AttributeValue::Debug(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Whether an event describes an exception (by its field names).
pub(super) fn is_exception(metadata: &'static Metadata<'static>) -> bool {
    static BY_CALLSITE: ByCallsite = ByCallsite::new();
    BY_CALLSITE.answer(metadata, |metadata| {
        any_field(metadata, |name| {
            name.as_bytes().first() == Some(&b'e')
                && matches!(
                    name,
                    FIELD_ERROR | FIELD_EXCEPTION_MESSAGE | FIELD_EXCEPTION_TYPE
                )
        })
    })
}

/// The run time of a statement from sqlx's query event (its
/// `elapsed_secs`), in nanoseconds: the SQL dependency the event is
/// exported as (`docs/mapping.md`). `None` for any other event.
pub(super) fn sqlx_statement_nanos(event: &tracing_core::Event<'_>) -> Option<u64> {
    if event.metadata().target() != crate::targets::SQLX_QUERY {
        return None;
    }
    struct Elapsed(Option<f64>);
    impl Visit for Elapsed {
        fn record_f64(&mut self, field: &Field, value: f64) {
            if field.name() == "elapsed_secs" {
                self.0 = Some(value);
            }
        }
        fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
    }
    let mut elapsed = Elapsed(None);
    event.record(&mut elapsed);
    let elapsed = std::time::Duration::try_from_secs_f64(elapsed.0?).ok()?;
    Some(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
}

/// Whether a span's fields include one [`LiveFields`] looks at (by name):
/// else its values need not be visited at all, which is most of what
/// counting a span would cost.
pub(super) fn has_live_fields(metadata: &'static Metadata<'static>) -> bool {
    static BY_CALLSITE: ByCallsite = ByCallsite::new();
    BY_CALLSITE.answer(metadata, |metadata| {
        any_field(metadata, |name| {
            matches!(name.as_bytes().first(), Some(b'o' | b'e' | b'h'))
                && matches!(
                    name,
                    FIELD_KIND
                        | FIELD_STATUS_CODE
                        | FIELD_ERROR
                        | FIELD_HTTP_STATUS
                        | FIELD_HTTP_STATUS_OLD
                )
        })
    })
}

fn any_field(metadata: &Metadata<'_>, mut f: impl FnMut(&str) -> bool) -> bool {
    metadata.fields().iter().any(|field| f(field.name()))
}

/// Slots in a [`ByCallsite`] cache.
const CALLSITES: usize = 256;

/// A yes-or-no question about a callsite's field names, answered once per
/// callsite rather than once per span or event: walking the names costs
/// more than the rest of counting a span. Direct-mapped by the address of
/// the callsite's metadata (`'static`: never reused for another), each
/// slot one word, the address with the answer in its low bits (metadata
/// is aligned to at least 4). Two callsites sharing a slot only cost
/// working the answer out again; races between threads are benign (each
/// word is whole). 2 KiB of static memory per question, never allocated.
struct ByCallsite([AtomicUsize; CALLSITES]);

const _: () = assert!(std::mem::align_of::<Metadata<'static>>() >= 4);

impl ByCallsite {
    /// The slot holds an answer (a null address never is one).
    const KNOWN: usize = 0b01;
    /// The answer is yes.
    const YES: usize = 0b10;

    const fn new() -> Self {
        ByCallsite([const { AtomicUsize::new(0) }; CALLSITES])
    }

    #[inline]
    fn answer(
        &self,
        metadata: &'static Metadata<'static>,
        work_out: impl FnOnce(&Metadata<'_>) -> bool,
    ) -> bool {
        let address = metadata as *const Metadata<'static> as usize;
        let index = ((address as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize;
        let slot = &self.0[index % CALLSITES];
        let cached = slot.load(Ordering::Relaxed);
        if cached & !Self::YES == address | Self::KNOWN {
            return cached & Self::YES != 0;
        }
        let answer = work_out(metadata);
        let yes = if answer { Self::YES } else { 0 };
        slot.store(address | Self::KNOWN | yes, Ordering::Relaxed);
        answer
    }
}

/// An unsampled span counted for Live Metrics: in the layer's
/// [`LiveTable`](super::table::LiveTable), or in its registry extensions
/// when its bucket is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LiveSpan {
    pub(super) start: Ticks,
    /// What decides how it is counted, its remote parent included.
    pub(super) fields: LiveFields,
}

impl LiveSpan {
    pub(super) fn counted(&self) -> Counted {
        self.fields.counted()
    }
}

/// The fields that decide how an unsampled span is counted, and whether
/// its parent is remote, in the bits of one word (so the table keeps them
/// in an atomic, without a lock). Each of the kind, the status and the
/// HTTP status is two bits, zero when not given: a newer value replaces
/// an older one ([`update`](Self::update)), as the exported item's would.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct LiveFields(u32);

impl LiveFields {
    /// `otel.kind`: a kind counted as a request, or as a dependency.
    const KIND: u32 = 0b11;
    const KIND_REQUEST: u32 = 0b01;
    const KIND_DEPENDENCY: u32 = 0b10;
    /// `otel.status_code`: ok, or error.
    const STATUS: u32 = 0b11 << 2;
    const STATUS_OK: u32 = 0b01 << 2;
    const STATUS_ERROR: u32 = 0b10 << 2;
    /// The HTTP status: below 400, or 400 or more.
    const HTTP: u32 = 0b11 << 4;
    const HTTP_OK: u32 = 0b01 << 4;
    const HTTP_FAILED: u32 = 0b10 << 4;
    /// An `error` field was recorded.
    const ERROR: u32 = 1 << 6;
    /// The span's parent is remote (not a field: set at creation).
    const REMOTE_PARENT: u32 = 1 << 7;
    /// The two-bit groups' low bits.
    const GROUPS_LOW: u32 = 0b01_01_01;

    /// The fields as a word, to keep in an atomic.
    #[inline]
    pub(super) fn to_bits(self) -> u32 {
        self.0
    }

    /// Fields kept with [`to_bits`](Self::to_bits).
    #[inline]
    pub(super) fn from_bits(bits: u32) -> Self {
        LiveFields(bits)
    }

    /// These fields of a span whose parent is remote or not.
    #[inline]
    pub(super) fn with_remote_parent(self, remote_parent: bool) -> Self {
        LiveFields(
            self.0
                | if remote_parent {
                    Self::REMOTE_PARENT
                } else {
                    0
                },
        )
    }

    fn set(&mut self, group: u32, value: u32) {
        self.0 = (self.0 & !group) | value;
    }

    fn set_kind(&mut self, kind: Option<SpanKind>) {
        let value = match kind {
            Some(SpanKind::Server | SpanKind::Consumer) => Self::KIND_REQUEST,
            Some(_) => Self::KIND_DEPENDENCY,
            None => 0,
        };
        self.set(Self::KIND, value);
    }

    fn set_http(&mut self, code: Option<u64>) {
        let value = match code {
            Some(code) if code >= 400 => Self::HTTP_FAILED,
            Some(_) => Self::HTTP_OK,
            None => 0,
        };
        self.set(Self::HTTP, value);
    }

    /// These fields with what `newer` set.
    #[inline]
    pub(super) fn merged(self, newer: LiveFields) -> LiveFields {
        let given = (newer.0 | newer.0 >> 1) & Self::GROUPS_LOW;
        let replaced = given | given << 1;
        LiveFields((self.0 & !replaced) | newer.0)
    }

    /// Takes what `newer` set.
    pub(super) fn update(&mut self, newer: LiveFields) {
        *self = self.merged(newer);
    }

    /// How Live Metrics counts the span.
    pub(super) fn counted(self) -> Counted {
        match self.0 & Self::KIND {
            Self::KIND_REQUEST => Counted::Request,
            Self::KIND_DEPENDENCY => Counted::Dependency,
            _ if self.0 & Self::REMOTE_PARENT != 0 => Counted::Request,
            _ => Counted::Dependency,
        }
    }

    /// The exported item's rule: an error status (an `error` field unless
    /// `otel.status_code = ok` said otherwise), or HTTP 400 or more.
    pub(super) fn failed(self) -> bool {
        let status = match self.0 & Self::STATUS {
            Self::STATUS_ERROR => true,
            Self::STATUS_OK => false,
            _ => self.0 & Self::ERROR != 0,
        };
        status || self.0 & Self::HTTP == Self::HTTP_FAILED
    }
}

impl Visit for LiveFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            FIELD_KIND => self.set_kind(SpanKind::parse(value)),
            FIELD_STATUS_CODE => {
                if value.eq_ignore_ascii_case("error") {
                    self.set(Self::STATUS, Self::STATUS_ERROR);
                } else if value.eq_ignore_ascii_case("ok") {
                    self.set(Self::STATUS, Self::STATUS_OK);
                }
            }
            FIELD_ERROR => self.0 |= Self::ERROR,
            FIELD_HTTP_STATUS | FIELD_HTTP_STATUS_OLD => self.set_http(value.trim().parse().ok()),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if matches!(field.name(), FIELD_HTTP_STATUS | FIELD_HTTP_STATUS_OLD) {
            self.set_http(Some(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if matches!(field.name(), FIELD_HTTP_STATUS | FIELD_HTTP_STATUS_OLD) {
            self.set_http(u64::try_from(value).ok());
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        // As for the exported item: `error = false` says nothing.
        if value && field.name() == FIELD_ERROR {
            self.0 |= Self::ERROR;
        }
    }

    fn record_error(&mut self, field: &Field, _value: &(dyn std::error::Error + 'static)) {
        if field.name() == FIELD_ERROR {
            self.0 |= Self::ERROR;
        }
    }

    fn record_debug(&mut self, field: &Field, _value: &dyn std::fmt::Debug) {
        // Never formatted: only whether an `error` was recorded matters.
        if field.name() == FIELD_ERROR {
            self.0 |= Self::ERROR;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_count_as_the_items_they_are_exported_as() {
        assert_eq!(counted(Some(SpanKind::Server), false), Counted::Request);
        assert_eq!(counted(Some(SpanKind::Consumer), false), Counted::Request);
        assert_eq!(counted(Some(SpanKind::Client), true), Counted::Dependency);
        assert_eq!(
            counted(Some(SpanKind::Internal), false),
            Counted::Dependency
        );
        assert_eq!(counted(None, true), Counted::Request);
        assert_eq!(counted(None, false), Counted::Dependency);
    }

    #[test]
    fn failure_follows_the_envelope_rule() {
        let mut f = LiveFields::default();
        assert!(!f.failed());
        let mut http = LiveFields::default();
        http.set_http(Some(404));
        f.update(http);
        assert!(f.failed());
        let mut ok_status_with_error = LiveFields::default();
        ok_status_with_error.set(LiveFields::STATUS, LiveFields::STATUS_OK);
        ok_status_with_error.0 |= LiveFields::ERROR;
        assert!(!ok_status_with_error.failed());
        let error = LiveFields(LiveFields::ERROR);
        assert!(error.failed());
    }

    /// The fields a span with these `(name, value)` string fields gets.
    fn visited(fields: &[(&'static str, &str)]) -> LiveFields {
        struct Callsite;
        impl tracing_core::Callsite for Callsite {
            fn set_interest(&self, _: tracing_core::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static CALLSITE: Callsite = Callsite;
        let names: Vec<&'static str> = fields.iter().map(|(n, _)| *n).collect();
        let set = tracing_core::field::FieldSet::new(
            Box::leak(names.into_boxed_slice()),
            tracing_core::identify_callsite!(&CALLSITE),
        );
        let mut live = LiveFields::default();
        for (name, value) in fields {
            live.record_str(&set.field(name).expect("a field"), value);
        }
        live
    }

    #[test]
    fn newer_values_replace_older_ones_and_errors_stay() {
        let mut f = visited(&[("otel.kind", "server"), ("http.status_code", "500")]);
        assert_eq!(f.counted(), Counted::Request);
        assert!(f.failed());
        f.update(visited(&[("http.status_code", "200")]));
        assert!(!f.failed(), "the newer HTTP status counts");
        assert_eq!(f.counted(), Counted::Request, "the kind stays");
        f.update(visited(&[("error", "boom")]));
        assert!(f.failed());
        f.update(visited(&[("otel.status_code", "OK")]));
        assert!(!f.failed(), "an ok status overrides the error field");
        f.update(visited(&[("otel.kind", "client")]));
        assert_eq!(f.counted(), Counted::Dependency);
        // Unparsable values say nothing: the older ones stay.
        f.update(visited(&[
            ("otel.kind", "sideways"),
            ("http.status_code", "x"),
        ]));
        assert_eq!(f.counted(), Counted::Dependency);
        assert!(!f.failed());
    }

    #[test]
    fn a_remote_parent_without_kind_makes_a_request() {
        let f = LiveFields::default();
        assert_eq!(f.counted(), Counted::Dependency);
        let remote = f.with_remote_parent(true);
        assert_eq!(remote.counted(), Counted::Request);
        assert_eq!(LiveFields::from_bits(remote.to_bits()), remote);
        let mut internal = remote;
        internal.update(visited(&[("otel.kind", "internal")]));
        assert_eq!(internal.counted(), Counted::Dependency);
    }

    /// A callsite's metadata with these field names, for the caches.
    fn metadata(names: &[&'static str]) -> &'static Metadata<'static> {
        struct Callsite;
        impl tracing_core::Callsite for Callsite {
            fn set_interest(&self, _: tracing_core::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static CALLSITE: Callsite = Callsite;
        let names: &'static [&'static str] = Box::leak(names.to_vec().into_boxed_slice());
        Box::leak(Box::new(Metadata::new(
            "test",
            "test",
            tracing_core::Level::INFO,
            None,
            None,
            None,
            tracing_core::field::FieldSet::new(names, tracing_core::identify_callsite!(&CALLSITE)),
            tracing_core::metadata::Kind::SPAN,
        )))
    }

    #[test]
    fn live_fields_and_exceptions_are_known_by_name_and_cached() {
        let plain = metadata(&["route", "id", "cached", "e"]);
        let kind = metadata(&["route", "otel.kind"]);
        let http = metadata(&["http.response.status_code"]);
        let error = metadata(&["n", "error"]);
        let exception = metadata(&["message", "exception.type"]);
        for _ in 0..2 {
            // The second round answers from the caches.
            assert!(!has_live_fields(plain));
            assert!(has_live_fields(kind));
            assert!(has_live_fields(http));
            assert!(has_live_fields(error));
            assert!(!is_exception(plain));
            assert!(!is_exception(kind));
            assert!(is_exception(error));
            assert!(is_exception(exception));
        }
        // Many callsites share the 256 slots: answers stay right.
        let many: Vec<_> = (0..1_000)
            .map(|k| {
                let live = k % 3 == 0;
                (metadata(if live { &["error"] } else { &["other"] }), live)
            })
            .collect();
        for _ in 0..2 {
            for &(m, live) in &many {
                assert_eq!(has_live_fields(m), live);
                assert_eq!(is_exception(m), live);
            }
        }
    }
}
