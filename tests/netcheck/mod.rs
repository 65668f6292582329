//! Whole-network gradient checking shared by the engine and architecture gradient
//! checks (`mod netcheck;`): the error model, the finite-difference stencils and
//! small fixtures. The error model is documented in `tests/engine_gradcheck.rs`.
#![allow(dead_code)]

use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::{AffineParam, AugOp, Backend};
use dsa_condense::engine::Network;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub type B = Cpu<f64>;
pub const TOL: f64 = 1e-6;
pub const STEP: f64 = 1e-5;
pub const STEP_KINK: f64 = 1e-6;
pub const STEP4: f64 = 1e-4;
pub const F_REL: f64 = 1e-14;

/// A finite-difference gradient and its rounding-error bound.
pub struct Fd {
    pub grad: Vec<f64>,
    pub atol: f64,
}

pub fn rand_vec(rng: &mut ChaCha8Rng, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

/// Compares an analytic gradient with finite differences; Err describes the
/// worst and the first mismatching element.
pub fn compare(what: &str, analytic: &[f64], fd: &Fd) -> Result<f64, String> {
    let scale = fd.grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    compare_scaled(what, analytic, &fd.grad, scale, fd.atol)
}

/// [`compare`] of a part of a gradient, against the whole gradient's scale (the
/// floor is `1e-2 * scale`) and the finite difference's rounding bound `atol`.
/// Returns the largest `|analytic - fd| / max(|analytic|, |fd|, floor)`.
pub fn compare_scaled(
    what: &str,
    analytic: &[f64],
    fd: &[f64],
    scale: f64,
    atol: f64,
) -> Result<f64, String> {
    assert_eq!(analytic.len(), fd.len());
    if !scale.is_finite() || analytic.iter().any(|v| !v.is_finite()) {
        return Err(format!("{what}: non-finite values"));
    }
    if scale == 0.0 {
        return Err(format!(
            "{what}: finite-difference gradient is identically zero (test cannot fail)"
        ));
    }
    let floor = 1e-2 * scale;
    let (mut worst, mut worst_i, mut first) = (0.0f64, 0usize, None);
    for (i, (a, f)) in analytic.iter().zip(fd).enumerate() {
        let r = a.abs().max(f.abs()).max(floor);
        let e = (a - f).abs() / r;
        if e > worst {
            worst = e;
            worst_i = i;
        }
        if (a - f).abs() > TOL * r + atol && first.is_none() {
            first = Some((i, *a, *f));
        }
    }
    match first {
        None => Ok(worst),
        Some((i, a, f)) => Err(format!(
            "{what}: max rel err {worst:.3e} at {worst_i} (analytic {}, fd {}); first mismatch at {i}: analytic {a}, fd {f} (atol {atol:.1e})",
            analytic[worst_i], fd[worst_i]
        )),
    }
}

/// Central differences with step `h`: second order, or fourth order.
pub fn fd_stencil(x0: &[f64], mut f: impl FnMut(&[f64]) -> f64, fourth: bool, h: f64) -> Fd {
    let f0 = f(x0).abs().max(1.0);
    let atol = if fourth {
        1.5 * F_REL * f0 / h
    } else {
        F_REL * f0 / h
    };
    let mut x = x0.to_vec();
    let mut at = |x: &mut Vec<f64>, i: usize, d: f64| {
        x[i] = x0[i] + d;
        let v = f(x);
        x[i] = x0[i];
        v
    };
    let grad = (0..x0.len())
        .map(|i| {
            if fourth {
                let d1 = at(&mut x, i, h) - at(&mut x, i, -h);
                let d2 = at(&mut x, i, 2.0 * h) - at(&mut x, i, -2.0 * h);
                (8.0 * d1 - d2) / (12.0 * h)
            } else {
                (at(&mut x, i, h) - at(&mut x, i, -h)) / (2.0 * h)
            }
        })
        .collect();
    Fd { grad, atol }
}

/// Non-trivial BatchNorm running state (mean != 0, var != 1).
pub fn randomise_running<Be: Backend<E = f64>>(net: &mut Network<'_, Be>, rng: &mut ChaCha8Rng) {
    let l = net.layout().clone();
    let mut r = vec![0.0; l.running_total];
    for seg in &l.running {
        let c = seg.len as usize / 2;
        for i in 0..c {
            r[seg.off as usize + i] = rng.random_range(-0.3..0.3);
            r[seg.off as usize + c + i] = rng.random_range(0.5..1.5);
        }
    }
    net.set_running(&r).unwrap();
}

/// A rotation by `deg` followed by a contrast change, for `n` images (one siamese draw).
pub fn fixed_aug(n: usize, deg: f32, contrast: f32) -> Vec<AugOp> {
    let a = deg.to_radians();
    let rot = AffineParam {
        a00: a.cos(),
        a01: -a.sin(),
        a10: a.sin(),
        a11: a.cos(),
    };
    vec![
        AugOp::Affine(vec![rot; n]),
        AugOp::Contrast(vec![contrast; n]),
    ]
}

/// Central differences (second-order stencil, step `h`) of `f` at the coordinates
/// `idx` of `x0` only (a sample of a large gradient); `grad[j]` belongs to `idx[j]`.
pub fn fd_at(x0: &[f64], idx: &[usize], mut f: impl FnMut(&[f64]) -> f64, h: f64) -> Fd {
    let f0 = f(x0).abs().max(1.0);
    let mut x = x0.to_vec();
    let grad = idx
        .iter()
        .map(|&i| {
            x[i] = x0[i] + h;
            let p = f(&x);
            x[i] = x0[i] - h;
            let m = f(&x);
            x[i] = x0[i];
            (p - m) / (2.0 * h)
        })
        .collect();
    Fd {
        grad,
        atol: F_REL * f0 / h,
    }
}

/// Up to `max` distinct coordinates of `range`, drawn from `rng` (all when the range
/// is smaller), in increasing order.
pub fn sample_coords(
    rng: &mut ChaCha8Rng,
    range: std::ops::Range<usize>,
    max: usize,
) -> Vec<usize> {
    let n = range.len();
    if n <= max {
        return range.collect();
    }
    let mut picked = rand::seq::index::sample(rng, n, max).into_vec();
    picked.sort_unstable();
    picked.into_iter().map(|i| range.start + i).collect()
}
