// Memory family: buffer copies, fill, axpy, add, row gathers. Contract:
// src/backend/mod.rs (Backend::copy_range, fill, axpy, add, gather_rows); CPU twin:
// src/backend/cpu/memory.rs; launchers: src/backend/gpu/kernels.rs (memory section).
#include "common.cuh"

// copy_range: dst[i] = src[i], i < n (the host passes dst/src already offset).
// Threads: 1-D grid-stride, one float4 per thread-step when both pointers are
// 16-byte aligned, else one float. dst [n] overwritten; src [n]. No overlap.
extern "C" __global__ void copy_range(float* __restrict__ dst, const float* __restrict__ src,
                                          unsigned int n) {
    const unsigned long long stride = grid_threads();
    unsigned long long i0 = global_tid();
    if (aligned16(dst) && aligned16(src)) {
        const unsigned long long n4 = n / 4u;
        float4* d4 = reinterpret_cast<float4*>(dst);
        const float4* s4 = reinterpret_cast<const float4*>(src);
        for (unsigned long long i = i0; i < n4; i += stride) d4[i] = s4[i];
        for (unsigned long long i = n4 * 4u + i0; i < n; i += stride) dst[i] = src[i];
    } else {
        for (unsigned long long i = i0; i < n; i += stride) dst[i] = src[i];
    }
}
EMU_REGISTER(copy_range)

// fill: y[i] = value, i < n. Threads: 1-D grid-stride. y [n] overwritten.
extern "C" __global__ void fill(float* __restrict__ y, float value, unsigned int n) {
    const unsigned long long stride = grid_threads();
    for (unsigned long long i = global_tid(); i < n; i += stride) y[i] = value;
}
EMU_REGISTER(fill)

// axpy: y[i] += a * x[i], i < n. Threads: 1-D grid-stride. y [n] accumulated; x [n].
// (nvcc may contract to one fma: within the parity tolerance.)
extern "C" __global__ void axpy(float* __restrict__ y, const float* __restrict__ x, float a,
                                    unsigned int n) {
    const unsigned long long stride = grid_threads();
    for (unsigned long long i = global_tid(); i < n; i += stride) y[i] = y[i] + a * x[i];
}
EMU_REGISTER(axpy)

// add: y[i] = a[i] + b[i], i < n (residual connections). Threads: 1-D grid-stride.
// y [n] overwritten; a, b [n]. y does not alias a or b.
extern "C" __global__ void add(float* __restrict__ y, const float* __restrict__ a,
                               const float* __restrict__ b, unsigned int n) {
    const unsigned long long stride = grid_threads();
    for (unsigned long long i = global_tid(); i < n; i += stride) y[i] = a[i] + b[i];
}
EMU_REGISTER(add)

// gather_rows: dst[r, j] = src[rows[r], j], r < nrows, j < row_len.
// Threads: 1-D grid-stride over nrows*row_len elements of dst.
// dst [nrows, row_len] overwritten; src [*, row_len]; rows [nrows] (checked on the host).
extern "C" __global__ void gather_rows(float* __restrict__ dst, const float* __restrict__ src,
                                           const unsigned int* __restrict__ rows,
                                           unsigned int nrows, unsigned int row_len) {
    const unsigned long long total = (unsigned long long)nrows * row_len;
    const unsigned long long stride = grid_threads();
    for (unsigned long long i = global_tid(); i < total; i += stride) {
        const unsigned long long r = i / row_len, j = i - r * row_len;
        dst[i] = src[(unsigned long long)rows[r] * row_len + j];
    }
}
EMU_REGISTER(gather_rows)
