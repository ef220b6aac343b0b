//! f32 dense layers for CPU inference with the weights packed once, at load, into the layout
//! the AVX-512 micro-kernel reads (panels of 64 output columns, one row of 64 per input
//! feature).
//!
//! A general matrix multiply re-packs the weight on every call, which dominates at small
//! batches; packed at load, the call is all multiply-adds. The bias starts the accumulators, which live in the output itself between
//! depth blocks: no zero-fill, no separate bias pass, no tile to copy out.
//! Inference only: training changes the weights every step and keeps [`super::ops::linear`].

use rayon::prelude::*;

/// Output columns per packed panel: four 512-bit registers of f32.
const PANEL: usize = 64;
/// Rows of one micro-kernel call (6 rows × 4 registers = 24 accumulators).
const ROWS: usize = 6;
/// Rows each parallel task covers (a multiple of [`ROWS`]).
const TASK_ROWS: usize = 16 * ROWS;
/// Input features per pass over a panel: 128 × 64 f32 = 32 KiB, inside L1.
const DEPTH_BLOCK: usize = 128;

/// A dense layer's weight `(n, k)` and bias `(n)`, packed for [`PackedLinear::forward`].
#[derive(Debug, Clone)]
pub struct PackedLinear {
    n: usize,
    k: usize,
    /// `[n / 64][k][64]`, zero in the columns past `n`.
    packed: Vec<f32>,
    /// The bias, zero past `n`.
    bias: Vec<f32>,
}

impl PackedLinear {
    /// Packs a row-major `(n, k)` weight and its bias; `None` where the CPU lacks AVX-512F
    /// (callers then keep the general matrix multiply).
    ///
    /// # Panics
    /// If `weight.len() != n * k` or `bias.len() != n`.
    pub fn new(weight: &[f32], bias: &[f32], n: usize, k: usize) -> Option<Self> {
        assert_eq!(weight.len(), n * k, "packed weight shape");
        assert_eq!(bias.len(), n, "packed bias shape");
        if !has_avx512() {
            return None;
        }
        let panels = n.div_ceil(PANEL);
        let mut packed = vec![0f32; panels * k * PANEL];
        packed
            .par_chunks_mut((k * PANEL).max(1))
            .enumerate()
            .for_each(|(panel, out)| {
                for column in 0..PANEL.min(n - panel * PANEL) {
                    let row = &weight[(panel * PANEL + column) * k..][..k];
                    for (depth, &w) in row.iter().enumerate() {
                        out[depth * PANEL + column] = w;
                    }
                }
            });
        let mut padded_bias = bias.to_vec();
        padded_bias.resize(panels * PANEL, 0.0);
        Some(PackedLinear {
            n,
            k,
            packed,
            bias: padded_bias,
        })
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.n
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.k
    }

