//! Softmax over the last dimension: one parallel pass per row, with its backward.

use candle_core::{D, Result, Tensor};

use super::{fused, map_rows_parallel, zip_rows_parallel};
use crate::cpu::kernels;

/// Softmax over the last dimension: one parallel pass per row for contiguous f32 CPU
/// tensors (candle-nn's `softmax` takes five passes and allocations; its fused
/// `softmax_last_dim` has no backward), with the backward `y ⊙ (g − Σ g⊙y)`.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fused(&[x]) {
        x.contiguous()?.apply_op1(SoftmaxLastDim)
    } else {
        candle_nn::ops::softmax(x, D::Minus1)
    }
}

/// The kernel of [`softmax_last_dim`].
#[derive(Debug, Clone, Copy)]
struct SoftmaxLastDim;

impl candle_core::CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "softmax-last-dim-parallel"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let width = layout.dims().last().copied().unwrap_or(1).max(1);
        // SAFETY: the copy writes every element.
        unsafe {
            map_rows_parallel(self.name(), storage, layout, width, |input, out| {
                kernels::softmax_rows_in_place(kernels::write_copy(out, input), width)
            })
        }
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = res
            .contiguous()?
            .apply_op2_no_bwd(&grad_res.contiguous()?, &SoftmaxGrad)?;
        Ok(Some(grad))
    }
}

/// Backward of [`SoftmaxLastDim`]: arguments the softmax output and the upstream gradient.
#[derive(Debug, Clone, Copy)]
struct SoftmaxGrad;

impl candle_core::CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "softmax-last-dim-parallel-backward"
    }

    fn cpu_fwd(
        &self,
        y: &candle_core::CpuStorage,
        y_layout: &candle_core::Layout,
        g: &candle_core::CpuStorage,
        g_layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let width = y_layout.dims().last().copied().unwrap_or(1).max(1);
        // SAFETY: the kernel writes every element of its output rows.
        unsafe {
            zip_rows_parallel(
                self.name(),
                (y, y_layout),
                (g, g_layout),
                width,
                |y, g, out| kernels::softmax_grad_rows(y, g, out, width),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn parallel_softmax_matches_candle_forward_and_backward() {
        // Odd widths, rows beyond one task, large and masked (-1e4) scores.
        for (rows, width) in [(1usize, 1usize), (3, 7), (97, 13), (5, 4099)] {
            let values: Vec<f32> = (0..rows * width)
                .map(|i| {
                    let v = ((i as f32 * 0.754_877_7).fract() - 0.5) * 40.0;
                    if i % 11 == 3 { -1.0e4 } else { v }
                })
                .collect();
            let var = candle_core::Var::from_vec(values, (rows, width), &Device::Cpu).unwrap();
            let x = var.as_tensor();
            let weights = Tensor::arange(0f32, (rows * width) as f32, &Device::Cpu)
                .unwrap()
                .reshape((rows, width))
                .unwrap()
                .sin()
                .unwrap();
            let run = |y: Tensor| {
                let values: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
                let g = (y * &weights)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let grad: Vec<f32> = g.get(x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                (values, grad)
            };
            let (want, want_grad) = run(candle_nn::ops::softmax(x, D::Minus1).unwrap());
            let (got, got_grad) = run(softmax_last_dim(x).unwrap());
            for (w, g) in want.iter().zip(&got).chain(want_grad.iter().zip(&got_grad)) {
                assert!((w - g).abs() <= 1e-6, "{rows}x{width}: {w} vs {g}");
            }
        }
    }
}
