//! The inference path: a loaded model plus tokenizer that labels queries.

pub mod batching;

use std::borrow::Cow;
use std::path::Path;

use candle_core::{DType, Device, IndexOp};
use indexmap::IndexMap;
use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cpu::ops;
use crate::error::{Error, Result};
use crate::hub::{self, ModelSource, ResolveOptions};
use crate::model::config::config_path;
use crate::model::weights::{self, LoadReport};
use crate::model::{
    Architecture, EncoderInput, HeadInput, HeadSpec, Model, ModelConfig, Reading, directed_target,
    heads,
};
use crate::tokenize::{Encoded, TextEncoder, find_ascii_case_insensitive, pad_batch};

/// How to load and run a classifier.
#[derive(Debug, Clone)]
pub struct ClassifierOptions {
    /// Where to compute. CPU by default.
    pub device: Device,
    /// What the encoder computes in: f32 (default), f16, bf16 or int8.
    pub precision: Precision,
    /// Most inputs per encoder pass.
    pub batch_size: usize,
    /// Most padded tokens per encoder pass (inputs × longest input); `None`: no limit.
    /// Long inputs then travel in smaller batches, short ones in larger.
    pub batch_tokens: Option<usize>,
    /// Token limit per input (special tokens included); `None` means the model's limit.
    /// Larger values are capped at the model's limit.
    pub max_length: Option<usize>,
    /// How to resolve hub ids.
    pub resolve: ResolveOptions,
}

impl Default for ClassifierOptions {
    fn default() -> Self {
        ClassifierOptions {
            device: Device::Cpu,
            precision: Precision::F32,
            batch_size: 64,
            batch_tokens: Some(batching::DEFAULT_BATCH_TOKENS),
            max_length: None,
            resolve: ResolveOptions::default(),
        }
    }
}

/// One input: a sentence, and optionally the actor it is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    /// The sentence.
    pub text: &'a str,
    /// The actor (stance target), if any.
    pub target: Option<&'a str>,
    /// The byte span `(start, end)` of the target's mention in `text`: when the text is longer
    /// than the token limit, it is cut around this span instead of at its end. `None`: around
    /// the first occurrence of the target's name (ASCII case-insensitive), if there is one.
    pub focus: Option<(usize, usize)>,
    /// A holder candidate: the query asks a directed head ([`crate::model::HeadInput::Directed`])
    /// what attitude the text gives the holder toward the target; other heads do not read it.
    pub holder: Option<&'a str>,
}

impl<'a> Query<'a> {
    /// A sentence without a target.
    pub fn text(text: &'a str) -> Self {
        Query {
            text,
            target: None,
            focus: None,
            holder: None,
        }
    }

    /// A sentence judged against `target`.
    pub fn pair(target: &'a str, text: &'a str) -> Self {
        Query {
            text,
            target: Some(target),
            focus: None,
            holder: None,
        }
    }

    /// The attitude the text gives `holder` toward `target`, for a model's directed head
    /// (e.g. `holder` Russia, `target` NATO: is Russia hostile toward NATO here?).
    ///
    /// ```
    /// use standpoint::Query;
    /// let query = Query::directed("Russia", "NATO", "Moscow accused NATO of provocations.");
    /// assert_eq!((query.holder, query.target), (Some("Russia"), Some("NATO")));
    /// ```
    pub fn directed(holder: &'a str, target: &'a str, text: &'a str) -> Self {
        Query {
            holder: Some(holder),
            ..Query::pair(target, text)
        }
    }

    /// The same query with the target's mention at the byte span `start..end` of the text.
    ///
    /// ```
    /// use standpoint::Query;
    /// let text = "After a long preamble, the ministry said NATO had refused.";
    /// let query = Query::pair("NATO", text).with_focus(41, 45);
    /// assert_eq!(&text[41..45], "NATO");
    /// assert_eq!(query.focus, Some((41, 45)));
    /// ```
    pub fn with_focus(self, start: usize, end: usize) -> Self {
        Query {
            focus: Some((start, end)),
            ..self
        }
    }
}

