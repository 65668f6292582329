//! CPU softmax cross-entropy (first and second order), matching distances and SGD:
//! gradients against f64 central finite differences, values against direct or
//! hand computations, f32 against f64, bit-identity across thread counts.

mod fdcheck;

use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::{Backend, LinearShape, MatchTensor, Metric, Seg, SgdParams};
use dsa_condense::Error;
use fdcheck::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn cpu() -> Cpu<f64> {
    Cpu::new(1).unwrap()
}

fn lin(n: u32, k: u32) -> LinearShape {
    LinearShape { n, f: 1, k }
}

fn ce_loss(be: &Cpu<f64>, logits: &[f64], labels: &Vec<u32>, s: &LinearShape) -> f64 {
    let mut d = vec![0.0; logits.len()];
    be.ce_fwd_bwd(&mut d, &logits.to_vec(), labels, s)
        .unwrap()
        .loss
}

#[test]
fn ce_value_count_and_gradient() {
    let be = cpu();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (n, k) = (6usize, 5usize);
    let s = lin(n as u32, k as u32);
    let logits = rand_vec(&mut rng, n * k, -3.0, 3.0);
    let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..k as u32)).collect();
    let mut dl = vec![0.0; n * k];
    let out = be.ce_fwd_bwd(&mut dl, &logits, &labels, &s).unwrap();
    // Direct (unshifted) computation of the value and the arg-max count.
    let mut loss = 0.0;
    let mut correct = 0;
    for i in 0..n {
        let row = &logits[i * k..(i + 1) * k];
        let z: f64 = row.iter().map(|v| v.exp()).sum();
        loss -= (row[labels[i] as usize].exp() / z).ln();
        let arg = (0..k).fold(0, |a, j| if row[j] > row[a] { j } else { a });
        correct += usize::from(arg == labels[i] as usize);
    }
    assert_close("ce loss", &[out.loss], &[loss / n as f64], 1e-12);
    assert_eq!(out.correct, correct);
    // The gradient is (p - e)/N, checked by finite differences with a non-trivial
    // upstream: the scalar is the loss itself, so check dlogits element-wise.
    let fd = fd_grad(&logits, |l| ce_loss(&be, l, &labels, &s));
    assert_close("ce dlogits", &dl, &fd, FD_RTOL);
}

#[test]
fn ce_is_stable_for_large_logits() {
    let be = cpu();
    let s = lin(2, 3);
    let labels = vec![0u32, 2];
    let base = vec![0.5, -1.0, 2.0, 1.0, 0.0, -0.5];
    let shifted: Vec<f64> = base.iter().map(|v| v + 1000.0).collect();
    let (mut d1, mut d2) = (vec![0.0; 6], vec![0.0; 6]);
    let a = be.ce_fwd_bwd(&mut d1, &base, &labels, &s).unwrap();
    let b = be.ce_fwd_bwd(&mut d2, &shifted, &labels, &s).unwrap();
    assert!(b.loss.is_finite());
    assert_close("shifted loss", &[b.loss], &[a.loss], 1e-10);
    assert_close("shifted grad", &d2, &d1, 1e-10);
}

#[test]
fn ce_rejects_bad_labels_and_non_finite_logits() {
    let be = cpu();
    let s = lin(2, 3);
    let mut d = vec![0.0; 6];
    let l = vec![0.0; 6];
    assert!(matches!(
        be.ce_fwd_bwd(&mut d, &l, &vec![0, 3], &s),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        be.ce_fwd_bwd(&mut d, &l, &vec![0], &s),
        Err(Error::Shape(_))
    ));
    let mut nan = l.clone();
    nan[4] = f64::NAN;
    assert!(matches!(
        be.ce_fwd_bwd(&mut d, &nan, &vec![0, 1], &s),
        Err(Error::NonFinite(_))
    ));
    let mut dd = vec![0.0; 6];
    assert!(matches!(
        be.ce_dual(&mut d, &mut dd, &l, &l, &vec![5, 1], &s),
        Err(Error::Shape(_))
    ));
}

