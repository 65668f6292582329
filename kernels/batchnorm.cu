// Batch norm family (statistics per channel over N, H, W): train-mode forward and
// backward, eval-mode forward, backward, tangent and dual reverse. Contract:
// src/backend/mod.rs (bn_*); CPU twin: src/backend/cpu/norm.rs; maths:
// docs/derivations/norm.md §5-§6. Layout: x [N, C, HW]; per-channel vectors [C];
// stats = [mu (C), rstd (C)]; running = [mean (C), var (C)]. Reductions: one block per
// channel, threads stride over the N*HW terms (n outer, hw inner), fixed-shape tree
// (block_sum): deterministic. blockDim.x is a multiple of 32 (launch::NORM_BLOCK).
#include "common.cuh"

// Index of term t (0 <= t < N*HW) of channel c.
__device__ __forceinline__ unsigned long long bn_index(NormShape s, unsigned int c,
                                                       unsigned long long t) {
    const unsigned long long n = t / s.hw, h = t - n * s.hw;
    return (n * s.c + c) * s.hw + h;
}

// Channel of element e of [N, C, HW].
__device__ __forceinline__ unsigned int bn_channel(NormShape s, unsigned long long e) {
    return (unsigned int)((e / s.hw) % s.c);
}

// rstd of channel c from running = [mean (C), var (C)].
__device__ __forceinline__ float bn_running_rstd(const float* running, NormShape s,
                                                 unsigned int c) {
    return 1.0f / sqrtf(running[s.c + c] + s.eps);
}

// bn_fwd_train: per channel mu = mean(x), var = mean((x - mu)^2) (two passes),
// rstd = (var + eps)^(-1/2) into stats; running mean/var move `momentum` towards mu and
// var * M/(M-1) (M = N*HW >= 2, checked by the host); y = gamma (x - mu) rstd + beta.
// Threads: one block per channel (blockIdx.x). y [N, C, HW] overwritten; stats [2C]
// overwritten; running [2C] updated in place; x [N, C, HW]; gamma, beta [C].
extern "C" __global__ void __launch_bounds__(256)
    bn_fwd_train(float* __restrict__ y, float* __restrict__ stats, float* __restrict__ running,
                 const float* __restrict__ x, const float* __restrict__ gamma,
                 const float* __restrict__ beta, NormShape s, float momentum) {
    __shared__ float scratch[32];
    const unsigned int c = blockIdx.x;
    const unsigned long long terms = (unsigned long long)s.n * s.hw;
    const float mf = (float)terms;
    float acc = 0.0f;
    for (unsigned long long t = threadIdx.x; t < terms; t += blockDim.x) acc += x[bn_index(s, c, t)];
    const float mu = block_sum(acc, scratch) / mf;
    acc = 0.0f;
    for (unsigned long long t = threadIdx.x; t < terms; t += blockDim.x) {
        const float d = x[bn_index(s, c, t)] - mu;
        acc += d * d;
    }
    const float var = block_sum(acc, scratch) / mf;
    const float r = 1.0f / sqrtf(var + s.eps);
    if (threadIdx.x == 0) {
        stats[c] = mu;
        stats[s.c + c] = r;
        running[c] = (1.0f - momentum) * running[c] + momentum * mu;
        running[s.c + c] = (1.0f - momentum) * running[s.c + c] + momentum * (var * (mf / (mf - 1.0f)));
    }
    const float gr = gamma[c] * r, bt = beta[c];
    for (unsigned long long t = threadIdx.x; t < terms; t += blockDim.x) {
        const unsigned long long k = bn_index(s, c, t);
        y[k] = gr * (x[k] - mu) + bt;
    }
}
EMU_REGISTER(bn_fwd_train)

// bn_bwd_train: dx = gamma r (dy - mean(dy) - xhat mean(dy xhat)) per channel; when
// dgamma is not null also dgamma = sum dy xhat, dbeta = sum dy.
// Threads: one block per channel. dx [N, C, HW] overwritten; dgamma, dbeta [C] (or
// null) overwritten; dy, x [N, C, HW]; stats [2C]; gamma [C].
extern "C" __global__ void __launch_bounds__(256)
    bn_bwd_train(float* __restrict__ dx, float* __restrict__ dgamma, float* __restrict__ dbeta,
                 const float* __restrict__ dy, const float* __restrict__ x,
                 const float* __restrict__ stats, const float* __restrict__ gamma, NormShape s) {
    __shared__ float scratch[32];
    const unsigned int c = blockIdx.x;
    const unsigned long long terms = (unsigned long long)s.n * s.hw;
    const float mu = stats[c], r = stats[s.c + c];
    float s0 = 0.0f, s1 = 0.0f;
    for (unsigned long long t = threadIdx.x; t < terms; t += blockDim.x) {
        const unsigned long long k = bn_index(s, c, t);
        const float d = dy[k];
        s0 += d;
        s1 += d * ((x[k] - mu) * r);
    }
    s0 = block_sum(s0, scratch);
    s1 = block_sum(s1, scratch);
    if (threadIdx.x == 0 && dgamma != nullptr) {
        dgamma[c] = s1;
        dbeta[c] = s0;
    }
    const float mf = (float)terms, dm = s0 / mf, dxm = s1 / mf, gr = gamma[c] * r;
    for (unsigned long long t = threadIdx.x; t < terms; t += blockDim.x) {
        const unsigned long long k = bn_index(s, c, t);
        const float xh = (x[k] - mu) * r;
        dx[k] = gr * (dy[k] - dm - xh * dxm);
    }
}
EMU_REGISTER(bn_bwd_train)

