//! Head sampling, decided once per trace in `on_new_span`.
//!
//! * A span with a local parent inherits the parent's decision.
//! * A span with a remote parent honours the parent's sampled flag, both ways.
//! * A new root applies its sampler's rule to its trace id: OpenCensus'
//!   `ProbabilitySampler` (the low 8 bytes, read big-endian, sample when
//!   `<= floor(p * u64::MAX)`), or Application Insights' score (DJB2 over
//!   the id's 32 lower-case hex digits, [`ai_score`]) below a fixed
//!   percentage or below the percentage a [`RateLimiter`] keeps at.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::pipeline::Clock;
use crate::record::ids::TraceId;

/// Which new traces are recorded.
///
/// The decision is made once, for the root span of a trace, and every child
/// span inherits it. A span with a remote parent (attached from a
/// `traceparent` header) follows the parent's sampled flag instead.
///
/// # Examples
///
/// ```
/// use tracing_appinsights::{Builder, Sampler};
///
/// let builder = Builder::new().with_sampler(Sampler::probability(0.25));
/// # drop(builder);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampler(Kind);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    AlwaysOn,
    AlwaysOff,
    Probability(f64),
    /// A percentage, 0 to 100.
    FixedPercentage(f64),
    /// Traces per second.
    RateLimited(f64),
}

impl Sampler {
    /// Records every trace (the default).
    pub const fn always_on() -> Self {
        Sampler(Kind::AlwaysOn)
    }

    /// Records no trace that starts here; a remote parent that was sampled
    /// still makes its children recorded.
    pub const fn always_off() -> Self {
        Sampler(Kind::AlwaysOff)
    }

    /// Records a fraction `p` of traces, chosen by trace id with OpenCensus'
    /// rule, so every service using the rule agrees on the same trace.
    ///
    /// `p` must be in `[0, 1]`; anything else (NaN included) makes
    /// [`Builder::build`](crate::Builder::build) return
    /// [`BuildError::InvalidSamplingProbability`](crate::BuildError::InvalidSamplingProbability).
    pub const fn probability(p: f64) -> Self {
        Sampler(Kind::Probability(p))
    }

    /// Records `percentage` percent of traces (0 to 100), chosen by
    /// Application Insights' own score of the trace id, as the .NET, Java,
    /// JavaScript and Python Application Insights SDKs choose: a Rust
    /// service sampling at the same percentage keeps exactly the traces
    /// they keep, so traces stay whole across them. Every item of a kept
    /// trace carries `sampleRate: percentage`.
    ///
    /// `percentage` must be in `[0, 100]`; anything else (NaN included)
    /// makes [`Builder::build`](crate::Builder::build) return
    /// [`BuildError::InvalidSamplingProbability`](crate::BuildError::InvalidSamplingProbability).
    ///
    /// # Examples
    ///
    /// ```
    /// use tracing_appinsights::{Builder, Sampler};
    ///
    /// let builder = Builder::new().with_sampler(Sampler::fixed_percentage(25.0));
    /// # drop(builder);
    /// ```
    pub const fn fixed_percentage(percentage: f64) -> Self {
        Sampler(Kind::FixedPercentage(percentage))
    }

    /// Keeps about `per_second` traces per second, whatever the load: the
    /// percentage adapts (with a 0.1 s time constant) to the rate of new
    /// traces, rounded down to `100/n` as Application Insights does, and
    /// traces are chosen by Application Insights' score of the trace id
    /// below it (see [`fixed_percentage`](Self::fixed_percentage)). Every
    /// item of a kept trace carries the percentage its root was kept at,
    /// so the portal's counts are estimated right. The decision is made
    /// once, at the root: a trace is kept whole (the Python exporter
    /// decides again for each child and drops children of kept roots).
    ///
    /// It starts as if it had been idle (its first trace is kept, not
    /// dropped as in the Python exporter), and an idle period lets through
    /// at most about one second's worth at once.
    /// `per_second` must be finite and at least 0.
    pub const fn rate_limited(per_second: f64) -> Self {
        Sampler(Kind::RateLimited(per_second))
    }

