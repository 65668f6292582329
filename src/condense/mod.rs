//! The DC/DSA condensation algorithm, checkpoints, progress.
//!
//! - [`run`](mod@run): experiments, evaluation points, checkpoints and resumption;
//! - `step`: one iteration on the device (the per-class matching loop is
//!   [`crate::engine::Network::outer_grad_with`], shared with tests and benchmarks);
//! - [`evaluate`]: evaluation models and options of a run;
//! - `resume`, `streams`: what a checkpoint carries, the derived random streams.

pub mod config;
pub mod evaluate;
mod resume;
pub mod run;
mod step;
mod streams;

pub use run::{run, Observer, RunFiles, RunResult, Silent};

/// Momentum of the image optimiser.
pub const IMAGE_MOMENTUM: f32 = 0.5;
/// Real images per class that refresh BatchNorm statistics before each outer step.
pub const BN_REFRESH_PER_CLASS: usize = 16;
