//! The floor rung of the layer benchmark (`benches/layer.rs`, and
//! `examples/span_cost.rs` for callgrind): [`FloorLayer`].

/// The least a layer can do for a *sampled* span when it keeps the span's
/// state in the registry's extensions (as `AppInsightsLayer` does): look
/// the span up, visit its fields, read its parent's extension (where the
/// sampling decision it inherits is kept), insert one small extension; for
/// an event, look its span up, take the extension's lock, visit its fields
/// and format its message; at close, look the span up and remove the
/// extension.
///
/// It keeps nothing it visits (no ids, no clock, no record, no queue), so
/// it is a floor for the `ours_sampled` rung of `benches/layer.rs`: no
/// layer built on extensions and `Visit` can be cheaper.
#[derive(Debug, Default)]
#[allow(dead_code)] // each including target uses what it needs
pub struct FloorLayer;

/// The one-word extension [`FloorLayer`] keeps per span.
struct FloorState {
    fields: usize,
}

/// A visitor that counts fields and formats `message` into a stack buffer.
#[derive(Default)]
struct FloorVisitor {
    fields: usize,
    message: StackText,
}

/// A fixed buffer that keeps the first 64 bytes written to it.
struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl tracing_core::field::Visit for FloorVisitor {
    fn record_debug(&mut self, field: &tracing_core::Field, value: &dyn std::fmt::Debug) {
        self.fields += 1;
        if field.name() == "message" {
            use std::fmt::Write;
            let _ = write!(self.message, "{value:?}");
        }
    }
    fn record_str(&mut self, _: &tracing_core::Field, value: &str) {
        self.fields += value.len().min(1);
    }
    fn record_u64(&mut self, _: &tracing_core::Field, value: u64) {
        self.fields += (value != u64::MAX) as usize;
    }
    fn record_bool(&mut self, _: &tracing_core::Field, value: bool) {
        self.fields += value as usize;
    }
}

impl<S> tracing_subscriber::Layer<S> for FloorLayer
where
    S: tracing_core::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing_core::span::Attributes<'_>,
        id: &tracing_core::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut visitor = FloorVisitor::default();
        attrs.record(&mut visitor);
        if let Some(span) = ctx.span(id) {
            // A child inherits its parent's decision, kept in the parent's
            // extensions (design §4).
            let inherited = span
                .parent()
                .and_then(|parent| parent.extensions().get::<FloorState>().map(|s| s.fields))
                .unwrap_or(0);
            span.extensions_mut().insert(FloorState {
                fields: std::hint::black_box(visitor.fields + inherited),
            });
        }
    }

    fn on_event(
        &self,
        event: &tracing_core::Event<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut visitor = FloorVisitor::default();
        event.record(&mut visitor);
        std::hint::black_box(&visitor.message.buf[..visitor.message.len]);
        if let Some(span) = ctx.event_span(event) {
            if let Some(state) = span.extensions_mut().get_mut::<FloorState>() {
                state.fields += visitor.fields;
            }
        }
    }

    fn on_close(&self, id: tracing_core::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            let state = span.extensions_mut().remove::<FloorState>();
            std::hint::black_box(state.map(|s| s.fields));
        }
    }
}