    /// `x W^T + b` for `m = x.len() / k` rows of `x`, in parallel over blocks of rows and,
    /// when there are few rows, of output columns too.
    ///
    /// # Panics
    /// If `x.len()` is not a multiple of the input width.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        self.forward_then(x, false)
    }

    /// [`PackedLinear::forward`] followed by exact GELU ([`super::kernels::gelu_erf`]), applied
    /// to each block while it is still in cache.
    ///
    /// # Panics
    /// If `x.len()` is not a multiple of the input width.
    pub fn forward_gelu(&self, x: &[f32]) -> Vec<f32> {
        self.forward_then(x, true)
    }

    fn forward_then(&self, x: &[f32], gelu: bool) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        let m = x.len().checked_div(k).unwrap_or(0);
        assert_eq!(m * k, x.len(), "input is not whole rows of {k}");
        if m == 0 || n == 0 {
            return vec![0f32; m * n];
        }
        // Every element is written below (tasks cover all rows and columns): no zero-fill.
        let mut out: Vec<f32> = Vec::with_capacity(m * n);
        let panels = n.div_ceil(PANEL);
        let row_blocks = m.div_ceil(TASK_ROWS);
        // Enough tasks to keep every thread busy: split the columns when rows are few.
        let wanted = 2 * rayon::current_num_threads();
        let per_group = (panels / wanted.div_ceil(row_blocks)).max(1);
        let groups = panels.div_ceil(per_group);
        let target = Output(out.as_mut_ptr());
        (0..row_blocks * groups).into_par_iter().for_each(|task| {
            let (block, group) = (task / groups, task % groups);
            let rows = block * TASK_ROWS..(m.min((block + 1) * TASK_ROWS));
            let columns = group * per_group..panels.min((group + 1) * per_group);
            // SAFETY: tasks cover disjoint (rows × panels) blocks of the m × n output.
            unsafe { self.block(x, rows, columns, gelu, &target) };
        });
        // SAFETY: the tasks above wrote all m × n elements.
        unsafe { out.set_len(m * n) };
        out
    }

    /// Computes output rows `rows` in panels `panels` into `out`, through GELU if `gelu`.
    ///
    /// The accumulators live in `out` itself (the task's rows × 64 columns stay in cache
    /// between depth blocks), so no tile is copied out at the end.
    ///
    /// # Safety
    /// No other thread may touch the same block of `out` (an `m × n` buffer with `m` the
    /// number of rows of `x`) at the same time.
    unsafe fn block(
        &self,
        x: &[f32],
        rows: std::ops::Range<usize>,
        panels: std::ops::Range<usize>,
        gelu: bool,
        out: &Output,
    ) {
        let (n, k) = (self.n, self.k);
        for panel in panels {
            let first_column = panel * PANEL;
            let width = PANEL.min(n - first_column);
            let bias: &[f32; PANEL] = self.bias[first_column..][..PANEL]
                .try_into()
                .expect("64 values");
            // Depth blocks small enough that their slice of the panel stays in L1 while
            // every row group of the task streams past it.
            for first_depth in (0..k).step_by(DEPTH_BLOCK) {
                let depth = DEPTH_BLOCK.min(k - first_depth);
                let b = &self.packed[(panel * k + first_depth) * PANEL..][..depth * PANEL];
                let start = (first_depth == 0).then_some(bias);
                for first_row in rows.clone().step_by(ROWS) {
                    let group = first_row..rows.end.min(first_row + ROWS);
                    let a = &x[first_row * k + first_depth..];
                    // SAFETY: `has_avx512` held when this layer was packed; `a` holds the
                    // group's rows of k from `first_depth` on (the last one ends the input),
                    // `b` `depth` rows of 64; the group's rows × `width` columns from
                    // `first_column` lie inside the output and in this task's block.
                    unsafe {
                        micro_kernel(
                            a,
                            k,
                            b,
                            depth,
                            Sums {
                                first: out.0.add(first_row * n + first_column),
                                stride: n,
                                rows: group.len(),
                                width,
                                start,
                            },
                        )
                    };
                }
            }
            if gelu {
                for row in rows.clone() {
                    // SAFETY: as above: this task's block, written by the products above.
                    let values = unsafe {
                        std::slice::from_raw_parts_mut(out.0.add(row * n + first_column), width)
                    };
                    super::kernels::gelu_erf_in_place(values);
                }
            }
        }
    }
}

/// Where a micro-kernel call accumulates: `rows` rows of `width` (≤ 64) values, `stride`
/// apart, from `first`; they start from `start` (the bias) when given, else from their
/// current values.
struct Sums<'a> {
    first: *mut f32,
    stride: usize,
    rows: usize,
    width: usize,
    start: Option<&'a [f32; PANEL]>,
}

/// The output buffer, shared by tasks that write disjoint blocks of it.
struct Output(*mut f32);

// SAFETY: tasks write disjoint elements (see `PackedLinear::block`).
unsafe impl Sync for Output {}

/// The f32 dense-layer kernel of CPU inference, picked from the CPU at run time:
/// `"avx512-packed"` (weights packed at load) or `"gemm"` (the general matrix multiply).
///
/// ```
/// let kernel = standpoint::cpu::panels::kernel_name();
/// assert!(["avx512-packed", "gemm"].contains(&kernel));
/// ```
pub fn kernel_name() -> &'static str {
    if has_avx512() {
        "avx512-packed"
    } else {
        "gemm"
    }
}

fn has_avx512() -> bool {
    super::features::detected().avx512f
}

