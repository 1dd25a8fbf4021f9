//! The store at size: fills a SQLite file (in the temporary directory)
//! through the path the server takes (`validate::check`, `NewItem::new`,
//! `Store::insert` in batches of 500) with operations like real ones, then
//! times each query the pages make, then each page over HTTP from a viewer
//! serving the file, and prints both tables.
//!
//! ```sh
//! cargo run --release -p tracing-appinsights-viewer --bin viewer-bench -- [N] [RUNS]
//! ```
//!
//! `N` items (default 1,000,000), each query run `RUNS` times (default 5),
//! the median printed. Exits 1 if anything fails.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tracing_appinsights_viewer::store::{ItemFilter, NewItem, Store};
use tracing_appinsights_viewer::validate;

const BATCH: usize = 500;
/// 2026-12-01T00:00:00Z in microseconds since the epoch.
const START: i64 = 1_795_996_800_000_000;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn duration(micros: u64) -> String {
    let s = micros / 1_000_000;
    format!(
        "{}.{:02}:{:02}:{:02}.{:06}",
        s / 86_400,
        s / 3600 % 24,
        s / 60 % 60,
        s % 60,
        micros % 1_000_000
    )
}

fn envelope(kind: &str, base_type: &str, ts: i64, tags: Value, base: Value) -> Value {
    json!({
        "ver": 1,
        "name": format!("Microsoft.ApplicationInsights.{kind}"),
        "time": validate::format_time(ts),
        "iKey": "00000000-0000-0000-0000-000000000000",
        "tags": tags,
        "data": { "baseType": base_type, "baseData": base },
    })
}

fn tags(role: &str, op: &str, op_name: &str, parent: Option<&str>) -> Value {
    let mut tags = json!({
        "ai.cloud.role": role,
        "ai.cloud.roleInstance": format!("{role}-1"),
        "ai.operation.id": op,
        "ai.operation.name": op_name,
    });
    if let Some(parent) = parent {
        tags["ai.operation.parentId"] = json!(parent);
    }
    tags
}

#[allow(clippy::too_many_arguments)]
fn request(
    role: &str,
    op: &str,
    id: &str,
    parent: Option<&str>,
    name: &str,
    ts: i64,
    micros: u64,
    code: u16,
) -> Value {
    let path = name.split(' ').nth(1).unwrap_or("/");
    envelope(
        "Request",
        "RequestData",
        ts,
        tags(role, op, name, parent),
        json!({
            "ver": 2, "id": id, "name": name, "duration": duration(micros),
            "responseCode": code.to_string(), "success": code < 400,
            "url": format!("http://{role}.example{path}"),
            "properties": { "http.method": "GET", "worker": "3" },
        }),
    )
}

#[allow(clippy::too_many_arguments)]
fn dependency(
    role: &str,
    op: &str,
    op_name: &str,
    id: &str,
    parent: &str,
    (kind, name, target, data): (&str, &str, &str, &str),
    ts: i64,
    micros: u64,
    code: &str,
    success: bool,
) -> Value {
    envelope(
        "RemoteDependency",
        "RemoteDependencyData",
        ts,
        tags(role, op, op_name, Some(parent)),
        json!({
            "ver": 2, "id": id, "name": name, "duration": duration(micros),
            "resultCode": code, "success": success, "type": kind, "target": target,
            "data": data,
        }),
    )
}

fn message(role: &str, op: &str, op_name: &str, parent: &str, text: &str, ts: i64) -> Value {
    envelope(
        "Message",
        "MessageData",
        ts,
        tags(role, op, op_name, Some(parent)),
        json!({ "ver": 2, "message": text, "severityLevel": "Information",
                "properties": { "target": "shop::handlers" } }),
    )
}

fn exception(role: &str, op: &str, op_name: &str, parent: &str, type_name: &str, ts: i64) -> Value {
    envelope(
        "Exception",
        "ExceptionData",
        ts,
        tags(role, op, op_name, Some(parent)),
        json!({ "ver": 2, "exceptions": [ { "typeName": type_name,
                "message": "the stock service did not answer", "hasFullStack": false } ] }),
    )
}

const FRONT_OPS: [&str; 8] = [
    "GET /checkout",
    "GET /cart",
    "POST /cart/items",
    "GET /products",
    "GET /products/{id}",
    "GET /search",
    "POST /orders",
    "GET /health",
];
const BACK_OPS: [&str; 4] = [
    "GET /stock/{sku}",
    "POST /reserve",
    "GET /prices",
    "GET /health",
];

