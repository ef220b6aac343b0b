//! Training end to end on the tiny BERT fixture: learning a decidable task, partial
//! multi-head labels, save/load identity, exact resume after a crash, and bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use standpoint::train::{HeadPlan, Silent, TrainConfig, train};
use standpoint::{Classifier, ClassifierOptions, Query};

const TARGETS: [&str; 4] = ["nato", "russia", "china", "the european union"];
const STANCE: [(&str, &[&str]); 3] = [
    (
        "against",
        &[
            "refused practical cooperation with",
            "accused",
            "warned",
            "failed",
        ],
    ),
    (
        "neutral",
        &[
            "said it had talks with",
            "spoke at a meeting with",
            "had a meeting with",
        ],
    ),
    (
        "favor",
        &[
            "will support",
            "agree with",
            "approv the new package of",
            "will keep the door open to",
        ],
    ),
];
const SENTIMENT: [(&str, &[&str]); 3] = [
    (
        "negative",
        &[
            "; no dialogue .",
            "; never again .",
            "; it has completely ended .",
        ],
    ),
    (
        "neutral",
        &[".", ", the minister said .", ", the president said ."],
    ),
    (
        "positive",
        &[
            "; a new objective .",
            "; more cooperation .",
            "; more talks .",
        ],
    ),
];

/// Rows whose stance follows from the verb and sentiment from the ending; with
/// `partial`, every other row labels only one head.
fn write_rows(path: &Path, n: usize, seed: u64, partial: bool) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = String::new();
    for i in 0..n {
        let target = *TARGETS.choose(&mut rng).unwrap();
        let subject = *["moscow", "the alliance", "the president", "leaders"]
            .choose(&mut rng)
            .unwrap();
        let (stance, verbs) = STANCE[rng.random_range(0..3)];
        let (sentiment, endings) = SENTIMENT[rng.random_range(0..3)];
        let text = format!(
            "{subject} {} {target}{}",
            verbs.choose(&mut rng).unwrap(),
            endings.choose(&mut rng).unwrap()
        );
        let mut row = serde_json::json!({"text": text, "target": target});
        if !partial || i % 2 == 0 {
            row["stance"] = stance.into();
        }
        if !partial || i % 2 == 1 || i % 3 == 0 {
            row["sentiment"] = sentiment.into();
        }
        out.push_str(&row.to_string());
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

fn config(dir: &Path, heads: &[&str], partial: bool) -> TrainConfig {
    let train_file = dir.join("train.jsonl");
    let dev_file = dir.join("dev.jsonl");
    write_rows(&train_file, 480, 1, partial);
    write_rows(&dev_file, 120, 2, false);
    let heads = heads.iter().map(|h| HeadPlan::parse(h).unwrap()).collect();
    TrainConfig {
        dev: vec![dev_file.to_str().unwrap().into()],
        epochs: 6,
        batch_size: 16,
        lr: 3e-3,
        warmup_ratio: 0.05,
        ..TrainConfig::new(
            fixture("tiny-bert").to_str().unwrap(),
            &dir.join("model"),
            vec![train_file.to_str().unwrap().into()],
            heads,
        )
    }
}

#[test]
fn learns_a_decidable_task_and_saves_a_loadable_model() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), &["stance:pair"], false);
    let summary = train(&config, false, &mut Silent).unwrap();
    let best = summary.best.unwrap();
    let last = summary.history.last().unwrap().dev.clone().unwrap();
    let accuracy = summary
        .history
        .iter()
        .filter_map(|r| r.dev.as_ref())
        .map(|d| d.head("stance").unwrap().accuracy)
        .fold(0.0, f64::max);
    assert!(
        accuracy >= 0.95,
        "dev accuracy {accuracy}; last report:\n{}",
        last.render()
    );
    assert!(summary.history.len() == 6 && best > 0.9);

    // The output folder is a complete model whose dev scores reproduce the training report.
    let out = &config.output;
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "training_config.json",
        "metrics.jsonl",
        "eval.json",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let classifier =
        Classifier::load(out.to_str().unwrap(), &ClassifierOptions::default()).unwrap();
    // The fixture's own head is kept beside the new one.
    assert_eq!(
        classifier
            .heads()
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>(),
        ["classification", "stance"]
    );
    let report =
        standpoint::eval::evaluate_files(&classifier, &config.dev, &Default::default()).unwrap();
    let mut saved: standpoint::eval::metrics::EvalReport =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    // Probability-based scores differ by float rounding (other batch padding); counts may not.
    let mut report = report;
    for (got, want) in report.heads.iter_mut().zip(saved.heads.iter_mut()) {
        for (g, w) in [
            (&mut got.ece, &mut want.ece),
            (&mut got.log_loss, &mut want.log_loss),
        ] {
            let (a, b) = (g.take().unwrap(), w.take().unwrap());
            assert!((a - b).abs() < 1e-4, "{} {a} vs {b}", got.head);
        }
    }
    assert_eq!(
        report, saved,
        "reloaded model scores differently than the model that was saved"
    );
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 6);
    let prediction = &classifier
        .classify(&[Query::pair(
            "nato",
            "leaders refused practical cooperation with nato .",
        )])
        .unwrap()[0];
    assert_eq!(prediction["stance"].label, "against");
}

