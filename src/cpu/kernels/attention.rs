//! Scaled dot-product self-attention of one sequence, all heads, and its backward.

use std::mem::MaybeUninit;

use super::LANES;
use super::gemm::small_gemm;
use super::softmax::{softmax_columns_in_place, softmax_grad_columns};

/// Shape of one sequence's self-attention: `seq` tokens, `heads` heads of `head_dim` values,
/// rows of `heads * head_dim` values (the layout the Q/K/V projections produce).
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    /// Tokens in the (padded) sequence.
    pub seq: usize,
    /// Attention heads.
    pub heads: usize,
    /// Values per head.
    pub head_dim: usize,
}

/// Scaled dot-product attention of one sequence, all heads:
/// `out[i, h] = Σ_j dropout(softmax_j(scale · q[i, h]·k[j, h] + key_bias[j]))[h, i, j] v[j, h]`.
/// `q`, `k`, `v`, `out`: `seq × (heads · head_dim)` row-major, read and written in place
/// (no head-split copies); `key_bias`: `seq` values added to every query's scores (0, or a
/// large negative value for padding); `dropout`: `heads × seq × seq` factors (0 or
/// `1 / (1 - p)`) multiplying the attention weights, if any; `scores` is resized as needed.
/// Writes every element of the first `seq` rows of `out` (which need not be initialised).
///
/// # Panics
/// If a slice is shorter than the shape says.
#[allow(clippy::too_many_arguments)]
pub fn attention_sequence(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    key_bias: &[f32],
    dropout: Option<&[f32]>,
    out: &mut [MaybeUninit<f32>],
    shape: AttentionShape,
    scores: &mut Vec<f32>,
) {
    let AttentionShape {
        seq,
        heads,
        head_dim,
    } = shape;
    let width = heads * head_dim;
    check_attention_operands(&[q, k, v], key_bias, dropout, shape);
    assert!(out.len() >= seq * width, "attention output too short");
    if seq == 0 || head_dim == 0 {
        return;
    }
    let stride = query_stride(seq);
    scores.resize(seq * stride, 0.0);
    for h in 0..heads {
        let column = h * head_dim;
        attention_weights(q, k, key_bias, shape, h, scores);
        if let Some(mask) = dropout {
            multiply_transposed_in_place(scores, &mask[h * seq * seq..(h + 1) * seq * seq], seq);
        }
        // SAFETY: v and out hold seq rows of `width` values (checked above), so the
        // seq × head_dim blocks at `column` with row stride `width` are in bounds; scores
        // holds seq rows of `stride` ≥ seq values, read transposed.
        unsafe {
            small_gemm(
                (seq, head_dim, seq),
                (out[column..].as_mut_ptr().cast::<f32>(), width, 1),
                false,
                (scores.as_ptr(), 1, stride),
                (v[column..].as_ptr(), width, 1),
                1.0,
            );
        }
    }
}

/// Row length of the key-major weight matrices: `seq` queries rounded up to whole lane
/// blocks, so that the softmax runs down whole vectors of queries with no tail.
fn query_stride(seq: usize) -> usize {
    seq.div_ceil(LANES) * LANES
}

/// Panics unless every matrix holds `seq` rows of `heads · head_dim` values, the key bias `seq`
/// values and the dropout mask (if any) `heads × seq × seq`: the attention kernels' raw-pointer
/// products rely on it.
fn check_attention_operands(
    matrices: &[&[f32]],
    key_bias: &[f32],
    dropout: Option<&[f32]>,
    shape: AttentionShape,
) {
    let AttentionShape {
        seq,
        heads,
        head_dim,
    } = shape;
    for matrix in matrices {
        assert!(
            matrix.len() >= seq * heads * head_dim,
            "attention operand too short"
        );
    }
    assert!(key_bias.len() >= seq, "attention key bias too short");
    if let Some(mask) = dropout {
        assert!(
            mask.len() >= heads * seq * seq,
            "attention dropout mask too short"
        );
    }
}

/// `scores` = the softmax-normalised attention weights of head `h`,
/// `softmax_j(scale · q[i, h]·k[j, h] + key_bias[j])`, key-major: key `j`, query `i` at
/// `scores[j · stride + i]` with `stride` = [`query_stride`]`(seq)` (the columns past `seq`
/// hold the weights of no query). Key-major, each key's bias is a whole row and the softmax
/// over keys runs down columns, 16 queries per vector: no horizontal sums and no short
/// tails (rows are a few dozen keys wide, and row-wise that had been most of the softmax).
fn attention_weights(
    q: &[f32],
    k: &[f32],
    key_bias: &[f32],
    shape: AttentionShape,
    h: usize,
    scores: &mut [f32],
) {
    let AttentionShape {
        seq,
        heads,
        head_dim,
    } = shape;
    let (width, column, stride) = (heads * head_dim, h * head_dim, query_stride(seq));
    let scale = 1.0 / (head_dim as f32).sqrt();
    let scores = &mut scores[..seq * stride];
    for (row, &bias) in scores.chunks_exact_mut(stride).zip(key_bias) {
        row.fill(bias);
    }
    // SAFETY: q and k hold seq rows of `width` values (checked by the callers), so the
    // seq × head_dim blocks starting at `column` with row stride `width` are in bounds;
    // scores holds seq rows of `stride` ≥ seq values.
    unsafe {
        small_gemm(
            (seq, seq, head_dim),
            (scores.as_mut_ptr(), stride, 1),
            true,
            (k[column..].as_ptr(), width, 1),
            (q[column..].as_ptr(), 1, width),
            scale,
        );
    }
    softmax_columns_in_place(scores, stride);
}

