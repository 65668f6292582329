// SGD family (PyTorch convention). Contract: src/backend/mod.rs (sgd_step, SgdParams);
// CPU twin: src/backend/cpu/sgd.rs.
#include "common.cuh"

// sgd_step: d = g + wd*p; with momentum: m = momentum*m + d, p -= lr*m;
// without (momentum == 0): p -= lr*d and m is left untouched.
// Threads: 1-D grid-stride. p [n] updated in place; m [n] updated in place (momentum
// only); g [n].
extern "C" __global__ void sgd_step(float* __restrict__ p, float* __restrict__ m,
                                    const float* __restrict__ g, unsigned int n, SgdParams hp) {
    const unsigned long long stride = grid_threads();
    for (unsigned long long i = global_tid(); i < n; i += stride) {
        const float pi = p[i];
        const float d = g[i] + hp.weight_decay * pi;
        if (hp.momentum != 0.0f) {
            const float v = hp.momentum * m[i] + d;
            m[i] = v;
            p[i] = pi - hp.lr * v;
        } else {
            p[i] = pi - hp.lr * d;
        }
    }
}
EMU_REGISTER(sgd_step)