    /// The fraction of new traces this sampler records, for the items'
    /// `sampleRate` (`100 × ratio`); for [`rate_limited`](Self::rate_limited)
    /// it changes with the load and each trace carries its own, so this
    /// says 1.
    pub fn ratio(&self) -> f64 {
        match self.0 {
            Kind::AlwaysOn | Kind::RateLimited(_) => 1.0,
            Kind::AlwaysOff => 0.0,
            Kind::Probability(p) => p,
            Kind::FixedPercentage(p) => p / 100.0,
        }
    }

    /// Checks the parameter; `Err(it)` when it is out of range or NaN.
    pub(crate) fn validate(self) -> Result<Self, f64> {
        match self.0 {
            Kind::Probability(p) if !(0.0..=1.0).contains(&p) => Err(p),
            Kind::FixedPercentage(p) if !(0.0..=100.0).contains(&p) => Err(p),
            Kind::RateLimited(r) if !(r >= 0.0 && r.is_finite()) => Err(r),
            _ => Ok(self),
        }
    }

    /// The decision rule, with its bound computed (or its limiter started,
    /// on `clock`) once.
    pub(crate) fn rule(&self, clock: &Clock) -> SamplingRule {
        match self.0 {
            Kind::AlwaysOn => SamplingRule::All,
            Kind::AlwaysOff => SamplingRule::None,
            Kind::FixedPercentage(p) if p >= 100.0 => SamplingRule::All,
            Kind::FixedPercentage(p) if p <= 0.0 => SamplingRule::None,
            Kind::FixedPercentage(p) => SamplingRule::ScoreBelow(p / 100.0),
            Kind::RateLimited(per_second) => {
                SamplingRule::RateLimited(Arc::new(RateLimiter::new(per_second, clock.clone())))
            }
            Kind::Probability(p) => {
                // Exactly Python's float arithmetic: `rate * 0xffffffffffffffff`
                // with the integer converted to f64 (2^64) first.
                let bound = p * (u64::MAX as f64);
                if bound >= 18_446_744_073_709_551_616.0 {
                    SamplingRule::All
                } else {
                    // `bound` is in [0, 2^64): `as` saturates, never wraps.
                    SamplingRule::AtMost(bound.floor() as u64)
                }
            }
        }
    }
}

/// `always_on`, `always_off`, `probability(0.25)`: the sampler as a log
/// line names it.
impl std::fmt::Display for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Kind::AlwaysOn => f.write_str("always_on"),
            Kind::AlwaysOff => f.write_str("always_off"),
            Kind::Probability(p) => write!(f, "probability({p})"),
            Kind::FixedPercentage(p) => write!(f, "fixed_percentage({p})"),
            Kind::RateLimited(r) => write!(f, "rate_limited({r}/s)"),
        }
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::always_on()
    }
}

/// A sampler reduced to one comparison for the hot path (or a limiter).
#[derive(Clone, Debug)]
pub(crate) enum SamplingRule {
    All,
    None,
    /// OpenCensus' rule: the low 64 bits at most this.
    AtMost(u64),
    /// Application Insights' score below this ratio.
    ScoreBelow(f64),
    /// Application Insights' score below the limiter's percentage.
    RateLimited(Arc<RateLimiter>),
}

impl SamplingRule {
    /// Whether this rule keeps nothing that starts here.
    #[inline]
    pub(crate) fn is_none(&self) -> bool {
        matches!(self, SamplingRule::None)
    }

    /// The decision for a new root with this trace id.
    #[inline]
    pub(crate) fn sample_root(&self, trace_id: TraceId) -> bool {
        self.decide_root(trace_id).is_some()
    }

    /// The decision for a new root with this trace id: `Some(percentage)`
    /// it is kept at (the items' `sampleRate`), `None` to drop it.
    #[inline]
    pub(crate) fn decide_root(&self, trace_id: TraceId) -> Option<f64> {
        match self {
            SamplingRule::All => Some(100.0),
            SamplingRule::None => None,
            SamplingRule::AtMost(_) => self
                .sample_low_bits(trace_id.to_int() as u64)
                .then_some(100.0),
            SamplingRule::ScoreBelow(ratio) => {
                (ai_score(trace_id) < *ratio).then_some(ratio * 100.0)
            }
            SamplingRule::RateLimited(limiter) => {
                let percentage = limiter.percentage();
                (ai_score(trace_id) * 100.0 < percentage).then_some(percentage)
            }
        }
    }