/// One head's verdict on one query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadPrediction {
    /// The most probable label.
    pub label: String,
    /// Its probability.
    pub score: f32,
    /// Every label's probability, in the head's label order.
    pub probabilities: IndexMap<String, f32>,
}

/// Every applicable head's verdict on one query, keyed by head name in config order.
///
/// A head that reads (target, text) pairs is absent for a query without a target.
pub type Prediction = IndexMap<String, HeadPrediction>;

/// One head's probabilities for a batch of queries.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadMatrix {
    /// The head's name.
    pub head: String,
    /// Column labels.
    pub labels: Vec<String>,
    /// `(queries, labels)`; rows of queries the head does not apply to are NaN.
    pub probabilities: Array2<f32>,
    /// Whether the head applied to each query.
    pub applied: Vec<bool>,
}

/// Facts about a loaded model, for `standpoint info` and logs.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// Where the model came from.
    pub source: String,
    /// Display name from the config, if any.
    pub name: Option<String>,
    /// Display version from the config, if any.
    pub version: Option<String>,
    /// Encoder family.
    pub architecture: Architecture,
    /// Transformer layers.
    pub layers: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Attention heads per layer.
    pub attention_heads: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Token limit per input in use.
    pub max_length: usize,
    /// Number of loaded parameters.
    pub parameters: usize,
    /// dtype of the stored weights.
    pub stored_dtype: Option<String>,
    /// dtype computations run in.
    pub compute_dtype: String,
    /// Classification heads.
    pub heads: Vec<HeadSpec>,
    /// Checkpoint tensors the model does not use.
    pub unused_tensors: Vec<String>,
}

/// A model ready to label text: safe to share between threads (`Send + Sync`).
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::{Classifier, ClassifierOptions, Query};
/// let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-bert");
/// let classifier = Classifier::load(dir, &ClassifierOptions::default())?;
/// let predictions = classifier.classify(&[
///     Query::pair("NATO", "NATO has refused practical cooperation."),
///     Query::text("There is an objective need for political dialogue."),
/// ])?;
/// let verdict = &predictions[0]["classification"];
/// assert!(["against", "neutral", "favor"].contains(&verdict.label.as_str()));
/// assert!((verdict.probabilities.values().sum::<f32>() - 1.0).abs() < 1e-5);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Classifier {
    model: Model,
    tokenizer: TextEncoder,
    report: LoadReport,
    source: ModelSource,
    device: Device,
    dtype: DType,
    int8: bool,
    batch_size: usize,
    batch_tokens: usize,
}

/// Whether (and how) a head reads a query: a directed head reads exactly the queries that
/// name a holder.
fn reading(input: HeadInput, query: &Query) -> Option<Reading> {
    match (input, query.holder.is_some()) {
        (HeadInput::Directed, directed) => directed.then_some(Reading::Pair),
        (_, true) => None,
        (input, false) => input.reading(query.target.is_some()),
    }
}

/// One encoder input: which query, read how.
struct Job {
    query: usize,
    reading: Reading,
    encoded: Encoded,
}

/// The environment variable that overrides where the default model is read from.
pub const DEFAULT_MODEL_ENV: &str = "STANDPOINT_MODEL";

/// The folder of the default model: `$STANDPOINT_MODEL` when set, otherwise the
/// `models/default/` folder of this crate's source tree, fixed at build time (for a git or
/// path dependency, and for `cargo install --path .`, that folder stays where it was built).
///
/// ```
/// let dir = standpoint::classify::default_model_dir();
/// if std::env::var_os(standpoint::classify::DEFAULT_MODEL_ENV).is_none() {
///     assert!(dir.ends_with("models/default"));
/// }
/// ```
pub fn default_model_dir() -> std::path::PathBuf {
    match std::env::var_os(DEFAULT_MODEL_ENV) {
        Some(dir) if !dir.is_empty() => dir.into(),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default"),
    }
}

