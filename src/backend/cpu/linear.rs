//! Fully connected layer.
use crate::backend::*;
#[allow(unused_imports)]
use rayon::ThreadPool;

pub fn linear_fwd<T: Scalar>(pool: &ThreadPool, y: &mut [T], x: &[T], w: &[T], b: Option<&[T]>, s: &LinearShape, acc: bool) { todo!() }
pub fn linear_bwd_input<T: Scalar>(pool: &ThreadPool, dx: &mut [T], dy: &[T], w: &[T], s: &LinearShape, acc: bool) { todo!() }
pub fn linear_bwd_weight<T: Scalar>(pool: &ThreadPool, dw: &mut [T], db: Option<&mut [T]>, dy: &[T], x: &[T], s: &LinearShape) { todo!() }