// bn_fwd_eval: y = gamma (x - mean) r + beta, r = (var + eps)^(-1/2) from running.
// Threads: 1-D grid-stride over elements. y [N, C, HW] overwritten; x [N, C, HW];
// running [2C]; gamma, beta [C].
extern "C" __global__ void bn_fwd_eval(float* __restrict__ y, const float* __restrict__ x,
                                       const float* __restrict__ running,
                                       const float* __restrict__ gamma,
                                       const float* __restrict__ beta, NormShape s) {
    const unsigned long long total = (unsigned long long)s.n * s.c * s.hw;
    for (unsigned long long e = global_tid(); e < total; e += grid_threads()) {
        const unsigned int c = bn_channel(s, e);
        const float r = bn_running_rstd(running, s, c);
        y[e] = gamma[c] * (x[e] - running[c]) * r + beta[c];
    }
}
EMU_REGISTER(bn_fwd_eval)

// bn_bwd_eval: dx = gamma r dy (running statistics).
// Threads: 1-D grid-stride. dx [N, C, HW] overwritten; dy [N, C, HW]; running [2C];
// gamma [C].
extern "C" __global__ void bn_bwd_eval(float* __restrict__ dx, const float* __restrict__ dy,
                                       const float* __restrict__ running,
                                       const float* __restrict__ gamma, NormShape s) {
    const unsigned long long total = (unsigned long long)s.n * s.c * s.hw;
    for (unsigned long long e = global_tid(); e < total; e += grid_threads()) {
        const unsigned int c = bn_channel(s, e);
        dx[e] = gamma[c] * bn_running_rstd(running, s, c) * dy[e];
    }
}
EMU_REGISTER(bn_bwd_eval)

// bn_bwd_eval_params: dgamma = sum dy (x - mean) r, dbeta = sum dy (running stats).
// Threads: one block per channel. dgamma, dbeta [C] overwritten; dy, x [N, C, HW];
// running [2C].
extern "C" __global__ void __launch_bounds__(256)
    bn_bwd_eval_params(float* __restrict__ dgamma, float* __restrict__ dbeta,
                       const float* __restrict__ dy, const float* __restrict__ x,
                       const float* __restrict__ running, NormShape s) {
    __shared__ float scratch[32];
    const unsigned int c = blockIdx.x;
    const unsigned long long terms = (unsigned long long)s.n * s.hw;
    const float mean = running[c], r = bn_running_rstd(running, s, c);
    float sg = 0.0f, sb = 0.0f;
    for (unsigned long long t = threadIdx.x; t < terms; t += blockDim.x) {
        const unsigned long long k = bn_index(s, c, t);
        const float d = dy[k];
        sg += d * ((x[k] - mean) * r);
        sb += d;
    }
    sg = block_sum(sg, scratch);
    sb = block_sum(sb, scratch);
    if (threadIdx.x == 0) {
        dgamma[c] = sg;
        dbeta[c] = sb;
    }
}
EMU_REGISTER(bn_bwd_eval_params)

// bn_eval_jvp: ydot = gamma r xdot + t_gamma (x - mean) r + t_beta (running stats).
// Threads: 1-D grid-stride. ydot [N, C, HW] overwritten; x, xdot [N, C, HW];
// running [2C]; gamma, t_gamma, t_beta [C].
extern "C" __global__ void bn_eval_jvp(float* __restrict__ ydot, const float* __restrict__ x,
                                       const float* __restrict__ xdot,
                                       const float* __restrict__ running,
                                       const float* __restrict__ gamma,
                                       const float* __restrict__ t_gamma,
                                       const float* __restrict__ t_beta, NormShape s) {
    const unsigned long long total = (unsigned long long)s.n * s.c * s.hw;
    for (unsigned long long e = global_tid(); e < total; e += grid_threads()) {
        const unsigned int c = bn_channel(s, e);
        const float r = bn_running_rstd(running, s, c);
        const float xh = (x[e] - running[c]) * r;
        ydot[e] = gamma[c] * r * xdot[e] + t_gamma[c] * xh + t_beta[c];
    }
}
EMU_REGISTER(bn_eval_jvp)

// bn_eval_dual_bwd: dxdot = gamma r dydot, dx = gamma r dy + t_gamma r dydot.
// Threads: 1-D grid-stride. dx, dxdot [N, C, HW] overwritten; dy, dydot [N, C, HW];
// running [2C]; gamma, t_gamma [C].
extern "C" __global__ void bn_eval_dual_bwd(float* __restrict__ dx, float* __restrict__ dxdot,
                                            const float* __restrict__ dy,
                                            const float* __restrict__ dydot,
                                            const float* __restrict__ running,
                                            const float* __restrict__ gamma,
                                            const float* __restrict__ t_gamma, NormShape s) {
    const unsigned long long total = (unsigned long long)s.n * s.c * s.hw;
    for (unsigned long long e = global_tid(); e < total; e += grid_threads()) {
        const unsigned int c = bn_channel(s, e);
        const float r = bn_running_rstd(running, s, c);
        const float gr = gamma[c] * r, dd = dydot[e];
        dxdot[e] = gr * dd;
        dx[e] = gr * dy[e] + t_gamma[c] * r * dd;
    }
}
EMU_REGISTER(bn_eval_dual_bwd)
