//! The training path: labelled data, optimiser, loop, checkpoints.

pub mod data;
