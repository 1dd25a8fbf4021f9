//! Envelopes into JSON, each item under the service's 64 KB item limit.
//!
//! The mapping already applies every per-field limit, but those limits add
//! up to more than 64 KB: 32 properties of 8192 four-byte characters are
//! 1 MB, a 32768-character message of control characters escapes to 192 KB.
//! An item over [`MAX_ITEM_BYTES`] is shrunk, in this order, until it fits:
//!
//! 1. properties are dropped, largest first, just enough;
//! 2. the largest text field (message, stack, data, URL, name, tags, …) is
//!    cut on a char boundary, just enough, and again with the next largest;
//! 3. a [`TRUNCATED_KEY`] property says what was dropped and cut.
//!
//! Items that fit (nearly all) are written once, by the hand-written
//! writer ([`json::write`]), straight into the request body being built.

use std::borrow::Cow;

use super::json;
use super::properties::{PropValue, Properties};
use super::{Data, Envelope};

/// The largest item written, in bytes of JSON: the service rejects items
/// over 64 KB (65,536 bytes); we keep a margin.
pub(crate) const MAX_ITEM_BYTES: usize = 64_000;

/// The property added to a shrunk item: what was dropped and cut.
pub(crate) const TRUNCATED_KEY: &str = "tai.truncated";

/// Room kept for the [`TRUNCATED_KEY`] property (its value is cut to fit).
const NOTE_BUDGET: usize = 1024;

/// Cuts tried before giving up on shrinking further (there are at most 17
/// text fields; each cut either fits the item or empties a field).
const MAX_CUTS: usize = 32;

/// Appends the JSON of one item to `out`, at most [`MAX_ITEM_BYTES`] bytes
/// (besides an absurd iKey, the only field never cut). Written by the
/// hand-written writer ([`json::write`]), byte for byte what `serde_json`
/// would write; never fails.
pub(crate) fn write_envelope(env: &Envelope<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    json::write(env, out);
    if out.len() - start <= MAX_ITEM_BYTES {
        return;
    }
    out.truncate(start);
    let small = shrink(env.clone());
    json::write(&small, out);
}

/// `env` made to fit [`MAX_ITEM_BYTES`].
pub(super) fn shrink(mut env: Envelope<'_>) -> Envelope<'_> {
    let limit = MAX_ITEM_BYTES - NOTE_BUDGET;
    let mut note = Note::default();
    let mut len = json_len(&env);
    if len > limit {
        note.dropped = drop_largest(env.data.properties_mut(), len - limit);
        len = json_len(&env);
    }
    for _ in 0..MAX_CUTS {
        if len <= limit {
            break;
        }
        match cut_largest_text(&mut env, len - limit) {
            Some(name) => note.cut.push(name),
            None => break,
        }
        len = json_len(&env);
    }
    if note.cut.contains(&"stack") {
        if let Data::ExceptionData(d) = &mut env.data {
            d.exceptions[0].has_full_stack = false;
        }
    }
    env.data
        .properties_mut()
        .push(TRUNCATED_KEY, note.into_value());
    if json_len(&env) > MAX_ITEM_BYTES {
        env.data.properties_mut().clear(); // only an absurd iKey gets here
    }
    env
}

/// What shrinking did, for the [`TRUNCATED_KEY`] property.
#[derive(Default)]
struct Note<'a> {
    dropped: Vec<&'a str>,
    cut: Vec<&'static str>,
}

impl Note<'_> {
    /// `dropped: k1, k2; cut: message, stack`, at most [`NOTE_BUDGET`]
    /// bytes of JSON.
    fn into_value(self) -> PropValue<'static> {
        let mut s = String::from("over 64 KB");
        for (label, names) in [("dropped", &self.dropped), ("cut", &self.cut)] {
            if !names.is_empty() {
                s.push_str(&format!("; {label}: {}", names.join(", ")));
            }
        }
        let len = prefix_within(&s, NOTE_BUDGET - 64).len();
        s.truncate(len);
        PropValue::Owned(s)
    }
}

/// Drops the largest properties until about `excess` bytes are freed;
/// returns their keys.
fn drop_largest<'a>(props: &mut Properties<'a>, excess: usize) -> Vec<&'a str> {
    let mut sizes: Vec<(usize, usize)> = (props.entries().iter().enumerate())
        .map(|(i, (key, value))| (entry_len(key, value), i))
        .collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let mut drop = vec![false; sizes.len()];
    let mut freed = 0;
    for (size, i) in sizes {
        if freed >= excess {
            break;
        }
        drop[i] = true;
        freed += size;
    }
    let keys = (props.entries().iter().zip(&drop))
        .filter(|(_, d)| **d)
        .map(|((key, _), _)| *key)
        .collect();
    props.retain(|i| !drop[i]);
    keys
}

/// The JSON size of one `"key":"value",` entry.
fn entry_len(key: &str, value: &PropValue<'_>) -> usize {
    let value = match value {
        PropValue::Str(s) => escaped_len(s),
        PropValue::Owned(s) => escaped_len(s),
        PropValue::Scalar(v) => v.to_string().len(),
    };
    escaped_len(key) + value + 6
}

