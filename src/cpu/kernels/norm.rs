//! LayerNorm over rows, of a plain input or of a residual sum, and its backward.

use std::mem::MaybeUninit;

use super::{LANES, assume_written, multiversion};

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
