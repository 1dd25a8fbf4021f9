//! Records into envelopes (`docs/mapping.md`): one span gives its Request or
//! RemoteDependency item (then one Message or Exception item per annotation,
//! should a record built by hand carry any); an event gives one Message or
//! Exception item, in its span's operation when it has one.

use std::borrow::Cow;
use std::time::SystemTime;

use crate::record::ids::new_trace_id;
use crate::record::text::truncate_utf16;
use crate::record::{AttributeValue, Record, SpanData, SpanKind, Status};

use super::event::{custom_event_name, EventView, TelemetryEventData};
use super::exception::{is_exception, ExceptionData};
use super::message::MessageData;
use super::properties::{PropValue, Properties};
use super::semconv::Semantic;
use super::tags::{self, Tags};
use super::{
    Data, Envelope, EnvelopeContext, RemoteDependencyData, RequestData, SpanHex, TraceHex,
};

/// The property carrying a failed span's status description (from
/// `otel.status_description`, a span's `error` field, or an error event).
pub(crate) const STATUS_DESCRIPTION_KEY: &str = "otel.status_description";

/// Appends the envelopes of `record` to `out`: for a span, its Request or
/// RemoteDependency item (then one item per annotation); for an event, one
/// Message or Exception item, with its span's operation tags when it
/// happened in one.
///
/// The envelopes borrow from `record` and `ctx`.
pub(crate) fn map_record<'a>(
    record: &'a Record,
    ctx: &'a EnvelopeContext,
    out: &mut Vec<Envelope<'a>>,
) {
    match record {
        Record::Span(span) => map_span(span, ctx, out),
        Record::Event(event) => {
            let view = EventView::of_event(event, ctx);
            let (data, time) = event_data(&view);
            let tags = match &event.span {
                Some(span) => Tags {
                    operation_id: Some(TraceHex::trace(span.trace_id)),
                    operation_parent_id: Some(SpanHex::span(span.span_id)),
                    operation_name: Some(Cow::Borrowed(truncate_utf16(
                        &span.operation_name,
                        tags::MAX_OPERATION_NAME,
                    ))),
                    ..ctx.base_tags()
                },
                // A dependency outside spans is an operation of its own
                // (the portal shows it as a transaction).
                None if matches!(data, Data::RemoteDependencyData(_)) => Tags {
                    operation_id: Some(TraceHex::trace(new_trace_id())),
                    ..ctx.base_tags()
                },
                None => ctx.base_tags(),
            };
            let rate = match &event.span {
                Some(span) => trace_rate(span.sampled_remotely, span.sample_rate),
                None => event.sample_rate,
            };
            let mut envelope = Envelope::new(ctx, time, tags, data);
            if let Some(rate) = rate {
                envelope.sample_rate = rate;
            }
            out.push(envelope);
        }
    }
}

/// A span's item, then its annotations' items.
pub(crate) fn map_span<'a>(
    span: &'a SpanData,
    ctx: &'a EnvelopeContext,
    out: &mut Vec<Envelope<'a>>,
) {
    let request = matches!(span.kind, SpanKind::Server | SpanKind::Consumer);
    let extra = usize::from(!span.links.is_empty()) + usize::from(span.status.is_error());
    let mut props = Properties::with_capacity(span.attributes.len() + extra);
    let sem = Semantic::scan(&span.attributes, request, &mut props);
    props.push_links(&span.links);
    push_status(&mut props, &span.status);
    let data = if request {
        Data::RequestData(RequestData::from_span(span, &sem, props))
    } else {
        Data::RemoteDependencyData(RemoteDependencyData::from_span(span, &sem, props))
    };
    let tags = span_tags(span, &sem, ctx);
    out.reserve(1 + span.annotations.len());
    out.push(Envelope::new(ctx, span.start_time, tags.clone(), data));
    let event_tags = Tags {
        operation_parent_id: Some(SpanHex::span(span.context.span_id)),
        ..tags
    };
    for annotation in &span.annotations {
        let view = EventView::of_annotation(annotation, ctx);
        let (data, time) = event_data(&view);
        out.push(Envelope::new(ctx, time, event_tags.clone(), data));
    }
    if let Some(rate) = trace_rate(span.sampled_remotely, span.sample_rate) {
        let items = 1 + span.annotations.len();
        let start = out.len() - items;
        for envelope in &mut out[start..] {
            envelope.sample_rate = rate;
        }
    }
}

