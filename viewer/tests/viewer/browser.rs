//! The pages in a real headless Chromium (`chromium`, `chromium-browser`,
//! `google-chrome`, or `$CHROMIUM`): each test is skipped, with a message,
//! when none is found (`.ci/run` installs Debian's). Every page is also
//! saved as a screenshot in `viewer/target-screenshots/` (gitignored).
//!
//! The telemetry comes from the real exporter: `frontend` serves a request
//! that calls `inventory`, whose request is the call's child, as in
//! `examples/two_services.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing_appinsights::{with_remote_parent, AppInsightsSpanExt, Builder};
use tracing_appinsights_viewer::Running;
use tracing_subscriber::prelude::*;

use crate::support::*;

/// The longest a browser may take before the test fails.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in [
            "chromium",
            "chromium-browser",
            "google-chrome",
            "google-chrome-stable",
        ] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// One browser test at a time: four Chromiums at once on a small CI
/// machine would make the Live Metrics timing a test of the machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The browser and the lock held while the test runs, or `None` after
/// saying why the test is skipped.
fn browser(test: &str) -> Option<(PathBuf, MutexGuard<'static, ()>)> {
    let found = chromium();
    if found.is_none() {
        // Straight to stderr, past the test harness's capture, so the skip
        // shows in a passing run's log.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: no chromium found (install Debian's `chromium`, or set CHROMIUM=path)"
        );
    }
    let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    found.map(|path| (path, lock))
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Runs the browser headless on `url` with `args`; its standard output.
/// Fails the test when it does not exit within [`BROWSER_TIMEOUT`].
fn run(chromium: &Path, args: &[String], url: &str) -> String {
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let scratch = std::env::temp_dir().join(format!(
        "appinsights-viewer-chromium-{}-{n}-{}",
        std::process::id(),
        tracing_appinsights_viewer::store::now_micros()
    ));
    std::fs::create_dir_all(&scratch).unwrap();
    let out_path = scratch.join("stdout");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1280,900",
        ])
        .arg(format!(
            "--user-data-dir={}",
            scratch.join("profile").display()
        ))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > BROWSER_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&scratch);
                panic!("chromium took more than {BROWSER_TIMEOUT:?} on {url}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("waiting for chromium: {e}"),
        }
    }
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&scratch);
    text
}

/// A browser left open on a page (its scripts run in real time) until
/// dropped.
struct OpenPage {
    child: std::process::Child,
    scratch: PathBuf,
}

impl OpenPage {
    fn new(chromium: &Path, url: &str) -> OpenPage {
        let scratch = std::env::temp_dir().join(format!(
            "appinsights-viewer-chromium-open-{}-{}",
            std::process::id(),
            tracing_appinsights_viewer::store::now_micros()
        ));
        std::fs::create_dir_all(&scratch).unwrap();
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!(
                "--user-data-dir={}",
                scratch.join("profile").display()
            ))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
        OpenPage { child, scratch }
    }
}

impl Drop for OpenPage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// The page's DOM, after `budget` of virtual time for its scripts (if
/// any).
fn dump_dom(chromium: &Path, url: &str, budget: Option<Duration>) -> String {
    let mut args = vec!["--dump-dom".to_owned()];
    if let Some(budget) = budget {
        args.push(format!("--virtual-time-budget={}", budget.as_millis()));
    }
    let dom = run(chromium, &args, url);
    assert!(
        dom.contains("</html>"),
        "no DOM from chromium for {url}: {dom:?}"
    );
    dom
}

/// Saves a screenshot of `url` as `name.png` and prints its path.
fn screenshot(chromium: &Path, url: &str, name: &str, budget: Option<Duration>) -> PathBuf {
    let path = screenshots_dir().join(format!("{name}.png"));
    let _ = std::fs::remove_file(&path);
    let mut args = vec![format!("--screenshot={}", path.display())];
    if let Some(budget) = budget {
        args.push(format!("--virtual-time-budget={}", budget.as_millis()));
    }
    run(chromium, &args, url);
    let png = std::fs::read(&path).unwrap_or_default();
    assert!(
        png.starts_with(b"\x89PNG"),
        "no screenshot of {url} at {}",
        path.display()
    );
    println!("screenshot: {}", path.display());
    path
}

