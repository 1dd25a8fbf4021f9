//! Live Metrics documents: the sample telemetry the portal lists beside
//! the charts (failed requests and dependencies, exceptions, traces).

use serde::Serialize;

use super::item::{Item, ItemKind};
use crate::record::text::truncate_utf16;

/// At most this many documents go in one post (the reference client's
/// bound is 21); failures take the place of traces when it is reached.
pub(crate) const MAX_DOCUMENTS_PER_POST: usize = 20;
/// At most this many `Properties` per document.
pub(crate) const MAX_PROPERTIES: usize = 10;
/// Property keys are cut to this many UTF-16 units.
pub(crate) const MAX_PROPERTY_KEY: usize = 150;
/// Property values and document text fields are cut to this many UTF-16
/// units.
pub(crate) const MAX_TEXT: usize = 1024;

/// One `DocumentIngress`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Document {
    #[serde(flatten)]
    pub(crate) body: Body,
    /// The document streams of the collection configuration that asked for
    /// it (none without a configuration).
    #[serde(rename = "DocumentStreamIds", skip_serializing_if = "Vec::is_empty")]
    pub(crate) stream_ids: Vec<String>,
    /// The item's custom dimensions, bounded and cut.
    #[serde(rename = "Properties", skip_serializing_if = "Vec::is_empty")]
    pub(crate) properties: Vec<Property>,
}

/// A document's type and fields.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "DocumentType")]
pub(crate) enum Body {
    #[serde(rename_all = "PascalCase")]
    Request {
        name: String,
        url: String,
        response_code: String,
        duration: String,
    },
    #[serde(rename_all = "PascalCase")]
    RemoteDependency {
        name: String,
        command_name: String,
        result_code: String,
        duration: String,
    },
    #[serde(rename_all = "PascalCase")]
    Exception {
        exception_type: String,
        exception_message: String,
    },
    #[serde(rename_all = "PascalCase")]
    Trace { message: String },
}

/// One custom dimension (lower-case names on the wire).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Property {
    pub(crate) key: String,
    pub(crate) value: String,
}

fn cut(s: &str) -> String {
    truncate_utf16(s, MAX_TEXT).to_owned()
}

/// An ISO 8601 duration in seconds: 120 ms → `PT0.12S`, 1500 ms → `PT1.5S`
/// (microsecond precision).
pub(crate) fn iso_duration(ms: f64) -> String {
    let ms = if ms.is_finite() { ms.max(0.0) } else { 0.0 };
    let micros = (ms * 1000.0).round() as u64;
    let (secs, frac) = (micros / 1_000_000, micros % 1_000_000);
    if frac == 0 {
        return format!("PT{secs}S");
    }
    let frac = format!("{frac:06}");
    format!("PT{secs}.{}S", frac.trim_end_matches('0'))
}

impl Document {
    /// The document for `item`, with its stream ids.
    pub(crate) fn of(item: &Item<'_>, stream_ids: Vec<String>) -> Document {
        let body = match item.kind {
            ItemKind::Request => Body::Request {
                name: cut(item.name),
                url: cut(item.url),
                response_code: cut(item.result_text),
                duration: iso_duration(item.duration_ms),
            },
            ItemKind::Dependency => Body::RemoteDependency {
                name: cut(item.name),
                command_name: cut(item.data),
                result_code: cut(item.result_text),
                duration: iso_duration(item.duration_ms),
            },
            ItemKind::Exception => Body::Exception {
                exception_type: cut(item.exception_type),
                exception_message: cut(item.message),
            },
            ItemKind::Trace => Body::Trace {
                message: cut(item.message),
            },
        };
        let mut properties = Vec::new();
        item.dimensions.for_each(&mut |key, value| {
            if properties.len() < MAX_PROPERTIES {
                properties.push(Property {
                    key: truncate_utf16(key, MAX_PROPERTY_KEY).to_owned(),
                    value: cut(value),
                });
            }
        });
        Document {
            body,
            stream_ids,
            properties,
        }
    }

