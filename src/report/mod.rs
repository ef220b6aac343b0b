//! Who toward whom: labelled rows aggregated into a holder × target table, overall or per
//! period.
//!
//! ```
//! # fn main() -> standpoint::Result<()> {
//! use standpoint::report::{DyadTable, ReportOptions, RowRecord};
//! let row = |holder: &str, label: &str| RowRecord {
//!     holder: holder.into(),
//!     target: "NATO".into(),
//!     label: label.into(),
//!     probability: 0.9,
//!     date: None,
//! };
//! let rows = [row("Russia", "against"), row("Russia", "against"), row("Russia", "favor")];
//! let table = DyadTable::from_records(rows, &ReportOptions::default())?;
//! let cell = &table.cells[0];
//! assert_eq!((cell.holder.as_str(), cell.target.as_str()), ("Russia", "NATO"));
//! assert_eq!(cell.count("against"), 2);
//! assert!((cell.net.unwrap() - (1.0 - 2.0) / 3.0).abs() < 1e-12);
//! # Ok(()) }
//! ```

pub mod plot;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{Datelike, NaiveDate};
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
pub use crate::label::output::OnError;

/// Which part of a date a period keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Period {
    /// `2026-03-04`.
    Day,
    /// ISO week, `2026-W10`.
    Week,
    /// `2026-03`.
    Month,
}

impl std::str::FromStr for Period {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "day" => Ok(Period::Day),
            "week" => Ok(Period::Week),
            "month" => Ok(Period::Month),
            other => Err(Error::InvalidOption {
                option: "period",
                reason: format!("{other:?} (expected day, week or month)"),
            }),
        }
    }
}

impl Period {
    /// The period a date (`YYYY-MM-DD`, optionally followed by a time) falls in.
    ///
    /// ```
    /// use standpoint::report::Period;
    /// assert_eq!(Period::Week.of("2026-01-01T08:00:00Z").unwrap(), "2026-W01");
    /// assert_eq!(Period::Week.of("2027-01-01").unwrap(), "2026-W53");
    /// assert_eq!(Period::Month.of("2026-03-04").unwrap(), "2026-03");
    /// assert!(Period::Day.of("March 4").is_none());
    /// ```
    pub fn of(self, date: &str) -> Option<String> {
        let day = NaiveDate::parse_from_str(date.get(..10)?, "%Y-%m-%d").ok()?;
        Some(match self {
            Period::Day => day.format("%Y-%m-%d").to_string(),
            Period::Week => {
                let week = day.iso_week();
                format!("{}-W{:02}", week.year(), week.week())
            }
            Period::Month => day.format("%Y-%m").to_string(),
        })
    }
}

/// How rows are read and which of them count.
///
/// With the `cli` feature it is also the `standpoint report` command line (`clap::Args`), so
/// the library and the binary share one list of defaults.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ReportOptions {
    /// The head whose labels are counted.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = ReportOptions::default().head))]
    pub head: String,
    /// The row field naming who holds the stance (rows without it count as held by `author`,
    /// the text's own voice).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = ReportOptions::default().holder_field))]
    pub holder_field: String,
    /// The row field naming the target.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = ReportOptions::default().target_field))]
    pub target_field: String,
    /// The row field holding a date (`YYYY-MM-DD...`), for periods and date filters.
    #[cfg_attr(feature = "cli", arg(long))]
    pub date_field: Option<String>,
    /// One cell per period as well (needs the date field): day, week (ISO) or month.
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub period: Option<Period>,
    /// Leave out rows whose label probability is below this.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = ReportOptions::default().min_probability))]
    pub min_probability: f64,
    /// Keep only dyads whose holder and target are both among these (repeatable; none: all).
    #[cfg_attr(feature = "cli", arg(long = "actor"))]
    pub actors: Vec<String>,
    /// Keep rows dated on or after this day (`YYYY-MM-DD`).
    #[cfg_attr(feature = "cli", arg(long))]
    pub from: Option<String>,
    /// Keep rows dated on or before this day.
    #[cfg_attr(feature = "cli", arg(long))]
    pub to: Option<String>,
    /// fail: a row that cannot be read (bad JSON, no label, a date that is not `YYYY-MM-DD`)
    /// stops the read with FILE:LINE: reason; skip: it is counted in [`DyadTable::skipped`].
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = ReportOptions::default().on_error))]
    pub on_error: OnError,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            head: "stance".into(),
            holder_field: "holder".into(),
            target_field: "actor".into(),
            date_field: None,
            period: None,
            min_probability: 0.0,
            actors: Vec::new(),
            from: None,
            to: None,
            on_error: OnError::Fail,
        }
    }
}

impl ReportOptions {
    fn check(&self) -> Result<()> {
        if (self.period.is_some() || self.from.is_some() || self.to.is_some())
            && self.date_field.is_none()
        {
            return Err(Error::InvalidOption {
                option: "period",
                reason: "a period or a date range needs the rows' date field (--date-field)".into(),
            });
        }
        for day in [&self.from, &self.to].into_iter().flatten() {
            if Period::Day.of(day).as_deref() != Some(day.as_str()) {
                return Err(Error::InvalidOption {
                    option: "from/to",
                    reason: format!("{day:?} is not a YYYY-MM-DD day"),
                });
            }
        }
        Ok(())
    }
}

