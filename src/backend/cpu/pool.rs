//! 2x2 average / max pooling.
use crate::backend::*;
#[allow(unused_imports)]
use rayon::ThreadPool;

pub fn pool_fwd<T: Scalar>(pool: &ThreadPool, y: &mut [T], x: &[T], s: &PoolShape, kind: PoolKind) { todo!() }
pub fn pool_bwd<T: Scalar>(pool: &ThreadPool, dx: &mut [T], dy: &[T], x: &[T], s: &PoolShape, kind: PoolKind) { todo!() }
pub fn pool_jvp<T: Scalar>(pool: &ThreadPool, ydot: &mut [T], x: &[T], xdot: &[T], s: &PoolShape, kind: PoolKind) { todo!() }
