//! DC's legacy evaluation augmentation (docs/method.md §5.5): crop and scale against
//! hand-computed examples, rotate against scipy, the batch driver (op choice,
//! noise, reproducibility), the per-evaluation-model configuration (docs/method.md §5.3,
//! §5.4) and an evaluation that trains with it on the CPU backend.

use std::io::Write;
use std::process::Command;

use dsa_condense::augment::legacy::{crop_shift, rotate_spline, scale_nearest};
use dsa_condense::augment::{dc_augment, DcOp, DcParams, DcStrategy};
use dsa_condense::backend::cpu::Cpu;
use dsa_condense::condense::config::{CondenseArgs, CondenseConfig};
use dsa_condense::condense::evaluate::{eval_options, eval_settings};
use dsa_condense::data::Split;
use dsa_condense::eval::{train_and_test, DeviceSplit, TrainSet};
use dsa_condense::model::Model;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ---------------------------------------------------------------- helpers

/// 1 x h x w image with v[y][x] = 1 + w*y + x.
fn ramp(h: usize, w: usize) -> Vec<f32> {
    (0..h * w).map(|i| 1.0 + i as f32).collect()
}

fn random_image(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random::<f32>() * 4.0 - 2.0).collect()
}

/// Max |a - b|, panicking on a length mismatch or a non-finite value.
fn max_abs_diff(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len(), "lengths");
    let mut worst = (0.0f32, 0usize);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(x.is_finite() && y.is_finite(), "non-finite at {i}: {x} {y}");
        let d = (x - y).abs();
        if d > worst.0 {
            worst = (d, i);
        }
    }
    worst
}

/// The minibatch channel means as the driver computes them (f64 sums per plane).
fn channel_means(x: &[f32], n: usize, c: usize, hw: usize) -> Vec<f64> {
    let mut sum = vec![0.0f64; c];
    for image in x.chunks_exact(c * hw) {
        for (ch, plane) in image.chunks_exact(hw).enumerate() {
            sum[ch] += plane.iter().map(|&v| v as f64).sum::<f64>();
        }
    }
    sum.iter().map(|s| s / (n * hw) as f64).collect()
}

// ---------------------------------------------------------------- crop

#[test]
fn crop_matches_hand_computed_windows() {
    let img = ramp(4, 4);
    // Padding 1: canvas 6x6, window at (0, 2) = image rows -1..2, columns 1..4.
    let out = crop_shift(&img, 1, 4, 4, 1, 0, 2, &[-9.0]).unwrap();
    #[rustfmt::skip]
    let want = [
        -9.0, -9.0, -9.0, -9.0,
         2.0,  3.0,  4.0, -9.0,
         6.0,  7.0,  8.0, -9.0,
        10.0, 11.0, 12.0, -9.0,
    ];
    assert_eq!(out, want);
    // The reference's padding 4: (4, 4) is the identity, (0, 0) lies wholly in the
    // fill for a 4x4 image, (7, 5) shifts by (+3, +1).
    assert_eq!(crop_shift(&img, 1, 4, 4, 4, 4, 4, &[0.5]).unwrap(), img);
    assert_eq!(
        crop_shift(&img, 1, 4, 4, 4, 0, 0, &[0.5]).unwrap(),
        vec![0.5; 16]
    );
    let out = crop_shift(&img, 1, 4, 4, 4, 7, 5, &[0.5]).unwrap();
    #[rustfmt::skip]
    let want = [
        14.0, 15.0, 16.0, 0.5,
         0.5,  0.5,  0.5, 0.5,
         0.5,  0.5,  0.5, 0.5,
         0.5,  0.5,  0.5, 0.5,
    ];
    assert_eq!(out, want);
    // Every channel has its own fill.
    let two: Vec<f32> = [ramp(2, 3), ramp(2, 3)].concat();
    let out = crop_shift(&two, 2, 2, 3, 1, 2, 0, &[-1.0, -2.0]).unwrap();
    assert_eq!(
        out,
        [-1.0, 4.0, 5.0, -1.0, -1.0, -1.0, -2.0, 4.0, 5.0, -2.0, -2.0, -2.0]
    );
    // A window beyond the canvas or a fill per channel missing: shape errors.
    assert!(crop_shift(&img, 1, 4, 4, 1, 3, 0, &[0.0]).is_err());
    assert!(crop_shift(&two, 2, 2, 3, 1, 0, 0, &[0.0]).is_err());
}