/// Cuts the largest text field by about `excess` bytes of JSON (to empty
/// if it is smaller); returns its name, `None` when every field is empty.
fn cut_largest_text(env: &mut Envelope<'_>, excess: usize) -> Option<&'static str> {
    let mut fields = text_fields(env);
    let (i, size) = (fields.iter().enumerate())
        .map(|(i, f)| (i, escaped_len(f.slot.get())))
        .max_by_key(|(_, size)| *size)?;
    if size == 0 {
        return None;
    }
    let field = &mut fields[i];
    field.slot.cut(size.saturating_sub(excess));
    Some(field.name)
}

/// A text field that can be cut in place.
struct TextField<'r, 'a> {
    name: &'static str,
    slot: Slot<'r, 'a>,
}

/// Where a text field lives.
enum Slot<'r, 'a> {
    Cow(&'r mut Cow<'a, str>),
    OptCow(&'r mut Option<Cow<'a, str>>),
    Tag(&'r mut Option<&'a str>),
}

impl Slot<'_, '_> {
    fn get(&self) -> &str {
        match self {
            Slot::Cow(c) => c,
            Slot::OptCow(c) => c.as_deref().unwrap_or_default(),
            Slot::Tag(t) => t.unwrap_or_default(),
        }
    }

    /// Keeps the longest prefix of at most `budget` bytes of JSON.
    fn cut(&mut self, budget: usize) {
        match self {
            Slot::Cow(c) => cut_cow(c, budget),
            Slot::OptCow(Some(c)) => cut_cow(c, budget),
            Slot::OptCow(None) => {}
            Slot::Tag(t) => **t = t.map(|s| prefix_within(s, budget)),
        }
    }
}

fn cut_cow(c: &mut Cow<'_, str>, budget: usize) {
    match c {
        Cow::Borrowed(s) => *s = prefix_within(s, budget),
        Cow::Owned(s) => {
            let len = prefix_within(s, budget).len();
            s.truncate(len);
        }
    }
}

/// Every text field of an item that may be cut.
fn text_fields<'r, 'a>(env: &'r mut Envelope<'a>) -> Vec<TextField<'r, 'a>> {
    let field = |name, slot| TextField { name, slot };
    let mut fields: Vec<TextField<'r, 'a>> = match &mut env.data {
        Data::RequestData(d) => vec![
            field("name", Slot::Cow(&mut d.name)),
            field("responseCode", Slot::Cow(&mut d.response_code)),
            field("source", Slot::OptCow(&mut d.source)),
            field("url", Slot::OptCow(&mut d.url)),
        ],
        Data::RemoteDependencyData(d) => vec![
            field("name", Slot::Cow(&mut d.name)),
            field("resultCode", Slot::Cow(&mut d.result_code)),
            field("data", Slot::OptCow(&mut d.data)),
            field("type", Slot::Cow(&mut d.dependency_type)),
            field("target", Slot::OptCow(&mut d.target)),
        ],
        Data::MessageData(d) => vec![field("message", Slot::Cow(&mut d.message))],
        Data::ExceptionData(d) => {
            let [e] = &mut d.exceptions;
            vec![
                field("typeName", Slot::Cow(&mut e.type_name)),
                field("message", Slot::Cow(&mut e.message)),
                field("stack", Slot::OptCow(&mut e.stack)),
            ]
        }
    };
    for (name, tag) in env.tags.texts_mut() {
        fields.push(field(name, Slot::Tag(tag)));
    }
    fields
}

/// How many bytes `s` takes inside a JSON string, as `serde_json` escapes
/// it: `"` and `\` and the short control escapes take 2, other control
/// characters 6 (`\u00XX`), everything else its UTF-8 length.
fn escaped_len(s: &str) -> usize {
    s.bytes().map(escaped_byte_len).sum()
}

fn escaped_byte_len(b: u8) -> usize {
    match b {
        b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
        0..=0x1f => 6,
        _ => 1,
    }
}

/// The longest prefix of `s`, on a char boundary, whose escaped form takes
/// at most `budget` bytes.
fn prefix_within(s: &str, budget: usize) -> &str {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        let len = if c.is_ascii() {
            escaped_byte_len(c as u8)
        } else {
            c.len_utf8()
        };
        if used + len > budget {
            return &s[..i];
        }
        used += len;
    }
    s
}

