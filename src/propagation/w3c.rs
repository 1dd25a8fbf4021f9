//! W3C Trace Context: the `traceparent` and `tracestate` headers.
//!
//! Parsing follows the grammar of opencensus' `TraceContextPropagator`
//! (lowercase only; all-zero ids, version `ff`, and version `00` with more
//! fields are invalid; 1 to 32 unique `tracestate` members) with its bug
//! fixed: the flags are hex, so `0a` is valid (not sampled) and `03` is
//! sampled; `docs/distributed-tracing.md` has the rules. Everything works on
//! bytes: a header value need not be UTF-8, and no input makes these
//! functions panic (a property test and a fuzz target check it).

use crate::record::ids::{SpanId, TraceId};
use crate::record::text::Text;

/// `traceparent`: `version-traceid-parentid-flags`.
pub(crate) const TRACEPARENT: &str = "traceparent";
/// `tracestate`: vendor-specific `key=value` pairs, carried along unchanged.
pub(crate) const TRACESTATE: &str = "tracestate";

/// The length of a version-00 `traceparent`: `00-` + 32 + `-` + 16 + `-` + 2.
pub(crate) const TRACEPARENT_LEN: usize = 55;
/// The most `tracestate` members W3C allows; a longer list is ignored whole.
pub(crate) const MAX_TRACESTATE_MEMBERS: usize = 32;

/// A parsed, valid `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TraceParent {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) flags: u8,
}

impl TraceParent {
    pub(crate) fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// Parses a `traceparent` value, or `None` when it is invalid.
///
/// The value must match
/// `^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*$`
/// (lowercase hex only) and is invalid when an id is all zero, the version is
/// `ff`, or the version is `00` and more follows the flags.
pub(crate) fn parse_traceparent(value: &[u8]) -> Option<TraceParent> {
    let value = trim_ows(value);
    if value.len() < TRACEPARENT_LEN {
        return None;
    }
    let (head, rest) = value.split_at(TRACEPARENT_LEN);
    if head[2] != b'-' || head[35] != b'-' || head[52] != b'-' {
        return None;
    }
    let [version] = lower_hex::<1>(&head[0..2])?;
    let trace_id = TraceId::from_bytes(lower_hex::<16>(&head[3..35])?);
    let span_id = SpanId::from_bytes(lower_hex::<8>(&head[36..52])?);
    let [flags] = lower_hex::<1>(&head[53..55])?;
    if version == 0xff || !trace_id.is_valid() || !span_id.is_valid() {
        return None;
    }
    // A later version may append fields, after a dash; version 00 may not.
    if !rest.is_empty() && (version == 0 || rest[0] != b'-') {
        return None;
    }
    Some(TraceParent {
        trace_id,
        span_id,
        flags,
    })
}

/// The `traceparent` we send: version 00 and only the sampled flag (the
/// other bits are not ours to vouch for).
pub(crate) fn format_traceparent(
    trace_id: TraceId,
    span_id: SpanId,
    sampled: bool,
) -> [u8; TRACEPARENT_LEN] {
    let mut out = [0u8; TRACEPARENT_LEN];
    out[0..3].copy_from_slice(b"00-");
    out[3..35].copy_from_slice(&trace_id.hex_buf());
    out[35] = b'-';
    out[36..52].copy_from_slice(&span_id.hex_buf());
    out[52..55].copy_from_slice(if sampled { b"-01" } else { b"-00" });
    out
}

/// Parses the `tracestate` header's values (several headers form one list)
/// into a normalised list (`k=v,k2=v2`), or `None` when it is absent, empty
/// or invalid.
///
/// Members are separated by commas with optional spaces or tabs around
/// them; empty members are skipped (W3C allows them). The list is invalid,
/// and ignored whole, when a member is malformed, a key repeats, or there are
/// more than 32 members.
pub(crate) fn parse_tracestate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Text> {
    let mut members: Vec<(&[u8], &[u8])> = Vec::new();
    for value in values {
        for member in value.split(|&b| b == b',') {
            let member = trim_ows(member);
            if member.is_empty() {
                continue;
            }
            let (key, val) = parse_member(member)?;
            if members.len() == MAX_TRACESTATE_MEMBERS || members.iter().any(|(k, _)| *k == key) {
                return None;
            }
            members.push((key, val));
        }
    }
    if members.is_empty() {
        return None;
    }
    let mut out = String::new();
    for (i, (key, val)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Both parts were checked to be printable ASCII.
        out.push_str(std::str::from_utf8(key).ok()?);
        out.push('=');
        out.push_str(std::str::from_utf8(val).ok()?);
    }
    Some(Text::from(out))
}

/// One `key=value` member, both parts valid.
fn parse_member(member: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = member.iter().position(|&b| b == b'=')?;
    let (key, val) = (&member[..eq], &member[eq + 1..]);
    (valid_key(key) && valid_value(val)).then_some((key, val))
}

/// `[a-z][_0-9a-z\-*/]{0,255}`, or `tenant@system` with a tenant of
/// `[a-z0-9][_0-9a-z\-*/]{0,240}` and a system of `[a-z][_0-9a-z\-*/]{0,13}`.
///
/// The tenant may start with a digit as W3C allows (opencensus' expression
/// wants a letter there, rejecting valid multi-tenant keys).
fn valid_key(key: &[u8]) -> bool {
    match key.iter().position(|&b| b == b'@') {
        None => key_part(key, 256, false),
        Some(at) => key_part(&key[..at], 241, true) && key_part(&key[at + 1..], 14, false),
    }
}

fn key_part(part: &[u8], max: usize, digit_first: bool) -> bool {
    let Some((&first, rest)) = part.split_first() else {
        return false;
    };
    let first_ok = first.is_ascii_lowercase() || (digit_first && first.is_ascii_digit());
    first_ok
        && part.len() <= max
        && rest
            .iter()
            .all(|&b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/'))
}

/// 1 to 256 printable ASCII characters other than `,` and `=`, not ending in
/// a space.
fn valid_value(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value.last() != Some(&b' ')
        && value
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
}

/// `value` without leading and trailing spaces and tabs (HTTP's OWS).
pub(crate) fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// Exactly `2 * N` lowercase hex digits into `N` bytes.
fn lower_hex<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (lower_hex_digit(pair[0])? << 4) | lower_hex_digit(pair[1])?;
    }
    Some(out)
}