impl Classifier {
    /// Loads the shipped default model (stance toward an actor, sentence sentiment and
    /// cooperation/conflict; see `models/default/MODEL_CARD.md`) from
    /// [`default_model_dir`], offline.
    ///
    /// ```no_run
    /// # fn main() -> standpoint::Result<()> {
    /// use standpoint::{Classifier, ClassifierOptions, Query};
    ///
    /// let classifier = Classifier::load_default(&ClassifierOptions::default())?;
    /// let predictions = classifier.classify(&[Query::pair("NATO", "NATO has refused practical cooperation.")])?;
    /// println!("{}", predictions[0]["stance"].label);
    /// # Ok(()) }
    /// ```
    pub fn load_default(options: &ClassifierOptions) -> Result<Self> {
        let dir = default_model_dir();
        if !config_path(&dir).is_file() {
            return Err(Error::MissingFile {
                path: config_path(&dir),
                hint: Some(format!(
                    "the default model is missing; set {DEFAULT_MODEL_ENV} to a model folder or pass a model explicitly"
                )),
            });
        }
        Self::from_dir(&dir, ModelSource::Folder(dir.clone()), options)
    }

    /// Loads a model from a folder or hub id (see [`hub::resolve`]).
    pub fn load(reference: &str, options: &ClassifierOptions) -> Result<Self> {
        let resolved = hub::resolve(reference, &options.resolve)?;
        Self::from_dir(&resolved.dir, resolved.source, options)
    }

    fn from_dir(dir: &Path, source: ModelSource, options: &ClassifierOptions) -> Result<Self> {
        crate::threads::init(None)?;
        if options.batch_size == 0 {
            return Err(Error::InvalidOption {
                option: "batch_size",
                reason: "must be at least 1".into(),
            });
        }
        let config = ModelConfig::from_file(&config_path(dir))?;
        let dtype = options.precision.float_dtype();
        let int8 = options.precision == Precision::Int8;
        let max_length = options
            .max_length
            .unwrap_or(usize::MAX)
            .min(config.encoder.max_tokens());
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = TextEncoder::from_file(&tokenizer_path, max_length)?
            .with_mention_markers(config.mention_markers.clone());
        if tokenizer.vocab_size() > config.encoder.vocab_size {
            return Err(Error::config(
                &tokenizer_path,
                "vocab_size",
                format!(
                    "the tokenizer has {} tokens but config.json's vocab_size is {}",
                    tokenizer.vocab_size(),
                    config.encoder.vocab_size
                ),
            ));
        }
        if int8 && !options.device.is_cpu() {
            return Err(Error::InvalidOption {
                option: "precision",
                reason: format!("int8 runs on the CPU, not on {:?}", options.device),
            });
        }
        let (mut model, report) =
            weights::load(&weights::weights_path(dir), &config, dtype, &options.device)?;
        if int8 {
            model.quantize_int8()?;
        } else if options.device.is_cpu() && dtype == DType::F32 {
            model.pack_f32()?;
        }
        Ok(Classifier {
            model,
            tokenizer,
            report,
            source,
            device: options.device.clone(),
            dtype,
            int8,
            batch_size: options.batch_size,
            batch_tokens: options.batch_tokens.unwrap_or(usize::MAX),
        })
    }

    /// The underlying model (shared with the training path).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The tokenizer with this classifier's truncation.
    pub fn text_encoder(&self) -> &TextEncoder {
        &self.tokenizer
    }

    /// Inputs per encoder pass.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The device computations run on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The heads, in output order.
    pub fn heads(&self) -> &[HeadSpec] {
        &self.model.config().heads
    }

    /// What loading found (unused tensors, stored dtype, parameter count).
    pub fn load_report(&self) -> &LoadReport {
        &self.report
    }

    /// A summary of the model for display.
    pub fn info(&self) -> ModelInfo {
        let config = self.model.config();
        let enc = &config.encoder;
        ModelInfo {
            source: self.source.to_string(),
            name: config.name.clone(),
            version: config.version.clone(),
            architecture: enc.architecture,
            layers: enc.num_layers,
            hidden_size: enc.hidden_size,
            attention_heads: enc.num_heads,
            vocab_size: enc.vocab_size,
            max_length: self.tokenizer.max_length(),
            parameters: self.report.parameters,
            stored_dtype: self
                .report
                .stored_dtype
                .map(|d| format!("{d:?}").to_lowercase()),
            compute_dtype: if self.int8 {
                "int8 (encoder dense layers), f32 elsewhere".into()
            } else {
                format!("{:?}", self.dtype).to_lowercase()
            },
            heads: config.heads.clone(),
            unused_tensors: self.report.unused.clone(),
        }
    }

