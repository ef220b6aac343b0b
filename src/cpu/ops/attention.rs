//! Multi-head self-attention: the fused per-sequence kernel over padded or packed rows, its
//! backward, and the split-heads composition it must match.

use std::sync::Arc;

use candle_core::{D, DType, Result, Tensor};

use super::{
    contiguous_f32, dropout, dropout_mask, filled, fused, softmax_last_dim, with_f32_values,
    with_optional_f32_values,
};
use crate::cpu::kernels;

/// Additive bias for masked attention scores: large enough that `exp` underflows to 0
/// in every float type, small enough not to overflow f16.
const MASKED_SCORE: f64 = -1.0e4;

/// `(batch, seq, heads * head_dim)` → `(batch, heads, seq, head_dim)`.
pub fn split_heads(x: &Tensor, num_heads: usize) -> Result<Tensor> {
    let (batch, seq, width) = x.dims3()?;
    x.reshape((batch, seq, num_heads, width / num_heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// `(batch, heads, seq, head_dim)` → `(batch, seq, heads * head_dim)`.
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (batch, heads, seq, head_dim) = x.dims4()?;
    x.transpose(1, 2)?.reshape((batch, seq, heads * head_dim))
}

/// Converts a `(batch, seq)` 0/1 attention mask into an additive score bias of shape
/// `(batch, 1, 1, seq)` in `dtype`: 0 where attended, a large negative value where padded.
pub fn attention_bias(mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let (batch, seq) = mask.dims2()?;
    let keep = mask.to_dtype(dtype)?;
    ((keep - 1.0)? * -MASKED_SCORE)?.reshape((batch, 1, 1, seq))
}

/// Scaled dot-product attention over split heads; padded keys get zero weight.
///
/// `q`, `k`, `v`: `(batch, heads, seq, head_dim)`; `bias` from [`attention_bias`].
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    dropout_p: f32,
    train: bool,
) -> Result<Tensor> {
    let head_dim = q.dim(D::Minus1)?;
    let scores = (q.matmul(&k.t()?)? / (head_dim as f64).sqrt())?;
    let scores = scores.broadcast_add(bias)?;
    let probs = softmax_last_dim(&scores)?;
    let probs = dropout(&probs, dropout_p, train)?;
    probs.matmul(v)
}

/// How the rows of self-attention's operands form sequences.
#[derive(Debug, Clone)]
pub enum AttentionKeys {
    /// Operands `(batch, seq, width)`, padded; the additive key bias from [`attention_bias`],
    /// `(batch, 1, 1, seq)`, hides the padding.
    Padded(Tensor),
    /// Operands `(tokens, width)`: sequences of these lengths back to back, padding removed
    /// (see [`crate::cpu::unpad::TokenPacking`]); every key is attended. f32 CPU tensors only.
    Packed(Arc<[usize]>),
}

impl AttentionKeys {
    /// The shape of the attention dropout factors for operands of shape `operands`:
    /// `(batch, heads, seq, seq)` when padded, each sequence's `heads × len × len` back to
    /// back when packed.
    fn dropout_shape(
        &self,
        operands: &candle_core::Shape,
        heads: usize,
    ) -> Result<candle_core::Shape> {
        Ok(match self {
            AttentionKeys::Padded(_) => {
                let (batch, seq, _) = operands.dims3()?;
                (batch, heads, seq, seq).into()
            }
            AttentionKeys::Packed(lengths) => {
                lengths.iter().map(|l| heads * l * l).sum::<usize>().into()
            }
        })
    }
}

/// Multi-head self-attention straight from the projections' layout: `q`, `k`, `v` are
/// `(batch, seq, heads * head_dim)` with [`AttentionKeys::Padded`] or `(tokens, heads *
/// head_dim)` with [`AttentionKeys::Packed`], and the result has their shape, heads merged.
///
/// On f32 CPU tensors this is one parallel kernel per sequence ([`FusedAttention`]: no
/// head-split copies, no per-head tensors), with a fused backward ([`AttentionGrad`]) and the
/// same dropout draws as the composition; elsewhere the composition [`split_heads`] →
/// [`attention`] → [`merge_heads`]. Both are differentiable.
pub fn self_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    keys: &AttentionKeys,
    heads: usize,
    dropout_p: f32,
    train: bool,
) -> Result<Tensor> {
    if fused(&[q, k, v]) {
        let dropout = if train && dropout_p > 0.0 {
            let shape = keys.dropout_shape(q.shape(), heads)?;
            Some(dropout_mask(&shape, dropout_p, DType::F32, q.device())?)
        } else {
            None
        };
        let op = FusedAttention {
            heads,
            keys: keys.clone(),
            dropout,
        };
        return q
            .contiguous()?
            .apply_op3(&k.contiguous()?, &v.contiguous()?, op);
    }
    let AttentionKeys::Padded(bias) = keys else {
        candle_core::bail!("attention over packed tokens runs on f32 CPU tensors only");
    };
    let context = attention(
        &split_heads(q, heads)?,
        &split_heads(k, heads)?,
        &split_heads(v, heads)?,
        bias,
        dropout_p,
        train,
    )?;
    merge_heads(&context)
}

