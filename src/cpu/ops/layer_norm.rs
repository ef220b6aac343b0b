//! LayerNorm, and LayerNorm of a residual sum: fused kernels with their backward, and the
//! candle composition they must match.

use candle_core::{D, DType, Result, Tensor};

use super::{TASK_ELEMENTS, contiguous_f32, fused, map_rows_parallel, zip_rows_parallel};
use crate::cpu::kernels;

/// LayerNorm over the last dimension, computed in f32 for half-precision inputs.
///
/// On f32 CPU tensors it is one parallel pass per row ([`FusedLayerNorm`]), with a backward
/// kernel for the input, weight and bias; elsewhere a composition of candle ops. Both are
/// differentiable.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    if fused(&[x, weight, bias]) {
        return x.contiguous()?.apply_op3(
            &weight.contiguous()?,
            &bias.contiguous()?,
            FusedLayerNorm { eps: eps as f32 },
        );
    }
    let x = match dtype {
        DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
        _ => x.clone(),
    };
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let variance = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centered.broadcast_div(&(variance + eps)?.sqrt()?)?;
    normed
        .to_dtype(dtype)?
        .broadcast_mul(weight)?
        .broadcast_add(bias)
}

/// LayerNorm of `x + residual` (the post-LayerNorm residual of every encoder layer).
///
/// Where nothing needs a gradient (no input tracks one) on f32 CPU tensors, the add and the
/// normalisation are one parallel pass ([`ResidualLayerNorm`]); otherwise candle's add and
/// [`layer_norm`], so training differentiates through it.
pub fn residual_layer_norm(
    x: &Tensor,
    residual: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let tensors = [x, residual, weight, bias];
    let no_grad = !tensors.iter().any(|t| t.track_op());
    if no_grad && fused(&tensors) && x.shape() == residual.shape() {
        let op = ResidualLayerNorm {
            bias: bias.clone(),
            eps: eps as f32,
        };
        return x.contiguous()?.apply_op3_no_bwd(
            &residual.contiguous()?,
            &weight.contiguous()?,
            &op,
        );
    }
    layer_norm(&(x + residual)?, weight, bias, eps)
}

/// The kernel of [`residual_layer_norm`]: arguments `x`, `residual`, `weight`.
#[derive(Debug, Clone)]
struct ResidualLayerNorm {
    bias: Tensor,
    eps: f32,
}

impl candle_core::CustomOp3 for ResidualLayerNorm {
    fn name(&self) -> &'static str {
        "residual-layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &candle_core::CpuStorage,
        x_layout: &candle_core::Layout,
        r: &candle_core::CpuStorage,
        r_layout: &candle_core::Layout,
        w: &candle_core::CpuStorage,
        w_layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        if r_layout.shape() != x_layout.shape() {
            candle_core::bail!(
                "{}: residual {:?} does not match input {:?}",
                self.name(),
                r_layout.shape(),
                x_layout.shape()
            );
        }
        let width = layer_norm_width(self.name(), x_layout, w_layout, self.bias.layout())?;
        let beta: Vec<f32> = self.bias.to_vec1()?;
        let gamma = contiguous_f32(self.name(), w, w_layout)?;
        let eps = self.eps;
        // SAFETY: the kernel writes every element of its output rows.
        unsafe {
            zip_rows_parallel(
                self.name(),
                (x, x_layout),
                (r, r_layout),
                width,
                |x, r, out| kernels::add_layer_norm_rows(x, r, gamma, &beta, eps, out),
            )
        }
    }
}

/// The kernel of [`layer_norm`] on f32 CPU tensors: arguments `x`, `weight`, `bias`.
#[derive(Debug, Clone, Copy)]
pub struct FusedLayerNorm {
    eps: f32,
}

