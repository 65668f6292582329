//! Gradient checks of every non-ConvNet architecture (the ConvNet family is checked
//! in `tests/engine_gradcheck.rs`) on `Cpu<f64>`, on miniatures: every width
//! divided by 16 (ResNet18: 4/8/16/32 channels), 1x16x16 input (VGG11 needs 32x32
//! for its five poolings), 3 classes, batch 3.
//!
//! - first order: the parameter gradient (up to `PARAM_SAMPLES` coordinates of every
//!   tensor) and the input gradient against central differences, in train mode,
//!   and for BatchNorm models also in eval mode with a non-trivial running state;
//! - second order: the exact dD/dS of one class's matching step (3 real, 3
//!   synthetic images, metric `ours`) with and without a fixed augmentation.
//!
//! Error model and steps as in `tests/engine_gradcheck.rs` (all these networks have
//! ReLU / max-pooling kinks: second-order stencil, h = 1e-6).

use dsa_condense::backend::{Backend, ImgShape, Metric};
use dsa_condense::engine::{Mode, Network, WorkspaceOpts};
use dsa_condense::model::{Model, Sizing};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod netcheck;
use netcheck::*;
mod faulty;
use faulty::{Fault, Faulty};

/// Coordinates checked per parameter tensor / per input.
const PARAM_SAMPLES: usize = 24;
const INPUT_SAMPLES: usize = 160;
const CLASSES: usize = 3;

fn miniature(name: &str) -> Model {
    let side = if name.starts_with("VGG") { 32 } else { 16 };
    Model::build(name, 1, side, side, CLASSES, Sizing::miniature(16)).unwrap()
}

fn first_order<Be: Backend<E = f64>>(
    be: &Be,
    name: &str,
    mode: Mode,
    seed: u64,
) -> Result<(), String> {
    let model = miniature(name);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Network::new(be, model.clone(), &mut rng).unwrap();
    if model.has_batchnorm() {
        randomise_running(&mut net, &mut rng);
    }
    let mut p = be.download(net.params()).unwrap();
    for v in p.iter_mut() {
        *v += 0.05 * rand_vec(&mut rng, 1, 1.0)[0];
    }
    net.set_params(&p).unwrap();
    let n = 3;
    let opts = WorkspaceOpts {
        input_grad: true,
        dual: false,
    };
    let mut ws = net.workspace(n, opts).unwrap();
    let x0 = rand_vec(&mut rng, ws.input_len(), 1.0);
    let lab = be.upload_labels(&[0, 1, 2]).unwrap();
    let x = be.upload(&x0).unwrap();
    let mut g = be.alloc(net.layout().total).unwrap();
    // BatchNorm in train mode updates its running state in every forward pass; the
    // loss does not depend on it, so the finite differences may run in train mode.
    net.loss_and_grads(&mut ws, &x, &lab, mode, &mut g).unwrap();
    let g = be.download(&g).unwrap();
    let dx = be.download(ws.input_grad().unwrap()).unwrap();
    let layout = net.layout().clone();
    let mut idx = Vec::new();
    for t in &layout.tensors {
        idx.extend(sample_coords(&mut rng, t.seg.range(), PARAM_SAMPLES));
    }
    let fd_p = fd_at(
        &p,
        &idx,
        |q| {
            net.set_params(q).unwrap();
            net.loss(&mut ws, &x, &lab, mode).unwrap().loss
        },
        STEP_KINK,
    );
    net.set_params(&p).unwrap();
    let scale = fd_p.grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let tag = format!("{name} {mode:?}");
    for t in &layout.tensors {
        let r = t.seg.range();
        let (a, f): (Vec<f64>, Vec<f64>) = idx
            .iter()
            .zip(&fd_p.grad)
            .filter(|(i, _)| r.contains(i))
            .map(|(&i, &f)| (g[i], f))
            .unzip();
        compare_scaled(&format!("{tag} dL/d{}", t.name), &a, &f, scale, fd_p.atol)?;
    }
    let xi = sample_coords(&mut rng, 0..x0.len(), INPUT_SAMPLES);
    let fd_x = fd_at(
        &x0,
        &xi,
        |q| {
            let xq = be.upload(q).unwrap();
            net.loss(&mut ws, &xq, &lab, mode).unwrap().loss
        },
        STEP_KINK,
    );
    let a: Vec<f64> = xi.iter().map(|&i| dx[i]).collect();
    compare(&format!("{tag} dL/dx"), &a, &fd_x).map(|_| ())
}

