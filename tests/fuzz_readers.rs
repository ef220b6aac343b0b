//! Fuzz-style tests of every reader (issue 23): JSONL queries, label documents (JSONL,
//! CSV, TSV, text), CSV/TSV records, training data, the resume record of a label output, and
//! model configs (parsed, then loaded beside real weights). Inputs are built from fragments
//! of the real formats plus raw bytes, so most cases get past the first check. Each reader
//! must return `Ok` or a typed error, never panic or loop; what it accepts must be sane.
//!
//! CI runs proptest's default 256 cases per reader (`PROPTEST_CASES` changes it); the longer
//! run of the closing note: `PROPTEST_CASES=20000 cargo test --test fuzz_readers`.

mod common;

use std::io::BufReader;
use std::path::Path;

use proptest::prelude::*;
use serde_json::{Value, json};

use common::*;
use standpoint::data::delimited::DelimitedRecords;
use standpoint::data::jsonl::JsonlQueries;
use standpoint::data::{DataSource, FieldMap, read_examples};
use standpoint::label::documents::{DocumentFields, read_documents};
use standpoint::label::output::{LabelOutput, OnError, OutputFormat, RowFormatter};

/// Bytes assembled from `fragments` and a few raw bytes.
fn soup(fragments: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let part = prop_oneof![
        6 => prop::sample::select(fragments).prop_map(|f| f.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..3),
    ];
    prop::collection::vec(part, 0..48).prop_map(|parts| parts.concat())
}

const JSON: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\n",
    "\r\n",
    " ",
    "\"text\"",
    "\"target\"",
    "\"id\"",
    "\"stance\"",
    "\"sentiment\"",
    "\"labels\"",
    "\"weight\"",
    "\"NATO\"",
    "\"against\"",
    "\"favor\"",
    "\"\"",
    "\"NATO refused.\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "null",
    "true",
    "1",
    "-1",
    "1e308",
    "0.5",
    "\u{feff}",
    "é",
    "\"actor\"",
];

const DELIMITED: &[&str] = &[
    "text",
    "target",
    "id",
    "stance",
    "sentiment",
    ",",
    "\t",
    "\"",
    "\"\"",
    "\n",
    "\r\n",
    "\r",
    " ",
    "NATO",
    "against",
    "neutral",
    "NATO refused talks.",
    "\u{feff}",
    "é",
    "=cmd",
    "",
];

const PROSE: &[&str] = &[
    "NATO", "Moscow", "refused", ".", "!", "?", " ", "\n", "\n\n", "Dr.", "U.S.", "\"", "'", "3.5",
    "é", "\u{feff}", "\u{0}", "…", "«", "»",
];

/// Drains `items`, refusing an iterator that does not end: a reader gives at most one item
/// per byte, plus a final one.
fn drain<T>(items: impl Iterator<Item = T>, bytes: usize) -> Vec<T> {
    let bound = bytes + 2;
    let all: Vec<T> = items.take(bound + 1).collect();
    assert!(all.len() <= bound, "the reader did not stop");
    all
}

proptest! {
    #[test]
    fn jsonl_queries(data in soup(JSON)) {
        let mut queries = JsonlQueries::new(&data[..], "fuzz.jsonl");
        for item in drain(&mut queries, data.len()).into_iter().flatten() {
            prop_assert!(item.line >= 1);
        }
    }

    #[test]
    fn label_documents(data in prop_oneof![soup(JSON), soup(DELIMITED), soup(PROSE)],
                       ext in prop::sample::select(&["jsonl", "csv", "tsv", "txt"][..])) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("docs.{ext}"));
        std::fs::write(&path, &data).unwrap();
        let inputs = [path.display().to_string()];
        if let Ok(documents) = read_documents(&inputs, None, &DocumentFields::default()) {
            for document in drain(documents, data.len()).into_iter().flatten() {
                prop_assert!(!document.text.trim().is_empty());
            }
        }
    }

    #[test]
    fn delimited_records(data in soup(DELIMITED), tab in any::<bool>()) {
        let delimiter = if tab { b'\t' } else { b',' };
        if let Ok(mut rows) = DelimitedRecords::new(&data[..], delimiter, "fuzz.csv") {
            let columns = rows.columns().len();
            let mut seen = 0;
            loop {
                match rows.next_row() {
                    Ok(Some(row)) => {
                        prop_assert!(row.line() >= 1);
                        for column in 0..columns {
                            let _ = row.cell(column);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => prop_assert!(e.to_string().starts_with("fuzz.csv:")),
                }
                seen += 1;
                prop_assert!(seen <= data.len() + 2, "the reader did not stop");
            }
        }
    }

    #[test]
    fn training_data(data in prop_oneof![soup(JSON), soup(DELIMITED)],
                     ext in prop::sample::select(&["jsonl", "csv", "tsv"][..])) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("train.{ext}"));
        std::fs::write(&path, &data).unwrap();
        let fields = FieldMap::for_heads(&["stance", "sentiment"]);
        if let Ok(examples) = read_examples(&DataSource::new(&path), 0, &fields) {
            for example in examples {
                prop_assert!(!example.text.trim().is_empty());
                prop_assert!(example.line >= 1);
                prop_assert!(example.labels.iter().any(Option::is_some));
            }
        }
    }
}

/// A JSON value that may or may not be a number of the expected kind.
fn loose_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..100).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        Just(Value::Null),
        Just(json!("12")),
        Just(json!([1])),
    ]
}

