//! Numeric building blocks of the encoder, kept in one place so that fused kernels can
//! replace them without touching the model's structure.
//!
//! Every function here is differentiable: training runs through the same code.
//! (`candle_nn::ops::layer_norm` and `softmax_last_dim` are fused but have no backward,
//! so gradients would silently stop at them; they are deliberately not used.)

use std::mem::MaybeUninit;

use candle_core::{DType, Result, Tensor};

mod activation;
mod attention;
mod dropout;
mod layer_norm;
mod linear;
mod pooling;
mod softmax;

pub use activation::{Activation, GeluErf, activation};
pub use attention::{
    AttentionGrad, AttentionKeys, FusedAttention, attention, attention_bias, merge_heads,
    self_attention, split_heads,
};
pub use dropout::{ApplyDropout, dropout, dropout_mask, seed_dropout};
pub use layer_norm::{FusedLayerNorm, layer_norm, residual_layer_norm};
pub use linear::{
    FusedLinear, PreparedLinear, feed_forward_prepared, linear, linear_dropout, linear_prepared,
};
pub use pooling::masked_mean;
pub use softmax::softmax_last_dim;

/// Whether the fused CPU path applies: every tensor f32 and on the CPU. Elsewhere each op
/// falls back to its composition of candle ops.
pub fn fused(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// Elements per parallel task: enough work to outweigh scheduling.
const TASK_ELEMENTS: usize = 8192;

/// The f32 values of a contiguous CPU tensor; an error naming `op` otherwise.
pub(crate) fn contiguous_f32<'a>(
    op: &str,
    storage: &'a candle_core::CpuStorage,
    layout: &candle_core::Layout,
) -> Result<&'a [f32]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&storage.as_slice::<f32>()?[start..end]),
        None => candle_core::bail!("{op} needs contiguous tensors"),
    }
}

/// The f32 values of a contiguous CPU tensor, to write in place (the custom in-place ops);
/// an error naming `op` otherwise.
pub(crate) fn contiguous_f32_mut<'a>(
    op: &str,
    storage: &'a mut candle_core::CpuStorage,
    layout: &candle_core::Layout,
) -> Result<&'a mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (candle_core::CpuStorage::F32(values), Some((start, end))) => Ok(&mut values[start..end]),
        _ => candle_core::bail!("{op} needs contiguous f32 tensors"),
    }
}

/// A new buffer of `len` f32s for a kernel to fill, with `fill(buffer)`: not zeroed first
/// (the kernel writes every element, so zeroing would be a wasted pass over memory).
///
/// # Safety
/// `fill` must write every element.
unsafe fn filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    fill(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: the caller's `fill` wrote all `len` elements.
    unsafe { out.set_len(len) };
    out
}

/// Applies `kernel(input rows, output rows)` to whole rows of `width` elements of a
/// contiguous f32 tensor, in parallel tasks of about [`TASK_ELEMENTS`] elements.
///
/// # Safety
/// `kernel` must write every element of its output rows.
unsafe fn map_rows_parallel(
    op: &str,
    storage: &candle_core::CpuStorage,
    layout: &candle_core::Layout,
    width: usize,
    kernel: impl Fn(&[f32], &mut [MaybeUninit<f32>]) + Sync,
) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
    use rayon::prelude::*;
    let input = contiguous_f32(op, storage, layout)?;
    let task = (TASK_ELEMENTS / width.max(1)).max(1) * width.max(1);
    // SAFETY: the tasks cover the output, and the caller's kernel writes all of each.
    let out = unsafe {
        filled(input.len(), |out| {
            out.par_chunks_mut(task)
                .zip(input.par_chunks(task))
                .for_each(|(o, i)| kernel(i, o))
        })
    };
    Ok((candle_core::CpuStorage::F32(out), layout.shape().clone()))
}

/// Applies `kernel(a rows, b rows, output rows)` to whole rows of `width` elements of two
/// contiguous f32 tensors of one shape, in parallel tasks of about [`TASK_ELEMENTS`] elements.
///
/// # Safety
/// `kernel` must write every element of its output rows.
unsafe fn zip_rows_parallel(
    op: &str,
    a: (&candle_core::CpuStorage, &candle_core::Layout),
    b: (&candle_core::CpuStorage, &candle_core::Layout),
    width: usize,
    kernel: impl Fn(&[f32], &[f32], &mut [MaybeUninit<f32>]) + Sync,
) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
    use rayon::prelude::*;
    if a.1.shape() != b.1.shape() {
        candle_core::bail!(
            "{op}: shapes {:?} and {:?} differ",
            a.1.shape(),
            b.1.shape()
        );
    }
    let (first, second) = (contiguous_f32(op, a.0, a.1)?, contiguous_f32(op, b.0, b.1)?);
    let task = (TASK_ELEMENTS / width.max(1)).max(1) * width.max(1);
    // SAFETY: the tasks cover the output, and the caller's kernel writes all of each.
    let out = unsafe {
        filled(first.len(), |out| {
            out.par_chunks_mut(task)
                .zip(first.par_chunks(task).zip(second.par_chunks(task)))
                .for_each(|(o, (a, b))| kernel(a, b, o))
        })
    };
    Ok((candle_core::CpuStorage::F32(out), a.1.shape().clone()))
}

/// Runs `f` on the f32 values of a CPU tensor held by a custom op (not one of its operands).
fn with_f32_values<R>(op: &str, t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(cpu) => Ok(f(contiguous_f32(op, cpu, layout)?)),
        _ => candle_core::bail!("{op} needs CPU tensors"),
    }
}

/// Runs `f` on the values of an optional tensor (see [`with_f32_values`]).
fn with_optional_f32_values<R>(
    op: &str,
    t: Option<&Tensor>,
    f: impl FnOnce(Option<&[f32]>) -> R,
) -> Result<R> {
    match t {
        Some(t) => with_f32_values(op, t, |values| f(Some(values))),
        None => Ok(f(None)),
    }
}

/// Deterministic inputs and comparisons shared by the equivalence tests of every op family.
#[cfg(test)]
mod test_support {
    use candle_core::{Device, Tensor};
    /// Deterministic, irregular values in [-scale/2, scale/2).
    pub(super) fn irregular(shape: &[usize], seed: f32, scale: f32) -> candle_core::Var {
        let n: usize = shape.iter().product();
        let values = crate::cpu::test_support::irregular(n, seed, scale);
        candle_core::Var::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// Values of `y` and the gradients of `Σ y ⊙ sin(index)` with respect to `vars`.
    pub(super) fn values_and_grads(
        y: &Tensor,
        vars: &[&candle_core::Var],
    ) -> (Vec<f32>, Vec<Vec<f32>>) {
        let n = y.elem_count();
        let weights = Tensor::arange(0f32, n as f32, &Device::Cpu)
            .unwrap()
            .sin()
            .unwrap()
            .reshape(y.shape())
            .unwrap();
        let grads = (y * weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (
            flat(y),
            vars.iter()
                .map(|v| flat(grads.get(v.as_tensor()).expect("a gradient")))
                .collect(),
        )
    }

    pub(super) fn assert_close(want: &[f32], got: &[f32], tolerance: f32, what: &str) {
        assert_eq!(want.len(), got.len(), "{what}: lengths");
        for (i, (w, g)) in want.iter().zip(got).enumerate() {
            assert!(
                (w - g).abs() <= tolerance * w.abs().max(1.0),
                "{what}[{i}]: {w} vs {g}"
            );
        }
    }
}
