use super::*;
use crate::appinsights::envelope::map_record;
use crate::appinsights::storage::tests::TempDir;
use crate::pipeline::items_of;
use crate::pipeline::ManualClock;
use crate::record::{Annotation, Attributes, EventData, SpanData};

/// `items_of` says how many envelopes `map_record` makes: the counters
/// rely on it.
#[test]
fn items_of_matches_the_mapping() {
    let context = EnvelopeContext::new(
        "00000000-0000-0000-0000-000000000000",
        &Default::default(),
        1.0,
    );
    let span = SpanData {
        name: "s".into(),
        ..Default::default()
    };
    let mut records = vec![Record::Span(Box::new(span.clone()))];
    for n in [1, 3] {
        let mut s = span.clone();
        for i in 0..n {
            s.annotations.push(Annotation::new(
                std::time::SystemTime::now(),
                format!("event {i}"),
                tracing::Level::INFO,
                "app",
                Attributes::new(),
            ));
        }
        records.push(Record::Span(Box::new(s)));
    }
    records.push(Record::Event(Box::new(EventData {
        timestamp: std::time::SystemTime::now(),
        level: tracing::Level::WARN,
        target: "app",
        message: "outside".into(),
        attributes: Attributes::new(),
        span: None,
        sample_rate: None,
    })));
    for record in &records {
        let mut envelopes = Vec::new();
        map_record(record, &context, &mut envelopes);
        assert_eq!(envelopes.len() as u64, items_of(record));
    }
}

/// A sink for an endpoint that refuses connections, retrying for 200 ms
/// of `clock` at most.
fn dead_sink(storage: Option<Storage>, clock: &ManualClock) -> (AppInsightsSink, Ledger) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = SinkConfig {
        transport: TransportConfig {
            endpoint: format!("http://{addr}"),
            gzip: true,
            connect_timeout: Duration::from_millis(200),
            request_timeout: Duration::from_millis(500),
            pool_idle_timeout: Duration::from_secs(1),
            proxy: crate::appinsights::transport::ProxySetting::Direct,
        },
        auth: Default::default(),
        context: EnvelopeContext::new(
            "00000000-0000-0000-0000-000000000000",
            &Default::default(),
            1.0,
        ),
        processors: Default::default(),
        policy: Policy {
            backoff: Backoff {
                base: Duration::from_millis(10),
                cap: Duration::from_millis(40),
                max_elapsed: Duration::from_millis(200),
            },
            max_in_flight: 4,
            max_memory: 1024 * 1024,
            lease: Duration::from_secs(5),
        },
    };
    let ledger = Ledger::detached();
    let sink = AppInsightsSink::new(
        config,
        storage,
        ledger.clone(),
        Clock::Manual(clock.clone()),
    )
    .unwrap();
    (sink, ledger)
}

fn spans(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            Record::Span(Box::new(SpanData {
                name: format!("s{i}").into(),
                ..Default::default()
            }))
        })
        .collect()
}

/// Drives the sink as the worker does until it is idle: waits for the
/// sends in flight (refused connections answer at once), and moves
/// `clock` on by 10 ms whenever nothing is in flight (at most 1,000
/// steps).
fn run(sink: &mut AppInsightsSink, mut records: Vec<Record>, clock: &ManualClock) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        sink.stop();
        sink.accept(&mut records);
        for _ in 0..1000 {
            sink.start_due();
            if sink.is_idle() {
                return;
            }
            if sink.in_flight.is_empty() {
                clock.advance(Duration::from_millis(10));
            } else {
                std::future::poll_fn(|cx| sink.poll_work(cx)).await;
            }
        }
    });
}

#[test]
fn when_retries_run_out_the_batch_is_stored() {
    let dir = TempDir::new("retries-out");
    let clock = ManualClock::new();
    let storage = Storage::new(
        storage::tests::config(&dir.0, 1024 * 1024, Duration::from_secs(3600)),
        Clock::Manual(clock.clone()),
    );
    let (mut sink, ledger) = dead_sink(Some(storage), &clock);
    run(&mut sink, spans(3), &clock);
    let stats = ledger.stats();
    assert!(sink.is_idle());
    assert_eq!(stats.stored, 3);
    assert_eq!(stats.in_memory, 0);
    assert!(stats.retried >= 3, "retried before storing");
    let files: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

#[test]
fn without_storage_they_are_dropped_and_counted() {
    let clock = ManualClock::new();
    let (mut sink, ledger) = dead_sink(None, &clock);
    run(&mut sink, spans(2), &clock);
    let stats = ledger.stats();
    assert!(sink.is_idle());
    assert_eq!(stats.dropped_storage_unavailable, 2);
    assert_eq!(stats.stored, 0);
}
