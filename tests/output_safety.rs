//! Output safety and honest resume (issue 23): outputs onto links, FIFOs and directories,
//! planted partial files, tampered progress records, two runs on one output, outputs that
//! are inputs, changed inputs or dtype on resume, link cycles, closed stdout, NaN weights.
#![cfg(unix)]

mod common;

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

fn standpoint(args: &[&str]) -> Output {
    standpoint_with_env(args, &[])
}

fn standpoint_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_standpoint"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The shared twelve JSONL documents (`common::jsonl_docs`).
fn docs(dir: &Path) -> PathBuf {
    PathBuf::from(jsonl_docs(dir))
}

/// The rows of an uninterrupted label run over `input` (into a folder of its own).
fn reference_rows(model: &Path, input: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("reference.jsonl");
    let out = standpoint(&label_args(model, input, &output));
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::read_to_string(output).unwrap()
}

/// `out` succeeded and `output` holds the rows of an uninterrupted run over `input`.
fn assert_reference_rows(out: &Output, output: &Path, model: &Path, input: &Path) {
    assert!(out.status.success(), "{}", stderr(out));
    assert_eq!(
        std::fs::read_to_string(output).unwrap(),
        reference_rows(model, input)
    );
}

fn label_args<'a>(model: &'a Path, input: &'a Path, output: &'a Path) -> Vec<&'a str> {
    vec![
        "label",
        "--model",
        s(model),
        s(input),
        "--actor",
        "NATO",
        "--window",
        "2",
        "--output",
        s(output),
    ]
}

fn mkfifo(path: &Path) {
    let name = std::ffi::CString::new(s(path)).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0);
}

#[test]
fn outputs_onto_links_and_fifos_are_written_through_and_keep_permissions() {
    let (tmp, model) = two_head_model();
    let dir = tmp.path();
    let classify = |output: &Path| {
        standpoint(&[
            "classify",
            "--model",
            s(&model),
            "--target",
            "NATO",
            "NATO refused talks.",
            "--output",
            s(output),
        ])
    };

    // A symlink stays a symlink; the file it points at gets the rows.
    let real = dir.join("real.jsonl");
    std::fs::write(&real, "old\n").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.join("link.jsonl");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = classify(&link);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    let text = std::fs::read_to_string(&real).unwrap();
    assert!(text.contains("\"stance\""), "{text}");
    // An existing file's permissions are kept (0600 stays private).
    let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // A FIFO is written through, not replaced by a regular file.
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let out = classify(&fifo);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(reader.join().unwrap().contains("\"stance\""));
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );

    // label through a link and into a FIFO as well.
    let input = docs(dir);
    let labelled = dir.join("labelled.jsonl");
    std::fs::write(&labelled, "").unwrap();
    let label_link = dir.join("label-link.jsonl");
    std::os::unix::fs::symlink(&labelled, &label_link).unwrap();
    let out = standpoint(&label_args(&model, &input, &label_link));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        label_link
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let want = reference_rows(&model, &input);
    assert_eq!(std::fs::read_to_string(&labelled).unwrap(), want);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let out = standpoint(&label_args(&model, &input, &fifo));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(reader.join().unwrap(), want);
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(!dir.join("fifo.progress.json").exists());
}

#[test]
fn an_existing_directory_as_output_is_refused_before_the_run() {
    let (tmp, model) = two_head_model();
    let folder = tmp.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    let input = docs(tmp.path());
    for args in [
        vec![
            "classify",
            "--model",
            s(&model),
            "a",
            "--output",
            s(&folder),
        ],
        label_args(&model, &input, &folder),
    ] {
        let out = standpoint(&args);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
    }
    assert!(std::fs::read_dir(&folder).unwrap().next().is_none());
}

#[test]
fn planted_partial_files_are_never_written_through() {
    let (tmp, model) = two_head_model();
    let dir = tmp.path();
    let input = docs(dir);
    let output = dir.join("o.jsonl");
    let victim = dir.join("victim.txt");
    let hard_victim = dir.join("hard-victim.txt");
    std::fs::write(&victim, "secret\n").unwrap();
    std::fs::write(&hard_victim, "also secret\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("o.jsonl.partial")).unwrap();
    std::fs::hard_link(&hard_victim, dir.join("o.jsonl.errors.jsonl.partial")).unwrap();
    let out = standpoint(&label_args(&model, &input, &output));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret\n");
    assert_eq!(
        std::fs::read_to_string(&hard_victim).unwrap(),
        "also secret\n"
    );
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        reference_rows(&model, &input)
    );
}