/// One operation: `front` serves a request, calls `back` over HTTP (and
/// sometimes `billing`), each calls the database; traces along the way, an
/// exception and failures now and then. About 8 items.
fn operation(n: u64, rng: &mut Rng, ts: i64) -> Vec<Value> {
    let op = format!("{:032x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15 + 1);
    let front_name = FRONT_OPS[rng.below(FRONT_OPS.len() as u64) as usize];
    let back_name = BACK_OPS[rng.below(BACK_OPS.len() as u64) as usize];
    let fail = rng.below(50) == 0;
    let not_found = !fail && rng.below(40) == 0;
    let code = if fail {
        503
    } else if not_found {
        404
    } else {
        200
    };
    let f1 = format!("f{n:x}");
    let d1 = format!("d{n:x}");
    let b1 = format!("b{n:x}");
    let q1 = format!("q{n:x}");
    let q2 = format!("s{n:x}");
    // Log-normal-ish durations: 0.2 ms to a few seconds.
    let spread =
        |rng: &mut Rng, base: u64| base + rng.below(base * 3) + (rng.below(100) / 99) * base * 20;
    let back_micros = spread(rng, 4_000);
    let front_micros = back_micros + spread(rng, 2_000);
    let db_micros = spread(rng, 300);
    let mut items = vec![
        request("front", &op, &f1, None, front_name, ts, front_micros, code),
        message(
            "front",
            &op,
            front_name,
            &f1,
            &format!("handling {front_name} for user {}", rng.below(5000)),
            ts + 20,
        ),
        dependency(
            "front",
            &op,
            front_name,
            &d1,
            &f1,
            (
                "HTTP",
                back_name,
                "back.example",
                &format!(
                    "http://back.example{}",
                    back_name.split(' ').nth(1).unwrap_or("/")
                ),
            ),
            ts + 50,
            back_micros + 200,
            &code.to_string(),
            code < 400,
        ),
        request(
            "back",
            &op,
            &b1,
            Some(&d1),
            back_name,
            ts + 100,
            back_micros,
            code,
        ),
        dependency(
            "back",
            &op,
            back_name,
            &q1,
            &b1,
            (
                "SQL",
                "SELECT stock",
                "db.example | shop",
                "SELECT qty FROM stock WHERE sku = $1",
            ),
            ts + 150,
            db_micros,
            "0",
            true,
        ),
        message(
            "back",
            &op,
            back_name,
            &b1,
            &format!("stock for sku-{} is {}", rng.below(10_000), rng.below(100)),
            ts + 200,
        ),
    ];
    if rng.below(4) == 0 {
        let c1 = format!("c{n:x}");
        let p1 = format!("p{n:x}");
        let billing_fail = rng.below(30) == 0;
        items.push(dependency(
            "front",
            &op,
            front_name,
            &c1,
            &f1,
            (
                "HTTP",
                "POST /charge",
                "billing.example",
                "http://billing.example/charge",
            ),
            ts + 300,
            5_000,
            if billing_fail { "500" } else { "200" },
            !billing_fail,
        ));
        items.push(request(
            "billing",
            &op,
            &p1,
            Some(&c1),
            "POST /charge",
            ts + 320,
            4_500,
            if billing_fail { 500 } else { 200 },
        ));
    }
    if fail {
        items.push(exception(
            "back",
            &op,
            back_name,
            &b1,
            "TimeoutError",
            ts + 250,
        ));
    } else {
        items.push(dependency(
            "front",
            &op,
            front_name,
            &q2,
            &f1,
            (
                "SQL",
                "SELECT session",
                "db.example | shop",
                "SELECT * FROM sessions WHERE id = $1",
            ),
            ts + 400,
            db_micros / 2 + 50,
            "0",
            true,
        ));
    }
    items
}

/// A query of the store, as a page makes it.
type Query<'a> = Box<dyn Fn(&Store) -> Result<Value, String> + 'a>;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let parse = |a: Option<String>, default: u64| -> u64 {
        match a {
            None => default,
            Some(s) => s.replace('_', "").parse().unwrap_or_else(|_| {
                eprintln!("usage: viewer-bench [N items] [runs]");
                std::process::exit(2)
            }),
        }
    };
    let n = parse(args.next(), 1_000_000).max(1);
    let runs = parse(args.next(), 5).max(1) as usize;
    if let Err(e) = run(n, runs) {
        eprintln!("viewer-bench: {e}");
        std::process::exit(1);
    }
}

