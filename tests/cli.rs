//! The `standpoint` binary: classify and info, JSON lines out, errors with file and line.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

fn standpoint(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_standpoint"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        pipe.write_all(bytes).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn model() -> String {
    fixture("tiny-bert").to_str().unwrap().to_string()
}

#[test]
fn classify_texts_prints_one_line_each_with_every_head() {
    let texts = [
        "NATO has refused practical cooperation.",
        "There is an objective need for political dialogue.",
    ];
    let out = standpoint(
        &[
            "classify",
            "--model",
            &model(),
            "--target",
            "NATO",
            texts[0],
            texts[1],
        ],
        None,
    );
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 2);
    // Probabilities are written in the head's label order.
    let line = String::from_utf8(out.stdout.clone()).unwrap();
    let at = |label: &str| line.find(&format!("\"{label}\":0.")).unwrap();
    assert!(
        at("against") < at("neutral") && at("neutral") < at("favor"),
        "{line}"
    );
    let lib = load(&fixture("tiny-bert")).unwrap();
    for (row, text) in rows.iter().zip(texts) {
        assert_eq!(row["text"], text);
        assert_eq!(row["target"], "NATO");
        let head = &row["predictions"]["classification"];
        let want = &lib
            .classify(&[standpoint::Query::pair("NATO", text)])
            .unwrap()[0]["classification"];
        assert_eq!(head["label"], want.label.as_str());
        let probs = head["probabilities"].as_object().unwrap();
        assert_eq!(probs.len(), 3);
        for (label, p) in &want.probabilities {
            assert!(
                (probs[label].as_f64().unwrap() as f32 - p).abs() < 1e-6,
                "{label}"
            );
        }
        assert_eq!(head["score"].as_f64().unwrap() as f32, want.score);
    }
}

#[test]
fn classify_jsonl_keeps_order_ids_and_targets() {
    // Lengths vary so that internal length sorting would show if order were lost.
    let texts = [
        "Dialogue.",
        "Moscow said cooperation with the alliance has completely ended, and that the alliance has refused practical cooperation.",
        "NATO has refused practical cooperation.",
        "There is an objective need for political dialogue.",
    ];
    let mut input = String::new();
    for (i, text) in texts.iter().enumerate() {
        let target = if i % 2 == 0 {
            ",\"target\":\"NATO\""
        } else {
            ""
        };
        input.push_str(&format!(
            "{{\"id\":\"doc-{i}\",\"text\":{}{target},\"extra\":1}}\n\n",
            serde_json::json!(text)
        ));
    }
    let from_stdin = json_lines(&standpoint(
        &["classify", "--model", &model(), "--input", "-"],
        Some(input.as_bytes()),
    ));
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("rows.jsonl");
    std::fs::write(&file, &input).unwrap();
    let from_file = json_lines(&standpoint(
        &[
            "classify",
            "--model",
            &model(),
            "--input",
            file.to_str().unwrap(),
        ],
        None,
    ));
    assert_eq!(from_stdin, from_file);
    assert_eq!(from_file.len(), texts.len());
    for (i, row) in from_file.iter().enumerate() {
        assert_eq!(row["id"], format!("doc-{i}"));
        assert_eq!(row["text"], texts[i]);
        assert_eq!(row.get("target").is_some(), i % 2 == 0);
    }
}

