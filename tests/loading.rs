//! Loading checkpoints: prefixes, heads, dtypes, and every error path naming its file or tensor.

mod common;

use candle_core::DType;
use common::*;
use standpoint::{ClassifierOptions, Error, Precision, Query};

fn probabilities(classifier: &standpoint::Classifier, queries: &[Query]) -> Vec<f32> {
    classifier
        .classify(queries)
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["classification"]
                .probabilities
                .values()
                .copied()
                .collect::<Vec<_>>()
        })
        .collect()
}

fn sample_queries() -> Vec<Query<'static>> {
    vec![
        Query::pair("NATO", "NATO has refused practical cooperation."),
        Query::text("There is an objective need for political dialogue."),
    ]
}

#[test]
fn base_checkpoint_without_prefix_loads_as_the_encoder() {
    for name in TINY_MODELS {
        let (_tmp, dir) = copy_fixture(name);
        let prefix = format!(
            "{}.",
            match name {
                "tiny-bert" => "bert",
                "tiny-distilbert" => "distilbert",
                _ => "roberta",
            }
        );
        // A base-model save: encoder tensors without the prefix, no classifier.
        edit_weights(&dir, |tensors| {
            let old = std::mem::take(tensors);
            for (k, v) in old {
                if let Some(stripped) = k.strip_prefix(&prefix) {
                    tensors.insert(stripped.to_string(), v);
                }
            }
        });
        edit_config(&dir, |c| {
            c["architectures"] = serde_json::json!(["BaseModel"]);
        });
        let bare = load(&dir).unwrap();
        assert!(bare.heads().is_empty(), "{name}");
        assert!(bare.load_report().added_prefix, "{name}");
        let full = load(&fixture(name)).unwrap();
        let texts = ["NATO has refused practical cooperation.", "Dialogue."];
        let diff = max_abs_diff(
            bare.embed(&texts, false).unwrap().iter(),
            full.embed(&texts, false).unwrap().iter(),
        );
        assert_eq!(
            diff, 0.0,
            "{name}: stripped checkpoint gives other hidden states"
        );
        let err = bare.classify(&sample_queries()).unwrap_err();
        assert!(err.to_string().contains("no classification heads"), "{err}");
    }
}

#[test]
fn unused_tensors_are_reported_by_name() {
    // The classification checkpoint read as a bare encoder leaves its head unused.
    let (_tmp, dir) = copy_fixture("tiny-distilbert");
    edit_config(&dir, |c| {
        c["architectures"] = serde_json::json!(["DistilBertModel"])
    });
    let report = load(&dir).unwrap().load_report().clone();
    assert_eq!(
        report.unused,
        [
            "classifier.bias",
            "classifier.weight",
            "pre_classifier.bias",
            "pre_classifier.weight"
        ]
    );
    assert!(!report.added_prefix);
}

#[test]
fn classification_checkpoint_keeps_its_labels() {
    let (_tmp, dir) = copy_fixture("tiny-roberta");
    edit_config(&dir, |c| {
        c["id2label"] =
            serde_json::json!({"0": "hostile", "1": "neutral", "2": "open_to_dialogue"});
    });
    let classifier = load(&dir).unwrap();
    assert_eq!(
        classifier.heads()[0].labels,
        ["hostile", "neutral", "open_to_dialogue"]
    );
    let prediction = &classifier.classify(&sample_queries()).unwrap()[0]["classification"];
    assert_eq!(
        prediction.probabilities.keys().collect::<Vec<_>>(),
        ["hostile", "neutral", "open_to_dialogue"]
    );
}

#[test]
fn half_precision_weights_load_and_compute() {
    let reference = probabilities(&load(&fixture("tiny-bert")).unwrap(), &sample_queries());
    for stored in [DType::F16, DType::BF16] {
        let (_tmp, dir) = copy_fixture("tiny-bert");
        edit_weights(&dir, |tensors| {
            for t in tensors.values_mut() {
                *t = t.to_dtype(stored).unwrap();
            }
        });
        for compute in [Precision::F32, Precision::F16, Precision::Bf16] {
            let options = ClassifierOptions {
                precision: compute,
                ..Default::default()
            };
            let classifier = standpoint::Classifier::load(dir.to_str().unwrap(), &options).unwrap();
            assert_eq!(classifier.load_report().stored_dtype, Some(stored));
            let got = probabilities(&classifier, &sample_queries());
            // bf16 keeps 8 bits of mantissa: ~1e-2 on probabilities is its resolution.
            let diff = max_abs_diff(&got, &reference);
            assert!(
                diff < 2e-2,
                "stored {stored:?}, compute {compute:?}: differs by {diff}"
            );
        }
    }
}

