//! Reading CSV and TSV with a header row: the one strict reader behind `label`, `train` and
//! `eval`.
//!
//! Strict means: a quote that opens a field and never closes (which would swallow the rest of
//! the file into one cell), a row with a different number of fields than the header, a record
//! longer than [`MAX_LINE_BYTES`], invalid UTF-8 in the header or in a cell that is read, and a
//! column named twice are errors naming the file and line, never silently accepted.

use std::collections::VecDeque;
use std::io::{self, Read};

use crate::data::jsonl::MAX_LINE_BYTES;
use crate::error::{Error, Result};

/// The records of a CSV or TSV stream under its header row, with 1-based line numbers.
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::data::delimited::DelimitedRecords;
///
/// let data = "id,text\n1,\"NATO said, again, no.\"\n2,Talks resumed.\n";
/// let mut rows = DelimitedRecords::new(data.as_bytes(), b',', "news.csv")?;
/// let text = rows.column("text").unwrap();
/// let mut texts = Vec::new();
/// while let Some(row) = rows.next_row()? {
///     texts.push((row.line(), row.cell(text)?.to_string()));
/// }
/// assert_eq!(texts, [(2, "NATO said, again, no.".to_string()), (3, "Talks resumed.".to_string())]);
///
/// // A quote left open would swallow every later row: refused, naming the line.
/// let broken = "id,text\n1,\"NATO said hello.\n2,Russia left.\n";
/// let mut rows = DelimitedRecords::new(broken.as_bytes(), b',', "news.csv")?;
/// let error = loop {
///     match rows.next_row() {
///         Ok(Some(_)) => continue,
///         Ok(None) => panic!("accepted an unterminated quote"),
///         Err(e) => break e.to_string(),
///     }
/// };
/// assert!(error.starts_with("news.csv:2: "), "{error}");
/// # Ok(()) }
/// ```
pub struct DelimitedRecords<R: Read> {
    csv: csv::Reader<Scanned<R>>,
    source_name: String,
    columns: Vec<String>,
    header_line: usize,
    record: csv::ByteRecord,
    /// The end, an unclosed quote or a read error was reached: no more records.
    finished: bool,
}

/// One record of a [`DelimitedRecords`] stream.
pub struct Row<'a> {
    record: &'a csv::ByteRecord,
    columns: &'a [String],
    source_name: &'a str,
    line: usize,
}

impl<R: Read> DelimitedRecords<R> {
    /// Reads the header row of `reader`; `delimiter` is `b','` for CSV, `b'\t'` for TSV, and
    /// `source_name` appears in error messages. A leading byte-order mark is dropped.
    ///
    /// Errors: [`Error::Record`] for an empty file, a header that is not UTF-8 or names a
    /// column twice; [`Error::Io`] when reading fails.
    pub fn new(reader: R, delimiter: u8, source_name: &str) -> Result<Self> {
        let csv = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(Scanned::new(reader, delimiter));
        let mut records = DelimitedRecords {
            csv,
            source_name: source_name.to_string(),
            columns: Vec::new(),
            header_line: 1,
            record: csv::ByteRecord::new(),
            finished: false,
        };
        let found = records.read()?;
        let header_line = records.record_line();
        records.header_line = header_line;
        let header = std::mem::take(&mut records.record);
        if !found || header.is_empty() || (header.len() == 1 && header[0].trim_ascii().is_empty()) {
            return Err(records.error(
                header_line,
                "empty file: a header row naming the columns is required",
            ));
        }
        for (i, cell) in header.iter().enumerate() {
            let cell = if i == 0 {
                cell.strip_prefix(b"\xef\xbb\xbf").unwrap_or(cell)
            } else {
                cell
            };
            let name = std::str::from_utf8(cell).map_err(|e| {
                records.error(
                    header_line,
                    format!(
                        "invalid UTF-8 in the header (column {}, byte {})",
                        i + 1,
                        e.valid_up_to()
                    ),
                )
            })?;
            let name = name.trim().to_string();
            if !name.is_empty() && records.columns.contains(&name) {
                return Err(records.error(
                    header_line,
                    format!("column `{name}` appears more than once in the header"),
                ));
            }
            records.columns.push(name);
        }
        Ok(records)
    }

    /// The header's column names, trimmed.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The index of the column named `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The line of the header row.
    pub fn header_line(&self) -> usize {
        self.header_line
    }

    /// The source's name, as given.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// An [`Error::Record`] at `line` of this source.
    pub fn error(&self, line: usize, reason: impl Into<String>) -> Error {
        Error::Record {
            source_name: self.source_name.clone(),
            line,
            reason: reason.into(),
        }
    }

