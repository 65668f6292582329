//! Finite-difference gradient checking and comparison helpers shared by the CPU
//! op tests (`mod fdcheck;` in each test file).
#![allow(dead_code)]

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Step of the central differences (f64): truncation error ~h^2 |f'''|/6 ~ 1e-11,
/// round-off ~1e-16 |f| / h ~ 1e-11 for the O(1)-O(10) scalars of these tests.
pub const H: f64 = 1e-5;

/// Relative tolerance of an f64 analytic gradient against central differences.
pub const FD_RTOL: f64 = 1e-6;

/// `n` uniform values in `[lo, hi)`.
pub fn rand_vec(rng: &mut ChaCha8Rng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Central-difference gradient of `f` at `x`.
pub fn fd_grad(x: &[f64], mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            xp[i] = x[i] + H;
            let fp = f(&xp);
            xp[i] = x[i] - H;
            let fm = f(&xp);
            xp[i] = x[i];
            (fp - fm) / (2.0 * H)
        })
        .collect()
}

/// Central-difference directional derivative of a vector function `f` at `t = 0`
/// of `t -> f(t)` (the caller moves its inputs by `t` along the direction).
pub fn fd_dir(mut f: impl FnMut(f64) -> Vec<f64>) -> Vec<f64> {
    let (p, m) = (f(H), f(-H));
    p.iter().zip(&m).map(|(a, b)| (a - b) / (2.0 * H)).collect()
}

/// `<a, b>`.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Compares `got` with `want` element-wise: error model
/// `|got - want| <= rtol * (|want| + 1e-3 max|want|)` (the floor keeps elements
/// near zero from demanding more than the ops' absolute accuracy). Returns the
/// largest scaled error, or a message with the largest error and the first
/// mismatching index. Any NaN or infinity fails.
pub fn compare(got: &[f64], want: &[f64], rtol: f64) -> Result<f64, String> {
    if got.len() != want.len() {
        return Err(format!("length {} != {}", got.len(), want.len()));
    }
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let floor = 1e-3 * scale + 1e-300;
    let (mut max_err, mut max_i, mut first_bad) = (0.0f64, 0usize, None);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if !g.is_finite() || !w.is_finite() {
            return Err(format!("non-finite at {i}: got {g}, want {w}"));
        }
        let err = (g - w).abs() / (w.abs() + floor);
        if err > max_err {
            max_err = err;
            max_i = i;
        }
        if err > rtol && first_bad.is_none() {
            first_bad = Some(i);
        }
    }
    match first_bad {
        None => Ok(max_err),
        Some(i) => Err(format!(
            "max rel error {max_err:.3e} at {max_i} (got {}, want {}); first mismatch at {i} \
             (got {}, want {}), rtol {rtol:.1e}",
            got[max_i], want[max_i], got[i], want[i]
        )),
    }
}

/// [`compare`] that panics with `what` and the report on a mismatch.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], rtol: f64) {
    if let Err(msg) = compare(got, want, rtol) {
        panic!("{what}: {msg}");
    }
}

/// Bit patterns of an f32 slice (for bit-identity checks).
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// f32 copy of an f64 slice.
pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// f64 copy of an f32 slice.
pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}
