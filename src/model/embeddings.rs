//! Word, position and token-type embeddings (transformers' `BertEmbeddings`,
//! `RobertaEmbeddings`, DistilBERT's `Embeddings`).

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{Architecture, EncoderConfig};
use super::encoder::EncoderInput;
use super::nn::{LayerNorm, embedding};
use crate::cpu::ops;

/// Word, position and token-type embeddings followed by LayerNorm and dropout.
#[derive(Debug, Clone)]
pub struct Embeddings {
    words: candle_nn::Embedding,
    positions: candle_nn::Embedding,
    token_types: Option<candle_nn::Embedding>,
    norm: LayerNorm,
    architecture: Architecture,
    pad_token_id: u32,
    dropout: f32,
}

impl Embeddings {
    /// Loads or creates the tables and LayerNorm under `vb` (the checkpoint's `embeddings`).
    pub fn new(config: &EncoderConfig, vb: VarBuilder) -> Result<Self> {
        let hidden = config.hidden_size;
        let token_types = if config.type_vocab_size > 0 {
            Some(embedding(
                config.type_vocab_size,
                hidden,
                vb.pp("token_type_embeddings"),
            )?)
        } else {
            None
        };
        Ok(Embeddings {
            words: embedding(config.vocab_size, hidden, vb.pp("word_embeddings"))?,
            positions: embedding(
                config.max_position_embeddings,
                hidden,
                vb.pp("position_embeddings"),
            )?,
            token_types,
            norm: LayerNorm::new(hidden, config.layer_norm_eps, vb.pp("LayerNorm"))?,
            architecture: config.architecture,
            pad_token_id: config.pad_token_id,
            dropout: config.hidden_dropout,
        })
    }

    fn position_ids(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (batch, seq) = input_ids.dims2()?;
        match self.architecture {
            // RoBERTa numbers real tokens from pad_token_id + 1 and gives padding pad_token_id.
            Architecture::Roberta => {
                let real = input_ids.ne(self.pad_token_id)?.to_dtype(DType::F32)?;
                let positions = (real.cumsum(1)? * &real)? + self.pad_token_id as f64;
                positions?.to_dtype(DType::U32)
            }
            _ => Tensor::arange(0u32, seq as u32, input_ids.device())?
                .unsqueeze(0)?
                .broadcast_as((batch, seq))?
                .contiguous(),
        }
    }

    /// `(batch, seq, hidden)` embeddings of one batch; dropout only when `train`.
    pub fn forward(&self, input: &EncoderInput, train: bool) -> Result<Tensor> {
        let mut x = self.words.forward(&input.input_ids)?;
        x = (x + self
            .positions
            .forward(&self.position_ids(&input.input_ids)?)?)?;
        if let Some(token_types) = &self.token_types {
            // A single-row table (RoBERTa) has only segment 0, whatever the tokenizer says.
            let ids = if token_types.embeddings().dim(0)? == 1 {
                input.token_type_ids.zeros_like()?
            } else {
                input.token_type_ids.clone()
            };
            x = (x + token_types.forward(&ids)?)?;
        }
        ops::dropout(&self.norm.forward(&x)?, self.dropout, train)
    }
}
