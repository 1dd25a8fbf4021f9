//! [`CacheAligned`]: a value alone on its cache line, for the counters
//! several threads write (the queue's, the stats', Live Metrics').

/// A value alone on its cache line (64 bytes on the targets that matter),
/// so that writes to it do not slow down readers of its neighbours.
#[repr(align(64))]
#[derive(Default, Debug)]
pub(crate) struct CacheAligned<T>(pub(crate) T);

impl<T> std::ops::Deref for CacheAligned<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}
