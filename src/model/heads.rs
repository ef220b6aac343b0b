//! Classification heads over the encoder's hidden states.
//!
//! Each pooling style keeps the tensor names of the transformers head it mirrors
//! (`BertForSequenceClassification`, `DistilBertForSequenceClassification`,
//! `RobertaClassificationHead`), under the head's own prefix.

use candle_core::{D, IndexOp, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{HeadPooling, HeadSpec};
use super::nn::Linear;
use crate::cpu::ops;

/// BERT's pooler: dense + tanh on the first token. Shared by every `Pooler` head.
#[derive(Debug, Clone)]
pub struct Pooler {
    dense: Linear,
}

impl Pooler {
    /// Loads or creates `dense` under `vb` (the checkpoint's `pooler`).
    pub fn new(hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Pooler {
            dense: Linear::load(hidden, hidden, vb.pp("dense"))?,
        })
    }

    /// `(batch, seq, hidden)` → `(batch, hidden)`.
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        self.dense.forward(&first_token(hidden)?)?.tanh()
    }
}

/// One named head: optional dense layer, dropout, final linear layer over its labels.
#[derive(Debug, Clone)]
pub struct Head {
    spec: HeadSpec,
    dense: Option<Linear>,
    output: Linear,
    dropout: f32,
}

fn first_token(hidden: &Tensor) -> Result<Tensor> {
    hidden.i((.., 0))?.contiguous()
}

/// The `VarBuilder` for a head's tensors: `prefix` is empty or ends with a dot.
fn prefixed<'a>(vb: &VarBuilder<'a>, prefix: &str) -> VarBuilder<'a> {
    match prefix.trim_end_matches('.') {
        "" => vb.clone(),
        p => vb.pp(p),
    }
}

impl Head {
    /// Loads or creates the head's tensors under its `tensor_prefix`.
    pub fn new(spec: &HeadSpec, hidden: usize, dropout: f32, vb: &VarBuilder) -> Result<Self> {
        let vb = prefixed(vb, &spec.tensor_prefix);
        let labels = spec.labels.len();
        let (dense, output) = match spec.pooling {
            HeadPooling::Pooler | HeadPooling::Mean => {
                (None, Linear::load(hidden, labels, vb.pp("classifier"))?)
            }
            HeadPooling::DenseRelu => (
                Some(Linear::load(hidden, hidden, vb.pp("pre_classifier"))?),
                Linear::load(hidden, labels, vb.pp("classifier"))?,
            ),
            HeadPooling::DenseTanh => (
                Some(Linear::load(hidden, hidden, vb.pp("classifier.dense"))?),
                Linear::load(hidden, labels, vb.pp("classifier.out_proj"))?,
            ),
        };
        Ok(Head {
            spec: spec.clone(),
            dense,
            output,
            dropout,
        })
    }

    /// The head's description.
    pub fn spec(&self) -> &HeadSpec {
        &self.spec
    }

    /// The vector fed to the final linear layer, `(batch, hidden)`.
    ///
    /// `pooler` must be given for `Pooler` heads.
    pub fn features(
        &self,
        hidden: &Tensor,
        attention_mask: &Tensor,
        pooler: Option<&Pooler>,
        train: bool,
    ) -> Result<Tensor> {
        match (self.spec.pooling, &self.dense) {
            (HeadPooling::Pooler, _) => match pooler {
                Some(pooler) => pooler.forward(hidden),
                None => candle_core::bail!("head {:?} needs the encoder's pooler", self.spec.name),
            },
            (HeadPooling::Mean, _) => ops::masked_mean(hidden, attention_mask),
            (HeadPooling::DenseRelu, Some(dense)) => dense.forward(&first_token(hidden)?)?.relu(),
            (HeadPooling::DenseTanh, Some(dense)) => {
                let cls = ops::dropout(&first_token(hidden)?, self.dropout, train)?;
                dense.forward(&cls)?.tanh()
            }
            (_, None) => candle_core::bail!("head {:?} lacks its dense layer", self.spec.name),
        }
    }

    /// Logits from [`Head::features`], `(batch, labels)`.
    pub fn logits(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        self.output
            .forward(&ops::dropout(features, self.dropout, train)?)
    }
}

/// Softmax over labels of `logits / temperature` (the head's fitted temperature, if
/// any), in f32 whatever the compute dtype.
pub fn probabilities(logits: &Tensor, temperature: Option<f64>) -> Result<Tensor> {
    let logits = logits.to_dtype(candle_core::DType::F32)?;
    let logits = match temperature {
        Some(t) => (logits / t)?,
        None => logits,
    };
    candle_nn::ops::softmax(&logits, D::Minus1)
}