/// The kernel of [`self_attention`]: one parallel task per sequence. Its backward is
/// [`AttentionGrad`] (recomputing the attention weights).
#[derive(Debug, Clone)]
pub struct FusedAttention {
    heads: usize,
    keys: AttentionKeys,
    /// Dropout factors for the attention weights, in training, of
    /// [`AttentionKeys::dropout_shape`].
    dropout: Option<Tensor>,
}

/// One sequence of [`FusedAttention`]'s operands.
struct SequenceRows {
    /// Its first row in the operands.
    first_row: usize,
    /// Where its `heads × seq × seq` dropout factors start.
    first_factor: usize,
    shape: kernels::AttentionShape,
}

/// The sequences of [`FusedAttention`]'s operands, in row order, and the key bias of every row.
struct AttentionPlan {
    sequences: Vec<SequenceRows>,
    key_bias: Vec<f32>,
    width: usize,
}

impl AttentionPlan {
    /// The operand values (rows × width) of sequence `s`.
    fn rows(&self, s: &SequenceRows) -> std::ops::Range<usize> {
        s.first_row * self.width..(s.first_row + s.shape.seq) * self.width
    }

    /// The dropout factors (heads × seq × seq) of sequence `s`.
    fn factors(&self, s: &SequenceRows) -> std::ops::Range<usize> {
        let square = s.shape.heads * s.shape.seq * s.shape.seq;
        s.first_factor..s.first_factor + square
    }

    /// `buffer` (rows × width, the operands' layout) cut into one block per sequence.
    fn split<'a, T>(&self, mut buffer: &'a mut [T]) -> Vec<&'a mut [T]> {
        let mut blocks = Vec::with_capacity(self.sequences.len());
        for s in &self.sequences {
            let (block, rest) = buffer.split_at_mut(s.shape.seq * self.width);
            blocks.push(block);
            buffer = rest;
        }
        blocks
    }
}

