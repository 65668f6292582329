//! Conv2d forward, backward-data, backward-weight: im2col + GEMM (col2im for the
//! backward-data pass). Maths and layouts: `docs/derivations/conv.md`.
//!
//! Notation: `CK = C*KH*KW` (one im2col row per (c, kh, kw)), `P = OH*OW` (one
//! im2col column per output pixel). Per image `n`:
//! - forward: `y_n [O, P] = W [O, CK] * col(x_n) [CK, P] (+ b)`;
//! - backward-data: `dx_n = col2im(W^T [CK, O] * dy_n [O, P])`;
//! - backward-weight: `dW [O, CK] = sum_n dy_n [O, P] * col(x_n)^T [P, CK]`.
//!
//! Parallelism and determinism: work is cut into tasks whose boundaries depend only
//! on the shape (never on the thread count); every GEMM runs single-threaded
//! inside its task; the backward-weight sum over images runs in fixed chunks of
//! images whose partial results are added in chunk order. So results are
//! bit-identical for any number of threads.

use super::gemm::{gemm, Mat};
use super::scratch::with_scratch;
use crate::backend::*;
use crate::error::{Error, Result};
use rayon::prelude::*;
use rayon::ThreadPool;

/// Columns (images x pixels) one backward-weight GEMM reduces over (its `k`).
const BWD_W_COLS: usize = 2048;
/// From this many output pixels per image on, the backward-weight GEMM reads
/// `dy_n` in place (one GEMM per image) instead of stacking several images.
const BWD_W_PER_IMAGE_P: usize = 256;
/// Most partial `[O, CK]` blocks the backward-weight pass keeps (bounds its
/// memory for large batches; more images per chunk instead).
const BWD_W_MAX_CHUNKS: usize = 32;
/// Task count below which a pass also splits over output / input channels.
const MIN_TASKS: usize = 8;

fn shape_err(msg: String) -> Error {
    Error::Shape(format!("cpu conv2d: {msg}"))
}

/// Checks that the derived fields of `s` agree with the formula and that the
/// slices have the lengths the shape needs.
fn check_shape(s: &ConvShape) -> Result<()> {
    let ConvShape {
        n,
        c,
        h,
        w,
        o,
        kh,
        kw,
        stride,
        pad,
        oh,
        ow,
    } = *s;
    if n == 0 || c == 0 || h == 0 || w == 0 || o == 0 || kh == 0 || kw == 0 || stride == 0 {
        return Err(shape_err(format!("zero dimension in {s:?}")));
    }
    let (hp, wp) = (h as u64 + 2 * pad as u64, w as u64 + 2 * pad as u64);
    if hp < kh as u64 || wp < kw as u64 {
        return Err(shape_err(format!(
            "kernel larger than padded input in {s:?}"
        )));
    }
    if oh as u64 != (hp - kh as u64) / stride as u64 + 1
        || ow as u64 != (wp - kw as u64) / stride as u64 + 1
    {
        return Err(shape_err(format!(
            "output size inconsistent with the formula in {s:?}"
        )));
    }
    Ok(())
}

fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(shape_err(format!(
            "{what} has {got} elements, shape needs {want}"
        )));
    }
    Ok(())
}

