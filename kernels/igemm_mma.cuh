// Tiled (implicit) GEMM on the matrix units (tensor cores), and the three "cores" a
// GEMM-shaped kernel is instantiated with. igemm_mma_block<Prec> takes the same
// problem class P as igemm_block (igemm.cuh: a_init/a4, b_init/b4, store; M, N) and
// computes the same
//   C[m, n] = sum_{k in [kbeg, kend)} A(m, k) * B(k, n)
// with A and B rounded on the fly to the precision Prec (MmaTf32: TF32, round to
// nearest, ties away = cvt.rna.tf32.f32; MmaBf16: BF16, round to nearest even) and
// FP32 accumulation (docs/derivations/precision.md). The CPU twin
// rounds the same operands with backend::Precision::round (src/backend/precision.rs).
//
// Tiling: one block of IG_THREADS = 256 threads (8 warps) computes a 128 x 128 tile
// of C (the same grid as igemm_block: launch::igemm). Warps form a 2 (m) x 4 (n)
// grid; warp w owns rows wm = (w/4)*64 .. +63 and columns wn = (w%4)*32 .. +31 as 4 x 2
// wmma 16x16 FP32 accumulators. k advances MM_BK = 16 per step (two m16n16k8 TF32
// products, or one m16n16k16 BF16 product) through double-buffered shared memory that
// holds the rounded operands: As[k][m] (A column-major, ldm = 128 + PAD) and
// Bs[k][n] (B row-major, ldm = 128 + PAD). PAD (4 floats / 8 bf16) keeps every
// fragment pointer 32-byte aligned and moves consecutive k rows to other banks. One
// barrier per k step; the next tile is gathered into registers while the current one
// is multiplied.
//
// Loads per k step: thread t gathers A rows m0 + t/2, k offsets (t%2)*4 .. +3 and the
// same 8 further on (two a4 calls), and B rows k0 + t/32 and k0 + 8 + t/32, columns
// n0 + (t%32)*4 .. +3 (two b4 calls), rounds them (Prec::round) and stores them.
//
// Epilogue: each warp stores one accumulator at a time into its own 16 x 16 FP32
// scratch in shared memory (store_matrix_sync, then __syncwarp); lane l applies
// P::store to row l/2, columns (l%2)*8 .. +7 of it (consecutive n: coalesced for the
// NCHW outputs), inside M x N only. Every sum has a fixed shape: results are
// deterministic (not bit-identical to igemm_block: the matrix units sum in their own
// order).
//
// Shared memory: TF32 2*16*132*4 (A) + the same (B) + 8*256*4 (scratch) = 41,984 B;
// BF16 2*16*136*2 * 2 + 8,192 = 25,600 B: static, under the 48 KiB every device gives
// without an opt-in.
#pragma once
#include "igemm.cuh"
#ifndef __CUDA_EMU__
#include <cuda_bf16.h>
#include <mma.h>
#endif

#define MM_BK 16

// TF32 operands: stored as float whose 13 low mantissa bits are 0.
struct MmaTf32 {
    typedef float Smem;
    typedef nvcuda::wmma::precision::tf32 Frag;
    enum { K = 8, PAD = 4 };
    static __device__ __forceinline__ float round(float v) { return nvcuda::wmma::__float_to_tf32(v); }
};
// BF16 operands.
struct MmaBf16 {
    typedef __nv_bfloat16 Smem;
    typedef __nv_bfloat16 Frag;
    enum { K = 16, PAD = 8 };
    static __device__ __forceinline__ __nv_bfloat16 round(float v) { return __float2bfloat16_rn(v); }
};

