//! Element-wise activations, first and second order.
use crate::backend::*;
#[allow(unused_imports)]
use rayon::ThreadPool;

pub fn act_fwd<T: Scalar>(pool: &ThreadPool, y: &mut [T], x: &[T], act: Act) { todo!() }
pub fn act_bwd<T: Scalar>(pool: &ThreadPool, dx: &mut [T], dy: &[T], x: &[T], act: Act) { todo!() }
#[allow(clippy::too_many_arguments)]
pub fn act_dual_bwd<T: Scalar>(pool: &ThreadPool, dx: &mut [T], dxdot: &mut [T], dy: &[T], dydot: &[T], x: &[T], xdot: &[T], act: Act) { todo!() }