/// One labelled row, reduced to what the table reads.
#[derive(Debug, Clone, PartialEq)]
pub struct RowRecord {
    /// Who holds the stance.
    pub holder: String,
    /// Whom it is toward.
    pub target: String,
    /// The head's label.
    pub label: String,
    /// The label's probability.
    pub probability: f64,
    /// The row's date, when the rows carry one.
    pub date: Option<String>,
}

/// One (holder, target[, period]) cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DyadCell {
    /// Who holds the stance.
    pub holder: String,
    /// Whom it is toward.
    pub target: String,
    /// The period, when the table is per period.
    pub period: Option<String>,
    /// Rows per label, in [`DyadTable::labels`] order.
    pub counts: Vec<usize>,
    /// Rows in the cell.
    pub total: usize,
    /// Mean probability of the rows' labels.
    pub mean_probability: f64,
    /// `(favor − against) / total`, in [−1, 1], when the labels include both.
    pub net: Option<f64>,
    #[serde(skip)]
    labels: Vec<String>,
}

impl DyadCell {
    /// Rows with `label` in this cell.
    pub fn count(&self, label: &str) -> usize {
        self.labels
            .iter()
            .position(|l| l == label)
            .map_or(0, |i| self.counts[i])
    }
}

/// Holder × target (× period) counts of one head's labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DyadTable {
    /// Labels seen, sorted.
    pub labels: Vec<String>,
    /// Cells sorted by holder, target, period.
    pub cells: Vec<DyadCell>,
    /// Rows of the file left out as unreadable under [`OnError::Skip`].
    pub skipped: usize,
}

#[derive(Default)]
struct Tally {
    counts: BTreeMap<String, usize>,
    probability: f64,
}

impl DyadTable {
    /// Aggregates records (already reduced rows) after the options' filters.
    pub fn from_records(
        records: impl IntoIterator<Item = RowRecord>,
        options: &ReportOptions,
    ) -> Result<Self> {
        options.check()?;
        let mut tallies: BTreeMap<(String, String, Option<String>), Tally> = BTreeMap::new();
        let mut labels = std::collections::BTreeSet::new();
        for record in records {
            if record.probability < options.min_probability {
                continue;
            }
            let kept = |actor: &String| options.actors.is_empty() || options.actors.contains(actor);
            if !(kept(&record.holder) && kept(&record.target)) {
                continue;
            }
            let day = record.date.as_deref().and_then(|d| Period::Day.of(d));
            if options.from.is_some() || options.to.is_some() {
                let Some(day) = &day else { continue };
                if options.from.as_ref().is_some_and(|f| day < f)
                    || options.to.as_ref().is_some_and(|t| day > t)
                {
                    continue;
                }
            }
            let period = match options.period {
                Some(p) => match record.date.as_deref().and_then(|d| p.of(d)) {
                    Some(period) => Some(period),
                    None => continue,
                },
                None => None,
            };
            labels.insert(record.label.clone());
            let tally = tallies
                .entry((record.holder, record.target, period))
                .or_default();
            *tally.counts.entry(record.label).or_default() += 1;
            tally.probability += record.probability;
        }
        let labels: Vec<String> = labels.into_iter().collect();
        let has = |l: &str| labels.iter().any(|x| x == l);
        let signed = has("favor") || has("against");
        let cells = tallies
            .into_iter()
            .map(|((holder, target, period), tally)| {
                let counts: Vec<usize> = labels
                    .iter()
                    .map(|l| tally.counts.get(l).copied().unwrap_or(0))
                    .collect();
                let total: usize = counts.iter().sum();
                let get = |l: &str| tally.counts.get(l).copied().unwrap_or(0) as f64;
                DyadCell {
                    holder,
                    target,
                    period,
                    total,
                    mean_probability: tally.probability / total as f64,
                    net: signed.then(|| (get("favor") - get("against")) / total as f64),
                    counts,
                    labels: labels.clone(),
                }
            })
            .collect();
        Ok(DyadTable {
            labels,
            cells,
            skipped: 0,
        })
    }

    /// Reads labelled rows (JSONL as `standpoint label` writes it, or CSV with a header) and
    /// aggregates them.
    pub fn from_file(path: &Path, options: &ReportOptions) -> Result<Self> {
        options.check()?;
        let (records, skipped) = read_rows(path, options)?;
        let mut table = Self::from_records(records, options)?;
        table.skipped = skipped;
        Ok(table)
    }