fn lower_hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const SPAN: &str = "b7ad6b7169203331";

    type Parsed = Option<(String, String, u8)>;

    fn tp(s: &str) -> Parsed {
        parse_traceparent(s.as_bytes())
            .map(|p| (p.trace_id.to_string(), p.span_id.to_string(), p.flags))
    }

    /// W3C's valid and invalid cases, and those opencensus' propagator gets
    /// wrong (hex flags).
    #[test]
    fn traceparent_table() {
        let valid = |flags: u8| Some((TRACE.to_owned(), SPAN.to_owned(), flags));
        let cases: &[(&str, Parsed)] = &[
            (&format!("00-{TRACE}-{SPAN}-01"), valid(1)),
            (&format!("00-{TRACE}-{SPAN}-00"), valid(0)),
            // Flags are hex: 03 is sampled (plus an unknown bit), 0a is not.
            (&format!("00-{TRACE}-{SPAN}-03"), valid(3)),
            (&format!("00-{TRACE}-{SPAN}-0a"), valid(0x0a)),
            (&format!("00-{TRACE}-{SPAN}-ff"), valid(0xff)),
            // Spaces and tabs around the value are allowed.
            (&format!("  \t00-{TRACE}-{SPAN}-01\t "), valid(1)),
            // A later version may carry more fields after a dash.
            (
                &format!("01-{TRACE}-{SPAN}-01-what-the-future-holds"),
                valid(1),
            ),
            (&format!("cc-{TRACE}-{SPAN}-01"), valid(1)),
            // Invalid: all-zero ids.
            (&format!("00-{}-{SPAN}-01", "0".repeat(32)), None),
            (&format!("00-{TRACE}-{}-01", "0".repeat(16)), None),
            // Invalid: version ff; version 00 with more fields.
            (&format!("ff-{TRACE}-{SPAN}-01"), None),
            (&format!("00-{TRACE}-{SPAN}-01-extra"), None),
            (&format!("00-{TRACE}-{SPAN}-01-"), None),
            // A later version's extra part must start with a dash.
            (&format!("01-{TRACE}-{SPAN}-01x"), None),
            // Uppercase hex anywhere.
            (&format!("00-{}-{SPAN}-01", TRACE.to_uppercase()), None),
            (&format!("00-{TRACE}-{}-01", SPAN.to_uppercase()), None),
            (&format!("00-{TRACE}-{SPAN}-0A"), None),
            (&format!("0A-{TRACE}-{SPAN}-01"), None),
            // Wrong lengths.
            (&format!("00-{}-{SPAN}-01", &TRACE[1..]), None),
            (&format!("00-{TRACE}0-{SPAN}-01"), None),
            (&format!("00-{TRACE}-{}-01", &SPAN[1..]), None),
            (&format!("00-{TRACE}-{SPAN}0-01"), None),
            (&format!("00-{TRACE}-{SPAN}-1"), None),
            (&format!("00-{TRACE}-{SPAN}-001"), None),
            (&format!("0-{TRACE}-{SPAN}-01"), None),
            // Wrong separators, whitespace inside, garbage.
            (&format!("00_{TRACE}_{SPAN}_01"), None),
            (&format!("00 -{TRACE}-{SPAN}-01"), None),
            (&format!("00-{TRACE}-{SPAN}- 1"), None),
            (&format!("00-{TRACE}-{SPAN}-01\n"), None),
            (&format!("00-{}-{SPAN}-01", "g".repeat(32)), None),
            ("", None),
            ("   ", None),
            ("00", None),
        ];
        for (input, want) in cases {
            assert_eq!(&tp(input), want, "{input:?}");
        }
    }

    #[test]
    fn traceparent_bytes_that_are_not_utf8() {
        let mut bytes = format!("01-{TRACE}-{SPAN}-01-").into_bytes();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        assert!(
            parse_traceparent(&bytes).is_some(),
            "future versions: opaque"
        );
        let mut bad = format!("00-{TRACE}-{SPAN}-01").into_bytes();
        bad[10] = 0xc3;
        assert!(parse_traceparent(&bad).is_none());
    }

    #[test]
    fn traceparent_formats_and_parses_back() {
        let trace = TraceId::from_hex(TRACE).unwrap();
        let span = SpanId::from_hex(SPAN).unwrap();
        for sampled in [true, false] {
            let out = format_traceparent(trace, span, sampled);
            let flags = if sampled { "01" } else { "00" };
            assert_eq!(
                std::str::from_utf8(&out).unwrap(),
                format!("00-{TRACE}-{SPAN}-{flags}")
            );
            let back = parse_traceparent(&out).unwrap();
            assert_eq!(
                (back.trace_id, back.span_id, back.sampled()),
                (trace, span, sampled)
            );
        }
    }

    fn ts(values: &[&str]) -> Option<String> {
        parse_tracestate(values.iter().map(|v| v.as_bytes())).map(|t| t.to_string())
    }

    #[test]
    fn tracestate_table() {
        let members = |n: usize| {
            (0..n)
                .map(|i| format!("k{i}=v{i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let long_key = format!("a{}", "b".repeat(255));
        let long_value = "v".repeat(256);
        let cases: Vec<(Vec<String>, Option<String>)> = vec![
            (
                vec!["congo=t61rcWkgMzE".into()],
                Some("congo=t61rcWkgMzE".into()),
            ),
            (
                vec!["rojo=00f067aa0ba902b7 ,\t congo=t61rcWkgMzE".into()],
                Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".into()),
            ),
            // Several headers are one list.
            (vec!["a=1".into(), "b=2".into()], Some("a=1,b=2".into())),
            // Empty members are skipped; an empty list is absent.
            (vec!["a=1,,b=2, ,".into()], Some("a=1,b=2".into())),
            (vec!["".into()], None),
            (vec![" , ".into()], None),
            (vec![], None),
            // Multi-tenant keys, and the allowed punctuation.
            (
                vec!["fw529a3039@dt=x".into()],
                Some("fw529a3039@dt=x".into()),
            ),
            (vec!["1tenant@sys=x".into()], Some("1tenant@sys=x".into())),
            (vec!["a_b-c*d/e=x y".into()], Some("a_b-c*d/e=x y".into())),
            // Limits: 32 members and 256-character keys and values are fine.
            (vec![members(32)], Some(members(32))),
            (vec![format!("{long_key}=x")], Some(format!("{long_key}=x"))),
            (
                vec![format!("k={long_value}")],
                Some(format!("k={long_value}")),
            ),
            // 33 members, also across headers.
            (vec![members(33)], None),
            (vec![members(32), "extra=1".into()], None),
            // Duplicate keys.
            (vec!["a=1,b=2,a=3".into()], None),
            (vec!["a=1".into(), "a=2".into()], None),
            // Over-long keys and values.
            (vec![format!("{long_key}b=x")], None),
            (vec![format!("k={long_value}v")], None),
            (vec![format!("{}@sys=x", "t".repeat(242))], None),
            (vec!["t@systemtoolong12=x".into()], None),
            // Malformed members.
            (vec!["Upper=1".into()], None),
            (vec!["1abc=1".into()], None),
            (vec!["a=".into()], None),
            (vec!["=1".into()], None),
            (vec!["a".into()], None),
            (vec!["a=b=c".into()], None),
            (vec!["a@=1".into()], None),
            (vec!["@b=1".into()], None),
            (vec!["a=1\u{7f}".into()], None),
            (vec!["a=é".into()], None),
            (vec!["good=1,bad".into()], None),
        ];
        for (values, want) in cases {
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            assert_eq!(ts(&refs), want, "{values:?}");
        }
    }

    #[test]
    fn trim_ows_trims_only_spaces_and_tabs() {
        assert_eq!(trim_ows(b" \t a b \t "), b"a b");
        assert_eq!(trim_ows(b"\n"), b"\n");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
    }
}