/// The width of a LayerNorm whose input is `x_layout` and whose weight and bias are
/// `w_layout` and `b_layout`; an error naming `op` if they do not fit.
fn layer_norm_width(
    op: &str,
    x_layout: &candle_core::Layout,
    w_layout: &candle_core::Layout,
    b_layout: &candle_core::Layout,
) -> Result<usize> {
    let width = x_layout.dims().last().copied().unwrap_or(0);
    if width == 0 || w_layout.dims() != [width] || b_layout.dims() != [width] {
        candle_core::bail!(
            "{op}: input {:?}, weight {:?} and bias {:?} do not fit",
            x_layout.shape(),
            w_layout.shape(),
            b_layout.shape()
        );
    }
    Ok(width)
}

impl candle_core::CustomOp3 for FusedLayerNorm {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
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
        let width = layer_norm_width(self.name(), x_layout, w_layout, b_layout)?;
        let gamma = contiguous_f32(self.name(), w, w_layout)?;
        let beta = contiguous_f32(self.name(), b, b_layout)?;
        // SAFETY: the kernel writes every element of its output rows.
        unsafe {
            map_rows_parallel(self.name(), x, x_layout, width, |input, out| {
                kernels::layer_norm_rows(input, gamma, beta, self.eps, out)
            })
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let width = weight.elem_count();
        let rows = x.elem_count() / width.max(1);
        // One kernel computes all three: dx rows, then a row of dγ and a row of dβ.
        let packed = x.contiguous()?.apply_op3_no_bwd(
            &weight.contiguous()?,
            &grad_res.contiguous()?,
            &LayerNormGrad { eps: self.eps },
        )?;
        Ok((
            Some(packed.narrow(0, 0, rows)?.reshape(x.shape())?),
            Some(packed.get(rows)?),
            Some(packed.get(rows + 1)?),
        ))
    }
}

/// Backward of [`FusedLayerNorm`]: arguments `x`, `weight`, upstream gradient; result
/// `(rows + 2, width)`: the input's gradient rows, then the weight's and the bias's gradient.
#[derive(Debug, Clone, Copy)]
struct LayerNormGrad {
    eps: f32,
}

