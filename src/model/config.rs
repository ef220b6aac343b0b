//! `config.json`: the Hugging Face encoder settings plus standpoint's head descriptions.
//!
//! Keys keep their Hugging Face names so hub files parse unchanged; standpoint's own
//! settings live under one extra key, `"standpoint"`, which transformers ignores.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The encoder families this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// BERT (`model_type: "bert"`), also MiniLM and other BERT-shaped checkpoints.
    Bert,
    /// DistilBERT (`model_type: "distilbert"`): no token types, no pooler.
    DistilBert,
    /// RoBERTa (`model_type: "roberta"` or `"xlm-roberta"`): positions offset past the padding id.
    Roberta,
}

impl Architecture {
    /// The prefix Hugging Face puts before encoder tensors in task checkpoints.
    pub fn tensor_prefix(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
            Architecture::DistilBert => "distilbert",
            Architecture::Roberta => "roberta",
        }
    }

    /// Name used in `config.json`'s `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
            Architecture::DistilBert => "distilbert",
            Architecture::Roberta => "roberta",
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_type())
    }
}

pub use crate::cpu::ops::Activation;

/// Encoder hyper-parameters, normalised across architectures.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    /// Which family the checkpoint belongs to.
    pub architecture: Architecture,
    /// Rows of the word embedding matrix.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_layers: usize,
    /// Attention heads per layer.
    pub num_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    pub activation: Activation,
    /// Dropout on hidden states (embeddings, attention output, feed-forward output).
    pub hidden_dropout: f32,
    /// Dropout on attention probabilities.
    pub attention_dropout: f32,
    /// Dropout before classification layers.
    pub classifier_dropout: f32,
    /// Rows of the position embedding matrix.
    pub max_position_embeddings: usize,
    /// Rows of the token-type embedding matrix; 0 when the family has none.
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Id of the padding token (RoBERTa positions start after it).
    pub pad_token_id: u32,
}

impl EncoderConfig {
    /// Longest input in tokens, special tokens included.
    pub fn max_tokens(&self) -> usize {
        match self.architecture {
            // RoBERTa reserves positions 0..=pad_token_id.
            Architecture::Roberta => self
                .max_position_embeddings
                .saturating_sub(self.pad_token_id as usize + 1),
            _ => self.max_position_embeddings,
        }
    }
}

/// What a head reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadInput {
    /// The (target, text) pair; the head is skipped for queries without a target.
    Pair,
    /// The text alone, even when the query has a target.
    Text,
    /// The pair when the query has a target, the text alone otherwise
    /// (what a plain `*ForSequenceClassification` checkpoint does).
    Auto,
    /// A (holder → target, text) pair: the attitude the sentence gives a holder toward the
    /// target, `neutral` when it gives that holder none. Its queries name a holder (see
    /// [`crate::Query::directed`]) and no other head reads them; training examples name
    /// [`directed_target`]`(holder, target)` as their target.
    Directed,
}

/// The first segment of a directed head's pair, `HOLDER → TARGET`, as training data and
/// [`crate::Query::directed`] both write it.
///
/// ```
/// assert_eq!(standpoint::model::directed_target("Russia", "NATO"), "Russia → NATO");
/// ```
pub fn directed_target(holder: &str, target: &str) -> String {
    format!("{holder} → {target}")
}

/// Which encoding of a query a head reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reading {
    /// The text alone.
    Text,
    /// The (target, text) pair.
    Pair,
}

impl HeadInput {
    /// What the head reads for a query with or without a target; `None` when it does not
    /// apply (a pair head and no target). A directed head reads pairs like a pair head (its
    /// examples' targets are `HOLDER → TARGET`).
    pub fn reading(self, has_target: bool) -> Option<Reading> {
        match (self, has_target) {
            (HeadInput::Text, _) | (HeadInput::Auto, false) => Some(Reading::Text),
            (HeadInput::Pair | HeadInput::Auto | HeadInput::Directed, true) => Some(Reading::Pair),
            (HeadInput::Pair | HeadInput::Directed, false) => None,
        }
    }
}

