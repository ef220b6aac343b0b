//! `standpoint export`: dtype conversion, temperatures, and their errors; `eval --per-target`.

mod common;

use std::process::Command;

use candle_core::DType;
use common::*;
use standpoint::export::{export_model, set_temperatures};
use standpoint::{Error, Query};

fn probabilities(classifier: &standpoint::Classifier) -> Vec<Vec<f32>> {
    classifier
        .classify(&[
            Query::pair("NATO", "NATO has refused practical cooperation."),
            Query::text("There is an objective need for political dialogue."),
        ])
        .unwrap()
        .iter()
        .map(|p| {
            p["classification"]
                .probabilities
                .values()
                .copied()
                .collect()
        })
        .collect()
}

/// `standpoint eval` of the tiny fixture model on `file`.
fn eval_tiny(file: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_standpoint"))
        .args(["eval", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--data")
        .arg(file)
        .args(extra)
        .output()
        .unwrap()
}

/// [`eval_tiny`] that must succeed; its stdout.
fn eval_tiny_ok(file: &std::path::Path, extra: &[&str]) -> String {
    let out = eval_tiny(file, extra);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A JSON file written by the CLI.
fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn f16_export_halves_the_weights_and_keeps_predictions() {
    for name in TINY_MODELS {
        let out = tempfile::tempdir().unwrap();
        export_model(&fixture(name), out.path(), DType::F16).unwrap();
        let size = |dir: &std::path::Path| {
            std::fs::metadata(dir.join("model.safetensors"))
                .unwrap()
                .len()
        };
        let (before, after) = (size(&fixture(name)), size(out.path()));
        assert!(after * 10 < before * 6, "{name}: {before} -> {after} bytes");
        let exported = load(out.path()).unwrap();
        assert_eq!(exported.info().stored_dtype.as_deref(), Some("f16"));
        let (want, got) = (
            probabilities(&load(&fixture(name)).unwrap()),
            probabilities(&exported),
        );
        for (w, g) in want.iter().flatten().zip(got.iter().flatten()) {
            assert!((w - g).abs() < 2e-3, "{name}: {w} vs {g}");
        }
    }
}

#[test]
fn export_checks_every_tensor_and_refuses_its_own_folder() {
    let (_tmp, dir) = copy_fixture("tiny-bert");
    edit_weights(&dir, |t| {
        t.remove("bert.encoder.layer.0.attention.self.query.weight");
    });
    let out = tempfile::tempdir().unwrap();
    let err = export_model(&dir, &out.path().join("m"), DType::F16).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensors { names, .. } if names.iter().any(|n| n.contains("layer.0.attention.self.query.weight"))),
        "{err}"
    );
    assert!(!out.path().join("m/model.safetensors").exists());
    let err = export_model(&fixture("tiny-bert"), &fixture("tiny-bert"), DType::F16).unwrap_err();
    assert!(err.to_string().contains("must differ"), "{err}");
    let err = export_model(&fixture("tiny-bert"), &out.path().join("n"), DType::U32).unwrap_err();
    assert!(err.to_string().contains("not a float dtype"), "{err}");
}

#[test]
fn temperature_divides_the_logits_and_keeps_the_labels() {
    let out = tempfile::tempdir().unwrap();
    export_model(&fixture("tiny-bert"), out.path(), DType::F32).unwrap();
    let plain = probabilities(&load(out.path()).unwrap());
    set_temperatures(out.path(), &[("classification".into(), 0.5)]).unwrap();
    let sharp = probabilities(&load(out.path()).unwrap());
    for (p, s) in plain.iter().zip(&sharp) {
        // softmax(z / 0.5) = p^2 / sum(p^2)
        let norm: f32 = p.iter().map(|x| x * x).sum();
        for (x, y) in p.iter().zip(s) {
            assert!((x * x / norm - y).abs() < 1e-5, "{p:?} -> {s:?}");
        }
        let top = |v: &[f32]| standpoint::eval::calibration::argmax(v);
        assert_eq!(top(p), top(s));
    }
    for bad in [0.0, -1.0, f64::NAN] {
        let err = set_temperatures(out.path(), &[("classification".into(), bad)]).unwrap_err();
        assert!(err.to_string().contains("positive and finite"), "{err}");
    }
    let err = set_temperatures(out.path(), &[("stance".into(), 2.0)]).unwrap_err();
    assert!(matches!(err, Error::UnknownHead { .. }), "{err}");
    // A hand-edited bad temperature is caught when loading, naming config.json.
    edit_config(out.path(), |c| {
        c["standpoint"]["heads"][0]["temperature"] = serde_json::json!(-2.0);
    });
    let err = load(out.path()).unwrap_err();
    assert!(
        err.to_string().contains("config.json") && err.to_string().contains("temperature"),
        "{err}"
    );
}

#[test]
fn cli_export_calibrates_on_dev_data() {
    let dev = tempfile::tempdir().unwrap();
    let file = dev.path().join("dev.jsonl");
    let rows: String = (0..40)
        .map(|i| {
            let label = ["against", "neutral", "favor"][i % 3];
            format!("{{\"text\": \"Statement number {i} about the alliance.\", \"target\": \"NATO\", \"classification\": \"{label}\"}}\n")
        })
        .collect();
    std::fs::write(&file, rows).unwrap();
    let out = tempfile::tempdir().unwrap();
    let model = out.path().join("model");
    let run = Command::new(env!("CARGO_BIN_EXE_standpoint"))
        .args(["export", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--output")
        .arg(&model)
        .arg("--calibrate")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("classification: temperature"), "{stderr}");
    let classifier = load(&model).unwrap();
    let t = classifier.heads()[0]
        .temperature
        .expect("temperature written");
    // On labels the model cannot predict, the best temperature flattens its probabilities.
    assert!(t > 1.0, "{t}");
    let eval = Command::new(env!("CARGO_BIN_EXE_standpoint"))
        .args(["eval", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&file)
        .args([
            "--metric",
            "classification.ece",
            "--metric",
            "classification.accuracy",
        ])
        .output()
        .unwrap();
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let stdout = String::from_utf8(eval.stdout).unwrap();
    assert!(stdout.contains("ECE"), "{stdout}");
    let last: Vec<&str> = stdout.lines().rev().take(2).collect();
    assert!(last[1].starts_with("classification.ece 0."), "{stdout}");
    assert!(
        last[0].starts_with("classification.accuracy 0."),
        "{stdout}"
    );
}

#[test]
fn cli_eval_per_target_averages_over_targets() {
    let dev = tempfile::tempdir().unwrap();
    let file = dev.path().join("dev.jsonl");
    let mut rows = String::new();
    for (target, n) in [("Biden", 5), ("Trump", 9)] {
        for i in 0..n {
            let label = ["against", "favor"][i % 2];
            rows += &format!(
                "{{\"text\": \"Tweet {i} on {target}.\", \"target\": \"{target}\", \"classification\": \"{label}\"}}\n"
            );
        }
    }
    std::fs::write(&file, rows).unwrap();
    let report = dev.path().join("report.json");
    let stdout = eval_tiny_ok(
        &file,
        &[
            "--per-target",
            "--metric",
            "classification.favor_against_f1",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert!(
        stdout.contains("== target \"Biden\" ==") && stdout.contains("== target \"Trump\" =="),
        "{stdout}"
    );
    assert!(
        stdout.contains("classification mean over 2 targets"),
        "{stdout}"
    );
    let json = read_json(&report);
    let per: Vec<f64> = json["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t["report"]["heads"][0]["favor_against_f1"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let mean = json["mean"][0]["favor_against_f1"].as_f64().unwrap();
    assert!((mean - (per[0] + per[1]) / 2.0).abs() < 1e-12);
    let printed: f64 = stdout
        .lines()
        .last()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!((printed - mean).abs() < 1e-6);
    let bad = eval_tiny(&file, &["--metric", "classification.bleu"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no such metric"));
}

#[test]
fn cli_eval_only_labels_never_predicts_the_others() {
    let dev = tempfile::tempdir().unwrap();
    let file = dev.path().join("dev.jsonl");
    let rows: String = (0..12)
        .map(|i| {
            let label = ["against", "favor"][i % 2];
            format!("{{\"text\": \"Remark {i} on the alliance.\", \"target\": \"NATO\", \"classification\": \"{label}\"}}\n")
        })
        .collect();
    std::fs::write(&file, rows).unwrap();
    let report = dev.path().join("report.json");
    eval_tiny_ok(
        &file,
        &[
            "--only-labels",
            "classification=against,favor",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    let json = read_json(&report);
    let confusion = &json["heads"][0]["confusion"];
    let labels: Vec<&str> = confusion["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let neutral = labels.iter().position(|&l| l == "neutral").unwrap();
    let counts = confusion["counts"].as_array().unwrap();
    let predicted_neutral: u64 = counts
        .iter()
        .map(|row| row[neutral].as_u64().unwrap())
        .sum();
    assert_eq!(predicted_neutral, 0, "{confusion}");
    let total: u64 = counts
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 12);
    let bad = eval_tiny(&file, &["--only-labels", "classification=against,maybe"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no label \"maybe\""));
}
