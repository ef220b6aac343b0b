//! Classification metrics: confusion matrices, per-class scores and per-head reports.
//!
//! Pure Rust, no tensors. The conventions follow scikit-learn with `zero_division=0`:
//!
//! - the precision of a class that is never predicted is 0;
//! - the recall of a class with no gold examples is 0;
//! - F1 is 0 when precision + recall is 0;
//! - macro averages run over the head's full label set (like scikit-learn's `labels=`
//!   argument), so a class absent from both gold and predictions counts as 0;
//! - every score of an empty matrix (or an empty label set) is 0, never NaN.
//!
//! ```
//! use standpoint::eval::metrics::{ConfusionMatrix, EvalReport, HeadReport};
//!
//! let mut confusion = ConfusionMatrix::new(vec!["against".into(), "neutral".into(), "favor".into()]);
//! for (gold, predicted) in [(0, 0), (1, 1), (2, 2), (2, 1)] {
//!     confusion.add(gold, predicted)?;
//! }
//! let report = EvalReport { heads: vec![HeadReport::new("stance", confusion)] };
//! assert_eq!(report.metric("stance.accuracy"), Some(0.75));
//! println!("{}", report.render());
//! # Ok::<(), standpoint::eval::metrics::MetricsError>(())
//! ```

use serde::{Deserialize, Serialize};

/// Why a confusion matrix operation was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// A gold or predicted label index is not below the number of labels.
    #[error("label index {index} is out of range for {labels} labels")]
    IndexOutOfRange {
        /// The index given.
        index: usize,
        /// The number of labels of the matrix.
        labels: usize,
    },

    /// Two matrices to merge have different label sets (or orders).
    #[error("cannot merge confusion matrices with different labels: {left:?} vs {right:?}")]
    LabelMismatch {
        /// The labels of the matrix merged into.
        left: Vec<String>,
        /// The labels of the matrix merged from.
        right: Vec<String>,
    },
}

/// Counts of (gold, predicted) label pairs for one head; rows = gold, columns = predicted.
///
/// Deserialization checks that `counts` is square with one row per label.
///
/// ```
/// use standpoint::eval::metrics::ConfusionMatrix;
///
/// let mut confusion = ConfusionMatrix::new(vec!["negative".into(), "positive".into()]);
/// confusion.add(0, 0)?;
/// confusion.add(1, 0)?;
/// assert_eq!(confusion.counts(), [vec![1, 0], vec![1, 0]]);
/// assert_eq!(confusion.accuracy(), 0.5);
/// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawConfusion")]
pub struct ConfusionMatrix {
    labels: Vec<String>,
    counts: Vec<Vec<u64>>,
}

/// The unchecked serialized form, validated into a [`ConfusionMatrix`].
#[derive(Deserialize)]
struct RawConfusion {
    labels: Vec<String>,
    counts: Vec<Vec<u64>>,
}

impl TryFrom<RawConfusion> for ConfusionMatrix {
    type Error = String;

    fn try_from(raw: RawConfusion) -> Result<Self, Self::Error> {
        let n = raw.labels.len();
        if raw.counts.len() != n || raw.counts.iter().any(|row| row.len() != n) {
            return Err(format!("confusion counts must be {n}x{n} for {n} labels"));
        }
        Ok(Self {
            labels: raw.labels,
            counts: raw.counts,
        })
    }
}

impl ConfusionMatrix {
    /// An empty matrix over `labels`, in that order (label index = position).
    ///
    /// ```
    /// use standpoint::eval::metrics::ConfusionMatrix;
    ///
    /// let confusion = ConfusionMatrix::new(vec!["a".into(), "b".into()]);
    /// assert_eq!(confusion.total(), 0);
    /// ```
    pub fn new(labels: Vec<String>) -> Self {
        let n = labels.len();
        Self {
            labels,
            counts: vec![vec![0; n]; n],
        }
    }

    /// The label names, in index order.
    ///
    /// ```
    /// use standpoint::eval::metrics::ConfusionMatrix;
    ///
    /// let confusion = ConfusionMatrix::new(vec!["a".into(), "b".into()]);
    /// assert_eq!(confusion.labels(), ["a", "b"]);
    /// ```
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The counts: `counts()[gold][predicted]`.
    ///
    /// ```
    /// use standpoint::eval::metrics::ConfusionMatrix;
    ///
    /// let mut confusion = ConfusionMatrix::new(vec!["a".into(), "b".into()]);
    /// confusion.add(0, 1)?;
    /// assert_eq!(confusion.counts()[0][1], 1);
    /// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
    /// ```
    pub fn counts(&self) -> &[Vec<u64>] {
        &self.counts
    }