/// How a head turns the encoder's hidden states into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "cli", value(rename_all = "snake_case"))]
pub enum HeadPooling {
    /// The encoder's pooler (dense + tanh on the first token), then `classifier`. BERT's head.
    Pooler,
    /// `pre_classifier` dense + ReLU on the first token, then `classifier`. DistilBERT's head.
    DenseRelu,
    /// `classifier.dense` + tanh on the first token, then `classifier.out_proj`. RoBERTa's head.
    DenseTanh,
    /// Mean of the unpadded hidden states, then `classifier`. Suits sentence-embedding encoders.
    Mean,
}

/// One classification head: a name, an ordered label list and how it reads the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadSpec {
    /// Unique name, e.g. `"stance"`.
    pub name: String,
    /// Labels in logit order.
    pub labels: Vec<String>,
    /// Which input the head reads.
    pub input: HeadInput,
    /// Pooling before the final linear layer.
    pub pooling: HeadPooling,
    /// Prefix of this head's tensors, e.g. `"heads.stance."`; empty for an imported
    /// `*ForSequenceClassification` head, whose tensors keep their Hugging Face names.
    #[serde(default)]
    pub tensor_prefix: String,
    /// Softmax temperature fitted on dev data (`standpoint export --calibrate`), so that
    /// probabilities match observed accuracy; `None` means 1. Labels do not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
}

impl HeadSpec {
    /// A new head whose tensors live under `heads.<name>.`.
    pub fn new(name: &str, labels: Vec<String>, input: HeadInput, pooling: HeadPooling) -> Self {
        HeadSpec {
            name: name.to_string(),
            labels,
            input,
            pooling,
            tensor_prefix: format!("heads.{name}."),
            temperature: None,
        }
    }
}

/// The `"standpoint"` section of `config.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StandpointSection {
    /// Format version of this section.
    #[serde(default = "format_version")]
    pub format: u32,
    /// Model name shown in outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Model version shown in outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Classification heads in output order.
    #[serde(default)]
    pub heads: Vec<HeadSpec>,
    /// Markers around the target's mention in the text of a pair; absent: unmarked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mention_markers: Option<MentionMarkers>,
}

fn format_version() -> u32 {
    1
}

/// Strings put around the target's mention in the text of a pair (entity markers), so a head
/// reads which words of the sentence are the target. The default, `«` and `»`, is punctuation
/// the BERT vocabularies know and news and social-media text almost never uses.
///
/// ```
/// let markers = standpoint::MentionMarkers::default();
/// assert_eq!((markers.open.as_str(), markers.close.as_str()), ("«", "»"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MentionMarkers {
    /// Put before the mention.
    pub open: String,
    /// Put after the mention.
    pub close: String,
}

impl Default for MentionMarkers {
    fn default() -> Self {
        MentionMarkers {
            open: "«".into(),
            close: "»".into(),
        }
    }
}

/// A parsed `config.json`: encoder settings, heads, and the original JSON for round trips.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Encoder hyper-parameters.
    pub encoder: EncoderConfig,
    /// Heads in output order (empty for a bare encoder).
    pub heads: Vec<HeadSpec>,
    /// Display name, when the config carries one.
    pub name: Option<String>,
    /// Display version, when the config carries one.
    pub version: Option<String>,
    /// Markers the model was trained with around the target's mention in a pair's text
    /// (see [`crate::TextEncoder::with_mention_markers`]); `None`: pairs are read unmarked.
    pub mention_markers: Option<MentionMarkers>,
    /// The file as read, so saving keeps keys this crate does not interpret.
    pub raw: Value,
}

/// Name given to the single head of an imported `*ForSequenceClassification` checkpoint.
pub const IMPORTED_HEAD_NAME: &str = "classification";