// ---------------------------------------------------------------- scale

#[test]
fn scale_matches_hand_computed_nearest_resizes() {
    let img = ramp(4, 4);
    // Shrink to 2x2: sources 0, 2 on both axes, pasted at (1, 1) on a 4x4 zero canvas.
    let out = scale_nearest(&img, 1, 4, 4, 2, 2).unwrap();
    #[rustfmt::skip]
    let want = [
        0.0, 0.0, 0.0, 0.0,
        0.0, 1.0, 3.0, 0.0,
        0.0, 9.0, 11.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(out, want);
    // Enlarge to 5x6: rows 0,0,1,2,3, columns 0,0,1,2,2,3; canvas 6, pasted at (0, 0),
    // window at (1, 1): output row i is source row i, columns 0, 1, 2, 2.
    let out = scale_nearest(&img, 1, 4, 4, 5, 6).unwrap();
    let want: Vec<f32> = (0..4)
        .flat_map(|i| [0, 1, 2, 2].map(|j| img[i * 4 + j]))
        .collect();
    assert_eq!(out, want);
    // Same size: identity.
    assert_eq!(scale_nearest(&img, 1, 4, 4, 4, 4).unwrap(), img);
    // PyTorch computes the scale 26/22 in f32 (1.1818181, below 13/11), so output
    // row 11 reads source row 12, not 13 = 11 * 26 / 22. Rows 26 -> 22 pasted at
    // (2, 0): output row 13 is resized row 11.
    let big = ramp(26, 26);
    let out = scale_nearest(&big, 1, 26, 26, 22, 26).unwrap();
    assert_eq!(&out[13 * 26..14 * 26], &big[12 * 26..13 * 26]);
    assert_eq!(&out[12 * 26..13 * 26], &big[11 * 26..12 * 26]);
    assert!(out[..2 * 26].iter().all(|&v| v == 0.0), "zero fill above");
    assert!(scale_nearest(&img, 1, 4, 4, 0, 3).is_err());
}

// ---------------------------------------------------------------- rotate

/// scipy's rotate + the reference's centre crop of `img` ([c, h, w]) by each angle,
/// or `None` when python3 with scipy is not available.
fn scipy_rotate(
    img: &[f32],
    c: usize,
    h: usize,
    w: usize,
    angles: &[i32],
    cval: f64,
) -> Option<Vec<Vec<f32>>> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.f32");
    let output = dir.path().join("out.f32");
    let bytes: Vec<u8> = img.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input, bytes).unwrap();
    let script = r#"
import sys, numpy as np
from scipy.ndimage import rotate
inp, out, c, h, w, cval = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
img = np.fromfile(inp, dtype='<f4').reshape(c, h, w)
res = []
for a in sys.argv[7:]:
    im_ = rotate(img, angle=int(a), axes=(-2, -1), cval=cval)
    r = int((im_.shape[-2] - h) / 2)
    q = int((im_.shape[-1] - w) / 2)
    res.append(np.ascontiguousarray(im_[:, r:r + h, q:q + w], dtype='<f4'))
np.concatenate([x.ravel() for x in res]).tofile(out)
"#;
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).arg(&input).arg(&output);
    for v in [c, h, w] {
        cmd.arg(v.to_string());
    }
    cmd.arg(format!("{cval:?}"));
    for a in angles {
        cmd.arg(a.to_string());
    }
    let ok = cmd.output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        return None;
    }
    let raw = std::fs::read(&output).unwrap();
    let all: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(all.len(), angles.len() * img.len(), "scipy output length");
    Some(all.chunks(img.len()).map(<[f32]>::to_vec).collect())
}

/// True when python3 can import scipy; otherwise prints why the scipy comparison
/// is skipped, or fails when `DSA_REQUIRE_SCIPY=1` (CI) demands it.
fn scipy_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import numpy, scipy.ndimage"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("DSA_REQUIRE_SCIPY").as_deref() != Ok("1"),
            "DSA_REQUIRE_SCIPY=1 but python3 cannot import scipy"
        );
        // Written to the stderr handle, which the test harness does not capture.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: scipy missing (python3 -c 'import scipy.ndimage' failed)"
        );
    }
    ok
}

