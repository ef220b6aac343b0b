//! Writing labelled rows: JSONL or CSV, to stdout or to a file that appears only when the
//! run completes, with a progress file that lets `--resume` continue after any interruption
//! (`kill -9` included) without duplicated or missing rows.
//!
//! Protocol for a file output `OUT`: rows go to `OUT.partial`, skipped records to
//! `OUT.errors.jsonl.partial`; at each checkpoint both are flushed and synced, then
//! `OUT.progress.json` records their lengths, a checksum of their last bytes and the input
//! position (written atomically). Resuming checks both files against that record, truncates
//! them to those lengths and restarts from that position; success renames them into place
//! and removes the progress file.
//!
//! The partial files are never reached through a link (a planted symlink or hard link is
//! removed, not written through) and the run holds an exclusive lock on `OUT.partial`, so a
//! second run on the same output is refused while the first is live. An output that is not a
//! regular file (`/dev/stdout`, a FIFO) is written through, without partial files or resume.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::pipeline::{Event, Position, Row};
use crate::error::{Error, Result};
use crate::model::HeadSpec;
use crate::output::write_atomic;
use crate::output::{Destination, open_write_through};

/// Everything that decides the rows of a labelling run. [`LabelOutput::file`] records its
/// [`RunSettings::fingerprint`] beside the partial output, and resuming requires the same
/// one, so a run is never continued with another model, other inputs or other options.
///
/// ```no_run
/// # fn main() -> standpoint::Result<()> {
/// use std::path::PathBuf;
/// use standpoint::label::actors::ActorSet;
/// use standpoint::label::documents::DocumentFields;
/// use standpoint::label::output::{OnError, OutputFormat, RunSettings};
/// use standpoint::label::pipeline::LabelOptions;
/// use standpoint::{Classifier, ClassifierOptions};
///
/// let classifier = Classifier::load_default(&ClassifierOptions::default())?;
/// let actors = ActorSet::from_names(&["NATO".to_string()])?;
/// let fields = DocumentFields { id: "id".into(), text: "text".into(), date: None };
/// let files = vec![PathBuf::from("news.jsonl")];
/// let options = LabelOptions::default();
/// let settings = RunSettings {
///     classifier: &classifier,
///     files: &files,
///     format: None,
///     fields: &fields,
///     actors: &actors,
///     options: &options,
///     output_format: OutputFormat::Jsonl,
///     on_error: OnError::Fail,
/// };
/// let fingerprint = settings.fingerprint();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RunSettings<'a> {
    /// The model (its source, compute dtype and token limit count).
    pub classifier: &'a crate::Classifier,
    /// The input files, known by path, size and modification time, so that a changed or
    /// added file is noticed.
    pub files: &'a [PathBuf],
    /// The input format, when not inferred from each file's extension.
    pub format: Option<super::documents::InputFormat>,
    /// The input's field names.
    pub fields: &'a super::documents::DocumentFields,
    /// The actors.
    pub actors: &'a super::actors::ActorSet,
    /// The labelling options (the window does not change rows and is not part of it).
    pub options: &'a super::pipeline::LabelOptions,
    /// The row format.
    pub output_format: OutputFormat,
    /// What happens to unreadable records.
    pub on_error: OnError,
}

impl RunSettings<'_> {
    /// The settings as one JSON object, the form [`LabelOutput::file`] records and compares.
    pub fn fingerprint(&self) -> String {
        let input_files: Vec<serde_json::Value> = self
            .files
            .iter()
            .map(|path| {
                let meta = std::fs::metadata(path).ok();
                let modified = meta
                    .as_ref()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos().to_string());
                serde_json::json!([path, meta.map(|m| m.len()), modified])
            })
            .collect();
        let info = self.classifier.info();
        serde_json::json!({
            "model": info.source, "compute_dtype": info.compute_dtype,
            "max_length": info.max_length, "input_files": input_files,
            "format": self.format.map(|f| format!("{f:?}")),
            "text_field": self.fields.text, "id_field": self.fields.id,
            "date_field": self.fields.date,
            "actors": self.actors.actors(), "all_actors": self.options.all_actors,
            "mentions_only": !self.options.unmatched_rows,
            "holders": self.options.holders,
            "output_format": format!("{:?}", self.output_format),
            "on_error": format!("{:?}", self.on_error),
        })
        .to_string()
    }
}

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
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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
    /// Sentences labelled (with at least one row).
    pub sentences: usize,
    /// Sentences read, rows or not.
    #[serde(default)]
    pub sentences_read: usize,
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

