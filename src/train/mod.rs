//! The training path: labelled data in, a fine-tuned standpoint model folder out.
//!
//! It builds the same [`Model`] as inference, from a `VarMap`, loads the starting
//! checkpoint into it, and runs AdamW with warm-up and linear decay, gradient clipping and
//! accumulation, masked multi-head losses, per-epoch evaluation, best-checkpoint selection,
//! early stopping and exact resume.

pub mod checkpoint;
pub mod loss;
pub mod optim;
mod step;
mod trainer;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::classify::parse_device;
use crate::data::items::{self, Item};
use crate::data::{self, DataSource, FieldMap, LabelSchema, encode_labels, read_sources};
use crate::error::{Error, Result};
use crate::hub::{self, ResolveOptions};
use crate::model::config::config_path;
use crate::model::weights::{self, weights_path};
use crate::model::{HeadInput, HeadPooling, HeadSpec, MentionMarkers, Model, ModelConfig};
use crate::tokenize::TextEncoder;
use checkpoint::EpochRecord;

/// A head to train: an existing head of the starting model, or a new one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadPlan {
    /// Head name, e.g. `stance`.
    pub name: String,
    /// What a new head reads (ignored for an existing head).
    pub input: HeadInput,
    /// Data field holding this head's labels; the head's name by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl HeadPlan {
    /// Parses `NAME[:pair|text|auto|directed][=FIELD]`, e.g. `stance:pair` or `sentiment:text=polarity`.
    ///
    /// ```
    /// use standpoint::train::HeadPlan;
    /// let plan = HeadPlan::parse("sentiment:text=polarity").unwrap();
    /// assert_eq!(plan.name, "sentiment");
    /// assert_eq!(plan.field.as_deref(), Some("polarity"));
    /// assert!(HeadPlan::parse("stance:sideways").is_err());
    /// ```
    pub fn parse(spec: &str) -> Result<Self> {
        let (head, field) = match spec.split_once('=') {
            Some((h, f)) => (h, Some(f.to_string())),
            None => (spec, None),
        };
        let (name, input) = match head.split_once(':') {
            Some((n, "pair")) => (n, HeadInput::Pair),
            Some((n, "text")) => (n, HeadInput::Text),
            Some((n, "auto")) => (n, HeadInput::Auto),
            Some((n, "directed")) => (n, HeadInput::Directed),
            Some((_, other)) => {
                return Err(Error::InvalidOption {
                    option: "head",
                    reason: format!(
                        "{spec:?}: input {other:?} is not pair, text, auto or directed"
                    ),
                });
            }
            None => (head, HeadInput::Pair),
        };
        if name.is_empty() || field.as_deref() == Some("") {
            return Err(Error::InvalidOption {
                option: "head",
                reason: format!("{spec:?}: expected NAME[:pair|text|auto|directed][=FIELD]"),
            });
        }
        Ok(HeadPlan {
            name: name.to_string(),
            input,
            field,
        })
    }
}

