// Fused ConvNet block tail: normalisation -> activation -> pooling in one pass over z.
// Contract: src/backend/mod.rs (norm_act_pool_fwd; the trait default composes
// norm_fwd, act_fwd and pool_fwd, and the CPU backend is that composition); unfused
// twins: kernels/norm.cu (norm_fwd), kernels/activation.cu (act_fwd),
// kernels/pool.cu (pool_fwd).
#include "activation.cuh"
#include "norm.cuh"
#include "pool.cuh"

// norm_act_pool_fwd: per slab (sample n, group g) of M = (C/G)*HW contiguous elements,
//   mu = mean(z), rstd = (mean((z - mu)^2) + eps)^(-1/2)  (two passes, as norm_fwd),
//   s = gamma (z - mu) rstd + beta,  a = f(s),  p = pool(a)  (any k x k window, stride
//   ps.stride, as pool_fwd)
// With norm == 0 there is no normalisation: s = z (s_out, stats, gamma, beta unused,
// may be null), a = f(z); the caller then passes ns = {N*C, 1, HW, 1, 0, 0} (a slab
// is one plane). With pool == POOL_NONE, p is not written (may be null).
// Threads: one block per slab (blockIdx.x = n*G + g), blockDim.x a multiple of 32
// (launch::fused_block). The slab is read from global memory once (coalesced) into
// dynamic shared memory (M floats, launch::fused), the statistics come from there,
// s and a are written coalesced, and the block's (C/G) planes are pooled from the
// activations in shared memory.
// Layouts: z, s_out, a_out [N, C, HW] (HW = ps.h * ps.w when pooling); stats
// [mu (N*G), rstd (N*G)]; gamma, beta [C] (ns.affine 0) or [C*HW] (1);
// p_out [N*C, OH, OW] (PoolShape). s_out, stats, a_out, p_out overwritten.
extern "C" __global__ void __launch_bounds__(256)
    norm_act_pool_fwd(float* __restrict__ s_out, float* __restrict__ stats,
                      float* __restrict__ a_out, float* __restrict__ p_out,
                      const float* __restrict__ z, const float* __restrict__ gamma,
                      const float* __restrict__ beta, NormShape ns, PoolShape ps,
                      unsigned int act, unsigned int pool, unsigned int norm) {
    DYN_SHARED(float, slab);
    __shared__ float scratch[32];
    const unsigned int grp = blockIdx.x, g = grp % ns.groups, cg = ns.c / ns.groups;
    const unsigned int m = cg * ns.hw;
    const unsigned long long base = (unsigned long long)grp * m;
    float mu = 0.0f, r = 1.0f;
    if (norm) {
        float acc = 0.0f;
        for (unsigned int k = threadIdx.x; k < m; k += blockDim.x) {
            const float v = z[base + k];
            slab[k] = v;
            acc += v;
        }
        mu = block_sum(acc, scratch) / (float)m;
        acc = 0.0f;
        // Each thread re-reads only the elements it stored: no barrier needed.
        for (unsigned int k = threadIdx.x; k < m; k += blockDim.x) {
            const float d = slab[k] - mu;
            acc += d * d;
        }
        const float var = block_sum(acc, scratch) / (float)m;
        r = 1.0f / sqrtf(var + ns.eps);
        if (threadIdx.x == 0) {
            stats[grp] = mu;
            stats[(unsigned long long)ns.n * ns.groups + grp] = r;
        }
        for (unsigned int k = threadIdx.x; k < m; k += blockDim.x) {
            const float sv = norm_coef(gamma, ns, g, k) * ((slab[k] - mu) * r) +
                             norm_coef(beta, ns, g, k);
            s_out[base + k] = sv;
            const float av = act_f(sv, act);
            a_out[base + k] = av;
            slab[k] = av;
        }
    } else {
        for (unsigned int k = threadIdx.x; k < m; k += blockDim.x) {
            const float av = act_f(z[base + k], act);
            a_out[base + k] = av;
            slab[k] = av;
        }
    }
    if (pool == POOL_NONE) return;  // uniform over the block: no divergent barrier
    __syncthreads();
    const unsigned int oh = pool_out(ps.h, ps.k, ps.stride), ow = pool_out(ps.w, ps.k, ps.stride);
    const unsigned int per_plane = oh * ow;
    const unsigned int outs = cg * per_plane;
    const unsigned long long pbase = (unsigned long long)grp * outs;
    for (unsigned int o = threadIdx.x; o < outs; o += blockDim.x) {
        const unsigned int q = o / per_plane, rem = o - q * per_plane;
        const unsigned int i = rem / ow, j = rem - i * ow;
        const float* win = slab + q * ns.hw + i * ps.stride * ps.w + j * ps.stride;
        p_out[pbase + o] = pool_window(win, ps.w, ps.k, pool);
    }
}
EMU_REGISTER(norm_act_pool_fwd)
