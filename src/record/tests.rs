use super::*;

#[test]
fn attributes_evict_oldest_and_count() {
    let keys: Vec<&'static str> = (0..40)
        .map(|i| &*Box::leak(format!("k{i}").into_boxed_str()))
        .collect();
    let mut a = Attributes::new();
    for (i, k) in keys.iter().enumerate() {
        a.insert(k, AttributeValue::I64(i as i64));
    }
    assert_eq!(a.len(), MAX_ATTRIBUTES);
    assert_eq!(a.dropped(), 8);
    assert_eq!(a.iter().next().unwrap().0, "k8");
    // Setting an existing key moves it to the end without dropping.
    a.insert("k8", AttributeValue::Bool(true));
    assert_eq!(a.dropped(), 8);
    assert_eq!(
        a.iter().last().unwrap(),
        ("k8", &AttributeValue::Bool(true))
    );
}

#[test]
fn span_kind_parse() {
    let cases = [
        ("server", Some(SpanKind::Server)),
        ("CLIENT", Some(SpanKind::Client)),
        (" Producer ", Some(SpanKind::Producer)),
        ("consumer", Some(SpanKind::Consumer)),
        ("internal", Some(SpanKind::Internal)),
        ("srv", None),
        ("", None),
        ("server\0", None),
    ];
    for (input, want) in cases {
        assert_eq!(SpanKind::parse(input), want, "{input:?}");
    }
}

#[derive(Debug)]
struct Outer(std::num::ParseIntError);
impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("config is bad")
    }
}
impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn inner_error() -> std::num::ParseIntError {
    "x".parse::<u8>().unwrap_err()
}

#[test]
fn error_value_captures_chain_and_type() {
    let inner = "x".parse::<u8>().unwrap_err();
    let e = ErrorValue::from_error(&Outer(inner));
    assert_eq!(e.message, "config is bad");
    // `Outer`'s type cannot be known from `&dyn Error` (its `Debug` is
    // not its name: an enum's would be the variant's).
    assert_eq!(e.type_name, None);
    let std = ErrorValue::from_error(&inner_error());
    assert_eq!(std.type_name.as_deref(), Some("std::num::ParseIntError"));
    let io = std::io::Error::other("disk on fire");
    let io = ErrorValue::from_error(&io);
    assert_eq!(
        io.type_name.as_deref(),
        Some("std::io::Error"),
        "not `Custom`"
    );
    assert_eq!(e.sources.len(), 1);
    assert_eq!(e.sources[0], "invalid digit found in string");
}
