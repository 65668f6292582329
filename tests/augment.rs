//! DSA augmentations: CPU kernels (forward against hand-computed examples and the
//! docs/method.md §2.5 formulas, backward against finite differences and the adjoint
//! identity), host-side sampling and strategy parsing, application through the
//! Backend trait.

use dsa_condense::augment::{
    apply_bwd, apply_fwd, sample_per_image, sample_siamese, AugDraw, AugMode, Augmenter, DsaParams,
    Group, Strategy,
};
use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::{AffineParam, AugOp, Backend, ImgShape, IntParam};
use dsa_condense::Error;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ---------------------------------------------------------------- helpers

fn shape(n: u32, c: u32, h: u32, w: u32) -> ImgShape {
    ImgShape { n, c, h, w }
}

fn rand_vec(rng: &mut ChaCha8Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.random::<f64>() * 2.0 - 1.0).collect()
}

fn fwd64(op: &AugOp, x: &[f64], s: &ImgShape) -> Vec<f64> {
    let b = Cpu::<f64>::new(1).unwrap();
    let mut y = vec![0.0; s.len()];
    b.aug_fwd(&mut y, &x.to_vec(), op, s).unwrap();
    y
}

fn bwd64(op: &AugOp, dy: &[f64], s: &ImgShape) -> Vec<f64> {
    let b = Cpu::<f64>::new(1).unwrap();
    let mut dx = vec![0.0; s.len()];
    b.aug_bwd(&mut dx, &dy.to_vec(), op, s).unwrap();
    dx
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Checks an analytic input gradient against central finite differences of
/// `L(x) = <f(x), dy>`. Error model: |an - fd| <= 1e-6 * max(1, |fd|) per element
/// (the ops are affine in x, so the FD truncation error is zero and only rounding,
/// ~1e-13 at h = 1e-3, remains). Returns the first violation as an error message.
fn fd_check(
    f: &dyn Fn(&[f64]) -> Vec<f64>,
    grad: &[f64],
    x: &[f64],
    dy: &[f64],
) -> Result<f64, String> {
    let h = 1e-3;
    let mut xp = x.to_vec();
    let mut max_rel: f64 = 0.0;
    for k in 0..x.len() {
        xp[k] = x[k] + h;
        let lp = dot(&f(&xp), dy);
        xp[k] = x[k] - h;
        let lm = dot(&f(&xp), dy);
        xp[k] = x[k];
        let fd = (lp - lm) / (2.0 * h);
        let an = grad[k];
        if !an.is_finite() || !fd.is_finite() {
            return Err(format!(
                "non-finite gradient at {k}: analytic {an}, fd {fd}"
            ));
        }
        let rel = (an - fd).abs() / fd.abs().max(1.0);
        max_rel = max_rel.max(rel);
        if rel > 1e-6 {
            return Err(format!(
                "gradient mismatch at index {k}: analytic {an}, finite difference {fd}, rel {rel:e}"
            ));
        }
    }
    Ok(max_rel)
}

/// FD check of the CPU backward of `op`, plus the adjoint identity
/// <A x, y> = <x, A^T y> for the linear part A x = op(x) - op(0).
fn check_op_grad(op: &AugOp, s: &ImgShape, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = rand_vec(&mut rng, s.len());
    let dy = rand_vec(&mut rng, s.len());
    let grad = bwd64(op, &dy, s);
    let f = |x: &[f64]| fwd64(op, x, s);
    if let Err(e) = fd_check(&f, &grad, &x, &dy) {
        panic!("{op:?}: {e}");
    }
    let y0 = fwd64(op, &vec![0.0; s.len()], s);
    let ax: Vec<f64> = fwd64(op, &x, s)
        .iter()
        .zip(&y0)
        .map(|(a, b)| a - b)
        .collect();
    let lhs = dot(&ax, &dy);
    let rhs = dot(&x, &grad);
    assert!(
        (lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0),
        "{op:?}: adjoint identity <Ax,y> = {lhs} vs <x,A^T y> = {rhs}"
    );
}

fn affine(a00: f32, a01: f32, a10: f32, a11: f32) -> AffineParam {
    AffineParam { a00, a01, a10, a11 }
}

fn ip(a: i32, b: i32) -> IntParam {
    IntParam { a, b }
}

/// Independent bilinear sample of docs/method.md §2.5 at output (i, j) of plane `x` (S x S).
fn bilinear_ref(x: &[f64], s: usize, p: &AffineParam, i: usize, j: usize) -> f64 {
    let c = (s as f64 - 1.0) / 2.0;
    let (jc, ic) = (j as f64 - c, i as f64 - c);
    let q = c + p.a00 as f64 * jc + p.a01 as f64 * ic;
    let r = c + p.a10 as f64 * jc + p.a11 as f64 * ic;
    let (q0, r0) = (q.floor(), r.floor());
    let (fq, fr) = (q - q0, r - r0);
    let at = |rr: f64, qq: f64| {
        if rr < 0.0 || qq < 0.0 || rr > s as f64 - 1.0 || qq > s as f64 - 1.0 {
            0.0
        } else {
            x[rr as usize * s + qq as usize]
        }
    };
    (1.0 - fr) * (1.0 - fq) * at(r0, q0)
        + (1.0 - fr) * fq * at(r0, q0 + 1.0)
        + fr * (1.0 - fq) * at(r0 + 1.0, q0)
        + fr * fq * at(r0 + 1.0, q0 + 1.0)
}

fn all_ops_n2() -> Vec<AugOp> {
    let r = 0.3f32;
    vec![
        AugOp::Affine(vec![
            affine(r.cos(), -r.sin(), r.sin(), r.cos()),
            affine(1.17, 0.0, 0.0, 0.86),
        ]),
        AugOp::Flip(vec![ip(1, 0), ip(0, 0)]),
        AugOp::Brightness(vec![0.3, -0.2]),
        AugOp::Saturation(vec![1.7, 0.2]),
        AugOp::Contrast(vec![0.6, 1.4]),
        AugOp::Crop(vec![ip(1, -2), ip(-1, 0)]),
        AugOp::Cutout {
            centres: vec![ip(1, 4), ip(5, 0)],
            half: 2,
        },
    ]
}

// ---------------------------------------------------------------- identities

#[test]
fn identity_parameters_return_input_exactly() {
    let s = shape(2, 3, 5, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x = rand_vec(&mut rng, s.len());
    let ops = [
        AugOp::Affine(vec![affine(1.0, 0.0, 0.0, 1.0); 2]),
        AugOp::Crop(vec![ip(0, 0); 2]),
        AugOp::Flip(vec![ip(0, 0); 2]),
        AugOp::Brightness(vec![0.0; 2]),
        AugOp::Saturation(vec![1.0; 2]),
        AugOp::Contrast(vec![1.0; 2]),
        AugOp::Cutout {
            centres: vec![ip(2, 2); 2],
            half: 0,
        },
    ];
    for op in &ops {
        assert_eq!(fwd64(op, &x, &s), x, "{op:?} is not the identity");
    }
    // Even-sided image: the centre is a half-integer, identity must still be exact.
    let s = shape(1, 1, 4, 4);
    let x = rand_vec(&mut rng, s.len());
    let op = AugOp::Affine(vec![affine(1.0, 0.0, 0.0, 1.0)]);
    assert_eq!(fwd64(&op, &x, &s), x);
    // f32 too.
    let b = Cpu::<f32>::new(1).unwrap();
    let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let mut y = vec![0f32; 16];
    b.aug_fwd(&mut y, &xf, &op, &s).unwrap();
    assert_eq!(y, xf);
}

#[test]
fn brightness_zero_draw_is_identity() {
    // A brightness draw b = 0.5 gives shift (0.5 - 0.5) * 1.0 = 0 (docs/method.md §2.5).
    let s = shape(1, 2, 3, 3);
    let x: Vec<f64> = (0..18).map(|v| v as f64 * 0.1).collect();
    assert_eq!(
        fwd64(&AugOp::Brightness(vec![((0.5 - 0.5) * 1.0) as f32]), &x, &s),
        x
    );
    let y = fwd64(&AugOp::Brightness(vec![0.25]), &x, &s);
    for (a, b) in y.iter().zip(&x) {
        assert_eq!(*a, b + 0.25);
    }
}

#[test]
fn flip_twice_is_identity_and_mirrors_columns() {
    let s = shape(2, 2, 3, 4);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = rand_vec(&mut rng, s.len());
    let op = AugOp::Flip(vec![ip(1, 0), ip(1, 0)]);
    let y = fwd64(&op, &x, &s);
    assert_ne!(y, x);
    assert_eq!(fwd64(&op, &y, &s), x);
    for k in 0..(2 * 2 * 3) {
        for j in 0..4 {
            assert_eq!(y[k * 4 + j], x[k * 4 + 3 - j]);
        }
    }
    // Per-image: the second image unflipped.
    let op = AugOp::Flip(vec![ip(1, 0), ip(0, 0)]);
    let y = fwd64(&op, &x, &s);
    assert_eq!(&y[24..], &x[24..]);
    assert_ne!(&y[..24], &x[..24]);
}

#[test]
fn saturation_is_identity_for_one_channel() {
    let s = shape(3, 1, 5, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x = rand_vec(&mut rng, s.len());
    let y = fwd64(&AugOp::Saturation(vec![0.0, 0.7, 1.9]), &x, &s);
    for (a, b) in y.iter().zip(&x) {
        assert!((a - b).abs() < 1e-15);
    }
}

// ---------------------------------------------------------------- hand examples

#[test]
fn crop_hand_example() {
    // 4x4 image with x(i, j) = 10 i + j + 1; tx = 1 (rows), ty = -2 (columns).
    let s = shape(1, 1, 4, 4);
    let x: Vec<f64> = (0..16).map(|k| (10 * (k / 4) + k % 4 + 1) as f64).collect();
    let y = fwd64(&AugOp::Crop(vec![ip(1, -2)]), &x, &s);
    #[rustfmt::skip]
    let want = [
        0.0, 0.0, 11.0, 12.0,
        0.0, 0.0, 21.0, 22.0,
        0.0, 0.0, 31.0, 32.0,
        0.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(y, want);
}

#[test]
fn cutout_hand_example() {
    // 5x5 image, 2 channels; centre (ox, oy) = (1, 4), half = 2: rows [-1, 2] -> 0..=2,
    // columns [2, 5] -> 2..=4.
    let s = shape(1, 2, 5, 5);
    let x: Vec<f64> = (0..50).map(|k| k as f64 + 1.0).collect();
    let y = fwd64(
        &AugOp::Cutout {
            centres: vec![ip(1, 4)],
            half: 2,
        },
        &x,
        &s,
    );
    for c in 0..2 {
        for i in 0..5 {
            for j in 0..5 {
                let k = c * 25 + i * 5 + j;
                let zero = i <= 2 && j >= 2;
                assert_eq!(y[k], if zero { 0.0 } else { x[k] }, "c{c} ({i},{j})");
            }
        }
    }
    // Centre (2, 3), half 1: rows [1, 2] x columns [2, 3].
    let y = fwd64(
        &AugOp::Cutout {
            centres: vec![ip(2, 3)],
            half: 1,
        },
        &x,
        &s,
    );
    let zeros: Vec<usize> = (0..25).filter(|&k| y[k] == 0.0).collect();
    assert_eq!(zeros, vec![5 + 2, 5 + 3, 10 + 2, 10 + 3]);
}

#[test]
fn contrast_and_saturation_hand_example() {
    // One 2-channel 1x2 image: channels [1, 3] and [5, 7].
    let s = shape(1, 2, 1, 2);
    let x = vec![1.0, 3.0, 5.0, 7.0];
    // Contrast: M = 4, factor 0.5 -> (x - 4) * 0.5 + 4.
    let y = fwd64(&AugOp::Contrast(vec![0.5]), &x, &s);
    assert_eq!(y, vec![2.5, 3.5, 4.5, 5.5]);
    // Saturation: pixel means 3 and 5, factor 2 -> (x - m) * 2 + m.
    let y = fwd64(&AugOp::Saturation(vec![2.0]), &x, &s);
    assert_eq!(y, vec![-1.0, 1.0, 7.0, 9.0]);
}

#[test]
fn affine_matches_bilinear_formula() {
    let s5 = shape(2, 2, 5, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let x = rand_vec(&mut rng, s5.len());
    let a = 0.2f32;
    let params = vec![
        affine(a.cos(), -a.sin(), a.sin(), a.cos()),
        affine(1.15, 0.0, 0.0, 0.9),
    ];
    let y = fwd64(&AugOp::Affine(params.clone()), &x, &s5);
    let mut maxd: f64 = 0.0;
    for n in 0..2 {
        for c in 0..2 {
            let plane = &x[(n * 2 + c) * 25..(n * 2 + c + 1) * 25];
            for i in 0..5 {
                for j in 0..5 {
                    let want = bilinear_ref(plane, 5, &params[n], i, j);
                    let got = y[(n * 2 + c) * 25 + i * 5 + j];
                    maxd = maxd.max((want - got).abs());
                }
            }
        }
    }
    assert!(maxd < 1e-14, "max deviation {maxd}");
}

#[test]
fn affine_hand_example_pixels() {
    // 4x4 plane x(i, j) = 4 i + j, c = 1.5. Pure column scale sx = 2 (a00):
    // output (0, 0) samples q = 1.5 + 2*(0 - 1.5) = -1.5, r = 0 -> both column
    // neighbours -2, -1 outside -> 0. Output (1, 1): q = 0.5, r = 1 -> (x(1,0)+x(1,1))/2
    // = 4.5. Output (2, 3): q = 4.5 -> neighbours 4, 5 outside -> 0.
    // Output (1, 2): q = 2.5 -> (x(1,2)+x(1,3))/2 = 6.5.
    let s = shape(1, 1, 4, 4);
    let x: Vec<f64> = (0..16).map(|k| k as f64).collect();
    let y = fwd64(&AugOp::Affine(vec![affine(2.0, 0.0, 0.0, 1.0)]), &x, &s);
    assert_eq!(y[0], 0.0);
    assert_eq!(y[5], 4.5);
    assert_eq!(y[2 * 4 + 3], 0.0);
    assert_eq!(y[4 + 2], 6.5);
    // Shift the sampling point by a quarter pixel: a00 = 1 and a01 = 0.5 at row i = 2
    // gives q = j + 0.25; output (2, 3): q = 3.25 -> 0.75 x(2,3) + 0.25 * 0 (column 4
    // outside): each corner drops out independently.
    let y = fwd64(&AugOp::Affine(vec![affine(1.0, 0.5, 0.0, 1.0)]), &x, &s);
    assert_eq!(y[2 * 4 + 3], 0.75 * 11.0);
    assert_eq!(y[2 * 4], 0.75 * 8.0 + 0.25 * 9.0);
    // Row -0.5 (a11 = 4/3 at i = 0 -> r = 1.5 - 2 = -0.5): only the lower corners count.
    let y = fwd64(
        &AugOp::Affine(vec![affine(1.0, 0.0, 0.0, 4.0 / 3.0)]),
        &x,
        &s,
    );
    let want = 0.5 * x[1];
    assert!((y[1] - want).abs() < 1e-6, "{} vs {want}", y[1]);
}

#[test]
fn rotate_quarter_turn_permutes_pixels() {
    // 90 degrees: q = c - (i - c), r = c + (j - c): out(i, j) = x(j, S-1-i).
    let s = shape(1, 1, 5, 5);
    let x: Vec<f64> = (0..25).map(|k| k as f64).collect();
    let y = fwd64(&AugOp::Affine(vec![affine(0.0, -1.0, 1.0, 0.0)]), &x, &s);
    for i in 0..5 {
        for j in 0..5 {
            assert_eq!(y[i * 5 + j], x[j * 5 + (4 - i)]);
        }
    }
}

// ---------------------------------------------------------------- gradients

#[test]
fn every_op_backward_matches_finite_differences_and_adjoint() {
    let s = shape(2, 3, 6, 6);
    for (k, op) in all_ops_n2().iter().enumerate() {
        check_op_grad(op, &s, 100 + k as u64);
    }
    // Odd side, rotations sampled by the host code.
    let s = shape(3, 2, 7, 7);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let p = DsaParams::default();
    for g in Group::ALL {
        let st = Strategy::new(vec![g]);
        for op in sample_per_image(&st, &p, AugMode::S, 7, 3, &mut rng).unwrap() {
            check_op_grad(&op, &s, 200);
        }
    }
}

#[test]
fn fd_checker_catches_wrong_backward() {
    let s = shape(2, 3, 6, 6);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = rand_vec(&mut rng, s.len());
    let dy = rand_vec(&mut rng, s.len());
    let ops = all_ops_n2();
    for (k, op) in ops.iter().enumerate() {
        let f = |x: &[f64]| fwd64(op, x, &s);
        // Wrong 1: the forward used as its own adjoint (a transpose bug) wherever
        // the op is not symmetric.
        let symmetric = matches!(
            op,
            AugOp::Flip(_) | AugOp::Saturation(_) | AugOp::Contrast(_) | AugOp::Cutout { .. }
        );
        if !symmetric {
            let wrong = fwd64(op, &dy, &s);
            assert!(
                fd_check(&f, &wrong, &x, &dy).is_err(),
                "op {k}: transpose bug not caught"
            );
        }
        // Wrong 2: the right adjoint but with the other image's parameters.
        // (The brightness adjoint does not depend on its parameters.)
        let swapped = swap_images(op);
        let wrong = bwd64(&swapped, &dy, &s);
        if !matches!(op, AugOp::Brightness(_)) {
            assert!(
                fd_check(&f, &wrong, &x, &dy).is_err(),
                "op {k}: parameter bug not caught"
            );
        }
        // Wrong 3: a 1e-4 relative error in one element.
        let mut wrong = bwd64(op, &dy, &s);
        let j = wrong.iter().position(|v| v.abs() > 0.1).unwrap();
        wrong[j] *= 1.0 + 1e-4;
        assert!(
            fd_check(&f, &wrong, &x, &dy).is_err(),
            "op {k}: small error not caught"
        );
        // And the right one passes.
        let right = bwd64(op, &dy, &s);
        assert!(fd_check(&f, &right, &x, &dy).is_ok());
    }
}

fn swap_images(op: &AugOp) -> AugOp {
    fn sw<P: Clone>(p: &[P]) -> Vec<P> {
        p.iter().rev().cloned().collect()
    }
    match op {
        AugOp::Affine(p) => AugOp::Affine(sw(p)),
        AugOp::Flip(p) => AugOp::Flip(sw(p)),
        AugOp::Brightness(p) => AugOp::Brightness(sw(p)),
        AugOp::Saturation(p) => AugOp::Saturation(sw(p)),
        AugOp::Contrast(p) => AugOp::Contrast(sw(p)),
        AugOp::Crop(p) => AugOp::Crop(sw(p)),
        AugOp::Cutout { centres, half } => AugOp::Cutout {
            centres: sw(centres),
            half: *half,
        },
    }
}

#[test]
fn composed_backward_matches_finite_differences() {
    let s = shape(2, 3, 6, 6);
    let ops = all_ops_n2();
    let b = Cpu::<f64>::new(1).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let x = rand_vec(&mut rng, s.len());
    let dy = rand_vec(&mut rng, s.len());
    let grad = apply_bwd(&b, &ops, &dy, &s).unwrap();
    let f = |x: &[f64]| apply_fwd(&b, &ops, &x.to_vec(), &s).unwrap();
    fd_check(&f, &grad, &x, &dy).unwrap();
    // The reverse order matters: the adjoints applied in forward order must fail.
    let mut g = dy.clone();
    for op in &ops {
        g = bwd64(op, &g, &s);
    }
    assert!(fd_check(&f, &g, &x, &dy).is_err());
}

// ---------------------------------------------------------------- determinism

#[test]
fn thread_count_does_not_change_results() {
    let s = shape(4, 3, 9, 9);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let x: Vec<f32> = (0..s.len()).map(|_| rng.random::<f32>()).collect();
    let st: Strategy = "color_crop_cutout_flip_scale_rotate".parse().unwrap();
    let ops = sample_per_image(&st, &DsaParams::default(), AugMode::M, 9, 4, &mut rng).unwrap();
    let b1 = Cpu::<f32>::new(1).unwrap();
    let b3 = Cpu::<f32>::new(3).unwrap();
    let y1 = apply_fwd(&b1, &ops, &x, &s).unwrap();
    let y3 = apply_fwd(&b3, &ops, &x, &s).unwrap();
    assert_eq!(y1, y3);
    let g1 = apply_bwd(&b1, &ops, &x, &s).unwrap();
    let g3 = apply_bwd(&b3, &ops, &x, &s).unwrap();
    assert_eq!(g1, g3);
}

// ---------------------------------------------------------------- application

#[test]
fn augmenter_matches_apply_and_passes_input_through_for_no_ops() {
    let s = shape(3, 2, 6, 6);
    let b = Cpu::<f64>::new(2).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let x = rand_vec(&mut rng, s.len());
    let st: Strategy = "color_crop_cutout_flip_scale_rotate".parse().unwrap();
    let mut aug = Augmenter::new(&b, s).unwrap();
    for _ in 0..5 {
        let ops = sample_per_image(&st, &DsaParams::default(), AugMode::M, 6, 3, &mut rng).unwrap();
        let want = apply_fwd(&b, &ops, &x, &s).unwrap();
        assert_eq!(aug.forward(&b, &ops, &x).unwrap(), &want);
        let want = apply_bwd(&b, &ops, &x, &s).unwrap();
        assert_eq!(aug.backward(&b, &ops, &x).unwrap(), &want);
        // Composition equals running the ops one by one.
        let mut y = x.clone();
        for op in &ops {
            y = fwd64(op, &y, &s);
        }
        assert_eq!(aug.forward(&b, &ops, &x).unwrap(), &y);
    }
    let out = aug.forward(&b, &[], &x).unwrap();
    assert!(std::ptr::eq(out, &x));
}

#[test]
fn apply_rejects_mismatched_batches() {
    let s = shape(3, 1, 4, 4);
    let b = Cpu::<f64>::new(1).unwrap();
    let x = vec![0.0; s.len()];
    let ops = vec![AugOp::Brightness(vec![0.1; 2])];
    let e = apply_fwd(&b, &ops, &x, &s).unwrap_err();
    assert!(matches!(e, Error::Shape(_)), "{e}");
    assert!(e.to_string().contains("brightness"), "{e}");
    let ops = vec![AugOp::Brightness(vec![0.1; 3])];
    assert!(apply_fwd(&b, &ops, &vec![0.0; 5], &s).is_err());
    let ops = vec![AugOp::Cutout {
        centres: vec![ip(0, 0); 3],
        half: -1,
    }];
    assert!(apply_bwd(&b, &ops, &x, &s).is_err());
    // The backend itself too.
    let mut y = vec![0.0; s.len()];
    assert!(b
        .aug_fwd(&mut y, &x, &AugOp::Contrast(vec![1.0; 4]), &s)
        .is_err());
}

// ---------------------------------------------------------------- strategies

#[test]
fn strategy_parsing() {
    let st: Strategy = "color_crop_cutout_flip_scale_rotate".parse().unwrap();
    assert_eq!(st.groups(), &Group::ALL);
    assert_eq!(st.to_string(), "color_crop_cutout_flip_scale_rotate");
    let st: Strategy = "crop_scale_rotate".parse().unwrap();
    assert_eq!(st.groups(), &[Group::Crop, Group::Scale, Group::Rotate]);
    for s in ["None", "none", ""] {
        let st: Strategy = s.parse().unwrap();
        assert!(st.is_none());
        assert_eq!(st.to_string(), "None");
    }
    for bad in [
        "color_blur",
        "colour",
        "crop__flip",
        "crop_",
        "Crop",
        "noise",
    ] {
        match bad.parse::<Strategy>() {
            Err(Error::Option { name, msg }) => {
                assert!(name.contains("strategy"), "{name}");
                assert!(msg.contains(&format!("'{bad}'")), "{msg}");
            }
            other => panic!("'{bad}' parsed as {other:?}"),
        }
    }
    let e = "color_blur".parse::<Strategy>().unwrap_err().to_string();
    assert!(e.contains("'blur'"), "{e}");
    assert_eq!("M".parse::<AugMode>().unwrap(), AugMode::M);
    assert_eq!("S".parse::<AugMode>().unwrap(), AugMode::S);
    assert!("X".parse::<AugMode>().is_err());
}

#[test]
fn identity_strategy_draws_no_ops() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let st = Strategy::none();
    let d = sample_siamese(&st, &DsaParams::default(), AugMode::S, 28, &mut rng).unwrap();
    assert!(d.is_identity());
    assert!(d.ops(10).is_empty());
    let ops = sample_per_image(&st, &DsaParams::default(), AugMode::M, 28, 10, &mut rng).unwrap();
    assert!(ops.is_empty());
}

#[test]
fn bad_params_and_sides_are_errors() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let st: Strategy = "crop".parse().unwrap();
    let p = DsaParams::default();
    assert!(sample_siamese(&st, &p, AugMode::S, 0, &mut rng).is_err());
    let bad = DsaParams {
        prob_flip: 1.5,
        ..p
    };
    assert!(sample_siamese(&st, &bad, AugMode::S, 28, &mut rng).is_err());
    let bad = DsaParams {
        ratio_scale: f64::NAN,
        ..p
    };
    assert!(sample_per_image(&st, &bad, AugMode::S, 28, 3, &mut rng).is_err());
}

// ---------------------------------------------------------------- sampling

fn siamese(seed: u64, mode: AugMode) -> AugDraw {
    let st: Strategy = "color_crop_cutout_flip_scale_rotate".parse().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    sample_siamese(&st, &DsaParams::default(), mode, 32, &mut rng).unwrap()
}

/// Image `n`'s parameters of an op, as comparable text.
fn image_params(op: &AugOp, n: usize) -> String {
    match op {
        AugOp::Affine(p) => format!("{:?}", p[n]),
        AugOp::Flip(p) | AugOp::Crop(p) => format!("{:?}", p[n]),
        AugOp::Brightness(p) | AugOp::Saturation(p) | AugOp::Contrast(p) => format!("{:?}", p[n]),
        AugOp::Cutout { centres, half } => format!("{:?} {half}", centres[n]),
    }
}

#[test]
fn siamese_draw_is_shared_by_batches_and_images() {
    for seed in 0..20 {
        let d = siamese(seed, AugMode::S);
        let (big, one) = (d.ops(256), d.ops(1));
        assert_eq!(big.len(), one.len());
        assert!(!one.is_empty());
        for (a, b) in big.iter().zip(&one) {
            assert_eq!(a.batch(), 256);
            assert_eq!(b.batch(), 1);
            let p0 = image_params(b, 0);
            for n in 0..256 {
                assert_eq!(image_params(a, n), p0);
            }
        }
        assert_eq!(d.single(), &one[..]);
    }
    // Mode M: every group, colour expanded to three ops.
    let d = siamese(3, AugMode::M);
    assert_eq!(d.groups(), &Group::ALL);
    assert_eq!(d.ops(4).len(), 8);
}

#[test]
fn per_image_draws_differ_between_images() {
    let st: Strategy = "color_crop_cutout_flip_scale_rotate".parse().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let ops = sample_per_image(&st, &DsaParams::default(), AugMode::M, 32, 64, &mut rng).unwrap();
    assert_eq!(ops.len(), 8);
    for op in &ops {
        assert_eq!(op.batch(), 64);
        let distinct: std::collections::HashSet<String> =
            (0..64).map(|n| image_params(op, n)).collect();
        assert!(distinct.len() > 1, "all images share {op:?}");
    }
    // Mode S: one group for the whole batch (one op, or three for color).
    for seed in 0..30 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let ops =
            sample_per_image(&st, &DsaParams::default(), AugMode::S, 32, 16, &mut rng).unwrap();
        assert!(ops.len() == 1 || ops.len() == 3, "{}", ops.len());
    }
}

#[test]
fn same_seed_same_draw_different_seed_different_draw() {
    for mode in [AugMode::S, AugMode::M] {
        assert_eq!(siamese(42, mode), siamese(42, mode));
        let distinct: std::collections::HashSet<String> =
            (0..10).map(|s| format!("{:?}", siamese(s, mode))).collect();
        // Mode S can repeat a discrete draw (flip on/off); mode M has continuous ones.
        let want = if mode == AugMode::M { 10 } else { 7 };
        assert!(
            distinct.len() >= want,
            "{mode:?}: {} distinct of 10",
            distinct.len()
        );
    }
    let st: Strategy = "color_crop_cutout_flip_scale_rotate".parse().unwrap();
    let draw = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        sample_per_image(&st, &DsaParams::default(), AugMode::M, 28, 8, &mut rng).unwrap()
    };
    assert_eq!(draw(5), draw(5));
    assert_ne!(draw(5), draw(6));
}

#[test]
fn mode_s_chooses_every_group_uniformly() {
    let mut counts = std::collections::HashMap::new();
    for seed in 0..600 {
        let d = siamese(seed, AugMode::S);
        assert_eq!(d.groups().len(), 1);
        let g = d.groups()[0];
        let want = if g == Group::Color { 3 } else { 1 };
        assert_eq!(d.single().len(), want);
        *counts.entry(g).or_insert(0usize) += 1;
    }
    assert_eq!(counts.len(), 6);
    for (g, c) in counts {
        // Expected 100 each; binomial std ~9.1.
        assert!((60..=140).contains(&c), "{g}: {c}");
    }
}

fn one_group(g: Group, side: usize, n: usize, seed: u64) -> Vec<AugOp> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let st = Strategy::new(vec![g]);
    sample_per_image(&st, &DsaParams::default(), AugMode::S, side, n, &mut rng).unwrap()
}