fn run(n: u64, runs: usize) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("viewer-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let db = dir.join("items.sqlite3");
    let result = bench(&db, n, runs);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn bench(db: &std::path::Path, n: u64, runs: usize) -> Result<(), String> {
    let mut store = Store::open(Some(db), n)?;
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut pending: Vec<Value> = Vec::new();
    let mut stored = 0u64;
    let mut ops = 0u64;
    let mut ts = START;
    // About a day of traffic, whatever N.
    let step = (86_400_000_000 / (n / 8).max(1)).max(1000) as i64;
    let mut insert_time = Duration::ZERO;
    let mut sample_op = String::new();
    // Then a tenth more (at least 2,000), with the store at its bound:
    // each batch also deletes as many of the oldest items.
    let extra = (n / 10).max(2_000);
    let mut retention_time = Duration::ZERO;
    while stored < n + extra {
        while pending.len() < BATCH {
            let op = operation(ops, &mut rng, ts);
            if ops == (n / 16) {
                sample_op = op[0]["tags"]["ai.operation.id"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
            }
            pending.extend(op);
            ops += 1;
            ts += step + rng.below(step as u64 / 2) as i64;
        }
        let end = if stored < n { n } else { n + extra };
        let take = BATCH.min(usize::try_from(end - stored).unwrap_or(BATCH));
        let batch: Vec<Value> = pending.drain(..take).collect();
        let started = Instant::now();
        // As `ingest::ingest` does: check each item, then build it.
        let items: Vec<NewItem> = batch
            .into_iter()
            .filter_map(|v| {
                let t = validate::check(&v).ok()?;
                NewItem::new(v, t)
            })
            .collect();
        if items.len() != take {
            return Err(format!("{} of {take} items refused", take - items.len()));
        }
        store.insert(&items, &[])?;
        if stored < n {
            insert_time += started.elapsed();
        } else {
            retention_time += started.elapsed();
        }
        stored += take as u64;
    }
    let count = store.count()?;
    let size = std::fs::metadata(db).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(db.with_extension("sqlite3-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    println!(
        "{n} items in {:.1} s: {:.0} items/s (validation, envelope parse and insert; batches of {BATCH})",
        insert_time.as_secs_f64(),
        n as f64 / insert_time.as_secs_f64().max(1e-9),
    );
    println!(
        "{extra} more at the retention bound in {:.1} s: {:.0} items/s (each batch deletes as many)",
        retention_time.as_secs_f64(),
        extra as f64 / retention_time.as_secs_f64().max(1e-9),
    );
    println!(
        "{count} items kept; database {:.0} MiB",
        size as f64 / (1024.0 * 1024.0)
    );
    let limit = 100;
    let filter = |f: fn(&mut ItemFilter)| {
        let mut filter = ItemFilter {
            limit,
            ..ItemFilter::default()
        };
        f(&mut filter);
        filter
    };
    let mid = START + 43_200_000_000;
    let queries: Vec<(&str, Query)> = vec![
        (
            "items",
            Box::new(move |s| s.items(&filter(|_| {})).map(Value::from)),
        ),
        (
            "items type=request",
            Box::new(move |s| {
                s.items(&filter(|f| f.item_type = Some("request".into())))
                    .map(Value::from)
            }),
        ),
        (
            "items type=exception",
            Box::new(move |s| {
                s.items(&filter(|f| f.item_type = Some("exception".into())))
                    .map(Value::from)
            }),
        ),
        (
            "items role=billing",
            Box::new(move |s| {
                s.items(&filter(|f| f.role = Some("billing".into())))
                    .map(Value::from)
            }),
        ),
        ("items operation_id", {
            let op = sample_op.clone();
            Box::new(move |s| {
                let mut f = filter(|_| {});
                f.operation_id = Some(op.clone());
                s.items(&f).map(Value::from)
            })
        }),
        (
            "items q=sku-4242 (free text)",
            Box::new(move |s| {
                s.items(&filter(|f| f.q = Some("sku-4242".into())))
                    .map(Value::from)
            }),
        ),
        (
            "items q=billing.example/charge",
            Box::new(move |s| {
                s.items(&filter(|f| f.q = Some("billing.example/charge".into())))
                    .map(Value::from)
            }),
        ),
        (
            "items q=no-such-text",
            Box::new(move |s| {
                s.items(&filter(|f| f.q = Some("no-such-text".into())))
                    .map(Value::from)
            }),
        ),
        (
            "items type=trace q=no-such-text",
            Box::new(move |s| {
                s.items(&filter(|f| {
                    f.item_type = Some("trace".into());
                    f.q = Some("no-such-text".into());
                }))
                .map(Value::from)
            }),
        ),
        (
            "items result_code=503",
            Box::new(move |s| {
                s.items(&filter(|f| f.result_code = Some("503".into())))
                    .map(Value::from)
            }),
        ),
        (
            "items from..to (1 minute)",
            Box::new(move |s| {
                let mut f = filter(|_| {});
                f.from = Some(mid);
                f.to = Some(mid + 60_000_000);
                s.items(&f).map(Value::from)
            }),
        ),
        ("operation", {
            let op = sample_op.clone();
            Box::new(move |s| s.operation(&op).map(Value::from))
        }),
        ("map", Box::new(|s| s.map())),
        ("failures", Box::new(|s| s.failures())),
        ("performance", Box::new(|s| s.performance())),
    ];
    println!();
    println!("| query | ms (median of {runs}) | results |");
    println!("|---|---:|---:|");
    let mut slowest = Duration::ZERO;
    for (name, query) in &queries {
        let mut times = Vec::with_capacity(runs);
        let mut size = 0;
        for _ in 0..runs {
            let started = Instant::now();
            let value = query(&store)?;
            // The API serializes what the store answers.
            let body = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
            times.push(started.elapsed());
            size = results(&value).max(usize::from(body.is_empty()));
        }
        let t = median(times);
        slowest = slowest.max(t);
        println!("| {name} | {:.1} | {size} |", t.as_secs_f64() * 1000.0);
    }
    println!();
    println!("slowest query: {:.1} ms", slowest.as_secs_f64() * 1000.0);
    drop(store);
    pages(db, n, runs, &sample_op)
}

/// The pages themselves, over HTTP from a viewer serving the same file:
/// the query, the HTML and the connection, as a browser waits for them.
fn pages(db: &std::path::Path, n: u64, runs: usize, sample_op: &str) -> Result<(), String> {
    let running = tracing_appinsights_viewer::Viewer::start(tracing_appinsights_viewer::Config {
        db: Some(db.to_owned()),
        max_items: n,
        ..tracing_appinsights_viewer::Config::in_memory(([127, 0, 0, 1], 0).into())
    })?;
    let paths = [
        "/".to_owned(),
        "/?type=request&range=all".to_owned(),
        "/?type=exception&range=all".to_owned(),
        "/?q=sku-4242&range=all".to_owned(),
        "/?result_code=503&range=all".to_owned(),
        format!("/operations/{sample_op}"),
        "/map".to_owned(),
        "/failures".to_owned(),
        "/performance".to_owned(),
        "/rejections".to_owned(),
        "/live".to_owned(),
    ];
    println!();
    println!("| page | ms (median of {runs}) | bytes |");
    println!("|---|---:|---:|");
    let mut slowest = Duration::ZERO;
    for path in &paths {
        let mut times = Vec::with_capacity(runs);
        let mut bytes = 0;
        for _ in 0..runs {
            let started = Instant::now();
            let body = get(running.addr, path)?;
            times.push(started.elapsed());
            bytes = body.len();
        }
        let t = median(times);
        slowest = slowest.max(t);
        println!("| `{path}` | {:.1} | {bytes} |", t.as_secs_f64() * 1000.0);
    }
    println!();
    println!("slowest page: {:.1} ms", slowest.as_secs_f64() * 1000.0);
    Ok(())
}

/// One GET, `Connection: close`, read to the end; an error unless 200.
fn get(addr: std::net::SocketAddr, path: &str) -> Result<Vec<u8>, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    if !answer.starts_with(b"HTTP/1.1 200") {
        let head = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
        return Err(format!("GET {path}: {head}"));
    }
    Ok(answer)
}

/// How many things an answer holds: items, operations, groups or edges.
fn results(value: &Value) -> usize {
    match value {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.values().map(|v| v.as_array().map_or(0, Vec::len)).sum(),
        _ => 0,
    }
}
