#![allow(clippy::too_many_arguments)]
//! Group / instance / layer norm and batch norm: forward, backward, second order.
use crate::backend::*;
#[allow(unused_imports)]
use rayon::ThreadPool;

pub fn norm_fwd<T: Scalar>(pool: &ThreadPool, y: &mut [T], stats: &mut [T], x: &[T], gamma: &[T], beta: &[T], s: &NormShape) { todo!() }
pub fn norm_bwd<T: Scalar>(pool: &ThreadPool, dx: &mut [T], dparams: Option<(&mut [T], &mut [T])>, dy: &[T], x: &[T], stats: &[T], gamma: &[T], s: &NormShape) { todo!() }
pub fn norm_jvp<T: Scalar>(pool: &ThreadPool, ydot: &mut [T], x: &[T], xdot: &[T], stats: &[T], gamma: &[T], t_gamma: &[T], t_beta: &[T], s: &NormShape) { todo!() }
pub fn norm_dual_bwd<T: Scalar>(pool: &ThreadPool, dx: &mut [T], dxdot: &mut [T], dy: &[T], dydot: &[T], x: &[T], xdot: &[T], stats: &[T], gamma: &[T], t_gamma: &[T], s: &NormShape) { todo!() }
pub fn bn_fwd_train<T: Scalar>(pool: &ThreadPool, y: &mut [T], stats: &mut [T], running: &mut [T], x: &[T], gamma: &[T], beta: &[T], s: &NormShape, momentum: f32) { todo!() }
pub fn bn_bwd_train<T: Scalar>(pool: &ThreadPool, dx: &mut [T], dparams: Option<(&mut [T], &mut [T])>, dy: &[T], x: &[T], stats: &[T], gamma: &[T], s: &NormShape) { todo!() }
pub fn bn_fwd_eval<T: Scalar>(pool: &ThreadPool, y: &mut [T], x: &[T], running: &[T], gamma: &[T], beta: &[T], s: &NormShape) { todo!() }
pub fn bn_bwd_eval<T: Scalar>(pool: &ThreadPool, dx: &mut [T], dparams: Option<(&mut [T], &mut [T])>, dy: &[T], x: &[T], running: &[T], gamma: &[T], s: &NormShape) { todo!() }
pub fn bn_eval_jvp<T: Scalar>(pool: &ThreadPool, ydot: &mut [T], x: &[T], xdot: &[T], running: &[T], gamma: &[T], t_gamma: &[T], t_beta: &[T], s: &NormShape) { todo!() }
pub fn bn_eval_dual_bwd<T: Scalar>(pool: &ThreadPool, dx: &mut [T], dxdot: &mut [T], dy: &[T], dydot: &[T], running: &[T], gamma: &[T], t_gamma: &[T], s: &NormShape) { todo!() }
