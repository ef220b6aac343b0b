//! An explicit thread count reaches rayon and candle alike (its own process: the count is
//! fixed once per process).

#[test]
fn explicit_count_sizes_rayon_and_candle() {
    assert_eq!(standpoint::threads::init(Some(3)).unwrap(), 3);
    assert_eq!(rayon::current_num_threads(), 3);
    assert_eq!(candle_core::utils::get_num_threads(), 3);
    assert_eq!(standpoint::threads::count(), 3);
    let seen: std::collections::BTreeSet<usize> =
        rayon::broadcast(|ctx| ctx.index()).into_iter().collect();
    assert_eq!(seen.len(), 3);
    // The first call decided; another count is refused, the same one is not.
    assert!(standpoint::threads::init(Some(4)).is_err());
    assert_eq!(standpoint::threads::init(None).unwrap(), 3);
}
