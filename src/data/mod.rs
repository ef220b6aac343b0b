//! Labelled examples for training and evaluation.
//!
//! Training data comes from one or more files ([`DataSource`]), each JSON Lines, CSV or
//! TSV. A [`FieldMap`] says which field holds the text, the target and the label of each
//! head; an example may label only some of the heads. Reading gives [`Example`]s with
//! labels as strings; a [`LabelSchema`] (read from a file, or inferred from the data)
//! fixes the label set of each head, and [`encode_labels`] turns the strings into indices.
//!
//! Every malformed input is an error that names the file and the line.
//!
//! ```
//! # fn main() -> standpoint::Result<()> {
//! use standpoint::data::{
//!     DataSource, FieldMap, LabelSchema, encode_labels, label_counts, read_sources,
//! };
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("train.jsonl");
//! std::fs::write(
//!     &path,
//!     concat!(
//!         r#"{"text": "NATO refused.", "target": "NATO", "stance": "against", "sentiment": "negative"}"#, "\n",
//!         r#"{"text": "Talks resume.", "target": "NATO", "stance": "favor"}"#, "\n",
//!         r#"{"text": "A fine day.", "sentiment": "positive"}"#, "\n",
//!     ),
//! )
//! .unwrap();
//!
//! let sources = vec![DataSource::parse(path.to_str().unwrap())?];
//! let fields = FieldMap::for_heads(&["stance", "sentiment"]);
//! let examples = read_sources(&sources, &fields)?;
//! let schema = LabelSchema::infer(&examples, &["stance", "sentiment"])?;
//! assert_eq!(schema.heads[0].labels, ["against", "favor"]);
//!
//! let encoded = encode_labels(examples, &fields, &schema, &sources)?;
//! assert_eq!(encoded[2].labels, [None, Some(1)]);
//! assert_eq!(label_counts(&encoded, &schema), [vec![1, 1], vec![1, 1]]);
//! # Ok(()) }
//! ```

pub mod delimited;
pub mod items;
pub mod jsonl;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use delimited::DelimitedRecords;
use jsonl::JsonlLines;

/// The JSONL key that may carry the labels of several heads as one object.
const LABELS_KEY: &str = "labels";

/// The format of a data file.
///
/// ```
/// use std::path::Path;
/// use standpoint::data::DataFormat;
///
/// assert_eq!(DataFormat::from_path(Path::new("train.ndjson")), Some(DataFormat::Jsonl));
/// assert_eq!(DataFormat::from_path(Path::new("dev.TSV")), Some(DataFormat::Tsv));
/// assert_eq!(DataFormat::from_path(Path::new("notes.txt")), None);
/// assert_eq!("csv".parse::<DataFormat>().unwrap(), DataFormat::Csv);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataFormat {
    /// JSON Lines: one JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
}

impl DataFormat {
    /// The format implied by a file's extension (case-insensitive): `.jsonl`, `.ndjson`
    /// and `.json` are JSON Lines, `.csv` is CSV, `.tsv` and `.tab` are TSV.
    ///
    /// ```
    /// use std::path::Path;
    /// use standpoint::data::DataFormat;
    /// assert_eq!(DataFormat::from_path(Path::new("a/b.csv")), Some(DataFormat::Csv));
    /// ```
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" | "json" => Some(DataFormat::Jsonl),
            "csv" => Some(DataFormat::Csv),
            "tsv" | "tab" => Some(DataFormat::Tsv),
            _ => None,
        }
    }

    /// The format's name as accepted by [`FromStr`]: `jsonl`, `csv` or `tsv`.
    ///
    /// ```
    /// use standpoint::data::DataFormat;
    /// assert_eq!(DataFormat::Tsv.name(), "tsv");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            DataFormat::Jsonl => "jsonl",
            DataFormat::Csv => "csv",
            DataFormat::Tsv => "tsv",
        }
    }
}

impl fmt::Display for DataFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DataFormat {
    type Err = Error;

    /// Parses `jsonl` (or `ndjson`, `json`), `csv` or `tsv` (or `tab`), case-insensitive.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" | "json" => Ok(DataFormat::Jsonl),
            "csv" => Ok(DataFormat::Csv),
            "tsv" | "tab" => Ok(DataFormat::Tsv),
            _ => Err(Error::InvalidOption {
                option: "format",
                reason: format!("unknown data format {s:?} (known: jsonl, csv, tsv)"),
            }),
        }
    }
}

