//! Cross-entropy over the labelled rows of a head, with PyTorch's semantics for class
//! weights and label smoothing.

use candle_core::{D, DType, Result, Tensor};

/// Mean cross-entropy of `logits` (`(batch, classes)`) against `labels`, over the rows
/// that have a label; `None` when no row has one.
///
/// Matches `torch.nn.functional.cross_entropy(logits[rows], labels[rows], weight=w,
/// label_smoothing=eps)` with mean reduction:
/// `loss = sum_i sum_c coef[i, c] * -log_softmax(logits)[i, c]` where
/// `coef[i, c] = ((1 - eps) * w[y_i] * [c == y_i] + eps / C * w[c]) / sum_i w[y_i]`.
pub fn cross_entropy(
    logits: &Tensor,
    labels: &[Option<u32>],
    class_weights: Option<&[f32]>,
    label_smoothing: f64,
) -> Result<Option<Tensor>> {
    let (batch, classes) = logits.dims2()?;
    if labels.len() != batch {
        candle_core::bail!("{} labels for a batch of {batch}", labels.len());
    }
    let rows: Vec<u32> = (0..batch as u32)
        .filter(|&i| labels[i as usize].is_some())
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let weight = |c: usize| class_weights.map_or(1.0, |w| w[c]);
    let total: f32 = rows
        .iter()
        .map(|&i| weight(labels[i as usize].unwrap_or(0) as usize))
        .sum();
    if total <= 0.0 {
        return Ok(None);
    }
    let eps = label_smoothing as f32;
    let mut coef = vec![0f32; rows.len() * classes];
    for (r, &i) in rows.iter().enumerate() {
        let gold = labels[i as usize].unwrap_or(0) as usize;
        if gold >= classes {
            candle_core::bail!("label index {gold} out of range for {classes} classes");
        }
        for c in 0..classes {
            let hard = if c == gold {
                (1.0 - eps) * weight(gold)
            } else {
                0.0
            };
            coef[r * classes + c] = (hard + eps / classes as f32 * weight(c)) / total;
        }
    }
    let device = logits.device();
    let index = Tensor::new(rows.as_slice(), device)?;
    let selected = logits.index_select(&index, 0)?.to_dtype(DType::F32)?;
    let log_probs = candle_nn::ops::log_softmax(&selected, D::Minus1)?;
    let coef = Tensor::from_vec(coef, (rows.len(), classes), device)?;
    Ok(Some((log_probs * coef)?.sum_all()?.neg()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits() -> Tensor {
        Tensor::new(
            &[[1.0f32, 2.0, 0.5], [0.1, -1.0, 3.0], [0.0, 0.0, 0.0]],
            &Device::Cpu,
        )
        .unwrap()
    }

    fn value(t: Option<Tensor>) -> f32 {
        t.unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn plain_matches_candle_cross_entropy() {
        let want = candle_nn::loss::cross_entropy(
            &logits(),
            &Tensor::new(&[1u32, 2, 0], &Device::Cpu).unwrap(),
        )
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
        let got = value(cross_entropy(&logits(), &[Some(1), Some(2), Some(0)], None, 0.0).unwrap());
        assert!((got - want).abs() < 1e-6);
    }

    #[test]
    fn unlabelled_rows_are_left_out() {
        let all = value(
            cross_entropy(
                &logits().narrow(0, 0, 2).unwrap(),
                &[Some(1), Some(2)],
                None,
                0.0,
            )
            .unwrap(),
        );
        let masked = value(cross_entropy(&logits(), &[Some(1), Some(2), None], None, 0.0).unwrap());
        assert!((all - masked).abs() < 1e-6);
        assert!(
            cross_entropy(&logits(), &[None, None, None], None, 0.0)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn smoothing_with_uniform_logits_is_log_classes() {
        let row = logits().narrow(0, 2, 1).unwrap();
        let got = value(cross_entropy(&row, &[Some(0)], None, 0.3).unwrap());
        assert!((got - 3f32.ln()).abs() < 1e-6);
    }
}
