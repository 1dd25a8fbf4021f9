//! When to send again: exponential backoff with full jitter
//! ([`Backoff`]), how many redirects to follow in a row ([`Redirects`]),
//! and when the endpoint as a whole should be left alone ([`Health`]).
//!
//! Everything here is pure: time comes in as arguments, randomness as a
//! `u64`, so the tests below pin every decision down.

use std::time::Duration;

use super::response::RetryReason;

/// At most this many redirects in a row; the answer that makes it this many
/// drops the batch (the Python exporters also stop after ten POSTs).
pub(crate) const MAX_REDIRECTS: u32 = 10;

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

/// How long a redirect is followed: after this, requests go to the
/// configured endpoint again (which may redirect again). A redirect is the
/// service moving a resource; it must not outlive a mistake or an attack.
pub(crate) const REDIRECT_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// After this many retryable failures in a row at a redirected endpoint,
/// requests go back to the configured one.
pub(crate) const REDIRECT_FAILURES_BEFORE_FALLBACK: u32 = 3;

/// With neither `Retry-After` nor a success, a resource over its daily
/// cap (402, 439) is probed with one request this often.
pub(crate) const QUOTA_PROBE_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Whether a redirect from the configured endpoint's scheme to `target`
/// may be followed: to `https` always, to plain `http` only when the
/// configured endpoint is `http` itself (a test or a local emulator), and,
/// when requests carry a `bearer` token, only to a loopback address (the
/// token never crosses a network in clear).
pub(crate) fn may_redirect(
    configured: &str,
    target: &str,
    bearer: bool,
) -> Result<(), &'static str> {
    let plain = |url: &str| {
        url.get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case("http:"))
    };
    if plain(target) && !plain(configured) {
        return Err("from https to plain http");
    }
    if bearer && super::auth::exposes_token(target) {
        return Err("to plain http off this machine, which would carry the bearer token in clear");
    }
    Ok(())
}

/// Counts redirects in a row (any other answer resets the count), and
/// whether requests go to a redirected endpoint, since when, and how it
/// has been failing.
#[derive(Debug, Default)]
pub(crate) struct Redirects {
    in_a_row: u32,
    /// When requests started going to a redirected endpoint.
    since: Option<std::time::Instant>,
    /// Retryable failures in a row at the redirected endpoint.
    failures: u32,
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

    /// Requests now go to a redirected endpoint, from `now`.
    pub(crate) fn followed(&mut self, now: std::time::Instant) {
        self.since = Some(now);
        self.failures = 0;
    }

    /// A success at the current endpoint.
    pub(crate) fn on_success(&mut self) {
        self.reset();
        self.failures = 0;
    }

    /// A retryable failure at the current endpoint.
    pub(crate) fn on_failure(&mut self) {
        if self.since.is_some() {
            self.failures += 1;
        }
    }

    /// Why requests should go back to the configured endpoint now, if
    /// they should: the redirect is older than [`REDIRECT_LIFETIME`], or
    /// failed [`REDIRECT_FAILURES_BEFORE_FALLBACK`] times in a row.
    pub(crate) fn fall_back(&mut self, now: std::time::Instant) -> Option<&'static str> {
        let since = self.since?;
        let why = if now.saturating_duration_since(since) >= REDIRECT_LIFETIME {
            "the redirect's lifetime (10 minutes) is over"
        } else if self.failures >= REDIRECT_FAILURES_BEFORE_FALLBACK {
            "the redirected endpoint failed 3 times in a row"
        } else {
            return None;
        };
        self.since = None;
        self.failures = 0;
        Some(why)
    }
}

// === concurrency ===

/// The most requests in flight at once, however slow a healthy endpoint
/// answers.
pub(crate) const MAX_IN_FLIGHT: usize = 16;

/// How many requests may be in flight while the endpoint is healthy: from
/// the configured number up to [`MAX_IN_FLIGHT`], one more after each
/// success while payloads waited for a slot (the endpoint is slow, not
/// failing: more at once carries more), halved on a failure.
#[derive(Debug)]
pub(crate) struct Concurrency {
    floor: usize,
    limit: usize,
}