/// The number of records in a JSON Lines, CSV or TSV file, read by the same readers as the
/// data (blank lines skipped; a CSV row with quoted line breaks counts once), without
/// parsing its fields. For progress totals: it stops with the error of the first record
/// those readers refuse.
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::data::{DataFormat, count_records};
///
/// let dir = std::env::temp_dir().join(format!("standpoint-count-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("rows.csv");
/// std::fs::write(&path, "id,text\n1,\"two\nlines\"\n2,one line\n").unwrap();
/// assert_eq!(count_records(&path, DataFormat::Csv)?, 2);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(()) }
/// ```
pub fn count_records(path: &Path, format: DataFormat) -> Result<u64> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = BufReader::new(file);
    let name = path.display().to_string();
    let mut count = 0u64;
    match format {
        DataFormat::Jsonl => {
            let mut lines = JsonlLines::new(reader, &name);
            while let Some(line) = lines.next_line() {
                line?;
                count += 1;
            }
        }
        DataFormat::Csv | DataFormat::Tsv => {
            let delimiter = if format == DataFormat::Csv {
                b','
            } else {
                b'\t'
            };
            let mut rows = DelimitedRecords::new(reader, delimiter, &name)?;
            while rows.next_row()?.is_some() {
                count += 1;
            }
        }
    }
    Ok(count)
}

/// One input file with its mixing weight.
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::data::DataSource;
///
/// let source = DataSource::parse("data/train.jsonl:2.5")?;
/// assert_eq!(source.path.to_str(), Some("data/train.jsonl"));
/// assert_eq!(source.weight, 2.5);
/// assert_eq!(DataSource::parse("data/dev.csv")?.weight, 1.0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DataSource {
    /// The file.
    pub path: PathBuf,
    /// Relative weight of this file when several are mixed (positive and finite).
    pub weight: f64,
    /// The format; `None` means "from the file's extension" ([`DataFormat::from_path`]).
    pub format: Option<DataFormat>,
}

/// The largest per-epoch sampling weight of a training file (1000 draws of each row).
pub const MAX_WEIGHT: f64 = 1000.0;

impl DataSource {
    /// A source of weight 1 whose format follows from its extension.
    ///
    /// ```
    /// use standpoint::data::DataSource;
    /// assert_eq!(DataSource::new("train.tsv").weight, 1.0);
    /// ```
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DataSource {
            path: path.into(),
            weight: 1.0,
            format: None,
        }
    }

    /// Parses `FILE` or `FILE:WEIGHT`.
    ///
    /// The split is on the last `:`, and only when what follows it parses as a number, so
    /// paths holding colons (`C:\data\x.csv`, `dir:with:colons/a.csv`) are read as paths
    /// of weight 1. The weight must be positive and at most [`MAX_WEIGHT`] (a weight sizes
    /// each epoch, so a huge one would exhaust memory). Errors are
    /// [`Error::InvalidOption`] with option `data`.
    ///
    /// ```
    /// use standpoint::data::DataSource;
    /// assert_eq!(DataSource::parse("dir:with:colons/a.csv").unwrap().weight, 1.0);
    /// assert!(DataSource::parse("a.jsonl:0").is_err());
    /// assert!(DataSource::parse("a.jsonl:nan").is_err());
    /// assert!(DataSource::parse("a.jsonl:1e308").is_err());
    /// ```
    pub fn parse(spec: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidOption {
            option: "data",
            reason,
        };
        if spec.trim().is_empty() {
            return Err(invalid("empty data file name".into()));
        }
        let (path, weight) = match spec.rsplit_once(':') {
            Some((_, weight)) if weight.trim().is_empty() => {
                return Err(invalid(format!(
                    "{spec:?}: missing weight after ':' (expected FILE or FILE:WEIGHT)"
                )));
            }
            Some((path, weight)) => match weight.trim().parse::<f64>() {
                Ok(weight) => (path, Some(weight)),
                Err(_) => (spec, None),
            },
            None => (spec, None),
        };
        if path.is_empty() {
            return Err(invalid(format!(
                "{spec:?}: missing file name before ':' (expected FILE or FILE:WEIGHT)"
            )));
        }
        let weight = match weight {
            None => 1.0,
            Some(w) if w.is_finite() && w > 0.0 && w <= MAX_WEIGHT => w,
            Some(w) => {
                return Err(invalid(format!(
                    "{spec:?}: weight {w} must be a positive number of at most {MAX_WEIGHT}"
                )));
            }
        };
        Ok(DataSource {
            path: PathBuf::from(path),
            weight,
            format: None,
        })
    }

    /// The format to read the file as: [`DataSource::format`] when set, else the one its
    /// extension implies. An unknown extension is [`Error::InvalidOption`] (option `data`).
    ///
    /// ```
    /// use standpoint::data::{DataFormat, DataSource};
    /// assert_eq!(DataSource::new("a.tab").resolved_format().unwrap(), DataFormat::Tsv);
    /// assert!(DataSource::new("a.txt").resolved_format().is_err());
    /// ```
    pub fn resolved_format(&self) -> Result<DataFormat> {
        if let Some(format) = self.format {
            return Ok(format);
        }
        DataFormat::from_path(&self.path).ok_or_else(|| Error::InvalidOption {
            option: "data",
            reason: format!(
                "{}: cannot tell the format from the file name (use .jsonl, .csv or .tsv, \
                 or name the format)",
                self.path.display()
            ),
        })
    }
}

