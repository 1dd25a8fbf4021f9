//! `POST /v2.1/track` and `/v2/track`: what the service answers, per item
//! and per body, and what is kept of refused items.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const OPENCENSUS: &str = include_str!("../fixtures/opencensus-ext-azure.json");
const AZURE_MONITOR: &str = include_str!("../fixtures/azure-monitor-opentelemetry-exporter.json");

fn sample(n: u64) -> Value {
    request(
        "shop",
        "op1",
        &format!("r{n}"),
        None,
        "GET /a",
        &at(n),
        5,
        "200",
    )
}

#[test]
fn the_python_exporters_envelopes_are_all_accepted() {
    let viewer = start();
    for (fixture, n) in [(OPENCENSUS, 3), (AZURE_MONITOR, 5)] {
        let answer = post(viewer.addr, "/v2.1/track", "", fixture.as_bytes());
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            answer.body,
            json!({ "itemsReceived": n, "itemsAccepted": n, "errors": [] })
        );
    }
    let items = get_ok(viewer.addr, "/api/items?limit=1000");
    assert_eq!(items["items"].as_array().unwrap().len(), 8);
    let otel = get_ok(
        viewer.addr,
        "/api/operations/7f72d37a987ec6fccd981c08bc86c30d",
    );
    let types: Vec<&str> = otel["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["request", "dependency", "dependency", "trace", "exception"]
    );
    assert_eq!(
        otel["items"][0]["properties"],
        json!({ "customer": "alice" })
    );
    assert_eq!(otel["items"][4]["name"], "ValueError");
    assert_eq!(otel["items"][3]["message"], "checkpoint");
    assert!(get_ok(viewer.addr, "/api/rejections")["rejections"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn v2_track_ndjson_and_gzip_are_accepted() {
    let viewer = start();
    let ndjson = format!("{}\n{}\r\n\n", sample(1), sample(2));
    let answer = post(
        viewer.addr,
        "/v2/track",
        "Content-Type: application/x-json-stream\r\n",
        ndjson.as_bytes(),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["itemsAccepted"], 2);

    let array = serde_json::to_vec(&[sample(3), sample(4), sample(5)]).unwrap();
    let answer = post(
        viewer.addr,
        "/v2.1/track",
        "Content-Encoding: gzip\r\n",
        &gzip(&array),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["itemsAccepted"], 3);

    let answer = post(
        viewer.addr,
        "//v2.1/track",
        "Content-Encoding: gzip\r\n",
        &gzip(ndjson.as_bytes()),
    );
    assert_eq!(answer.status, 200, "the seed's double slash: {answer:?}");
    assert_eq!(
        get_ok(viewer.addr, "/api/items")["items"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
}

#[test]
fn schema_breaking_items_are_refused_one_by_one_with_index_and_message() {
    let viewer = start();
    let mut missing = sample(2);
    missing["data"]["baseData"]
        .as_object_mut()
        .unwrap()
        .remove("id");
    let mut wrong_type = sample(3);
    wrong_type["data"]["baseData"]["success"] = json!("yes");
    // 513 characters outside the BMP: 1026 UTF-16 units, over the 1024 of a
    // request name (and only 513 chars, which a char count would pass).
    let mut long_name = sample(4);
    long_name["data"]["baseData"]["name"] = json!("😀".repeat(513));
    // 512 of them: 1024 units, exactly the limit.
    let mut at_limit = sample(5);
    at_limit["data"]["baseData"]["name"] = json!("😀".repeat(512));
    let mut bad_time = sample(6);
    bad_time["time"] = json!("yesterday");
    let mut long_tag = sample(7);
    long_tag["tags"]["ai.operation.id"] = json!("x".repeat(129));
    let mut unknown = sample(8);
    unknown["data"]["baseType"] = json!("SpanData");
    let mut dependency_without_name = dependency("shop", "op", "d", "r", "x", "t", &at(9), 1, "0");
    dependency_without_name["data"]["baseData"]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let items = vec![
        sample(1),
        missing,
        wrong_type,
        long_name,
        at_limit,
        bad_time,
        long_tag,
        unknown,
        dependency_without_name,
        json!(42),
    ];
    let answer = track(viewer.addr, &items);
    assert_eq!(answer.status, 206, "{answer:?}");
    assert_eq!(answer.body["itemsReceived"], 10);
    assert_eq!(answer.body["itemsAccepted"], 2);
    let errors = answer.body["errors"].as_array().unwrap();
    let indexes: Vec<u64> = errors
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [1, 2, 3, 5, 6, 7, 8, 9]);
    assert!(errors.iter().all(|e| e["statusCode"] == 400));
    let message = |i: usize| errors[i]["message"].as_str().unwrap();
    assert_eq!(
        message(0),
        "Field 'id' on type 'RequestData' is required but missing or empty"
    );
    assert_eq!(
        message(1),
        "Field 'success' on type 'RequestData' is not of the expected type. Expected: boolean. Actual: string"
    );
    assert_eq!(
        message(2),
        "Field 'name' on type 'RequestData' is too long. Expected: at most 1024 UTF-16 code units. Actual: 1026"
    );
    assert!(message(3).starts_with("Field 'time' on type 'Envelope' is not a valid date-time"));
    assert!(message(4).starts_with("Field 'ai.operation.id' on type 'ContextTagKeys' is too long"));
    assert!(message(5).starts_with("Field 'baseType' on type 'Data' is not a known type"));
    assert_eq!(
        message(6),
        "Field 'name' on type 'RemoteDependencyData' is required but missing or empty"
    );
    assert!(message(7).contains("Expected: object"), "{}", message(7));

    // Each refusal is kept, newest first, with its reason and the item.
    let rejections = get_ok(viewer.addr, "/api/rejections")["rejections"].clone();
    let rejections = rejections.as_array().unwrap();
    assert_eq!(rejections.len(), 8);
    let first = rejections.last().unwrap();
    assert_eq!(first["index"], 1);
    assert_eq!(first["status"], 400);
    assert_eq!(first["message"], message(0));
    let item: Value = serde_json::from_str(first["item"].as_str().unwrap()).unwrap();
    assert_eq!(item["data"]["baseData"]["name"], "GET /a");
}

#[test]
fn a_batch_of_only_refused_items_is_a_400_with_its_errors() {
    let viewer = start();
    let mut bad = sample(1);
    bad["data"]["baseData"]["duration"] = json!("ten seconds");
    let answer = track(viewer.addr, &[bad]);
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.body["itemsReceived"], 1);
    assert_eq!(answer.body["itemsAccepted"], 0);
    assert!(answer.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("Field 'duration' on type 'RequestData' is not a valid duration"));
}

#[test]
fn items_of_64_kb_or_more_are_refused() {
    let viewer = start();
    let mut big = sample(1);
    let mut props = serde_json::Map::new();
    for i in 0..10 {
        props.insert(format!("p{i}"), json!("x".repeat(8000)));
    }
    big["data"]["baseData"]["properties"] = Value::Object(props);
    let answer = track(viewer.addr, &[big, sample(2)]);
    assert_eq!(answer.status, 206, "{answer:?}");
    assert!(answer.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("Item is too large"));
    // The kept copy is cut to a bound.
    let rejections = get_ok(viewer.addr, "/api/rejections");
    let kept = rejections["rejections"][0]["item"].as_str().unwrap();
    assert!(kept.len() <= tracing_appinsights_viewer::MAX_REJECTED_ITEM_BYTES);
}

#[test]
fn property_values_the_python_seed_sends_raw_are_accepted_but_long_strings_are_not() {
    let viewer = start();
    let mut raw_values = sample(1);
    raw_values["data"]["baseData"]["properties"] =
        json!({ "custom.int": 5, "flag": true, "stacktrace": ["a", "b"], "type": null });
    let mut long_value = sample(2);
    long_value["data"]["baseData"]["properties"] = json!({ "k": "é".repeat(8193) });
    let mut long_key = sample(3);
    long_key["data"]["baseData"]["properties"] = json!({ "k".repeat(151): "v" });
    let answer = track(viewer.addr, &[raw_values, long_value, long_key]);
    assert_eq!(answer.status, 206, "{answer:?}");
    let errors = answer.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["index"], 1);
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("is too long. Expected: at most 8192 UTF-16 code units. Actual: 8193"));
    assert_eq!(errors[1]["index"], 2);
    assert!(errors[1]["message"]
        .as_str()
        .unwrap()
        .contains("has a name that is too long"));
}

