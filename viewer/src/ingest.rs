//! `POST /v2.1/track` and `/v2/track`: the body read under a size bound,
//! gunzipped under the same bound, split into items (a JSON array or
//! newline-delimited objects), each item checked, and the service's
//! `TrackResponse` built.

use std::io::Read;

use serde_json::{json, Value};

use crate::store::{NewItem, NewRejection, MAX_REJECTED_ITEM_BYTES};
use crate::validate;

/// The most items the service takes in one batch.
pub const MAX_ITEMS_PER_BATCH: usize = 64_000;

/// The most rejections of one request that are stored (all are answered).
pub const MAX_STORED_REJECTIONS_PER_REQUEST: usize = 100;

/// What one posted body comes to.
pub struct Outcome {
    /// The HTTP status to answer.
    pub status: u16,
    /// The `TrackResponse` body.
    pub body: Value,
    /// The items to store.
    pub accepted: Vec<NewItem>,
    /// The refusals to store.
    pub rejections: Vec<NewRejection>,
}

/// A whole body refused with `status` and `message`.
pub fn refuse_body(status: u16, message: &str, body: &[u8]) -> Outcome {
    Outcome {
        status,
        body: json!({
            "itemsReceived": 0,
            "itemsAccepted": 0,
            "errors": [{ "index": 0, "statusCode": status, "message": message }],
        }),
        accepted: Vec::new(),
        rejections: vec![NewRejection {
            index: None,
            status,
            message: message.to_owned(),
            item: cut_bytes(body),
        }],
    }
}

/// Gunzips `body` when `gzip`, refusing more than `max` bytes out.
pub fn decode(body: Vec<u8>, gzip: bool, max: usize) -> Result<Vec<u8>, Outcome> {
    if !gzip {
        return Ok(body);
    }
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    match flate2::read::MultiGzDecoder::new(&body[..])
        .take(limit)
        .read_to_end(&mut out)
    {
        Ok(_) if out.len() > max => Err(refuse_body(
            413,
            &format!("The decompressed body is larger than the limit of {max} bytes"),
            b"",
        )),
        Ok(_) => Ok(out),
        Err(e) => Err(refuse_body(
            400,
            &format!("The body could not be decompressed (Content-Encoding: gzip): {e}"),
            &body,
        )),
    }
}

/// Splits a decoded body into items and checks each.
pub fn ingest(body: &[u8]) -> Outcome {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(_) => return refuse_body(400, "The body is not valid UTF-8", body),
    };
    let trimmed = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    // Each entry: the item, or the raw text of a line that is not JSON.
    let entries: Vec<Result<Value, &str>> = if trimmed.starts_with('[') {
        match serde_json::from_str::<Vec<Value>>(trimmed) {
            Ok(items) => items.into_iter().map(Ok).collect(),
            Err(e) => return refuse_body(400, &format!("Invalid JSON: {e}"), body),
        }
    } else {
        let lines: Vec<&str> = trimmed
            .split('\n')
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.trim().is_empty())
            .collect();
        if lines.len() > MAX_ITEMS_PER_BATCH {
            return too_many(lines.len(), body);
        }
        let entries: Vec<Result<Value, &str>> = lines
            .into_iter()
            .map(|l| serde_json::from_str::<Value>(l).map_err(|_| l))
            .collect();
        if !entries.iter().any(Result::is_ok) {
            return refuse_body(
                400,
                "Invalid JSON: the body is neither a JSON array nor newline-delimited JSON objects",
                body,
            );
        }
        entries
    };
    if entries.len() > MAX_ITEMS_PER_BATCH {
        return too_many(entries.len(), body);
    }
    let received = entries.len();
    let mut errors = Vec::new();
    let mut accepted = Vec::new();
    let mut rejections = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let refusal = match entry {
            Err(line) => Some((
                "Invalid JSON: the line is not a JSON value".to_owned(),
                cut_bytes(line.as_bytes()),
            )),
            Ok(value) => match validate::check(&value) {
                Ok(item_type) => match NewItem::new(value, item_type) {
                    Some(item) => {
                        accepted.push(item);
                        None
                    }
                    None => Some((
                        "Field 'time' on type 'Envelope' is not a valid date-time".to_owned(),
                        String::new(),
                    )),
                },
                Err(message) => {
                    let raw = serde_json::to_string(&value).unwrap_or_default();
                    Some((message, cut_bytes(raw.as_bytes())))
                }
            },
        };
        if let Some((message, item)) = refusal {
            errors.push(json!({ "index": index, "statusCode": 400, "message": message }));
            if rejections.len() < MAX_STORED_REJECTIONS_PER_REQUEST {
                rejections.push(NewRejection {
                    index: Some(index),
                    status: 400,
                    message,
                    item,
                });
            }
        }
    }
    let status = if errors.is_empty() {
        200
    } else if accepted.is_empty() {
        400
    } else {
        206
    };
    Outcome {
        status,
        body: json!({
            "itemsReceived": received,
            "itemsAccepted": accepted.len(),
            "errors": errors,
        }),
        accepted,
        rejections,
    }
}

fn too_many(n: usize, body: &[u8]) -> Outcome {
    refuse_body(
        400,
        &format!(
            "Too many items in one batch. Expected: at most {MAX_ITEMS_PER_BATCH}. Actual: {n}"
        ),
        body,
    )
}

/// At most [`MAX_REJECTED_ITEM_BYTES`] of `raw`, as text cut on a
/// character boundary (invalid UTF-8 replaced).
pub fn cut_bytes(raw: &[u8]) -> String {
    let head = &raw[..raw.len().min(MAX_REJECTED_ITEM_BYTES)];
    let text = String::from_utf8_lossy(head);
    let mut end = text.len().min(MAX_REJECTED_ITEM_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