#[test]
fn crop_and_cutout_ranges() {
    // S = 28: shift 4, all 9 values on both axes.
    let ops = one_group(Group::Crop, 28, 5000, 1);
    let AugOp::Crop(p) = &ops[0] else {
        panic!("{ops:?}")
    };
    for axis in 0..2 {
        let vals: std::collections::BTreeSet<i32> = p
            .iter()
            .map(|v| if axis == 0 { v.a } else { v.b })
            .collect();
        assert_eq!(
            vals.into_iter().collect::<Vec<_>>(),
            (-4..=4).collect::<Vec<_>>()
        );
    }
    // S = 64: shift 8.
    let ops = one_group(Group::Crop, 64, 5000, 2);
    let AugOp::Crop(p) = &ops[0] else { panic!() };
    assert_eq!(p.iter().map(|v| v.a).max(), Some(8));
    assert_eq!(p.iter().map(|v| v.b).min(), Some(-8));
    // Cutout at S = 28: L = 14, half 7, centres 0..=28 all appearing.
    let ops = one_group(Group::Cutout, 28, 10000, 3);
    let AugOp::Cutout { centres, half } = &ops[0] else {
        panic!()
    };
    assert_eq!(*half, 7);
    for axis in 0..2 {
        let vals: std::collections::BTreeSet<i32> = centres
            .iter()
            .map(|v| if axis == 0 { v.a } else { v.b })
            .collect();
        assert_eq!(
            vals.into_iter().collect::<Vec<_>>(),
            (0..=28).collect::<Vec<_>>()
        );
    }
    // S = 32: L = 16.
    let ops = one_group(Group::Cutout, 32, 10, 4);
    let AugOp::Cutout { half, .. } = &ops[0] else {
        panic!()
    };
    assert_eq!(*half, 8);
}