fn second_order<Be: Backend<E = f64>>(
    be: &Be,
    name: &str,
    aug: bool,
    seed: u64,
) -> Result<(), String> {
    let model = miniature(name);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Network::new(be, model.clone(), &mut rng).unwrap();
    if model.has_batchnorm() {
        randomise_running(&mut net, &mut rng);
    }
    let (n_real, ipc, class) = (3, 3, 1);
    let mut mw = net.match_workspace(n_real, ipc).unwrap();
    let img = model.image_len();
    let (aug_syn, aug_real) = if aug {
        (fixed_aug(ipc, 9.0, 1.2), fixed_aug(n_real, 9.0, 1.2))
    } else {
        (vec![], vec![])
    };
    let mut real = be.upload(&rand_vec(&mut rng, n_real * img, 1.0)).unwrap();
    let rs = ImgShape {
        n: n_real as u32,
        c: 1,
        h: model.image_h as u32,
        w: model.image_w as u32,
    };
    for op in &aug_real {
        let mut y = be.alloc(n_real * img).unwrap();
        be.aug_fwd(&mut y, &real, op, &rs).unwrap();
        real = y;
    }
    let s0 = rand_vec(&mut rng, ipc * img, 1.0);
    let s = be.upload(&s0).unwrap();
    net.matching_grad(&mut mw, &real, &s, class, &aug_syn, Metric::Ours)
        .unwrap();
    let analytic = be.download(&mw.dsyn).unwrap();
    let si = sample_coords(&mut rng, 0..s0.len(), INPUT_SAMPLES);
    let fd = fd_at(
        &s0,
        &si,
        |q| {
            let sq = be.upload(q).unwrap();
            net.matching_loss(&mut mw, &real, &sq, class, &aug_syn, Metric::Ours)
                .unwrap()
        },
        STEP_KINK,
    );
    let a: Vec<f64> = si.iter().map(|&i| analytic[i]).collect();
    compare(&format!("{name} dD/dS aug={aug}"), &a, &fd).map(|_| ())
}

const ARCHS: [&str; 9] = [
    "MLP",
    "LeNet",
    "AlexNet",
    "AlexNetBN",
    "VGG11",
    "VGG11BN",
    "ResNet18",
    "ResNet18BN",
    "ResNet18BN_AP",
];

#[test]
fn parameter_and_input_gradients_of_every_architecture() {
    let cpu = B::new(1).unwrap();
    let mut failures = Vec::new();
    for (i, name) in ARCHS.iter().enumerate() {
        let mut modes = vec![Mode::Train];
        if miniature(name).has_batchnorm() {
            modes.push(Mode::Eval);
        }
        for mode in modes {
            if let Err(e) = first_order(&cpu, name, mode, 300 + i as u64) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn second_order_matching_gradient_of_every_architecture() {
    let cpu = B::new(1).unwrap();
    let mut failures = Vec::new();
    for (i, name) in ARCHS.iter().enumerate() {
        for aug in [false, true] {
            if let Err(e) = second_order(&cpu, name, aug, 700 + 2 * i as u64 + aug as u64) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The checks above fail when one layer's derivative is wrong: each [`Fault`]
/// is caught by the check that covers it, and the first-order check does not
/// blame a fault that only the second-order pass can see.
#[test]
fn a_wrong_layer_backward_is_caught() {
    // Max-pooling backward scaled: first order on LeNet.
    let be = Faulty::new(Fault::PoolBackwardScaled);
    let e = first_order(&be, "LeNet", Mode::Train, 300).expect_err("scaled pool backward");
    assert!(e.contains("LeNet"), "{e}");
    // Residual fan-in lost: first order on ResNet18 (identity shortcuts).
    let be = Faulty::new(Fault::ConvBackwardIgnoresAcc);
    first_order(&be, "ResNet18", Mode::Train, 306).expect_err("conv acc ignored");
    // ...which a network without fan-in does not notice.
    first_order(&be, "AlexNet", Mode::Train, 302).expect("AlexNet has no fan-in");
    // Dual reverse of the activation: only the second-order check sees it.
    let be = Faulty::new(Fault::ActDualDropsTangent);
    first_order(&be, "MLP", Mode::Train, 300).expect("first order does not use the dual pass");
    second_order(&be, "MLP", false, 700).expect_err("dropped tangent in act dual reverse");
}
