//! Parameterised layers shared by the encoder and the heads, built from a `VarBuilder`
//! so the same code loads checkpoints (inference) and creates variables (training).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::ops;

/// Standard deviation of fresh weights, as transformers' `initializer_range`.
pub const INIT_STD: f64 = 0.02;

/// A dense layer `x W^T + b` (see [`ops::linear`]).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::linear(x, &self.weight, &self.bias)
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
    Ok(Linear { weight, bias })
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
