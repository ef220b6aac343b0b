//! The CPU compute back end: fused candle ops with their backward passes, SIMD kernels picked
//! at run time, prepared (panel-packed f32 and int8) dense layers, and padding removal. The
//! network in [`crate::model`] calls these ops; nothing here knows the model.

pub mod features;
pub mod int8;
mod kernels;
pub mod ops;
pub mod panels;
pub mod unpad;