#[test]
fn unreadable_bodies_are_a_400_and_kept_as_rejections() {
    let viewer = start();
    // Bad gzip: the magic, then garbage.
    let answer = post(
        viewer.addr,
        "/v2.1/track",
        "Content-Encoding: gzip\r\n",
        &[0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.body["itemsReceived"], 0);
    assert!(answer.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("could not be decompressed"));
    // A body that says gzip but is not.
    let answer = post(
        viewer.addr,
        "/v2.1/track",
        "Content-Encoding: gzip\r\n",
        b"[{}]",
    );
    assert_eq!(answer.status, 400, "{answer:?}");
    // Invalid JSON, as an array and as lines.
    for body in [&b"[{\"name\": "[..], b"not json at all", b"", b"\xff\xfe[]"] {
        let answer = post(viewer.addr, "/v2.1/track", "", body);
        assert_eq!(answer.status, 400, "{body:?}: {answer:?}");
        assert_eq!(answer.body["itemsAccepted"], 0);
    }
    let rejections = get_ok(viewer.addr, "/api/rejections");
    let list = rejections["rejections"].as_array().unwrap();
    assert_eq!(list.len(), 6);
    assert!(list
        .iter()
        .all(|r| r["index"].is_null() && r["status"] == 400));
    assert_eq!(list[2]["item"], "not json at all");
}

#[test]
fn a_bad_line_among_good_ones_is_refused_alone() {
    let viewer = start();
    let body = format!("{}\n{{not json\n{}\n", sample(1), sample(2));
    let answer = post(viewer.addr, "/v2.1/track", "", body.as_bytes());
    assert_eq!(answer.status, 206, "{answer:?}");
    assert_eq!(answer.body["itemsAccepted"], 2);
    assert_eq!(answer.body["errors"][0]["index"], 1);
}

#[test]
fn a_100_mb_body_is_refused_from_its_content_length_without_being_read() {
    let viewer = start();
    let mut stream = TcpStream::connect(viewer.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST /v2.1/track HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n[{{"
    )
    .unwrap();
    // Answered with the body unsent: it was not waited for (the read
    // timeout only turns a hang into a failure).
    let answer = read_answer(&mut stream);
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("larger than the limit"));
}

#[test]
fn a_chunked_body_over_the_bound_is_cut_off_while_streaming() {
    let viewer = start_with(|c| c.max_body_bytes = 64 * 1024);
    let mut stream = TcpStream::connect(viewer.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /v2.1/track HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b' '; 16 * 1024];
    for _ in 0..8 {
        if write!(stream, "{:x}\r\n", chunk.len()).is_err()
            || stream.write_all(&chunk).is_err()
            || stream.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let answer = read_answer(&mut stream);
    assert_eq!(answer.status, 413, "{answer:?}");
}

#[test]
fn a_gzip_bomb_is_refused_past_the_bound() {
    let viewer = start_with(|c| c.max_body_bytes = 1024 * 1024);
    // 8 MiB of spaces, a few kB compressed.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![b' '; 8 * 1024 * 1024]).unwrap();
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    let answer = post(
        viewer.addr,
        "/v2.1/track",
        "Content-Encoding: gzip\r\n",
        &bomb,
    );
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("decompressed"));
}

#[test]
fn other_methods_and_paths_are_refused_and_the_viewer_keeps_serving() {
    let viewer = start();
    assert_eq!(get(viewer.addr, "/v2.1/track").status, 405);
    assert_eq!(get(viewer.addr, "/nothing").status, 404);
    assert_eq!(get(viewer.addr, "/api/nothing").status, 404);
    assert_eq!(get(viewer.addr, "/api/items?limit=x").status, 400);
    assert_eq!(get(viewer.addr, "/api/items?from=yesterday").status, 400);
    assert_eq!(get(viewer.addr, "/api/operations/none").status, 404);
    // Garbage on the socket, then a good request.
    let answer = raw(viewer.addr, "\x00\x01garbage\r\n\r\n", b"");
    assert_eq!(answer.status, 400);
    let mut junk = Vec::new();
    let mut x: u32 = 12345;
    for _ in 0..4096 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        junk.push((x >> 16) as u8);
    }
    for body in [
        &junk[..],
        &gzip(&junk)[..],
        b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    ] {
        for encoding in ["", "Content-Encoding: gzip\r\n"] {
            let answer = post(viewer.addr, "/v2.1/track", encoding, body);
            assert_eq!(answer.status, 400, "{answer:?}");
        }
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        post(viewer.addr, "/v2.1/track", "", deep.as_bytes()).status,
        400
    );
    assert_eq!(track(viewer.addr, &[sample(1)]).status, 200);
}

#[test]
fn live_metrics_pings_are_answered_as_nobody_watching() {
    let viewer = start();
    let answer = raw(
        viewer.addr,
        "POST /QuickPulseService.svc/ping?api-version=2024-04-01-preview HTTP/1.1\r\n\
         Host: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n",
        b"{}",
    );
    assert_eq!(answer.status, 200);
    assert!(
        answer.head.contains("x-ms-qps-subscribed: false"),
        "{answer:?}"
    );
}
