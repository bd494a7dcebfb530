//! The parallelism setting shared by all algorithms.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// How many threads an algorithm may use (rayon underneath).
///
/// Algorithms take this as a config field; results never depend on it (deterministic
/// reductions), only the wall time does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Parallelism {
    /// rayon's global pool (all cores unless `RAYON_NUM_THREADS` says otherwise).
    #[default]
    Auto,
    /// One thread: the calling one.
    Sequential,
    /// A dedicated pool with this many threads (0 is treated as 1).
    Threads(usize),
}

impl Parallelism {
    /// Runs `f` under this setting: inside a dedicated pool for `Threads(n)` and `Sequential`,
    /// directly (global pool) for `Auto`. Rayon calls inside `f` use that pool.
    pub fn install<R: Send>(self, f: impl FnOnce() -> R + Send) -> Result<R> {
        match self {
            Parallelism::Auto => Ok(f()),
            Parallelism::Sequential => Self::pool(1).map(|p| p.install(f)),
            Parallelism::Threads(n) => Self::pool(n.max(1)).map(|p| p.install(f)),
        }
    }

    /// The number of threads this setting runs on.
    pub fn threads(self) -> usize {
        match self {
            Parallelism::Auto => rayon::current_num_threads(),
            Parallelism::Sequential => 1,
            Parallelism::Threads(n) => n.max(1),
        }
    }

    fn pool(n: usize) -> Result<rayon::ThreadPool> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| Error::ThreadPool(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_setting_is_honoured() {
        let n = Parallelism::Threads(3)
            .install(rayon::current_num_threads)
            .unwrap();
        assert_eq!(n, 3);
        let n = Parallelism::Sequential
            .install(rayon::current_num_threads)
            .unwrap();
        assert_eq!(n, 1);
    }
}
