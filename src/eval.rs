//! Evaluating a model on labelled files (`standpoint eval`).

use crate::classify::Classifier;
use crate::error::{Error, Result};
use crate::metrics::EvalReport;
use crate::train::data::{
    DataSource, FieldMap, HeadLabels, LabelSchema, encode_labels, read_sources,
};
use crate::train::items::{build_items, evaluate};

/// Which fields of the data hold what; each head's labels are read from the field named
/// like the head unless `head_fields` maps it elsewhere.
#[derive(Debug, Clone)]
pub struct EvalFields {
    /// Field holding the sentence.
    pub text: String,
    /// Field holding the target.
    pub target: String,
    /// `(head, field)` overrides.
    pub head_fields: Vec<(String, String)>,
}

impl Default for EvalFields {
    fn default() -> Self {
        EvalFields {
            text: "text".into(),
            target: "target".into(),
            head_fields: Vec::new(),
        }
    }
}

/// Accuracy, macro-F1, per-class scores and confusion matrices of every head of
/// `classifier` that the files label. Labels outside a head's label set, rows without
/// text, and malformed rows are errors naming the file and line.
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::{Classifier, ClassifierOptions};
/// use standpoint::eval::{evaluate_files, EvalFields};
/// let dir = tempfile::tempdir().unwrap();
/// let data = dir.path().join("dev.jsonl");
/// std::fs::write(&data, "{\"text\": \"NATO refused.\", \"target\": \"NATO\", \"classification\": \"against\"}\n").unwrap();
/// let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-bert");
/// let classifier = Classifier::load(model, &ClassifierOptions::default())?;
/// let report = evaluate_files(&classifier, &[data.to_str().unwrap().to_string()], &EvalFields::default())?;
/// assert_eq!(report.heads[0].examples, 1);
/// # Ok(()) }
/// ```
pub fn evaluate_files(
    classifier: &Classifier,
    files: &[String],
    fields: &EvalFields,
) -> Result<EvalReport> {
    let heads = classifier.heads();
    for (head, _) in &fields.head_fields {
        if !heads.iter().any(|h| &h.name == head) {
            return Err(Error::UnknownHead {
                name: head.clone(),
                available: heads.iter().map(|h| h.name.clone()).collect(),
            });
        }
    }
    let field_map = FieldMap {
        text: fields.text.clone(),
        target: fields.target.clone(),
        id: "id".into(),
        heads: heads
            .iter()
            .map(|h| {
                let field = fields
                    .head_fields
                    .iter()
                    .find(|(name, _)| name == &h.name)
                    .map_or_else(|| h.name.clone(), |(_, f)| f.clone());
                (h.name.clone(), field)
            })
            .collect(),
    };
    let schema = LabelSchema {
        heads: heads
            .iter()
            .map(|h| HeadLabels {
                name: h.name.clone(),
                labels: h.labels.clone(),
            })
            .collect(),
    };
    let sources: Vec<DataSource> = files
        .iter()
        .map(|f| DataSource::parse(f))
        .collect::<Result<_>>()?;
    let examples = read_sources(&sources, &field_map)?;
    let labelled = encode_labels(examples, &field_map, &schema, &sources)?;
    let head_of_label: Vec<usize> = (0..heads.len()).collect();
    let items = build_items(
        &labelled,
        &head_of_label,
        heads,
        classifier.text_encoder(),
        &sources,
    )?;
    evaluate(
        classifier.model(),
        &items,
        classifier.batch_size(),
        classifier.device(),
    )
}
