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

/// The feed-forward activation.
pub fn activation(x: &Tensor, kind: Activation) -> Result<Tensor> {
    match kind {
        Activation::Gelu => x.gelu_erf(),
        Activation::GeluTanh => x.gelu(),
        Activation::Relu => x.relu(),
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
    let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
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
