//! The DC/DSA condensation algorithm, checkpoints, progress.

pub mod config;