/// A resume record shaped like the real one, with every field fuzzed.
fn progress_record(partial_len: u64) -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just(json!("{\"run\":1}")), Just(json!("")), Just(json!(7))],
        loose_number(),
        loose_number(),
        prop_oneof![
            Just(json!(partial_len)),
            (0..partial_len * 2 + 2).prop_map(Value::from),
            loose_number()
        ],
        loose_number(),
        prop_oneof![
            Just(json!("00")),
            Just(json!("z".repeat(64))),
            Just(Value::Null)
        ],
        prop_oneof![
            Just(json!({"rows": 1, "sentences": 1, "documents": 1, "skipped": 0})),
            Just(json!({})),
            loose_number(),
        ],
        prop_oneof![loose_number(), Just(Value::Null)],
        any::<bool>(),
    )
        .prop_map(
            |(run, document, sentence, out, err, check, counts, last, drop)| {
                let mut record = json!({
                    "run": run,
                    "position": {"document": document, "sentence": sentence},
                    "output_bytes": out,
                    "errors_bytes": err,
                    "output_check": check,
                    "errors_check": check,
                    "counts": counts,
                    "last_document": last,
                });
                if drop {
                    record.as_object_mut().unwrap().remove("counts");
                }
                record
            },
        )
}

proptest! {
    #[test]
    fn label_resume_record(
        record in progress_record(40),
        raw in soup(JSON),
        use_raw in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("rows.jsonl");
        let partial = "{\"row\": 1}\n".repeat(4);
        std::fs::write(dir.path().join("rows.jsonl.partial"), &partial.as_bytes()[..40]).unwrap();
        std::fs::write(dir.path().join("rows.jsonl.errors.jsonl.partial"), b"").unwrap();
        let bytes = if use_raw { raw } else { record.to_string().into_bytes() };
        std::fs::write(dir.path().join("rows.jsonl.progress.json"), &bytes).unwrap();
        let formatter = RowFormatter::new(OutputFormat::Jsonl, &[]);
        // No fuzzed checksum is the digest of the partial file's tail, so nothing may pass.
        let run = "{\"run\":1}";
        let result = LabelOutput::file(&output, None, formatter, OnError::Fail, run, true);
        prop_assert!(result.is_err(), "a record that cannot match its partial file was accepted");
    }
}

/// A config.json near the fixture's: real keys with fuzzed values, some keys dropped.
fn model_config() -> impl Strategy<Value = Value> {
    const KEYS: &[&str] = &[
        "hidden_size",
        "num_attention_heads",
        "num_hidden_layers",
        "intermediate_size",
        "max_position_embeddings",
        "type_vocab_size",
        "vocab_size",
        "layer_norm_eps",
        "pad_token_id",
    ];
    (
        prop::collection::vec((prop::sample::select(KEYS), loose_number()), 0..4),
        prop::collection::vec(prop::sample::select(KEYS), 0..2),
        prop_oneof![
            Just(json!("bert")),
            Just(json!("roberta")),
            Just(json!("gpt2")),
            Just(Value::Null)
        ],
        prop_oneof![
            Just(json!("gelu")),
            Just(json!("relu")),
            Just(json!("swish")),
            Just(json!(3))
        ],
        prop_oneof![
            Just(Value::Null),
            Just(json!({"format": 1, "heads": [
                {"name": "stance", "labels": ["a", "b", "c"], "input": "pair", "pooling": "pooler"}
            ]})),
            Just(json!({"format": 1, "heads": []})),
            Just(json!({"format": 9})),
            Just(json!({"format": 1, "heads": [
                {"name": "stance", "labels": [], "input": "sideways"}
            ]})),
        ],
    )
        .prop_map(|(edits, dropped, model_type, act, section)| {
            let base: Value = serde_json::from_str(
                &std::fs::read_to_string(fixture("tiny-bert").join("config.json")).unwrap(),
            )
            .unwrap();
            let mut config = base;
            for (key, value) in edits {
                config[key] = value;
            }
            for key in dropped {
                config.as_object_mut().unwrap().remove(key);
            }
            config["model_type"] = model_type;
            config["hidden_act"] = act;
            if !section.is_null() {
                config["standpoint"] = section;
            }
            config
        })
}

proptest! {
    // Each case loads a model: a quarter of the cases of the other readers.
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases / 4 + 1,
        ..ProptestConfig::default()
    })]

    #[test]
    fn model_configs_parse_and_load_without_panicking(config in model_config()) {
        let (_tmp, dir) = copy_fixture("tiny-bert");
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let parsed = standpoint::ModelConfig::from_value(config.clone(), Path::new("config.json"));
        let loaded = load(&dir);
        if parsed.is_err() {
            prop_assert!(loaded.is_err(), "a config that does not parse was loaded");
        }
        if let Ok(classifier) = loaded {
            // Loaded: it must also run.
            let run = classifier.classify(&[standpoint::Query::pair("NATO", "NATO refused.")]);
            prop_assert!(run.is_ok(), "{:?}", run.err());
        }
    }
}

#[test]
fn the_fuzzed_readers_accept_their_well_formed_inputs() {
    // The fragments build real records too: a guard that the harness exercises the success
    // paths, not only the first error.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.csv");
    std::fs::write(
        &path,
        "text,target,stance\nNATO refused talks.,NATO,against\n",
    )
    .unwrap();
    let fields = FieldMap::for_heads(&["stance"]);
    assert_eq!(
        read_examples(&DataSource::new(&path), 0, &fields)
            .unwrap()
            .len(),
        1
    );
    let queries: Vec<_> =
        JsonlQueries::new(BufReader::new(&b"{\"text\": \"NATO refused.\"}\n"[..]), "q").collect();
    assert!(queries[0].is_ok());
}
