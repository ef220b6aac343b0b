//! Numeric building blocks of the encoder, kept in one place so that fused kernels can
//! replace them without touching the model's structure.
//!
//! Every function here is differentiable: training runs through the same code.
//! (`candle_nn::ops::layer_norm` and `softmax_last_dim` are fused but have no backward,
//! so gradients would silently stop at them; they are deliberately not used.)

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::sync::Arc;

use candle_core::{D, DType, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::kernels;

/// Whether the fused CPU path applies: every tensor f32 and on the CPU. Elsewhere each op
/// falls back to its composition of candle ops.
pub fn fused(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// Feed-forward activation (`hidden_act` / `activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU with erf, what transformers calls `"gelu"`.
    Gelu,
    /// The tanh approximation (`"gelu_new"`, `"gelu_pytorch_tanh"`, `"gelu_fast"`).
    GeluTanh,
    /// `"relu"`.
    Relu,
}

/// Additive bias for masked attention scores: large enough that `exp` underflows to 0
/// in every float type, small enough not to overflow f16.
const MASKED_SCORE: f64 = -1.0e4;

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

/// The feed-forward activation. On f32 CPU tensors exact GELU runs as one parallel kernel
/// with a backward kernel ([`GeluErf`]); elsewhere candle's ops. `train` is accepted so that
/// activations with training-only behaviour can be added without touching the callers.
pub fn activation(x: &Tensor, kind: Activation, _train: bool) -> Result<Tensor> {
    match kind {
        Activation::Gelu if fused(&[x]) => x.contiguous()?.apply_op1(GeluErf),
        Activation::Gelu => x.gelu_erf(),
        Activation::GeluTanh => x.gelu(),
        Activation::Relu => x.relu(),
    }
}

/// Exact GELU, `x * Φ(x)`, for contiguous f32 CPU tensors: erf from Abramowitz & Stegun
/// 7.1.26 (absolute error ≤ 1.5e-7), split over rayon's threads (candle's own `gelu_erf` runs
/// libm's scalar `erff` on one thread). The backward, `grad · (Φ(x) + x φ(x))`, is one parallel
/// pass too ([`kernels::gelu_erf_grad_slice`]).
#[derive(Debug, Clone, Copy)]
pub struct GeluErf;

/// Elements per parallel task: enough work to outweigh scheduling.
const TASK_ELEMENTS: usize = 8192;

/// The f32 values of a contiguous CPU tensor; an error naming `op` otherwise.
pub(crate) fn contiguous_f32<'a>(
    op: &str,
    storage: &'a candle_core::CpuStorage,
    layout: &candle_core::Layout,
) -> Result<&'a [f32]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&storage.as_slice::<f32>()?[start..end]),
        None => candle_core::bail!("{op} needs contiguous tensors"),
    }
}

/// The f32 values of a contiguous CPU tensor, to write in place (the custom in-place ops);
/// an error naming `op` otherwise.
pub(crate) fn contiguous_f32_mut<'a>(
    op: &str,
    storage: &'a mut candle_core::CpuStorage,
    layout: &candle_core::Layout,
) -> Result<&'a mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (candle_core::CpuStorage::F32(values), Some((start, end))) => Ok(&mut values[start..end]),
        _ => candle_core::bail!("{op} needs contiguous f32 tensors"),
    }
}

/// A new buffer of `len` f32s for a kernel to fill, with `fill(buffer)`: not zeroed first
/// (the kernel writes every element, so zeroing would be a wasted pass over memory).
///
/// # Safety
/// `fill` must write every element.
unsafe fn filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    fill(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: the caller's `fill` wrote all `len` elements.
    unsafe { out.set_len(len) };
    out
}

/// Applies `kernel(input rows, output rows)` to whole rows of `width` elements of a
/// contiguous f32 tensor, in parallel tasks of about [`TASK_ELEMENTS`] elements.
///
/// # Safety
/// `kernel` must write every element of its output rows.
unsafe fn map_rows_parallel(
    op: &str,
    storage: &candle_core::CpuStorage,
    layout: &candle_core::Layout,
    width: usize,
    kernel: impl Fn(&[f32], &mut [MaybeUninit<f32>]) + Sync,
) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
    use rayon::prelude::*;
    let input = contiguous_f32(op, storage, layout)?;
    let task = (TASK_ELEMENTS / width.max(1)).max(1) * width.max(1);
    // SAFETY: the tasks cover the output, and the caller's kernel writes all of each.
    let out = unsafe {
        filled(input.len(), |out| {
            out.par_chunks_mut(task)
                .zip(input.par_chunks(task))
                .for_each(|(o, i)| kernel(i, o))
        })
    };
    Ok((candle_core::CpuStorage::F32(out), layout.shape().clone()))
}

impl candle_core::CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-parallel"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        // SAFETY: the kernel writes every element of its output rows.
        unsafe { map_rows_parallel(self.name(), storage, layout, 1, kernels::gelu_erf_slice) }
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = arg
            .contiguous()?
            .apply_op2_no_bwd(&grad_res.contiguous()?, &GeluErfGrad)?;
        Ok(Some(grad))
    }
}

