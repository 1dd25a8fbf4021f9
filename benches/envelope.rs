//! The export thread's cost: records → envelopes → JSON → gzip, for
//! batches of 1, 100 and 1,000 typical spans (half HTTP server spans with
//! an event, half internal spans with a field), in spans per second; and
//! the bytes per span on the wire, printed once.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tracing::Level;
use tracing_appinsights::bench::Encoder;
use tracing_appinsights::record::{
    Annotation, AttributeValue, Attributes, SpanData, SpanId, SpanKind, TraceId,
};

fn attrs(pairs: &[(&'static str, AttributeValue)]) -> Attributes {
    let mut a = Attributes::new();
    for (k, v) in pairs {
        a.insert(k, v.clone());
    }
    a
}

/// A typical span: ids, times and a few fields, like a real service's.
fn typical(i: u64) -> SpanData {
    let start = SystemTime::now();
    let mut span = SpanData::default();
    span.context.trace_id =
        TraceId::from_int(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c ^ u128::from(i));
    span.context.span_id = SpanId::from_int(0x00f0_67aa_0ba9_02b7 ^ i);
    span.parent_span_id = (i % 2 == 1).then(|| SpanId::from_int(0xb7ad_6b71_6920_3331));
    span.start_time = start;
    span.end_time = start + Duration::from_micros(1234 + i);
    if i % 2 == 0 {
        span.name = "GET /orders/{id}".into();
        span.operation_name = "GET /orders/{id}".into();
        span.kind = SpanKind::Server;
        span.attributes = attrs(&[
            ("http.request.method", AttributeValue::Str("GET".into())),
            ("http.route", AttributeValue::Str("/orders/{id}".into())),
            (
                "url.full",
                AttributeValue::Str("https://shop.example/orders/42".into()),
            ),
            ("http.response.status_code", AttributeValue::U64(200)),
        ]);
        span.annotations.push(Annotation::new(
            start,
            "order loaded",
            Level::INFO,
            "shop::orders",
            attrs(&[("items", AttributeValue::U64(3))]),
        ));
    } else {
        span.name = "load_config".into();
        span.operation_name = "GET /orders/{id}".into();
        span.kind = SpanKind::Internal;
        span.attributes = attrs(&[("config.path", AttributeValue::Str("/etc/app.toml".into()))]);
    }
    span
}

fn batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for n in [1_u64, 100, 1000] {
        let spans: Vec<SpanData> = (0..n).map(typical).collect();
        let mut encoder = Encoder::new(&spans);
        let json = encoder.to_json();
        let wire = encoder.to_wire();
        eprintln!(
            "batch of {n}: {json} JSON bytes, {wire} gzip bytes = {:.1} bytes per span on the wire",
            wire as f64 / n as f64
        );
        group.throughput(Throughput::Elements(n));
        group.bench_function(BenchmarkId::new("json_gzip", n), |b| {
            b.iter(|| black_box(black_box(&mut encoder).to_wire()))
        });
    }
    group.finish();

    // The target's case: spans with one event each.
    let with_event: Vec<SpanData> = (0..1000).map(|i| typical(i * 2)).collect();
    let wire = Encoder::new(&with_event).to_wire();
    eprintln!(
        "1000 server spans with one event each: {:.1} bytes per span on the wire",
        wire as f64 / 1000.0
    );
}

/// Why gzip level 1: the levels' cost and size on a batch of 512 spans.
fn gzip_levels(c: &mut Criterion) {
    use std::io::Write;
    let spans: Vec<SpanData> = (0..512).map(typical).collect();
    let mut encoder = Encoder::new(&spans);
    encoder.to_json();
    let json = encoder.json().to_vec();
    let mut group = c.benchmark_group("gzip_level");
    group.throughput(Throughput::Bytes(json.len() as u64));
    for level in [1, 3, 6, 9] {
        let gzip = |json: &[u8]| {
            let mut enc =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            enc.write_all(json).expect("in memory");
            enc.finish().expect("in memory")
        };
        eprintln!(
            "gzip level {level}: {} JSON bytes -> {} bytes",
            json.len(),
            gzip(&json).len()
        );
        group.bench_with_input(BenchmarkId::from_parameter(level), &json, |b, json| {
            b.iter(|| black_box(gzip(black_box(json))))
        });
    }
    group.finish();
}

criterion_group!(envelope, batches, gzip_levels);
criterion_main!(envelope);