#[test]
fn ce_dual_matches_fd() {
    let be = cpu();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (n, k) = (5usize, 4usize);
    let s = lin(n as u32, k as u32);
    let logits = rand_vec(&mut rng, n * k, -3.0, 3.0);
    let ldot = rand_vec(&mut rng, n * k, -1.0, 1.0);
    let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..k as u32)).collect();
    let h_of = |l: &[f64], ld: &[f64]| {
        let (mut a, mut b) = (vec![0.0; n * k], vec![0.0; n * k]);
        be.ce_dual(&mut a, &mut b, &l.to_vec(), &ld.to_vec(), &labels, &s)
            .unwrap()
    };
    let (mut dl, mut dld) = (vec![0.0; n * k], vec![0.0; n * k]);
    let h = be
        .ce_dual(&mut dl, &mut dld, &logits, &ldot, &labels, &s)
        .unwrap();
    // h is the directional derivative of the loss along ldot.
    let dir = fd_dir(|t| {
        let l: Vec<f64> = logits.iter().zip(&ldot).map(|(a, b)| a + t * b).collect();
        vec![ce_loss(&be, &l, &labels, &s)]
    });
    assert_close("ce_dual h", &[h], &dir, FD_RTOL);
    let fd_l = fd_grad(&logits, |l| h_of(l, &ldot));
    let fd_ld = fd_grad(&ldot, |ld| h_of(&logits, ld));
    assert_close("ce_dual dlogits", &dl, &fd_l, FD_RTOL);
    assert_close("ce_dual dldot", &dld, &fd_ld, FD_RTOL);
}

// ---- matching ----------------------------------------------------------------------

/// A conv-like 4x6 tensor, a bias (4), a 3x5 matrix, a bias (3), and 2 trailing
/// elements no tensor covers.
fn layout() -> (Vec<MatchTensor>, usize) {
    let t = |off: u32, rows: u32, cols: u32, v: u32| MatchTensor {
        seg: Seg {
            off,
            len: rows * cols,
        },
        rows,
        cols,
        is_vector: v,
    };
    (
        vec![
            t(0, 4, 6, 0),
            t(24, 1, 4, 1),
            t(28, 3, 5, 0),
            t(43, 1, 3, 1),
        ],
        48,
    )
}

fn dist(
    be: &Cpu<f64>,
    gs: &[f64],
    gr: &[f64],
    tensors: &[MatchTensor],
    m: Metric,
) -> (f64, Vec<f64>) {
    let mut d = vec![0.0; gs.len()];
    let v = be
        .match_distance(&mut d, &gs.to_vec(), &gr.to_vec(), tensors, m)
        .unwrap();
    (v, d)
}

#[test]
fn match_gradients_match_fd() {
    let be = cpu();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (tensors, len) = layout();
    let gs = rand_vec(&mut rng, len, -1.0, 1.0);
    let gr = rand_vec(&mut rng, len, -1.0, 1.0);
    for m in [Metric::Ours, Metric::Mse, Metric::Cos] {
        let (_, d) = dist(&be, &gs, &gr, &tensors, m);
        let fd = fd_grad(&gs, |g| dist(&be, g, &gr, &tensors, m).0);
        assert_close(&format!("{m:?} dsyn"), &d, &fd, FD_RTOL);
        assert!(
            d[46] == 0.0 && d[47] == 0.0,
            "{m:?}: gradient outside the tensors"
        );
    }
}

#[test]
fn ours_ignores_vectors_and_identical_gradients_are_close() {
    let be = cpu();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (tensors, len) = layout();
    let gs = rand_vec(&mut rng, len, -1.0, 1.0);
    let gr = rand_vec(&mut rng, len, -1.0, 1.0);
    let (v, d) = dist(&be, &gs, &gr, &tensors, Metric::Ours);
    assert!(d[24..28].iter().chain(&d[43..46]).all(|&x| x == 0.0));
    assert!(d[0..24].iter().any(|&x| x != 0.0));
    // Changing the 1-D tensors changes nothing.
    let mut gs2 = gs.clone();
    for i in (24..28).chain(43..46) {
        gs2[i] += 3.0;
    }
    assert_eq!(dist(&be, &gs2, &gr, &tensors, Metric::Ours).0, v);
    // ... but does change the metrics that include them.
    for m in [Metric::Mse, Metric::Cos] {
        assert_ne!(
            dist(&be, &gs2, &gr, &tensors, m).0,
            dist(&be, &gs, &gr, &tensors, m).0
        );
    }
    // Identical gradients: each of the 7 rows contributes 1e-6/(|r|^2 + 1e-6).
    for m in [Metric::Ours, Metric::Mse, Metric::Cos] {
        let (v, _) = dist(&be, &gr, &gr, &tensors, m);
        assert!((0.0..1e-5).contains(&v), "{m:?}: D(g, g) = {v}");
    }
}

