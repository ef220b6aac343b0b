//! The worker-thread count, resolved once per process.
//!
//! candle asks `candle_core::utils::get_num_threads()` on every CPU matrix multiply. With
//! `RAYON_NUM_THREADS` unset it falls back to `num_cpus::get_physical()`, which opens and parses
//! `/proc/cpuinfo` on every call (README, "Threads"). [`init`] resolves the count
//! once and publishes it in `RAYON_NUM_THREADS`, so every later lookup (candle's, rayon's, ours)
//! reads the environment instead of `/proc`.
//!
//! [`Classifier`](crate::Classifier) loading and [`train`](crate::train::train) call [`init`]
//! themselves; a program that wants another count, or wants the environment written before it
//! starts threads of its own, calls it first thing in `main`.

use std::sync::OnceLock;

use crate::error::{Error, Result};

const RAYON_ENV: &str = "RAYON_NUM_THREADS";
const CANDLE_ENV: &str = "CANDLE_NUM_THREADS";

static THREADS: OnceLock<usize> = OnceLock::new();

/// Fixes the number of worker threads for this process and returns it.
///
/// `requested` wins; otherwise a positive `RAYON_NUM_THREADS` is kept; otherwise the number of
/// physical cores, capped by the CPUs this process may run on (affinity mask, cgroup quota).
/// The first call decides: later calls return the same count, and fail if they request another.
///
/// Writes `RAYON_NUM_THREADS` (and, for an explicit request, `CANDLE_NUM_THREADS`) into the
/// process environment and sizes rayon's global pool. Call it before starting threads that read
/// the environment through C's `getenv`; Rust's own environment access is synchronised.
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// let threads = standpoint::threads::init(None)?;
/// assert_eq!(threads, rayon::current_num_threads());
/// assert_eq!(threads, standpoint::threads::init(None)?);
/// # Ok(()) }
/// ```
pub fn init(requested: Option<usize>) -> Result<usize> {
    if requested == Some(0) {
        return Err(Error::InvalidOption {
            option: "threads",
            reason: "must be at least 1".into(),
        });
    }
    let count = *THREADS.get_or_init(|| resolve(requested));
    match requested {
        Some(wanted) if wanted != count => Err(Error::InvalidOption {
            option: "threads",
            reason: format!("{wanted} requested, but this process already runs {count} threads"),
        }),
        _ => Ok(count),
    }
}

/// The thread count [`init`] fixed, resolving it now (with no request) if nothing has yet.
pub fn count() -> usize {
    match THREADS.get() {
        Some(&count) => count,
        // A failure needs a request, and there is none here.
        None => init(None).unwrap_or(1),
    }
}

fn env_count(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .filter(|&count| count > 0)
}

fn default_count() -> usize {
    let allowed = std::thread::available_parallelism().map_or(1, usize::from);
    num_cpus::get_physical().clamp(1, allowed)
}

fn resolve(requested: Option<usize>) -> usize {
    let wanted = requested.or_else(|| env_count(RAYON_ENV));
    let mut count = wanted.unwrap_or_else(default_count);
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(count)
        .build_global()
        .is_ok();
    if !built {
        // The program sized rayon's global pool itself: that is the count in effect (and
        // `init` refuses a request for another).
        count = rayon::current_num_threads();
    }
    publish(count, requested.is_some());
    count
}

fn publish(count: usize, explicit: bool) {
    let value = count.to_string();
    // Runs once per process, under the OnceLock; the docs of `init` ask callers to run it
    // before C threads start.
    crate::os::set_env(&[(RAYON_ENV, &value)]);
    if explicit {
        crate::os::set_env(&[(CANDLE_ENV, &value)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_count_ignores_zero_and_garbage() {
        // This test's variable name is used by no other code.
        crate::os::set_env(&[("STANDPOINT_TEST_THREADS", "0")]);
        assert_eq!(env_count("STANDPOINT_TEST_THREADS"), None);
        crate::os::set_env(&[("STANDPOINT_TEST_THREADS", "x")]);
        assert_eq!(env_count("STANDPOINT_TEST_THREADS"), None);
        crate::os::set_env(&[("STANDPOINT_TEST_THREADS", " 3 ")]);
        assert_eq!(env_count("STANDPOINT_TEST_THREADS"), Some(3));
    }

    #[test]
    fn zero_threads_is_refused() {
        assert!(matches!(
            init(Some(0)),
            Err(Error::InvalidOption {
                option: "threads",
                ..
            })
        ));
    }
}
