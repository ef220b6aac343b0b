//! Softmax along rows (and, for attention's key-major weights, down columns), with the
//! backward of each.

use std::mem::MaybeUninit;

use super::{LANES, exp, multiversion};

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

multiversion! {
    /// Softmax over each row of `width` values, in place.
    pub fn softmax_rows_in_place<const FMA: bool>(rows: &mut [f32], width: usize) {
        for row in rows.chunks_exact_mut(width) {
            softmax_in_place::<FMA>(row);
        }
    }
}

multiversion! {
    /// Softmax down each column of `values` (rows of `stride` values, a multiple of
    /// [`LANES`]), in place.
    pub(super) fn softmax_columns_in_place<const FMA: bool>(values: &mut [f32], stride: usize) {
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
    pub(super) fn softmax_grad_columns(y: &[f32], grad: &[f32], out: &mut [f32], stride: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
