//! # dsa-condense
//!
//! Dataset Condensation with Differentiable Siamese Augmentation (DSA, Zhao & Bilen,
//! ICML 2021) and its base method DC (gradient matching): hand-written CUDA kernels,
//! a pure-Rust CPU reference backend, and a thin driver.
//!
//! Layers, top to bottom: [`data`] -> [`augment`] -> [`model`] -> [`engine`] ->
//! [`condense`] -> [`eval`], all generic over [`backend::Backend`].
//!
//! Shape letters used throughout: N batch, C channels, H/W height/width,
//! O output channels, K classes (or kernel size where stated), G norm groups,
//! F features, S image side.

pub mod augment;
pub mod backend;
pub mod condense;
pub mod data;
pub mod digest;
pub mod engine;
pub mod error;
pub mod eval;
pub mod model;
pub mod output;

pub use backend::{Backend, Scalar};
pub use error::{Error, Result};