impl ModelConfig {
    /// Reads and validates `config.json`.
    ///
    /// ```
    /// # fn main() -> standpoint::Result<()> {
    /// let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
    /// let config = standpoint::ModelConfig::from_file(&dir.join("config.json"))?;
    /// assert_eq!(config.encoder.architecture, standpoint::Architecture::Bert);
    /// assert_eq!(config.heads[0].labels, ["against", "neutral", "favor"]);
    /// # Ok(()) }
    /// ```
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingFile {
                path: path.to_path_buf(),
                hint: None,
            },
            _ => Error::io(path, e),
        })?;
        let raw: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_value(raw, path)
    }

    /// Interprets an already parsed `config.json`; `path` is only used in error messages.
    pub fn from_value(raw: Value, path: &Path) -> Result<Self> {
        let keys = Keys { raw: &raw, path };
        let model_type = keys.string("model_type")?;
        let architecture = match model_type.as_str() {
            "bert" => Architecture::Bert,
            "distilbert" => Architecture::DistilBert,
            "roberta" | "xlm-roberta" => Architecture::Roberta,
            other => {
                return Err(Error::UnsupportedModelType {
                    path: path.to_path_buf(),
                    model_type: other.to_string(),
                });
            }
        };
        let encoder = match architecture {
            Architecture::DistilBert => keys.distilbert()?,
            _ => keys.bert_like(architecture)?,
        };
        let section: StandpointSection = match raw.get("standpoint") {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| Error::config(path, "standpoint", e.to_string()))?,
            None => StandpointSection::default(),
        };
        let heads = if section.heads.is_empty() {
            keys.imported_head(architecture)?.into_iter().collect()
        } else {
            section.heads
        };
        validate_heads(&heads, path)?;
        Ok(ModelConfig {
            encoder,
            heads,
            name: section.name,
            version: section.version,
            mention_markers: section.mention_markers,
            raw,
        })
    }

    /// The JSON to write as `config.json`: the original keys with the `"standpoint"`
    /// section replaced by the current heads, name and version.
    pub fn to_value(&self) -> Value {
        let mut raw = self.raw.clone();
        let section = StandpointSection {
            format: format_version(),
            name: self.name.clone(),
            version: self.version.clone(),
            heads: self.heads.clone(),
            mention_markers: self.mention_markers.clone(),
        };
        if let Value::Object(map) = &mut raw {
            map.insert(
                "standpoint".into(),
                serde_json::to_value(section).expect("plain data serialises"),
            );
        }
        raw
    }

    /// The head called `name`, if any.
    pub fn head(&self, name: &str) -> Option<&HeadSpec> {
        self.heads.iter().find(|h| h.name == name)
    }
}

/// Bounds on config sizes, each far past any released encoder (vocabularies reach ~250k,
/// widths ~16k, depths ~100).
const MAX_VOCAB: usize = 1 << 22;
const MAX_WIDTH: usize = 1 << 17;
const MAX_LAYERS: usize = 1 << 10;
const MAX_POSITIONS: usize = 1 << 20;
const MAX_TYPES: usize = 1 << 10;

fn validate_heads(heads: &[HeadSpec], path: &Path) -> Result<()> {
    for (i, head) in heads.iter().enumerate() {
        if head.name.is_empty() {
            return Err(Error::config(
                path,
                "standpoint.heads",
                "a head has an empty name",
            ));
        }
        if heads[..i].iter().any(|h| h.name == head.name) {
            return Err(Error::config(
                path,
                "standpoint.heads",
                format!("head {:?} appears twice", head.name),
            ));
        }
        if let Some(t) = head.temperature
            && !(t.is_finite() && t > 0.0)
        {
            return Err(Error::config(
                path,
                "standpoint.heads",
                format!(
                    "head {:?} has temperature {t}; it must be positive and finite",
                    head.name
                ),
            ));
        }
        if head.labels.len() < 2 {
            return Err(Error::config(
                path,
                "standpoint.heads",
                format!("head {:?} needs at least two labels", head.name),
            ));
        }
        for (j, label) in head.labels.iter().enumerate() {
            if head.labels[..j].contains(label) {
                return Err(Error::config(
                    path,
                    "standpoint.heads",
                    format!("head {:?} lists label {label:?} twice", head.name),
                ));
            }
        }
    }
    Ok(())
}

/// Typed access to config keys, with errors naming the file and key.
struct Keys<'a> {
    raw: &'a Value,
    path: &'a Path,
}