/// Two roles through the real exporters: `frontend` serves
/// `GET /orders/{id}` and calls `inventory`, whose `GET /items/{id}` is
/// the call's child and logs a trace; then a failed request whose name
/// carries markup. The first operation's id.
fn two_services(viewer: &Running) -> String {
    let exporter = |role: &str| {
        Builder::new()
            .with_connection_string(viewer.connection_string())
            .with_offline_storage(false)
            .with_live_metrics(false)
            .with_cloud_role(role)
            .build()
            .unwrap()
    };
    let (frontend_layer, frontend_guard) = exporter("frontend");
    let (inventory_layer, inventory_guard) = exporter("inventory");
    let frontend = tracing::Dispatch::new(tracing_subscriber::registry().with(frontend_layer));
    let inventory = tracing::Dispatch::new(tracing_subscriber::registry().with(inventory_layer));
    tracing::dispatcher::with_default(&frontend, || {
        let server = tracing::info_span!(
            "GET /orders/{id}",
            otel.kind = "server",
            http.request.method = "GET",
            http.route = "/orders/{id}",
            http.response.status_code = 200_u64,
        );
        server.in_scope(|| {
            std::thread::sleep(Duration::from_millis(4));
            let client = tracing::info_span!(
                "GET",
                otel.kind = "client",
                http.request.method = "GET",
                url.full = "http://inventory.local/items/42",
                http.response.status_code = 200_u64,
            );
            let mut headers = hyper::HeaderMap::new();
            client.inject_context(&mut headers);
            client.in_scope(|| {
                std::thread::sleep(Duration::from_millis(2));
                tracing::dispatcher::with_default(&inventory, || {
                    let handler = with_remote_parent(&headers, || {
                        tracing::info_span!(
                            "GET /items/{id}",
                            otel.kind = "server",
                            http.request.method = "GET",
                            http.route = "/items/{id}",
                            http.response.status_code = 200_u64,
                        )
                    });
                    handler.in_scope(|| {
                        std::thread::sleep(Duration::from_millis(5));
                        tracing::info!(items = 42_u64, "counted <b>42</b> items");
                        std::thread::sleep(Duration::from_millis(2));
                    });
                });
                std::thread::sleep(Duration::from_millis(2));
            });
            std::thread::sleep(Duration::from_millis(3));
        });
        let failed = tracing::info_span!(
            "POST /pay/<script>window.injected=1</script>",
            otel.kind = "server",
            http.request.method = "POST",
            http.response.status_code = 500_u64,
        );
        failed.in_scope(|| std::thread::sleep(Duration::from_millis(3)));
    });
    frontend_guard.shutdown(Duration::from_secs(10)).unwrap();
    inventory_guard.shutdown(Duration::from_secs(10)).unwrap();
    let requests = get_ok(viewer.addr, "/api/items?type=request&role=inventory");
    requests["items"][0]["operation_id"]
        .as_str()
        .expect("inventory's request arrived")
        .to_owned()
}

/// `(type, role)` of each timeline row (`class="span"`) of a transaction
/// page, in order.
fn timeline(dom: &str) -> Vec<(String, String)> {
    dom.split("class=\"span\">")
        .skip(1)
        .map(|row| {
            let kind = row
                .split("class=\"badge b-")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_owned();
            // The cell after the name cell (which ends with the
            // properties) is the role.
            let role = row
                .split("</details></td><td>")
                .nth(1)
                .and_then(|c| c.split("</td>").next())
                .unwrap_or("")
                .to_owned();
            (kind, role)
        })
        .collect()
}

