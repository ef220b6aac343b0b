//! The Rust model against transformers on the tiny fixtures: tokenization, hidden states,
//! pooled vectors and logits, within 1e-4 (max abs) in f32. The reference comes from
//! `scripts/make_fixtures.py`; regenerate it there, never from this crate's output.
//!
//! `STANDPOINT_TEST_DEVICE=cuda:0` runs the same comparisons on a GPU (`scripts/gpu-check.sh`);
//! `STANDPOINT_TEST_DTYPE=bf16|f16` in half precision, within [`HALF_TOLERANCE`].

mod common;

use candle_core::{Device, Tensor};
use common::*;
use standpoint::model::EncoderInput;
use standpoint::{Architecture, ClassifierOptions, Query};

const TOLERANCE: f32 = 1e-4;
/// Half precision keeps 8 (bf16) or 11 (f16) significant bits: hidden states of magnitude
/// up to ~5 move by up to ~0.07 through the layers (measured on CPU bf16).
const HALF_TOLERANCE: f32 = 0.1;

fn tensor(rows: &[Vec<u32>], device: &Device) -> Tensor {
    Tensor::new(rows.to_vec(), device).unwrap()
}

fn check_model(name: &str) {
    let options = test_device_options();
    let tolerance = if options.precision == standpoint::Precision::F32 {
        TOLERANCE
    } else {
        HALF_TOLERANCE
    };
    let f32 = |t: Tensor| t.to_dtype(candle_core::DType::F32).unwrap();
    let classifier =
        standpoint::Classifier::load(fixture(name).to_str().unwrap(), &options).unwrap();
    let device = classifier.device().clone();
    let model = classifier.model();
    let reference = reference(name);
    assert_eq!(classifier.text_encoder().max_length(), reference.max_length);
    assert!(!reference.cases.is_empty());
    // On f32 CPU the layers run on real tokens only and padded positions are zero;
    // elsewhere they are computed (masked) as transformers does.
    let packed = device.is_cpu() && options.precision == standpoint::Precision::F32;
    let mut padded_positions = 0usize;
    for case in &reference.cases {
        let what = format!("{name}/{}", case.name);

        // Tokenization: same ids (and segment ids where the model has token types).
        for (i, query) in case.queries().iter().enumerate() {
            let encoded = classifier
                .text_encoder()
                .encode(query.target, query.text)
                .unwrap();
            let real = case.attention_mask[i].iter().filter(|&&m| m == 1).count();
            assert_eq!(
                encoded.ids,
                case.input_ids[i][..real],
                "{what}: ids of input {i}"
            );
            if model.config().encoder.architecture == Architecture::Bert {
                assert_eq!(
                    encoded.type_ids,
                    case.token_type_ids[i][..real],
                    "{what}: type ids of input {i}"
                );
            }
        }

        // The network on the reference's own padded batch: real positions match, padded
        // ones too where they are computed.
        let input = EncoderInput {
            input_ids: tensor(&case.input_ids, &device),
            token_type_ids: tensor(&case.token_type_ids, &device),
            attention_mask: tensor(&case.attention_mask, &device),
        };
        let hidden = model.encode(&input, false).unwrap();
        let ours: Vec<Vec<Vec<f32>>> = f32(hidden.clone()).to_vec3().unwrap();
        let positions = || {
            ours.iter()
                .zip(&case.last_hidden_state)
                .zip(&case.attention_mask)
                .flat_map(|((o, r), m)| o.iter().zip(r).zip(m))
        };
        let real = positions().filter(|(_, m)| **m == 1 || !packed);
        let diff = max_abs_diff(
            real.clone().flat_map(|((o, _), _)| o),
            real.flat_map(|((_, r), _)| r),
        );
        assert!(
            diff < tolerance,
            "{what}: last hidden state differs by {diff}"
        );
        if packed {
            let padded = positions().filter(|(_, m)| **m == 0).collect::<Vec<_>>();
            padded_positions += padded.len();
            let largest = padded
                .iter()
                .flat_map(|((o, _), _)| o.iter())
                .fold(0f32, |a, v| a.max(v.abs()));
            assert_eq!(largest, 0.0, "{what}: padded positions are not zero");
        }

        let pooled: Vec<Vec<f32>> = f32(model
            .head_features(0, &hidden, &input.attention_mask, false)
            .unwrap())
        .to_vec2()
        .unwrap();
        let diff = max_abs_diff(pooled.iter().flatten(), case.pooled.iter().flatten());
        assert!(diff < tolerance, "{what}: pooled output differs by {diff}");

        let logits: Vec<Vec<f32>> = f32(model
            .head_logits(0, &hidden, &input.attention_mask, false)
            .unwrap())
        .to_vec2()
        .unwrap();
        let diff = max_abs_diff(logits.iter().flatten(), case.logits.iter().flatten());
        assert!(diff < tolerance, "{what}: logits differ by {diff}");

        // The public API end to end: its own tokenization, sorting and padding.
        let predictions = classifier.classify(&case.queries()).unwrap();
        for (i, prediction) in predictions.iter().enumerate() {
            let got: Vec<f32> = prediction["classification"]
                .probabilities
                .values()
                .copied()
                .collect();
            let diff = max_abs_diff(&got, &softmax(&case.logits[i]));
            assert!(
                diff < tolerance,
                "{what}: probabilities of input {i} differ by {diff}"
            );
        }
    }
    assert!(
        !packed || padded_positions > 0,
        "{name}: no case has padding, so packing went unchecked"
    );
}

