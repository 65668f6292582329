// Group / instance / layer norm family: forward, backward, forward tangent and the
// reverse of the dual (second-order) pass. Contract: src/backend/mod.rs (norm_*);
// CPU twin: src/backend/cpu/norm.rs; maths: docs/derivations/norm.md (§1-§4).
//
// A normalisation group (sample n, group g) is the M = (C/G)*HW contiguous elements
// starting at (n*G + g)*M. Notation: r = rstd, xhat = (x - mu) r,
// J v = r (v - mean(v) - xhat mean(xhat v)) (symmetric).
// Affine parameters (gamma, beta and their tangents) are per channel ([C]) or per
// element ([C, HW], layer norm): element k of group g has channel g*(C/G) + k/HW and
// per-element index g*M + k. All reductions are block trees of fixed shape
// (block_sum): deterministic. blockDim.x is a multiple of 32 (launch::NORM_BLOCK).
#include "norm.cuh"

// norm_fwd: mu = mean(x), rstd = (mean((x - mu)^2) + eps)^(-1/2) per group (two
// passes), stats = [mu (N*G), rstd (N*G)]; y = gamma xhat + beta from the stored stats.
// Threads: one block per (n, g) (blockIdx.x = n*G + g), threads stride over the group.
// y, x [N, C, HW]; stats [2*N*G] overwritten; y overwritten; gamma, beta [C] or [C*HW].
extern "C" __global__ void __launch_bounds__(256)
    norm_fwd(float* __restrict__ y, float* __restrict__ stats, const float* __restrict__ x,
             const float* __restrict__ gamma, const float* __restrict__ beta, NormShape s) {
    __shared__ float scratch[32];
    const unsigned int grp = blockIdx.x, g = grp % s.groups;
    const unsigned int m = (s.c / s.groups) * s.hw;
    const unsigned long long base = (unsigned long long)grp * m;
    float acc = 0.0f;
    for (unsigned int k = threadIdx.x; k < m; k += blockDim.x) acc += x[base + k];
    const float mu = block_sum(acc, scratch) / (float)m;
    acc = 0.0f;
    for (unsigned int k = threadIdx.x; k < m; k += blockDim.x) {
        const float d = x[base + k] - mu;
        acc += d * d;
    }
    const float var = block_sum(acc, scratch) / (float)m;
    const float r = 1.0f / sqrtf(var + s.eps);
    if (threadIdx.x == 0) {
        stats[grp] = mu;
        stats[(unsigned long long)s.n * s.groups + grp] = r;
    }
    for (unsigned int k = threadIdx.x; k < m; k += blockDim.x) {
        const float xh = (x[base + k] - mu) * r;
        y[base + k] = norm_coef(gamma, s, g, k) * xh + norm_coef(beta, s, g, k);
    }
}
EMU_REGISTER(norm_fwd)

// norm_bwd: dx = J (gamma dy) = r (w - mean(w) - xhat mean(w xhat)), w = gamma dy.
// Threads: one block per (n, g). dx [N, C, HW] overwritten; dy, x [N, C, HW];
// stats [2*N*G]; gamma [C] or [C*HW].
extern "C" __global__ void __launch_bounds__(256)
    norm_bwd(float* __restrict__ dx, const float* __restrict__ dy, const float* __restrict__ x,
             const float* __restrict__ stats, const float* __restrict__ gamma, NormShape s) {
    __shared__ float scratch[32];
    const unsigned int grp = blockIdx.x, g = grp % s.groups;
    const unsigned int m = (s.c / s.groups) * s.hw;
    const unsigned long long base = (unsigned long long)grp * m;
    const float mu = stats[grp], r = stats[(unsigned long long)s.n * s.groups + grp];
    float sw = 0.0f, swx = 0.0f;
    for (unsigned int k = threadIdx.x; k < m; k += blockDim.x) {
        const float w = norm_coef(gamma, s, g, k) * dy[base + k];
        sw += w;
        swx += w * ((x[base + k] - mu) * r);
    }
    const float wm = block_sum(sw, scratch) / (float)m;
    const float wx = block_sum(swx, scratch) / (float)m;
    for (unsigned int k = threadIdx.x; k < m; k += blockDim.x) {
        const float w = norm_coef(gamma, s, g, k) * dy[base + k];
        const float xh = (x[base + k] - mu) * r;
        dx[base + k] = r * (w - wm - xh * wx);
    }
}
EMU_REGISTER(norm_bwd)

