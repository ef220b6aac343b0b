//! Inference throughput on CPU beside `../shared/bench/bench_torch.py infer`: all-MiniLM-L6-v2
//! with a random 3-label head (BERT pooler, as `BertForSequenceClassification`) over the
//! 2,048-sentence corpus; per batch size, sorted by length (or in corpus order with
//! `--orders unsorted`), median of 3 passes after a warm-up; and the same corpus through the
//! public `classify_each` at default settings (tokenization included). Each in f32 and in int8
//! mode, with the share of corpus sentences whose label is the same in both, and the physical
//! limit of each mode (`RESULT limit`: work per corpus sentence over the peak matrix multiply,
//! measured in the same run). A model folder with the head is written to a temporary folder,
//! so `standpoint label` can be timed on it too (its path is printed).
//!
//! `cargo bench --bench infer -- [--model DIR] [--corpus FILE] [--runs N] [--bs 1,8,32,64]
//!  [--orders sorted,unsorted] [--keep DIR]
//!  [--device cpu|cuda:N|metal:N] [--dtype f32|f16|bf16] [--modes f32,int8]`
//! (`--modes` names what to time: `f32` is the `--dtype` compute type, `int8` the CPU int8 mode.)

mod common;

/// As the `standpoint` binary (see src/main.rs).
#[global_allocator]
static ALLOCATOR: standpoint::allocator::MiMalloc = standpoint::allocator::MiMalloc;

use common::arg;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use standpoint::model::{HeadInput, HeadPooling, HeadSpec, ModelConfig};
use standpoint::tokenize::pad_batch;
use standpoint::{Classifier, ClassifierOptions, Query};

