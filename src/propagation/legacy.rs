//! The legacy Application Insights headers, so older SDKs join the same
//! operation: `Request-Id` (the caller's id, `|<trace id>.<span id>.`) and
//! `Request-Context` (`appId=cid-v1:<id>`, which names the caller's
//! Application Insights resource).

use crate::record::ids::{SpanId, TraceId};
use crate::record::text::Text;

use super::w3c::trim_ows;

/// `Request-Id`: `|<32 hex trace id>.<16 hex span id>.`
pub(crate) const REQUEST_ID: &str = "request-id";
/// `Request-Context`: comma-separated `key=value` pairs, of which `appId`.
pub(crate) const REQUEST_CONTEXT: &str = "request-context";

/// The length of `|<32 hex>.<16 hex>.`.
pub(crate) const REQUEST_ID_LEN: usize = 1 + 32 + 1 + 16 + 1;

/// The longest `appId` kept (the schema's limit for `RequestData.source`).
const MAX_APP_ID: usize = 1024;

/// Parses a W3C-compatible `Request-Id`, `|<trace id>.<span id>.` (hex in
/// either case, surrounding spaces and tabs allowed), or `None`.
///
/// The older hierarchical form (`|<root>.1.2.`) is refused: its root is not a
/// 128-bit id, so it cannot name a W3C trace; the span stays a root.
pub(crate) fn parse_request_id(value: &[u8]) -> Option<(TraceId, SpanId)> {
    let value = trim_ows(value);
    if value.len() != REQUEST_ID_LEN || value[0] != b'|' || value[33] != b'.' || value[50] != b'.' {
        return None;
    }
    let trace_id = TraceId::from_hex(std::str::from_utf8(&value[1..33]).ok()?)?;
    let span_id = SpanId::from_hex(std::str::from_utf8(&value[34..50]).ok()?)?;
    (trace_id.is_valid() && span_id.is_valid()).then_some((trace_id, span_id))
}

/// The `Request-Id` we send: `|<trace id>.<span id>.`, lowercase.
pub(crate) fn format_request_id(trace_id: TraceId, span_id: SpanId) -> [u8; REQUEST_ID_LEN] {
    let mut out = [0u8; REQUEST_ID_LEN];
    out[0] = b'|';
    out[1..33].copy_from_slice(&trace_id.hex_buf());
    out[33] = b'.';
    out[34..50].copy_from_slice(&span_id.hex_buf());
    out[50] = b'.';
    out
}

/// The `appId` member of a `Request-Context` value (`appId=cid-v1:…`), as
/// sent: the request's source in Application Insights. `None` when absent,
/// empty, longer than 1024 characters or not printable ASCII.
pub(crate) fn parse_request_context_app_id<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Option<Text> {
    for value in values {
        for member in value.split(|&b| b == b',') {
            let Some(eq) = member.iter().position(|&b| b == b'=') else {
                continue;
            };
            if !trim_ows(&member[..eq]).eq_ignore_ascii_case(b"appId") {
                continue;
            }
            let id = trim_ows(&member[eq + 1..]);
            let printable = id.iter().all(|&b| (0x21..=0x7e).contains(&b));
            if id.is_empty() || id.len() > MAX_APP_ID || !printable {
                return None;
            }
            return std::str::from_utf8(id).ok().map(Text::from);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const SPAN: &str = "b7ad6b7169203331";

    #[test]
    fn request_id_table() {
        let ok = Some((
            TraceId::from_hex(TRACE).unwrap(),
            SpanId::from_hex(SPAN).unwrap(),
        ));
        let cases: Vec<(String, Option<(TraceId, SpanId)>)> = vec![
            (format!("|{TRACE}.{SPAN}."), ok),
            (format!(" |{TRACE}.{SPAN}.\t"), ok),
            (
                format!("|{}.{}.", TRACE.to_uppercase(), SPAN.to_uppercase()),
                ok,
            ),
            // Not the W3C-compatible form.
            (format!("{TRACE}.{SPAN}."), None),
            (format!("|{TRACE}.{SPAN}"), None),
            (format!("|{TRACE}.{SPAN}.1."), None),
            (format!("|{TRACE}.{SPAN}_"), None),
            (format!("|{TRACE}-{SPAN}."), None),
            ("|abc.1.2.".into(), None),
            (
                "|9e74f0e5-efc4-41b5-86d1-3524a43bd891.bcec871c_1.".into(),
                None,
            ),
            (format!("|{}.{SPAN}.", &TRACE[1..]), None),
            (format!("|{TRACE}.{}.", "x".repeat(16)), None),
            // All-zero ids.
            (format!("|{}.{SPAN}.", "0".repeat(32)), None),
            (format!("|{TRACE}.{}.", "0".repeat(16)), None),
            ("".into(), None),
            ("|".into(), None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_request_id(input.as_bytes()), want, "{input:?}");
        }
    }

    #[test]
    fn request_id_round_trip() {
        let trace = TraceId::from_hex(TRACE).unwrap();
        let span = SpanId::from_hex(SPAN).unwrap();
        let out = format_request_id(trace, span);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            format!("|{TRACE}.{SPAN}.")
        );
        assert_eq!(parse_request_id(&out), Some((trace, span)));
    }

    #[test]
    fn request_context_app_id() {
        let app = |values: &[&str]| {
            parse_request_context_app_id(values.iter().map(|v| v.as_bytes())).map(|t| t.to_string())
        };
        let id = "cid-v1:8e8d2a5b-7c26-4d8a-b5b9-9b2c3d2c1f00";
        assert_eq!(app(&[&format!("appId={id}")]).as_deref(), Some(id));
        assert_eq!(
            app(&[&format!("roleName=web, appId = {id} ,x=y")]).as_deref(),
            Some(id)
        );
        assert_eq!(app(&[&format!("APPID={id}")]).as_deref(), Some(id));
        assert_eq!(
            app(&["roleName=web", &format!("appId={id}")]).as_deref(),
            Some(id)
        );
        assert_eq!(app(&["appId="]), None);
        assert_eq!(app(&["appId=a b"]), None);
        assert_eq!(app(&["roleName=web"]), None);
        assert_eq!(app(&[""]), None);
        assert_eq!(app(&[&format!("appId={}", "a".repeat(1025))]), None);
        assert_eq!(
            app(&[&format!("appId={}", "a".repeat(1024))]).map(|s| s.len()),
            Some(1024)
        );
    }
}