    /// Adds one example by label index (gold, predicted).
    ///
    /// An index that is not below the number of labels is an error and leaves the matrix
    /// unchanged.
    ///
    /// ```
    /// use standpoint::eval::metrics::ConfusionMatrix;
    ///
    /// let mut confusion = ConfusionMatrix::new(vec!["a".into(), "b".into()]);
    /// confusion.add(1, 1)?;
    /// assert!(confusion.add(0, 2).is_err());
    /// assert_eq!(confusion.total(), 1);
    /// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
    /// ```
    pub fn add(&mut self, gold: usize, predicted: usize) -> Result<(), MetricsError> {
        let labels = self.labels.len();
        if let Some(&index) = [gold, predicted].iter().find(|&&i| i >= labels) {
            return Err(MetricsError::IndexOutOfRange { index, labels });
        }
        self.counts[gold][predicted] += 1;
        Ok(())
    }

    /// Adds the counts of `other`, which must have the same labels in the same order.
    ///
    /// ```
    /// use standpoint::eval::metrics::ConfusionMatrix;
    ///
    /// let mut left = ConfusionMatrix::new(vec!["a".into(), "b".into()]);
    /// let mut right = left.clone();
    /// left.add(0, 0)?;
    /// right.add(1, 0)?;
    /// left.merge(&right)?;
    /// assert_eq!(left.counts(), [vec![1, 0], vec![1, 0]]);
    /// assert!(left.merge(&ConfusionMatrix::new(vec!["b".into(), "a".into()])).is_err());
    /// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
    /// ```
    pub fn merge(&mut self, other: &ConfusionMatrix) -> Result<(), MetricsError> {
        if self.labels != other.labels {
            return Err(MetricsError::LabelMismatch {
                left: self.labels.clone(),
                right: other.labels.clone(),
            });
        }
        for (row, other_row) in self.counts.iter_mut().zip(&other.counts) {
            for (count, other_count) in row.iter_mut().zip(other_row) {
                *count += other_count;
            }
        }
        Ok(())
    }

    /// The number of examples counted.
    ///
    /// ```
    /// use standpoint::eval::metrics::ConfusionMatrix;
    ///
    /// let mut confusion = ConfusionMatrix::new(vec!["a".into(), "b".into()]);
    /// confusion.add(0, 1)?;
    /// confusion.add(1, 1)?;
    /// assert_eq!(confusion.total(), 2);
    /// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
    /// ```
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// The fraction of examples whose prediction equals the gold label; 0.0 when empty.
    ///
    /// ```
    /// use standpoint::eval::metrics::ConfusionMatrix;
    ///
    /// let mut confusion = ConfusionMatrix::new(vec!["a".into(), "b".into()]);
    /// assert_eq!(confusion.accuracy(), 0.0);
    /// confusion.add(0, 0)?;
    /// confusion.add(1, 0)?;
    /// assert_eq!(confusion.accuracy(), 0.5);
    /// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
    /// ```
    pub fn accuracy(&self) -> f64 {
        let correct = (0..self.labels.len()).map(|i| self.counts[i][i]).sum();
        ratio(correct, self.total())
    }

