//! GEMM entry point of the CPU backend, over the `gemm` crate, generic over the
//! crate's [`Scalar`] (f32 / f64 dispatched by `TypeId`; any other element type
//! falls back to a plain triple loop).
//!
//! `C (=|+=) A B` with `A` `[m, k]`, `B` `[k, n]`, `C` `[m, n]`, each addressed by
//! a row stride and a column stride (in elements), so transposes are free.
//!
//! Determinism: the `gemm` crate is always called with `Parallelism::None`, so the
//! summation order of one call depends only on its shape (m, n, k), never on the
//! number of threads. [`gemm_par`] parallelises by splitting the columns of `C`
//! into blocks whose width depends only on the shape, again independent of the
//! thread count.

use crate::backend::Scalar;
use crate::error::{Error, Result};
use rayon::prelude::*;
use rayon::ThreadPool;
use std::any::TypeId;

/// A strided read-only matrix operand: element `(i, j)` at `data[i*rs + j*cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, T> {
    /// Backing storage.
    pub data: &'a [T],
    /// Row stride in elements.
    pub rs: usize,
    /// Column stride in elements.
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// Row-major `[rows, cols]` matrix with leading dimension `ld` (row stride).
    pub fn rm(data: &'a [T], ld: usize) -> Self {
        Self {
            data,
            rs: ld,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with leading dimension `ld`.
    pub fn rm_t(data: &'a [T], ld: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: ld,
        }
    }
}

/// Largest index touched by a `rows x cols` matrix with strides `rs`, `cs`, plus one
/// (0 for an empty matrix).
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

fn check_operand(
    what: &str,
    len: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
) -> Result<()> {
    let need = extent(rows, cols, rs, cs);
    if need > len {
        return Err(Error::Shape(format!(
            "gemm: operand {what} ({rows}x{cols}, strides {rs},{cs}) needs {need} elements, has {len}"
        )));
    }
    Ok(())
}

/// `C (=|+=) A B` on the calling thread: `A` `[m, k]`, `B` `[k, n]`, `C` `[m, n]`
/// row-major with leading dimension `ldc`. `acc = true` adds to `C`.
/// Errors (never panics) when an operand is too short for its strides.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Scalar>(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [T],
    ldc: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    acc: bool,
) -> Result<()> {
    check_operand("C", c.len(), m, n, ldc, 1)?;
    check_operand("A", a.data.len(), m, k, a.rs, a.cs)?;
    check_operand("B", b.data.len(), k, n, b.rs, b.cs)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !acc {
            for i in 0..m {
                c[i * ldc..i * ldc + n].fill(T::ZERO);
            }
        }
        return Ok(());
    }
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        let c: &mut [f32] = cast_mut(c);
        // SAFETY: extents checked above.
        unsafe {
            raw::<f32>(
                m,
                n,
                k,
                c.as_mut_ptr(),
                ldc,
                cast(a.data),
                a.rs,
                a.cs,
                cast(b.data),
                b.rs,
                b.cs,
                acc,
            )
        };
    } else if TypeId::of::<T>() == TypeId::of::<f64>() {
        let c: &mut [f64] = cast_mut(c);
        // SAFETY: extents checked above.
        unsafe {
            raw::<f64>(
                m,
                n,
                k,
                c.as_mut_ptr(),
                ldc,
                cast(a.data),
                a.rs,
                a.cs,
                cast(b.data),
                b.rs,
                b.cs,
                acc,
            )
        };
    } else {
        naive(m, n, k, c, ldc, a, b, acc);
    }
    Ok(())
}