// norm_bwd_params: dgamma = sum dy xhat, dbeta = sum dy over everything each
// parameter touches. Per channel (s.affine == 0): one block per channel c
// (blockIdx.x), threads stride over the N*HW terms (n outer, hw inner), then a fixed
// tree. Per element (s.affine == 1): 1-D grid-stride, one thread per (c, hw), summing
// over n ascending. dgamma, dbeta [C] or [C*HW] overwritten; dy, x [N, C, HW];
// stats [2*N*G].
extern "C" __global__ void __launch_bounds__(256)
    norm_bwd_params(float* __restrict__ dgamma, float* __restrict__ dbeta,
                    const float* __restrict__ dy, const float* __restrict__ x,
                    const float* __restrict__ stats, NormShape s) {
    const unsigned int cg = s.c / s.groups;
    const unsigned long long ng = (unsigned long long)s.n * s.groups;
    if (s.affine) {
        const unsigned long long total = (unsigned long long)s.c * s.hw;
        for (unsigned long long e = global_tid(); e < total; e += grid_threads()) {
            const unsigned int c = (unsigned int)(e / s.hw), g = c / cg;
            float sg = 0.0f, sb = 0.0f;
            for (unsigned int n = 0; n < s.n; ++n) {
                const unsigned long long i = (unsigned long long)n * s.groups + g;
                const unsigned long long k = (unsigned long long)n * total + e;
                const float d = dy[k];
                sg += d * ((x[k] - stats[i]) * stats[ng + i]);
                sb += d;
            }
            dgamma[e] = sg;
            dbeta[e] = sb;
        }
        return;
    }
    __shared__ float scratch[32];
    const unsigned int c = blockIdx.x, g = c / cg;
    const unsigned long long terms = (unsigned long long)s.n * s.hw;
    float sg = 0.0f, sb = 0.0f;
    for (unsigned long long t = threadIdx.x; t < terms; t += blockDim.x) {
        const unsigned long long n = t / s.hw, h = t - n * s.hw;
        const unsigned long long i = n * s.groups + g;
        const unsigned long long k = (n * s.c + c) * s.hw + h;
        const float d = dy[k];
        sg += d * ((x[k] - stats[i]) * stats[ng + i]);
        sb += d;
    }
    sg = block_sum(sg, scratch);
    sb = block_sum(sb, scratch);
    if (threadIdx.x == 0) {
        dgamma[c] = sg;
        dbeta[c] = sb;
    }
}
EMU_REGISTER(norm_bwd_params)

// norm_jvp: ydot = gamma J xdot + t_gamma xhat + t_beta,
// J xdot = r (xdot - mean(xdot) - xhat mean(xhat xdot)).
// Threads: one block per (n, g). ydot [N, C, HW] overwritten; x, xdot [N, C, HW];
// stats [2*N*G]; gamma, t_gamma, t_beta [C] or [C*HW].
extern "C" __global__ void __launch_bounds__(256)
    norm_jvp(float* __restrict__ ydot, const float* __restrict__ x,
             const float* __restrict__ xdot, const float* __restrict__ stats,
             const float* __restrict__ gamma, const float* __restrict__ t_gamma,
             const float* __restrict__ t_beta, NormShape s) {
    __shared__ float scratch[32];
    const unsigned int grp = blockIdx.x, g = grp % s.groups;
    const unsigned int m = (s.c / s.groups) * s.hw;
    const unsigned long long base = (unsigned long long)grp * m;
    const float mu = stats[grp], r = stats[(unsigned long long)s.n * s.groups + grp];
    float sv = 0.0f, svx = 0.0f;
    for (unsigned int k = threadIdx.x; k < m; k += blockDim.x) {
        const float v = xdot[base + k];
        sv += v;
        svx += v * ((x[base + k] - mu) * r);
    }
    const float vm = block_sum(sv, scratch) / (float)m;
    const float a = block_sum(svx, scratch) / (float)m;
    for (unsigned int k = threadIdx.x; k < m; k += blockDim.x) {
        const float xh = (x[base + k] - mu) * r;
        const float jv = r * (xdot[base + k] - vm - xh * a);
        ydot[base + k] = norm_coef(gamma, s, g, k) * jv + norm_coef(t_gamma, s, g, k) * xh +
                         norm_coef(t_beta, s, g, k);
    }
}
EMU_REGISTER(norm_jvp)