#[test]
fn bert_matches_transformers() {
    check_model("tiny-bert");
}

#[test]
fn distilbert_matches_transformers() {
    check_model("tiny-distilbert");
}

#[test]
fn roberta_matches_transformers() {
    check_model("tiny-roberta");
}

/// A sentence classified alone, in a padded batch, or in batches of other sizes gets the
/// same probabilities: padding never leaks into results.
#[test]
fn batch_composition_does_not_change_results() {
    for name in TINY_MODELS {
        let reference = reference(name);
        let queries: Vec<Query> = reference.cases.iter().flat_map(|c| c.queries()).collect();
        let together = load(&fixture(name)).unwrap().classify(&queries).unwrap();
        for (batch_size, batch_tokens) in [(1, None), (3, None), (64, Some(40))] {
            let options = ClassifierOptions {
                batch_size,
                batch_tokens,
                ..ClassifierOptions::default()
            };
            let classifier =
                standpoint::Classifier::load(fixture(name).to_str().unwrap(), &options).unwrap();
            for (i, query) in queries.iter().enumerate() {
                let alone = &classifier.classify(&[*query]).unwrap()[0]["classification"];
                let batched = &together[i]["classification"];
                let diff =
                    max_abs_diff(alone.probabilities.values(), batched.probabilities.values());
                assert!(
                    diff < 1e-5,
                    "{name}: input {i} alone vs batched differs by {diff}"
                );
            }
            let rebatched = classifier.classify(&queries).unwrap();
            for (a, b) in rebatched.iter().zip(&together) {
                let diff = max_abs_diff(
                    a["classification"].probabilities.values(),
                    b["classification"].probabilities.values(),
                );
                assert!(
                    diff < 1e-5,
                    "{name}: batch size {batch_size} changes results by {diff}"
                );
            }
        }
    }
}

/// The padded part of a batch is really masked: changing the ids under the padding
/// changes nothing in the real rows.
#[test]
fn padded_positions_are_ignored() {
    let classifier = load(&fixture("tiny-bert")).unwrap();
    let case = &reference("tiny-bert").cases[0];
    let mask = tensor(&case.attention_mask, &Device::Cpu);
    let garbage: Vec<Vec<u32>> = case
        .input_ids
        .iter()
        .zip(&case.attention_mask)
        .map(|(ids, m)| {
            ids.iter()
                .zip(m)
                .map(|(&id, &m)| if m == 1 { id } else { 7 })
                .collect()
        })
        .collect();
    let run = |ids: &[Vec<u32>]| -> Vec<Vec<f32>> {
        let input = EncoderInput {
            input_ids: tensor(ids, &Device::Cpu),
            token_type_ids: tensor(&case.token_type_ids, &Device::Cpu),
            attention_mask: mask.clone(),
        };
        let model = classifier.model();
        let hidden = model.encode(&input, false).unwrap();
        model
            .head_logits(0, &hidden, &mask, false)
            .unwrap()
            .to_vec2()
            .unwrap()
    };
    let diff = max_abs_diff(
        run(&case.input_ids).iter().flatten(),
        run(&garbage).iter().flatten(),
    );
    assert!(diff < 1e-6, "padding content leaked into logits: {diff}");
}