/// [`gemm()`] spread over `pool`: the columns of `C` are cut into blocks whose width
/// depends only on `(m, n, k)`, one single-threaded GEMM per block, so the result
/// is bit-identical for every thread count.
#[allow(clippy::too_many_arguments)]
pub fn gemm_par<T: Scalar>(
    pool: &ThreadPool,
    m: usize,
    n: usize,
    k: usize,
    c: &mut [T],
    ldc: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    acc: bool,
) -> Result<()> {
    check_operand("C", c.len(), m, n, ldc, 1)?;
    check_operand("A", a.data.len(), m, k, a.rs, a.cs)?;
    check_operand("B", b.data.len(), k, n, b.rs, b.cs)?;
    // Small products are not worth a fork.
    const MIN_WORK: usize = 1 << 21;
    const MIN_BLOCK: usize = 64;
    if m * n * k < MIN_WORK || n < 2 * MIN_BLOCK {
        return gemm(m, n, k, c, ldc, a, b, acc);
    }
    // Aim for ~16 blocks (plenty for load balance on any small machine) of at
    // least MIN_BLOCK columns, a multiple of 16 for the micro-kernels.
    let nb = (n.div_ceil(16)).max(MIN_BLOCK).div_ceil(16) * 16;
    let blocks = n.div_ceil(nb);
    if TypeId::of::<T>() != TypeId::of::<f32>() && TypeId::of::<T>() != TypeId::of::<f64>() {
        return gemm(m, n, k, c, ldc, a, b, acc);
    }
    // Tasks write disjoint column blocks of C through a raw pointer (no
    // overlapping `&mut` slices are formed).
    let cptr = SendPtr(c.as_mut_ptr());
    pool.install(|| {
        (0..blocks).into_par_iter().for_each(|bi| {
            let j0 = bi * nb;
            let w = nb.min(n - j0);
            let bs = &b.data[j0 * b.cs..];
            // SAFETY: the extents of C, A, B were checked above for the whole
            // product; block `bi` reads columns j0..j0+w of B (inside `bs`) and
            // writes only columns j0..j0+w of C, disjoint from every other block.
            unsafe {
                let cp = cptr.get().add(j0);
                if TypeId::of::<T>() == TypeId::of::<f32>() {
                    raw::<f32>(
                        m,
                        w,
                        k,
                        cp as *mut f32,
                        ldc,
                        cast(a.data),
                        a.rs,
                        a.cs,
                        cast(bs),
                        b.rs,
                        b.cs,
                        acc,
                    );
                } else {
                    raw::<f64>(
                        m,
                        w,
                        k,
                        cp as *mut f64,
                        ldc,
                        cast(a.data),
                        a.rs,
                        a.cs,
                        cast(bs),
                        b.rs,
                        b.cs,
                        acc,
                    );
                }
            }
        })
    });
    Ok(())
}

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    fn get(self) -> *mut T {
        self.0
    }
}
// SAFETY: used only for disjoint column blocks in `gemm_par`.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

fn cast<T: Scalar, U: bytemuck::Pod>(s: &[T]) -> &[U] {
    bytemuck::cast_slice(s)
}
fn cast_mut<T: Scalar, U: bytemuck::Pod>(s: &mut [T]) -> &mut [U] {
    bytemuck::cast_slice_mut(s)
}

/// Calls the `gemm` crate single-threaded.
///
/// # Safety
/// `c` must be valid for reads and writes at `i*ldc + j` (i < m, j < n), `a` and
/// `b` must hold their `[m, k]` / `[k, n]` extents, and `c` must not alias them.
#[allow(clippy::too_many_arguments)]
unsafe fn raw<U: 'static + Copy + num_one::One>(
    m: usize,
    n: usize,
    k: usize,
    c: *mut U,
    ldc: usize,
    a: &[U],
    a_rs: usize,
    a_cs: usize,
    b: &[U],
    b_rs: usize,
    b_cs: usize,
    acc: bool,
) {
    // SAFETY: `gemm::gemm` reads `A` at `i*a_rs + p*a_cs` (i < m, p < k), `B` at
    // `p*b_rs + j*b_cs`, and reads/writes `C` at `i*ldc + j`: the caller guarantees
    // these extents. `U` is f32 or f64, which the crate supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            ldc as isize,
            acc,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            U::ONE,
            U::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// The element types `raw` is instantiated with.
mod num_one {
    /// The multiplicative identity.
    pub trait One {
        /// 1.
        const ONE: Self;
    }
    impl One for f32 {
        const ONE: Self = 1.0;
    }
    impl One for f64 {
        const ONE: Self = 1.0;
    }
}

/// Fallback for element types the `gemm` crate does not know.
#[allow(clippy::too_many_arguments)]
fn naive<T: Scalar>(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [T],
    ldc: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    acc: bool,
) {
    for i in 0..m {
        for j in 0..n {
            let mut s = T::ZERO;
            for p in 0..k {
                s += a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
            }
            let d = &mut c[i * ldc + j];
            *d = if acc { *d + s } else { s };
        }
    }
}
