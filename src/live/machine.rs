//! The Live Metrics state machine, on an injected clock: when to ping,
//! when to post, when to back off. The driver (`client.rs`) does the
//! requests and reports each answer here.
//!
//! * **Ping** every [`PING_INTERVAL`] (or the service's polling hint),
//!   with ±10 % jitter, until a ping says `x-ms-qps-subscribed: true`.
//!   Healthy but unsubscribed pings never back off. When no ping has
//!   succeeded for [`PING_GRACE`], **back off**: ping every
//!   [`BACKOFF_INTERVAL`] until one succeeds.
//! * **Post** once per second of wall clock: the next post is due at the
//!   next whole second after the previous one started, so a slow answer
//!   skips ticks and never queues posts. A post answered "not subscribed"
//!   goes back to pinging at once; when no post has succeeded for
//!   [`POST_GRACE`], back to pinging too. Both clear the collection
//!   configuration.
//!
//! Time is "since the last success", by the clock, not a count of ticks,
//! so slow answers do not stretch the windows.

use std::time::{Duration, Instant};

/// The ping interval without a hint from the service.
pub(crate) const PING_INTERVAL: Duration = Duration::from_secs(5);
/// The post interval.
pub(crate) const POST_INTERVAL: Duration = Duration::from_secs(1);
/// Failed posts for this long → back to pinging.
pub(crate) const POST_GRACE: Duration = Duration::from_secs(20);
/// Failed pings for this long → back off.
pub(crate) const PING_GRACE: Duration = Duration::from_secs(60);
/// The ping interval while backing off.
pub(crate) const BACKOFF_INTERVAL: Duration = Duration::from_secs(60);
/// The bounds on a polling hint (a hostile or broken service cannot make
/// the client ping in a loop, or never).
pub(crate) const MIN_HINT: Duration = Duration::from_millis(500);
pub(crate) const MAX_HINT: Duration = Duration::from_secs(300);

/// What the machine is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Asking whether anyone watches.
    Ping,
    /// Posting data points.
    Post,
    /// Pinging slowly after a minute of failed pings.
    Backoff,
}

/// What a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// HTTP 200 with a readable body.
    Ok {
        subscribed: bool,
        /// `x-ms-qps-service-polling-interval-hint`, when given.
        hint: Option<Duration>,
    },
    /// Anything else: an error status, a garbage body, a timeout, no
    /// connection.
    Failed,
}

/// What changed with an answer, for the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// Posting stopped or started: the configuration and the collected
    /// state are to be cleared.
    pub(crate) reset: bool,
}

/// The state machine (see the module docs).
#[derive(Debug)]
pub(crate) struct Machine {
    state: State,
    ping_interval: Duration,
    /// The last successful ping (or the start), and post (or subscription).
    last_ping_ok: Instant,
    last_post_ok: Instant,
    /// When the next request is due.
    due: Instant,
    /// Jitter source.
    rng: u64,
}

impl Machine {
    /// A machine whose first ping is due at `now`; `seed` drives the jitter.
    pub(crate) fn new(now: Instant, seed: u64) -> Self {
        Machine {
            state: State::Ping,
            ping_interval: PING_INTERVAL,
            last_ping_ok: now,
            last_post_ok: now,
            due: now,
            rng: seed | 1,
        }
    }

    #[cfg(test)]
    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// When the next request is due.
    pub(crate) fn due(&self) -> Instant {
        self.due
    }

    /// Whether the next request is a post.
    pub(crate) fn posting(&self) -> bool {
        self.state == State::Post
    }

    /// `interval` ±10 %.
    fn jittered(&mut self, interval: Duration) -> Duration {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        interval.mul_f64(0.9 + 0.2 * unit)
    }

    /// A ping that started at `started` was answered (or failed) at `now`.
    pub(crate) fn ping_done(&mut self, started: Instant, now: Instant, answer: Answer) -> Change {
        let mut change = Change::default();
        match answer {
            Answer::Ok { subscribed, hint } => {
                self.last_ping_ok = now;
                if let Some(hint) = hint {
                    self.ping_interval = hint.clamp(MIN_HINT, MAX_HINT);
                }
                if subscribed {
                    self.state = State::Post;
                    self.last_post_ok = now;
                    self.due = now;
                    change.reset = true;
                    return change;
                }
                self.state = State::Ping;
            }
            Answer::Failed => {
                if now.saturating_duration_since(self.last_ping_ok) >= PING_GRACE {
                    self.state = State::Backoff;
                }
            }
        }
        let interval = match self.state {
            State::Backoff => BACKOFF_INTERVAL,
            _ => self.ping_interval,
        };
        let interval = self.jittered(interval);
        self.due = (started + interval).max(now);
        change
    }

