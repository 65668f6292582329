// Convolution family (cross-correlation as PyTorch; any kernel size, stride, zero
// padding), as implicit GEMMs on the tiled core of igemm.cuh (128x128 block tile,
// 8x8 per thread, double-buffered shared memory). Each kernel comes in three
// precisions from one body (IGEMM_KERNELS, igemm_mma.cuh): `name` on the FP32 units,
// `name_tf32` and `name_bf16` on the matrix units (operands rounded, FP32
// accumulation); same arguments and grid. Contract: src/backend/mod.rs
// (conv2d_fwd, conv2d_bwd_input, conv2d_bwd_weight); CPU twin:
// src/backend/cpu/conv.rs; launch geometry: src/backend/launch.rs (igemm, splitk).
//
// Shapes: x [N, C, H, W], w [O, C, KH, KW], y [N, O, OH, OW]; KK = C*KH*KW.
#include "igemm_mma.cuh"

// ---- forward: M = O, Ncol = N*OH*OW, K = KK ---------------------------------------
// A(o, k) = w[o, k] (row-major, float4 when aligned); B(k, col) = x gathered at
// (img, c, oh*stride - pad + kh, ow*stride - pad + kw), 0 in the padding.
struct ConvFwdP {
    int M, N, K;
    const float* x;
    const float* w;
    const float* b;
    float* y;
    ConvShape s;
    unsigned int acc;

    struct ACtx { const float* row; bool ok; };
    __device__ __forceinline__ void a_init(int m, ACtx& c) const {
        c.ok = m < M;
        c.row = w + (long long)(c.ok ? m : 0) * K;
    }
    __device__ __forceinline__ void a4(const ACtx& c, int m, int k, int kend, float v[4]) const {
        if (c.ok && k + 3 < kend && aligned16(c.row + k)) {
            const float4 q = *reinterpret_cast<const float4*>(c.row + k);
            v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
            return;
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) v[i] = (c.ok && k + i < kend) ? c.row[k + i] : 0.0f;
    }
    struct BCtx { long long xoff[4]; int ih0[4], iw0[4]; bool ok[4]; };
    __device__ __forceinline__ void b_init(int n, BCtx& c) const {
        const int ohw = (int)(s.oh * s.ow);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int col = n + j;
            c.ok[j] = col < N;
            const int img = c.ok[j] ? col / ohw : 0, pix = c.ok[j] ? col - img * ohw : 0;
            const int oh = pix / (int)s.ow, ow = pix - oh * (int)s.ow;
            c.xoff[j] = (long long)img * s.c * s.h * s.w;
            c.ih0[j] = oh * (int)s.stride - (int)s.pad;
            c.iw0[j] = ow * (int)s.stride - (int)s.pad;
        }
    }
    __device__ __forceinline__ void b4(const BCtx& c, int k, int kend, float v[4]) const {
        if (k >= kend) { v[0] = v[1] = v[2] = v[3] = 0.0f; return; }
        const int khw = (int)(s.kh * s.kw);
        const int ci = k / khw, r = k - ci * khw, kh = r / (int)s.kw, kw = r - kh * (int)s.kw;
        const long long cbase = (long long)ci * s.h * s.w;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int ih = c.ih0[j] + kh, iw = c.iw0[j] + kw;
            const bool in = c.ok[j] && ih >= 0 && ih < (int)s.h && iw >= 0 && iw < (int)s.w;
            v[j] = in ? x[c.xoff[j] + cbase + (long long)ih * s.w + iw] : 0.0f;
        }
    }
    __device__ __forceinline__ void store(int m, int n, float c) const {
        const int ohw = (int)(s.oh * s.ow);
        const int img = n / ohw, pix = n - img * ohw;
        const long long i = ((long long)img * s.o + m) * ohw + pix;
        const float v = c + (b ? b[m] : 0.0f);
        y[i] = acc ? y[i] + v : v;
    }
};

// conv2d_fwd: y (=|+=) conv(x, w) + b.
// Threads: 256 per block, one 128(o) x 128(n*oh*ow) tile of y per block:
// grid (ceil(N*OH*OW/128), ceil(O/128)).
// y [N, O, OH, OW] overwritten (acc = 0) or accumulated (acc = 1); x [N, C, H, W];
// w [O, C, KH, KW]; b [O] or null.
template <class Core>
__device__ __forceinline__ void conv2d_fwd_body(
    float* __restrict__ y, const float* __restrict__ x, const float* __restrict__ w,
    const float* __restrict__ b, ConvShape s, unsigned int acc) {
    ConvFwdP p;
    p.M = (int)s.o;
    p.N = (int)(s.n * s.oh * s.ow);
    p.K = (int)(s.c * s.kh * s.kw);
    p.x = x; p.w = w; p.b = b; p.y = y; p.s = s; p.acc = acc;
    Core::run(p, (int)blockIdx.y * IG_BM, (int)blockIdx.x * IG_BN, 0, p.K);
}
IGEMM_KERNELS(conv2d_fwd,
              (float* __restrict__ y, const float* __restrict__ x, const float* __restrict__ w,
               const float* __restrict__ b, ConvShape s, unsigned int acc),
              (y, x, w, b, s, acc))

