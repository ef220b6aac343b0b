//! `standpoint label` end to end: the example article, JSONL and CSV, offsets, order,
//! resuming after a crash, and bad input skipped or fatal as chosen.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use standpoint::label::actors::ActorSet;
use standpoint::label::segment::sentences;

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/examples")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

fn label(model: &Path, args: &[&str]) -> Output {
    label_with_env(model, args, &[])
}

fn label_with_env(model: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_standpoint"))
        .arg("label")
        .args(["--model", model.to_str().unwrap()])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn rows(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn chars(text: &str, start: &serde_json::Value, end: &serde_json::Value) -> String {
    let (s, e) = (
        start.as_u64().unwrap() as usize,
        end.as_u64().unwrap() as usize,
    );
    text.chars().skip(s).take(e - s).collect()
}

#[test]
fn example_article_gives_one_row_per_sentence_and_actor() {
    let (_tmp, model) = two_head_model();
    let article = example("nato-russia-dialogue.txt");
    let actors_file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/actors.json")
        .to_str()
        .unwrap()
        .to_string();
    let out = label(&model, &[&article, "--actors-file", &actors_file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&String::from_utf8(out.stdout).unwrap());

    // Expected rows from the library's own segmentation and actor matching.
    let text = std::fs::read_to_string(&article).unwrap();
    let actors = ActorSet::from_file(Path::new(&actors_file)).unwrap();
    let spans = sentences(&text);
    let expected: usize = spans
        .iter()
        .map(|s| actors.mentioned(s.text(&text)).len().max(1))
        .sum();
    assert_eq!(rows.len(), expected);
    assert!(
        spans.len() >= 10,
        "the article has {} sentences",
        spans.len()
    );

    let mut last = (0u64, 0u64);
    for row in &rows {
        for field in [
            "document",
            "sentence_index",
            "sentence_start",
            "sentence_end",
            "sentence",
            "actor",
            "mention",
            "model",
            "sentiment",
        ] {
            assert!(row.get(field).is_some(), "{field} missing in {row}");
        }
        assert_eq!(
            chars(&text, &row["sentence_start"], &row["sentence_end"]),
            row["sentence"].as_str().unwrap()
        );
        let index = row["sentence_index"].as_u64().unwrap();
        assert!(index >= last.1, "rows out of order");
        last = (0, index);
        if row["actor"].is_null() {
            assert!(row.get("stance").is_none(), "no actor, no stance: {row}");
        } else {
            assert_eq!(
                chars(&text, &row["mention_start"], &row["mention_end"]),
                row["mention"].as_str().unwrap()
            );
            let stance = &row["stance"];
            assert!(["against", "neutral", "favor"].contains(&stance["label"].as_str().unwrap()));
            let total: f64 = stance["probabilities"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_f64().unwrap())
                .sum();
            assert!((total - 1.0).abs() < 1e-5);
        }
    }
    let nato: Vec<_> = rows.iter().filter(|r| r["actor"] == "NATO").collect();
    assert!(nato.len() >= 4, "NATO rows: {}", nato.len());
    // The sentence's sentiment is the same on each of its actor rows.
    for pair in rows.windows(2) {
        if pair[0]["sentence_index"] == pair[1]["sentence_index"] {
            assert_eq!(pair[0]["sentiment"], pair[1]["sentiment"]);
        }
    }
}

#[test]
fn jsonl_input_keeps_document_order_and_csv_matches() {
    let (tmp, model) = two_head_model();
    let docs = jsonl_docs(tmp.path());
    let args = [
        docs.as_str(),
        "--actor",
        "NATO",
        "--actor",
        "Moscow",
        "--window",
        "5",
    ];
    let out = label(&model, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&String::from_utf8(out.stdout).unwrap());
    let order: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["document"].as_str().unwrap().to_string(),
                r["sentence_index"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut ids: Vec<&str> = order.iter().map(|(d, _)| d.as_str()).collect();
    ids.dedup();
    assert_eq!(ids, (0..12).map(|i| format!("d{i}")).collect::<Vec<_>>());
    assert!(
        order
            .windows(2)
            .all(|w| w[0].0 != w[1].0 || w[0].1 <= w[1].1)
    );

    let csv_out = tmp.path().join("rows.csv");
    let out = label(
        &model,
        &[
            &args[..],
            &[
                "--output",
                csv_out.to_str().unwrap(),
                "--output-format",
                "csv",
            ],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = csv::Reader::from_path(&csv_out).unwrap();
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    for column in [
        "document",
        "sentence",
        "actor",
        "stance",
        "stance_score",
        "stance_p_favor",
        "sentiment_p_negative",
        "model",
    ] {
        assert!(
            header.contains(&column.to_string()),
            "{column} missing from {header:?}"
        );
    }
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), rows.len());
    let stance = header.iter().position(|c| c == "stance").unwrap();
    for (record, row) in records.iter().zip(&rows) {
        assert_eq!(
            &record[stance],
            row["stance"]["label"].as_str().unwrap_or("")
        );
    }
}

#[test]
fn resume_after_a_crash_gives_the_same_output() {
    let (tmp, model) = two_head_model();
    let docs = jsonl_docs(tmp.path());
    let whole = tmp.path().join("whole.jsonl");
    let crashed = tmp.path().join("crashed.jsonl");
    let args = |out: &Path| -> Vec<String> {
        [
            docs.as_str(),
            "--actor",
            "NATO",
            "--actor",
            "Moscow",
            "--window",
            "4",
            "--output",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    assert!(label(&model, &refs(&args(&whole))).status.success());

    // Abort (as kill -9) at the third checkpoint, after a torn row was written past it.
    let out = label_with_env(
        &model,
        &refs(&args(&crashed)),
        &[(standpoint::label::output::ABORT_AFTER_CHECKPOINTS_ENV, "3")],
    );
    assert!(!out.status.success(), "the failpoint did not fire");
    assert!(
        !crashed.exists(),
        "an interrupted run must not leave the final file"
    );
    let partial = std::fs::read_to_string(tmp.path().join("crashed.jsonl.partial")).unwrap();
    assert!(
        partial.ends_with("{\"torn\": "),
        "the crash should leave a torn row"
    );

    // Without --resume the interrupted run is protected.
    let out = label(&model, &refs(&args(&crashed)));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));

    let mut resumed = args(&crashed);
    resumed.push("--resume".into());
    let out = label(&model, &refs(&resumed));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&whole).unwrap(),
        std::fs::read_to_string(&crashed).unwrap()
    );
    assert!(!tmp.path().join("crashed.jsonl.progress.json").exists());
    assert!(!tmp.path().join("crashed.jsonl.partial").exists());
}

#[test]
fn bad_records_are_skipped_and_counted_or_fatal() {
    let (tmp, model) = two_head_model();
    let input = tmp.path().join("mixed.jsonl");
    let huge = "NATO talks continue without a pause ".repeat(140_000); // ~5 MB on one line, one sentence
    let mut bytes = Vec::new();
    bytes.extend_from_slice(
        b"{\"id\": \"ok1\", \"text\": \"NATO has refused practical cooperation.\"}\n",
    );
    bytes.extend_from_slice(b"{\"id\": \"broken\", \"text\": \n");
    bytes.extend_from_slice(b"{\"id\": \"bad-utf8\", \"text\": \"caf\xe9\"}\n");
    bytes.extend_from_slice(b"{\"id\": \"empty\", \"text\": \"  \"}\n");
    bytes.extend_from_slice(b"{\"id\": \"no-text\", \"body\": \"NATO\"}\n");
    bytes.extend_from_slice(
        serde_json::json!({"id": "huge", "text": huge})
            .to_string()
            .as_bytes(),
    );
    bytes.extend_from_slice(b"\n{\"id\": \"ok2\", \"text\": \"Moscow wants dialogue.\"}\n");
    std::fs::write(&input, bytes).unwrap();
    let out_path = tmp.path().join("out.jsonl");
    let base = [
        input.to_str().unwrap(),
        "--actor",
        "NATO",
        "--output",
        out_path.to_str().unwrap(),
    ];

    // fail (the default): stops at line 2, no output file at all.
    let out = label(&model, &base);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("mixed.jsonl:2: invalid JSON"), "{stderr}");
    assert!(!stderr.contains("panicked"));
    assert!(!out_path.exists());
    std::fs::remove_file(tmp.path().join("out.jsonl.progress.json")).ok();
    std::fs::remove_file(tmp.path().join("out.jsonl.partial")).ok();

    // skip: four records in the errors file, the rest labelled, the summary counts them.
    let out = label(&model, &[&base[..], &["--on-error", "skip"]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("skipped 4 records"), "{stderr}");
    let errors = std::fs::read_to_string(tmp.path().join("out.jsonl.errors.jsonl")).unwrap();
    let reasons: Vec<String> = rows(&errors)
        .iter()
        .map(|r| r["error"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons.len(), 4);
    assert!(reasons[0].contains(":2: invalid JSON"), "{reasons:?}");
    assert!(reasons[1].contains(":3: invalid UTF-8"), "{reasons:?}");
    assert!(reasons[2].contains(":4: empty document"), "{reasons:?}");
    assert!(
        reasons[3].contains(":5: missing field `text`"),
        "{reasons:?}"
    );
    let labelled = rows(&std::fs::read_to_string(&out_path).unwrap());
    let docs: std::collections::BTreeSet<&str> = labelled
        .iter()
        .map(|r| r["document"].as_str().unwrap())
        .collect();
    assert_eq!(docs, ["huge", "ok1", "ok2"].into_iter().collect());
}

#[test]
fn unknown_csv_column_is_a_clear_error() {
    let (tmp, model) = two_head_model();
    let input = tmp.path().join("docs.csv");
    std::fs::write(&input, "id,body\n1,NATO refused.\n").unwrap();
    let out = label(&model, &[input.to_str().unwrap(), "--actor", "NATO"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("no column `text`") && stderr.contains("id, body"),
        "{stderr}"
    );
    let out = label(
        &model,
        &[
            input.to_str().unwrap(),
            "--actor",
            "NATO",
            "--text-field",
            "body",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rows(&String::from_utf8(out.stdout).unwrap()).len(), 1);
}

#[test]
fn mentions_only_runs_no_model_on_sentences_without_an_actor() {
    use standpoint::label::documents::Document;
    use standpoint::label::pipeline::{Event, LabelOptions, Labeller};
    let (_tmp, model) = two_head_model();
    let classifier = load(&model).unwrap();
    let actors = ActorSet::from_names(&["NATO".to_string()]).unwrap();
    let options = LabelOptions {
        unmatched_rows: false,
        ..LabelOptions::default()
    };
    let labeller = Labeller::new(&classifier, &actors, options);
    let docs = vec![
        Ok(Document {
            id: "a".into(),
            text: "The weather was fine. Rain fell again.".into(),
            date: None,
        }),
        Ok(Document {
            id: "b".into(),
            text: "NATO refused talks. Snow came.".into(),
            date: None,
        }),
    ];
    let (mut read, mut classified, mut rows) = (0, 0, 0);
    for event in labeller.stream(docs.into_iter(), Default::default()) {
        match event.unwrap() {
            Event::Read {
                sentences,
                classified: c,
            } => {
                read += sentences;
                classified += c;
            }
            Event::Row(_) => rows += 1,
            _ => {}
        }
    }
    assert_eq!((read, classified, rows), (4, 1, 1));

    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("docs.jsonl");
    std::fs::write(
        &input,
        "{\"id\": \"a\", \"text\": \"The weather was fine. Rain fell again.\"}\n{\"id\": \"b\", \"text\": \"NATO refused talks. Snow came.\"}\n",
    )
    .unwrap();
    let output = tmp.path().join("rows.jsonl");
    let out = label(
        &model,
        &[
            input.to_str().unwrap(),
            "--actor",
            "NATO",
            "--mentions-only",
            "--output",
            output.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("labelled 1 documents, 1 sentences (4 read), 1 rows"),
        "{stderr}"
    );
}

#[test]
fn a_json_file_is_read_as_json_lines_as_training_reads_it() {
    let (tmp, model) = two_head_model();
    let input = tmp.path().join("docs.json");
    std::fs::write(
        &input,
        "{\"id\": \"a\", \"text\": \"NATO refused talks.\"}\n{\"id\": \"b\", \"text\": \"NATO met again.\"}\n",
    )
    .unwrap();
    let out = label(&model, &[input.to_str().unwrap(), "--actor", "NATO"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&String::from_utf8(out.stdout).unwrap());
    let documents: Vec<&str> = rows
        .iter()
        .map(|r| r["document"].as_str().unwrap())
        .collect();
    assert_eq!(
        documents,
        ["a", "b"],
        "one document per line, not the file as text"
    );
}

#[test]
fn every_sentence_of_a_quote_carries_its_speaker() {
    let (_tmp, model) = two_head_model();
    let article = example("aegean-talks.txt");
    let actors_file = concat!(env!("CARGO_MANIFEST_DIR"), "/data/actors.json");
    let out = label(&model, &[&article, "--actors-file", actors_file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&String::from_utf8(out.stdout).unwrap());
    let text = std::fs::read_to_string(&article).unwrap();
    let of = |words: &str| {
        rows.iter()
            .find(|r| r["sentence"].as_str().unwrap().contains(words))
            .unwrap_or_else(|| panic!("no row for {words:?}"))
    };
    // A quote of three sentences, then "he said": the minister named two paragraphs earlier.
    for words in [
        "We do not want confrontation.",
        "Our hand is extended",
        "faits accomplis",
    ] {
        let row = of(words);
        assert_eq!(row["speaker"], "Hakan Fidan", "{row}");
        assert_eq!(
            chars(&text, &row["speaker_start"], &row["speaker_end"]),
            "he said"
        );
    }
    assert_eq!(of("said on Thursday")["speaker"], "Hakan Fidan");
    assert_eq!(
        of("open to dialogue")["speaker"],
        "A Greek government spokesman"
    );
    assert!(of("Ankara signals readiness")["speaker"].is_null());
    // A row per actor: Turkey (Ankara) and Greece (Athens) in the headline.
    let headline: Vec<&str> = rows
        .iter()
        .filter(|r| r["sentence_index"] == 0)
        .map(|r| r["actor"].as_str().unwrap())
        .collect();
    assert_eq!(headline, ["Turkey", "Greece"]);
}

#[test]
fn document_dates_reach_the_rows_and_the_dyad_report() {
    let (_tmp, model) = two_head_model();
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs.jsonl");
    std::fs::write(
        &docs,
        concat!(
            "{\"id\": \"a\", \"published\": \"2026-01-05\", \"text\": \"Lavrov said NATO had refused talks. NATO met.\"}\n",
            "{\"id\": \"b\", \"published\": \"2026-02-11T09:00:00Z\", \"text\": \"Lavrov said NATO must listen.\"}\n",
            "{\"id\": \"c\", \"text\": \"NATO met again.\"}\n",
        ),
    )
    .unwrap();
    let rows_path = tmp.path().join("rows.jsonl");
    let out = label(
        &model,
        &[
            docs.to_str().unwrap(),
            "--actor",
            "NATO",
            "--date-field",
            "published",
            "--mentions-only",
            "--output",
            rows_path.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let labelled = rows(&std::fs::read_to_string(&rows_path).unwrap());
    let dates: Vec<Option<&str>> = labelled.iter().map(|r| r["date"].as_str()).collect();
    assert_eq!(
        dates,
        [
            Some("2026-01-05"),
            Some("2026-01-05"),
            Some("2026-02-11T09:00:00Z"),
            None
        ]
    );
    assert_eq!(labelled[0]["speaker"], "Lavrov");

    let report = Command::new(env!("CARGO_BIN_EXE_standpoint"))
        .args([
            "report",
            rows_path.to_str().unwrap(),
            "--holder-field",
            "speaker",
        ])
        .args([
            "--date-field",
            "date",
            "--period",
            "month",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let table: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let cells: Vec<(String, String, usize)> = table["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["holder"].as_str().unwrap().to_string(),
                c["period"].as_str().unwrap().to_string(),
                c["total"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    // The undated row has no period, so it is left out.
    assert_eq!(
        cells,
        [
            ("Lavrov".into(), "2026-01".into(), 1),
            ("Lavrov".into(), "2026-02".into(), 1),
            ("author".into(), "2026-01".into(), 1),
        ]
    );
}