    /// Whether the portal would miss it more than a trace: a failure or an
    /// exception.
    pub(crate) fn is_failure(&self) -> bool {
        !matches!(self.body, Body::Trace { .. })
    }
}

/// Whether an item is a document without a collection configuration:
/// failed requests and dependencies, exceptions, traces.
pub(crate) fn sampled_by_default(item: &Item<'_>) -> bool {
    match item.kind {
        ItemKind::Request | ItemKind::Dependency => !item.success,
        ItemKind::Exception | ItemKind::Trace => true,
    }
}

/// The documents of one post interval, at most
/// [`MAX_DOCUMENTS_PER_POST`]; once full, a failure replaces the oldest
/// trace and anything else is counted as dropped.
#[derive(Debug, Default)]
pub(crate) struct Documents {
    pub(crate) kept: Vec<Document>,
    pub(crate) dropped: u64,
}

impl Documents {
    /// Whether a document of `kind` would be kept (checked before one is
    /// built).
    pub(crate) fn has_room_for(&self, failure: bool) -> bool {
        self.kept.len() < MAX_DOCUMENTS_PER_POST
            || (failure && self.kept.iter().any(|d| !d.is_failure()))
    }

    pub(crate) fn push(&mut self, document: Document) {
        if self.kept.len() < MAX_DOCUMENTS_PER_POST {
            self.kept.push(document);
            return;
        }
        let trace = self.kept.iter().position(|d| !d.is_failure());
        match trace {
            Some(i) if document.is_failure() => {
                self.kept.remove(i);
                self.kept.push(document);
            }
            _ => {}
        }
        self.dropped += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_iso_8601_seconds() {
        assert_eq!(iso_duration(120.0), "PT0.12S");
        assert_eq!(iso_duration(1500.0), "PT1.5S");
        assert_eq!(iso_duration(2000.0), "PT2S");
        assert_eq!(iso_duration(0.0015), "PT0.000002S");
        assert_eq!(iso_duration(-3.0), "PT0S");
        assert_eq!(iso_duration(f64::NAN), "PT0S");
    }

    #[test]
    fn documents_serialise_as_the_service_expects() {
        let item = Item {
            name: "POST /api/orders",
            url: "https://example.local/api/orders",
            result_code: Some(500),
            result_text: "500",
            duration_ms: 250.0,
            success: false,
            ..Item::empty(ItemKind::Request)
        };
        let doc = Document::of(&item, vec!["s1".into()]);
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "DocumentType": "Request", "Name": "POST /api/orders",
                "Url": "https://example.local/api/orders", "ResponseCode": "500",
                "Duration": "PT0.25S", "DocumentStreamIds": ["s1"]
            })
        );
        let trace = Document::of(
            &Item {
                message: "processed batch 41",
                ..Item::empty(ItemKind::Trace)
            },
            Vec::new(),
        );
        assert_eq!(
            serde_json::to_value(&trace).unwrap(),
            serde_json::json!({"DocumentType": "Trace", "Message": "processed batch 41"})
        );
    }

    #[test]
    fn a_full_post_keeps_failures_over_traces_and_counts_the_rest() {
        let trace = || {
            Document::of(
                &Item {
                    message: "m",
                    ..Item::empty(ItemKind::Trace)
                },
                Vec::new(),
            )
        };
        let failure = Document::of(&Item::empty(ItemKind::Exception), Vec::new());
        let mut docs = Documents::default();
        for _ in 0..MAX_DOCUMENTS_PER_POST {
            docs.push(trace());
        }
        assert!(!docs.has_room_for(false));
        assert!(docs.has_room_for(true));
        docs.push(failure.clone());
        docs.push(trace());
        assert_eq!(docs.kept.len(), MAX_DOCUMENTS_PER_POST);
        assert_eq!(docs.kept.iter().filter(|d| d.is_failure()).count(), 1);
        assert_eq!(docs.dropped, 2);
    }
}
