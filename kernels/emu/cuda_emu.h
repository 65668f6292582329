// cuda_emu.h: a CUDA execution-model emulator for the host C++ compiler.
//
// Force-included (by build.rs) before every kernels/*.cu when the kernels are
// compiled for the `emu` backend. It provides the CUDA subset documented in
// kernels/README.md: built-in indices, static and dynamic __shared__ memory,
// __syncthreads, warp shuffles and votes, atomics, qualifiers and math functions.
//
// Execution model (runtime in cuda_emu.cpp): a launch runs its blocks one after
// another on the calling OS thread; the threads of a block run as cooperative fibers
// (own stack each). __syncthreads() is a block barrier; warp operations are warp
// barriers (all live lanes of the warp exchange values). Concurrent launches from
// different OS threads are independent (all emulator state is thread_local, and so
// is __shared__ memory).
#pragma once
#define __CUDA_EMU__ 1

#include <math.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

struct uint3 { unsigned int x, y, z; };
struct dim3 { unsigned int x, y, z; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(8))) int2 { int x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline float2 make_float2(float x, float y) { return float2{x, y}; }

#define __global__
#define __device__
#define __host__
#define __constant__ static
#define __shared__ static thread_local
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __grid_constant__

namespace emu {
extern thread_local uint3 tid_, bid_, bdim_, gdim_;
// Current thread's linear index in its block, lane and warp.
extern thread_local unsigned int lin_;
void syncthreads();
void syncwarp();
// Warp exchange: every live lane of the warp publishes `v` and receives lane
// `src`'s value (src outside the warp: own value).
unsigned long long exchange(unsigned long long v, int src);
void* dyn_smem();
[[noreturn]] void trap(const char* what);

template <class T>
T shfl(T v, int src) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    unsigned long long bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    bits = exchange(bits, src);
    T r;
    std::memcpy(&r, &bits, sizeof(T));
    return r;
}

// Unpacks a cuLaunchKernel argument array (args[i] points at the i-th argument's
// value) according to the kernel's C++ signature and calls it.
template <class... A, std::size_t... I>
void invoke_impl(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}
template <class... A>
void invoke(void (*f)(A...), void** args) {
    invoke_impl(f, args, std::index_sequence_for<A...>{});
}
}  // namespace emu

#define threadIdx (::emu::tid_)
#define blockIdx (::emu::bid_)
#define blockDim (::emu::bdim_)
#define gridDim (::emu::gdim_)
#define warpSize 32

inline void __syncthreads() { ::emu::syncthreads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::emu::syncwarp(); }
inline void __trap() { ::emu::trap("__trap()"); }

template <class T>
inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
    int lane = (int)(::emu::lin_ & 31u);
    int base = lane & ~(width - 1);
    return ::emu::shfl(v, base + (src & (width - 1)));
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
    int lane = (int)(::emu::lin_ & 31u);
    int base = lane & ~(width - 1);
    int src = lane + (int)delta;
    return ::emu::shfl(v, src < base + width ? src : lane);
}
template <class T>
inline T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
    int lane = (int)(::emu::lin_ & 31u);
    int base = lane & ~(width - 1);
    int src = lane - (int)delta;
    return ::emu::shfl(v, src >= base ? src : lane);
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
    int lane = (int)(::emu::lin_ & 31u);
    int base = lane & ~(width - 1);
    int src = lane ^ mask;
    return ::emu::shfl(v, (src >= base && src < base + width) ? src : lane);
}
// Votes: the predicate of every live lane (via the same exchange).
inline unsigned __ballot_sync(unsigned, int pred) {
    unsigned r = 0;
    // one exchange per lane keeps the implementation tiny; tests only
    for (int l = 0; l < 32; ++l) r |= (::emu::shfl<int>(pred ? 1 : 0, l) ? 1u : 0u) << l;
    return r;
}
inline int __any_sync(unsigned m, int pred) { return __ballot_sync(m, pred) != 0; }
inline int __all_sync(unsigned m, int pred) {
    return ::emu::shfl<int>(pred ? 1 : 0, 0) && __ballot_sync(m, !pred) == 0;
}

// Atomics: one block runs at a time per launch, so plain read-modify-write is atomic.
template <class T>
inline T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }
template <class T>
inline T atomicMax(T* p, T v) { T old = *p; if (v > old) *p = v; return old; }
template <class T>
inline T atomicExch(T* p, T v) { T old = *p; *p = v; return old; }
inline unsigned atomicInc(unsigned* p, unsigned lim) {
    unsigned old = *p; *p = old >= lim ? 0u : old + 1u; return old;
}
inline void __threadfence() {}
inline void __threadfence_block() {}

// Loads through the read-only cache.
template <class T>
inline T __ldg(const T* p) { return *p; }

// Math: the CUDA single-precision functions map to the C library's; CUDA's
// overloaded min/max for the integer and float types the kernels use.
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; std::memcpy(&i, &f, 4); return i; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __float2int_rd(float x) { return (int)std::floor(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
