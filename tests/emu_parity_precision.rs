//! Parity of the matrix-unit kernels (`*_tf32`, `*_bf16`: kernels/igemm_mma.cuh) for
//! every convolution and linear pass, on `emu` (always) and `cuda` (when a GPU is
//! usable; otherwise a visible skip), at the shapes of the FP32 parity tests (sizes
//! that are not multiples of the 128 x 128 x 16 tile, strides, padding, split K,
//! NaN-poisoned outputs, `acc` both ways):
//!
//! 1. against the CPU backend computing the same rounded products
//!    (`Cpu::with_precision`: operands rounded by `Precision::round`, FP32
//!    accumulation): ‖out − ref‖ / ‖ref‖ < 1e-5, the FP32 parity bound. The rounded
//!    products differ from the FP32 ones by about 0.6 u (3e-4 in TF32, 2e-3 in BF16),
//!    so a kernel that did not round, or rounded another way, fails here;
//! 2. against the FP32 CPU reference, within the precision's documented tolerance
//!    (`Precision::tolerance`, 2 u: about 1e-3 for TF32, 8e-3 for BF16), for every
//!    overwritten output of at least 64 elements.

use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::cuda::Cuda;
use dsa_condense::backend::emu::Emu;
use dsa_condense::backend::*;

#[macro_use]
mod parity_common;
use parity_common::*;

fn body<B: Backend<E = f32>>(b: &B) {
    let p = b.precision();
    assert_ne!(
        p,
        Precision::Fp32,
        "this suite tests the matrix-unit kernels"
    );
    let rounded = Cpu::<f32>::new(2).unwrap().with_precision(p);
    let tol = p.tolerance();
    let mut against_rounded = |what: &str, _: bool, got: &[f32], want: &[f32]| {
        assert_close(&format!("{p} vs cpu {p}: {what}"), got, want)
    };
    // The error model holds for outputs that are sums of products: not for an
    // accumulated output (random start values cancel against the product) or a tiny one.
    let mut against_fp32 = |what: &str, accumulated: bool, got: &[f32], want: &[f32]| {
        if !accumulated && want.len() >= 64 {
            assert_close_tol(&format!("{p} vs cpu fp32: {what}"), got, want, tol)
        }
    };
    products::conv_cases(b, &rounded, &mut against_rounded);
    products::conv_cases(b, cpu(), &mut against_fp32);
    products::linear_cases(b, &rounded, &mut against_rounded);
    products::linear_cases(b, cpu(), &mut against_fp32);
}

/// The cuda backend in precision `p`, or None (with a visible skip) without a GPU.
fn cuda_in(p: Precision) -> Option<Cuda> {
    match Cuda::new(0) {
        Ok(c) => Some(c.with_precision(p)),
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "skipped: cuda backend unavailable: {e}");
            None
        }
    }
}

#[test]
fn tf32_emu() {
    body(&Emu::new().with_precision(Precision::Tf32));
}

#[test]
fn bf16_emu() {
    body(&Emu::new().with_precision(Precision::Bf16));
}

#[test]
fn tf32_cuda() {
    if let Some(c) = cuda_in(Precision::Tf32) {
        body(&c);
    }
}

#[test]
fn bf16_cuda() {
    if let Some(c) = cuda_in(Precision::Bf16) {
        body(&c);
    }
}
