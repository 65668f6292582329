// Fully connected family as GEMMs on the tiled core of igemm.cuh, each kernel in
// three precisions from one body (IGEMM_KERNELS, igemm_mma.cuh: `name` FP32 units,
// `name_tf32` / `name_bf16` matrix units, FP32 accumulation). Contract:
// src/backend/mod.rs (linear_fwd, linear_bwd_input, linear_bwd_weight); CPU twin:
// src/backend/cpu/linear.rs. Shapes: x [N, F], w [K, F] (PyTorch layout), b [K],
// y [N, K]. Bias gradients: bias_bwd of kernels/reduce.cu.
#include "igemm_mma.cuh"

// Row-major A(m, k) = a[m*lda + k], float4 when aligned.
__device__ __forceinline__ void lin_rows4(const float* row, bool ok, int k, int kend, float v[4]) {
    if (ok && k + 3 < kend && aligned16(row + k)) {
        const float4 q = *reinterpret_cast<const float4*>(row + k);
        v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
        return;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = (ok && k + i < kend) ? row[k + i] : 0.0f;
}

// ---- forward: M = N (batch), Ncol = K, K = F; A = x, B(f, k) = w[k, f] ------------
struct LinFwdP {
    int M, N, K;
    const float* x;
    const float* w;
    const float* b;
    float* y;
    unsigned int acc;
    struct ACtx { const float* row; bool ok; };
    __device__ __forceinline__ void a_init(int m, ACtx& c) const {
        c.ok = m < M;
        c.row = x + (long long)(c.ok ? m : 0) * K;
    }
    __device__ __forceinline__ void a4(const ACtx& c, int m, int k, int kend, float v[4]) const {
        lin_rows4(c.row, c.ok, k, kend, v);
    }
    struct BCtx { const float* col[4]; bool ok[4]; };
    __device__ __forceinline__ void b_init(int n, BCtx& c) const {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            c.ok[j] = n + j < N;
            c.col[j] = w + (long long)(c.ok[j] ? n + j : 0) * K;
        }
    }
    __device__ __forceinline__ void b4(const BCtx& c, int k, int kend, float v[4]) const {
#pragma unroll
        for (int j = 0; j < 4; ++j) v[j] = (c.ok[j] && k < kend) ? c.col[j][k] : 0.0f;
    }
    __device__ __forceinline__ void store(int m, int n, float c) const {
        const long long i = (long long)m * N + n;
        const float v = c + (b ? b[n] : 0.0f);
        y[i] = acc ? y[i] + v : v;
    }
};

// linear_fwd: y (=|+=) x w^T + b.
// Threads: 256 per block, one 128(n) x 128(k) tile of y: grid (ceil(K/128), ceil(N/128)).
// y [N, K] overwritten (acc = 0) or accumulated (acc = 1); x [N, F]; w [K, F]; b [K] or null.
template <class Core>
__device__ __forceinline__ void linear_fwd_body(
    float* __restrict__ y, const float* __restrict__ x, const float* __restrict__ w,
    const float* __restrict__ b, LinearShape s, unsigned int acc) {
    LinFwdP p;
    p.M = (int)s.n; p.N = (int)s.k; p.K = (int)s.f;
    p.x = x; p.w = w; p.b = b; p.y = y; p.acc = acc;
    Core::run(p, (int)blockIdx.y * IG_BM, (int)blockIdx.x * IG_BN, 0, p.K);
}
IGEMM_KERNELS(linear_fwd,
              (float* __restrict__ y, const float* __restrict__ x, const float* __restrict__ w,
               const float* __restrict__ b, LinearShape s, unsigned int acc),
              (y, x, w, b, s, acc))

// ---- backward-data: M = N, Ncol = F, K = K(out); A = dy, B = w (row-major) --------
struct LinBwdInputP {
    int M, N, K;
    const float* dy;
    const float* w;
    float* dx;
    unsigned int acc;
    struct ACtx { const float* row; bool ok; };
    __device__ __forceinline__ void a_init(int m, ACtx& c) const {
        c.ok = m < M;
        c.row = dy + (long long)(c.ok ? m : 0) * K;
    }
    __device__ __forceinline__ void a4(const ACtx& c, int m, int k, int kend, float v[4]) const {
        lin_rows4(c.row, c.ok, k, kend, v);
    }
    struct BCtx { int n; };
    __device__ __forceinline__ void b_init(int n, BCtx& c) const { c.n = n; }
    __device__ __forceinline__ void b4(const BCtx& c, int k, int kend, float v[4]) const {
        const float* row = w + (long long)k * N;
        if (k < kend && c.n + 3 < N && aligned16(row + c.n)) {
            const float4 q = *reinterpret_cast<const float4*>(row + c.n);
            v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
            return;
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) v[j] = (k < kend && c.n + j < N) ? row[c.n + j] : 0.0f;
    }
    __device__ __forceinline__ void store(int m, int n, float c) const {
        const long long i = (long long)m * N + n;
        dx[i] = acc ? dx[i] + c : c;
    }
};

