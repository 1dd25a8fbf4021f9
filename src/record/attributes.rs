//! Attribute values and the bounded attribute map of spans, events and
//! links.

use super::text::Text;
use super::{MAX_ATTRIBUTES, MAX_ATTRIBUTE_VALUE_CHARS, MAX_MESSAGE_CHARS};

/// A typed attribute value; `tracing` field values keep their type.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum AttributeValue {
    /// A string (`record_str`), cut to [`MAX_ATTRIBUTE_VALUE_CHARS`].
    Str(Text),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// A value recorded with `Debug` (`?value`, `%value`, 128-bit integers),
    /// formatted once and cut to [`MAX_ATTRIBUTE_VALUE_CHARS`].
    Debug(Text),
    /// An error (`record_error`): its message and source chain (boxed: errors
    /// are rare, and every other value stays small).
    Error(Box<ErrorValue>),
}

impl AttributeValue {
    /// The string inside `Str` or `Debug`, if that is what this is.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttributeValue::Str(s) | AttributeValue::Debug(s) => Some(s),
            _ => None,
        }
    }
}

impl std::fmt::Display for AttributeValue {
    /// The value as the text a property carries: numbers and booleans as
    /// Rust prints them, strings as they are, errors as their message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttributeValue::Str(s) | AttributeValue::Debug(s) => f.write_str(s),
            AttributeValue::I64(v) => write!(f, "{v}"),
            AttributeValue::U64(v) => write!(f, "{v}"),
            AttributeValue::F64(v) => write!(f, "{v}"),
            AttributeValue::Bool(v) => write!(f, "{v}"),
            AttributeValue::Error(e) => f.write_str(&e.message),
        }
    }
}

/// An error recorded as a field value (`&dyn Error`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorValue {
    /// The error's type, when it can be known: the standard library's
    /// error types are recognised (`std::io::Error`,
    /// `std::num::ParseIntError`, …, by downcasting); any other type is
    /// `None` (an `&dyn Error` does not tell its type, and its `Debug`
    /// output names an enum's variant, not the type). Give it with an
    /// `exception.type` field: see [`type_name_of`](crate::type_name_of).
    pub type_name: Option<Text>,
    /// The error's `Display` message.
    pub message: Text,
    /// The `Display` messages of its `source()` chain, outermost first
    /// (at most 32).
    pub sources: Vec<Text>,
}

impl ErrorValue {
    /// An error known only by its message (recorded as text, as
    /// `#[instrument(err)]` does).
    pub fn from_message(message: Text) -> Self {
        ErrorValue {
            type_name: None,
            message,
            sources: Vec::new(),
        }
    }

