//! The crate's one error type.

use std::path::PathBuf;

/// Every failure the library can report.
///
/// Variants name the file, tensor or input that caused them, so a message is
/// actionable without a backtrace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A required file of a model folder is absent.
    #[error("{}: file not found{}", path.display(), hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    MissingFile {
        /// The file that was looked for.
        path: PathBuf,
        /// What to do about it, when known.
        hint: Option<String>,
    },

    /// A JSON file could not be parsed.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: serde_json::Error,
    },

    /// `config.json` names a `model_type` this crate does not implement.
    #[error("{}: unsupported model_type {model_type:?} (supported: bert, distilbert, roberta, xlm-roberta)", path.display())]
    UnsupportedModelType {
        /// The config file.
        path: PathBuf,
        /// The value found.
        model_type: String,
    },

    /// A config value is missing, out of range or not supported.
    #[error("{}: invalid config key {key:?}: {reason}", path.display())]
    InvalidConfig {
        /// The config file.
        path: PathBuf,
        /// The offending key.
        key: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The safetensors file is truncated, corrupted or not safetensors at all.
    #[error("{}: cannot read safetensors: {reason}", path.display())]
    CorruptWeights {
        /// The weights file.
        path: PathBuf,
        /// What the reader reported.
        reason: String,
    },

    /// A tensor holds NaN or infinite values (a diverged training run, a damaged file).
    #[error("{}: tensor {tensor:?} holds NaN or infinite values", path.display())]
    NonFiniteWeights {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
    },

    /// Tensors the model needs are absent from the checkpoint.
    #[error("{}: missing tensors: {}", path.display(), names.join(", "))]
    MissingTensors {
        /// The weights file.
        path: PathBuf,
        /// Names as the model expects them.
        names: Vec<String>,
    },

    /// A tensor in the checkpoint has a different shape than the config implies.
    #[error("{}: tensor {tensor:?} has shape {found:?}, expected {expected:?}", path.display())]
    ShapeMismatch {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name in the checkpoint.
        tensor: String,
        /// Shape implied by `config.json`.
        expected: Vec<usize>,
        /// Shape stored in the file.
        found: Vec<usize>,
    },

    /// A tensor's dtype cannot be used (e.g. integer weights).
    #[error("{}: tensor {tensor:?} has unsupported dtype {dtype}", path.display())]
    UnsupportedDtype {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The dtype found.
        dtype: String,
    },

    /// `tokenizer.json` could not be loaded.
    #[error("{}: cannot load tokenizer: {source}", path.display())]
    TokenizerLoad {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizers crate's error.
        source: tokenizers::Error,
    },

    /// Tokenizing an input failed.
    #[error("input {index}: tokenization failed: {source}")]
    Tokenize {
        /// Position of the input in the caller's slice (0 for a single input).
        index: usize,
        /// The tokenizers crate's error.
        source: tokenizers::Error,
    },

    /// An input cannot be classified as given.
    #[error("input {index}: {reason}")]
    InvalidInput {
        /// Position of the input in the caller's slice.
        index: usize,
        /// Why it was rejected.
        reason: String,
    },

    /// A model reference could not be resolved to a folder.
    #[error("cannot resolve model {reference:?}: {reason}")]
    Resolve {
        /// The reference as given.
        reference: String,
        /// Why resolution failed.
        reason: String,
    },

    /// A record of an input file is malformed.
    #[error("{source_name}:{line}: {reason}")]
    Record {
        /// The file, or `<stdin>`.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the record.
        reason: String,
    },

    /// An option value is out of range.
    #[error("invalid {option}: {reason}")]
    InvalidOption {
        /// The option, e.g. `max_length`.
        option: &'static str,
        /// Why the value was rejected.
        reason: String,
    },

    /// Training produced a NaN or infinite loss; the last good checkpoint is kept.
    #[error("non-finite loss ({value}) at epoch {epoch}, step {step}; stopped, the last good checkpoint in {} is kept", output.display())]
    NonFiniteLoss {
        /// 1-based epoch.
        epoch: usize,
        /// Optimizer steps completed before the failing batch.
        step: usize,
        /// The loss value.
        value: f32,
        /// The training output folder.
        output: PathBuf,
    },

    /// Training data or settings cannot be used as given.
    #[error("{0}")]
    Training(String),

    /// A requested device or dtype is not available in this build or on this machine.
    #[error("{0}")]
    Unavailable(String),

    /// A head name was requested that the model does not have.
    #[error("model has no head {name:?} (heads: {})", available.join(", "))]
    UnknownHead {
        /// The requested head.
        name: String,
        /// The heads the model has.
        available: Vec<String>,
    },

    /// A tensor computation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An invalid-config error for `key` in `path`.
    pub(crate) fn config(path: impl Into<PathBuf>, key: &str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            path: path.into(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}