    /// A post that started at `started` was answered (or failed) at `now`.
    pub(crate) fn post_done(&mut self, started: Instant, now: Instant, answer: Answer) -> Change {
        let mut change = Change::default();
        let back_to_ping = match answer {
            Answer::Ok {
                subscribed: true, ..
            } => {
                self.last_post_ok = now;
                false
            }
            Answer::Ok {
                subscribed: false, ..
            } => true,
            Answer::Failed => now.saturating_duration_since(self.last_post_ok) >= POST_GRACE,
        };
        if let Answer::Ok { hint: Some(h), .. } = answer {
            self.ping_interval = h.clamp(MIN_HINT, MAX_HINT);
        }
        if back_to_ping {
            self.state = State::Ping;
            self.last_ping_ok = now;
            let interval = self.jittered(self.ping_interval);
            self.due = now + interval;
            change.reset = true;
            return change;
        }
        // The next whole second after the one this post started in: a slow
        // answer skips ticks, never queues them.
        let mut due = started + POST_INTERVAL;
        while due <= now {
            due += POST_INTERVAL;
        }
        self.due = due;
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK_UNSUB: Answer = Answer::Ok {
        subscribed: false,
        hint: None,
    };
    const OK_SUB: Answer = Answer::Ok {
        subscribed: true,
        hint: None,
    };

    fn secs(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    fn within(d: Duration, want: Duration) -> bool {
        d >= want.mul_f64(0.9) && d <= want.mul_f64(1.1)
    }

    #[test]
    fn unsubscribed_pings_every_five_seconds_forever() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, 7);
        let mut now = t0;
        for _ in 0..100 {
            let started = m.due();
            now = now.max(started);
            m.ping_done(started, now, OK_UNSUB);
            assert_eq!(m.state(), State::Ping);
            assert!(within(m.due() - started, PING_INTERVAL));
            now = m.due();
        }
        assert!(now - t0 > PING_GRACE * 5, "no backoff on healthy pings");
    }

    #[test]
    fn the_polling_hint_sets_the_ping_interval_within_bounds() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, 7);
        let hint = |ms| Answer::Ok {
            subscribed: false,
            hint: Some(Duration::from_millis(ms)),
        };
        m.ping_done(t0, t0, hint(2000));
        assert!(within(m.due() - t0, Duration::from_secs(2)));
        m.ping_done(t0, t0, hint(0));
        assert!(within(m.due() - t0, MIN_HINT));
        m.ping_done(t0, t0, hint(u32::MAX as u64));
        assert!(within(m.due() - t0, MAX_HINT));
    }

    #[test]
    fn pings_jitter() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, 12345);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            m.ping_done(t0, t0, OK_UNSUB);
            seen.insert(m.due() - t0);
        }
        assert!(seen.len() > 10, "{seen:?}");
    }

    #[test]
    fn a_subscribed_ping_posts_at_once_then_every_second() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, 1);
        let change = m.ping_done(t0, secs(t0, 0.05), OK_SUB);
        assert!(change.reset);
        assert!(m.posting());
        assert_eq!(m.due(), secs(t0, 0.05));
        let p0 = m.due();
        m.post_done(p0, p0 + Duration::from_millis(30), OK_SUB);
        assert_eq!(m.due(), p0 + POST_INTERVAL);
    }

    #[test]
    fn a_slow_post_skips_ticks_instead_of_queueing() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, 1);
        m.ping_done(t0, t0, OK_SUB);
        m.post_done(t0, secs(t0, 3.5), OK_SUB);
        assert_eq!(m.due(), secs(t0, 4.0));
        m.post_done(secs(t0, 4.0), secs(t0, 5.0), OK_SUB);
        assert_eq!(m.due(), secs(t0, 6.0));
    }

    #[test]
    fn an_unsubscribed_post_goes_back_to_pinging_at_once() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, 1);
        m.ping_done(t0, t0, OK_SUB);
        m.post_done(t0, secs(t0, 0.1), OK_SUB);
        let change = m.post_done(secs(t0, 1.0), secs(t0, 1.1), OK_UNSUB);
        assert!(change.reset);
        assert_eq!(m.state(), State::Ping);
        assert!(within(m.due() - secs(t0, 1.1), PING_INTERVAL));
    }

    #[test]
    fn twenty_seconds_of_failed_posts_go_back_to_pinging() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, 1);
        m.ping_done(t0, t0, OK_SUB);
        m.post_done(t0, t0, OK_SUB); // last success at t0
        for s in 1..20 {
            let change = m.post_done(secs(t0, s as f64), secs(t0, s as f64), Answer::Failed);
            assert!(!change.reset, "at {s} s");
            assert!(m.posting());
        }
        let change = m.post_done(secs(t0, 20.0), secs(t0, 20.0), Answer::Failed);
        assert!(change.reset);
        assert_eq!(m.state(), State::Ping);
    }

    #[test]
    fn failed_posts_count_from_the_last_success_not_from_posting_start() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, 1);
        m.ping_done(t0, t0, OK_SUB);
        m.post_done(secs(t0, 44.0), secs(t0, 44.0), OK_SUB);
        m.post_done(secs(t0, 45.0), secs(t0, 45.0), Answer::Failed);
        assert!(
            m.posting(),
            "one failure after 44 s of posting does not stop it"
        );
    }

    #[test]
    fn a_minute_of_failed_pings_backs_off_until_one_succeeds() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, 1);
        let mut now = t0;
        while now - t0 < PING_GRACE {
            m.ping_done(now, now, Answer::Failed);
            assert_eq!(m.state(), State::Ping);
            now = m.due();
        }
        m.ping_done(now, now, Answer::Failed);
        assert_eq!(m.state(), State::Backoff);
        assert!(within(m.due() - now, BACKOFF_INTERVAL));
        now = m.due();
        m.ping_done(now, now, OK_UNSUB);
        assert_eq!(m.state(), State::Ping);
        assert!(within(m.due() - now, PING_INTERVAL));
        now = m.due();
        m.ping_done(now, now, Answer::Failed);
        assert_eq!(
            m.state(),
            State::Ping,
            "one failure after a success is not a minute of them"
        );
    }

    #[test]
    fn a_subscribed_ping_ends_a_backoff_with_posts() {
        let t0 = Instant::now();
        let mut m = Machine::new(t0, 1);
        m.ping_done(secs(t0, 61.0), secs(t0, 61.0), Answer::Failed);
        assert_eq!(m.state(), State::Backoff);
        m.ping_done(secs(t0, 121.0), secs(t0, 121.0), OK_SUB);
        assert!(m.posting());
    }
}