#[test]
fn continuous_ranges() {
    let n = 20000;
    let ops = one_group(Group::Scale, 32, n, 5);
    let AugOp::Affine(p) = &ops[0] else { panic!() };
    let (lo, hi) = (1.0 / 1.2, 1.2);
    for v in p {
        assert_eq!((v.a01, v.a10), (0.0, 0.0));
        for s in [v.a00 as f64, v.a11 as f64] {
            assert!(s >= lo - 1e-6 && s <= hi + 1e-6, "{s}");
        }
    }
    let sx: Vec<f64> = p.iter().map(|v| v.a00 as f64).collect();
    assert!(sx.iter().cloned().fold(f64::MAX, f64::min) < lo + 0.01);
    assert!(sx.iter().cloned().fold(f64::MIN, f64::max) > hi - 0.01);
    // sx and sy independent.
    assert!(p.iter().filter(|v| v.a00 != v.a11).count() > n - 10);

    let ops = one_group(Group::Rotate, 32, n, 6);
    let AugOp::Affine(p) = &ops[0] else { panic!() };
    let max_a = 15f64.to_radians();
    let mut angles = Vec::new();
    for v in p {
        // [[cos, -sin], [sin, cos]].
        assert_eq!(v.a00, v.a11);
        assert_eq!(v.a01, -v.a10);
        let a = (v.a10 as f64).atan2(v.a00 as f64);
        assert!(a.abs() <= max_a + 1e-6, "{a}");
        angles.push(a);
    }
    assert!(angles.iter().cloned().fold(f64::MAX, f64::min) < -max_a + 0.01);
    assert!(angles.iter().cloned().fold(f64::MIN, f64::max) > max_a - 0.01);

    let ops = one_group(Group::Flip, 32, n, 7);
    let AugOp::Flip(p) = &ops[0] else { panic!() };
    let on = p.iter().filter(|v| v.a != 0).count() as f64 / n as f64;
    assert!((on - 0.5).abs() < 0.02, "{on}");
    assert!(p.iter().all(|v| v.a == 0 || v.a == 1));

    let ops = one_group(Group::Color, 32, n, 8);
    assert_eq!(ops.len(), 3);
    let ranges = [(-0.5, 0.5), (0.0, 2.0), (0.5, 1.5)];
    for (k, (op, (lo, hi))) in ops.iter().zip(ranges).enumerate() {
        let v = match (k, op) {
            (0, AugOp::Brightness(v)) | (1, AugOp::Saturation(v)) | (2, AugOp::Contrast(v)) => v,
            _ => panic!("color op {k} is {op:?}"),
        };
        let mn = v.iter().cloned().fold(f32::MAX, f32::min) as f64;
        let mx = v.iter().cloned().fold(f32::MIN, f32::max) as f64;
        assert!(mn >= lo && mx <= hi, "op {k}: [{mn}, {mx}]");
        assert!(mn < lo + 0.01 && mx > hi - 0.01, "op {k}: [{mn}, {mx}]");
    }
}

