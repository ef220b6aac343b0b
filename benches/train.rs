//! Training throughput on CPU, on the protocol of `../shared/bench/bench_torch.py train`:
//! all-MiniLM-L6-v2 with a fresh 3-label head (BERT pooler, as
//! `BertForSequenceClassification`), dropout on, AdamW (lr 2e-5, weight decay 0.01),
//! batch 32 taken in corpus order, labels `i % 3`, max length 128, dynamic padding;
//! 3 warm-up steps, then the mean and median over 20 timed steps of
//! pad + forward + loss + backward + update.
//!
//! `cargo bench --bench train -- [--model DIR] [--corpus FILE] [--steps N] [--device cpu|cuda:N]`

mod common;

/// As the `standpoint` binary (see src/main.rs).
#[global_allocator]
static ALLOCATOR: standpoint::allocator::MiMalloc = standpoint::allocator::MiMalloc;

use common::arg;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use standpoint::model::weights::{load_into_varmap, weights_path};
use standpoint::model::{HeadInput, HeadPooling, HeadSpec, Model, ModelConfig};
use standpoint::tokenize::{TextEncoder, pad_batch};
use standpoint::train::loss::cross_entropy;
use standpoint::train::optim::{AdamW, AdamWConfig};

fn main() -> standpoint::Result<()> {
    standpoint::allocator::keep_freed_pages();
    standpoint::threads::init(None)?;
    let model_dir = PathBuf::from(arg("--model", "../shared/models/all-MiniLM-L6-v2"));
    let corpus = arg("--corpus", "../shared/bench/corpus.txt");
    let steps: usize = arg("--steps", "20").parse().expect("--steps N");
    let warmup = 3;
    let batch = 32;

    let mut config = ModelConfig::from_file(&model_dir.join("config.json"))?;
    let labels = vec!["a".to_string(), "b".into(), "c".into()];
    config.heads = vec![HeadSpec::new(
        "label",
        labels,
        HeadInput::Text,
        HeadPooling::Pooler,
    )];
    let device = standpoint::parse_device(&arg("--device", "cpu"))?;
    let varmap = VarMap::new();
    let model = Model::new(
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
    )?;
    load_into_varmap(&weights_path(&model_dir), &config, &varmap, |n| {
        n.starts_with("heads.")
    })?;
    let named = standpoint::train::named_vars(&varmap);
    let params: usize = named.iter().map(|(_, v)| v.elem_count()).sum();
    let mut optimizer = AdamW::new(
        named.clone(),
        AdamWConfig {
            lr: 2e-5,
            weight_decay: 0.01,
            ..AdamWConfig::default()
        },
    )?;

    let encoder = TextEncoder::from_file(&model_dir.join("tokenizer.json"), 128)?;
    let text = std::fs::read_to_string(&corpus).map_err(|e| standpoint::Error::Io {
        path: corpus.clone().into(),
        source: e,
    })?;
    let sentences: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let encoded = sentences
        .iter()
        .map(|s| encoder.encode(None, s))
        .collect::<standpoint::Result<Vec<_>>>()?;

    let mut times = Vec::new();
    let mut lengths = Vec::new();
    // Real (unpadded) tokens of each timed batch: the encoder computes only these on CPU.
    let mut real_tokens = Vec::new();
    // Seconds of forward (pad + forward + loss), backward and AdamW per timed step.
    let mut phases: Vec<[f64; 3]> = Vec::new();
    for step in 0..warmup + steps {
        let start = (step * batch) % (encoded.len() - batch);
        let items: Vec<_> = encoded[start..start + batch].iter().collect();
        let gold: Vec<Option<u32>> = (start..start + batch)
            .map(|i| Some((i % 3) as u32))
            .collect();
        let t0 = Instant::now();
        let input = pad_batch(&items, config.encoder.pad_token_id, &device)?;
        let logits = model.forward_t(&input, &[0], true)?.logits.remove(0).1;
        let loss = cross_entropy(&logits, &gold, None, 0.0)?.expect("every row is labelled");
        let t_forward = t0.elapsed().as_secs_f64();
        let grads = loss.backward()?;
        let grads: Vec<Option<Tensor>> = named
            .iter()
            .map(|(_, v)| grads.get(v.as_tensor()).cloned())
            .collect();
        let t_backward = t0.elapsed().as_secs_f64();
        optimizer.step(&grads)?;
        let elapsed = t0.elapsed().as_secs_f64();
        if step >= warmup {
            times.push(elapsed);
            phases.push([t_forward, t_backward - t_forward, elapsed - t_backward]);
            lengths.push(input.input_ids.dim(1)?);
            real_tokens.push(items.iter().map(|e| e.ids.len()).sum::<usize>());
        }
        eprintln!(
            "step {step} loss {:.4} padded_len {} {elapsed:.3}s",
            loss.to_scalar::<f32>()?,
            input.input_ids.dim(1)?
        );
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let phase = |i: usize| phases.iter().map(|p| p[i]).sum::<f64>() / phases.len() as f64;
    println!(
        "RESULT system=standpoint train params={params} bs={batch} steps={steps} mean_padded_len={:.1} mean_real_len={:.1} step_s={mean:.3} (fwd {:.3} bwd {:.3} adamw {:.3}) examples_per_s={:.2} median_step_s={median:.3} median_examples_per_s={:.2}",
        lengths.iter().sum::<usize>() as f64 / lengths.len() as f64,
        real_tokens.iter().sum::<usize>() as f64 / (real_tokens.len() * batch) as f64,
        phase(0),
        phase(1),
        phase(2),
        batch as f64 / mean,
        batch as f64 / median,
    );
    Ok(())
}
