// Gradient-matching family: per-row sums, then the gradient w.r.t. the synthetic-side
// gradient. Contract: src/backend/mod.rs (match_distance); CPU twin:
// src/backend/cpu/matching.rs; maths: docs/derivations/matching.md.
// The host lists the rows that count (rows = [off, len] pairs into the flat buffers;
// a tensor `rows x cols` gives `rows` rows), downloads the per-row sums, combines them
// in f64 in row order into the distance and per-row gradient coefficients, and
// uploads those for match_grad. Rows do not overlap.
#include "common.cuh"

#define MATCH_MSE 1u

// match_sums: for row i (r from g_real, s from g_syn): sums[4i..4i+3] =
// (<r, s>, |r|^2, |s|^2, |s - r|^2).
// Threads: one block per row (blockIdx.x), threads stride over its elements, fixed
// tree (block_sum): deterministic. sums [4R] overwritten; g_syn, g_real the flat
// buffers; rows [2R] (off, len).
extern "C" __global__ void __launch_bounds__(256)
    match_sums(float* __restrict__ sums, const float* __restrict__ g_syn,
               const float* __restrict__ g_real, const unsigned int* __restrict__ rows) {
    __shared__ float scratch[32];
    const unsigned int i = blockIdx.x;
    const unsigned int off = rows[2 * i], len = rows[2 * i + 1];
    float dot = 0.0f, rr = 0.0f, ss = 0.0f, dd = 0.0f;
    for (unsigned int k = threadIdx.x; k < len; k += blockDim.x) {
        const float r = g_real[(unsigned long long)off + k];
        const float sv = g_syn[(unsigned long long)off + k];
        const float d = sv - r;
        dot += r * sv;
        rr += r * r;
        ss += sv * sv;
        dd += d * d;
    }
    dot = block_sum(dot, scratch);
    rr = block_sum(rr, scratch);
    ss = block_sum(ss, scratch);
    dd = block_sum(dd, scratch);
    if (threadIdx.x == 0) {
        sums[4 * i] = dot;
        sums[4 * i + 1] = rr;
        sums[4 * i + 2] = ss;
        sums[4 * i + 3] = dd;
    }
}
EMU_REGISTER(match_sums)

// match_grad: over the elements of row i, dsyn = 2 (s - r) for metric MSE, else
// dsyn = coef[2i] r + coef[2i+1] s (cosine terms, coefficients from the host).
// Threads: one block per row, threads over its elements. dsyn: the row's elements
// overwritten (the host zeroes the rest first); g_syn, g_real the flat buffers;
// rows [2R]; coef [2R] (unused for MSE).
extern "C" __global__ void match_grad(float* __restrict__ dsyn, const float* __restrict__ g_syn,
                                      const float* __restrict__ g_real,
                                      const unsigned int* __restrict__ rows,
                                      const float* __restrict__ coef, unsigned int metric) {
    const unsigned int i = blockIdx.x;
    const unsigned int off = rows[2 * i], len = rows[2 * i + 1];
    const float a = metric == MATCH_MSE ? 0.0f : coef[2 * i];
    const float b = metric == MATCH_MSE ? 0.0f : coef[2 * i + 1];
    for (unsigned int k = threadIdx.x; k < len; k += blockDim.x) {
        const unsigned long long e = (unsigned long long)off + k;
        const float r = g_real[e], sv = g_syn[e];
        dsyn[e] = metric == MATCH_MSE ? 2.0f * (sv - r) : a * r + b * sv;
    }
}
EMU_REGISTER(match_grad)
