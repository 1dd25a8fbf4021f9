//! The crate's own diagnostics as a test sees them: a layer for the
//! global subscriber of a test's own process ([`super::child`]) that keeps
//! every event of target `tracing_appinsights` as (level, message).

use std::sync::{Arc, Mutex};

use tracing::Level;

/// This crate's events, as (level, message).
#[derive(Clone, Default)]
pub struct Diagnostics(Arc<Mutex<Vec<(Level, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Diagnostics {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "tracing_appinsights" {
            return;
        }
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                } else {
                    self.0.push_str(&format!(" {}={value:?}", field.name()));
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), message.0));
    }
}

impl Diagnostics {
    /// Installs a new one as this process's global subscriber (call it in
    /// a test's own process only).
    pub fn install() -> Diagnostics {
        use tracing_subscriber::prelude::*;
        let diagnostics = Diagnostics::default();
        tracing_subscriber::registry()
            .with(diagnostics.clone())
            .try_init()
            .expect("the only global subscriber of this process");
        diagnostics
    }

    /// The events whose message contains `text`.
    pub fn with(&self, text: &str) -> Vec<(Level, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| m.contains(text))
            .cloned()
            .collect()
    }

    /// Every event so far.
    pub fn all(&self) -> Vec<(Level, String)> {
        self.0.lock().unwrap().clone()
    }

    /// The levels of the events whose message contains `text`, in order.
    pub fn levels(&self, text: &str) -> Vec<Level> {
        self.with(text)
            .into_iter()
            .map(|(level, _)| level)
            .collect()
    }
}