    /// Captures an error's message, type name and source chain.
    pub fn from_error(error: &(dyn std::error::Error + 'static)) -> Self {
        use std::fmt::Write;
        let mut message = crate::record::text::TextWriter::new(MAX_MESSAGE_CHARS);
        let _ = write!(message, "{error}");
        let type_name = std_type_name(error).map(Text::from);
        let mut sources = Vec::new();
        let mut next = error.source();
        while let Some(source) = next {
            if sources.len() == 32 {
                break;
            }
            let mut text = crate::record::text::TextWriter::new(MAX_ATTRIBUTE_VALUE_CHARS);
            let _ = write!(text, "{source}");
            sources.push(text.finish());
            next = source.source();
        }
        ErrorValue {
            type_name,
            message: message.finish(),
            sources,
        }
    }
}

/// The public name of a standard library error type, found by
/// downcasting: the only types an `&dyn Error` can be asked about.
fn std_type_name(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    macro_rules! known {
        ($($ty:ty => $name:literal,)*) => {
            $(if error.is::<$ty>() { return Some($name); })*
        };
    }
    known! {
        std::io::Error => "std::io::Error",
        std::num::ParseIntError => "std::num::ParseIntError",
        std::num::ParseFloatError => "std::num::ParseFloatError",
        std::num::TryFromIntError => "std::num::TryFromIntError",
        std::str::ParseBoolError => "std::str::ParseBoolError",
        std::str::Utf8Error => "std::str::Utf8Error",
        std::string::FromUtf8Error => "std::string::FromUtf8Error",
        std::string::FromUtf16Error => "std::string::FromUtf16Error",
        std::char::ParseCharError => "std::char::ParseCharError",
        std::net::AddrParseError => "std::net::AddrParseError",
        std::time::SystemTimeError => "std::time::SystemTimeError",
        std::env::VarError => "std::env::VarError",
        std::array::TryFromSliceError => "std::array::TryFromSliceError",
        std::ffi::NulError => "std::ffi::NulError",
        std::fmt::Error => "std::fmt::Error",
        std::sync::mpsc::RecvError => "std::sync::mpsc::RecvError",
        std::sync::mpsc::RecvTimeoutError => "std::sync::mpsc::RecvTimeoutError",
    }
    None
}

/// The type name of an error value, for the `exception.type` field that
/// names an Exception item's `typeName` (an `&dyn Error` field does not
/// tell its type): [`std::any::type_name`] of `E`, e.g.
/// `my_service::OrderError`. Pass the concrete error, not a `&dyn Error`.
///
/// One type name for one kind of failure keeps it one group in the
/// Failures view; without `exception.type`, the standard library's errors
/// are still recognised, and any other error is typed `Error`.
///
/// # Examples
///
/// ```
/// use std::error::Error;
///
/// let err = "x".parse::<u8>().unwrap_err();
/// tracing::error!(
///     error = &err as &dyn Error,
///     exception.type = tracing_appinsights::type_name_of(&err),
///     "could not read the count"
/// );
/// assert_eq!(tracing_appinsights::type_name_of(&err), "core::num::error::ParseIntError");
/// ```
pub fn type_name_of<E: std::error::Error>(error: &E) -> &'static str {
    let _ = error;
    std::any::type_name::<E>()
}

/// Bounded, insertion-ordered key/value attributes (OpenCensus'
/// `BoundedDict`): setting an existing key moves it to the end; inserting into
/// a full map evicts the oldest entry and counts it in [`dropped`](Self::dropped).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Attributes {
    entries: Vec<(&'static str, AttributeValue)>,
    dropped: u32,
}

impl Attributes {
    /// An empty map (allocates nothing).
    pub const fn new() -> Self {
        Attributes {
            entries: Vec::new(),
            dropped: 0,
        }
    }

    /// An empty map with room for `n` entries (at most [`MAX_ATTRIBUTES`]).
    pub fn with_capacity(n: usize) -> Self {
        Attributes {
            entries: Vec::with_capacity(n.min(MAX_ATTRIBUTES)),
            dropped: 0,
        }
    }

    /// Sets `key` to `value` with OpenCensus' bounded-dict rules.
    pub fn insert(&mut self, key: &'static str, value: AttributeValue) {
        if let Some(pos) = self.entries.iter().position(|(k, _)| *k == key) {
            self.entries.remove(pos);
        } else if self.entries.len() >= MAX_ATTRIBUTES {
            self.evict_oldest();
        }
        self.entries.push((key, value));
    }

    /// Makes room for `n` more entries (never past [`MAX_ATTRIBUTES`]).
    pub(crate) fn reserve(&mut self, n: usize) {
        let want = (self.entries.len() + n).min(MAX_ATTRIBUTES);
        self.entries
            .reserve(want.saturating_sub(self.entries.len()));
    }

    /// Removes every entry, keeping the capacity.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.dropped = 0;
    }

    /// Appends a key known not to be present yet (a span's creation fields
    /// are distinct); still bounded.
    #[inline]
    pub(crate) fn push_new(&mut self, key: &'static str, value: AttributeValue) {
        if self.entries.len() >= MAX_ATTRIBUTES {
            self.evict_oldest();
        }
        self.entries.push((key, value));
    }

    /// Makes room past the bound: the oldest entry goes, counted.
    #[cold]
    fn evict_oldest(&mut self) {
        self.entries.remove(0);
        self.dropped = self.dropped.saturating_add(1);
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&AttributeValue> {
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The entries, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &AttributeValue)> + '_ {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    /// How many entries are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entries were evicted past [`MAX_ATTRIBUTES`].
    pub fn dropped(&self) -> u32 {
        self.dropped
    }
}
