//! The kernel table and one typed launch wrapper per kernel. All `unsafe` of the
//! device backends is here: each wrapper packs its arguments exactly as the `.cu`
//! signature it names (device pointers as `u64`, shape structs by value) and says
//! why the launch is sound. Callers ([`super::Gpu`]) have validated the lengths.

use super::{Arg, Launcher};
use crate::backend::launch::{self, Geometry};
use crate::backend::*;
use crate::error::Result;
use std::ffi::c_void;

/// One kernel: its name in the CUDA module and its emulator entry point.
pub struct Kernel {
    /// `extern "C"` name in `kernels/*.cu`.
    pub name: &'static str,
    /// `emu_invoke_<name>` of the emulator library (see `EMU_REGISTER`).
    pub emu: unsafe extern "C" fn(*mut *mut c_void),
}

macro_rules! kernel_table {
    ($($name:ident),* $(,)?) => {
        mod emu_sym {
            extern "C" {
                $(
                    #[link_name = concat!("emu_invoke_", stringify!($name))]
                    pub fn $name(args: *mut *mut std::ffi::c_void);
                )*
            }
        }
        /// Every kernel, by name.
        #[allow(non_upper_case_globals)]
        pub(crate) mod k {
            $(
                pub const $name: super::Kernel =
                    super::Kernel { name: stringify!($name), emu: super::emu_sym::$name };
            )*
        }
        /// Names of every kernel the backends launch (for `info` and load checks).
        pub const KERNEL_NAMES: &[&str] = &[$(stringify!($name)),*];
    };
}

kernel_table! {
    // kernels/memory.cu
    copy_range, fill, axpy, add, gather_rows,
    // kernels/activation.cu
    act_fwd, act_bwd, act_dual_bwd,
    // kernels/pool.cu
    pool_fwd, pool_bwd, pool_jvp,
    // kernels/sgd.cu
    sgd_step,
    // kernels/reduce.cu
    splitk_reduce, bias_bwd,
    // kernels/conv.cu (IGEMM_KERNELS: FP32 units, then the matrix units in TF32, BF16)
    conv2d_fwd, conv2d_bwd_input, conv2d_bwd_weight,
    conv2d_fwd_tf32, conv2d_bwd_input_tf32, conv2d_bwd_weight_tf32,
    conv2d_fwd_bf16, conv2d_bwd_input_bf16, conv2d_bwd_weight_bf16,
    // kernels/linear.cu (likewise)
    linear_fwd, linear_bwd_input, linear_bwd_weight,
    linear_fwd_tf32, linear_bwd_input_tf32, linear_bwd_weight_tf32,
    linear_fwd_bf16, linear_bwd_input_bf16, linear_bwd_weight_bf16,
    // kernels/norm.cu
    norm_fwd, norm_bwd, norm_bwd_params, norm_jvp, norm_dual_bwd,
    // kernels/fused.cu
    norm_act_pool_fwd,
    // kernels/batchnorm.cu
    bn_fwd_train, bn_bwd_train, bn_fwd_eval, bn_bwd_eval, bn_bwd_eval_params, bn_eval_jvp,
    bn_eval_dual_bwd,
    // kernels/loss.cu
    ce_fwd_bwd, ce_dual,
    // kernels/matching.cu
    match_sums, match_grad,
    // kernels/augment.cu
    aug_affine_fwd, aug_affine_bwd, aug_flip, aug_brightness_fwd, aug_saturation, aug_contrast,
    aug_crop, aug_cutout,
}

