//! The JSON query API under `/api/` (see `README.md`).

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde_json::json;

use crate::store::ItemFilter;
use crate::{json_response, validate, State};

/// The default and the largest `limit` of `/api/items` and `/api/rejections`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Answers `GET /{path}?{query}` (path without its leading `/`).
pub(crate) fn answer(path: &str, query: &str, state: &State) -> Response<Full<Bytes>> {
    let params = parse_query(query);
    let get = |key: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let limit = match get("limit").map(|l| l.parse::<usize>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(l)) => l.clamp(1, MAX_LIMIT),
        Some(Err(_)) => return bad_request("limit must be a positive integer"),
    };
    let store = state.store.lock().unwrap_or_else(|p| p.into_inner());
    let result = match path.trim_end_matches('/') {
        "api/items" => {
            let time = |key: &str| match get(key) {
                None => Ok(None),
                Some(t) => validate::parse_time(&t).map(Some).ok_or_else(|| {
                    format!("{key} must be an ISO 8601 time such as 2026-01-02T03:04:05Z")
                }),
            };
            let (from, to) = match (time("from"), time("to")) {
                (Ok(from), Ok(to)) => (from, to),
                (Err(e), _) | (_, Err(e)) => return bad_request(&e),
            };
            let filter = ItemFilter {
                item_type: get("type"),
                role: get("role"),
                operation_id: get("operation_id"),
                q: get("q"),
                result_code: get("result_code"),
                from,
                to,
                limit,
            };
            store.items(&filter).map(|items| json!({ "items": items }))
        }
        "api/map" => store.map(),
        "api/failures" => store.failures(),
        "api/performance" => store.performance(),
        "api/rejections" => store.rejections(limit),
        p => match p.strip_prefix("api/operations/") {
            Some(id) if !id.is_empty() && !id.contains('/') => {
                let id = percent_decode(id);
                match store.operation(&id) {
                    Ok(items) if items.is_empty() => {
                        return json_response(
                            404,
                            &json!({ "error": "no item of this operation", "operation_id": id }),
                        )
                    }
                    r => r.map(|items| json!({ "operation_id": id, "items": items })),
                }
            }
            _ => return json_response(404, &json!({ "error": "not found" })),
        },
    };
    match result {
        Ok(body) => json_response(200, &body),
        Err(e) => json_response(500, &json!({ "error": e })),
    }
}

fn bad_request(message: &str) -> Response<Full<Bytes>> {
    json_response(400, &json!({ "error": message }))
}

/// `a=1&b=x%20y` as decoded pairs (`+` is a space).
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied(), b.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                let byte = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(u8::try_from(byte).unwrap_or(b'?'));
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        assert_eq!(
            parse_query("q=GET+%2Fa&type=request&x&bad=%zz%"),
            [
                ("q".into(), "GET /a".into()),
                ("type".into(), "request".into()),
                ("x".into(), String::new()),
                ("bad".into(), "%zz%".into()),
            ]
        );
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
    }
}
