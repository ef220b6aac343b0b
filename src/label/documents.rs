//! Documents to label: plain-text files and folders, JSONL, CSV/TSV, or standard input.
//!
//! Readers stream: one document in memory at a time. A problem with one record (bad JSON,
//! invalid UTF-8, a missing field, an empty text) is an [`Error::Record`] naming the source
//! and line, which the caller may skip; anything else (a file that cannot be opened, a CSV
//! header without the text column) stops the run.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::data::DataFormat;
use crate::data::delimited::DelimitedRecords;
use crate::data::jsonl::JsonlLines;
use crate::error::{Error, Result};

/// One document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Identifier carried to every row: the `id` field, the file's path, or `source:line`.
    pub id: String,
    /// The full text.
    pub text: String,
    /// The document's date, when [`DocumentFields::date`] names a field it has (carried to
    /// every row, for [`crate::report`]).
    pub date: Option<String>,
}

/// How input documents are laid out: whole text files, or records of a data file in one
/// of the formats training reads ([`DataFormat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// Each file is one document (folders are walked, sorted by path).
    Text,
    /// One document per record: JSON Lines, CSV or TSV with a header row.
    Records(DataFormat),
}

impl InputFormat {
    /// JSON Lines, the format of standard input unless told otherwise.
    pub const JSONL: InputFormat = InputFormat::Records(DataFormat::Jsonl);

    /// Parses `text` (or `txt`), or a [`DataFormat`] name: `jsonl` (also `ndjson`, `json`),
    /// `csv`, `tsv`.
    ///
    /// ```
    /// use standpoint::data::DataFormat;
    /// use standpoint::label::documents::InputFormat;
    /// assert_eq!(InputFormat::parse("csv").unwrap(), InputFormat::Records(DataFormat::Csv));
    /// ```
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "text" | "txt" => Ok(InputFormat::Text),
            other => other
                .parse()
                .map(InputFormat::Records)
                .map_err(|_| Error::InvalidOption {
                    option: "format",
                    reason: format!("unknown input format {other:?} (text, jsonl, csv, tsv)"),
                }),
        }
    }

    /// The format implied by a path, by the same extensions as training data
    /// ([`DataFormat::from_path`]: `.jsonl`, `.ndjson`, `.json`, `.csv`, `.tsv`, `.tab`); folders
    /// and other extensions are text.
    ///
    /// ```
    /// use standpoint::label::documents::InputFormat;
    /// assert_eq!(InputFormat::of_path("rows.json".as_ref()), InputFormat::JSONL);
    /// assert_eq!(InputFormat::of_path("article.txt".as_ref()), InputFormat::Text);
    /// ```
    pub fn of_path(path: &Path) -> Self {
        DataFormat::from_path(path).map_or(InputFormat::Text, InputFormat::Records)
    }
}

/// Field names for JSONL and CSV input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentFields {
    /// Field holding the identifier (optional in the data).
    pub id: String,
    /// Field holding the text.
    pub text: String,
    /// Field holding the document's date, copied to its rows (none by default).
    pub date: Option<String>,
}

impl Default for DocumentFields {
    fn default() -> Self {
        DocumentFields {
            id: "id".into(),
            text: "text".into(),
            date: None,
        }
    }
}

/// Streams the documents of `inputs` (paths, or `-` for standard input) in order.
/// `format` overrides the format implied by each path (and is required for stdin unless
/// it is JSONL).
pub fn read_documents(
    inputs: &[String],
    format: Option<InputFormat>,
    fields: &DocumentFields,
) -> Result<impl Iterator<Item = Result<Document>> + use<>> {
    let mut parts: Vec<Box<dyn Iterator<Item = Result<Document>>>> = Vec::new();
    for input in inputs {
        if input == "-" {
            let reader: Box<dyn BufRead> = Box::new(BufReader::new(std::io::stdin()));
            parts.push(records(
                reader,
                "<stdin>",
                format.unwrap_or(InputFormat::JSONL),
                fields,
            )?);
            continue;
        }
        let path = PathBuf::from(input);
        if !path.exists() {
            return Err(Error::MissingFile { path, hint: None });
        }
        let fmt = format.unwrap_or_else(|| InputFormat::of_path(&path));
        if fmt == InputFormat::Text {
            parts.push(Box::new(text_files(&path)?.into_iter().map(read_text_file)));
        } else {
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            parts.push(records(Box::new(BufReader::new(file)), input, fmt, fields)?);
        }
    }
    Ok(parts.into_iter().flatten())
}

/// Every file `inputs` will read, in reading order (standard input left out): what
/// [`read_documents`] walks, so a caller can check an output path against it first.
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::label::documents::input_files;
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::write(dir.path().join("b.txt"), "B.").unwrap();
/// std::fs::write(dir.path().join("a.txt"), "A.").unwrap();
/// let files = input_files(&[dir.path().display().to_string()], None)?;
/// assert_eq!(files, [dir.path().join("a.txt"), dir.path().join("b.txt")]);
/// # Ok(()) }
/// ```
pub fn input_files(inputs: &[String], format: Option<InputFormat>) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs.iter().filter(|i| *i != "-") {
        let path = PathBuf::from(input);
        if !path.exists() {
            return Err(Error::MissingFile { path, hint: None });
        }
        match format.unwrap_or_else(|| InputFormat::of_path(&path)) {
            InputFormat::Text => files.extend(text_files(&path)?),
            _ => files.push(path),
        }
    }
    Ok(files)
}

