//! Dense layers: the fused `x W^T + b` (with dropout) and its backward for training, and
//! the layers prepared at load (packed f32, int8) for inference.

use candle_core::{DType, Result, Tensor};

use super::{
    ApplyDropout, TASK_ELEMENTS, contiguous_f32, dropout, dropout_mask, fused, with_f32_values,
};
use crate::cpu::kernels;

/// `x W^T + b` over the last dimension of `x` (`weight`: `(out, in)`, `bias`: `(out)`).
///
/// On f32 CPU tensors the bias is written into the output first and the matrix multiply adds
/// onto it ([`FusedLinear`]): one pass over the output instead of three (zeroing, product,
/// broadcast add), which matters most for the wide feed-forward layer. Elsewhere it is
/// candle's `broadcast_matmul` plus `broadcast_add`. Both are differentiable.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    linear_dropout(x, weight, bias, 0.0, false)
}

/// [`dropout`](fn@dropout)`(`[`linear`]`(x, weight, bias), p, train)`, with the same mask
/// draw; on f32 CPU tensors the mask is applied inside [`FusedLinear`] (no separate pass or
/// graph node).
pub fn linear_dropout(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    p: f32,
    train: bool,
) -> Result<Tensor> {
    if !fused(&[x, weight, bias]) {
        let y = x.broadcast_matmul(&weight.t()?)?.broadcast_add(bias)?;
        return dropout(&y, p, train);
    }
    let dropout = if train && p > 0.0 {
        let mut dims = x.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = weight.dim(0)?;
        }
        Some(dropout_mask(&dims.into(), p, DType::F32, x.device())?)
    } else {
        None
    };
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        FusedLinear { dropout },
    )
}

/// The kernel of [`linear`] / [`linear_dropout`]: bias rows, then gemm accumulating `x W^T`
/// onto them, then the dropout factors if any.
#[derive(Debug, Clone)]
pub struct FusedLinear {
    /// Dropout factors of the output's shape, from [`dropout_mask`].
    dropout: Option<Tensor>,
}

