//! Re-parenting an existing span on a remote context (the propagation
//! API's [`WithContext`]), and reading a span's context for injection.

use tracing_core::span::Id;
use tracing_core::{Dispatch, Subscriber};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use super::state::SpanState;
use super::{AppInsightsLayer, Origin, UnsampledRemote};
use crate::propagation::{RemoteContext, WithContext};
use crate::record::SpanContext;

fn forget_child<S>(span: &SpanRef<'_, S>)
where
    S: for<'a> LookupSpan<'a>,
{
    if let Some(parent) = span.parent() {
        if let Some(state) = parent.extensions_mut().get_mut::<SpanState>() {
            let count = &mut state.data.child_span_count;
            *count = count.saturating_sub(1);
        }
    }
}

/// Whether `span` is entered on this thread: it is the current span or
/// one of its ancestors.
fn is_entered_here<S>(subscriber: &S, span: &SpanRef<'_, S>) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let current = subscriber.current_span();
    let Some(current) = current.id().and_then(|id| subscriber.span(id)) else {
        return false;
    };
    let id = span.id();
    current.scope().any(|s| s.id() == id)
}

/// Why a call to re-parent a span was ignored (a debug event says so).
#[derive(Debug)]
enum Refused {
    AlreadyUsed,
    Entered,
    NotOurs,
}

impl<S> AppInsightsLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    // === re-parenting an existing span (the propagation API) ===

    /// [`WithContext::set_parent`] for this layer's subscriber type.
    pub(super) fn set_parent_erased(dispatch: &Dispatch, id: &Id, remote: RemoteContext) -> bool
    where
        S: 'static,
    {
        let (Some(subscriber), Some(layer)) = (
            dispatch.downcast_ref::<S>(),
            dispatch.downcast_ref::<AppInsightsLayer<S>>(),
        ) else {
            return false;
        };
        let Some(span) = subscriber.span(id) else {
            return false;
        };
        match layer.set_remote_parent(subscriber, &span, remote) {
            Ok(()) => true,
            Err(why) => {
                let name = span.name();
                drop(span);
                tracing::debug!(
                    target: "tracing_appinsights",
                    span = name,
                    reason = ?why,
                    "Propagation.SetParentIgnored: a remote parent must be set before \
                     the span is entered or used; the span keeps its parent"
                );
                false
            }
        }
    }

    /// [`WithContext::context`] for this layer's subscriber type.
    pub(super) fn context_erased(dispatch: &Dispatch, id: &Id) -> Option<SpanContext>
    where
        S: 'static,
    {
        let subscriber = dispatch.downcast_ref::<S>()?;
        let layer = dispatch.downcast_ref::<AppInsightsLayer<S>>()?;
        let span = subscriber.span(id)?;
        if crate::diag::is_own_target(span.metadata().target()) {
            return None;
        }
        Some(layer.context_of(&span, true))
    }

    /// The functions [`WithContext`] hands out for this subscriber type.
    pub(super) const WITH_CONTEXT: WithContext = WithContext {
        set_parent: Self::set_parent_erased,
        context: Self::context_erased,
    };

    fn set_remote_parent(
        &self,
        subscriber: &S,
        span: &SpanRef<'_, S>,
        remote: RemoteContext,
    ) -> Result<(), Refused> {
        if crate::diag::is_own_target(span.metadata().target()) {
            return Err(Refused::NotOurs);
        }
        let sampled = self.rule.sample_remote(remote.sampled, remote.trace_id);
        if is_entered_here(subscriber, span) {
            return Err(Refused::Entered);
        }
        let mut ext = span.extensions_mut();
        if let Some(state) = ext.get_mut::<SpanState>() {
            if state.context_used() {
                return Err(Refused::AlreadyUsed);
            }
            let had_local_parent = if sampled {
                state.reparent(remote)
            } else {
                let had_local_parent = state.data.parent_span_id.is_some() && !state.remote_parent;
                ext.remove::<SpanState>();
                self.live.remove(&span.id());
                ext.replace(UnsampledRemote::new(&remote));
                had_local_parent
            };
            drop(ext);
            if had_local_parent {
                forget_child(span);
            }
            return Ok(());
        }
        drop(ext);
        if sampled {
            self.upgrade(span, remote);
        } else {
            span.extensions_mut().replace(UnsampledRemote::new(&remote));
        }
        Ok(())
    }

    /// Makes an unsampled span sampled, as a child of `remote`. Its fields
    /// given at creation were never visited: they are lost. It keeps the
    /// span id it had as an unsampled span, in case it was already seen.
    fn upgrade(&self, span: &SpanRef<'_, S>, remote: RemoteContext) {
        let data = self.queue.pool.take().unwrap_or_default();
        let span_id = self.id_keys.span_id(&span.id());
        let state = self.blank_state(data, span.metadata(), Origin::Remote(remote), span_id);
        // Counted before it becomes visible (see `LiveSampled::none_alive`).
        let id = span.id();
        self.live.insert(&id);
        let mut ext = span.extensions_mut();
        ext.remove::<UnsampledRemote>();
        if ext.replace(state).is_some() {
            // Another thread upgraded it at the same time: one state counts.
            self.live.remove(&id);
        }
    }
}
