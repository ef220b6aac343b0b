//! Reading labelled training data: JSONL/CSV/TSV, partial labels, custom fields, label
//! schemas, and an error naming file and line for every bad input.

use std::path::{Path, PathBuf};

use standpoint::Error;
use standpoint::data::{
    DataFormat, DataSource, Example, FieldMap, HeadLabels, LabelSchema, encode_labels,
    label_counts, read_examples, read_sources,
};
use tempfile::TempDir;

/// Writes `bytes` to `name` in `dir` and returns the path.
fn write(dir: &TempDir, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn read(path: &Path, heads: &[&str]) -> standpoint::Result<Vec<Example>> {
    read_examples(&DataSource::new(path), 0, &FieldMap::for_heads(heads))
}

fn some(s: &str) -> Option<String> {
    Some(s.to_string())
}

/// The error must be a `Record` error for `path` at `line`, its message starting with
/// `path:line:` and holding `needle`.
fn assert_record_error<T: std::fmt::Debug>(
    result: standpoint::Result<T>,
    path: &Path,
    line: usize,
    needle: &str,
) {
    let err = result.unwrap_err();
    let message = err.to_string();
    let prefix = format!("{}:{line}: ", path.display());
    assert!(
        message.starts_with(&prefix),
        "expected {prefix:?} at the start of {message:?}"
    );
    assert!(
        message.contains(needle),
        "expected {needle:?} in {message:?}"
    );
    match err {
        Error::Record {
            source_name,
            line: l,
            ..
        } => {
            assert_eq!(source_name, path.display().to_string());
            assert_eq!(l, line);
        }
        other => panic!("expected a Record error, got {other:?}"),
    }
}

fn schema(heads: &[(&str, &[&str])]) -> LabelSchema {
    LabelSchema {
        heads: heads
            .iter()
            .map(|(name, labels)| HeadLabels {
                name: name.to_string(),
                labels: labels.iter().map(|l| l.to_string()).collect(),
            })
            .collect(),
    }
}

// ---------------------------------------------------------------- happy paths

#[test]
fn jsonl_two_heads_with_partial_labels() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "train.jsonl",
        concat!(
            "{\"text\": \"NATO refused.\", \"target\": \"NATO\", \"stance\": \"against\", \"sentiment\": \"negative\", \"id\": \"a1\"}\n",
            "\n",
            "{\"text\": \"Talks resume.\", \"target\": \"NATO\", \"mention\": \"the alliance\", \"stance\": \"favor\", \"id\": 17}\r\n",
            "   \n",
            "{\"text\": \"A fine day.\", \"sentiment\": \"positive\", \"target\": \"\", \"stance\": null}\n",
        ),
    );
    let examples = read(&path, &["stance", "sentiment"]).unwrap();
    assert_eq!(
        examples,
        vec![
            Example {
                text: "NATO refused.".into(),
                target: some("NATO"),
                mention: None,
                id: some("a1"),
                labels: vec![some("against"), some("negative")],
                source: 0,
                line: 1,
            },
            Example {
                text: "Talks resume.".into(),
                target: some("NATO"),
                mention: some("the alliance"),
                id: some("17"),
                labels: vec![some("favor"), None],
                source: 0,
                line: 3,
            },
            Example {
                text: "A fine day.".into(),
                target: None,
                mention: None,
                id: None,
                labels: vec![None, some("positive")],
                source: 0,
                line: 5,
            },
        ]
    );
}

#[test]
fn jsonl_integer_labels_become_strings() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "newsmtsc.ndjson",
        "{\"text\": \"a\", \"target\": \"T\", \"stance\": 0}\n\
         {\"text\": \"b\", \"target\": \"T\", \"stance\": 2}\n\
         {\"text\": \"c\", \"target\": \"T\", \"stance\": -1}\n",
    );
    let examples = read(&path, &["stance"]).unwrap();
    let labels: Vec<_> = examples.iter().map(|e| e.labels[0].clone()).collect();
    assert_eq!(labels, [some("0"), some("2"), some("-1")]);
    // Integer labels sort numerically.
    let schema = LabelSchema::infer(&examples, &["stance"]).unwrap();
    assert_eq!(schema.heads[0].labels, ["-1", "0", "2"]);
}

