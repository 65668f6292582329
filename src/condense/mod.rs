//! The DC/DSA condensation algorithm, checkpoints, progress.

pub mod config;
pub mod run;

pub use run::{run, Observer, RunFiles, RunResult, Silent};
