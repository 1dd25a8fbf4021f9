//! The stdout sink: one line per record in OpenCensus' `SpanData` shape,
//! as OpenCensus' `PrintExporter` does when no exporter is configured.

use std::fmt::Write as _;
use std::io::Write as _;

use crate::record::{
    Annotation, AttributeValue, Attributes, EventData, Link, LinkType, MessageEvent,
    MessageEventKind, Record, SpanData, MAX_ANNOTATIONS, MAX_ATTRIBUTES, MAX_LINKS,
    MAX_MESSAGE_EVENTS,
};
use crate::time::write_iso8601;

/// Prints records to the process's stdout.
#[derive(Debug, Default)]
pub(crate) struct StdoutSink {
    line: String,
}

impl StdoutSink {
    pub(crate) fn export(&mut self, batch: &[Record]) -> usize {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for record in batch {
            self.line.clear();
            match record {
                Record::Span(span) => write_span(&mut self.line, span),
                Record::Event(event) => write_event(&mut self.line, event),
            }
            self.line.push('\n');
            // A closed stdout (a pipe whose reader left) is not our failure
            // to report on every line: the records are counted as exported.
            let _ = out.write_all(self.line.as_bytes());
        }
        let _ = out.flush();
        batch.len()
    }
}

/// Writes `s` as a single-quoted Python-style literal: backslashes, quotes
/// and every control character escaped, so a record is always one line.
fn write_quoted(out: &mut String, s: &str) {
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
}

fn write_time(out: &mut String, t: std::time::SystemTime) {
    out.push('\'');
    write_iso8601(out, t);
    out.push('\'');
}

fn write_value(out: &mut String, value: &AttributeValue) {
    match value {
        AttributeValue::Str(s) | AttributeValue::Debug(s) => write_quoted(out, s),
        AttributeValue::I64(v) => {
            let _ = write!(out, "{v}");
        }
        AttributeValue::U64(v) => {
            let _ = write!(out, "{v}");
        }
        AttributeValue::F64(v) => {
            let _ = write!(out, "{v:?}");
        }
        AttributeValue::Bool(true) => out.push_str("True"),
        AttributeValue::Bool(false) => out.push_str("False"),
        AttributeValue::Error(e) => {
            out.push_str("Error(message=");
            write_quoted(out, &e.message);
            out.push_str(", sources=[");
            for (i, s) in e.sources.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_quoted(out, s);
            }
            out.push_str("])");
        }
    }
}

fn write_attributes(out: &mut String, attrs: &Attributes) {
    out.push_str("BoundedDict({");
    for (i, (key, value)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_quoted(out, key);
        out.push_str(": ");
        write_value(out, value);
    }
    let _ = write!(
        out,
        "}}, maxlen={MAX_ATTRIBUTES}, dropped={})",
        attrs.dropped()
    );
}

fn write_list<T>(
    out: &mut String,
    items: &[T],
    max: usize,
    dropped: u32,
    mut each: impl FnMut(&mut String, &T),
) {
    out.push_str("BoundedList([");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        each(out, item);
    }
    let _ = write!(out, "], maxlen={max}, dropped={dropped})");
}

fn write_annotation(out: &mut String, a: &Annotation) {
    out.push_str("Annotation(timestamp=");
    write_time(out, a.timestamp);
    out.push_str(", description=");
    write_quoted(out, &a.description);
    let _ = write!(out, ", level='{}', attributes=", a.level);
    write_attributes(out, &a.attributes);
    out.push(')');
}

fn write_message_event(out: &mut String, m: &MessageEvent) {
    out.push_str("MessageEvent(timestamp=");
    write_time(out, m.timestamp);
    let kind = match m.kind {
        MessageEventKind::Sent => 1,
        MessageEventKind::Received => 2,
    };
    let _ = write!(
        out,
        ", id={}, type={kind}, uncompressed_size_bytes={}, compressed_size_bytes={})",
        m.id, m.uncompressed_size_bytes, m.compressed_size_bytes
    );
}

fn write_link(out: &mut String, l: &Link) {
    let kind = match l.link_type {
        LinkType::Unspecified => 0,
        LinkType::ChildLinkedSpan => 1,
        LinkType::ParentLinkedSpan => 2,
    };
    let _ = write!(
        out,
        "Link(trace_id={}, span_id={}, type={kind}, attributes=",
        l.trace_id, l.span_id
    );
    write_attributes(out, &l.attributes);
    out.push(')');
}

/// One span in OpenCensus' `SpanData(...)` repr shape.
pub(crate) fn write_span(out: &mut String, s: &SpanData) {
    let c = &s.context;
    out.push_str("SpanData(name=");
    write_quoted(out, &s.name);
    let _ = write!(
        out,
        ", context=SpanContext(trace_id={}, span_id={}, trace_options=TraceOptions(enabled={}), tracestate=",
        c.trace_id,
        c.span_id,
        if c.trace_options.is_sampled() { "True" } else { "False" }
    );
    match &c.tracestate {
        Some(ts) => write_quoted(out, ts),
        None => out.push_str("None"),
    }
    let _ = write!(out, "), span_id='{}', parent_span_id=", c.span_id);
    match s.parent_span_id {
        Some(p) => {
            let _ = write!(out, "'{p}'");
        }
        None => out.push_str("None"),
    }
    out.push_str(", attributes=");
    write_attributes(out, &s.attributes);
    out.push_str(", start_time=");
    write_time(out, s.start_time);
    out.push_str(", end_time=");
    write_time(out, s.end_time);
    let _ = write!(
        out,
        ", child_span_count={}, stack_trace=None, annotations=",
        s.child_span_count
    );
    write_list(
        out,
        &s.annotations,
        MAX_ANNOTATIONS,
        s.dropped_annotations,
        write_annotation,
    );
    out.push_str(", message_events=");
    write_list(
        out,
        &s.message_events,
        MAX_MESSAGE_EVENTS,
        s.dropped_message_events,
        write_message_event,
    );
    out.push_str(", links=");
    write_list(out, &s.links, MAX_LINKS, s.dropped_links, write_link);
    let _ = write!(
        out,
        ", status=Status(code={}, message=",
        s.status.code.as_str()
    );
    match &s.status.message {
        Some(m) => write_quoted(out, m),
        None => out.push_str("None"),
    }
    out.push_str("), same_process_as_parent_span=");
    out.push_str(match s.same_process_as_parent_span {
        Some(true) => "True",
        Some(false) => "False",
        None => "None",
    });
    let _ = write!(out, ", span_kind={})", s.kind.as_str());
}

/// One event outside any span, in the same style.
pub(crate) fn write_event(out: &mut String, e: &EventData) {
    out.push_str("EventData(timestamp=");
    write_time(out, e.timestamp);
    let _ = write!(out, ", level='{}', target=", e.level);
    write_quoted(out, e.target);
    out.push_str(", message=");
    write_quoted(out, &e.message);
    out.push_str(", attributes=");
    write_attributes(out, &e.attributes);
    if let Some(span) = &e.span {
        // Only the events of a span still open at shutdown get here.
        let _ = write!(
            out,
            ", span=EventSpan(trace_id={}, span_id={})",
            span.trace_id, span.span_id
        );
    }
    out.push(')');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_one_line() {
        let mut out = String::new();
        write_quoted(&mut out, "a'b\\c\nd\0e\u{1b}f\u{2028}é");
        assert_eq!(out, r"'a\'b\\c\nd\u{0}e\u{1b}f\u{2028}é'");
    }
}
