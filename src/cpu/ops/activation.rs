//! The feed-forward activation: exact GELU as a parallel kernel with its backward, the
//! other activations through candle.

use candle_core::{Result, Tensor};

use super::{fused, map_rows_parallel, zip_rows_parallel};
use crate::cpu::kernels;

/// Feed-forward activation (`hidden_act` / `activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU with erf, what transformers calls `"gelu"`.
    Gelu,
    /// The tanh approximation (`"gelu_new"`, `"gelu_pytorch_tanh"`, `"gelu_fast"`).
    GeluTanh,
    /// `"relu"`.
    Relu,
}

/// The feed-forward activation. On f32 CPU tensors exact GELU runs as one parallel kernel
/// with a backward kernel ([`GeluErf`]); elsewhere candle's ops. `train` is accepted so that
/// activations with training-only behaviour can be added without touching the callers.
pub fn activation(x: &Tensor, kind: Activation, _train: bool) -> Result<Tensor> {
    match kind {
        Activation::Gelu if fused(&[x]) => x.contiguous()?.apply_op1(GeluErf),
        Activation::Gelu => x.gelu_erf(),
        Activation::GeluTanh => x.gelu(),
        Activation::Relu => x.relu(),
    }
}

/// Exact GELU, `x * Φ(x)`, for contiguous f32 CPU tensors: erf from Abramowitz & Stegun
/// 7.1.26 (absolute error ≤ 1.5e-7), split over rayon's threads (candle's own `gelu_erf` runs
/// libm's scalar `erff` on one thread). The backward, `grad · (Φ(x) + x φ(x))`, is one parallel
/// pass too ([`kernels::gelu_erf_grad_slice`]).
#[derive(Debug, Clone, Copy)]
pub struct GeluErf;

impl candle_core::CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-parallel"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        // SAFETY: the kernel writes every element of its output rows.
        unsafe { map_rows_parallel(self.name(), storage, layout, 1, kernels::gelu_erf_slice) }
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = arg
            .contiguous()?
            .apply_op2_no_bwd(&grad_res.contiguous()?, &GeluErfGrad)?;
        Ok(Some(grad))
    }
}

/// Backward of [`GeluErf`]: arguments `x` and the upstream gradient.
#[derive(Debug, Clone, Copy)]
struct GeluErfGrad;

impl candle_core::CustomOp2 for GeluErfGrad {
    fn name(&self) -> &'static str {
        "gelu-erf-parallel-backward"
    }

    fn cpu_fwd(
        &self,
        x: &candle_core::CpuStorage,
        x_layout: &candle_core::Layout,
        g: &candle_core::CpuStorage,
        g_layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        // SAFETY: the kernel writes every element of its output rows.
        unsafe {
            zip_rows_parallel(self.name(), (x, x_layout), (g, g_layout), 1, |x, g, out| {
                kernels::gelu_erf_grad_slice(x, g, out)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;

    #[test]
    fn parallel_gelu_matches_candle_exact_gelu() {
        // Odd sizes (not a multiple of the chunk), both signs, tails, and a strided input.
        for n in [1usize, 7, 8191, 8193, 3 * 8192 + 5] {
            let values: Vec<f32> = (0..n)
                .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 24.0)
                .collect();
            let x = Tensor::from_vec(values, n, &Device::Cpu).unwrap();
            let want: Vec<f32> = x.gelu_erf().unwrap().to_vec1().unwrap();
            let got: Vec<f32> = activation(&x, Activation::Gelu, false)
                .unwrap()
                .to_vec1()
                .unwrap();
            for (w, g) in want.iter().zip(&got) {
                assert!((w - g).abs() <= 2e-6 * w.abs().max(1.0), "{w} vs {g}");
            }
        }
        let x = Tensor::arange(0f32, 60.0, &Device::Cpu)
            .unwrap()
            .affine(0.25, -7.0)
            .unwrap()
            .reshape((6, 10))
            .unwrap()
            .t()
            .unwrap();
        let want: Vec<Vec<f32>> = x.gelu_erf().unwrap().to_vec2().unwrap();
        let got: Vec<Vec<f32>> = activation(&x, Activation::Gelu, false)
            .unwrap()
            .to_vec2()
            .unwrap();
        for (w, g) in want.iter().flatten().zip(got.iter().flatten()) {
            assert!((w - g).abs() <= 2e-6 * w.abs().max(1.0), "{w} vs {g}");
        }
    }

    #[test]
    fn parallel_gelu_gradient_matches_candle() {
        let values: Vec<f32> = (0..101).map(|i| (i as f32 - 50.0) * 0.13).collect();
        let x = candle_core::Var::new(values.as_slice(), &Device::Cpu).unwrap();
        let weights = Tensor::arange(0f32, 101.0, &Device::Cpu).unwrap();
        let grad = |y: Tensor| {
            let g = (y * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap()
        };
        let want = grad(x.as_tensor().gelu_erf().unwrap());
        let got = grad(activation(x.as_tensor(), Activation::Gelu, false).unwrap());
        // Element i is i · GELU'(x_i), so bound GELU' itself: within 4e-7 of candle's (2.7e-7
        // at most here; the erf approximation alone is within 1.5e-7). Bounding the weighted
        // value relative to itself had allowed 1e-5 where GELU' is near 1.
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            assert!(
                (w - g).abs() <= 4e-7 * (i as f32).max(1.0),
                "{i}: {w} vs {g}"
            );
        }
    }

    #[test]
    fn training_gets_the_gelu_gradient() {
        let values = [-9.0f32, -1.5, -0.1, 0.0, 0.3, 2.0, 12.0];
        let x = candle_core::Var::new(&values, &Device::Cpu).unwrap();
        let y = activation(x.as_tensor(), Activation::Gelu, true).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let got: Vec<f32> = grads.get(x.as_tensor()).unwrap().to_vec1().unwrap();
        // Φ(x) + x φ(x) in f64 through candle's erf.
        let x64 = x.as_tensor().to_dtype(DType::F64).unwrap();
        let cdf = ((&x64 * std::f64::consts::FRAC_1_SQRT_2)
            .unwrap()
            .erf()
            .unwrap()
            + 1.0)
            .unwrap()
            * 0.5;
        let pdf = ((x64.sqr().unwrap() * -0.5).unwrap().exp().unwrap()
            / (2.0 * std::f64::consts::PI).sqrt())
        .unwrap();
        let want: Vec<f64> = (cdf.unwrap() + (&x64 * pdf).unwrap())
            .unwrap()
            .to_vec1()
            .unwrap();
        for ((x, w), g) in values.iter().zip(want).zip(got) {
            assert!((w - f64::from(g)).abs() < 1e-6, "gelu'({x}): {w} vs {g}");
        }
    }
}
