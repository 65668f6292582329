//! Whole steps through the kernels: one class's DSA matching step (distance and its
//! exact gradient w.r.t. the synthetic images, second-order pass and augmentation
//! included) and one inner-loop network update, `emu` (the CUDA kernels run on the
//! host) against `cpu`, and on `cuda` when a GPU is present.
//!
//! Error model: each kernel matches the CPU to ~1e-7 relative (tests/emu_parity*);
//! a step chains ~40 of them with different reduction orders, so the step outputs
//! are compared at 1e-4 relative (|d| <= 1e-4 * ||ref||_inf per element).
//!
//! In TF32 and BF16 (matrix-unit kernels against `Cpu::with_precision`, the same
//! rounded products) a ~1e-7 difference in a product's input can move it across a
//! rounding boundary, which changes that operand by up to u relative; so the bound
//! there is `Precision::tolerance` (2u: 1e-3 TF32, 8e-3 BF16).

use dsa_condense::augment::{sample_siamese, AugMode, DsaParams, Strategy};
use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::emu::Emu;
use dsa_condense::backend::{Backend, ImgShape, Metric, Precision, SgdParams};
use dsa_condense::engine::{Network, WorkspaceOpts};
use dsa_condense::model::ConvNetConfig;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod parity_common;
use parity_common::{cuda, five_architectures, rand_vec};

/// max |got - want| / ||want||_inf.
fn deviation(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    got.iter()
        .zip(want)
        .fold(0f32, |m, (g, w)| m.max((g - w).abs() / scale))
}

fn close(what: &str, got: &[f32], want: &[f32], rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{what}: element {i} is {g}");
        assert!(
            (g - w).abs() <= rtol * scale,
            "{what}: element {i}: got {g}, want {w} (scale {scale}, rtol {rtol})"
        );
    }
}

/// One matching step and one train step on `be`, from the same seed as the reference.
fn step<B: Backend<E = f32>>(be: &B, c: ConvNetConfig, seed: u64) -> (f64, Vec<f32>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Network::new(be, c, &mut rng).unwrap();
    let img = c.image_h * c.image_w;
    let (n_real, ipc) = (5, 2);
    let real = be
        .upload(&rand_vec(&mut rng, n_real * img, -1.0, 1.0))
        .unwrap();
    let syn = be
        .upload(&rand_vec(&mut rng, ipc * img, -1.0, 1.0))
        .unwrap();
    let strategy: Strategy = "color_crop_cutout_flip_scale_rotate".parse().unwrap();
    let mut mw = net.match_workspace(n_real, ipc).unwrap();
    // Two groups in sequence (mode M) so several augmentation kernels take part.
    let draw = sample_siamese(&strategy, &DsaParams::default(), AugMode::M, 10, &mut rng).unwrap();
    let shape = ImgShape {
        n: n_real as u32,
        c: 1,
        h: 10,
        w: 10,
    };
    let mut real_aug = be.upload(&be.download(&real).unwrap()).unwrap();
    let mut tmp = be.alloc(n_real * img).unwrap();
    for op in draw.ops(n_real) {
        be.aug_fwd(&mut tmp, &real_aug, &op, &shape).unwrap();
        std::mem::swap(&mut real_aug, &mut tmp);
    }
    if c.has_batchnorm() {
        let mut ws = net.workspace(n_real, WorkspaceOpts::default()).unwrap();
        net.refresh_bn(&mut ws, &real).unwrap();
    }
    let d = net
        .matching_grad(&mut mw, &real_aug, &syn, 1, &draw.ops(ipc), Metric::Ours)
        .unwrap();
    let dsyn = be.download(&mw.dsyn).unwrap();
    // One inner-loop update (train mode, SGD) on the synthetic images.
    let mut ws = net.workspace(ipc, WorkspaceOpts::default()).unwrap();
    let labels = be.upload_labels(&[0, 2]).unwrap();
    let hp = SgdParams {
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 5e-4,
    };
    net.train_step(&mut ws, &syn, &labels, hp).unwrap();
    let params = be.download(net.params()).unwrap();
    (d, dsyn, params)
}

fn compare<B: Backend<E = f32>>(be: &B) {
    let p = be.precision();
    let cpu = Cpu::<f32>::new(1).unwrap().with_precision(p);
    let rtol = p.tolerance().max(1e-4);
    let cases = five_architectures(10, 3);
    for (k, c) in cases.into_iter().enumerate() {
        let seed = 100 + k as u64;
        let (d_ref, dsyn_ref, p_ref) = step(&cpu, c, seed);
        let (d, dsyn, params) = step(be, c, seed);
        let what = format!("{:?}/{:?}/{:?} on {}", c.norm, c.act, c.pool, be.name());
        assert!(
            (d - d_ref).abs() <= rtol * d_ref.abs().max(1e-6),
            "{what}: distance {d} vs cpu {d_ref}"
        );
        assert!(
            dsyn_ref.iter().any(|v| *v != 0.0),
            "{what}: reference gradient is zero"
        );
        close(&format!("{what}: dD/dS"), &dsyn, &dsyn_ref, rtol as f32);
        if p != Precision::Fp32 {
            let (_, dsyn_fp32, _) = step(&Cpu::<f32>::new(1).unwrap(), c, seed);
            let (same, fp32) = (deviation(&dsyn, &dsyn_ref), deviation(&dsyn, &dsyn_fp32));
            eprintln!("{what}: dD/dS deviation from cpu {p} {same:.2e}, from cpu fp32 {fp32:.2e}");
            // The kernels round as the CPU does: much closer to it than to FP32 (seen:
            // 7x to 10^7x closer).
            assert!(
                same * 2.0 < fp32,
                "{what}: dD/dS is not closer to the cpu in {p} ({same:.2e}) than to fp32 ({fp32:.2e})"
            );
        }
        close(
            &format!("{what}: params after train step"),
            &params,
            &p_ref,
            rtol as f32,
        );
    }
}

#[test]
fn matching_step_and_train_step_emu_matches_cpu() {
    compare(&Emu::new());
}

/// The same steps with the TF32 and BF16 matrix-unit kernels against the CPU
/// computing the same rounded products.
#[test]
fn matching_step_and_train_step_emu_matches_cpu_in_tf32_and_bf16() {
    for p in [Precision::Tf32, Precision::Bf16] {
        compare(&Emu::new().with_precision(p));
    }
}

#[test]
fn matching_step_and_train_step_cuda_matches_cpu_in_tf32_and_bf16() {
    for p in [Precision::Tf32, Precision::Bf16] {
        match dsa_condense::backend::cuda::Cuda::new(0) {
            Ok(c) => compare(&c.with_precision(p)),
            Err(e) => {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "skipped: cuda backend unavailable: {e}");
                return;
            }
        }
    }
}

#[test]
fn matching_step_and_train_step_cuda_matches_cpu() {
    // Without a GPU, `cuda()` prints a visible "skipped" line.
    if let Some(be) = cuda() {
        compare(be);
    }
}