#[test]
fn jsonl_labels_object_form() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "obj.jsonl",
        "{\"text\": \"a\", \"labels\": {\"stance\": \"favor\", \"sentiment\": \"positive\"}}\n\
         {\"text\": \"b\", \"labels\": {\"sentiment\": 1}}\n\
         {\"text\": \"c\", \"stance\": \"against\", \"labels\": {\"stance\": \"against\", \"sentiment\": null}}\n",
    );
    let examples = read(&path, &["stance", "sentiment"]).unwrap();
    let labels: Vec<_> = examples.iter().map(|e| e.labels.clone()).collect();
    assert_eq!(
        labels,
        [
            vec![some("favor"), some("positive")],
            vec![None, some("1")],
            vec![some("against"), None],
        ]
    );
}

#[test]
fn csv_with_quoted_comma_and_newline_keeps_line_numbers() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "train.csv",
        "id,text,target,stance,sentiment,extra\n\
         1,\"Hello, world\",NATO,favor,,x\n\
         2,\"first line\nsecond line\nthird\",NATO,,negative,y\n\
         3,plain,,against,positive,z\n\
         \n\
         4,after blank,EU,neutral,,w\n",
    );
    let examples = read(&path, &["stance", "sentiment"]).unwrap();
    assert_eq!(examples.len(), 4);
    assert_eq!(examples[0].text, "Hello, world");
    assert_eq!(examples[0].labels, [some("favor"), None]);
    assert_eq!(examples[1].text, "first line\nsecond line\nthird");
    assert_eq!(examples[1].labels, [None, some("negative")]);
    assert_eq!(examples[2].target, None);
    assert_eq!(examples[3].id, some("4"));
    let lines: Vec<_> = examples.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 3, 6, 8]);
}

#[test]
fn csv_with_crlf_line_endings_counts_lines() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "windows.csv",
        "text,stance\r\na,favor\r\n\"b\r\nc\",against\r\n\r\nd,favor\r\n",
    );
    let examples = read(&path, &["stance"]).unwrap();
    let lines: Vec<_> = examples.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 3, 6]);
    // The error of a later bad row is also on the right line.
    let bad = write(&dir, "bad.csv", "text,stance\r\na,favor\r\n\r\n,favor\r\n");
    assert_record_error(read(&bad, &["stance"]), &bad, 4, "empty text");
}

#[test]
fn tsv_happy_path_with_quotes() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "train.tsv",
        "text\ttarget\tstance\n\
         Hello, world\tNATO\tfavor\n\
         \"tab\there and\nnewline\"\tNATO\tagainst\n\
         last\t\tneutral\n",
    );
    let examples = read(&path, &["stance"]).unwrap();
    assert_eq!(examples.len(), 3);
    assert_eq!(examples[0].text, "Hello, world");
    assert_eq!(examples[1].text, "tab\there and\nnewline");
    assert_eq!(examples[2].target, None);
    let lines: Vec<_> = examples.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 3, 5]);
}

#[test]
fn csv_missing_head_column_leaves_head_unlabelled() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "only_stance.csv", "text,stance\na,favor\nb,against\n");
    let examples = read(&path, &["stance", "sentiment"]).unwrap();
    assert!(examples.iter().all(|e| e.labels[1].is_none()));
}

#[test]
fn custom_field_names() {
    let dir = TempDir::new().unwrap();
    let mut fields = FieldMap::for_heads(&["stance", "sentiment"]);
    fields.text = "sentence".into();
    fields.target = "actor".into();
    fields.id = "key".into();
    fields.heads[0].1 = "label".into();
    fields.heads[1].1 = "polarity".into();

    let csv = write(
        &dir,
        "custom.csv",
        "key,sentence,actor,label,polarity\n\
         k1,NATO refused,NATO,hostile,\n\
         k2,Let us talk,Russia,open_to_dialogue,positive\n",
    );
    let examples = read_examples(&DataSource::new(&csv), 3, &fields).unwrap();
    assert_eq!(
        examples[1],
        Example {
            text: "Let us talk".into(),
            target: some("Russia"),
            mention: None,
            id: some("k2"),
            labels: vec![some("open_to_dialogue"), some("positive")],
            source: 3,
            line: 3,
        }
    );

    let jsonl = write(
        &dir,
        "custom.jsonl",
        "{\"sentence\": \"x\", \"actor\": \"NATO\", \"label\": \"neutral\", \"text\": \"ignored\"}\n",
    );
    let examples = read_examples(&DataSource::new(&jsonl), 0, &fields).unwrap();
    assert_eq!(examples[0].text, "x");
    assert_eq!(examples[0].target, some("NATO"));
    assert_eq!(examples[0].labels, [some("neutral"), None]);
    // The labels object is keyed by head name, not by field name.
    let by_head = write(
        &dir,
        "by_head.jsonl",
        "{\"sentence\": \"x\", \"labels\": {\"stance\": \"hostile\"}}\n",
    );
    let examples = read_examples(&DataSource::new(&by_head), 0, &fields).unwrap();
    assert_eq!(examples[0].labels, [some("hostile"), None]);
}