template <class Prec, class P>
__device__ __forceinline__ void igemm_mma_block(const P& p, int m0, int n0, int kbeg, int kend) {
    namespace wmma = nvcuda::wmma;
    typedef typename Prec::Smem S;
    enum { LDA = IG_BM + Prec::PAD, LDB = IG_BN + Prec::PAD };
    __shared__ __align__(32) S As[2][MM_BK][LDA];
    __shared__ __align__(32) S Bs[2][MM_BK][LDB];
    __shared__ __align__(32) float Cs[IG_THREADS / 32][16 * 16];
    const int t = (int)threadIdx.x;
    const int warp = t >> 5, lane = t & 31;
    const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
    const int am = t >> 1, ak = (t & 1) * 4;       // A load slots (+8 in k for the second)
    const int bk = t >> 5, bn = (t & 31) * 4;      // B load slots (+8 in k for the second)

    typename P::ACtx actx;
    p.a_init(m0 + am, actx);
    typename P::BCtx bctx;
    p.b_init(n0 + bn, bctx);

    wmma::fragment<wmma::accumulator, 16, 16, Prec::K, float> acc[4][2];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    float ra[8], rb[8];
    const int ntiles = (kend - kbeg + MM_BK - 1) / MM_BK;
    if (ntiles > 0) {
        p.a4(actx, m0 + am, kbeg + ak, kend, ra);
        p.a4(actx, m0 + am, kbeg + ak + 8, kend, ra + 4);
        p.b4(bctx, kbeg + bk, kend, rb);
        p.b4(bctx, kbeg + bk + 8, kend, rb + 4);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            As[0][ak + i][am] = Prec::round(ra[i]);
            As[0][ak + 8 + i][am] = Prec::round(ra[4 + i]);
            Bs[0][bk][bn + i] = Prec::round(rb[i]);
            Bs[0][bk + 8][bn + i] = Prec::round(rb[4 + i]);
        }
    }
    __syncthreads();
    for (int tile = 0; tile < ntiles; ++tile) {
        const int cur = tile & 1;
        const bool more = tile + 1 < ntiles;
        if (more) {
            const int k0 = kbeg + (tile + 1) * MM_BK;
            p.a4(actx, m0 + am, k0 + ak, kend, ra);
            p.a4(actx, m0 + am, k0 + ak + 8, kend, ra + 4);
            p.b4(bctx, k0 + bk, kend, rb);
            p.b4(bctx, k0 + bk + 8, kend, rb + 4);
        }
#pragma unroll
        for (int kk = 0; kk < MM_BK; kk += Prec::K) {
            wmma::fragment<wmma::matrix_a, 16, 16, Prec::K, typename Prec::Frag, wmma::col_major> fa[4];
            wmma::fragment<wmma::matrix_b, 16, 16, Prec::K, typename Prec::Frag, wmma::row_major> fb[2];
#pragma unroll
            for (int i = 0; i < 4; ++i) wmma::load_matrix_sync(fa[i], &As[cur][kk][wm + i * 16], LDA);
#pragma unroll
            for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], &Bs[cur][kk][wn + j * 16], LDB);
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
        if (more) {
            const int nxt = cur ^ 1;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                As[nxt][ak + i][am] = Prec::round(ra[i]);
                As[nxt][ak + 8 + i][am] = Prec::round(ra[4 + i]);
                Bs[nxt][bk][bn + i] = Prec::round(rb[i]);
                Bs[nxt][bk + 8][bn + i] = Prec::round(rb[4 + i]);
            }
        }
        __syncthreads();
    }
    float* cw = Cs[warp];
    const int er = lane >> 1, ec = (lane & 1) * 8;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            wmma::store_matrix_sync(cw, acc[i][j], 16, wmma::mem_row_major);
            __syncwarp();
            const int m = m0 + wm + i * 16 + er;
            if (m < p.M) {
#pragma unroll
                for (int c = 0; c < 8; ++c) {
                    const int n = n0 + wn + j * 16 + ec + c;
                    if (n < p.N) p.store(m, n, cw[er * 16 + ec + c]);
                }
            }
            __syncwarp();
        }
    }
}

// The cores: FP32 units (igemm_block), matrix units in TF32 or BF16.
struct CoreFp32 {
    template <class P>
    static __device__ __forceinline__ void run(const P& p, int m0, int n0, int kbeg, int kend) {
        igemm_block(p, m0, n0, kbeg, kend);
    }
};
struct CoreTf32 {
    template <class P>
    static __device__ __forceinline__ void run(const P& p, int m0, int n0, int kbeg, int kend) {
        igemm_mma_block<MmaTf32>(p, m0, n0, kbeg, kend);
    }
};
struct CoreBf16 {
    template <class P>
    static __device__ __forceinline__ void run(const P& p, int m0, int n0, int kbeg, int kend) {
        igemm_mma_block<MmaBf16>(p, m0, n0, kbeg, kend);
    }
};

// IGEMM_KERNELS(name, (params...), (args...)) defines three kernels with the
// parameter list `params`, each of IG_THREADS threads and registered with the
// emulator: `name` (FP32 units), `name_tf32` and `name_bf16` (matrix units), which
// call `name_body<Core>(args...)` with Core = CoreFp32, CoreTf32, CoreBf16. The three
// take the same arguments and the same launch geometry (launch::igemm). The
// matrix-unit kernels declare one resident block per SM as their minimum
// (__launch_bounds__(IG_THREADS, 1)): without it ptxas may cap them at 128 registers
// for two blocks and spill (it did for linear_bwd_weight_tf32 on sm_90).
#define IGEMM_KERNELS(name, params, args)                                                    \
    extern "C" __global__ void __launch_bounds__(IG_THREADS) name params {                   \
        name##_body<CoreFp32> args;                                                          \
    }                                                                                        \
    EMU_REGISTER(name)                                                                       \
    extern "C" __global__ void __launch_bounds__(IG_THREADS, 1) name##_tf32 params {            \
        name##_body<CoreTf32> args;                                                          \
    }                                                                                        \
    EMU_REGISTER(name##_tf32)                                                                \
    extern "C" __global__ void __launch_bounds__(IG_THREADS, 1) name##_bf16 params {            \
        name##_body<CoreBf16> args;                                                          \
    }                                                                                        \
    EMU_REGISTER(name##_bf16)
