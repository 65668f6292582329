// Pooling helpers shared by kernels/pool.cu and kernels/fused.cu (2x2 windows).
#pragma once
#include "common.cuh"

// Index (0..3, row-major) of the max of the window whose top-left input is `p`
// (row stride w); strict > keeps the first of equal values.
__device__ __forceinline__ int pool_argmax(const float* p, unsigned int w) {
    float best = p[0];
    int arg = 0;
    if (p[1] > best) { best = p[1]; arg = 1; }
    if (p[w] > best) { best = p[w]; arg = 2; }
    if (p[w + 1] > best) { arg = 3; }
    return arg;
}

// The pooled value of the window whose top-left input is `p` (row stride w): the
// average of its four elements, or the first maximum (POOL_MAX).
__device__ __forceinline__ float pool_window(const float* p, unsigned int w, unsigned int kind) {
    if (kind == POOL_MAX) {
        const int a = pool_argmax(p, w);
        return p[(a >> 1) * w + (a & 1)];
    }
    return (p[0] + p[1] + p[w] + p[w + 1]) * 0.25f;
}
