//! Gradient-matching distances (docs/method.md §3.2-3.3) and their gradient w.r.t. the
//! synthetic-side gradient. Sequential, f64 accumulation, fixed order (tensors in
//! the given order, rows, then elements), so results are deterministic.
//! Maths: `docs/derivations/matching.md`.
use crate::backend::*;
use crate::error::{Error, Result};

/// Epsilon added to the product of the norms (docs/method.md §3.2).
const COS_EPS: f64 = 1e-6;

/// The element range of a tensor after checking it fits the buffer and its
/// `rows x cols` shape.
fn tensor_range(t: &MatchTensor, i: usize, len: usize) -> Result<std::ops::Range<usize>> {
    let (off, n) = (t.seg.off as usize, t.seg.len as usize);
    if off + n > len {
        return Err(Error::Shape(format!(
            "cpu match_distance: tensor {i} ({off}..{}) outside the buffer of {len}",
            off + n
        )));
    }
    if t.rows as usize * t.cols as usize != n {
        return Err(Error::Shape(format!(
            "cpu match_distance: tensor {i} is {} x {} but its segment has {n} elements",
            t.rows, t.cols
        )));
    }
    Ok(off..off + n)
}

/// `1 - <r,s>/(|r||s| + eps)` over paired sequences given by their sums
/// `(<r,s>, |r|^2, |s|^2)`, and the coefficients `(a, b)` of its gradient
/// w.r.t. s: `dD/ds = a r + b s`.
fn cos_terms(dot: f64, rr: f64, ss: f64) -> (f64, f64, f64) {
    let (nr, ns) = (rr.sqrt(), ss.sqrt());
    let den = nr * ns + COS_EPS;
    let d = 1.0 - dot / den;
    // d|s|/ds = s/|s|, taken as 0 at s = 0 (as PyTorch's norm backward).
    let b = if ns > 0.0 {
        dot * nr / (den * den * ns)
    } else {
        0.0
    };
    (d, -1.0 / den, b)
}

/// Sums `(<r,s>, |r|^2, |s|^2)` over paired slices.
fn sums<T: Scalar>(r: &[T], s: &[T]) -> (f64, f64, f64) {
    let (mut dot, mut rr, mut ss) = (0.0, 0.0, 0.0);
    for (a, b) in r.iter().zip(s) {
        let (a, b) = (a.to_f64(), b.to_f64());
        dot += a * b;
        rr += a * a;
        ss += b * b;
    }
    (dot, rr, ss)
}

/// `dsyn += a r + b s` over paired slices.
fn add_grad<T: Scalar>(ds: &mut [T], r: &[T], s: &[T], a: f64, b: f64) {
    for ((d, rv), sv) in ds.iter_mut().zip(r).zip(s) {
        *d = T::from_f64(d.to_f64() + a * rv.to_f64() + b * sv.to_f64());
    }
}

/// Matching distance `D(g_syn, g_real)` over `tensors`, returned, with
/// `dsyn = dD/dg_syn` (overwritten; zero outside the tensors that count):
/// - `Ours`: sum over tensors with `is_vector == 0`, over their rows, of
///   `1 - <r, s>/(|r||s| + 1e-6)`;
/// - `Mse`: sum over all tensors of `(s - r)^2`;
/// - `Cos`: `1 - <r, s>/(|r||s| + 1e-6)` over the concatenation of all tensors.
///
/// (`r` from `g_real`, `s` from `g_syn`.) Errors on a tensor outside the
/// buffer, or a non-finite distance. See `docs/derivations/matching.md`.
pub fn match_distance<T: Scalar>(
    dsyn: &mut [T],
    g_syn: &[T],
    g_real: &[T],
    tensors: &[MatchTensor],
    metric: Metric,
) -> Result<f64> {
    let len = g_syn.len();
    let ranges = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| tensor_range(t, i, len))
        .collect::<Result<Vec<_>>>()?;
    dsyn.fill(T::ZERO);
    let mut dist = 0.0;
    match metric {
        Metric::Ours => {
            for (t, rg) in tensors.iter().zip(&ranges) {
                if t.is_vector != 0 || t.cols == 0 {
                    continue;
                }
                let cols = t.cols as usize;
                let rows_r = g_real[rg.clone()].chunks(cols);
                let rows_s = g_syn[rg.clone()].chunks(cols);
                for ((r, s), ds) in rows_r.zip(rows_s).zip(dsyn[rg.clone()].chunks_mut(cols)) {
                    let (dot, rr, ss) = sums(r, s);
                    let (d, a, b) = cos_terms(dot, rr, ss);
                    dist += d;
                    add_grad(ds, r, s, a, b);
                }
            }
        }
        Metric::Mse => {
            for rg in &ranges {
                for ((d, r), s) in dsyn[rg.clone()]
                    .iter_mut()
                    .zip(&g_real[rg.clone()])
                    .zip(&g_syn[rg.clone()])
                {
                    let diff = s.to_f64() - r.to_f64();
                    dist += diff * diff;
                    *d = T::from_f64(d.to_f64() + 2.0 * diff);
                }
            }
        }
        Metric::Cos => {
            let (mut dot, mut rr, mut ss) = (0.0, 0.0, 0.0);
            for rg in &ranges {
                let (a, b, c) = sums(&g_real[rg.clone()], &g_syn[rg.clone()]);
                dot += a;
                rr += b;
                ss += c;
            }
            let (d, a, b) = cos_terms(dot, rr, ss);
            dist = d;
            for rg in &ranges {
                add_grad(
                    &mut dsyn[rg.clone()],
                    &g_real[rg.clone()],
                    &g_syn[rg.clone()],
                    a,
                    b,
                );
            }
        }
    }
    if !dist.is_finite() {
        return Err(Error::NonFinite(format!(
            "cpu match_distance ({metric:?}): distance {dist}"
        )));
    }
    Ok(dist)
}
