//! One micro-batch of training: forward through the heads its examples are labelled for,
//! the masked losses, backward, and the gradients added into the optimizer step's.

use candle_core::{Device, Tensor, Var};

use super::loss;
use crate::data::items::{self, Item};
use crate::error::Result;
use crate::model::Model;

/// What every micro-batch of a run shares.
pub(super) struct StepContext<'a> {
    pub model: &'a Model,
    pub items: &'a [Item],
    /// Per head, per label weights (`--class-weights`).
    pub class_weights: Option<&'a [Vec<f32>]>,
    pub label_smoothing: f64,
    pub pad_token_id: u32,
    pub device: &'a Device,
}

impl StepContext<'_> {
    /// The summed loss of the heads the examples of `batch` are labelled for; `None` when
    /// no head has a label in it.
    pub fn loss(&self, batch: &[usize]) -> Result<Option<Tensor>> {
        let input = items::batch_input(self.items, batch, self.pad_token_id, self.device)?;
        let heads: Vec<usize> = (0..self.model.heads().len())
            .filter(|&h| batch.iter().any(|&i| self.items[i].labels[h].is_some()))
            .collect();
        let forward = self.model.forward_t(&input, &heads, true)?;
        let mut total: Option<Tensor> = None;
        for (head, logits) in &forward.logits {
            let labels = items::batch_labels(self.items, batch, *head);
            let weights = self.class_weights.map(|w| w[*head].as_slice());
            if let Some(l) = loss::cross_entropy(logits, &labels, weights, self.label_smoothing)? {
                total = Some(match total {
                    Some(t) => (t + l)?,
                    None => l,
                });
            }
        }
        Ok(total)
    }
}

/// Backpropagates `loss` and adds each variable's gradient into `grads` (in `vars` order).
pub(super) fn accumulate_gradients(
    loss: &Tensor,
    vars: &[Var],
    grads: &mut [Option<Tensor>],
) -> Result<()> {
    let store = loss.backward()?;
    for (slot, var) in grads.iter_mut().zip(vars) {
        if let Some(g) = store.get(var.as_tensor()) {
            *slot = Some(match slot.take() {
                Some(acc) => (acc + g)?,
                None => g.clone(),
            });
        }
    }
    Ok(())
}
