//! The export thread's cost through the sink's real encode path
//! (`tracing_appinsights::bench::Encoder`: records → envelopes → JSON
//! arrays → gzip, as the Application Insights sink runs it), in spans per
//! second, and the bytes per span on the wire, printed once per batch.
//!
//! Records are built as the layer sends them: a span's events are records
//! of their own (with the span's context), the span's record follows.
//!
//! * `encode/pairs/512`: the target's workload, 512 spans with three fields
//!   and one event each (the event's Message item included): half HTTP
//!   server spans, half internal spans;
//! * `encode/json_gzip/{1,100,1000}`: typical spans, half HTTP server spans
//!   with an event, half internal spans with a field;
//! * `gzip_level/*`: why gzip level 2.

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

/// Ids, times and a name, like a real service's span `i`.
fn base(i: u64, start: SystemTime) -> SpanData {
    let mut span = SpanData::default();
    span.context.trace_id =
        TraceId::from_int(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c ^ u128::from(i));
    span.context.span_id = SpanId::from_int(0x00f0_67aa_0ba9_02b7 ^ i);
    span.parent_span_id = (i % 2 == 1).then(|| SpanId::from_int(0xb7ad_6b71_6920_3331));
    span.start_time = start;
    span.end_time = start + Duration::from_micros(1234 + i);
    span.operation_name = "GET /orders/{id}".into();
    span
}

/// The event every span of the target's workload has.
fn order_loaded(start: SystemTime) -> Annotation {
    Annotation::new(
        start + Duration::from_micros(17),
        "order loaded",
        Level::INFO,
        "shop::orders",
        attrs(&[("items", AttributeValue::U64(3))]),
    )
}

/// A typical span: ids, times and a few fields, like a real service's.
fn typical(i: u64) -> SpanData {
    let start = SystemTime::now();
    let mut span = base(i, start);
    if i % 2 == 0 {
        span.name = "GET /orders/{id}".into();
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
        span.annotations.push(order_loaded(start));
    } else {
        span.name = "load_config".into();
        span.kind = SpanKind::Internal;
        span.attributes = attrs(&[("config.path", AttributeValue::Str("/etc/app.toml".into()))]);
    }
    span
}

/// The target's span: three fields and one event; even spans are HTTP
/// server spans, odd ones internal.
fn with_event(i: u64) -> SpanData {
    let start = SystemTime::now();
    let mut span = base(i, start);
    if i % 2 == 0 {
        span.name = "GET /orders/{id}".into();
        span.kind = SpanKind::Server;
        span.attributes = attrs(&[
            ("http.request.method", AttributeValue::Str("GET".into())),
            ("http.route", AttributeValue::Str("/orders/{id}".into())),
            ("http.response.status_code", AttributeValue::U64(200)),
        ]);
    } else {
        span.name = "load_order".into();
        span.kind = SpanKind::Internal;
        span.attributes = attrs(&[
            ("order.id", AttributeValue::U64(40_000 + i)),
            ("db.cached", AttributeValue::Bool(i % 4 == 1)),
            ("shard", AttributeValue::Str("eu-west-2".into())),
        ]);
    }
    span.annotations.push(order_loaded(start));
    span
}

/// Prints a batch's sizes once: JSON, gzip, gzip bytes per span.
fn report(label: &str, encoder: &mut Encoder, spans: u64) {
    let json = encoder.to_json();
    let wire = encoder.to_wire();
    eprintln!(
        "{label}: {} records, {json} JSON bytes, {wire} gzip bytes = {:.1} bytes per span on the wire",
        encoder.records(),
        wire as f64 / spans as f64
    );
}

fn batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");

    // The target's workload.
    let n = 512;
    let spans: Vec<SpanData> = (0..n).map(with_event).collect();
    let mut encoder = Encoder::traced(&spans);
    report(
        "512 spans with three fields and one event each",
        &mut encoder,
        n,
    );
    group.throughput(Throughput::Elements(n));
    group.bench_function(BenchmarkId::new("pairs", n), |b| {
        b.iter(|| black_box(black_box(&mut encoder).to_wire()))
    });

    for n in [1_u64, 100, 1000] {
        let spans: Vec<SpanData> = (0..n).map(typical).collect();
        let mut encoder = Encoder::traced(&spans);
        report(&format!("batch of {n}"), &mut encoder, n);
        group.throughput(Throughput::Elements(n));
        group.bench_function(BenchmarkId::new("json_gzip", n), |b| {
            b.iter(|| black_box(black_box(&mut encoder).to_wire()))
        });
    }
    group.finish();
}

/// Why gzip level 2: the levels' cost and size on a batch of 512 spans.
fn gzip_levels(c: &mut Criterion) {
    use std::io::Write;
    let spans: Vec<SpanData> = (0..512).map(with_event).collect();
    let mut encoder = Encoder::traced(&spans);
    encoder.to_json();
    let json = encoder.json().to_vec();
    let mut group = c.benchmark_group("gzip_level");
    group.throughput(Throughput::Bytes(json.len() as u64));
    for level in [1, 2, 3, 6, 9] {
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