/// Crashes a label run at its second checkpoint; returns its arguments' paths.
fn crashed_run(dir: &Path, model: &Path) -> (PathBuf, PathBuf) {
    let input = docs(dir);
    let output = dir.join("crashed.jsonl");
    let out = standpoint_with_env(
        &label_args(model, &input, &output),
        &[(standpoint::label::output::ABORT_AFTER_CHECKPOINTS_ENV, "2")],
    );
    assert!(!out.status.success(), "the failpoint did not fire");
    (input, output)
}

fn resume(model: &Path, input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args = label_args(model, input, output);
    args.push("--resume");
    args.extend_from_slice(extra);
    standpoint(&args)
}

#[test]
fn resume_refuses_progress_that_does_not_match_the_partial_files() {
    let (tmp, model) = two_head_model();
    let dir = tmp.path();
    let (input, output) = crashed_run(dir, &model);
    let partial = dir.join("crashed.jsonl.partial");
    let progress_path = dir.join("crashed.jsonl.progress.json");
    let saved_partial = std::fs::read(&partial).unwrap();
    let saved_progress = std::fs::read_to_string(&progress_path).unwrap();
    let progress: serde_json::Value = serde_json::from_str(&saved_progress).unwrap();
    let bytes = progress["output_bytes"].as_u64().unwrap();
    let with = |key: &str, value: serde_json::Value| {
        let mut p = progress.clone();
        p[key] = value;
        p.to_string()
    };
    let cases = [
        (
            "partial file deleted",
            None,
            saved_progress.clone(),
            "missing",
        ),
        (
            "length past the end",
            Some(saved_partial.clone()),
            with("output_bytes", (bytes + 4096).into()),
            "does not hold",
        ),
        (
            "length short (a torn row)",
            Some(saved_partial.clone()),
            with("output_bytes", (bytes - 7).into()),
            "does not hold",
        ),
        (
            "position past the input",
            Some(saved_partial.clone()),
            with(
                "position",
                serde_json::json!({"document": 5000, "sentence": 0}),
            ),
            "has 12 documents",
        ),
    ];
    for (case, partial_bytes, progress_text, message) in cases {
        match &partial_bytes {
            Some(b) => std::fs::write(&partial, b).unwrap(),
            None => std::fs::remove_file(&partial).unwrap(),
        }
        std::fs::write(&progress_path, &progress_text).unwrap();
        let out = resume(&model, &input, &output, &[]);
        assert!(!out.status.success(), "{case}: resumed");
        assert!(stderr(&out).contains(message), "{case}: {}", stderr(&out));
        assert!(!output.exists(), "{case}: wrote the output");
    }
    // The untouched state still resumes to the whole output.
    std::fs::write(&partial, &saved_partial).unwrap();
    std::fs::write(&progress_path, &saved_progress).unwrap();
    let out = resume(&model, &input, &output, &[]);
    assert_reference_rows(&out, &output, &model, &input);
}

#[test]
fn resume_with_another_dtype_or_changed_inputs_names_what_differs() {
    let (tmp, model) = two_head_model();
    let (input, output) = crashed_run(tmp.path(), &model);
    let out = resume(&model, &input, &output, &["--dtype", "bf16"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("dtype"), "{}", stderr(&out));

    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    writeln!(
        file,
        "{}",
        serde_json::json!({"id": "new", "text": "NATO met."})
    )
    .unwrap();
    drop(file);
    let out = resume(&model, &input, &output, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("input_files"), "{}", stderr(&out));
}

#[test]
fn a_second_run_on_a_live_output_is_refused() {
    let (tmp, model) = two_head_model();
    let dir = tmp.path();
    let input = docs(dir);
    let output = dir.join("shared.jsonl");
    let stdin_args: Vec<&str> = label_args(&model, Path::new("-"), &output);
    let mut first = Command::new(env!("CARGO_BIN_EXE_standpoint"))
        .args(&stdin_args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let partial = dir.join("shared.jsonl.partial");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !partial.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let second = standpoint(&label_args(&model, &input, &output));
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("another run"),
        "{}",
        stderr(&second)
    );

    let mut stdin = first.stdin.take().unwrap();
    stdin.write_all(&std::fs::read(&input).unwrap()).unwrap();
    drop(stdin);
    let first = first.wait_with_output().unwrap();
    // The documents' ids and text are the same, read from stdin instead of the file.
    assert_reference_rows(&first, &output, &model, &input);
}

#[test]
fn an_output_that_is_also_read_is_refused() {
    let (tmp, model) = two_head_model();
    let dir = tmp.path();
    let input = docs(dir);
    let before = std::fs::read(&input).unwrap();
    let queries = dir.join("queries.jsonl");
    std::fs::write(
        &queries,
        "{\"text\": \"NATO refused.\", \"target\": \"NATO\"}\n",
    )
    .unwrap();

    let out = standpoint(&[
        "classify",
        "--model",
        s(&model),
        "-i",
        s(&queries),
        "--output",
        s(&queries),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("also an input"), "{}", stderr(&out));
    assert!(
        std::fs::read_to_string(&queries)
            .unwrap()
            .starts_with("{\"text\"")
    );

    let out = standpoint(&label_args(&model, &input, &input));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("also an input"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&input).unwrap(), before);

    let articles = dir.join("articles");
    std::fs::create_dir(&articles).unwrap();
    std::fs::write(articles.join("a.txt"), "NATO refused talks.").unwrap();
    let out = standpoint(&label_args(&model, &articles, &articles.join("out.jsonl")));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("inside the input folder"),
        "{}",
        stderr(&out)
    );

    let output = dir.join("rows.jsonl");
    let mut args = label_args(&model, &input, &output);
    args.extend(["--errors", s(&output)]);
    let out = standpoint(&args);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("also the output"), "{}", stderr(&out));
}

