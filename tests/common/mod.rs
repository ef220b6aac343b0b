//! Shared helpers for the integration tests: fixture paths, reference files, tensor edits.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Deserialize;

/// The tiny checkpoints made by `scripts/make_fixtures.py`.
pub const TINY_MODELS: [&str; 3] = ["tiny-bert", "tiny-distilbert", "tiny-roberta"];

/// A fixture under `tests/fixtures/` of the checkout named by `CARGO_MANIFEST_DIR` at run time
/// (so a test binary built elsewhere, as for `scripts/gpu-check.sh`, reads this checkout's),
/// else of the one it was built from.
pub fn fixture(name: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("tests/fixtures")
        .join(name)
}

/// Reference outputs of transformers for one tiny model (`tests/fixtures/expected/<model>.json`).
#[derive(Debug, Deserialize)]
pub struct Reference {
    pub model: String,
    pub max_length: usize,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
pub struct Case {
    pub name: String,
    pub texts: Vec<String>,
    pub targets: Option<Vec<String>>,
    pub input_ids: Vec<Vec<u32>>,
    pub token_type_ids: Vec<Vec<u32>>,
    pub attention_mask: Vec<Vec<u32>>,
    pub last_hidden_state: Vec<Vec<Vec<f32>>>,
    pub pooled: Vec<Vec<f32>>,
    pub logits: Vec<Vec<f32>>,
}

impl Case {
    pub fn queries(&self) -> Vec<standpoint::Query<'_>> {
        self.texts
            .iter()
            .enumerate()
            .map(|(i, text)| standpoint::Query {
                text,
                target: self.targets.as_ref().map(|t| t[i].as_str()),
                focus: None,
                holder: None,
            })
            .collect()
    }
}

pub fn reference(model: &str) -> Reference {
    let path = fixture("expected").join(format!("{model}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = row.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// Largest absolute difference between two equally long sequences.
pub fn max_abs_diff<'a>(
    a: impl IntoIterator<Item = &'a f32>,
    b: impl IntoIterator<Item = &'a f32>,
) -> f32 {
    let a: Vec<f32> = a.into_iter().copied().collect();
    let b: Vec<f32> = b.into_iter().copied().collect();
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A copy of fixture `name` in a fresh temporary folder (returned first, to keep it alive).
pub fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    (temp, dir)
}

/// Loads `model.safetensors` of `dir`, lets `edit` change the tensors, writes it back.
pub fn edit_weights(dir: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let path = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, &path).unwrap();
}

/// Loads `config.json` of `dir`, lets `edit` change it, writes it back.
pub fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

pub fn load(dir: &Path) -> standpoint::Result<standpoint::Classifier> {
    standpoint::Classifier::load(
        dir.to_str().unwrap(),
        &standpoint::ClassifierOptions::default(),
    )
}

/// The device and compute dtype the parity tests run on: `STANDPOINT_TEST_DEVICE`
/// (`cpu` unless set, e.g. `cuda:0` in `scripts/gpu-check.sh`) and `STANDPOINT_TEST_DTYPE`
/// (`f32` unless set).
pub fn test_device_options() -> standpoint::ClassifierOptions {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    standpoint::ClassifierOptions {
        device: standpoint::parse_device(&var("STANDPOINT_TEST_DEVICE", "cpu")).unwrap(),
        precision: standpoint::Precision::parse(&var("STANDPOINT_TEST_DTYPE", "f32")).unwrap(),
        ..standpoint::ClassifierOptions::default()
    }
}

/// tiny-bert with two standpoint heads that share the imported classifier's weights:
/// `stance` reads (target, text), `sentiment` reads the text alone.
pub fn two_head_model() -> (tempfile::TempDir, std::path::PathBuf) {
    let (tmp, dir) = copy_fixture("tiny-bert");
    edit_weights(&dir, |t| {
        for head in ["stance", "sentiment"] {
            for part in ["weight", "bias"] {
                let v = t[&format!("classifier.{part}")].clone();
                t.insert(format!("heads.{head}.classifier.{part}"), v);
            }
        }
        t.remove("classifier.weight");
        t.remove("classifier.bias");
    });
    let labels = |l: [&str; 3]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let heads = vec![
        standpoint::HeadSpec::new(
            "stance",
            labels(["against", "neutral", "favor"]),
            standpoint::HeadInput::Pair,
            standpoint::HeadPooling::Pooler,
        ),
        standpoint::HeadSpec::new(
            "sentiment",
            labels(["negative", "neutral", "positive"]),
            standpoint::HeadInput::Text,
            standpoint::HeadPooling::Pooler,
        ),
    ];
    edit_config(&dir, |c| {
        c["standpoint"] =
            serde_json::json!({"format": 1, "name": "two-heads", "version": "0.1", "heads": heads});
    });
    (tmp, dir)
}

/// Twelve JSONL documents (`d0` ... `d11`) mentioning NATO and Moscow, of varying length,
/// written to `dir/docs.jsonl`; the file's path.
pub fn jsonl_docs(dir: &Path) -> String {
    let path = dir.join("docs.jsonl");
    let mut lines = String::new();
    for i in 0..12 {
        let text = format!(
            "Document {i}. NATO has refused practical cooperation. {} Moscow said the talks ended.",
            "There is an objective need for political dialogue. ".repeat(i % 4)
        );
        lines.push_str(&serde_json::json!({"id": format!("d{i}"), "text": text}).to_string());
        lines.push('\n');
    }
    std::fs::write(&path, lines).unwrap();
    path.to_str().unwrap().to_string()
}
