//! Arbitrary bytes into every header parser: `traceparent`, `tracestate`,
//! `Request-Id` and `Request-Context`, alone and together. The parsers must
//! never panic, and what they accept must be valid.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tracing_appinsights::RemoteContext;

const HEADERS: [&str; 4] = ["traceparent", "tracestate", "request-id", "request-context"];

fuzz_target!(|data: &[u8]| {
    // Split the input into up to 8 header values at 0x00 bytes.
    let mut headers = HeaderMap::new();
    for (name, value) in HEADERS.iter().cycle().zip(data.split(|&b| b == 0).take(8)) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(*name, value);
        }
    }
    if let Some(context) = RemoteContext::from_headers(&headers) {
        assert!(context.trace_id().is_valid() && context.span_id().is_valid());
        if let Some(state) = context.tracestate() {
            assert!(state.split(',').count() <= 32);
        }
    }
    let text = String::from_utf8_lossy(data);
    let _ = RemoteContext::from_traceparent(&text, Some(&text));
    let _ = RemoteContext::from_request_id(&text);
});