#[test]
fn the_transaction_shows_three_items_in_order_across_two_roles() {
    let Some((chromium, _one_at_a_time)) = browser("transaction") else {
        return;
    };
    let viewer = start();
    let op = two_services(&viewer);
    let url = format!("{}operations/{op}", viewer.url());
    let dom = dump_dom(&chromium, &url, None);
    assert_eq!(
        timeline(&dom),
        [
            ("request".to_owned(), "frontend".to_owned()),
            ("dependency".to_owned(), "frontend".to_owned()),
            ("request".to_owned(), "inventory".to_owned()),
        ],
        "{dom}"
    );
    assert!(dom.contains("GET /orders/{id}"), "{dom}");
    assert!(dom.contains("GET /items/{id}"), "{dom}");
    // The trace is escaped text under inventory's request, after it.
    let trace = dom
        .find("counted &lt;b&gt;42&lt;/b&gt; items")
        .expect("the trace");
    let handler = dom.find("GET /items/{id}").unwrap();
    assert!(trace > handler, "{dom}");
    assert!(!dom.contains("<b>42</b>"));
    assert!(dom.contains("<details>"));
    screenshot(&chromium, &url, "transaction", None);
    // Search lists the operation's items, each a link to the transaction.
    let search = format!("{}?range=1h", viewer.url());
    let dom = dump_dom(&chromium, &search, None);
    assert!(
        dom.contains(&format!("href=\"/operations/{op}#item-")),
        "{dom}"
    );
    screenshot(&chromium, &search, "search", None);
}

#[test]
fn the_map_shows_both_roles_and_the_edge() {
    let Some((chromium, _one_at_a_time)) = browser("map") else {
        return;
    };
    let viewer = start();
    two_services(&viewer);
    let url = format!("{}map", viewer.url());
    let dom = dump_dom(&chromium, &url, None);
    assert!(dom.contains("<svg"), "{dom}");
    assert!(dom.contains(">frontend</text>"), "{dom}");
    assert!(dom.contains(">inventory</text>"), "{dom}");
    assert!(dom.contains("<line"), "{dom}");
    // The calls table: frontend → inventory, one call, none failed.
    assert!(
        dom.contains(
            "<tr><td>frontend</td><td class=\"name\"><a href=\"/?type=dependency&amp;role=frontend\">inventory</a></td><td class=\"num\">1</td>"
        ),
        "{dom}"
    );
    screenshot(&chromium, &url, "map", None);
    let url = format!("{}performance", viewer.url());
    let dom = dump_dom(&chromium, &url, None);
    assert!(dom.contains("GET /orders/{id}"), "{dom}");
    screenshot(&chromium, &url, "performance", None);
}

#[test]
fn a_failed_request_appears_under_failures_escaped() {
    let Some((chromium, _one_at_a_time)) = browser("failures") else {
        return;
    };
    let viewer = start();
    two_services(&viewer);
    let url = format!("{}failures", viewer.url());
    let dom = dump_dom(&chromium, &url, None);
    let section = dom
        .split("<h2>Failed requests</h2>")
        .nth(1)
        .and_then(|s| s.split("<h2>").next())
        .expect("a failed requests section");
    assert!(
        section.contains("POST /pay/&lt;script&gt;window.injected=1&lt;/script&gt;"),
        "{section}"
    );
    assert!(section.contains(">500</td>"), "{section}");
    assert!(section.contains("href=\"/operations/"), "{section}");
    assert!(!dom.contains("<script>window.injected"), "{dom}");
    screenshot(&chromium, &url, "failures", None);
}

/// How long a wait may take before it fails: a liveness bound, not a
/// timing requirement.
const LIVENESS: Duration = Duration::from_secs(60);