/// Checks the operands of [`FusedAttention`] / [`AttentionGrad`] and lays out their sequences.
fn attention_plan(
    op: &str,
    heads: usize,
    keys: &AttentionKeys,
    dropout: Option<&Tensor>,
    layouts: [&candle_core::Layout; 3],
) -> Result<AttentionPlan> {
    let shape = layouts[0].shape();
    if layouts.iter().any(|l| l.shape() != shape) {
        candle_core::bail!(
            "{op}: q {:?}, k {:?} and v {:?} must have one shape",
            layouts[0].shape(),
            layouts[1].shape(),
            layouts[2].shape()
        );
    }
    let width = *shape.dims().last().unwrap_or(&0);
    if heads == 0 || !width.is_multiple_of(heads) {
        candle_core::bail!("{op}: width {width} is not a multiple of {heads} heads");
    }
    let head_shape = |seq| kernels::AttentionShape {
        seq,
        heads,
        head_dim: width / heads,
    };
    let (lengths, key_bias): (Vec<usize>, Vec<f32>) = match keys {
        AttentionKeys::Padded(bias) => {
            let (batch, seq, _) = shape.dims3()?;
            let key_bias: Vec<f32> = bias.flatten_all()?.to_vec1()?;
            if key_bias.len() != batch * seq {
                candle_core::bail!(
                    "{op}: bias {:?} does not match batch {batch} x seq {seq}",
                    bias.shape()
                );
            }
            (vec![seq; batch], key_bias)
        }
        AttentionKeys::Packed(lengths) => {
            let (rows, _) = shape.dims2()?;
            let total: usize = lengths.iter().sum();
            if total != rows {
                candle_core::bail!(
                    "{op}: sequence lengths add up to {total}, the operands have {rows} rows"
                );
            }
            (lengths.to_vec(), vec![0.0; rows])
        }
    };
    if let Some(mask) = dropout {
        let want = keys.dropout_shape(shape, heads)?;
        if mask.shape() != &want {
            candle_core::bail!(
                "{op}: dropout mask {:?} is not {want:?} (heads {heads})",
                mask.shape()
            );
        }
    }
    let mut sequences = Vec::with_capacity(lengths.len());
    let (mut first_row, mut first_factor) = (0, 0);
    for seq in lengths {
        sequences.push(SequenceRows {
            first_row,
            first_factor,
            shape: head_shape(seq),
        });
        first_row += seq;
        first_factor += heads * seq * seq;
    }
    Ok(AttentionPlan {
        sequences,
        key_bias,
        width,
    })
}

