//! Writing labelled rows: JSONL or CSV, to stdout or to a file that appears only when the
//! run completes, with a progress file that lets `--resume` continue after any interruption
//! (`kill -9` included) without duplicated or missing rows.
//!
//! Protocol for a file output `OUT`: rows go to `OUT.partial`, skipped records to
//! `OUT.errors.jsonl.partial`; at each checkpoint both are flushed and synced, then
//! `OUT.progress.json` records their lengths and the input position (written atomically).
//! Resuming truncates both files to those lengths and restarts from that position; success
//! renames them into place and removes the progress file.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::pipeline::{Event, Position, Row};
use crate::error::{Error, Result};
use crate::model::HeadSpec;
use crate::train::checkpoint::write_atomic;

/// Row format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// One JSON object per row; head verdicts as nested objects.
    Jsonl,
    /// A header and one line per row; each head as `head`, `head_score`, `head_p_<label>`.
    Csv,
}

impl OutputFormat {
    /// Parses `jsonl` or `csv`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "jsonl" | "json" => Ok(OutputFormat::Jsonl),
            "csv" => Ok(OutputFormat::Csv),
            other => Err(Error::InvalidOption {
                option: "output-format",
                reason: format!("{other:?} is not jsonl or csv"),
            }),
        }
    }
}

/// What to do with a record that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Stop the run with the record's error.
    Fail,
    /// Write it to the errors file, count it, go on.
    Skip,
}

/// Counts for the final summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Rows written.
    pub rows: usize,
    /// Sentences labelled.
    pub sentences: usize,
    /// Documents that produced at least one row.
    pub documents: usize,
    /// Records skipped.
    pub skipped: usize,
}

/// Serialises rows in one format, with the columns of the model's heads.
pub struct RowFormatter {
    format: OutputFormat,
    heads: Vec<HeadSpec>,
}

const FIXED_COLUMNS: [&str; 9] = [
    "document",
    "sentence_index",
    "sentence_start",
    "sentence_end",
    "sentence",
    "actor",
    "mention",
    "mention_start",
    "mention_end",
];

fn csv_line(fields: &[String]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    writer
        .write_record(fields)
        .expect("writing to memory cannot fail");
    writer.into_inner().expect("writing to memory cannot fail")
}

impl RowFormatter {
    /// A formatter for rows of a model with `heads`.
    pub fn new(format: OutputFormat, heads: &[HeadSpec]) -> Self {
        RowFormatter {
            format,
            heads: heads.to_vec(),
        }
    }

    /// The header line (CSV), or nothing (JSONL).
    pub fn header(&self) -> Vec<u8> {
        match self.format {
            OutputFormat::Jsonl => Vec::new(),
            OutputFormat::Csv => {
                let mut columns: Vec<String> =
                    FIXED_COLUMNS.iter().map(|c| c.to_string()).collect();
                for head in &self.heads {
                    columns.push(head.name.clone());
                    columns.push(format!("{}_score", head.name));
                    columns.extend(head.labels.iter().map(|l| format!("{}_p_{l}", head.name)));
                }
                columns.push("model".into());
                csv_line(&columns)
            }
        }
    }

    /// One row as a complete line.
    pub fn row(&self, row: &Row) -> Vec<u8> {
        match self.format {
            OutputFormat::Jsonl => {
                let mut line = serde_json::to_vec(row).expect("rows serialise");
                line.push(b'\n');
                line
            }
            OutputFormat::Csv => {
                let opt = |v: Option<usize>| v.map(|n| n.to_string()).unwrap_or_default();
                let mut fields = vec![
                    row.document.clone(),
                    row.sentence_index.to_string(),
                    row.sentence_start.to_string(),
                    row.sentence_end.to_string(),
                    row.sentence.clone(),
                    row.actor.clone().unwrap_or_default(),
                    row.mention.clone().unwrap_or_default(),
                    opt(row.mention_start),
                    opt(row.mention_end),
                ];
                for head in &self.heads {
                    match row.predictions.get(&head.name) {
                        Some(p) => {
                            fields.push(p.label.clone());
                            fields.push(p.score.to_string());
                            fields.extend(head.labels.iter().map(|l| {
                                p.probabilities
                                    .get(l)
                                    .map(|v| v.to_string())
                                    .unwrap_or_default()
                            }));
                        }
                        None => {
                            fields.extend(std::iter::repeat_n(String::new(), head.labels.len() + 2))
                        }
                    }
                }
                fields.push(row.model.clone());
                csv_line(&fields)
            }
        }
    }
}

/// The resume record of a file output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Progress {
    /// What the run was asked to do; a resume with other settings is refused.
    run: String,
    position: Position,
    output_bytes: u64,
    errors_bytes: u64,
    counts: Counts,
    last_document: Option<usize>,
}

