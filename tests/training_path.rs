//! The same model definition built from a `VarMap` (the training path): identical names,
//! identical outputs once loaded, real dropout, and gradients reaching every parameter.

mod common;

use std::collections::BTreeSet;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use common::*;
use standpoint::model::{EncoderInput, Model};
use standpoint::{ModelConfig, Query};

fn trainable(name: &str) -> (VarMap, Model) {
    let config = ModelConfig::from_file(&fixture(name).join("config.json")).unwrap();
    let mut varmap = VarMap::new();
    let model = Model::new(
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    varmap
        .load(fixture(name).join("model.safetensors"))
        .unwrap();
    (varmap, model)
}

fn batch(name: &str) -> EncoderInput {
    let classifier = load(&fixture(name)).unwrap();
    let queries = [
        Query::pair("NATO", "NATO has refused practical cooperation."),
        Query::text("Moscow said cooperation with the alliance has completely ended."),
    ];
    let encoded: Vec<_> = queries
        .iter()
        .map(|q| classifier.text_encoder().encode(q.target, q.text).unwrap())
        .collect();
    let refs: Vec<_> = encoded.iter().collect();
    standpoint::tokenize::pad_batch(
        &refs,
        classifier.model().config().encoder.pad_token_id,
        &Device::Cpu,
    )
    .unwrap()
}

fn logits(model: &Model, input: &EncoderInput, train: bool) -> Tensor {
    model
        .forward_t(input, &[0], train)
        .unwrap()
        .logits
        .remove(0)
        .1
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn varmap_model_has_the_checkpoint_names_and_outputs() {
    for name in TINY_MODELS {
        let (varmap, model) = trainable(name);
        let created: BTreeSet<String> = varmap.data().lock().unwrap().keys().cloned().collect();
        let stored: BTreeSet<String> =
            candle_core::safetensors::load(fixture(name).join("model.safetensors"), &Device::Cpu)
                .unwrap()
                .into_keys()
                .collect();
        assert_eq!(
            created, stored,
            "{name}: training creates other tensors than the checkpoint holds"
        );

        let input = batch(name);
        let inference = load(&fixture(name)).unwrap();
        let want = values(&logits(inference.model(), &input, false));
        let got = values(&logits(&model, &input, false));
        // Inference multiplies through weights packed at load, training through the general
        // matrix multiply: the same model, summed in another order.
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{name}: VarMap model differs from the loaded one: {got:?} vs {want:?}"
            );
        }
    }
}

#[test]
fn dropout_is_real_in_training_and_off_in_inference() {
    let (_varmap, model) = trainable("tiny-bert");
    let input = batch("tiny-bert");
    let eval_a = values(&logits(&model, &input, false));
    let eval_b = values(&logits(&model, &input, false));
    assert_eq!(eval_a, eval_b, "inference must be deterministic");
    let train_a = values(&logits(&model, &input, true));
    let train_b = values(&logits(&model, &input, true));
    assert!(
        max_abs_diff(&train_a, &eval_a) > 1e-4,
        "dropout changed nothing in training"
    );
    assert!(
        max_abs_diff(&train_a, &train_b) > 1e-4,
        "dropout is not random"
    );
}

/// `candle_nn`'s fused LayerNorm has no backward, which would silently zero every gradient
/// below it; every parameter must receive a gradient here.
#[test]
fn gradients_reach_every_parameter() {
    for name in TINY_MODELS {
        let (varmap, model) = trainable(name);
        let input = batch(name);
        let targets = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
        let loss =
            candle_nn::loss::cross_entropy(&logits(&model, &input, false), &targets).unwrap();
        let grads = loss.backward().unwrap();
        for (var_name, var) in varmap.data().lock().unwrap().iter() {
            let grad = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient for {var_name}"));
            let norm = grad
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            // Rows of embedding tables that no token used legitimately get zero, whole tables do not.
            assert!(norm > 0.0, "{name}: zero gradient for {var_name}");
        }
    }
}