/// Backward of [`GeluErf`]: arguments `x` and the upstream gradient.
#[derive(Debug, Clone, Copy)]
struct GeluErfGrad;

impl candle_core::CustomOp2 for GeluErfGrad {
    fn name(&self) -> &'static str {
        "gelu-erf-parallel-backward"
    }

    fn cpu_fwd(
        &self,
        x: &candle_core::CpuStorage,
        x_layout: &candle_core::Layout,
        g: &candle_core::CpuStorage,
        g_layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        // SAFETY: the kernel writes every element of its output rows.
        unsafe {
            zip_rows_parallel(self.name(), (x, x_layout), (g, g_layout), 1, |x, g, out| {
                kernels::gelu_erf_grad_slice(x, g, out)
            })
        }
    }
}

/// Applies `kernel(a rows, b rows, output rows)` to whole rows of `width` elements of two
/// contiguous f32 tensors of one shape, in parallel tasks of about [`TASK_ELEMENTS`] elements.
///
/// # Safety
/// `kernel` must write every element of its output rows.
unsafe fn zip_rows_parallel(
    op: &str,
    a: (&candle_core::CpuStorage, &candle_core::Layout),
    b: (&candle_core::CpuStorage, &candle_core::Layout),
    width: usize,
    kernel: impl Fn(&[f32], &[f32], &mut [MaybeUninit<f32>]) + Sync,
) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
    use rayon::prelude::*;
    if a.1.shape() != b.1.shape() {
        candle_core::bail!(
            "{op}: shapes {:?} and {:?} differ",
            a.1.shape(),
            b.1.shape()
        );
    }
    let (first, second) = (contiguous_f32(op, a.0, a.1)?, contiguous_f32(op, b.0, b.1)?);
    let task = (TASK_ELEMENTS / width.max(1)).max(1) * width.max(1);
    // SAFETY: the tasks cover the output, and the caller's kernel writes all of each.
    let out = unsafe {
        filled(first.len(), |out| {
            out.par_chunks_mut(task)
                .zip(first.par_chunks(task).zip(second.par_chunks(task)))
                .for_each(|(o, (a, b))| kernel(a, b, o))
        })
    };
    Ok((candle_core::CpuStorage::F32(out), a.1.shape().clone()))
}

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

thread_local! {
    /// Dropout masks come from here rather than candle's CPU generator, which cannot be
    /// seeded: training must be reproducible (and resumable) for a given seed.
    static DROPOUT_RNG: RefCell<ChaCha8Rng> = RefCell::new(ChaCha8Rng::seed_from_u64(0));
}

/// Seeds the dropout masks drawn on this thread from now on.
pub fn seed_dropout(seed: u64) {
    DROPOUT_RNG.with(|rng| *rng.borrow_mut() = ChaCha8Rng::seed_from_u64(seed));
}

/// Inverted dropout, active only in training: zeroes each value with probability `p`
/// and scales the rest by `1 / (1 - p)`.
pub fn dropout(x: &Tensor, p: f32, train: bool) -> Result<Tensor> {
    if !train || p <= 0.0 {
        return Ok(x.clone());
    }
    let mask = dropout_mask(x.shape(), p, x.dtype(), x.device())?;
    if fused(&[x]) {
        return x.contiguous()?.apply_op2(&mask, ApplyDropout);
    }
    x * mask
}

/// `x ⊙ mask` for [`dropout`] on f32 CPU tensors, with a backward for `x` alone: candle's
/// `Mul` also computes, zero-fills and accumulates a gradient for the constant mask.
#[derive(Debug, Clone, Copy)]
pub struct ApplyDropout;

impl candle_core::CustomOp2 for ApplyDropout {
    fn name(&self) -> &'static str {
        "dropout-mask"
    }

    fn cpu_fwd(
        &self,
        x: &candle_core::CpuStorage,
        x_layout: &candle_core::Layout,
        mask: &candle_core::CpuStorage,
        mask_layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        // SAFETY: the kernel writes every element of its output rows.
        unsafe {
            zip_rows_parallel(
                self.name(),
                (x, x_layout),
                (mask, mask_layout),
                1,
                kernels::multiply,
            )
        }
    }

    fn bwd(
        &self,
        _x: &Tensor,
        mask: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((
            Some(grad_res.contiguous()?.apply_op2_no_bwd(mask, self)?),
            None,
        ))
    }
}