#[test]
fn live_metrics_shows_a_request_rate_within_seconds_of_traffic() {
    let Some((chromium, _one_at_a_time)) = browser("live") else {
        return;
    };
    let viewer = start();
    let url = format!("{}live", viewer.url());
    // The Live Metrics page, open in a browser that polls in real time
    // (the viewer subscribes exporters while it does).
    let _open = OpenPage::new(&chromium, &url);
    let (layer, guard) = Builder::new()
        .with_connection_string(viewer.connection_string())
        .with_offline_storage(false)
        .with_cloud_role("live-role")
        .build()
        .unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let code = if n % 10 == 0 { 500_u64 } else { 200_u64 };
                    let span = tracing::info_span!(
                        "GET /live/{n}",
                        otel.kind = "server",
                        http.request.method = "GET",
                        http.route = "/live/{n}",
                        http.response.status_code = code,
                    );
                    span.in_scope(|| std::thread::sleep(Duration::from_millis(5)));
                    std::thread::sleep(Duration::from_millis(15));
                }
            });
        })
    };
    let traffic_started = Instant::now();
    // The page as a browser shows it, loaded again every half second
    // until it shows requests. By design that is within 3 s of the first
    // span (a 1 s polling hint, posts each second, the page polling each
    // second); the time is printed, not asserted (a busy machine is no
    // failure): the bound is a liveness one.
    let rate_in = |dom: &str| -> f64 {
        dom.split("id=\"request-rate\">")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no request rate in {dom}"))
    };
    let dom = loop {
        std::thread::sleep(Duration::from_millis(500));
        let loaded = traffic_started.elapsed();
        let dom = dump_dom(&chromium, &url, Some(Duration::from_millis(1500)));
        let rate = rate_in(&dom);
        if rate > 0.0 {
            println!("live: request rate {rate}/s shown on a page loaded {loaded:?} after the traffic started");
            break dom;
        }
        assert!(
            loaded < LIVENESS,
            "request rate still 0 on a page loaded {loaded:?} after the traffic started: {dom}"
        );
    };
    assert!(dom.contains(">connected<"), "{dom}");
    assert!(dom.contains("live-role"), "{dom}");
    // The failed requests' sample documents follow within a few posts.
    let deadline = Instant::now() + LIVENESS;
    loop {
        let live = get_ok(viewer.addr, "/api/live");
        if live["documents"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "no sample document: {live}");
        std::thread::sleep(Duration::from_millis(250));
    }
    screenshot(&chromium, &url, "live", Some(Duration::from_millis(2000)));
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    let _ = guard.shutdown(Duration::from_secs(10));
}

// Without a browser: the pages' HTML and the Live Metrics protocol.

fn page(addr: std::net::SocketAddr, path: &str) -> String {
    let answer = get(addr, path);
    assert_eq!(answer.status, 200, "{path}: {answer:?}");
    assert!(
        answer.head.contains("content-type: text/html"),
        "{answer:?}"
    );
    match answer.body {
        serde_json::Value::String(s) => s,
        other => panic!("{path} answered JSON: {other}"),
    }
}

#[test]
fn every_page_escapes_what_came_with_the_items() {
    let viewer = start();
    let evil = "<script>alert(1)</script>";
    let items = [
        request(
            "front<i>",
            "op1",
            "r1",
            None,
            &format!("GET /{evil}"),
            &at(0),
            40,
            "500",
        ),
        dependency(
            "front<i>",
            "op1",
            "d1",
            "r1",
            evil,
            "back.example",
            &at(5),
            20,
            "503",
        ),
        message("front<i>", "op1", "r1", evil, &at(10)),
        exception("front<i>", "op1", "r1", evil, &at(12)),
    ];
    assert_eq!(track(viewer.addr, &items).status, 200);
    for path in [
        "/",
        "/?q=script&type=request&range=all",
        "/operations/op1",
        "/map",
        "/failures",
        "/performance",
        "/live",
        "/?role=%3Cscript%3E",
    ] {
        let html = page(viewer.addr, path);
        assert!(!html.contains(evil), "{path}: {html}");
        assert!(!html.contains("<i>"), "{path}: {html}");
        assert!(html.contains("<nav>"), "{path}");
    }
    let html = page(viewer.addr, "/operations/op1");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("40.0 ms"), "{html}");
    assert_eq!(get(viewer.addr, "/operations/nope").status, 404);
    assert_eq!(get(viewer.addr, "/nope").status, 404);
    assert_eq!(get(viewer.addr, "/?from=yesterday").status, 400);
}

