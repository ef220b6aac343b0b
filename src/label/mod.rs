//! Batch labelling: documents in, one row per (sentence, actor) out.

pub mod actors;
pub mod documents;
pub mod output;
pub mod pipeline;
pub mod quotes;
pub mod segment;
