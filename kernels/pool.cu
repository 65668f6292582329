// Pooling family: 2x2 windows, stride 2, no padding, floor (a last odd row/column is
// not covered). Max ties go to the first element in row-major window order.
// Contract: src/backend/mod.rs (pool_fwd, pool_bwd, pool_jvp); CPU twin:
// src/backend/cpu/pool.rs.
#include "pool.cuh"

// pool_fwd: y[q, i, j] = avg or max of x[q, 2i..2i+1, 2j..2j+1].
// Threads: 1-D grid-stride, one output element each.
// y [planes, h/2, w/2] overwritten; x [planes, h, w].
extern "C" __global__ void pool_fwd(float* __restrict__ y, const float* __restrict__ x,
                                    PoolShape s, unsigned int kind) {
    const unsigned int oh = s.h / 2u, ow = s.w / 2u;
    const unsigned long long total = (unsigned long long)s.planes * oh * ow;
    const unsigned long long stride = grid_threads();
    for (unsigned long long o = global_tid(); o < total; o += stride) {
        const unsigned long long q = o / ((unsigned long long)oh * ow);
        const unsigned int r = (unsigned int)(o - q * oh * ow), i = r / ow, j = r - i * ow;
        y[o] = pool_window(x + (q * s.h + 2u * i) * s.w + 2u * j, s.w, kind);
    }
}
EMU_REGISTER(pool_fwd)

// pool_bwd: dx[q, a, b] = dy[q, a/2, b/2] * (1/4 for avg; for max 1 if (a, b) is the
// window's arg-max, else 0); 0 where no window covers (a, b).
// Threads: 1-D grid-stride, one INPUT element each (no atomics, every dx written).
// dx [planes, h, w] overwritten; dy [planes, h/2, w/2]; x [planes, h, w].
extern "C" __global__ void pool_bwd(float* __restrict__ dx, const float* __restrict__ dy,
                                    const float* __restrict__ x, PoolShape s, unsigned int kind) {
    const unsigned int oh = s.h / 2u, ow = s.w / 2u;
    const unsigned long long total = (unsigned long long)s.planes * s.h * s.w;
    const unsigned long long stride = grid_threads();
    for (unsigned long long e = global_tid(); e < total; e += stride) {
        const unsigned long long q = e / ((unsigned long long)s.h * s.w);
        const unsigned int r = (unsigned int)(e - q * s.h * s.w), ia = r / s.w, ib = r - ia * s.w;
        const unsigned int i = ia / 2u, j = ib / 2u;
        float v = 0.0f;
        if (i < oh && j < ow) {
            const float g = dy[(q * oh + i) * ow + j];
            if (kind == POOL_MAX) {
                const float* p = x + (q * s.h + 2u * i) * s.w + 2u * j;
                const int a = pool_argmax(p, s.w);
                const int me = (int)((ia & 1u) * 2u + (ib & 1u));
                v = a == me ? g : 0.0f;
            } else {
                v = g * 0.25f;
            }
        }
        dx[e] = v;
    }
}
EMU_REGISTER(pool_bwd)

// pool_jvp: ydot[q, i, j] = avg of the xdot window, or xdot at the arg-max of x.
// Threads: 1-D grid-stride, one output element each.
// ydot [planes, h/2, w/2] overwritten; x, xdot [planes, h, w].
extern "C" __global__ void pool_jvp(float* __restrict__ ydot, const float* __restrict__ x,
                                    const float* __restrict__ xdot, PoolShape s,
                                    unsigned int kind) {
    const unsigned int oh = s.h / 2u, ow = s.w / 2u;
    const unsigned long long total = (unsigned long long)s.planes * oh * ow;
    const unsigned long long stride = grid_threads();
    for (unsigned long long o = global_tid(); o < total; o += stride) {
        const unsigned long long q = o / ((unsigned long long)oh * ow);
        const unsigned int r = (unsigned int)(o - q * oh * ow), i = r / ow, j = r - i * ow;
        const unsigned long long base = (q * s.h + 2u * i) * s.w + 2u * j;
        const float* t = xdot + base;
        if (kind == POOL_MAX) {
            const int a = pool_argmax(x + base, s.w);
            ydot[o] = t[(a >> 1) * s.w + (a & 1)];
        } else {
            ydot[o] = (t[0] + t[1] + t[s.w] + t[s.w + 1]) * 0.25f;
        }
    }
}
EMU_REGISTER(pool_jvp)
