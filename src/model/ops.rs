//! Numeric building blocks of the encoder, kept in one place so that fused kernels can
//! replace them without touching the model's structure.
//!
//! Every function here is differentiable: training runs through the same code.
//! (`candle_nn::ops::layer_norm` and `softmax_last_dim` are fused but have no backward,
//! so gradients would silently stop at them; they are deliberately not used.)

use std::cell::RefCell;

use candle_core::{D, DType, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::Activation;

/// Additive bias for masked attention scores: large enough that `exp` underflows to 0
/// in every float type, small enough not to overflow f16.
const MASKED_SCORE: f64 = -1.0e4;

/// LayerNorm over the last dimension, computed in f32 for half-precision inputs.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
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

/// The feed-forward activation. In inference (`train == false`) on f32 CPU tensors, exact
/// GELU runs as one parallel kernel ([`GeluErf`]); training keeps candle's op and its backward.
pub fn activation(x: &Tensor, kind: Activation, train: bool) -> Result<Tensor> {
    match kind {
        Activation::Gelu if !train && x.dtype() == DType::F32 && x.device().is_cpu() => {
            x.contiguous()?.apply_op1(GeluErf)
        }
        Activation::Gelu => x.gelu_erf(),
        Activation::GeluTanh => x.gelu(),
        Activation::Relu => x.relu(),
    }
}

/// Exact GELU, `x * Φ(x)`, for contiguous f32 CPU tensors: erf from Abramowitz & Stegun
/// 7.1.26 (absolute error ≤ 1.5e-7), split over rayon's threads. candle's own `gelu_erf` runs
/// libm's scalar `erff` on one thread, which took 13% of inference time. Its backward,
/// `Φ(x) + x φ(x)`, is composed from candle ops, so gradients flow through it exactly.
#[derive(Debug, Clone, Copy)]
pub struct GeluErf;

/// Elements per parallel task: enough work to outweigh scheduling.
const TASK_ELEMENTS: usize = 8192;

/// Applies `kernel(input rows, output rows)` to whole rows of `width` elements of a
/// contiguous f32 tensor, in parallel tasks of about [`TASK_ELEMENTS`] elements.
fn map_rows_parallel(
    op: &str,
    storage: &candle_core::CpuStorage,
    layout: &candle_core::Layout,
    width: usize,
    kernel: impl Fn(&[f32], &mut [f32]) + Sync,
) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
    use rayon::prelude::*;
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op} needs a contiguous tensor");
    };
    let input = &storage.as_slice::<f32>()?[start..end];
    let mut out = vec![0f32; input.len()];
    let task = (TASK_ELEMENTS / width).max(1) * width;
    out.par_chunks_mut(task)
        .zip(input.par_chunks(task))
        .for_each(|(o, i)| kernel(i, o));
    Ok((candle_core::CpuStorage::F32(out), layout.shape().clone()))
}

/// `x * Φ(x)` with Φ through the A&S 7.1.26 erf approximation.
#[inline]
fn gelu_erf_scalar(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_72,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let z = (x * std::f32::consts::FRAC_1_SQRT_2).abs();
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let erf_abs = 1.0 - poly * (-z * z).exp();
    let erf = if x < 0.0 { -erf_abs } else { erf_abs };
    0.5 * x * (1.0 + erf)
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
        map_rows_parallel(self.name(), storage, layout, 1, |input, out| {
            for (o, &x) in out.iter_mut().zip(input) {
                *o = gelu_erf_scalar(x);
            }
        })
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let cdf = ((arg * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)? * 0.5;
        let pdf = (arg.sqr()? * -0.5)?.exp()?
            * (0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2);
        let slope = (cdf? + (arg * pdf?)?)?;
        Ok(Some(grad_res.mul(&slope)?))
    }
}

/// Softmax over the last dimension: one parallel pass per row for contiguous f32 CPU
/// tensors (candle-nn's `softmax` takes five passes and allocations; its fused
/// `softmax_last_dim` has no backward), with the backward `y ⊙ (g − Σ g⊙y)`.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.dtype() == DType::F32 && x.device().is_cpu() {
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
        map_rows_parallel(self.name(), storage, layout, width, |input, out| {
            for (o, i) in out.chunks_mut(width).zip(input.chunks(width)) {
                let max = i.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let mut sum = 0f32;
                for (o, &v) in o.iter_mut().zip(i) {
                    *o = (v - max).exp();
                    sum += *o;
                }
                let inv = 1.0 / sum;
                o.iter_mut().for_each(|o| *o *= inv);
            }
        })
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let dot = (grad_res * res)?.sum_keepdim(D::Minus1)?;
        Ok(Some((grad_res.broadcast_sub(&dot)? * res)?))
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
    if p >= 1.0 {
        return x.zeros_like();
    }
    let scale = 1.0 / (1.0 - p);
    let mask: Vec<f32> = DROPOUT_RNG.with(|rng| {
        let mut rng = rng.borrow_mut();
        (0..x.elem_count())
            .map(|_| if rng.random::<f32>() < p { 0.0 } else { scale })
            .collect()
    });
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    x * mask
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
        for (w, g) in want.iter().zip(&got) {
            assert!((w - g).abs() <= 1e-5 * w.abs().max(1.0), "{w} vs {g}");
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

    #[test]
    fn training_keeps_the_differentiable_gelu() {
        let x = candle_core::Var::new(&[-1.5f32, 0.3, 2.0], &Device::Cpu).unwrap();
        let y = activation(x.as_tensor(), Activation::Gelu, true).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(x.as_tensor()).is_some());
    }
}
