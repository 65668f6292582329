//! SGD with momentum and weight decay (PyTorch convention).
use crate::backend::*;
#[allow(unused_imports)]
use rayon::ThreadPool;

pub fn sgd_step<T: Scalar>(p: &mut [T], g: &[T], m: &mut [T], hp: SgdParams) { todo!() }
