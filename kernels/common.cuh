// Device helpers shared by every kernel family. Kernels stay inside the CUDA subset
// that kernels/emu/cuda_emu.h emulates (see kernels/README.md): no standard headers
// here, so the same text compiles with nvcc, NVRTC and the host C++ compiler.
#pragma once
#include "params.cuh"

#ifdef __CUDA_EMU__
// Dynamic shared memory of the launch (the `shared_bytes` launch argument).
#define DYN_SHARED(type, name) type* name = reinterpret_cast<type*>(::emu::dyn_smem())
// Registers a kernel with the emulator: defines `emu_invoke_<name>(void** args)`,
// which unpacks a cuLaunchKernel-style argument array and calls the kernel.
#define EMU_REGISTER(name) \
    extern "C" void emu_invoke_##name(void** args) { ::emu::invoke(name, args); }
#else
#define DYN_SHARED(type, name) extern __shared__ __align__(16) type name[]
#define EMU_REGISTER(name)
#endif

// Global linear index of this thread (1-D launches) and the grid's thread count.
__device__ __forceinline__ unsigned long long global_tid() {
    return (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ unsigned long long grid_threads() {
    return (unsigned long long)gridDim.x * blockDim.x;
}

// Sum over the 32 lanes of a warp; every lane gets the total. Fixed order
// (butterfly), so the result is deterministic.
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); the result is valid in
// every thread. `scratch` holds >= 32 floats of shared memory. Contains barriers:
// call from all threads of the block.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    const unsigned nwarps = (blockDim.x + 31u) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < nwarps ? scratch[lane] : 0.0f;
    return warp_sum(t);
}

// True when `p` is 16-byte aligned (float4 access allowed).
__device__ __forceinline__ bool aligned16(const void* p) {
    return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0ull;
}