/// Which fields (JSONL keys, or CSV/TSV columns) hold the text, the target, the id and
/// the label of each head.
///
/// ```
/// use standpoint::data::FieldMap;
///
/// let mut fields = FieldMap::for_heads(&["stance"]);
/// fields.text = "sentence".into();
/// fields.heads[0].1 = "label".into(); // head "stance" read from column "label"
/// assert_eq!(fields.target, "target");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMap {
    /// The field holding the sentence; default `text`.
    pub text: String,
    /// The field holding the actor the stance is judged against; default `target`.
    pub target: String,
    /// The field holding the words of the text that mention the target (e.g. `Moscow` for
    /// the target `Russia`); default `mention`. Absent or not found in the text: the target's
    /// own first occurrence is the mention.
    pub mention: String,
    /// The field holding an identifier; default `id`.
    pub id: String,
    /// (head name, field name) for every head whose labels are read; by default the
    /// field is named like the head.
    pub heads: Vec<(String, String)>,
}

impl FieldMap {
    /// Default field names (`text`, `target`, `id`), each head read from the field of its
    /// own name.
    ///
    /// ```
    /// use standpoint::data::FieldMap;
    /// let fields = FieldMap::for_heads(&["stance", "sentiment"]);
    /// assert_eq!(fields.heads[1], ("sentiment".to_string(), "sentiment".to_string()));
    /// ```
    pub fn for_heads(heads: &[&str]) -> Self {
        FieldMap {
            text: "text".into(),
            target: "target".into(),
            mention: "mention".into(),
            id: "id".into(),
            heads: heads
                .iter()
                .map(|h| (h.to_string(), h.to_string()))
                .collect(),
        }
    }

    /// The head names, in order.
    ///
    /// ```
    /// use standpoint::data::FieldMap;
    /// assert_eq!(FieldMap::for_heads(&["stance"]).head_names(), ["stance"]);
    /// ```
    pub fn head_names(&self) -> Vec<String> {
        self.heads.iter().map(|(head, _)| head.clone()).collect()
    }

    /// Rejects maps that cannot be read unambiguously: no heads, a head named twice,
    /// empty names, or a field used both for the text and a label.
    fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Error::InvalidOption {
            option: "fields",
            reason,
        };
        if self.heads.is_empty() {
            return Err(invalid("no heads to read labels for".into()));
        }
        if self.text.is_empty() {
            return Err(invalid("empty name for the text field".into()));
        }
        let mut seen = HashSet::new();
        for (head, field) in &self.heads {
            if head.is_empty() || field.is_empty() {
                return Err(invalid(format!(
                    "empty head or field name in ({head:?}, {field:?})"
                )));
            }
            if !seen.insert(head.as_str()) {
                return Err(invalid(format!("head {head:?} is listed twice")));
            }
            if [&self.text, &self.target, &self.mention, &self.id].contains(&field) {
                return Err(invalid(format!(
                    "field {field:?} cannot hold both the labels of head {head:?} and the \
                     text, target, mention or id"
                )));
            }
        }
        Ok(())
    }
}

/// One labelled example as read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The sentence.
    pub text: String,
    /// The actor the stance is judged against, when given.
    pub target: Option<String>,
    /// The words of the text that mention the target, when given.
    pub mention: Option<String>,
    /// The row's identifier, when given (numbers are kept as their decimal text).
    pub id: Option<String>,
    /// Label per head, in [`FieldMap::heads`] order; `None` where the row leaves that
    /// head unlabelled.
    pub labels: Vec<Option<String>>,
    /// Which [`DataSource`] the example came from: an index into the slice given to
    /// [`read_sources`] (or the `source_index` given to [`read_examples`]).
    pub source: usize,
    /// 1-based line of the example in its file (for CSV/TSV, the line the record starts on).
    pub line: usize,
}