    /// Precision, recall, F1 and support of each label, in label order (see the module
    /// docs for the zero-division conventions).
    ///
    /// ```
    /// use standpoint::eval::metrics::ConfusionMatrix;
    ///
    /// let mut confusion = ConfusionMatrix::new(vec!["a".into(), "b".into()]);
    /// confusion.add(0, 0)?;
    /// confusion.add(1, 0)?;
    /// let scores = confusion.class_scores();
    /// assert_eq!((scores[0].precision, scores[0].recall, scores[0].support), (0.5, 1.0, 1));
    /// assert_eq!(scores[1].precision, 0.0); // "b" is never predicted
    /// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
    /// ```
    pub fn class_scores(&self) -> Vec<ClassScores> {
        self.labels
            .iter()
            .enumerate()
            .map(|(i, label)| {
                let hits = self.counts[i][i];
                let predicted = self.counts.iter().map(|row| row[i]).sum();
                let support = self.counts[i].iter().sum();
                let precision = ratio(hits, predicted);
                let recall = ratio(hits, support);
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassScores {
                    label: label.clone(),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect()
    }

    /// The mean F1 over all labels of the set (0.0 for an empty label set).
    ///
    /// ```
    /// use standpoint::eval::metrics::ConfusionMatrix;
    ///
    /// let mut confusion = ConfusionMatrix::new(vec!["a".into(), "b".into()]);
    /// confusion.add(0, 0)?;
    /// // "b" has no examples and no predictions: its F1 of 0 still counts.
    /// assert_eq!(confusion.macro_f1(), 0.5);
    /// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
    /// ```
    pub fn macro_f1(&self) -> f64 {
        mean(self.class_scores().iter().map(|s| s.f1)).unwrap_or(0.0)
    }

    /// The mean recall over all labels of the set (0.0 for an empty label set): the
    /// official metric of SemEval-2017 Task 4 (sentiment).
    ///
    /// ```
    /// use standpoint::eval::metrics::ConfusionMatrix;
    ///
    /// let mut confusion = ConfusionMatrix::new(vec!["a".into(), "b".into()]);
    /// confusion.add(0, 0)?;
    /// confusion.add(1, 0)?;
    /// assert_eq!(confusion.macro_recall(), 0.5);
    /// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
    /// ```
    pub fn macro_recall(&self) -> f64 {
        mean(self.class_scores().iter().map(|s| s.recall)).unwrap_or(0.0)
    }

    /// The mean F1 over the named labels; `None` if `labels` is empty or any of them is
    /// not in the label set.
    ///
    /// ```
    /// use standpoint::eval::metrics::ConfusionMatrix;
    ///
    /// let mut confusion = ConfusionMatrix::new(vec!["against".into(), "neutral".into(), "favor".into()]);
    /// confusion.add(0, 0)?;
    /// confusion.add(2, 1)?;
    /// assert_eq!(confusion.mean_f1_of(&["favor", "against"]), Some(0.5));
    /// assert_eq!(confusion.mean_f1_of(&["positive"]), None);
    /// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
    /// ```
    pub fn mean_f1_of(&self, labels: &[&str]) -> Option<f64> {
        let scores = self.class_scores();
        let f1s = labels
            .iter()
            .map(|&name| scores.iter().find(|s| s.label == name).map(|s| s.f1))
            .collect::<Option<Vec<_>>>()?;
        mean(f1s)
    }
}

/// Precision, recall, F1 and support of one label.
///
/// ```
/// use standpoint::eval::metrics::ConfusionMatrix;
///
/// let mut confusion = ConfusionMatrix::new(vec!["a".into()]);
/// confusion.add(0, 0)?;
/// let scores = &confusion.class_scores()[0];
/// assert_eq!((scores.label.as_str(), scores.f1, scores.support), ("a", 1.0, 1));
/// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    /// The label name.
    pub label: String,
    /// Correct predictions of the label over all predictions of it (0 if never predicted).
    pub precision: f64,
    /// Correct predictions of the label over its gold examples (0 if it has none).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 if both are 0).
    pub f1: f64,
    /// The number of gold examples of the label.
    pub support: u64,
}

/// The report for one head.
///
/// ```
/// use standpoint::eval::metrics::{ConfusionMatrix, HeadReport};
///
/// let mut confusion = ConfusionMatrix::new(vec!["negative".into(), "neutral".into(), "positive".into()]);
/// confusion.add(0, 0)?;
/// confusion.add(2, 1)?;
/// let report = HeadReport::new("sentiment", confusion);
/// assert_eq!((report.examples, report.accuracy), (2, 0.5));
/// assert_eq!(report.favor_against_f1, None);
/// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadReport {
    /// The head name.
    pub head: String,
    /// The number of examples evaluated.
    pub examples: u64,
    /// Fraction of correct predictions.
    pub accuracy: f64,
    /// Mean F1 over the head's labels.
    pub macro_f1: f64,
    /// Mean recall over the head's labels (SemEval-2017 Task 4 sentiment metric).
    pub macro_recall: f64,
    /// SemEval-2016 Task 6 stance metric: mean F1 of `favor` and `against`; present only
    /// when the label set has both labels.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub favor_against_f1: Option<f64>,
    /// Expected calibration error of the top label's probability (15 equal-width bins):
    /// how far confidence is from accuracy, on average. Present when computed from logits.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ece: Option<f64>,
    /// Mean negative log-likelihood of the gold labels (nats). Present when computed from logits.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub log_loss: Option<f64>,
    /// Scores of each label, in label order.
    pub classes: Vec<ClassScores>,
    /// The counts the scores were computed from.
    pub confusion: ConfusionMatrix,
}

impl HeadReport {
    /// Computes every score of `confusion` for the head named `head`.
    ///
    /// ```
    /// use standpoint::eval::metrics::{ConfusionMatrix, HeadReport};
    ///
    /// let mut confusion = ConfusionMatrix::new(vec!["against".into(), "neutral".into(), "favor".into()]);
    /// confusion.add(0, 0)?;
    /// confusion.add(2, 2)?;
    /// let report = HeadReport::new("stance", confusion);
    /// assert_eq!(report.favor_against_f1, Some(1.0));
    /// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
    /// ```
    pub fn new(head: &str, confusion: ConfusionMatrix) -> Self {
        Self {
            head: head.to_owned(),
            examples: confusion.total(),
            accuracy: confusion.accuracy(),
            macro_f1: confusion.macro_f1(),
            macro_recall: confusion.macro_recall(),
            favor_against_f1: confusion.mean_f1_of(&["favor", "against"]),
            ece: None,
            log_loss: None,
            classes: confusion.class_scores(),
            confusion,
        }
    }

