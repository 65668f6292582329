//! Per-thread scratch memory for the CPU kernels (im2col buffers and the like),
//! kept between calls so the hot loops do not allocate.

use crate::backend::Scalar;
use std::cell::RefCell;

thread_local! {
    /// Backing store, in f64 words so any `Scalar` (align <= 8) can be cast onto it.
    static SCRATCH: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a scratch slice of `len` elements of this thread (contents
/// unspecified). The buffer grows as needed and is kept for the next call. If the
/// thread's buffer is already in use (re-entrant call) or the element type
/// cannot be cast onto it, a fresh buffer is used instead.
pub fn with_scratch<T: Scalar, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    let bytes = len * std::mem::size_of::<T>();
    let words = bytes.div_ceil(8);
    SCRATCH.with(|cell| {
        if let Ok(mut v) = cell.try_borrow_mut() {
            if v.len() < words {
                v.resize(words, 0.0);
            }
            let raw: &mut [u8] = bytemuck::cast_slice_mut(&mut v[..words]);
            if let Ok(t) = bytemuck::try_cast_slice_mut::<u8, T>(&mut raw[..bytes]) {
                return f(t);
            }
        }
        f(&mut vec![T::ZERO; len])
    })
}