/// Reads one file.
///
/// JSON Lines: one object per line, blank lines skipped. The text must be a non-empty
/// string; the target a string (`null` or `""` = none); the id a string or a number.
/// A head's label is a string or an integer (kept as its decimal text); `null`, `""` or
/// absent leaves the head unlabelled. Labels may also come as one object,
/// `"labels": {"stance": "favor", ...}`, whose keys must all be heads of `fields`.
///
/// CSV/TSV: a header row is required and must name the text column; a head whose column
/// is absent is unlabelled throughout the file, but at least one head column must exist.
/// Empty cells are absent values; quoted fields may hold delimiters and newlines.
///
/// Every row must label at least one head. Errors name the file and line
/// ([`Error::Record`]); a missing or unreadable file is [`Error::Io`]; a file with no
/// examples is [`Error::InvalidOption`].
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::data::{DataSource, FieldMap, read_examples};
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("train.csv");
/// std::fs::write(&path, "sentence,label\n\"Hello, world\",favor\n").unwrap();
/// let mut fields = FieldMap::for_heads(&["stance"]);
/// fields.text = "sentence".into();
/// fields.heads[0].1 = "label".into();
/// let examples = read_examples(&DataSource::new(&path), 0, &fields)?;
/// assert_eq!(examples[0].text, "Hello, world");
/// assert_eq!(examples[0].labels, [Some("favor".to_string())]);
/// assert_eq!(examples[0].line, 2);
/// # Ok(()) }
/// ```
pub fn read_examples(
    source: &DataSource,
    source_index: usize,
    fields: &FieldMap,
) -> Result<Vec<Example>> {
    fields.validate()?;
    let format = source.resolved_format()?;
    let path = &source.path;
    let examples = match format {
        DataFormat::Jsonl => {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            read_jsonl(BufReader::new(file), path, source_index, fields)?
        }
        DataFormat::Csv | DataFormat::Tsv => {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let delimiter = if format == DataFormat::Csv {
                b','
            } else {
                b'\t'
            };
            read_delimited(BufReader::new(file), delimiter, path, source_index, fields)?
        }
    };
    if examples.is_empty() {
        return Err(Error::InvalidOption {
            option: "data",
            reason: format!("{}: no examples in the file", source.path.display()),
        });
    }
    Ok(examples)
}

/// Reads several files, in order, each example recording the index of its source.
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::data::{DataSource, FieldMap, read_sources};
///
/// let dir = tempfile::tempdir().unwrap();
/// let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.tsv"));
/// std::fs::write(&a, "{\"text\": \"one\", \"stance\": \"favor\"}\n").unwrap();
/// std::fs::write(&b, "text\tstance\ntwo\tagainst\n").unwrap();
/// let sources = [DataSource::new(&a), DataSource::new(&b)];
/// let examples = read_sources(&sources, &FieldMap::for_heads(&["stance"]))?;
/// assert_eq!((examples[1].source, examples[1].line), (1, 2));
/// # Ok(()) }
/// ```
pub fn read_sources(sources: &[DataSource], fields: &FieldMap) -> Result<Vec<Example>> {
    let mut examples = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        examples.extend(read_examples(source, index, fields)?);
    }
    Ok(examples)
}

/// Builds [`Error::Record`] for `path` at `line`.
fn record_error(path: &Path, line: usize, reason: impl Into<String>) -> Error {
    Error::Record {
        source_name: path.display().to_string(),
        line,
        reason: reason.into(),
    }
}

/// The name of a JSON value's type, for messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a non-integer number",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A trimmed string, `None` when empty.
fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// A label from JSON: a string or an integer; `null` or `""` is no label.
fn json_label(value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(non_empty(s)),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        other => Err(format!(
            "a label must be a string or an integer, found {} ({other})",
            json_kind(other)
        )),
    }
}

/// Reads JSON Lines.
fn read_jsonl(
    reader: impl BufRead,
    path: &Path,
    source: usize,
    fields: &FieldMap,
) -> Result<Vec<Example>> {
    let mut examples = Vec::new();
    let mut lines = JsonlLines::new(reader, &path.display().to_string());
    while let Some(next) = lines.next_line() {
        let (line, text) = next?;
        let value: Value = serde_json::from_str(text)
            .map_err(|e| record_error(path, line, format!("invalid JSON: {e}")))?;
        let Value::Object(object) = value else {
            let hint = if value.is_array() && line == 1 {
                " (the file must hold one JSON object per line, not a JSON array)"
            } else {
                ""
            };
            return Err(record_error(
                path,
                line,
                format!("expected a JSON object, found {}{hint}", json_kind(&value)),
            ));
        };
        let example = jsonl_example(&object, fields, source, line)
            .map_err(|reason| record_error(path, line, reason))?;
        examples.push(example);
    }
    Ok(examples)
}

