//! Exact GELU, `x · Φ(x)`, and its derivative, over slices.

use std::mem::MaybeUninit;

use super::{exp, mul_add, multiversion};

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
