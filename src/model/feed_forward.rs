//! The position-wise feed-forward block with its residual and LayerNorm (transformers'
//! `BertIntermediate` + `BertOutput`; DistilBERT's `FFN` plus `output_layer_norm`).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::config::EncoderConfig;
use super::names::LayerNames;
use super::nn::{LayerNorm, Linear};
use crate::cpu::ops::{self, Activation};

/// `LayerNorm(x + dropout(narrow(activation(widen(x)))))`.
#[derive(Debug, Clone)]
pub struct FeedForward {
    widen: Linear,
    narrow: Linear,
    norm: LayerNorm,
    dropout: f32,
}

impl FeedForward {
    /// Loads or creates both layers and the LayerNorm under `vb` (one layer's prefix).
    pub fn new(config: &EncoderConfig, names: &LayerNames, vb: &VarBuilder) -> Result<Self> {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        Ok(FeedForward {
            widen: Linear::load(h, i, vb.pp(names.ffn_in))?.with_activation(config.activation),
            narrow: Linear::load(i, h, vb.pp(names.ffn_out))?.with_dropout(config.hidden_dropout),
            norm: LayerNorm::new(h, config.layer_norm_eps, vb.pp(names.output_norm))?,
            dropout: config.hidden_dropout,
        })
    }

    /// The two dense layers, for preparing their weights.
    pub(super) fn linears_mut(&mut self) -> [&mut Linear; 2] {
        [&mut self.widen, &mut self.narrow]
    }

    /// `(tokens..., hidden)` in, the same shape out; dropout only when `train`.
    ///
    /// Where both layers hold int8 weights and the activation is exact GELU, one kernel runs
    /// both products block of rows by block of rows, keeping the wide intermediate rows in
    /// cache ([`crate::cpu::int8::Int8Linear::forward_feed_forward`]); elsewhere the two
    /// layers run in turn.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let out = match (
            self.widen.int8(),
            self.narrow.int8(),
            self.widen.activation(),
        ) {
            (Some(widen), Some(narrow), Some(Activation::Gelu)) => ops::dropout(
                &ops::feed_forward_prepared(x, widen, narrow)?,
                self.dropout,
                train,
            )?,
            _ => self
                .narrow
                .forward_t(&self.widen.forward_t(x, train)?, train)?,
        };
        self.norm.forward_residual(&out, x)
    }
}