/// Builds an example from one JSON object; the error is the reason only.
fn jsonl_example(
    object: &Map<String, Value>,
    fields: &FieldMap,
    source: usize,
    line: usize,
) -> Result<Example, String> {
    let text = match object.get(&fields.text) {
        None | Some(Value::Null) => return Err(format!("missing field `{}`", fields.text)),
        Some(Value::String(s)) if s.trim().is_empty() => return Err("empty text".into()),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "field `{}` must be a string, found {}",
                fields.text,
                json_kind(other)
            ));
        }
    };
    // An optional string field: absent, null or empty is `None`.
    let optional = |field: &str| match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(non_empty(s)),
        Some(other) => Err(format!(
            "field `{field}` must be a string, found {}",
            json_kind(other)
        )),
    };
    let target = optional(&fields.target)?;
    let mention = optional(&fields.mention)?;
    let id = match object.get(&fields.id) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => non_empty(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(format!(
                "field `{}` must be a string or a number, found {}",
                fields.id,
                json_kind(other)
            ));
        }
    };

    let mut labels = Vec::with_capacity(fields.heads.len());
    for (head, field) in &fields.heads {
        let label = match object.get(field) {
            // A head read from a field named `labels` yields to the labels object.
            Some(Value::Object(_)) if field == LABELS_KEY => None,
            Some(value) => json_label(value).map_err(|reason| {
                if field == head {
                    format!("field `{field}`: {reason}")
                } else {
                    format!("field `{field}` (head {head:?}): {reason}")
                }
            })?,
            None => None,
        };
        labels.push(label);
    }

    match object.get(LABELS_KEY) {
        Some(Value::Object(map)) => {
            for (key, value) in map {
                let Some(position) = fields.heads.iter().position(|(head, _)| head == key) else {
                    return Err(format!(
                        "label for head {key:?}, which the model does not have (heads: {})",
                        fields.head_names().join(", ")
                    ));
                };
                let label = json_label(value)
                    .map_err(|reason| format!("`{LABELS_KEY}.{key}`: {reason}"))?;
                let Some(label) = label else { continue };
                match &labels[position] {
                    Some(flat) if *flat != label => {
                        return Err(format!(
                            "head {key:?} is labelled twice with different labels: field \
                             `{}` says {flat:?}, `{LABELS_KEY}.{key}` says {label:?}",
                            fields.heads[position].1
                        ));
                    }
                    _ => labels[position] = Some(label),
                }
            }
        }
        Some(Value::Null) | None => {}
        Some(other) => {
            if !fields.heads.iter().any(|(_, field)| field == LABELS_KEY) {
                return Err(format!(
                    "field `{LABELS_KEY}` must be an object mapping head names to labels, \
                     found {}",
                    json_kind(other)
                ));
            }
        }
    }

    if labels.iter().all(Option::is_none) {
        let looked: Vec<&str> = fields.heads.iter().map(|(_, f)| f.as_str()).collect();
        return Err(format!(
            "no label for any head (looked for fields: {}, and a `{LABELS_KEY}` object)",
            looked.join(", ")
        ));
    }
    Ok(Example {
        text,
        target,
        mention,
        id,
        labels,
        source,
        line,
    })
}

/// Reads CSV (`delimiter` b',') or TSV (b'\t') with a header row.
fn read_delimited(
    reader: impl Read,
    delimiter: u8,
    path: &Path,
    source: usize,
    fields: &FieldMap,
) -> Result<Vec<Example>> {
    let mut rows = DelimitedRecords::new(reader, delimiter, &path.display().to_string())?;
    let header_error = |rows: &DelimitedRecords<_>, what: String| {
        rows.error(
            rows.header_line(),
            format!("{what} (columns: {})", rows.columns().join(", ")),
        )
    };
    let Some(text_col) = rows.column(&fields.text) else {
        let what = format!("no column `{}` in the header", fields.text);
        return Err(header_error(&rows, what));
    };
    let target_col = rows.column(&fields.target);
    let mention_col = rows.column(&fields.mention);
    let id_col = rows.column(&fields.id);
    let head_cols: Vec<Option<usize>> = fields.heads.iter().map(|(_, f)| rows.column(f)).collect();
    if head_cols.iter().all(Option::is_none) {
        let wanted: Vec<&str> = fields.heads.iter().map(|(_, f)| f.as_str()).collect();
        let what = format!(
            "none of the label columns ({}) is in the header",
            wanted.join(", ")
        );
        return Err(header_error(&rows, what));
    }
    let present: Vec<&str> = fields
        .heads
        .iter()
        .zip(&head_cols)
        .filter(|(_, col)| col.is_some())
        .map(|((_, f), _)| f.as_str())
        .collect();

    let mut examples = Vec::new();
    while let Some(row) = rows.next_row()? {
        let text = row.cell(text_col)?;
        if text.trim().is_empty() {
            return Err(row.error("empty text"));
        }
        let target = target_col
            .map(|c| row.cell(c))
            .transpose()?
            .and_then(non_empty);
        let mention = mention_col
            .map(|c| row.cell(c))
            .transpose()?
            .and_then(non_empty);
        let id = id_col.map(|c| row.cell(c)).transpose()?.and_then(non_empty);
        let mut labels = Vec::with_capacity(head_cols.len());
        for col in &head_cols {
            labels.push(col.map(|c| row.cell(c)).transpose()?.and_then(non_empty));
        }
        if labels.iter().all(Option::is_none) {
            return Err(row.error(format!(
                "no label for any head (looked for columns: {})",
                present.join(", ")
            )));
        }
        examples.push(Example {
            text: text.to_string(),
            target,
            mention,
            id,
            labels,
            source,
            line: row.line(),
        });
    }
    Ok(examples)
}

