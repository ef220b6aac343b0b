//! One training step on tiny BERT against PyTorch + torch.optim.AdamW
//! (`scripts/make_train_fixture.py`): loss, gradient norm and every updated weight.
//!
//! Elements whose true gradient is ~0 (the attention key biases, a few isolated entries)
//! move by float32 rounding noise under AdamW's first step in both frameworks; the script
//! lists them as `unstable`, and they are held to the update bound instead.

mod common;

use std::collections::{HashMap, HashSet};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use common::*;
use serde::Deserialize;
use standpoint::ModelConfig;
use standpoint::model::{EncoderInput, Model};
use standpoint::train::loss::cross_entropy;
use standpoint::train::optim::{AdamW, AdamWConfig, clip_global_norm};

#[derive(Deserialize)]
struct Fixture {
    labels: Vec<u32>,
    max_grad_norm: f64,
    optimizer: Optimizer,
    scenarios: HashMap<String, Scenario>,
}

#[derive(Deserialize)]
struct Optimizer {
    lr: f64,
    betas: [f64; 2],
    eps: f64,
    weight_decay: f64,
}

#[derive(Deserialize)]
struct Scenario {
    loss: f32,
    grad_norm: f64,
    weights: String,
    unstable: HashMap<String, Vec<usize>>,
    #[serde(default)]
    class_weights: Option<Vec<f32>>,
    #[serde(default)]
    label_smoothing: Option<f64>,
    #[serde(default)]
    rows: Option<Vec<usize>>,
}

fn ids(rows: &[Vec<u32>]) -> Tensor {
    Tensor::new(rows.to_vec(), &Device::Cpu).unwrap()
}

fn run_scenario(name: &str) {
    let expected = fixture("expected");
    let fx: Fixture = serde_json::from_str(
        &std::fs::read_to_string(expected.join("tiny-bert-train-step.json")).unwrap(),
    )
    .unwrap();
    let scenario = &fx.scenarios[name];
    let case = reference("tiny-bert")
        .cases
        .into_iter()
        .find(|c| c.name == "pairs")
        .unwrap();

    let dir = fixture("tiny-bert");
    let config = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let mut varmap = VarMap::new();
    let model = Model::new(
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    varmap.load(dir.join("model.safetensors")).unwrap();
    let before: HashMap<String, Vec<f32>> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    let named = standpoint::train::named_vars(&varmap);
    let mut optimizer = AdamW::new(
        named.clone(),
        AdamWConfig {
            lr: fx.optimizer.lr,
            beta1: fx.optimizer.betas[0],
            beta2: fx.optimizer.betas[1],
            eps: fx.optimizer.eps,
            weight_decay: fx.optimizer.weight_decay,
        },
    )
    .unwrap();

    // Forward with dropout off (PyTorch's model.eval()), loss, backward.
    let input = EncoderInput {
        input_ids: ids(&case.input_ids),
        token_type_ids: ids(&case.token_type_ids),
        attention_mask: ids(&case.attention_mask),
    };
    let logits = model
        .forward_t(&input, &[0], false)
        .unwrap()
        .logits
        .remove(0)
        .1;
    let labels: Vec<Option<u32>> = fx
        .labels
        .iter()
        .enumerate()
        .map(|(i, &l)| match &scenario.rows {
            Some(rows) if !rows.contains(&i) => None,
            _ => Some(l),
        })
        .collect();
    let loss = cross_entropy(
        &logits,
        &labels,
        scenario.class_weights.as_deref(),
        scenario.label_smoothing.unwrap_or(0.0),
    )
    .unwrap()
    .unwrap();
    let loss_value = loss.to_scalar::<f32>().unwrap();
    assert!(
        (loss_value - scenario.loss).abs() < 1e-5,
        "{name}: loss {loss_value} vs {}",
        scenario.loss
    );
    let grads = loss.backward().unwrap();
    let mut grads: Vec<Option<Tensor>> = named
        .iter()
        .map(|(_, v)| grads.get(v.as_tensor()).cloned())
        .collect();
    let norm = clip_global_norm(&mut grads, fx.max_grad_norm).unwrap();
    assert!(
        (norm - scenario.grad_norm).abs() < 1e-5 * scenario.grad_norm,
        "{name}: gradient norm {norm} vs {}",
        scenario.grad_norm
    );
    optimizer.step(&grads).unwrap();

    // Every updated weight, 10x tighter than the 1e-5 asked for: tight enough that skipping
    // the clipping (which moves stable weights by ~7.5e-6) would fail.
    let want =
        candle_core::safetensors::load(expected.join(&scenario.weights), &Device::Cpu).unwrap();
    assert_eq!(want.len(), named.len());
    let bound = fx.optimizer.lr * (1.0 + fx.optimizer.weight_decay) * 1.001;
    let mut checked = 0usize;
    for (var_name, var) in &named {
        let got: Vec<f32> = var.flatten_all().unwrap().to_vec1().unwrap();
        let reference: Vec<f32> = want[var_name].flatten_all().unwrap().to_vec1().unwrap();
        let unstable: HashSet<usize> = scenario
            .unstable
            .get(var_name)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        for (i, (g, r)) in got.iter().zip(&reference).enumerate() {
            if unstable.contains(&i) {
                let moved = (g - before[var_name][i]).abs() as f64;
                assert!(
                    moved <= bound * (1.0 + before[var_name][i].abs() as f64),
                    "{name}: {var_name}[{i}] moved {moved}"
                );
            } else {
                assert!(
                    (g - r).abs() < 1e-6,
                    "{name}: {var_name}[{i}] = {g}, PyTorch {r}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 20_000, "{name}: only {checked} weights compared");
}

#[test]
fn one_step_matches_pytorch() {
    run_scenario("plain");
}

#[test]
fn one_step_with_class_weights_and_label_smoothing_matches_pytorch() {
    run_scenario("weighted_smoothed");
}

#[test]
fn one_step_with_unlabelled_rows_matches_pytorch() {
    run_scenario("masked");
}
