//! The DC/DSA condensation algorithm, checkpoints, progress.