impl Concurrency {
    /// Starting from (and never below) `floor`.
    pub(crate) fn new(floor: usize) -> Self {
        let floor = floor.clamp(1, MAX_IN_FLIGHT);
        Concurrency {
            floor,
            limit: floor,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// A success; `backlogged` when payloads were waiting for a slot.
    pub(crate) fn on_success(&mut self, backlogged: bool) {
        if backlogged {
            self.limit = (self.limit + 1).min(MAX_IN_FLIGHT);
        }
    }

    /// A retryable failure.
    pub(crate) fn on_failure(&mut self) {
        self.limit = (self.limit / 2).max(self.floor);
    }
}

// === endpoint health ===

/// After this many throttling answers in a row (429, or any retryable
/// answer with `Retry-After`), nothing is sent until the delay has passed.
pub(crate) const THROTTLES_BEFORE_PAUSE: u32 = 2;

/// After this many retryable failures in a row of any kind, nothing is sent
/// for a backoff delay. A connection error or a timeout pauses at once: the
/// endpoint is unreachable, and each new batch would only confirm it. So do
/// a credential that gives no token and a 403 (the identity may not send to
/// the resource: a role assignment can take minutes to apply).
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
        let throttle =
            matches!(reason, RetryReason::Status(429) | RetryReason::Quota(..)) || after.is_some();
        if throttle {
            self.throttles_in_row += 1;
        } else {
            self.throttles_in_row = 0;
        }
        let unreachable = matches!(
            reason,
            RetryReason::Timeout
                | RetryReason::Connect(_)
                | RetryReason::Credential(_)
                | RetryReason::Status(403)
        );
        // Pauses start from the backoff's first step and grow with each
        // further failure in a row; over the quota, at once and long.
        let pause = if let RetryReason::Quota(..) = reason {
            Some(after.unwrap_or(QUOTA_PROBE_INTERVAL))
        } else if throttle && self.throttles_in_row >= THROTTLES_BEFORE_PAUSE {
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
    use std::time::Instant;

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
            .map(|_| b.delay(4, crate::record::ids::next_u64()))
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
    fn a_quota_pauses_at_once_until_retry_after_or_the_probe_interval() {
        let b = Backoff::default();
        let now = Instant::now();
        let mut h = Health::default();
        h.on_failure(&RetryReason::Quota(402, String::new()), None, now, &b, 0);
        assert_eq!(h.paused_until(), Some(now + QUOTA_PROBE_INTERVAL));
        assert_eq!(h.max_in_flight(4), 1, "then one probe");
        let mut h = Health::default();
        let after = Some(Duration::from_secs(42));
        h.on_failure(&RetryReason::Quota(439, String::new()), after, now, &b, 0);
        assert_eq!(h.paused_until(), Some(now + Duration::from_secs(42)));
    }

    #[test]
    fn redirects_are_followed_to_https_or_from_http_only() {
        for bearer in [false, true] {
            assert!(may_redirect("https://a.example", "https://b.example", bearer).is_ok());
            assert!(may_redirect("https://a.example", "http://b.example", bearer).is_err());
            assert!(may_redirect("https://a.example", "HTTP://b.example", bearer).is_err());
            assert!(may_redirect("http://127.0.0.1:1", "http://127.0.0.1:2", bearer).is_ok());
            assert!(may_redirect("http://127.0.0.1:1", "https://b.example", bearer).is_ok());
        }
        // A token never goes to plain http off this machine.
        assert!(may_redirect("http://127.0.0.1:1", "http://b.example", false).is_ok());
        assert!(may_redirect("http://127.0.0.1:1", "http://b.example", true).is_err());
        assert!(may_redirect("http://127.0.0.1:1", "http://10.0.0.1:2", true).is_err());
        assert!(may_redirect("http://127.0.0.1:1", "http://localhost:2", true).is_ok());
    }

    #[test]
    fn a_redirect_ends_after_its_lifetime_or_failures_in_a_row() {
        let now = Instant::now();
        let mut r = Redirects::default();
        assert_eq!(
            r.fall_back(now + REDIRECT_LIFETIME * 2),
            None,
            "none followed"
        );
        r.followed(now);
        assert_eq!(r.fall_back(now + REDIRECT_LIFETIME / 2), None);
        assert!(r.fall_back(now + REDIRECT_LIFETIME).is_some());
        assert_eq!(r.fall_back(now + REDIRECT_LIFETIME), None, "once");
        r.followed(now);
        for _ in 1..REDIRECT_FAILURES_BEFORE_FALLBACK {
            r.on_failure();
        }
        assert_eq!(r.fall_back(now), None);
        r.on_success();
        r.on_failure();
        assert_eq!(r.fall_back(now), None, "a success starts the count again");
        for _ in 1..REDIRECT_FAILURES_BEFORE_FALLBACK {
            r.on_failure();
        }
        assert!(r.fall_back(now).is_some());
    }

    #[test]
    fn concurrency_grows_while_backlogged_and_halves_on_failure() {
        let mut c = Concurrency::new(4);
        c.on_success(false);
        assert_eq!(c.limit(), 4, "no backlog: no growth");
        for _ in 0..100 {
            c.on_success(true);
        }
        assert_eq!(c.limit(), MAX_IN_FLIGHT);
        c.on_failure();
        assert_eq!(c.limit(), MAX_IN_FLIGHT / 2);
        for _ in 0..10 {
            c.on_failure();
        }
        assert_eq!(c.limit(), 4, "never below the configured number");
    }

    #[test]
    fn a_403_or_a_credential_without_token_pauses_at_once() {
        let b = Backoff::default();
        let now = Instant::now();
        for reason in [
            RetryReason::Status(403),
            RetryReason::Credential("no token".into()),
        ] {
            let mut h = Health::default();
            h.on_failure(&reason, None, now, &b, u64::MAX);
            assert_eq!(
                h.paused_until(),
                Some(now + Duration::from_millis(500)),
                "{reason:?}"
            );
            assert_eq!(h.max_in_flight(4), 1, "then one probe");
            h.on_failure(&reason, None, now, &b, u64::MAX);
            assert_eq!(h.paused_until(), Some(now + Duration::from_secs(1)));
        }
        // A 401 does not pause: the token was dropped, a new one may do.
        let mut h = Health::default();
        h.on_failure(&RetryReason::Status(401), None, now, &b, u64::MAX);
        assert_eq!(h.paused_until(), None);
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