#[test]
fn the_rejected_page_shows_each_refused_item_with_its_reason() {
    let viewer = start();
    assert!(page(viewer.addr, "/rejections").contains("None: every item sent was accepted"));
    // A Message without its message, its name carrying markup.
    let item = serde_json::json!({
        "name": "Microsoft.ApplicationInsights.Message",
        "time": at(0),
        "iKey": "<b>key</b>",
        "data": { "baseType": "MessageData", "baseData": { "ver": 2 } }
    });
    let answer = track(viewer.addr, &[item]);
    assert_eq!(answer.status, 400, "{answer:?}");
    let reason = answer.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    let html = page(viewer.addr, "/rejections");
    assert!(html.contains("<h1>Rejected items</h1>"), "{html}");
    assert!(html.contains(">400</td>"), "{html}");
    let shown = tracing_appinsights_viewer::pages::escape(&reason);
    assert!(html.contains(&shown), "{reason}\n{html}");
    assert!(
        html.contains("&lt;b&gt;key&lt;/b&gt;"),
        "the item, escaped: {html}"
    );
    assert!(!html.contains("<b>key</b>"), "{html}");
}

#[test]
fn live_metrics_subscribes_only_while_a_page_polls() {
    let viewer = start();
    let ping = |path: &str| {
        post(
            viewer.addr,
            path,
            "x-ms-qps-role-name: shop\r\nx-ms-qps-instance-name: shop-1\r\n",
            br#"{"Instance":"shop-1","RoleName":"shop"}"#,
        )
    };
    let path = "/QuickPulseService.svc/ping?api-version=2024-04-01-preview&ikey=00000000-0000-0000-0000-000000000000";
    let answer = ping(path);
    assert_eq!(answer.status, 200);
    assert!(
        answer.head.contains("x-ms-qps-subscribed: false"),
        "{answer:?}"
    );
    assert!(answer
        .head
        .contains("x-ms-qps-service-polling-interval-hint: 1000"));
    let live = get_ok(viewer.addr, "/api/live");
    assert_eq!(live["watching"], true);
    assert!(ping(path).head.contains("x-ms-qps-subscribed: true"));
    let point = serde_json::json!([{
        "RoleName": "shop", "Instance": "shop-1", "Timestamp": "2026-12-04T21:00:00.000000Z",
        "Metrics": [
            { "Name": "\\ApplicationInsights\\Requests/Sec", "Value": 5, "Weight": 1 },
            { "Name": "\\ApplicationInsights\\Requests Failed/Sec", "Value": 1, "Weight": 1 },
            { "Name": "\\ApplicationInsights\\Request Duration", "Value": 123.0, "Weight": 1 },
            { "Name": "\\ApplicationInsights\\Exceptions/Sec", "Value": 2, "Weight": 1 }
        ],
        "Documents": [{ "DocumentType": "Request", "Name": "<b>GET</b>", "ResponseCode": "500", "Duration": "PT0.12S" }]
    }]);
    let post_path = "/QuickPulseService.svc/post?api-version=2024-04-01-preview&ikey=00000000-0000-0000-0000-000000000000";
    let answer = post(viewer.addr, post_path, "", point.to_string().as_bytes());
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.head.contains("x-ms-qps-subscribed: true"));
    let live = get_ok(viewer.addr, "/api/live");
    let seconds = live["seconds"].as_array().unwrap();
    assert_eq!(seconds.len(), 60);
    let sum = |k: &str| seconds.iter().map(|s| s[k].as_f64().unwrap()).sum::<f64>();
    assert_eq!(sum("requests_per_sec"), 5.0, "{live}");
    assert_eq!(sum("failed_requests_per_sec"), 1.0);
    assert_eq!(sum("exceptions_per_sec"), 2.0);
    assert_eq!(sum("request_duration_ms"), 123.0);
    assert_eq!(live["streams"][0]["role"], "shop");
    assert_eq!(live["documents"][0]["document"]["Name"], "<b>GET</b>");
    // Hostile bodies: refused, nothing kept, the viewer still answers.
    assert_eq!(post(viewer.addr, post_path, "", b"{not json").status, 400);
    assert_eq!(post(viewer.addr, post_path, "", b"\"text\"").status, 400);
    let huge = vec![b'['; 2 * 1024 * 1024];
    assert_eq!(post(viewer.addr, post_path, "", &huge).status, 413);
    assert_eq!(
        get_ok(viewer.addr, "/api/live")["streams"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
