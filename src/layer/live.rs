//! What the layer tells Live Metrics: every request, dependency and
//! exception, sampled or not, counted on the application thread while
//! someone watches (`crate::live`). While nobody does, the layer's only
//! cost is one relaxed load per span.
//!
//! A sampled span is counted when it closes, from its state. An unsampled
//! span started while someone watches keeps a small [`LiveSpan`] in its
//! registry extensions: its start, its kind and what says whether it
//! failed (`otel.kind`, `otel.status_code`, `error`, the HTTP status), the
//! fields visited for that and nothing else.
//!
//! Spans count as the items they are exported as: server and consumer
//! spans (and spans with a remote parent and no `otel.kind`) as requests,
//! every other span, internal ones included, as a dependency. A request or
//! dependency failed when its status is an error or its HTTP status is
//! 400 or more (the exported item's `success`). An exception is an event
//! with an `error`, `exception.type` or `exception.message` field.

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
pub(super) fn is_exception(metadata: &Metadata<'_>) -> bool {
    let fields = metadata.fields();
    fields.field(FIELD_ERROR).is_some()
        || fields.field(FIELD_EXCEPTION_MESSAGE).is_some()
        || fields.field(FIELD_EXCEPTION_TYPE).is_some()
}

/// An unsampled span counted for Live Metrics (in its extensions).
#[derive(Debug)]
pub(super) struct LiveSpan {
    pub(super) start: Ticks,
    pub(super) remote_parent: bool,
    pub(super) fields: LiveFields,
}

impl LiveSpan {
    pub(super) fn counted(&self) -> Counted {
        counted(self.fields.kind, self.remote_parent)
    }
}

/// The fields that decide how an unsampled span is counted.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct LiveFields {
    kind: Option<SpanKind>,
    /// `otel.status_code`: `Some(true)` error, `Some(false)` ok.
    status_error: Option<bool>,
    /// An `error` field was recorded.
    error: bool,
    http: Option<u64>,
}

impl LiveFields {
    /// Takes what `newer` set.
    pub(super) fn update(&mut self, newer: LiveFields) {
        self.kind = newer.kind.or(self.kind);
        self.status_error = newer.status_error.or(self.status_error);
        self.error |= newer.error;
        self.http = newer.http.or(self.http);
    }

    /// The exported item's rule: an error status (an `error` field unless
    /// `otel.status_code = ok` said otherwise), or HTTP 400 or more.
    pub(super) fn failed(&self) -> bool {
        let status = self.status_error.unwrap_or(self.error);
        status || self.http.is_some_and(|code| code >= 400)
    }
}

impl Visit for LiveFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            FIELD_KIND => self.kind = SpanKind::parse(value),
            FIELD_STATUS_CODE => {
                if value.eq_ignore_ascii_case("error") {
                    self.status_error = Some(true);
                } else if value.eq_ignore_ascii_case("ok") {
                    self.status_error = Some(false);
                }
            }
            FIELD_ERROR => self.error = true,
            FIELD_HTTP_STATUS | FIELD_HTTP_STATUS_OLD => self.http = value.trim().parse().ok(),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if matches!(field.name(), FIELD_HTTP_STATUS | FIELD_HTTP_STATUS_OLD) {
            self.http = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if matches!(field.name(), FIELD_HTTP_STATUS | FIELD_HTTP_STATUS_OLD) {
            self.http = u64::try_from(value).ok();
        }
    }

    fn record_error(&mut self, field: &Field, _value: &(dyn std::error::Error + 'static)) {
        if field.name() == FIELD_ERROR {
            self.error = true;
        }
    }

    fn record_debug(&mut self, field: &Field, _value: &dyn std::fmt::Debug) {
        // Never formatted: only whether an `error` was recorded matters.
        if field.name() == FIELD_ERROR {
            self.error = true;
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
        f.update(LiveFields {
            http: Some(404),
            ..LiveFields::default()
        });
        assert!(f.failed());
        let ok_status_with_error = LiveFields {
            status_error: Some(false),
            error: true,
            ..LiveFields::default()
        };
        assert!(!ok_status_with_error.failed());
        let error = LiveFields {
            error: true,
            ..LiveFields::default()
        };
        assert!(error.failed());
    }
}
