//! Reading queries from JSONL: one `{"text": ..., "target": ...}` object per line.

use std::io::BufRead;

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
    /// Any identifier the caller wants carried to the output.
    #[serde(default)]
    pub id: Option<Value>,
    /// 1-based line number in the source.
    #[serde(skip)]
    pub line: usize,
}

/// Iterates over the records of a JSONL stream, skipping blank lines.
///
/// Each error names the source and the line: invalid UTF-8, malformed JSON, a missing
/// or mistyped field.
///
/// ```
/// use standpoint::records::JsonlQueries;
/// let input = "{\"text\": \"NATO refused.\", \"target\": \"NATO\"}\n\n{\"text\": 5}\n";
/// let mut rows = JsonlQueries::new(input.as_bytes(), "rows.jsonl");
/// assert_eq!(rows.next().unwrap().unwrap().target.as_deref(), Some("NATO"));
/// let err = rows.next().unwrap().unwrap_err();
/// assert!(err.to_string().starts_with("rows.jsonl:3:"));
/// ```
pub struct JsonlQueries<R> {
    reader: R,
    source_name: String,
    line: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> JsonlQueries<R> {
    /// Reads from `reader`; `source_name` appears in error messages.
    pub fn new(reader: R, source_name: &str) -> Self {
        JsonlQueries {
            reader,
            source_name: source_name.to_string(),
            line: 0,
            buf: Vec::new(),
        }
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::Record {
            source_name: self.source_name.clone(),
            line: self.line,
            reason: reason.into(),
        }
    }
}

impl<R: BufRead> Iterator for JsonlQueries<R> {
    type Item = Result<QueryRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            self.line += 1;
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(self.error(format!("read failed: {e}")))),
            }
            let text = match std::str::from_utf8(&self.buf) {
                Ok(text) => text.trim(),
                Err(e) => {
                    return Some(Err(self.error(format!(
                        "invalid UTF-8 at byte {} of the line",
                        e.valid_up_to()
                    ))));
                }
            };
            if text.is_empty() {
                continue;
            }
            return Some(
                serde_json::from_str::<QueryRecord>(text)
                    .map(|mut record| {
                        record.line = self.line;
                        record
                    })
                    .map_err(|e| self.error(format!("invalid record: {e}"))),
            );
        }
    }
}
