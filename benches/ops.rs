//! Time per op kind of one encoder layer at the corpus's typical batch shape, with the
//! matrix-multiply rate each linear layer reaches, so optimisation starts from measurements.
//! Uses the same `standpoint::cpu::ops` functions as the model; weights are random.
//!
//! `cargo bench --bench ops -- [--batch 32] [--seq 36] [--hidden 384] [--ffn 1536] [--heads 12] [--reps 20]`

mod common;

/// As the `standpoint` binary (see src/main.rs).
#[global_allocator]
static ALLOCATOR: standpoint::allocator::MiMalloc = standpoint::allocator::MiMalloc;

use common::arg;
use std::time::Instant;

use candle_core::{DType, Device, Module, Result, Tensor};
use standpoint::cpu::ops;
use standpoint::model::config::Activation;
use standpoint::model::nn::Linear;

/// Median seconds of `reps` calls of `f` after one warm-up call.
fn time(reps: usize, mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    f()?;
    let mut times = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f().map(|_| t0.elapsed().as_secs_f64())
        })
        .collect::<Result<Vec<_>>>()?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn random(shape: &[usize]) -> Result<Tensor> {
    Tensor::randn(0f32, 1.0, shape, &Device::Cpu)
}

/// A dense layer as the model holds it at inference (weights packed at load where the CPU
/// allows) beside the same layer unpacked (the general matrix multiply, as in training).
struct Dense {
    general: Linear,
    packed: Linear,
}

impl Dense {
    fn new(input: usize, output: usize) -> Result<Self> {
        let general = Linear::new((random(&[output, input])? * 0.05)?, random(&[output])?);
        let mut packed = general.clone();
        packed.pack_f32()?;
        Ok(Dense { general, packed })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.packed.forward(x)
    }

    fn forward_general(&self, x: &Tensor) -> Result<Tensor> {
        self.general.forward(x)
    }

    fn weight(&self) -> &Tensor {
        self.general.weight()
    }

    fn bias(&self) -> &Tensor {
        self.general.bias()
    }
}

