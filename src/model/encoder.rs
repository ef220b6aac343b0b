//! The transformer encoder shared by BERT, DistilBERT and RoBERTa.
//!
//! Mirrors transformers' `modeling_bert.py` (`BertEmbeddings`, `BertLayer`),
//! `modeling_distilbert.py` (`Embeddings`, `TransformerBlock`) and `modeling_roberta.py`
//! (`RobertaEmbeddings`); the three differ only in tensor names, token types and
//! position ids, so one post-LayerNorm layer serves all of them.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{Architecture, EncoderConfig};
use super::layers::{LayerNorm, Linear, embedding, linear};
use crate::cpu::ops;
use crate::cpu::unpad::TokenPacking;

/// Tensor names of one layer, relative to the layer's prefix.
struct LayerNames {
    stack: &'static str,
    query: &'static str,
    key: &'static str,
    value: &'static str,
    attention_output: &'static str,
    attention_norm: &'static str,
    ffn_in: &'static str,
    ffn_out: &'static str,
    output_norm: &'static str,
}

const BERT_NAMES: LayerNames = LayerNames {
    stack: "encoder.layer",
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attention_output: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    ffn_in: "intermediate.dense",
    ffn_out: "output.dense",
    output_norm: "output.LayerNorm",
};

const DISTILBERT_NAMES: LayerNames = LayerNames {
    stack: "transformer.layer",
    query: "attention.q_lin",
    key: "attention.k_lin",
    value: "attention.v_lin",
    attention_output: "attention.out_lin",
    attention_norm: "sa_layer_norm",
    ffn_in: "ffn.lin1",
    ffn_out: "ffn.lin2",
    output_norm: "output_layer_norm",
};

fn layer_names(architecture: Architecture) -> &'static LayerNames {
    match architecture {
        Architecture::DistilBert => &DISTILBERT_NAMES,
        Architecture::Bert | Architecture::Roberta => &BERT_NAMES,
    }
}

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

/// Word, position and token-type embeddings followed by LayerNorm and dropout.
#[derive(Debug, Clone)]
struct Embeddings {
    words: candle_nn::Embedding,
    positions: candle_nn::Embedding,
    token_types: Option<candle_nn::Embedding>,
    norm: LayerNorm,
    architecture: Architecture,
    pad_token_id: u32,
    dropout: f32,
}

impl Embeddings {
    fn new(config: &EncoderConfig, vb: VarBuilder) -> Result<Self> {
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

    fn forward(&self, input: &EncoderInput, train: bool) -> Result<Tensor> {
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

/// Multi-head self-attention, feed-forward, each followed by residual + LayerNorm.
#[derive(Debug, Clone)]
struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    output_norm: LayerNorm,
    config: EncoderConfig,
}

impl Layer {
    fn new(config: &EncoderConfig, names: &LayerNames, vb: VarBuilder) -> Result<Self> {
        let (h, i, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        Ok(Layer {
            query: linear(h, h, vb.pp(names.query))?,
            key: linear(h, h, vb.pp(names.key))?,
            value: linear(h, h, vb.pp(names.value))?,
            attention_output: linear(h, h, vb.pp(names.attention_output))?,
            attention_norm: LayerNorm::new(h, eps, vb.pp(names.attention_norm))?,
            ffn_in: linear(h, i, vb.pp(names.ffn_in))?,
            ffn_out: linear(i, h, vb.pp(names.ffn_out))?,
            output_norm: LayerNorm::new(h, eps, vb.pp(names.output_norm))?,
            config: config.clone(),
        })
    }

    fn linears_mut(&mut self) -> [&mut Linear; 6] {
        [
            &mut self.query,
            &mut self.key,
            &mut self.value,
            &mut self.attention_output,
            &mut self.ffn_in,
            &mut self.ffn_out,
        ]
    }

    fn forward(&self, x: &Tensor, keys: &ops::AttentionKeys, train: bool) -> Result<Tensor> {
        let heads = self.config.num_heads;
        let context = ops::self_attention(
            &self.query.forward(x)?,
            &self.key.forward(x)?,
            &self.value.forward(x)?,
            keys,
            heads,
            self.config.attention_dropout,
            train,
        )?;
        let attended =
            self.attention_output
                .forward_dropout(&context, self.config.hidden_dropout, train)?;
        let x = self.attention_norm.forward_residual(&attended, x)?;

        let out = self.ffn_in.forward_feed_forward(
            &self.ffn_out,
            &x,
            self.config.activation,
            self.config.hidden_dropout,
            train,
        )?;
        self.output_norm.forward_residual(&out, &x)
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
        let names = layer_names(config.architecture);
        let stack = vb.pp(names.stack);
        let layers = (0..config.num_layers)
            .map(|i| Layer::new(config, names, stack.pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoder {
            embeddings: Embeddings::new(config, vb.pp("embeddings"))?,
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