/// Everything a training run depends on; saved as `training_config.json` in the output.
///
/// With the `cli` feature it is also the `standpoint train` command line (`clap::Args`): one
/// list of settings and defaults for the library and the binary. The data, heads, base and
/// output are the binary's own arguments (skipped here), since `--resume` replaces them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct TrainConfig {
    /// Starting point: an encoder or a standpoint model (folder or hub id).
    #[cfg_attr(feature = "cli", arg(skip))]
    pub base: String,
    /// Output folder: the best model, `metrics.jsonl`, and `last/` for resuming.
    #[cfg_attr(feature = "cli", arg(skip))]
    pub output: PathBuf,
    /// Training files as `FILE[:WEIGHT]`.
    #[cfg_attr(feature = "cli", arg(skip))]
    pub train: Vec<String>,
    /// Dev file for evaluation and model selection; repeatable.
    #[serde(default)]
    #[cfg_attr(feature = "cli", arg(long = "dev", value_name = "FILE"))]
    pub dev: Vec<String>,
    /// Heads to train.
    #[cfg_attr(feature = "cli", arg(skip))]
    pub heads: Vec<HeadPlan>,
    /// Label schema JSON (`{"heads": [{"name", "labels"}]}`); default: labels found in the data.
    #[serde(default)]
    #[cfg_attr(feature = "cli", arg(long))]
    pub schema: Option<PathBuf>,
    /// Field holding the sentence.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = defaults().text_field))]
    pub text_field: String,
    /// Field holding the target.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = defaults().target_field))]
    pub target_field: String,
    /// Pooling of new heads.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = defaults().pooling))]
    pub pooling: HeadPooling,
    /// Passes over the training data.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = defaults().epochs))]
    pub epochs: usize,
    /// Items per micro-batch.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = defaults().batch_size))]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = defaults().grad_accum))]
    pub grad_accum: usize,
    /// Peak learning rate.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = defaults().lr))]
    pub lr: f64,
    /// AdamW weight decay (not applied to biases and LayerNorm).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = defaults().weight_decay))]
    pub weight_decay: f64,
    /// Fraction of the steps spent warming up.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = defaults().warmup_ratio))]
    pub warmup_ratio: f64,
    /// Gradient clipping by global norm; 0 disables.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = defaults().max_grad_norm))]
    pub max_grad_norm: f64,
    /// Label smoothing of the cross-entropy.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = defaults().label_smoothing))]
    pub label_smoothing: f64,
    /// Weight classes by inverse frequency.
    #[cfg_attr(feature = "cli", arg(long))]
    pub class_weights: bool,
    /// Mark the target's mention in the text of a pair (`«NATO» refused ...`), and save the
    /// markers in the model so inference marks alike. A starting model that marks keeps its
    /// markers either way.
    #[serde(default)]
    #[cfg_attr(feature = "cli", arg(long))]
    pub mark_mentions: bool,
    /// Token limit per input.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = defaults().max_length))]
    pub max_length: usize,
    /// Seed of data order and dropout.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = defaults().seed))]
    pub seed: u64,
    /// Stop after this many epochs without improvement of the selection metric.
    #[serde(default)]
    #[cfg_attr(feature = "cli", arg(long))]
    pub patience: Option<usize>,
    /// Dev metric choosing the best checkpoint:
    /// `[HEAD.|mean.]accuracy|macro_f1|macro_recall|favor_against_f1`.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = defaults().select))]
    pub select: String,
    /// Save resume state every this many optimizer steps (and at each epoch end); 0: epochs only.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = defaults().save_every))]
    pub save_every: usize,
    /// Model name written to the config.
    #[serde(default)]
    #[cfg_attr(feature = "cli", arg(long))]
    pub name: Option<String>,
    /// Model version written to the config.
    #[serde(default)]
    #[cfg_attr(feature = "cli", arg(long))]
    pub version: Option<String>,
    /// `cpu`, `cuda[:N]` or `metal[:N]`.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = defaults().device))]
    pub device: String,
}

/// The defaults of every setting, for [`TrainConfig::new`] and the command line.
fn defaults() -> TrainConfig {
    TrainConfig {
        base: String::new(),
        output: PathBuf::new(),
        train: Vec::new(),
        dev: Vec::new(),
        heads: Vec::new(),
        schema: None,
        text_field: "text".into(),
        target_field: "target".into(),
        pooling: HeadPooling::Mean,
        epochs: 3,
        batch_size: 32,
        grad_accum: 1,
        lr: 5e-5,
        weight_decay: 0.01,
        warmup_ratio: 0.1,
        max_grad_norm: 1.0,
        label_smoothing: 0.0,
        class_weights: false,
        mark_mentions: false,
        max_length: 128,
        seed: 42,
        patience: None,
        select: "mean.macro_f1".into(),
        save_every: 200,
        name: None,
        version: None,
        device: "cpu".into(),
    }
}

impl TrainConfig {
    /// Defaults for everything but the data, heads, base and output.
    ///
    /// ```
    /// use standpoint::train::{HeadPlan, TrainConfig};
    /// let heads = vec![HeadPlan::parse("stance:pair").unwrap()];
    /// let config = TrainConfig::new("base", "out".as_ref(), vec!["train.jsonl".into()], heads);
    /// assert_eq!((config.epochs, config.batch_size), (3, 32));
    /// ```
    pub fn new(base: &str, output: &Path, train: Vec<String>, heads: Vec<HeadPlan>) -> Self {
        TrainConfig {
            base: base.to_string(),
            output: output.to_path_buf(),
            train,
            heads,
            ..defaults()
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |option, reason: &str| {
            Err(Error::InvalidOption {
                option,
                reason: reason.to_string(),
            })
        };
        if self.train.is_empty() {
            return bad("train", "no training data given");
        }
        if self.heads.is_empty() {
            return bad("head", "no head to train");
        }
        if self.epochs == 0 || self.batch_size == 0 || self.grad_accum == 0 {
            return bad("epochs/batch_size/grad_accum", "must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", "must be positive");
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) || !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("warmup_ratio/label_smoothing", "must be in [0, 1)");
        }
        Ok(())
    }
}