#[test]
fn output_file_is_written_whole_or_not_at_all() {
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("out.jsonl");
    let input = tmp.path().join("rows.jsonl");

    std::fs::write(
        &input,
        "{\"text\":\"Dialogue.\"}\n{\"text\":\"NATO refused.\"}\n",
    )
    .unwrap();
    let args = [
        "classify",
        "--model",
        &model(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out_path.to_str().unwrap(),
    ];
    let out = standpoint(&args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    assert_eq!(
        std::fs::read_to_string(&out_path).unwrap().lines().count(),
        2
    );

    // A bad record after good ones: failure, and the earlier complete file is untouched.
    std::fs::write(&input, "{\"text\":\"Dialogue.\"}\n{\"text\": oops}\n").unwrap();
    let out = standpoint(&args, None);
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read_to_string(&out_path).unwrap().lines().count(),
        2
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
}

#[test]
fn bad_records_name_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("rows.jsonl");
    let cases: [(&[u8], &str); 5] = [
        (
            b"{\"text\":\"ok\"}\n{\"text\": oops}\n",
            ":2: invalid record",
        ),
        (
            b"{\"text\":\"ok\"}\n\n{\"txt\":\"typo\"}\n",
            ":3: invalid record: missing field `text`",
        ),
        (
            b"{\"text\":\"ok\"}\n{\"text\":\"bad \xff byte\"}\n",
            ":2: invalid UTF-8",
        ),
        (
            b"{\"text\":\"ok\"}\n{\"text\":\"   \"}\n",
            "rows.jsonl:2: empty text",
        ),
        (b"{\"text\": 17}\n", ":1: invalid record"),
    ];
    for (content, expected) in cases {
        std::fs::write(&input, content).unwrap();
        let out = standpoint(
            &[
                "classify",
                "--model",
                &model(),
                "--input",
                input.to_str().unwrap(),
            ],
            None,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr:?}"
        );
        assert!(stderr.contains("rows.jsonl"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn info_describes_architecture_heads_and_size() {
    let out = standpoint(
        &[
            "info",
            "--model",
            &fixture("tiny-distilbert").to_string_lossy(),
        ],
        None,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert!(text.contains("architecture:  distilbert"), "{text}");
    assert!(
        text.contains("2 layers, hidden 32, 4 attention heads, vocabulary 138"),
        "{text}"
    );
    assert!(text.contains("labels: against, neutral, favor"), "{text}");
    let params = load(&fixture("tiny-distilbert")).unwrap().info().parameters;
    assert!(text.contains(&format!("parameters:    {params}")), "{text}");
}

#[test]
fn missing_model_is_an_error_not_a_panic() {
    let out = standpoint(&["classify", "--model", "/no/such/model", "hello"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("/no/such/model"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let out = standpoint(
        &[
            "classify",
            "--model",
            &model(),
            "--device",
            "cuda:0",
            "hello",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn eval_prints_a_table_and_writes_a_report() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("dev.csv");
    std::fs::write(
        &data,
        "sentence,target,gold\n\"NATO has refused practical cooperation.\",NATO,against\nThere is an objective need for dialogue.,,neutral\nMoscow said cooperation has ended.,Russia,favor\n",
    )
    .unwrap();
    let report = tmp.path().join("report.json");
    let args = [
        "eval",
        "--model",
        &model(),
        "--data",
        data.to_str().unwrap(),
        "--text-field",
        "sentence",
        "--label-field",
        "classification=gold",
        "--report",
        report.to_str().unwrap(),
    ];
    let out = standpoint(&args, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("classification: 3 examples"), "{stdout}");
    assert!(stdout.contains("gold \\ predicted"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["heads"][0]["examples"], 3);
    assert_eq!(
        json["heads"][0]["confusion"]["labels"],
        serde_json::json!(["against", "neutral", "favor"])
    );

    std::fs::write(&data, "sentence,gold\nok,neutral\nfine,pro\n").unwrap();
    let out = standpoint(&args, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("dev.csv:3: unknown label \"pro\""),
        "{stderr}"
    );
}

fn strace_available() -> bool {
    Command::new("strace")
        .args(["-f", "-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs the binary under `strace -f` (the thread count is resolved once per process: candle's
/// lookup used to read `/proc/cpuinfo` on every matrix multiply), returning (opens of /proc/cpuinfo, threads created).
fn traced(args: &[&str], dir: &Path) -> (usize, usize) {
    let trace = dir.join(format!("trace-{}.txt", args.join("_").len()));
    let status = Command::new("strace")
        .arg("-f")
        .args(["-e", "trace=openat,open,clone,clone3"])
        .arg("-o")
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_standpoint"))
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "standpoint {args:?} failed under strace");
    let text = std::fs::read_to_string(&trace).unwrap();
    let opens = text.lines().filter(|l| l.contains("/proc/cpuinfo")).count();
    let threads = text
        .lines()
        .filter(|l| l.contains("clone3(") || l.contains("clone("))
        .count();
    (opens, threads)
}

#[test]
fn classify_and_train_open_proc_cpuinfo_at_most_once_and_obey_threads() {
    if !strace_available() {
        // The in-process test above covers the library; this one needs ptrace.
        eprintln!("skipped: strace is not available here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rows.jsonl");
    let rows: String = (0..200)
        .map(|i| {
            format!(
                "{{\"text\": \"Sentence {i}: NATO refused cooperation.\", \"target\": \"NATO\"}}\n"
            )
        })
        .collect();
    std::fs::write(&input, rows).unwrap();
    let model = fixture("tiny-bert");
    let classify = [
        "classify",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--batch-size",
        "8",
    ];
    let (opens, _) = traced(&classify, dir.path());
    assert!(opens <= 1, "classify opened /proc/cpuinfo {opens} times");

    let out = dir.path().join("run");
    let examples =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/train-examples/stance-train.jsonl");
    let train = [
        "train",
        "--base",
        model.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--train",
        examples.to_str().unwrap(),
        "--head",
        "stance:pair",
        "--epochs",
        "1",
        "--batch-size",
        "4",
    ];
    let (opens, _) = traced(&train, dir.path());
    assert!(opens <= 1, "train opened /proc/cpuinfo {opens} times");

    let mut one = vec!["--threads", "1"];
    one.extend_from_slice(&classify);
    let mut five = vec!["--threads", "5"];
    five.extend_from_slice(&classify);
    let (_, threads_one) = traced(&one, dir.path());
    let (_, threads_five) = traced(&five, dir.path());
    // rayon's global pool and candle's barrier pool each grow by the four extra workers.
    assert!(
        threads_five >= threads_one + 4,
        "--threads 5 created {threads_five} threads, --threads 1 created {threads_one}"
    );
}
