//! Launch-parameter structs shared by every backend.
//!
//! Each struct is `#[repr(C)]` and mirrored field for field in
//! `kernels/params.cuh`, so the CUDA and emulator backends pass it by value to a
//! kernel. Shape letters (crate legend): N batch, C input channels, H/W input
//! height/width, O output channels, KH/KW kernel size, OH/OW output size,
//! G norm groups, K classes, F features.

use crate::error::{Error, Result};
use bytemuck::{Pod, Zeroable};

/// A slice of a flat parameter (or gradient / tangent / momentum) buffer: one
/// parameter tensor. `off` and `len` are in elements.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct Seg {
    /// First element.
    pub off: u32,
    /// Number of elements.
    pub len: u32,
}

impl Seg {
    /// The element range of this segment.
    pub fn range(self) -> std::ops::Range<usize> {
        self.off as usize..(self.off + self.len) as usize
    }

    /// Two adjacent segments from element `off`: `first_len` elements, then
    /// `second_len` (a layer's weight and its bias, `[W | b]`).
    pub fn adjacent(off: usize, first_len: usize, second_len: usize) -> (Seg, Seg) {
        let first = Seg {
            off: off as u32,
            len: first_len as u32,
        };
        let second = Seg {
            off: (off + first_len) as u32,
            len: second_len as u32,
        };
        (first, second)
    }
}

/// 2-D convolution (cross-correlation, as PyTorch), NCHW input `[N, C, H, W]`,
/// weight `[O, C, KH, KW]`, bias `[O]`, output `[N, O, OH, OW]` with
/// `OH = (H + 2*pad - KH)/stride + 1` (floor), likewise OW.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct ConvShape {
    /// Batch N.
    pub n: u32,
    /// Input channels C.
    pub c: u32,
    /// Input height H.
    pub h: u32,
    /// Input width W.
    pub w: u32,
    /// Output channels O.
    pub o: u32,
    /// Kernel height KH.
    pub kh: u32,
    /// Kernel width KW.
    pub kw: u32,
    /// Stride (both axes).
    pub stride: u32,
    /// Zero padding (both axes, both sides).
    pub pad: u32,
    /// Output height OH.
    pub oh: u32,
    /// Output width OW.
    pub ow: u32,
}

impl ConvShape {
    /// Validated convolution shape; errors when the kernel does not fit.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        o: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        if n == 0 || c == 0 || h == 0 || w == 0 || o == 0 || k == 0 || stride == 0 {
            return Err(Error::Shape(format!(
                "conv: zero dimension (n={n}, c={c}, h={h}, w={w}, o={o}, k={k}, stride={stride})"
            )));
        }
        if h + 2 * pad < k || w + 2 * pad < k {
            return Err(Error::Shape(format!(
                "conv: kernel {k} larger than padded input {}x{}",
                h + 2 * pad,
                w + 2 * pad
            )));
        }
        let oh = (h + 2 * pad - k) / stride + 1;
        let ow = (w + 2 * pad - k) / stride + 1;
        let u = |v: usize| v as u32;
        Ok(Self {
            n: u(n),
            c: u(c),
            h: u(h),
            w: u(w),
            o: u(o),
            kh: u(k),
            kw: u(k),
            stride: u(stride),
            pad: u(pad),
            oh: u(oh),
            ow: u(ow),
        })
    }
    /// Elements of the input `[N, C, H, W]`.
    pub fn x_len(&self) -> usize {
        (self.n * self.c * self.h * self.w) as usize
    }
    /// Elements of the output `[N, O, OH, OW]`.
    pub fn y_len(&self) -> usize {
        (self.n * self.o * self.oh * self.ow) as usize
    }
    /// Elements of the weight `[O, C, KH, KW]`.
    pub fn w_len(&self) -> usize {
        (self.o * self.c * self.kh * self.kw) as usize
    }
    /// Multiply-adds of one forward pass, times two (FLOP).
    pub fn flops(&self) -> f64 {
        2.0 * (self.n * self.o * self.oh * self.ow) as f64 * (self.c * self.kh * self.kw) as f64
    }
}

/// Fully connected layer: x `[N, F]`, weight `[K, F]` (PyTorch layout), bias `[K]`,
/// y `[N, K]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct LinearShape {
    /// Batch N.
    pub n: u32,
    /// Input features F.
    pub f: u32,
    /// Outputs K.
    pub k: u32,
}

/// How the affine parameters of a group norm are laid out.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affine {
    /// gamma, beta of shape `[C]` (GroupNorm, instance norm).
    PerChannel = 0,
    /// gamma, beta of shape `[C, H, W]` (LayerNorm over `[C, H, W]`).
    PerElement = 1,
}