#[test]
fn rotate_matches_scipy() {
    if !scipy_available() {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let angles = [-45, -44, -17, -1, 0, 1, 13, 30, 44];
    // Error model: both sides evaluate the same f64 spline and round to f32, so
    // they agree to a few f32 ulps of the values (|v| <= ~3): bound 1e-4.
    let mut worst = 0.0f32;
    for (c, h, w) in [(1, 28, 28), (3, 32, 32), (2, 7, 9), (1, 3, 2), (1, 9, 4)] {
        let img = random_image(&mut rng, c * h * w);
        let cval = -0.37;
        let want = scipy_rotate(&img, c, h, w, &angles, cval).expect("scipy rotate");
        for (a, want) in angles.iter().zip(&want) {
            let got = rotate_spline(&img, c, h, w, *a as f64, cval).unwrap();
            let (err, at) = max_abs_diff(&got, want);
            assert!(
                err < 1e-4,
                "[{c}, {h}, {w}] angle {a}: max |rust - scipy| = {err} at {at} ({} vs {})",
                got[at],
                want[at]
            );
            worst = worst.max(err);
        }
    }
    eprintln!("rotate vs scipy: max abs error {worst:e} over all shapes and angles");
}

#[test]
fn rotate_by_zero_is_the_identity() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for (c, h, w) in [(1, 28, 28), (3, 5, 8)] {
        let img = random_image(&mut rng, c * h * w);
        let out = rotate_spline(&img, c, h, w, 0.0, 9.0).unwrap();
        let (err, at) = max_abs_diff(&out, &img);
        assert!(err < 1e-6, "[{c}, {h}, {w}]: {err} at {at}");
    }
    // A non-zero angle moves pixels and brings the fill into the corners.
    let img = random_image(&mut rng, 28 * 28);
    let out = rotate_spline(&img, 1, 28, 28, 30.0, 9.0).unwrap();
    assert_eq!(out[0], 9.0, "corner is outside the rotated image");
    assert!(max_abs_diff(&out, &img).0 > 0.1);
}

// ---------------------------------------------------------------- the batch driver

#[test]
fn noise_has_the_configured_std() {
    let (n, c, h, w) = (50, 3, 16, 16);
    let mut x = vec![1.0f32; n * c * h * w];
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let p = DcParams::default();
    dc_augment(
        &mut x,
        (n, c, h, w),
        &DcStrategy::new(&[DcOp::Noise]),
        &p,
        &mut rng,
    )
    .unwrap();
    let d: Vec<f64> = x.iter().map(|&v| v as f64 - 1.0).collect();
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    let std = (d.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d.len() as f64).sqrt();
    // 38400 samples: the std estimate is within ~0.4 % (1 sigma); allow 3 %.
    assert!((std / 0.001 - 1.0).abs() < 0.03, "std {std}");
    assert!(mean.abs() < 3e-5, "mean {mean}");
}

/// Which op produced `out` from `img`: the crop windows, the rotation angles and
/// the scale sizes the draws can give, compared exactly.
fn classify(img: &[f32], out: &[f32], h: usize, fill: f32, cval: f64) -> Option<DcOp> {
    let p = DcParams::default();
    let (c, w) = (1, h);
    for r in 0..2 * p.crop {
        for q in 0..2 * p.crop {
            if crop_shift(img, c, h, w, p.crop, r, q, &[fill]).unwrap() == out {
                return Some(DcOp::Crop);
            }
        }
    }
    for a in -p.rotate..p.rotate {
        if rotate_spline(img, c, h, w, a as f64, cval).unwrap() == out {
            return Some(DcOp::Rotate);
        }
    }
    let lo = ((1.0 - p.scale) * h as f64) as usize;
    let hi = ((1.0 + p.scale) * h as f64) as usize;
    for nh in lo..=hi {
        for nw in lo..=hi {
            if scale_nearest(img, c, h, w, nh, nw).unwrap() == out {
                return Some(DcOp::Scale);
            }
        }
    }
    let (d, _) = max_abs_diff(img, out);
    (d > 0.0 && d < 0.01).then_some(DcOp::Noise)
}

