//! Progress observers that can cancel long operations.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Receives progress from long operations and can ask them to stop.
///
/// Library code calls [`start`](Progress::start) once with the number of work units,
/// [`advance`](Progress::advance) as units complete (possibly from several threads), and polls
/// [`is_cancelled`](Progress::is_cancelled) between units; a cancelled operation returns
/// [`Error::Cancelled`] and leaves its inputs untouched. All methods have no-op defaults.
pub trait Progress: Sync {
    /// A new stage begins with `total` work units, described by `stage`.
    fn start(&self, _stage: &str, _total: u64) {}
    /// `n` more units are done.
    fn advance(&self, _n: u64) {}
    /// Whether the caller asked to stop.
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// An observer that ignores progress and never cancels.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// Returns `Err(Error::Cancelled)` if the observer asks to stop.
pub fn check_cancel(progress: &dyn Progress) -> Result<()> {
    if progress.is_cancelled() {
        Err(Error::Cancelled)
    } else {
        Ok(())
    }
}

/// A thread-safe observer that counts progress and cancels on request, for embedding and tests.
///
/// ```
/// use stem_core::{CancelFlag, Progress};
/// let flag = CancelFlag::default();
/// flag.start("work", 10);
/// flag.advance(3);
/// assert_eq!(flag.done(), 3);
/// flag.cancel();
/// assert!(flag.is_cancelled());
/// ```
#[derive(Debug, Default)]
pub struct CancelFlag {
    cancelled: AtomicBool,
    total: AtomicU64,
    done: AtomicU64,
    cancel_after: Option<u64>,
}

impl CancelFlag {
    /// An observer that cancels itself once `units` units have been reported done.
    pub fn cancel_after(units: u64) -> Self {
        CancelFlag {
            cancel_after: Some(units),
            ..Default::default()
        }
    }
    /// Asks the operation to stop.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }
    /// Units reported done so far (over all stages).
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }
    /// Total units announced by the latest stage.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }
}

impl Progress for CancelFlag {
    fn start(&self, _stage: &str, total: u64) {
        self.total.store(total, Ordering::SeqCst);
    }
    fn advance(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::SeqCst) + n;
        if let Some(limit) = self.cancel_after
            && done >= limit
        {
            self.cancel();
        }
    }
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}
