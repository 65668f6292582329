// Activation functions shared by kernels/activation.cu and kernels/fused.cu: f, f', f''
// for ACT_* of params.cuh (relu, sigmoid, leaky relu slope 0.01, swish).
#pragma once
#include "common.cuh"

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

// f(x) for the activation `act` (ACT_* of params.cuh).
__device__ __forceinline__ float act_f(float x, unsigned int act) {
    switch (act) {
        case ACT_RELU: return x > 0.0f ? x : 0.0f;
        case ACT_SIGMOID: return sigmoidf_(x);
        case ACT_LEAKY_RELU: return x > 0.0f ? x : 0.01f * x;
        default: return x * sigmoidf_(x);  // ACT_SWISH
    }
}
// f'(x).
__device__ __forceinline__ float act_d1(float x, unsigned int act) {
    switch (act) {
        case ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
        case ACT_SIGMOID: { float s = sigmoidf_(x); return s * (1.0f - s); }
        case ACT_LEAKY_RELU: return x > 0.0f ? 1.0f : 0.01f;
        default: { float s = sigmoidf_(x); return s + x * s * (1.0f - s); }
    }
}
// f''(x) (0 for the piecewise-linear ones).
__device__ __forceinline__ float act_d2(float x, unsigned int act) {
    switch (act) {
        case ACT_SIGMOID: { float s = sigmoidf_(x); return s * (1.0f - s) * (1.0f - 2.0f * s); }
        case ACT_SWISH: {
            float s = sigmoidf_(x);
            return s * (1.0f - s) * (2.0f + x * (1.0f - 2.0f * s));
        }
        default: return 0.0f;
    }
}
