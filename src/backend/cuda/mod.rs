//! The `cuda` backend: cudarc (dynamic loading) + the hand-written kernels of `kernels/`.