#[test]
fn read_sources_mixes_files_in_order() {
    let dir = TempDir::new().unwrap();
    let a = write(
        &dir,
        "a.jsonl",
        "{\"text\": \"a\", \"stance\": \"favor\"}\n",
    );
    let b = write(&dir, "b.data", "text,stance\nb,against\nc,favor\n");
    let sources = [
        DataSource::parse(&format!("{}:3", a.display())).unwrap(),
        DataSource {
            path: b.clone(),
            weight: 1.0,
            format: Some(DataFormat::Csv),
        },
    ];
    let examples = read_sources(&sources, &FieldMap::for_heads(&["stance"])).unwrap();
    let got: Vec<_> = examples
        .iter()
        .map(|e| (e.text.as_str(), e.source, e.line))
        .collect();
    assert_eq!(got, [("a", 0, 1), ("b", 1, 2), ("c", 1, 3)]);
    // Without an explicit format the unknown extension is refused.
    let err = read(&b, &["stance"]).unwrap_err();
    assert!(
        matches!(err, Error::InvalidOption { option: "data", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("b.data"), "{err}");
}

#[test]
fn data_format_from_path() {
    let cases = [
        ("x.jsonl", Some(DataFormat::Jsonl)),
        ("x.ndjson", Some(DataFormat::Jsonl)),
        ("x.json", Some(DataFormat::Jsonl)),
        ("x.CSV", Some(DataFormat::Csv)),
        ("x.tsv", Some(DataFormat::Tsv)),
        ("x.tab", Some(DataFormat::Tsv)),
        ("x.txt", None),
        ("x", None),
    ];
    for (path, want) in cases {
        assert_eq!(DataFormat::from_path(Path::new(path)), want, "{path}");
    }
}

#[test]
fn data_source_parse() {
    let ok = |spec: &str| DataSource::parse(spec).unwrap();
    assert_eq!(
        ok("a.jsonl"),
        DataSource {
            path: "a.jsonl".into(),
            weight: 1.0,
            format: None
        }
    );
    let weighted = ok("a.jsonl:2.5");
    assert_eq!(
        (weighted.path.to_str(), weighted.weight),
        (Some("a.jsonl"), 2.5)
    );
    let colons = ok("dir:with:colons/a.csv");
    assert_eq!(
        (colons.path.to_str(), colons.weight),
        (Some("dir:with:colons/a.csv"), 1.0)
    );
    let windows = ok(r"C:\data\x.csv");
    assert_eq!(
        (windows.path.to_str(), windows.weight),
        (Some(r"C:\data\x.csv"), 1.0)
    );
    let windows = ok(r"C:\data\x.csv:0.5");
    assert_eq!(
        (windows.path.to_str(), windows.weight),
        (Some(r"C:\data\x.csv"), 0.5)
    );
    assert_eq!(ok("dir:x/a.csv:3").weight, 3.0);

    for bad in [
        "a.jsonl:0",
        "a.jsonl:-1",
        "a.jsonl:nan",
        "a.jsonl:inf",
        "a.jsonl:",
        ":2",
        "",
    ] {
        match DataSource::parse(bad) {
            Err(Error::InvalidOption { option: "data", .. }) => {}
            other => panic!("{bad:?}: expected InvalidOption(data), got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------- schemas

#[test]
fn infer_sorts_labels_and_rejects_single_label_heads() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "train.jsonl",
        "{\"text\": \"a\", \"stance\": \"neutral\", \"sentiment\": \"pos\"}\n\
         {\"text\": \"b\", \"stance\": \"against\"}\n\
         {\"text\": \"c\", \"stance\": \"favor\", \"sentiment\": \"pos\"}\n\
         {\"text\": \"d\", \"stance\": \"against\"}\n",
    );
    let examples = read(&path, &["stance", "sentiment"]).unwrap();
    let stance_only = LabelSchema::infer(&examples, &["stance", "sentiment"][..1]);
    // Slot count must match the heads.
    assert!(matches!(
        stance_only,
        Err(Error::InvalidOption { option: "data", .. })
    ));

    let err = LabelSchema::infer(&examples, &["stance", "sentiment"]).unwrap_err();
    assert!(matches!(err, Error::InvalidOption { option: "data", .. }));
    let message = err.to_string();
    assert!(
        message.contains("\"sentiment\"") && message.contains("\"pos\""),
        "{message}"
    );

    // Order of appearance does not matter.
    let mut reversed = examples.clone();
    reversed.reverse();
    let heads = vec!["stance".to_string()];
    let only_stance = |examples: &[Example]| -> Vec<Example> {
        examples
            .iter()
            .map(|e| Example {
                labels: vec![e.labels[0].clone()],
                ..e.clone()
            })
            .collect()
    };
    let a = LabelSchema::infer(&only_stance(&examples), &heads).unwrap();
    let b = LabelSchema::infer(&only_stance(&reversed), &heads).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.heads[0].name, "stance");
    assert_eq!(a.heads[0].labels, ["against", "favor", "neutral"]);
}

#[test]
fn encode_and_count_labels() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "train.jsonl",
        "{\"text\": \"a\", \"target\": \"T\", \"stance\": \"favor\", \"sentiment\": \"neg\"}\n\
         {\"text\": \"b\", \"stance\": \"against\"}\n\
         {\"text\": \"c\", \"sentiment\": \"pos\"}\n\
         {\"text\": \"d\", \"stance\": \"favor\"}\n",
    );
    let sources = [DataSource::new(&path)];
    let fields = FieldMap::for_heads(&["stance", "sentiment"]);
    let examples = read_sources(&sources, &fields).unwrap();
    // Schema order differs from FieldMap order; heads are matched by name, and a schema
    // head the data does not read is unlabelled.
    let schema = schema(&[
        ("sentiment", &["neg", "pos"]),
        ("topic", &["x", "y"]),
        ("stance", &["against", "neutral", "favor"]),
    ]);
    let encoded = encode_labels(examples, &fields, &schema, &sources).unwrap();
    let labels: Vec<_> = encoded.iter().map(|e| e.labels.clone()).collect();
    assert_eq!(
        labels,
        [
            vec![Some(0), None, Some(2)],
            vec![None, None, Some(0)],
            vec![Some(1), None, None],
            vec![None, None, Some(2)],
        ]
    );
    assert_eq!(encoded[0].target.as_deref(), Some("T"));
    assert_eq!((encoded[3].source, encoded[3].line), (0, 4));
    assert_eq!(
        label_counts(&encoded, &schema),
        [vec![1, 1], vec![0, 0], vec![1, 0, 2]]
    );

    // A head the data is read for but the schema lacks.
    let examples = read_sources(&sources, &fields).unwrap();
    let narrow = self::schema(&[("stance", &["against", "favor"])]);
    let err = encode_labels(examples, &fields, &narrow, &sources).unwrap_err();
    assert!(matches!(err, Error::InvalidOption { .. }), "{err}");
    assert!(err.to_string().contains("\"sentiment\""), "{err}");
}

#[test]
fn schema_file_round_trip_and_errors() {
    let dir = TempDir::new().unwrap();
    let good = write(
        &dir,
        "labels.json",
        r#"{"heads": [{"name": "stance", "labels": ["against", "neutral", "favor"]},
                      {"name": "sentiment", "labels": ["negative", "positive"]}]}"#,
    );
    let schema = LabelSchema::from_file(&good).unwrap();
    assert_eq!(schema.heads[0].labels, ["against", "neutral", "favor"]);
    assert_eq!(
        schema.head("sentiment").unwrap().index_of("positive"),
        Some(1)
    );
    let json = serde_json::to_string(&schema).unwrap();
    assert_eq!(serde_json::from_str::<LabelSchema>(&json).unwrap(), schema);

    let missing = dir.path().join("nope.json");
    match LabelSchema::from_file(&missing) {
        Err(Error::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected Io, got {other:?}"),
    }
    let broken = write(&dir, "broken.json", "{\"heads\": [");
    assert!(matches!(
        LabelSchema::from_file(&broken),
        Err(Error::Json { ref path, .. }) if *path == broken
    ));
    let wrong_shape = write(&dir, "shape.json", r#"{"heads": {"stance": ["a", "b"]}}"#);
    assert!(matches!(
        LabelSchema::from_file(&wrong_shape),
        Err(Error::Json { .. })
    ));

    let invalid = [
        (
            "one_label",
            r#"{"heads": [{"name": "stance", "labels": ["favor"]}]}"#,
            "at least 2",
        ),
        (
            "dup_label",
            r#"{"heads": [{"name": "stance", "labels": ["favor", "against", "favor"]}]}"#,
            "twice",
        ),
        (
            "dup_head",
            r#"{"heads": [{"name": "s", "labels": ["a", "b"]}, {"name": "s", "labels": ["c", "d"]}]}"#,
            "twice",
        ),
        ("no_heads", r#"{"heads": []}"#, "no heads"),
        (
            "empty_label",
            r#"{"heads": [{"name": "s", "labels": ["a", ""]}]}"#,
            "empty label",
        ),
    ];
    for (name, text, needle) in invalid {
        let path = write(&dir, &format!("{name}.json"), text);
        let err = LabelSchema::from_file(&path).unwrap_err();
        assert!(
            matches!(err, Error::InvalidConfig { path: ref p, .. } if *p == path),
            "{name}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(needle), "{name}: {message}");
        assert!(
            message.contains(&format!("{name}.json")),
            "{name}: {message}"
        );
    }
}

// ---------------------------------------------------------------- bad input

#[test]
fn malformed_json_line() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "bad.jsonl",
        "{\"text\": \"a\", \"stance\": \"favor\"}\n\n{\"text\": \"b\", \"stance\": \n",
    );
    assert_record_error(read(&path, &["stance"]), &path, 3, "invalid JSON");

    let not_object = write(
        &dir,
        "array.jsonl",
        "{\"text\": \"a\", \"stance\": \"favor\"}\n[1, 2]\n",
    );
    assert_record_error(
        read(&not_object, &["stance"]),
        &not_object,
        2,
        "expected a JSON object",
    );

    let whole_array = write(
        &dir,
        "whole.json",
        "[{\"text\": \"a\", \"stance\": \"x\"}]\n",
    );
    assert_record_error(
        read(&whole_array, &["stance"]),
        &whole_array,
        1,
        "one JSON object per line",
    );
}

#[test]
fn invalid_utf8_jsonl() {
    let dir = TempDir::new().unwrap();
    let mut bytes = b"{\"text\": \"a\", \"stance\": \"favor\"}\n{\"text\": \"".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(b"\", \"stance\": \"favor\"}\n");
    let path = write(&dir, "latin1.jsonl", bytes);
    assert_record_error(read(&path, &["stance"]), &path, 2, "invalid UTF-8");
}

#[test]
fn utf8_bom_is_accepted() {
    let dir = TempDir::new().unwrap();
    let jsonl = write(
        &dir,
        "bom.jsonl",
        "\u{feff}{\"text\": \"a\", \"stance\": \"favor\"}\n",
    );
    assert_eq!(read(&jsonl, &["stance"]).unwrap()[0].text, "a");
    let csv = write(&dir, "bom.csv", "\u{feff}text,stance\na,favor\n");
    assert_eq!(read(&csv, &["stance"]).unwrap()[0].line, 2);
}

#[test]
fn empty_and_missing_text() {
    let dir = TempDir::new().unwrap();
    let empty = write(
        &dir,
        "empty.jsonl",
        "{\"text\": \"a\", \"stance\": \"favor\"}\n{\"text\": \"  \", \"stance\": \"favor\"}\n",
    );
    assert_record_error(read(&empty, &["stance"]), &empty, 2, "empty text");

    let missing = write(
        &dir,
        "missing.jsonl",
        "{\"text\": \"a\", \"stance\": \"favor\"}\n\n\n{\"txt\": \"a\", \"stance\": \"favor\"}\n",
    );
    assert_record_error(
        read(&missing, &["stance"]),
        &missing,
        4,
        "missing field `text`",
    );

    let number = write(
        &dir,
        "number.jsonl",
        "{\"text\": 5, \"stance\": \"favor\"}\n",
    );
    assert_record_error(read(&number, &["stance"]), &number, 1, "`text`");

    let csv = write(&dir, "empty.csv", "text,stance\na,favor\n,favor\n");
    assert_record_error(read(&csv, &["stance"]), &csv, 3, "empty text");
}

#[test]
fn label_for_head_the_model_lacks() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "extra_head.jsonl",
        "{\"text\": \"a\", \"labels\": {\"stance\": \"favor\"}}\n\
         {\"text\": \"b\", \"labels\": {\"stance\": \"favor\", \"emotion\": \"joy\"}}\n",
    );
    assert_record_error(
        read(&path, &["stance", "sentiment"]),
        &path,
        2,
        "label for head \"emotion\", which the model does not have (heads: stance, sentiment)",
    );
}

