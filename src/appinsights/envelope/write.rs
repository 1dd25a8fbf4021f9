//! Envelopes into JSON, each item under the service's 64 KB item limit.
//!
//! The mapping already applies every per-field limit, but those limits add
//! up to more than 64 KB: 32 properties of 8192 three-byte characters are
//! 768 KB, a 32768-unit message of control characters escapes to 192 KB.
//! An item over [`MAX_ITEM_BYTES`] is shrunk until it fits:
//!
//! 1. the text fields (message, stack, data, URL, name, tags, …) and
//!    property values larger than one common size are cut to it, on a char
//!    boundary; the properties that cannot be cut (numbers, the links'
//!    JSON) and are larger are dropped. The size is the largest that frees
//!    enough, so anything smaller (a `case` or `n` property, a correlation
//!    key) is kept whole;
//! 2. a [`TRUNCATED_KEY`] property says what was cut and dropped.
//!
//! Items that fit (nearly all) are written once, by the hand-written
//! writer ([`json::write`]), straight into the request body being built.

use std::borrow::Cow;

use super::json;
use super::properties::{CutText, PropValue};
use super::{Data, Envelope};

/// The largest item written, in bytes of JSON: the service rejects items
/// over 64 KB (65,536 bytes); we keep a margin.
pub(crate) const MAX_ITEM_BYTES: usize = 64_000;

/// The property added to a shrunk item: what was dropped and cut.
pub(crate) const TRUNCATED_KEY: &str = "tai.truncated";

/// Room kept for the [`TRUNCATED_KEY`] property (its value is cut to fit).
const NOTE_BUDGET: usize = 1024;

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
    let len = json_len(&env);
    if len > limit {
        shrink_largest(&mut env, len - limit, &mut note);
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
struct Note {
    /// Text fields cut, by their JSON names.
    cut: Vec<&'static str>,
    /// Properties whose value was cut, by key (copied: rare).
    cut_properties: Vec<String>,
    /// Properties dropped, by key.
    dropped: Vec<String>,
}

impl Note {
    /// `cut: message, stack; cut properties: k1; dropped: k2`, at most
    /// [`NOTE_BUDGET`] bytes of JSON.
    fn into_value(self) -> PropValue<'static> {
        let mut s = String::from("over 64 KB");
        let cut: Vec<String> = self.cut.iter().map(|c| (*c).to_owned()).collect();
        let lists = [
            ("cut", &cut[..]),
            ("cut properties", &self.cut_properties[..]),
            ("dropped", &self.dropped[..]),
        ];
        for (label, names) in lists {
            if !names.is_empty() {
                s.push_str(&format!("; {label}: {}", names.join(", ")));
            }
        }
        let len = prefix_within(&s, NOTE_BUDGET - 64).len();
        s.truncate(len);
        PropValue::Owned(s)
    }
}

/// Frees about `excess` bytes of JSON, largest pieces first: the text
/// fields and property values over one common size are cut to it, the
/// properties that cannot be cut (numbers, the links' JSON) and are larger
/// are dropped; that size is the largest that frees enough, so everything
/// smaller is kept whole. Notes what it cut and dropped.
fn shrink_largest(env: &mut Envelope<'_>, excess: usize, note: &mut Note) {
    let droppable: Vec<(usize, usize)> = (env.data.properties_mut().entries().iter())
        .enumerate()
        .filter(|(_, (_, value))| !matches!(value, PropValue::Str(_) | PropValue::Text(_)))
        .map(|(i, (key, value))| (i, entry_len(key, value)))
        .collect();
    let mut fields = text_fields(env);
    let mut pieces: Vec<Piece> = (fields.iter())
        .map(|f| Piece {
            size: escaped_len(f.slot.get()),
            cut: true,
        })
        .collect();
    pieces.extend(
        droppable
            .iter()
            .map(|&(_, size)| Piece { size, cut: false }),
    );
    let cap = level(&pieces, excess);
    for (field, piece) in fields.iter_mut().zip(&pieces) {
        if piece.size > cap {
            field.slot.cut(cap);
            match field.name {
                Name::Field(name) => note.cut.push(name),
                Name::Property(key) => note.cut_properties.push(key.to_owned()),
            }
        }
    }
    let props = env.data.properties_mut();
    let mut keep = vec![true; props.entries().len()];
    for (i, size) in droppable {
        if size > cap {
            keep[i] = false;
            note.dropped.push(props.entries()[i].0.to_string());
        }
    }
    props.retain(|i| keep[i]);
}