/// The factors of one inverted-dropout draw: each 0 with probability `p`, else `1 / (1 - p)`,
/// drawn in row-major order from this thread's dropout generator (see [`seed_dropout`]).
///
/// Drawn in parallel: each value takes one 32-bit word of the ChaCha stream, so a task can
/// seek to its first value's word and the mask is the same as one serial draw.
pub fn dropout_mask(
    shape: &candle_core::Shape,
    p: f32,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    use rayon::prelude::*;
    const TASK_VALUES: usize = 1 << 15;
    let scale = 1.0 / (1.0 - p);
    let count = shape.elem_count();
    let (generator, first_word) = DROPOUT_RNG.with(|rng| {
        let mut rng = rng.borrow_mut();
        let first_word = rng.get_word_pos();
        rng.set_word_pos(first_word + count as u128);
        (rng.clone(), first_word)
    });
    let mut mask = vec![0f32; count];
    mask.par_chunks_mut(TASK_VALUES)
        .enumerate()
        .for_each(|(task, values)| {
            let mut rng = generator.clone();
            rng.set_word_pos(first_word + (task * TASK_VALUES) as u128);
            for value in values {
                *value = if rng.random::<f32>() < p { 0.0 } else { scale };
            }
        });
    Tensor::from_vec(mask, shape, device)?.to_dtype(dtype)
}

/// `(batch, seq, heads * head_dim)` → `(batch, heads, seq, head_dim)`.
pub fn split_heads(x: &Tensor, num_heads: usize) -> Result<Tensor> {
    let (batch, seq, width) = x.dims3()?;
    x.reshape((batch, seq, num_heads, width / num_heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// `(batch, heads, seq, head_dim)` → `(batch, seq, heads * head_dim)`.
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (batch, heads, seq, head_dim) = x.dims4()?;
    x.transpose(1, 2)?.reshape((batch, seq, heads * head_dim))
}

/// Converts a `(batch, seq)` 0/1 attention mask into an additive score bias of shape
/// `(batch, 1, 1, seq)` in `dtype`: 0 where attended, a large negative value where padded.
pub fn attention_bias(mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let (batch, seq) = mask.dims2()?;
    let keep = mask.to_dtype(dtype)?;
    ((keep - 1.0)? * -MASKED_SCORE)?.reshape((batch, 1, 1, seq))
}

/// Scaled dot-product attention over split heads; padded keys get zero weight.
///
/// `q`, `k`, `v`: `(batch, heads, seq, head_dim)`; `bias` from [`attention_bias`].
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    dropout_p: f32,
    train: bool,
) -> Result<Tensor> {
    let head_dim = q.dim(D::Minus1)?;
    let scores = (q.matmul(&k.t()?)? / (head_dim as f64).sqrt())?;
    let scores = scores.broadcast_add(bias)?;
    let probs = softmax_last_dim(&scores)?;
    let probs = dropout(&probs, dropout_p, train)?;
    probs.matmul(v)
}

/// How the rows of self-attention's operands form sequences.
#[derive(Debug, Clone)]
pub enum AttentionKeys {
    /// Operands `(batch, seq, width)`, padded; the additive key bias from [`attention_bias`],
    /// `(batch, 1, 1, seq)`, hides the padding.
    Padded(Tensor),
    /// Operands `(tokens, width)`: sequences of these lengths back to back, padding removed
    /// (see [`super::unpad::TokenPacking`]); every key is attended. f32 CPU tensors only.
    Packed(Arc<[usize]>),
}

impl AttentionKeys {
    /// The shape of the attention dropout factors for operands of shape `operands`:
    /// `(batch, heads, seq, seq)` when padded, each sequence's `heads × len × len` back to
    /// back when packed.
    fn dropout_shape(
        &self,
        operands: &candle_core::Shape,
        heads: usize,
    ) -> Result<candle_core::Shape> {
        Ok(match self {
            AttentionKeys::Padded(_) => {
                let (batch, seq, _) = operands.dims3()?;
                (batch, heads, seq, seq).into()
            }
            AttentionKeys::Packed(lengths) => {
                lengths.iter().map(|l| heads * l * l).sum::<usize>().into()
            }
        })
    }
}

/// Multi-head self-attention straight from the projections' layout: `q`, `k`, `v` are
/// `(batch, seq, heads * head_dim)` with [`AttentionKeys::Padded`] or `(tokens, heads *
/// head_dim)` with [`AttentionKeys::Packed`], and the result has their shape, heads merged.
///
/// On f32 CPU tensors this is one parallel kernel per sequence ([`FusedAttention`]: no
/// head-split copies, no per-head tensors), with a fused backward ([`AttentionGrad`]) and the
/// same dropout draws as the composition; elsewhere the composition [`split_heads`] →
/// [`attention`] → [`merge_heads`]. Both are differentiable.
pub fn self_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    keys: &AttentionKeys,
    heads: usize,
    dropout_p: f32,
    train: bool,
) -> Result<Tensor> {
    if fused(&[q, k, v]) {
        let dropout = if train && dropout_p > 0.0 {
            let shape = keys.dropout_shape(q.shape(), heads)?;
            Some(dropout_mask(&shape, dropout_p, DType::F32, q.device())?)
        } else {
            None
        };
        let op = FusedAttention {
            heads,
            keys: keys.clone(),
            dropout,
        };
        return q
            .contiguous()?
            .apply_op3(&k.contiguous()?, &v.contiguous()?, op);
    }
    let AttentionKeys::Padded(bias) = keys else {
        candle_core::bail!("attention over packed tokens runs on f32 CPU tensors only");
    };
    let context = attention(
        &split_heads(q, heads)?,
        &split_heads(k, heads)?,
        &split_heads(v, heads)?,
        bias,
        dropout_p,
        train,
    )?;
    merge_heads(&context)
}

