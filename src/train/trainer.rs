//! The training loop: epochs of optimizer steps, per-epoch evaluation, best-checkpoint
//! selection, early stopping, and the resume state saved along the way.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Tensor};

use super::checkpoint::{EpochRecord, ResumeFiles, ResumeState};
use super::optim::{AdamW, AdamWConfig, clip_global_norm, linear_schedule};
use super::step::{self, StepContext};
use super::{ABORT_AFTER_STEP_ENV, Setup, StepInfo, TrainObserver, TrainSummary, named_vars};
use crate::cpu::ops;
use crate::data::items::{self, streams};
use crate::error::{Error, Result};
use crate::model::weights::{self, save_model};
use crate::output::write_atomic;

/// Runs the prepared training to its end (or early stop); with `resume`, from the saved state.
pub(super) fn run(
    setup: Setup,
    resume: bool,
    observer: &mut dyn TrainObserver,
) -> Result<TrainSummary> {
    let Setup {
        config,
        model_config,
        model,
        varmap,
        train_items,
        dev_items,
        weights,
        tokenizer_json,
        device,
    } = setup;
    let output = config.output.clone();
    std::fs::create_dir_all(&output).map_err(|e| Error::io(&output, e))?;
    let resume_files = ResumeFiles { output: &output };

    let mut optimizer = AdamW::new(
        named_vars(&varmap),
        AdamWConfig {
            lr: config.lr,
            weight_decay: config.weight_decay,
            ..AdamWConfig::default()
        },
    )?;
    let mut state = ResumeState::default();
    if resume {
        if !resume_files.exists() {
            return Err(Error::Training(format!(
                "nothing to resume in {}: no last/state.json",
                output.display()
            )));
        }
        let (saved, weights_file, moments_file) = resume_files.load()?;
        weights::load_into_varmap(&weights_file, &model_config, &varmap, |_| false)?;
        optimizer.restore(&moments_file, saved.step)?;
        state = saved;
        observer.note(&format!(
            "resuming at epoch {}, step {}",
            state.epoch + 1,
            state.step
        ));
    } else {
        let text = serde_json::to_string_pretty(&config).expect("plain JSON serialises");
        write_atomic(&output.join("training_config.json"), text.as_bytes())?;
    }

    let batches_per_epoch = items::batches_per_epoch(&train_items, &weights, config.batch_size);
    let steps_per_epoch = batches_per_epoch.div_ceil(config.grad_accum);
    let total_steps = steps_per_epoch * config.epochs;
    let warmup = (total_steps as f64 * config.warmup_ratio).round() as usize;
    let class_weights = config
        .class_weights
        .then(|| items::class_weights(&train_items, &model_config.heads));
    let abort_after: Option<usize> = std::env::var(ABORT_AFTER_STEP_ENV)
        .ok()
        .and_then(|v| v.parse().ok());
    let vars: Vec<candle_core::Var> = optimizer.vars().cloned().collect();
    let context = StepContext {
        model: &model,
        items: &train_items,
        class_weights: class_weights.as_deref(),
        label_smoothing: config.label_smoothing,
        pad_token_id: model_config.encoder.pad_token_id,
        device: &device,
    };

    observer.start(state.step, total_steps);
    let started = Instant::now();
    let mut seen_since_start = 0usize;

    while state.epoch < config.epochs {
        let epoch = state.epoch;
        let epoch_started = Instant::now();
        let mut epoch_seen = 0usize;
        let batches = items::epoch_batches(
            &train_items,
            &weights,
            config.batch_size,
            config.seed,
            epoch,
        );
        let groups: Vec<&[Vec<usize>]> = batches.chunks(config.grad_accum).collect();
        let mut index = state.batch;
        while index < batches.len() {
            let group = groups[index / config.grad_accum];
            let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
            let mut step_loss = 0f32;
            for batch in group {
                ops::seed_dropout(dropout_seed(config.seed, epoch, index));
                let Some(total) = context.loss(batch)? else {
                    continue;
                };
                let value = items::scalar(&total)?;
                if !value.is_finite() {
                    return Err(Error::NonFiniteLoss {
                        epoch: epoch + 1,
                        step: state.step,
                        value,
                        output: output.clone(),
                    });
                }
                step_loss += value / group.len() as f32;
                step::accumulate_gradients(&(total / group.len() as f64)?, &vars, &mut grads)?;
                epoch_seen += batch.len();
                seen_since_start += batch.len();
                index += 1;
            }
            if config.max_grad_norm > 0.0 {
                clip_global_norm(&mut grads, config.max_grad_norm)?;
            }
            let lr = linear_schedule(config.lr, state.step, warmup, total_steps);
            optimizer.set_learning_rate(lr);
            optimizer.step(&grads)?;
            state.step += 1;
            state.batch = index;
            state.epoch_loss.0 += step_loss as f64;
            state.epoch_loss.1 += 1;
            observer.step(&StepInfo {
                step: state.step,
                total_steps,
                epoch: epoch + 1,
                loss: step_loss,
                learning_rate: lr,
                examples_per_second: seen_since_start as f64
                    / started.elapsed().as_secs_f64().max(1e-9),
            });
            let epoch_done = index >= batches.len();
            if !epoch_done && config.save_every > 0 && state.step % config.save_every == 0 {
                resume_files.save(&varmap, &optimizer, &state)?;
            }
            if !epoch_done && abort_after == Some(state.step) {
                std::process::abort();
            }
        }

        // End of epoch: evaluate, keep the best, record, save the resume state.
        let dev = if dev_items.is_empty() {
            None
        } else {
            Some(items::evaluate(
                &model,
                &dev_items,
                config.batch_size * 2,
                &device,
            )?)
        };
        let selection = dev
            .as_ref()
            .map(|report| selection_metric(report, &config.select))
            .transpose()?;
        let improved = match (selection, state.best) {
            (Some(s), Some(best)) => s > best,
            _ => true,
        };
        if improved {
            save_model(&output, &model_config, &varmap, DType::F32, &tokenizer_json)?;
            if let Some(report) = &dev {
                crate::eval::write_report(&output.join("eval.json"), report)?;
            }
            state.best = selection.or(state.best);
            state.epochs_without_improvement = 0;
        } else {
            state.epochs_without_improvement += 1;
        }
        let (loss_sum, loss_n) = state.epoch_loss;
        let record = EpochRecord {
            epoch: epoch + 1,
            step: state.step,
            train_loss: loss_sum / loss_n.max(1) as f64,
            learning_rate: optimizer.learning_rate(),
            examples_per_second: epoch_seen as f64
                / epoch_started.elapsed().as_secs_f64().max(1e-9),
            selection,
            best: improved,
            dev,
        };
        observer.epoch(&record);
        state.history.push(record);
        write_history(&output.join("metrics.jsonl"), &state.history)?;
        state.epoch += 1;
        state.batch = 0;
        state.epoch_loss = (0.0, 0);
        let stop = config
            .patience
            .is_some_and(|p| state.epochs_without_improvement > p);
        if stop {
            observer.note(&format!(
                "early stop: no improvement of {} for {} epochs",
                config.select, state.epochs_without_improvement
            ));
            state.epoch = config.epochs;
        }
        resume_files.save(&varmap, &optimizer, &state)?;
        if abort_after == Some(state.step) && state.epoch < config.epochs {
            std::process::abort();
        }
    }
    Ok(TrainSummary {
        output,
        best: state.best,
        history: state.history,
    })
}

/// The dev metric `select` names, or an error listing the heads when it is not available.
fn selection_metric(report: &crate::eval::metrics::EvalReport, select: &str) -> Result<f64> {
    report.metric(select).ok_or_else(|| Error::InvalidOption {
        option: "select",
        reason: format!(
            "metric {select:?} is not available (heads: {})",
            report
                .heads
                .iter()
                .map(|h| h.head.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// Dropout seed of micro-batch `index` of `epoch`.
fn dropout_seed(seed: u64, epoch: usize, index: usize) -> u64 {
    use rand::RngCore;
    items::stream_rng(
        seed,
        streams::DROPOUT,
        ((epoch as u64) << 32) | index as u64,
    )
    .next_u64()
}

fn write_history(path: &Path, history: &[EpochRecord]) -> Result<()> {
    let mut text = String::new();
    for record in history {
        text.push_str(&serde_json::to_string(record).expect("plain JSON serialises"));
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}