#[test]
fn two_heads_with_partial_labels_both_learn() {
    let tmp = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        epochs: 8,
        ..config(tmp.path(), &["stance:pair", "sentiment:text"], true)
    };
    let summary = train(&config, false, &mut Silent).unwrap();
    let best = summary
        .history
        .iter()
        .rfind(|r| r.best)
        .and_then(|r| r.dev.clone())
        .unwrap();
    for head in ["stance", "sentiment"] {
        let accuracy = best.head(head).unwrap().accuracy;
        assert!(
            accuracy >= 0.9,
            "{head}: dev accuracy {accuracy}\n{}",
            best.render()
        );
    }
    let classifier = Classifier::load(
        config.output.to_str().unwrap(),
        &ClassifierOptions::default(),
    )
    .unwrap();
    let specs = classifier.heads();
    assert_eq!(specs[1].input, standpoint::HeadInput::Pair);
    assert_eq!(specs[2].input, standpoint::HeadInput::Text);
    assert_eq!(specs[2].labels, ["negative", "neutral", "positive"]);
}

fn standpoint_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_standpoint"))
}

fn train_args(dir: &Path, out: &Path) -> Vec<String> {
    let base = fixture("tiny-bert");
    [
        "train",
        "--base",
        base.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--train",
        dir.join("train.jsonl").to_str().unwrap(),
        "--dev",
        dir.join("dev.jsonl").to_str().unwrap(),
        "--head",
        "stance:pair",
        "--head",
        "sentiment:text",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--lr",
        "2e-3",
        "--save-every",
        "3",
        "--seed",
        "7",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let mut tensors: Vec<_> = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

#[test]
fn resume_after_a_crash_ends_with_identical_weights() {
    let tmp = tempfile::tempdir().unwrap();
    write_rows(&tmp.path().join("train.jsonl"), 200, 3, true);
    write_rows(&tmp.path().join("dev.jsonl"), 40, 4, false);
    let whole: PathBuf = tmp.path().join("whole");
    let crashed: PathBuf = tmp.path().join("crashed");

    let status = standpoint_cmd()
        .args(train_args(tmp.path(), &whole))
        .status()
        .unwrap();
    assert!(status.success());

    // Crash (abort, as kill -9: no cleanup) after step 20 of 45 (15 per epoch), mid-epoch 2;
    // the last saved state is step 18 (saved every 3).
    let status = standpoint_cmd()
        .args(train_args(tmp.path(), &crashed))
        .env(standpoint::train::ABORT_AFTER_STEP_ENV, "20")
        .status()
        .unwrap();
    assert!(!status.success(), "the failpoint did not fire");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(crashed.join("last/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["step"], 18);
    assert_eq!(state["epoch"], 1);
    assert_eq!(state["batch"], 3, "the saved state must fall mid-epoch");

    // A copy of the folder resumes in place, leaving the original untouched.
    let copy = tmp.path().join("copy");
    copy_dir(&crashed, &copy);
    resume_run(&copy);
    assert_eq!(
        weights(&whole.join("model.safetensors")),
        weights(&copy.join("model.safetensors"))
    );
    let state_after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(crashed.join("last/state.json")).unwrap())
            .unwrap();
    assert_eq!(
        state_after, state,
        "resuming the copy wrote to the original"
    );

    // Settings beside --resume are refused, not silently ignored.
    let out = standpoint_cmd()
        .args([
            "train",
            "--resume",
            crashed.to_str().unwrap(),
            "--epochs",
            "5",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = resume_run(&crashed);
    assert!(stderr.contains("resuming at epoch 2, step 18"));

    assert_eq!(
        weights(&whole.join("model.safetensors")),
        weights(&crashed.join("model.safetensors"))
    );
    assert_eq!(
        weights(&whole.join("last/weights-45.safetensors")),
        weights(&crashed.join("last/weights-45.safetensors"))
    );
    let history = |dir: &Path| std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let strip = |s: String| -> Vec<serde_json::Value> {
        s.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("examples_per_second");
                v
            })
            .collect()
    };
    assert_eq!(strip(history(&whole)), strip(history(&crashed)));
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let tmp = tempfile::tempdir().unwrap();
    write_rows(&tmp.path().join("train.jsonl"), 64, 5, false);
    write_rows(&tmp.path().join("dev.jsonl"), 16, 6, false);
    let run = |name: &str, seed: u64| {
        let mut c = config(tmp.path(), &["stance:pair"], false);
        c.train = vec![tmp.path().join("train.jsonl").to_str().unwrap().into()];
        c.epochs = 1;
        c.seed = seed;
        c.output = tmp.path().join(name);
        train(&c, false, &mut Silent).unwrap();
        weights(&c.output.join("model.safetensors"))
    };
    let a = run("a", 1);
    assert_eq!(a, run("b", 1));
    assert_ne!(a, run("c", 2));
}

#[test]
fn bad_training_input_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = tmp.path().join("dev.jsonl");
    write_rows(&dev, 10, 2, false);
    let cases: [(&[u8], &[&str], &str); 5] = [
        (b"{\"text\":\"a\",\"target\":\"nato\",\"stance\":\"against\"}\n{\"text\":\"b\",\"target\":\"nato\",\"stance\":\"favor\"}\n{\"text\":\"\",\"stance\":\"favor\"}\n", &["stance:pair"], "train.jsonl:3: empty text"),
        (b"{\"text\":\"a\",\"target\":\"nato\",\"stance\":\"against\"}\n{\"txt\":\"b\",\"stance\":\"favor\"}\n", &["stance:pair"], "train.jsonl:2:"),
        (b"{\"text\":\"a\",\"target\":\"nato\",\"stance\":\"against\"}\n{\"text\":\"b\",\"target\":\"nato\",\"labels\":{\"emotion\":\"joy\"}}\n", &["stance:pair"], "train.jsonl:2: label for head \"emotion\""),
        (b"{\"text\":\"a\",\"target\":\"nato\",\"stance\":\"against\"}\n{\"text\":\"b \xff\",\"target\":\"nato\",\"stance\":\"favor\"}\n", &["stance:pair"], "train.jsonl:2: invalid UTF-8"),
        (b"{\"text\":\"a\",\"target\":\"nato\",\"stance\":\"against\"}\n{\"text\":\"b\",\"stance\":\"favor\"}\n", &["stance:pair"], "train.jsonl:2: head \"stance\" reads (target, text) pairs"),
    ];
    for (content, heads, expected) in cases {
        std::fs::write(tmp.path().join("train.jsonl"), content).unwrap();
        let mut c = config(tmp.path(), heads, false);
        std::fs::write(tmp.path().join("train.jsonl"), content).unwrap();
        c.dev.clear();
        let err = train(&c, false, &mut Silent).unwrap_err().to_string();
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    }
    // An unknown label in the dev data, against the labels learnt from training.
    let mut c = config(tmp.path(), &["stance:pair"], false);
    std::fs::write(
        &dev,
        "{\"text\":\"a\",\"target\":\"nato\",\"stance\":\"pro\"}\n",
    )
    .unwrap();
    c.dev = vec![dev.to_str().unwrap().into()];
    let err = train(&c, false, &mut Silent).unwrap_err().to_string();
    assert!(
        err.contains("dev.jsonl:1: unknown label \"pro\" for head \"stance\""),
        "{err}"
    );
}

#[test]
fn non_finite_loss_stops_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path(), &["stance:pair"], false);
    c.lr = 1e38;
    c.max_grad_norm = 0.0;
    c.warmup_ratio = 0.0;
    c.save_every = 1;
    let err = train(&c, false, &mut Silent).unwrap_err();
    assert!(
        matches!(err, standpoint::Error::NonFiniteLoss { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("last good checkpoint"), "{err}");
    let partial: Vec<_> = walk(&c.output)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(partial.is_empty(), "half-written files left: {partial:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn early_stopping_and_kept_heads() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path(), &["stance:pair"], false);
    // A learning rate too small to change predictions: the dev metric never improves.
    c.lr = 1e-12;
    c.epochs = 10;
    c.patience = Some(1);
    let summary = train(&c, false, &mut Silent).unwrap();
    assert_eq!(
        summary.history.len(),
        3,
        "epoch 1 best, 2 and 3 without improvement: stop"
    );
    // The starting model's head is kept, unchanged, and still answers.
    let before = weights(&fixture("tiny-bert").join("model.safetensors"));
    let after = weights(&c.output.join("model.safetensors"));
    for name in ["classifier.weight", "classifier.bias"] {
        let find = |w: &[(String, Vec<f32>)]| w.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(find(&before), find(&after), "{name} changed");
    }
    let classifier =
        Classifier::load(c.output.to_str().unwrap(), &ClassifierOptions::default()).unwrap();
    let p = classifier
        .classify(&[Query::pair("nato", "leaders warned nato .")])
        .unwrap();
    assert_eq!(
        p[0].keys().collect::<Vec<_>>(),
        ["classification", "stance"]
    );
}

#[test]
fn fine_tunes_a_head_the_starting_model_already_has() {
    let tmp = tempfile::tempdir().unwrap();
    let first = TrainConfig {
        epochs: 1,
        ..config(tmp.path(), &["stance:pair"], false)
    };
    train(&first, false, &mut Silent).unwrap();
    let from = first.output.to_str().unwrap();
    let plans = |heads: &[&str]| heads.iter().map(|h| HeadPlan::parse(h).unwrap()).collect();
    // `stance` exists in the starting model and keeps its labels; `sentiment` is new.
    for (name, heads) in [
        ("again", &["stance:pair"][..]),
        ("both", &["stance:pair", "sentiment:text"][..]),
    ] {
        let tuned = TrainConfig {
            epochs: 1,
            dev: first.dev.clone(),
            ..TrainConfig::new(
                from,
                &tmp.path().join(name),
                first.train.clone(),
                plans(heads),
            )
        };
        train(&tuned, false, &mut Silent).unwrap_or_else(|e| panic!("{name}: {e}"));
        let classifier = Classifier::load(
            tuned.output.to_str().unwrap(),
            &ClassifierOptions::default(),
        )
        .unwrap();
        let stance = classifier
            .heads()
            .iter()
            .find(|h| h.name == "stance")
            .unwrap();
        assert_eq!(stance.labels, ["against", "favor", "neutral"]);
        assert_eq!(
            classifier.heads().iter().any(|h| h.name == "sentiment"),
            heads.len() == 2
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `train --resume DIR`, which must succeed; its stderr.
fn resume_run(dir: &Path) -> String {
    let out = standpoint_cmd()
        .args(["train", "--resume", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn training_with_marked_mentions_saves_the_markers_and_scores_alike_after_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        epochs: 2,
        mark_mentions: true,
        ..config(tmp.path(), &["stance:pair"], false)
    };
    train(&config, false, &mut Silent).unwrap();
    let saved = standpoint::ModelConfig::from_file(&config.output.join("config.json")).unwrap();
    assert_eq!(
        saved.mention_markers,
        Some(standpoint::MentionMarkers::default())
    );
    let classifier = Classifier::load(
        config.output.to_str().unwrap(),
        &ClassifierOptions::default(),
    )
    .unwrap();
    assert!(classifier.text_encoder().mention_markers().is_some());
    // Dev scores at training time (marked encodings) are the reloaded model's.
    let report =
        standpoint::eval::evaluate_files(&classifier, &config.dev, &Default::default()).unwrap();
    let saved: standpoint::eval::metrics::EvalReport =
        serde_json::from_str(&std::fs::read_to_string(config.output.join("eval.json")).unwrap())
            .unwrap();
    for (got, want) in report.heads.iter().zip(&saved.heads) {
        assert_eq!(got.confusion, want.confusion, "{}", got.head);
    }
}