/// Sizes derived from a shape, as `usize`.
#[derive(Clone, Copy)]
struct Dims {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

impl Dims {
    fn new(s: &ConvShape) -> Self {
        let u = |v: u32| v as usize;
        Self {
            n: u(s.n),
            c: u(s.c),
            h: u(s.h),
            w: u(s.w),
            o: u(s.o),
            kh: u(s.kh),
            kw: u(s.kw),
            stride: u(s.stride),
            pad: u(s.pad),
            oh: u(s.oh),
            ow: u(s.ow),
        }
    }
    /// Kernel taps per channel.
    fn kk(&self) -> usize {
        self.kh * self.kw
    }
    /// Rows of the im2col matrix.
    fn ck(&self) -> usize {
        self.c * self.kk()
    }
    /// Output pixels per image.
    fn p(&self) -> usize {
        self.oh * self.ow
    }
    /// Input pixels per channel.
    fn hw(&self) -> usize {
        self.h * self.w
    }
    /// A 1x1, stride-1, unpadded convolution: im2col is the identity.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }
    /// Input column `iw` read by output column `ow` at kernel column `kw`, if inside.
    #[inline]
    fn in_col(&self, ow: usize, kw: usize) -> Option<usize> {
        (ow * self.stride + kw)
            .checked_sub(self.pad)
            .filter(|&i| i < self.w)
    }
    /// Input row read by output row `oh` at kernel row `kh`, if inside.
    #[inline]
    fn in_row(&self, oh: usize, kh: usize) -> Option<usize> {
        (oh * self.stride + kh)
            .checked_sub(self.pad)
            .filter(|&i| i < self.h)
    }
    /// For stride 1: the output columns `[lo, hi)` whose input column at kernel
    /// column `kw` lies inside the image.
    #[inline]
    fn valid_cols_s1(&self, kw: usize) -> (usize, usize) {
        let lo = self.pad.saturating_sub(kw).min(self.ow);
        let hi = (self.w + self.pad).saturating_sub(kw).min(self.ow).max(lo);
        (lo, hi)
    }
}

/// im2col of channels `c0..c0+nc` of one image `x_n [C, H, W]`: row
/// `(c - c0)*KK + kh*KW + kw`, column `oh*OW + ow` of `col` (row stride `ld`)
/// gets `x[c, oh*stride + kh - pad, ow*stride + kw - pad]` (0 outside the image).
fn im2col<T: Scalar>(col: &mut [T], ld: usize, x_n: &[T], d: &Dims, c0: usize, nc: usize) {
    let (p, ow) = (d.p(), d.ow);
    for c in 0..nc {
        let xc = &x_n[(c0 + c) * d.hw()..(c0 + c + 1) * d.hw()];
        for kh in 0..d.kh {
            for kw in 0..d.kw {
                let r = (c * d.kh + kh) * d.kw + kw;
                let row = &mut col[r * ld..r * ld + p];
                for oh in 0..d.oh {
                    let dst = &mut row[oh * ow..(oh + 1) * ow];
                    let Some(ih) = d.in_row(oh, kh) else {
                        dst.fill(T::ZERO);
                        continue;
                    };
                    let xr = &xc[ih * d.w..(ih + 1) * d.w];
                    if d.stride == 1 {
                        let (lo, hi) = d.valid_cols_s1(kw);
                        dst[..lo].fill(T::ZERO);
                        if hi > lo {
                            let i0 = lo + kw - d.pad;
                            dst[lo..hi].copy_from_slice(&xr[i0..i0 + (hi - lo)]);
                        }
                        dst[hi..].fill(T::ZERO);
                    } else {
                        for (o, v) in dst.iter_mut().enumerate() {
                            *v = d.in_col(o, kw).map_or(T::ZERO, |i| xr[i]);
                        }
                    }
                }
            }
        }
    }
}

/// col2im (the adjoint of [`im2col`]): adds row `(c - c0)*KK + kh*KW + kw`,
/// column `oh*OW + ow` of `dcol` (row stride `P`) to
/// `dx[c - c0, oh*stride + kh - pad, ow*stride + kw - pad]` where inside the image.
/// `dx` holds channels `c0..c0+nc` of one image.
fn col2im<T: Scalar>(dx: &mut [T], dcol: &[T], d: &Dims, nc: usize) {
    let (p, ow) = (d.p(), d.ow);
    for c in 0..nc {
        let xc = &mut dx[c * d.hw()..(c + 1) * d.hw()];
        for kh in 0..d.kh {
            for kw in 0..d.kw {
                let r = (c * d.kh + kh) * d.kw + kw;
                let row = &dcol[r * p..(r + 1) * p];
                for oh in 0..d.oh {
                    let Some(ih) = d.in_row(oh, kh) else { continue };
                    let src = &row[oh * ow..(oh + 1) * ow];
                    let xr = &mut xc[ih * d.w..(ih + 1) * d.w];
                    if d.stride == 1 {
                        let (lo, hi) = d.valid_cols_s1(kw);
                        if hi > lo {
                            let i0 = lo + kw - d.pad;
                            for (a, &b) in xr[i0..i0 + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                                *a += b;
                            }
                        }
                    } else {
                        for (o, &v) in src.iter().enumerate() {
                            if let Some(i) = d.in_col(o, kw) {
                                xr[i] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Block size (in channels) so that `n_outer * ceil(total/block)` reaches
/// [`MIN_TASKS`] tasks; depends only on the shape.
fn split_block(total: usize, n_outer: usize) -> usize {
    if n_outer >= MIN_TASKS {
        return total;
    }
    let parts = MIN_TASKS.div_ceil(n_outer).min(total);
    total.div_ceil(parts)
}

/// `y (=|+=) conv(x, W) + b`: x `[N, C, H, W]`, w `[O, C, KH, KW]`, b `[O]`,
/// y `[N, O, OH, OW]`. Tasks: one per (image, block of output channels).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_fwd<T: Scalar>(
    pool: &ThreadPool,
    y: &mut [T],
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    s: &ConvShape,
    acc: bool,
) -> Result<()> {
    check_shape(s)?;
    check_len("x", x.len(), s.x_len())?;
    check_len("y", y.len(), s.y_len())?;
    check_len("weight", w.len(), s.w_len())?;
    if let Some(b) = b {
        check_len("bias", b.len(), s.o as usize)?;
    }
    let d = Dims::new(s);
    let (ck, p) = (d.ck(), d.p());
    let ob = split_block(d.o, d.n);
    let mut status = Ok(());
    pool.install(|| {
        status = y
            .par_chunks_mut(d.o * p)
            .zip(x.par_chunks(d.c * d.hw()))
            .try_for_each(|(y_n, x_n)| {
                y_n.par_chunks_mut(ob * p)
                    .enumerate()
                    .try_for_each(|(bi, y_b)| {
                        let o0 = bi * ob;
                        let rows = y_b.len() / p;
                        let wb = Mat::rm(&w[o0 * ck..(o0 + rows) * ck], ck);
                        if d.is_pointwise() {
                            gemm(rows, p, ck, y_b, p, wb, Mat::rm(x_n, p), acc)?;
                        } else {
                            with_scratch(ck * p, |col: &mut [T]| {
                                im2col(col, p, x_n, &d, 0, d.c);
                                gemm(rows, p, ck, y_b, p, wb, Mat::rm(col, p), acc)
                            })?;
                        }
                        if let Some(b) = b {
                            for (r, yr) in y_b.chunks_mut(p).enumerate() {
                                let bo = b[o0 + r];
                                yr.iter_mut().for_each(|v| *v += bo);
                            }
                        }
                        Ok(())
                    })
            });
    });
    status
}

/// `dx (=|+=) conv_transpose(dy, W)`: per image `dcol = W^T dy_n`, then col2im.
/// Tasks: one per (image, block of input channels).
pub fn conv2d_bwd_input<T: Scalar>(
    pool: &ThreadPool,
    dx: &mut [T],
    dy: &[T],
    w: &[T],
    s: &ConvShape,
    acc: bool,
) -> Result<()> {
    check_shape(s)?;
    check_len("dx", dx.len(), s.x_len())?;
    check_len("dy", dy.len(), s.y_len())?;
    check_len("weight", w.len(), s.w_len())?;
    let d = Dims::new(s);
    let (ck, kk, p, hw) = (d.ck(), d.kk(), d.p(), d.hw());
    let cb = split_block(d.c, d.n);
    let mut status = Ok(());
    pool.install(|| {
        status = dx
            .par_chunks_mut(d.c * hw)
            .zip(dy.par_chunks(d.o * p))
            .try_for_each(|(dx_n, dy_n)| {
                dx_n.par_chunks_mut(cb * hw)
                    .enumerate()
                    .try_for_each(|(bi, dx_b)| {
                        let c0 = bi * cb;
                        let nc = dx_b.len() / hw;
                        // W^T restricted to rows c0*KK..(c0+nc)*KK: element (r, o) at
                        // w[o*CK + c0*KK + r].
                        let wt = Mat::rm_t(&w[c0 * kk..], ck);
                        let dyn_ = Mat::rm(dy_n, p);
                        if d.is_pointwise() {
                            gemm(nc, p, d.o, dx_b, p, wt, dyn_, acc)
                        } else {
                            with_scratch(nc * kk * p, |dcol: &mut [T]| {
                                gemm(nc * kk, p, d.o, dcol, p, wt, dyn_, false)?;
                                if !acc {
                                    dx_b.fill(T::ZERO);
                                }
                                col2im(dx_b, dcol, &d, nc);
                                Ok(())
                            })
                        }
                    })
            });
    });
    status
}

/// How the backward-weight pass cuts its work: `chunks` groups of `g` images
/// (the last may be smaller) times `ncb` blocks of `cb` input channels; inside a
/// chunk, one GEMM per `sub` images (accumulated in order). All shape-only.
#[derive(Clone, Copy, Debug)]
struct BwdWPlan {
    sub: usize,
    g: usize,
    chunks: usize,
    cb: usize,
    ncb: usize,
}

impl BwdWPlan {
    fn new(d: &Dims) -> Self {
        let sub = if d.p() >= BWD_W_PER_IMAGE_P {
            1
        } else {
            BWD_W_COLS.div_ceil(d.p()).clamp(1, d.n)
        };
        let g = d.n.div_ceil(BWD_W_MAX_CHUNKS).max(sub).div_ceil(sub) * sub;
        let g = g.min(d.n);
        let chunks = d.n.div_ceil(g);
        let cb = split_block(d.c, chunks);
        let ncb = d.c.div_ceil(cb);
        Self {
            sub,
            g,
            chunks,
            cb,
            ncb,
        }
    }
}

/// `dW = sum_n dy_n (*) x_n` (overwritten) and, if given, `db[o] = sum_{n,p} dy`
/// (overwritten). `partials` is reusable scratch (grown as needed). Images are
/// summed in fixed chunks; each (chunk, channel block) task computes
/// `dy_chunk [O, G*P] * col(x_chunk)^T [G*P, cb*KK]` into its own partial block,
/// and the partials are added in chunk order.
pub fn conv2d_bwd_weight<T: Scalar>(
    pool: &ThreadPool,
    partials: &mut Vec<T>,
    dw: &mut [T],
    db: Option<&mut [T]>,
    dy: &[T],
    x: &[T],
    s: &ConvShape,
) -> Result<()> {
    check_shape(s)?;
    check_len("x", x.len(), s.x_len())?;
    check_len("dy", dy.len(), s.y_len())?;
    check_len("dw", dw.len(), s.w_len())?;
    if let Some(db) = db.as_deref() {
        check_len("db", db.len(), s.o as usize)?;
    }
    let d = Dims::new(s);
    let (ck, kk, p, o) = (d.ck(), d.kk(), d.p(), d.o);
    let plan = BwdWPlan::new(&d);
    let need = plan.chunks * o * ck;
    if partials.len() < need {
        partials.resize(need, T::ZERO);
    }
    // Partial block of (chunk i, channel block j): contiguous [O, nc_j*KK] at
    // i*O*CK + O*c0_j*KK.
    let mut blocks: Vec<(usize, usize, &mut [T])> = Vec::with_capacity(plan.chunks * plan.ncb);
    let mut rest = &mut partials[..need];
    for i in 0..plan.chunks {
        for j in 0..plan.ncb {
            let nc = plan.cb.min(d.c - j * plan.cb);
            let (blk, r) = rest.split_at_mut(o * nc * kk);
            blocks.push((i, j, blk));
            rest = r;
        }
    }
    pool.install(|| {
        blocks.par_iter_mut().try_for_each(|(i, j, blk)| {
            let n0 = *i * plan.g;
            let g = plan.g.min(d.n - n0);
            let c0 = *j * plan.cb;
            let nc = blk.len() / (o * kk);
            if plan.sub == 1 {
                // One GEMM per image straight from dy_n: blk (=|+=) dy_n col(x_n)^T.
                return with_scratch(nc * kk * p, |col: &mut [T]| {
                    for gi in 0..g {
                        let n = n0 + gi;
                        im2col(
                            col,
                            p,
                            &x[n * d.c * d.hw()..(n + 1) * d.c * d.hw()],
                            &d,
                            c0,
                            nc,
                        );
                        let dy_n = Mat::rm(&dy[n * o * p..(n + 1) * o * p], p);
                        gemm(o, nc * kk, p, blk, nc * kk, dy_n, Mat::rm_t(col, p), gi > 0)?;
                    }
                    Ok(())
                });
            }
            // Stacks of `sub` images: blk (=|+=) dy_stack [O, sub*P] col_stack^T.
            let cols_max = plan.sub * p;
            with_scratch(nc * kk * cols_max + o * cols_max, |buf: &mut [T]| {
                let (col, dyc) = buf.split_at_mut(nc * kk * cols_max);
                for (si, s0) in (n0..n0 + g).step_by(plan.sub).enumerate() {
                    let gs = plan.sub.min(n0 + g - s0);
                    let cols = gs * p;
                    for gi in 0..gs {
                        let n = s0 + gi;
                        let x_n = &x[n * d.c * d.hw()..(n + 1) * d.c * d.hw()];
                        im2col(&mut col[gi * p..], cols, x_n, &d, c0, nc);
                        let dy_n = &dy[n * o * p..(n + 1) * o * p];
                        for oo in 0..o {
                            dyc[oo * cols + gi * p..oo * cols + (gi + 1) * p]
                                .copy_from_slice(&dy_n[oo * p..(oo + 1) * p]);
                        }
                    }
                    let (dyc, col) = (
                        Mat::rm(&dyc[..o * cols], cols),
                        Mat::rm_t(&col[..nc * kk * cols], cols),
                    );
                    gemm(o, nc * kk, cols, blk, nc * kk, dyc, col, si > 0)?;
                }
                Ok(())
            })
        })
    })?;
    drop(blocks);
    pool.install(|| {
        // dW[o, c*KK + t] = sum_i partial(i, block of c)[o, (c - c0)*KK + t], i ascending.
        let parts = &partials[..need];
        dw.par_chunks_mut(ck).enumerate().for_each(|(oo, row)| {
            for j in 0..plan.ncb {
                let c0 = j * plan.cb;
                let nc = plan.cb.min(d.c - c0);
                let wdt = nc * kk;
                let dst = &mut row[c0 * kk..c0 * kk + wdt];
                for i in 0..plan.chunks {
                    let base = i * o * ck + o * c0 * kk + oo * wdt;
                    let src = &parts[base..base + wdt];
                    if i == 0 {
                        dst.copy_from_slice(src);
                    } else {
                        dst.iter_mut().zip(src).for_each(|(a, &b)| *a += b);
                    }
                }
            }
        });
    });
    match db {
        Some(db) => conv2d_bias_grad(pool, db, dy, s),
        None => Ok(()),
    }
}

/// `db[o] = sum_{n,p} dy[n, o, p]` (overwritten), accumulated in f64, n ascending.
pub fn conv2d_bias_grad<T: Scalar>(
    pool: &ThreadPool,
    db: &mut [T],
    dy: &[T],
    s: &ConvShape,
) -> Result<()> {
    check_shape(s)?;
    check_len("dy", dy.len(), s.y_len())?;
    check_len("db", db.len(), s.o as usize)?;
    let d = Dims::new(s);
    let (p, o) = (d.p(), d.o);
    pool.install(|| {
        db.par_iter_mut().enumerate().for_each(|(oo, v)| {
            let mut acc = 0.0f64;
            for nn in 0..d.n {
                let base = (nn * o + oo) * p;
                acc += dy[base..base + p].iter().map(|t| t.to_f64()).sum::<f64>();
            }
            *v = T::from_f64(acc);
        })
    });
    Ok(())
}
