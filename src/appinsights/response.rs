//! What an answer of the ingestion service means for its batch
//! ([`classify`]): accepted, partly accepted, retried (after how long:
//! [`parse_retry_after`]), redirected or dropped.
//!
//! Everything here is pure: time comes in as an argument, so the table
//! tests below pin every decision down. The codes are those the Python
//! exporters act on, less their mistakes (a 206 whose items are all
//! accepted is not retried, a 401 or 403 is retried rather than dropped,
//! `Retry-After` is honoured in both of its forms):
//!
//! | answer | outcome |
//! |---|---|
//! | 200 | accepted (with per-item `errors`: as 206) |
//! | 206 | partial: resend only the items whose per-item status is retryable |
//! | 401, 403, 408, 429, 500, 502, 503, 504, timeout, connection error | retry the whole batch, after `Retry-After` when given (with a credential, a 401 also drops the refused token, and the first in a row is retried at once; a 403 pauses sending, see [`Health`](super::retry::Health)) |
//! | no token: the credential failed | retry the whole batch, like a connection error |
//! | 402, 439 (daily quota, throttled over a long time) | retry the whole batch; the endpoint is left alone until `Retry-After` or [`QUOTA_PROBE_INTERVAL`](super::retry::QUOTA_PROBE_INTERVAL) |
//! | 307, 308 | redirect to the `Location` host, at most [`MAX_REDIRECTS`](super::retry::MAX_REDIRECTS) in a row (a `Location` with user information is refused: retried where it was sent) |
//! | 400, 404, 413, anything else | drop, counted |

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use bytes::Bytes;

/// What became of one POST. The transport does not judge it: [`classify`] does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SendOutcome {
    /// The service answered, with any status.
    Response {
        /// The HTTP status code.
        status: u16,
        /// The `Retry-After` header, as sent (seconds or an HTTP date).
        retry_after: Option<String>,
        /// The `Location` header (for 307/308), as sent.
        location: Option<String>,
        /// The response body, empty when it could not be read or was over
        /// 1 MiB.
        body: Bytes,
    },
    /// `request_timeout` passed before the response was read.
    Timeout,
    /// No answer: connection refused or reset, DNS or TLS failure, TCP
    /// connect timeout, and the like (a short description).
    Connect(String),
    /// Not sent: the credential gave no token (why, without secrets).
    #[cfg_attr(not(feature = "entra"), allow(dead_code))]
    Credential(String),
}

/// Statuses retried as a whole batch, and per item in a partial answer.
pub(crate) const RETRYABLE: [u16; 8] = [401, 403, 408, 429, 500, 502, 503, 504];

/// The longest `Retry-After` honoured; a longer one is cut to this (a
/// misconfigured proxy must not park telemetry for days).
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// Whether a status is retryable.
pub(crate) fn is_retryable(status: u16) -> bool {
    RETRYABLE.contains(&status)
}

/// What one send's result means for its batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every item was accepted.
    Accepted,
    /// Some items were accepted; `retry` (ascending item indices) are to be
    /// resent, `rejected` items are dropped.
    Partial {
        /// The items to resend, by index in the posted array.
        retry: Vec<usize>,
        /// How many items the service refused for good.
        rejected: usize,
        /// The first per-item error, for the diagnostic.
        first_error: Option<(u16, String)>,
    },
    /// Resend the whole batch, not before `after` when the service said so.
    RetryAll {
        /// The service's `Retry-After`, capped at [`MAX_RETRY_AFTER`].
        after: Option<Duration>,
        /// Why, for diagnostics and [`Health`].
        reason: RetryReason,
    },
    /// Give the batch up, counted as rejected by the service.
    Drop(DropReason),
    /// Send the batch again to another endpoint (`scheme://host[:port]`).
    Redirect {
        /// The new endpoint, without path: the `Location`'s scheme and host.
        endpoint: String,
    },
}

/// Why a batch is retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RetryReason {
    /// A retryable status; 429 (and any status with `Retry-After`) is a
    /// throttle.
    Status(u16),
    /// No answer within the request timeout.
    Timeout,
    /// No answer at all: refused, reset, DNS or TLS failure.
    Connect(String),
    /// Not sent: the credential gave no token (why, without secrets).
    Credential(String),
    /// The resource's daily cap (402) or long-term throttling (439), with
    /// the service's message: nothing is sent until the pause ends.
    Quota(u16, String),
    /// A redirect that is not followed (to plain `http` from `https`, or
    /// a `Location` with user information): why, without secrets.
    RefusedRedirect(String),
}

/// Why a batch is dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// A status that is not retryable (400, 402, 404, 413, 439, …), with
    /// the service's message.
    Status(u16, String),
    /// A 206 whose body names no items: which ones were accepted is
    /// unknown, and resending all would duplicate the accepted ones.
    UnreadablePartial,
    /// A 307/308 without a usable `Location`.
    BadRedirect(String),
}

/// Classifies one send's result. `items` is the number of items posted;
/// `now` resolves a `Retry-After` given as an HTTP date.
pub(crate) fn classify(outcome: &SendOutcome, items: usize, now: SystemTime) -> Outcome {
    match outcome {
        SendOutcome::Timeout => Outcome::RetryAll {
            after: None,
            reason: RetryReason::Timeout,
        },
        SendOutcome::Connect(error) => Outcome::RetryAll {
            after: None,
            reason: RetryReason::Connect(error.clone()),
        },
        SendOutcome::Credential(error) => Outcome::RetryAll {
            after: None,
            reason: RetryReason::Credential(error.clone()),
        },
        SendOutcome::Response {
            status,
            retry_after,
            location,
            body,
        } => classify_response(
            *status,
            retry_after.as_deref(),
            location.as_deref(),
            body,
            items,
            now,
        ),
    }
}

