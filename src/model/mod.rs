//! The one model definition: encoder, optional pooler and named heads.
//!
//! Inference builds it from a checkpoint ([`weights`]), training from a `VarMap`;
//! both call [`Model::new`] with a `VarBuilder`, so the network is defined once.

#![forbid(unsafe_code)]

pub mod attention;
pub mod config;
pub mod embeddings;
pub mod encoder;
pub mod feed_forward;
pub mod heads;
pub mod names;
pub mod nn;
pub mod weights;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

pub use config::{
    Activation, Architecture, EncoderConfig, HeadInput, HeadPooling, HeadSpec, MentionMarkers,
    ModelConfig, Reading, directed_target,
};
pub use encoder::{Encoder, EncoderInput};
pub use heads::{Head, Pooler};

/// Encoder plus heads, with Hugging Face tensor names.
#[derive(Debug, Clone)]
pub struct Model {
    config: ModelConfig,
    encoder: Encoder,
    pooler: Option<Pooler>,
    heads: Vec<Head>,
}

/// Hidden states of one encoder pass and the logits of the heads that were asked for.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    /// Last hidden states, `(batch, seq, hidden)`.
    pub hidden: Tensor,
    /// `(head index, logits (batch, labels))` in the order requested.
    pub logits: Vec<(usize, Tensor)>,
}

impl Model {
    /// Builds the model from `vb`, whose root holds the task checkpoint's names
    /// (`bert.embeddings...`, `classifier.weight`, `heads.stance.classifier.weight`, ...).
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let enc = &config.encoder;
        let encoder_vb = vb.pp(enc.architecture.tensor_prefix());
        let encoder = Encoder::new(enc, encoder_vb.clone())?;
        let needs_pooler = config
            .heads
            .iter()
            .any(|h| h.pooling == HeadPooling::Pooler);
        let pooler = if needs_pooler {
            Some(Pooler::new(enc.hidden_size, encoder_vb.pp(names::POOLER))?)
        } else {
            None
        };
        let heads = config
            .heads
            .iter()
            .map(|spec| Head::new(spec, enc.hidden_size, enc.classifier_dropout, &vb))
            .collect::<Result<Vec<_>>>()?;
        Ok(Model {
            config: config.clone(),
            encoder,
            pooler,
            heads,
        })
    }

    /// Runs the encoder's dense layers with int8 weights from now on (CPU inference only;
    /// the pooler and heads stay f32). See [`crate::cpu::int8`].
    pub fn quantize_int8(&mut self) -> Result<()> {
        self.encoder.quantize_int8()
    }

    /// Runs the encoder's dense layers on f32 weights packed for the CPU from now on, where
    /// the CPU has AVX-512 (inference only; see [`crate::cpu::panels`]). Needs f32 CPU weights.
    pub fn pack_f32(&mut self) -> Result<()> {
        self.encoder.pack_f32()
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The heads, in config order.
    pub fn heads(&self) -> &[Head] {
        &self.heads
    }

    /// Last hidden states, `(batch, seq, hidden)`; dropout only when `train`. In f32 on CPU
    /// padded positions are zero (the layers run on real tokens only, see
    /// [`encoder::Encoder::forward_t`]).
    pub fn encode(&self, input: &EncoderInput, train: bool) -> Result<Tensor> {
        self.encoder.forward_t(input, train)
    }

    /// The vector head `head` feeds to its final linear layer, `(batch, hidden)`.
    pub fn head_features(
        &self,
        head: usize,
        hidden: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        self.head_at(head)?
            .features(hidden, attention_mask, self.pooler.as_ref(), train)
    }

    /// Logits of head `head` over its labels, `(batch, labels)`.
    pub fn head_logits(
        &self,
        head: usize,
        hidden: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let features = self.head_features(head, hidden, attention_mask, train)?;
        self.head_at(head)?.logits(&features, train)
    }

    /// One encoder pass serving every head in `heads`.
    pub fn forward_t(
        &self,
        input: &EncoderInput,
        heads: &[usize],
        train: bool,
    ) -> Result<ModelOutput> {
        let hidden = self.encode(input, train)?;
        let logits = heads
            .iter()
            .map(|&h| {
                Ok((
                    h,
                    self.head_logits(h, &hidden, &input.attention_mask, train)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ModelOutput { hidden, logits })
    }

    fn head_at(&self, head: usize) -> Result<&Head> {
        self.heads.get(head).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "head index {head} out of range ({} heads)",
                self.heads.len()
            ))
        })
    }
}
