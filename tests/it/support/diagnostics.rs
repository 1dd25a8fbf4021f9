//! The crate's own diagnostics, as a test sees them: a layer that keeps
//! every event of the target `tracing_appinsights`, with all its fields.
//!
//! The exporter's worker reports through the global subscriber, so a test
//! that reads its diagnostics installs this one globally, in a process of
//! its own ([`super::child::own_process`]).

use std::sync::{Arc, Mutex};

use tracing::Level;

/// This crate's events, as (level, text): the message, then
/// ` name=value` for each other field (`dir`, `error`, …).
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<(Level, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "tracing_appinsights" {
            return;
        }
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0.insert_str(0, &format!("{value:?}"));
                } else {
                    self.0 += &format!(" {}={value:?}", field.name());
                }
            }
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), text.0));
    }
}

impl Captured {
    /// Every event so far.
    pub fn all(&self) -> Vec<(Level, String)> {
        self.0.lock().unwrap().clone()
    }

    /// The events whose text contains `text`.
    pub fn with(&self, text: &str) -> Vec<(Level, String)> {
        let mut events = self.all();
        events.retain(|(_, t)| t.contains(text));
        events
    }

    /// The levels of the events whose text contains `text`, in order.
    pub fn levels(&self, text: &str) -> Vec<Level> {
        self.with(text)
            .into_iter()
            .map(|(level, _)| level)
            .collect()
    }
}
