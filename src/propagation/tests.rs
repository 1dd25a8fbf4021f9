use http::header::{HeaderMap, HeaderValue};

use super::*;
use crate::record::TraceOptions;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN: &str = "b7ad6b7169203331";
const OTHER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const OTHER_SPAN: &str = "00f067aa0ba902b7";

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

fn ids(context: &RemoteContext) -> (String, String, Option<bool>) {
    (
        context.trace_id().to_string(),
        context.span_id().to_string(),
        context.sampled(),
    )
}

#[test]
fn traceparent_with_tracestate() {
    let h = headers(&[
        ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
        ("tracestate", "congo=t61rcWkgMzE"),
        ("tracestate", "rojo=00f067aa0ba902b7"),
    ]);
    let c = RemoteContext::from_headers(&h).unwrap();
    assert_eq!(ids(&c), (TRACE.into(), SPAN.into(), Some(true)));
    assert_eq!(
        c.tracestate(),
        Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    );
    assert_eq!(c.source(), None);
}

#[test]
fn header_names_are_case_insensitive() {
    let mut h = HeaderMap::new();
    h.insert(
        HeaderName::from_bytes(b"TraceParent").unwrap(),
        HeaderValue::from_str(&format!("00-{TRACE}-{SPAN}-00")).unwrap(),
    );
    let c = RemoteContext::from_headers(&h).unwrap();
    assert_eq!(c.sampled(), Some(false));
}

#[test]
fn an_invalid_tracestate_is_dropped_not_the_parent() {
    let h = headers(&[
        ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
        ("tracestate", "a=1,a=2"),
    ]);
    let c = RemoteContext::from_headers(&h).unwrap();
    assert_eq!(c.tracestate(), None);
    assert_eq!(c.sampled(), Some(true));
}

#[test]
fn legacy_request_id_when_there_is_no_valid_traceparent() {
    let legacy = format!("|{OTHER_TRACE}.{OTHER_SPAN}.");
    let want = (OTHER_TRACE.to_owned(), OTHER_SPAN.to_owned(), None);
    // No traceparent.
    let c = RemoteContext::from_headers(&headers(&[("request-id", &legacy)])).unwrap();
    assert_eq!(ids(&c), want);
    // An invalid one.
    let h = headers(&[("traceparent", "00-zz-zz-01"), ("request-id", &legacy)]);
    assert_eq!(ids(&RemoteContext::from_headers(&h).unwrap()), want);
    // Two traceparents are invalid (W3C §3.2).
    let tp = format!("00-{TRACE}-{SPAN}-01");
    let h = headers(&[
        ("traceparent", &tp),
        ("traceparent", &tp),
        ("request-id", &legacy),
    ]);
    assert_eq!(ids(&RemoteContext::from_headers(&h).unwrap()), want);
    // A valid traceparent wins.
    let h = headers(&[("traceparent", &tp), ("request-id", &legacy)]);
    assert_eq!(
        ids(&RemoteContext::from_headers(&h).unwrap()),
        (TRACE.into(), SPAN.into(), Some(true))
    );
}

#[test]
fn request_context_names_the_source() {
    let h = headers(&[
        ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
        ("request-context", "appId=cid-v1:1234, roleName=frontend"),
    ]);
    let c = RemoteContext::from_headers(&h).unwrap();
    assert_eq!(c.source(), Some("cid-v1:1234"));
    // Without a parent there is nothing to attach it to.
    let h = headers(&[("request-context", "appId=cid-v1:1234")]);
    assert_eq!(RemoteContext::from_headers(&h), None);
}

