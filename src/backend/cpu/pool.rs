//! Square-window average / max pooling: k x k windows, stride s, no padding, floor
//! (`OH = (H - k)/s + 1`); windows overlap when s < k, and rows / columns past the
//! last window are covered by none. Average divides by k*k; max ties go to the first
//! element of the window in row-major order. The ConvNet's 2x2 stride-2 windows take
//! specialised loops (the same arithmetic, unrolled). Derivation in
//! `docs/derivations/act_pool.md` §"Pooling".

use crate::backend::*;
use crate::error::{Error, Result};
use rayon::prelude::*;
use rayon::ThreadPool;

fn check(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::Shape(format!(
            "cpu pool: {what} has {got} elements, shape needs {want}"
        )));
    }
    Ok(())
}

/// The sizes of a validated [`PoolShape`], as `usize`.
#[derive(Clone, Copy)]
struct Dims {
    /// Input height and width.
    h: usize,
    w: usize,
    /// Output height and width.
    oh: usize,
    ow: usize,
    /// Window size and stride.
    k: usize,
    s: usize,
}

impl Dims {
    fn new(op: &str, s: &PoolShape) -> Result<Self> {
        s.validate(op)?;
        Ok(Self {
            h: s.h as usize,
            w: s.w as usize,
            oh: s.oh() as usize,
            ow: s.ow() as usize,
            k: s.k as usize,
            s: s.stride as usize,
        })
    }
    /// The ConvNet's 2x2 stride-2 window (specialised loops).
    fn is_2x2(&self) -> bool {
        self.k == 2 && self.s == 2
    }
    /// The same dims with the 2x2 stride-2 window as literals: the inlined generic
    /// loops are then unrolled (callers check [`Dims::is_2x2`] first).
    #[inline(always)]
    fn fixed_2x2(self) -> Self {
        Self { k: 2, s: 2, ..self }
    }
    /// Offset within the plane of the top-left input of output `(i, j)`.
    #[inline(always)]
    fn base(&self, i: usize, j: usize) -> usize {
        i * self.s * self.w + j * self.s
    }
    /// `1/(k*k)`.
    fn inv<T: Scalar>(&self) -> T {
        T::from_f64(1.0 / (self.k * self.k) as f64)
    }
}

/// Offset (within the plane) of the element selected by max pooling for the window
/// whose top-left input is `base`: the first maximum in row-major window order.
#[inline(always)]
fn argmax<T: Scalar>(xp: &[T], d: &Dims, base: usize) -> usize {
    let mut best = base;
    for di in 0..d.k {
        let row = base + di * d.w;
        for c in row..row + d.k {
            if xp[c] > xp[best] {
                best = c;
            }
        }
    }
    best
}

/// Sum (row-major order, from zero) of the window whose top-left input is `base`.
#[inline(always)]
fn wsum<T: Scalar>(xp: &[T], d: &Dims, base: usize) -> T {
    let mut acc = T::ZERO;
    for di in 0..d.k {
        let row = base + di * d.w;
        for &v in &xp[row..row + d.k] {
            acc += v;
        }
    }
    acc
}

/// `y = pool(x)`: x `[planes, H, W]`, y `[planes, OH, OW]`; one task per plane.
pub fn pool_fwd<T: Scalar>(
    pool: &ThreadPool,
    y: &mut [T],
    x: &[T],
    s: &PoolShape,
    kind: PoolKind,
) -> Result<()> {
    let d = Dims::new("cpu pool_fwd", s)?;
    check("x", x.len(), s.x_len())?;
    check("y", y.len(), s.y_len())?;
    if y.is_empty() {
        return Ok(());
    }
    let inv = d.inv::<T>();
    pool.install(|| {
        y.par_chunks_mut(d.oh * d.ow)
            .zip(x.par_chunks(d.h * d.w))
            .with_min_len(PLANES_PER_TASK)
            .for_each(|(yp, xp)| match kind {
                PoolKind::Avg if d.is_2x2() => avg_plane(yp, xp, d.w, d.ow),
                PoolKind::Avg => fwd_plane(yp, &d, |b| inv * wsum(xp, &d, b)),
                PoolKind::Max if d.is_2x2() => {
                    let d = d.fixed_2x2();
                    fwd_plane(yp, &d, |b| xp[argmax(xp, &d, b)])
                }
                PoolKind::Max => fwd_plane(yp, &d, |b| xp[argmax(xp, &d, b)]),
            })
    });
    Ok(())
}

/// `yp[i, j] = f(top-left offset of window (i, j))` for one plane.
#[inline(always)]
fn fwd_plane<T: Scalar>(yp: &mut [T], d: &Dims, f: impl Fn(usize) -> T) {
    for (i, yr) in yp.chunks_exact_mut(d.ow).enumerate() {
        for (j, o) in yr.iter_mut().enumerate() {
            *o = f(d.base(i, j));
        }
    }
}

/// 2x2 stride-2 average pooling of one plane (`ow` outputs per row; rows of `w`
/// inputs).
#[inline]
fn avg_plane<T: Scalar>(yp: &mut [T], xp: &[T], w: usize, ow: usize) {
    let quarter = T::from_f64(0.25);
    for (yr, rows) in yp.chunks_exact_mut(ow).zip(xp.chunks_exact(2 * w)) {
        let (r0, r1) = rows.split_at(w);
        for ((o, a), b) in yr
            .iter_mut()
            .zip(r0.chunks_exact(2))
            .zip(r1.chunks_exact(2))
        {
            *o = quarter * (((a[0] + a[1]) + b[0]) + b[1]);
        }
    }
}

