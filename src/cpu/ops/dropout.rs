//! Inverted dropout: reproducible masks from a seeded per-thread generator, applied by a
//! kernel whose backward skips the constant mask.

use std::cell::RefCell;

use candle_core::{DType, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{fused, zip_rows_parallel};
use crate::cpu::kernels;

thread_local! {
    /// Dropout masks come from here rather than candle's CPU generator, which cannot be
    /// seeded: training must be reproducible (and resumable) for a given seed.
    static DROPOUT_RNG: RefCell<ChaCha8Rng> = RefCell::new(ChaCha8Rng::seed_from_u64(0));
}

/// Seeds the dropout masks drawn on this thread from now on.
pub fn seed_dropout(seed: u64) {
    DROPOUT_RNG.with(|rng| *rng.borrow_mut() = ChaCha8Rng::seed_from_u64(seed));
}

/// Inverted dropout, active only in training: zeroes each value with probability `p`
/// and scales the rest by `1 / (1 - p)`.
pub fn dropout(x: &Tensor, p: f32, train: bool) -> Result<Tensor> {
    if !train || p <= 0.0 {
        return Ok(x.clone());
    }
    let mask = dropout_mask(x.shape(), p, x.dtype(), x.device())?;
    if fused(&[x]) {
        return x.contiguous()?.apply_op2(&mask, ApplyDropout);
    }
    x * mask
}

/// `x ⊙ mask` for [`dropout`] on f32 CPU tensors, with a backward for `x` alone: candle's
/// `Mul` also computes, zero-fills and accumulates a gradient for the constant mask.
#[derive(Debug, Clone, Copy)]
pub struct ApplyDropout;

impl candle_core::CustomOp2 for ApplyDropout {
    fn name(&self) -> &'static str {
        "dropout-mask"
    }

    fn cpu_fwd(
        &self,
        x: &candle_core::CpuStorage,
        x_layout: &candle_core::Layout,
        mask: &candle_core::CpuStorage,
        mask_layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        // SAFETY: the kernel writes every element of its output rows.
        unsafe {
            zip_rows_parallel(
                self.name(),
                (x, x_layout),
                (mask, mask_layout),
                1,
                kernels::multiply,
            )
        }
    }

    fn bwd(
        &self,
        _x: &Tensor,
        mask: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((
            Some(grad_res.contiguous()?.apply_op2_no_bwd(mask, self)?),
            None,
        ))
    }
}

/// The factors of one inverted-dropout draw: each 0 with probability `p`, else `1 / (1 - p)`,
/// drawn in row-major order from this thread's dropout generator (see [`seed_dropout`]).
///
/// Drawn in parallel: each value takes one 32-bit word of the ChaCha stream, so a task can
/// seek to its first value's word and the mask is the same as one serial draw.
pub fn dropout_mask(
    shape: &candle_core::Shape,
    p: f32,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    use rayon::prelude::*;
    const TASK_VALUES: usize = 1 << 15;
    let scale = 1.0 / (1.0 - p);
    let count = shape.elem_count();
    let (generator, first_word) = DROPOUT_RNG.with(|rng| {
        let mut rng = rng.borrow_mut();
        let first_word = rng.get_word_pos();
        rng.set_word_pos(first_word + count as u128);
        (rng.clone(), first_word)
    });
    let mut mask = vec![0f32; count];
    mask.par_chunks_mut(TASK_VALUES)
        .enumerate()
        .for_each(|(task, values)| {
            let mut rng = generator.clone();
            rng.set_word_pos(first_word + (task * TASK_VALUES) as u128);
            for value in values {
                *value = if rng.random::<f32>() < p { 0.0 } else { scale };
            }
        });
    Tensor::from_vec(mask, shape, device)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::cpu::ops::test_support::{irregular, values_and_grads};

    #[test]
    fn dropout_matches_multiplying_by_its_mask_forward_and_backward() {
        for (dims, p) in [
            (vec![1usize], 0.5f32),
            (vec![3, 7, 5], 0.1),
            (vec![9, 4099], 0.3),
        ] {
            let x = irregular(&dims, 0.0, 2.0);
            seed_dropout(3);
            let mask = dropout_mask(&dims.clone().into(), p, DType::F32, &Device::Cpu).unwrap();
            let composed = (x.as_tensor() * &mask).unwrap();
            seed_dropout(3);
            let fused = dropout(x.as_tensor(), p, true).unwrap();
            let (want, want_grads) = values_and_grads(&composed, &[&x]);
            let (got, got_grads) = values_and_grads(&fused, &[&x]);
            assert_eq!(want, got, "{dims:?} output");
            assert_eq!(want_grads, got_grads, "{dims:?} gradient");
            let kept = mask.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(
                kept.contains(&0.0) || kept.len() == 1,
                "{dims:?}: nothing dropped"
            );
        }
    }

    #[test]
    fn dropout_masks_are_the_serial_draws_of_the_seeded_stream() {
        let (p, scale) = (0.3f32, 1.0 / 0.7f32);
        seed_dropout(5);
        // Several parallel tasks, then a second draw that must continue the stream.
        let shapes = [(3usize, 40_000usize), (7, 11)];
        let masks: Vec<Vec<f32>> = shapes
            .iter()
            .map(|&s| {
                dropout_mask(&s.into(), p, DType::F32, &Device::Cpu)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            })
            .collect();
        let mut serial = ChaCha8Rng::seed_from_u64(5);
        for (shape, mask) in shapes.iter().zip(&masks) {
            let want: Vec<f32> = (0..shape.0 * shape.1)
                .map(|_| {
                    if serial.random::<f32>() < p {
                        0.0
                    } else {
                        scale
                    }
                })
                .collect();
            assert_eq!(&want, mask, "mask of {shape:?}");
        }
        let dropped = masks[0].iter().filter(|m| **m == 0.0).count() as f32;
        assert!((dropped / masks[0].len() as f32 - p).abs() < 0.01);
    }
}