const FIXED_COLUMNS: [&str; 15] = [
    "document",
    "sentence_index",
    "sentence_start",
    "sentence_end",
    "sentence",
    "actor",
    "mention",
    "mention_start",
    "mention_end",
    "speaker",
    "speaker_start",
    "speaker_end",
    "holder",
    "holder_probability",
    "date",
];

fn csv_line(fields: &[String]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let cells: Vec<std::borrow::Cow<'_, str>> =
        fields.iter().map(|f| spreadsheet_safe(f)).collect();
    writer
        .write_record(cells.iter().map(|c| c.as_bytes()))
        .expect("writing to memory cannot fail");
    writer.into_inner().expect("writing to memory cannot fail")
}

/// A text cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or carriage
/// return first) gets a leading `'`, as OWASP advises; numbers are left as they are.
///
/// ```
/// use standpoint::label::output::spreadsheet_safe;
/// assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
/// assert_eq!(spreadsheet_safe("-0.25"), "-0.25");
/// assert_eq!(spreadsheet_safe("NATO"), "NATO");
/// ```
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && cell.parse::<f64>().is_err() {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

impl RowFormatter {
    /// A formatter for rows of a model with `heads`.
    pub fn new(format: OutputFormat, heads: &[HeadSpec]) -> Self {
        // A directed head answers holder queries, never a row.
        RowFormatter {
            format,
            heads: heads
                .iter()
                .filter(|h| h.input != crate::model::HeadInput::Directed)
                .cloned()
                .collect(),
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
                    row.speaker.clone().unwrap_or_default(),
                    opt(row.speaker_start),
                    opt(row.speaker_end),
                    row.holder.clone().unwrap_or_default(),
                    row.holder_probability
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    row.date.clone().unwrap_or_default(),
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
    /// SHA-256 of the last [`CHECKED_BYTES`] bytes before `output_bytes` (hex).
    output_check: String,
    /// The same for the errors file.
    errors_check: String,
    counts: Counts,
    last_document: Option<usize>,
}

/// How much of the end of each partial file the progress record checksums.
const CHECKED_BYTES: u64 = 64 * 1024;

/// SHA-256 (hex) of the `CHECKED_BYTES` of `path` that end at `len`; `None` if the file is
/// shorter than `len`.
fn tail_check(path: &Path, len: u64) -> Result<Option<String>> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    if file.metadata().map_err(|e| Error::io(path, e))?.len() < len {
        return Ok(None);
    }
    let start = len.saturating_sub(CHECKED_BYTES);
    file.seek(SeekFrom::Start(start))
        .map_err(|e| Error::io(path, e))?;
    let mut tail = Vec::with_capacity((len - start) as usize);
    file.take(len - start)
        .read_to_end(&mut tail)
        .map_err(|e| Error::io(path, e))?;
    let digest = Sha256::digest(&tail);
    Ok(Some(digest.iter().map(|b| format!("{b:02x}")).collect()))
}

/// Opens a partial file without ever following a link to it, holding the run's lock when
/// `lock` is set. `keep` (a resume) needs the file as it was; otherwise a stale file is
/// emptied, and a link or anything but a plain file is removed and created afresh.
fn open_partial(path: &Path, keep: bool, lock: bool, output: &Path) -> Result<File> {
    let io = |e| Error::io(path, e);
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // No link followed; no blocking on a planted FIFO.
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let plain = |file: &File| -> Result<bool> {
        let meta = file.metadata().map_err(io)?;
        #[cfg(unix)]
        let single = std::os::unix::fs::MetadataExt::nlink(&meta) == 1;
        #[cfg(not(unix))]
        let single = true;
        Ok(meta.is_file() && single)
    };
    let take_lock = |file: &File| -> Result<()> {
        if !lock {
            return Ok(());
        }
        match file.try_lock() {
            Ok(()) => Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::InvalidOption {
                option: "output",
                reason: format!(
                    "another run is writing {} (its partial file {} is locked); wait for it or choose another output",
                    output.display(),
                    path.display()
                ),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    };
    match options.open(path) {
        Ok(file) if plain(&file)? => {
            take_lock(&file)?;
            return Ok(file);
        }
        Ok(_) | Err(_) if keep => {
            return Err(Error::InvalidOption {
                option: "resume",
                reason: format!(
                    "{} is missing or not a plain file, so the interrupted run cannot continue; delete the progress file to start over",
                    path.display()
                ),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // A link, a FIFO, a device, a file with other names: never written through.
        Ok(_) | Err(_) => std::fs::remove_file(path).map_err(io)?,
    }
    let mut fresh = OpenOptions::new();
    fresh.read(true).write(true).create_new(true);
    let file = fresh.open(path).map_err(io)?;
    take_lock(&file)?;
    Ok(file)
}

/// The settings whose values differ between two run descriptions (JSON objects).
fn differing_settings(recorded: &str, now: &str) -> Vec<String> {
    let parse = |text: &str| match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (recorded, now) = (parse(recorded), parse(now));
    let mut keys: Vec<String> = recorded
        .keys()
        .chain(now.keys())
        .filter(|k| recorded.get(*k) != now.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

enum Target {
    Stream {
        out: BufWriter<Box<dyn Write>>,
        name: String,
    },
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

/// Refuses an output (or its errors, partial or progress file) that a labelling run over
/// `inputs` would also read: one of the input `files` (as [`input_files`] lists them), or a
/// file inside an input folder.
///
/// [`input_files`]: crate::label::documents::input_files
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::label::documents::input_files;
/// use standpoint::label::output::check_apart;
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::write(dir.path().join("a.txt"), "A.").unwrap();
/// let inputs = [dir.path().display().to_string()];
/// let files = input_files(&inputs, None)?;
/// assert!(check_apart(&dir.path().join("out.jsonl"), None, &inputs, &files, None).is_err());
/// let elsewhere = tempfile::tempdir().unwrap();
/// assert!(check_apart(&elsewhere.path().join("out.jsonl"), None, &inputs, &files, None).is_ok());
/// # Ok(()) }
/// ```
pub fn check_apart(
    output: &Path,
    errors: Option<&Path>,
    inputs: &[String],
    files: &[PathBuf],
    format: Option<crate::label::documents::InputFormat>,
) -> Result<()> {
    use crate::label::documents::InputFormat;
    let paths = Paths::new(output, errors);
    let written = [
        &paths.output,
        &paths.partial,
        &paths.errors,
        &paths.errors_partial,
        &paths.progress,
    ];
    for path in written {
        crate::output::ensure_not_input(path, files)?;
    }
    let folder_of = |path: &Path| std::fs::canonicalize(crate::output::parent_dir(path)).ok();
    for input in inputs.iter().map(Path::new) {
        let walked = input.is_dir()
            && format.unwrap_or_else(|| InputFormat::of_path(input)) == InputFormat::Text;
        let Ok(dir) = std::fs::canonicalize(input) else {
            continue;
        };
        for path in written {
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if walked && !hidden && folder_of(path).is_some_and(|f| f.starts_with(&dir)) {
                return Err(Error::InvalidOption {
                    option: "output",
                    reason: format!(
                        "{} is inside the input folder {}, so the run would read its own output; write it elsewhere",
                        path.display(),
                        input.display()
                    ),
                });
            }
        }
    }
    Ok(())
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
        Self::stream(Box::new(std::io::stdout()), "<stdout>", formatter, on_error)
    }

    fn stream(
        out: Box<dyn Write>,
        name: &str,
        formatter: RowFormatter,
        on_error: OnError,
    ) -> Result<Self> {
        let mut out = BufWriter::new(out);
        out.write_all(&formatter.header())
            .map_err(|e| Error::io(name, e))?;
        Ok(LabelOutput {
            target: Target::Stream {
                out,
                name: name.to_string(),
            },
            formatter,
            on_error,
            counts: Counts::default(),
            last_sentence: None,
            last_document: None,
        })
    }

    /// Rows to `output` via a partial file. With `resume`, continues an interrupted run
    /// (returning where to restart the input); `run` describes the settings (a JSON object)
    /// and must match. An `output` that is not a regular file (a device, a FIFO,
    /// `/dev/stdout`) is written through, and cannot be resumed.
    pub fn file(
        output: &Path,
        errors: Option<&Path>,
        formatter: RowFormatter,
        on_error: OnError,
        run: &str,
        resume: bool,
    ) -> Result<(Self, Position)> {
        let (output, mode) = match Destination::of(output)? {
            Destination::Replace { path, mode } => (path, mode),
            Destination::WriteThrough(path) => {
                if resume {
                    return Err(Error::InvalidOption {
                        option: "resume",
                        reason: format!(
                            "{} is not a regular file, so there is no interrupted run to resume",
                            path.display()
                        ),
                    });
                }
                let file = open_write_through(&path)?;
                let name = path.display().to_string();
                return Ok((
                    Self::stream(Box::new(file), &name, formatter, on_error)?,
                    Position::default(),
                ));
            }
        };
        let errors = match errors.map(Destination::of).transpose()? {
            Some(Destination::Replace { path, .. }) => Some(path),
            Some(Destination::WriteThrough(path)) => {
                return Err(Error::InvalidOption {
                    option: "errors",
                    reason: format!("{} is not a regular file", path.display()),
                });
            }
            None => None,
        };
        let paths = Paths::new(&output, errors.as_deref());
        if paths.errors == paths.output || crate::output::same_file(&paths.errors, &paths.output) {
            return Err(Error::InvalidOption {
                option: "errors",
                reason: format!(
                    "{} is also the output; name another file",
                    paths.errors.display()
                ),
            });
        }
        // The lock first: nothing below may touch the files of a live run.
        let out_file = open_partial(&paths.partial, resume, true, &paths.output)?;
        let (progress, position) = if resume {
            let progress = Self::recorded_progress(&paths, run)?;
            let position = progress.position;
            (progress, position)
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
            let progress = Progress {
                run: run.to_string(),
                position: Position::default(),
                output_bytes: 0,
                errors_bytes: 0,
                output_check: String::new(),
                errors_check: String::new(),
                counts: Counts::default(),
                last_document: None,
            };
            (progress, Position::default())
        };
        let errors_file = open_partial(&paths.errors_partial, resume, false, &paths.output)?;
        let prepare = |file: File, path: &Path, len: u64| -> Result<BufWriter<File>> {
            let mut file = file;
            file.set_len(len).map_err(|e| Error::io(path, e))?;
            file.seek(SeekFrom::End(0))
                .map_err(|e| Error::io(path, e))?;
            #[cfg(unix)]
            if let Some(mode) = mode {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(|e| Error::io(path, e))?;
            }
            Ok(BufWriter::new(file))
        };
        let mut out = prepare(out_file, &paths.partial, progress.output_bytes)?;
        let errors_out = prepare(errors_file, &paths.errors_partial, progress.errors_bytes)?;
        let mut progress = progress;
        if !resume {
            let header = formatter.header();
            out.write_all(&header)
                .map_err(|e| Error::io(&paths.partial, e))?;
            progress.output_bytes = header.len() as u64;
        }
        let counts = progress.counts;
        let last_document = progress.last_document;
        Ok((
            LabelOutput {
                target: Target::File(Box::new(FileTarget {
                    out,
                    errors: errors_out,
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

    /// The progress record of an interrupted run, checked against `run` and the partial files.
    fn recorded_progress(paths: &Paths, run: &str) -> Result<Progress> {
        let text = std::fs::read_to_string(&paths.progress).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingFile {
                path: paths.progress.clone(),
                hint: Some("nothing to resume: no interrupted run writes to this output".into()),
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
                    "the interrupted run had other settings ({} differ); resume with the same model, inputs, actors and options (recorded in {})",
                    differing_settings(&progress.run, run).join(", "),
                    paths.progress.display()
                ),
            });
        }
        for (path, len, check) in [
            (
                &paths.partial,
                progress.output_bytes,
                &progress.output_check,
            ),
            (
                &paths.errors_partial,
                progress.errors_bytes,
                &progress.errors_check,
            ),
        ] {
            if tail_check(path, len)?.as_ref() != Some(check) {
                return Err(Error::InvalidOption {
                    option: "resume",
                    reason: format!(
                        "{} does not hold the {len} bytes {} records (shorter, or changed since); delete both to start over",
                        path.display(),
                        paths.progress.display()
                    ),
                });
            }
        }
        Ok(progress)
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
            Event::Read { sentences, .. } => {
                self.counts.sentences_read += sentences;
                Ok(())
            }
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
            Target::Stream { out, name } => out.write_all(&line).map_err(|e| Error::io(&*name, e)),
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
            Target::Stream { .. } => {
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
        let check = |path: &Path, len: u64| -> Result<String> {
            tail_check(path, len)?.ok_or_else(|| {
                Error::io(
                    path,
                    std::io::Error::other("the file shrank while it was written"),
                )
            })
        };
        progress.output_check = check(&paths.partial, progress.output_bytes)?;
        progress.errors_check = check(&paths.errors_partial, progress.errors_bytes)?;
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
            Target::Stream { mut out, name } => out.flush().map_err(|e| Error::io(name, e))?,
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
                drop(errors);
                // Unix renames an open file: the lock is held until the output is in place.
                let held = if cfg!(unix) {
                    Some(out)
                } else {
                    drop(out);
                    None
                };
                std::fs::rename(&paths.partial, &paths.output)
                    .map_err(|e| Error::io(&paths.output, e))?;
                drop(held);
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
