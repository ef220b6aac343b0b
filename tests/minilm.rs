//! The real encoder: mean-pooled embeddings of all-MiniLM-L6-v2 against sentence-transformers.
//!
//! The model folder is `STANDPOINT_MINILM_DIR`, else `../shared/models/all-MiniLM-L6-v2`
//! beside the checkout. Where neither exists the test says so and passes as skipped;
//! the expected vectors come from `scripts/make_fixtures.py`.

mod common;

use std::path::PathBuf;

use common::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    sentences: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    mean_pooled: Vec<Vec<f32>>,
    sentence_transformers: Vec<Vec<f32>>,
}

fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("STANDPOINT_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/models/all-MiniLM-L6-v2")
        });
    dir.join("model.safetensors").is_file().then_some(dir)
}

#[test]
fn minilm_embeddings_match_sentence_transformers() {
    let Some(dir) = model_dir() else {
        eprintln!(
            "SKIPPED minilm_embeddings_match_sentence_transformers: all-MiniLM-L6-v2 not found (set STANDPOINT_MINILM_DIR)"
        );
        return;
    };
    let expected: Expected =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected/minilm.json")).unwrap())
            .unwrap();
    assert!(expected.sentences.len() >= 20);
    let options = standpoint::ClassifierOptions {
        max_length: Some(256), // sentence-transformers' max_seq_length for this model
        ..Default::default()
    };
    let encoder = standpoint::Classifier::load(dir.to_str().unwrap(), &options).unwrap();
    assert!(
        encoder.heads().is_empty(),
        "a BertModel checkpoint has no heads"
    );
    // 22.7M parameters in the file; the pooler (147,840) serves no head, so it is reported unused.
    let info = encoder.info();
    assert_eq!(info.parameters, 22_565_376);
    assert_eq!(
        info.unused_tensors,
        ["pooler.dense.bias", "pooler.dense.weight"]
    );

    for (i, sentence) in expected.sentences.iter().enumerate() {
        let encoded = encoder.text_encoder().encode(None, sentence).unwrap();
        assert_eq!(
            encoded.ids, expected.input_ids[i],
            "token ids of sentence {i}"
        );
    }
    let texts: Vec<&str> = expected.sentences.iter().map(String::as_str).collect();
    let pooled = encoder.embed(&texts, false).unwrap();
    let normalized = encoder.embed(&texts, true).unwrap();
    for i in 0..texts.len() {
        let diff = max_abs_diff(pooled.row(i).iter(), expected.mean_pooled[i].iter());
        assert!(
            diff < 1e-4,
            "mean-pooled embedding of sentence {i} differs by {diff}"
        );
        let diff = max_abs_diff(
            normalized.row(i).iter(),
            expected.sentence_transformers[i].iter(),
        );
        assert!(
            diff < 1e-4,
            "sentence-transformers embedding of sentence {i} differs by {diff}"
        );
    }
}