#[test]
fn mode_m_applies_all_groups_in_order() {
    let st: Strategy = "color_crop_cutout_flip_scale_rotate".parse().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let ops = sample_per_image(&st, &DsaParams::default(), AugMode::M, 8, 6, &mut rng).unwrap();
    let kinds: Vec<&str> = ops
        .iter()
        .map(|op| match op {
            AugOp::Brightness(_) => "brightness",
            AugOp::Saturation(_) => "saturation",
            AugOp::Contrast(_) => "contrast",
            AugOp::Crop(_) => "crop",
            AugOp::Cutout { .. } => "cutout",
            AugOp::Flip(_) => "flip",
            AugOp::Affine(p) if p[0].a01 == 0.0 && p[0].a10 == 0.0 => "scale",
            AugOp::Affine(_) => "rotate",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "brightness",
            "saturation",
            "contrast",
            "crop",
            "cutout",
            "flip",
            "scale",
            "rotate"
        ]
    );
    // The result is the composition of all of them.
    let s = shape(6, 3, 8, 8);
    let b = Cpu::<f64>::new(1).unwrap();
    let x = rand_vec(&mut rng, s.len());
    let y = apply_fwd(&b, &ops, &x, &s).unwrap();
    let mut z = x.clone();
    for op in &ops {
        z = fwd64(op, &z, &s);
    }
    assert_eq!(y, z);
    // Dropping any one op changes the result.
    for k in 0..ops.len() {
        let mut fewer = ops.clone();
        fewer.remove(k);
        assert_ne!(
            apply_fwd(&b, &fewer, &x, &s).unwrap(),
            y,
            "op {k} had no effect"
        );
    }
}

#[test]
fn a_draw_from_explicit_values_takes_one_parameter_tuple_per_function() {
    use dsa_condense::augment::{AugDraw, Group};
    use dsa_condense::backend::AugOp;
    let d = AugDraw::from_ops(vec![Group::Color], vec![AugOp::Contrast(vec![1.3])]).unwrap();
    assert_eq!(d.ops(3), vec![AugOp::Contrast(vec![1.3; 3])]);
    assert!(AugDraw::from_ops(vec![Group::Color], vec![AugOp::Contrast(vec![1.3, 0.9])]).is_err());
}