#[test]
fn legacy_layernorm_names_load() {
    let (_tmp, dir) = copy_fixture("tiny-bert");
    edit_weights(&dir, |tensors| {
        let old = std::mem::take(tensors);
        for (k, v) in old {
            let k = k
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            tensors.insert(k, v);
        }
    });
    let got = probabilities(&load(&dir).unwrap(), &sample_queries());
    let want = probabilities(&load(&fixture("tiny-bert")).unwrap(), &sample_queries());
    assert_eq!(got, want);
}

#[test]
fn missing_files_are_named() {
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        let (_tmp, dir) = copy_fixture("tiny-bert");
        std::fs::remove_file(dir.join(file)).unwrap();
        match load(&dir) {
            Err(Error::MissingFile { path, .. }) => assert_eq!(path, dir.join(file)),
            other => panic!("{file}: expected MissingFile, got {other:?}"),
        }
    }
}

#[test]
fn unsupported_model_type_is_named() {
    let (_tmp, dir) = copy_fixture("tiny-bert");
    edit_config(&dir, |c| c["model_type"] = "gpt2".into());
    match load(&dir) {
        Err(Error::UnsupportedModelType { model_type, path }) => {
            assert_eq!(model_type, "gpt2");
            assert_eq!(path, dir.join("config.json"));
        }
        other => panic!("expected UnsupportedModelType, got {other:?}"),
    }
}

#[test]
fn bad_config_values_name_the_key() {
    let cases: [(&str, serde_json::Value); 4] = [
        ("num_attention_heads", 5.into()),
        ("hidden_act", "swish".into()),
        ("position_embedding_type", "relative_key".into()),
        ("hidden_size", (-3).into()),
    ];
    for (key, value) in cases {
        let (_tmp, dir) = copy_fixture("tiny-bert");
        edit_config(&dir, |c| c[key] = value.clone());
        let err = load(&dir).unwrap_err();
        let shown = err.to_string();
        assert!(matches!(err, Error::InvalidConfig { .. }), "{key}: {err:?}");
        assert!(shown.contains("config.json"), "{shown}");
    }
    let (_tmp, dir) = copy_fixture("tiny-bert");
    std::fs::write(dir.join("config.json"), "{\"model_type\": \"bert\",").unwrap();
    assert!(matches!(load(&dir), Err(Error::Json { .. })));
}

#[test]
fn missing_tensors_are_listed_by_name() {
    let (_tmp, dir) = copy_fixture("tiny-bert");
    edit_weights(&dir, |tensors| {
        tensors.remove("bert.encoder.layer.1.output.dense.weight");
        tensors.remove("classifier.bias");
    });
    match load(&dir) {
        Err(Error::MissingTensors { names, path }) => {
            assert_eq!(
                names,
                [
                    "bert.encoder.layer.1.output.dense.weight",
                    "classifier.bias"
                ]
            );
            assert_eq!(path, dir.join("model.safetensors"));
        }
        other => panic!("expected MissingTensors, got {other:?}"),
    }
}