impl candle_core::CustomOp3 for FusedLinear {
    fn name(&self) -> &'static str {
        "fused-linear"
    }

    fn cpu_fwd(
        &self,
        x: &candle_core::CpuStorage,
        x_layout: &candle_core::Layout,
        w: &candle_core::CpuStorage,
        w_layout: &candle_core::Layout,
        b: &candle_core::CpuStorage,
        b_layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let (n, k) = w_layout.shape().dims2()?;
        let x_dims = x_layout.dims();
        if x_dims.last() != Some(&k) || b_layout.dims() != [n] {
            candle_core::bail!(
                "{}: input {:?}, weight {:?} and bias {:?} do not fit",
                self.name(),
                x_layout.shape(),
                w_layout.shape(),
                b_layout.shape()
            );
        }
        let m = x_layout.shape().elem_count() / k.max(1);
        let (x, w, bias) = (
            contiguous_f32(self.name(), x, x_layout)?,
            contiguous_f32(self.name(), w, w_layout)?,
            contiguous_f32(self.name(), b, b_layout)?,
        );
        let mut out: Vec<f32> = Vec::with_capacity(m * n);
        let rows_per_task = (TASK_ELEMENTS / n.max(1)).max(1);
        out.spare_capacity_mut()
            .par_chunks_mut(rows_per_task * n.max(1))
            .for_each(|rows| {
                for row in rows.chunks_mut(n) {
                    for (o, &b) in row.iter_mut().zip(bias) {
                        o.write(b);
                    }
                }
            });
        // SAFETY: every one of the m * n elements was written just above.
        unsafe { out.set_len(m * n) };
        // SAFETY: out is m x n row-major, x m x k row-major, W^T (k x n) read from the n x k
        // row-major weight, all within the slices checked above.
        unsafe {
            kernels::matrix_product(
                (m, n, k),
                (out.as_mut_ptr(), n, 1),
                true,
                (x.as_ptr(), k, 1),
                (w.as_ptr(), 1, k),
                1.0,
                true,
            )
        };
        let mut dims = x_dims.to_vec();
        *dims.last_mut().expect("checked above") = n;
        if let Some(mask) = &self.dropout {
            if mask.dims() != dims {
                candle_core::bail!(
                    "{}: dropout mask {:?} does not match the output {dims:?}",
                    self.name(),
                    mask.shape()
                );
            }
            with_f32_values(self.name(), mask, |mask| {
                out.par_chunks_mut(TASK_ELEMENTS)
                    .zip(mask.par_chunks(TASK_ELEMENTS))
                    .for_each(|(out, mask)| kernels::multiply_in_place(out, mask))
            })?;
        }
        Ok((candle_core::CpuStorage::F32(out), dims.into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, k) = weight.dims2()?;
        let grad_res = match &self.dropout {
            Some(mask) => &grad_res
                .contiguous()?
                .apply_op2_no_bwd(mask, &ApplyDropout)?,
            None => grad_res,
        };
        let grad_rows = grad_res.contiguous()?.reshape(((), n))?;
        let x_rows = x.contiguous()?.reshape(((), k))?;
        let m = grad_rows.dim(0)?;
        let (grad_x, grad_w) = with_f32_values(self.name(), &grad_rows, |dy| {
            with_f32_values(self.name(), &x_rows, |x| {
                with_f32_values(self.name(), weight, |w| {
                    // dX = dY W (m x k), dW = dY^T X (n x k, dY read column by column).
                    // SAFETY: dY is m x n, W n x k and X m x k, all row-major (checked by
                    // the forward), so the strides stay within the slices.
                    let grad_x =
                        unsafe { product_new((m, k, n), (dy.as_ptr(), n, 1), (w.as_ptr(), k, 1)) };
                    // SAFETY: as above.
                    let grad_w =
                        unsafe { product_new((n, k, m), (dy.as_ptr(), 1, n), (x.as_ptr(), k, 1)) };
                    (grad_x, grad_w)
                })
            })
        })???;
        let grad_x = Tensor::from_vec(grad_x, x.shape(), x.device())?;
        let grad_w = Tensor::from_vec(grad_w, (n, k), x.device())?;
        let grad_b = grad_rows.apply_op1_no_bwd(&ColumnSums)?;
        Ok((Some(grad_x), Some(grad_w), Some(grad_b)))
    }
}

/// `lhs (m x k) · rhs (k x n)` on the machine's threads into a new row-major buffer, written
/// without zero-filling it first; operands as `(pointer, row stride, column stride)`.
///
/// # Safety
/// Every element the strides reach for these sizes must lie in its operand.
unsafe fn product_new(
    (m, n, k): (usize, usize, usize),
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    if k == 0 {
        out.resize(m * n, 0.0);
        return out;
    }
    // SAFETY: the product writes all m x n elements (it does not read them: no accumulate).
    unsafe {
        kernels::matrix_product(
            (m, n, k),
            (out.as_mut_ptr(), n, 1),
            false,
            lhs,
            rhs,
            1.0,
            true,
        );
        out.set_len(m * n);
    }
    out
}

/// Sums over the rows of a contiguous f32 `(rows, width)` CPU tensor: `(width)`. candle's
/// `sum(0)` walks the columns with a stride, slow for the dense layers' bias gradients; this
/// adds whole rows, in parallel blocks of rows.
#[derive(Debug, Clone, Copy)]
struct ColumnSums;

impl candle_core::CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "column-sums"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let (_, width) = layout.shape().dims2()?;
        let values = contiguous_f32(self.name(), storage, layout)?;
        let task = (TASK_ELEMENTS / width.max(1)).max(1) * width.max(1);
        let add_rows = |mut sums: Vec<f32>, block: &[f32]| {
            for row in block.chunks_exact(width) {
                sums.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
            }
            sums
        };
        let sums = values
            .par_chunks(task)
            .fold(|| vec![0f32; width], add_rows)
            .reduce(
                || vec![0f32; width],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                    a
                },
            );
        Ok((candle_core::CpuStorage::F32(sums), width.into()))
    }
}

