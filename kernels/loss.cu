// Softmax cross-entropy family, first and second order, over logits [N, K]. Contract:
// src/backend/mod.rs (ce_fwd_bwd, ce_dual); CPU twin: src/backend/cpu/loss.rs; maths:
// docs/derivations/loss.md. One warp per sample (launch::CE_WARPS warps per block);
// each kernel writes small per-sample results that the host downloads and sums in
// f64 in sample order (deterministic; no atomics).
#include "common.cuh"

// Row maximum and the index of its FIRST occurrence over a warp: lanes scan their
// strided elements ascending (strict >), then a butterfly keeps the larger value and,
// on ties, the smaller index. Every lane gets the result.
__device__ __forceinline__ void ce_row_max(const float* row, unsigned int k, unsigned int lane,
                                           float* mx, unsigned int* arg) {
    float best = 0.0f;  // replaced by the first element (bi is the sentinel)
    unsigned int bi = 0xffffffffu;
    for (unsigned int j = lane; j < k; j += 32u) {
        if (row[j] > best || bi == 0xffffffffu) {
            best = row[j];
            bi = j;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, best, o);
        const unsigned int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi != 0xffffffffu && (bi == 0xffffffffu || ov > best || (ov == best && oi < bi))) {
            best = ov;
            bi = oi;
        }
    }
    *mx = best;
    *arg = bi;
}

// Sum of exp(row - mx) over a warp (every lane gets it).
__device__ __forceinline__ float ce_row_z(const float* row, unsigned int k, unsigned int lane,
                                          float mx) {
    float z = 0.0f;
    for (unsigned int j = lane; j < k; j += 32u) z += expf(row[j] - mx);
    return warp_sum(z);
}

// ce_fwd_bwd: p = softmax(l_n), dlogits = (p - onehot(label_n))/N;
// per_sample[n] = logsumexp(l_n) - l_n[label_n], per_sample[N + n] = 1 if the first
// arg-max of l_n is the label, else 0; a label >= K is never dereferenced: it is
// flagged with per_sample[N + n] = -1 (the host reports it).
// Threads: one warp per sample n = blockIdx.x * (blockDim.x/32) + warp; lanes stride
// over the K classes. dlogits [N, K] overwritten; per_sample [2N] overwritten;
// logits [N, K]; labels [N].
extern "C" __global__ void __launch_bounds__(256)
    ce_fwd_bwd(float* __restrict__ dlogits, float* __restrict__ per_sample,
               const float* __restrict__ logits, const unsigned int* __restrict__ labels,
               LinearShape s) {
    const unsigned int lane = threadIdx.x & 31u;
    const unsigned int n = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (n >= s.n) return;  // whole warps only
    const float* row = logits + (unsigned long long)n * s.k;
    float* drow = dlogits + (unsigned long long)n * s.k;
    const unsigned int label = labels[n];
    float mx;
    unsigned int arg;
    ce_row_max(row, s.k, lane, &mx, &arg);
    const float z = ce_row_z(row, s.k, lane, mx);
    const float inv_z = 1.0f / z, inv_n = 1.0f / (float)s.n;
    for (unsigned int j = lane; j < s.k; j += 32u) {
        const float p = expf(row[j] - mx) * inv_z;
        drow[j] = (p - (j == label ? 1.0f : 0.0f)) * inv_n;
    }
    if (lane == 0) {
        const bool ok = label < s.k;
        per_sample[n] = ok ? (mx + logf(z)) - row[label] : 0.0f;
        per_sample[s.n + n] = ok ? (arg == label ? 1.0f : 0.0f) : -1.0f;
    }
}
EMU_REGISTER(ce_fwd_bwd)

// ce_dual: with p = softmax(l_n) and pl = <p, ldot_n>:
// dldot = (p - onehot)/N, dlogits = p (ldot_n - pl)/N, per_sample[n] = pl - ldot_n[label_n]
// (the host returns h = mean over n); per_sample[N + n] = -1 flags a label >= K, else 0.
// Threads: one warp per sample, lanes over K. dlogits, dldot [N, K] overwritten;
// per_sample [2N] overwritten; logits, ldot [N, K]; labels [N].
extern "C" __global__ void __launch_bounds__(256)
    ce_dual(float* __restrict__ dlogits, float* __restrict__ dldot,
            float* __restrict__ per_sample, const float* __restrict__ logits,
            const float* __restrict__ ldot, const unsigned int* __restrict__ labels,
            LinearShape s) {
    const unsigned int lane = threadIdx.x & 31u;
    const unsigned int n = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (n >= s.n) return;  // whole warps only
    const unsigned long long off = (unsigned long long)n * s.k;
    const float* row = logits + off;
    const float* lrow = ldot + off;
    const unsigned int label = labels[n];
    float mx;
    unsigned int arg;
    ce_row_max(row, s.k, lane, &mx, &arg);
    const float inv_z = 1.0f / ce_row_z(row, s.k, lane, mx), inv_n = 1.0f / (float)s.n;
    float pl = 0.0f;
    for (unsigned int j = lane; j < s.k; j += 32u) pl += expf(row[j] - mx) * inv_z * lrow[j];
    pl = warp_sum(pl);
    for (unsigned int j = lane; j < s.k; j += 32u) {
        const float p = expf(row[j] - mx) * inv_z;
        dldot[off + j] = (p - (j == label ? 1.0f : 0.0f)) * inv_n;
        dlogits[off + j] = p * (lrow[j] - pl) * inv_n;
    }
    if (lane == 0) {
        const bool ok = label < s.k;
        per_sample[n] = ok ? pl - lrow[label] : 0.0f;
        per_sample[s.n + n] = ok ? 0.0f : -1.0f;
    }
}
EMU_REGISTER(ce_dual)