/// Progress of a run, reported to a [`TrainObserver`].
#[derive(Debug, Clone)]
pub struct StepInfo {
    /// Optimizer steps taken.
    pub step: usize,
    /// Steps of the whole run.
    pub total_steps: usize,
    /// 1-based epoch.
    pub epoch: usize,
    /// Loss of the last step.
    pub loss: f32,
    /// Learning rate of the last step.
    pub learning_rate: f64,
    /// Training items per second since the run (or resume) started.
    pub examples_per_second: f64,
}

/// Receives progress; the CLI draws a progress bar from it.
pub trait TrainObserver {
    /// The run starts (or resumes) at `step` of `total_steps`.
    fn start(&mut self, _step: usize, _total_steps: usize) {}
    /// An optimizer step finished.
    fn step(&mut self, _info: &StepInfo) {}
    /// An epoch finished.
    fn epoch(&mut self, _record: &EpochRecord) {}
    /// Something worth telling the user (fresh tensors, unused tensors, early stop).
    fn note(&mut self, _message: &str) {}
}

/// An observer that ignores everything.
pub struct Silent;
impl TrainObserver for Silent {}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// The output folder (a complete model).
    pub output: PathBuf,
    /// Per-epoch records.
    pub history: Vec<EpochRecord>,
    /// Best selection metric, if dev data was given.
    pub best: Option<f64>,
}

/// Environment variable that aborts the process right after the given optimizer step
/// (and its checkpoint), like a `kill -9`; used by the resume tests.
pub const ABORT_AFTER_STEP_ENV: &str = "STANDPOINT_FAILPOINT_ABORT_AFTER_STEP";

/// Everything prepared before the first step.
struct Setup {
    config: TrainConfig,
    model_config: ModelConfig,
    model: Model,
    varmap: VarMap,
    train_items: Vec<Item>,
    dev_items: Vec<Item>,
    weights: Vec<f64>,
    tokenizer_json: PathBuf,
    device: Device,
}

/// Trains as `config` says; with `resume`, continues the run whose output folder is
/// `config.output` from its last saved state.
pub fn train(
    config: &TrainConfig,
    resume: bool,
    observer: &mut dyn TrainObserver,
) -> Result<TrainSummary> {
    config.check()?;
    crate::threads::init(None)?;
    let setup = prepare(config, observer)?;
    trainer::run(setup, resume, observer)
}

/// Reads a run's saved `training_config.json`, for `--resume`.
pub fn saved_config(output: &Path) -> Result<TrainConfig> {
    let path = output.join("training_config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::MissingFile {
            path: path.clone(),
            hint: Some("nothing to resume: this folder holds no training run".into()),
        },
        _ => Error::io(&path, e),
    })?;
    let mut config: TrainConfig =
        serde_json::from_str(&text).map_err(|source| Error::Json { path, source })?;
    // The run continues where it is now (a copied or moved folder), not where it was started.
    config.output = output.to_path_buf();
    Ok(config)
}