impl candle_core::CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "fused-layer-norm-backward"
    }

    fn cpu_fwd(
        &self,
        x: &candle_core::CpuStorage,
        x_layout: &candle_core::Layout,
        w: &candle_core::CpuStorage,
        w_layout: &candle_core::Layout,
        g: &candle_core::CpuStorage,
        g_layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        if g_layout.shape() != x_layout.shape() {
            candle_core::bail!(
                "{}: gradient {:?} does not match input {:?}",
                self.name(),
                g_layout.shape(),
                x_layout.shape()
            );
        }
        let width = layer_norm_width(self.name(), x_layout, w_layout, w_layout)?;
        let (x, gamma, g) = (
            contiguous_f32(self.name(), x, x_layout)?,
            contiguous_f32(self.name(), w, w_layout)?,
            contiguous_f32(self.name(), g, g_layout)?,
        );
        let rows = x.len() / width;
        let mut out = vec![0f32; (rows + 2) * width];
        let (input_grad, param_grads) = out.split_at_mut(rows * width);
        let task = (TASK_ELEMENTS / width).max(1) * width;
        let (dgamma, dbeta) = input_grad
            .par_chunks_mut(task)
            .zip(x.par_chunks(task).zip(g.par_chunks(task)))
            .map(|(dx, (x, g))| {
                let (mut dgamma, mut dbeta) = (vec![0f32; width], vec![0f32; width]);
                let grads = kernels::LayerNormGrads {
                    input: dx,
                    gamma: &mut dgamma,
                    beta: &mut dbeta,
                };
                kernels::layer_norm_grad_rows(x, gamma, g, self.eps, grads);
                (dgamma, dbeta)
            })
            .reduce(
                || (vec![0f32; width], vec![0f32; width]),
                |(mut ga, mut ba), (gb, bb)| {
                    ga.iter_mut().zip(gb).for_each(|(a, b)| *a += b);
                    ba.iter_mut().zip(bb).for_each(|(a, b)| *a += b);
                    (ga, ba)
                },
            );
        param_grads[..width].copy_from_slice(&dgamma);
        param_grads[width..].copy_from_slice(&dbeta);
        Ok((candle_core::CpuStorage::F32(out), (rows + 2, width).into()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{D, DType, Device, Tensor};

    use super::*;
    use crate::cpu::ops::test_support::{assert_close, irregular, values_and_grads};

    #[test]
    fn fused_layer_norm_matches_the_composition_forward_and_backward() {
        // Widths below, at and off the 16-lane chunks; rows beyond one parallel task.
        for (dims, eps) in [
            (vec![1usize, 2usize], 1e-12),
            (vec![5, 7], 1e-5),
            (vec![3, 11, 384], 1e-12),
            (vec![3, 4099], 1e-12),
        ] {
            let width = *dims.last().unwrap();
            let x = irregular(&dims, 0.0, 9.0);
            let weight = irregular(&[width], 1.0, 2.0);
            let bias = irregular(&[width], 2.0, 2.0);
            let vars = [&x, &weight, &bias];
            let (x, w, b) = (x.as_tensor(), weight.as_tensor(), bias.as_tensor());
            let composed = {
                let mean = x.mean_keepdim(D::Minus1).unwrap();
                let centered = x.broadcast_sub(&mean).unwrap();
                let variance = centered.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                centered
                    .broadcast_div(&(variance + eps).unwrap().sqrt().unwrap())
                    .unwrap()
                    .broadcast_mul(w)
                    .unwrap()
                    .broadcast_add(b)
                    .unwrap()
            };
            let fused = layer_norm(x, w, b, eps).unwrap();
            let (want, want_grads) = values_and_grads(&composed, &vars);
            let (got, got_grads) = values_and_grads(&fused, &vars);
            assert_close(&want, &got, 2e-5, &format!("{dims:?} output"));
            for (name, (w, g)) in ["x", "weight", "bias"]
                .iter()
                .zip(want_grads.iter().zip(&got_grads))
            {
                assert_close(w, g, 1e-4, &format!("{dims:?} d{name}"));
            }
        }
    }

    #[test]
    fn residual_layer_norm_equals_layer_norm_of_the_sum() {
        for dims in [vec![1usize, 2usize], vec![3, 11, 384], vec![2, 4099]] {
            let width = *dims.last().unwrap();
            let (x, r) = (irregular(&dims, 0.0, 9.0), irregular(&dims, 7.0, 3.0));
            let (w, b) = (irregular(&[width], 1.0, 2.0), irregular(&[width], 2.0, 2.0));
            // Plain tensors (no gradient tracked): the fused pass.
            let plain = |v: &candle_core::Var| v.as_tensor().detach();
            let fused =
                residual_layer_norm(&plain(&x), &plain(&r), &plain(&w), &plain(&b), 1e-12).unwrap();
            let sum = (plain(&x) + plain(&r)).unwrap();
            let want = layer_norm(&sum, &plain(&w), &plain(&b), 1e-12).unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_close(&flat(&want), &flat(&fused), 1e-5, &format!("{dims:?}"));
            // Variables: the differentiable composition, gradients reach all four.
            let y = residual_layer_norm(
                x.as_tensor(),
                r.as_tensor(),
                w.as_tensor(),
                b.as_tensor(),
                1e-12,
            )
            .unwrap();
            let (values, grads) = values_and_grads(&y, &[&x, &r, &w, &b]);
            assert_close(&flat(&want), &values, 1e-5, &format!("{dims:?} tracked"));
            assert_eq!(grads[0], grads[1], "d(x + r)/dx = d(x + r)/dr");
        }
    }

    #[test]
    fn fused_layer_norm_rejects_mismatched_shapes() {
        let x = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::ones(3, DType::F32, &Device::Cpu).unwrap();
        let err = layer_norm(&x, &w, &w, 1e-5).unwrap_err().to_string();
        assert!(err.contains("fused-layer-norm"), "{err}");
    }
}