fn op_counts(strategy: &DcStrategy, n: usize, h: usize, seed: u64) -> Vec<(DcOp, usize)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let orig = random_image(&mut rng, n * h * h);
    let mut x = orig.clone();
    let means = channel_means(&orig, n, 1, h * h);
    dc_augment(
        &mut x,
        (n, 1, h, h),
        strategy,
        &DcParams::default(),
        &mut rng,
    )
    .unwrap();
    let mut counts: Vec<(DcOp, usize)> = strategy.ops().iter().map(|&o| (o, 0)).collect();
    for (img, out) in orig.chunks(h * h).zip(x.chunks(h * h)) {
        let op = classify(img, out, h, means[0] as f32, means[0])
            .unwrap_or_else(|| panic!("an output that no op of {strategy} explains"));
        let slot = counts.iter_mut().find(|(o, _)| *o == op);
        slot.unwrap_or_else(|| panic!("{op:?} is not in {strategy}"))
            .1 += 1;
    }
    counts
}

#[test]
fn every_op_of_the_strategy_is_drawn_about_equally() {
    // 240 images, 3 ops: about 80 each (binomial std ~7.3); accept 50..110.
    for (strategy, n) in [
        (DcStrategy::crop_scale_rotate(), 240),
        (DcStrategy::crop_noise(), 200),
    ] {
        let counts = op_counts(&strategy, n, 8, 11);
        let expect = n / strategy.ops().len();
        for (op, k) in &counts {
            assert!(
                k * 8 > expect * 5 && k * 8 < expect * 11,
                "{strategy}: {op:?} drawn {k} times of {n}: {counts:?}"
            );
        }
    }
}

#[test]
fn a_strategy_is_reproducible_from_the_seed_and_none_is_the_identity() {
    let (n, c, h, w) = (12, 3, 10, 10);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let orig = random_image(&mut rng, n * c * h * w);
    let p = DcParams::default();
    let run = |seed: u64, s: &DcStrategy| {
        let mut x = orig.clone();
        dc_augment(
            &mut x,
            (n, c, h, w),
            s,
            &p,
            &mut ChaCha8Rng::seed_from_u64(seed),
        )
        .unwrap();
        x
    };
    let all = DcStrategy::new(&[DcOp::Crop, DcOp::Scale, DcOp::Rotate, DcOp::Noise]);
    let a = run(7, &all);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&run(7, &all)), "same seed, same result");
    assert_ne!(
        bits(&a),
        bits(&run(8, &all)),
        "another seed, another result"
    );
    assert_ne!(bits(&a), bits(&orig));
    assert_eq!(run(7, &DcStrategy::none()), orig);
    assert_eq!(all.to_string(), "crop_scale_rotate_noise");
    assert_eq!(DcStrategy::none().to_string(), "none");
    // Bad shapes and settings are errors.
    let mut x = orig.clone();
    let mut r = ChaCha8Rng::seed_from_u64(0);
    assert!(dc_augment(&mut x, (n, c, h, w + 1), &all, &p, &mut r).is_err());
    let bad = DcParams { scale: 1.5, ..p };
    assert!(dc_augment(&mut x, (n, c, h, w), &all, &bad, &mut r).is_err());
    let bad = DcParams { rotate: 0, ..p };
    assert!(dc_augment(&mut x, (n, c, h, w), &all, &bad, &mut r).is_err());
}

// ---------------------------------------------------------------- configuration

fn cfg(method: &str, dataset: &str, model: &str, eval_mode: &str) -> CondenseConfig {
    CondenseArgs {
        method: Some(method.into()),
        dataset: Some(dataset.into()),
        model: Some(model.into()),
        eval_mode: Some(eval_mode.into()),
        ..Default::default()
    }
    .resolve()
    .unwrap()
}

/// (eval model, DC strategy as text, epochs) of every evaluation model.
fn per_model(c: &CondenseConfig) -> Vec<(String, Option<String>, usize)> {
    c.eval_models()
        .into_iter()
        .map(|m| {
            let o = eval_options(c, &m).unwrap();
            assert_eq!(o.epochs, c.eval_epochs(&m));
            (m.clone(), o.dc_aug.map(|s| s.to_string()), o.epochs)
        })
        .collect()
}

fn row(m: &str, s: Option<&str>, e: usize) -> Vec<(String, Option<String>, usize)> {
    vec![(m.to_string(), s.map(str::to_string), e)]
}

