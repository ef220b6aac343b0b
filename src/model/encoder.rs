//! The transformer encoder shared by BERT, DistilBERT and RoBERTa.
//!
//! Mirrors transformers' `modeling_bert.py` (`BertEmbeddings`, `BertLayer`),
//! `modeling_distilbert.py` (`Embeddings`, `TransformerBlock`) and `modeling_roberta.py`
//! (`RobertaEmbeddings`); the three differ only in tensor names, token types and
//! position ids, so one post-LayerNorm layer serves all of them.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::SelfAttention;
use super::config::EncoderConfig;
use super::embeddings::Embeddings;
use super::feed_forward::FeedForward;
use super::names::{self, LayerNames};
use super::nn::Linear;
use crate::cpu::ops;
use crate::cpu::unpad::TokenPacking;

/// Token ids, token-type ids and attention mask of one padded batch, each `(batch, seq)` u32.
#[derive(Debug, Clone)]
pub struct EncoderInput {
    /// Vocabulary ids, padded with the pad id.
    pub input_ids: Tensor,
    /// Segment ids (0 for the first sequence, 1 for the second); ignored where the
    /// architecture has no token types.
    pub token_type_ids: Tensor,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
}

/// One transformer layer: self-attention, then the feed-forward block, each followed by
/// residual + LayerNorm (post-LayerNorm, as BERT, DistilBERT and RoBERTa).
#[derive(Debug, Clone)]
struct Layer {
    attention: SelfAttention,
    feed_forward: FeedForward,
}

impl Layer {
    fn new(config: &EncoderConfig, names: &LayerNames, vb: VarBuilder) -> Result<Self> {
        Ok(Layer {
            attention: SelfAttention::new(config, names, &vb)?,
            feed_forward: FeedForward::new(config, names, &vb)?,
        })
    }

    fn linears_mut(&mut self) -> impl Iterator<Item = &mut Linear> {
        let [q, k, v, o] = self.attention.linears_mut();
        let [widen, narrow] = self.feed_forward.linears_mut();
        [q, k, v, o, widen, narrow].into_iter()
    }

    fn forward(&self, x: &Tensor, keys: &ops::AttentionKeys, train: bool) -> Result<Tensor> {
        let x = self.attention.forward_t(x, keys, train)?;
        self.feed_forward.forward_t(&x, train)
    }
}

/// Embeddings plus the stack of transformer layers.
#[derive(Debug, Clone)]
pub struct Encoder {
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl Encoder {
    /// Builds the encoder from tensors under `vb` (named as in a base checkpoint,
    /// without the `bert.`/`distilbert.`/`roberta.` prefix).
    pub fn new(config: &EncoderConfig, vb: VarBuilder) -> Result<Self> {
        let names = names::layer_names(config.architecture);
        let stack = vb.pp(names.stack);
        let layers = (0..config.num_layers)
            .map(|i| Layer::new(config, names, stack.pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoder {
            embeddings: Embeddings::new(config, vb.pp(names::EMBEDDINGS))?,
            layers,
        })
    }

    /// Switches every dense layer of every transformer layer to int8 weights for CPU
    /// inference (see [`Linear::quantize_int8`]); embeddings and LayerNorms stay f32.
    pub fn quantize_int8(&mut self) -> Result<()> {
        for layer in &mut self.layers {
            for linear in layer.linears_mut() {
                linear.quantize_int8()?;
            }
        }
        Ok(())
    }

    /// Packs every dense layer's f32 weights for CPU inference (see [`Linear::pack_f32`]).
    pub fn pack_f32(&mut self) -> Result<()> {
        for layer in &mut self.layers {
            for linear in layer.linears_mut() {
                linear.pack_f32()?;
            }
        }
        Ok(())
    }

    /// Last hidden states, `(batch, seq, hidden)`. Dropout is applied only when `train`.
    ///
    /// On f32 CPU tensors a batch with padding runs its layers on the real tokens alone
    /// ([`TokenPacking`]): the real tokens' states are the same, and the padded positions'
    /// states are zero. Elsewhere every position is computed, padding masked in attention.
    pub fn forward_t(&self, input: &EncoderInput, train: bool) -> Result<Tensor> {
        let x = self.embeddings.forward(input, train)?;
        let packing = if ops::fused(&[&x]) {
            TokenPacking::from_mask(&input.attention_mask)?
        } else {
            None
        };
        let (mut x, keys) = match &packing {
            Some(packing) => (
                packing.pack(&x)?,
                ops::AttentionKeys::Packed(packing.lengths().clone()),
            ),
            None => {
                let bias = ops::attention_bias(&input.attention_mask, x.dtype())?;
                (x, ops::AttentionKeys::Padded(bias))
            }
        };
        for layer in &self.layers {
            x = layer.forward(&x, &keys, train)?;
        }
        match packing {
            Some(packing) => packing.unpack(&x),
            None => Ok(x),
        }
    }
}
