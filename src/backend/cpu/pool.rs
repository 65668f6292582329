//! 2x2 stride-2 average / max pooling (floor: a trailing odd row / column is not
//! covered). Max ties go to the first element of the window in row-major order.
//! Derivation in `docs/derivations/act_pool.md` §"Pooling".

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

/// Planes, input size, output size.
fn dims(s: &PoolShape) -> (usize, usize, usize, usize, usize) {
    let (h, w) = (s.h as usize, s.w as usize);
    (s.planes as usize, h, w, h / 2, w / 2)
}

/// Offset (within the plane) of the window element selected by max pooling for
/// output `(i, j)`: the first maximum in row-major window order.
#[inline]
fn argmax<T: Scalar>(xp: &[T], w: usize, i: usize, j: usize) -> usize {
    let base = 2 * i * w + 2 * j;
    let cand = [base, base + 1, base + w, base + w + 1];
    let mut best = cand[0];
    for &c in &cand[1..] {
        if xp[c] > xp[best] {
            best = c;
        }
    }
    best
}

/// Window sum (row-major order) of output `(i, j)`.
#[inline]
fn wsum<T: Scalar>(xp: &[T], w: usize, i: usize, j: usize) -> T {
    let base = 2 * i * w + 2 * j;
    xp[base] + xp[base + 1] + xp[base + w] + xp[base + w + 1]
}

/// `y = pool(x)`: x `[planes, H, W]`, y `[planes, H/2, W/2]`; one task per plane.
pub fn pool_fwd<T: Scalar>(
    pool: &ThreadPool,
    y: &mut [T],
    x: &[T],
    s: &PoolShape,
    kind: PoolKind,
) -> Result<()> {
    let (pl, h, w, oh, ow) = dims(s);
    check("x", x.len(), pl * h * w)?;
    check("y", y.len(), pl * oh * ow)?;
    if y.is_empty() {
        return Ok(());
    }
    pool.install(|| {
        y.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(h * w))
            .with_min_len(PLANES_PER_TASK)
            .for_each(|(yp, xp)| match kind {
                PoolKind::Avg => avg_plane(yp, xp, w, ow),
                PoolKind::Max => {
                    for i in 0..oh {
                        for j in 0..ow {
                            yp[i * ow + j] = xp[argmax(xp, w, i, j)];
                        }
                    }
                }
            })
    });
    Ok(())
}

/// Average pooling of one plane (`ow` outputs per row; rows of `w` inputs).
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

/// `dx = pool^T(dy)` (overwritten; max: all of `dy` to the arg-max of `x`;
/// uncovered elements get 0).
pub fn pool_bwd<T: Scalar>(
    pool: &ThreadPool,
    dx: &mut [T],
    dy: &[T],
    x: &[T],
    s: &PoolShape,
    kind: PoolKind,
) -> Result<()> {
    let (pl, h, w, oh, ow) = dims(s);
    check("dx", dx.len(), pl * h * w)?;
    check("dy", dy.len(), pl * oh * ow)?;
    check("x", x.len(), pl * h * w)?;
    if dx.is_empty() {
        return Ok(());
    }
    if oh * ow == 0 {
        dx.fill(T::ZERO);
        return Ok(());
    }
    pool.install(|| {
        dx.par_chunks_mut(h * w)
            .zip(x.par_chunks(h * w))
            .zip(dy.par_chunks(oh * ow))
            .with_min_len(PLANES_PER_TASK)
            .for_each(|((dxp, xp), dyp)| match kind {
                PoolKind::Avg => avg_plane_bwd(dxp, dyp, h, w, oh, ow),
                PoolKind::Max => {
                    dxp.fill(T::ZERO);
                    for i in 0..oh {
                        for j in 0..ow {
                            dxp[argmax(xp, w, i, j)] = dyp[i * ow + j];
                        }
                    }
                }
            })
    });
    Ok(())
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
    let (pl, h, w, oh, ow) = dims(s);
    check("ydot", ydot.len(), pl * oh * ow)?;
    check("x", x.len(), pl * h * w)?;
    check("xdot", xdot.len(), pl * h * w)?;
    if ydot.is_empty() {
        return Ok(());
    }
    let quarter = T::from_f64(0.25);
    pool.install(|| {
        ydot.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(h * w))
            .zip(xdot.par_chunks(h * w))
            .for_each(|((yp, xp), tp)| {
                for i in 0..oh {
                    for j in 0..ow {
                        yp[i * ow + j] = match kind {
                            PoolKind::Avg => quarter * wsum(tp, w, i, j),
                            PoolKind::Max => tp[argmax(xp, w, i, j)],
                        };
                    }
                }
            })
    });
    Ok(())
}