#[test]
fn nothing_valid_is_none() {
    let cases: &[&[(&str, &str)]] = &[
        &[],
        &[("traceparent", "")],
        &[(
            "traceparent",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        )],
        &[("request-id", "|abc.1.")],
        &[("tracestate", "a=1")],
    ];
    for pairs in cases {
        let h = headers(pairs);
        assert_eq!(RemoteContext::from_headers(&h), None, "{pairs:?}");
    }
    let mut h = HeaderMap::new();
    h.insert("traceparent", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
    assert_eq!(RemoteContext::from_headers(&h), None);
}

#[test]
fn new_refuses_invalid_ids() {
    let trace = TraceId::from_hex(TRACE).unwrap();
    let span = SpanId::from_hex(SPAN).unwrap();
    assert!(RemoteContext::new(trace, span, None).is_some());
    assert!(RemoteContext::new(TraceId::INVALID, span, None).is_none());
    assert!(RemoteContext::new(trace, SpanId::INVALID, None).is_none());
}

fn context(sampled: bool, tracestate: Option<&str>) -> SpanContext {
    SpanContext {
        trace_id: TraceId::from_hex(TRACE).unwrap(),
        span_id: SpanId::from_hex(SPAN).unwrap(),
        trace_options: if sampled {
            TraceOptions::SAMPLED
        } else {
            TraceOptions::NOT_SAMPLED
        },
        tracestate: tracestate.map(Text::from),
    }
}

#[test]
fn inject_writes_the_three_headers() {
    let mut h = HeaderMap::new();
    inject(&context(true, Some("congo=t61rcWkgMzE")), &mut h);
    assert_eq!(h["traceparent"], format!("00-{TRACE}-{SPAN}-01").as_str());
    assert_eq!(h["tracestate"], "congo=t61rcWkgMzE");
    assert_eq!(h["request-id"], format!("|{TRACE}.{SPAN}.").as_str());
    assert_eq!(h.len(), 3);
    // Unsampled: flags 00; a stale tracestate goes.
    inject(&context(false, None), &mut h);
    assert_eq!(h["traceparent"], format!("00-{TRACE}-{SPAN}-00").as_str());
    assert!(h.get("tracestate").is_none());
    assert_eq!(h.len(), 2);
}

#[test]
fn inject_w3c_writes_no_request_id() {
    let mut h = HeaderMap::new();
    inject_w3c(&context(true, Some("congo=t61rcWkgMzE")), &mut h);
    assert_eq!(h["traceparent"], format!("00-{TRACE}-{SPAN}-01").as_str());
    assert_eq!(h["tracestate"], "congo=t61rcWkgMzE");
    assert!(h.get("request-id").is_none());
    assert_eq!(h.len(), 2);
    inject_w3c(&context(false, None), &mut h);
    assert_eq!(h["traceparent"], format!("00-{TRACE}-{SPAN}-00").as_str());
    assert!(h.get("tracestate").is_none());
    assert_eq!(h.len(), 1);
}

#[test]
fn inject_then_extract_round_trips() {
    for sampled in [true, false] {
        for tracestate in [None, Some("a=1,b@c=2")] {
            let mut h = HeaderMap::new();
            let sent = context(sampled, tracestate);
            inject(&sent, &mut h);
            let got = RemoteContext::from_headers(&h).unwrap();
            assert_eq!(got.trace_id(), sent.trace_id);
            assert_eq!(got.span_id(), sent.span_id);
            assert_eq!(got.sampled(), Some(sampled));
            assert_eq!(got.tracestate(), tracestate);
        }
    }
}

#[test]
fn the_pending_context_is_scoped_to_the_closure() {
    let parent = RemoteContext::from_traceparent(&format!("00-{TRACE}-{SPAN}-01"), None).unwrap();
    assert!(take_pending().is_none());
    parent.clone().in_scope(|| {
        assert_eq!(take_pending(), Some(parent.clone()));
        assert!(take_pending().is_none(), "consumed once");
    });
    // Not consumed: dropped at the end of the scope, even on unwind.
    parent.clone().in_scope(|| {});
    assert!(take_pending().is_none());
    let unwound = std::panic::catch_unwind(|| parent.clone().in_scope(|| panic!("boom")));
    assert!(unwound.is_err());
    assert!(take_pending().is_none());
    // Nested scopes restore the outer one; headers without a context hide it.
    parent.clone().in_scope(|| {
        with_remote_parent(&HeaderMap::new(), || assert!(take_pending().is_none()));
        assert_eq!(take_pending(), Some(parent.clone()));
    });
}
