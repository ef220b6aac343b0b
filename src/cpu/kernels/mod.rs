//! Slice-level f32 CPU kernels behind the fused ops in [`super::ops`]: exact GELU, LayerNorm,
//! row softmax (each with its backward) and per-sequence self-attention.
//!
//! The element-wise kernels are written once as plain loops over fixed-width lanes and compiled three times
//! (AVX-512, AVX2+FMA, baseline); the widest version the CPU supports is picked at run time.
//! That lets the compiler vectorise without a per-CPU build, and keeps the code portable.
//! `exp` is a polynomial here because libm's `expf` is a scalar call that blocks vectorisation.

use std::mem::MaybeUninit;

mod attention;
mod gelu;
mod gemm;
mod norm;
mod softmax;

pub use attention::{AttentionShape, attention_sequence, attention_sequence_grad};
pub use gelu::{gelu_erf, gelu_erf_grad_slice, gelu_erf_in_place, gelu_erf_slice};
pub(crate) use gemm::matrix_product;
pub use norm::{LayerNormGrads, add_layer_norm_rows, layer_norm_grad_rows, layer_norm_rows};
pub use softmax::{softmax_grad_rows, softmax_rows_in_place};

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

multiversion! {
    /// `out[i] = values[i] · factors[i]`.
    pub fn multiply(values: &[f32], factors: &[f32], out: &mut [MaybeUninit<f32>]) {
        for ((o, v), f) in out.iter_mut().zip(values).zip(factors) {
            o.write(v * f);
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
}