#[test]
fn match_hand_computed_example() {
    let be = cpu();
    // Tensor A: 1 x 2 matrix, tensor B: a 1-D tensor of one element.
    let t = vec![
        MatchTensor {
            seg: Seg { off: 0, len: 2 },
            rows: 1,
            cols: 2,
            is_vector: 0,
        },
        MatchTensor {
            seg: Seg { off: 2, len: 1 },
            rows: 1,
            cols: 1,
            is_vector: 1,
        },
    ];
    let gr = vec![1.0, 0.0, 0.0];
    let gs = vec![1.0, 1.0, 1.0];
    // ours: 1 - 1/(1*sqrt(2) + 1e-6); d/ds = -r/den + dot |r| s/(|s| den^2).
    let den = 2f64.sqrt() + 1e-6;
    let (v, d) = dist(&be, &gs, &gr, &t, Metric::Ours);
    let b = 1.0 / (2f64.sqrt() * den * den);
    assert_close("ours value", &[v], &[1.0 - 1.0 / den], 1e-14);
    assert_close("ours grad", &d, &[-1.0 / den + b, b, 0.0], 1e-12);
    // mse: (1-1)^2 + (1-0)^2 + (1-0)^2 = 2, gradient 2(s - r).
    let (v, d) = dist(&be, &gs, &gr, &t, Metric::Mse);
    assert_eq!(v, 2.0);
    assert_eq!(d, vec![0.0, 2.0, 2.0]);
    // cos over [1,0,0] and [1,1,1]: 1 - 1/(sqrt(3) + 1e-6).
    let (v, _) = dist(&be, &gs, &gr, &t, Metric::Cos);
    assert_close(
        "cos value",
        &[v],
        &[1.0 - 1.0 / (3f64.sqrt() + 1e-6)],
        1e-14,
    );
}

#[test]
fn match_rejects_bad_tensors() {
    let be = cpu();
    let mut d = vec![0.0; 4];
    let g = vec![1.0; 4];
    let outside = [MatchTensor {
        seg: Seg { off: 2, len: 4 },
        rows: 2,
        cols: 2,
        is_vector: 0,
    }];
    assert!(matches!(
        be.match_distance(&mut d, &g, &g, &outside, Metric::Ours),
        Err(Error::Shape(_))
    ));
    let wrong = [MatchTensor {
        seg: Seg { off: 0, len: 4 },
        rows: 3,
        cols: 2,
        is_vector: 0,
    }];
    assert!(matches!(
        be.match_distance(&mut d, &g, &g, &wrong, Metric::Mse),
        Err(Error::Shape(_))
    ));
    let mut nan = g.clone();
    nan[1] = f64::NAN;
    let ok = [MatchTensor {
        seg: Seg { off: 0, len: 4 },
        rows: 2,
        cols: 2,
        is_vector: 0,
    }];
    assert!(matches!(
        be.match_distance(&mut d, &nan, &g, &ok, Metric::Cos),
        Err(Error::NonFinite(_))
    ));
}

// ---- SGD -------------------------------------------------------------------------------