#[test]
fn dc_augmentation_and_epochs_follow_the_evaluation_model() {
    let c = cfg("dc", "MNIST", "ConvNet", "S");
    assert_eq!(
        per_model(&c),
        row("ConvNet", Some("crop_scale_rotate"), 1000)
    );
    let c = cfg("dc", "FashionMNIST", "ConvNet", "S");
    assert_eq!(per_model(&c), row("ConvNet", Some("none"), 300));
    // ConvNetBN: evaluated as itself (SS) it trains with crop_noise; in mode S the
    // evaluation model is ConvNet, which does not.
    let c = cfg("dc", "CIFAR10", "ConvNetBN", "SS");
    assert_eq!(per_model(&c), row("ConvNetBN", Some("crop_noise"), 1000));
    let c = cfg("dc", "CIFAR10", "ConvNetBN", "S");
    assert_eq!(per_model(&c), row("ConvNet", Some("none"), 300));
    // ConvNetBN overrides MNIST's strategy.
    let c = cfg("dc", "MNIST", "ConvNetBN", "SS");
    assert_eq!(per_model(&c), row("ConvNetBN", Some("crop_noise"), 1000));
    // DSA: 1000 epochs, no DC augmentation, its own strategy.
    let c = cfg("dsa", "FashionMNIST", "ConvNetBN", "SS");
    assert_eq!(per_model(&c), row("ConvNetBN", None, 1000));
    assert!(eval_options(&c, "ConvNetBN").unwrap().dsa.is_some());
    // An explicit --epoch-eval-train wins, the strategy stays.
    let c = CondenseArgs {
        dataset: Some("MNIST".into()),
        epoch_eval_train: Some(7),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    assert_eq!(per_model(&c), row("ConvNet", Some("crop_scale_rotate"), 7));
    // The report records the same.
    let s = eval_settings(&c).unwrap();
    let conv = &s["ConvNet"];
    assert_eq!(
        (conv.epochs, conv.dc_augmentation.as_deref()),
        (7, Some("crop_scale_rotate"))
    );
    assert_eq!(conv.dsa_strategy, None);
}

// ---------------------------------------------------------------- evaluation

#[test]
fn evaluation_trains_with_the_dc_augmentation_on_the_cpu_backend() {
    let (c, h, w, k) = (1, 12, 12, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    // Class k: a bright horizontal band at rows 4k..4k+4, plus noise.
    let mut make = |n: usize| {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let label = i % k;
            for y in 0..h {
                for _ in 0..w {
                    let base = if y / 4 == label { 1.5 } else { -0.5 };
                    images.push(base + rng.random::<f32>() * 0.4 - 0.2);
                }
            }
            labels.push(label as u32);
        }
        (images, labels)
    };
    let (train_x, train_y) = make(9);
    let (test_x, test_y) = make(30);
    let be = Cpu::<f32>::new(1).unwrap();
    let test = DeviceSplit::new(
        &be,
        &Split {
            images: test_x,
            labels: test_y,
            n: 30,
        },
    )
    .unwrap();
    let net = Model::from_name("ConvNetD2", c, h, w, k).unwrap();
    let mut config = cfg("dc", "MNIST", "ConvNet", "S");
    config.epoch_eval_train = Some(6);
    config.batch_train = 4;
    let opts = eval_options(&config, "ConvNet").unwrap();
    assert_eq!(opts.dc_aug, Some(DcStrategy::crop_scale_rotate()));
    let train = TrainSet {
        images: &train_x,
        labels: &train_y,
    };
    let run = |seed: u64| {
        train_and_test(
            &be,
            &net,
            train,
            &test,
            &opts,
            &mut ChaCha8Rng::seed_from_u64(seed),
        )
        .unwrap()
    };
    let r = run(4);
    for v in [r.train_acc, r.train_loss, r.test_acc] {
        assert!(v.is_finite(), "{r:?}");
    }
    assert!((0.0..=1.0).contains(&r.test_acc), "{r:?}");
    assert_eq!(r, run(4), "same seed, same evaluation");
    // The augmentation changes what the network sees: same seed, no augmentation,
    // another training loss.
    let plain = dsa_condense::eval::EvalOptions {
        dc_aug: None,
        ..opts.clone()
    };
    let p = train_and_test(
        &be,
        &net,
        train,
        &test,
        &plain,
        &mut ChaCha8Rng::seed_from_u64(4),
    )
    .unwrap();
    assert_ne!(p.train_loss, r.train_loss);
}