/// Group normalisation over `[N, C, H, W]`: statistics per (sample, group) over
/// `(C/G)*H*W` elements, biased variance, eps. Instance norm is `G = C`,
/// LayerNorm over `[C,H,W]` is `G = 1` with [`Affine::PerElement`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct NormShape {
    /// Batch N.
    pub n: u32,
    /// Channels C.
    pub c: u32,
    /// Spatial size H*W.
    pub hw: u32,
    /// Groups G (divides C).
    pub groups: u32,
    /// 0 = per-channel affine, 1 = per-element affine (see [`Affine`]).
    pub affine: u32,
    /// Variance epsilon (1e-5).
    pub eps: f32,
}

impl NormShape {
    /// Elements of the activation `[N, C, H, W]`.
    pub fn len(&self) -> usize {
        (self.n * self.c * self.hw) as usize
    }
    /// Always false for a valid shape.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of (sample, group) statistics.
    pub fn stats_len(&self) -> usize {
        (self.n * self.groups) as usize
    }
}

/// Square-window pooling, no padding, floor (PyTorch `MaxPool2d` / `AvgPool2d` with
/// `padding = 0`, `ceil_mode = False`): window `k x k`, stride `stride` on both axes,
/// x `[N, C, H, W]` -> y `[N, C, OH, OW]` with `OH = (H - k)/stride + 1` (floor),
/// likewise OW. Output `(i, j)` reads rows `i*stride .. i*stride + k` and columns
/// `j*stride .. j*stride + k`; windows overlap when `stride < k`, and input rows /
/// columns past the last window are covered by none. Build it with [`PoolShape::new`]
/// (every backend op rejects a shape that constructor would reject).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct PoolShape {
    /// N*C planes.
    pub planes: u32,
    /// Input height H.
    pub h: u32,
    /// Input width W.
    pub w: u32,
    /// Window size k (k x k).
    pub k: u32,
    /// Stride (both axes).
    pub stride: u32,
}

impl PoolShape {
    /// Validated pooling shape: errors ([`Error::Shape`]) when `k` or `stride` is 0,
    /// the window exceeds the input (`H < k` or `W < k`), or a size overflows `u32`.
    pub fn new(planes: usize, h: usize, w: usize, k: usize, stride: usize) -> Result<Self> {
        let u = |v: usize| {
            u32::try_from(v).map_err(|_| {
                Error::Shape(format!(
                    "pool: size {v} too large (planes={planes}, h={h}, w={w}, k={k}, stride={stride})"
                ))
            })
        };
        let s = Self {
            planes: u(planes)?,
            h: u(h)?,
            w: u(w)?,
            k: u(k)?,
            stride: u(stride)?,
        };
        s.validate("pool")?;
        Ok(s)
    }
    /// `Err(Error::Shape)` naming `op` when `k` or `stride` is 0 or the window
    /// exceeds the input (the checks of [`PoolShape::new`], for shapes built as
    /// struct literals).
    pub(crate) fn validate(&self, op: &str) -> Result<()> {
        if self.k == 0 || self.stride == 0 {
            return Err(Error::Shape(format!(
                "{op}: pooling window {}x{} with stride {} (both must be >= 1)",
                self.k, self.k, self.stride
            )));
        }
        if self.h < self.k || self.w < self.k {
            return Err(Error::Shape(format!(
                "{op}: pooling window {}x{} larger than the {}x{} input",
                self.k, self.k, self.h, self.w
            )));
        }
        Ok(())
    }
    /// Output height `(H - k)/stride + 1` (floor; 0 for an invalid shape).
    pub fn oh(&self) -> u32 {
        out_size(self.h, self.k, self.stride)
    }
    /// Output width `(W - k)/stride + 1` (floor; 0 for an invalid shape).
    pub fn ow(&self) -> u32 {
        out_size(self.w, self.k, self.stride)
    }
    /// Elements of the input `[planes, H, W]`.
    pub fn x_len(&self) -> usize {
        self.planes as usize * self.h as usize * self.w as usize
    }
    /// Elements of the output `[planes, OH, OW]`.
    pub fn y_len(&self) -> usize {
        self.planes as usize * self.oh() as usize * self.ow() as usize
    }
}

/// Windows of size `k` and stride `s` that fit in `n` (0 when none or invalid).
fn out_size(n: u32, k: u32, s: u32) -> u32 {
    if k == 0 || s == 0 || n < k {
        0
    } else {
        (n - k) / s + 1
    }
}

