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

// ---- BF16 and the matrix units (nvcuda::wmma) -------------------------------------
// The subset the *_tf32 / *_bf16 kernels use (kernels/igemm_mma.cuh), with the
// device's rounding done on the host:
//   __nv_bfloat16, __float2bfloat16_rn (round to nearest even), __bfloat162float;
//   wmma::__float_to_tf32 (cvt.rna.tf32.f32: nearest, ties away from zero);
//   fragment<matrix_a | matrix_b | accumulator, 16, 16, K, T, layout> for
//   (K, T) = (8, precision::tf32) and (16, __nv_bfloat16); fill_fragment,
//   load_matrix_sync, mma_sync, store_matrix_sync.
// Fragments: every lane holds the whole tile (num_elements = rows * cols, not the
// per-lane count of the device), so element-wise loops over x[] stay correct.
// Checks the device makes undefined: a load/store pointer not 32-byte aligned or an
// ldm that is not a multiple of 16 bytes traps. mma_sync: d = a * b + c with each
// product exact (TF32 operands: the low 13 mantissa bits are ignored, as on the
// device, so an operand the kernel forgot to round shows) and the sum over k in
// ascending order in FP32. Each lane computes and stores only the accumulator
// elements e with e % 32 == lane: a lane that reads what store_matrix_sync wrote for
// other lanes before a __syncwarp() reads stale memory (NaN in fresh shared memory).
struct __nv_bfloat16 { unsigned short bits; };
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{(unsigned short)((u >> 16) | 0x40u)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return __nv_bfloat16{(unsigned short)(u >> 16)};
}
inline float __bfloat162float(__nv_bfloat16 h) { return __uint_as_float((unsigned)h.bits << 16); }

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};
}
inline float __float_to_tf32(float f) {
    const unsigned u = __float_as_uint(f);
    if ((u & 0x7f800000u) == 0x7f800000u) return f;
    return __uint_as_float((u + 0x1000u) & ~0x1fffu);
}

namespace detail {
// Value an operand of type T contributes to a product.
inline float operand(float v, precision::tf32) { return __uint_as_float(__float_as_uint(v) & ~0x1fffu); }
inline float operand(float v, __nv_bfloat16) { return v; }  // loaded from bf16: exact
inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class Use, int M, int N, int K> struct dims;
template <int M, int N, int K> struct dims<matrix_a, M, N, K> { enum { rows = M, cols = K }; };
template <int M, int N, int K> struct dims<matrix_b, M, N, K> { enum { rows = K, cols = N }; };
template <int M, int N, int K> struct dims<accumulator, M, N, K> { enum { rows = M, cols = N }; };
inline void check_ptr(const void* p, unsigned ldm, unsigned elem_bytes, const char* what) {
    if ((reinterpret_cast<unsigned long long>(p) & 31ull) != 0ull)
        ::emu::trap(what);
    if ((ldm * elem_bytes) % 16u != 0u) ::emu::trap(what);
}
}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
    static_assert(M == 16 && N == 16 && (K == 8 || K == 16), "wmma shape outside the emulated subset");
    enum { rows = detail::dims<Use, M, N, K>::rows, cols = detail::dims<Use, M, N, K>::cols };
    enum { num_elements = rows * cols };
    typedef T type_tag;
    typedef Layout layout;
    float x[num_elements];  // row-major (r, c) at r * cols + c
};

template <class Use, int M, int N, int K, class T, class L>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, float v) {
    for (int i = 0; i < f.num_elements; ++i) f.x[i] = v;
}

// Operand load (matrix_a / matrix_b): row_major reads (r, c) at p[r * ldm + c],
// col_major at p[r + c * ldm]. TF32 fragments load from float, BF16 from bf16.
template <class Use, int M, int N, int K, class T, class L, class E>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const E* p, unsigned ldm) {
    static_assert(!std::is_same<Use, accumulator>::value, "accumulator loads need a layout_t");
    static_assert(std::is_same<L, row_major>::value || std::is_same<L, col_major>::value,
                  "operand fragment without a layout");
    static_assert(std::is_same<E, float>::value == std::is_same<T, precision::tf32>::value,
                  "operand pointer type does not match the fragment's precision");
    detail::check_ptr(p, ldm, sizeof(E), "wmma::load_matrix_sync: misaligned pointer or ldm");
    const bool rm = std::is_same<L, row_major>::value;
    for (int r = 0; r < f.rows; ++r)
        for (int c = 0; c < f.cols; ++c)
            f.x[r * f.cols + c] = detail::to_float(rm ? p[(long)r * ldm + c] : p[r + (long)c * ldm]);
}

template <int M, int N, int K, class T>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm,
                              layout_t layout) {
    detail::check_ptr(p, ldm, sizeof(float), "wmma::store_matrix_sync: misaligned pointer or ldm");
    const int lane = (int)(::emu::lin_ & 31u);
    for (int e = lane; e < f.num_elements; e += 32) {
        const int r = e / f.cols, c = e % f.cols;
        p[layout == mem_row_major ? (long)r * ldm + c : r + (long)c * ldm] = f.x[e];
    }
}

template <int M, int N, int K, class T, class LA, class LB, class TC>
inline void mma_sync(fragment<accumulator, M, N, K, TC>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
                     const fragment<matrix_b, M, N, K, T, LB>& b,
                     const fragment<accumulator, M, N, K, TC>& c) {
    const int lane = (int)(::emu::lin_ & 31u);
    for (int e = lane; e < M * N; e += 32) {
        const int r = e / N, col = e % N;
        float acc = c.x[e];
        for (int k = 0; k < K; ++k)
            acc = std::fma(detail::operand(a.x[r * K + k], T{}), detail::operand(b.x[k * N + col], T{}), acc);
        d.x[e] = acc;
    }
}
}  // namespace wmma
}  // namespace nvcuda