/// The label set of each head, in the order the model's outputs use.
///
/// ```
/// use standpoint::data::{HeadLabels, LabelSchema};
///
/// let schema: LabelSchema = serde_json::from_str(
///     r#"{"heads": [{"name": "stance", "labels": ["against", "neutral", "favor"]}]}"#,
/// )
/// .unwrap();
/// assert_eq!(schema.head("stance").unwrap().index_of("favor"), Some(2));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelSchema {
    /// One entry per head.
    pub heads: Vec<HeadLabels>,
}

/// The labels of one head; a label's position is its class index.
///
/// ```
/// use standpoint::data::HeadLabels;
/// let head = HeadLabels { name: "sentiment".into(), labels: vec!["neg".into(), "pos".into()] };
/// assert_eq!(head.index_of("pos"), Some(1));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadLabels {
    /// The head's name.
    pub name: String,
    /// Its labels, in class-index order.
    pub labels: Vec<String>,
}

impl HeadLabels {
    /// The class index of `label`, if it is one of this head's labels.
    ///
    /// ```
    /// use standpoint::data::HeadLabels;
    /// let head = HeadLabels { name: "h".into(), labels: vec!["a".into(), "b".into()] };
    /// assert_eq!(head.index_of("c"), None);
    /// ```
    pub fn index_of(&self, label: &str) -> Option<u32> {
        self.labels
            .iter()
            .position(|l| l == label)
            .map(|i| i as u32)
    }
}