#[test]
fn sgd_two_steps_by_hand() {
    let be = cpu();
    let hp = SgdParams {
        lr: 0.125,
        momentum: 0.5,
        weight_decay: 0.25,
    };
    // Powers of two keep every step exact in f64 and f32.
    let mut p = vec![1.0, -2.0];
    let mut m = vec![0.0, 0.0];
    be.sgd_step(&mut p, &vec![0.5, 1.0], &mut m, hp).unwrap();
    // d = [0.5 + 0.25, 1 - 0.5] = [0.75, 0.5]; m = d; p = [1 - 0.09375, -2 - 0.0625].
    assert_eq!(m, vec![0.75, 0.5]);
    assert_eq!(p, vec![0.90625, -2.0625]);
    be.sgd_step(&mut p, &vec![-1.0, 0.25], &mut m, hp).unwrap();
    // d = [-1 + 0.2265625, 0.25 - 0.515625] = [-0.7734375, -0.265625];
    // m = 0.5 m + d = [-0.3984375, -0.015625]; p -= 0.125 m.
    assert_eq!(m, vec![-0.3984375, -0.015625]);
    assert_eq!(p, vec![0.90625 + 0.0498046875, -2.0625 + 0.001953125]);
    // Without momentum the buffer is untouched and p -= lr (g + wd p).
    let plain = SgdParams {
        lr: 0.5,
        momentum: 0.0,
        weight_decay: 0.0,
    };
    let mut p = vec![1.0, -2.0];
    let mut m = vec![7.0, 7.0];
    be.sgd_step(&mut p, &vec![0.5, 1.0], &mut m, plain).unwrap();
    assert_eq!(p, vec![0.75, -2.5]);
    assert_eq!(m, vec![7.0, 7.0]);
    let mut short = vec![0.0];
    assert!(be
        .sgd_step(&mut short, &vec![0.5, 1.0], &mut m, plain)
        .is_err());
}

// ---- precision and determinism --------------------------------------------------

#[test]
fn f32_agrees_with_f64_and_threads_do_not_change_bits() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (n, k) = (32usize, 10usize);
    let s = lin(n as u32, k as u32);
    let logits = to_f64(&to_f32(&rand_vec(&mut rng, n * k, -4.0, 4.0)));
    let ldot = to_f64(&to_f32(&rand_vec(&mut rng, n * k, -1.0, 1.0)));
    let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..k as u32)).collect();
    let (tensors, len) = layout();
    let gs = to_f64(&to_f32(&rand_vec(&mut rng, len, -1.0, 1.0)));
    let gr = to_f64(&to_f32(&rand_vec(&mut rng, len, -1.0, 1.0)));

    let run32 = |threads: usize| {
        let be = Cpu::<f32>::new(threads).unwrap();
        let mut out = Vec::new();
        let (mut a, mut b) = (vec![0f32; n * k], vec![0f32; n * k]);
        let ce = be
            .ce_fwd_bwd(&mut a, &to_f32(&logits), &labels, &s)
            .unwrap();
        out.push((vec![ce.loss as f32], a.clone()));
        let h = be
            .ce_dual(
                &mut a,
                &mut b,
                &to_f32(&logits),
                &to_f32(&ldot),
                &labels,
                &s,
            )
            .unwrap();
        out.push((vec![h as f32], [a.clone(), b.clone()].concat()));
        for m in [Metric::Ours, Metric::Mse, Metric::Cos] {
            let mut d = vec![0f32; len];
            let v = be
                .match_distance(&mut d, &to_f32(&gs), &to_f32(&gr), &tensors, m)
                .unwrap();
            out.push((vec![v as f32], d));
        }
        out
    };
    let be = cpu();
    let mut want = Vec::new();
    let (mut a, mut b) = (vec![0.0; n * k], vec![0.0; n * k]);
    let ce = be.ce_fwd_bwd(&mut a, &logits, &labels, &s).unwrap();
    want.push((vec![ce.loss], a.clone()));
    let h = be
        .ce_dual(&mut a, &mut b, &logits, &ldot, &labels, &s)
        .unwrap();
    want.push((vec![h], [a.clone(), b.clone()].concat()));
    for m in [Metric::Ours, Metric::Mse, Metric::Cos] {
        let (v, d) = dist(&be, &gs, &gr, &tensors, m);
        want.push((vec![v], d));
    }
    let (one, two) = (run32(1), run32(2));
    for (i, (((v1, g1), (v2, g2)), (vw, gw))) in one.iter().zip(&two).zip(&want).enumerate() {
        assert_eq!(
            (bits(v1), bits(g1)),
            (bits(v2), bits(g2)),
            "output {i}: 1 vs 2 threads"
        );
        assert_close(&format!("f32 value {i}"), &to_f64(v1), vw, 1e-6);
        assert_close(&format!("f32 gradient {i}"), &to_f64(g1), gw, 1e-6);
    }
}