    /// The next record, or `None` at the end of the stream.
    ///
    /// Errors: [`Error::Record`] for a row whose field count differs from the header's, a
    /// quote left open at the end of the file, or a record past [`MAX_LINE_BYTES`];
    /// [`Error::Io`] when reading fails.
    pub fn next_row(&mut self) -> Result<Option<Row<'_>>> {
        if !self.read()? {
            return Ok(None);
        }
        let line = self.record_line();
        if self.record.len() != self.columns.len() {
            return Err(self.error(
                line,
                format!(
                    "the row has {} fields, the header has {}",
                    self.record.len(),
                    self.columns.len()
                ),
            ));
        }
        Ok(Some(Row {
            record: &self.record,
            columns: &self.columns,
            source_name: &self.source_name,
            line,
        }))
    }

    /// Reads one record into `self.record`; false at the end of the stream. After the end,
    /// an unclosed quote or a read error, every later call is false.
    fn read(&mut self) -> Result<bool> {
        if self.finished {
            return Ok(false);
        }
        let read = self.csv.read_byte_record(&mut self.record);
        if !matches!(read, Ok(true)) {
            self.finished = true;
        }
        // A quote still open inside what the parser has consumed swallowed the rest of the
        // file: refuse it before handing out the swallowed record.
        let swallowed = match (&read, self.csv.get_ref().unclosed_quote()) {
            (Ok(_), Some((offset, line))) if offset < self.csv.position().byte() => Some(line),
            _ => None,
        };
        if let Some(line) = swallowed {
            self.finished = true;
            return Err(self.error(
                line,
                "a quote opens a field here and is never closed (it would swallow the rest \
                 of the file); close it, or double a quote meant literally",
            ));
        }
        let e = match read {
            Ok(found) => return Ok(found),
            Err(e) => e,
        };
        let line = e
            .position()
            .map_or(0, |p| self.csv.get_mut().line_of_byte(p.byte()));
        Err(match e.into_kind() {
            csv::ErrorKind::Io(io) if io.kind() == io::ErrorKind::InvalidData => {
                self.error(line, io.to_string())
            }
            csv::ErrorKind::Io(io) => Error::io(&self.source_name, io),
            other => self.error(line, format!("cannot read the row: {other:?}")),
        })
    }

    /// The line of the record just read.
    fn record_line(&mut self) -> usize {
        let byte = self.record.position().map_or(0, |p| p.byte());
        self.csv.get_mut().line_of_byte(byte)
    }
}

impl Row<'_> {
    /// The 1-based line where the record starts.
    pub fn line(&self) -> usize {
        self.line
    }

    /// An [`Error::Record`] at this record's line.
    pub fn error(&self, reason: impl Into<String>) -> Error {
        Error::Record {
            source_name: self.source_name.to_string(),
            line: self.line,
            reason: reason.into(),
        }
    }

    /// The cell of column `column` as text.
    ///
    /// Errors: [`Error::Record`] naming the column when the cell is not UTF-8.
    pub fn cell(&self, column: usize) -> Result<&str> {
        let bytes = self.record.get(column).unwrap_or_default();
        std::str::from_utf8(bytes).map_err(|e| {
            self.error(format!(
                "invalid UTF-8 in column `{}` at byte {}",
                self.columns.get(column).map_or("?", String::as_str),
                e.valid_up_to()
            ))
        })
    }
}

/// Where a byte of the stream stands in the grammar the csv crate reads (RFC 4180 quoting,
/// doubled quotes inside quoted fields, a quote elsewhere taken literally).
#[derive(Clone, Copy, PartialEq)]
enum Quoting {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

/// A reader that watches the bytes it passes to the csv parser: whether a quoted field is
/// still open at the end (the parser would accept it), how long the current record is (the
/// parser would buffer it without bound), and where the line breaks are (the parser's own line
/// count stands before the blank lines and `\n` of a `\r\n` it skips).
struct Scanned<R> {
    inner: R,
    delimiter: u8,
    state: Quoting,
    /// Bytes passed so far.
    offset: u64,
    /// Line breaks not yet behind a record asked about: (offset, is `\n`).
    breaks: VecDeque<(u64, bool)>,
    /// `\n` bytes before the first of `breaks`.
    newlines_before: usize,
    /// `\n` bytes passed so far.
    newlines: usize,
    /// Bytes of the record being passed.
    record_bytes: usize,
    /// The offset and line of the last quoted field's opening quote (meaningful while the
    /// state is `Quoted`: only a field start enters it, and that sets this).
    open_quote: Option<(u64, usize)>,
}

impl<R> Scanned<R> {
    fn new(inner: R, delimiter: u8) -> Self {
        Scanned {
            inner,
            delimiter,
            state: Quoting::FieldStart,
            offset: 0,
            breaks: VecDeque::new(),
            newlines_before: 0,
            newlines: 0,
            record_bytes: 0,
            open_quote: None,
        }
    }

    /// The line of a quote still open at the end of what was passed.
    fn unclosed_quote(&self) -> Option<(u64, usize)> {
        (self.state == Quoting::Quoted)
            .then_some(self.open_quote)
            .flatten()
    }