/// Classifies an answer: status, `Retry-After` and `Location` headers, body.
pub(crate) fn classify_response(
    status: u16,
    retry_after: Option<&str>,
    location: Option<&str>,
    body: &[u8],
    items: usize,
    now: SystemTime,
) -> Outcome {
    match status {
        200 => match parse_track_response(body) {
            Some(response) if !response.errors.is_empty() => partial(&response.errors, items),
            // Without per-item errors (or a readable body) a 200 took all.
            _ => Outcome::Accepted,
        },
        206 => match parse_track_response(body) {
            Some(response) if !response.errors.is_empty() => partial(&response.errors, items),
            _ => Outcome::Drop(DropReason::UnreadablePartial),
        },
        307 | 308 => match location.map(redirect_endpoint) {
            Some(Ok(endpoint)) => Outcome::Redirect { endpoint },
            Some(Err(Refused::UserInfo(host))) => Outcome::RetryAll {
                after: None,
                reason: RetryReason::RefusedRedirect(format!(
                    "a Location with user information (host {host})"
                )),
            },
            Some(Err(Refused::Unusable)) | None => Outcome::Drop(DropReason::BadRedirect(
                location
                    .map(|l| l.split('@').next_back().unwrap_or_default())
                    .unwrap_or("no Location header")
                    .chars()
                    .take(256)
                    .collect(),
            )),
        },
        402 | 439 => Outcome::RetryAll {
            after: retry_after.and_then(|v| parse_retry_after(v, now)),
            reason: RetryReason::Quota(status, service_message(body)),
        },
        s if is_retryable(s) => Outcome::RetryAll {
            after: retry_after.and_then(|v| parse_retry_after(v, now)),
            reason: RetryReason::Status(s),
        },
        s => Outcome::Drop(DropReason::Status(s, service_message(body))),
    }
}

/// The outcome of a partial answer: its retryable per-item errors are
/// resent, the other errors dropped, the items it does not name accepted.
fn partial(errors: &[TrackError], items: usize) -> Outcome {
    let mut retry = Vec::new();
    let mut seen = vec![false; items];
    let mut rejected = 0;
    for error in errors {
        // An index out of range names nothing we sent; one named twice
        // counts once.
        let Some(slot) = seen.get_mut(error.index) else {
            continue;
        };
        if std::mem::replace(slot, true) {
            continue;
        }
        if is_retryable(error.status_code) {
            retry.push(error.index);
        } else {
            rejected += 1;
        }
    }
    retry.sort_unstable();
    let first_error = errors.iter().find(|e| e.index < items).map(|e| {
        (
            e.status_code,
            crate::record::text::truncate_str(&e.message, 256).to_owned(),
        )
    });
    if retry.is_empty() && rejected == 0 {
        return Outcome::Accepted;
    }
    Outcome::Partial {
        retry,
        rejected,
        first_error,
    }
}

/// The service's own words from an error body (`errors[0].message`), or
/// the start of the body, bounded.
pub(crate) fn service_message(body: &[u8]) -> String {
    if let Some(message) = parse_track_response(body)
        .and_then(|r| r.errors.into_iter().next())
        .map(|e| e.message)
    {
        return crate::record::text::truncate_str(&message, 256).to_owned();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(256)]);
    text.trim().to_owned()
}

/// Why a `Location` is not followed.
enum Refused {
    /// It names user information (`user:password@host`): the host, for
    /// the diagnostic, without it.
    UserInfo(String),
    /// Not an absolute `http(s)` URL with a host.
    Unusable,
}

/// `scheme://host[:port]` of an absolute `http(s)` `Location`; the path is
/// discarded, as the Python exporters do (the track path is ours to add).
fn redirect_endpoint(location: &str) -> Result<String, Refused> {
    let uri: http::Uri = location.trim().parse().map_err(|_| Refused::Unusable)?;
    let scheme = uri
        .scheme_str()
        .ok_or(Refused::Unusable)?
        .to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(Refused::Unusable);
    }
    let authority = uri.authority().ok_or(Refused::Unusable)?;
    if authority.host().is_empty() {
        return Err(Refused::Unusable);
    }
    if authority.as_str().contains('@') {
        return Err(Refused::UserInfo(authority.host().to_owned()));
    }
    Ok(format!("{scheme}://{authority}"))
}

// === Retry-After ===

/// A `Retry-After` value as a delay from `now`: delta-seconds or an HTTP
/// date (IMF-fixdate, and the obsolete RFC 850 and asctime forms), capped
/// at [`MAX_RETRY_AFTER`]; a date in the past is zero. `None` when it is
/// neither.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is "very long": the cap applies.
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = crate::time::parse_http_date(value)?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

// === TrackResponse ===

/// The ingestion service's answer body (schema `TrackResponse`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct TrackResponse {
    /// Items the service received.
    pub(crate) items_received: u32,
    /// Items it accepted.
    pub(crate) items_accepted: u32,
    /// One entry per rejected item.
    pub(crate) errors: Vec<TrackError>,
}

/// One rejected item in a [`TrackResponse`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TrackError {
    /// The item's position in the posted array. Required: an entry without
    /// it cannot be attributed, so the body does not parse.
    pub(crate) index: usize,
    /// The per-item status (0 when missing).
    #[serde(default)]
    pub(crate) status_code: u16,
    /// Why the item was rejected.
    #[serde(default)]
    pub(crate) message: String,
}

/// Parses a response body; `None` if it is not a `TrackResponse` object.
pub(crate) fn parse_track_response(body: &[u8]) -> Option<TrackResponse> {
    // serde would also take a struct from a JSON array (`[]` is then all
    // defaults): only an object is a `TrackResponse`.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(body).ok()
}

#[cfg(test)]
mod tests;
