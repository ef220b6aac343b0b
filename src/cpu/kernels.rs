//! Slice-level f32 CPU kernels behind the fused ops in [`super::ops`]: exact GELU, LayerNorm,
//! row softmax (each with its backward) and per-sequence self-attention.
//!
//! The element-wise kernels are written once as plain loops over fixed-width lanes and compiled three times
//! (AVX-512, AVX2+FMA, baseline); the widest version the CPU supports is picked at run time.
//! That lets the compiler vectorise without a per-CPU build, and keeps the code portable.
//! `exp` is a polynomial here because libm's `expf` is a scalar call that blocks vectorisation.

use std::mem::MaybeUninit;

/// Lanes of the manual accumulators: one AVX-512 register of f32.
const LANES: usize = 16;

/// Defines `$name` as a dispatcher over AVX-512 / AVX2 / baseline copies of `$body`.
///
/// Declared as `fn name<const FMA: bool>(..)`, the body may branch on `FMA`: true in the
/// copies compiled with fused multiply-add, and in the baseline copy only where the target
/// has it natively ([`NATIVE_FMA`]). `f32::mul_add` elsewhere would be a libm call.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident<const $fma:ident: bool>($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn generic<const $fma: bool>($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? { generic::<true>($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? { generic::<true>($($arg),*) }
                let features = $crate::cpu::features::detected();
                if features.avx512vl && features.avx2_fma {
                    // SAFETY: the CPU supports every feature `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if features.avx2_fma {
                    // SAFETY: as above, for AVX2 and FMA.
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic::<{ $crate::cpu::kernels::NATIVE_FMA }>($($arg),*)
        }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        multiversion! {
            $(#[$meta])* $vis fn $name<const _FMA: bool>($($arg: $ty),*) $(-> $ret)? $body
        }
    };
}
pub(crate) use multiversion;

/// Whether the baseline build has a fused multiply-add instruction (see [`multiversion`]).
pub(crate) const NATIVE_FMA: bool = cfg!(any(target_feature = "fma", target_arch = "aarch64"));

