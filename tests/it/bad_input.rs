//! Hostile and odd input: no panic, a sensible record.

use crate::support::capture::capture;
use tracing::info_span;
use tracing_appinsights::record::{
    AttributeValue, SpanKind, StatusCode, MAX_ATTRIBUTE_VALUE_CHARS,
};

#[test]
fn special_fields_of_the_wrong_type_stay_attributes() {
    let out = capture(|| {
        info_span!(
            "odd",
            otel.kind = 5_u64,
            otel.status_code = true,
            error = false,
        )
        .in_scope(|| {});
    });
    let span = out.span("odd");
    assert_eq!(span.kind, SpanKind::Internal);
    assert_eq!(span.status.code, StatusCode::Unset);
    assert_eq!(
        span.attributes.get("otel.kind"),
        Some(&AttributeValue::U64(5))
    );
    assert_eq!(
        span.attributes.get("otel.status_code"),
        Some(&AttributeValue::Bool(true))
    );
}

#[test]
fn an_absurd_kind_is_kept_as_an_attribute() {
    let out = capture(|| {
        info_span!("absurd", otel.kind = "sideways\0").in_scope(|| {});
        info_span!("status", otel.status_code = "maybe").in_scope(|| {});
    });
    let span = out.span("absurd");
    assert_eq!(span.kind, SpanKind::Internal);
    assert_eq!(
        span.attributes.get("otel.kind"),
        Some(&AttributeValue::Str("sideways\0".into()))
    );
    assert_eq!(out.span("status").status.code, StatusCode::Unset);
}

#[test]
fn huge_and_multibyte_strings_are_cut_on_a_char_boundary() {
    let huge = "é".repeat(100_000);
    let huge_debug = vec!["😀"; 10_000];
    let out = capture(|| {
        let _s = info_span!("big", s = huge.as_str(), d = ?huge_debug).entered();
        tracing::info!("{}", huge);
    });
    let span = out.span("big");
    let s = span.attributes.get("s").and_then(|v| v.as_str()).unwrap();
    assert_eq!(s.chars().count(), MAX_ATTRIBUTE_VALUE_CHARS);
    let d = span.attributes.get("d").and_then(|v| v.as_str()).unwrap();
    assert_eq!(d.chars().count(), MAX_ATTRIBUTE_VALUE_CHARS);
    assert!(d.starts_with("[\"😀\""));
    assert_eq!(span.annotations[0].description.chars().count(), 32_768);
}

#[test]
fn control_characters_survive_in_the_record() {
    let nasty = "a\0b\r\nc\u{1b}[31m\u{7f}";
    let out = capture(|| {
        info_span!("ctl", v = nasty).in_scope(|| {});
    });
    assert_eq!(
        out.span("ctl").attributes.get("v"),
        Some(&AttributeValue::Str(nasty.into()))
    );
}

#[test]
fn a_span_reentered_many_times_is_one_record() {
    let out = capture(|| {
        let span = info_span!("loop");
        for _ in 0..100_000 {
            let _e = span.enter();
        }
        let _a = span.enter();
        let _b = span.enter();
    });
    assert_eq!(out.spans.len(), 1);
}

#[test]
fn spans_closed_on_other_threads_from_many_threads() {
    let out = capture(|| {
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let spans: Vec<_> = (0..8_u64).map(|i| info_span!("t", i)).collect();
        let handles: Vec<_> = spans
            .into_iter()
            .map(|span| {
                let dispatch = dispatch.clone();
                std::thread::spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        span.in_scope(|| info_span!("child").in_scope(|| {}));
                    })
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    assert_eq!(out.spans.len(), 16);
    let parents: Vec<_> = out.spans.iter().filter(|s| s.name == "t").collect();
    for child in out.spans.iter().filter(|s| s.name == "child") {
        assert!(parents
            .iter()
            .any(|p| Some(p.context.span_id) == child.parent_span_id));
    }
}