/// Regular, non-hidden files under `path` (or `path` itself), sorted. Links are followed;
/// a link back into its own ancestry (a cycle) is not, and a file reached twice is read once.
fn text_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let walk = walkdir::WalkDir::new(path)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walk {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.loop_ancestor().is_some() => continue,
            Err(e) => {
                let at = e.path().unwrap_or(path).to_path_buf();
                return Err(Error::io(&at, e.into()));
            }
        };
        if entry.file_type().is_file() {
            let real = std::fs::canonicalize(entry.path()).unwrap_or_else(|_| entry.path().into());
            if seen.insert(real) {
                files.push(entry.into_path());
            }
        }
    }
    files.sort();
    Ok(files)
}

fn read_text_file(path: PathBuf) -> Result<Document> {
    let id = path.display().to_string();
    // A record error, so `--on-error skip` skips an unreadable file like a malformed one.
    let bytes = std::fs::read(&path).map_err(|e| Error::Record {
        source_name: id.clone(),
        line: 1,
        reason: format!("cannot read: {e}"),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count();
        Error::Record {
            source_name: id.clone(),
            line,
            reason: format!("invalid UTF-8 at byte {at}"),
        }
    })?;
    let text = text
        .strip_prefix('\u{feff}')
        .map(str::to_string)
        .unwrap_or(text);
    if text.trim().is_empty() {
        return Err(Error::Record {
            source_name: id,
            line: 1,
            reason: "empty document".into(),
        });
    }
    Ok(Document {
        id,
        text,
        date: None,
    })
}

fn records(
    reader: Box<dyn BufRead>,
    name: &str,
    format: InputFormat,
    fields: &DocumentFields,
) -> Result<Box<dyn Iterator<Item = Result<Document>>>> {
    Ok(match format {
        InputFormat::Records(DataFormat::Jsonl) => Box::new(JsonlDocuments {
            lines: JsonlLines::new(reader, name),
            fields: fields.clone(),
        }),
        InputFormat::Records(DataFormat::Csv) => {
            Box::new(csv_documents(reader, name, b',', fields)?)
        }
        InputFormat::Records(DataFormat::Tsv) => {
            Box::new(csv_documents(reader, name, b'\t', fields)?)
        }
        InputFormat::Text => {
            let mut text = Vec::new();
            let mut reader = reader;
            reader
                .read_to_end(&mut text)
                .map_err(|e| Error::io(name, e))?;
            let name = name.to_string();
            Box::new(std::iter::once_with(move || {
                let temp = String::from_utf8(text).map_err(|e| Error::Record {
                    source_name: name.clone(),
                    line: 1,
                    reason: format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
                })?;
                Ok(Document {
                    id: name,
                    text: temp,
                    date: None,
                })
            }))
        }
    })
}

struct JsonlDocuments {
    lines: JsonlLines<Box<dyn BufRead>>,
    fields: DocumentFields,
}

impl JsonlDocuments {
    fn parse(&self, line: usize, text: &str) -> Result<Document> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| self.lines.error(format!("invalid JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| self.lines.error("expected a JSON object"))?;
        let text = match object.get(&self.fields.text) {
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                let reason = format!("field `{}` is not a string", self.fields.text);
                return Err(self.lines.error(reason));
            }
            None => {
                let reason = format!("missing field `{}`", self.fields.text);
                return Err(self.lines.error(reason));
            }
        };
        if text.trim().is_empty() {
            return Err(self.lines.error("empty document"));
        }
        let id = match object.get(&self.fields.id) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => format!("{}:{line}", self.lines.source_name()),
        };
        let date = match self.fields.date.as_ref().and_then(|f| object.get(f)) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()).filter(|s| !s.is_empty()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                let reason = format!(
                    "field `{}` is not a string or a number",
                    self.fields.date.as_deref().unwrap_or_default()
                );
                return Err(self.lines.error(reason));
            }
        };
        Ok(Document { id, text, date })
    }
}

impl Iterator for JsonlDocuments {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        let (line, text) = match self.lines.next_line()? {
            Ok((line, text)) => (line, text.to_string()),
            Err(e) => return Some(Err(e)),
        };
        Some(self.parse(line, &text))
    }
}

fn csv_documents(
    reader: Box<dyn BufRead>,
    name: &str,
    delimiter: u8,
    fields: &DocumentFields,
) -> Result<impl Iterator<Item = Result<Document>> + use<>> {
    let mut rows = DelimitedRecords::new(reader, delimiter, name)?;
    let Some(text_col) = rows.column(&fields.text) else {
        return Err(Error::InvalidOption {
            option: "text-field",
            reason: format!(
                "{name}: no column `{}` in the header (columns: {})",
                fields.text,
                rows.columns().join(", ")
            ),
        });
    };
    let id_col = rows.column(&fields.id);
    let date_col = fields.date.as_ref().and_then(|f| rows.column(f));
    let name = name.to_string();
    Ok(std::iter::from_fn(move || {
        next_csv_document(&mut rows, text_col, id_col, date_col, &name).transpose()
    }))
}

/// The next record of `rows` as a document; its id is column `id_col`, else `NAME:LINE`.
fn next_csv_document(
    rows: &mut DelimitedRecords<Box<dyn BufRead>>,
    text_col: usize,
    id_col: Option<usize>,
    date_col: Option<usize>,
    name: &str,
) -> Result<Option<Document>> {
    let Some(row) = rows.next_row()? else {
        return Ok(None);
    };
    let text = row.cell(text_col)?;
    if text.trim().is_empty() {
        return Err(row.error("empty document"));
    }
    let id = match id_col {
        Some(i) => row.cell(i)?.to_string(),
        None => format!("{name}:{}", row.line()),
    };
    let date = match date_col {
        Some(i) => Some(row.cell(i)?.to_string()).filter(|d| !d.is_empty()),
        None => None,
    };
    Ok(Some(Document {
        id,
        text: text.to_string(),
        date,
    }))
}