// ---- backward-data: M = C, Ncol = N*H*W, K = O*KH*KW ------------------------------
// dx[img, c, h, w] = sum_{o, kh, kw} w[o, c, kh, kw] dy[img, o, oh, ow] over the
// (oh, ow) with oh*stride - pad + kh = h (likewise w): A(c, (o,kh,kw)) = w[o, c, kh, kw];
// B((o,kh,kw), (img,h,w)) = dy[img, o, (h+pad-kh)/stride, (w+pad-kw)/stride] where
// that division is exact and in range, else 0.
struct ConvBwdInputP {
    int M, N, K;
    const float* dy;
    const float* w;
    float* dx;
    ConvShape s;
    unsigned int acc;

    struct ACtx { int c; bool ok; };
    __device__ __forceinline__ void a_init(int m, ACtx& c) const { c.c = m; c.ok = m < M; }
    __device__ __forceinline__ void a4(const ACtx& c, int m, int k, int kend, float v[4]) const {
        const int khw = (int)(s.kh * s.kw);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int kk = k + i;
            if (c.ok && kk < kend) {
                const int o = kk / khw, r = kk - o * khw;
                v[i] = w[((long long)o * s.c + c.c) * khw + r];
            } else {
                v[i] = 0.0f;
            }
        }
    }
    struct BCtx { long long dyoff[4]; int hp[4], wp[4]; bool ok[4]; };
    __device__ __forceinline__ void b_init(int n, BCtx& c) const {
        const int hw = (int)(s.h * s.w);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int col = n + j;
            c.ok[j] = col < N;
            const int img = c.ok[j] ? col / hw : 0, pix = c.ok[j] ? col - img * hw : 0;
            const int h = pix / (int)s.w, ww = pix - h * (int)s.w;
            c.dyoff[j] = (long long)img * s.o * s.oh * s.ow;
            c.hp[j] = h + (int)s.pad;
            c.wp[j] = ww + (int)s.pad;
        }
    }
    __device__ __forceinline__ void b4(const BCtx& c, int k, int kend, float v[4]) const {
        if (k >= kend) { v[0] = v[1] = v[2] = v[3] = 0.0f; return; }
        const int khw = (int)(s.kh * s.kw);
        const int o = k / khw, r = k - o * khw, kh = r / (int)s.kw, kw = r - kh * (int)s.kw;
        const int st = (int)s.stride;
        const long long obase = (long long)o * s.oh * s.ow;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int th = c.hp[j] - kh, tw = c.wp[j] - kw;
            float val = 0.0f;
            if (c.ok[j] && th >= 0 && tw >= 0) {
                const int oh = th / st, ow = tw / st;
                if (oh * st == th && ow * st == tw && oh < (int)s.oh && ow < (int)s.ow)
                    val = dy[c.dyoff[j] + obase + (long long)oh * s.ow + ow];
            }
            v[j] = val;
        }
    }
    __device__ __forceinline__ void store(int m, int n, float c) const {
        const int hw = (int)(s.h * s.w);
        const int img = n / hw, pix = n - img * hw;
        const long long i = ((long long)img * s.c + m) * hw + pix;
        dx[i] = acc ? dx[i] + c : c;
    }
};

// conv2d_bwd_input: dx (=|+=) conv_transpose(dy, w).
// Threads: 256 per block, one 128(c) x 128(n*h*w) tile of dx per block:
// grid (ceil(N*H*W/128), ceil(C/128)).
// dx [N, C, H, W] overwritten (acc = 0) or accumulated (acc = 1); dy [N, O, OH, OW];
// w [O, C, KH, KW].
template <class Core>
__device__ __forceinline__ void conv2d_bwd_input_body(
    float* __restrict__ dx, const float* __restrict__ dy, const float* __restrict__ w,
    ConvShape s, unsigned int acc) {
    ConvBwdInputP p;
    p.M = (int)s.c;
    p.N = (int)(s.n * s.h * s.w);
    p.K = (int)(s.o * s.kh * s.kw);
    p.dy = dy; p.w = w; p.dx = dx; p.s = s; p.acc = acc;
    Core::run(p, (int)blockIdx.y * IG_BM, (int)blockIdx.x * IG_BN, 0, p.K);
}
IGEMM_KERNELS(conv2d_bwd_input,
              (float* __restrict__ dx, const float* __restrict__ dy, const float* __restrict__ w,
               ConvShape s, unsigned int acc),
              (dx, dy, w, s, acc))

