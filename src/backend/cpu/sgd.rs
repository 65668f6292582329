//! SGD with momentum and weight decay (PyTorch convention), one pass over a whole
//! flat buffer. Element-wise and sequential (a few hundred thousand elements per
//! step at most), computed in the element type as a device kernel does.
use crate::backend::*;

/// One SGD step, in place: `d = g + wd p`; with momentum `m = momentum m + d`,
/// `p -= lr m`; without (momentum 0) `p -= lr d` and `m` is untouched. A
/// momentum buffer that starts at zero reproduces PyTorch's first step
/// (`m = d`). Lengths are checked by the caller.
pub fn sgd_step<T: Scalar>(p: &mut [T], g: &[T], m: &mut [T], hp: SgdParams) {
    let lr = T::from_f32(hp.lr);
    let wd = T::from_f32(hp.weight_decay);
    let mom = T::from_f32(hp.momentum);
    if hp.momentum == 0.0 {
        for (pv, &gv) in p.iter_mut().zip(g) {
            let d = gv + wd * *pv;
            *pv -= lr * d;
        }
    } else {
        for ((pv, &gv), mv) in p.iter_mut().zip(g).zip(m.iter_mut()) {
            let d = gv + wd * *pv;
            *mv = mom * *mv + d;
            *pv -= lr * *mv;
        }
    }
}
