//! Evaluating a model on labelled files (`standpoint eval`): [`metrics`] scores predictions,
//! [`calibration`] fits and measures softmax temperatures.

pub mod calibration;
pub mod metrics;

use crate::classify::Classifier;
use crate::error::{Error, Result};
use crate::output::write_atomic;
use metrics::EvalReport;
use std::collections::BTreeMap;
use std::path::Path;

use crate::data::items::{Item, build_items, head_logits, report_from_logits};
use crate::data::{
    DataSource, FieldMap, HeadLabels, LabelSchema, LabelledExample, encode_labels, read_sources,
};
use calibration::{expected_calibration_error, fit_temperature, log_loss};

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
    /// `(head, labels)`: predict only among these labels of the head, for data labelled
    /// with a subset of them (P-Stance has no `neutral`, so a two-way reading of a
    /// three-way head is the fair comparison with two-way models).
    pub only_labels: Vec<(String, Vec<String>)>,
}

impl Default for EvalFields {
    fn default() -> Self {
        EvalFields {
            text: "text".into(),
            target: "target".into(),
            head_fields: Vec::new(),
            only_labels: Vec::new(),
        }
    }
}

/// Writes an evaluation report as pretty JSON, atomically.
pub fn write_report<T: serde::Serialize>(path: &Path, report: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(report).expect("plain JSON serialises");
    write_atomic(path, text.as_bytes())
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
    let (labelled, sources) = read_labelled(classifier, files, fields)?;
    score(classifier, &labelled, &sources, fields)
}

/// One report per target (rows without a target are grouped under `""`), sorted by
/// target: for metrics defined as a per-target average, such as P-Stance's mean of the
/// favor/against F1 over its three targets (average them with
/// [`mean_over_groups`](crate::eval::metrics::mean_over_groups)).
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::{Classifier, ClassifierOptions};
/// use standpoint::eval::{evaluate_files_per_target, EvalFields};
/// let dir = tempfile::tempdir().unwrap();
/// let data = dir.path().join("dev.jsonl");
/// std::fs::write(&data, concat!(
///     "{\"text\": \"NATO refused.\", \"target\": \"NATO\", \"classification\": \"against\"}\n",
///     "{\"text\": \"Russia agreed.\", \"target\": \"Russia\", \"classification\": \"favor\"}\n",
///     "{\"text\": \"NATO met.\", \"target\": \"NATO\", \"classification\": \"neutral\"}\n",
/// )).unwrap();
/// let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-bert");
/// let classifier = Classifier::load(model, &ClassifierOptions::default())?;
/// let groups = evaluate_files_per_target(&classifier, &[data.to_str().unwrap().to_string()], &EvalFields::default())?;
/// assert_eq!(groups.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), ["NATO", "Russia"]);
/// assert_eq!(groups[0].1.heads[0].examples, 2);
/// # Ok(()) }
/// ```
pub fn evaluate_files_per_target(
    classifier: &Classifier,
    files: &[String],
    fields: &EvalFields,
) -> Result<Vec<(String, EvalReport)>> {
    let (labelled, sources) = read_labelled(classifier, files, fields)?;
    let mut groups: BTreeMap<String, Vec<LabelledExample>> = BTreeMap::new();
    for example in labelled {
        groups
            .entry(example.target.clone().unwrap_or_default())
            .or_default()
            .push(example);
    }
    groups
        .into_iter()
        .map(|(target, examples)| Ok((target, score(classifier, &examples, &sources, fields)?)))
        .collect()
}

/// The fitted temperature of one head and what it changes on the calibration data.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeadCalibration {
    /// The head.
    pub head: String,
    /// Examples the temperature was fitted on.
    pub examples: usize,
    /// The fitted temperature (probabilities are `softmax(logits / temperature)`).
    pub temperature: f64,
    /// Expected calibration error before (temperature 1) and after.
    pub ece_before: f64,
    /// Expected calibration error at the fitted temperature.
    pub ece_after: f64,
    /// Log loss before (temperature 1).
    pub log_loss_before: f64,
    /// Log loss at the fitted temperature.
    pub log_loss_after: f64,
}

