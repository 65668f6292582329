//! The kernel table and one typed launch wrapper per kernel. All `unsafe` of the
//! device backends is here: each wrapper packs its arguments exactly as the `.cu`
//! signature it names (device pointers as `u64`, shape structs by value) and says
//! why the launch is sound. Callers ([`super::Gpu`]) have validated the lengths.

use super::Launcher;
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
    copy_range, fill, axpy, gather_rows,
    // kernels/activation.cu
    act_fwd, act_bwd, act_dual_bwd,
    // kernels/pool.cu
    pool_fwd, pool_bwd, pool_jvp,
    // kernels/sgd.cu
    sgd_step,
    // kernels/reduce.cu
    splitk_reduce, bias_bwd,
    // kernels/conv.cu
    conv2d_fwd, conv2d_bwd_input, conv2d_bwd_weight,
    // kernels/linear.cu
    linear_fwd, linear_bwd_input, linear_bwd_weight,
}

/// Pointer to an argument value, as `cuLaunchKernel` wants it.
fn a<T>(v: &T) -> *mut c_void {
    v as *const T as *mut c_void
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
    unsafe { l.launch(&k::copy_range, launch::elementwise(n as u64), &mut [a(&d), a(&s), a(&n)]) }
}

pub(crate) fn fill<L: Launcher>(l: &L, y: &mut L::Buf, value: f32, n: u32) -> Result<()> {
    let y = l.ptr_mut(y);
    // SAFETY: fill(float* y, float value, unsigned n); y holds n floats.
    unsafe { l.launch(&k::fill, launch::elementwise(n as u64), &mut [a(&y), a(&value), a(&n)]) }
}

pub(crate) fn axpy<L: Launcher>(l: &L, y: &mut L::Buf, alpha: f32, x: &L::Buf, n: u32) -> Result<()> {
    let (y, x) = (l.ptr_mut(y), l.ptr(x));
    // SAFETY: axpy(float* y, const float* x, float a, unsigned n); both hold n floats.
    unsafe { l.launch(&k::axpy, launch::elementwise(n as u64), &mut [a(&y), a(&x), a(&alpha), a(&n)]) }
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
    unsafe { l.launch(&k::gather_rows, geo, &mut [a(&d), a(&s), a(&r), a(&nrows), a(&row_len)]) }
}

// ---- activations (kernels/activation.cu) ----------------------------------------------

pub(crate) fn act_fwd<L: Launcher>(l: &L, y: &mut L::Buf, x: &L::Buf, n: u32, act: Act) -> Result<()> {
    let (y, x, act) = (l.ptr_mut(y), l.ptr(x), act as u32);
    // SAFETY: act_fwd(float* y, const float* x, unsigned n, unsigned act); both n floats.
    unsafe { l.launch(&k::act_fwd, launch::elementwise(n as u64), &mut [a(&y), a(&x), a(&n), a(&act)]) }
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
    unsafe { l.launch(&k::act_bwd, geo, &mut [a(&dx), a(&dy), a(&x), a(&n), a(&act)]) }
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
    let mut args = [a(&dx), a(&dxdot), a(&dy), a(&dydot), a(&x), a(&xdot), a(&n), a(&act)];
    // SAFETY: act_dual_bwd(float* dx, float* dxdot, const float* dy, const float* dydot,
    // const float* x, const float* xdot, unsigned n, unsigned act); all hold n floats.
    unsafe { l.launch(&k::act_dual_bwd, geo, &mut args) }
}

// ---- pooling (kernels/pool.cu) -----------------------------------------------------