/// A part of an item that shrinking may make smaller: its JSON size, and
/// whether it can be cut (else only dropped).
#[derive(Clone, Copy)]
struct Piece {
    size: usize,
    cut: bool,
}

/// The bytes freed by cutting every piece over `cap` to `cap` and dropping
/// the pieces over it that cannot be cut.
fn freed(pieces: &[Piece], cap: usize) -> usize {
    (pieces.iter().filter(|p| p.size > cap))
        .map(|p| if p.cut { p.size - cap } else { p.size })
        .sum()
}

/// The largest `cap` that frees at least `excess` (see [`freed`]); 0 when
/// even that is not enough.
fn level(pieces: &[Piece], excess: usize) -> usize {
    // `freed` only grows as `cap` falls: the invariant is
    // `freed(lo) >= excess > freed(hi)`.
    let mut hi = pieces.iter().map(|p| p.size).max().unwrap_or(0);
    let mut lo = 0;
    if excess == 0 {
        return hi;
    }
    if freed(pieces, 0) < excess {
        return 0;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if freed(pieces, mid) >= excess {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The JSON size of one `"key":"value",` entry.
fn entry_len(key: &str, value: &PropValue<'_>) -> usize {
    let value = match value {
        PropValue::Str(s) => escaped_len(s),
        PropValue::Owned(s) => escaped_len(s),
        PropValue::Text(s) => escaped_len(s),
        PropValue::Scalar(v) => v.to_string().len(),
    };
    escaped_len(key) + value + 6
}

/// A text field or property value that can be cut in place.
struct TextField<'r, 'a> {
    name: Name<'r>,
    slot: Slot<'r, 'a>,
}

/// What a [`TextField`] is, for the [`TRUNCATED_KEY`] note.
enum Name<'r> {
    /// A member of the item, by its JSON name.
    Field(&'static str),
    /// A property value, by its key.
    Property(&'r str),
}

/// Where a text field lives.
enum Slot<'r, 'a> {
    Cow(&'r mut Cow<'a, str>),
    OptCow(&'r mut Option<Cow<'a, str>>),
    Str(&'r mut &'a str),
}

impl Slot<'_, '_> {
    fn get(&self) -> &str {
        match self {
            Slot::Cow(c) => c,
            Slot::OptCow(c) => c.as_deref().unwrap_or_default(),
            Slot::Str(s) => s,
        }
    }

    /// Keeps the longest prefix of at most `budget` bytes of JSON.
    fn cut(&mut self, budget: usize) {
        match self {
            Slot::Cow(c) => cut_cow(c, budget),
            Slot::OptCow(Some(c)) => cut_cow(c, budget),
            Slot::OptCow(None) => {}
            Slot::Str(s) => **s = prefix_within(s, budget),
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

/// Every text field and property value of an item that may be cut.
fn text_fields<'r, 'a>(env: &'r mut Envelope<'a>) -> Vec<TextField<'r, 'a>> {
    let field = |name, slot| TextField {
        name: Name::Field(name),
        slot,
    };
    let (mut fields, props): (Vec<TextField<'r, 'a>>, _) = match &mut env.data {
        Data::RequestData(d) => (
            vec![
                field("name", Slot::Cow(&mut d.name)),
                field("responseCode", Slot::Cow(&mut d.response_code)),
                field("source", Slot::OptCow(&mut d.source)),
                field("url", Slot::OptCow(&mut d.url)),
            ],
            &mut d.properties,
        ),
        Data::RemoteDependencyData(d) => (
            vec![
                field("name", Slot::Cow(&mut d.name)),
                field("resultCode", Slot::Cow(&mut d.result_code)),
                field("data", Slot::OptCow(&mut d.data)),
                field("type", Slot::Cow(&mut d.dependency_type)),
                field("target", Slot::OptCow(&mut d.target)),
            ],
            &mut d.properties,
        ),
        Data::MessageData(d) => (
            vec![field("message", Slot::Cow(&mut d.message))],
            &mut d.properties,
        ),
        Data::EventData(d) => (
            vec![field("name", Slot::Cow(&mut d.name))],
            &mut d.properties,
        ),
        Data::ExceptionData(d) => {
            let [e] = &mut d.exceptions;
            (
                vec![
                    field("typeName", Slot::Cow(&mut e.type_name)),
                    field("message", Slot::Cow(&mut e.message)),
                    field("stack", Slot::OptCow(&mut e.stack)),
                ],
                &mut d.properties,
            )
        }
    };
    for (name, tag) in env.tags.texts_mut() {
        fields.push(field(name, Slot::OptCow(tag)));
    }
    for (key, value) in props.texts_mut() {
        let slot = match value {
            CutText::Str(s) => Slot::Str(s),
            CutText::Cow(c) => Slot::Cow(c),
        };
        fields.push(TextField {
            name: Name::Property(key),
            slot,
        });
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
    use proptest::prelude::*;
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
    fn the_largest_property_values_are_cut_to_one_size_to_fit() {
        // 200 fields (32 kept) of 8192 three-byte characters: 768 KB of
        // values, plus one small property that must survive whole.
        let big_text = "€".repeat(8192);
        let big = AttributeValue::Str(Text::from(big_text.as_str()));
        let mut fields: Vec<_> = keys().into_iter().map(|k| (k, big.clone())).collect();
        fields.push(("small", s("kept")));
        let item = &items(&Record::Span(Box::new(span(SpanKind::Internal, &fields))))[0];
        assert!(size(item) <= MAX_ITEM_BYTES, "{}", size(item));
        let props = item["data"]["baseData"]["properties"].as_object().unwrap();
        assert_eq!(props["small"], "kept");
        let note = props[TRUNCATED_KEY].as_str().unwrap();
        assert!(
            note.starts_with("over 64 KB; cut properties: key"),
            "{note}"
        );
        assert!(!note.contains("dropped"), "{note}");
        let cut: Vec<&str> = (props.iter())
            .filter(|(k, _)| k.starts_with("key"))
            .map(|(_, v)| v.as_str().unwrap())
            .collect();
        assert_eq!(cut.len(), 31, "every big property kept, cut");
        for v in &cut {
            assert!(big_text.starts_with(v) && v.len() > 1000, "{}", v.len());
            assert_eq!(v.len(), cut[0].len(), "all cut to one size");
        }
    }

    #[test]
    fn what_cannot_be_cut_is_dropped() {
        // 3,000 links (hand-built: the layer keeps 32) are 216 KB of JSON
        // text that cutting would break: the property goes whole.
        let mut many = span(SpanKind::Internal, &[("case", s("c-17"))]);
        let link = crate::record::Link::new(
            crate::record::ids::TraceId::from_int(1),
            crate::record::ids::SpanId::from_int(2),
            crate::record::LinkType::ParentLinkedSpan,
        );
        many.links = vec![link; 3000];
        let item = &items(&Record::Span(Box::new(many)))[0];
        assert!(size(item) <= MAX_ITEM_BYTES, "{}", size(item));
        let props = item["data"]["baseData"]["properties"].as_object().unwrap();
        assert_eq!(props["case"], "c-17");
        assert_eq!(props[TRUNCATED_KEY], "over 64 KB; dropped: _MS.links");
        assert!(!props.contains_key("_MS.links"));
    }

    #[test]
    fn the_cut_level_frees_just_the_excess() {
        let cuts = |sizes: &[usize]| -> Vec<Piece> {
            (sizes.iter().map(|&size| Piece { size, cut: true })).collect()
        };
        let pieces = cuts(&[10, 100, 50]);
        assert_eq!(level(&pieces, 0), 100, "nothing to cut");
        assert_eq!(level(&pieces, 50), 50, "only the largest");
        assert_eq!(level(&pieces, 60), 45, "the two largest");
        assert_eq!(level(&pieces, 61), 44, "rounded down");
        assert_eq!(level(&pieces, 160), 0);
        assert_eq!(level(&pieces, 1000), 0, "not enough");
        assert_eq!(level(&[], 5), 0);
        // A piece that cannot be cut goes whole, once the cut reaches it.
        let mut pieces = cuts(&[100, 10]);
        pieces.push(Piece {
            size: 30,
            cut: false,
        });
        assert_eq!(level(&pieces, 50), 50, "kept");
        assert_eq!(level(&pieces, 80), 29, "dropped, the largest cut less");
        assert_eq!(freed(&pieces, 29), 101);
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
            sample_rate: None,
        };
        let item = &items(&Record::Event(Box::new(event)))[0];
        assert!(size(item) <= MAX_ITEM_BYTES);
        let message = item["data"]["baseData"]["message"].as_str().unwrap();
        assert!(text.starts_with(message) && message.len() > 20_000);
        let note = item["data"]["baseData"]["properties"][TRUNCATED_KEY].as_str();
        assert_eq!(note, Some("over 64 KB; cut: message"));
    }

    #[test]
    fn exception_message_and_stack_share_the_cut() {
        // Both cut to 32768 UTF-16 units (64 KB each) while mapping, then
        // to one size to fit; the small property is kept.
        let huge = s(&"😀".repeat(40_000));
        let mut traced = span(SpanKind::Internal, &[]);
        traced.annotations.push(annotation(
            Level::ERROR,
            "",
            &[
                ("exception.message", huge.clone()),
                ("exception.stacktrace", huge),
                ("case", s("c-17")),
            ],
        ));
        let item = &items(&Record::Span(Box::new(traced)))[1];
        assert!(size(item) <= MAX_ITEM_BYTES);
        let data = &item["data"]["baseData"];
        let detail = &data["exceptions"][0];
        assert_eq!(detail["hasFullStack"], false);
        let message = detail["message"].as_str().unwrap();
        let stack = detail["stack"].as_str().unwrap();
        assert_eq!(message.len(), stack.len());
        assert!(message.len() > 30_000, "{}", message.len());
        assert_eq!(data["properties"]["case"], "c-17");
        assert_eq!(
            data["properties"][TRUNCATED_KEY],
            "over 64 KB; cut: message, stack"
        );
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the sizes and characters: the item fits, the small
        /// property stays whole, what is cut is a prefix.
        #[test]
        fn any_oversize_item_fits_and_keeps_small_properties(
            message in (0..UNITS.len(), 1..40_000_usize),
            props in prop::collection::vec((0..UNITS.len(), 0..9000_usize), 0..31),
        ) {
            let text = |(unit, n): (usize, usize)| UNITS[unit].repeat(n);
            let values: Vec<String> = props.into_iter().map(text).collect();
            let mut fields: Vec<_> = (keys().into_iter().zip(&values))
                .map(|(k, v)| (k, s(v)))
                .collect();
            fields.push(("case", s("c-17")));
            let message = text(message);
            let event = EventData {
                timestamp: crate::appinsights::envelope::tests::start(),
                level: Level::INFO,
                target: "t",
                message: Text::from(message.as_str()),
                attributes: attrs(&fields),
                span: None,
                sample_rate: None,
            };
            let item = &items(&Record::Event(Box::new(event)))[0];
            prop_assert!(size(item) <= MAX_ITEM_BYTES, "{}", size(item));
            let data = &item["data"]["baseData"];
            prop_assert_eq!(&data["properties"]["case"], "c-17");
            prop_assert!(message.starts_with(data["message"].as_str().unwrap()));
            for (key, value) in keys().into_iter().zip(&values) {
                let sent = data["properties"][key].as_str().unwrap();
                prop_assert!(value.starts_with(sent), "{key}");
            }
        }
    }

    /// Characters of every width, in UTF-8, UTF-16 and escaped JSON.
    const UNITS: [&str; 6] = ["a", "é", "€", "😀", "\u{1}", "\""];

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