/// `values[j · stride + i] *= factors[i · seq + j]` for `i, j < seq`: query-major dropout
/// factors applied to key-major weights (`stride` from the length of `values`).
fn multiply_transposed_in_place(values: &mut [f32], factors: &[f32], seq: usize) {
    let stride = values.len() / seq.max(1);
    for (j, row) in values.chunks_exact_mut(stride).enumerate() {
        for (i, v) in row[..seq].iter_mut().enumerate() {
            *v *= factors[i * seq + j];
        }
    }
}

/// Gradients of [`attention_sequence`] for one sequence, all heads: given `grad_out`
/// (`seq × width`, the gradient of `out`), writes `grad_q`, `grad_k`, `grad_v`
/// (`seq × width` each). The attention weights are recomputed from `q` and `k`;
/// `dropout` must be the mask the forward pass used. `scratch` is resized as needed.
///
/// Per head, with `P` the weights, `M` the dropout factors and `G` = `grad_out`:
/// `dV = (P ⊙ M)ᵀ G`, `dP = (G Vᵀ) ⊙ M`, `dS = P ⊙ (dP − rowsum(dP ⊙ P))`,
/// `dQ = scale · dS K`, `dK = scale · dSᵀ Q`.
///
/// # Panics
/// If a slice is shorter than the shape says.
#[allow(clippy::too_many_arguments)]
pub fn attention_sequence_grad(
    (q, k, v): (&[f32], &[f32], &[f32]),
    key_bias: &[f32],
    dropout: Option<&[f32]>,
    grad_out: &[f32],
    (grad_q, grad_k, grad_v): (&mut [f32], &mut [f32], &mut [f32]),
    shape: AttentionShape,
    scratch: &mut Vec<f32>,
) {
    let AttentionShape {
        seq,
        heads,
        head_dim,
    } = shape;
    let width = heads * head_dim;
    check_attention_operands(
        &[q, k, v, grad_out, &*grad_q, &*grad_k, &*grad_v],
        key_bias,
        dropout,
        shape,
    );
    if seq == 0 || head_dim == 0 {
        return;
    }
    let scale = 1.0 / (head_dim as f32).sqrt();
    // Key-major, as `attention_weights` gives them: key j, query i at [j * stride + i].
    let stride = query_stride(seq);
    let square = seq * stride;
    scratch.resize(3 * square, 0.0);
    let (probs, rest) = scratch.split_at_mut(square);
    let (kept, grad_probs) = rest.split_at_mut(square);
    for h in 0..heads {
        let column = h * head_dim;
        let mask = dropout.map(|m| &m[h * seq * seq..(h + 1) * seq * seq]);
        attention_weights(q, k, key_bias, shape, h, probs);
        kept.copy_from_slice(probs);
        if let Some(mask) = mask {
            multiply_transposed_in_place(kept, mask, seq);
        }
        // SAFETY: (all four products) every seq × head_dim block starts at `column` of a
        // slice holding seq rows of `width` values (checked above) and is read with row
        // stride `width`; the key-major buffers hold seq rows of `stride` ≥ seq values;
        // outputs do not overlap inputs.
        unsafe {
            // dV = keptᵀ G (kept is stored transposed)
            small_gemm(
                (seq, head_dim, seq),
                (grad_v[column..].as_mut_ptr(), width, 1),
                false,
                (kept.as_ptr(), stride, 1),
                (grad_out[column..].as_ptr(), width, 1),
                1.0,
            );
            // d(kept)ᵀ = V Gᵀ
            small_gemm(
                (seq, seq, head_dim),
                (grad_probs.as_mut_ptr(), stride, 1),
                false,
                (v[column..].as_ptr(), width, 1),
                (grad_out[column..].as_ptr(), 1, width),
                1.0,
            );
        }
        if let Some(mask) = mask {
            multiply_transposed_in_place(grad_probs, mask, seq);
        }
        softmax_grad_columns(probs, grad_probs, kept, stride);
        let grad_scores = &*kept;
        // SAFETY: as above.
        unsafe {
            // dQ = scale · dS K (dS is stored transposed)
            small_gemm(
                (seq, head_dim, seq),
                (grad_q[column..].as_mut_ptr(), width, 1),
                false,
                (grad_scores.as_ptr(), 1, stride),
                (k[column..].as_ptr(), width, 1),
                scale,
            );
            // dK = scale · dSᵀ Q
            small_gemm(
                (seq, head_dim, seq),
                (grad_k[column..].as_mut_ptr(), width, 1),
                false,
                (grad_scores.as_ptr(), stride, 1),
                (q[column..].as_ptr(), width, 1),
                scale,
            );
        }
    }
}