#[test]
fn conflicting_flat_and_object_labels() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "conflict.jsonl",
        "{\"text\": \"a\", \"stance\": \"favor\", \"labels\": {\"stance\": \"against\"}}\n",
    );
    assert_record_error(read(&path, &["stance"]), &path, 1, "\"stance\"");
    let not_object = write(
        &dir,
        "labels_string.jsonl",
        "{\"text\": \"a\", \"labels\": \"favor\"}\n",
    );
    assert_record_error(read(&not_object, &["stance"]), &not_object, 1, "`labels`");
}

#[test]
fn no_label_for_any_head() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "typo.jsonl",
        "{\"text\": \"a\", \"stance\": \"favor\"}\n{\"text\": \"b\", \"stanse\": \"favor\"}\n",
    );
    assert_record_error(
        read(&path, &["stance", "sentiment"]),
        &path,
        2,
        "no label for any head (looked for fields: stance, sentiment",
    );

    let csv = write(&dir, "typo.csv", "text,stance\na,favor\nb,\n");
    assert_record_error(read(&csv, &["stance"]), &csv, 3, "no label for any head");
}

#[test]
fn unknown_label_against_schema() {
    let dir = TempDir::new().unwrap();
    let first = write(
        &dir,
        "first.jsonl",
        "{\"text\": \"a\", \"stance\": \"favor\"}\n",
    );
    let second = write(
        &dir,
        "second.csv",
        "text,stance\nb,against\nc,neutral\nd,pro\n",
    );
    let sources = [DataSource::new(&first), DataSource::new(&second)];
    let fields = FieldMap::for_heads(&["stance"]);
    let examples = read_sources(&sources, &fields).unwrap();
    let schema = schema(&[("stance", &["against", "neutral", "favor"])]);
    assert_record_error(
        encode_labels(examples, &fields, &schema, &sources),
        &second,
        4,
        "unknown label \"pro\" for head \"stance\" (known: against, neutral, favor)",
    );
}