impl Keys<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.raw.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &str) -> Result<String> {
        match self.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(Error::config(self.path, key, "expected a string")),
            None => Err(Error::config(self.path, key, "missing")),
        }
    }

    fn usize(&self, key: &str) -> Result<usize> {
        self.usize_or(key, None)
    }

    fn usize_or(&self, key: &str, default: Option<usize>) -> Result<usize> {
        match self.get(key) {
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| Error::config(self.path, key, "expected a non-negative integer")),
            None => default.ok_or_else(|| Error::config(self.path, key, "missing")),
        }
    }

    /// A size of at most `limit`: far past any real encoder, a bound that keeps a corrupted
    /// config from asking for terabytes before its weights are checked.
    fn bounded(&self, key: &str, default: Option<usize>, limit: usize) -> Result<usize> {
        self.at_most(key, self.usize_or(key, default)?, limit)
    }

    /// [`Keys::bounded`], and positive.
    fn dimension(&self, key: &str, default: Option<usize>, limit: usize) -> Result<usize> {
        self.at_most(key, self.positive(key, default)?, limit)
    }

    fn at_most(&self, key: &str, n: usize, limit: usize) -> Result<usize> {
        if n > limit {
            return Err(Error::config(
                self.path,
                key,
                format!("{n} is past the largest size accepted ({limit})"),
            ));
        }
        Ok(n)
    }

    fn positive(&self, key: &str, default: Option<usize>) -> Result<usize> {
        let n = self.usize_or(key, default)?;
        if n == 0 {
            return Err(Error::config(self.path, key, "must be positive"));
        }
        Ok(n)
    }

    fn probability(&self, key: &str, default: f64) -> Result<f32> {
        let p = match self.get(key) {
            Some(v) => v
                .as_f64()
                .ok_or_else(|| Error::config(self.path, key, "expected a number"))?,
            None => default,
        };
        if !(0.0..1.0).contains(&p) {
            return Err(Error::config(self.path, key, "must be in [0, 1)"));
        }
        Ok(p as f32)
    }

    fn float(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            Some(v) => v
                .as_f64()
                .ok_or_else(|| Error::config(self.path, key, "expected a number")),
            None => Ok(default),
        }
    }

    /// A layer-norm epsilon: positive and below 1.
    fn epsilon(&self, key: &str, default: f64) -> Result<f64> {
        let eps = self.float(key, default)?;
        if !(eps > 0.0 && eps < 1.0) {
            return Err(Error::config(self.path, key, "must be in (0, 1)"));
        }
        Ok(eps)
    }

    fn activation(&self, key: &str) -> Result<Activation> {
        let name = match self.get(key) {
            Some(_) => self.string(key)?,
            None => "gelu".to_string(),
        };
        match name.as_str() {
            "gelu" => Ok(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            other => Err(Error::config(
                self.path,
                key,
                format!(
                    "activation {other:?} is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)"
                ),
            )),
        }
    }

    fn bert_like(&self, architecture: Architecture) -> Result<EncoderConfig> {
        if let Some(kind) = self.get("position_embedding_type")
            && kind.as_str() != Some("absolute")
        {
            return Err(Error::config(
                self.path,
                "position_embedding_type",
                format!("{kind} is not supported (only \"absolute\")"),
            ));
        }
        let hidden_dropout = self.probability("hidden_dropout_prob", 0.1)?;
        let classifier_dropout = match self.get("classifier_dropout") {
            Some(_) => self.probability("classifier_dropout", 0.1)?,
            None => hidden_dropout,
        };
        let default_pad = if architecture == Architecture::Roberta {
            1
        } else {
            0
        };
        let config = EncoderConfig {
            architecture,
            vocab_size: self.dimension("vocab_size", None, MAX_VOCAB)?,
            hidden_size: self.dimension("hidden_size", None, MAX_WIDTH)?,
            num_layers: self.dimension("num_hidden_layers", None, MAX_LAYERS)?,
            num_heads: self.dimension("num_attention_heads", None, MAX_WIDTH)?,
            intermediate_size: self.dimension("intermediate_size", None, MAX_WIDTH)?,
            activation: self.activation("hidden_act")?,
            hidden_dropout,
            attention_dropout: self.probability("attention_probs_dropout_prob", 0.1)?,
            classifier_dropout,
            max_position_embeddings: self.dimension(
                "max_position_embeddings",
                Some(512),
                MAX_POSITIONS,
            )?,
            type_vocab_size: self.bounded("type_vocab_size", Some(2), MAX_TYPES)?,
            layer_norm_eps: self.epsilon("layer_norm_eps", 1e-12)?,
            pad_token_id: self.usize_or("pad_token_id", Some(default_pad))? as u32,
        };
        self.check_shapes(&config, "hidden_size", "num_attention_heads")?;
        if architecture == Architecture::Roberta && config.max_tokens() < 2 {
            return Err(Error::config(
                self.path,
                "max_position_embeddings",
                "too small for RoBERTa's position offset",
            ));
        }
        Ok(config)
    }

    fn distilbert(&self) -> Result<EncoderConfig> {
        let config = EncoderConfig {
            architecture: Architecture::DistilBert,
            vocab_size: self.dimension("vocab_size", None, MAX_VOCAB)?,
            hidden_size: self.dimension("dim", None, MAX_WIDTH)?,
            num_layers: self.dimension("n_layers", None, MAX_LAYERS)?,
            num_heads: self.dimension("n_heads", None, MAX_WIDTH)?,
            intermediate_size: self.dimension("hidden_dim", None, MAX_WIDTH)?,
            activation: self.activation("activation")?,
            hidden_dropout: self.probability("dropout", 0.1)?,
            attention_dropout: self.probability("attention_dropout", 0.1)?,
            classifier_dropout: self.probability("seq_classif_dropout", 0.2)?,
            max_position_embeddings: self.dimension(
                "max_position_embeddings",
                Some(512),
                MAX_POSITIONS,
            )?,
            type_vocab_size: 0,
            layer_norm_eps: 1e-12,
            pad_token_id: self.usize("pad_token_id").unwrap_or(0) as u32,
        };
        self.check_shapes(&config, "dim", "n_heads")?;
        Ok(config)
    }

    fn check_shapes(&self, config: &EncoderConfig, hidden: &str, heads: &str) -> Result<()> {
        if !config.hidden_size.is_multiple_of(config.num_heads) {
            return Err(Error::config(
                self.path,
                hidden,
                format!(
                    "{} is not divisible by {heads} = {}",
                    config.hidden_size, config.num_heads
                ),
            ));
        }
        if config.pad_token_id as usize >= config.vocab_size {
            return Err(Error::config(
                self.path,
                "pad_token_id",
                "outside the vocabulary",
            ));
        }
        Ok(())
    }

    /// The head of a `*ForSequenceClassification` checkpoint, labelled by `id2label`.
    fn imported_head(&self, architecture: Architecture) -> Result<Option<HeadSpec>> {
        let is_classifier = self
            .get("architectures")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .any(|s| s.ends_with("ForSequenceClassification"))
            });
        if !is_classifier {
            return Ok(None);
        }
        let labels = match self.get("id2label") {
            Some(Value::Object(map)) => {
                let mut pairs = Vec::with_capacity(map.len());
                for (id, label) in map {
                    let id: usize = id.parse().map_err(|_| {
                        Error::config(
                            self.path,
                            "id2label",
                            format!("key {id:?} is not an integer"),
                        )
                    })?;
                    let label = label.as_str().ok_or_else(|| {
                        Error::config(self.path, "id2label", "labels must be strings")
                    })?;
                    pairs.push((id, label.to_string()));
                }
                pairs.sort();
                if pairs.iter().enumerate().any(|(i, (id, _))| *id != i) {
                    return Err(Error::config(
                        self.path,
                        "id2label",
                        "ids must be 0..n without gaps",
                    ));
                }
                pairs.into_iter().map(|(_, l)| l).collect()
            }
            Some(_) => return Err(Error::config(self.path, "id2label", "expected an object")),
            None => {
                let n = self.usize_or("num_labels", Some(2))?;
                (0..n).map(|i| format!("LABEL_{i}")).collect()
            }
        };
        let pooling = match architecture {
            Architecture::Bert => HeadPooling::Pooler,
            Architecture::DistilBert => HeadPooling::DenseRelu,
            Architecture::Roberta => HeadPooling::DenseTanh,
        };
        Ok(Some(HeadSpec {
            name: IMPORTED_HEAD_NAME.to_string(),
            labels,
            input: HeadInput::Auto,
            pooling,
            tensor_prefix: String::new(),
            temperature: None,
        }))
    }
}

/// `config.json` inside `dir`.
pub(crate) fn config_path(dir: &Path) -> PathBuf {
    dir.join("config.json")
}