    /// Looks up a metric by name: `"accuracy"`, `"macro_f1"`, `"macro_recall"`,
    /// `"favor_against_f1"`; `None` if unknown or absent.
    ///
    /// ```
    /// use standpoint::eval::metrics::{ConfusionMatrix, HeadReport};
    ///
    /// let mut confusion = ConfusionMatrix::new(vec!["a".into(), "b".into()]);
    /// confusion.add(0, 0)?;
    /// let report = HeadReport::new("head", confusion);
    /// assert_eq!(report.metric("accuracy"), Some(1.0));
    /// assert_eq!(report.metric("favor_against_f1"), None);
    /// assert_eq!(report.metric("bleu"), None);
    /// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
    /// ```
    pub fn metric(&self, name: &str) -> Option<f64> {
        match name {
            "accuracy" => Some(self.accuracy),
            "macro_f1" => Some(self.macro_f1),
            "macro_recall" => Some(self.macro_recall),
            "favor_against_f1" => self.favor_against_f1,
            "ece" => self.ece,
            "log_loss" => self.log_loss,
            _ => None,
        }
    }

    /// A readable multi-line table: a summary line, per-class scores, then the confusion
    /// matrix (gold labels as rows, predicted as columns). Scores are percentages with one
    /// decimal.
    ///
    /// ```
    /// use standpoint::eval::metrics::{ConfusionMatrix, HeadReport};
    ///
    /// let mut confusion = ConfusionMatrix::new(vec!["negative".into(), "positive".into()]);
    /// confusion.add(0, 0)?;
    /// confusion.add(1, 0)?;
    /// let text = HeadReport::new("sentiment", confusion).render();
    /// assert!(text.starts_with("sentiment: 2 examples, accuracy 50.0"));
    /// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
    /// ```
    pub fn render(&self) -> String {
        let mut summary = format!(
            "{}: {} examples, accuracy {}, macro-F1 {}, macro recall {}",
            self.head,
            self.examples,
            percent(self.accuracy),
            percent(self.macro_f1),
            percent(self.macro_recall),
        );
        if let Some(f1) = self.favor_against_f1 {
            summary += &format!(", favor/against F1 {}", percent(f1));
        }
        if let Some(ece) = self.ece {
            summary += &format!(", ECE {}", percent(ece));
        }

        let header = ["label", "precision", "recall", "F1", "support"].map(String::from);
        let classes = std::iter::once(header.to_vec()).chain(self.classes.iter().map(|c| {
            vec![
                c.label.clone(),
                percent(c.precision),
                percent(c.recall),
                percent(c.f1),
                c.support.to_string(),
            ]
        }));

        let labels = self.confusion.labels();
        let header = std::iter::once("gold \\ predicted".to_owned()).chain(labels.iter().cloned());
        let confusion = std::iter::once(header.collect()).chain(
            labels
                .iter()
                .zip(self.confusion.counts())
                .map(|(label, row)| {
                    std::iter::once(label.clone())
                        .chain(row.iter().map(u64::to_string))
                        .collect()
                }),
        );

        format!(
            "{summary}\n\n{}\n{}",
            table(&classes.collect::<Vec<_>>()),
            table(&confusion.collect::<Vec<_>>())
        )
    }
}

/// Reports for several heads, e.g. one evaluation pass.
///
/// ```
/// use standpoint::eval::metrics::{ConfusionMatrix, EvalReport, HeadReport};
///
/// let mut confusion = ConfusionMatrix::new(vec!["a".into(), "b".into()]);
/// confusion.add(0, 0)?;
/// let report = EvalReport { heads: vec![HeadReport::new("head", confusion)] };
/// assert!(report.head("head").is_some());
/// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// One report per head.
    pub heads: Vec<HeadReport>,
}

