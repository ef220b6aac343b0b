//! Pooling of hidden states over a sequence.

use candle_core::{Result, Tensor};

/// Mean of hidden states over unpadded positions: `(batch, seq, hidden)` → `(batch, hidden)`.
pub fn masked_mean(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(hidden.dtype())?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.maximum(1.0)?;
    summed.broadcast_div(&counts)
}
