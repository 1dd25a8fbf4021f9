//! Property tests of the header parsers: no input panics them (random
//! bytes, bytes drawn from the headers' own alphabets, and mutations of
//! valid headers), and what the layer injects parses back to the same ids
//! and flags. `fuzz/` holds the cargo-fuzz target for longer runs.

use http::{HeaderMap, HeaderValue};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use tracing_appinsights::{AppInsightsSpanExt, Builder, RemoteContext, Sampler, SpanId, TraceId};
use tracing_subscriber::prelude::*;

const HEADERS: [&str; 4] = ["traceparent", "tracestate", "request-id", "request-context"];
const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// Every parser on these header values (those `http` accepts as values).
fn parse_all(values: &[Vec<u8>]) {
    let mut headers = HeaderMap::new();
    for (name, bytes) in HEADERS.iter().cycle().zip(values) {
        if let Ok(value) = HeaderValue::from_bytes(bytes) {
            headers.append(*name, value);
        }
    }
    if let Some(context) = RemoteContext::from_headers(&headers) {
        assert!(context.trace_id().is_valid() && context.span_id().is_valid());
        if let Some(state) = context.tracestate() {
            assert!(state.split(',').count() <= 32);
        }
    }
    for bytes in values {
        let text = String::from_utf8_lossy(bytes);
        let _ = RemoteContext::from_traceparent(&text, Some(&text));
        let _ = RemoteContext::from_request_id(&text);
    }
}

/// Bytes from the alphabet the headers are written in, so the parsers get
/// past their first checks.
fn header_alphabet() -> impl Strategy<Value = Vec<u8>> {
    let alphabet = b"0123456789abcdefABCDEF-|.,=@ \t_*/xyz\xff".to_vec();
    vec(select(alphabet), 0..200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(values in vec(vec(any::<u8>(), 0..300), 0..8)) {
        parse_all(&values);
    }

    #[test]
    fn header_alphabet_never_panics(values in vec(header_alphabet(), 0..8)) {
        parse_all(&values);
    }

    #[test]
    fn mutated_valid_headers_never_panic(
        edits in vec((0usize..80, any::<u8>()), 1..4),
        state in header_alphabet(),
    ) {
        let mut traceparent = VALID.as_bytes().to_vec();
        let mut request_id = b"|0af7651916cd43dd8448eb211c80319c.b7ad6b7169203331.".to_vec();
        for (at, byte) in edits {
            for value in [&mut traceparent, &mut request_id] {
                match at.checked_sub(value.len()) {
                    None => value[at] = byte,
                    Some(_) => value.push(byte),
                }
            }
        }
        parse_all(&[traceparent, state, request_id]);
    }

    #[test]
    fn any_valid_traceparent_parses_to_its_ids_and_flags(
        trace in 1u128..,
        span in 1u64..,
        flags in any::<u8>(),
        version in 0u8..0xff,
    ) {
        let traceparent = format!("{version:02x}-{trace:032x}-{span:016x}-{flags:02x}");
        let context = RemoteContext::from_traceparent(&traceparent, None).unwrap();
        prop_assert_eq!(context.trace_id(), TraceId::from_int(trace));
        prop_assert_eq!(context.span_id(), SpanId::from_int(span));
        prop_assert_eq!(context.sampled(), Some(flags & 1 == 1));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A span parented on any context injects that trace and the decision,
    /// and extraction gives back what was injected.
    #[test]
    fn inject_then_extract_round_trips(trace in 1u128.., span in 1u64.., sampled: bool) {
        let parent = RemoteContext::new(TraceId::from_int(trace), SpanId::from_int(span), Some(sampled))
            .unwrap()
            .with_tracestate("congo=t61rcWkgMzE");
        let (layer, _guard) = Builder::new()
            .with_sampler(Sampler::probability(0.5))
            .with_in_memory_exporter(tracing_appinsights::InMemoryExporter::with_capacity(0))
            .build()
            .unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let server = parent.in_scope(|| tracing::info_span!("server"));
            let mut headers = HeaderMap::new();
            server.inject_context(&mut headers);
            let back = RemoteContext::from_headers(&headers).unwrap();
            let own = server.span_context().unwrap();
            assert_eq!(back.trace_id(), TraceId::from_int(trace));
            assert_eq!(back.span_id(), own.span_id);
            assert_ne!(back.span_id(), SpanId::from_int(span));
            assert_eq!(back.sampled(), Some(sampled));
            assert_eq!(back.tracestate(), Some("congo=t61rcWkgMzE"));
        });
    }
}