/// `values` as initialised f32s.
///
/// # Safety
/// Every element must have been written.
#[inline(always)]
pub(crate) unsafe fn assume_written(values: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: MaybeUninit<f32> has f32's layout, and the caller vouches for every element.
    unsafe { &mut *(values as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Writes `values` into `out` (of the same length) and returns it as initialised f32s.
pub(crate) fn write_copy<'a>(out: &'a mut [MaybeUninit<f32>], values: &[f32]) -> &'a mut [f32] {
    assert_eq!(out.len(), values.len(), "copy of a different length");
    for (o, &v) in out.iter_mut().zip(values) {
        o.write(v);
    }
    // SAFETY: every element was written just above.
    unsafe { assume_written(out) }
}

/// `a · b + c`, rounded once where `FMA` (one instruction; a third fewer for the polynomials
/// below), else as a multiply and an add.
#[inline(always)]
pub(crate) fn mul_add<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `e^x` within 3 ulp for `x` in [-80, 88] (clamped above), and exactly 0 below -80:
/// Cody–Waite reduction to `r` in [-ln2/2, ln2/2], a degree-6 Taylor polynomial, and `2^n`
/// built in the exponent bits. The flush keeps softmax weights of masked keys at 0 rather
/// than ~1e-38, whose denormal products slow every later multiply (training's backward
/// pass most).
#[inline(always)]
pub fn exp<const FMA: bool>(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const FLUSH_BELOW: f32 = -80.0;
    // 1/k! from the highest degree down, for Horner's rule (the constant 1 comes last).
    const TAYLOR: [f32; 6] = [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0];
    // max/min rather than clamp: a NaN becomes FLUSH_BELOW here, so `n` below is in range.
    #[allow(clippy::manual_clamp)]
    let bounded = x.max(FLUSH_BELOW).min(88.0);
    let n = mul_add::<FMA>(bounded, std::f32::consts::LOG2_E, 0.5).floor();
    let r = mul_add::<FMA>(-n, LN2_LO, mul_add::<FMA>(-n, LN2_HI, bounded));
    let p = TAYLOR[1..]
        .iter()
        .fold(TAYLOR[0], |p, &c| mul_add::<FMA>(p, r, c));
    let p = mul_add::<FMA>(p, r, 1.0);
    // SAFETY: n is an integer in [-116, 127] (bounded above). Unlike `as`, which
    // saturates and so stays scalar, this converts a whole vector at once.
    let n = unsafe { n.to_int_unchecked::<i32>() };
    let value = p * f32::from_bits(((n + 127) << 23) as u32);
    if x < FLUSH_BELOW { 0.0 } else { value }
}

/// Φ(x), the standard normal CDF, through the Abramowitz & Stegun 7.1.26 erf (absolute error
/// ≤ 1.5e-7).
#[inline(always)]
fn normal_cdf<const FMA: bool>(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    // a5 down to a1, for Horner's rule.
    const A: [f32; 5] = [
        1.061_405_4,
        -1.453_152_1,
        1.421_413_8,
        -0.284_496_72,
        0.254_829_6,
    ];
    let z = (x * std::f32::consts::FRAC_1_SQRT_2).abs();
    let t = 1.0 / mul_add::<FMA>(P, z, 1.0);
    let poly = t * A[1..].iter().fold(A[0], |p, &a| mul_add::<FMA>(p, t, a));
    let erf_abs = mul_add::<FMA>(-poly, exp::<FMA>(-z * z), 1.0);
    0.5 * (1.0 + erf_abs.copysign(x))
}

/// `x * Φ(x)`.
#[inline(always)]
pub fn gelu_erf<const FMA: bool>(x: f32) -> f32 {
    x * normal_cdf::<FMA>(x)
}

multiversion! {
    /// `out[i] = gelu_erf(input[i])`.
    pub fn gelu_erf_slice<const FMA: bool>(input: &[f32], out: &mut [MaybeUninit<f32>]) {
        for (o, &x) in out.iter_mut().zip(input) {
            o.write(gelu_erf::<FMA>(x));
        }
    }
}

multiversion! {
    /// `values[i] = gelu_erf(values[i])`.
    pub fn gelu_erf_in_place<const FMA: bool>(values: &mut [f32]) {
        for v in values.iter_mut() {
            *v = gelu_erf::<FMA>(*v);
        }
    }
}

multiversion! {
    /// The backward of [`gelu_erf`]: `out[i] = grad[i] · (Φ(x) + x φ(x))` at `x = input[i]`.
    pub fn gelu_erf_grad_slice<const FMA: bool>(
        input: &[f32],
        grad: &[f32],
        out: &mut [MaybeUninit<f32>],
    ) {
        // 1 / sqrt(2π)
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        for ((o, &x), &g) in out.iter_mut().zip(input).zip(grad) {
            let density = INV_SQRT_2PI * exp::<FMA>(-0.5 * x * x);
            o.write(g * mul_add::<FMA>(x, density, normal_cdf::<FMA>(x)));
        }
    }
}

/// `Σ f(v)` over `row`, in lane-wise partial sums so that the loop vectorises.
#[inline(always)]
fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (s, &v) in lanes.iter_mut().zip(chunk) {
            *s += f(v);
        }
    }
    tail + lanes.iter().sum::<f32>()
}

/// Mean and `1 / sqrt(variance + eps)` of a row (two passes: the centred sum of squares
/// does not cancel the way `E[x²] − E[x]²` does).
#[inline(always)]
fn row_moments(row: &[f32], eps: f32) -> (f32, f32) {
    let width = row.len().max(1) as f32;
    let mean = lane_sum(row, |v| v) / width;
    let variance = lane_sum(row, |v| (v - mean) * (v - mean)) / width;
    (mean, 1.0 / (variance + eps).sqrt())
}

multiversion! {
    /// LayerNorm of each row of `gamma.len()` values: `(x − mean) / sqrt(var + eps) · γ + β`.
    pub fn layer_norm_rows(
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
        out: &mut [MaybeUninit<f32>],
    ) {
        let width = gamma.len().max(1);
        for (row, out) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
            let (mean, inv) = row_moments(row, eps);
            for (((o, &v), &g), &b) in out.iter_mut().zip(row).zip(gamma).zip(beta) {
                o.write((v - mean) * inv * g + b);
            }
        }
    }
}