/// The kernel of [`self_attention`]: one parallel task per sequence. Its backward is
/// [`AttentionGrad`] (recomputing the attention weights).
#[derive(Debug, Clone)]
pub struct FusedAttention {
    heads: usize,
    keys: AttentionKeys,
    /// Dropout factors for the attention weights, in training, of
    /// [`AttentionKeys::dropout_shape`].
    dropout: Option<Tensor>,
}

/// One sequence of [`FusedAttention`]'s operands.
struct SequenceRows {
    /// Its first row in the operands.
    first_row: usize,
    /// Where its `heads × seq × seq` dropout factors start.
    first_factor: usize,
    shape: kernels::AttentionShape,
}

/// The sequences of [`FusedAttention`]'s operands, in row order, and the key bias of every row.
struct AttentionPlan {
    sequences: Vec<SequenceRows>,
    key_bias: Vec<f32>,
    width: usize,
}

impl AttentionPlan {
    /// The operand values (rows × width) of sequence `s`.
    fn rows(&self, s: &SequenceRows) -> std::ops::Range<usize> {
        s.first_row * self.width..(s.first_row + s.shape.seq) * self.width
    }

    /// The dropout factors (heads × seq × seq) of sequence `s`.
    fn factors(&self, s: &SequenceRows) -> std::ops::Range<usize> {
        let square = s.shape.heads * s.shape.seq * s.shape.seq;
        s.first_factor..s.first_factor + square
    }

    /// `buffer` (rows × width, the operands' layout) cut into one block per sequence.
    fn split<'a, T>(&self, mut buffer: &'a mut [T]) -> Vec<&'a mut [T]> {
        let mut blocks = Vec::with_capacity(self.sequences.len());
        for s in &self.sequences {
            let (block, rest) = buffer.split_at_mut(s.shape.seq * self.width);
            blocks.push(block);
            buffer = rest;
        }
        blocks
    }
}

/// Checks the operands of [`FusedAttention`] / [`AttentionGrad`] and lays out their sequences.
fn attention_plan(
    op: &str,
    heads: usize,
    keys: &AttentionKeys,
    dropout: Option<&Tensor>,
    layouts: [&candle_core::Layout; 3],
) -> Result<AttentionPlan> {
    let shape = layouts[0].shape();
    if layouts.iter().any(|l| l.shape() != shape) {
        candle_core::bail!(
            "{op}: q {:?}, k {:?} and v {:?} must have one shape",
            layouts[0].shape(),
            layouts[1].shape(),
            layouts[2].shape()
        );
    }
    let width = *shape.dims().last().unwrap_or(&0);
    if heads == 0 || !width.is_multiple_of(heads) {
        candle_core::bail!("{op}: width {width} is not a multiple of {heads} heads");
    }
    let head_shape = |seq| kernels::AttentionShape {
        seq,
        heads,
        head_dim: width / heads,
    };
    let (lengths, key_bias): (Vec<usize>, Vec<f32>) = match keys {
        AttentionKeys::Padded(bias) => {
            let (batch, seq, _) = shape.dims3()?;
            let key_bias: Vec<f32> = bias.flatten_all()?.to_vec1()?;
            if key_bias.len() != batch * seq {
                candle_core::bail!(
                    "{op}: bias {:?} does not match batch {batch} x seq {seq}",
                    bias.shape()
                );
            }
            (vec![seq; batch], key_bias)
        }
        AttentionKeys::Packed(lengths) => {
            let (rows, _) = shape.dims2()?;
            let total: usize = lengths.iter().sum();
            if total != rows {
                candle_core::bail!(
                    "{op}: sequence lengths add up to {total}, the operands have {rows} rows"
                );
            }
            (lengths.to_vec(), vec![0.0; rows])
        }
    };
    if let Some(mask) = dropout {
        let want = keys.dropout_shape(shape, heads)?;
        if mask.shape() != &want {
            candle_core::bail!(
                "{op}: dropout mask {:?} is not {want:?} (heads {heads})",
                mask.shape()
            );
        }
    }
    let mut sequences = Vec::with_capacity(lengths.len());
    let (mut first_row, mut first_factor) = (0, 0);
    for seq in lengths {
        sequences.push(SequenceRows {
            first_row,
            first_factor,
            shape: head_shape(seq),
        });
        first_row += seq;
        first_factor += heads * seq * seq;
    }
    Ok(AttentionPlan {
        sequences,
        key_bias,
        width,
    })
}

/// Runs `f` on the f32 values of a CPU tensor held by a custom op (not one of its operands).
fn with_f32_values<R>(op: &str, t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(cpu) => Ok(f(contiguous_f32(op, cpu, layout)?)),
        _ => candle_core::bail!("{op} needs CPU tensors"),
    }
}