impl EvalReport {
    /// The report of the head named `name`.
    ///
    /// ```
    /// use standpoint::eval::metrics::EvalReport;
    ///
    /// assert!(EvalReport::default().head("stance").is_none());
    /// ```
    pub fn head(&self, name: &str) -> Option<&HeadReport> {
        self.heads.iter().find(|h| h.head == name)
    }

    /// Looks up `"head.metric"` (e.g. `"stance.macro_f1"`), or just `"metric"` when there is
    /// exactly one head; `"mean.metric"` is the mean of that metric over the heads that have
    /// it (so `mean` cannot address a head of that name). `None` if not available.
    ///
    /// ```
    /// use standpoint::eval::metrics::{ConfusionMatrix, EvalReport, HeadReport};
    ///
    /// let mut stance = ConfusionMatrix::new(vec!["against".into(), "neutral".into(), "favor".into()]);
    /// stance.add(0, 0)?;
    /// let mut sentiment = ConfusionMatrix::new(vec!["negative".into(), "positive".into()]);
    /// sentiment.add(0, 1)?;
    /// let report = EvalReport {
    ///     heads: vec![HeadReport::new("stance", stance), HeadReport::new("sentiment", sentiment)],
    /// };
    /// assert_eq!(report.metric("stance.accuracy"), Some(1.0));
    /// assert_eq!(report.metric("mean.accuracy"), Some(0.5));
    /// assert_eq!(report.metric("accuracy"), None); // ambiguous with two heads
    /// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
    /// ```
    pub fn metric(&self, key: &str) -> Option<f64> {
        // Metric names have no dots, so split at the last one: head names may contain dots.
        match key.rsplit_once('.') {
            Some(("mean", metric)) => mean(self.heads.iter().filter_map(|h| h.metric(metric))),
            Some((head, metric)) => self.head(head)?.metric(metric),
            None => match self.heads.as_slice() {
                [only] => only.metric(key),
                _ => None,
            },
        }
    }

    /// Each head's [`HeadReport::render`], separated by a blank line.
    ///
    /// ```
    /// use standpoint::eval::metrics::{ConfusionMatrix, EvalReport, HeadReport};
    ///
    /// let report = EvalReport {
    ///     heads: vec![HeadReport::new("stance", ConfusionMatrix::new(vec!["favor".into()]))],
    /// };
    /// assert!(report.render().starts_with("stance: 0 examples"));
    /// ```
    pub fn render(&self) -> String {
        let heads: Vec<_> = self.heads.iter().map(HeadReport::render).collect();
        heads.join("\n")
    }
}

/// The mean of `metric` over groups (e.g. P-Stance's per-target average, or the targets
/// of TweetEval's stance set); `None` if there are no groups or any group lacks the
/// metric, so a per-group average never silently drops a group.
///
/// ```
/// use standpoint::eval::metrics::{ConfusionMatrix, HeadReport, mean_over_groups};
///
/// let labels = vec!["against".to_string(), "favor".to_string()];
/// let mut biden = ConfusionMatrix::new(labels.clone());
/// biden.add(0, 0)?;
/// let mut trump = ConfusionMatrix::new(labels);
/// trump.add(0, 1)?;
/// let groups = [
///     ("biden".to_string(), HeadReport::new("stance", biden)),
///     ("trump".to_string(), HeadReport::new("stance", trump)),
/// ];
/// assert_eq!(mean_over_groups(&groups, "accuracy"), Some(0.5));
/// assert_eq!(mean_over_groups(&[], "accuracy"), None);
/// # Ok::<(), standpoint::eval::metrics::MetricsError>(())
/// ```
pub fn mean_over_groups(groups: &[(String, HeadReport)], metric: &str) -> Option<f64> {
    let values = groups
        .iter()
        .map(|(_, report)| report.metric(metric))
        .collect::<Option<Vec<_>>>()?;
    mean(values)
}

/// Scores per target and their averages over targets (`standpoint eval --per-target`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PerTargetReport {
    /// One report per target, sorted by target.
    pub targets: Vec<TargetReport>,
    /// Per head, each metric averaged over the targets that label the head.
    pub mean: Vec<TargetMeans>,
}

/// The report of one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetReport {
    /// The target (empty for rows without one).
    pub target: String,
    /// Its scores.
    pub report: EvalReport,
}

/// A head's metrics averaged over targets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetMeans {
    /// The head.
    pub head: String,
    /// How many targets were averaged.
    pub targets: usize,
    /// Mean accuracy.
    pub accuracy: f64,
    /// Mean macro-F1.
    pub macro_f1: f64,
    /// Mean macro recall.
    pub macro_recall: f64,
    /// Mean favor/against F1 (P-Stance's official metric), when the labels have both.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub favor_against_f1: Option<f64>,
}

