//! The shipped default model (`models/default/`): it loads without a path, reads the
//! hand-written clear-cut sentences right, and is what the CLI uses without `--model`.

use std::process::Command;

use standpoint::eval::{EvalFields, evaluate_files};
use standpoint::{Classifier, ClassifierOptions, Query, default_model_dir};

const CLEAR_CUT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/clear-cut.jsonl"
);

fn classifier() -> Classifier {
    Classifier::load_default(&ClassifierOptions::default()).expect("models/default loads")
}

#[test]
fn default_model_is_small_f16_with_the_documented_heads() {
    let dir = default_model_dir();
    let size = std::fs::metadata(dir.join("model.safetensors"))
        .unwrap()
        .len();
    assert!(size < 50 * 1024 * 1024, "model.safetensors is {size} bytes");
    assert!(dir.join("MODEL_CARD.md").is_file());
    let classifier = classifier();
    let info = classifier.info();
    assert_eq!(info.stored_dtype.as_deref(), Some("f16"));
    let heads: Vec<(&str, Vec<&str>)> = classifier
        .heads()
        .iter()
        .map(|h| {
            (
                h.name.as_str(),
                h.labels.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        heads,
        [
            ("stance", vec!["against", "favor", "neutral"]),
            ("sentiment", vec!["negative", "neutral", "positive"]),
            ("relation", vec!["cooperative", "hostile", "neutral"]),
        ]
    );
}

#[test]
fn clear_cut_sentences_are_read_right() {
    let classifier = classifier();
    let report = evaluate_files(
        &classifier,
        &[CLEAR_CUT.to_string()],
        &EvalFields::default(),
    )
    .expect("fixture evaluates");
    for head in ["stance", "sentiment"] {
        let scores = report.head(head).unwrap();
        assert_eq!(scores.examples, 45, "{head}");
        assert!(
            scores.accuracy >= 0.9,
            "{head}: {:.3} of the clear-cut sentences right\n{}",
            scores.accuracy,
            scores.render()
        );
    }
}

#[test]
fn the_stance_depends_on_the_actor() {
    // One sentence, two actors: praise for one, blame on the other.
    let classifier = classifier();
    let text = "Ukraine's defenders are heroes, while Russia's invasion is a monstrous crime.";
    let out = classifier
        .classify(&[Query::pair("Ukraine", text), Query::pair("Russia", text)])
        .unwrap();
    assert_eq!(out[0]["stance"].label, "favor", "{:?}", out[0]["stance"]);
    assert_eq!(out[1]["stance"].label, "against", "{:?}", out[1]["stance"]);
}

#[test]
fn cli_labels_the_examples_offline_without_model_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_standpoint"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "label",
            "data/examples/",
            "--actors-file",
            "data/actors.json",
            "--offline",
        ])
        .env_remove("STANDPOINT_MODEL")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows.len() >= 5, "{} rows", rows.len());
    for row in &rows {
        assert_eq!(row["model"], "standpoint-default@0.2.2", "{row}");
        assert!(row["sentiment"]["label"].is_string(), "{row}");
        assert!(row["relation"]["label"].is_string(), "{row}");
        // Stance exists exactly where an actor is mentioned.
        assert_eq!(
            row["actor"].is_string(),
            row["stance"]["label"].is_string(),
            "{row}"
        );
    }
    // "NATO has refused practical cooperation with us on every track," read toward NATO.
    let refused = rows
        .iter()
        .find(|r| {
            r["actor"] == "NATO"
                && r["sentence"]
                    .as_str()
                    .unwrap()
                    .contains("has refused practical cooperation")
        })
        .expect("the NATO refusal sentence is labelled");
    assert_eq!(refused["stance"]["label"], "against", "{refused}");
}

#[test]
fn a_missing_default_model_names_the_folder_and_the_override() {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_standpoint"))
        .args(["classify", "NATO refused."])
        .env("STANDPOINT_MODEL", empty.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("config.json"), "{stderr}");
    assert!(stderr.contains("STANDPOINT_MODEL"), "{stderr}");
}