/// Planes per parallel task of the pooling ops (a plane is often only a few KB).
const PLANES_PER_TASK: usize = 8;

/// `dx = pool^T(dy)` (overwritten): each element receives, from every window that
/// covers it (row-major window order), `dy/(k*k)` (avg) or `dy` if it is that
/// window's arg-max (max); elements no window covers get 0.
pub fn pool_bwd<T: Scalar>(
    pool: &ThreadPool,
    dx: &mut [T],
    dy: &[T],
    x: &[T],
    s: &PoolShape,
    kind: PoolKind,
) -> Result<()> {
    let d = Dims::new("cpu pool_bwd", s)?;
    check("dx", dx.len(), s.x_len())?;
    check("dy", dy.len(), s.y_len())?;
    check("x", x.len(), s.x_len())?;
    if dx.is_empty() {
        return Ok(());
    }
    let inv = d.inv::<T>();
    pool.install(|| {
        dx.par_chunks_mut(d.h * d.w)
            .zip(x.par_chunks(d.h * d.w))
            .zip(dy.par_chunks(d.oh * d.ow))
            .with_min_len(PLANES_PER_TASK)
            .for_each(|((dxp, xp), dyp)| match kind {
                PoolKind::Avg if d.is_2x2() => avg_plane_bwd(dxp, dyp, d.h, d.w, d.oh, d.ow),
                PoolKind::Avg => bwd_plane(dxp, dyp, &d, |dxp, b, g| {
                    let v = inv * g;
                    for di in 0..d.k {
                        let row = b + di * d.w;
                        for e in &mut dxp[row..row + d.k] {
                            *e += v;
                        }
                    }
                }),
                PoolKind::Max if d.is_2x2() => {
                    let d = d.fixed_2x2();
                    bwd_plane(dxp, dyp, &d, |dxp, b, g| dxp[argmax(xp, &d, b)] += g)
                }
                PoolKind::Max => bwd_plane(dxp, dyp, &d, |dxp, b, g| dxp[argmax(xp, &d, b)] += g),
            })
    });
    Ok(())
}

/// Zeroes `dxp`, then scatters each window's `dy` with `f(dxp, top-left offset, dy)`
/// in row-major window order (the order the gathering CUDA kernel sums in).
#[inline(always)]
fn bwd_plane<T: Scalar>(dxp: &mut [T], dyp: &[T], d: &Dims, f: impl Fn(&mut [T], usize, T)) {
    dxp.fill(T::ZERO);
    for (i, gr) in dyp.chunks_exact(d.ow).enumerate() {
        for (j, &g) in gr.iter().enumerate() {
            f(dxp, d.base(i, j), g);
        }
    }
}

/// Adjoint of [`avg_plane`] (overwrites `dxp`; the uncovered trailing row and
/// column of an odd plane get 0).
#[inline]
fn avg_plane_bwd<T: Scalar>(dxp: &mut [T], dyp: &[T], h: usize, w: usize, oh: usize, ow: usize) {
    let quarter = T::from_f64(0.25);
    let (covered, rest) = dxp.split_at_mut(2 * oh * w);
    rest.fill(T::ZERO);
    for (rows, gr) in covered.chunks_exact_mut(2 * w).zip(dyp.chunks_exact(ow)) {
        let (r0, r1) = rows.split_at_mut(w);
        for r in [r0, r1] {
            r[2 * ow..].fill(T::ZERO);
            for (pair, &g) in r.chunks_exact_mut(2).zip(gr) {
                let v = quarter * g;
                pair[0] = v;
                pair[1] = v;
            }
        }
    }
    debug_assert_eq!(dxp.len(), h * w);
}

/// Forward tangent `ydot = pool'(x) xdot` (avg: the window mean of `xdot`; max:
/// `xdot` at the arg-max of `x`).
pub fn pool_jvp<T: Scalar>(
    pool: &ThreadPool,
    ydot: &mut [T],
    x: &[T],
    xdot: &[T],
    s: &PoolShape,
    kind: PoolKind,
) -> Result<()> {
    let d = Dims::new("cpu pool_jvp", s)?;
    check("ydot", ydot.len(), s.y_len())?;
    check("x", x.len(), s.x_len())?;
    check("xdot", xdot.len(), s.x_len())?;
    if ydot.is_empty() {
        return Ok(());
    }
    let inv = d.inv::<T>();
    pool.install(|| {
        ydot.par_chunks_mut(d.oh * d.ow)
            .zip(x.par_chunks(d.h * d.w))
            .zip(xdot.par_chunks(d.h * d.w))
            .with_min_len(PLANES_PER_TASK)
            .for_each(|((yp, xp), tp)| match kind {
                PoolKind::Avg if d.is_2x2() => avg_plane(yp, tp, d.w, d.ow),
                PoolKind::Avg => fwd_plane(yp, &d, |b| inv * wsum(tp, &d, b)),
                PoolKind::Max if d.is_2x2() => {
                    let d = d.fixed_2x2();
                    fwd_plane(yp, &d, |b| tp[argmax(xp, &d, b)])
                }
                PoolKind::Max => fwd_plane(yp, &d, |b| tp[argmax(xp, &d, b)]),
            })
    });
    Ok(())
}
