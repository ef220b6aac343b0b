//! The parameterised building blocks (dense layer, LayerNorm, embedding table), built from a
//! `VarBuilder` (which loads a checkpoint at inference and creates variables in training) or
//! from tensors, and [`Param`], the one table of how fresh parameters start.
//!
//! A layer's activation and output dropout are properties of the layer, so callers write
//! `layer.forward_t(x, train)` and the layer picks the fused CPU kernel that applies them.

use std::sync::Arc;

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::cpu::int8::Int8Linear;
use crate::cpu::ops::{self, Activation};
use crate::cpu::panels::PackedLinear;

/// Standard deviation of fresh weights, as transformers' `initializer_range`.
pub const INIT_STD: f64 = 0.02;

/// The kinds of parameter the network holds, and how each starts when created fresh
/// (transformers' `_init_weights` for BERT-family models).
///
/// ```
/// use standpoint::model::nn::Param;
///
/// assert_eq!(Param::of("heads.stance.classifier.weight", 2), Param::Dense);
/// assert_eq!(Param::of("bert.embeddings.LayerNorm.weight", 1), Param::NormScale);
/// assert_eq!(Param::of("heads.stance.classifier.bias", 1), Param::Bias);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// A dense layer's weight matrix: N(0, [`INIT_STD`]²).
    Dense,
    /// An embedding table: N(0, [`INIT_STD`]²).
    Embedding,
    /// A dense layer's bias: zeros.
    Bias,
    /// LayerNorm's scale: ones.
    NormScale,
    /// LayerNorm's shift: zeros.
    NormShift,
}

impl Param {
    /// How a fresh parameter of this kind starts.
    pub fn init(self) -> Init {
        match self {
            Param::Dense | Param::Embedding => Init::Randn {
                mean: 0.0,
                stdev: INIT_STD,
            },
            Param::Bias | Param::NormShift => Init::Const(0.0),
            Param::NormScale => Init::Const(1.0),
        }
    }

    /// The kind of a stored parameter, from its full name and rank (matrices are dense
    /// weights or embedding tables, which start alike).
    pub fn of(name: &str, rank: usize) -> Param {
        let norm = name.contains("LayerNorm") || name.contains("layer_norm");
        match (rank >= 2, norm, name.ends_with(".weight")) {
            (true, ..) => Param::Dense,
            (false, true, true) => Param::NormScale,
            (false, true, false) => Param::NormShift,
            (false, false, _) => Param::Bias,
        }
    }
}

/// A dense layer `activation(x W^T + b)` followed by dropout (active only in training).
///
/// For CPU inference it can hold an int8 copy of its weights ([`Linear::quantize_int8`]) or
/// a packed f32 copy ([`Linear::pack_f32`]), which forward passes then use instead.
///
/// ```
/// # fn main() -> candle_core::Result<()> {
/// use candle_core::{Device, Module, Tensor};
/// use standpoint::model::nn::Linear;
///
/// let weight = Tensor::new(&[[1f32, 0.0], [0.0, 2.0]], &Device::Cpu)?;
/// let bias = Tensor::new(&[0.5f32, 0.0], &Device::Cpu)?;
/// let layer = Linear::new(weight, bias);
/// let y = layer.forward(&Tensor::new(&[[1f32, 1.0]], &Device::Cpu)?)?;
/// assert_eq!(y.to_vec2::<f32>()?, [[1.5, 2.0]]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
    activation: Option<Activation>,
    dropout: f32,
    int8: Option<Arc<Int8Linear>>,
    packed: Option<Arc<PackedLinear>>,
}

impl Linear {
    /// A layer from its weight `(out, in)` and bias `(out,)`, with no activation or dropout.
    pub fn new(weight: Tensor, bias: Tensor) -> Self {
        Linear {
            weight,
            bias,
            activation: None,
            dropout: 0.0,
            int8: None,
            packed: None,
        }
    }

    /// Loads or creates `weight` and `bias` under `vb`, fresh ones as [`Param`] says.
    pub fn load(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", Param::Dense.init())?;
        let bias = vb.get_with_hints(out_dim, "bias", Param::Bias.init())?;
        Ok(Linear::new(weight, bias))
    }

    /// The same layer with `activation` applied to its product.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = Some(activation);
        self
    }

    /// The same layer with dropout `p` on its output in training.
    pub fn with_dropout(mut self, p: f32) -> Self {
        self.dropout = p;
        self
    }

    /// The weight matrix, `(out, in)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, `(out,)`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// The layer's activation, if any.
    pub fn activation(&self) -> Option<Activation> {
        self.activation
    }

    /// The int8 copy of the weights, once [`Linear::quantize_int8`] made one.
    pub(crate) fn int8(&self) -> Option<&Arc<Int8Linear>> {
        self.int8.as_ref()
    }

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

    /// `dropout(activation(x W^T + b))`, dropout only when `train`.
    ///
    /// With prepared weights exact GELU runs on each block of the product while it is in
    /// cache; on plain f32 CPU weights without activation the dropout mask is applied inside
    /// the product's kernel ([`ops::linear_dropout`]).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = match (&self.int8, &self.packed) {
            (Some(int8), _) => self.forward_prepared(x, int8, train)?,
            (None, Some(packed)) => self.forward_prepared(x, packed, train)?,
            (None, None) => match self.activation {
                None => {
                    return ops::linear_dropout(x, &self.weight, &self.bias, self.dropout, train);
                }
                Some(activation) => ops::activation(
                    &ops::linear(x, &self.weight, &self.bias)?,
                    activation,
                    train,
                )?,
            },
        };
        ops::dropout(&y, self.dropout, train)
    }

    fn forward_prepared<L: ops::PreparedLinear>(
        &self,
        x: &Tensor,
        layer: &Arc<L>,
        train: bool,
    ) -> Result<Tensor> {
        match self.activation {
            Some(Activation::Gelu) => ops::linear_prepared(x, layer, true),
            Some(activation) => {
                ops::activation(&ops::linear_prepared(x, layer, false)?, activation, train)
            }
            None => ops::linear_prepared(x, layer, false),
        }
    }
}

impl Module for Linear {
    /// [`Linear::forward_t`] outside training.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_t(x, false)
    }
}

/// An embedding table under `vb`, fresh as [`Param::Embedding`] says.
pub fn embedding(rows: usize, width: usize, vb: VarBuilder) -> Result<candle_nn::Embedding> {
    let table = vb.get_with_hints((rows, width), "weight", Param::Embedding.init())?;
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
    /// A LayerNorm from its scale and shift, both `(size,)`.
    pub fn from_tensors(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        LayerNorm { weight, bias, eps }
    }

    /// Loads or creates `weight` and `bias` of width `size`, fresh as [`Param`] says.
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(size, "weight", Param::NormScale.init())?,
            bias: vb.get_with_hints(size, "bias", Param::NormShift.init())?,
            eps,
        })
    }

    /// LayerNorm of `x + residual` in one pass (see [`ops::residual_layer_norm`]).
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        ops::residual_layer_norm(x, residual, &self.weight, &self.bias, self.eps)
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}