    /// Labels each query with every head that applies to it.
    pub fn classify(&self, queries: &[Query]) -> Result<Vec<Prediction>> {
        let matrices = self.classify_matrices(queries)?;
        Ok(predictions(&matrices, queries.len()))
    }

    /// Labels each query with the heads that read it exactly as given: a query with a
    /// target is encoded once, as a pair, and answered by pair (and auto) heads only; one
    /// without, once, by text (and auto) heads only. This is what batch labelling uses: one
    /// text query per sentence for sentiment, one pair query per (sentence, actor) for stance,
    /// and no encoder pass twice.
    ///
    /// ```
    /// # fn main() -> standpoint::Result<()> {
    /// use standpoint::{Classifier, ClassifierOptions, Query};
    /// let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-bert");
    /// let classifier = Classifier::load(dir, &ClassifierOptions::default())?;
    /// let rows = classifier.classify_each(&[Query::text("Talks resumed."), Query::pair("NATO", "Talks resumed.")])?;
    /// assert_eq!(rows.len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn classify_each(&self, queries: &[Query]) -> Result<Vec<Prediction>> {
        let matrices = self.matrices(queries, |q| {
            vec![if q.target.is_some() {
                Reading::Pair
            } else {
                Reading::Text
            }]
        })?;
        Ok(predictions(&matrices, queries.len()))
    }

    /// Probabilities of every head for every query, as one matrix per head.
    pub fn classify_matrices(&self, queries: &[Query]) -> Result<Vec<HeadMatrix>> {
        let heads = self.heads();
        self.matrices(queries, |q| {
            let mut readings: Vec<Reading> =
                heads.iter().filter_map(|h| reading(h.input, q)).collect();
            readings.sort();
            readings.dedup();
            readings
        })
    }

    fn matrices(
        &self,
        queries: &[Query],
        readings: impl Fn(&Query) -> Vec<Reading> + Sync,
    ) -> Result<Vec<HeadMatrix>> {
        let heads = self.heads();
        if heads.is_empty() {
            return Err(Error::Unavailable(
                "this model has no classification heads (a bare encoder); use embed() or train a head".into(),
            ));
        }
        let jobs = self.jobs_for(queries, readings)?;
        let mut matrices: Vec<HeadMatrix> = heads
            .iter()
            .map(|h| HeadMatrix {
                head: h.name.clone(),
                labels: h.labels.clone(),
                probabilities: Array2::from_elem((queries.len(), h.labels.len()), f32::NAN),
                applied: vec![false; queries.len()],
            })
            .collect();
        let all_heads: Vec<usize> = (0..heads.len()).collect();
        for batch in self.batches(&jobs) {
            let input = self.pad(&batch)?;
            let output = self.model.forward_t(&input, &all_heads, false)?;
            for (head, logits) in output.logits {
                let spec = &heads[head];
                let probs: Vec<Vec<f32>> =
                    heads::probabilities(&logits, spec.temperature)?.to_vec2()?;
                for (job, row) in batch.iter().zip(probs) {
                    if reading(spec.input, &queries[job.query]) == Some(job.reading) {
                        let matrix = &mut matrices[head];
                        matrix
                            .probabilities
                            .row_mut(job.query)
                            .assign(&ndarray::ArrayView1::from(&row));
                        matrix.applied[job.query] = true;
                    }
                }
            }
        }
        Ok(matrices)
    }

    /// Mean-pooled last hidden states of `texts` (`(texts, hidden)`), optionally L2-normalised:
    /// the sentence embedding of sentence-transformers encoders such as all-MiniLM-L6-v2.
    pub fn embed(&self, texts: &[&str], normalize: bool) -> Result<Array2<f32>> {
        let queries: Vec<Query> = texts.iter().map(|t| Query::text(t)).collect();
        let jobs = self.jobs_for(&queries, |_| vec![Reading::Text])?;
        let hidden = self.model.config().encoder.hidden_size;
        let mut out = Array2::zeros((texts.len(), hidden));
        for batch in self.batches(&jobs) {
            let input = self.pad(&batch)?;
            let states = self.model.encode(&input, false)?;
            let mut pooled =
                ops::masked_mean(&states, &input.attention_mask)?.to_dtype(DType::F32)?;
            if normalize {
                let norms = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-12)?;
                pooled = pooled.broadcast_div(&norms)?;
            }
            for (i, job) in batch.iter().enumerate() {
                let row: Vec<f32> = pooled.i(i)?.to_vec1()?;
                out.row_mut(job.query)
                    .assign(&ndarray::ArrayView1::from(&row));
            }
        }
        Ok(out)
    }

    /// Validates the queries, then tokenizes each once per reading, in parallel.
    fn jobs_for(
        &self,
        queries: &[Query],
        readings: impl Fn(&Query) -> Vec<Reading> + Sync,
    ) -> Result<Vec<Job>> {
        for (index, query) in queries.iter().enumerate() {
            if query.text.trim().is_empty() {
                return Err(Error::InvalidInput {
                    index,
                    reason: "empty text".into(),
                });
            }
            if query.target.is_some_and(|t| t.trim().is_empty()) {
                return Err(Error::InvalidInput {
                    index,
                    reason: "empty target (omit it instead)".into(),
                });
            }
            if let Some(holder) = query.holder
                && (query.target.is_none() || holder.trim().is_empty())
            {
                return Err(Error::InvalidInput {
                    index,
                    reason: "a holder needs a target, and a name".into(),
                });
            }
        }
        let wanted: Vec<(usize, Reading)> = queries
            .iter()
            .enumerate()
            .flat_map(|(i, q)| readings(q).into_iter().map(move |r| (i, r)))
            .collect();
        wanted
            .into_par_iter()
            .map(|(index, reading)| {
                let query = &queries[index];
                let (target, focus) = match reading {
                    Reading::Pair => (query.target.map(Cow::Borrowed), query.focus),
                    Reading::Text => (None, None),
                };
                // A directed pair names `HOLDER → TARGET`; its mention is the target's.
                let (target, focus) = match (query.holder, target) {
                    (Some(holder), Some(t)) => (
                        Some(Cow::Owned(directed_target(holder, &t))),
                        focus.or_else(|| find_ascii_case_insensitive(query.text, &t)),
                    ),
                    (_, target) => (target, focus),
                };
                let encoded = self
                    .tokenizer
                    .encode_around_raw(target.as_deref(), query.text, focus)
                    .map_err(|source| Error::Tokenize { index, source })?;
                Ok(Job {
                    query: index,
                    reading,
                    encoded,
                })
            })
            .collect()
    }

    /// Groups jobs of similar length so padding stays small, each batch within the batch
    /// size and the token budget; results are scattered back by query index, so order
    /// does not matter.
    /// One batch as the encoder's padded input.
    fn pad(&self, batch: &[&Job]) -> Result<EncoderInput> {
        let items: Vec<&Encoded> = batch.iter().map(|j| &j.encoded).collect();
        Ok(pad_batch(
            &items,
            self.model.config().encoder.pad_token_id,
            &self.device,
        )?)
    }

    fn batches<'a>(&self, jobs: &'a [Job]) -> Vec<Vec<&'a Job>> {
        let lengths: Vec<usize> = jobs.iter().map(|j| j.encoded.len()).collect();
        batching::by_length(&lengths, self.batch_size, self.batch_tokens)
            .into_iter()
            .map(|batch| batch.into_iter().map(|i| &jobs[i]).collect())
            .collect()
    }
}