multiversion! {
    /// LayerNorm of `x + residual`, row by row (see [`layer_norm_rows`]).
    pub fn add_layer_norm_rows(
        x: &[f32],
        residual: &[f32],
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
        out: &mut [MaybeUninit<f32>],
    ) {
        let width = gamma.len().max(1);
        for ((x, r), out) in x
            .chunks_exact(width)
            .zip(residual.chunks_exact(width))
            .zip(out.chunks_exact_mut(width))
        {
            for ((o, &a), &b) in out.iter_mut().zip(x).zip(r) {
                o.write(a + b);
            }
            // SAFETY: every element of this row was written just above.
            let out = unsafe { assume_written(out) };
            let (mean, inv) = row_moments(out, eps);
            for ((o, &g), &b) in out.iter_mut().zip(gamma).zip(beta) {
                *o = (*o - mean) * inv * g + b;
            }
        }
    }
}

/// Gradients of [`layer_norm_rows`] for a block of rows; see [`layer_norm_grad_rows`].
pub struct LayerNormGrads<'a> {
    /// Gradient with respect to the input rows (written).
    pub input: &'a mut [f32],
    /// `Σ_rows grad · x̂` is added here.
    pub gamma: &'a mut [f32],
    /// `Σ_rows grad` is added here.
    pub beta: &'a mut [f32],
}

multiversion! {
    /// Backward of [`layer_norm_rows`] for rows of `x` and the upstream `grad`:
    /// `dx = (ĝ − mean(ĝ) − x̂ · mean(ĝ x̂)) / sqrt(var + eps)` with `ĝ = grad · γ` and
    /// `x̂ = (x − mean) / sqrt(var + eps)`; `dγ += Σ grad · x̂`, `dβ += Σ grad`.
    pub fn layer_norm_grad_rows(
        x: &[f32],
        gamma: &[f32],
        grad: &[f32],
        eps: f32,
        out: LayerNormGrads<'_>,
    ) {
        let width = gamma.len().max(1);
        for ((row, g), dx) in x
            .chunks_exact(width)
            .zip(grad.chunks_exact(width))
            .zip(out.input.chunks_exact_mut(width))
        {
            let (mean, inv) = row_moments(row, eps);
            let (mut sum_g, mut sum_gx) = ([0f32; LANES], [0f32; LANES]);
            let chunks = row
                .chunks(LANES)
                .zip(g.chunks(LANES))
                .zip(gamma.chunks(LANES))
                .zip(out.gamma.chunks_mut(LANES).zip(out.beta.chunks_mut(LANES)));
            for (((row, g), gamma), (dgamma, dbeta)) in chunks {
                for lane in 0..row.len() {
                    let normed = (row[lane] - mean) * inv;
                    let scaled = g[lane] * gamma[lane];
                    sum_g[lane] += scaled;
                    sum_gx[lane] += scaled * normed;
                    dgamma[lane] += g[lane] * normed;
                    dbeta[lane] += g[lane];
                }
            }
            let mean_g = sum_g.iter().sum::<f32>() / width as f32;
            let mean_gx = sum_gx.iter().sum::<f32>() / width as f32;
            for (((d, &v), &g), &gm) in dx.iter_mut().zip(row).zip(g).zip(gamma) {
                let normed = (v - mean) * inv;
                *d = (g * gm - mean_g - normed * mean_gx) * inv;
            }
        }
    }
}