// norm_dual_bwd: reverse of the dual norm (derivations/norm.md §4). With
// u = gamma dydot, v = xdot, w = gamma dy + t_gamma dydot and the group means
// wm, wx = mean(w xhat), um, c = mean(u xhat), vm, a = mean(v xhat), q = mean(u v) - um vm:
//   dxdot = r (u - um - c xhat)
//   dx    = r (w - wm - wx xhat) + r^2 (-c (v - vm) - a (u - um) + (3ac - q) xhat).
// Threads: one block per (n, g); seven block sums. dx, dxdot [N, C, HW] overwritten;
// dy, dydot, x, xdot [N, C, HW]; stats [2*N*G]; gamma, t_gamma [C] or [C*HW].
extern "C" __global__ void __launch_bounds__(256)
    norm_dual_bwd(float* __restrict__ dx, float* __restrict__ dxdot,
                  const float* __restrict__ dy, const float* __restrict__ dydot,
                  const float* __restrict__ x, const float* __restrict__ xdot,
                  const float* __restrict__ stats, const float* __restrict__ gamma,
                  const float* __restrict__ t_gamma, NormShape s) {
    __shared__ float scratch[32];
    const unsigned int grp = blockIdx.x, g = grp % s.groups;
    const unsigned int m = (s.c / s.groups) * s.hw;
    const unsigned long long base = (unsigned long long)grp * m;
    const float mu = stats[grp], r = stats[(unsigned long long)s.n * s.groups + grp];
    float acc[7] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    for (unsigned int k = threadIdx.x; k < m; k += blockDim.x) {
        const float xh = (x[base + k] - mu) * r;
        const float gm = norm_coef(gamma, s, g, k), dd = dydot[base + k];
        const float w = gm * dy[base + k] + norm_coef(t_gamma, s, g, k) * dd;
        const float u = gm * dd, v = xdot[base + k];
        acc[0] += w;
        acc[1] += w * xh;
        acc[2] += u;
        acc[3] += u * xh;
        acc[4] += v;
        acc[5] += v * xh;
        acc[6] += u * v;
    }
    const float inv_m = 1.0f / (float)m;
#pragma unroll
    for (int i = 0; i < 7; ++i) acc[i] = block_sum(acc[i], scratch) * inv_m;
    const float wm = acc[0], wx = acc[1], um = acc[2], cc = acc[3], vm = acc[4], a = acc[5];
    const float q = acc[6] - um * vm;
    const float coef = 3.0f * a * cc - q, r2 = r * r;
    for (unsigned int k = threadIdx.x; k < m; k += blockDim.x) {
        const float xh = (x[base + k] - mu) * r;
        const float gm = norm_coef(gamma, s, g, k), dd = dydot[base + k];
        const float w = gm * dy[base + k] + norm_coef(t_gamma, s, g, k) * dd;
        const float u = gm * dd, v = xdot[base + k];
        dxdot[base + k] = r * (u - um - xh * cc);
        const float second = r2 * (-cc * (v - vm) - a * (u - um) + coef * xh);
        dx[base + k] = r * (w - wm - xh * wx) + second;
    }
}
EMU_REGISTER(norm_dual_bwd)
