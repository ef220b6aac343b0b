//! Multi-head self-attention with its output projection, residual and LayerNorm
//! (transformers' `BertAttention`; DistilBERT's `MultiHeadSelfAttention` plus `sa_layer_norm`).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::EncoderConfig;
use super::names::LayerNames;
use super::nn::{LayerNorm, Linear};
use crate::cpu::ops;

/// Self-attention, then `LayerNorm(x + dropout(output(context)))`.
#[derive(Debug, Clone)]
pub struct SelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    norm: LayerNorm,
    heads: usize,
    dropout: f32,
}

impl SelfAttention {
    /// Loads or creates the projections and LayerNorm under `vb` (one layer's prefix).
    pub fn new(config: &EncoderConfig, names: &LayerNames, vb: &VarBuilder) -> Result<Self> {
        let h = config.hidden_size;
        Ok(SelfAttention {
            query: Linear::load(h, h, vb.pp(names.query))?,
            key: Linear::load(h, h, vb.pp(names.key))?,
            value: Linear::load(h, h, vb.pp(names.value))?,
            output: Linear::load(h, h, vb.pp(names.attention_output))?
                .with_dropout(config.hidden_dropout),
            norm: LayerNorm::new(h, config.layer_norm_eps, vb.pp(names.attention_norm))?,
            heads: config.num_heads,
            dropout: config.attention_dropout,
        })
    }

    /// The four dense layers, for preparing their weights.
    pub(super) fn linears_mut(&mut self) -> [&mut Linear; 4] {
        [
            &mut self.query,
            &mut self.key,
            &mut self.value,
            &mut self.output,
        ]
    }

    /// `(tokens..., hidden)` in, the same shape out; `keys` says which keys each query sees.
    pub fn forward_t(&self, x: &Tensor, keys: &ops::AttentionKeys, train: bool) -> Result<Tensor> {
        let context = ops::self_attention(
            &self.query.forward(x)?,
            &self.key.forward(x)?,
            &self.value.forward(x)?,
            keys,
            self.heads,
            self.dropout,
            train,
        )?;
        let attended = self.output.forward_t(&context, train)?;
        self.norm.forward_residual(&attended, x)
    }
}