multiversion! {
    /// Backward of a row softmax: `out = y ⊙ (grad − Σ grad ⊙ y)` per row of `width` values.
    pub fn softmax_grad_rows(
        y: &[f32],
        grad: &[f32],
        out: &mut [MaybeUninit<f32>],
        width: usize,
    ) {
        let width = width.max(1);
        for ((y, g), out) in y
            .chunks_exact(width)
            .zip(grad.chunks_exact(width))
            .zip(out.chunks_exact_mut(width))
        {
            let mut lanes = [0f32; LANES];
            for (y, g) in y.chunks(LANES).zip(g.chunks(LANES)) {
                for ((s, &p), &g) in lanes.iter_mut().zip(y).zip(g) {
                    *s += p * g;
                }
            }
            let dot = lanes.iter().sum::<f32>();
            for ((o, &p), &g) in out.iter_mut().zip(y).zip(g) {
                o.write(p * (g - dot));
            }
        }
    }
}

/// Largest value of `row` (−∞ for an empty row), with lane-wise partial maxima so that the
/// loop vectorises.
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    tail.iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Replaces `row` by `exp(row - max)` and returns the sum, with lane-wise partial sums.
#[inline(always)]
fn exp_shifted_sum<const FMA: bool>(row: &mut [f32], max: f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (s, v) in lanes.iter_mut().zip(chunk.iter_mut()) {
            *v = exp::<FMA>(*v - max);
            *s += *v;
        }
    }
    let mut sum: f32 = 0.0;
    for v in chunks.into_remainder() {
        *v = exp::<FMA>(*v - max);
        sum += *v;
    }
    sum + lanes.iter().sum::<f32>()
}

/// Softmax of one row in place.
#[inline(always)]
fn softmax_in_place<const FMA: bool>(row: &mut [f32]) {
    let max = row_max(row);
    let inv = 1.0 / exp_shifted_sum::<FMA>(row, max);
    row.iter_mut().for_each(|v| *v *= inv);
}

/// Shape of one sequence's self-attention: `seq` tokens, `heads` heads of `head_dim` values,
/// rows of `heads * head_dim` values (the layout the Q/K/V projections produce).
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    /// Tokens in the (padded) sequence.
    pub seq: usize,
    /// Attention heads.
    pub heads: usize,
    /// Values per head.
    pub head_dim: usize,
}