/// MiniLM plus a seeded random `stance` head, as a standpoint model folder.
fn model_with_head(base: &Path, dir: &Path) -> standpoint::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| standpoint::Error::Io {
        path: dir.into(),
        source: e,
    })?;
    let mut config = ModelConfig::from_file(&base.join("config.json"))?;
    let labels = ["against", "neutral", "favor"].map(String::from).to_vec();
    config.heads = vec![HeadSpec::new(
        "stance",
        labels,
        HeadInput::Text,
        HeadPooling::Pooler,
    )];
    config.name = Some("minilm-random-head".into());
    let mut tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(base.join("model.safetensors"), &Device::Cpu)?;
    let hidden = config.encoder.hidden_size;
    let values: Vec<f32> = (0..3 * hidden)
        .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.04)
        .collect();
    tensors.insert(
        "heads.stance.classifier.weight".into(),
        Tensor::from_vec(values, (3, hidden), &Device::Cpu)?,
    );
    tensors.insert(
        "heads.stance.classifier.bias".into(),
        Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu)?,
    );
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config.to_value()).unwrap(),
    )
    .unwrap();
    std::fs::copy(base.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The model alone, protocol of bench_torch.py: tokenized up front, fixed batch sizes, in
/// each of `orders`: `sorted` by length (little padding) or `unsorted` (corpus order, as
/// the reference's `order=unsorted` rows).
fn model_alone(
    classifier: &Classifier,
    sentences: &[&str],
    sizes: &[usize],
    orders: &[String],
    runs: usize,
    mode: &str,
) -> standpoint::Result<()> {
    let encoded = sentences
        .iter()
        .map(|s| classifier.text_encoder().encode(None, s))
        .collect::<standpoint::Result<Vec<_>>>()?;
    for name in orders {
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        match name.as_str() {
            "sorted" => order.sort_by_key(|&i| encoded[i].len()),
            "unsorted" => {}
            other => panic!("--orders: {other:?} is neither sorted nor unsorted"),
        }
        model_alone_in_order(classifier, &encoded, &order, name, sizes, runs, mode)?;
    }
    Ok(())
}

/// Multiply-adds (×2) per corpus sentence at each sentence's real length (no padding): the
/// encoder's dense products, QKᵀ and PV, the pooler and a 3-label head.
fn flops_per_sentence(config: &ModelConfig, lengths: &[usize]) -> f64 {
    let e = &config.encoder;
    let (h, inner, labels) = (e.hidden_size as f64, e.intermediate_size as f64, 3.0);
    let total: f64 = lengths
        .iter()
        .map(|&length| {
            let l = length as f64;
            let layer = 2.0 * l * (4.0 * h * h + 2.0 * h * inner) + 4.0 * l * l * h;
            e.num_layers as f64 * layer + 2.0 * h * h + 2.0 * h * labels
        })
        .sum();
    total / lengths.len().max(1) as f64
}

/// The machine's peak matrix multiply now, in (multiply-add × 2) per second, on 2048 × 2048
/// squares (median of 3 after a warm-up): f32 through candle's matrix multiply and
/// standpoint's packed kernel (the better), int8 through standpoint's int8 kernel.
fn peak_matmul(mode: &str) -> standpoint::Result<f64> {
    let square = 2048usize;
    let values: Vec<f32> = (0..square * square)
        .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.1)
        .collect();
    let bias = vec![0f32; square];
    let median_seconds = |f: &mut dyn FnMut()| {
        f();
        let mut times: Vec<f64> = (0..3)
            .map(|_| {
                let t0 = Instant::now();
                f();
                t0.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[1]
    };
    let seconds = if mode == "int8" {
        let layer = standpoint::cpu::int8::Int8Linear::new(&values, &bias, square, square);
        median_seconds(&mut || {
            std::hint::black_box(layer.forward(&values));
        })
    } else {
        let matrix = Tensor::from_vec(values.clone(), (square, square), &Device::Cpu)?;
        let mut general_result = Ok(());
        let general = median_seconds(&mut || {
            general_result = matrix.matmul(&matrix).map(|m| {
                std::hint::black_box(m);
            });
        });
        general_result?;
        match standpoint::cpu::panels::PackedLinear::new(&values, &bias, square, square) {
            Some(packed) => general.min(median_seconds(&mut || {
                std::hint::black_box(packed.forward(&values));
            })),
            None => general,
        }
    };
    Ok(2.0 * (square as f64).powi(3) / seconds)
}

fn model_alone_in_order(
    classifier: &Classifier,
    encoded: &[standpoint::tokenize::Encoded],
    order: &[usize],
    order_name: &str,
    sizes: &[usize],
    runs: usize,
    mode: &str,
) -> standpoint::Result<()> {
    let model = classifier.model();
    let pad = model.config().encoder.pad_token_id;
    for &bs in sizes {
        let pass = || -> standpoint::Result<f64> {
            let t0 = Instant::now();
            for chunk in order.chunks(bs) {
                let items: Vec<_> = chunk.iter().map(|&i| &encoded[i]).collect();
                let input = pad_batch(&items, pad, classifier.device())?;
                let out = model.forward_t(&input, &[0], false)?;
                let _probs: Vec<Vec<f32>> =
                    standpoint::model::heads::probabilities(&out.logits[0].1, None)?.to_vec2()?;
            }
            Ok(encoded.len() as f64 / t0.elapsed().as_secs_f64())
        };
        pass()?;
        let rates = (0..runs)
            .map(|_| pass())
            .collect::<standpoint::Result<Vec<_>>>()?;
        println!(
            "RESULT system=standpoint mode={mode} bs={bs} order={order_name} median_sent_per_s={:.1} runs={rates:.1?}",
            median(rates.clone())
        );
    }
    Ok(())
}

fn main() -> standpoint::Result<()> {
    standpoint::allocator::keep_freed_pages();
    standpoint::threads::init(None)?;
    let base = PathBuf::from(arg("--model", "../shared/models/all-MiniLM-L6-v2"));
    let corpus = arg("--corpus", "../shared/bench/corpus.txt");
    let runs: usize = arg("--runs", "3").parse().expect("--runs N");
    let orders: Vec<String> = arg("--orders", "sorted")
        .split(',')
        .map(str::to_string)
        .collect();
    let keep = arg("--keep", "");
    let sizes: Vec<usize> = arg("--bs", "1,8,32,64")
        .split(',')
        .map(|b| b.parse().expect("--bs N,N,..."))
        .collect();
    let temp = tempfile::tempdir().unwrap();
    let dir = if keep.is_empty() {
        temp.path().join("model")
    } else {
        PathBuf::from(&keep)
    };
    model_with_head(&base, &dir)?;
    println!("model folder: {}", dir.display());

    let text = std::fs::read_to_string(&corpus).unwrap();
    let sentences: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let queries: Vec<Query> = sentences.iter().map(|s| Query::text(s)).collect();
    let device = standpoint::parse_device(&arg("--device", "cpu"))?;
    let dtype = standpoint::Precision::parse(&arg("--dtype", "f32"))?;
    let modes = arg("--modes", if device.is_cpu() { "f32,int8" } else { "f32" });
    let mut labels = Vec::new();
    let mut lengths = Vec::new();
    let mut peaks = Vec::new();
    for mode in modes.split(',') {
        let peak_before = peak_matmul(mode)?;
        let options = ClassifierOptions {
            precision: if mode == "int8" {
                standpoint::Precision::Int8
            } else {
                dtype
            },
            device: device.clone(),
            ..ClassifierOptions::default()
        };
        let kernel = if mode == "int8" {
            standpoint::cpu::int8::kernel_name()
        } else {
            standpoint::cpu::panels::kernel_name()
        };
        println!("RESULT system=standpoint mode={mode} kernel={kernel}");
        let load_start = Instant::now();
        let classifier = Classifier::load(dir.to_str().unwrap(), &options)?;
        let first = classifier.classify_each(&[Query::text(sentences[0])])?;
        println!(
            "RESULT system=standpoint mode={mode} first_prediction_s={:.3}",
            load_start.elapsed().as_secs_f64()
        );
        assert_eq!(first.len(), 1);
        if lengths.is_empty() {
            lengths = sentences
                .iter()
                .map(|s| Ok(classifier.text_encoder().encode(None, s)?.len()))
                .collect::<standpoint::Result<Vec<usize>>>()?;
        }
        model_alone(&classifier, &sentences, &sizes, &orders, runs, mode)?;

        // The public API at its defaults (token-budget batches, tokenization included).
        classifier.classify_each(&queries[..queries.len().min(64)])?;
        let mut predicted = Vec::new();
        let rates = (0..runs)
            .map(|_| {
                let t0 = Instant::now();
                let out = classifier.classify_each(&queries)?;
                let rate = sentences.len() as f64 / t0.elapsed().as_secs_f64();
                predicted = out.into_iter().map(|p| p["stance"].label.clone()).collect();
                Ok(rate)
            })
            .collect::<standpoint::Result<Vec<_>>>()?;
        println!(
            "RESULT system=standpoint mode={mode} api=classify_each defaults median_sent_per_s={:.1} runs={rates:.1?}",
            median(rates.clone())
        );
        labels.push(predicted);
        peaks.push((mode, peak_before.max(peak_matmul(mode)?)));
    }
    // The physical limit: work per sentence over the peak matrix multiply (element-wise
    // work not counted, so no system reaches it). The peak is measured before and after each
    // mode's timings and the higher kept: this shared machine's speed drifts within minutes.
    let per_sentence =
        flops_per_sentence(&ModelConfig::from_file(&dir.join("config.json"))?, &lengths);
    for (mode, peak) in peaks {
        println!(
            "RESULT limit mode={mode} peak_gflops={:.0} gflop_per_sentence={:.3} limit_sent_per_s={:.0}",
            peak / 1e9,
            per_sentence / 1e9,
            peak / per_sentence
        );
    }
    if let [reference, int8] = &labels[..] {
        let same = reference.iter().zip(int8).filter(|(a, b)| a == b).count();
        println!(
            "RESULT int8_vs_f32_label_agreement={:.4} ({same}/{})",
            same as f64 / sentences.len() as f64,
            sentences.len()
        );
    }
    Ok(())
}
