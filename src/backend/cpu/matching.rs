//! Gradient-matching distances and their gradient.
use crate::backend::*;
#[allow(unused_imports)]
use rayon::ThreadPool;
 use crate::error::Result;
pub fn match_distance<T: Scalar>(dsyn: &mut [T], g_syn: &[T], g_real: &[T], tensors: &[MatchTensor], metric: Metric) -> Result<f64> { todo!() }