/// Per query, the predictions of the heads that applied to it.
fn predictions(matrices: &[HeadMatrix], queries: usize) -> Vec<Prediction> {
    (0..queries)
        .map(|row| {
            matrices
                .iter()
                .filter(|m| m.applied[row])
                .map(|m| (m.head.clone(), prediction(m, row)))
                .collect()
        })
        .collect()
}

fn prediction(matrix: &HeadMatrix, row: usize) -> HeadPrediction {
    let probs = matrix.probabilities.row(row);
    let (best, score) =
        probs.iter().enumerate().fold(
            (0, f32::NEG_INFINITY),
            |acc, (i, &p)| if p > acc.1 { (i, p) } else { acc },
        );
    HeadPrediction {
        label: matrix.labels[best].clone(),
        score,
        probabilities: matrix
            .labels
            .iter()
            .cloned()
            .zip(probs.iter().copied())
            .collect(),
    }
}

/// Parses `cpu`, `cuda`, `cuda:N`, `metal` or `metal:N`.
///
/// ```
/// assert!(standpoint::parse_device("cpu").unwrap().is_cpu());
/// assert!(standpoint::parse_device("tpu").is_err());
/// ```
pub fn parse_device(spec: &str) -> Result<Device> {
    let (kind, ordinal) = match spec.split_once(':') {
        Some((kind, n)) => {
            let n = n
                .parse::<usize>()
                .map_err(|_| Error::Unavailable(format!("invalid device ordinal in {spec:?}")))?;
            (kind, n)
        }
        None => (spec, 0),
    };
    match kind {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if !candle_core::utils::cuda_is_available() {
                return Err(Error::Unavailable(
                    "CUDA requested, but this build of standpoint lacks the `cuda` feature".into(),
                ));
            }
            Device::new_cuda(ordinal)
                .map_err(|e| Error::Unavailable(format!("cannot open CUDA device {ordinal}: {e}")))
        }
        "metal" => {
            if !candle_core::utils::metal_is_available() {
                return Err(Error::Unavailable(
                    "Metal requested, but this build of standpoint lacks the `metal` feature"
                        .into(),
                ));
            }
            Device::new_metal(ordinal)
                .map_err(|e| Error::Unavailable(format!("cannot open Metal device {ordinal}: {e}")))
        }
        other => Err(Error::Unavailable(format!(
            "unknown device {other:?} (expected cpu, cuda[:N] or metal[:N])"
        ))),
    }
}

