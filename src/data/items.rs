//! Training items (one encoder input with the labels of the heads that read it),
//! epoch composition, length-bucketed batches, and evaluation over items.

use candle_core::{Device, Tensor};
use candle_nn::Init;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{DataSource, LabelledExample};
use crate::classify::batching;
use crate::error::{Error, Result};
use crate::eval::calibration;
use crate::eval::metrics::{ConfusionMatrix, EvalReport, HeadReport};
use crate::model::nn::Param;
use crate::model::{HeadSpec, Model, Reading};
use crate::tokenize::{Encoded, TextEncoder, find_ascii_case_insensitive, pad_batch};

/// One encoder input and, per model head, its label (only for heads reading this input).
#[derive(Debug, Clone)]
pub struct Item {
    /// Token ids.
    pub encoded: Encoded,
    /// Label index per model head; `None` where the head is unlabelled or reads the
    /// other encoding of the example.
    pub labels: Vec<Option<u32>>,
    /// Index of the data source the example came from.
    pub source: usize,
}

/// Splits examples into items: one per encoding (text alone, or (target, text)) that some
/// labelled head reads. `head_of_label[j]` is the model head of the examples' j-th label.
pub fn build_items(
    examples: &[LabelledExample],
    head_of_label: &[usize],
    heads: &[HeadSpec],
    encoder: &TextEncoder,
    sources: &[DataSource],
) -> Result<Vec<Item>> {
    let mut items = Vec::with_capacity(examples.len());
    for example in examples {
        let has_target = example.target.is_some();
        for reading in [Reading::Text, Reading::Pair] {
            let mut labels = vec![None; heads.len()];
            for (j, label) in example.labels.iter().enumerate() {
                let Some(label) = label else { continue };
                let head = &heads[head_of_label[j]];
                match head.input.reading(has_target) {
                    Some(r) if r == reading => labels[head_of_label[j]] = Some(*label),
                    Some(_) => {}
                    None => {
                        return Err(Error::Record {
                            source_name: sources[example.source].path.display().to_string(),
                            line: example.line,
                            reason: format!(
                                "head {:?} reads (target, text) pairs, but the row has no target",
                                head.name
                            ),
                        });
                    }
                }
            }
            if labels.iter().all(Option::is_none) {
                continue;
            }
            let target = match reading {
                Reading::Pair => example.target.as_deref(),
                Reading::Text => None,
            };
            // The mention as the labeller finds it at inference (an alias such as `Moscow`);
            // without one, the encoder looks for the target itself.
            let focus = example
                .mention
                .as_deref()
                .filter(|_| target.is_some())
                .and_then(|m| find_ascii_case_insensitive(&example.text, m));
            // Cut like inference does: a long text around the target's mention.
            let encoded = encoder
                .encode_around(target, &example.text, focus)
                .map_err(|e| Error::Record {
                    source_name: sources[example.source].path.display().to_string(),
                    line: example.line,
                    reason: e.to_string(),
                })?;
            items.push(Item {
                encoded,
                labels,
                source: example.source,
            });
        }
    }
    Ok(items)
}

/// A random generator derived from the run's seed and a purpose-specific stream, so each
/// epoch's order and each batch's dropout are reproducible on their own (resume needs that).
pub fn stream_rng(seed: u64, stream: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng.set_word_pos(u128::from(index) << 64);
    rng
}

/// Re-draws the variables `names` of `varmap` from the run's seed, each as its kind in
/// [`Param`]'s table says (matrices from N(0, 0.02²) as transformers initialises linear
/// layers, biases zeros, LayerNorm scales ones). candle's own initialisers draw from an
/// unseeded generator, which would make two runs with one seed differ.
pub fn reinitialise(varmap: &candle_nn::VarMap, names: &[String], seed: u64) -> Result<()> {
    let vars = varmap
        .data()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (i, name) in names.iter().enumerate() {
        let Some(var) = vars.get(name) else { continue };
        let value = match Param::of(name, var.rank()).init() {
            Init::Randn { mean, stdev } => {
                let mut rng = stream_rng(seed, streams::INIT, i as u64);
                let values: Vec<f32> = (0..var.elem_count())
                    .map(|_| {
                        // Box-Muller: two uniforms in (0, 1] give one standard normal.
                        let u1: f32 = 1.0 - rng.random::<f32>();
                        let u2: f32 = rng.random::<f32>();
                        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos() * stdev as f32
                            + mean as f32
                    })
                    .collect();
                Tensor::from_vec(values, var.shape(), var.device())?.to_dtype(var.dtype())?
            }
            Init::Const(value) => (var.as_tensor().ones_like()? * value)?,
            other => {
                return Err(Error::Training(format!(
                    "no seeded initialiser for {name} ({other:?})"
                )));
            }
        };
        var.set(&value)?;
    }
    Ok(())
}