/// Pooling kind.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Window average (divides by k*k).
    Avg = 0,
    /// Window max (ties: the first in row-major order of the window).
    Max = 1,
}

/// Element-wise activation.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// max(x, 0); derivative 0 at x <= 0.
    Relu = 0,
    /// 1/(1+e^-x).
    Sigmoid = 1,
    /// x if x > 0 else 0.01 x.
    LeakyRelu = 2,
    /// x * sigmoid(x).
    Swish = 3,
}

/// An image batch `[N, C, S, S]` seen by an augmentation (square images).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct ImgShape {
    /// Images N.
    pub n: u32,
    /// Channels C.
    pub c: u32,
    /// Height.
    pub h: u32,
    /// Width.
    pub w: u32,
}

impl ImgShape {
    /// Elements of the batch.
    pub fn len(&self) -> usize {
        (self.n * self.c * self.h * self.w) as usize
    }
    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-image parameters of one affine resampling (scale or rotate, docs/method.md §2.5):
/// output pixel (i, j) samples the input at column `q = cx + a00*(j-cx) + a01*(i-cy)`
/// and row `r = cy + a10*(j-cx) + a11*(i-cy)`, bilinear with zero padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Default, Pod, Zeroable)]
pub struct AffineParam {
    /// Column coefficient on (j - c).
    pub a00: f32,
    /// Column coefficient on (i - c).
    pub a01: f32,
    /// Row coefficient on (j - c).
    pub a10: f32,
    /// Row coefficient on (i - c).
    pub a11: f32,
}

/// Per-image integer parameters: flip (`a != 0` mirrors the width axis), crop
/// (`a` = row shift tx, `b` = column shift ty) or cutout (`a` = centre row ox,
/// `b` = centre column oy, `half` = L/2 with L the square side).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct IntParam {
    /// First integer.
    pub a: i32,
    /// Second integer.
    pub b: i32,
}

/// One differentiable augmentation function with its per-image parameters
/// (length N of the batch it is applied to). For fixed parameters every one is an
/// affine map of the pixels (docs/method.md §2.6).
#[derive(Clone, Debug, PartialEq)]
pub enum AugOp {
    /// Bilinear resampling (scale, rotate).
    Affine(Vec<AffineParam>),
    /// Horizontal flip where `a != 0`.
    Flip(Vec<IntParam>),
    /// x + shift (shift = b - 0.5).
    Brightness(Vec<f32>),
    /// (x - channel mean) * factor + channel mean, per pixel (factor = 2s).
    Saturation(Vec<f32>),
    /// (x - image mean) * factor + image mean (factor = t + 0.5).
    Contrast(Vec<f32>),
    /// out(i, j) = x(i + a, j + b) inside the image, else 0.
    Crop(Vec<IntParam>),
    /// Zero rows `[a - half, a + half - 1]` x columns `[b - half, b + half - 1]`.
    Cutout {
        /// Centres.
        centres: Vec<IntParam>,
        /// Half the square side (L/2).
        half: i32,
    },
}

impl AugOp {
    /// Number of images the parameters are for.
    pub fn batch(&self) -> usize {
        match self {
            AugOp::Affine(p) => p.len(),
            AugOp::Flip(p) | AugOp::Crop(p) => p.len(),
            AugOp::Brightness(p) | AugOp::Saturation(p) | AugOp::Contrast(p) => p.len(),
            AugOp::Cutout { centres, .. } => centres.len(),
        }
    }
}

/// Gradient-matching distance (docs/method.md §3.2-3.3).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Sum over multi-dimensional tensors of row-wise (1 - cosine); 1-D tensors ignored.
    Ours = 0,
    /// Sum of squared differences over all parameters.
    Mse = 1,
    /// 1 - global cosine over all parameters.
    Cos = 2,
}

/// One parameter tensor as the matching distance sees it: `rows x cols` at `seg`
/// (cols = product of the trailing dimensions). 1-D tensors have `rows = 1` and
/// `is_vector = 1`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct MatchTensor {
    /// Where the tensor lives in the flat buffer.
    pub seg: Seg,
    /// Rows (first dimension).
    pub rows: u32,
    /// Elements per row.
    pub cols: u32,
    /// 1 for a 1-D tensor (ignored by `ours`).
    pub is_vector: u32,
}

/// SGD hyper-parameters in PyTorch's convention: `d = g + wd*p; v = momentum*v + d;
/// p -= lr*v` (with momentum 0: `p -= lr*d`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct SgdParams {
    /// Learning rate.
    pub lr: f32,
    /// Momentum (0 = none).
    pub momentum: f32,
    /// Weight decay.
    pub weight_decay: f32,
}
