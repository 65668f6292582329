//! Conv2d forward, backward-data, backward-weight (im2col + GEMM).
use crate::backend::*;
#[allow(unused_imports)]
use rayon::ThreadPool;

pub fn conv2d_fwd<T: Scalar>(pool: &ThreadPool, y: &mut [T], x: &[T], w: &[T], b: Option<&[T]>, s: &ConvShape, acc: bool) { todo!() }
pub fn conv2d_bwd_input<T: Scalar>(pool: &ThreadPool, dx: &mut [T], dy: &[T], w: &[T], s: &ConvShape, acc: bool) { todo!() }
pub fn conv2d_bwd_weight<T: Scalar>(pool: &ThreadPool, dw: &mut [T], db: Option<&mut [T]>, dy: &[T], x: &[T], s: &ConvShape) { todo!() }