/// Runs `f` on the values of an optional tensor (see [`with_f32_values`]).
fn with_optional_f32_values<R>(
    op: &str,
    t: Option<&Tensor>,
    f: impl FnOnce(Option<&[f32]>) -> R,
) -> Result<R> {
    match t {
        Some(t) => with_f32_values(op, t, |values| f(Some(values))),
        None => Ok(f(None)),
    }
}

impl candle_core::CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "fused-self-attention"
    }

    fn cpu_fwd(
        &self,
        q: &candle_core::CpuStorage,
        q_layout: &candle_core::Layout,
        k: &candle_core::CpuStorage,
        k_layout: &candle_core::Layout,
        v: &candle_core::CpuStorage,
        v_layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let plan = attention_plan(
            self.name(),
            self.heads,
            &self.keys,
            self.dropout.as_ref(),
            [q_layout, k_layout, v_layout],
        )?;
        let (q, k, v) = (
            contiguous_f32(self.name(), q, q_layout)?,
            contiguous_f32(self.name(), k, k_layout)?,
            contiguous_f32(self.name(), v, v_layout)?,
        );
        let out = with_optional_f32_values(self.name(), self.dropout.as_ref(), |dropout| {
            // SAFETY: the sequences cover every row (`attention_plan` checks), and
            // `attention_sequence` writes every element of its sequence's rows.
            unsafe {
                filled(q.len(), |out| {
                    let blocks = plan.split(out);
                    blocks.into_par_iter().zip(&plan.sequences).for_each_init(
                        Vec::new,
                        |scratch, (out, s)| {
                            let rows = plan.rows(s);
                            kernels::attention_sequence(
                                &q[rows.clone()],
                                &k[rows.clone()],
                                &v[rows],
                                &plan.key_bias[s.first_row..][..s.shape.seq],
                                dropout.map(|m| &m[plan.factors(s)]),
                                out,
                                s.shape,
                                scratch,
                            )
                        },
                    )
                })
            }
        })?;
        Ok((candle_core::CpuStorage::F32(out), q_layout.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grads = q.apply_op3_no_bwd(
            k,
            v,
            &AttentionGrad {
                attention: self.clone(),
                grad: grad_res.clone(),
            },
        )?;
        Ok((
            Some(grads.get(0)?),
            Some(grads.get(1)?),
            Some(grads.get(2)?),
        ))
    }
}

/// Backward of [`FusedAttention`] on `(q, k, v)`: one parallel task per sequence
/// ([`kernels::attention_sequence_grad`]), giving `(3, ..)` of the operands' shape: the
/// gradients of q, k and v.
#[derive(Debug, Clone)]
pub struct AttentionGrad {
    /// The forward op: heads, key bias and dropout mask.
    attention: FusedAttention,
    /// Gradient of the attention's output, `(batch, seq, width)`.
    grad: Tensor,
}

impl candle_core::CustomOp3 for AttentionGrad {
    fn name(&self) -> &'static str {
        "fused-self-attention-grad"
    }

    fn cpu_fwd(
        &self,
        q: &candle_core::CpuStorage,
        q_layout: &candle_core::Layout,
        k: &candle_core::CpuStorage,
        k_layout: &candle_core::Layout,
        v: &candle_core::CpuStorage,
        v_layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let attention = &self.attention;
        let plan = attention_plan(
            self.name(),
            attention.heads,
            &attention.keys,
            attention.dropout.as_ref(),
            [q_layout, k_layout, v_layout],
        )?;
        if self.grad.shape() != q_layout.shape() {
            candle_core::bail!(
                "{}: gradient {:?} does not match the output {:?}",
                self.name(),
                self.grad.shape(),
                q_layout.shape()
            );
        }
        let (q, k, v) = (
            contiguous_f32(self.name(), q, q_layout)?,
            contiguous_f32(self.name(), k, k_layout)?,
            contiguous_f32(self.name(), v, v_layout)?,
        );
        let mut out = vec![0f32; 3 * q.len()];
        let (grad_q, rest) = out.split_at_mut(q.len());
        let (grad_k, grad_v) = rest.split_at_mut(q.len());
        let blocks = plan
            .split(grad_q)
            .into_iter()
            .zip(plan.split(grad_k))
            .zip(plan.split(grad_v))
            .collect::<Vec<_>>();
        with_f32_values(self.name(), &self.grad, |grad| {
            with_optional_f32_values(self.name(), attention.dropout.as_ref(), |dropout| {
                blocks.into_par_iter().zip(&plan.sequences).for_each_init(
                    Vec::new,
                    |scratch, (((dq, dk), dv), s)| {
                        let rows = plan.rows(s);
                        kernels::attention_sequence_grad(
                            (&q[rows.clone()], &k[rows.clone()], &v[rows.clone()]),
                            &plan.key_bias[s.first_row..][..s.shape.seq],
                            dropout.map(|m| &m[plan.factors(s)]),
                            &grad[rows],
                            (dq, dk, dv),
                            s.shape,
                            scratch,
                        )
                    },
                )
            })
        })??;
        let mut dims = vec![3];
        dims.extend_from_slice(q_layout.dims());
        Ok((candle_core::CpuStorage::F32(out), dims.into()))
    }
}

