//! The crate's own diagnostics: the target they are logged under (the
//! layer never records it, so the exporter never exports its own
//! activity) and the flags that keep each kind of trouble to one warning.

use std::sync::atomic::{AtomicBool, Ordering};

/// The target of every diagnostic this crate logs.
pub(crate) const TARGET: &str = crate::targets::DIAGNOSTICS;

/// Whether `target` is the exporter's own diagnostics' ([`TARGET`] exactly):
/// not the crate's instrumentation (`tracing_appinsights::http::…`), and not
/// a crate whose name only starts alike.
#[inline]
pub(crate) fn is_own_target(target: &str) -> bool {
    target == TARGET
}

/// A line the exporter says once about its own setup (where the data goes),
/// logged by `build()` when a subscriber is there to hear it, else by the
/// worker when the first records arrive (by then the application has
/// installed its subscriber: records come through it).
#[derive(Debug, Clone)]
pub(crate) struct Note {
    /// A warning (data goes nowhere the user may expect) or information.
    pub(crate) warn: bool,
    pub(crate) text: String,
}

impl Note {
    /// Logs it now, to the calling thread's subscriber.
    pub(crate) fn emit(&self) {
        if self.warn {
            tracing::warn!(target: TARGET, "{}", self.text);
        } else {
            tracing::info!(target: TARGET, "{}", self.text);
        }
    }

    /// Logs `notes` now if the calling thread has a subscriber; else gives
    /// them back, for later.
    pub(crate) fn emit_if_heard(notes: Vec<Note>) -> Vec<Note> {
        let heard =
            tracing::dispatcher::get_default(|d| !d.is::<tracing_core::subscriber::NoSubscriber>());
        if !heard {
            return notes;
        }
        for note in &notes {
            note.emit();
        }
        Vec::new()
    }
}

/// Remembers whether a kind of trouble was already reported at warning
/// level; later reports of it go to debug level, so a dead endpoint or a
/// full disk does not flood the logs.
#[derive(Debug, Default)]
pub(crate) struct Once(AtomicBool);

impl Once {
    /// `true` the first time only.
    #[inline]
    pub(crate) fn first(&self) -> bool {
        !self.0.load(Ordering::Relaxed) && !self.0.swap(true, Ordering::Relaxed)
    }

    /// Logs `message` as a warning the first time, at debug level after.
    pub(crate) fn warn(&self, message: std::fmt::Arguments<'_>) {
        if self.first() {
            tracing::warn!(target: TARGET, "{message}");
        } else {
            tracing::debug!(target: TARGET, "{message}");
        }
    }

    /// Logs `message` as an error the first time, at debug level after.
    pub(crate) fn error(&self, message: std::fmt::Arguments<'_>) {
        if self.first() {
            tracing::error!(target: TARGET, "{message}");
        } else {
            tracing::debug!(target: TARGET, "{message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_target_is_the_diagnostics_target_only() {
        assert!(is_own_target("tracing_appinsights"));
        assert!(!is_own_target(crate::targets::HTTP_SERVER));
        assert!(!is_own_target(crate::targets::HTTP_CLIENT));
        assert!(!is_own_target("tracing_appinsights_demo"));
        assert!(!is_own_target("tracing_appinsights_demo::handlers"));
        assert!(!is_own_target("app"));
    }

    #[test]
    fn once_is_first_only_once() {
        let once = Once::default();
        assert!(once.first());
        assert!(!once.first());
        assert!(!once.first());
    }
}
