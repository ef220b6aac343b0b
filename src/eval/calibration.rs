//! Probability calibration: expected calibration error, log loss, and the softmax
//! temperature that minimises the log loss on held-out data (Guo et al., 2017).

/// Index of the largest value (the first on ties); 0 for an empty row.
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// Softmax of `row / temperature`, computed in f64.
///
/// ```
/// let p = standpoint::eval::calibration::softmax(&[0.0, 0.0], 1.0);
/// assert_eq!(p, vec![0.5, 0.5]);
/// ```
pub fn softmax(row: &[f32], temperature: f64) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let exp: Vec<f64> = row
        .iter()
        .map(|&v| ((v as f64 - max) / temperature).exp())
        .collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// Bins of the expected calibration error.
const ECE_BINS: usize = 15;

/// Expected calibration error of the top label at `temperature`: rows binned by their top
/// probability into 15 equal-width bins; the mean over rows of |accuracy − confidence| of
/// their bin. 0 for no rows.
///
/// ```
/// use standpoint::eval::calibration::expected_calibration_error;
/// // Always 100% sure, right half the time: 0.5 off.
/// let logits = vec![vec![30.0, 0.0], vec![30.0, 0.0]];
/// let ece = expected_calibration_error(&logits, &[0, 1], 1.0);
/// assert!((ece - 0.5).abs() < 1e-9);
/// ```
pub fn expected_calibration_error(logits: &[Vec<f32>], gold: &[u32], temperature: f64) -> f64 {
    let mut bins = [(0usize, 0.0f64, 0.0f64); ECE_BINS]; // (count, confidence sum, correct sum)
    for (row, &g) in logits.iter().zip(gold) {
        let probs = softmax(row, temperature);
        let top = argmax(row);
        let confidence = probs[top];
        let bin = ((confidence * ECE_BINS as f64) as usize).min(ECE_BINS - 1);
        bins[bin].0 += 1;
        bins[bin].1 += confidence;
        bins[bin].2 += f64::from(u8::from(top == g as usize));
    }
    let n = logits.len().min(gold.len());
    if n == 0 {
        return 0.0;
    }
    bins.iter()
        .map(|&(count, confidence, correct)| {
            (correct - confidence).abs() * (count > 0) as u8 as f64
        })
        .sum::<f64>()
        / n as f64
}

/// Mean negative log-likelihood (nats) of the gold labels at `temperature`; 0 for no rows.
///
/// ```
/// let loss = standpoint::eval::calibration::log_loss(&[vec![0.0, 0.0]], &[1], 1.0);
/// assert!((loss - 2f64.ln()).abs() < 1e-12);
/// ```
pub fn log_loss(logits: &[Vec<f32>], gold: &[u32], temperature: f64) -> f64 {
    let n = logits.len().min(gold.len());
    if n == 0 {
        return 0.0;
    }
    logits
        .iter()
        .zip(gold)
        .map(|(row, &g)| -softmax(row, temperature)[g as usize].max(1e-300).ln())
        .sum::<f64>()
        / n as f64
}

/// The temperature in [0.05, 20] that minimises [`log_loss`] (golden-section search over
/// the inverse temperature, in which the loss is convex). 1 for no rows.
///
/// ```
/// use standpoint::eval::calibration::{fit_temperature, log_loss};
/// // Overconfident logits: right 3 times in 4, but always ~100% sure.
/// let logits = vec![vec![10.0, 0.0]; 4];
/// let gold = [0, 0, 0, 1];
/// let t = fit_temperature(&logits, &gold);
/// assert!(t > 1.0);
/// assert!(log_loss(&logits, &gold, t) < log_loss(&logits, &gold, 1.0));
/// ```
pub fn fit_temperature(logits: &[Vec<f32>], gold: &[u32]) -> f64 {
    if logits.is_empty() || gold.is_empty() {
        return 1.0;
    }
    let loss = |beta: f64| log_loss(logits, gold, 1.0 / beta);
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut lo, mut hi) = (0.05f64, 20.0f64);
    let mut a = hi - ratio * (hi - lo);
    let mut b = lo + ratio * (hi - lo);
    let (mut fa, mut fb) = (loss(a), loss(b));
    for _ in 0..80 {
        if fa <= fb {
            hi = b;
            b = a;
            fb = fa;
            a = hi - ratio * (hi - lo);
            fa = loss(a);
        } else {
            lo = a;
            a = b;
            fa = fb;
            b = lo + ratio * (hi - lo);
            fb = loss(b);
        }
    }
    1.0 / ((lo + hi) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitted_temperature_is_at_the_loss_minimum() {
        // Overconfident: the top logit is right in 7 of 10 rows, with a margin of 5-8.
        let logits: Vec<Vec<f32>> = (0..60)
            .map(|i| {
                let mut row = vec![0.0f32; 3];
                row[i % 3] = 5.0 + (i % 4) as f32;
                row
            })
            .collect();
        let gold: Vec<u32> = (0..60)
            .map(|i| {
                if i % 10 < 7 {
                    (i % 3) as u32
                } else {
                    ((i + 1) % 3) as u32
                }
            })
            .collect();
        let t = fit_temperature(&logits, &gold);
        assert!(t > 1.5 && t < 19.0, "{t}");
        let at = log_loss(&logits, &gold, t);
        for other in [t * 0.95, t * 1.05, 1.0] {
            assert!(at <= log_loss(&logits, &gold, other), "t {t} other {other}");
        }
        assert!(
            expected_calibration_error(&logits, &gold, t)
                < expected_calibration_error(&logits, &gold, 1.0)
        );
    }

    #[test]
    fn a_calibrated_model_has_small_ece() {
        // Probability 0.75 on the top label, right in exactly 3 of 4 rows.
        let p = (3f32).ln();
        let logits = vec![vec![p, 0.0]; 4];
        let ece = expected_calibration_error(&logits, &[0, 0, 0, 1], 1.0);
        assert!(ece < 1e-6, "{ece}");
    }
}