/// Stream ids of [`stream_rng`].
pub mod streams {
    /// Initial values of new parameters.
    pub const INIT: u64 = 3;
    /// Epoch composition and order.
    pub const EPOCH: u64 = 1;
    /// Dropout masks of a batch.
    pub const DROPOUT: u64 = 2;
}

/// How many items of each source an epoch takes: `round(weight * count)`.
pub fn epoch_counts(items: &[Item], weights: &[f64]) -> Vec<usize> {
    let mut per_source = vec![0usize; weights.len()];
    for item in items {
        per_source[item.source] += 1;
    }
    per_source
        .iter()
        .zip(weights)
        .map(|(&n, &w)| (n as f64 * w).round() as usize)
        .collect()
}

/// Batches sorted by length together (see [`epoch_batches`]).
const WINDOW_BATCHES: usize = 32;

/// How many micro-batches [`epoch_batches`] makes per epoch, without making them.
pub fn batches_per_epoch(items: &[Item], weights: &[f64], batch_size: usize) -> usize {
    let total: usize = epoch_counts(items, weights).iter().sum();
    let window = batch_size * WINDOW_BATCHES;
    total / window * WINDOW_BATCHES + (total % window).div_ceil(batch_size)
}

/// The micro-batches of one epoch, as indices into `items`: each source sampled to its
/// weight (whole copies, then a random subset for the fraction), shuffled, sorted by
/// length within windows of 32 batches (little padding), and the batches shuffled.
pub fn epoch_batches(
    items: &[Item],
    weights: &[f64],
    batch_size: usize,
    seed: u64,
    epoch: usize,
) -> Vec<Vec<usize>> {
    let mut rng = stream_rng(seed, streams::EPOCH, epoch as u64);
    let mut by_source: Vec<Vec<usize>> = vec![Vec::new(); weights.len()];
    for (i, item) in items.iter().enumerate() {
        by_source[item.source].push(i);
    }
    let mut chosen = Vec::new();
    for (indices, count) in by_source.iter_mut().zip(epoch_counts(items, weights)) {
        if indices.is_empty() {
            continue;
        }
        let mut left = count;
        while left >= indices.len() {
            chosen.extend_from_slice(indices);
            left -= indices.len();
        }
        indices.shuffle(&mut rng);
        chosen.extend_from_slice(&indices[..left]);
    }
    chosen.shuffle(&mut rng);
    let window = batch_size * WINDOW_BATCHES;
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for chunk in chosen.chunks_mut(window) {
        chunk.sort_by_key(|&i| items[i].encoded.len());
        batches.extend(chunk.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

/// Pads the items of one batch.
pub fn batch_input(
    items: &[Item],
    batch: &[usize],
    pad_id: u32,
    device: &Device,
) -> Result<crate::model::EncoderInput> {
    let encoded: Vec<&Encoded> = batch.iter().map(|&i| &items[i].encoded).collect();
    Ok(pad_batch(&encoded, pad_id, device)?)
}

/// The logits of one head on the items that label it, with their gold labels.
#[derive(Debug, Clone, Default)]
pub struct HeadLogits {
    /// One row of logits per labelled item.
    pub logits: Vec<Vec<f32>>,
    /// The gold label index of each row.
    pub gold: Vec<u32>,
}

/// Runs the model in eval mode over `items` (sorted by length, `batch_size` at a time)
/// and collects, per model head, the logits of the items labelled for it.
pub fn head_logits(
    model: &Model,
    items: &[Item],
    batch_size: usize,
    device: &Device,
) -> Result<Vec<HeadLogits>> {
    let heads = &model.config().heads;
    let mut out = vec![HeadLogits::default(); heads.len()];
    let lengths: Vec<usize> = items.iter().map(|item| item.encoded.len()).collect();
    let pad = model.config().encoder.pad_token_id;
    for batch in &batching::by_length(&lengths, batch_size, batching::DEFAULT_BATCH_TOKENS) {
        let needed: Vec<usize> = (0..heads.len())
            .filter(|&h| batch.iter().any(|&i| items[i].labels[h].is_some()))
            .collect();
        if needed.is_empty() {
            continue;
        }
        let input = batch_input(items, batch, pad, device)?;
        let output = model.forward_t(&input, &needed, false)?;
        for (head, logits) in output.logits {
            let rows: Vec<Vec<f32>> = logits.to_dtype(candle_core::DType::F32)?.to_vec2()?;
            for (&i, row) in batch.iter().zip(rows) {
                if let Some(gold) = items[i].labels[head] {
                    out[head].logits.push(row);
                    out[head].gold.push(gold);
                }
            }
        }
    }
    Ok(out)
}

/// Accuracy, F1, confusion and calibration (ECE, log loss, with each head's temperature)
/// per head over `items`, predicting in eval mode. Only heads with at least one labelled
/// item are reported.
pub fn evaluate(
    model: &Model,
    items: &[Item],
    batch_size: usize,
    device: &Device,
) -> Result<EvalReport> {
    let collected = head_logits(model, items, batch_size, device)?;
    report_from_logits(&model.config().heads, &collected)
}

/// The [`evaluate`] report from logits already collected by [`head_logits`].
pub fn report_from_logits(heads: &[HeadSpec], collected: &[HeadLogits]) -> Result<EvalReport> {
    let mut reports = Vec::new();
    for (spec, head) in heads.iter().zip(collected) {
        if head.gold.is_empty() {
            continue;
        }
        let mut confusion = ConfusionMatrix::new(spec.labels.clone());
        for (row, &gold) in head.logits.iter().zip(&head.gold) {
            confusion
                .add(gold as usize, calibration::argmax(row))
                .map_err(|e| Error::Training(e.to_string()))?;
        }
        let t = spec.temperature.unwrap_or(1.0);
        let mut report = HeadReport::new(&spec.name, confusion);
        report.ece = Some(calibration::expected_calibration_error(
            &head.logits,
            &head.gold,
            t,
        ));
        report.log_loss = Some(calibration::log_loss(&head.logits, &head.gold, t));
        reports.push(report);
    }
    Ok(EvalReport { heads: reports })
}

/// Labels per head as a `(batch,)` slice for the loss.
pub fn batch_labels(items: &[Item], batch: &[usize], head: usize) -> Vec<Option<u32>> {
    batch.iter().map(|&i| items[i].labels[head]).collect()
}

/// Inverse-frequency class weights per head (`n / (classes * n_c)`, scikit-learn's
/// "balanced"); classes absent from the data get weight 1.
pub fn class_weights(items: &[Item], heads: &[HeadSpec]) -> Vec<Vec<f32>> {
    heads
        .iter()
        .enumerate()
        .map(|(h, spec)| {
            let mut counts = vec![0usize; spec.labels.len()];
            for item in items {
                if let Some(l) = item.labels[h] {
                    counts[l as usize] += 1;
                }
            }
            let total: usize = counts.iter().sum();
            counts
                .iter()
                .map(|&c| {
                    if c == 0 {
                        1.0
                    } else {
                        total as f32 / (spec.labels.len() as f32 * c as f32)
                    }
                })
                .collect()
        })
        .collect()
}

/// A scalar tensor's value.
pub fn scalar(t: &Tensor) -> Result<f32> {
    Ok(t.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(per_source: &[usize]) -> Vec<Item> {
        per_source
            .iter()
            .enumerate()
            .flat_map(|(source, &n)| {
                (0..n).map(move |i| Item {
                    encoded: Encoded {
                        ids: vec![1; 3 + i % 7],
                        type_ids: vec![0; 3 + i % 7],
                    },
                    labels: vec![Some(0)],
                    source,
                })
            })
            .collect()
    }

    #[test]
    fn sources_are_sampled_to_their_weights() {
        let items = items(&[10, 40]);
        let weights = [2.0, 0.25];
        assert_eq!(epoch_counts(&items, &weights), [20, 10]);
        let batches = epoch_batches(&items, &weights, 4, 7, 0);
        let mut per_source = [0usize; 2];
        for &i in batches.iter().flatten() {
            per_source[items[i].source] += 1;
        }
        assert_eq!(per_source, [20, 10]);
        assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 4));
    }

    #[test]
    fn batch_count_is_known_before_the_epoch() {
        for (sizes, weights, bs) in [
            (vec![10, 40], vec![2.0, 0.25], 4),
            (vec![700], vec![1.0], 3),
            (vec![129, 5], vec![1.0, 0.5], 2),
        ] {
            let items = items(&sizes);
            let made = epoch_batches(&items, &weights, bs, 1, 0).len();
            assert_eq!(batches_per_epoch(&items, &weights, bs), made);
        }
    }

    #[test]
    fn epochs_are_reproducible_and_differ() {
        let items = items(&[50]);
        let a = epoch_batches(&items, &[1.0], 8, 7, 0);
        assert_eq!(a, epoch_batches(&items, &[1.0], 8, 7, 0));
        assert_ne!(a, epoch_batches(&items, &[1.0], 8, 7, 1));
        assert_ne!(a, epoch_batches(&items, &[1.0], 8, 8, 0));
        let mut all: Vec<usize> = a.into_iter().flatten().collect();
        all.sort();
        assert_eq!(
            all,
            (0..50).collect::<Vec<_>>(),
            "each item once per epoch at weight 1"
        );
    }

    #[test]
    fn batches_hold_similar_lengths() {
        let items = items(&[64]);
        for batch in epoch_batches(&items, &[1.0], 8, 3, 0) {
            let lens: Vec<usize> = batch.iter().map(|&i| items[i].encoded.len()).collect();
            let spread = lens.iter().max().unwrap() - lens.iter().min().unwrap();
            assert!(spread <= 1, "lengths {lens:?} in one batch");
        }
    }
}
