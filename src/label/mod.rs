//! Batch labelling: documents in, one row per (sentence, actor) out.

pub mod actors;
pub mod segment;
