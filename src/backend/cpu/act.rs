//! Element-wise activations, first and second order. Derivatives (incl. the
//! second derivatives used by [`act_dual_bwd`]) in `docs/derivations/act_pool.md`
//! §"Activations".

use crate::backend::*;
use rayon::prelude::*;
use rayon::ThreadPool;

/// Elements per parallel task (fixed; element-wise ops have no reduction anyway).
const CHUNK: usize = 1 << 14;

/// Numerically stable logistic function.
#[inline]
fn sigmoid<T: Scalar>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
}

/// Negative slope of the leaky ReLU.
#[inline]
fn leak<T: Scalar>() -> T {
    T::from_f64(0.01)
}

/// `act(x)`.
#[inline]
fn f<T: Scalar>(x: T, act: Act) -> T {
    match act {
        Act::Relu => {
            if x > T::ZERO {
                x
            } else {
                T::ZERO
            }
        }
        Act::Sigmoid => sigmoid(x),
        Act::LeakyRelu => {
            if x > T::ZERO {
                x
            } else {
                leak::<T>() * x
            }
        }
        Act::Swish => x * sigmoid(x),
    }
}

/// `act'(x)` (ReLU: 0 at 0, leaky ReLU: 0.01 at 0, as PyTorch).
#[inline]
fn df<T: Scalar>(x: T, act: Act) -> T {
    match act {
        Act::Relu => {
            if x > T::ZERO {
                T::ONE
            } else {
                T::ZERO
            }
        }
        Act::Sigmoid => {
            let s = sigmoid(x);
            s * (T::ONE - s)
        }
        Act::LeakyRelu => {
            if x > T::ZERO {
                T::ONE
            } else {
                leak()
            }
        }
        Act::Swish => {
            let s = sigmoid(x);
            s * (T::ONE + x * (T::ONE - s))
        }
    }
}

/// `(act'(x), act''(x))`; the piecewise-linear ones have `act'' = 0`.
#[inline]
fn df_d2f<T: Scalar>(x: T, act: Act) -> (T, T) {
    let two = T::from_f64(2.0);
    match act {
        Act::Relu | Act::LeakyRelu => (df(x, act), T::ZERO),
        Act::Sigmoid => {
            let s = sigmoid(x);
            let d = s * (T::ONE - s);
            (d, d * (T::ONE - two * s))
        }
        Act::Swish => {
            let s = sigmoid(x);
            let ds = s * (T::ONE - s);
            (s + x * ds, ds * (two + x * (T::ONE - two * s)))
        }
    }
}

/// Calls `$body` with `$act` bound to a constant, so that the per-element `match`
/// on the activation folds away and each loop vectorises on its own.
macro_rules! with_const_act {
    ($act:expr, |$a:ident| $body:expr) => {
        match $act {
            Act::Relu => {
                const $a: Act = Act::Relu;
                $body
            }
            Act::Sigmoid => {
                const $a: Act = Act::Sigmoid;
                $body
            }
            Act::LeakyRelu => {
                const $a: Act = Act::LeakyRelu;
                $body
            }
            Act::Swish => {
                const $a: Act = Act::Swish;
                $body
            }
        }
    };
}

/// `y = act(x)` (lengths checked by the caller).
pub fn act_fwd<T: Scalar>(pool: &ThreadPool, y: &mut [T], x: &[T], act: Act) {
    with_const_act!(act, |A| pool.install(|| {
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(yc, xc)| yc.iter_mut().zip(xc).for_each(|(v, &u)| *v = f(u, A)));
    }))
}

/// `dx = act'(x) dy` (lengths checked by the caller).
pub fn act_bwd<T: Scalar>(pool: &ThreadPool, dx: &mut [T], dy: &[T], x: &[T], act: Act) {
    with_const_act!(act, |A| pool.install(|| {
        dx.par_chunks_mut(CHUNK)
            .zip(dy.par_chunks(CHUNK))
            .zip(x.par_chunks(CHUNK))
            .for_each(|((dc, gc), xc)| {
                for ((d, &g), &u) in dc.iter_mut().zip(gc).zip(xc) {
                    *d = df(u, A) * g;
                }
            });
    }))
}

/// Reverse of the dual activation `(x, xdot) -> (act(x), act'(x) xdot)`:
/// `dxdot = act'(x) dydot`, `dx = act'(x) dy + act''(x) xdot dydot`
/// (lengths checked by the caller).
#[allow(clippy::too_many_arguments)]
pub fn act_dual_bwd<T: Scalar>(
    pool: &ThreadPool,
    dx: &mut [T],
    dxdot: &mut [T],
    dy: &[T],
    dydot: &[T],
    x: &[T],
    xdot: &[T],
    act: Act,
) {
    pool.install(|| {
        dx.par_chunks_mut(CHUNK)
            .zip(dxdot.par_chunks_mut(CHUNK))
            .zip(dy.par_chunks(CHUNK))
            .zip(dydot.par_chunks(CHUNK))
            .zip(x.par_chunks(CHUNK))
            .zip(xdot.par_chunks(CHUNK))
            .for_each(|(((((dxc, dtc), gc), gtc), xc), xtc)| {
                for i in 0..dxc.len() {
                    let (d1, d2) = df_d2f(xc[i], act);
                    dtc[i] = d1 * gtc[i];
                    dxc[i] = d1 * gc[i] + d2 * xtc[i] * gtc[i];
                }
            });
    });
}