impl candle_core::CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "fused-self-attention"
    }

    fn cpu_fwd(
        &self,
        q: &candle_core::CpuStorage,
        q_layout: &candle_core::Layout,
        k: &candle_core::CpuStorage,
        k_layout: &candle_core::Layout,
        v: &candle_core::CpuStorage,
        v_layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let plan = attention_plan(
            self.name(),
            self.heads,
            &self.keys,
            self.dropout.as_ref(),
            [q_layout, k_layout, v_layout],
        )?;
        let (q, k, v) = (
            contiguous_f32(self.name(), q, q_layout)?,
            contiguous_f32(self.name(), k, k_layout)?,
            contiguous_f32(self.name(), v, v_layout)?,
        );
        let out = with_optional_f32_values(self.name(), self.dropout.as_ref(), |dropout| {
            // SAFETY: the sequences cover every row (`attention_plan` checks), and
            // `attention_sequence` writes every element of its sequence's rows.
            unsafe {
                filled(q.len(), |out| {
                    let blocks = plan.split(out);
                    blocks.into_par_iter().zip(&plan.sequences).for_each_init(
                        Vec::new,
                        |scratch, (out, s)| {
                            let rows = plan.rows(s);
                            kernels::attention_sequence(
                                &q[rows.clone()],
                                &k[rows.clone()],
                                &v[rows],
                                &plan.key_bias[s.first_row..][..s.shape.seq],
                                dropout.map(|m| &m[plan.factors(s)]),
                                out,
                                s.shape,
                                scratch,
                            )
                        },
                    )
                })
            }
        })?;
        Ok((candle_core::CpuStorage::F32(out), q_layout.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grads = q.apply_op3_no_bwd(
            k,
            v,
            &AttentionGrad {
                attention: self.clone(),
                grad: grad_res.clone(),
            },
        )?;
        Ok((
            Some(grads.get(0)?),
            Some(grads.get(1)?),
            Some(grads.get(2)?),
        ))
    }
}

/// Backward of [`FusedAttention`] on `(q, k, v)`: one parallel task per sequence
/// ([`kernels::attention_sequence_grad`]), giving `(3, ..)` of the operands' shape: the
/// gradients of q, k and v.
#[derive(Debug, Clone)]
pub struct AttentionGrad {
    /// The forward op: heads, key bias and dropout mask.
    attention: FusedAttention,
    /// Gradient of the attention's output, `(batch, seq, width)`.
    grad: Tensor,
}

impl candle_core::CustomOp3 for AttentionGrad {
    fn name(&self) -> &'static str {
        "fused-self-attention-grad"
    }

    fn cpu_fwd(
        &self,
        q: &candle_core::CpuStorage,
        q_layout: &candle_core::Layout,
        k: &candle_core::CpuStorage,
        k_layout: &candle_core::Layout,
        v: &candle_core::CpuStorage,
        v_layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let attention = &self.attention;
        let plan = attention_plan(
            self.name(),
            attention.heads,
            &attention.keys,
            attention.dropout.as_ref(),
            [q_layout, k_layout, v_layout],
        )?;
        if self.grad.shape() != q_layout.shape() {
            candle_core::bail!(
                "{}: gradient {:?} does not match the output {:?}",
                self.name(),
                self.grad.shape(),
                q_layout.shape()
            );
        }
        let (q, k, v) = (
            contiguous_f32(self.name(), q, q_layout)?,
            contiguous_f32(self.name(), k, k_layout)?,
            contiguous_f32(self.name(), v, v_layout)?,
        );
        let mut out = vec![0f32; 3 * q.len()];
        let (grad_q, rest) = out.split_at_mut(q.len());
        let (grad_k, grad_v) = rest.split_at_mut(q.len());
        let blocks = plan
            .split(grad_q)
            .into_iter()
            .zip(plan.split(grad_k))
            .zip(plan.split(grad_v))
            .collect::<Vec<_>>();
        with_f32_values(self.name(), &self.grad, |grad| {
            with_optional_f32_values(self.name(), attention.dropout.as_ref(), |dropout| {
                blocks.into_par_iter().zip(&plan.sequences).for_each_init(
                    Vec::new,
                    |scratch, (((dq, dk), dv), s)| {
                        let rows = plan.rows(s);
                        kernels::attention_sequence_grad(
                            (&q[rows.clone()], &k[rows.clone()], &v[rows.clone()]),
                            &plan.key_bias[s.first_row..][..s.shape.seq],
                            dropout.map(|m| &m[plan.factors(s)]),
                            &grad[rows],
                            (dq, dk, dv),
                            s.shape,
                            scratch,
                        )
                    },
                )
            })
        })??;
        let mut dims = vec![3];
        dims.extend_from_slice(q_layout.dims());
        Ok((candle_core::CpuStorage::F32(out), dims.into()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::cpu::ops::seed_dropout;
    use crate::cpu::ops::test_support::{assert_close, irregular, values_and_grads};

    #[test]
    fn fused_attention_matches_the_composition_forward_and_backward() {
        // Odd sizes, one and several heads, padded keys (the last `pad` positions of some
        // rows), with and without dropout on the attention weights.
        for (batch, seq, heads, head_dim, pad, dropout) in [
            (1usize, 1usize, 1usize, 1usize, 0usize, 0.0f32),
            (3, 7, 3, 5, 2, 0.0),
            (2, 19, 4, 8, 11, 0.0),
            (1, 1, 1, 1, 0, 0.5),
            (3, 7, 3, 5, 2, 0.3),
            (2, 19, 4, 8, 11, 0.1),
            // The model's head size, and a sequence longer than one 16-query block.
            (2, 39, 2, 32, 5, 0.0),
            (1, 15, 3, 20, 0, 0.2),
        ] {
            let width = heads * head_dim;
            let q = irregular(&[batch, seq, width], 0.0, 4.0);
            let k = irregular(&[batch, seq, width], 1.0, 4.0);
            let v = irregular(&[batch, seq, width], 2.0, 4.0);
            let mask: Vec<u32> = (0..batch * seq)
                .map(|i| u32::from(i / seq == 0 || i % seq < seq - pad))
                .collect();
            let mask = Tensor::from_vec(mask, (batch, seq), &Device::Cpu).unwrap();
            let bias = attention_bias(&mask, DType::F32).unwrap();
            let keys = AttentionKeys::Padded(bias.clone());
            let vars = [&q, &k, &v];
            let (q, k, v) = (q.as_tensor(), k.as_tensor(), v.as_tensor());
            let train = dropout > 0.0;
            // Both paths draw their dropout mask first, from the same seed.
            seed_dropout(11);
            let composed = merge_heads(
                &attention(
                    &split_heads(q, heads).unwrap(),
                    &split_heads(k, heads).unwrap(),
                    &split_heads(v, heads).unwrap(),
                    &bias,
                    dropout,
                    train,
                )
                .unwrap(),
            )
            .unwrap();
            seed_dropout(11);
            let fused = self_attention(q, k, v, &keys, heads, dropout, train).unwrap();
            let (want, want_grads) = values_and_grads(&composed, &vars);
            let (got, got_grads) = values_and_grads(&fused, &vars);
            let case = format!("{batch}x{seq}, {heads} heads of {head_dim}, dropout {dropout}");
            if train {
                // Dropout must really change the output, or the case proves nothing.
                let plain = self_attention(q, k, v, &keys, heads, 0.0, false).unwrap();
                let plain: Vec<f32> = plain.flatten_all().unwrap().to_vec1().unwrap();
                let changed = plain.iter().zip(&want).any(|(p, w)| (p - w).abs() > 1e-3);
                assert!(changed, "{case}: dropout changed nothing");
            }
            assert_close(&want, &got, 1e-5, &format!("{case} output"));
            for (name, (w, g)) in ["q", "k", "v"]
                .iter()
                .zip(want_grads.iter().zip(&got_grads))
            {
                assert_close(w, g, 1e-4, &format!("{case} d{name}"));
            }
        }
    }

    #[test]
    fn packed_attention_equals_each_sequence_alone_forward_and_backward() {
        // Sequences back to back (an empty one among them) against each run alone through
        // the padded kernel (itself checked against the composition above). The dropout
        // factors are drawn sequence after sequence, so one seed gives both sides the same.
        let lengths = [3usize, 1, 0, 7, 5];
        for (heads, head_dim, dropout) in [(1usize, 1usize, 0.0f32), (3, 5, 0.0), (3, 5, 0.3)] {
            let width = heads * head_dim;
            let tokens: usize = lengths.iter().sum();
            let q = irregular(&[tokens, width], 0.0, 4.0);
            let k = irregular(&[tokens, width], 1.0, 4.0);
            let v = irregular(&[tokens, width], 2.0, 4.0);
            let vars = [&q, &k, &v];
            let (q, k, v) = (q.as_tensor(), k.as_tensor(), v.as_tensor());
            let train = dropout > 0.0;
            seed_dropout(5);
            let keys = AttentionKeys::Packed(lengths.to_vec().into());
            let packed = self_attention(q, k, v, &keys, heads, dropout, train).unwrap();
            seed_dropout(5);
            let mut alone = Vec::new();
            let mut first = 0;
            for &len in &lengths {
                if len > 0 {
                    let rows = |t: &Tensor| t.narrow(0, first, len).unwrap().unsqueeze(0).unwrap();
                    let no_padding = Tensor::zeros((1, 1, 1, len), DType::F32, &Device::Cpu);
                    let keys = AttentionKeys::Padded(no_padding.unwrap());
                    let out =
                        self_attention(&rows(q), &rows(k), &rows(v), &keys, heads, dropout, train);
                    alone.push(out.unwrap().squeeze(0).unwrap());
                }
                first += len;
            }
            let alone = Tensor::cat(&alone, 0).unwrap();
            let (want, want_grads) = values_and_grads(&alone, &vars);
            let (got, got_grads) = values_and_grads(&packed, &vars);
            let case = format!("{heads} heads of {head_dim}, dropout {dropout}");
            assert_close(&want, &got, 1e-6, &format!("{case} output"));
            for (name, (w, g)) in ["q", "k", "v"]
                .iter()
                .zip(want_grads.iter().zip(&got_grads))
            {
                assert_close(w, g, 1e-5, &format!("{case} d{name}"));
            }
        }
        // Lengths that do not cover the rows are refused, not read out of bounds.
        let x = Tensor::zeros((4, 6), DType::F32, &Device::Cpu).unwrap();
        let short = AttentionKeys::Packed(vec![1usize, 2].into());
        let err = self_attention(&x, &x, &x, &short, 2, 0.0, false).unwrap_err();
        assert!(err.to_string().contains("add up to 3"), "{err}");
    }
}
