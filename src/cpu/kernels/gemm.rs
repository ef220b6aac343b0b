//! Strided f32 matrix products through the `gemm` crate.

/// `dst (m × n) = [dst +] scale · lhs (m × k) · rhs (k × n)`, each matrix given by its first
/// element and its row and column strides; on rayon's threads if `parallel`, else on this one.
/// Unless `accumulate`, `dst` is only written, so it may be uninitialised.
///
/// # Safety
/// Every element the strides reach must lie inside the allocation behind its pointer, and
/// `dst` must not overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matrix_product(
    (m, n, k): (usize, usize, usize),
    dst: (*mut f32, usize, usize),
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
    scale: f32,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let threads = crate::threads::count();
    let parallelism = if parallel && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.2 as isize,
            dst.1 as isize,
            accumulate,
            lhs.0,
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0,
            rhs.2 as isize,
            rhs.1 as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// [`matrix_product`] on this thread: attention's per-head products, a task each.
///
/// # Safety
/// As [`matrix_product`].
pub(super) unsafe fn small_gemm(
    dims: (usize, usize, usize),
    dst: (*mut f32, usize, usize),
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
    scale: f32,
) {
    // SAFETY: forwarded from the caller.
    unsafe { matrix_product(dims, dst, accumulate, lhs, rhs, scale, false) }
}
