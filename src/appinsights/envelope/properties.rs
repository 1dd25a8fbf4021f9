//! Custom properties (`properties`: a map of string to string on every
//! domain type), borrowed from the record's attributes where possible.
//!
//! Service limits (Application Insights' documented limits, in UTF-16 code
//! units as the service counts): property names at most 150 (longer keys
//! are dropped), values at most 8192 (cut on a char boundary). Values are
//! always strings: numbers and booleans are stringified, unlike
//! `opencensus-ext-azure`'s raw JSON values.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::record::text::truncate_utf16;
use crate::record::{AttributeValue, Link};

/// Longest property name kept, in UTF-16 code units; longer keys are
/// dropped.
pub(crate) const MAX_KEY: usize = 150;
/// Longest property value, in UTF-16 code units.
pub(crate) const MAX_VALUE: usize = 8192;
/// The property carrying a span's links (`follows_from`), as the
/// Application Insights SDKs name it.
pub(crate) const LINKS_KEY: &str = "_MS.links";

/// A property value: borrowed text, a scalar formatted at serialization, or
/// text built by the mapping.
#[derive(Clone, Debug)]
pub(crate) enum PropValue<'a> {
    /// Text, already cut to [`MAX_VALUE`].
    Str(&'a str),
    /// A number or boolean, written with its `Display` form (short).
    Scalar(&'a AttributeValue),
    /// Text built by the mapping (links, truncation notes): never cut.
    Owned(String),
    /// Text a processor or [`Builder::with_property`](crate::Builder::with_property)
    /// set, already cut to [`MAX_VALUE`]; may be cut further to fit an item.
    Text(Cow<'a, str>),
}

impl<'a> PropValue<'a> {
    /// The value of an attribute, stringified and cut to the limit.
    pub(crate) fn of(value: &'a AttributeValue) -> Self {
        match value {
            AttributeValue::Str(s) | AttributeValue::Debug(s) => {
                PropValue::Str(truncate_utf16(s, MAX_VALUE))
            }
            AttributeValue::Error(e) => PropValue::Str(truncate_utf16(&e.message, MAX_VALUE)),
            AttributeValue::I64(_)
            | AttributeValue::U64(_)
            | AttributeValue::F64(_)
            | AttributeValue::Bool(_) => PropValue::Scalar(value),
        }
    }
}

impl Serialize for PropValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            PropValue::Str(s) => serializer.serialize_str(s),
            PropValue::Scalar(v) => serializer.collect_str(v),
            PropValue::Owned(s) => serializer.serialize_str(s),
            PropValue::Text(s) => serializer.serialize_str(s),
        }
    }
}

impl PropValue<'_> {
    /// The value as text, as it is sent.
    pub(crate) fn text(&self) -> Cow<'_, str> {
        match self {
            PropValue::Str(s) => Cow::Borrowed(s),
            PropValue::Owned(s) => Cow::Borrowed(s),
            PropValue::Text(s) => Cow::Borrowed(s),
            PropValue::Scalar(v) => match v {
                AttributeValue::Str(s) | AttributeValue::Debug(s) => Cow::Borrowed(s),
                AttributeValue::Error(e) => Cow::Borrowed(&e.message),
                other => Cow::Owned(other.to_string()),
            },
        }
    }
}

/// Collection of custom properties, serialized as a JSON object in
/// insertion order. Keys are distinct: they come from a record's
/// attributes, which are distinct, plus names the mapping reserves (and
/// [`insert`](Self::insert) keeps them so). Keys are borrowed from the
/// record or the context, or owned when a processor set them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Properties<'a> {
    entries: Vec<(Cow<'a, str>, PropValue<'a>)>,
    /// Room to make on the first push (then as a `Vec` grows).
    hint: usize,
}