fn prepare(config: &TrainConfig, observer: &mut dyn TrainObserver) -> Result<Setup> {
    let device = parse_device(&config.device)?;
    let resolved = hub::resolve(&config.base, &ResolveOptions::default())?;
    let base_config = ModelConfig::from_file(&config_path(&resolved.dir))?;
    let tokenizer_json = resolved.dir.join("tokenizer.json");
    let max_length = config.max_length.min(base_config.encoder.max_tokens());
    // Heads: those of the starting model, plus new ones.
    let mut model_config = base_config.clone();
    if config.mark_mentions && model_config.mention_markers.is_none() {
        model_config.mention_markers = Some(MentionMarkers::default());
    }
    let encoder = TextEncoder::from_file(&tokenizer_json, max_length)?
        .with_mention_markers(model_config.mention_markers.clone());
    model_config.name = config.name.clone().or(model_config.name);
    model_config.version = config.version.clone().or(model_config.version);
    let given_schema = config
        .schema
        .as_deref()
        .map(LabelSchema::from_file)
        .transpose()?;
    let fields = FieldMap {
        text: config.text_field.clone(),
        target: config.target_field.clone(),
        mention: "mention".into(),
        id: "id".into(),
        heads: config
            .heads
            .iter()
            .map(|h| {
                (
                    h.name.clone(),
                    h.field.clone().unwrap_or_else(|| h.name.clone()),
                )
            })
            .collect(),
    };
    let sources = parse_sources(&config.train)?;
    let dev_sources = parse_sources(&config.dev)?;
    let train_examples = read_sources(&sources, &fields)?;
    let dev_examples = read_sources(&dev_sources, &fields)?;

    let names: Vec<String> = config.heads.iter().map(|h| h.name.clone()).collect();
    let inferred = match &given_schema {
        Some(_) => None,
        None => {
            // Only new heads get their labels from the data; a head the starting model
            // already has keeps its own (fine-tuning `stance` of a trained model).
            let new_slots: Vec<usize> = (0..names.len())
                .filter(|&i| base_config.head(&names[i]).is_none())
                .collect();
            (!new_slots.is_empty())
                .then(|| LabelSchema::infer_slots(&train_examples, &names, &new_slots))
                .transpose()?
        }
    };
    let mut schema = LabelSchema { heads: Vec::new() };
    let mut new_heads = Vec::new();
    for plan in &config.heads {
        let labels = match base_config.head(&plan.name) {
            Some(existing) => existing.labels.clone(),
            None => {
                let source = given_schema
                    .as_ref()
                    .or(inferred.as_ref())
                    .expect("set whenever a head is new");
                let head = source
                    .head(&plan.name)
                    .ok_or_else(|| Error::InvalidOption {
                        option: "schema",
                        reason: format!("the label schema has no head {:?}", plan.name),
                    })?;
                let spec =
                    HeadSpec::new(&plan.name, head.labels.clone(), plan.input, config.pooling);
                model_config.heads.push(spec);
                new_heads.push(plan.name.clone());
                head.labels.clone()
            }
        };
        schema.heads.push(data::HeadLabels {
            name: plan.name.clone(),
            labels,
        });
    }
    let train_labelled = encode_labels(train_examples, &fields, &schema, &sources)?;
    let dev_labelled = encode_labels(dev_examples, &fields, &schema, &dev_sources)?;
    let head_of_label: Vec<usize> = names
        .iter()
        .map(|n| {
            model_config
                .heads
                .iter()
                .position(|h| &h.name == n)
                .expect("added above")
        })
        .collect();
    let train_items = items::build_items(
        &train_labelled,
        &head_of_label,
        &model_config.heads,
        &encoder,
        &sources,
    )?;
    let dev_items = items::build_items(
        &dev_labelled,
        &head_of_label,
        &model_config.heads,
        &encoder,
        &dev_sources,
    )?;
    if train_items.is_empty() {
        return Err(Error::Training(
            "the training data holds no labelled example".into(),
        ));
    }

    // The model, from a VarMap, with the starting weights loaded into it.
    let varmap = VarMap::new();
    let model = Model::new(
        &model_config,
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
    )?;
    let prefixes: Vec<String> = model_config
        .heads
        .iter()
        .filter(|h| new_heads.contains(&h.name))
        .map(|h| h.tensor_prefix.clone())
        .collect();
    let pooler = crate::model::names::pooler_prefix(model_config.encoder.architecture);
    let report = weights::load_into_varmap(
        &weights_path(&resolved.dir),
        &model_config,
        &varmap,
        |name| {
            name.starts_with(&pooler)
                || prefixes
                    .iter()
                    .any(|p| !p.is_empty() && name.starts_with(p.as_str()))
        },
    )?;
    items::reinitialise(&varmap, &report.fresh, config.seed)?;
    if !report.fresh.is_empty() {
        observer.note(&format!("initialised fresh: {}", report.fresh.join(", ")));
    }
    if !report.unused.is_empty() {
        observer.note(&format!(
            "unused tensors of the starting model: {}",
            report.unused.join(", ")
        ));
    }
    Ok(Setup {
        config: config.clone(),
        model_config,
        model,
        varmap,
        train_items,
        dev_items,
        weights: sources.iter().map(|s| s.weight).collect(),
        tokenizer_json,
        device,
    })
}

fn parse_sources(specs: &[String]) -> Result<Vec<DataSource>> {
    specs.iter().map(|s| DataSource::parse(s)).collect()
}

/// The variables of a `VarMap`, sorted by name (the optimiser's fixed order).
pub fn named_vars(varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
    let vars = varmap
        .data()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut named: Vec<_> = vars.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}