/// What a [`Classifier`] computes in.
///
/// ```
/// use standpoint::Precision;
/// let precision: Precision = "int8".parse().unwrap();
/// assert_eq!(precision, Precision::Int8);
/// assert_eq!(precision.float_dtype(), candle_core::DType::F32);
/// assert_eq!(precision.to_string(), "int8");
/// assert!("int4".parse::<Precision>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Precision {
    /// f32 throughout.
    #[default]
    F32,
    /// f16 throughout (for GPUs; slow on most CPUs).
    F16,
    /// bf16 throughout.
    Bf16,
    /// int8 weights (per output channel) and activations (per token) in the encoder's dense
    /// layers, accumulated exactly in i32, f32 elsewhere: faster on CPUs with AVX-512 VNNI or
    /// AMX, slightly different scores (see the README's speed section). CPU only.
    Int8,
}

impl Precision {
    /// Parses `f32`, `f16`, `bf16` or `int8`.
    pub fn parse(spec: &str) -> Result<Self> {
        match spec {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "bf16" => Ok(Precision::Bf16),
            "int8" => Ok(Precision::Int8),
            other => Err(Error::Unavailable(format!(
                "unknown precision {other:?} (expected f32, f16, bf16 or int8)"
            ))),
        }
    }

    /// The float dtype of weights and activations (f32 around int8 layers).
    pub fn float_dtype(self) -> DType {
        match self {
            Precision::F32 | Precision::Int8 => DType::F32,
            Precision::F16 => DType::F16,
            Precision::Bf16 => DType::BF16,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        Precision::parse(spec)
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        })
    }
}

/// Parses a storage dtype: `f32`, `f16` or `bf16`.
pub fn parse_dtype(spec: &str) -> Result<DType> {
    match spec {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        other => Err(Error::Unavailable(format!(
            "unknown dtype {other:?} (expected f32, f16 or bf16)"
        ))),
    }
}

// A Classifier is shared across threads by reference; keep it that way.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Classifier>();
};
