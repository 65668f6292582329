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
    let quarter = T::from_f64(0.25);
    pool.install(|| {
        y.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(h * w))
            .for_each(|(yp, xp)| {
                for i in 0..oh {
                    for j in 0..ow {
                        yp[i * ow + j] = match kind {
                            PoolKind::Avg => quarter * wsum(xp, w, i, j),
                            PoolKind::Max => xp[argmax(xp, w, i, j)],
                        };
                    }
                }
            })
    });
    Ok(())
}

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
    let quarter = T::from_f64(0.25);
    pool.install(|| {
        dx.par_chunks_mut(h * w)
            .zip(x.par_chunks(h * w))
            .enumerate()
            .for_each(|(p, (dxp, xp))| {
                dxp.fill(T::ZERO);
                if oh * ow == 0 {
                    return;
                }
                let dyp = &dy[p * oh * ow..(p + 1) * oh * ow];
                for i in 0..oh {
                    for j in 0..ow {
                        let g = dyp[i * ow + j];
                        match kind {
                            PoolKind::Avg => {
                                let base = 2 * i * w + 2 * j;
                                let v = quarter * g;
                                for c in [base, base + 1, base + w, base + w + 1] {
                                    dxp[c] = v;
                                }
                            }
                            PoolKind::Max => dxp[argmax(xp, w, i, j)] = g,
                        }
                    }
                }
            })
    });
    Ok(())
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
