//! The process-level calls that need `unsafe`: writing the process environment and mapping a
//! file into memory. Kept here so that every other module outside [`crate::cpu`] and
//! [`crate::allocator`] is free of `unsafe`.

use std::path::Path;

use candle_core::safetensors::MmapedSafetensors;

/// Sets environment variables of this process.
///
/// Call it before other threads could read the environment through C (`getenv`): std
/// serialises its own reads and writes, C code does not.
pub(crate) fn set_env(pairs: &[(&str, &str)]) {
    for (name, value) in pairs {
        // SAFETY: callers run this once at start-up (threads::init, under its OnceLock) or in
        // tests on names no other code reads; std serialises its own environment access.
        unsafe { std::env::set_var(name, value) };
    }
}

/// Maps a safetensors file read-only.
pub(crate) fn map_safetensors(path: &Path) -> candle_core::Result<MmapedSafetensors> {
    // SAFETY: the file is mapped read-only; like every mmap-based loader (transformers,
    // candle) we rely on it not being truncated by another process while loading.
    unsafe { MmapedSafetensors::new(path) }
}
