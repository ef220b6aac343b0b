//! Several named heads over one encoder pass: pair heads, text heads, config round trip.

mod common;

use common::*;
use standpoint::{HeadInput, HeadPooling, HeadSpec, MentionMarkers, ModelConfig, Query};

#[test]
fn pair_and_text_heads_read_their_own_inputs() {
    let (_tmp, dir) = two_head_model();
    let both = load(&dir).unwrap();
    let single = load(&fixture("tiny-bert")).unwrap();
    let text = "Moscow said cooperation with the alliance has completely ended.";

    let got = both
        .classify(&[Query::pair("NATO", text), Query::text(text)])
        .unwrap();
    let want_pair = &single.classify(&[Query::pair("NATO", text)]).unwrap()[0]["classification"];
    let want_text = &single.classify(&[Query::text(text)]).unwrap()[0]["classification"];

    assert_eq!(got[0].keys().collect::<Vec<_>>(), ["stance", "sentiment"]);
    let stance = &got[0]["stance"];
    let sentiment = &got[0]["sentiment"];
    assert!(
        max_abs_diff(
            stance.probabilities.values(),
            want_pair.probabilities.values()
        ) < 1e-6
    );
    assert!(
        max_abs_diff(
            sentiment.probabilities.values(),
            want_text.probabilities.values()
        ) < 1e-6
    );
    assert_eq!(
        sentiment.probabilities.keys().collect::<Vec<_>>(),
        ["negative", "neutral", "positive"]
    );
    // The pair and the lone text really are different inputs.
    assert!(
        max_abs_diff(
            stance.probabilities.values(),
            sentiment.probabilities.values()
        ) > 1e-4
    );

    // Without a target the stance head does not apply.
    assert_eq!(got[1].keys().collect::<Vec<_>>(), ["sentiment"]);
    let matrices = both
        .classify_matrices(&[Query::pair("NATO", text), Query::text(text)])
        .unwrap();
    assert_eq!(matrices[0].head, "stance");
    assert_eq!(matrices[0].applied, [true, false]);
    assert!(matrices[0].probabilities.row(1).iter().all(|p| p.is_nan()));
    assert_eq!(matrices[1].applied, [true, true]);
    assert_eq!(matrices[1].probabilities.shape(), [2, 3]);
    let info = both.info();
    assert_eq!(info.name.as_deref(), Some("two-heads"));
    assert!(info.unused_tensors.is_empty());
}

#[test]
fn config_round_trips_through_json() {
    let (_tmp, dir) = two_head_model();
    let path = dir.join("config.json");
    let config = ModelConfig::from_file(&path).unwrap();
    let again = ModelConfig::from_value(config.to_value(), &path).unwrap();
    assert_eq!(again.heads, config.heads);
    assert_eq!(again.encoder, config.encoder);
    assert_eq!(again.name.as_deref(), Some("two-heads"));
    // Hugging Face keys survive untouched.
    assert_eq!(again.raw["architectures"], config.raw["architectures"]);
}