impl PerTargetReport {
    /// Averages `groups` (target, report) per head, over the targets whose rows label it.
    ///
    /// ```
    /// use standpoint::eval::metrics::{ConfusionMatrix, EvalReport, HeadReport, PerTargetReport};
    ///
    /// let labels = vec!["against".to_string(), "favor".to_string()];
    /// let report = |gold, predicted| {
    ///     let mut confusion = ConfusionMatrix::new(labels.clone());
    ///     confusion.add(gold, predicted).unwrap();
    ///     EvalReport { heads: vec![HeadReport::new("stance", confusion)] }
    /// };
    /// let summary = PerTargetReport::new(vec![("Biden".into(), report(0, 0)), ("Trump".into(), report(0, 1))]);
    /// assert_eq!(summary.mean[0].targets, 2);
    /// assert_eq!(summary.mean[0].accuracy, 0.5);
    /// ```
    pub fn new(groups: Vec<(String, EvalReport)>) -> Self {
        let mut heads: Vec<String> = Vec::new();
        for (_, report) in &groups {
            for head in &report.heads {
                if head.examples > 0 && !heads.contains(&head.head) {
                    heads.push(head.head.clone());
                }
            }
        }
        let mean = heads
            .into_iter()
            .map(|name| {
                let of_head: Vec<(String, HeadReport)> = groups
                    .iter()
                    .filter_map(|(target, report)| {
                        report
                            .head(&name)
                            .filter(|h| h.examples > 0)
                            .map(|h| (target.clone(), h.clone()))
                    })
                    .collect();
                let get = |metric| mean_over_groups(&of_head, metric).unwrap_or(0.0);
                TargetMeans {
                    targets: of_head.len(),
                    accuracy: get("accuracy"),
                    macro_f1: get("macro_f1"),
                    macro_recall: get("macro_recall"),
                    favor_against_f1: mean_over_groups(&of_head, "favor_against_f1"),
                    head: name,
                }
            })
            .collect();
        PerTargetReport {
            targets: groups
                .into_iter()
                .map(|(target, report)| TargetReport { target, report })
                .collect(),
            mean,
        }
    }

    /// A head's metric averaged over targets, by key `"head.metric"` (e.g.
    /// `"stance.favor_against_f1"`); `None` if unknown or absent.
    pub fn metric(&self, key: &str) -> Option<f64> {
        let (head, metric) = key.rsplit_once('.')?;
        let m = self.mean.iter().find(|m| m.head == head)?;
        match metric {
            "accuracy" => Some(m.accuracy),
            "macro_f1" => Some(m.macro_f1),
            "macro_recall" => Some(m.macro_recall),
            "favor_against_f1" => m.favor_against_f1,
            _ => None,
        }
    }

    /// One line per head with its metrics averaged over targets, as percentages.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for m in &self.mean {
            out.push_str(&format!(
                "{} mean over {} targets: accuracy {:.1}, macro-F1 {:.1}, macro recall {:.1}",
                m.head,
                m.targets,
                100.0 * m.accuracy,
                100.0 * m.macro_f1,
                100.0 * m.macro_recall
            ));
            if let Some(f) = m.favor_against_f1 {
                out.push_str(&format!(", favor/against F1 {:.1}", 100.0 * f));
            }
            out.push('\n');
        }
        out
    }
}

/// `numerator / denominator`, or 0 when the denominator is 0 (scikit-learn's `zero_division=0`).
fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

