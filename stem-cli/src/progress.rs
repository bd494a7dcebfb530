//! A progress bar that implements the stem-core observer.

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use stem_core::Progress;

/// Draws an indicatif bar per stage on stderr (hidden when `quiet` or stderr is not a terminal)
/// and cancels the running operation on Ctrl-C.
pub struct Bar {
    bar: Mutex<Option<ProgressBar>>,
    quiet: bool,
    interrupted: Arc<AtomicBool>,
}

impl Bar {
    /// A new observer. The first one created installs a Ctrl-C handler that asks the running
    /// operation to stop (it then returns `Error::Cancelled`).
    pub fn new(quiet: bool) -> Self {
        let interrupted = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&interrupted);
        if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
            log::debug!("no Ctrl-C handler: {e}");
        }
        Bar {
            bar: Mutex::new(None),
            quiet,
            interrupted,
        }
    }

    /// Finishes the current stage's bar, if any.
    pub fn finish(&self) {
        if let Ok(mut g) = self.bar.lock()
            && let Some(b) = g.take()
        {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn start(&self, stage: &str, total: u64) {
        let Ok(mut g) = self.bar.lock() else { return };
        if let Some(b) = g.take() {
            b.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        let b = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_prefix(stage.to_string());
        *g = Some(b);
    }

    fn advance(&self, n: u64) {
        if let Ok(g) = self.bar.lock()
            && let Some(b) = g.as_ref()
        {
            b.inc(n);
        }
    }

    fn is_cancelled(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }
}
