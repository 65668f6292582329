//! Buffer copies, axpy, element-wise add and row gathers. Bounds are checked and reported as
//! [`Error::Shape`], never as a panic.

use crate::backend::*;
use crate::error::{Error, Result};
use rayon::prelude::*;
use rayon::ThreadPool;

/// Elements per parallel task of the element-wise loops (fixed, so the split
/// never depends on the thread count).
const CHUNK: usize = 1 << 14;

/// `dst[dst_off..dst_off+len] = src[src_off..src_off+len]`; errors when either
/// range leaves its buffer.
pub fn copy_range<T: Scalar>(
    dst: &mut [T],
    dst_off: usize,
    src: &[T],
    src_off: usize,
    len: usize,
) -> Result<()> {
    let (dl, sl) = (dst.len(), src.len());
    let oob = |what: &str, off: usize, have: usize| {
        Error::Shape(format!(
            "cpu copy_range: {what} range {off}+{len} outside a buffer of {have} elements"
        ))
    };
    let d_end = dst_off
        .checked_add(len)
        .filter(|&e| e <= dl)
        .ok_or_else(|| oob("destination", dst_off, dl))?;
    let s_end = src_off
        .checked_add(len)
        .filter(|&e| e <= sl)
        .ok_or_else(|| oob("source", src_off, sl))?;
    dst[dst_off..d_end].copy_from_slice(&src[src_off..s_end]);
    Ok(())
}

/// `y += a * x` (lengths checked by the caller).
pub fn axpy<T: Scalar>(pool: &ThreadPool, y: &mut [T], a: T, x: &[T]) {
    pool.install(|| {
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(yc, xc)| yc.iter_mut().zip(xc).for_each(|(v, &u)| *v += a * u));
    });
}

/// `y = a + b` element-wise (overwritten); errors when the lengths differ.
pub fn add<T: Scalar>(pool: &ThreadPool, y: &mut [T], a: &[T], b: &[T]) -> Result<()> {
    if a.len() != y.len() || b.len() != y.len() {
        return Err(Error::Shape(format!(
            "cpu add: y has {} elements, a {}, b {} (all must be equal)",
            y.len(),
            a.len(),
            b.len()
        )));
    }
    pool.install(|| {
        y.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .for_each(|((yc, ac), bc)| {
                for ((v, &p), &q) in yc.iter_mut().zip(ac).zip(bc) {
                    *v = p + q;
                }
            })
    });
    Ok(())
}

/// `dst[i*row_len..(i+1)*row_len] = src[rows[i]*row_len..(rows[i]+1)*row_len]`;
/// errors when `dst` is not `rows.len() * row_len` long or a row lies outside `src`.
pub fn gather_rows<T: Scalar>(
    dst: &mut [T],
    src: &[T],
    rows: &[u32],
    row_len: usize,
) -> Result<()> {
    let want = rows.len().checked_mul(row_len);
    if want != Some(dst.len()) {
        return Err(Error::Shape(format!(
            "cpu gather_rows: destination has {} elements, {} rows of {row_len} need {}",
            dst.len(),
            rows.len(),
            rows.len().saturating_mul(row_len)
        )));
    }
    if row_len == 0 {
        return Ok(());
    }
    let avail = src.len() / row_len;
    if let Some((i, &r)) = rows.iter().enumerate().find(|(_, &r)| r as usize >= avail) {
        return Err(Error::Shape(format!(
            "cpu gather_rows: row index {r} (entry {i}) outside a source of {avail} rows of {row_len}"
        )));
    }
    for (d, &r) in dst.chunks_mut(row_len).zip(rows) {
        let r = r as usize;
        d.copy_from_slice(&src[r * row_len..(r + 1) * row_len]);
    }
    Ok(())
}