/// The arithmetic mean, or `None` for no values.
fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(sum, n), v| (sum + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// A score as a percentage with one decimal, e.g. `0.875` -> `"87.5"`.
fn percent(score: f64) -> String {
    format!("{:.1}", score * 100.0)
}

/// Rows of cells as aligned text lines: first column left-aligned, the others right-aligned.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let cells = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, &width))| {
                    if c == 0 {
                        format!("{cell:<width$}")
                    } else {
                        format!("{cell:>width$}")
                    }
                });
            cells.collect::<Vec<_>>().join("  ") + "\n"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn matrix(names: &[&str], pairs: &[(usize, usize)]) -> ConfusionMatrix {
        let mut confusion = ConfusionMatrix::new(labels(names));
        for &(gold, predicted) in pairs {
            confusion.add(gold, predicted).unwrap();
        }
        confusion
    }

    fn assert_close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
    }

    fn all_scores(report: &HeadReport) -> Vec<f64> {
        let mut values = vec![report.accuracy, report.macro_f1, report.macro_recall];
        values.extend(report.favor_against_f1);
        for c in &report.classes {
            values.extend([c.precision, c.recall, c.f1]);
        }
        values
    }

    const STANCE: [&str; 3] = ["against", "neutral", "favor"];

    #[test]
    fn perfect_predictions_score_one() {
        let report = HeadReport::new("stance", matrix(&STANCE, &[(0, 0), (1, 1), (2, 2), (2, 2)]));
        assert!(all_scores(&report).iter().all(|&v| v == 1.0), "{report:?}");
        assert_eq!(report.examples, 4);
        assert_eq!(report.classes[2].support, 2);
    }

    #[test]
    fn all_wrong_scores_zero() {
        let report = HeadReport::new("stance", matrix(&STANCE, &[(0, 1), (1, 2), (2, 0)]));
        assert!(all_scores(&report).iter().all(|&v| v == 0.0), "{report:?}");
    }

    #[test]
    fn never_predicted_class_has_zero_precision() {
        // "favor" has gold examples but is never predicted.
        let confusion = matrix(&STANCE, &[(0, 0), (1, 1), (2, 0), (2, 1)]);
        let favor = &confusion.class_scores()[2];
        assert_eq!(
            (favor.precision, favor.recall, favor.f1, favor.support),
            (0.0, 0.0, 0.0, 2)
        );
        let against = &confusion.class_scores()[0];
        assert_eq!((against.precision, against.recall), (0.5, 1.0));
    }

    #[test]
    fn empty_matrix_has_no_nan() {
        let report = HeadReport::new("stance", ConfusionMatrix::new(labels(&STANCE)));
        assert_eq!(report.accuracy, 0.0);
        assert!(
            all_scores(&report).iter().all(|v| !v.is_nan()),
            "{report:?}"
        );
        let no_labels = HeadReport::new("none", ConfusionMatrix::new(vec![]));
        assert!(
            all_scores(&no_labels).iter().all(|v| !v.is_nan()),
            "{no_labels:?}"
        );
    }

    #[test]
    fn matches_scikit_learn() {
        // Expected values from scikit-learn 1.9.1:
        //   from sklearn.metrics import precision_recall_fscore_support, f1_score, recall_score, accuracy_score
        //   y_true = [0,0,0,0,0,0,0,1,1,1,1,1,1,2,2,2,2,0,1,2]
        //   y_pred = [0,0,0,0,1,1,0,1,1,0,1,0,1,0,1,1,0,0,1,1]
        //   precision_recall_fscore_support(y_true, y_pred, labels=[0,1,2], zero_division=0)
        //   f1_score(y_true, y_pred, labels=[0,1,2], average="macro", zero_division=0)
        //   recall_score(y_true, y_pred, labels=[0,1,2], average="macro", zero_division=0)
        //   accuracy_score(y_true, y_pred)
        let y_true = [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 0, 1, 2];
        let y_pred = [0, 0, 0, 0, 1, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 1, 0, 0, 1, 1];
        let pairs: Vec<_> = y_true.into_iter().zip(y_pred).collect();
        let confusion = matrix(&["a", "b", "c"], &pairs);

        let precision = [0.6, 0.5, 0.0];
        let recall = [0.75, 0.7142857142857143, 0.0];
        let f1 = [0.6666666666666666, 0.5882352941176471, 0.0];
        let support = [8, 7, 5];
        for (i, scores) in confusion.class_scores().iter().enumerate() {
            assert_close(scores.precision, precision[i]);
            assert_close(scores.recall, recall[i]);
            assert_close(scores.f1, f1[i]);
            assert_eq!(scores.support, support[i]);
        }
        assert_close(confusion.macro_f1(), 0.41830065359477125);
        assert_close(confusion.macro_recall(), 0.48809523809523814);
        assert_close(confusion.accuracy(), 0.55);
    }

    #[test]
    fn favor_against_f1_only_for_stance_labels() {
        let stance = HeadReport::new("stance", matrix(&STANCE, &[(0, 0), (0, 2), (2, 2), (1, 0)]));
        let expected = (stance.classes[0].f1 + stance.classes[2].f1) / 2.0;
        assert_close(stance.favor_against_f1.unwrap(), expected);
        assert_eq!(stance.metric("favor_against_f1"), stance.favor_against_f1);

        let sentiment = matrix(&["negative", "neutral", "positive"], &[(0, 0)]);
        assert_eq!(
            HeadReport::new("sentiment", sentiment).favor_against_f1,
            None
        );
    }

    fn two_heads() -> EvalReport {
        EvalReport {
            heads: vec![
                HeadReport::new("stance", matrix(&STANCE, &[(0, 0), (2, 2)])),
                HeadReport::new(
                    "sentiment",
                    matrix(&["negative", "positive"], &[(0, 1), (1, 1)]),
                ),
            ],
        }
    }

    #[test]
    fn metric_lookups() {
        let report = two_heads();
        let stance = report.head("stance").unwrap();
        assert_eq!(stance.metric("accuracy"), Some(1.0));
        assert_eq!(stance.metric("macro_recall"), Some(stance.macro_recall));
        assert_eq!(stance.metric("nope"), None);

        assert_eq!(report.metric("stance.macro_f1"), Some(stance.macro_f1));
        assert_eq!(report.metric("sentiment.accuracy"), Some(0.5));
        assert_eq!(report.metric("mean.accuracy"), Some(0.75));
        // Only the stance head has favor/against F1.
        assert_eq!(
            report.metric("mean.favor_against_f1"),
            stance.favor_against_f1
        );
        assert_eq!(report.metric("accuracy"), None);
        assert_eq!(report.metric("mean.nope"), None);
        assert_eq!(report.metric("other.accuracy"), None);
        assert_eq!(report.metric("stance.nope"), None);

        let single = EvalReport {
            heads: vec![report.heads[1].clone()],
        };
        assert_eq!(single.metric("accuracy"), Some(0.5));
        assert_eq!(single.metric("favor_against_f1"), None);
        assert_eq!(EvalReport::default().metric("accuracy"), None);
    }

    #[test]
    fn mean_over_groups_requires_every_group() {
        let report = two_heads();
        let groups: Vec<_> = report
            .heads
            .iter()
            .map(|h| (h.head.clone(), h.clone()))
            .collect();
        assert_eq!(mean_over_groups(&groups, "accuracy"), Some(0.75));
        assert_eq!(mean_over_groups(&groups, "favor_against_f1"), None);
        assert_eq!(mean_over_groups(&[], "accuracy"), None);
    }

    #[test]
    fn render_shows_labels_and_counts() {
        let confusion = matrix(&STANCE, &[(0, 0), (0, 0), (0, 2), (1, 1), (2, 2)]);
        let text = HeadReport::new("stance", confusion).render();
        assert!(
            text.starts_with("stance: 5 examples, accuracy 80.0"),
            "{text}"
        );
        assert!(text.contains("favor/against F1"), "{text}");
        for label in STANCE {
            assert!(text.contains(label), "{text}");
        }
        let row = text.lines().rfind(|l| l.starts_with("against")).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["against", "2", "0", "1"]
        );
        // Aligned columns: every line of the confusion table has the same width.
        let widths: Vec<_> = text.lines().rev().take(4).map(str::len).collect();
        assert!(widths.iter().all(|&w| w == widths[0]), "{text}");

        let both = two_heads().render();
        assert!(
            both.contains("stance: ") && both.contains("\n\nsentiment: "),
            "{both}"
        );
    }

    #[test]
    fn serde_round_trip() {
        let report = two_heads();
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<EvalReport>(&json).unwrap(), report);
        // The absent favor/against F1 is omitted rather than written as null.
        assert!(
            !serde_json::to_string(&report.heads[1])
                .unwrap()
                .contains("favor_against")
        );
    }

    #[test]
    fn malformed_counts_fail_to_deserialize() {
        let json = r#"{"labels":["a","b"],"counts":[[1,0]]}"#;
        assert!(serde_json::from_str::<ConfusionMatrix>(json).is_err());
    }

    #[test]
    fn errors_instead_of_panics() {
        let mut confusion = ConfusionMatrix::new(labels(&STANCE));
        assert_eq!(
            confusion.add(3, 0),
            Err(MetricsError::IndexOutOfRange {
                index: 3,
                labels: 3
            })
        );
        assert_eq!(
            confusion.add(0, 7).unwrap_err().to_string(),
            "label index 7 is out of range for 3 labels"
        );
        assert_eq!(confusion.total(), 0);

        let other = ConfusionMatrix::new(labels(&["negative", "neutral", "positive"]));
        assert!(matches!(
            confusion.merge(&other),
            Err(MetricsError::LabelMismatch { .. })
        ));
    }

    #[test]
    fn merge_adds_counts() {
        let mut left = matrix(&STANCE, &[(0, 0), (1, 2)]);
        left.merge(&matrix(&STANCE, &[(0, 0), (2, 2)])).unwrap();
        assert_eq!(left.counts(), [vec![2, 0, 0], vec![0, 0, 1], vec![0, 0, 1]]);
    }
}