// linear_bwd_input: dx (=|+=) dy w.
// Threads: 256 per block, one 128(n) x 128(f) tile of dx: grid (ceil(F/128), ceil(N/128)).
// dx [N, F] overwritten (acc = 0) or accumulated (acc = 1); dy [N, K]; w [K, F].
template <class Core>
__device__ __forceinline__ void linear_bwd_input_body(
    float* __restrict__ dx, const float* __restrict__ dy, const float* __restrict__ w,
    LinearShape s, unsigned int acc) {
    LinBwdInputP p;
    p.M = (int)s.n; p.N = (int)s.f; p.K = (int)s.k;
    p.dy = dy; p.w = w; p.dx = dx; p.acc = acc;
    Core::run(p, (int)blockIdx.y * IG_BM, (int)blockIdx.x * IG_BN, 0, p.K);
}
IGEMM_KERNELS(linear_bwd_input,
              (float* __restrict__ dx, const float* __restrict__ dy, const float* __restrict__ w,
               LinearShape s, unsigned int acc),
              (dx, dy, w, s, acc))

// ---- backward-weight: M = K(out), Ncol = F, K = N (split over blockIdx.z) ---------
// A(k, n) = dy[n, k]; B(n, f) = x[n, f] (row-major).
struct LinBwdWeightP {
    int M, N, K;
    const float* dy;
    const float* x;
    float* part;
    struct ACtx { int k; bool ok; };
    __device__ __forceinline__ void a_init(int m, ACtx& c) const { c.k = m; c.ok = m < M; }
    __device__ __forceinline__ void a4(const ACtx& c, int m, int k, int kend, float v[4]) const {
#pragma unroll
        for (int i = 0; i < 4; ++i)
            v[i] = (c.ok && k + i < kend) ? dy[(long long)(k + i) * M + c.k] : 0.0f;
    }
    struct BCtx { int n; };
    __device__ __forceinline__ void b_init(int n, BCtx& c) const { c.n = n; }
    __device__ __forceinline__ void b4(const BCtx& c, int k, int kend, float v[4]) const {
        const float* row = x + (long long)k * N;
        if (k < kend && c.n + 3 < N && aligned16(row + c.n)) {
            const float4 q = *reinterpret_cast<const float4*>(row + c.n);
            v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
            return;
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) v[j] = (k < kend && c.n + j < N) ? row[c.n + j] : 0.0f;
    }
    __device__ __forceinline__ void store(int m, int n, float c) const {
        part[((long long)blockIdx.z * M + m) * N + n] = c;
    }
};

// linear_bwd_weight: part[z] = dw partial over batch rows [z*kchunk, (z+1)*kchunk)
// (kchunk a multiple of IG_BK); one split: part is dw, else splitk_reduce sums them.
// Threads: 256 per block, one 128(k) x 128(f) tile per split:
// grid (ceil(F/128), ceil(K/128), splits).
// part [splits, K, F] overwritten; dy [N, K]; x [N, F].
template <class Core>
__device__ __forceinline__ void linear_bwd_weight_body(
    float* __restrict__ part, const float* __restrict__ dy, const float* __restrict__ x,
    LinearShape s, unsigned int kchunk) {
    LinBwdWeightP p;
    p.M = (int)s.k; p.N = (int)s.f; p.K = (int)s.n;
    p.dy = dy; p.x = x; p.part = part;
    const long long kb = (long long)blockIdx.z * kchunk;
    const int kbeg = (int)(kb < p.K ? kb : p.K);
    const int kend = (int)(kb + kchunk < p.K ? kb + kchunk : p.K);
    Core::run(p, (int)blockIdx.y * IG_BM, (int)blockIdx.x * IG_BN, kbeg, kend);
}
IGEMM_KERNELS(linear_bwd_weight,
              (float* __restrict__ part, const float* __restrict__ dy,
               const float* __restrict__ x, LinearShape s, unsigned int kchunk),
              (part, dy, x, s, kchunk))