fn main() -> Result<()> {
    standpoint::allocator::keep_freed_pages();
    standpoint::threads::init(None).expect("thread count");
    let num = |name: &str, default: &str| -> usize { arg(name, default).parse().expect(name) };
    let (batch, seq, hidden, ffn, heads) = (
        num("--batch", "32"),
        num("--seq", "36"),
        num("--hidden", "384"),
        num("--ffn", "1536"),
        num("--heads", "12"),
    );
    let reps = num("--reps", "20");
    let tokens = batch * seq;
    let x = random(&[batch, seq, hidden])?;
    let wide = random(&[batch, seq, ffn])?;
    let mask = Tensor::ones((batch, seq), DType::U32, &Device::Cpu)?;
    let bias = ops::attention_bias(&mask, DType::F32)?;
    let keys = ops::AttentionKeys::Padded(bias.clone());
    let gamma = Tensor::ones(hidden, DType::F32, &Device::Cpu)?;
    let beta = Tensor::zeros(hidden, DType::F32, &Device::Cpu)?;
    let square = Dense::new(hidden, hidden)?;
    let up = Dense::new(hidden, ffn)?;
    let down = Dense::new(ffn, hidden)?;

    // (op kind, calls per layer, seconds per call, FLOPs per call)
    let mut rows: Vec<(&str, usize, f64, f64)> = Vec::new();
    let gemm = |m: usize, n: usize, k: usize| 2.0 * (m * n * k) as f64;
    rows.push((
        "linear h->h (Q, K, V, out)",
        4,
        time(reps, || square.forward(&x))?,
        gemm(tokens, hidden, hidden),
    ));
    rows.push((
        "linear h->ffn",
        1,
        time(reps, || up.forward(&x))?,
        gemm(tokens, ffn, hidden),
    ));
    rows.push((
        "linear ffn->h",
        1,
        time(reps, || down.forward(&wide))?,
        gemm(tokens, hidden, ffn),
    ));
    rows.push((
        "self-attention, fused (QK^T, mask, softmax, PV)",
        1,
        time(reps, || {
            ops::self_attention(&x, &x, &x, &keys, heads, 0.0, false)
        })?,
        2.0 * gemm(batch * seq, seq, hidden),
    ));
    let composed = time(reps, || {
        let q = ops::split_heads(&x, heads)?;
        ops::merge_heads(&ops::attention(&q, &q, &q, &bias, 0.0, false)?)?.contiguous()
    })?;
    rows.push(("residual add", 2, time(reps, || &x + &x)?, 0.0));
    rows.push((
        "layer norm",
        2,
        time(reps, || ops::layer_norm(&x, &gamma, &beta, 1e-12))?,
        0.0,
    ));
    rows.push((
        "gelu",
        1,
        time(reps, || ops::activation(&wide, Activation::Gelu, false))?,
        0.0,
    ));

    let layer: f64 = rows.iter().map(|r| r.1 as f64 * r.2).sum();
    println!(
        "one layer at batch {batch} x seq {seq} (hidden {hidden}, ffn {ffn}, {heads} heads), {} threads",
        standpoint::threads::count()
    );
    println!("| op | calls | ms per call | share of layer | GFLOP/s |");
    println!("|---|---|---|---|---|");
    for (name, calls, secs, flops) in &rows {
        let rate = if *flops > 0.0 {
            format!("{:.0}", flops / secs / 1e9)
        } else {
            "—".into()
        };
        println!(
            "| {name} | {calls} | {:.3} | {:.1}% | {rate} |",
            secs * 1e3,
            100.0 * *calls as f64 * secs / layer
        );
    }
    println!(
        "RESULT layer_ms={:.3} sentences_per_s_if_6_layers={:.1}",
        layer * 1e3,
        batch as f64 / (6.0 * layer)
    );

    println!(
        "RESULT self_attention_composed_ms={:.3} (split heads, candle matmuls, merge heads)",
        composed * 1e3
    );
    let big = random(&[2048, 2048])?;
    let peak = time(5, || big.matmul(&big))?;
    println!(
        "RESULT matmul_2048_gflops={:.0}",
        gemm(2048, 2048, 2048) / peak / 1e9
    );
    let values: Vec<f32> = big.flatten_all()?.to_vec1()?;
    let int8_square = standpoint::cpu::int8::Int8Linear::new(&values, &[0.0; 2048], 2048, 2048);
    let int8_peak = time(5, || {
        Tensor::from_vec(int8_square.forward(&values), (2048, 2048), &Device::Cpu)
    })?;
    println!(
        "RESULT int8_matmul_2048_gops={:.0}",
        gemm(2048, 2048, 2048) / int8_peak / 1e9
    );

    // Int8 (per-channel weights, per-row activations): candle's Q8_0 blocks and our VNNI kernel.
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use standpoint::cpu::int8::Int8Linear;
    let flat = wide.reshape((tokens, ffn))?;
    let narrow = x.reshape((tokens, hidden))?;
    for (name, layer, input, k) in [
        ("ffn->h", &down, &flat, ffn),
        ("h->ffn", &up, &narrow, hidden),
        ("h->h", &square, &narrow, hidden),
    ] {
        let n = layer.weight().dim(0)?;
        let flops = gemm(tokens, n, k);
        let f32_secs = time(reps, || layer.forward_general(input))?;
        let packed_secs = time(reps, || layer.forward(input))?;
        let q = QMatMul::from_qtensor(QTensor::quantize(layer.weight(), GgmlDType::Q8_0)?)?;
        let q8_secs = time(reps, || q.forward(input))?;
        let weights: Vec<f32> = layer.weight().flatten_all()?.to_vec1()?;
        let bias: Vec<f32> = layer.bias().to_vec1()?;
        let int8 = Int8Linear::new(&weights, &bias, n, k);
        let values: Vec<f32> = input.flatten_all()?.to_vec1()?;
        let int8_secs = time(reps, || {
            Tensor::from_vec(int8.forward(&values), (tokens, n), &Device::Cpu)
        })?;
        println!(
            "RESULT linear {name}: f32 general {:.0} GFLOP/s, f32 packed {:.0} GFLOP/s, candle q8_0 {:.0} GOP/s, standpoint int8 {:.0} GOP/s",
            flops / f32_secs / 1e9,
            flops / packed_secs / 1e9,
            flops / q8_secs / 1e9,
            flops / int8_secs / 1e9
        );
    }
    Ok(())
}
