//! The CPU compute back end: fused candle ops with their backward passes, SIMD kernels picked
//! at run time, prepared (panel-packed f32 and int8) dense layers, and padding removal. The
//! network in [`crate::model`] calls these ops; nothing here knows the model.

pub mod features;
pub mod int8;
mod kernels;
pub mod ops;
pub mod panels;
pub mod unpad;

/// Deterministic inputs shared by the tests of the CPU back end.
#[cfg(test)]
mod test_support {
    /// `n` deterministic, irregular values in [-scale/2, scale/2).
    pub(super) fn irregular(n: usize, seed: f32, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as f32 + seed) * 0.754_877_7).fract() - 0.5) * scale)
            .collect()
    }

    /// The operands of a dense-layer test, `(x, w, b)`: `x` of `m × k`, `w` of `n × k` and
    /// `b` of `n` irregular values, of seeds `seed`, `seed + 1`, `seed + 2` and scales 4, 0.2, 1.
    pub(super) fn layer_operands(
        m: usize,
        n: usize,
        k: usize,
        seed: f32,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        (
            irregular(m * k, seed, 4.0),
            irregular(n * k, seed + 1.0, 0.2),
            irregular(n, seed + 2.0, 1.0),
        )
    }
}