#[test]
fn int8_mode_keeps_the_labels_of_f32() {
    // Int8 weights and activations move probabilities slightly; labels of the clear-cut set
    // stay (all heads), and probabilities stay close.
    let int8 = Classifier::load_default(&ClassifierOptions {
        precision: standpoint::Precision::Int8,
        ..ClassifierOptions::default()
    })
    .expect("int8 mode loads");
    assert!(int8.info().compute_dtype.starts_with("int8"));
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(CLEAR_CUT)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let queries: Vec<Query> = rows
        .iter()
        .map(|r| Query {
            text: r["text"].as_str().unwrap(),
            target: r["target"].as_str(),
            focus: None,
            holder: None,
        })
        .collect();
    let want = classifier().classify(&queries).unwrap();
    let got = int8.classify(&queries).unwrap();
    let (mut same, mut total, mut worst) = (0, 0, 0f32);
    for (w, g) in want.iter().zip(&got) {
        for (head, prediction) in w {
            total += 1;
            same += usize::from(prediction.label == g[head].label);
            for (p, q) in prediction
                .probabilities
                .values()
                .zip(g[head].probabilities.values())
            {
                worst = worst.max((p - q).abs());
            }
        }
    }
    assert!(
        same as f64 >= 0.97 * total as f64,
        "{same}/{total} labels agree"
    );
    assert!(worst < 0.1, "a probability moved by {worst}");
}

const DIPLOMATIC_TEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/diplomatic-test.jsonl"
);

#[test]
fn held_out_diplomatic_sentences_are_read_by_the_guide() {
    // Written for this test only (in no training or dev file): wire-style sentences with
    // reported speech, hedges, refusals and offers, aliases, several actors.
    let report = evaluate_files(
        &classifier(),
        &[DIPLOMATIC_TEST.to_string()],
        &EvalFields::default(),
    )
    .expect("fixture evaluates");
    let stance = report.head("stance").unwrap();
    assert!(stance.examples >= 60, "{} sentences", stance.examples);
    assert!(
        stance.accuracy >= 0.9,
        "{:.3} of the held-out diplomatic sentences right\n{}",
        stance.accuracy,
        stance.render()
    );
}

#[test]
fn the_example_articles_hard_sentences_come_out_as_the_guide_says() {
    // data/STANCE_GUIDE.md: ending cooperation with X is `against` X; the holder does not
    // decide the label (Kyiv's accusation is against Russia, not Ukraine); the Kremlin
    // accusing Brussels is against the EU.
    let classifier = classifier();
    let headline = "Moscow ends practical cooperation with NATO, keeps door open to dialogue";
    let kyiv = "Kyiv rejected the demand as blackmail and said Russia had repeatedly attacked port infrastructure in Odesa.";
    let kremlin = "The Kremlin dismissed the talks as \"theatre\" and accused Brussels of waging economic war on ordinary Russians.";
    // (text, actor, the alias `label` finds for it, expected): the model marks that mention,
    // as `standpoint label` does.
    let cases = [
        (headline, "NATO", "NATO", "against"),
        (kyiv, "Ukraine", "Kyiv", "neutral"),
        (kyiv, "Russia", "Russia", "against"),
        (kremlin, "European Union", "Brussels", "against"),
    ];
    let queries: Vec<Query> = cases
        .iter()
        .map(|(text, actor, mention, _)| {
            let start = text.find(mention).unwrap();
            Query::pair(actor, text).with_focus(start, start + mention.len())
        })
        .collect();
    let out = classifier.classify(&queries).unwrap();
    for ((text, actor, _, want), got) in cases.iter().zip(&out) {
        assert_eq!(
            got["stance"].label, *want,
            "{actor} in {text:?}: {:?}",
            got["stance"]
        );
    }
}