impl LabelSchema {
    /// Reads a JSON schema file:
    /// `{"heads": [{"name": "stance", "labels": ["against", "neutral", "favor"]}, ...]}`.
    ///
    /// Errors: [`Error::Io`] when unreadable, [`Error::Json`] when not such JSON,
    /// [`Error::InvalidConfig`] for no heads, a head named twice, an empty name or label,
    /// a head with fewer than 2 labels, or a label listed twice.
    ///
    /// ```
    /// # fn main() -> standpoint::Result<()> {
    /// use standpoint::data::LabelSchema;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("labels.json");
    /// std::fs::write(&path, r#"{"heads": [{"name": "stance", "labels": ["against", "favor"]}]}"#)
    ///     .unwrap();
    /// let schema = LabelSchema::from_file(&path)?;
    /// assert_eq!(schema.heads[0].labels, ["against", "favor"]);
    /// # Ok(()) }
    /// ```
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let schema: LabelSchema = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        schema.check(path)?;
        Ok(schema)
    }

    /// Validates a schema read from `path`.
    fn check(&self, path: &Path) -> Result<()> {
        if self.heads.is_empty() {
            return Err(Error::config(path, "heads", "no heads"));
        }
        let mut names = HashSet::new();
        for (i, head) in self.heads.iter().enumerate() {
            let key = format!("heads[{i}]");
            if head.name.trim().is_empty() {
                return Err(Error::config(
                    path,
                    &format!("{key}.name"),
                    "empty head name",
                ));
            }
            if !names.insert(head.name.as_str()) {
                return Err(Error::config(
                    path,
                    &format!("{key}.name"),
                    format!("head {:?} is listed twice", head.name),
                ));
            }
            let key = format!("{key}.labels");
            if head.labels.len() < 2 {
                return Err(Error::config(
                    path,
                    &key,
                    format!(
                        "head {:?} has {} label(s); a head needs at least 2",
                        head.name,
                        head.labels.len()
                    ),
                ));
            }
            let mut labels = HashSet::new();
            for label in &head.labels {
                if label.trim().is_empty() {
                    return Err(Error::config(
                        path,
                        &key,
                        format!("head {:?} has an empty label", head.name),
                    ));
                }
                if !labels.insert(label.as_str()) {
                    return Err(Error::config(
                        path,
                        &key,
                        format!("head {:?} lists label {label:?} twice", head.name),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Collects the labels seen for each head. `heads[i]` names the head whose labels are
    /// `example.labels[i]` (the [`FieldMap::heads`] order the examples were read with).
    ///
    /// Labels are sorted, so the schema does not depend on file order: numerically when
    /// every label of the head is an integer (`"2"` before `"10"`), else by their text.
    /// A head with fewer than 2 distinct labels is [`Error::InvalidOption`] (option `data`).
    ///
    /// ```
    /// # fn main() -> standpoint::Result<()> {
    /// use standpoint::data::{Example, LabelSchema};
    ///
    /// let example = |label: &str| Example {
    ///     text: "t".into(), target: None, mention: None, id: None,
    ///     labels: vec![Some(label.into())], source: 0, line: 1,
    /// };
    /// let examples = [example("neutral"), example("against"), example("favor")];
    /// let schema = LabelSchema::infer(&examples, &["stance"])?;
    /// assert_eq!(schema.heads[0].labels, ["against", "favor", "neutral"]);
    /// assert!(LabelSchema::infer(&examples[..1], &["stance"]).is_err());
    /// # Ok(()) }
    /// ```
    pub fn infer<S: AsRef<str>>(examples: &[Example], heads: &[S]) -> Result<Self> {
        let all: Vec<usize> = (0..heads.len()).collect();
        Self::infer_slots(examples, heads, &all)
    }

    /// [`LabelSchema::infer`] for the heads at `slots` of `heads` only (the others, such as
    /// heads a starting model already has, keep their own labels and are not read).
    ///
    /// ```
    /// # fn main() -> standpoint::Result<()> {
    /// use standpoint::data::{Example, LabelSchema};
    /// let example = |stance: &str, topic: &str| Example {
    ///     text: "t".into(), target: None, mention: None, id: None,
    ///     labels: vec![Some(stance.into()), Some(topic.into())], source: 0, line: 1,
    /// };
    /// // `stance` has one label only, but it is not inferred.
    /// let examples = [example("favor", "trade"), example("favor", "war")];
    /// let schema = LabelSchema::infer_slots(&examples, &["stance", "topic"], &[1])?;
    /// assert_eq!(schema.heads.len(), 1);
    /// assert_eq!(schema.heads[0].labels, ["trade", "war"]);
    /// # Ok(()) }
    /// ```
    pub fn infer_slots<S: AsRef<str>>(
        examples: &[Example],
        heads: &[S],
        slots: &[usize],
    ) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidOption {
            option: "data",
            reason,
        };
        let mut seen: Vec<HashSet<&str>> = vec![HashSet::new(); slots.len()];
        for example in examples {
            if example.labels.len() != heads.len() {
                return Err(invalid(format!(
                    "an example (source {}, line {}) has {} label slots for {} heads",
                    example.source,
                    example.line,
                    example.labels.len(),
                    heads.len()
                )));
            }
            for (set, &slot) in seen.iter_mut().zip(slots) {
                if let Some(label) = &example.labels[slot] {
                    set.insert(label.as_str());
                }
            }
        }
        let mut out = Vec::with_capacity(slots.len());
        for (&slot, set) in slots.iter().zip(seen) {
            let head = heads[slot].as_ref();
            let mut labels: Vec<String> = set.into_iter().map(str::to_string).collect();
            sort_labels(&mut labels);
            if labels.len() < 2 {
                let what = match labels.first() {
                    None => "no labels".to_string(),
                    Some(only) => format!("only the label {only:?}"),
                };
                return Err(invalid(format!(
                    "head {head:?} has {what} in the data; a head needs at least 2 distinct \
                     labels (add examples or give a label schema)"
                )));
            }
            out.push(HeadLabels {
                name: head.to_string(),
                labels,
            });
        }
        Ok(LabelSchema { heads: out })
    }

    /// The head called `name`.
    ///
    /// ```
    /// use standpoint::data::{HeadLabels, LabelSchema};
    /// let schema = LabelSchema { heads: vec![HeadLabels { name: "h".into(), labels: vec![] }] };
    /// assert!(schema.head("h").is_some() && schema.head("x").is_none());
    /// ```
    pub fn head(&self, name: &str) -> Option<&HeadLabels> {
        self.heads.iter().find(|h| h.name == name)
    }
}

/// Sorts numerically when every label is an integer, else by text.
fn sort_labels(labels: &mut [String]) {
    let numeric: Option<Vec<i128>> = labels.iter().map(|l| l.parse().ok()).collect();
    match numeric {
        Some(_) => labels.sort_by_key(|l| l.parse::<i128>().unwrap_or_default()),
        None => labels.sort(),
    }
}

/// An example with its labels as class indices.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledExample {
    /// The sentence.
    pub text: String,
    /// The actor the stance is judged against, when given.
    pub target: Option<String>,
    /// The words of the text that mention the target, when given.
    pub mention: Option<String>,
    /// One entry per head, in [`LabelSchema::heads`] order: the label's index in that
    /// head's labels, or `None` where the example leaves the head unlabelled.
    pub labels: Vec<Option<u32>>,
    /// Index of the example's [`DataSource`].
    pub source: usize,
    /// 1-based line in the source file.
    pub line: usize,
}

/// Maps every example's labels to indices into `schema`.
///
/// Heads are matched by name: a schema head that `fields` does not read is unlabelled
/// everywhere; a head `fields` reads that the schema lacks is [`Error::InvalidOption`].
/// A label the schema does not list is an [`Error::Record`] naming the example's file
/// (`sources[example.source].path`) and line.
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::data::{
///     DataSource, Example, FieldMap, HeadLabels, LabelSchema, encode_labels,
/// };
///
/// let schema = LabelSchema {
///     heads: vec![HeadLabels { name: "stance".into(), labels: vec!["against".into(), "favor".into()] }],
/// };
/// let fields = FieldMap::for_heads(&["stance"]);
/// let sources = [DataSource::new("train.jsonl")];
/// let example = |label: &str| Example {
///     text: "t".into(), target: None, mention: None, id: None,
///     labels: vec![Some(label.into())], source: 0, line: 7,
/// };
/// let encoded = encode_labels(vec![example("favor")], &fields, &schema, &sources)?;
/// assert_eq!(encoded[0].labels, [Some(1)]);
/// let err = encode_labels(vec![example("pro")], &fields, &schema, &sources).unwrap_err();
/// assert!(err.to_string().starts_with("train.jsonl:7: unknown label \"pro\""));
/// # Ok(()) }
/// ```
pub fn encode_labels(
    examples: Vec<Example>,
    fields: &FieldMap,
    schema: &LabelSchema,
    sources: &[DataSource],
) -> Result<Vec<LabelledExample>> {
    for (head, _) in &fields.heads {
        if schema.head(head).is_none() {
            return Err(Error::InvalidOption {
                option: "data",
                reason: format!(
                    "labels are read for head {head:?}, which the label schema lacks \
                     (schema heads: {})",
                    schema
                        .heads
                        .iter()
                        .map(|h| h.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    // For each schema head, the slot of `Example::labels` that holds its label.
    let slots: Vec<Option<usize>> = schema
        .heads
        .iter()
        .map(|h| fields.heads.iter().position(|(name, _)| *name == h.name))
        .collect();
    // Index lookups, built once.
    let indices: Vec<HashMap<&str, u32>> = schema
        .heads
        .iter()
        .map(|h| {
            h.labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.as_str(), i as u32))
                .collect()
        })
        .collect();

    let source_name = |index: usize| -> String {
        sources
            .get(index)
            .map(|s| s.path.display().to_string())
            .unwrap_or_else(|| format!("<source {index}>"))
    };
    let mut out = Vec::with_capacity(examples.len());
    for example in examples {
        let error = |reason: String| Error::Record {
            source_name: source_name(example.source),
            line: example.line,
            reason,
        };
        if example.labels.len() != fields.heads.len() {
            return Err(error(format!(
                "the example has {} label slots for {} heads",
                example.labels.len(),
                fields.heads.len()
            )));
        }
        let mut labels = Vec::with_capacity(schema.heads.len());
        for ((head, slot), index) in schema.heads.iter().zip(&slots).zip(&indices) {
            let label = match slot.and_then(|s| example.labels[s].as_deref()) {
                None => None,
                Some(label) => Some(*index.get(label).ok_or_else(|| {
                    error(format!(
                        "unknown label {label:?} for head {:?} (known: {})",
                        head.name,
                        head.labels.join(", ")
                    ))
                })?),
            };
            labels.push(label);
        }
        if labels.iter().all(Option::is_none) {
            return Err(error("no label for any head".into()));
        }
        out.push(LabelledExample {
            text: example.text,
            target: example.target,
            mention: example.mention,
            labels,
            source: example.source,
            line: example.line,
        });
    }
    Ok(out)
}

/// Per schema head, how many examples carry each of its labels (index = class index).
/// Unlabelled heads are not counted.
///
/// ```
/// use standpoint::data::{HeadLabels, LabelSchema, LabelledExample, label_counts};
///
/// let schema = LabelSchema {
///     heads: vec![HeadLabels { name: "stance".into(), labels: vec!["a".into(), "b".into()] }],
/// };
/// let example = |label| LabelledExample {
///     text: "t".into(), target: None, mention: None, labels: vec![label], source: 0, line: 1,
/// };
/// let examples = [example(Some(1)), example(Some(1)), example(None)];
/// assert_eq!(label_counts(&examples, &schema), [vec![0, 2]]);
/// ```
pub fn label_counts(examples: &[LabelledExample], schema: &LabelSchema) -> Vec<Vec<u64>> {
    let mut counts: Vec<Vec<u64>> = schema
        .heads
        .iter()
        .map(|h| vec![0; h.labels.len()])
        .collect();
    for example in examples {
        for (head, label) in counts.iter_mut().zip(&example.labels) {
            if let Some(count) = label.and_then(|l| head.get_mut(l as usize)) {
                *count += 1;
            }
        }
    }
    counts
}
