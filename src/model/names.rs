//! Hugging Face tensor names: the prefixes of an encoder inside a task checkpoint, each
//! layer's tensor names per architecture, and the renames older checkpoints need.

use super::config::Architecture;

/// Tensor names of one transformer layer, relative to the layer's prefix.
#[derive(Debug)]
pub struct LayerNames {
    /// The stack of layers, numbered under it (`encoder.layer.0...`).
    pub stack: &'static str,
    /// Self-attention's query projection.
    pub query: &'static str,
    /// Self-attention's key projection.
    pub key: &'static str,
    /// Self-attention's value projection.
    pub value: &'static str,
    /// The projection after attention.
    pub attention_output: &'static str,
    /// LayerNorm after attention.
    pub attention_norm: &'static str,
    /// The feed-forward block's widening layer.
    pub ffn_in: &'static str,
    /// The feed-forward block's narrowing layer.
    pub ffn_out: &'static str,
    /// LayerNorm after the feed-forward block.
    pub output_norm: &'static str,
}

const BERT: LayerNames = LayerNames {
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

const DISTILBERT: LayerNames = LayerNames {
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

/// The layer names of `architecture` (RoBERTa uses BERT's).
pub fn layer_names(architecture: Architecture) -> &'static LayerNames {
    match architecture {
        Architecture::DistilBert => &DISTILBERT,
        Architecture::Bert | Architecture::Roberta => &BERT,
    }
}

/// The embeddings, under the encoder's prefix.
pub const EMBEDDINGS: &str = "embeddings";

/// BERT's pooler, under the encoder's prefix.
pub const POOLER: &str = "pooler";

/// The full prefix of the pooler's tensors, dot included (`bert.pooler.`).
///
/// ```
/// use standpoint::model::{Architecture, names};
///
/// assert_eq!(names::pooler_prefix(Architecture::Bert), "bert.pooler.");
/// ```
pub fn pooler_prefix(architecture: Architecture) -> String {
    format!("{}.{POOLER}.", architecture.tensor_prefix())
}

/// Buffers that transformers saves but that carry no learned values.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("position_ids")
}

/// The current name of a stored tensor: old LayerNorm names (`gamma`/`beta`) become
/// `weight`/`bias`.
pub fn canonical(name: &str) -> String {
    if let Some(stem) = name.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = name.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        name.to_string()
    }
}
