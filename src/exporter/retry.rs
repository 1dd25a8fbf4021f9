//! The retry policy: what an answer of the ingestion service means
//! ([`classify`]), how long to wait before the next attempt ([`Backoff`],
//! [`parse_retry_after`]), how many redirects to follow ([`Redirects`]),
//! and when the endpoint as a whole should be left alone ([`Health`]).
//!
//! Everything here is pure: time comes in as arguments, randomness as a
//! `u64`, so the table tests below pin every decision down.
//!
//! The code sets are design §6's (they are the Python exporters' less their
//! bugs; see the reference §c):
//!
//! | answer | outcome |
//! |---|---|
//! | 200 | accepted (with per-item `errors`: as 206) |
//! | 206 | partial: resend only the items whose per-item status is retryable |
//! | 401, 403, 408, 429, 500, 502, 503, 504, timeout, connection error | retry the whole batch, after `Retry-After` when given |
//! | 307, 308 | redirect to the `Location` host, at most [`MAX_REDIRECTS`] in a row |
//! | 400, 402, 404, 413, 439, anything else | drop, counted |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::transport::{parse_track_response, SendOutcome, TrackError};

/// Statuses retried as a whole batch, and per item in a partial answer.
pub(crate) const RETRYABLE: [u16; 8] = [401, 403, 408, 429, 500, 502, 503, 504];

/// At most this many redirects in a row; the answer that makes it this many
/// drops the batch (the Python exporters also stop after ten POSTs).
pub(crate) const MAX_REDIRECTS: u32 = 10;

/// The longest `Retry-After` honoured; a longer one is cut to this (a
/// misconfigured proxy must not park telemetry for days).
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// Whether a status is retryable (design §6).
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
        307 | 308 => match location.and_then(redirect_endpoint) {
            Some(endpoint) => Outcome::Redirect { endpoint },
            None => Outcome::Drop(DropReason::BadRedirect(
                location
                    .unwrap_or("no Location header")
                    .chars()
                    .take(256)
                    .collect(),
            )),
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
            crate::text::truncate_str(&e.message, 256).to_owned(),
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
        return crate::text::truncate_str(&message, 256).to_owned();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(256)]);
    text.trim().to_owned()
}

