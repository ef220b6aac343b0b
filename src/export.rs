//! Writing a model folder in another storage dtype (`standpoint export`), e.g. the f16
//! copy shipped in `models/default/`.

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};

use crate::error::{Error, Result};
use crate::model::config::config_path;
use crate::model::weights::save_model;
use crate::model::weights::{load_into_varmap, weights_path};
use crate::model::{Model, ModelConfig};
use crate::output::write_atomic;

/// Files copied unchanged when present: the training record of a standpoint model.
const PROVENANCE: [&str; 3] = ["training_config.json", "eval.json", "metrics.jsonl"];

/// Copies the model folder `from` to `to` with its weights stored as `dtype` (f32, f16 or
/// bf16). Every tensor is checked against the model definition on the way (a missing or
/// misshapen tensor is an error naming it); files are written atomically.
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use candle_core::DType;
/// use standpoint::{Classifier, ClassifierOptions};
///
/// let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-bert");
/// let out = tempfile::tempdir().unwrap();
/// standpoint::export::export_model(model.as_ref(), out.path(), DType::F16)?;
/// let classifier = Classifier::load(out.path().to_str().unwrap(), &ClassifierOptions::default())?;
/// assert_eq!(classifier.info().stored_dtype.as_deref(), Some("f16"));
/// # Ok(()) }
/// ```
pub fn export_model(from: &Path, to: &Path, dtype: DType) -> Result<()> {
    if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(Error::InvalidOption {
            option: "dtype",
            reason: format!("{dtype:?} is not a float dtype (f32, f16 or bf16)"),
        });
    }
    if from.canonicalize().ok() == to.canonicalize().ok() && to.exists() {
        return Err(Error::InvalidOption {
            option: "output",
            reason: "must differ from the model folder".into(),
        });
    }
    let config = ModelConfig::from_file(&config_path(from))?;
    let varmap = VarMap::new();
    Model::new(
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    load_into_varmap(&weights_path(from), &config, &varmap, |_| false)?;
    save_model(to, &config, &varmap, dtype, &from.join("tokenizer.json"))?;
    for name in PROVENANCE {
        let path = from.join(name);
        if path.is_file() {
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            write_atomic(&to.join(name), &bytes)?;
        }
    }
    Ok(())
}

/// Writes fitted softmax temperatures into the heads of the model folder `dir`
/// (`config.json`, rewritten atomically). Every named head must exist.
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use candle_core::DType;
/// use standpoint::{Classifier, ClassifierOptions};
///
/// let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-bert");
/// let out = tempfile::tempdir().unwrap();
/// standpoint::export::export_model(model.as_ref(), out.path(), DType::F32)?;
/// standpoint::export::set_temperatures(out.path(), &[("classification".into(), 1.5)])?;
/// let classifier = Classifier::load(out.path().to_str().unwrap(), &ClassifierOptions::default())?;
/// assert_eq!(classifier.heads()[0].temperature, Some(1.5));
/// # Ok(()) }
/// ```
pub fn set_temperatures(dir: &Path, temperatures: &[(String, f64)]) -> Result<()> {
    let mut config = ModelConfig::from_file(&config_path(dir))?;
    for (name, t) in temperatures {
        if !(t.is_finite() && *t > 0.0) {
            return Err(Error::InvalidOption {
                option: "temperature",
                reason: format!("head {name:?}: {t} is not positive and finite"),
            });
        }
        let available: Vec<String> = config.heads.iter().map(|h| h.name.clone()).collect();
        let head = config
            .heads
            .iter_mut()
            .find(|h| &h.name == name)
            .ok_or_else(|| Error::UnknownHead {
                name: name.clone(),
                available,
            })?;
        head.temperature = Some(*t);
    }
    let text = serde_json::to_string_pretty(&config.to_value()).expect("plain JSON serialises");
    write_atomic(&config_path(dir), text.as_bytes())?;
    // Read back through the validating loader, so a bad value never stays unnoticed.
    ModelConfig::from_file(&config_path(dir)).map(|_| ())
}