/// A dense layer prepared at load for CPU inference: weights packed for the f32 kernel
/// ([`crate::cpu::panels::PackedLinear`]) or quantized to int8 ([`crate::cpu::int8::Int8Linear`]).
pub trait PreparedLinear: std::fmt::Debug + Send + Sync + 'static {
    /// Names the kernel in errors.
    const NAME: &'static str;
    /// Input width.
    fn in_features(&self) -> usize;
    /// Output width.
    fn out_features(&self) -> usize;
    /// `x W^T + b` for whole rows of `x`, then exact GELU if `gelu`.
    fn forward_rows(&self, x: &[f32], gelu: bool) -> Vec<f32>;

    /// A feed-forward block, `next(gelu(self(x)))`, for whole rows of `x`.
    fn forward_feed_forward(&self, next: &Self, x: &[f32]) -> Vec<f32> {
        next.forward_rows(&self.forward_rows(x, true), false)
    }
}

/// Implements [`PreparedLinear`] for a prepared layer type through its inherent
/// `in_features`, `out_features`, `forward` and `forward_gelu` (inherent methods win method
/// resolution, so these calls do not recurse), then any further trait items given.
macro_rules! prepared_linear {
    ($layer:ty, $name:literal $(, $($items:tt)*)?) => {
        impl PreparedLinear for $layer {
            const NAME: &'static str = $name;

            fn in_features(&self) -> usize {
                self.in_features()
            }

            fn out_features(&self) -> usize {
                self.out_features()
            }

            fn forward_rows(&self, x: &[f32], gelu: bool) -> Vec<f32> {
                if gelu {
                    self.forward_gelu(x)
                } else {
                    self.forward(x)
                }
            }

            $($($items)*)?
        }
    };
}

prepared_linear!(crate::cpu::panels::PackedLinear, "packed-linear");

prepared_linear!(
    crate::cpu::int8::Int8Linear,
    "int8-linear",
    fn forward_feed_forward(&self, next: &Self, x: &[f32]) -> Vec<f32> {
        self.forward_feed_forward(next, x)
    }
);

/// `x W^T + b` through a layer prepared at load ([`PreparedLinear`]), then exact GELU if
/// `gelu`: f32 CPU input of any rank whose last dimension is the layer's input width. No
/// gradient flows through it.
pub fn linear_prepared<L: PreparedLinear>(
    x: &Tensor,
    layer: &std::sync::Arc<L>,
    gelu: bool,
) -> Result<Tensor> {
    prepared_op(
        x,
        PreparedLinearOp {
            layer: layer.clone(),
            gelu,
            next: None,
        },
    )
}

/// A feed-forward block `second(gelu(first(x)))` through two layers prepared at load: as
/// [`linear_prepared`] twice, but the kernel may keep the wide intermediate rows in cache
/// (the int8 one does).
pub fn feed_forward_prepared<L: PreparedLinear>(
    x: &Tensor,
    first: &std::sync::Arc<L>,
    second: &std::sync::Arc<L>,
) -> Result<Tensor> {
    prepared_op(
        x,
        PreparedLinearOp {
            layer: first.clone(),
            gelu: true,
            next: Some(second.clone()),
        },
    )
}

fn prepared_op<L: PreparedLinear>(x: &Tensor, op: PreparedLinearOp<L>) -> Result<Tensor> {
    if !fused(&[x]) {
        candle_core::bail!(
            "{} runs on f32 CPU tensors, not {:?} on {:?}",
            L::NAME,
            x.dtype(),
            x.device()
        );
    }
    x.contiguous()?.apply_op1_no_bwd(&op)
}

