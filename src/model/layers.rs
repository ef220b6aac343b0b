//! Parameterised layers shared by the encoder and the heads, built from a `VarBuilder`
//! so the same code loads checkpoints (inference) and creates variables (training).

use std::sync::Arc;

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::int8::Int8Linear;
use super::ops;

/// Standard deviation of fresh weights, as transformers' `initializer_range`.
pub const INIT_STD: f64 = 0.02;

/// A dense layer `x W^T + b` (see [`ops::linear`]), optionally with an int8 copy of its
/// weights that inference then uses instead ([`Linear::quantize_int8`]).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
    int8: Option<Arc<Int8Linear>>,
}

impl Linear {
    /// Quantizes the weights to int8 (per output channel) for CPU inference; the f32 weights
    /// stay for training and export. Forward passes then quantize activations per row and
    /// carry no gradient.
    pub fn quantize_int8(&mut self) -> Result<()> {
        let (n, k) = self.weight.dims2()?;
        let weight: Vec<f32> = self.weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let bias: Vec<f32> = self.bias.to_dtype(DType::F32)?.to_vec1()?;
        self.int8 = Some(Arc::new(Int8Linear::new(&weight, &bias, n, k)));
        Ok(())
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.int8 {
            Some(int8) => ops::linear_int8(x, int8),
            None => ops::linear(x, &self.weight, &self.bias),
        }
    }
}

/// A dense layer `x W^T + b`, initialised like transformers when created fresh.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get_with_hints(
        (out_dim, in_dim),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: INIT_STD,
        },
    )?;
    let bias = vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?;
    Ok(Linear {
        weight,
        bias,
        int8: None,
    })
}

/// An embedding table, initialised like transformers when created fresh.
pub fn embedding(rows: usize, width: usize, vb: VarBuilder) -> Result<candle_nn::Embedding> {
    let table = vb.get_with_hints(
        (rows, width),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: INIT_STD,
        },
    )?;
    Ok(candle_nn::Embedding::new(table, width))
}

/// LayerNorm with a backward pass (see [`ops::layer_norm`]).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Loads or creates `weight` and `bias` of width `size`.
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(size, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(size, "bias", Init::Const(0.0))?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}
