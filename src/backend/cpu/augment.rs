//! DSA augmentation functions, forward and adjoint.
use crate::backend::*;
#[allow(unused_imports)]
use rayon::ThreadPool;

pub fn aug_fwd<T: Scalar>(pool: &ThreadPool, y: &mut [T], x: &[T], op: &AugOp, s: &ImgShape) { todo!() }
pub fn aug_bwd<T: Scalar>(pool: &ThreadPool, dx: &mut [T], dy: &[T], op: &AugOp, s: &ImgShape) { todo!() }