    /// The table as CSV: one line per cell, a column per label.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<String> = ["holder", "target", "period"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        header.extend(self.labels.iter().cloned());
        header.extend(["total", "mean_probability", "net"].map(String::from));
        writer.write_record(&header).expect("writing to memory");
        for cell in &self.cells {
            let mut line = vec![
                crate::label::output::spreadsheet_safe(&cell.holder).into_owned(),
                crate::label::output::spreadsheet_safe(&cell.target).into_owned(),
                cell.period.clone().unwrap_or_default(),
            ];
            line.extend(cell.counts.iter().map(|c| c.to_string()));
            line.push(cell.total.to_string());
            line.push(format!("{:.4}", cell.mean_probability));
            line.push(cell.net.map(|n| format!("{n:.4}")).unwrap_or_default());
            writer.write_record(&line).expect("writing to memory");
        }
        writer.into_inner().expect("writing to memory")
    }

    /// The table as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("the table serialises");
        out.push(b'\n');
        out
    }
}

/// The table's fields of one row read from a labelled file.
fn record_of(
    value: &Value,
    options: &ReportOptions,
) -> std::result::Result<Option<RowRecord>, String> {
    let text = |field: &str| -> std::result::Result<Option<String>, String> {
        match value.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(format!("field `{field}` must be a string")),
        }
    };
    let Some(target) = text(&options.target_field)? else {
        // A sentence without an actor has no dyad.
        return Ok(None);
    };
    let head = &options.head;
    let (label, probability) = match value.get(head) {
        // JSONL rows: {"label": ..., "score": ...}.
        Some(Value::Object(p)) => (
            p.get("label").and_then(Value::as_str).map(str::to_string),
            p.get("score").and_then(Value::as_f64),
        ),
        // CSV rows: `stance` and `stance_score` columns.
        Some(Value::String(l)) if !l.is_empty() => (
            Some(l.clone()),
            value.get(format!("{head}_score")).and_then(|s| match s {
                Value::String(s) => s.parse().ok(),
                other => other.as_f64(),
            }),
        ),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(format!(
                "no `{head}` label (is `{head}` a head of the model?)"
            ));
        }
        Some(_) => {
            return Err(format!(
                "field `{head}` must be a label or a prediction object"
            ));
        }
    };
    let label = label.ok_or_else(|| format!("`{head}` has no label"))?;
    let probability =
        probability.ok_or_else(|| format!("`{head}` has no score (`{head}_score`)"))?;
    let holder = text(&options.holder_field)?.unwrap_or_else(|| "author".into());
    let date = match &options.date_field {
        Some(field) => match text(field)? {
            Some(date) if Period::Day.of(&date).is_none() => {
                return Err(format!(
                    "field `{field}` is {date:?}, not a date (YYYY-MM-DD, optionally with a time)"
                ));
            }
            date => date,
        },
        None => None,
    };
    Ok(Some(RowRecord {
        holder,
        target,
        label,
        probability,
        date,
    }))
}

/// The records of a rows file and the count of rows skipped as unreadable.
fn read_rows(path: &Path, options: &ReportOptions) -> Result<(Vec<RowRecord>, usize)> {
    let name = path.display().to_string();
    let bad = |line: usize, reason: String| Error::Record {
        source_name: name.clone(),
        line,
        reason,
    };
    let mut skipped = 0;
    let mut rows = 0;
    // Under `Skip`, an unreadable row is counted instead of stopping the read.
    let mut keep = |result: Result<Option<RowRecord>>, records: &mut Vec<RowRecord>| {
        rows += 1;
        match result {
            Ok(Some(record)) => records.push(record),
            Ok(None) => {}
            Err(_) if options.on_error == OnError::Skip => skipped += 1,
            Err(e) => return Err(e),
        }
        Ok(())
    };
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let is_csv = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("csv" | "tsv")
    );
    let mut records = Vec::new();
    if is_csv {
        let delimiter = if path.extension().is_some_and(|e| e == "tsv") {
            b'\t'
        } else {
            b','
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .from_reader(bytes.as_slice());
        let headers = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
        for row in reader.records() {
            let row = match row {
                Ok(row) => row,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line() as usize);
                    keep(Err(bad(line, e.to_string())), &mut records)?;
                    continue;
                }
            };
            let line = row.position().map_or(0, |p| p.line() as usize);
            let object: serde_json::Map<String, Value> = headers
                .iter()
                .zip(row.iter())
                .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
                .collect();
            let record = record_of(&Value::Object(object), options).map_err(|e| bad(line, e));
            keep(record, &mut records)?;
        }
    } else {
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let line_no = i + 1;
            if line.trim_ascii().is_empty() {
                continue;
            }
            let record = std::str::from_utf8(line)
                .map_err(|e| format!("invalid UTF-8: {e}"))
                .and_then(|text| {
                    serde_json::from_str::<Value>(text).map_err(|e| format!("invalid JSON: {e}"))
                })
                .and_then(|value| match value.is_object() {
                    true => record_of(&value, options),
                    false => Err("a row must be a JSON object".into()),
                })
                .map_err(|e| bad(line_no, e));
            keep(record, &mut records)?;
        }
    }
    if records.is_empty() && rows > skipped {
        return Err(Error::InvalidOption {
            option: "rows file",
            reason: format!(
                "{name}: no row names a target in `{}` (label the documents with actors: --actor or --actors-file)",
                options.target_field
            ),
        });
    }
    Ok((records, skipped))
}