/// `sums[r] (+)= Σ_{p < depth} a[r · lda + p] · b[p]` for the rows of `sums` (at most
/// [`ROWS`]); `b` is `depth` rows of one packed panel (64 values each).
///
/// # Safety
/// The CPU must support AVX-512F; `a.len() >= (sums.rows − 1) · lda + depth`,
/// `b.len() >= depth * 64`; `sums` names `rows` writable runs of `width` values.
#[cfg(target_arch = "x86_64")]
unsafe fn micro_kernel(a: &[f32], lda: usize, b: &[f32], depth: usize, sums: Sums) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match sums.rows {
            6 => rows_kernel::<6>(a, lda, b, depth, sums),
            5 => rows_kernel::<5>(a, lda, b, depth, sums),
            4 => rows_kernel::<4>(a, lda, b, depth, sums),
            3 => rows_kernel::<3>(a, lda, b, depth, sums),
            2 => rows_kernel::<2>(a, lda, b, depth, sums),
            _ => rows_kernel::<1>(a, lda, b, depth, sums),
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn micro_kernel(_: &[f32], _: usize, _: &[f32], _: usize, _: Sums) {
    unreachable!("PackedLinear is only built where the CPU has AVX-512")
}

/// [`micro_kernel`] for `R` rows: 4R accumulator registers, one broadcast of `a` per row and
/// depth step, four loads of `b`; masked loads and stores where `width < 64`.
///
/// # Safety
/// As [`micro_kernel`], with `sums.rows == R`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows_kernel<const R: usize>(a: &[f32], lda: usize, b: &[f32], depth: usize, sums: Sums) {
    use std::arch::x86_64::*;
    assert!(R >= 1 && sums.rows == R && sums.width <= PANEL && b.len() >= depth * PANEL);
    assert!(a.len() >= (R - 1) * lda + depth);
    // Lanes of each of the four registers that lie inside `width`.
    let masks = [0, 16, 32, 48].map(|j: usize| {
        let lanes = sums.width.saturating_sub(j).min(16);
        ((1u32 << lanes) - 1) as __mmask16
    });
    // SAFETY: every pointer below stays inside the slices checked above, and the masked
    // accesses to `sums` inside its `width` columns (the caller's contract).
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            let row = sums.first.add(r * sums.stride);
            *acc = match sums.start {
                Some(bias) => [0, 16, 32, 48].map(|j| _mm512_loadu_ps(bias.as_ptr().add(j))),
                None => [0, 1, 2, 3].map(|j| _mm512_maskz_loadu_ps(masks[j], row.add(16 * j))),
            };
        }
        let (a, b) = (a.as_ptr(), b.as_ptr());
        for p in 0..depth {
            let row = b.add(p * PANEL);
            let w = [0, 16, 32, 48].map(|j| _mm512_loadu_ps(row.add(j)));
            for (r, acc) in acc.iter_mut().enumerate() {
                let v = _mm512_set1_ps(*a.add(r * lda + p));
                for (sum, &w) in acc.iter_mut().zip(&w) {
                    *sum = _mm512_fmadd_ps(v, w, *sum);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let row = sums.first.add(r * sums.stride);
            for (j, sum) in acc.iter().enumerate() {
                _mm512_mask_storeu_ps(row.add(16 * j), masks[j], *sum);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_support::{irregular, layer_operands};

    #[test]
    fn matches_the_plain_product_on_odd_shapes() {
        let Some(_) = PackedLinear::new(&[1.0], &[0.0], 1, 1) else {
            eprintln!("no AVX-512 here: the packed layer is not used");
            return;
        };
        // Rows off the 6-row kernel and the 96-row task, columns off the 64-column panel,
        // a single row (batch 1 splits the columns over threads), the model's shapes.
        for (m, n, k) in [
            (1usize, 1usize, 1usize),
            (7, 5, 6),
            (1, 1536, 384),
            (53, 70, 37),
            (97, 200, 96),
            // A partial panel over several depth blocks: masked reloads of the sums.
            (13, 70, 300),
            (250, 384, 1536),
        ] {
            let (x, w, b) = layer_operands(m, n, k, 0.0);
            let got = PackedLinear::new(&w, &b, n, k).unwrap().forward(&x);
            assert_eq!(got.len(), m * n);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = f64::from(b[j])
                        + (0..k)
                            .map(|t| f64::from(x[i * k + t]) * f64::from(w[j * k + t]))
                            .sum::<f64>();
                    let g = f64::from(got[i * n + j]);
                    assert!(
                        (want - g).abs() <= 1e-5 * (k as f64).sqrt() * want.abs().max(1.0),
                        "{m}x{n}x{k}[{i}, {j}]: {want} vs {g}"
                    );
                }
            }
        }
    }

    #[test]
    fn gelu_epilogue_equals_gelu_after_the_product() {
        let Some(layer) = PackedLinear::new(&irregular(70 * 37, 1.0, 0.4), &[0.1; 70], 70, 37)
        else {
            return;
        };
        let x = irregular(13 * 37, 0.0, 4.0);
        let mut want = layer.forward(&x);
        super::super::kernels::gelu_erf_in_place(&mut want);
        assert_eq!(layer.forward_gelu(&x), want);
    }

    #[test]
    fn no_rows_give_no_output() {
        if let Some(layer) = PackedLinear::new(&[0.5; 6], &[1.0, 2.0], 2, 3) {
            assert!(layer.forward(&[]).is_empty());
            assert_eq!(layer.forward(&[0.0; 3]), vec![1.0, 2.0]);
        }
    }
}