fn pool_geo(s: &PoolShape, per_input: bool) -> Geometry {
    let items = if per_input {
        s.planes as u64 * s.h as u64 * s.w as u64
    } else {
        s.planes as u64 * s.oh() as u64 * s.ow() as u64
    };
    launch::elementwise(items)
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
    // planes*h*w floats, y planes*(h/2)*(w/2) (checked by the caller).
    unsafe { l.launch(&k::pool_fwd, pool_geo(&s, false), &mut [a(&y), a(&x), a(&s), a(&kind)]) }
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
    // kind); dx and x hold planes*h*w floats, dy planes*(h/2)*(w/2).
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
    // unsigned kind); x, xdot hold planes*h*w floats, ydot planes*(h/2)*(w/2).
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

fn splitk_reduce<L: Launcher>(l: &L, out: u64, part: &L::Buf, len: u32, splits: u32) -> Result<()> {
    let part = l.ptr(part);
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
fn bias_bwd<L: Launcher>(l: &L, db: u64, dy: &L::Buf, outer: u32, ch: u32, inner: u32) -> Result<()> {
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

/// Runs a split-K weight-gradient kernel (`conv2d_bwd_weight`, `linear_bwd_weight`:
/// `(float* part, const float* dy, const float* x, Shape s, unsigned kchunk)`) for an
/// M x N result at `dw` in `grads`, reducing the splits in a fixed order.
#[allow(clippy::too_many_arguments)]
fn splitk_weight<L: Launcher, S: Copy>(
    l: &L,
    kernel: &Kernel,
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
        return unsafe { l.launch(kernel, geo, &mut [a(&part), a(&dyp), a(&xp), a(&s), a(&chunk)]) };
    }
    let scratch = l.alloc(splits as usize * m as usize * n as usize)?;
    let part = l.ptr(&scratch);
    // SAFETY: as above; part holds splits*M*N floats (freshly allocated).
    unsafe { l.launch(kernel, geo, &mut [a(&part), a(&dyp), a(&xp), a(&s), a(&chunk)])? };
    splitk_reduce(l, at(l.ptr_mut(grads), dw.off as usize), &scratch, m * n, splits)
}

// ---- convolution (kernels/conv.cu) ----------------------------------------------------

#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d_fwd<L: Launcher>(
    l: &L,
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
    unsafe { l.launch(&k::conv2d_fwd, geo, &mut [a(&yp), a(&xp), a(&wp), a(&bp), a(&s), a(&acc)]) }
}

pub(crate) fn conv2d_bwd_input<L: Launcher>(
    l: &L,
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
    unsafe { l.launch(&k::conv2d_bwd_input, geo, &mut [a(&dxp), a(&dyp), a(&wp), a(&s), a(&acc)]) }
}

pub(crate) fn conv2d_bwd_weight<L: Launcher>(
    l: &L,
    grads: &mut L::Buf,
    dw: Seg,
    db: Option<Seg>,
    dy: &L::Buf,
    x: &L::Buf,
    s: &ConvShape,
) -> Result<()> {
    let (m, n) = (s.o, s.c * s.kh * s.kw);
    let kdim = s.n as u64 * s.oh as u64 * s.ow as u64;
    splitk_weight(l, &k::conv2d_bwd_weight, grads, dw, dy, x, s, m, n, kdim)?;
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
    unsafe { l.launch(&k::linear_fwd, geo, &mut [a(&yp), a(&xp), a(&wp), a(&bp), a(&s), a(&acc)]) }
}

pub(crate) fn linear_bwd_input<L: Launcher>(
    l: &L,
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
    unsafe { l.launch(&k::linear_bwd_input, geo, &mut [a(&dxp), a(&dyp), a(&wp), a(&s), a(&acc)]) }
}

pub(crate) fn linear_bwd_weight<L: Launcher>(
    l: &L,
    grads: &mut L::Buf,
    dw: Seg,
    db: Option<Seg>,
    dy: &L::Buf,
    x: &L::Buf,
    s: &LinearShape,
) -> Result<()> {
    splitk_weight(l, &k::linear_bwd_weight, grads, dw, dy, x, s, s.k, s.f, s.n as u64)?;
    if let Some(db) = db {
        let dbp = at(l.ptr_mut(grads), db.off as usize);
        bias_bwd(l, dbp, dy, s.n, s.k, 1)?;
    }
    Ok(())
}