/// The `sampleRate` of a trace's items when it is not the sampler's fixed
/// one: 100 when recorded on a remote caller's decision (at the caller's
/// unknown rate: ours would extrapolate wrongly, or be 0), else the rate
/// its root was kept at.
fn trace_rate(sampled_remotely: bool, rate: Option<f64>) -> Option<f64> {
    if sampled_remotely {
        Some(100.0)
    } else {
        rate
    }
}

/// An event's item and its time: a SQL dependency for a sqlx query event
/// (starting when the statement did), a custom Event item for an event
/// naming one (`microsoft.custom_event.name`), else an Exception item for
/// an event carrying an error, else a Message item.
fn event_data<'a>(event: &EventView<'a>) -> (Data<'a>, SystemTime) {
    if let Some((dependency, start)) = RemoteDependencyData::from_sqlx_event(event) {
        return (Data::RemoteDependencyData(dependency), start);
    }
    let data = if let Some(name) = custom_event_name(event.attributes) {
        Data::EventData(TelemetryEventData::from_event(event, name))
    } else if is_exception(event.attributes) {
        Data::ExceptionData(ExceptionData::from_event(event))
    } else {
        Data::MessageData(MessageData::from_event(event))
    };
    (data, event.timestamp)
}

/// A failed span's status description, as a property (the item's
/// `success: false` says it failed; this says why).
fn push_status<'a>(props: &mut Properties<'a>, status: &'a Status) {
    if let (true, Some(message)) = (status.is_error(), &status.message) {
        let message = truncate_utf16(message, super::properties::MAX_VALUE);
        props.push(STATUS_DESCRIPTION_KEY, PropValue::Str(message));
    }
}

/// The process-wide tags plus the span's operation and end-user tags.
fn span_tags<'a>(span: &'a SpanData, sem: &Semantic<'a>, ctx: &'a EnvelopeContext) -> Tags<'a> {
    Tags {
        operation_id: Some(TraceHex::trace(span.context.trace_id)),
        operation_parent_id: span.parent_span_id.map(SpanHex::span),
        operation_name: Some(Cow::Borrowed(truncate_utf16(
            &span.operation_name,
            tags::MAX_OPERATION_NAME,
        ))),
        user_id: tag_text(sem.enduser_id, tags::MAX_USER_ID),
        location_ip: tag_text(sem.client_ip, tags::MAX_LOCATION_IP),
        user_agent: tag_text(sem.user_agent, tags::MAX_USER_AGENT),
        ..ctx.base_tags()
    }
}

/// A text attribute cut to a tag's limit.
fn tag_text(value: Option<&AttributeValue>, max_units: usize) -> Option<Cow<'_, str>> {
    value?
        .as_str()
        .map(|s| Cow::Borrowed(truncate_utf16(s, max_units)))
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use crate::record::{Record, SpanKind};
    use tracing_core::Level;

    /// A trace recorded on a remote caller's decision stands for itself.
    #[test]
    fn remotely_sampled_spans_and_their_events_have_sample_rate_100() {
        let mut span = span(SpanKind::Server, &[]);
        span.annotations.push(annotation(Level::INFO, "hi", &[]));
        let local = items(&Record::Span(Box::new(span.clone())));
        assert!(local.iter().all(|i| i["sampleRate"] == 25.0), "{local:#?}");
        span.sampled_remotely = true;
        let remote = items(&Record::Span(Box::new(span)));
        assert_eq!(remote.len(), 2);
        assert!(
            remote.iter().all(|i| i["sampleRate"] == 100.0),
            "{remote:#?}"
        );
    }
}
