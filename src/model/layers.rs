//! Parameterised layers shared by the encoder and the heads, built from a `VarBuilder`
//! so the same code loads checkpoints (inference) and creates variables (training).

use std::sync::Arc;

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::config::Activation;
use crate::cpu::int8::Int8Linear;
use crate::cpu::ops;
use crate::cpu::panels::PackedLinear;

/// Standard deviation of fresh weights, as transformers' `initializer_range`.
pub const INIT_STD: f64 = 0.02;

/// A dense layer `x W^T + b` (see [`ops::linear`]), optionally with an int8 copy of its
/// weights ([`Linear::quantize_int8`]) or a packed f32 copy ([`Linear::pack_f32`]) that
/// inference then uses instead.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
    int8: Option<Arc<Int8Linear>>,
    packed: Option<Arc<PackedLinear>>,
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

    /// Packs the f32 weights for CPU inference where the CPU has AVX-512 (elsewhere a no-op);
    /// the plain weights stay for training and export. Forward passes then carry no gradient.
    pub fn pack_f32(&mut self) -> Result<()> {
        if !ops::fused(&[&self.weight]) {
            candle_core::bail!(
                "packed layers run on f32 CPU weights, not {:?} on {:?}",
                self.weight.dtype(),
                self.weight.device()
            );
        }
        let (n, k) = self.weight.dims2()?;
        let weight: Vec<f32> = self.weight.flatten_all()?.to_vec1()?;
        let bias: Vec<f32> = self.bias.to_vec1()?;
        self.packed = PackedLinear::new(&weight, &bias, n, k).map(Arc::new);
        Ok(())
    }
}

impl Linear {
    /// `dropout(x W^T + b)` (active only in training), applied inside the product's kernel
    /// on f32 CPU weights ([`ops::linear_dropout`]).
    pub fn forward_dropout(&self, x: &Tensor, p: f32, train: bool) -> Result<Tensor> {
        match (&self.int8, &self.packed) {
            (None, None) => ops::linear_dropout(x, &self.weight, &self.bias, p, train),
            _ => ops::dropout(&self.forward(x)?, p, train),
        }
    }

    /// `activation(x W^T + b)`; with int8 or packed weights exact GELU runs on each block of
    /// the product while it is in cache, rather than as a pass of its own.
    pub fn forward_activation(
        &self,
        x: &Tensor,
        activation: Activation,
        train: bool,
    ) -> Result<Tensor> {
        match (&self.int8, &self.packed, activation) {
            (Some(int8), _, Activation::Gelu) => ops::linear_prepared(x, int8, true),
            (None, Some(packed), Activation::Gelu) => ops::linear_prepared(x, packed, true),
            _ => ops::activation(&self.forward(x)?, activation, train),
        }
    }

    /// A feed-forward block, `dropout(next(activation(self(x))))` (dropout only in training):
    /// [`Linear::forward_activation`] then [`Linear::forward_dropout`], except where both layers
    /// hold int8 weights and the activation is GELU, where one kernel runs both products
    /// block of rows by block of rows ([`super::int8::Int8Linear::forward_feed_forward`]).
    pub fn forward_feed_forward(
        &self,
        next: &Linear,
        x: &Tensor,
        activation: Activation,
        p: f32,
        train: bool,
    ) -> Result<Tensor> {
        match (&self.int8, &next.int8, activation) {
            (Some(first), Some(second), Activation::Gelu) => {
                ops::dropout(&ops::feed_forward_prepared(x, first, second)?, p, train)
            }
            _ => next.forward_dropout(&self.forward_activation(x, activation, train)?, p, train),
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match (&self.int8, &self.packed) {
            (Some(int8), _) => ops::linear_prepared(x, int8, false),
            (None, Some(packed)) => ops::linear_prepared(x, packed, false),
            (None, None) => ops::linear(x, &self.weight, &self.bias),
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
        packed: None,
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

impl LayerNorm {
    /// LayerNorm of `x + residual` (see [`ops::residual_layer_norm`]).
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        ops::residual_layer_norm(x, residual, &self.weight, &self.bias, self.eps)
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}
