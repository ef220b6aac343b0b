//! Reading queries from JSONL: one `{"text": ..., "target": ...}` object per line.

use std::io::{BufRead, Read};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// One input row: the sentence, an optional target and an optional caller id.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct QueryRecord {
    /// The sentence to classify.
    pub text: String,
    /// The actor the stance is judged against.
    #[serde(default)]
    pub target: Option<String>,
    /// A holder candidate, for a directed head (see [`crate::Query::directed`]).
    #[serde(default)]
    pub holder: Option<String>,
    /// Any identifier the caller wants carried to the output.
    #[serde(default)]
    pub id: Option<Value>,
    /// 1-based line number in the source.
    #[serde(skip)]
    pub line: usize,
}

/// The longest line a JSONL reader accepts: a line past it (`/dev/zero`, a file with no line
/// breaks) is an [`Error::Record`] instead of unbounded memory.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// The non-blank lines of a JSONL stream, trimmed and checked for UTF-8 (a leading byte-order
/// mark is dropped), with 1-based line numbers. Shared by every JSONL reader of the crate.
pub struct JsonlLines<R> {
    reader: R,
    source_name: String,
    line: usize,
    buf: Vec<u8>,
    /// The last line was cut at [`MAX_LINE_BYTES`]; its rest is skipped first.
    overlong: bool,
}

impl<R: BufRead> JsonlLines<R> {
    /// Reads from `reader`; `source_name` appears in error messages.
    pub fn new(reader: R, source_name: &str) -> Self {
        JsonlLines {
            reader,
            source_name: source_name.to_string(),
            line: 0,
            buf: Vec::new(),
            overlong: false,
        }
    }

    /// The source's name, as given.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// A record error at the current line.
    pub fn error(&self, reason: impl Into<String>) -> Error {
        Error::Record {
            source_name: self.source_name.clone(),
            line: self.line,
            reason: reason.into(),
        }
    }

    /// The next non-blank line and its number; `None` at the end. Invalid UTF-8 is an
    /// [`Error::Record`] naming the line; a read failure an [`Error::Io`].
    pub fn next_line(&mut self) -> Option<Result<(usize, &str)>> {
        const BOM: &[u8] = b"\xef\xbb\xbf";
        if std::mem::take(&mut self.overlong)
            && let Err(e) = self.skip_rest_of_line()
        {
            return Some(Err(Error::io(&self.source_name, e)));
        }
        let start = loop {
            self.buf.clear();
            self.line += 1;
            let limit = MAX_LINE_BYTES as u64 + 1;
            match (&mut self.reader)
                .take(limit)
                .read_until(b'\n', &mut self.buf)
            {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(Error::io(&self.source_name, e))),
            }
            if self.buf.len() > MAX_LINE_BYTES && !self.buf.ends_with(b"\n") {
                self.overlong = true;
                return Some(Err(self.error(format!(
                    "line longer than {} MiB (no line break)",
                    MAX_LINE_BYTES >> 20
                ))));
            }
            let start = if self.line == 1 && self.buf.starts_with(BOM) {
                BOM.len()
            } else {
                0
            };
            match std::str::from_utf8(&self.buf[start..]) {
                Ok(text) if text.trim().is_empty() => continue,
                Ok(_) => break start,
                Err(e) => {
                    let at = e.valid_up_to();
                    return Some(Err(
                        self.error(format!("invalid UTF-8 at byte {at} of the line"))
                    ));
                }
            }
        };
        // Checked above; parsed again only because the borrow cannot leave the loop.
        let text = std::str::from_utf8(&self.buf[start..])
            .unwrap_or_default()
            .trim();
        Some(Ok((self.line, text)))
    }

    fn skip_rest_of_line(&mut self) -> std::io::Result<()> {
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                return Ok(());
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(at) => {
                    self.reader.consume(at + 1);
                    return Ok(());
                }
                None => {
                    let len = chunk.len();
                    self.reader.consume(len);
                }
            }
        }
    }
}

/// Iterates over the records of a JSONL stream, skipping blank lines.
///
/// Each error names the source and the line: invalid UTF-8, malformed JSON, a missing
/// or mistyped field.
///
/// ```
/// use standpoint::data::jsonl::JsonlQueries;
/// let input = "{\"text\": \"NATO refused.\", \"target\": \"NATO\"}\n\n{\"text\": 5}\n";
/// let mut rows = JsonlQueries::new(input.as_bytes(), "rows.jsonl");
/// assert_eq!(rows.next().unwrap().unwrap().target.as_deref(), Some("NATO"));
/// let err = rows.next().unwrap().unwrap_err();
/// assert!(err.to_string().starts_with("rows.jsonl:3:"));
/// ```
pub struct JsonlQueries<R> {
    lines: JsonlLines<R>,
    unknown: std::collections::BTreeSet<String>,
}

/// The fields a query record reads; others are ignored (and reported by
/// [`JsonlQueries::unknown_fields`]).
pub const QUERY_FIELDS: [&str; 4] = ["text", "target", "holder", "id"];

impl<R: BufRead> JsonlQueries<R> {
    /// Reads from `reader`; `source_name` appears in error messages.
    pub fn new(reader: R, source_name: &str) -> Self {
        JsonlQueries {
            lines: JsonlLines::new(reader, source_name),
            unknown: Default::default(),
        }
    }

    /// Fields seen so far that a query does not read (e.g. `actor` written for `target`),
    /// so a caller can warn about them.
    ///
    /// ```
    /// use standpoint::data::jsonl::JsonlQueries;
    /// let mut rows = JsonlQueries::new("{\"text\": \"t\", \"actor\": \"NATO\"}\n".as_bytes(), "q");
    /// assert!(rows.next().unwrap().is_ok());
    /// assert_eq!(rows.unknown_fields().iter().collect::<Vec<_>>(), ["actor"]);
    /// ```
    pub fn unknown_fields(&self) -> &std::collections::BTreeSet<String> {
        &self.unknown
    }
}

impl<R: BufRead> Iterator for JsonlQueries<R> {
    type Item = Result<QueryRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        let (line, text) = match self.lines.next_line()? {
            Ok(next) => next,
            Err(e) => return Some(Err(e)),
        };
        // Parsed once, as a map: its keys tell the unknown fields, then it becomes the record.
        let parsed = serde_json::from_str::<serde_json::Map<String, Value>>(text).and_then(|map| {
            for key in map.keys() {
                if !QUERY_FIELDS.contains(&key.as_str()) {
                    self.unknown.insert(key.clone());
                }
            }
            serde_json::from_value::<QueryRecord>(Value::Object(map))
        });
        Some(
            parsed
                .map(|mut record| {
                    record.line = line;
                    record
                })
                .map_err(|e| self.lines.error(format!("invalid record: {e}"))),
        )
    }
}

#[cfg(test)]
mod line_limit_tests {
    use super::*;

    #[test]
    fn an_overlong_line_is_an_error_and_the_next_line_still_reads() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\n{\"text\": \"NATO met.\"}\n");
        let mut lines = JsonlLines::new(input.as_slice(), "big.jsonl");
        let error = lines.next_line().unwrap().unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("big.jsonl:1: line longer than")
        );
        let (line, text) = lines.next_line().unwrap().unwrap();
        assert_eq!((line, text), (2, "{\"text\": \"NATO met.\"}"));
        assert!(lines.next_line().is_none());
    }
}
