//! Head sampling, decided once per trace in `on_new_span`.
//!
//! * A span with a local parent inherits the parent's decision.
//! * A span with a remote parent honours the parent's sampled flag, both ways.
//! * A new root applies OpenCensus' `ProbabilitySampler` rule to its trace
//!   id: the low 8 bytes, read big-endian, sample when `<= floor(p * u64::MAX)`.

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

    /// The probability this sampler records a new trace with, as a fraction.
    pub fn ratio(&self) -> f64 {
        match self.0 {
            Kind::AlwaysOn => 1.0,
            Kind::AlwaysOff => 0.0,
            Kind::Probability(p) => p,
        }
    }

    /// Checks the probability; `Err(p)` when it is outside `[0, 1]` or NaN.
    pub(crate) fn validate(self) -> Result<Self, f64> {
        match self.0 {
            Kind::Probability(p) if !(0.0..=1.0).contains(&p) => Err(p),
            _ => Ok(self),
        }
    }

    /// The decision rule, with the bound computed once.
    pub(crate) fn rule(&self) -> SamplingRule {
        match self.0 {
            Kind::AlwaysOn => SamplingRule::All,
            Kind::AlwaysOff => SamplingRule::None,
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
        }
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::always_on()
    }
}

/// A sampler reduced to one comparison for the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SamplingRule {
    All,
    None,
    AtMost(u64),
}

impl SamplingRule {
    /// The decision for a new root with this trace id.
    #[inline]
    pub(crate) fn sample_root(self, trace_id: TraceId) -> bool {
        self.sample_low_bits(trace_id.to_int() as u64)
    }

    /// The decision for a span with a remote parent: the caller's sampled
    /// flag, both ways; when the caller sent none (a legacy
    /// `Request-Id`), the rule applied to the caller's trace id.
    ///
    /// OpenCensus re-samples an unsampled remote parent; we honour it, so a
    /// trace the caller dropped is not half-recorded downstream.
    #[inline]
    pub(crate) fn sample_remote(self, sampled: Option<bool>, trace_id: TraceId) -> bool {
        sampled.unwrap_or_else(|| self.sample_root(trace_id))
    }

    /// The decision from the low 64 bits of a trace id (compared as an
    /// integer: comparing as `f64` would round them and answer differently
    /// near the bound, e.g. for `2^63 + 1` at 0.5).
    #[inline]
    pub(crate) fn sample_low_bits(self, low: u64) -> bool {
        match self {
            SamplingRule::All => true,
            SamplingRule::None => false,
            SamplingRule::AtMost(bound) => low <= bound,
        }
    }
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
            let rule = Sampler::probability(rate).rule();
            assert_eq!(rule.sample_root(id), want, "{hex} at {rate}");
        }
    }

    #[test]
    fn always_on_and_off() {
        let id = TraceId::from_hex("0000000000000000ffffffffffffffff").unwrap();
        assert!(Sampler::always_on().rule().sample_root(id));
        assert!(!Sampler::always_off().rule().sample_root(TraceId::INVALID));
        assert_eq!(Sampler::probability(1.0).rule(), SamplingRule::All);
    }

    /// Flag `01` samples even at rate 0 (as in opencensus), and flag `00` is
    /// honoured even at rate 1 (unlike opencensus, which re-samples it).
    #[test]
    fn remote_flag_is_honoured_both_ways() {
        let id = TraceId::from_hex("f8739df974a4481f98748cd92b27177d").unwrap();
        for p in [0.0, 1e-4, 0.5, 1.0] {
            let rule = Sampler::probability(p).rule();
            assert!(rule.sample_remote(Some(true), id), "{p}");
            assert!(!rule.sample_remote(Some(false), id), "{p}");
        }
        assert!(Sampler::always_off().rule().sample_remote(Some(true), id));
        assert!(!Sampler::always_on().rule().sample_remote(Some(false), id));
        // No decision from the caller: the rule on the caller's trace id.
        assert!(!Sampler::probability(1e-4).rule().sample_remote(None, id));
        let low = TraceId::from_hex("ffffffffffffffff00068db8bac710cb").unwrap();
        assert!(Sampler::probability(1e-4).rule().sample_remote(None, low));
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
}