/// `x W^T + b` over the last dimension of `x` (`weight`: `(out, in)`, `bias`: `(out)`).
///
/// On f32 CPU tensors the bias is written into the output first and the matrix multiply adds
/// onto it ([`FusedLinear`]): one pass over the output instead of three (zeroing, product,
/// broadcast add), which matters most for the wide feed-forward layer. Elsewhere it is
/// candle's `broadcast_matmul` plus `broadcast_add`. Both are differentiable.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    linear_dropout(x, weight, bias, 0.0, false)
}

/// [`dropout`]`(`[`linear`]`(x, weight, bias), p, train)`, with the same mask draw; on f32
/// CPU tensors the mask is applied inside [`FusedLinear`] (no separate pass or graph node).
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
/// ([`super::panels::PackedLinear`]) or quantized to int8 ([`super::int8::Int8Linear`]).
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

impl PreparedLinear for super::panels::PackedLinear {
    const NAME: &'static str = "packed-linear";

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
}

impl PreparedLinear for super::int8::Int8Linear {
    const NAME: &'static str = "int8-linear";

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

    fn forward_feed_forward(&self, next: &Self, x: &[f32]) -> Vec<f32> {
        self.forward_feed_forward(next, x)
    }
}

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

/// Mean of hidden states over unpadded positions: `(batch, seq, hidden)` → `(batch, hidden)`.
pub fn masked_mean(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(hidden.dtype())?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.maximum(1.0)?;
    summed.broadcast_div(&counts)
}