// ---- backward-weight: M = O, Ncol = KK, K = N*OH*OW (split over blockIdx.z) --------
// dw[o, (c,kh,kw)] = sum_{img, oh, ow} dy[img, o, oh, ow] x[img, c, oh*st-pad+kh, ow*st-pad+kw]:
// A(o, (img,oh,ow)) = dy; B((img,oh,ow), (c,kh,kw)) = x gathered (0 in the padding).
struct ConvBwdWeightP {
    int M, N, K;
    const float* dy;
    const float* x;
    float* part;  // [splits, O, KK]
    ConvShape s;

    struct ACtx { int o; bool ok; };
    __device__ __forceinline__ void a_init(int m, ACtx& c) const { c.o = m; c.ok = m < M; }
    __device__ __forceinline__ void a4(const ACtx& c, int m, int k, int kend, float v[4]) const {
        const int ohw = (int)(s.oh * s.ow);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int kk = k + i;
            if (c.ok && kk < kend) {
                const int img = kk / ohw, pix = kk - img * ohw;
                v[i] = dy[((long long)img * s.o + c.o) * ohw + pix];
            } else {
                v[i] = 0.0f;
            }
        }
    }
    struct BCtx { long long coff[4]; int kh[4], kw[4]; bool ok[4]; };
    __device__ __forceinline__ void b_init(int n, BCtx& c) const {
        const int khw = (int)(s.kh * s.kw);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int col = n + j;
            c.ok[j] = col < N;
            const int ci = c.ok[j] ? col / khw : 0, r = c.ok[j] ? col - ci * khw : 0;
            c.kh[j] = r / (int)s.kw;
            c.kw[j] = r - c.kh[j] * (int)s.kw;
            c.coff[j] = (long long)ci * s.h * s.w;
        }
    }
    __device__ __forceinline__ void b4(const BCtx& c, int k, int kend, float v[4]) const {
        if (k >= kend) { v[0] = v[1] = v[2] = v[3] = 0.0f; return; }
        const int ohw = (int)(s.oh * s.ow);
        const int img = k / ohw, pix = k - img * ohw, oh = pix / (int)s.ow, ow = pix - oh * (int)s.ow;
        const int ih0 = oh * (int)s.stride - (int)s.pad, iw0 = ow * (int)s.stride - (int)s.pad;
        const long long base = (long long)img * s.c * s.h * s.w;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int ih = ih0 + c.kh[j], iw = iw0 + c.kw[j];
            const bool in = c.ok[j] && ih >= 0 && ih < (int)s.h && iw >= 0 && iw < (int)s.w;
            v[j] = in ? x[base + c.coff[j] + (long long)ih * s.w + iw] : 0.0f;
        }
    }
    __device__ __forceinline__ void store(int m, int n, float c) const {
        part[((long long)blockIdx.z * M + m) * N + n] = c;
    }
};

// conv2d_bwd_weight: part[z] = the dw partial sum over k in [z*kchunk, (z+1)*kchunk)
// (kchunk a multiple of IG_BK); with one split `part` is dw itself, else
// splitk_reduce (kernels/reduce.cu) sums the splits in a fixed order.
// Threads: 256 per block, one 128(o) x 128(c*kh*kw) tile per block and split:
// grid (ceil(KK/128), ceil(O/128), splits).
// part [splits, O, KK] overwritten (every element, zeros for an empty range);
// dy [N, O, OH, OW]; x [N, C, H, W].
template <class Core>
__device__ __forceinline__ void conv2d_bwd_weight_body(
    float* __restrict__ part, const float* __restrict__ dy, const float* __restrict__ x,
    ConvShape s, unsigned int kchunk) {
    ConvBwdWeightP p;
    p.M = (int)s.o;
    p.N = (int)(s.c * s.kh * s.kw);
    p.K = (int)(s.n * s.oh * s.ow);
    p.dy = dy; p.x = x; p.part = part; p.s = s;
    const long long kb = (long long)blockIdx.z * kchunk;
    const int kbeg = (int)(kb < p.K ? kb : p.K);
    const int kend = (int)(kb + kchunk < p.K ? kb + kchunk : p.K);
    Core::run(p, (int)blockIdx.y * IG_BM, (int)blockIdx.x * IG_BN, kbeg, kend);
}
IGEMM_KERNELS(conv2d_bwd_weight,
              (float* __restrict__ part, const float* __restrict__ dy,
               const float* __restrict__ x, ConvShape s, unsigned int kchunk),
              (part, dy, x, s, kchunk))