/// `scheme://host[:port]` of an absolute `http(s)` `Location`; the path is
/// discarded, as the Python exporters do (the track path is ours to add).
fn redirect_endpoint(location: &str) -> Option<String> {
    let uri: http::Uri = location.trim().parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = uri.authority()?;
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
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
        let at = parse_http_date(value)?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// An HTTP date (RFC 9110 §5.6.7) as a `SystemTime`.
pub(crate) fn parse_http_date(s: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = s.split_ascii_whitespace().collect();
    let (day, month, year, time) = match parts.as_slice() {
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        [wd, d, m, y, t, "GMT"] if wd.ends_with(',') => (*d, *m, parse_num(y)?, *t),
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        [wd, dmy, t, "GMT"] if wd.ends_with(',') => {
            let mut f = dmy.split('-');
            let (d, m, y) = (f.next()?, f.next()?, f.next()?);
            if f.next().is_some() || y.len() != 2 {
                return None;
            }
            // RFC 9110: a two-digit year more than 50 years ahead is in the
            // past century; this parser is used for the near future only.
            let y = parse_num(y)?;
            (d, m, if y < 70 { 2000 + y } else { 1900 + y }, *t)
        }
        // asctime: Sun Nov  6 08:49:37 1994
        [_wd, m, d, t, y] => (*d, *m, parse_num(y)?, *t),
        _ => return None,
    };
    let day = parse_num(day)?;
    let month = month_number(month)?;
    let mut hms = time.split(':');
    let (h, mi, sec) = (
        parse_num(hms.next()?)?,
        parse_num(hms.next()?)?,
        parse_num(hms.next()?)?,
    );
    if hms.next().is_some() || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    if year < 1970 {
        return None;
    }
    let days = days_from_civil(year as i64, month, day as u32);
    let secs = days as u64 * 86_400 + h * 3600 + mi * 60 + sec;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// A decimal number of at most 4 digits.
fn parse_num(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn month_number(m: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS.iter().position(|x| *x == m).map(|i| i as u32 + 1)
}

/// Howard Hinnant's `days_from_civil`: (y, m, d) to days since 1970-01-01.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// === backoff ===

/// Exponential backoff with full jitter (the delay before attempt `n + 1`
/// is uniform in `[0, min(cap, base * 2^(n-1))]`), and a bound on the total
/// time a batch is retried in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// The ceiling of the first delay.
    pub(crate) base: Duration,
    /// The ceiling of any one delay.
    pub(crate) cap: Duration,
    /// How long a batch is retried in memory, from its first attempt, before
    /// it goes to offline storage (or, without storage, is dropped).
    pub(crate) max_elapsed: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The ceiling of the delay after the `failures`-th failure in a row
    /// (1-based): `base * 2^(failures-1)`, at most `cap`.
    pub(crate) fn ceiling(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(30);
        self.base.saturating_mul(1 << shift).min(self.cap)
    }

    /// The delay after the `failures`-th failure in a row, drawn with full
    /// jitter from `random` (any 64 random bits).
    pub(crate) fn delay(&self, failures: u32, random: u64) -> Duration {
        let ceiling = self.ceiling(failures).as_nanos() as u64;
        // Multiply-shift maps the random bits onto [0, ceiling] uniformly
        // enough for jitter, without a division.
        let nanos = ((u128::from(random) * u128::from(ceiling + 1)) >> 64) as u64;
        Duration::from_nanos(nanos)
    }

    /// The wait before the next attempt: the service's `Retry-After` when it
    /// gave one (never earlier), else the jittered backoff.
    pub(crate) fn next_delay(
        &self,
        failures: u32,
        after: Option<Duration>,
        random: u64,
    ) -> Duration {
        match after {
            Some(after) => after,
            None => self.delay(failures, random),
        }
    }
}

// === redirects ===

/// Counts redirects in a row; any other answer resets the count.
#[derive(Debug, Default)]
pub(crate) struct Redirects {
    in_a_row: u32,
}

impl Redirects {
    /// A redirect arrived: `true` to follow it, `false` when it is the
    /// [`MAX_REDIRECTS`]-th in a row and the batch is to be dropped (the
    /// count then starts again).
    pub(crate) fn follow(&mut self) -> bool {
        self.in_a_row += 1;
        if self.in_a_row >= MAX_REDIRECTS {
            self.in_a_row = 0;
            return false;
        }
        true
    }

    /// Any answer but a redirect.
    pub(crate) fn reset(&mut self) {
        self.in_a_row = 0;
    }
}

// === endpoint health ===

/// After this many throttling answers in a row (429, or any retryable
/// answer with `Retry-After`), nothing is sent until the delay has passed.
pub(crate) const THROTTLES_BEFORE_PAUSE: u32 = 2;

/// After this many retryable failures in a row of any kind, nothing is sent
/// for a backoff delay. A connection error or a timeout pauses at once: the
/// endpoint is unreachable, and each new batch would only confirm it.
pub(crate) const FAILURES_BEFORE_PAUSE: u32 = 4;

/// Whether the endpoint may be sent to now, from the answers so far.
///
/// One failing batch waits on its own backoff while others go on (one 429
/// or 503 among successes says little about the endpoint). Failures in a
/// row say the endpoint is throttling or down: then nothing at all is sent
/// before the pause ends, and only one request at a time until a success.
#[derive(Debug, Default)]
pub(crate) struct Health {
    failures_in_row: u32,
    throttles_in_row: u32,
    /// No request before this.
    paused_until: Option<std::time::Instant>,
    /// A pause happened since the last success: probe with one request.
    probing: bool,
}

impl Health {
    /// A 2xx answer (or any answer that is not a retryable failure: the
    /// endpoint works).
    pub(crate) fn on_success(&mut self) {
        *self = Health::default();
    }

    /// A retryable failure at `now`; `after` is the service's
    /// `Retry-After`. `random` draws the jitter.
    pub(crate) fn on_failure(
        &mut self,
        reason: &RetryReason,
        after: Option<Duration>,
        now: std::time::Instant,
        backoff: &Backoff,
        random: u64,
    ) {
        self.failures_in_row += 1;
        let throttle = matches!(reason, RetryReason::Status(429)) || after.is_some();
        if throttle {
            self.throttles_in_row += 1;
        } else {
            self.throttles_in_row = 0;
        }
        let unreachable = matches!(reason, RetryReason::Timeout | RetryReason::Connect(_));
        // Pauses start from the backoff's first step and grow with each
        // further failure in a row.
        let pause = if throttle && self.throttles_in_row >= THROTTLES_BEFORE_PAUSE {
            let step = self.throttles_in_row - THROTTLES_BEFORE_PAUSE + 1;
            Some(after.unwrap_or_else(|| backoff.delay(step, random)))
        } else if unreachable {
            Some(backoff.delay(self.failures_in_row, random))
        } else if self.failures_in_row >= FAILURES_BEFORE_PAUSE {
            let step = self.failures_in_row - FAILURES_BEFORE_PAUSE + 1;
            Some(backoff.delay(step, random))
        } else {
            None
        };
        if let Some(pause) = pause {
            let until = now + pause;
            self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
            self.probing = true;
        }
    }

    /// Retryable failures since the last success.
    pub(crate) fn failures_in_row(&self) -> u32 {
        self.failures_in_row
    }

    /// No request may start before this.
    pub(crate) fn paused_until(&self) -> Option<std::time::Instant> {
        self.paused_until
    }

    /// Whether the endpoint looks well: no failure since the last success.
    pub(crate) fn is_healthy(&self) -> bool {
        self.failures_in_row == 0
    }

    /// How many requests may be in flight at once.
    pub(crate) fn max_in_flight(&self, normal: usize) -> usize {
        if self.probing {
            1
        } else {
            normal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Instant;

    const NOW_SECS: u64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW_SECS)
    }

    fn response(
        status: u16,
        retry_after: Option<&str>,
        location: Option<&str>,
        body: &str,
    ) -> SendOutcome {
        SendOutcome::Response {
            status,
            retry_after: retry_after.map(str::to_owned),
            location: location.map(str::to_owned),
            body: Bytes::from(body.to_owned()),
        }
    }

    fn retry(status: u16, after: Option<Duration>) -> Outcome {
        Outcome::RetryAll {
            after,
            reason: RetryReason::Status(status),
        }
    }

    fn dropped(status: u16, message: &str) -> Outcome {
        Outcome::Drop(DropReason::Status(status, message.to_owned()))
    }

    /// Every code of design §6, once, and the malformed bodies.
    #[test]
    fn classification_table() {
        let errors_body = r#"{"itemsReceived":3,"itemsAccepted":1,"errors":[
            {"index":0,"statusCode":400,"message":"bad field"},
            {"index":2,"statusCode":500,"message":"try again"}]}"#;
        let partial_0_2 = Outcome::Partial {
            retry: vec![2],
            rejected: 1,
            first_error: Some((400, "bad field".into())),
        };
        let error_message = r#"{"itemsReceived":3,"itemsAccepted":0,"errors":[{"index":0,"statusCode":400,"message":"Invalid instrumentation key"}]}"#;
        #[rustfmt::skip]
        let table: Vec<(SendOutcome, Outcome)> = vec![
            // Accepted.
            (response(200, None, None, r#"{"itemsReceived":3,"itemsAccepted":3,"errors":[]}"#), Outcome::Accepted),
            (response(200, None, None, ""), Outcome::Accepted),
            (response(200, None, None, "not json"), Outcome::Accepted),
            (response(200, None, None, "[]"), Outcome::Accepted),
            // 200 with errors is partial.
            (response(200, None, None, errors_body), partial_0_2.clone()),
            // 206.
            (response(206, None, None, errors_body), partial_0_2),
            (response(206, None, None, ""), Outcome::Drop(DropReason::UnreadablePartial)),
            (response(206, None, None, "{not json"), Outcome::Drop(DropReason::UnreadablePartial)),
            (response(206, None, None, r#"{"errors":[]}"#), Outcome::Drop(DropReason::UnreadablePartial)),
            (response(206, None, None, r#"{"errors":[{"statusCode":500}]}"#), Outcome::Drop(DropReason::UnreadablePartial)),
            // Retry the whole batch.
            (response(401, None, None, "{}"), retry(401, None)),
            (response(403, None, None, "{}"), retry(403, None)),
            (response(408, None, None, "{}"), retry(408, None)),
            (response(429, Some("2"), None, "{}"), retry(429, Some(Duration::from_secs(2)))),
            (response(429, None, None, "{}"), retry(429, None)),
            (response(500, None, None, errors_body), retry(500, None)),
            (response(502, None, None, "<html>"), retry(502, None)),
            (response(503, Some("Sun, 06 Nov 1994 08:49:47 GMT"), None, ""), retry(503, Some(Duration::from_secs(10)))),
            (response(503, Some("soon"), None, ""), retry(503, None)),
            (response(504, None, None, ""), retry(504, None)),
            (SendOutcome::Timeout, Outcome::RetryAll { after: None, reason: RetryReason::Timeout }),
            (SendOutcome::Connect("refused".into()), Outcome::RetryAll { after: None, reason: RetryReason::Connect("refused".into()) }),
            // Redirects.
            (response(307, None, Some("https://westus-1.in.example.com/v2.1/track"), ""),
             Outcome::Redirect { endpoint: "https://westus-1.in.example.com".into() }),
            (response(308, None, Some("http://127.0.0.1:8080/x?y"), ""),
             Outcome::Redirect { endpoint: "http://127.0.0.1:8080".into() }),
            (response(307, None, None, ""), Outcome::Drop(DropReason::BadRedirect("no Location header".into()))),
            (response(307, None, Some("/relative/path"), ""), Outcome::Drop(DropReason::BadRedirect("/relative/path".into()))),
            (response(308, None, Some("ftp://host/"), ""), Outcome::Drop(DropReason::BadRedirect("ftp://host/".into()))),
            // Dropped.
            (response(400, None, None, error_message), dropped(400, "Invalid instrumentation key")),
            (response(402, None, None, "quota"), dropped(402, "quota")),
            (response(404, None, None, ""), dropped(404, "")),
            (response(413, None, None, ""), dropped(413, "")),
            (response(439, Some("60"), None, ""), dropped(439, "")),
            (response(418, None, None, ""), dropped(418, "")),
            (response(204, None, None, ""), dropped(204, "")),
            (response(301, None, Some("https://x/"), ""), dropped(301, "")),
        ];
        for (input, expected) in table {
            assert_eq!(classify(&input, 3, now()), expected, "{input:?}");
        }
    }

    #[test]
    fn partial_answers_resend_only_retryable_items() {
        let body = r#"{"itemsReceived":8,"itemsAccepted":2,"errors":[
            {"index":7,"statusCode":429,"message":"throttled"},
            {"index":1,"statusCode":401},
            {"index":2,"statusCode":403},
            {"index":3,"statusCode":408},
            {"index":4,"statusCode":439},
            {"index":5,"statusCode":206},
            {"index":5,"statusCode":500},
            {"index":9,"statusCode":500},
            {"index":6,"statusCode":400,"message":"too big"}]}"#;
        let outcome = classify_response(206, None, None, body.as_bytes(), 8, now());
        assert_eq!(
            outcome,
            Outcome::Partial {
                // 5 is named twice: its first entry (206) wins and is dropped;
                // 9 is out of range.
                retry: vec![1, 2, 3, 7],
                rejected: 3,
                first_error: Some((429, "throttled".into())),
            }
        );
        // Errors naming only out-of-range items: everything was accepted.
        let body = r#"{"errors":[{"index":10,"statusCode":500}]}"#;
        assert_eq!(
            classify_response(206, None, None, body.as_bytes(), 3, now()),
            Outcome::Accepted
        );
    }

    #[test]
    fn retry_after_in_seconds_and_dates() {
        let n = now();
        assert_eq!(parse_retry_after("2", n), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0 ", n), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("86400", n), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("99999999999999999999999", n),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("-1", n), None);
        assert_eq!(parse_retry_after("1.5", n), None);
        assert_eq!(parse_retry_after("", n), None);
        for date in [
            "Sun, 06 Nov 1994 08:50:07 GMT",
            "Sunday, 06-Nov-94 08:50:07 GMT",
            "Sun Nov  6 08:50:07 1994",
        ] {
            assert_eq!(
                parse_retry_after(date, n),
                Some(Duration::from_secs(30)),
                "{date}"
            );
        }
        // In the past: now.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", n),
            Some(Duration::ZERO)
        );
        for bad in [
            "Sun, 06 Nov 1994 08:50:07 UTC",
            "Sun, 32 Nov 1994 08:50:07 GMT",
            "Sun, 06 Foo 1994 08:50:07 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:50 GMT",
            "tomorrow",
        ] {
            assert_eq!(parse_retry_after(bad, n), None, "{bad}");
        }
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(UNIX_EPOCH)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(1_835_438_400))
        );
    }

    #[test]
    fn backoff_is_exponential_capped_and_fully_jittered() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(1), Duration::from_millis(500));
        assert_eq!(b.ceiling(2), Duration::from_secs(1));
        assert_eq!(b.ceiling(5), Duration::from_secs(8));
        assert_eq!(b.ceiling(7), Duration::from_secs(30));
        assert_eq!(b.ceiling(1000), Duration::from_secs(30));
        assert_eq!(b.delay(3, 0), Duration::ZERO);
        assert_eq!(b.delay(3, u64::MAX), Duration::from_secs(2));
        let half = b.delay(3, u64::MAX / 2);
        assert!(half > Duration::from_millis(999) && half < Duration::from_millis(1001));
        // Drawn from the crate's generator: spread over the whole range.
        let draws: Vec<Duration> = (0..1000)
            .map(|_| b.delay(4, crate::ids::next_u64()))
            .collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_secs(4)));
        assert!(draws.iter().any(|d| *d < Duration::from_millis(500)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(3500)));
        // Retry-After wins over the backoff, whatever it is.
        assert_eq!(
            b.next_delay(1, Some(Duration::from_secs(2)), u64::MAX),
            Duration::from_secs(2)
        );
    }

    /// The retry schedule: `Retry-After: 2` means the next attempt is two
    /// seconds away whatever the backoff says; then the backoff resumes.
    /// (The integration tests measure the same gap on the wire.)
    #[test]
    fn retry_schedule_honours_retry_after_then_backs_off() {
        let b = Backoff::default();
        let answers = [Some(Duration::from_secs(2)), None, None];
        let gaps: Vec<Duration> = answers
            .iter()
            .enumerate()
            .map(|(i, after)| b.next_delay(i as u32 + 1, *after, u64::MAX))
            .collect();
        assert_eq!(
            gaps,
            [
                Duration::from_secs(2),
                Duration::from_secs(1),
                Duration::from_secs(2)
            ]
        );
    }

    #[test]
    fn ten_redirects_in_a_row_drop() {
        let mut r = Redirects::default();
        for _ in 0..MAX_REDIRECTS - 1 {
            assert!(r.follow());
        }
        assert!(!r.follow(), "the tenth in a row");
        // A success in between starts the count again.
        for _ in 0..5 {
            assert!(r.follow());
        }
        r.reset();
        for _ in 0..MAX_REDIRECTS - 1 {
            assert!(r.follow());
        }
    }

    #[test]
    fn health_pauses_on_failures_in_a_row() {
        let b = Backoff::default();
        let now = Instant::now();
        let mut h = Health::default();
        // One 503 or one 429 among successes: no pause.
        h.on_failure(&RetryReason::Status(503), None, now, &b, u64::MAX);
        assert_eq!(h.paused_until(), None);
        h.on_success();
        h.on_failure(
            &RetryReason::Status(429),
            Some(Duration::from_secs(1)),
            now,
            &b,
            0,
        );
        assert_eq!(h.paused_until(), None);
        assert_eq!(h.max_in_flight(4), 4);
        // A second throttle in a row: no request before its Retry-After.
        h.on_failure(
            &RetryReason::Status(429),
            Some(Duration::from_secs(3)),
            now,
            &b,
            0,
        );
        assert_eq!(h.paused_until(), Some(now + Duration::from_secs(3)));
        assert_eq!(h.max_in_flight(4), 1);
        assert!(!h.is_healthy());
        h.on_success();
        assert_eq!(h.paused_until(), None);
        assert!(h.is_healthy());
        // Unreachable: pause at once.
        h.on_failure(
            &RetryReason::Connect("refused".into()),
            None,
            now,
            &b,
            u64::MAX,
        );
        assert_eq!(h.paused_until(), Some(now + Duration::from_millis(500)));
        // Plain 5xx: after FAILURES_BEFORE_PAUSE in a row.
        let mut h = Health::default();
        for _ in 1..FAILURES_BEFORE_PAUSE {
            h.on_failure(&RetryReason::Status(500), None, now, &b, u64::MAX);
            assert_eq!(h.paused_until(), None);
        }
        h.on_failure(&RetryReason::Status(500), None, now, &b, u64::MAX);
        assert_eq!(h.paused_until(), Some(now + Duration::from_millis(500)));
        h.on_failure(&RetryReason::Status(500), None, now, &b, u64::MAX);
        assert_eq!(h.paused_until(), Some(now + Duration::from_secs(1)));
    }
}