/// The length of `env`'s JSON, without keeping it (shrinking only: an
/// oversize item is rare).
fn json_len(env: &Envelope<'_>) -> usize {
    let mut buf = Vec::new();
    json::write(env, &mut buf);
    buf.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appinsights::envelope::tests::{annotation, attrs, items, s, span};
    use crate::record::text::Text;
    use crate::record::{AttributeValue, EventData, Record, SpanKind};
    use serde_json::Value;
    use tracing_core::Level;

    /// 200 distinct static keys.
    fn keys() -> Vec<&'static str> {
        (0..200)
            .map(|i| &*Box::leak(format!("key{i:03}").into_boxed_str()))
            .collect()
    }

    fn size(item: &Value) -> usize {
        serde_json::to_vec(item).unwrap().len()
    }

    #[test]
    fn an_item_that_fits_is_untouched() {
        let item = &items(&Record::Span(Box::new(span(
            SpanKind::Internal,
            &[("k", s("v"))],
        ))))[0];
        assert_eq!(
            item["data"]["baseData"]["properties"],
            serde_json::json!({ "k": "v" })
        );
    }

    #[test]
    fn largest_properties_are_dropped_to_fit() {
        // 200 fields (32 kept) of 8192 four-byte characters: 1 MB of values,
        // plus one small property that must survive.
        let big = AttributeValue::Str(Text::from("😀".repeat(8192)));
        let mut fields: Vec<_> = keys().into_iter().map(|k| (k, big.clone())).collect();
        fields.push(("small", s("kept")));
        let item = &items(&Record::Span(Box::new(span(SpanKind::Internal, &fields))))[0];
        assert!(size(item) <= MAX_ITEM_BYTES, "{}", size(item));
        let props = item["data"]["baseData"]["properties"].as_object().unwrap();
        assert_eq!(props["small"], "kept");
        let note = props[TRUNCATED_KEY].as_str().unwrap();
        assert!(note.starts_with("over 64 KB; dropped: key"), "{note}");
        let kept_big = props.values().filter(|v| v.as_str().unwrap().len() > 1000);
        for v in kept_big {
            assert_eq!(v.as_str().unwrap().chars().count(), 8192, "kept whole");
        }
        assert!(props.len() > 2, "only as many as needed are dropped");
    }

    #[test]
    fn control_characters_escape_and_the_message_is_cut() {
        let text = "\u{1}é".repeat(16384); // 32768 chars, 8 bytes each in JSON
        let event = EventData {
            timestamp: crate::appinsights::envelope::tests::start(),
            level: Level::INFO,
            target: "t",
            message: Text::from(text.as_str()),
            attributes: attrs(&[]),
            span: None,
        };
        let item = &items(&Record::Event(Box::new(event)))[0];
        assert!(size(item) <= MAX_ITEM_BYTES);
        let message = item["data"]["baseData"]["message"].as_str().unwrap();
        assert!(text.starts_with(message) && message.len() > 20_000);
        let note = item["data"]["baseData"]["properties"][TRUNCATED_KEY].as_str();
        assert_eq!(note, Some("over 64 KB; cut: message"));
    }

    #[test]
    fn exception_message_and_stack_are_cut() {
        let huge = s(&"😀".repeat(40_000));
        let mut traced = span(SpanKind::Internal, &[]);
        traced.annotations.push(annotation(
            Level::ERROR,
            "",
            &[
                ("exception.message", huge.clone()),
                ("exception.stacktrace", huge),
            ],
        ));
        let item = &items(&Record::Span(Box::new(traced)))[1];
        assert!(size(item) <= MAX_ITEM_BYTES);
        let detail = &item["data"]["baseData"]["exceptions"][0];
        assert_eq!(detail["hasFullStack"], false);
        let total =
            detail["message"].as_str().unwrap().len() + detail["stack"].as_str().unwrap().len();
        assert!(total > 50_000, "{total}");
    }

    #[test]
    fn a_dependency_with_every_field_hostile_fits() {
        let long = |n: usize| s(&"\u{7}😀\"".repeat(n));
        let mut fields = vec![
            ("db.system", long(1000)),
            ("db.name", long(1000)),
            ("db.statement", long(8000)),
            ("server.address", long(1000)),
            ("enduser.id", long(100)),
        ];
        for key in keys().into_iter().take(27) {
            fields.push((key, long(8000)));
        }
        let mut hostile = span(SpanKind::Client, &fields);
        hostile.operation_name = "\u{1}".repeat(1024).into();
        hostile.name = "\u{2}".repeat(5000).into();
        let item = &items(&Record::Span(Box::new(hostile)))[0];
        assert!(size(item) <= MAX_ITEM_BYTES, "{}", size(item));
        assert_eq!(
            item["tags"]["ai.operation.id"],
            crate::appinsights::envelope::tests::TRACE
        );
    }

    #[test]
    fn escaped_lengths_match_serde_json() {
        for text in [
            "plain",
            "q\"b\\",
            "\n\r\t\u{8}\u{c}",
            "\u{0}\u{1f}\u{7f}",
            "é😀",
        ] {
            let json = serde_json::to_string(text).unwrap();
            assert_eq!(escaped_len(text) + 2, json.len(), "{text:?}");
        }
        assert_eq!(prefix_within("a\u{1}é", 6), "a");
        assert_eq!(prefix_within("a\u{1}é", 7), "a\u{1}");
        assert_eq!(prefix_within("a\u{1}é", 9), "a\u{1}é");
    }
}
