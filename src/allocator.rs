//! The allocator the `standpoint` binary and the benchmarks install, and its one setting.
//!
//! Tensors are freed and allocated again every batch and every training step. glibc returns
//! large blocks to the OS and pays a page fault per 4 KiB page to get them back; mimalloc
//! reuses them, but by default it still hands freed pages back ("purges") 10 ms after they
//! fall idle, which costs the same faults plus the kernel zeroing every page again
//! (152,000 faults and a quarter of the CPU time in 7 training steps; `perf stat -e
//! page-faults,task-clock` of the `cargo bench --bench train` binary, `--steps 4`).
//!
//! ```
//! #[global_allocator]
//! static ALLOCATOR: standpoint::allocator::MiMalloc = standpoint::allocator::MiMalloc;
//!
//! fn main() {
//!     standpoint::allocator::keep_freed_pages();
//!     // ... load a model, classify, train ...
//! }
//! ```

pub use mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the same index in its v2 and v3 headers).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to return freed pages to the OS, so the next batch reuses them
/// without page faults. Peak memory is unchanged (the pages were in use at the peak); idle
/// memory stays at that peak until the process exits, which suits a batch job.
///
/// Harmless when mimalloc is linked but not the global allocator.
pub fn keep_freed_pages() {
    // SAFETY: mi_option_set only stores an integer in mimalloc's option table; any thread,
    // any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}
