//! The HTML pages: server-rendered, one shared layout, inline CSS, no
//! external assets (a few lines of script on the Live Metrics page only).
//! Everything that came with a request or an item goes through [`escape`].

use std::collections::HashMap;
use std::fmt::Write as _;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde_json::Value;

use crate::api::{parse_query, percent_decode};
use crate::store::ItemFilter;
use crate::{validate, State};

/// The most rows of the search page.
const SEARCH_LIMIT: usize = 200;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value or a path segment.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// A duration as a person reads it: `0.42 ms`, `12.3 ms`, `250 ms`,
/// `1.42 s`, `2 min 5 s`.
pub fn format_duration(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return "–".into();
    }
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        let s = (ms / 1000.0).round() as u64;
        format!("{} min {} s", s / 60, s % 60)
    }
}

/// `2026-12-04T21:16:01.123456Z` as `2026-12-04 21:16:01.123` (UTC).
pub fn format_time(iso: &str) -> String {
    match validate::parse_time(iso) {
        Some(micros) => {
            let t = validate::format_time(micros);
            format!(
                "{} {}",
                t.get(..10).unwrap_or(""),
                t.get(11..23).unwrap_or("")
            )
        }
        None => iso.to_owned(),
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn html_response(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        "content-security-policy",
        hyper::header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:",
        ),
    );
    headers.insert(
        "x-content-type-options",
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    response
}

const CSS: &str = r#"
:root { --fg:#1b1f24; --muted:#5b6470; --line:#d8dde3; --bg:#f6f8fa; --accent:#0b5cad;
  --fail:#c62828; --ok:#2e7d32; --req:#1565c0; --dep:#6a1b9a; --trace:#5b6470; --exc:#c62828; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
  color:var(--fg); background:#fff; }
header { background:#12263f; color:#fff; display:flex; align-items:center; gap:24px; padding:0 20px; height:48px; }
header .brand { font-weight:600; font-size:15px; white-space:nowrap; }
nav a { color:#cfd8e3; text-decoration:none; padding:14px 10px; display:inline-block; }
nav a:hover { color:#fff; }
nav a.active { color:#fff; border-bottom:3px solid #4fa3ff; padding-bottom:11px; }
main { padding:18px 20px 40px; max-width:1400px; }
h1 { font-size:20px; margin:0 0 12px; font-weight:600; }
h2 { font-size:16px; margin:22px 0 8px; font-weight:600; }
a { color:var(--accent); }
.muted { color:var(--muted); }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:var(--bg); font-weight:600; color:#333; white-space:nowrap; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.time { white-space:nowrap; font-variant-numeric:tabular-nums; }
td.name { overflow-wrap:anywhere; }
tr:hover td { background:#fafbfc; }
.fail, td.fail { color:var(--fail); font-weight:600; }
.ok { color:var(--ok); }
.badge { display:inline-block; min-width:78px; text-align:center; font-size:11px; font-weight:600; border-radius:3px;
  padding:1px 6px; color:#fff; text-transform:uppercase; letter-spacing:.03em; }
.b-request { background:var(--req); } .b-dependency { background:var(--dep); }
.b-trace { background:var(--trace); } .b-exception { background:var(--exc); }
.b-event { background:#00838f; } .b-metric { background:#8d6e63; }
form.filters { display:flex; flex-wrap:wrap; gap:10px; align-items:flex-end; background:var(--bg);
  border:1px solid var(--line); padding:10px 12px; border-radius:4px; margin-bottom:14px; }
form.filters label { display:flex; flex-direction:column; font-size:12px; color:var(--muted); gap:2px; }
form.filters input, form.filters select { font:inherit; padding:4px 6px; border:1px solid #b9c1ca; border-radius:3px; min-width:120px; }
form.filters button { font:inherit; padding:5px 14px; background:var(--accent); color:#fff; border:0; border-radius:3px; cursor:pointer; }
.summary { display:flex; gap:28px; flex-wrap:wrap; margin:0 0 14px; }
.summary div { font-size:12px; color:var(--muted); }
.summary b { display:block; font-size:15px; color:var(--fg); font-weight:600; }
.tl td { padding-top:4px; padding-bottom:4px; }
.tl .bar-cell { width:38%; min-width:260px; }
.track { position:relative; height:16px; background:repeating-linear-gradient(90deg,#f3f5f7 0,#f3f5f7 1px,transparent 1px,transparent 10%); }
.bar { position:absolute; top:2px; height:12px; border-radius:2px; min-width:2px; }
.bar.request { background:var(--req); } .bar.dependency { background:var(--dep); }
.bar.failed { background:var(--fail); }
.mark { position:absolute; top:0; width:2px; height:16px; background:var(--trace); }
.mark.exception { background:var(--exc); }
details { margin-top:3px; }
details summary { cursor:pointer; color:var(--muted); font-size:12px; }
details table { margin:4px 0 6px; width:auto; min-width:320px; }
details td, details th { font-size:12px; padding:2px 8px; }
.child td.name { font-size:13px; }
.empty { color:var(--muted); padding:18px 0; }
svg text { font-family:inherit; }
.charts { display:grid; grid-template-columns:repeat(auto-fill,minmax(400px,1fr)); gap:14px; }
.chart { border:1px solid var(--line); border-radius:4px; padding:8px 10px; }
.chart h3 { margin:0 0 2px; font-size:13px; font-weight:600; display:flex; justify-content:space-between; }
.chart .now { font-variant-numeric:tabular-nums; }
.axis { display:flex; justify-content:space-between; font-size:11px; color:var(--muted); }
.pill { display:inline-block; padding:2px 8px; border-radius:10px; font-size:12px; background:var(--bg); border:1px solid var(--line); }
.note { color:var(--muted); }
pre { white-space:pre-wrap; word-break:break-all; max-width:70ch; font-size:12px; margin:4px 0; }
"#;

const NAV: [(&str, &str); 6] = [
    ("/", "Search"),
    ("/map", "Map"),
    ("/failures", "Failures"),
    ("/performance", "Performance"),
    ("/live", "Live Metrics"),
    ("/rejections", "Rejected"),
];

fn layout(title: &str, active: &str, body: &str) -> String {
    let mut nav = String::new();
    for (href, label) in NAV {
        let class = if href == active {
            " class=\"active\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{href}\"{class}>{label}</a>");
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Application Insights viewer</title><style>{CSS}</style></head>\
         <body><header><span class=\"brand\">Application Insights viewer</span><nav>{nav}</nav></header>\
         <main>{body}</main></body></html>\n",
        escape(title)
    )
}

fn error_page(status: u16, message: &str) -> Response<Full<Bytes>> {
    html_response(
        status,
        layout(
            "Error",
            "",
            &format!("<h1>Error</h1><p class=\"fail\">{}</p>", escape(message)),
        ),
    )
}

/// Answers `GET /{path}` when it is a page (path without its leading `/`).
pub(crate) fn answer(path: &str, query: &str, state: &State) -> Option<Response<Full<Bytes>>> {
    let params = parse_query(query);
    let get = |key: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let path = path.trim_end_matches('/');
    let page = match path {
        "" => search(&get, state),
        "map" => map(state),
        "failures" => failures(state),
        "performance" => performance(state),
        "live" => Ok(live()),
        "rejections" => rejections(state),
        p => match p.strip_prefix("operations/") {
            Some(id) if !id.is_empty() && !id.contains('/') => {
                operation(&percent_decode(id), state)
            }
            _ => return None,
        },
    };
    Some(match page {
        Ok(html) => html_response(200, html),
        Err((status, message)) => error_page(status, &message),
    })
}

type PageResult = Result<String, (u16, String)>;

fn db(e: String) -> (u16, String) {
    (500, e)
}

fn badge(item_type: &str) -> String {
    format!(
        "<span class=\"badge b-{0}\">{0}</span>",
        escape(match item_type {
            "request" | "dependency" | "trace" | "exception" | "event" | "metric" => item_type,
            _ => "other",
        })
    )
}

/// What a row shows as an item's name.
fn title(item: &Value) -> String {
    let name = s(item, "name");
    let message = s(item, "message");
    match s(item, "type") {
        "trace" => message.to_owned(),
        "exception" if !message.is_empty() => format!("{name}: {message}"),
        _ if !name.is_empty() => name.to_owned(),
        _ => message.to_owned(),
    }
}

fn result_cell(item: &Value) -> String {
    let code = s(item, "result_code");
    let failed = item.get("success") == Some(&Value::Bool(false));
    let class = if failed { "num fail" } else { "num" };
    format!("<td class=\"{class}\">{}</td>", escape(code))
}

fn duration_cell(item: &Value) -> String {
    match item.get("duration_ms").and_then(Value::as_f64) {
        Some(ms) => format!("<td class=\"num\">{}</td>", format_duration(ms)),
        None => "<td class=\"num\"></td>".into(),
    }
}

fn search(get: &dyn Fn(&str) -> Option<String>, state: &State) -> PageResult {
    let now = crate::store::now_micros();
    let range = get("range").unwrap_or_else(|| "all".into());
    let span_micros: Option<i64> = match range.as_str() {
        "30m" => Some(30 * 60),
        "1h" => Some(3600),
        "4h" => Some(4 * 3600),
        "24h" => Some(24 * 3600),
        "7d" => Some(7 * 24 * 3600),
        _ => None,
    }
    .map(|secs| secs * 1_000_000);
    let time = |key: &str| -> Result<Option<i64>, (u16, String)> {
        match get(key) {
            None => Ok(None),
            Some(t) => validate::parse_time(&t).map(Some).ok_or_else(|| {
                (
                    400,
                    format!("{key} must be an ISO 8601 time such as 2026-01-02T03:04:05Z"),
                )
            }),
        }
    };
    let from = time("from")?.or(span_micros.map(|s| now - s));
    let to = time("to")?;
    let filter = ItemFilter {
        item_type: get("type"),
        role: get("role"),
        operation_id: get("operation_id"),
        q: get("q"),
        result_code: get("result_code"),
        from,
        to,
        limit: SEARCH_LIMIT,
    };
    let items = {
        let store = state.store.lock().unwrap_or_else(|p| p.into_inner());
        store.items(&filter).map_err(db)?
    };
    let value = |key: &str| escape(&get(key).unwrap_or_default());
    let mut body = String::from(
        "<h1>Transaction search</h1><form class=\"filters\" method=\"get\" action=\"/\">",
    );
    body.push_str("<label>Time range<select name=\"range\">");
    for (v, label) in [
        ("30m", "Last 30 minutes"),
        ("1h", "Last hour"),
        ("4h", "Last 4 hours"),
        ("24h", "Last 24 hours"),
        ("7d", "Last 7 days"),
        ("all", "Everything kept"),
    ] {
        let sel = if v == range { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{v}\"{sel}>{label}</option>");
    }
    body.push_str("</select></label><label>Item type<select name=\"type\">");
    let ty = get("type").unwrap_or_default();
    for (v, label) in [
        ("", "All"),
        ("request", "Request"),
        ("dependency", "Dependency"),
        ("trace", "Trace"),
        ("exception", "Exception"),
        ("event", "Event"),
        ("metric", "Metric"),
    ] {
        let sel = if v == ty { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{v}\"{sel}>{label}</option>");
    }
    let _ = write!(
        body,
        "</select></label>\
         <label>Role<input name=\"role\" value=\"{}\" placeholder=\"cloud role\"></label>\
         <label>Text<input name=\"q\" value=\"{}\" placeholder=\"name, message, URL\" size=\"28\"></label>\
         <label>Result code<input name=\"result_code\" value=\"{}\" size=\"6\" style=\"min-width:80px\"></label>\
         <label>From (UTC)<input name=\"from\" value=\"{}\" placeholder=\"2026-01-02T03:04:05Z\"></label>\
         <label>To (UTC)<input name=\"to\" value=\"{}\" placeholder=\"2026-01-02T04:00:00Z\"></label>",
        value("role"),
        value("q"),
        value("result_code"),
        value("from"),
        value("to"),
    );
    if let Some(op) = get("operation_id") {
        let _ = write!(
            body,
            "<input type=\"hidden\" name=\"operation_id\" value=\"{}\">",
            escape(&op)
        );
    }
    body.push_str("<button type=\"submit\">Search</button></form>");
    if items.is_empty() {
        body.push_str("<p class=\"empty\">No item matches.</p>");
        return Ok(layout("Search", "/", &body));
    }
    let _ = write!(
        body,
        "<p class=\"muted\">{} item{}, newest first{}.</p>",
        items.len(),
        if items.len() == 1 { "" } else { "s" },
        if items.len() == SEARCH_LIMIT {
            " (the first 200: narrow the search for others)"
        } else {
            ""
        }
    );
    body.push_str(
        "<table><thead><tr><th>Time (UTC)</th><th>Type</th><th>Role</th><th>Name</th>\
         <th class=\"num\">Result</th><th class=\"num\">Duration</th></tr></thead><tbody>",
    );
    for item in &items {
        let op = s(item, "operation_id");
        let name = escape(&title(item));
        let name = if op.is_empty() {
            name
        } else {
            format!(
                "<a href=\"/operations/{}#item-{}\">{}</a>",
                url_encode(op),
                item.get("seq").and_then(Value::as_i64).unwrap_or(0),
                if name.is_empty() {
                    "(no name)".into()
                } else {
                    name
                }
            )
        };
        let _ = write!(
            body,
            "<tr><td class=\"time\">{}</td><td>{}</td><td>{}</td><td class=\"name\">{}</td>{}{}</tr>",
            escape(&format_time(s(item, "time"))),
            badge(s(item, "type")),
            escape(s(item, "role")),
            name,
            result_cell(item),
            duration_cell(item),
        );
    }
    body.push_str("</tbody></table>");
    Ok(layout("Search", "/", &body))
}

fn properties_details(item: &Value) -> String {
    let mut rows = String::new();
    let mut row = |k: &str, v: &str| {
        if !v.is_empty() {
            let _ = write!(
                rows,
                "<tr><th>{}</th><td class=\"name\">{}</td></tr>",
                escape(k),
                escape(v)
            );
        }
    };
    for key in [
        "id",
        "parent_id",
        "role_instance",
        "url",
        "target",
        "dependency_type",
        "data",
        "message",
    ] {
        row(key, s(item, key));
    }
    row("time", &format_time(s(item, "time")));
    if let Some(props) = item.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            row(k, &text);
        }
    }
    if let Some(stack) = item
        .pointer("/item/data/baseData/exceptions/0/parsedStack")
        .and_then(Value::as_array)
    {
        let frames: Vec<String> = stack
            .iter()
            .take(20)
            .map(|f| {
                format!(
                    "{} {}:{}",
                    s(f, "method"),
                    s(f, "fileName"),
                    f.get("line").unwrap_or(&Value::Null)
                )
            })
            .collect();
        row("stack", &frames.join("\n"));
    }
    format!("<details><summary>Properties</summary><table>{rows}</table></details>")
}

fn operation(id: &str, state: &State) -> PageResult {
    let items = {
        let store = state.store.lock().unwrap_or_else(|p| p.into_inner());
        store.operation(id).map_err(db)?
    };
    if items.is_empty() {
        return Err((404, format!("No item of operation {id}.")));
    }
    let start = |i: &Value| validate::parse_time(s(i, "time")).unwrap_or(0);
    let dur_us = |i: &Value| {
        (i.get("duration_ms")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
            .max(0.0)
            * 1000.0) as i64
    };
    let is_span = |i: &Value| matches!(s(i, "type"), "request" | "dependency");
    let spans: Vec<&Value> = items.iter().filter(|i| is_span(i)).collect();
    let t0 = items.iter().map(start).min().unwrap_or(0);
    let t1 = items
        .iter()
        .map(|i| start(i).saturating_add(dur_us(i)))
        .max()
        .unwrap_or(t0);
    let total = (t1 - t0).max(1) as f64;
    // The tree: each span under the span whose id is its parent id.
    let by_id: HashMap<&str, usize> = spans
        .iter()
        .enumerate()
        .filter(|(_, i)| !s(i, "id").is_empty())
        .map(|(n, i)| (s(i, "id"), n))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    for (n, span) in spans.iter().enumerate() {
        match by_id.get(s(span, "parent_id")) {
            Some(&p) if p != n => children[p].push(n),
            _ => roots.push(n),
        }
    }
    // Traces, exceptions and events under their span.
    let mut attached: HashMap<usize, Vec<&Value>> = HashMap::new();
    let mut loose: Vec<&Value> = Vec::new();
    for item in items.iter().filter(|i| !is_span(i)) {
        match by_id.get(s(item, "parent_id")) {
            Some(&p) => attached.entry(p).or_default().push(item),
            None => loose.push(item),
        }
    }
    // Depth-first, by start time; each span once (a cycle of parent ids
    // leaves the rest as roots).
    let mut order: Vec<(usize, usize)> = Vec::new();
    let mut seen = vec![false; spans.len()];
    let mut stack: Vec<(usize, usize)> = roots.iter().rev().map(|&r| (r, 0)).collect();
    loop {
        while let Some((n, depth)) = stack.pop() {
            if seen[n] {
                continue;
            }
            seen[n] = true;
            order.push((n, depth));
            let mut kids = children[n].clone();
            kids.sort_by_key(|&k| (start(spans[k]), k));
            for k in kids.into_iter().rev() {
                stack.push((k, depth + 1));
            }
        }
        match seen.iter().position(|s| !s) {
            Some(n) => stack.push((n, 0)),
            None => break,
        }
    }
    let root = order.first().map(|&(n, _)| spans[n]).unwrap_or(&items[0]);
    let mut roles: Vec<&str> = items
        .iter()
        .map(|i| s(i, "role"))
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort_unstable();
    roles.dedup();
    let failed = spans
        .iter()
        .filter(|i| i.get("success") == Some(&Value::Bool(false)))
        .count();
    let name = {
        let n = s(root, "operation_name");
        if n.is_empty() {
            title(root)
        } else {
            n.to_owned()
        }
    };
    let mut body = format!(
        "<h1>End-to-end transaction: {}</h1><div class=\"summary\">\
         <div>Operation id<b>{}</b></div><div>Started (UTC)<b>{}</b></div>\
         <div>Duration<b>{}</b></div><div>Roles<b>{}</b></div><div>Items<b>{}</b></div>\
         <div>Failed<b class=\"{}\">{}</b></div></div>",
        escape(&name),
        escape(id),
        escape(&format_time(&validate::format_time(t0))),
        format_duration((t1 - t0) as f64 / 1000.0),
        escape(&roles.join(", ")),
        items.len(),
        if failed > 0 { "fail" } else { "" },
        failed,
    );
    if items.len() >= 1000 {
        body.push_str("<p class=\"muted\">The first 1000 items of this operation.</p>");
    }
    body.push_str(
        "<table class=\"tl\"><thead><tr><th>Item</th><th>Role</th><th class=\"num\">Result</th>\
         <th class=\"num\">Duration</th><th class=\"bar-cell\">Timeline (0 – ",
    );
    let _ = write!(
        body,
        "{})</th></tr></thead><tbody>",
        format_duration(total / 1000.0)
    );
    let pct = |us: i64| ((us as f64 / total) * 100.0).clamp(0.0, 100.0);
    let child_row = |body: &mut String, item: &Value, depth: usize| {
        let offset = pct(start(item) - t0);
        let kind = s(item, "type");
        let _ = write!(
            body,
            "<tr class=\"child\" id=\"item-{}\"><td class=\"name\" style=\"padding-left:{}px\">{} {}{}</td>\
             <td>{}</td><td></td><td class=\"num muted\">at +{}</td><td class=\"bar-cell\"><div class=\"track\">\
             <div class=\"mark {}\" style=\"left:{:.2}%\" title=\"{}\"></div></div></td></tr>",
            item.get("seq").and_then(Value::as_i64).unwrap_or(0),
            8 + depth * 18,
            badge(kind),
            escape(&title(item)),
            properties_details(item),
            escape(s(item, "role")),
            format_duration((start(item) - t0) as f64 / 1000.0),
            escape(kind),
            offset,
            escape(&format_time(s(item, "time"))),
        );
    };
    for &(n, depth) in &order {
        let span = spans[n];
        let kind = s(span, "type");
        let failed = span.get("success") == Some(&Value::Bool(false));
        let left = pct(start(span) - t0);
        let width = pct(dur_us(span)).min(100.0 - left).max(0.3);
        let _ = write!(
            body,
            "<tr id=\"item-{}\" class=\"span\"><td class=\"name\" style=\"padding-left:{}px\">{} {}{}</td>\
             <td>{}</td>{}{}<td class=\"bar-cell\"><div class=\"track\"><div class=\"bar {}{}\" \
             style=\"left:{:.2}%;width:{:.2}%\" title=\"{} · +{}\"></div></div></td></tr>",
            span.get("seq").and_then(Value::as_i64).unwrap_or(0),
            8 + depth * 18,
            badge(kind),
            escape(&title(span)),
            properties_details(span),
            escape(s(span, "role")),
            result_cell(span),
            duration_cell(span),
            escape(kind),
            if failed { " failed" } else { "" },
            left,
            width,
            escape(&format_time(s(span, "time"))),
            format_duration((start(span) - t0) as f64 / 1000.0),
        );
        if let Some(list) = attached.get(&n) {
            for item in list {
                child_row(&mut body, item, depth + 1);
            }
        }
    }
    for item in &loose {
        child_row(&mut body, item, 0);
    }
    body.push_str("</tbody></table>");
    let _ = write!(
        body,
        "<p class=\"muted\"><a href=\"/?operation_id={}\">This operation's items in search</a></p>",
        url_encode(id)
    );
    Ok(layout(&format!("Transaction {id}"), "", &body))
}

fn map(state: &State) -> PageResult {
    let map = {
        let store = state.store.lock().unwrap_or_else(|p| p.into_inner());
        store.map().map_err(db)?
    };
    let empty = Vec::new();
    let nodes = map["nodes"].as_array().unwrap_or(&empty);
    let edges = map["edges"].as_array().unwrap_or(&empty);
    let mut body = String::from("<h1>Application map</h1>");
    if nodes.is_empty() {
        body.push_str("<p class=\"empty\">Nothing has arrived yet.</p>");
        return Ok(layout("Map", "/map", &body));
    }
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(n, v)| (s(v, "id"), n))
        .collect();
    // Columns by call depth: a callee one column right of its deepest
    // caller (bounded passes, so a cycle cannot loop).
    let mut depth = vec![0usize; nodes.len()];
    for _ in 0..nodes.len().min(16) {
        let mut changed = false;
        for e in edges {
            if let (Some(&a), Some(&b)) = (index.get(s(e, "source")), index.get(s(e, "target"))) {
                if a != b && depth[b] < depth[a] + 1 && depth[a] < 15 {
                    depth[b] = depth[a] + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let columns = depth.iter().max().copied().unwrap_or(0) + 1;
    let mut rows_in = vec![0usize; columns];
    let mut pos = vec![(0f64, 0f64); nodes.len()];
    let (col_w, row_h, node_w, node_h) = (380.0, 90.0, 180.0, 52.0);
    for (n, &d) in depth.iter().enumerate() {
        pos[n] = (30.0 + d as f64 * col_w, 30.0 + rows_in[d] as f64 * row_h);
        rows_in[d] += 1;
    }
    let width = 60.0 + (columns - 1) as f64 * col_w + node_w;
    let height = 30.0 + rows_in.iter().max().copied().unwrap_or(1) as f64 * row_h;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"application map\" \
         style=\"max-width:100%;border:1px solid var(--line);border-radius:4px;background:#fbfcfd\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" \
         markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#7a8591\"/></marker></defs>"
    );
    for e in edges {
        let (Some(&a), Some(&b)) = (index.get(s(e, "source")), index.get(s(e, "target"))) else {
            continue;
        };
        let calls = e["calls"].as_i64().unwrap_or(0);
        let failures = e["failures"].as_i64().unwrap_or(0);
        let rate = if calls > 0 {
            failures as f64 / calls as f64
        } else {
            0.0
        };
        let colour = if failures > 0 { "#c62828" } else { "#7a8591" };
        let (x1, y1) = (pos[a].0 + node_w, pos[a].1 + node_h / 2.0);
        let (x2, y2) = if a == b {
            (pos[b].0 + node_w - 20.0, pos[b].1 + node_h)
        } else {
            (pos[b].0, pos[b].1 + node_h / 2.0)
        };
        let target = &nodes[b];
        let href = if s(target, "kind") == "external" {
            format!(
                "/?type=dependency&role={}&q={}",
                url_encode(s(&nodes[a], "name")),
                url_encode(s(target, "name"))
            )
        } else {
            format!(
                "/?type=dependency&role={}",
                url_encode(s(&nodes[a], "name"))
            )
        };
        let label = format!(
            "{calls} call{} · {:.0}% failed · {}",
            if calls == 1 { "" } else { "s" },
            rate * 100.0,
            format_duration(e["mean_duration_ms"].as_f64().unwrap_or(f64::NAN))
        );
        let _ = write!(
            svg,
            "<a href=\"{}\"><line x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" stroke=\"{colour}\" \
             stroke-width=\"2\" marker-end=\"url(#arrow)\"/><text x=\"{:.0}\" y=\"{:.0}\" font-size=\"11\" \
             text-anchor=\"middle\" fill=\"{colour}\">{}</text></a>",
            escape(&href),
            (x1 + x2) / 2.0,
            (y1 + y2) / 2.0 - 6.0,
            escape(&label)
        );
    }
    for (n, node) in nodes.iter().enumerate() {
        let (x, y) = pos[n];
        let external = s(node, "kind") == "external";
        let failed = node["failed_requests"].as_i64().unwrap_or(0) > 0;
        let stroke = if failed {
            "#c62828"
        } else if external {
            "#6a1b9a"
        } else {
            "#1565c0"
        };
        let name = s(node, "name");
        let shown: String = if name.chars().count() > 20 {
            format!("{}…", name.chars().take(19).collect::<String>())
        } else {
            name.to_owned()
        };
        let sub = if external {
            "external".to_owned()
        } else {
            format!(
                "{} req · {} failed",
                node["requests"].as_i64().unwrap_or(0),
                node["failed_requests"].as_i64().unwrap_or(0)
            )
        };
        let href = if external {
            format!("/?type=dependency&q={}", url_encode(name))
        } else {
            format!("/?role={}", url_encode(name))
        };
        let _ = write!(
            svg,
            "<a href=\"{}\"><title>{}</title><rect x=\"{x}\" y=\"{y}\" width=\"{node_w}\" height=\"{node_h}\" rx=\"6\" \
             fill=\"#fff\" stroke=\"{stroke}\" stroke-width=\"2\"{}/>\
             <text x=\"{:.0}\" y=\"{:.0}\" font-size=\"13\" font-weight=\"600\" text-anchor=\"middle\" fill=\"#1b1f24\">{}</text>\
             <text x=\"{:.0}\" y=\"{:.0}\" font-size=\"11\" text-anchor=\"middle\" fill=\"{}\">{}</text></a>",
            escape(&href),
            escape(name),
            if external { " stroke-dasharray=\"5 3\"" } else { "" },
            x + node_w / 2.0,
            y + 22.0,
            escape(&shown),
            x + node_w / 2.0,
            y + 40.0,
            if failed { "#c62828" } else { "#5b6470" },
            escape(&sub),
        );
    }
    svg.push_str("</svg>");
    body.push_str(&svg);
    body.push_str(
        "<h2>Nodes</h2><table><thead><tr><th>Node</th><th>Kind</th><th class=\"num\">Requests</th>\
         <th class=\"num\">Failed</th><th class=\"num\">Mean duration</th></tr></thead><tbody>",
    );
    for node in nodes {
        let external = s(node, "kind") == "external";
        let failed = node["failed_requests"].as_i64().unwrap_or(0);
        let _ = write!(
            body,
            "<tr><td class=\"name\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num{}\">{}</td><td class=\"num\">{}</td></tr>",
            escape(s(node, "name")),
            if external { "external" } else { "role" },
            if external { String::new() } else { node["requests"].as_i64().unwrap_or(0).to_string() },
            if failed > 0 { " fail" } else { "" },
            if external { String::new() } else { failed.to_string() },
            node["mean_duration_ms"].as_f64().map(format_duration).unwrap_or_default(),
        );
    }
    body.push_str(
        "</tbody></table><h2>Calls</h2><table><thead><tr><th>From</th><th>To</th>\
         <th class=\"num\">Calls</th><th class=\"num\">Failed</th><th class=\"num\">Failure rate</th>\
         <th class=\"num\">Mean duration</th></tr></thead><tbody>",
    );
    let name_of = |id: &str| {
        index
            .get(id)
            .map(|&n| s(&nodes[n], "name").to_owned())
            .unwrap_or_else(|| id.to_owned())
    };
    for e in edges {
        let calls = e["calls"].as_i64().unwrap_or(0);
        let failures = e["failures"].as_i64().unwrap_or(0);
        let from = name_of(s(e, "source"));
        let to = name_of(s(e, "target"));
        let external = s(e, "target").starts_with("external:");
        let href = if external {
            format!(
                "/?type=dependency&role={}&q={}",
                url_encode(&from),
                url_encode(&to)
            )
        } else {
            format!("/?type=dependency&role={}", url_encode(&from))
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"name\"><a href=\"{}\">{}</a></td><td class=\"num\">{calls}</td>\
             <td class=\"num{}\">{failures}</td><td class=\"num{}\">{:.1}%</td><td class=\"num\">{}</td></tr>",
            escape(&from),
            escape(&href),
            escape(&to),
            if failures > 0 { " fail" } else { "" },
            if failures > 0 { " fail" } else { "" },
            if calls > 0 { failures as f64 * 100.0 / calls as f64 } else { 0.0 },
            e["mean_duration_ms"].as_f64().map(format_duration).unwrap_or_default(),
        );
    }
    body.push_str("</tbody></table>");
    Ok(layout("Map", "/map", &body))
}

fn failures(state: &State) -> PageResult {
    let failures = {
        let store = state.store.lock().unwrap_or_else(|p| p.into_inner());
        store.failures().map_err(db)?
    };
    let empty = Vec::new();
    let mut body = String::from("<h1>Failures</h1>");
    for (key, heading, item_type) in [
        ("requests", "Failed requests", "request"),
        ("dependencies", "Failed dependencies", "dependency"),
        ("exceptions", "Exceptions", "exception"),
    ] {
        let groups = failures[key].as_array().unwrap_or(&empty);
        let _ = write!(body, "<h2>{heading}</h2>");
        if groups.is_empty() {
            body.push_str("<p class=\"empty\">None.</p>");
            continue;
        }
        let is_exc = item_type == "exception";
        let _ = write!(
            body,
            "<table><thead><tr><th>{}</th>{}<th class=\"num\">Count</th><th>Sample</th></tr></thead><tbody>",
            if is_exc { "Exception type" } else { "Operation" },
            if is_exc { "" } else { "<th class=\"num\">Result code</th>" },
        );
        for g in groups {
            let name = if is_exc { s(g, "type") } else { s(g, "name") };
            let mut href = format!("/?type={item_type}&q={}", url_encode(name));
            if !is_exc && !s(g, "result_code").is_empty() {
                let _ = write!(href, "&result_code={}", url_encode(s(g, "result_code")));
            }
            let sample = s(g, "sample_operation_id");
            let _ = write!(
                body,
                "<tr><td class=\"name\"><a href=\"{}\">{}</a></td>{}<td class=\"num\">{}</td><td>{}</td></tr>",
                escape(&href),
                if name.is_empty() { "(no name)".into() } else { escape(name) },
                if is_exc {
                    String::new()
                } else {
                    format!("<td class=\"num fail\">{}</td>", escape(s(g, "result_code")))
                },
                g["count"].as_i64().unwrap_or(0),
                if sample.is_empty() {
                    String::new()
                } else {
                    format!(
                        "<a href=\"/operations/{}\">{}</a>",
                        url_encode(sample),
                        escape(sample)
                    )
                },
            );
        }
        body.push_str("</tbody></table>");
    }
    Ok(layout("Failures", "/failures", &body))
}

/// How many rejected items the page lists (newest first).
const REJECTIONS_SHOWN: usize = 200;

/// The items the ingestion endpoint refused, newest first: when, the
/// status and reason it answered, and the item as sent (cut when stored).
fn rejections(state: &State) -> PageResult {
    let rejections = {
        let store = state.store.lock().unwrap_or_else(|p| p.into_inner());
        store.rejections(REJECTIONS_SHOWN).map_err(db)?
    };
    let empty = Vec::new();
    let list = rejections["rejections"].as_array().unwrap_or(&empty);
    let mut body = String::from(
        "<h1>Rejected items</h1><p class=\"note\">Items the ingestion endpoint refused, \
         as the service would, with its status and reason (newest first).</p>",
    );
    if list.is_empty() {
        body.push_str("<p class=\"empty\">None: every item sent was accepted.</p>");
        return Ok(layout("Rejected items", "/rejections", &body));
    }
    body.push_str(
        "<table><thead><tr><th>Received (UTC)</th><th class=\"num\">Index</th>\
         <th class=\"num\">Status</th><th>Reason</th><th>Item</th></tr></thead><tbody>",
    );
    for r in list {
        let index = r["index"]
            .as_i64()
            .map_or_else(|| "body".to_owned(), |i| i.to_string());
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num fail\">{}</td>\
             <td class=\"name\">{}</td><td><details><summary>item</summary><pre>{}</pre></details></td></tr>",
            escape(&format_time(s(r, "received_at"))),
            escape(&index),
            r["status"].as_i64().unwrap_or(0),
            escape(s(r, "message")),
            escape(s(r, "item")),
        );
    }
    body.push_str("</tbody></table>");
    Ok(layout("Rejected items", "/rejections", &body))
}

fn performance(state: &State) -> PageResult {
    let perf = {
        let store = state.store.lock().unwrap_or_else(|p| p.into_inner());
        store.performance().map_err(db)?
    };
    let empty = Vec::new();
    let ops = perf["operations"].as_array().unwrap_or(&empty);
    let mut body = String::from("<h1>Performance</h1>");
    if ops.is_empty() {
        body.push_str("<p class=\"empty\">No request has arrived yet.</p>");
        return Ok(layout("Performance", "/performance", &body));
    }
    body.push_str(
        "<table><thead><tr><th>Role</th><th>Operation</th><th class=\"num\">Count</th>\
         <th class=\"num\">Mean</th><th class=\"num\">p50</th><th class=\"num\">p95</th>\
         <th class=\"num\">p99</th></tr></thead><tbody>",
    );
    for op in ops {
        let d = |k: &str| op[k].as_f64().map(format_duration).unwrap_or_default();
        let name = s(op, "name");
        let href = format!(
            "/?type=request&role={}&q={}",
            url_encode(s(op, "role")),
            url_encode(name)
        );
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"name\"><a href=\"{}\">{}</a></td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(s(op, "role")),
            escape(&href),
            if name.is_empty() { "(no name)".into() } else { escape(name) },
            op["count"].as_i64().unwrap_or(0),
            d("mean_ms"),
            d("p50_ms"),
            d("p95_ms"),
            d("p99_ms"),
        );
    }
    body.push_str("</tbody></table>");
    Ok(layout("Performance", "/performance", &body))
}

const LIVE_SCRIPT: &str = r##"
const charts = [
  ["requests", "Incoming requests /s", [["requests_per_sec", "#1565c0", "requests"], ["failed_requests_per_sec", "#c62828", "failed"]], "rate"],
  ["request_duration", "Request duration", [["request_duration_ms", "#1565c0", "mean"]], "ms"],
  ["dependencies", "Dependency calls /s", [["dependency_calls_per_sec", "#6a1b9a", "calls"], ["failed_dependency_calls_per_sec", "#c62828", "failed"]], "rate"],
  ["dependency_duration", "Dependency duration", [["dependency_duration_ms", "#6a1b9a", "mean"]], "ms"],
  ["exceptions", "Exceptions /s", [["exceptions_per_sec", "#c62828", "exceptions"]], "rate"],
];
function fmt(v, unit) {
  if (unit === "rate") return (Math.round(v * 10) / 10).toString();
  if (v === 0) return "0 ms";
  if (v < 1) return v.toFixed(2) + " ms";
  if (v < 100) return v.toFixed(1) + " ms";
  if (v < 1000) return v.toFixed(0) + " ms";
  return (v / 1000).toFixed(2) + " s";
}
const grid = document.getElementById("charts");
for (const [id, title, series, unit] of charts) {
  const div = document.createElement("div");
  div.className = "chart";
  div.innerHTML = '<h3><span>' + title + '</span><span class="now" id="now-' + id + '">0</span></h3>' +
    '<svg id="svg-' + id + '" width="100%" height="120" viewBox="0 0 600 120" preserveAspectRatio="none"></svg>' +
    '<div class="axis"><span>60 s ago</span><span id="max-' + id + '"></span><span>now</span></div>';
  grid.appendChild(div);
}
function duration(iso) {
  const m = /^P(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$/.exec(iso || "");
  if (!m) return iso || "";
  const ms = ((+(m[1] || 0)) * 3600 + (+(m[2] || 0)) * 60 + (+(m[3] || 0))) * 1000;
  return fmt(ms, "ms");
}
function latest(seconds) {
  for (let i = seconds.length - 1; i >= Math.max(0, seconds.length - 3); i--) {
    if (seconds[i].posts > 0) return seconds[i];
  }
  return null;
}
function draw(data) {
  let seconds = data.seconds;
  // The current second, until its post arrives, is not a drop to zero.
  if (seconds.length > 2 && seconds[seconds.length - 1].posts === 0) seconds = seconds.slice(0, -1);
  const last = latest(seconds);
  for (const [id, title, series, unit] of charts) {
    let max = 0;
    for (const s of seconds) for (const [k] of series) max = Math.max(max, s[k]);
    const top = max;
    max = max > 0 ? max * 1.15 : 1;
    let out = '<line x1="0" y1="119" x2="600" y2="119" stroke="#d8dde3"/>';
    for (const [k, colour] of series) {
      const pts = seconds.map((s, i) => (i * 600 / (seconds.length - 1)).toFixed(1) + "," + (118 - s[k] / max * 110).toFixed(1)).join(" ");
      out += '<polyline fill="none" stroke="' + colour + '" stroke-width="2" points="' + pts + '"/>';
    }
    document.getElementById("svg-" + id).innerHTML = out;
    document.getElementById("max-" + id).textContent = "max " + fmt(top, unit);
    const now = document.getElementById("now-" + id);
    now.textContent = series.map(([k, c, label]) => label + " " + fmt(last ? last[k] : 0, unit)).join(" · ");
  }
  document.getElementById("request-rate").textContent = fmt(last ? last.requests_per_sec : 0, "rate");
  const st = document.getElementById("streams");
  st.textContent = data.streams.length === 0 ? "No server is posting yet (exporters ping every second and start within a second or two)." :
    data.streams.map(s => s.role + " / " + s.instance).join(", ");
  const tbody = document.getElementById("docs");
  tbody.replaceChildren();
  for (const d of data.documents.slice(0, 50)) {
    const doc = d.document;
    const type = doc.DocumentType || "";
    const name = doc.Name || doc.Message || ((doc.ExceptionType || "") + (doc.ExceptionMessage ? ": " + doc.ExceptionMessage : ""));
    const code = doc.ResponseCode || doc.ResultCode || "";
    const tr = document.createElement("tr");
    const cells = [d.time.slice(11, 23), type, d.role, name, code, duration(doc.Duration)];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 0) td.className = "time";
      if (i === 3) td.className = "name";
      if (i >= 4) td.className = "num";
      if (type === "Exception" || (i === 4 && /^[45]/.test(code))) td.classList.add("fail");
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
  }
  document.getElementById("status").textContent = data.watching ? "connected" : "waiting";
}
async function tick() {
  try {
    const r = await fetch("/api/live", {cache: "no-store"});
    if (r.ok) draw(await r.json());
  } catch (e) {
    document.getElementById("status").textContent = "viewer unreachable";
  }
}
tick();
setInterval(tick, 1000);
"##;

fn live() -> String {
    let body = format!(
        "<h1>Live Metrics <span class=\"pill\" id=\"status\">waiting</span></h1>\
         <div class=\"summary\"><div>Incoming requests /s<b id=\"request-rate\">0</b></div>\
         <div>Servers<b id=\"streams\" style=\"font-weight:400;font-size:13px\">–</b></div></div>\
         <p class=\"muted\">While this page is open, exporters are told someone is watching and post \
         once a second; the last 60 seconds are drawn at 1 s resolution (UTC).</p>\
         <div class=\"charts\" id=\"charts\"></div>\
         <h2>Sample telemetry</h2><table><thead><tr><th>Time (UTC)</th><th>Type</th><th>Role</th>\
         <th>Name</th><th class=\"num\">Result</th><th class=\"num\">Duration</th></tr></thead>\
         <tbody id=\"docs\"></tbody></table><script>{LIVE_SCRIPT}</script>"
    );
    layout("Live Metrics", "/live", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_formats() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(url_encode("GET /a?b=c&d"), "GET%20%2Fa%3Fb%3Dc%26d");
        assert_eq!(format_duration(0.42), "0.42 ms");
        assert_eq!(format_duration(12.34), "12.3 ms");
        assert_eq!(format_duration(250.0), "250 ms");
        assert_eq!(format_duration(1420.0), "1.42 s");
        assert_eq!(format_duration(125_000.0), "2 min 5 s");
        assert_eq!(format_duration(f64::NAN), "–");
        assert_eq!(
            format_time("2026-12-04T21:16:01.1234567Z"),
            "2026-12-04 21:16:01.123"
        );
        assert_eq!(format_time("garbage"), "garbage");
    }
}
