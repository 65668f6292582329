//! Fully connected layer: `y = x W^T + b`, x `[N, F]`, W `[K, F]` (PyTorch
//! layout), b `[K]`, y `[N, K]`. Three GEMMs; derivation in
//! `docs/derivations/conv.md` §"Linear layer". Deterministic for any thread
//! count (see [`super::gemm::gemm_par`]).

use super::gemm::{gemm_par, Mat};
use crate::backend::*;
use crate::error::{Error, Result};
use rayon::prelude::*;
use rayon::ThreadPool;

fn check(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::Shape(format!(
            "cpu linear: {what} has {got} elements, shape needs {want}"
        )));
    }
    Ok(())
}

fn dims(s: &LinearShape) -> (usize, usize, usize) {
    (s.n as usize, s.f as usize, s.k as usize)
}

/// `y (=|+=) x W^T + b`.
pub fn linear_fwd<T: Scalar>(
    pool: &ThreadPool,
    y: &mut [T],
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    s: &LinearShape,
    acc: bool,
) -> Result<()> {
    let (n, f, k) = dims(s);
    check("x", x.len(), n * f)?;
    check("y", y.len(), n * k)?;
    check("weight", w.len(), k * f)?;
    if let Some(b) = b {
        check("bias", b.len(), k)?;
    }
    gemm_par(pool, n, k, f, y, k, Mat::rm(x, f), Mat::rm_t(w, f), acc)?;
    if let (Some(b), true) = (b, k > 0) {
        for row in y.chunks_mut(k) {
            row.iter_mut().zip(b).for_each(|(v, &bb)| *v += bb);
        }
    }
    Ok(())
}

/// `dx (=|+=) dy W`.
pub fn linear_bwd_input<T: Scalar>(
    pool: &ThreadPool,
    dx: &mut [T],
    dy: &[T],
    w: &[T],
    s: &LinearShape,
    acc: bool,
) -> Result<()> {
    let (n, f, k) = dims(s);
    check("dx", dx.len(), n * f)?;
    check("dy", dy.len(), n * k)?;
    check("weight", w.len(), k * f)?;
    gemm_par(pool, n, f, k, dx, f, Mat::rm(dy, k), Mat::rm(w, f), acc)
}

/// `dW = dy^T x`, `db = sum_n dy` (both overwritten).
pub fn linear_bwd_weight<T: Scalar>(
    pool: &ThreadPool,
    dw: &mut [T],
    db: Option<&mut [T]>,
    dy: &[T],
    x: &[T],
    s: &LinearShape,
) -> Result<()> {
    let (n, f, k) = dims(s);
    check("dw", dw.len(), k * f)?;
    check("dy", dy.len(), n * k)?;
    check("x", x.len(), n * f)?;
    if let Some(db) = db.as_deref() {
        check("db", db.len(), k)?;
    }
    gemm_par(pool, k, f, n, dw, f, Mat::rm_t(dy, k), Mat::rm(x, f), false)?;
    match db {
        Some(db) => linear_bias_grad(pool, db, dy, s),
        None => Ok(()),
    }
}

/// `db = sum_n dy` (overwritten), summed over the batch in f64, n ascending.
pub fn linear_bias_grad<T: Scalar>(
    pool: &ThreadPool,
    db: &mut [T],
    dy: &[T],
    s: &LinearShape,
) -> Result<()> {
    let (n, _, k) = dims(s);
    check("dy", dy.len(), n * k)?;
    check("db", db.len(), k)?;
    pool.install(|| {
        db.par_iter_mut().enumerate().for_each(|(kk, v)| {
            let acc: f64 = (0..n).map(|i| dy[i * k + kk].to_f64()).sum();
            *v = T::from_f64(acc);
        })
    });
    Ok(())
}
