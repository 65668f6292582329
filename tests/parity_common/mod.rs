//! Helpers shared by the kernel parity tests (emu_parity, emu_parity_math, emu_step,
//! emu_graph): the backends under test, random inputs, NaN poisoning, the
//! relative-error check, and the small ConvNets the whole-step tests run.
#![allow(dead_code)]

use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::cuda::Cuda;
use dsa_condense::backend::Act;
use dsa_condense::model::{ConvNetConfig, Norm, Pool};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;

pub mod products;

pub const REL_TOL: f64 = 1e-5;

/// Declares `mod $name { emu, cuda }` running one generic body on both backends
/// (the test crate imports `Emu`; `cuda()` prints a visible skip without a GPU).
#[allow(unused_macros)] // emu_step shares the module without declaring tests this way
macro_rules! parity {
    ($(#[$m:meta])* $name:ident, $body:ident) => {
        mod $name {
            use super::*;
            $(#[$m])*
            #[test]
            fn emu() {
                $body(&Emu::new());
            }
            $(#[$m])*
            #[test]
            fn cuda() {
                if let Some(c) = super::cuda() {
                    $body(c);
                }
            }
        }
    };
}

pub fn cpu() -> &'static Cpu<f32> {
    static CPU: OnceLock<Cpu<f32>> = OnceLock::new();
    CPU.get_or_init(|| Cpu::new(2).expect("cpu backend"))
}

pub fn cuda() -> Option<&'static Cuda> {
    static CUDA: OnceLock<Result<Cuda, String>> = OnceLock::new();
    match CUDA.get_or_init(|| Cuda::new(0).map_err(|e| e.to_string())) {
        Ok(c) => Some(c),
        Err(e) => {
            // Written to the stderr handle directly: the test harness captures
            // `eprintln!` of passing tests, and a skip must be visible.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "skipped: cuda backend unavailable: {e}");
            None
        }
    }
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn rand_vec(r: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| r.random_range(lo..hi)).collect()
}

pub fn nan_vec(n: usize) -> Vec<f32> {
    vec![f32::NAN; n]
}

/// ||got - want|| / ||want|| < REL_TOL, no non-finite value, same length.
pub fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_close_tol(what, got, want, REL_TOL);
}

/// ||got - want|| / ||want|| < `tol`, no non-finite value, same length.
pub fn assert_close_tol(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().position(|v| !v.is_finite()) {
        panic!(
            "{what}: non-finite output {} at index {i} (ref {})",
            got[i], want[i]
        );
    }
    let (mut num, mut den, mut max_abs, mut max_rel) = (0f64, 0f64, 0f64, 0f64);
    let mut first_bad = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g as f64 - w as f64).abs();
        num += d * d;
        den += (w as f64) * (w as f64);
        max_abs = max_abs.max(d);
        if w != 0.0 {
            max_rel = max_rel.max(d / (w as f64).abs());
        }
        if first_bad.is_none() && d > 1e-6 + 1e-4 * (w as f64).abs() {
            first_bad = Some(i);
        }
    }
    let rel = if den > 0.0 {
        (num / den).sqrt()
    } else {
        num.sqrt()
    };
    assert!(
        rel < tol,
        "{what}: relative error {rel:.3e} >= {tol:e} (max abs {max_abs:.3e}, max rel \
         {max_rel:.3e}, first mismatch {:?})",
        first_bad.map(|i| (i, got[i], want[i]))
    );
}

/// A depth-2, width-8 ConvNet on 1 x side x side images.
pub fn small_convnet(
    side: usize,
    classes: usize,
    norm: Norm,
    act: Act,
    pool: Pool,
) -> ConvNetConfig {
    let mut c = ConvNetConfig::default_for(1, side, side, classes);
    c.width = 8;
    c.depth = 2;
    c.norm = norm;
    c.act = act;
    c.pool = pool;
    c
}

/// Five small ConvNets that together cover every normalisation, activation and
/// pooling once.
pub fn five_architectures(side: usize, classes: usize) -> [ConvNetConfig; 5] {
    let c = |n, a, p| small_convnet(side, classes, n, a, p);
    [
        c(Norm::Instance, Act::Relu, Pool::Avg),
        c(Norm::Group, Act::Swish, Pool::Max),
        c(Norm::Layer, Act::Sigmoid, Pool::None),
        c(Norm::Batch, Act::LeakyRelu, Pool::Avg),
        c(Norm::None, Act::Relu, Pool::Max),
    ]
}
