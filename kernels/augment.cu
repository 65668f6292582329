// DSA augmentation family: forward maps and their adjoints over image batches
// [N, C, H, W] with per-image parameters (uploaded by the host, one entry per image).
// Contract: src/backend/mod.rs (aug_fwd, aug_bwd, AugOp); CPU twin:
// src/backend/cpu/augment.rs; maths: docs/derivations/augment.md. Self-adjoint maps
// (flip, saturation, contrast, cutout) have one kernel for both directions; crop's
// adjoint is the same gather with the shift negated; brightness's adjoint is a copy.
// Every output element is written by exactly one thread and every sum runs in a fixed
// order: no atomics, deterministic. All outputs overwritten.
#include "common.cuh"

// Source point (r, q) = (row, column) that output pixel (i, j) samples (docs/method.md §2.5):
// q = cx + a00 (j - cx) + a01 (i - cy), r = cy + a10 (j - cx) + a11 (i - cy).
__device__ __forceinline__ void aug_affine_source(AffineParam p, int i, int j, float cx,
                                                  float cy, float* r, float* q) {
    const float dj = (float)j - cx, di = (float)i - cy;
    *q = cx + p.a00 * dj + p.a01 * di;
    *r = cy + p.a10 * dj + p.a11 * di;
}

// Bilinear taps of (r, q) on an h x w plane: for tap t = 2u + v (neighbour
// (r0 + u, q0 + v)), idx[t] = flat index or -1 when outside the plane or of weight 0
// (zero padding per corner, as the CPU twin), wt[t] its weight. A non-finite or huge
// source point has no taps.
__device__ __forceinline__ void aug_bilinear_taps(float r, float q, int h, int w, int* idx,
                                                  float* wt) {
    const float rf = floorf(r), qf = floorf(q);
    const bool ok = rf > -1.0e9f && rf < 1.0e9f && qf > -1.0e9f && qf < 1.0e9f;
    const float fr = r - rf, fq = q - qf;
    const long long r0 = ok ? (long long)rf : -4, q0 = ok ? (long long)qf : -4;
#pragma unroll
    for (int t = 0; t < 4; ++t) {
        const int u = t >> 1, v = t & 1;
        const long long rr = r0 + u, qq = q0 + v;
        const float wr = u ? fr : 1.0f - fr;
        const float wq = v ? fq : 1.0f - fq;
        const float wgt = wr * wq;
        const bool in = ok && rr >= 0 && qq >= 0 && rr < h && qq < w && wgt != 0.0f;
        idx[t] = in ? (int)(rr * w + qq) : -1;
        wt[t] = wgt;
    }
}

// aug_affine_fwd: y(i, j) = sum of the in-range bilinear taps of x at the source point.
// Threads: 1-D grid-stride, one output element each. y, x [N, C, H, W]; p [N].
extern "C" __global__ void aug_affine_fwd(float* __restrict__ y, const float* __restrict__ x,
                                          const AffineParam* __restrict__ p, ImgShape s) {
    const unsigned long long plane = (unsigned long long)s.h * s.w;
    const unsigned long long total = (unsigned long long)s.n * s.c * plane;
    const float cx = ((float)s.w - 1.0f) * 0.5f, cy = ((float)s.h - 1.0f) * 0.5f;
    for (unsigned long long e = global_tid(); e < total; e += grid_threads()) {
        const unsigned long long pl = e / plane;
        const unsigned int rem = (unsigned int)(e - pl * plane);
        const int i = (int)(rem / s.w), j = (int)(rem - (rem / s.w) * s.w);
        float r, q;
        aug_affine_source(p[pl / s.c], i, j, cx, cy, &r, &q);
        int idx[4];
        float wt[4];
        aug_bilinear_taps(r, q, (int)s.h, (int)s.w, idx, wt);
        const float* xp = x + pl * plane;
        float acc = 0.0f;
#pragma unroll
        for (int t = 0; t < 4; ++t)
            if (idx[t] >= 0) acc += wt[t] * xp[idx[t]];
        y[e] = acc;
    }
}
EMU_REGISTER(aug_affine_fwd)

