//! Padding removal: the encoder's layers run on the real tokens of a batch only.
//!
//! A padded batch of sentences of mixed lengths spends much of its work on padding. Every
//! per-token op (dense layers, LayerNorm, GELU, dropout) gives a real token the same value
//! whether or not padding sits beside it, and attention already gives padded keys zero
//! weight, so running the layers on the real tokens alone, each sequence attending within
//! itself ([`super::ops::AttentionKeys::Packed`]), changes no real token's value; only the
//! padded positions' states, which nothing reads, become zero.

use std::sync::Arc;

use candle_core::{DType, Result, Tensor};

/// Where the real tokens of a padded `(batch, seq)` batch are, to pack hidden states
/// `(batch, seq, hidden)` into `(tokens, hidden)` and back.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use standpoint::cpu::unpad::TokenPacking;
///
/// let mask = Tensor::new(&[[1u32, 1, 1], [1, 0, 0]], &Device::Cpu)?;
/// let packing = TokenPacking::from_mask(&mask)?.expect("the second row is padded");
/// assert_eq!(&packing.lengths()[..], &[3, 1]);
///
/// let hidden = Tensor::arange(0f32, 6.0, &Device::Cpu)?.reshape((2, 3, 1))?;
/// let packed = packing.pack(&hidden)?;
/// assert_eq!(packed.flatten_all()?.to_vec1::<f32>()?, [0.0, 1.0, 2.0, 3.0]);
/// let restored = packing.unpack(&packed)?;
/// assert_eq!(restored.flatten_all()?.to_vec1::<f32>()?, [0.0, 1.0, 2.0, 3.0, 0.0, 0.0]);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TokenPacking {
    /// Real tokens per sequence, in batch order.
    lengths: Arc<[usize]>,
    /// The position in the flattened batch of each real token, in order (u32).
    gather: Tensor,
    /// For each position of the flattened batch, its row among the packed tokens, or the
    /// number of tokens (a zero row appended on unpacking) for padding (u32).
    scatter: Tensor,
    batch: usize,
    seq: usize,
}

impl TokenPacking {
    /// Reads a `(batch, seq)` attention mask (non-zero for real tokens, any integer or float
    /// type); `None` when no position is padded, so there is nothing to remove.
    pub fn from_mask(mask: &Tensor) -> Result<Option<Self>> {
        let (batch, seq) = mask.dims2()?;
        let real: Vec<Vec<f32>> = mask.to_dtype(DType::F32)?.to_vec2()?;
        let lengths: Arc<[usize]> = real
            .iter()
            .map(|row| row.iter().filter(|&&m| m != 0.0).count())
            .collect();
        let tokens: usize = lengths.iter().sum();
        if tokens == batch * seq {
            return Ok(None);
        }
        let mut gather = Vec::with_capacity(tokens);
        let mut scatter = Vec::with_capacity(batch * seq);
        for (position, &m) in real.iter().flatten().enumerate() {
            if m != 0.0 {
                scatter.push(gather.len() as u32);
                gather.push(position as u32);
            } else {
                scatter.push(tokens as u32);
            }
        }
        let device = mask.device();
        Ok(Some(TokenPacking {
            lengths,
            gather: Tensor::from_vec(gather, tokens, device)?,
            scatter: Tensor::from_vec(scatter, batch * seq, device)?,
            batch,
            seq,
        }))
    }

    /// Real tokens per sequence, in batch order.
    pub fn lengths(&self) -> &Arc<[usize]> {
        &self.lengths
    }

    /// `(batch, seq, hidden)` → `(tokens, hidden)`: the real tokens, sequence after sequence.
    pub fn pack(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, seq, hidden) = x.dims3()?;
        if (batch, seq) != (self.batch, self.seq) {
            candle_core::bail!(
                "packing a ({batch}, {seq}, {hidden}) tensor by a ({}, {}) mask",
                self.batch,
                self.seq
            );
        }
        x.reshape((batch * seq, hidden))?
            .index_select(&self.gather, 0)
    }

    /// `(tokens, hidden)` → `(batch, seq, hidden)`, zero at padded positions.
    pub fn unpack(&self, x: &Tensor) -> Result<Tensor> {
        let (tokens, hidden) = x.dims2()?;
        if tokens != self.gather.elem_count() {
            candle_core::bail!(
                "unpacking {tokens} rows where the mask has {} real tokens",
                self.gather.elem_count()
            );
        }
        let zero = Tensor::zeros((1, hidden), x.dtype(), x.device())?;
        Tensor::cat(&[x, &zero], 0)?
            .index_select(&self.scatter, 0)?
            .reshape((self.batch, self.seq, hidden))
    }
}