/// The kernel of a GEMM-shaped op in precision `p`, from its three instantiations
/// `[name, name_tf32, name_bf16]` (`IGEMM_KERNELS` in kernels/igemm_mma.cuh: the same
/// arguments and launch geometry).
fn in_precision(p: Precision, kernels: [&'static Kernel; 3]) -> &'static Kernel {
    match p {
        Precision::Fp32 => kernels[0],
        Precision::Tf32 => kernels[1],
        Precision::Bf16 => kernels[2],
    }
}

/// An argument value, as `cuLaunchKernel` wants it (pointer to the value; its size).
fn a<T>(v: &T) -> Arg {
    Arg::of(v)
}

/// Device address of element `off` of an f32 buffer.
fn at(base: u64, off: usize) -> u64 {
    base + 4 * off as u64
}

// ---- memory (kernels/memory.cu) -----------------------------------------------------

pub(crate) fn copy_range<L: Launcher>(
    l: &L,
    dst: &mut L::Buf,
    dst_off: usize,
    src: &L::Buf,
    src_off: usize,
    n: u32,
) -> Result<()> {
    let (d, s) = (at(l.ptr_mut(dst), dst_off), at(l.ptr(src), src_off));
    // SAFETY: copy_range(float* dst, const float* src, unsigned n); the caller checked
    // both ranges lie inside their buffers; dst and src are distinct buffers (&mut).
    unsafe {
        l.launch(
            &k::copy_range,
            launch::elementwise(n as u64),
            &mut [a(&d), a(&s), a(&n)],
        )
    }
}

pub(crate) fn fill<L: Launcher>(l: &L, y: &mut L::Buf, value: f32, n: u32) -> Result<()> {
    let y = l.ptr_mut(y);
    // SAFETY: fill(float* y, float value, unsigned n); y holds n floats.
    unsafe {
        l.launch(
            &k::fill,
            launch::elementwise(n as u64),
            &mut [a(&y), a(&value), a(&n)],
        )
    }
}

pub(crate) fn axpy<L: Launcher>(
    l: &L,
    y: &mut L::Buf,
    alpha: f32,
    x: &L::Buf,
    n: u32,
) -> Result<()> {
    let (y, x) = (l.ptr_mut(y), l.ptr(x));
    // SAFETY: axpy(float* y, const float* x, float a, unsigned n); both hold n floats.
    unsafe {
        l.launch(
            &k::axpy,
            launch::elementwise(n as u64),
            &mut [a(&y), a(&x), a(&alpha), a(&n)],
        )
    }
}

pub(crate) fn add<L: Launcher>(
    l: &L,
    y: &mut L::Buf,
    a_in: &L::Buf,
    b_in: &L::Buf,
    n: u32,
) -> Result<()> {
    let (y, ap, bp) = (l.ptr_mut(y), l.ptr(a_in), l.ptr(b_in));
    // SAFETY: add(float* y, const float* a, const float* b, unsigned n); all three hold
    // n floats (checked by the caller); y is distinct from a and b (&mut).
    unsafe {
        l.launch(
            &k::add,
            launch::elementwise(n as u64),
            &mut [a(&y), a(&ap), a(&bp), a(&n)],
        )
    }
}

pub(crate) fn gather_rows<L: Launcher>(
    l: &L,
    dst: &mut L::Buf,
    src: &L::Buf,
    rows: &L::Labels,
    nrows: u32,
    row_len: u32,
) -> Result<()> {
    let (d, s, r) = (l.ptr_mut(dst), l.ptr(src), l.ptr_u32(rows));
    let geo = launch::elementwise(nrows as u64 * row_len as u64);
    // SAFETY: gather_rows(float* dst, const float* src, const unsigned* rows, unsigned
    // nrows, unsigned row_len); dst holds nrows*row_len floats, rows nrows indices each
    // < src rows (checked by the caller).
    unsafe {
        l.launch(
            &k::gather_rows,
            geo,
            &mut [a(&d), a(&s), a(&r), a(&nrows), a(&row_len)],
        )
    }
}

// ---- activations (kernels/activation.cu) ----------------------------------------------

pub(crate) fn act_fwd<L: Launcher>(
    l: &L,
    y: &mut L::Buf,
    x: &L::Buf,
    n: u32,
    act: Act,
) -> Result<()> {
    let (y, x, act) = (l.ptr_mut(y), l.ptr(x), act as u32);
    // SAFETY: act_fwd(float* y, const float* x, unsigned n, unsigned act); both n floats.
    unsafe {
        l.launch(
            &k::act_fwd,
            launch::elementwise(n as u64),
            &mut [a(&y), a(&x), a(&n), a(&act)],
        )
    }
}

pub(crate) fn act_bwd<L: Launcher>(
    l: &L,
    dx: &mut L::Buf,
    dy: &L::Buf,
    x: &L::Buf,
    n: u32,
    act: Act,
) -> Result<()> {
    let (dx, dy, x, act) = (l.ptr_mut(dx), l.ptr(dy), l.ptr(x), act as u32);
    let geo = launch::elementwise(n as u64);
    // SAFETY: act_bwd(float* dx, const float* dy, const float* x, unsigned n, unsigned
    // act); all three hold n floats.
    unsafe {
        l.launch(
            &k::act_bwd,
            geo,
            &mut [a(&dx), a(&dy), a(&x), a(&n), a(&act)],
        )
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn act_dual_bwd<L: Launcher>(
    l: &L,
    dx: &mut L::Buf,
    dxdot: &mut L::Buf,
    dy: &L::Buf,
    dydot: &L::Buf,
    x: &L::Buf,
    xdot: &L::Buf,
    n: u32,
    act: Act,
) -> Result<()> {
    let (dx, dxdot) = (l.ptr_mut(dx), l.ptr_mut(dxdot));
    let (dy, dydot, x, xdot, act) = (l.ptr(dy), l.ptr(dydot), l.ptr(x), l.ptr(xdot), act as u32);
    let geo = launch::elementwise(n as u64);
    let mut args = [
        a(&dx),
        a(&dxdot),
        a(&dy),
        a(&dydot),
        a(&x),
        a(&xdot),
        a(&n),
        a(&act),
    ];
    // SAFETY: act_dual_bwd(float* dx, float* dxdot, const float* dy, const float* dydot,
    // const float* x, const float* xdot, unsigned n, unsigned act); all hold n floats.
    unsafe { l.launch(&k::act_dual_bwd, geo, &mut args) }
}

// ---- pooling (kernels/pool.cu) -----------------------------------------------------

/// One thread per input element (`per_input`, pool_bwd) or per output element.
fn pool_geo(s: &PoolShape, per_input: bool) -> Geometry {
    let items = if per_input { s.x_len() } else { s.y_len() };
    launch::elementwise(items as u64)
}

pub(crate) fn pool_fwd<L: Launcher>(
    l: &L,
    y: &mut L::Buf,
    x: &L::Buf,
    s: &PoolShape,
    kind: PoolKind,
) -> Result<()> {
    let (y, x, kind, s) = (l.ptr_mut(y), l.ptr(x), kind as u32, *s);
    // SAFETY: pool_fwd(float* y, const float* x, PoolShape s, unsigned kind); x holds
    // planes*h*w floats, y planes*oh*ow, and s is a valid window (k, stride >= 1,
    // k <= h, w) (checked by the caller).
    unsafe {
        l.launch(
            &k::pool_fwd,
            pool_geo(&s, false),
            &mut [a(&y), a(&x), a(&s), a(&kind)],
        )
    }
}

pub(crate) fn pool_bwd<L: Launcher>(
    l: &L,
    dx: &mut L::Buf,
    dy: &L::Buf,
    x: &L::Buf,
    s: &PoolShape,
    kind: PoolKind,
) -> Result<()> {
    let (dx, dy, x, kind, s) = (l.ptr_mut(dx), l.ptr(dy), l.ptr(x), kind as u32, *s);
    let mut args = [a(&dx), a(&dy), a(&x), a(&s), a(&kind)];
    // SAFETY: pool_bwd(float* dx, const float* dy, const float* x, PoolShape s, unsigned
    // kind); dx and x hold planes*h*w floats, dy planes*oh*ow; s is a valid window.
    unsafe { l.launch(&k::pool_bwd, pool_geo(&s, true), &mut args) }
}

pub(crate) fn pool_jvp<L: Launcher>(
    l: &L,
    ydot: &mut L::Buf,
    x: &L::Buf,
    xdot: &L::Buf,
    s: &PoolShape,
    kind: PoolKind,
) -> Result<()> {
    let (ydot, x, xdot, kind, s) = (l.ptr_mut(ydot), l.ptr(x), l.ptr(xdot), kind as u32, *s);
    let mut args = [a(&ydot), a(&x), a(&xdot), a(&s), a(&kind)];
    // SAFETY: pool_jvp(float* ydot, const float* x, const float* xdot, PoolShape s,
    // unsigned kind); x, xdot hold planes*h*w floats, ydot planes*oh*ow; s is a valid
    // window.
    unsafe { l.launch(&k::pool_jvp, pool_geo(&s, false), &mut args) }
}

// ---- SGD (kernels/sgd.cu) ----------------------------------------------------------

pub(crate) fn sgd_step<L: Launcher>(
    l: &L,
    p: &mut L::Buf,
    m: &mut L::Buf,
    g: &L::Buf,
    n: u32,
    hp: SgdParams,
) -> Result<()> {
    let (p, m, g) = (l.ptr_mut(p), l.ptr_mut(m), l.ptr(g));
    let geo = launch::elementwise(n as u64);
    // SAFETY: sgd_step(float* p, float* m, const float* g, unsigned n, SgdParams hp);
    // all three hold n floats.
    unsafe { l.launch(&k::sgd_step, geo, &mut [a(&p), a(&m), a(&g), a(&n), a(&hp)]) }
}

// ---- reductions (kernels/reduce.cu) ---------------------------------------------------

fn splitk_reduce<L: Launcher>(l: &L, out: u64, part: u64, len: u32, splits: u32) -> Result<()> {
    // SAFETY: splitk_reduce(float* out, const float* part, unsigned len, unsigned splits);
    // out addresses len floats inside a buffer the caller holds mutably, part holds
    // splits*len floats.
    unsafe {
        l.launch(
            &k::splitk_reduce,
            launch::elementwise(len as u64),
            &mut [a(&out), a(&part), a(&len), a(&splits)],
        )
    }
}

/// `db[c] = sum dy[a, c, p]` for dy `[outer, ch, inner]`; `db` is an address inside a
/// buffer the caller holds mutably.
fn bias_bwd<L: Launcher>(
    l: &L,
    db: u64,
    dy: &L::Buf,
    outer: u32,
    ch: u32,
    inner: u32,
) -> Result<()> {
    let dy = l.ptr(dy);
    // SAFETY: bias_bwd(float* db, const float* dy, unsigned outer, unsigned ch, unsigned
    // inner); db addresses ch floats, dy holds outer*ch*inner floats.
    unsafe {
        l.launch(
            &k::bias_bwd,
            launch::bias_bwd(ch),
            &mut [a(&db), a(&dy), a(&outer), a(&ch), a(&inner)],
        )
    }
}

/// Floats of split-K scratch a weight gradient of M x N over `kdim` terms needs
/// (0: one split, written straight into the gradient).
fn splitk_scratch(m: u32, n: u32, kdim: u64) -> usize {
    let (splits, _) = launch::splitk(m, n, kdim);
    if splits == 1 {
        0
    } else {
        splits as usize * m as usize * n as usize
    }
}

/// Runs a split-K weight-gradient kernel (`conv2d_bwd_weight`, `linear_bwd_weight`:
/// `(float* part, const float* dy, const float* x, Shape s, unsigned kchunk)`) for an
/// M x N result at `dw` in `grads`, reducing the splits in a fixed order. `scratch`
/// addresses [`splitk_scratch`] floats the caller owns for the duration of both
/// launches (unused, may be 0, with one split).
#[allow(clippy::too_many_arguments)]
fn splitk_weight<L: Launcher, S: Copy>(
    l: &L,
    kernel: &Kernel,
    scratch: u64,
    grads: &mut L::Buf,
    dw: Seg,
    dy: &L::Buf,
    x: &L::Buf,
    s: &S,
    m: u32,
    n: u32,
    kdim: u64,
) -> Result<()> {
    let (splits, chunk) = launch::splitk(m, n, kdim);
    let geo = launch::igemm(m, n, splits);
    let (dyp, xp, s) = (l.ptr(dy), l.ptr(x), *s);
    if splits == 1 {
        let part = at(l.ptr_mut(grads), dw.off as usize);
        // SAFETY: the kernel's signature is (float*, const float*, const float*, S,
        // unsigned); with one split it writes the M*N floats of dw (inside grads, checked
        // by the caller); dy and x hold the shape's elements.
        return unsafe {
            l.launch(
                kernel,
                geo,
                &mut [a(&part), a(&dyp), a(&xp), a(&s), a(&chunk)],
            )
        };
    }
    if scratch == 0 {
        return Err(crate::error::Error::Backend {
            backend: l.name(),
            msg: format!("{}: split-K launch without its scratch buffer", kernel.name),
        });
    }
    // SAFETY: as above; scratch holds splits*M*N floats (the caller sized it with
    // splitk_scratch and keeps it alive over both launches).
    unsafe {
        l.launch(
            kernel,
            geo,
            &mut [a(&scratch), a(&dyp), a(&xp), a(&s), a(&chunk)],
        )?
    };
    splitk_reduce(
        l,
        at(l.ptr_mut(grads), dw.off as usize),
        scratch,
        m * n,
        splits,
    )
}

// ---- convolution (kernels/conv.cu) ----------------------------------------------------

#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d_fwd<L: Launcher>(
    l: &L,
    p: Precision,
    y: &mut L::Buf,
    x: &L::Buf,
    params: &L::Buf,
    w: Seg,
    b: Option<Seg>,
    s: &ConvShape,
    acc: bool,
) -> Result<()> {
    let base = l.ptr(params);
    let (yp, xp, wp) = (l.ptr_mut(y), l.ptr(x), at(base, w.off as usize));
    let bp = b.map(|b| at(base, b.off as usize)).unwrap_or(0);
    let (s, acc) = (*s, acc as u32);
    let geo = launch::igemm(s.o, s.n * s.oh * s.ow, 1);
    // SAFETY: conv2d_fwd(float* y, const float* x, const float* w, const float* b,
    // ConvShape s, unsigned acc); y, x hold the shape's elements, w the O*C*KH*KW and b
    // (or null) the O floats of their segments (checked by the caller).
    unsafe {
        l.launch(
            in_precision(
                p,
                [&k::conv2d_fwd, &k::conv2d_fwd_tf32, &k::conv2d_fwd_bf16],
            ),
            geo,
            &mut [a(&yp), a(&xp), a(&wp), a(&bp), a(&s), a(&acc)],
        )
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d_bwd_input<L: Launcher>(
    l: &L,
    p: Precision,
    dx: &mut L::Buf,
    dy: &L::Buf,
    params: &L::Buf,
    w: Seg,
    s: &ConvShape,
    acc: bool,
) -> Result<()> {
    let (dxp, dyp, wp) = (l.ptr_mut(dx), l.ptr(dy), at(l.ptr(params), w.off as usize));
    let (s, acc) = (*s, acc as u32);
    let geo = launch::igemm(s.c, s.n * s.h * s.w, 1);
    // SAFETY: conv2d_bwd_input(float* dx, const float* dy, const float* w, ConvShape s,
    // unsigned acc); dx, dy hold the shape's elements, w its segment (checked).
    unsafe {
        l.launch(
            in_precision(
                p,
                [
                    &k::conv2d_bwd_input,
                    &k::conv2d_bwd_input_tf32,
                    &k::conv2d_bwd_input_bf16,
                ],
            ),
            geo,
            &mut [a(&dxp), a(&dyp), a(&wp), a(&s), a(&acc)],
        )
    }
}

/// (M, N, k) of the weight-gradient GEMM of a convolution.
fn conv_weight_gemm(s: &ConvShape) -> (u32, u32, u64) {
    (
        s.o,
        s.c * s.kh * s.kw,
        s.n as u64 * s.oh as u64 * s.ow as u64,
    )
}

/// Scratch floats [`conv2d_bwd_weight`] needs (0: none).
pub(crate) fn conv2d_bwd_weight_scratch(s: &ConvShape) -> usize {
    let (m, n, kdim) = conv_weight_gemm(s);
    splitk_scratch(m, n, kdim)
}

/// Scratch floats [`linear_bwd_weight`] needs (0: none).
pub(crate) fn linear_bwd_weight_scratch(s: &LinearShape) -> usize {
    splitk_scratch(s.k, s.f, s.n as u64)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d_bwd_weight<L: Launcher>(
    l: &L,
    p: Precision,
    scratch: u64,
    grads: &mut L::Buf,
    dw: Seg,
    db: Option<Seg>,
    dy: &L::Buf,
    x: &L::Buf,
    s: &ConvShape,
) -> Result<()> {
    let (m, n, kdim) = conv_weight_gemm(s);
    splitk_weight(
        l,
        in_precision(
            p,
            [
                &k::conv2d_bwd_weight,
                &k::conv2d_bwd_weight_tf32,
                &k::conv2d_bwd_weight_bf16,
            ],
        ),
        scratch,
        grads,
        dw,
        dy,
        x,
        s,
        m,
        n,
        kdim,
    )?;
    if let Some(db) = db {
        let dbp = at(l.ptr_mut(grads), db.off as usize);
        bias_bwd(l, dbp, dy, s.n, s.o, s.oh * s.ow)?;
    }
    Ok(())
}

// ---- fully connected (kernels/linear.cu) ---------------------------------------------

#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_fwd<L: Launcher>(
    l: &L,
    p: Precision,
    y: &mut L::Buf,
    x: &L::Buf,
    params: &L::Buf,
    w: Seg,
    b: Option<Seg>,
    s: &LinearShape,
    acc: bool,
) -> Result<()> {
    let base = l.ptr(params);
    let (yp, xp, wp) = (l.ptr_mut(y), l.ptr(x), at(base, w.off as usize));
    let bp = b.map(|b| at(base, b.off as usize)).unwrap_or(0);
    let (s, acc) = (*s, acc as u32);
    let geo = launch::igemm(s.n, s.k, 1);
    // SAFETY: linear_fwd(float* y, const float* x, const float* w, const float* b,
    // LinearShape s, unsigned acc); y [N,K], x [N,F], w [K,F], b [K] or null (checked).
    unsafe {
        l.launch(
            in_precision(
                p,
                [&k::linear_fwd, &k::linear_fwd_tf32, &k::linear_fwd_bf16],
            ),
            geo,
            &mut [a(&yp), a(&xp), a(&wp), a(&bp), a(&s), a(&acc)],
        )
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_bwd_input<L: Launcher>(
    l: &L,
    p: Precision,
    dx: &mut L::Buf,
    dy: &L::Buf,
    params: &L::Buf,
    w: Seg,
    s: &LinearShape,
    acc: bool,
) -> Result<()> {
    let (dxp, dyp, wp) = (l.ptr_mut(dx), l.ptr(dy), at(l.ptr(params), w.off as usize));
    let (s, acc) = (*s, acc as u32);
    let geo = launch::igemm(s.n, s.f, 1);
    // SAFETY: linear_bwd_input(float* dx, const float* dy, const float* w, LinearShape s,
    // unsigned acc); dx [N,F], dy [N,K], w [K,F] (checked).
    unsafe {
        l.launch(
            in_precision(
                p,
                [
                    &k::linear_bwd_input,
                    &k::linear_bwd_input_tf32,
                    &k::linear_bwd_input_bf16,
                ],
            ),
            geo,
            &mut [a(&dxp), a(&dyp), a(&wp), a(&s), a(&acc)],
        )
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_bwd_weight<L: Launcher>(
    l: &L,
    p: Precision,
    scratch: u64,
    grads: &mut L::Buf,
    dw: Seg,
    db: Option<Seg>,
    dy: &L::Buf,
    x: &L::Buf,
    s: &LinearShape,
) -> Result<()> {
    splitk_weight(
        l,
        in_precision(
            p,
            [
                &k::linear_bwd_weight,
                &k::linear_bwd_weight_tf32,
                &k::linear_bwd_weight_bf16,
            ],
        ),
        scratch,
        grads,
        dw,
        dy,
        x,
        s,
        s.k,
        s.f,
        s.n as u64,
    )?;
    if let Some(db) = db {
        let dbp = at(l.ptr_mut(grads), db.off as usize);
        bias_bwd(l, dbp, dy, s.n, s.k, 1)?;
    }
    Ok(())
}

// ---- group / instance / layer norm (kernels/norm.cu) ---------------------------------
// Callers have checked: x-shaped buffers hold N*C*HW floats, stats 2*N*G, every
// affine segment C (per channel) or C*HW (per element) floats inside its buffer.

/// Address of segment `seg` of a read-only buffer.
fn seg<L: Launcher>(l: &L, buf: &L::Buf, seg: Seg) -> u64 {
    at(l.ptr(buf), seg.off as usize)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn norm_fwd<L: Launcher>(
    l: &L,
    y: &mut L::Buf,
    stats: &mut L::Buf,
    x: &L::Buf,
    params: &L::Buf,
    gamma: Seg,
    beta: Seg,
    s: &NormShape,
) -> Result<()> {
    let (yp, sp, xp) = (l.ptr_mut(y), l.ptr_mut(stats), l.ptr(x));
    let (gp, bp, s) = (seg(l, params, gamma), seg(l, params, beta), *s);
    let mut args = [a(&yp), a(&sp), a(&xp), a(&gp), a(&bp), a(&s)];
    // SAFETY: norm_fwd(float* y, float* stats, const float* x, const float* gamma, const
    // float* beta, NormShape s); one block per (n, g) group, lengths checked by the caller.
    unsafe { l.launch(&k::norm_fwd, launch::per_block(s.n * s.groups), &mut args) }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn norm_bwd<L: Launcher>(
    l: &L,
    dx: &mut L::Buf,
    dy: &L::Buf,
    x: &L::Buf,
    stats: &L::Buf,
    params: &L::Buf,
    gamma: Seg,
    s: &NormShape,
) -> Result<()> {
    let (dxp, dyp, xp, sp) = (l.ptr_mut(dx), l.ptr(dy), l.ptr(x), l.ptr(stats));
    let (gp, s) = (seg(l, params, gamma), *s);
    let mut args = [a(&dxp), a(&dyp), a(&xp), a(&sp), a(&gp), a(&s)];
    // SAFETY: norm_bwd(float* dx, const float* dy, const float* x, const float* stats,
    // const float* gamma, NormShape s); lengths checked by the caller.
    unsafe { l.launch(&k::norm_bwd, launch::per_block(s.n * s.groups), &mut args) }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn norm_bwd_params<L: Launcher>(
    l: &L,
    grads: &mut L::Buf,
    dgamma: Seg,
    dbeta: Seg,
    dy: &L::Buf,
    x: &L::Buf,
    stats: &L::Buf,
    s: &NormShape,
) -> Result<()> {
    let base = l.ptr_mut(grads);
    let (dgp, dbp) = (at(base, dgamma.off as usize), at(base, dbeta.off as usize));
    let (dyp, xp, sp, s) = (l.ptr(dy), l.ptr(x), l.ptr(stats), *s);
    let geo = if s.affine != 0 {
        launch::elementwise(s.c as u64 * s.hw as u64)
    } else {
        launch::per_block(s.c)
    };
    let mut args = [a(&dgp), a(&dbp), a(&dyp), a(&xp), a(&sp), a(&s)];
    // SAFETY: norm_bwd_params(float* dgamma, float* dbeta, const float* dy, const float* x,
    // const float* stats, NormShape s); dgamma, dbeta are disjoint segments of C or C*HW
    // floats inside grads (checked by the caller).
    unsafe { l.launch(&k::norm_bwd_params, geo, &mut args) }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn norm_jvp<L: Launcher>(
    l: &L,
    ydot: &mut L::Buf,
    x: &L::Buf,
    xdot: &L::Buf,
    stats: &L::Buf,
    params: &L::Buf,
    gamma: Seg,
    tangent: &L::Buf,
    t_gamma: Seg,
    t_beta: Seg,
    s: &NormShape,
) -> Result<()> {
    let (yp, xp, vp, sp) = (l.ptr_mut(ydot), l.ptr(x), l.ptr(xdot), l.ptr(stats));
    let (gp, tgp, tbp) = (
        seg(l, params, gamma),
        seg(l, tangent, t_gamma),
        seg(l, tangent, t_beta),
    );
    let s = *s;
    let mut args = [
        a(&yp),
        a(&xp),
        a(&vp),
        a(&sp),
        a(&gp),
        a(&tgp),
        a(&tbp),
        a(&s),
    ];
    // SAFETY: norm_jvp(float* ydot, const float* x, const float* xdot, const float* stats,
    // const float* gamma, const float* t_gamma, const float* t_beta, NormShape s).
    unsafe { l.launch(&k::norm_jvp, launch::per_block(s.n * s.groups), &mut args) }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn norm_dual_bwd<L: Launcher>(
    l: &L,
    dx: &mut L::Buf,
    dxdot: &mut L::Buf,
    dy: &L::Buf,
    dydot: &L::Buf,
    x: &L::Buf,
    xdot: &L::Buf,
    stats: &L::Buf,
    params: &L::Buf,
    gamma: Seg,
    tangent: &L::Buf,
    t_gamma: Seg,
    s: &NormShape,
) -> Result<()> {
    let (dxp, dvp) = (l.ptr_mut(dx), l.ptr_mut(dxdot));
    let (dyp, ddp, xp, vp, sp) = (l.ptr(dy), l.ptr(dydot), l.ptr(x), l.ptr(xdot), l.ptr(stats));
    let (gp, tgp, s) = (seg(l, params, gamma), seg(l, tangent, t_gamma), *s);
    let mut args = [
        a(&dxp),
        a(&dvp),
        a(&dyp),
        a(&ddp),
        a(&xp),
        a(&vp),
        a(&sp),
        a(&gp),
        a(&tgp),
        a(&s),
    ];
    // SAFETY: norm_dual_bwd(float* dx, float* dxdot, const float* dy, const float* dydot,
    // const float* x, const float* xdot, const float* stats, const float* gamma, const
    // float* t_gamma, NormShape s); dx and dxdot are distinct buffers (&mut).
    unsafe {
        l.launch(
            &k::norm_dual_bwd,
            launch::per_block(s.n * s.groups),
            &mut args,
        )
    }
}

// ---- batch norm (kernels/batchnorm.cu) ------------------------------------------------
// Callers have checked: x-shaped buffers N*C*HW floats, stats and running 2*C, every
// affine segment C floats inside its buffer.

// ---- fused block tail (kernels/fused.cu) -------------------------------------------

/// `pool` value of `norm_act_pool_fwd` meaning "no pooling stage" (POOL_NONE of
/// params.cuh; PoolKind's values are 0 and 1).
const POOL_NONE: u32 = 2;

/// Outputs of [`norm_act_pool_fwd`]: `s` and `stats` with a norm, `p` with pooling.
pub(crate) struct FusedOut<'a, B> {
    pub s: Option<(&'a mut B, &'a mut B)>,
    pub a: &'a mut B,
    pub p: Option<&'a mut B>,
}

/// The group-norm family (or none: `norm = None`, then `ns` describes one slab per
/// plane) -> activation -> pooling, one block per slab. The caller has checked every
/// length against `ns` and `ps` and that a slab fits `launch::FUSED_MAX_SLAB`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn norm_act_pool_fwd<L: Launcher>(
    l: &L,
    out: FusedOut<'_, L::Buf>,
    z: &L::Buf,
    params: &L::Buf,
    norm: Option<(Seg, Seg)>,
    ns: &NormShape,
    ps: &PoolShape,
    act: Act,
    pool: Option<PoolKind>,
) -> Result<()> {
    let (sp, stp) = match out.s {
        Some((s, st)) => (l.ptr_mut(s), l.ptr_mut(st)),
        None => (0, 0),
    };
    let (ap, zp) = (l.ptr_mut(out.a), l.ptr(z));
    let pp = out.p.map(|p| l.ptr_mut(p)).unwrap_or(0);
    let (gp, bp) = match norm {
        Some((g, b)) => (seg(l, params, g), seg(l, params, b)),
        None => (0, 0),
    };
    let (ns, ps) = (*ns, *ps);
    let (act, pool) = (act as u32, pool.map(|k| k as u32).unwrap_or(POOL_NONE));
    let has_norm = norm.is_some() as u32;
    let m = (ns.c / ns.groups) * ns.hw;
    let geo = launch::fused(ns.n * ns.groups, m);
    // SAFETY: norm_act_pool_fwd(float* s_out, float* stats, float* a_out, float* p_out,
    // const float* z, const float* gamma, const float* beta, NormShape ns, PoolShape ps,
    // unsigned act, unsigned pool, unsigned norm); z, a (and s) hold N*C*HW floats,
    // stats 2*N*G, p N*C*OH*OW of the valid window ps, gamma/beta their segments
    // (checked by the caller); null pointers only where the flags say the kernel does
    // not touch them; the dynamic shared memory holds the M-float slab.
    unsafe {
        l.launch(
            &k::norm_act_pool_fwd,
            geo,
            &mut [
                a(&sp),
                a(&stp),
                a(&ap),
                a(&pp),
                a(&zp),
                a(&gp),
                a(&bp),
                a(&ns),
                a(&ps),
                a(&act),
                a(&pool),
                a(&has_norm),
            ],
        )
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_fwd_train<L: Launcher>(
    l: &L,
    y: &mut L::Buf,
    stats: &mut L::Buf,
    running: &mut L::Buf,
    x: &L::Buf,
    params: &L::Buf,
    gamma: Seg,
    beta: Seg,
    s: &NormShape,
    momentum: f32,
) -> Result<()> {
    let (yp, sp, rp, xp) = (l.ptr_mut(y), l.ptr_mut(stats), l.ptr_mut(running), l.ptr(x));
    let (gp, bp, s) = (seg(l, params, gamma), seg(l, params, beta), *s);
    let mut args = [
        a(&yp),
        a(&sp),
        a(&rp),
        a(&xp),
        a(&gp),
        a(&bp),
        a(&s),
        a(&momentum),
    ];
    // SAFETY: bn_fwd_train(float* y, float* stats, float* running, const float* x, const
    // float* gamma, const float* beta, NormShape s, float momentum); one block per channel.
    unsafe { l.launch(&k::bn_fwd_train, launch::per_block(s.c), &mut args) }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_bwd_train<L: Launcher>(
    l: &L,
    dx: &mut L::Buf,
    dparams: Option<(&mut L::Buf, Seg, Seg)>,
    dy: &L::Buf,
    x: &L::Buf,
    stats: &L::Buf,
    params: &L::Buf,
    gamma: Seg,
    s: &NormShape,
) -> Result<()> {
    let (dgp, dbp) = match dparams {
        Some((g, dg, db)) => {
            let base = l.ptr_mut(g);
            (at(base, dg.off as usize), at(base, db.off as usize))
        }
        None => (0u64, 0u64),
    };
    let (dxp, dyp, xp, sp) = (l.ptr_mut(dx), l.ptr(dy), l.ptr(x), l.ptr(stats));
    let (gp, s) = (seg(l, params, gamma), *s);
    let mut args = [
        a(&dxp),
        a(&dgp),
        a(&dbp),
        a(&dyp),
        a(&xp),
        a(&sp),
        a(&gp),
        a(&s),
    ];
    // SAFETY: bn_bwd_train(float* dx, float* dgamma, float* dbeta, const float* dy, const
    // float* x, const float* stats, const float* gamma, NormShape s); dgamma/dbeta null
    // (skipped) or disjoint C-float segments of a buffer other than dx (&mut).
    unsafe { l.launch(&k::bn_bwd_train, launch::per_block(s.c), &mut args) }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_fwd_eval<L: Launcher>(
    l: &L,
    y: &mut L::Buf,
    x: &L::Buf,
    running: &L::Buf,
    params: &L::Buf,
    gamma: Seg,
    beta: Seg,
    s: &NormShape,
) -> Result<()> {
    let (yp, xp, rp) = (l.ptr_mut(y), l.ptr(x), l.ptr(running));
    let (gp, bp, s) = (seg(l, params, gamma), seg(l, params, beta), *s);
    let mut args = [a(&yp), a(&xp), a(&rp), a(&gp), a(&bp), a(&s)];
    // SAFETY: bn_fwd_eval(float* y, const float* x, const float* running, const float*
    // gamma, const float* beta, NormShape s).
    unsafe { l.launch(&k::bn_fwd_eval, launch::elementwise(s_len(&s)), &mut args) }
}

fn s_len(s: &NormShape) -> u64 {
    s.n as u64 * s.c as u64 * s.hw as u64
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_bwd_eval<L: Launcher>(
    l: &L,
    dx: &mut L::Buf,
    dy: &L::Buf,
    running: &L::Buf,
    params: &L::Buf,
    gamma: Seg,
    s: &NormShape,
) -> Result<()> {
    let (dxp, dyp, rp, gp, s) = (
        l.ptr_mut(dx),
        l.ptr(dy),
        l.ptr(running),
        seg(l, params, gamma),
        *s,
    );
    let mut args = [a(&dxp), a(&dyp), a(&rp), a(&gp), a(&s)];
    // SAFETY: bn_bwd_eval(float* dx, const float* dy, const float* running, const float*
    // gamma, NormShape s).
    unsafe { l.launch(&k::bn_bwd_eval, launch::elementwise(s_len(&s)), &mut args) }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_bwd_eval_params<L: Launcher>(
    l: &L,
    grads: &mut L::Buf,
    dgamma: Seg,
    dbeta: Seg,
    dy: &L::Buf,
    x: &L::Buf,
    running: &L::Buf,
    s: &NormShape,
) -> Result<()> {
    let base = l.ptr_mut(grads);
    let (dgp, dbp) = (at(base, dgamma.off as usize), at(base, dbeta.off as usize));
    let (dyp, xp, rp, s) = (l.ptr(dy), l.ptr(x), l.ptr(running), *s);
    let mut args = [a(&dgp), a(&dbp), a(&dyp), a(&xp), a(&rp), a(&s)];
    // SAFETY: bn_bwd_eval_params(float* dgamma, float* dbeta, const float* dy, const
    // float* x, const float* running, NormShape s); disjoint C-float segments of grads.
    unsafe { l.launch(&k::bn_bwd_eval_params, launch::per_block(s.c), &mut args) }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_eval_jvp<L: Launcher>(
    l: &L,
    ydot: &mut L::Buf,
    x: &L::Buf,
    xdot: &L::Buf,
    running: &L::Buf,
    params: &L::Buf,
    gamma: Seg,
    tangent: &L::Buf,
    t_gamma: Seg,
    t_beta: Seg,
    s: &NormShape,
) -> Result<()> {
    let (yp, xp, vp, rp) = (l.ptr_mut(ydot), l.ptr(x), l.ptr(xdot), l.ptr(running));
    let (gp, tgp, tbp) = (
        seg(l, params, gamma),
        seg(l, tangent, t_gamma),
        seg(l, tangent, t_beta),
    );
    let s = *s;
    let mut args = [
        a(&yp),
        a(&xp),
        a(&vp),
        a(&rp),
        a(&gp),
        a(&tgp),
        a(&tbp),
        a(&s),
    ];
    // SAFETY: bn_eval_jvp(float* ydot, const float* x, const float* xdot, const float*
    // running, const float* gamma, const float* t_gamma, const float* t_beta, NormShape s).
    unsafe { l.launch(&k::bn_eval_jvp, launch::elementwise(s_len(&s)), &mut args) }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_eval_dual_bwd<L: Launcher>(
    l: &L,
    dx: &mut L::Buf,
    dxdot: &mut L::Buf,
    dy: &L::Buf,
    dydot: &L::Buf,
    running: &L::Buf,
    params: &L::Buf,
    gamma: Seg,
    tangent: &L::Buf,
    t_gamma: Seg,
    s: &NormShape,
) -> Result<()> {
    let (dxp, dvp, dyp, ddp) = (l.ptr_mut(dx), l.ptr_mut(dxdot), l.ptr(dy), l.ptr(dydot));
    let (rp, gp, tgp, s) = (
        l.ptr(running),
        seg(l, params, gamma),
        seg(l, tangent, t_gamma),
        *s,
    );
    let mut args = [
        a(&dxp),
        a(&dvp),
        a(&dyp),
        a(&ddp),
        a(&rp),
        a(&gp),
        a(&tgp),
        a(&s),
    ];
    // SAFETY: bn_eval_dual_bwd(float* dx, float* dxdot, const float* dy, const float*
    // dydot, const float* running, const float* gamma, const float* t_gamma, NormShape s).
    unsafe {
        l.launch(
            &k::bn_eval_dual_bwd,
            launch::elementwise(s_len(&s)),
            &mut args,
        )
    }
}

// ---- softmax cross-entropy (kernels/loss.cu) -------------------------------------------

pub(crate) fn ce_fwd_bwd<L: Launcher>(
    l: &L,
    dlogits: &mut L::Buf,
    per_sample: &mut L::Buf,
    logits: &L::Buf,
    labels: &L::Labels,
    s: &LinearShape,
) -> Result<()> {
    let (dp, pp, lp, yp, s) = (
        l.ptr_mut(dlogits),
        l.ptr_mut(per_sample),
        l.ptr(logits),
        l.ptr_u32(labels),
        *s,
    );
    let mut args = [a(&dp), a(&pp), a(&lp), a(&yp), a(&s)];
    // SAFETY: ce_fwd_bwd(float* dlogits, float* per_sample, const float* logits, const
    // unsigned* labels, LinearShape s); dlogits, logits N*K floats, per_sample 2N, labels
    // N (checked by the caller; a label >= K is flagged, never dereferenced).
    unsafe { l.launch(&k::ce_fwd_bwd, launch::ce(s.n), &mut args) }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn ce_dual<L: Launcher>(
    l: &L,
    dlogits: &mut L::Buf,
    dldot: &mut L::Buf,
    per_sample: &mut L::Buf,
    logits: &L::Buf,
    ldot: &L::Buf,
    labels: &L::Labels,
    s: &LinearShape,
) -> Result<()> {
    let (dp, dd, pp) = (l.ptr_mut(dlogits), l.ptr_mut(dldot), l.ptr_mut(per_sample));
    let (lp, tp, yp, s) = (l.ptr(logits), l.ptr(ldot), l.ptr_u32(labels), *s);
    let mut args = [a(&dp), a(&dd), a(&pp), a(&lp), a(&tp), a(&yp), a(&s)];
    // SAFETY: ce_dual(float* dlogits, float* dldot, float* per_sample, const float* logits,
    // const float* ldot, const unsigned* labels, LinearShape s); N*K floats each, per_sample
    // 2N, labels N (checked by the caller).
    unsafe { l.launch(&k::ce_dual, launch::ce(s.n), &mut args) }
}

// ---- gradient matching (kernels/matching.cu) -------------------------------------------

pub(crate) fn match_sums<L: Launcher>(
    l: &L,
    sums: &mut L::Buf,
    g_syn: &L::Buf,
    g_real: &L::Buf,
    rows: &L::Labels,
    nrows: u32,
) -> Result<()> {
    let (sp, gs, gr, rp) = (
        l.ptr_mut(sums),
        l.ptr(g_syn),
        l.ptr(g_real),
        l.ptr_u32(rows),
    );
    // SAFETY: match_sums(float* sums, const float* g_syn, const float* g_real, const
    // unsigned* rows); sums holds 4*nrows floats, rows 2*nrows (off, len) pairs that lie
    // inside both gradient buffers (checked by the caller).
    unsafe {
        l.launch(
            &k::match_sums,
            launch::per_block(nrows),
            &mut [a(&sp), a(&gs), a(&gr), a(&rp)],
        )
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn match_grad<L: Launcher>(
    l: &L,
    dsyn: &mut L::Buf,
    g_syn: &L::Buf,
    g_real: &L::Buf,
    rows: &L::Labels,
    coef: &L::Buf,
    nrows: u32,
    metric: Metric,
) -> Result<()> {
    let (dp, gs, gr, rp, cp) = (
        l.ptr_mut(dsyn),
        l.ptr(g_syn),
        l.ptr(g_real),
        l.ptr_u32(rows),
        l.ptr(coef),
    );
    let metric = metric as u32;
    let mut args = [a(&dp), a(&gs), a(&gr), a(&rp), a(&cp), a(&metric)];
    // SAFETY: match_grad(float* dsyn, const float* g_syn, const float* g_real, const
    // unsigned* rows, const float* coef, unsigned metric); rows as for match_sums, inside
    // dsyn too; coef 2*nrows floats.
    unsafe { l.launch(&k::match_grad, launch::per_block(nrows), &mut args) }
}

// ---- augmentation (kernels/augment.cu) ---------------------------------------------------
// Callers have checked: x- and y-shaped buffers hold the shape's N*C*H*W floats and the
// per-image parameter buffer N entries (AffineParam = 4 floats, IntParam = 2 u32, scalars
// 1 float).

/// Launches an augmentation kernel `(float* y, const float* x, const P* p, ImgShape s,
/// extra...)` with the given geometry.
fn aug_launch<L: Launcher>(
    l: &L,
    kernel: &Kernel,
    geo: Geometry,
    y: &mut L::Buf,
    x: &L::Buf,
    p: u64,
    s: &ImgShape,
) -> Result<()> {
    let (yp, xp, s) = (l.ptr_mut(y), l.ptr(x), *s);
    // SAFETY: every caller names a kernel of signature (float* y, const float* x, const
    // P* p, ImgShape s) where p addresses the N per-image entries of type P.
    unsafe { l.launch(kernel, geo, &mut [a(&yp), a(&xp), a(&p), a(&s)]) }
}

fn img_geo(s: &ImgShape) -> Geometry {
    launch::elementwise(s.len() as u64)
}

/// `aug_affine_fwd` (`bwd = false`) or `aug_affine_bwd`; `p` holds N AffineParams.
pub(crate) fn aug_affine<L: Launcher>(
    l: &L,
    y: &mut L::Buf,
    x: &L::Buf,
    p: &L::Buf,
    s: &ImgShape,
    bwd: bool,
) -> Result<()> {
    let kernel = if bwd {
        &k::aug_affine_bwd
    } else {
        &k::aug_affine_fwd
    };
    aug_launch(l, kernel, img_geo(s), y, x, l.ptr(p), s)
}

/// `aug_flip` (its own adjoint); `p` holds N IntParams.
pub(crate) fn aug_flip<L: Launcher>(
    l: &L,
    y: &mut L::Buf,
    x: &L::Buf,
    p: &L::Labels,
    s: &ImgShape,
) -> Result<()> {
    aug_launch(l, &k::aug_flip, img_geo(s), y, x, l.ptr_u32(p), s)
}

/// `aug_brightness_fwd`; `shift` holds N floats.
pub(crate) fn aug_brightness_fwd<L: Launcher>(
    l: &L,
    y: &mut L::Buf,
    x: &L::Buf,
    shift: &L::Buf,
    s: &ImgShape,
) -> Result<()> {
    aug_launch(l, &k::aug_brightness_fwd, img_geo(s), y, x, l.ptr(shift), s)
}

/// `aug_saturation` (its own adjoint); `factor` holds N floats.
pub(crate) fn aug_saturation<L: Launcher>(
    l: &L,
    y: &mut L::Buf,
    x: &L::Buf,
    factor: &L::Buf,
    s: &ImgShape,
) -> Result<()> {
    let geo = launch::elementwise(s.n as u64 * s.h as u64 * s.w as u64);
    aug_launch(l, &k::aug_saturation, geo, y, x, l.ptr(factor), s)
}

/// `aug_contrast` (its own adjoint): one block per image; `factor` holds N floats.
pub(crate) fn aug_contrast<L: Launcher>(
    l: &L,
    y: &mut L::Buf,
    x: &L::Buf,
    factor: &L::Buf,
    s: &ImgShape,
) -> Result<()> {
    aug_launch(
        l,
        &k::aug_contrast,
        launch::per_block(s.n),
        y,
        x,
        l.ptr(factor),
        s,
    )
}

/// `aug_crop`, its adjoint (the shift negated) when `negate`; `p` holds N IntParams.
pub(crate) fn aug_crop<L: Launcher>(
    l: &L,
    y: &mut L::Buf,
    x: &L::Buf,
    p: &L::Labels,
    s: &ImgShape,
    negate: bool,
) -> Result<()> {
    let (yp, xp, pp, s, neg) = (l.ptr_mut(y), l.ptr(x), l.ptr_u32(p), *s, negate as u32);
    // SAFETY: aug_crop(float* y, const float* x, const IntParam* p, ImgShape s, unsigned
    // negate); p holds N IntParams.
    unsafe {
        l.launch(
            &k::aug_crop,
            img_geo(&s),
            &mut [a(&yp), a(&xp), a(&pp), a(&s), a(&neg)],
        )
    }
}

/// `aug_cutout` (its own adjoint); `p` holds N IntParams.
pub(crate) fn aug_cutout<L: Launcher>(
    l: &L,
    y: &mut L::Buf,
    x: &L::Buf,
    p: &L::Labels,
    half: i32,
    s: &ImgShape,
) -> Result<()> {
    let (yp, xp, pp, s) = (l.ptr_mut(y), l.ptr(x), l.ptr_u32(p), *s);
    // SAFETY: aug_cutout(float* y, const float* x, const IntParam* p, int half, ImgShape
    // s); p holds N IntParams.
    unsafe {
        l.launch(
            &k::aug_cutout,
            img_geo(&s),
            &mut [a(&yp), a(&xp), a(&pp), a(&half), a(&s)],
        )
    }
}