#[cfg(test)]
mod kernel_tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn parallel_gelu_matches_candle_exact_gelu() {
        // Odd sizes (not a multiple of the chunk), both signs, tails, and a strided input.
        for n in [1usize, 7, 8191, 8193, 3 * 8192 + 5] {
            let values: Vec<f32> = (0..n)
                .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 24.0)
                .collect();
            let x = Tensor::from_vec(values, n, &Device::Cpu).unwrap();
            let want: Vec<f32> = x.gelu_erf().unwrap().to_vec1().unwrap();
            let got: Vec<f32> = activation(&x, Activation::Gelu, false)
                .unwrap()
                .to_vec1()
                .unwrap();
            for (w, g) in want.iter().zip(&got) {
                assert!((w - g).abs() <= 2e-6 * w.abs().max(1.0), "{w} vs {g}");
            }
        }
        let x = Tensor::arange(0f32, 60.0, &Device::Cpu)
            .unwrap()
            .affine(0.25, -7.0)
            .unwrap()
            .reshape((6, 10))
            .unwrap()
            .t()
            .unwrap();
        let want: Vec<Vec<f32>> = x.gelu_erf().unwrap().to_vec2().unwrap();
        let got: Vec<Vec<f32>> = activation(&x, Activation::Gelu, false)
            .unwrap()
            .to_vec2()
            .unwrap();
        for (w, g) in want.iter().flatten().zip(got.iter().flatten()) {
            assert!((w - g).abs() <= 2e-6 * w.abs().max(1.0), "{w} vs {g}");
        }
    }

    #[test]
    fn parallel_gelu_gradient_matches_candle() {
        let values: Vec<f32> = (0..101).map(|i| (i as f32 - 50.0) * 0.13).collect();
        let x = candle_core::Var::new(values.as_slice(), &Device::Cpu).unwrap();
        let weights = Tensor::arange(0f32, 101.0, &Device::Cpu).unwrap();
        let grad = |y: Tensor| {
            let g = (y * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap()
        };
        let want = grad(x.as_tensor().gelu_erf().unwrap());
        let got = grad(activation(x.as_tensor(), Activation::Gelu, false).unwrap());
        // Element i is i · GELU'(x_i), so bound GELU' itself: within 4e-7 of candle's (2.7e-7
        // at most here; the erf approximation alone is within 1.5e-7). Bounding the weighted
        // value relative to itself had allowed 1e-5 where GELU' is near 1.
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            assert!(
                (w - g).abs() <= 4e-7 * (i as f32).max(1.0),
                "{i}: {w} vs {g}"
            );
        }
    }

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

    /// Deterministic, irregular values in [-scale/2, scale/2).
    fn irregular(shape: &[usize], seed: f32, scale: f32) -> candle_core::Var {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| (((i as f32 + seed) * 0.754_877_7).fract() - 0.5) * scale)
            .collect();
        candle_core::Var::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// Values of `y` and the gradients of `Σ y ⊙ sin(index)` with respect to `vars`.
    fn values_and_grads(y: &Tensor, vars: &[&candle_core::Var]) -> (Vec<f32>, Vec<Vec<f32>>) {
        let n = y.elem_count();
        let weights = Tensor::arange(0f32, n as f32, &Device::Cpu)
            .unwrap()
            .sin()
            .unwrap()
            .reshape(y.shape())
            .unwrap();
        let grads = (y * weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (
            flat(y),
            vars.iter()
                .map(|v| flat(grads.get(v.as_tensor()).expect("a gradient")))
                .collect(),
        )
    }

    fn assert_close(want: &[f32], got: &[f32], tolerance: f32, what: &str) {
        assert_eq!(want.len(), got.len(), "{what}: lengths");
        for (i, (w, g)) in want.iter().zip(got).enumerate() {
            assert!(
                (w - g).abs() <= tolerance * w.abs().max(1.0),
                "{what}[{i}]: {w} vs {g}"
            );
        }
    }

    #[test]
    fn dropout_matches_multiplying_by_its_mask_forward_and_backward() {
        for (dims, p) in [
            (vec![1usize], 0.5f32),
            (vec![3, 7, 5], 0.1),
            (vec![9, 4099], 0.3),
        ] {
            let x = irregular(&dims, 0.0, 2.0);
            seed_dropout(3);
            let mask = dropout_mask(&dims.clone().into(), p, DType::F32, &Device::Cpu).unwrap();
            let composed = (x.as_tensor() * &mask).unwrap();
            seed_dropout(3);
            let fused = dropout(x.as_tensor(), p, true).unwrap();
            let (want, want_grads) = values_and_grads(&composed, &[&x]);
            let (got, got_grads) = values_and_grads(&fused, &[&x]);
            assert_eq!(want, got, "{dims:?} output");
            assert_eq!(want_grads, got_grads, "{dims:?} gradient");
            let kept = mask.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(
                kept.contains(&0.0) || kept.len() == 1,
                "{dims:?}: nothing dropped"
            );
        }
    }

    #[test]
    fn dropout_masks_are_the_serial_draws_of_the_seeded_stream() {
        let (p, scale) = (0.3f32, 1.0 / 0.7f32);
        seed_dropout(5);
        // Several parallel tasks, then a second draw that must continue the stream.
        let shapes = [(3usize, 40_000usize), (7, 11)];
        let masks: Vec<Vec<f32>> = shapes
            .iter()
            .map(|&s| {
                dropout_mask(&s.into(), p, DType::F32, &Device::Cpu)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            })
            .collect();
        let mut serial = ChaCha8Rng::seed_from_u64(5);
        for (shape, mask) in shapes.iter().zip(&masks) {
            let want: Vec<f32> = (0..shape.0 * shape.1)
                .map(|_| {
                    if serial.random::<f32>() < p {
                        0.0
                    } else {
                        scale
                    }
                })
                .collect();
            assert_eq!(&want, mask, "mask of {shape:?}");
        }
        let dropped = masks[0].iter().filter(|m| **m == 0.0).count() as f32;
        assert!((dropped / masks[0].len() as f32 - p).abs() < 0.01);
    }

    #[test]
    fn fused_attention_matches_the_composition_forward_and_backward() {
        // Odd sizes, one and several heads, padded keys (the last `pad` positions of some
        // rows), with and without dropout on the attention weights.
        for (batch, seq, heads, head_dim, pad, dropout) in [
            (1usize, 1usize, 1usize, 1usize, 0usize, 0.0f32),
            (3, 7, 3, 5, 2, 0.0),
            (2, 19, 4, 8, 11, 0.0),
            (1, 1, 1, 1, 0, 0.5),
            (3, 7, 3, 5, 2, 0.3),
            (2, 19, 4, 8, 11, 0.1),
            // The model's head size, and a sequence longer than one 16-query block.
            (2, 39, 2, 32, 5, 0.0),
            (1, 15, 3, 20, 0, 0.2),
        ] {
            let width = heads * head_dim;
            let q = irregular(&[batch, seq, width], 0.0, 4.0);
            let k = irregular(&[batch, seq, width], 1.0, 4.0);
            let v = irregular(&[batch, seq, width], 2.0, 4.0);
            let mask: Vec<u32> = (0..batch * seq)
                .map(|i| u32::from(i / seq == 0 || i % seq < seq - pad))
                .collect();
            let mask = Tensor::from_vec(mask, (batch, seq), &Device::Cpu).unwrap();
            let bias = attention_bias(&mask, DType::F32).unwrap();
            let keys = AttentionKeys::Padded(bias.clone());
            let vars = [&q, &k, &v];
            let (q, k, v) = (q.as_tensor(), k.as_tensor(), v.as_tensor());
            let train = dropout > 0.0;
            // Both paths draw their dropout mask first, from the same seed.
            seed_dropout(11);
            let composed = merge_heads(
                &attention(
                    &split_heads(q, heads).unwrap(),
                    &split_heads(k, heads).unwrap(),
                    &split_heads(v, heads).unwrap(),
                    &bias,
                    dropout,
                    train,
                )
                .unwrap(),
            )
            .unwrap();
            seed_dropout(11);
            let fused = self_attention(q, k, v, &keys, heads, dropout, train).unwrap();
            let (want, want_grads) = values_and_grads(&composed, &vars);
            let (got, got_grads) = values_and_grads(&fused, &vars);
            let case = format!("{batch}x{seq}, {heads} heads of {head_dim}, dropout {dropout}");
            if train {
                // Dropout must really change the output, or the case proves nothing.
                let plain = self_attention(q, k, v, &keys, heads, 0.0, false).unwrap();
                let plain: Vec<f32> = plain.flatten_all().unwrap().to_vec1().unwrap();
                let changed = plain.iter().zip(&want).any(|(p, w)| (p - w).abs() > 1e-3);
                assert!(changed, "{case}: dropout changed nothing");
            }
            assert_close(&want, &got, 1e-5, &format!("{case} output"));
            for (name, (w, g)) in ["q", "k", "v"]
                .iter()
                .zip(want_grads.iter().zip(&got_grads))
            {
                assert_close(w, g, 1e-4, &format!("{case} d{name}"));
            }
        }
    }

    #[test]
    fn packed_attention_equals_each_sequence_alone_forward_and_backward() {
        // Sequences back to back (an empty one among them) against each run alone through
        // the padded kernel (itself checked against the composition above). The dropout
        // factors are drawn sequence after sequence, so one seed gives both sides the same.
        let lengths = [3usize, 1, 0, 7, 5];
        for (heads, head_dim, dropout) in [(1usize, 1usize, 0.0f32), (3, 5, 0.0), (3, 5, 0.3)] {
            let width = heads * head_dim;
            let tokens: usize = lengths.iter().sum();
            let q = irregular(&[tokens, width], 0.0, 4.0);
            let k = irregular(&[tokens, width], 1.0, 4.0);
            let v = irregular(&[tokens, width], 2.0, 4.0);
            let vars = [&q, &k, &v];
            let (q, k, v) = (q.as_tensor(), k.as_tensor(), v.as_tensor());
            let train = dropout > 0.0;
            seed_dropout(5);
            let keys = AttentionKeys::Packed(lengths.to_vec().into());
            let packed = self_attention(q, k, v, &keys, heads, dropout, train).unwrap();
            seed_dropout(5);
            let mut alone = Vec::new();
            let mut first = 0;
            for &len in &lengths {
                if len > 0 {
                    let rows = |t: &Tensor| t.narrow(0, first, len).unwrap().unsqueeze(0).unwrap();
                    let no_padding = Tensor::zeros((1, 1, 1, len), DType::F32, &Device::Cpu);
                    let keys = AttentionKeys::Padded(no_padding.unwrap());
                    let out =
                        self_attention(&rows(q), &rows(k), &rows(v), &keys, heads, dropout, train);
                    alone.push(out.unwrap().squeeze(0).unwrap());
                }
                first += len;
            }
            let alone = Tensor::cat(&alone, 0).unwrap();
            let (want, want_grads) = values_and_grads(&alone, &vars);
            let (got, got_grads) = values_and_grads(&packed, &vars);
            let case = format!("{heads} heads of {head_dim}, dropout {dropout}");
            assert_close(&want, &got, 1e-6, &format!("{case} output"));
            for (name, (w, g)) in ["q", "k", "v"]
                .iter()
                .zip(want_grads.iter().zip(&got_grads))
            {
                assert_close(w, g, 1e-5, &format!("{case} d{name}"));
            }
        }
        // Lengths that do not cover the rows are refused, not read out of bounds.
        let x = Tensor::zeros((4, 6), DType::F32, &Device::Cpu).unwrap();
        let short = AttentionKeys::Packed(vec![1usize, 2].into());
        let err = self_attention(&x, &x, &x, &short, 2, 0.0, false).unwrap_err();
        assert!(err.to_string().contains("add up to 3"), "{err}");
    }

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

    #[test]
    fn fused_linear_rejects_mismatched_shapes() {
        let x = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((3, 5), DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        let err = linear(&x, &w, &b).unwrap_err().to_string();
        assert!(err.contains("fused-linear"), "{err}");
    }

    #[test]
    fn training_gets_the_gelu_gradient() {
        let values = [-9.0f32, -1.5, -0.1, 0.0, 0.3, 2.0, 12.0];
        let x = candle_core::Var::new(&values, &Device::Cpu).unwrap();
        let y = activation(x.as_tensor(), Activation::Gelu, true).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let got: Vec<f32> = grads.get(x.as_tensor()).unwrap().to_vec1().unwrap();
        // Φ(x) + x φ(x) in f64 through candle's erf.
        let x64 = x.as_tensor().to_dtype(DType::F64).unwrap();
        let cdf = ((&x64 * std::f64::consts::FRAC_1_SQRT_2)
            .unwrap()
            .erf()
            .unwrap()
            + 1.0)
            .unwrap()
            * 0.5;
        let pdf = ((x64.sqr().unwrap() * -0.5).unwrap().exp().unwrap()
            / (2.0 * std::f64::consts::PI).sqrt())
        .unwrap();
        let want: Vec<f64> = (cdf.unwrap() + (&x64 * pdf).unwrap())
            .unwrap()
            .to_vec1()
            .unwrap();
        for ((x, w), g) in values.iter().zip(want).zip(got) {
            assert!((w - f64::from(g)).abs() < 1e-6, "gelu'({x}): {w} vs {g}");
        }
    }
}