#[test]
fn float_and_other_label_types_are_rejected() {
    let dir = TempDir::new().unwrap();
    let cases = [
        ("float.jsonl", "{\"text\": \"a\", \"stance\": 1.5}\n"),
        ("float_int.jsonl", "{\"text\": \"a\", \"stance\": 1.0}\n"),
        ("bool.jsonl", "{\"text\": \"a\", \"stance\": true}\n"),
        (
            "object.jsonl",
            "{\"text\": \"a\", \"stance\": {\"x\": 1}}\n",
        ),
        (
            "in_object.jsonl",
            "{\"text\": \"a\", \"labels\": {\"stance\": 0.5}}\n",
        ),
    ];
    for (name, text) in cases {
        let path = write(
            &dir,
            name,
            format!("{{\"text\": \"ok\", \"stance\": 1}}\n{text}"),
        );
        assert_record_error(read(&path, &["stance"]), &path, 2, "stance");
    }
    let path = write(
        &dir,
        "target.jsonl",
        "{\"text\": \"a\", \"target\": 3, \"stance\": \"x\"}\n",
    );
    assert_record_error(read(&path, &["stance"]), &path, 1, "`target`");
    let path = write(
        &dir,
        "id.jsonl",
        "{\"text\": \"a\", \"id\": [1], \"stance\": \"x\"}\n",
    );
    assert_record_error(read(&path, &["stance"]), &path, 1, "`id`");
}