#[test]
fn link_cycles_in_an_input_folder_are_walked_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("articles");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a.txt"), "NATO refused talks.").unwrap();
    std::fs::write(dir.join("sub/b.txt"), "NATO agreed.").unwrap();
    std::os::unix::fs::symlink(".", dir.join("self")).unwrap();
    std::os::unix::fs::symlink("..", dir.join("sub/up")).unwrap();
    std::os::unix::fs::symlink(dir.join("a.txt"), dir.join("again.txt")).unwrap();
    let files = standpoint::label::documents::input_files(&[s(&dir).to_string()], None).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&dir).unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["a.txt", "sub/b.txt"]);
}

#[test]
fn eval_does_not_panic_on_a_closed_or_full_stdout() {
    let (tmp, model) = two_head_model();
    let data = tmp.path().join("dev.jsonl");
    let mut rows = String::new();
    for (i, label) in ["against", "neutral", "favor"]
        .iter()
        .cycle()
        .take(30)
        .enumerate()
    {
        rows.push_str(
            &serde_json::json!({"text": format!("sentence {i}"), "target": "NATO", "stance": label})
                .to_string(),
        );
        rows.push('\n');
    }
    std::fs::write(&data, rows).unwrap();
    let eval = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_standpoint"));
        command.args(["eval", "--model", s(&model), "--data", s(&data)]);
        command
    };
    let mut closed = eval()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(closed.stdout.take());
    let closed = closed.wait_with_output().unwrap();
    assert_ne!(closed.status.code(), Some(101), "{}", stderr(&closed));
    assert!(!stderr(&closed).contains("panicked"), "{}", stderr(&closed));

    let full = eval()
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    assert_eq!(full.status.code(), Some(1), "{}", stderr(&full));
    assert!(stderr(&full).contains("No space left"), "{}", stderr(&full));
}

#[test]
fn non_finite_weights_are_refused_at_load_and_at_save() {
    let (_tmp, dir) = copy_fixture("tiny-bert");
    let name = "bert.encoder.layer.0.attention.self.query.weight";
    edit_weights(&dir, |t| {
        let w = &t[name];
        let mut values = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        values[3] = f32::NAN;
        let nan = candle_core::Tensor::from_vec(values, w.shape(), w.device()).unwrap();
        t.insert(name.to_string(), nan);
    });
    let Err(error) = load(&dir) else {
        panic!("NaN weights loaded")
    };
    assert!(
        matches!(&error, standpoint::Error::NonFiniteWeights { tensor, .. } if tensor == name),
        "{error}"
    );

    let tensors =
        candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let target = dir.join("saved.safetensors");
    let error = standpoint::model::weights::save_tensors(&tensors, &target).unwrap_err();
    assert!(
        matches!(error, standpoint::Error::NonFiniteWeights { .. }),
        "{error}"
    );
    assert!(!target.exists());
}

