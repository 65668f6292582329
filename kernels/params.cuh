// Launch-parameter structs, mirrored field for field from src/backend/shapes.rs.
// Passed BY VALUE to kernels. Size/offset equality is checked by the Rust test
// `backend::gpu::params_layout` (src/backend/gpu/mod.rs): change both sides together.
#pragma once

// src/backend/shapes.rs: Seg
struct Seg {
    unsigned int off;  // first element
    unsigned int len;  // number of elements
};

// ConvShape: x [N, C, H, W], w [O, C, KH, KW], y [N, O, OH, OW].
struct ConvShape {
    unsigned int n, c, h, w, o, kh, kw, stride, pad, oh, ow;
};

// LinearShape: x [N, F], w [K, F], y [N, K].
struct LinearShape {
    unsigned int n, f, k;
};

// NormShape: x [N, C, HW], groups G, affine 0 = per channel, 1 = per element.
struct NormShape {
    unsigned int n, c, hw, groups, affine;
    float eps;
};

// PoolShape: planes = N*C, k x k windows, stride `stride`, no padding, floor:
// x [planes, H, W], y [planes, OH, OW], OH = (H - k)/stride + 1 (pool_out), likewise OW.
// The host guarantees k >= 1, stride >= 1, H >= k, W >= k.
struct PoolShape {
    unsigned int planes, h, w, k, stride;
};

// ImgShape: [N, C, H, W].
struct ImgShape {
    unsigned int n, c, h, w;
};

// AffineParam: bilinear resampling coefficients of one image.
struct AffineParam {
    float a00, a01, a10, a11;
};

// IntParam: flip / crop / cutout integers of one image.
struct IntParam {
    int a, b;
};

// MatchTensor: one parameter tensor for the matching distance.
struct MatchTensor {
    Seg seg;
    unsigned int rows, cols, is_vector;
};

// SgdParams: d = g + wd*p; v = momentum*v + d; p -= lr*v.
struct SgdParams {
    float lr, momentum, weight_decay;
};

// Enum values (repr(u32) in shapes.rs).
#define ACT_RELU 0u
#define ACT_SIGMOID 1u
#define ACT_LEAKY_RELU 2u
#define ACT_SWISH 3u
#define POOL_AVG 0u
#define POOL_MAX 1u
#define POOL_NONE 2u  // norm_act_pool_fwd only: no pooling stage