// aug_affine_bwd: the adjoint as a GATHER: dx(p) = sum over output pixels (i, j), in
// row-major order (the CPU twin's scatter order), of w_t dy(i, j) for the tap t of
// (i, j) that lands on p. Candidates: the outputs whose source point can have p as a
// neighbour lie in the preimage of the square [pr-1, pr+1] x [pq-1, pq+1]; we scan its
// bounding box (from the inverse map, widened by 2 pixels against rounding) and
// re-evaluate each candidate's taps exactly as the forward does, so the box only needs
// to be a superset. A (nearly) singular map (|det| < 1e-3) scans the whole plane.
// Threads: 1-D grid-stride, one INPUT element each. dx, dy [N, C, H, W]; p [N].
extern "C" __global__ void aug_affine_bwd(float* __restrict__ dx, const float* __restrict__ dy,
                                          const AffineParam* __restrict__ p, ImgShape s) {
    const unsigned long long plane = (unsigned long long)s.h * s.w;
    const unsigned long long total = (unsigned long long)s.n * s.c * plane;
    const float cx = ((float)s.w - 1.0f) * 0.5f, cy = ((float)s.h - 1.0f) * 0.5f;
    const int h = (int)s.h, w = (int)s.w;
    for (unsigned long long e = global_tid(); e < total; e += grid_threads()) {
        const unsigned long long pl = e / plane;
        const int me = (int)(e - pl * plane);
        const int pr = me / w, pq = me - pr * w;
        const AffineParam a = p[pl / s.c];
        int i0 = 0, i1 = h - 1, j0 = 0, j1 = w - 1;
        const float det = a.a00 * a.a11 - a.a01 * a.a10;
        if (fabsf(det) >= 1.0e-3f) {
            // (dj, di) = A^-1 (q - cx, r - cy) at the square's corners.
            float jlo = 1.0e30f, jhi = -1.0e30f, ilo = 1.0e30f, ihi = -1.0e30f;
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const float dq = (float)(pq + ((k & 1) ? 1 : -1)) - cx;
                const float dr = (float)(pr + ((k & 2) ? 1 : -1)) - cy;
                const float jj = cx + (a.a11 * dq - a.a01 * dr) / det;
                const float ii = cy + (-a.a10 * dq + a.a00 * dr) / det;
                jlo = fminf(jlo, jj);
                jhi = fmaxf(jhi, jj);
                ilo = fminf(ilo, ii);
                ihi = fmaxf(ihi, ii);
            }
            // Clamp in float before converting (the box may lie far outside the plane).
            i0 = (int)fmaxf(floorf(ilo) - 2.0f, 0.0f);
            i1 = (int)fminf(ceilf(ihi) + 2.0f, (float)(h - 1));
            j0 = (int)fmaxf(floorf(jlo) - 2.0f, 0.0f);
            j1 = (int)fminf(ceilf(jhi) + 2.0f, (float)(w - 1));
        }
        const float* g = dy + pl * plane;
        float acc = 0.0f;
        for (int i = i0; i <= i1; ++i) {
            for (int j = j0; j <= j1; ++j) {
                float r, q;
                aug_affine_source(a, i, j, cx, cy, &r, &q);
                int idx[4];
                float wt[4];
                aug_bilinear_taps(r, q, h, w, idx, wt);
#pragma unroll
                for (int t = 0; t < 4; ++t)
                    if (idx[t] == me) acc += wt[t] * g[i * w + j];
            }
        }
        dx[e] = acc;
    }
}
EMU_REGISTER(aug_affine_bwd)

// aug_flip: y(i, j) = x(i, W-1-j) where p[n].a != 0, else x (its own adjoint).
// Threads: 1-D grid-stride over outputs. y, x [N, C, H, W]; p [N].
extern "C" __global__ void aug_flip(float* __restrict__ y, const float* __restrict__ x,
                                    const IntParam* __restrict__ p, ImgShape s) {
    const unsigned long long plane = (unsigned long long)s.h * s.w;
    const unsigned long long total = (unsigned long long)s.n * s.c * plane;
    for (unsigned long long e = global_tid(); e < total; e += grid_threads()) {
        const unsigned long long img = e / (plane * s.c);
        const unsigned int j = (unsigned int)(e % s.w);
        y[e] = p[img].a != 0 ? x[e - j + (s.w - 1u - j)] : x[e];
    }
}
EMU_REGISTER(aug_flip)

// aug_brightness_fwd: y = x + shift[n] (the adjoint is the identity: a copy).
// Threads: 1-D grid-stride. y, x [N, C, H, W]; shift [N].
extern "C" __global__ void aug_brightness_fwd(float* __restrict__ y, const float* __restrict__ x,
                                              const float* __restrict__ shift, ImgShape s) {
    const unsigned long long img = (unsigned long long)s.c * s.h * s.w;
    const unsigned long long total = (unsigned long long)s.n * img;
    for (unsigned long long e = global_tid(); e < total; e += grid_threads())
        y[e] = x[e] + shift[e / img];
}
EMU_REGISTER(aug_brightness_fwd)