#[test]
fn mean_pooling_head_reads_the_masked_mean() {
    let (_tmp, dir) = copy_fixture("tiny-bert");
    let (weight, bias) = {
        let t = candle_core::safetensors::load(
            dir.join("model.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let w: Vec<Vec<f32>> = t["classifier.weight"].to_vec2().unwrap();
        let b: Vec<f32> = t["classifier.bias"].to_vec1().unwrap();
        (w, b)
    };
    edit_config(&dir, |c| {
        let head = HeadSpec {
            tensor_prefix: String::new(),
            ..HeadSpec::new(
                "stance",
                vec!["a".into(), "b".into(), "c".into()],
                HeadInput::Auto,
                HeadPooling::Mean,
            )
        };
        c["standpoint"] = serde_json::json!({"heads": [head]});
    });
    let classifier = load(&dir).unwrap();
    let texts = ["NATO has refused practical cooperation.", "Dialogue."];
    let pooled = classifier.embed(&texts, false).unwrap();
    let got = classifier
        .classify(&[Query::text(texts[0]), Query::text(texts[1])])
        .unwrap();
    for (i, prediction) in got.iter().enumerate() {
        let logits: Vec<f32> = weight
            .iter()
            .zip(&bias)
            .map(|(w, b)| w.iter().zip(pooled.row(i)).map(|(w, x)| w * x).sum::<f32>() + b)
            .collect();
        let diff = max_abs_diff(
            prediction["stance"].probabilities.values(),
            &softmax(&logits),
        );
        assert!(diff < 1e-5, "mean-pooled head differs by {diff}");
    }
}

#[test]
fn invalid_head_descriptions_are_rejected() {
    for heads in [
        serde_json::json!([{"name": "x", "labels": ["only"], "input": "text", "pooling": "mean"}]),
        serde_json::json!([{"name": "x", "labels": ["a", "a"], "input": "text", "pooling": "mean"}]),
        serde_json::json!([{"name": "x", "labels": ["a", "b"], "input": "sideways", "pooling": "mean"}]),
        serde_json::json!([
            {"name": "x", "labels": ["a", "b"], "input": "text", "pooling": "mean"},
            {"name": "x", "labels": ["a", "b"], "input": "text", "pooling": "mean"}
        ]),
    ] {
        let (_tmp, dir) = copy_fixture("tiny-bert");
        edit_config(&dir, |c| {
            c["standpoint"] = serde_json::json!({"heads": heads})
        });
        let err = load(&dir).unwrap_err();
        assert!(
            matches!(err, standpoint::Error::InvalidConfig { .. }),
            "{heads}: {err:?}"
        );
    }
}

#[test]
fn classifier_is_shared_across_threads() {
    let classifier = load(&fixture("tiny-roberta")).unwrap();
    let text = "Moscow said cooperation with the alliance has completely ended.";
    let want = classifier.classify(&[Query::pair("NATO", text)]).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| classifier.classify(&[Query::pair("NATO", text)]).unwrap()))
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), want);
        }
    });
}

#[test]
fn classify_each_encodes_every_query_once_as_given() {
    let (_tmp, dir) = two_head_model();
    let model = load(&dir).unwrap();
    let text = "Moscow said cooperation with the alliance has completely ended.";
    let each = model
        .classify_each(&[Query::pair("NATO", text), Query::text(text)])
        .unwrap();
    let all = model.classify(&[Query::pair("NATO", text)]).unwrap();
    assert_eq!(each[0].keys().collect::<Vec<_>>(), ["stance"]);
    assert_eq!(each[1].keys().collect::<Vec<_>>(), ["sentiment"]);
    assert_eq!(each[0]["stance"], all[0]["stance"]);
    assert_eq!(each[1]["sentiment"], all[0]["sentiment"]);
}

#[test]
fn mention_markers_round_trip_and_old_configs_have_none() {
    let (_tmp, dir) = two_head_model();
    let path = dir.join("config.json");
    let mut config = ModelConfig::from_file(&path).unwrap();
    assert_eq!(config.mention_markers, None);
    assert!(
        config.to_value()["standpoint"]
            .get("mention_markers")
            .is_none()
    );
    config.mention_markers = Some(MentionMarkers::default());
    let again = ModelConfig::from_value(config.to_value(), &path).unwrap();
    assert_eq!(again.mention_markers, Some(MentionMarkers::default()));
}

#[test]
fn a_marking_model_reads_pairs_with_the_mention_marked() {
    let (_tmp, plain_dir) = two_head_model();
    let (_tmp2, marking_dir) = two_head_model();
    edit_config(&marking_dir, |c| {
        c["standpoint"]["mention_markers"] = serde_json::json!({"open": "«", "close": "»"});
    });
    let plain = load(&plain_dir).unwrap();
    let marking = load(&marking_dir).unwrap();
    let text = "Moscow said cooperation with NATO has completely ended.";
    let marked = "Moscow said cooperation with «NATO» has completely ended.";
    let got = marking.classify(&[Query::pair("NATO", text)]).unwrap();
    let want = plain.classify(&[Query::pair("NATO", marked)]).unwrap();
    let unmarked = plain.classify(&[Query::pair("NATO", text)]).unwrap();
    assert_eq!(got[0]["stance"], want[0]["stance"]);
    assert_ne!(got[0]["stance"], unmarked[0]["stance"]);
    // An alias found by the labeller is the focus that gets marked.
    let alias = Query::pair("Russia", text).with_focus(0, 6);
    let got = marking.classify(&[alias]).unwrap();
    let want = plain
        .classify(&[Query::pair(
            "Russia",
            "«Moscow» said cooperation with NATO has completely ended.",
        )])
        .unwrap();
    assert_eq!(got[0]["stance"], want[0]["stance"]);
    // Text heads read the text unmarked.
    assert_eq!(got[0]["sentiment"], unmarked[0]["sentiment"]);
}
