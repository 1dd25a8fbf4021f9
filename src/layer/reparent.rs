//! Re-parenting an existing span on a remote context (the propagation
//! API's [`WithContext`]), and reading a span's context for injection.

use tracing_core::span::Id;
use tracing_core::{Dispatch, Subscriber};
use tracing_subscriber::registry::{ExtensionsMut, LookupSpan, SpanRef};

use super::state::SpanState;
use super::{AppInsightsLayer, Origin, UnsampledRemote};
use crate::propagation::{RemoteContext, WithContext};
use crate::record::SpanContext;

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

    /// Re-parents `span`. Its extensions stay locked throughout, so two
    /// threads re-parenting one span take turns.
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
        let id = span.id();
        let mut ext = span.extensions_mut();
        let had_local_parent = match self.locked_state(&id, &mut ext, |s| s.context_used()) {
            Some(true) => return Err(Refused::AlreadyUsed),
            Some(false) if sampled => self.locked_state(&id, &mut ext, |s| s.reparent(remote)),
            Some(false) => {
                // It may be entered on another thread, whose list keeps its
                // entry: the lists are no longer complete and exact.
                self.upgraded
                    .store(true, std::sync::atomic::Ordering::Release);
                let state = self.take_locked(&id, &mut ext);
                ext.replace(UnsampledRemote::new(&remote));
                state.map(|s| s.data.parent_span_id.is_some() && !s.remote_parent)
            }
            None if sampled => {
                self.upgrade(span, &mut ext, remote);
                None
            }
            None => {
                ext.replace(UnsampledRemote::new(&remote));
                None
            }
        };
        drop(ext);
        if had_local_parent == Some(true) {
            // The old parent has one child fewer.
            if let Some(parent) = span.parent() {
                self.state_in(&parent, |state| {
                    let count = &mut state.data.child_span_count;
                    *count = count.saturating_sub(1);
                });
            }
        }
        Ok(())
    }

    /// Runs `f` on the span's state, its extensions locked by the caller.
    fn locked_state<R>(
        &self,
        id: &Id,
        ext: &mut ExtensionsMut<'_>,
        f: impl FnOnce(&mut SpanState) -> R,
    ) -> Option<R> {
        match self.table.with(id, f) {
            Ok(r) => Some(r),
            Err(f) => ext.get_mut::<SpanState>().map(f),
        }
    }

    /// Takes the span's state out, its extensions locked by the caller.
    fn take_locked(&self, id: &Id, ext: &mut ExtensionsMut<'_>) -> Option<SpanState> {
        self.table.remove(id).or_else(|| self.take_overflowed(ext))
    }

    /// Makes an unsampled span sampled, as a child of `remote`. Its fields
    /// given at creation were never visited: they are lost. It keeps the
    /// span id it had as an unsampled span, in case it was already seen.
    fn upgrade(&self, span: &SpanRef<'_, S>, ext: &mut ExtensionsMut<'_>, remote: RemoteContext) {
        // It may be entered on another thread, unknown to `entered`.
        self.upgraded
            .store(true, std::sync::atomic::Ordering::Release);
        let data = self.queue.pool.take().unwrap_or_default();
        let span_id = self.id_keys.span_id(&span.id());
        let (mut state, source) =
            self.blank_state(data, span.metadata(), Origin::Remote(remote), span_id);
        state.set_source(source);
        state.refresh_operation_name();
        ext.remove::<UnsampledRemote>();
        self.untrack(&span.id(), ext);
        if let Err(state) = self.table.insert(&span.id(), state) {
            self.overflow_into(ext, state);
        }
    }
}
