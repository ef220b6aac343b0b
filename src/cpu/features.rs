//! The CPU's instruction-set extensions, detected once: the one place kernels ask which of
//! their compiled variants may run.

use std::sync::OnceLock;

/// What the running CPU offers, as the kernels need it.
///
/// ```
/// let features = standpoint::cpu::features::detected();
/// let int8 = if features.avx512_vnni { "VNNI kernels" } else { "scalar kernels" };
/// println!("int8 runs on {int8}");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// AVX-512 Foundation.
    pub avx512f: bool,
    /// AVX-512 vector-length extensions (256- and 128-bit forms).
    pub avx512vl: bool,
    /// AVX-512 VNNI (int8 dot products), together with AVX-512 F.
    pub avx512_vnni: bool,
    /// AVX2 with FMA.
    pub avx2_fma: bool,
    /// AMX tiles with int8 (CPUID only; the OS must still grant the tile registers).
    pub amx_int8: bool,
}

/// The features of this CPU, detected on first use.
pub fn detected() -> &'static Features {
    static FEATURES: OnceLock<Features> = OnceLock::new();
    FEATURES.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Features {
    use std::arch::is_x86_feature_detected as has;
    let avx512f = has!("avx512f");
    #[allow(unused_unsafe)] // `__cpuid_count` is safe in newer Rust
    // SAFETY: CPUID leaf 7 exists on every x86-64 CPU that reports it as the maximum leaf or
    // more, and reading it has no side effects; older CPUs report zeros there.
    let leaf = unsafe { std::arch::x86_64::__cpuid_count(7, 0) };
    Features {
        avx512f,
        avx512vl: avx512f && has!("avx512vl"),
        avx512_vnni: avx512f && has!("avx512vnni"),
        avx2_fma: has!("avx2") && has!("fma"),
        amx_int8: leaf.edx & (1 << 24) != 0 && leaf.edx & (1 << 25) != 0,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Features {
    Features::default()
}