#[test]
fn wrong_shape_names_the_tensor() {
    let (_tmp, dir) = copy_fixture("tiny-bert");
    edit_weights(&dir, |tensors| {
        let t = tensors["classifier.weight"].narrow(0, 0, 2).unwrap();
        tensors.insert("classifier.weight".into(), t);
    });
    match load(&dir) {
        Err(Error::ShapeMismatch {
            tensor,
            expected,
            found,
            ..
        }) => {
            assert_eq!(tensor, "classifier.weight");
            assert_eq!(expected, [3, 32]);
            assert_eq!(found, [2, 32]);
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

#[test]
fn integer_weights_are_rejected() {
    let (_tmp, dir) = copy_fixture("tiny-bert");
    edit_weights(&dir, |tensors| {
        let t = tensors["classifier.bias"].to_dtype(DType::I64).unwrap();
        tensors.insert("classifier.bias".into(), t);
    });
    assert!(
        matches!(load(&dir), Err(Error::UnsupportedDtype { ref tensor, .. }) if tensor == "classifier.bias")
    );
}

#[test]
fn truncated_or_garbage_safetensors_is_reported() {
    let bytes = std::fs::read(fixture("tiny-bert/model.safetensors")).unwrap();
    for (what, content) in [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("header only", bytes[..10].to_vec()),
        ("empty", Vec::new()),
        ("garbage", b"this is not a safetensors file at all".to_vec()),
    ] {
        let (_tmp, dir) = copy_fixture("tiny-bert");
        std::fs::write(dir.join("model.safetensors"), content).unwrap();
        match load(&dir) {
            Err(Error::CorruptWeights { path, .. }) => {
                assert_eq!(path, dir.join("model.safetensors"), "{what}")
            }
            other => panic!("{what}: expected CorruptWeights, got {other:?}"),
        }
    }
}

#[test]
fn bad_tokenizer_is_reported() {
    for content in ["{ not json", "{\"model\": {\"type\": \"Nonsense\"}}"] {
        let (_tmp, dir) = copy_fixture("tiny-bert");
        std::fs::write(dir.join("tokenizer.json"), content).unwrap();
        match load(&dir) {
            Err(Error::TokenizerLoad { path, .. }) => assert_eq!(path, dir.join("tokenizer.json")),
            other => panic!("expected TokenizerLoad, got {other:?}"),
        }
    }
}

#[test]
fn tokenizer_larger_than_the_vocabulary_is_rejected() {
    let (_tmp, dir) = copy_fixture("tiny-bert");
    edit_config(&dir, |c| c["vocab_size"] = 100.into());
    edit_weights(&dir, |t| {
        let w = t["bert.embeddings.word_embeddings.weight"]
            .narrow(0, 0, 100)
            .unwrap();
        t.insert("bert.embeddings.word_embeddings.weight".into(), w);
    });
    let err = load(&dir).unwrap_err();
    assert!(
        matches!(err, Error::InvalidConfig { ref key, .. } if key == "vocab_size"),
        "{err:?}"
    );
}

#[test]
fn bad_queries_are_errors_not_panics() {
    let classifier = load(&fixture("tiny-bert")).unwrap();
    for (queries, index) in [
        (vec![Query::text("fine"), Query::text("")], 1),
        (vec![Query::text("   \n")], 0),
        (vec![Query::pair("", "text")], 0),
    ] {
        match classifier.classify(&queries) {
            Err(Error::InvalidInput { index: i, .. }) => assert_eq!(i, index),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }
    assert!(classifier.classify(&[]).unwrap().is_empty());
}

#[test]
fn long_inputs_are_truncated_keeping_the_target() {
    let classifier = load(&fixture("tiny-bert")).unwrap();
    let long_text = "NATO has refused practical cooperation . ".repeat(2000);
    let long_target = "the alliance ".repeat(100);
    let encoder = classifier.text_encoder();
    let pair = encoder.encode(Some("NATO"), &long_text).unwrap();
    assert_eq!(pair.len(), 64);
    let plain_target = encoder.encode(None, "NATO").unwrap();
    // [CLS] NATO [SEP] survives whole; the text is what gets cut.
    assert_eq!(pair.ids[..plain_target.len()], plain_target.ids[..]);
    // Cutting a huge input early (to bound tokenization cost) keeps the same encoding.
    assert_eq!(
        pair,
        encoder.encode(Some("NATO"), &long_text[..2000]).unwrap()
    );
    assert_eq!(
        encoder
            .encode(Some(&long_target), "short text")
            .unwrap()
            .len(),
        64
    );
    let predictions = classifier
        .classify(&[
            Query::pair("NATO", &long_text),
            Query::pair(&long_target, "short text"),
        ])
        .unwrap();
    assert_eq!(predictions.len(), 2);
}

#[test]
fn unknown_device_or_dtype_is_a_clear_error() {
    assert!(standpoint::parse_device("tpu:0").is_err());
    assert!(standpoint::parse_device("cuda:x").is_err());
    #[cfg(not(feature = "cuda"))]
    {
        let err = standpoint::parse_device("cuda:0").unwrap_err().to_string();
        assert!(err.contains("cuda"), "{err}");
    }
    assert!(standpoint::parse_dtype("f8").is_err());
    // int8 is a compute precision, not a storage dtype.
    assert!(standpoint::parse_dtype("int8").is_err());
    assert_eq!(Precision::parse("int8").unwrap(), Precision::Int8);
    let err = Precision::parse("int4").unwrap_err().to_string();
    assert!(err.contains("int8"), "{err}");
}

#[test]
fn impossible_options_are_rejected() {
    for max_length in [0, 1, 4] {
        let options = ClassifierOptions {
            max_length: Some(max_length),
            ..Default::default()
        };
        let err = standpoint::Classifier::load(fixture("tiny-bert").to_str().unwrap(), &options)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidOption {
                    option: "max_length",
                    ..
                }
            ),
            "{max_length}: {err:?}"
        );
    }
    // The smallest workable limit: [CLS] target [SEP] text [SEP].
    let options = ClassifierOptions {
        max_length: Some(5),
        ..Default::default()
    };
    let classifier =
        standpoint::Classifier::load(fixture("tiny-bert").to_str().unwrap(), &options).unwrap();
    let long = "NATO has refused practical cooperation with the alliance.";
    assert_eq!(
        classifier
            .text_encoder()
            .encode(Some("NATO"), long)
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        classifier
            .text_encoder()
            .encode(Some("the alliance"), long)
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        classifier.text_encoder().encode(None, long).unwrap().len(),
        5
    );
    let options = ClassifierOptions {
        batch_size: 0,
        ..Default::default()
    };
    let err =
        standpoint::Classifier::load(fixture("tiny-bert").to_str().unwrap(), &options).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                option: "batch_size",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn odd_texts_classify_without_panics() {
    let huge = "Moscow said cooperation with the alliance has completely ended. ".repeat(80_000); // ~5 MB
    let odd = [
        "\u{0}\u{1}control\u{7f}",
        "\u{200b}",
        "🙂🙂 emoji only 🙂",
        "مرحبا بالعالم",
        "e\u{301}\u{301}\u{301} combining",
        "Lavrov’s “quote” — dash…",
        &huge,
    ];
    for name in TINY_MODELS {
        let classifier = load(&fixture(name)).unwrap();
        let queries: Vec<Query> = odd
            .iter()
            .flat_map(|t| [Query::text(t), Query::pair("Ukraine’s “government”", t)])
            .collect();
        let predictions = classifier.classify(&queries).unwrap();
        for p in &predictions {
            let sum: f32 = p["classification"].probabilities.values().sum();
            assert!(
                (sum - 1.0).abs() < 1e-5,
                "{name}: probabilities sum to {sum}"
            );
        }
    }
}

#[test]
fn checkpoint_without_prefix_but_with_heads_loads() {
    // Encoder tensors stored without "bert.", head tensors under their own names.
    let (_tmp, dir) = copy_fixture("tiny-bert");
    edit_weights(&dir, |tensors| {
        let old = std::mem::take(tensors);
        for (k, v) in old {
            tensors.insert(k.strip_prefix("bert.").unwrap_or(&k).to_string(), v);
        }
    });
    let got = probabilities(&load(&dir).unwrap(), &sample_queries());
    let want = probabilities(&load(&fixture("tiny-bert")).unwrap(), &sample_queries());
    assert_eq!(got, want);
}

#[test]
fn a_config_asking_for_huge_sizes_is_refused_without_allocating_them() {
    let (_tmp, dir) = copy_fixture("tiny-bert");
    edit_config(&dir, |c| {
        c["intermediate_size"] = serde_json::json!(u64::MAX)
    });
    let e = refusal(&dir, "a 2^64 layer width is refused");
    assert!(
        e.contains("intermediate_size") && e.contains("largest size"),
        "{e}"
    );
    // Within the bounds but unlike the weights: a shape error, not 2 GB of stand-ins.
    edit_config(&dir, |c| {
        c["intermediate_size"] = serde_json::json!(37);
        c["vocab_size"] = serde_json::json!(4_000_000);
    });
    let e = refusal(&dir, "a vocabulary unlike the weights");
    assert!(e.contains("expected [4000000, 32]"), "{e}");
    edit_config(&dir, |c| {
        c["vocab_size"] = serde_json::json!(138);
        c["layer_norm_eps"] = serde_json::json!(-1.0);
    });
    let e = refusal(&dir, "a negative epsilon");
    assert!(e.contains("layer_norm_eps"), "{e}");
}

/// The error that loading `dir` must give.
fn refusal(dir: &std::path::Path, what: &str) -> String {
    match load(dir) {
        Ok(_) => panic!("loaded: {what}"),
        Err(e) => e.to_string(),
    }
}
