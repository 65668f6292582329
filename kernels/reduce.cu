// Reduction family: the fixed-order second passes of the GEMM-shaped ops (split-K
// partial sums, bias gradients), shared by kernels/conv.cu and kernels/linear.cu.
// Launchers: src/backend/gpu/kernels.rs (reduce section).
#include "common.cuh"

// splitk_reduce: out[i] = sum_{z < splits} part[z * len + i], z ascending
// (deterministic). Threads: 1-D grid-stride over i.
// out [len] overwritten; part [splits, len].
extern "C" __global__ void splitk_reduce(float* __restrict__ out, const float* __restrict__ part,
                                         unsigned int len, unsigned int splits) {
    const unsigned long long stride = grid_threads();
    for (unsigned long long i = global_tid(); i < len; i += stride) {
        float s = 0.0f;
        for (unsigned int z = 0; z < splits; ++z) s += part[(unsigned long long)z * len + i];
        out[i] = s;
    }
}
EMU_REGISTER(splitk_reduce)

// bias_bwd: db[c] = sum_{a < outer, p < inner} dy[(a * ch + c) * inner + p]
// (conv: outer = N, ch = O, inner = OH*OW; linear: outer = N, ch = K, inner = 1).
// Threads: one block per channel c (blockIdx.x), its threads stride over the
// outer*inner terms in a fixed order, then a fixed-shape tree (block_sum):
// deterministic. blockDim.x a multiple of 32. db [ch] overwritten; dy [outer, ch, inner].
extern "C" __global__ void __launch_bounds__(256) bias_bwd(float* __restrict__ db,
                                                           const float* __restrict__ dy,
                                                           unsigned int outer, unsigned int ch,
                                                           unsigned int inner) {
    __shared__ float scratch[32];
    const unsigned int c = blockIdx.x;
    const unsigned long long total = (unsigned long long)outer * inner;
    float s = 0.0f;
    for (unsigned long long t = threadIdx.x; t < total; t += blockDim.x) {
        const unsigned long long a = t / inner, p = t - a * inner;
        s += dy[(a * ch + c) * inner + p];
    }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) db[c] = s;
}
EMU_REGISTER(bias_bwd)
