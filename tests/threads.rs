//! The thread count is resolved once: no classify or backward pass reads `/proc/cpuinfo`
//! again (candle's lookup used to, on every matrix multiply). One test in this binary, so
//! that no other test's file reads land in the process's counters.

mod common;

use candle_core::{Device, Tensor, Var};
use common::*;
use standpoint::{Classifier, ClassifierOptions, Query};

/// Read syscalls of this whole process so far (`/proc/self/io`).
fn read_syscalls() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("syscr:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn classify_and_backward_pass_issue_no_reads_after_start() {
    let classifier = Classifier::load(
        fixture("tiny-bert").to_str().unwrap(),
        &ClassifierOptions::default(),
    )
    .unwrap();
    let texts: Vec<String> = (0..200)
        .map(|i| format!("Sentence {i} says NATO refused cooperation."))
        .collect();
    let queries: Vec<Query> = texts.iter().map(|t| Query::pair("NATO", t)).collect();
    classifier.classify(&queries[..2]).unwrap();
    let x =
        Var::from_tensor(&Tensor::ones((64, 32), candle_core::DType::F32, &Device::Cpu).unwrap())
            .unwrap();
    let w = Tensor::ones((32, 16), candle_core::DType::F32, &Device::Cpu).unwrap();

    let backward = || {
        let loss = x.as_tensor().matmul(&w).unwrap().sum_all().unwrap();
        loss.backward().unwrap();
    };
    // One-time set-up (pools, the CPU topology) happens here, before counting.
    backward();

    let before = read_syscalls();
    for chunk in queries.chunks(16) {
        classifier.classify(chunk).unwrap();
    }
    // candle's own matmul, forward and backward, as training runs it.
    for _ in 0..50 {
        backward();
    }
    let after = read_syscalls();
    // What reading /proc/self/io itself costs, to take off.
    let counting = read_syscalls() - after;
    let reads = after - before - counting;
    // A lookup through /proc/cpuinfo costs reads for each of the hundreds of matrix
    // multiplies above (thousands in all); allow a couple of one-time lookups.
    assert!(
        reads <= 2,
        "{reads} read syscalls during inference and backward passes"
    );
    assert_eq!(
        candle_core::utils::get_num_threads(),
        standpoint::threads::count()
    );
}