#[test]
fn csv_cells_that_a_spreadsheet_would_run_are_neutralised() {
    let (tmp, model) = two_head_model();
    let input = tmp.path().join("docs.jsonl");
    std::fs::write(
        &input,
        "{\"id\": \"=cmd|' /C calc'!A0\", \"text\": \"=HYPERLINK(\\\"http://x\\\") NATO refused.\"}\n",
    )
    .unwrap();
    let output = tmp.path().join("rows.csv");
    let mut args = label_args(&model, &input, &output);
    args.extend(["--output-format", "csv"]);
    let out = standpoint(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut reader = csv::Reader::from_path(&output).unwrap();
    let record = reader.records().next().unwrap().unwrap();
    assert!(record[0].starts_with("'="), "{:?}", &record[0]);
    assert!(record[4].starts_with("'=HYPERLINK"), "{:?}", &record[4]);
    assert!(record.iter().all(|cell| !cell.starts_with('=')));
}

#[test]
fn a_line_without_end_is_refused_not_read_into_memory() {
    let (_tmp, model) = two_head_model();
    let out = standpoint(&["classify", "--model", s(&model), "-i", "/dev/zero"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/dev/zero:1: line longer than 64 MiB"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn classify_warns_about_fields_it_does_not_read() {
    let (tmp, model) = two_head_model();
    let queries = tmp.path().join("queries.jsonl");
    std::fs::write(
        &queries,
        "{\"text\": \"NATO refused.\", \"actor\": \"NATO\"}\n",
    )
    .unwrap();
    let out = standpoint(&["classify", "--model", s(&model), "-i", s(&queries)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ignored fields actor (a query reads text, target, holder, id)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_quote_left_open_in_a_csv_is_refused_by_label_and_train_alike() {
    let (tmp, model) = two_head_model();
    // The open quote sits in the last column, so every later row would fit the header.
    let input = tmp.path().join("docs.csv");
    std::fs::write(
        &input,
        "id,text\n1,\"NATO said hello.\n2,Russia ended cooperation with NATO.\n3,Talks resumed.\n",
    )
    .unwrap();
    let output = tmp.path().join("rows.jsonl");
    let out = standpoint(&label_args(&model, &input, &output));
    assert!(!out.status.success(), "label accepted an open quote");
    let expected = format!(
        "{}:2: a quote opens a field here and is never closed",
        s(&input)
    );
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    assert!(!output.exists(), "no output from a refused input");

    let train = tmp.path().join("train.csv");
    std::fs::write(
        &train,
        "stance,text\nneutral,\"NATO said hello.\nagainst,Russia ended cooperation with NATO.\n",
    )
    .unwrap();
    let run = tmp.path().join("run");
    let out = standpoint(&[
        "train",
        "--base",
        s(&model),
        "--output",
        s(&run),
        "--train",
        s(&train),
        "--head",
        "stance:text",
        "--epochs",
        "1",
    ]);
    assert!(!out.status.success(), "train accepted an open quote");
    let expected = format!(
        "{}:2: a quote opens a field here and is never closed",
        s(&train)
    );
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
}

#[test]
fn a_sentence_longer_than_the_limit_is_cut_around_the_mention() {
    let (tmp, model) = two_head_model();
    let filler = "the committee met again and talked about the weather ".repeat(40);
    let input = tmp.path().join("docs.jsonl");
    let docs: Vec<String> = ["refused all cooperation", "welcomed the new offer"]
        .iter()
        .enumerate()
        .map(|(i, end)| {
            serde_json::json!({"id": i.to_string(), "text": format!("{filler}NATO {end}.")})
                .to_string()
        })
        .collect();
    std::fs::write(&input, docs.join("\n") + "\n").unwrap();
    let output = tmp.path().join("rows.jsonl");
    let out = standpoint(&label_args(&model, &input, &output));
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["mention"], "NATO");
    // Cut at its end, each sentence would read as the same filler: the words after the
    // mention could not change the stance.
    assert_ne!(
        rows[0]["stance"]["probabilities"], rows[1]["stance"]["probabilities"],
        "the text around the mention was not read"
    );
}

#[test]
fn a_document_longer_than_a_window_is_checkpointed_inside() {
    let (tmp, model) = two_head_model();
    let dir = tmp.path();
    let text: String = (0..12)
        .map(|i| format!("NATO rejected proposal number {i}. "))
        .collect();
    let input = dir.join("one.jsonl");
    std::fs::write(
        &input,
        serde_json::json!({"id": "long", "text": text}).to_string() + "\n",
    )
    .unwrap();
    let output = dir.join("rows.jsonl");
    let out = standpoint_with_env(
        &label_args(&model, &input, &output),
        &[(standpoint::label::output::ABORT_AFTER_CHECKPOINTS_ENV, "2")],
    );
    assert!(!out.status.success(), "the failpoint did not fire");
    let progress: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("rows.jsonl.progress.json")).unwrap())
            .unwrap();
    assert_eq!(
        progress["position"],
        serde_json::json!({"document": 0, "sentence": 4}),
        "two windows of two sentences done inside the one document"
    );
    let out = resume(&model, &input, &output, &[]);
    assert_reference_rows(&out, &output, &model, &input);
    assert_eq!(
        std::fs::read_to_string(&output).unwrap().lines().count(),
        12
    );
}

#[test]
fn an_os_error_is_reported_once() {
    let (tmp, model) = two_head_model();
    let input = docs(tmp.path());
    let output = tmp.path().join("no-such-folder/rows.jsonl");
    let out = standpoint(&label_args(&model, &input, &output));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("no-such-folder"), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
}
