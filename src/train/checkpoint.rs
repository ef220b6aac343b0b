//! Writing model folders and resume state so that an interruption never leaves a
//! half-written file: every file goes to a temporary sibling and is renamed into place.

use std::path::Path;

use candle_core::DType;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::metrics::EvalReport;
use crate::model::weights::{save_tensors, varmap_tensors};
use crate::output::write_atomic;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Optimizer steps completed.
    pub step: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Learning rate after the epoch's last step.
    pub learning_rate: f64,
    /// Training items per second over the epoch.
    pub examples_per_second: f64,
    /// The selection metric on the dev data, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub selection: Option<f64>,
    /// Whether this epoch became the saved best model.
    pub best: bool,
    /// Dev metrics, if dev data was given.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dev: Option<EvalReport>,
}

/// Everything besides weights and moments needed to continue an interrupted run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResumeState {
    /// 0-based epoch in progress.
    pub epoch: usize,
    /// Micro-batches of that epoch already consumed.
    pub batch: usize,
    /// Optimizer steps taken.
    pub step: usize,
    /// Best selection metric so far.
    pub best: Option<f64>,
    /// Epochs since the best one.
    pub epochs_without_improvement: usize,
    /// Loss sum and batch count of the epoch in progress.
    pub epoch_loss: (f64, usize),
    /// Finished epochs.
    pub history: Vec<EpochRecord>,
}

/// `last/` inside the output folder: weights, optimizer moments and [`ResumeState`].
pub struct ResumeFiles<'a> {
    /// The training output folder.
    pub output: &'a Path,
}

impl ResumeFiles<'_> {
    fn dir(&self) -> std::path::PathBuf {
        self.output.join("last")
    }

    /// Whether a resumable state exists.
    pub fn exists(&self) -> bool {
        self.dir().join("state.json").is_file()
    }

    /// Saves the state. The weights and moments are written before `state.json`, which
    /// names their step, so a crash in between leaves the previous state readable.
    pub fn save(
        &self,
        varmap: &VarMap,
        optimizer: &super::optim::AdamW,
        state: &ResumeState,
    ) -> Result<()> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let step = state.step;
        save_tensors(
            &varmap_tensors(varmap, DType::F32)?,
            &dir.join(format!("weights-{step}.safetensors")),
        )?;
        optimizer.save_moments(&dir.join(format!("optimizer-{step}.safetensors")))?;
        let text = serde_json::to_string_pretty(state).expect("plain JSON serialises");
        write_atomic(&dir.join("state.json"), text.as_bytes())?;
        // Older steps are no longer referenced.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let keep = name == "state.json"
                    || name == format!("weights-{step}.safetensors")
                    || name == format!("optimizer-{step}.safetensors");
                if !keep && name.ends_with(".safetensors") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Reads the state and paths of its weights and moments.
    pub fn load(&self) -> Result<(ResumeState, std::path::PathBuf, std::path::PathBuf)> {
        let dir = self.dir();
        let path = dir.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let state: ResumeState =
            serde_json::from_str(&text).map_err(|source| Error::Json { path, source })?;
        let weights = dir.join(format!("weights-{}.safetensors", state.step));
        let moments = dir.join(format!("optimizer-{}.safetensors", state.step));
        Ok((state, weights, moments))
    }
}