multiversion! {
    /// Softmax over each row of `width` values, in place.
    pub fn softmax_rows_in_place<const FMA: bool>(rows: &mut [f32], width: usize) {
        for row in rows.chunks_exact_mut(width) {
            softmax_in_place::<FMA>(row);
        }
    }
}

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
unsafe fn small_gemm(
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

/// Scaled dot-product attention of one sequence, all heads:
/// `out[i, h] = Σ_j dropout(softmax_j(scale · q[i, h]·k[j, h] + key_bias[j]))[h, i, j] v[j, h]`.
/// `q`, `k`, `v`, `out`: `seq × (heads · head_dim)` row-major, read and written in place
/// (no head-split copies); `key_bias`: `seq` values added to every query's scores (0, or a
/// large negative value for padding); `dropout`: `heads × seq × seq` factors (0 or
/// `1 / (1 - p)`) multiplying the attention weights, if any; `scores` is resized as needed.
/// Writes every element of the first `seq` rows of `out` (which need not be initialised).
///
/// # Panics
/// If a slice is shorter than the shape says.
#[allow(clippy::too_many_arguments)]
pub fn attention_sequence(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    key_bias: &[f32],
    dropout: Option<&[f32]>,
    out: &mut [MaybeUninit<f32>],
    shape: AttentionShape,
    scores: &mut Vec<f32>,
) {
    let AttentionShape {
        seq,
        heads,
        head_dim,
    } = shape;
    let width = heads * head_dim;
    check_attention_operands(&[q, k, v], key_bias, dropout, shape);
    assert!(out.len() >= seq * width, "attention output too short");
    if seq == 0 || head_dim == 0 {
        return;
    }
    let stride = query_stride(seq);
    scores.resize(seq * stride, 0.0);
    for h in 0..heads {
        let column = h * head_dim;
        attention_weights(q, k, key_bias, shape, h, scores);
        if let Some(mask) = dropout {
            multiply_transposed_in_place(scores, &mask[h * seq * seq..(h + 1) * seq * seq], seq);
        }
        // SAFETY: v and out hold seq rows of `width` values (checked above), so the
        // seq × head_dim blocks at `column` with row stride `width` are in bounds; scores
        // holds seq rows of `stride` ≥ seq values, read transposed.
        unsafe {
            small_gemm(
                (seq, head_dim, seq),
                (out[column..].as_mut_ptr().cast::<f32>(), width, 1),
                false,
                (scores.as_ptr(), 1, stride),
                (v[column..].as_ptr(), width, 1),
                1.0,
            );
        }
    }
}

/// Row length of the key-major weight matrices: `seq` queries rounded up to whole lane
/// blocks, so that the softmax runs down whole vectors of queries with no tail.
fn query_stride(seq: usize) -> usize {
    seq.div_ceil(LANES) * LANES
}

/// Panics unless every matrix holds `seq` rows of `heads · head_dim` values, the key bias `seq`
/// values and the dropout mask (if any) `heads × seq × seq`: the attention kernels' raw-pointer
/// products rely on it.
fn check_attention_operands(
    matrices: &[&[f32]],
    key_bias: &[f32],
    dropout: Option<&[f32]>,
    shape: AttentionShape,
) {
    let AttentionShape {
        seq,
        heads,
        head_dim,
    } = shape;
    for matrix in matrices {
        assert!(
            matrix.len() >= seq * heads * head_dim,
            "attention operand too short"
        );
    }
    assert!(key_bias.len() >= seq, "attention key bias too short");
    if let Some(mask) = dropout {
        assert!(
            mask.len() >= heads * seq * seq,
            "attention dropout mask too short"
        );
    }
}

/// `scores` = the softmax-normalised attention weights of head `h`,
/// `softmax_j(scale · q[i, h]·k[j, h] + key_bias[j])`, key-major: key `j`, query `i` at
/// `scores[j · stride + i]` with `stride` = [`query_stride`]`(seq)` (the columns past `seq`
/// hold the weights of no query). Key-major, each key's bias is a whole row and the softmax
/// over keys runs down columns, 16 queries per vector: no horizontal sums and no short
/// tails (rows are a few dozen keys wide, and row-wise that had been most of the softmax).
fn attention_weights(
    q: &[f32],
    k: &[f32],
    key_bias: &[f32],
    shape: AttentionShape,
    h: usize,
    scores: &mut [f32],
) {
    let AttentionShape {
        seq,
        heads,
        head_dim,
    } = shape;
    let (width, column, stride) = (heads * head_dim, h * head_dim, query_stride(seq));
    let scale = 1.0 / (head_dim as f32).sqrt();
    let scores = &mut scores[..seq * stride];
    for (row, &bias) in scores.chunks_exact_mut(stride).zip(key_bias) {
        row.fill(bias);
    }
    // SAFETY: q and k hold seq rows of `width` values (checked by the callers), so the
    // seq × head_dim blocks starting at `column` with row stride `width` are in bounds;
    // scores holds seq rows of `stride` ≥ seq values.
    unsafe {
        small_gemm(
            (seq, seq, head_dim),
            (scores.as_mut_ptr(), stride, 1),
            true,
            (k[column..].as_ptr(), width, 1),
            (q[column..].as_ptr(), 1, width),
            scale,
        );
    }
    softmax_columns_in_place(scores, stride);
}

multiversion! {
    /// Softmax down each column of `values` (rows of `stride` values, a multiple of
    /// [`LANES`]), in place.
    fn softmax_columns_in_place<const FMA: bool>(values: &mut [f32], stride: usize) {
        let len = values.len();
        for first in (0..stride).step_by(LANES) {
            let blocks = || (first..len).step_by(stride);
            let mut max = [f32::NEG_INFINITY; LANES];
            for at in blocks() {
                for (m, &v) in max.iter_mut().zip(&values[at..at + LANES]) {
                    *m = if v > *m { v } else { *m };
                }
            }
            let mut sum = [0f32; LANES];
            for at in blocks() {
                for ((s, v), &m) in sum.iter_mut().zip(&mut values[at..at + LANES]).zip(&max) {
                    *v = exp::<FMA>(*v - m);
                    *s += *v;
                }
            }
            let inverse = sum.map(|s| 1.0 / s);
            for at in blocks() {
                for (v, &i) in values[at..at + LANES].iter_mut().zip(&inverse) {
                    *v *= i;
                }
            }
        }
    }
}

multiversion! {
    /// Backward of [`softmax_columns_in_place`]: `out = y ⊙ (grad − Σ_column grad ⊙ y)` down
    /// each column (rows of `stride` values, a multiple of [`LANES`]).
    fn softmax_grad_columns(y: &[f32], grad: &[f32], out: &mut [f32], stride: usize) {
        for first in (0..stride).step_by(LANES) {
            let blocks = || (first..y.len()).step_by(stride);
            let mut dot = [0f32; LANES];
            for at in blocks() {
                let (y, grad) = (&y[at..at + LANES], &grad[at..at + LANES]);
                for ((s, &p), &g) in dot.iter_mut().zip(y).zip(grad) {
                    *s += p * g;
                }
            }
            for at in blocks() {
                let (y, grad) = (&y[at..at + LANES], &grad[at..at + LANES]);
                let out = &mut out[at..at + LANES];
                for (((o, &p), &g), &d) in out.iter_mut().zip(y).zip(grad).zip(&dot) {
                    *o = p * (g - d);
                }
            }
        }
    }
}

multiversion! {
    /// `out[i] = values[i] · factors[i]`.
    pub fn multiply(values: &[f32], factors: &[f32], out: &mut [MaybeUninit<f32>]) {
        for ((o, v), f) in out.iter_mut().zip(values).zip(factors) {
            o.write(v * f);
        }
    }
}

/// `values[j · stride + i] *= factors[i · seq + j]` for `i, j < seq`: query-major dropout
/// factors applied to key-major weights (`stride` from the length of `values`).
fn multiply_transposed_in_place(values: &mut [f32], factors: &[f32], seq: usize) {
    let stride = values.len() / seq.max(1);
    for (j, row) in values.chunks_exact_mut(stride).enumerate() {
        for (i, v) in row[..seq].iter_mut().enumerate() {
            *v *= factors[i * seq + j];
        }
    }
}

multiversion! {
    /// `values[i] *= factors[i]`.
    pub fn multiply_in_place(values: &mut [f32], factors: &[f32]) {
        for (v, f) in values.iter_mut().zip(factors) {
            *v *= f;
        }
    }
}

/// Gradients of [`attention_sequence`] for one sequence, all heads: given `grad_out`
/// (`seq × width`, the gradient of `out`), writes `grad_q`, `grad_k`, `grad_v`
/// (`seq × width` each). The attention weights are recomputed from `q` and `k`;
/// `dropout` must be the mask the forward pass used. `scratch` is resized as needed.
///
/// Per head, with `P` the weights, `M` the dropout factors and `G` = `grad_out`:
/// `dV = (P ⊙ M)ᵀ G`, `dP = (G Vᵀ) ⊙ M`, `dS = P ⊙ (dP − rowsum(dP ⊙ P))`,
/// `dQ = scale · dS K`, `dK = scale · dSᵀ Q`.
///
/// # Panics
/// If a slice is shorter than the shape says.
#[allow(clippy::too_many_arguments)]
pub fn attention_sequence_grad(
    (q, k, v): (&[f32], &[f32], &[f32]),
    key_bias: &[f32],
    dropout: Option<&[f32]>,
    grad_out: &[f32],
    (grad_q, grad_k, grad_v): (&mut [f32], &mut [f32], &mut [f32]),
    shape: AttentionShape,
    scratch: &mut Vec<f32>,
) {
    let AttentionShape {
        seq,
        heads,
        head_dim,
    } = shape;
    let width = heads * head_dim;
    check_attention_operands(
        &[q, k, v, grad_out, &*grad_q, &*grad_k, &*grad_v],
        key_bias,
        dropout,
        shape,
    );
    if seq == 0 || head_dim == 0 {
        return;
    }
    let scale = 1.0 / (head_dim as f32).sqrt();
    // Key-major, as `attention_weights` gives them: key j, query i at [j * stride + i].
    let stride = query_stride(seq);
    let square = seq * stride;
    scratch.resize(3 * square, 0.0);
    let (probs, rest) = scratch.split_at_mut(square);
    let (kept, grad_probs) = rest.split_at_mut(square);
    for h in 0..heads {
        let column = h * head_dim;
        let mask = dropout.map(|m| &m[h * seq * seq..(h + 1) * seq * seq]);
        attention_weights(q, k, key_bias, shape, h, probs);
        kept.copy_from_slice(probs);
        if let Some(mask) = mask {
            multiply_transposed_in_place(kept, mask, seq);
        }
        // SAFETY: (all four products) every seq × head_dim block starts at `column` of a
        // slice holding seq rows of `width` values (checked above) and is read with row
        // stride `width`; the key-major buffers hold seq rows of `stride` ≥ seq values;
        // outputs do not overlap inputs.
        unsafe {
            // dV = keptᵀ G (kept is stored transposed)
            small_gemm(
                (seq, head_dim, seq),
                (grad_v[column..].as_mut_ptr(), width, 1),
                false,
                (kept.as_ptr(), stride, 1),
                (grad_out[column..].as_ptr(), width, 1),
                1.0,
            );
            // d(kept)ᵀ = V Gᵀ
            small_gemm(
                (seq, seq, head_dim),
                (grad_probs.as_mut_ptr(), stride, 1),
                false,
                (v[column..].as_ptr(), width, 1),
                (grad_out[column..].as_ptr(), 1, width),
                1.0,
            );
        }
        if let Some(mask) = mask {
            multiply_transposed_in_place(grad_probs, mask, seq);
        }
        softmax_grad_columns(probs, grad_probs, kept, stride);
        let grad_scores = &*kept;
        // SAFETY: as above.
        unsafe {
            // dQ = scale · dS K (dS is stored transposed)
            small_gemm(
                (seq, head_dim, seq),
                (grad_q[column..].as_mut_ptr(), width, 1),
                false,
                (grad_scores.as_ptr(), 1, stride),
                (k[column..].as_ptr(), width, 1),
                scale,
            );
            // dK = scale · dSᵀ Q
            small_gemm(
                (seq, head_dim, seq),
                (grad_k[column..].as_mut_ptr(), width, 1),
                false,
                (grad_scores.as_ptr(), stride, 1),
                (q[column..].as_ptr(), width, 1),
                scale,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp_is_within_three_ulp_of_std<const FMA: bool>() {
        let mut x = -80.0f32;
        while x < 88.0 {
            let (want, got) = (x.exp(), exp::<FMA>(x));
            assert!(
                (want - got).abs() <= 3.6e-7 * want,
                "exp({x}), fused multiply-add {FMA}: {want} vs {got}"
            );
            x += 0.0137;
        }
        // Below -80 exactly 0, never a denormal (see `exp`).
        assert_eq!(exp::<FMA>(-80.5), 0.0);
        assert_eq!(exp::<FMA>(-1.0e4), 0.0);
        assert_eq!(exp::<FMA>(0.0), 1.0);
    }

    #[test]
    fn polynomial_exp_is_within_three_ulp_of_std() {
        // Both roundings: the vector copies fuse multiply-adds, a baseline x86 build does not.
        exp_is_within_three_ulp_of_std::<true>();
        exp_is_within_three_ulp_of_std::<false>();
    }

    #[test]
    fn softmax_rows_sum_to_one_and_ignore_masked_scores() {
        let input = [1.0f32, 2.0, 3.0, -1.0e4, 0.5, 0.5, 0.5, 0.5];
        let mut out = input;
        softmax_rows_in_place(&mut out, 4);
        let e: Vec<f32> = [1.0f32, 2.0, 3.0].iter().map(|v| (v - 3.0).exp()).collect();
        let total: f32 = e.iter().sum();
        for (got, want) in out[..3].iter().zip(&e) {
            assert!((got - want / total).abs() < 1e-6);
        }
        assert_eq!(out[3], 0.0, "a masked score gets exactly 0, not a denormal");
        assert!(out[4..].iter().all(|&p| (p - 0.25).abs() < 1e-7));
    }
}