/// The kernel of [`linear_prepared`] and [`feed_forward_prepared`].
#[derive(Debug, Clone)]
struct PreparedLinearOp<L> {
    layer: std::sync::Arc<L>,
    /// Exact GELU after `layer` (always, in a feed-forward block).
    gelu: bool,
    /// The feed-forward block's second layer, if this is one.
    next: Option<std::sync::Arc<L>>,
}

impl<L: PreparedLinear> candle_core::CustomOp1 for PreparedLinearOp<L> {
    fn name(&self) -> &'static str {
        L::NAME
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let PreparedLinearOp { layer, gelu, next } = self;
        let mut dims = layout.dims().to_vec();
        if dims.last() != Some(&layer.in_features()) {
            candle_core::bail!(
                "{}: input {:?} does not end in the layer's {} input features",
                self.name(),
                layout.shape(),
                layer.in_features()
            );
        }
        let x = contiguous_f32(self.name(), storage, layout)?;
        let (out, width) = match next {
            None => (layer.forward_rows(x, *gelu), layer.out_features()),
            Some(next) if next.in_features() == layer.out_features() => {
                (layer.forward_feed_forward(next, x), next.out_features())
            }
            Some(next) => candle_core::bail!(
                "{}: the feed-forward block's second layer takes {} features, the first gives {}",
                self.name(),
                next.in_features(),
                layer.out_features()
            ),
        };
        *dims.last_mut().expect("checked above") = width;
        Ok((candle_core::CpuStorage::F32(out), dims.into()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::cpu::ops::seed_dropout;
    use crate::cpu::ops::test_support::{assert_close, irregular, values_and_grads};

    #[test]
    fn fused_linear_matches_matmul_plus_bias_forward_and_backward() {
        // Without dropout, and with dropout drawn from the same seed on both sides.
        for (dims, n, p) in [
            (vec![1usize, 1, 1], 1usize, 0.0f32),
            (vec![2, 5, 7], 3, 0.0),
            (vec![33, 17], 40, 0.0),
            (vec![2, 5, 7], 3, 0.5),
            (vec![33, 17], 40, 0.1),
            // Many rows, wide and deep: several of gemm's register and cache blocks.
            (vec![4, 50, 130], 70, 0.1),
        ] {
            let train = p > 0.0;
            let k = *dims.last().unwrap();
            let x = irregular(&dims, 0.0, 2.0);
            let w = irregular(&[n, k], 3.0, 2.0);
            let b = irregular(&[n], 5.0, 2.0);
            let vars = [&x, &w, &b];
            let product = x
                .as_tensor()
                .broadcast_matmul(&w.as_tensor().t().unwrap())
                .unwrap()
                .broadcast_add(b.as_tensor())
                .unwrap();
            seed_dropout(9);
            let mask = dropout_mask(product.shape(), p, DType::F32, &Device::Cpu).unwrap();
            let composed = if train {
                (&product * &mask).unwrap()
            } else {
                product
            };
            seed_dropout(9);
            let fused =
                linear_dropout(x.as_tensor(), w.as_tensor(), b.as_tensor(), p, train).unwrap();
            assert_eq!(fused.dims(), composed.dims());
            let (want, want_grads) = values_and_grads(&composed, &vars);
            let (got, got_grads) = values_and_grads(&fused, &vars);
            let case = format!("{dims:?} -> {n}, dropout {p}");
            if train {
                let zeros = mask.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert!(zeros.contains(&0.0), "{case}: nothing dropped");
            }
            assert_close(&want, &got, 1e-5, &format!("{case} output"));
            for (name, (w, g)) in ["x", "w", "b"]
                .iter()
                .zip(want_grads.iter().zip(&got_grads))
            {
                assert_close(w, g, 1e-5, &format!("{case} d{name}"));
            }
        }
    }

    #[test]
    fn fused_linear_rejects_mismatched_shapes() {
        let x = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((3, 5), DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        let err = linear(&x, &w, &b).unwrap_err().to_string();
        assert!(err.contains("fused-linear"), "{err}");
    }
}