    /// The decision for a span with a remote parent: the caller's sampled
    /// flag, both ways; when the caller sent none (a legacy
    /// `Request-Id`), the rule applied to the caller's trace id.
    ///
    /// OpenCensus re-samples an unsampled remote parent; we honour it, so a
    /// trace the caller dropped is not half-recorded downstream.
    #[inline]
    pub(crate) fn sample_remote(&self, sampled: Option<bool>, trace_id: TraceId) -> bool {
        sampled.unwrap_or_else(|| self.sample_root(trace_id))
    }

    /// The decision from the low 64 bits of a trace id (compared as an
    /// integer: comparing as `f64` would round them and answer differently
    /// near the bound, e.g. for `2^63 + 1` at 0.5). For the rules that
    /// score a trace id, `low` stands for one (an event outside spans).
    #[inline]
    pub(crate) fn sample_low_bits(&self, low: u64) -> bool {
        match self {
            SamplingRule::All => true,
            SamplingRule::None => false,
            SamplingRule::AtMost(bound) => low <= *bound,
            SamplingRule::ScoreBelow(_) | SamplingRule::RateLimited(_) => {
                self.sample_root(TraceId::from_int(u128::from(low)))
            }
        }
    }
}

/// Application Insights' sampling score of a trace id, in `[0, 1]`: DJB2
/// over its 32 lower-case hexadecimal digits in wrapping `i32`
/// arithmetic, made positive (`i32::MIN` becomes `i32::MAX`) and divided by
/// `i32::MAX`. Every Application Insights SDK computes the same, so they
/// agree on which traces a percentage keeps.
pub(crate) fn ai_score(trace_id: TraceId) -> f64 {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let id = trace_id.to_int();
    let mut h: i32 = 5381;
    for i in (0..32).rev() {
        let digit = HEX[((id >> (i * 4)) & 0xf) as usize];
        h = h.wrapping_mul(33).wrapping_add(i32::from(digit));
    }
    let h = if h == i32::MIN { i32::MAX } else { h.abs() };
    f64::from(h) / f64::from(i32::MAX)
}

/// The percentage that keeps about `target` traces per second: an
/// exponentially weighted count of new traces and of the time they took
/// (time constant 0.1 s), `100 × min(1, window × target / count)` rounded
/// down to `100/n` (Application Insights' rule), on a monotonic clock.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    target_per_ns: f64,
    /// The most idle time one arrival adds to the window.
    max_idle_ns: f64,
    clock: Clock,
    start: Instant,
    state: Mutex<LimiterState>,
}

/// The limiter's running sums.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LimiterState {
    pub(crate) count: f64,
    pub(crate) window_ns: f64,
    pub(crate) last_ns: u64,
}

/// The limiter's time constant, per nanosecond.
const INV_TAU_PER_NS: f64 = 1e-9 / 0.1;

/// The most idle time an arrival adds to the window (or twice the gap
/// between two traces at the target, when that is longer): after a pause,
/// about one second's worth of traces is let through at once, not the
/// whole pause's.
const MAX_IDLE_NS: f64 = 1e9;

impl RateLimiter {
    /// A limiter for `per_second`, started as if it had been idle: its
    /// first trace is kept.
    pub(crate) fn new(per_second: f64, clock: Clock) -> Self {
        let start = clock.now();
        let max_idle_ns = if per_second > 0.0 {
            MAX_IDLE_NS.max(2e9 / per_second)
        } else {
            MAX_IDLE_NS
        };
        RateLimiter {
            target_per_ns: per_second * 1e-9,
            max_idle_ns,
            clock,
            start,
            state: Mutex::new(LimiterState {
                count: 0.0,
                window_ns: max_idle_ns,
                last_ns: 0,
            }),
        }
    }

    /// The percentage for a new trace now (this counts it).
    pub(crate) fn percentage(&self) -> f64 {
        let now_ns = self
            .clock
            .now()
            .saturating_duration_since(self.start)
            .as_nanos() as u64;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        limiter_step(&mut state, now_ns, self.target_per_ns, self.max_idle_ns)
    }
}

