// Activation family: relu, sigmoid, leaky relu (slope 0.01), swish; first and second
// order. Contract: src/backend/mod.rs (act_fwd, act_bwd, act_dual_bwd); CPU twin:
// src/backend/cpu/act.rs; derivation: docs/derivations.md "activations".
#include "activation.cuh"

// act_fwd: y = f(x). Threads: 1-D grid-stride. y [n] overwritten; x [n].
extern "C" __global__ void act_fwd(float* __restrict__ y, const float* __restrict__ x,
                                   unsigned int n, unsigned int act) {
    const unsigned long long stride = grid_threads();
    for (unsigned long long i = global_tid(); i < n; i += stride) y[i] = act_f(x[i], act);
}
EMU_REGISTER(act_fwd)

// act_bwd: dx = f'(x) dy (also the tangent ydot = f'(x) xdot). Threads: 1-D
// grid-stride. dx [n] overwritten; dy [n]; x [n].
extern "C" __global__ void act_bwd(float* __restrict__ dx, const float* __restrict__ dy,
                                   const float* __restrict__ x, unsigned int n, unsigned int act) {
    const unsigned long long stride = grid_threads();
    for (unsigned long long i = global_tid(); i < n; i += stride) dx[i] = act_d1(x[i], act) * dy[i];
}
EMU_REGISTER(act_bwd)

// act_dual_bwd: dxdot = f'(x) dydot; dx = f'(x) dy + f''(x) xdot dydot.
// Threads: 1-D grid-stride. dx, dxdot [n] overwritten; dy, dydot, x, xdot [n].
extern "C" __global__ void act_dual_bwd(float* __restrict__ dx, float* __restrict__ dxdot,
                                        const float* __restrict__ dy, const float* __restrict__ dydot,
                                        const float* __restrict__ x, const float* __restrict__ xdot,
                                        unsigned int n, unsigned int act) {
    const unsigned long long stride = grid_threads();
    for (unsigned long long i = global_tid(); i < n; i += stride) {
        const float xi = x[i], d1 = act_d1(xi, act), g = dydot[i];
        dxdot[i] = d1 * g;
        dx[i] = d1 * dy[i] + act_d2(xi, act) * xdot[i] * g;
    }
}
EMU_REGISTER(act_dual_bwd)