    /// The line of the first byte at or after `byte` that is not a line break. Offsets asked
    /// about must not decrease.
    fn line_of_byte(&mut self, byte: u64) -> usize {
        let mut start = byte;
        while let Some(&(at, newline)) = self.breaks.front() {
            if at > start {
                break;
            }
            if at == start {
                start += 1;
            }
            self.breaks.pop_front();
            self.newlines_before += usize::from(newline);
        }
        self.newlines_before + 1
    }

    fn scan(&mut self, bytes: &[u8]) -> io::Result<()> {
        for &b in bytes {
            let line_break = b == b'\n' || b == b'\r';
            if line_break {
                self.breaks.push_back((self.offset, b == b'\n'));
            }
            self.state = match (self.state, b) {
                (Quoting::Quoted, b'"') => Quoting::QuoteInQuoted,
                (Quoting::Quoted, _) => Quoting::Quoted,
                (Quoting::QuoteInQuoted, b'"') => Quoting::Quoted,
                (Quoting::FieldStart, b'"') => {
                    self.open_quote = Some((self.offset, self.newlines + 1));
                    Quoting::Quoted
                }
                (_, b) if b == self.delimiter => Quoting::FieldStart,
                (_, b'\n' | b'\r') => {
                    self.record_bytes = 0;
                    Quoting::FieldStart
                }
                _ => Quoting::Unquoted,
            };
            if b == b'\n' {
                self.newlines += 1;
            }
            self.offset += 1;
            self.record_bytes += 1;
            if self.record_bytes > MAX_LINE_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a record longer than {} MiB (a quote never closed, or not CSV)",
                        MAX_LINE_BYTES >> 20
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Scanned<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scan(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(data: &str) -> Result<Vec<(usize, Vec<String>)>> {
        let mut records = DelimitedRecords::new(data.as_bytes(), b',', "t.csv")?;
        let mut out = Vec::new();
        while let Some(row) = records.next_row()? {
            let cells = (0..row.record.len())
                .map(|i| row.cell(i).map(str::to_string))
                .collect::<Result<Vec<_>>>()?;
            out.push((row.line(), cells));
        }
        Ok(out)
    }

    #[test]
    fn lines_count_past_blank_lines_crlf_and_quoted_breaks() {
        let got = rows("a,b\r\n1,\"x\r\ny\"\r\n\r\n\r\n2,z\r\n").unwrap();
        assert_eq!(got[0], (2, vec!["1".into(), "x\r\ny".into()]));
        assert_eq!(got[1], (6, vec!["2".into(), "z".into()]));
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_is_literal() {
        let got = rows("a,b\n1,a 5\" screen\n2,ok\n").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1[1], "a 5\" screen");
    }

    #[test]
    fn doubled_quotes_close_nothing() {
        let got = rows("a,b\n1,\"he said \"\"no\"\"\"\n").unwrap();
        assert_eq!(got[0].1[1], "he said \"no\"");
    }

    #[test]
    fn an_unterminated_quote_is_refused_at_its_line() {
        let e = rows("a,b\n1,ok\n2,\"never closed\n3,x\n4,y\n").unwrap_err();
        assert_eq!(e.to_string().split(": ").next(), Some("t.csv:3"), "{e}");
        let mut records = DelimitedRecords::new("a\n\"open\n".as_bytes(), b',', "t.csv").unwrap();
        assert!(records.next_row().is_err());
        assert!(
            records.next_row().unwrap().is_none(),
            "the error is reported once"
        );
        assert_eq!(rows("a,b\n1,\"closed at the end\"").unwrap().len(), 1);
    }

    #[test]
    fn uneven_rows_and_duplicate_columns_are_refused() {
        let e = rows("a,b\n1,2,3\n").unwrap_err().to_string();
        assert!(e.starts_with("t.csv:2: the row has 3 fields"), "{e}");
        let e = rows("a,a\n1,2\n").unwrap_err().to_string();
        assert!(e.contains("appears more than once"), "{e}");
        let e = rows("").unwrap_err().to_string();
        assert!(e.contains("empty file"), "{e}");
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_column() {
        let records =
            DelimitedRecords::new("\u{feff}text,id\nx,1\n".as_bytes(), b',', "t").unwrap();
        assert_eq!(records.column("text"), Some(0));
    }

    #[test]
    fn an_endless_record_is_refused() {
        let endless = io::repeat(b'x');
        let mut records = DelimitedRecords::new(
            io::Cursor::new(b"text\n".to_vec()).chain(endless),
            b',',
            "zero",
        )
        .unwrap();
        let e = records
            .next_row()
            .err()
            .expect("an endless record is an error");
        assert!(e.to_string().contains("longer than 64 MiB"), "{e}");
    }
}