/// Fits one softmax temperature per head on labelled `files` (heads they do not label
/// are left out). Labels never change; probabilities become trustworthy as confidences.
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::{Classifier, ClassifierOptions};
/// use standpoint::eval::{calibrate_files, EvalFields};
/// let dir = tempfile::tempdir().unwrap();
/// let data = dir.path().join("dev.jsonl");
/// std::fs::write(&data, "{\"text\": \"NATO refused.\", \"target\": \"NATO\", \"classification\": \"against\"}\n").unwrap();
/// let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-bert");
/// let classifier = Classifier::load(model, &ClassifierOptions::default())?;
/// let fitted = calibrate_files(&classifier, &[data.to_str().unwrap().to_string()], &EvalFields::default())?;
/// assert_eq!(fitted[0].head, "classification");
/// assert!(fitted[0].log_loss_after <= fitted[0].log_loss_before);
/// # Ok(()) }
/// ```
pub fn calibrate_files(
    classifier: &Classifier,
    files: &[String],
    fields: &EvalFields,
) -> Result<Vec<HeadCalibration>> {
    let (labelled, sources) = read_labelled(classifier, files, fields)?;
    let items = items_of(classifier, &labelled, &sources)?;
    let collected = head_logits(
        classifier.model(),
        &items,
        classifier.batch_size(),
        classifier.device(),
    )?;
    Ok(classifier
        .heads()
        .iter()
        .zip(collected)
        .filter(|(_, h)| !h.gold.is_empty())
        .map(|(spec, h)| {
            let t = fit_temperature(&h.logits, &h.gold);
            HeadCalibration {
                head: spec.name.clone(),
                examples: h.gold.len(),
                temperature: t,
                ece_before: expected_calibration_error(&h.logits, &h.gold, 1.0),
                ece_after: expected_calibration_error(&h.logits, &h.gold, t),
                log_loss_before: log_loss(&h.logits, &h.gold, 1.0),
                log_loss_after: log_loss(&h.logits, &h.gold, t),
            }
        })
        .collect())
}

/// Reads `files` and encodes their labels against the classifier's heads.
fn read_labelled(
    classifier: &Classifier,
    files: &[String],
    fields: &EvalFields,
) -> Result<(Vec<LabelledExample>, Vec<DataSource>)> {
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
        mention: "mention".into(),
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
    Ok((labelled, sources))
}

/// Scores the classifier on already labelled examples.
fn score(
    classifier: &Classifier,
    labelled: &[LabelledExample],
    sources: &[DataSource],
    fields: &EvalFields,
) -> Result<EvalReport> {
    let items = items_of(classifier, labelled, sources)?;
    let mut collected = head_logits(
        classifier.model(),
        &items,
        classifier.batch_size(),
        classifier.device(),
    )?;
    let heads = classifier.heads();
    for (name, labels) in &fields.only_labels {
        let (index, spec) = heads
            .iter()
            .enumerate()
            .find(|(_, h)| &h.name == name)
            .ok_or_else(|| Error::UnknownHead {
                name: name.clone(),
                available: heads.iter().map(|h| h.name.clone()).collect(),
            })?;
        let mut allowed = vec![false; spec.labels.len()];
        for label in labels {
            let i = spec.labels.iter().position(|l| l == label).ok_or_else(|| {
                Error::InvalidOption {
                    option: "only_labels",
                    reason: format!(
                        "head {name:?} has no label {label:?} (labels: {})",
                        spec.labels.join(", ")
                    ),
                }
            })?;
            allowed[i] = true;
        }
        for row in &mut collected[index].logits {
            for (value, &keep) in row.iter_mut().zip(&allowed) {
                if !keep {
                    *value = f32::NEG_INFINITY;
                }
            }
        }
    }
    report_from_logits(heads, &collected)
}

/// One item per encoding a labelled head reads.
fn items_of(
    classifier: &Classifier,
    labelled: &[LabelledExample],
    sources: &[DataSource],
) -> Result<Vec<Item>> {
    let heads = classifier.heads();
    let head_of_label: Vec<usize> = (0..heads.len()).collect();
    build_items(
        labelled,
        &head_of_label,
        heads,
        classifier.text_encoder(),
        sources,
    )
}
