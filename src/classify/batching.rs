//! Batches of inputs of similar length, shared by the [`super::Classifier`] and every
//! evaluation: sorted by length so padding stays small, each batch within a count and a
//! padded-token budget.

/// The padded-token budget per batch unless told otherwise
/// ([`super::ClassifierOptions::batch_tokens`], dev evaluation in training).
pub const DEFAULT_BATCH_TOKENS: usize = 4096;

/// Indices into `lengths`, grouped: ascending by length, a batch closed when it holds
/// `max_items` or when adding the next input would pad it past `max_tokens`. An input longer
/// than the budget gets a batch of its own.
///
/// ```
/// use standpoint::classify::batching::by_length;
///
/// // Two short inputs share a batch; the long one would pad it to 3 × 10 > 16 tokens.
/// assert_eq!(by_length(&[10, 3, 4], 8, 16), vec![vec![1, 2], vec![0]]);
/// ```
pub fn by_length(lengths: &[usize], max_items: usize, max_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        // Ascending: this input is the longest of the batch if added.
        let padded = (current.len() + 1) * lengths[i];
        if !current.is_empty() && (current.len() >= max_items.max(1) || padded > max_tokens) {
            batches.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_once_within_both_limits() {
        let lengths: Vec<usize> = (0..100).map(|i| (i * 37) % 50 + 1).collect();
        let batches = by_length(&lengths, 8, 120);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        for batch in &batches {
            let longest = batch.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(batch.len() <= 8);
            assert!(
                batch.len() == 1 || batch.len() * longest <= 120,
                "{batch:?}"
            );
        }
    }
}