#[test]
fn csv_without_text_column() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "notext.csv", "sentence,stance\na,favor\n");
    assert_record_error(
        read(&path, &["stance"]),
        &path,
        1,
        "no column `text` in the header (columns: sentence, stance)",
    );
}

#[test]
fn csv_without_any_label_column() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "nolabels.tsv", "text\tlabel\na\tfavor\n");
    assert_record_error(
        read(&path, &["stance", "sentiment"]),
        &path,
        1,
        "none of the label columns (stance, sentiment) is in the header (columns: text, label)",
    );
}

#[test]
fn csv_non_utf8_line() {
    let dir = TempDir::new().unwrap();
    let mut bytes = b"text,stance\na,favor\n\"multi\nline\",against\nd".to_vec();
    bytes.extend_from_slice(&[0xe9, 0xff]);
    bytes.extend_from_slice(b"j\xe0,favor\n");
    let path = write(&dir, "latin1.csv", bytes);
    assert_record_error(read(&path, &["stance"]), &path, 5, "invalid UTF-8");

    let header = write(&dir, "header.csv", b"te\xffxt,stance\na,favor\n");
    assert_record_error(read(&header, &["stance"]), &header, 1, "invalid UTF-8");
}

#[test]
fn csv_ragged_and_empty_files() {
    let dir = TempDir::new().unwrap();
    let ragged = write(
        &dir,
        "ragged.csv",
        "text,stance\na,favor\nb,against,extra\n",
    );
    assert_record_error(read(&ragged, &["stance"]), &ragged, 3, "3 fields");

    let empty = write(&dir, "empty.csv", "");
    assert_record_error(read(&empty, &["stance"]), &empty, 1, "header");

    let header_only = write(&dir, "header_only.csv", "text,stance\n");
    let err = read(&header_only, &["stance"]).unwrap_err();
    assert!(err.to_string().contains("header_only.csv"), "{err}");

    let empty_jsonl = write(&dir, "empty.jsonl", "\n\n");
    let err = read(&empty_jsonl, &["stance"]).unwrap_err();
    assert!(err.to_string().contains("empty.jsonl"), "{err}");

    let dup = write(&dir, "dup.csv", "text,stance,text\na,favor,b\n");
    assert_record_error(read(&dup, &["stance"]), &dup, 1, "more than once");
}

