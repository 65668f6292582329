//! The `emu` backend: the same `kernels/*.cu` sources compiled for the host against `kernels/emu/cuda_emu.h`, run on CPU threads (for tests).
