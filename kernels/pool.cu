// Pooling family: k x k windows, stride s (PoolShape.k, .stride), no padding, floor:
// OH = (H - k)/s + 1, OW likewise; windows overlap when s < k, and input rows/columns
// past the last window are covered by none. Average divides by k*k; max ties go to
// the first element in row-major window order.
// Contract: src/backend/mod.rs (pool_fwd, pool_bwd, pool_jvp); CPU twin:
// src/backend/cpu/pool.rs; derivation: docs/derivations/act_pool.md.
#include "pool.cuh"

// pool_fwd: y[q, i, j] = avg or max of x[q, i*s .. i*s+k-1, j*s .. j*s+k-1].
// Threads: 1-D grid-stride, one output element each.
// y [planes, OH, OW] overwritten; x [planes, H, W].
extern "C" __global__ void pool_fwd(float* __restrict__ y, const float* __restrict__ x,
                                    PoolShape s, unsigned int kind) {
    const unsigned int oh = pool_out(s.h, s.k, s.stride), ow = pool_out(s.w, s.k, s.stride);
    const unsigned long long total = (unsigned long long)s.planes * oh * ow;
    const unsigned long long stride = grid_threads();
    for (unsigned long long o = global_tid(); o < total; o += stride) {
        const unsigned long long q = o / ((unsigned long long)oh * ow);
        const unsigned int r = (unsigned int)(o - q * oh * ow), i = r / ow, j = r - i * ow;
        const unsigned long long base = (q * s.h + i * s.stride) * s.w + j * s.stride;
        y[o] = pool_window(x + base, s.w, s.k, kind);
    }
}
EMU_REGISTER(pool_fwd)

// pool_bwd: dx[q, a, b] = sum over the windows (i, j) covering (a, b) of
// dy[q, i, j] * (1/(k*k) for avg; for max 1 if (a, b) is that window's arg-max, else 0);
// 0 where no window covers (a, b). Windows are visited in row-major (i, j) order, the
// order in which the CPU twin accumulates.
// Threads: 1-D grid-stride, one INPUT element each, looping over the (at most
// ceil(k/s)^2) windows that cover it: no atomics, deterministic, every dx written.
// dx [planes, H, W] overwritten; dy [planes, OH, OW]; x [planes, H, W].
extern "C" __global__ void pool_bwd(float* __restrict__ dx, const float* __restrict__ dy,
                                    const float* __restrict__ x, PoolShape s, unsigned int kind) {
    const unsigned int oh = pool_out(s.h, s.k, s.stride), ow = pool_out(s.w, s.k, s.stride);
    const unsigned int k = s.k, st = s.stride;
    const float inv = 1.0f / (float)(k * k);
    const unsigned long long total = (unsigned long long)s.planes * s.h * s.w;
    const unsigned long long stride = grid_threads();
    for (unsigned long long e = global_tid(); e < total; e += stride) {
        const unsigned long long q = e / ((unsigned long long)s.h * s.w);
        const unsigned int r = (unsigned int)(e - q * s.h * s.w), ia = r / s.w, ib = r - ia * s.w;
        // windows i with i*st <= ia <= i*st + k - 1, and i < oh (likewise j)
        const unsigned int i0 = ia + 1u > k ? (ia + 1u - k + st - 1u) / st : 0u;
        const unsigned int j0 = ib + 1u > k ? (ib + 1u - k + st - 1u) / st : 0u;
        const unsigned int i1 = min(ia / st, oh - 1u), j1 = min(ib / st, ow - 1u);
        float v = 0.0f;
        for (unsigned int i = i0; i <= i1; ++i) {
            for (unsigned int j = j0; j <= j1; ++j) {
                const float g = dy[(q * oh + i) * ow + j];
                if (kind == POOL_MAX) {
                    const float* p = x + (q * s.h + i * st) * s.w + j * st;
                    const unsigned int me = (ia - i * st) * s.w + (ib - j * st);
                    if (pool_argmax(p, s.w, k) == me) v += g;
                } else {
                    v += g * inv;
                }
            }
        }
        dx[e] = v;
    }
}
EMU_REGISTER(pool_bwd)

// pool_jvp: ydot[q, i, j] = avg of the xdot window, or xdot at the arg-max of the x
// window.
// Threads: 1-D grid-stride, one output element each.
// ydot [planes, OH, OW] overwritten; x, xdot [planes, H, W].
extern "C" __global__ void pool_jvp(float* __restrict__ ydot, const float* __restrict__ x,
                                    const float* __restrict__ xdot, PoolShape s,
                                    unsigned int kind) {
    const unsigned int oh = pool_out(s.h, s.k, s.stride), ow = pool_out(s.w, s.k, s.stride);
    const float inv = 1.0f / (float)(s.k * s.k);
    const unsigned long long total = (unsigned long long)s.planes * oh * ow;
    const unsigned long long stride = grid_threads();
    for (unsigned long long o = global_tid(); o < total; o += stride) {
        const unsigned long long q = o / ((unsigned long long)oh * ow);
        const unsigned int r = (unsigned int)(o - q * oh * ow), i = r / ow, j = r - i * ow;
        const unsigned long long base = (q * s.h + i * s.stride) * s.w + j * s.stride;
        const float* t = xdot + base;
        if (kind == POOL_MAX) {
            ydot[o] = t[pool_argmax(x + base, s.w, s.k)];
        } else {
            ydot[o] = pool_sum(t, s.w, s.k) * inv;
        }
    }
}
EMU_REGISTER(pool_jvp)