#[test]
fn missing_file_is_io_error() {
    let dir = TempDir::new().unwrap();
    for name in ["absent.jsonl", "absent.csv"] {
        let path = dir.path().join(name);
        let err = read(&path, &["stance"]).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
        match err {
            Error::Io { path: p, .. } => assert_eq!(p, path),
            other => panic!("expected Io, got {other:?}"),
        }
    }
    // A directory is unreadable as data, not a panic.
    let as_dir = dir.path().join("dir.jsonl");
    std::fs::create_dir(&as_dir).unwrap();
    assert!(matches!(read(&as_dir, &["stance"]), Err(Error::Io { .. })));
}

#[test]
fn bad_field_maps_are_rejected() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "ok.jsonl",
        "{\"text\": \"a\", \"stance\": \"favor\"}\n",
    );
    let source = DataSource::new(&path);
    let mut cases = vec![
        FieldMap::for_heads(&[]),
        FieldMap::for_heads(&["stance", "stance"]),
    ];
    let mut text_as_label = FieldMap::for_heads(&["stance"]);
    text_as_label.heads[0].1 = "text".into();
    cases.push(text_as_label);
    for fields in cases {
        let err = read_examples(&source, 0, &fields).unwrap_err();
        assert!(
            matches!(err, Error::InvalidOption { .. }),
            "{fields:?}: {err}"
        );
    }
}