enum Target {
    Stdout(BufWriter<std::io::Stdout>),
    File(Box<FileTarget>),
}

struct FileTarget {
    out: BufWriter<File>,
    errors: BufWriter<File>,
    paths: Paths,
    progress: Progress,
    /// Checkpoints written by this process.
    checkpoints: usize,
    /// The failpoint of [`ABORT_AFTER_CHECKPOINTS_ENV`], read once.
    abort_at: Option<usize>,
}

struct Paths {
    output: PathBuf,
    partial: PathBuf,
    errors: PathBuf,
    errors_partial: PathBuf,
    progress: PathBuf,
}

impl Paths {
    fn new(output: &Path, errors: Option<&Path>) -> Self {
        let with = |suffix: &str| {
            let mut name = output.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        let errors = errors
            .map(Path::to_path_buf)
            .unwrap_or_else(|| with(".errors.jsonl"));
        let mut errors_partial = errors.as_os_str().to_owned();
        errors_partial.push(".partial");
        Paths {
            output: output.to_path_buf(),
            partial: with(".partial"),
            errors,
            errors_partial: errors_partial.into(),
            progress: with(".progress.json"),
        }
    }
}

/// The output side of a labelling run.
pub struct LabelOutput {
    target: Target,
    formatter: RowFormatter,
    on_error: OnError,
    counts: Counts,
    last_sentence: Option<(String, usize)>,
    last_document: Option<usize>,
}

/// One skipped record in the errors file.
#[derive(Serialize)]
struct SkipRecord<'a> {
    document: usize,
    error: &'a str,
}

impl LabelOutput {
    /// Rows to standard output (no resume); skipped records are reported on stderr.
    pub fn stdout(formatter: RowFormatter, on_error: OnError) -> Result<Self> {
        let mut out = BufWriter::new(std::io::stdout());
        out.write_all(&formatter.header())
            .map_err(|e| Error::io("<stdout>", e))?;
        Ok(LabelOutput {
            target: Target::Stdout(out),
            formatter,
            on_error,
            counts: Counts::default(),
            last_sentence: None,
            last_document: None,
        })
    }