// aug_saturation: per pixel, m = mean over the C channels (summed in channel order),
// y_c = k x_c + (1 - k) m with k = factor[n] (k = 1 reproduces x; symmetric, so its
// own adjoint). Threads: 1-D grid-stride, one (n, pixel) each, looping over channels.
// y, x [N, C, H, W]; factor [N].
extern "C" __global__ void aug_saturation(float* __restrict__ y, const float* __restrict__ x,
                                          const float* __restrict__ factor, ImgShape s) {
    const unsigned long long plane = (unsigned long long)s.h * s.w;
    const unsigned long long total = (unsigned long long)s.n * plane;
    const float inv_c = 1.0f / (float)s.c;
    for (unsigned long long t = global_tid(); t < total; t += grid_threads()) {
        const unsigned long long n = t / plane, px = t - n * plane;
        const unsigned long long base = n * s.c * plane + px;
        const float k = factor[n];
        float sum = 0.0f;
        for (unsigned int c = 0; c < s.c; ++c) sum += x[base + c * plane];
        const float bias = (1.0f - k) * (sum * inv_c);
        for (unsigned int c = 0; c < s.c; ++c) y[base + c * plane] = k * x[base + c * plane] + bias;
    }
}
EMU_REGISTER(aug_saturation)

// aug_contrast: per image, M = mean over its C*H*W elements, y = k x + (1 - k) M with
// k = factor[n] (symmetric, its own adjoint).
// Threads: one block per image (blockIdx.x), threads stride over it; the mean is a
// fixed-shape block tree (deterministic). y, x [N, C, H, W]; factor [N].
extern "C" __global__ void __launch_bounds__(256)
    aug_contrast(float* __restrict__ y, const float* __restrict__ x,
                 const float* __restrict__ factor, ImgShape s) {
    __shared__ float scratch[32];
    const unsigned long long img = (unsigned long long)s.c * s.h * s.w;
    const unsigned long long base = blockIdx.x * img;
    float acc = 0.0f;
    for (unsigned long long k = threadIdx.x; k < img; k += blockDim.x) acc += x[base + k];
    const float sum = block_sum(acc, scratch);
    const float k = factor[blockIdx.x];
    const float bias = (1.0f - k) * (sum / (float)img);
    for (unsigned long long e = threadIdx.x; e < img; e += blockDim.x)
        y[base + e] = k * x[base + e] + bias;
}
EMU_REGISTER(aug_contrast)

// aug_crop: y(i, j) = x(i + sa, j + sb) inside the plane, else 0, with
// (sa, sb) = (a, b) of p[n], negated when `negate` != 0 (the adjoint).
// Threads: 1-D grid-stride over outputs. y, x [N, C, H, W]; p [N].
extern "C" __global__ void aug_crop(float* __restrict__ y, const float* __restrict__ x,
                                    const IntParam* __restrict__ p, ImgShape s,
                                    unsigned int negate) {
    const unsigned long long plane = (unsigned long long)s.h * s.w;
    const unsigned long long total = (unsigned long long)s.n * s.c * plane;
    for (unsigned long long e = global_tid(); e < total; e += grid_threads()) {
        const unsigned long long pl = e / plane;
        const unsigned int rem = (unsigned int)(e - pl * plane);
        const long long i = rem / s.w, j = rem % s.w;
        const IntParam ip = p[pl / s.c];
        const long long sa = negate ? -(long long)ip.a : (long long)ip.a;
        const long long sb = negate ? -(long long)ip.b : (long long)ip.b;
        const long long si = i + sa, sj = j + sb;
        const bool in = si >= 0 && si < (long long)s.h && sj >= 0 && sj < (long long)s.w;
        y[e] = in ? x[pl * plane + (unsigned long long)(si * s.w + sj)] : 0.0f;
    }
}
EMU_REGISTER(aug_crop)

// aug_cutout: y = x with rows [a - half, a + half - 1] x columns [b - half, b + half - 1]
// of p[n] set to 0 (a 0/1 mask: its own adjoint).
// Threads: 1-D grid-stride over outputs. y, x [N, C, H, W]; p [N].
extern "C" __global__ void aug_cutout(float* __restrict__ y, const float* __restrict__ x,
                                      const IntParam* __restrict__ p, int half, ImgShape s) {
    const unsigned long long plane = (unsigned long long)s.h * s.w;
    const unsigned long long total = (unsigned long long)s.n * s.c * plane;
    for (unsigned long long e = global_tid(); e < total; e += grid_threads()) {
        const unsigned long long pl = e / plane;
        const unsigned int rem = (unsigned int)(e - pl * plane);
        const long long i = rem / s.w, j = rem % s.w;
        const IntParam ip = p[pl / s.c];
        const bool cut = i >= (long long)ip.a - half && i < (long long)ip.a + half &&
                         j >= (long long)ip.b - half && j < (long long)ip.b + half;
        y[e] = cut ? 0.0f : x[e];
    }
}
EMU_REGISTER(aug_cutout)
