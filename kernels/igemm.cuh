// Tiled (implicit) GEMM core shared by the conv and linear families:
//   C[m, n] = sum_{k in [kbeg, kend)} A(m, k) * B(k, n),   m < M, n < N,
// where a "problem" class P supplies how A and B are read (a plain matrix, an
// im2col gather, a transposed-convolution gather) and what is done with each C
// element (the epilogue: bias, accumulate, split-K partial store).
//
// Tiling: one block of IG_THREADS = 256 threads computes a 128 x 128 tile of C; the
// k loop advances IG_BK = 8 at a time through double-buffered shared memory (one
// barrier per k step; the next tile is loaded into registers while the current one
// is multiplied). Each thread owns an 8 x 8 register tile: rows {ty*4+i, 64+ty*4+i},
// columns {tx*4+j, 64+tx*4+j} (i, j < 4; ty = tid/16, tx = tid%16), read from shared
// memory as float4.
//
// Loads per k step: thread t reads A rows m0 + t/2, k offsets (t%2)*4 .. +3 (a4: one
// float4 where the problem allows), and B row k0 + t/32, columns n0 + (t%32)*4 .. +3
// (b4). Every sum runs in a fixed order: results are deterministic.
//
// P must provide:
//   int M, N;                                  // C is M x N
//   struct ACtx; __device__ void a_init(int m, ACtx&) const;   // per-thread row data
//   __device__ void a4(const ACtx&, int m, int k, int kend, float v[4]) const;
//       // v[i] = A(m, k+i), 0 where m >= M or k+i >= kend
//   struct BCtx; __device__ void b_init(int n, BCtx&) const;   // per-thread column data
//   __device__ void b4(const BCtx&, int k, int kend, float v[4]) const;
//       // v[j] = B(k, n+j), 0 where k >= kend or n+j >= N
//   __device__ void store(int m, int n, float c) const;        // m < M, n < N only
#pragma once
#include "common.cuh"

#define IG_BM 128
#define IG_BN 128
#define IG_BK 8
#define IG_THREADS 256

template <class P>
__device__ __forceinline__ void igemm_block(const P& p, int m0, int n0, int kbeg, int kend) {
    __shared__ __align__(16) float As[2][IG_BK][IG_BM];
    __shared__ __align__(16) float Bs[2][IG_BK][IG_BN];
    const int t = (int)threadIdx.x;
    const int ty = t >> 4, tx = t & 15;
    const int am = t >> 1, ak = (t & 1) * 4;       // A load slot
    const int bk = t >> 5, bn = (t & 31) * 4;      // B load slot

    typename P::ACtx actx;
    p.a_init(m0 + am, actx);
    typename P::BCtx bctx;
    p.b_init(n0 + bn, bctx);

    float acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

    float ra[4], rb[4];
    const int ntiles = (kend - kbeg + IG_BK - 1) / IG_BK;
    if (ntiles > 0) {
        p.a4(actx, m0 + am, kbeg + ak, kend, ra);
        p.b4(bctx, kbeg + bk, kend, rb);
#pragma unroll
        for (int i = 0; i < 4; ++i) As[0][ak + i][am] = ra[i];
        *reinterpret_cast<float4*>(&Bs[0][bk][bn]) = make_float4(rb[0], rb[1], rb[2], rb[3]);
    }
    __syncthreads();
    for (int tile = 0; tile < ntiles; ++tile) {
        const int cur = tile & 1;
        const bool more = tile + 1 < ntiles;
        if (more) {
            const int k0 = kbeg + (tile + 1) * IG_BK;
            p.a4(actx, m0 + am, k0 + ak, kend, ra);
            p.b4(bctx, k0 + bk, kend, rb);
        }
#pragma unroll
        for (int k = 0; k < IG_BK; ++k) {
            const float4 a0 = *reinterpret_cast<const float4*>(&As[cur][k][ty * 4]);
            const float4 a1 = *reinterpret_cast<const float4*>(&As[cur][k][64 + ty * 4]);
            const float4 b0 = *reinterpret_cast<const float4*>(&Bs[cur][k][tx * 4]);
            const float4 b1 = *reinterpret_cast<const float4*>(&Bs[cur][k][64 + tx * 4]);
            const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
            const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        if (more) {
            const int nxt = cur ^ 1;
#pragma unroll
            for (int i = 0; i < 4; ++i) As[nxt][ak + i][am] = ra[i];
            *reinterpret_cast<float4*>(&Bs[nxt][bk][bn]) = make_float4(rb[0], rb[1], rb[2], rb[3]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int m = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
        if (m >= p.M) continue;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int n = n0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4));
            if (n < p.N) p.store(m, n, acc[i][j]);
        }
    }
}
