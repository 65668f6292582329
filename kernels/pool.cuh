// Pooling helpers shared by kernels/pool.cu and kernels/fused.cu: square k x k windows
// (stride and window placement are the caller's; see PoolShape in params.cuh).
#pragma once
#include "common.cuh"

// Windows of size k and stride s along an axis of n inputs: (n - k)/s + 1 (floor).
// The host guarantees n >= k >= 1 and s >= 1.
__device__ __forceinline__ unsigned int pool_out(unsigned int n, unsigned int k, unsigned int s) {
    return (n - k) / s + 1u;
}

// Offset from `p` (di*w + dj) of the max of the k x k window whose top-left input is
// `p` (row stride w): the first maximum in row-major window order (strict > keeps the
// first of equal values).
__device__ __forceinline__ unsigned int pool_argmax(const float* p, unsigned int w,
                                                    unsigned int k) {
    float best = p[0];
    unsigned int arg = 0;
    for (unsigned int di = 0; di < k; ++di) {
        for (unsigned int dj = 0; dj < k; ++dj) {
            const float v = p[di * w + dj];
            if (v > best) {
                best = v;
                arg = di * w + dj;
            }
        }
    }
    return arg;
}

// Sum of the k x k window whose top-left input is `p` (row stride w), in row-major
// order.
__device__ __forceinline__ float pool_sum(const float* p, unsigned int w, unsigned int k) {
    float acc = 0.0f;
    for (unsigned int di = 0; di < k; ++di) {
        for (unsigned int dj = 0; dj < k; ++dj) acc += p[di * w + dj];
    }
    return acc;
}

// The pooled value of the k x k window whose top-left input is `p` (row stride w): the
// window sum times 1/(k*k) (POOL_AVG), or the first maximum (POOL_MAX).
__device__ __forceinline__ float pool_window(const float* p, unsigned int w, unsigned int k,
                                             unsigned int kind) {
    if (kind == POOL_MAX) return p[pool_argmax(p, w, k)];
    return pool_sum(p, w, k) * (1.0f / (float)(k * k));
}
