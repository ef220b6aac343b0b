//! # standpoint
//!
//! Stance toward an actor, and sentiment, for every sentence: a BERT-family encoder with
//! named classification heads, running on CPU (or GPU through the `cuda`/`metal` features).
//!
//! ```
//! # fn main() -> standpoint::Result<()> {
//! use standpoint::{Classifier, ClassifierOptions, Query};
//!
//! let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-bert");
//! let classifier = Classifier::load(model, &ClassifierOptions::default())?;
//! for prediction in classifier.classify(&[Query::pair("NATO", "NATO has refused practical cooperation.")])? {
//!     for (head, verdict) in &prediction {
//!         println!("{head}: {} ({:.2})", verdict.label, verdict.score);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Modules: [`model`] is the one network definition (shared by training and inference),
//! [`tokenize`] prepares inputs, [`hub`] resolves model references, [`classify`] is the
//! inference API.

#![warn(missing_docs)]
// `unsafe` lives in the CPU back end, the allocator set-up and `os` alone.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod allocator;
pub mod classify;
#[allow(unsafe_code)]
pub mod cpu;
pub mod data;
pub mod error;
pub mod eval;
pub mod export;
pub mod hub;
pub mod label;
pub mod model;
#[allow(unsafe_code)]
mod os;
pub mod output;
pub mod report;
pub mod threads;
pub mod tokenize;
pub mod train;

pub use classify::{
    Classifier, ClassifierOptions, DEFAULT_MODEL_ENV, HeadMatrix, HeadPrediction, ModelInfo,
    Precision, Prediction, Query, default_model_dir, parse_device, parse_dtype,
};
pub use error::{Error, Result};
pub use model::{
    Architecture, HeadInput, HeadPooling, HeadSpec, MentionMarkers, Model, ModelConfig,
};
pub use tokenize::TextEncoder;

/// Compiles the Rust examples of README.md as doctests, so the README cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