    /// Rows to `output` via a partial file. With `resume`, continues an interrupted run
    /// (returning where to restart the input); `run` describes the settings and must match.
    pub fn file(
        output: &Path,
        errors: Option<&Path>,
        formatter: RowFormatter,
        on_error: OnError,
        run: &str,
        resume: bool,
    ) -> Result<(Self, Position)> {
        let paths = Paths::new(output, errors);
        let open = |path: &Path, truncate_to: Option<u64>| -> Result<BufWriter<File>> {
            let mut file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(truncate_to.is_none())
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            if let Some(len) = truncate_to {
                file.set_len(len).map_err(|e| Error::io(path, e))?;
                file.seek(SeekFrom::End(0))
                    .map_err(|e| Error::io(path, e))?;
            }
            Ok(BufWriter::new(file))
        };
        let (out, errors_file, progress) = if resume {
            let text = std::fs::read_to_string(&paths.progress).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::MissingFile {
                    path: paths.progress.clone(),
                    hint: Some(
                        "nothing to resume: no interrupted run writes to this output".into(),
                    ),
                },
                _ => Error::io(&paths.progress, e),
            })?;
            let progress: Progress = serde_json::from_str(&text).map_err(|source| Error::Json {
                path: paths.progress.clone(),
                source,
            })?;
            if progress.run != run {
                return Err(Error::InvalidOption {
                    option: "resume",
                    reason: format!(
                        "the interrupted run had other settings; resume with the same model, inputs, actors and options (recorded in {})",
                        paths.progress.display()
                    ),
                });
            }
            let out = open(&paths.partial, Some(progress.output_bytes))?;
            let errors_file = open(&paths.errors_partial, Some(progress.errors_bytes))?;
            (out, errors_file, progress)
        } else {
            if paths.progress.exists() {
                return Err(Error::InvalidOption {
                    option: "output",
                    reason: format!(
                        "{} belongs to an interrupted run: pass --resume to continue it, or delete it to start over",
                        paths.progress.display()
                    ),
                });
            }
            let mut out = open(&paths.partial, None)?;
            let header = formatter.header();
            out.write_all(&header)
                .map_err(|e| Error::io(&paths.partial, e))?;
            let errors_file = open(&paths.errors_partial, None)?;
            let progress = Progress {
                run: run.to_string(),
                position: Position::default(),
                output_bytes: header.len() as u64,
                errors_bytes: 0,
                counts: Counts::default(),
                last_document: None,
            };
            (out, errors_file, progress)
        };
        let position = progress.position;
        let counts = progress.counts;
        let last_document = progress.last_document;
        Ok((
            LabelOutput {
                target: Target::File(Box::new(FileTarget {
                    out,
                    errors: errors_file,
                    paths,
                    progress,
                    checkpoints: 0,
                    abort_at: std::env::var(ABORT_AFTER_CHECKPOINTS_ENV)
                        .ok()
                        .and_then(|v| v.parse().ok()),
                })),
                formatter,
                on_error,
                counts,
                last_sentence: None,
                last_document,
            },
            position,
        ))
    }

    /// Counts so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Consumes one event of the label stream.
    pub fn handle(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Row(row) => self.row(&row),
            Event::Skipped { document, error } => self.skipped(document, error),
            Event::Checkpoint(position) => self.checkpoint(position),
        }
    }

    fn row(&mut self, row: &Row) -> Result<()> {
        let line = self.formatter.row(row);
        let key = (row.document.clone(), row.sentence_index);
        if self.last_sentence.as_ref() != Some(&key) {
            self.counts.sentences += 1;
            self.last_sentence = Some(key);
        }
        self.counts.rows += 1;
        if self.last_document != Some(row.ordinal) {
            self.counts.documents += 1;
            self.last_document = Some(row.ordinal);
        }
        match &mut self.target {
            Target::Stdout(out) => out.write_all(&line).map_err(|e| Error::io("<stdout>", e)),
            Target::File(f) => f
                .out
                .write_all(&line)
                .map_err(|e| Error::io(&f.paths.partial, e)),
        }
    }

    fn skipped(&mut self, document: usize, error: Error) -> Result<()> {
        if self.on_error == OnError::Fail {
            return Err(error);
        }
        self.counts.skipped += 1;
        let message = error.to_string();
        let mut line = serde_json::to_vec(&SkipRecord {
            document,
            error: &message,
        })
        .expect("plain JSON serialises");
        line.push(b'\n');
        match &mut self.target {
            Target::Stdout(_) => {
                eprintln!("skipped: {message}");
                Ok(())
            }
            Target::File(f) => f
                .errors
                .write_all(&line)
                .map_err(|e| Error::io(&f.paths.errors_partial, e)),
        }
    }

    fn checkpoint(&mut self, position: Position) -> Result<()> {
        let Target::File(file) = &mut self.target else {
            return Ok(());
        };
        let FileTarget {
            out,
            errors,
            paths,
            progress,
            checkpoints,
            abort_at,
        } = file.as_mut();
        let sync = |w: &mut BufWriter<File>, path: &Path| -> Result<u64> {
            w.flush().map_err(|e| Error::io(path, e))?;
            let file = w.get_ref();
            file.sync_data().map_err(|e| Error::io(path, e))?;
            Ok(file.metadata().map_err(|e| Error::io(path, e))?.len())
        };
        progress.output_bytes = sync(out, &paths.partial)?;
        progress.errors_bytes = sync(errors, &paths.errors_partial)?;
        progress.position = position;
        progress.counts = self.counts;
        progress.last_document = self.last_document;
        let text = serde_json::to_string_pretty(progress).expect("plain JSON serialises");
        write_atomic(&paths.progress, text.as_bytes())?;
        *checkpoints += 1;
        if *abort_at == Some(*checkpoints) {
            // Part of a row written after the checkpoint, then a crash: resume must drop it.
            let _ = out.write_all(b"{\"torn\": ");
            let _ = out.flush();
            std::process::abort();
        }
        Ok(())
    }

    /// Flushes everything and moves the files into place.
    pub fn finish(self) -> Result<Counts> {
        match self.target {
            Target::Stdout(mut out) => out.flush().map_err(|e| Error::io("<stdout>", e))?,
            Target::File(file) => {
                let FileTarget {
                    mut out,
                    mut errors,
                    paths,
                    ..
                } = *file;
                out.flush().map_err(|e| Error::io(&paths.partial, e))?;
                out.get_ref()
                    .sync_all()
                    .map_err(|e| Error::io(&paths.partial, e))?;
                errors
                    .flush()
                    .map_err(|e| Error::io(&paths.errors_partial, e))?;
                drop(out);
                drop(errors);
                std::fs::rename(&paths.partial, &paths.output)
                    .map_err(|e| Error::io(&paths.output, e))?;
                if self.counts.skipped > 0 {
                    std::fs::rename(&paths.errors_partial, &paths.errors)
                        .map_err(|e| Error::io(&paths.errors, e))?;
                } else {
                    let _ = std::fs::remove_file(&paths.errors_partial);
                }
                std::fs::remove_file(&paths.progress).map_err(|e| Error::io(&paths.progress, e))?;
            }
        }
        Ok(self.counts)
    }
}

/// Environment variable that aborts the process (like `kill -9`) at the given checkpoint,
/// after writing part of a row past it; used by the resume tests.
pub const ABORT_AFTER_CHECKPOINTS_ENV: &str = "STANDPOINT_FAILPOINT_ABORT_AFTER_CHECKPOINTS";