/// One arrival at `now_ns`: updates the sums and returns the percentage.
/// Idle time past `max_idle_ns` does not count.
pub(crate) fn limiter_step(
    state: &mut LimiterState,
    now_ns: u64,
    target_per_ns: f64,
    max_idle_ns: f64,
) -> f64 {
    if now_ns <= state.last_ns {
        state.count += 1.0;
    } else {
        let delta = (now_ns - state.last_ns) as f64;
        let decay = (-delta * INV_TAU_PER_NS).exp();
        state.count = state.count * decay + 1.0;
        state.window_ns = state.window_ns * decay + delta.min(max_idle_ns);
        state.last_ns = now_ns;
    }
    let raw = 100.0 * (state.window_ns * target_per_ns / state.count).min(1.0);
    round_down(raw)
}

/// `100 / ceil(100 / p)`: the largest `100/n` at most `p` (0 for 0, and
/// for percentages too small to name).
pub(crate) fn round_down(p: f64) -> f64 {
    if p <= 0.0 || p.is_nan() {
        return 0.0;
    }
    let n = 100.0 / p;
    if !n.is_finite() || n >= 2_147_483_647.0 {
        return 0.0;
    }
    100.0 / n.ceil()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of opencensus' `ProbabilitySampler` tests (its answers
    /// confirmed by running it), and edge cases of the rule.
    #[test]
    fn opencensus_vectors() {
        let cases = [
            ("f8739df974a4481f98748cd92b27177d", 1.0, true),
            ("f8739df974a4481f98748cd92b27177d", 1e-4, false),
            ("000000000000000000068db8bac710cb", 1e-4, true),
            ("ffffffffffffffff00068db8bac710cb", 1e-4, true),
            ("000000000000000000068db8bac710cc", 1e-4, false),
            ("ffffffffffffffff8000000000000000", 0.5, true),
            ("0000000000000000ffffffffffffffff", 0.5, false),
            ("0af7651916cd43dd8448eb211c80319c", 0.5, false),
            // Rate 0 still samples ids whose low 8 bytes are zero.
            ("ffffffffffffffff0000000000000000", 0.0, true),
            ("ffffffffffffffff0000000000000001", 0.0, false),
            // Comparing as f64 would wrongly sample 2^63 + 1 at 0.5.
            ("00000000000000008000000000000001", 0.5, false),
        ];
        for (hex, rate, want) in cases {
            let id = TraceId::from_hex(hex).unwrap();
            let rule = Sampler::probability(rate).rule(&Clock::System);
            assert_eq!(rule.sample_root(id), want, "{hex} at {rate}");
        }
    }

    #[test]
    fn always_on_and_off() {
        let id = TraceId::from_hex("0000000000000000ffffffffffffffff").unwrap();
        assert!(Sampler::always_on().rule(&Clock::System).sample_root(id));
        assert!(!Sampler::always_off()
            .rule(&Clock::System)
            .sample_root(TraceId::INVALID));
        assert!(matches!(
            Sampler::probability(1.0).rule(&Clock::System),
            SamplingRule::All
        ));
    }

    /// Flag `01` samples even at rate 0 (as in opencensus), and flag `00` is
    /// honoured even at rate 1 (unlike opencensus, which re-samples it).
    #[test]
    fn remote_flag_is_honoured_both_ways() {
        let id = TraceId::from_hex("f8739df974a4481f98748cd92b27177d").unwrap();
        for p in [0.0, 1e-4, 0.5, 1.0] {
            let rule = Sampler::probability(p).rule(&Clock::System);
            assert!(rule.sample_remote(Some(true), id), "{p}");
            assert!(!rule.sample_remote(Some(false), id), "{p}");
        }
        assert!(Sampler::always_off()
            .rule(&Clock::System)
            .sample_remote(Some(true), id));
        assert!(!Sampler::always_on()
            .rule(&Clock::System)
            .sample_remote(Some(false), id));
        // No decision from the caller: the rule on the caller's trace id.
        assert!(!Sampler::probability(1e-4)
            .rule(&Clock::System)
            .sample_remote(None, id));
        let low = TraceId::from_hex("ffffffffffffffff00068db8bac710cb").unwrap();
        assert!(Sampler::probability(1e-4)
            .rule(&Clock::System)
            .sample_remote(None, low));
    }

    #[test]
    fn invalid_probabilities_are_rejected() {
        for p in [-0.1, 1.000_001, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(Sampler::probability(p).validate().is_err(), "{p}");
        }
        for p in [0.0, 1e-4, 0.5, 1.0] {
            assert!(Sampler::probability(p).validate().is_ok(), "{p}");
        }
    }

    /// Application Insights' score and the fixed-percentage decisions, for
    /// the trace ids every SDK was checked against (the `int32` column is
    /// the hash before `abs`).
    #[test]
    fn ai_score_and_fixed_percentage_vectors() {
        #[rustfmt::skip]
        let table: [(&str, i32, f64, &str); 14] = [
            ("00000000000000000000000000000000", 50237189, 0.0233935141, ".YYYYY"),
            ("00000000000000000000000000000001", 50237190, 0.0233935146, ".YYYYY"),
            ("ffffffffffffffffffffffffffffffff", -2146653755, 0.9996135514, "......"),
            ("4bf92f3577b34da6a3ce929d0e0e4736", 718577102, 0.3346135385, "...YYY"),
            ("0af7651916cd43dd8448eb211c80319c", -1133633597, 0.5278892804, "....YY"),
            ("80000000000000000000000000000000", 771018253, 0.3590333524, "...YYY"),
            ("0123456789abcdef0123456789abcdef", 552514569, 0.2572846456, "...YYY"),
            ("fedcba9876543210fedcba9876543210", -508934391, 0.2369910438, "..YYYY"),
            ("a0892a3b3c5b4f3f8b9b1d2e3f405162", -1616680933, 0.7528257248, ".....Y"),
            ("5b8efff798038103d269b633813fc60c", 1936156947, 0.9015933368, ".....Y"),
            ("e6213b73261cf68a7744accfa573084c", 867335221, 0.4038844357, "...YYY"),
            ("1f2e3d4c5b6a79880f1e2d3c4b5a6978", 1831398737, 0.8528114938, ".....Y"),
            ("deadbeefdeadbeefdeadbeefdeadbeef", -653858939, 0.3044767954, "...YYY"),
            ("00000000000000000000000000abcdef", 2029058714, 0.9448540932, ".....Y"),
        ];
        let percentages = [1.0, 10.0, 25.0, 50.0, 75.0, 99.0];
        for (hex, int32, score, decisions) in table {
            let id = TraceId::from_hex(hex).unwrap();
            let want = f64::from(int32.unsigned_abs() as i32) / f64::from(i32::MAX);
            assert!((ai_score(id) - want).abs() < 1e-15, "{hex}");
            assert!((ai_score(id) - score).abs() < 1e-9, "{hex}");
            for (p, d) in percentages.iter().zip(decisions.chars()) {
                let rule = Sampler::fixed_percentage(*p).rule(&Clock::System);
                let kept = rule.decide_root(id);
                assert_eq!(kept.is_some(), d == 'Y', "{hex} at {p}%");
                if let Some(rate) = kept {
                    assert!((rate - p).abs() < 1e-9, "sampleRate {rate} at {p}%");
                }
            }
        }
        let id = TraceId::from_hex("00000000000000000000000000000000").unwrap();
        assert!(Sampler::fixed_percentage(0.0)
            .rule(&Clock::System)
            .is_none());
        assert_eq!(
            Sampler::fixed_percentage(100.0)
                .rule(&Clock::System)
                .decide_root(id),
            Some(100.0)
        );
        for bad in [-1.0, 100.5, f64::NAN] {
            assert!(Sampler::fixed_percentage(bad).validate().is_err(), "{bad}");
        }
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(Sampler::rate_limited(bad).validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn round_down_to_one_over_n() {
        #[rustfmt::skip]
        let cases = [
            (100.0, 100.0), (99.98, 50.0), (75.0, 50.0), (60.0, 50.0), (50.0, 50.0),
            (49.9, 33.333333333333336), (33.4, 33.333333333333336), (33.3333333, 25.0),
            (25.0, 25.0), (12.5, 12.5), (10.0, 10.0), (6.3, 6.25), (1.0, 1.0),
            (0.7, 0.6993006993006993), (0.001, 0.001), (1e-9, 0.0), (0.0, 0.0),
            (16.666666666666664, 14.285714285714286),
        ];
        for (p, want) in cases {
            assert_eq!(round_down(p), want, "{p}");
        }
    }

    /// The limiter's recursion, step by step, against the vectors of the
    /// Application Insights rate limiter (same start state: nothing seen,
    /// at time 0), to 1e-9 relative.
    #[test]
    fn rate_limiter_vectors() {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1e-12);
        let cold = || LimiterState {
            count: 0.0,
            window_ns: 0.0,
            last_ns: 0,
        };
        // (a) cold start at 1/s: (t, count, window, p).
        let mut s = cold();
        #[rustfmt::skip]
        let a = [
            (1_000_000, 1.000000, 1000000.0, 0.1),
            (2_000_000, 1.990050, 1990049.8, 0.1),
            (3_000_000, 2.970249, 2970248.5, 0.1),
            (50_000_000, 2.856412, 48856412.1, 1.694915),
            (100_000_000, 2.732501, 79632911.8, 2.857143),
            (1_000_000_000, 1.000337, 900009827.5, 50.0),
        ];
        for (t, count, window, p) in a {
            let got = limiter_step(&mut s, t, 1e-9, 2e9);
            assert!((s.count - count).abs() < 1e-6, "{t}: {s:?}");
            assert!((s.window_ns - window).abs() < 0.1, "{t}: {s:?}");
            assert!((got - p).abs() < 1e-6, "{t}: {got}");
        }
        // (b) a burst at 5/s from 1 s on, one per ms.
        let mut s = cold();
        let mut seen = Vec::new();
        for t in (1_000_000_000..=1_011_000_000u64).step_by(1_000_000) {
            seen.push((t, limiter_step(&mut s, t, 5e-9, 1e9)));
        }
        let at = |t: u64| seen.iter().find(|(x, _)| *x == t).unwrap().1;
        assert_eq!(at(1_000_000_000), 100.0);
        assert_eq!(at(1_003_000_000), 100.0);
        assert_eq!(at(1_004_000_000), 50.0);
        assert_eq!(at(1_008_000_000), 50.0);
        assert!(close(at(1_009_000_000), 33.333333333333336));
        assert!(close(at(1_011_000_000), 33.333333333333336));
        // (d) the same instant three times at 500 ms, 1/s.
        let mut s = cold();
        let ps: Vec<f64> = (0..3)
            .map(|_| limiter_step(&mut s, 500_000_000, 1e-9, 2e9))
            .collect();
        assert_eq!(ps, [50.0, 25.0, 14.285714285714286]);
        // (e) steady 10 per second at 1/s: 10 % from the first arrival on.
        let mut s = cold();
        for i in 1..=50u64 {
            assert!(
                close(limiter_step(&mut s, i * 100_000_000, 1e-9, 2e9), 10.0),
                "{i}"
            );
        }
        assert!((s.count - 1.5819767).abs() < 1e-6, "{s:?}");
        // (f) a target of 0 keeps nothing.
        let mut s = cold();
        assert_eq!(limiter_step(&mut s, 1, 0.0, 1e9), 0.0);
    }

    /// What this crate does better: the first trace after start is kept,
    /// a pause lets through about one second's worth, not the whole pause's.
    #[test]
    fn the_limiter_starts_warm_and_caps_a_pause() {
        let clock = crate::pipeline::ManualClock::new();
        let limiter = RateLimiter::new(2.0, Clock::Manual(clock.clone()));
        clock.advance(std::time::Duration::from_micros(50));
        assert_eq!(limiter.percentage(), 100.0, "warm: kept");
        // A minute idle, then a burst one microsecond apart.
        clock.advance(std::time::Duration::from_secs(60));
        let mut at_full = 0;
        for _ in 0..100 {
            clock.advance(std::time::Duration::from_micros(1));
            if limiter.percentage() == 100.0 {
                at_full += 1;
            }
        }
        assert!(
            (1..=2).contains(&at_full),
            "{at_full} at 100 % after the pause"
        );
    }
}
