// Group / instance / layer norm helpers shared by kernels/norm.cu and kernels/fused.cu.
#pragma once
#include "common.cuh"

// Affine coefficient of element k (0 <= k < M) of group g.
__device__ __forceinline__ float norm_coef(const float* p, NormShape s, unsigned int g,
                                           unsigned int k) {
    const unsigned int m = (s.c / s.groups) * s.hw;
    return s.affine ? p[(unsigned long long)g * m + k] : p[g * (s.c / s.groups) + k / s.hw];
}