impl<'a> Properties<'a> {
    /// Empty, with room for `n` entries made on the first push: a span
    /// whose every field goes to a dedicated member allocates nothing.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Properties {
            entries: Vec::new(),
            hint: n,
        }
    }

    /// Adds an attribute as a property, unless its key is over
    /// [`MAX_KEY`].
    pub(crate) fn push_attribute(&mut self, key: &'a str, value: &'a AttributeValue) {
        self.push(key, PropValue::of(value));
    }

    /// Adds a property, unless its key is over [`MAX_KEY`].
    pub(crate) fn push(&mut self, key: &'a str, value: PropValue<'a>) {
        if key_fits(key) {
            if self.entries.capacity() == 0 {
                self.entries.reserve_exact(self.hint.max(1));
            }
            self.entries.push((Cow::Borrowed(key), value));
        }
    }

    /// Sets `key` to `value` (replacing its value when the key is there),
    /// unless the key is empty or over [`MAX_KEY`]; the value is cut to
    /// [`MAX_VALUE`]. Whether it was set.
    pub(crate) fn insert(&mut self, key: Cow<'a, str>, value: Cow<'a, str>) -> bool {
        if key.is_empty() || !key_fits(&key) {
            return false;
        }
        let value = PropValue::Text(super::cut(value, MAX_VALUE));
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, old)) => *old = value,
            None => self.entries.push((key, value)),
        }
        true
    }

    /// Adds `key` unless it is there already (the item's own property
    /// wins): the process-wide properties, checked when built.
    pub(crate) fn push_default(&mut self, key: &'a str, value: &'a str) {
        if !self.entries.iter().any(|(k, _)| k == key) {
            self.entries
                .push((Cow::Borrowed(key), PropValue::Str(value)));
        }
    }

    /// Makes room for `n` more entries.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&PropValue<'a>> {
        let (_, value) = self.entries.iter().find(|(k, _)| k == key)?;
        Some(value)
    }

    /// Removes `key`; whether it was there.
    pub(crate) fn remove(&mut self, key: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(k, _)| k != key);
        self.entries.len() != before
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds [`LINKS_KEY`]: a JSON string of
    /// `[{"operation_Id":"<trace id>","id":"<span id>"}, …]`.
    pub(crate) fn push_links(&mut self, links: &[Link]) {
        if links.is_empty() {
            return;
        }
        let mut json = String::with_capacity(2 + links.len() * 72);
        json.push('[');
        for (i, link) in links.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                json,
                r#"{sep}{{"operation_Id":"{}","id":"{}"}}"#,
                link.trace_id, link.span_id
            );
        }
        json.push(']');
        self.push(LINKS_KEY, PropValue::Owned(json));
    }

    /// Whether there is no property (the member is then not sent).
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in order.
    pub(crate) fn entries(&self) -> &[(Cow<'a, str>, PropValue<'a>)] {
        &self.entries
    }

    /// The keys and text values that may be cut to fit an item: not the
    /// scalars, nor the text the mapping built (the links' JSON would no
    /// longer parse).
    pub(crate) fn texts_mut(&mut self) -> impl Iterator<Item = (&str, CutText<'_, 'a>)> {
        self.entries
            .iter_mut()
            .filter_map(|(key, value)| match value {
                PropValue::Str(s) => Some((&**key, CutText::Str(s))),
                PropValue::Text(s) => Some((&**key, CutText::Cow(s))),
                PropValue::Scalar(_) | PropValue::Owned(_) => None,
            })
    }

    /// Keeps the entries for which `keep` says so.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let mut i = 0;
        self.entries.retain(|_| {
            i += 1;
            keep(i - 1)
        });
    }

    /// Removes every entry.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

/// A property value that may be cut in place.
pub(crate) enum CutText<'r, 'a> {
    /// Borrowed from the record or the context.
    Str(&'r mut &'a str),
    /// Set by a processor.
    Cow(&'r mut Cow<'a, str>),
}

/// Whether a key is within the service's name limit.
pub(crate) fn key_fits(key: &str) -> bool {
    truncate_utf16(key, MAX_KEY).len() == key.len()
}

impl Serialize for Properties<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (key, value) in &self.entries {
            map.serialize_entry(&**key, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ids::{SpanId, TraceId};
    use crate::record::text::Text;
    use crate::record::{ErrorValue, LinkType};
    use serde_json::json;

    #[test]
    fn values_are_stringified() {
        let values = [
            AttributeValue::Str(Text::from("s")),
            AttributeValue::I64(-5),
            AttributeValue::U64(7),
            AttributeValue::F64(1.5),
            AttributeValue::Bool(true),
            AttributeValue::Debug(Text::from("Some(3)")),
            AttributeValue::Error(Box::new(ErrorValue {
                type_name: None,
                message: Text::from("boom"),
                sources: Vec::new(),
            })),
        ];
        let keys = ["s", "i", "u", "f", "b", "d", "e"];
        let mut props = Properties::default();
        for (k, v) in keys.iter().zip(&values) {
            props.push_attribute(k, v);
        }
        let want = json!({ "s": "s", "i": "-5", "u": "7", "f": "1.5", "b": "true",
                           "d": "Some(3)", "e": "boom" });
        assert_eq!(serde_json::to_value(&props).unwrap(), want);
    }

    #[test]
    fn long_keys_are_dropped_counted_in_utf16_units() {
        let ok = "é".repeat(150); // 300 bytes, 150 units
        let emoji = "😀".repeat(75); // 300 bytes, 150 units
        let long = "k".repeat(151);
        let long_emoji = "😀".repeat(76); // 76 chars, 152 units
        let v = AttributeValue::Bool(false);
        let mut props = Properties::default();
        for key in [&ok, &emoji, &long, &long_emoji] {
            props.push_attribute(key, &v);
        }
        let keys: Vec<_> = props.entries().iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, [ok.as_str(), emoji.as_str()]);
    }

    #[test]
    fn values_are_cut_to_8192_utf16_units_on_a_char_boundary() {
        let v = AttributeValue::Str(Text::from("😀".repeat(9000)));
        let mut props = Properties::default();
        props.push_attribute("k", &v);
        let json = serde_json::to_value(&props).unwrap();
        assert_eq!(json["k"], "😀".repeat(4096));
    }

    #[test]
    fn links_are_a_json_string() {
        let t = TraceId::from_hex("6e0c63257de34c90bf9efcd03927272e").unwrap();
        let s = SpanId::from_hex("6e0c63257de34c91").unwrap();
        let mut props = Properties::default();
        props.push_links(&[Link::new(t, s, LinkType::ParentLinkedSpan)]);
        let json = serde_json::to_value(&props).unwrap();
        let links: serde_json::Value =
            serde_json::from_str(json[LINKS_KEY].as_str().unwrap()).unwrap();
        assert_eq!(
            links,
            json!([{ "operation_Id": "6e0c63257de34c90bf9efcd03927272e",
                     "id": "6e0c63257de34c91" }])
        );
    }
}
