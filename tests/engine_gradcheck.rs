//! Gradient checks of the engine on `Cpu<f64>` against central finite differences:
//! the whole-network parameter and input gradients, and the exact second-order
//! matching gradient dD/dS for every norm x activation x pooling, every metric,
//! with and without a fixed augmentation. Plus a test that a deliberately wrong
//! second-order gradient is rejected by the same check.
//!
//! Error model: for every element,
//! `|analytic - fd| <= TOL * max(|analytic|, |fd|, floor) + atol` with TOL = 1e-6,
//! `floor = 1e-2 * max_j |fd_j|` over the whole gradient (entries far below the
//! gradient's scale, e.g. a conv bias in front of a norm layer, whose exact gradient
//! is 0, are judged against that scale) and `atol` the rounding error of the finite
//! difference itself: f is computed with an error of at most
//! `F_REL * max(|f|, 1)` with `F_REL = 1e-14` (~45 ulp through a few hundred ops
//! in f64; the `1` because the distances are sums of `1 - cos` terms computed
//! against 1), so a central difference with step h carries `F_REL max(|f|,1) / h`
//! (x1.5 for the fourth-order stencil). Steps: networks with kinks (ReLU,
//! LeakyReLU, max pooling) use the second-order stencil with h = 1e-6, small enough
//! that no pre-activation / pooling window of the random inputs lies within a
//! step of its kink (with h = 1e-5 a crossing was observed in a few
//! configurations; the network is piecewise smooth, so truncation is negligible);
//! smooth networks use h = 1e-5 (error ~h^2 f''' ~ 1e-10) for metric `ours` and
//! the first-order checks, and the fourth-order stencil
//! `(8(f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))) / 12h` with h = 1e-4
//! (error ~h^4 f^(5)) for mse/cos, whose gradients are small against `D ~ 1`.

use dsa_condense::backend::{Act, Backend, ImgShape, Metric};
use dsa_condense::engine::{Mode, Network, WorkspaceOpts};
use dsa_condense::model::{ConvNetConfig, Norm, ParamInit, Pool};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod netcheck;
use netcheck::*;

/// True for networks without kinks (sigmoid / swish, no max pooling).
fn smooth(cfg: &ConvNetConfig) -> bool {
    matches!(cfg.act, Act::Sigmoid | Act::Swish) && cfg.pool != Pool::Max
}

/// Second-order central differences with the step for `cfg` (module docs).
fn central_fd(cfg: &ConvNetConfig, x0: &[f64], f: impl FnMut(&[f64]) -> f64) -> Fd {
    let h = if smooth(cfg) { STEP } else { STEP_KINK };
    fd_stencil(x0, f, false, h)
}

fn small_cfg(in_channels: usize, norm: Norm, act: Act, pool: Pool) -> ConvNetConfig {
    ConvNetConfig {
        in_channels,
        image_h: 8,
        image_w: 8,
        num_classes: 3,
        width: if norm == Norm::Group { 8 } else { 4 },
        depth: 2,
        norm,
        act,
        pool,
    }
}

fn first_order_check(cfg: ConvNetConfig, mode: Mode, seed: u64) {
    let be = B::new(1).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Network::new(&be, cfg, &mut rng).unwrap();
    if cfg.norm == Norm::Batch {
        randomise_running(&mut net, &mut rng);
    }
    // perturb gamma/beta away from 1/0 so their gradients are exercised generically
    let mut p = be.download(net.params()).unwrap();
    for t in &net.layout().tensors {
        if matches!(t.init, ParamInit::Ones | ParamInit::Zeros) {
            for v in &mut p[t.seg.range()] {
                *v += rng.random_range(-0.2..0.2);
            }
        }
    }
    net.set_params(&p).unwrap();
    let n = 3;
    let mut ws = net
        .workspace(
            n,
            WorkspaceOpts {
                input_grad: true,
                dual: false,
            },
        )
        .unwrap();
    let x0 = rand_vec(&mut rng, ws.input_len(), 1.0);
    let labels: Vec<u32> = (0..n as u32).map(|i| i % cfg.num_classes as u32).collect();
    let lab = be.upload_labels(&labels).unwrap();
    let x = be.upload(&x0).unwrap();
    let mut g = be.alloc(net.layout().total).unwrap();
    net.loss_and_grads(&mut ws, &x, &lab, mode, &mut g).unwrap();
    let g = be.download(&g).unwrap();
    let dx = be.download(ws.input_grad().unwrap()).unwrap();

    let fd_p = central_fd(&cfg, &p, |q| {
        net.set_params(q).unwrap();
        net.loss(&mut ws, &x, &lab, mode).unwrap().loss
    });
    net.set_params(&p).unwrap();
    let fd_x = central_fd(&cfg, &x0, |q| {
        let xq = be.upload(q).unwrap();
        net.loss(&mut ws, &xq, &lab, mode).unwrap().loss
    });
    let tag = format!("{:?}/{:?}/{:?} {mode:?}", cfg.norm, cfg.act, cfg.pool);
    let scale = fd_p.grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for t in &net.layout().tensors {
        let r = t.seg.range();
        compare_scaled(
            &format!("{tag} dL/d{}", t.name),
            &g[r.clone()],
            &fd_p.grad[r],
            scale,
            fd_p.atol,
        )
        .unwrap();
    }
    compare(&format!("{tag} dL/dx"), &dx, &fd_x).unwrap();
}

#[test]
fn param_and_input_gradients_every_layer_kind() {
    let acts = [Act::Relu, Act::Sigmoid, Act::LeakyRelu, Act::Swish];
    let pools = [Pool::Avg, Pool::Max, Pool::None];
    let norms = [
        Norm::Instance,
        Norm::Batch,
        Norm::Layer,
        Norm::Group,
        Norm::None,
    ];
    let mut seed = 100;
    for &norm in &norms {
        for (i, &act) in acts.iter().enumerate() {
            let pool = pools[i % 3];
            seed += 1;
            first_order_check(small_cfg(2, norm, act, pool), Mode::Train, seed);
        }
    }
    first_order_check(
        small_cfg(2, Norm::Batch, Act::Relu, Pool::Avg),
        Mode::Eval,
        7,
    );
    first_order_check(
        small_cfg(1, Norm::Instance, Act::Swish, Pool::Max),
        Mode::Train,
        8,
    );
}

struct MatchCase {
    cfg: ConvNetConfig,
    metric: Metric,
    aug: bool,
    seed: u64,
}

/// Builds the case and returns (S, analytic dD/dS, closure data) checked against FD.
fn second_order_check(c: &MatchCase) -> Result<f64, String> {
    let be = B::new(1).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
    let mut net = Network::new(&be, c.cfg, &mut rng).unwrap();
    if c.cfg.norm == Norm::Batch {
        randomise_running(&mut net, &mut rng);
    }
    let (n_real, ipc, class) = (5, 3, 1);
    let mut mw = net.match_workspace(n_real, ipc).unwrap();
    let img = c.cfg.in_channels * c.cfg.image_h * c.cfg.image_w;
    let (aug_syn, aug_real) = if c.aug {
        (fixed_aug(ipc, 11.0, 1.3), fixed_aug(n_real, 11.0, 1.3))
    } else {
        (vec![], vec![])
    };
    let mut real = be.upload(&rand_vec(&mut rng, n_real * img, 1.0)).unwrap();
    let rs = ImgShape {
        n: n_real as u32,
        c: c.cfg.in_channels as u32,
        h: c.cfg.image_h as u32,
        w: c.cfg.image_w as u32,
    };
    for op in &aug_real {
        let mut y = be.alloc(n_real * img).unwrap();
        be.aug_fwd(&mut y, &real, op, &rs).unwrap();
        real = y;
    }
    let s0 = rand_vec(&mut rng, ipc * img, 1.0);
    let s = be.upload(&s0).unwrap();
    net.matching_grad(&mut mw, &real, &s, class, &aug_syn, c.metric)
        .unwrap();
    let analytic = be.download(&mw.dsyn).unwrap();
    let fourth = c.metric != Metric::Ours && smooth(&c.cfg);
    let h = match (fourth, smooth(&c.cfg)) {
        (true, _) => STEP4,
        (false, true) => STEP,
        (false, false) => STEP_KINK,
    };
    let fd = fd_stencil(
        &s0,
        |q| {
            let sq = be.upload(q).unwrap();
            net.matching_loss(&mut mw, &real, &sq, class, &aug_syn, c.metric)
                .unwrap()
        },
        fourth,
        h,
    );
    let tag = format!(
        "dD/dS {:?}/{:?}/{:?} {:?} aug={}",
        c.cfg.norm, c.cfg.act, c.cfg.pool, c.metric, c.aug
    );
    compare(&tag, &analytic, &fd)
}

#[test]
fn second_order_every_norm_act_pool_metric_ours() {
    let acts = [Act::Relu, Act::Sigmoid, Act::LeakyRelu, Act::Swish];
    let pools = [Pool::Avg, Pool::Max, Pool::None];
    let norms = [
        Norm::Instance,
        Norm::Batch,
        Norm::Layer,
        Norm::Group,
        Norm::None,
    ];
    let mut seed = 1000;
    let mut failures = Vec::new();
    let mut worst = 0.0f64;
    for &norm in &norms {
        for &act in &acts {
            for &pool in &pools {
                seed += 1;
                let case = MatchCase {
                    cfg: small_cfg(2, norm, act, pool),
                    metric: Metric::Ours,
                    aug: seed % 2 == 0,
                    seed,
                };
                match second_order_check(&case) {
                    Ok(e) => worst = worst.max(e),
                    Err(e) => failures.push(e),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 60 configurations failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("second order, 60 configurations: max rel err {worst:.3e}");
}

#[test]
fn second_order_all_metrics_with_and_without_augmentation() {
    let cfgs = [
        small_cfg(2, Norm::Instance, Act::Relu, Pool::Avg),
        small_cfg(1, Norm::Batch, Act::Swish, Pool::Avg),
        small_cfg(3, Norm::Layer, Act::Sigmoid, Pool::None),
        small_cfg(1, Norm::None, Act::Swish, Pool::Max),
    ];
    let mut seed = 5000;
    for cfg in cfgs {
        for metric in [Metric::Ours, Metric::Mse, Metric::Cos] {
            for aug in [false, true] {
                seed += 1;
                second_order_check(&MatchCase {
                    cfg,
                    metric,
                    aug,
                    seed,
                })
                .unwrap();
            }
        }
    }
}

/// The check must reject a second-order gradient with one term missing: here the
/// tangent of the classifier (the `x V^T` term of `ldot` and its reverse) is dropped
/// by zeroing `v` on `fc.W` before the dual pass.
#[test]
fn wrong_second_order_gradient_is_caught() {
    let cfg = small_cfg(2, Norm::Instance, Act::Relu, Pool::Avg);
    let be = B::new(1).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let mut net = Network::new(&be, cfg, &mut rng).unwrap();
    let (n_real, ipc, class) = (5, 3, 2);
    let mut mw = net.match_workspace(n_real, ipc).unwrap();
    let img = 2 * 8 * 8;
    let real = be.upload(&rand_vec(&mut rng, n_real * img, 1.0)).unwrap();
    let s0 = rand_vec(&mut rng, ipc * img, 1.0);
    let s = be.upload(&s0).unwrap();
    let labels = be.upload_labels(&vec![class as u32; ipc]).unwrap();
    let fd = central_fd(&cfg, &s0, |q| {
        let sq = be.upload(q).unwrap();
        net.matching_loss(&mut mw, &real, &sq, class, &[], Metric::Ours)
            .unwrap()
    });
    // the exact path passes ...
    net.matching_grad(&mut mw, &real, &s, class, &[], Metric::Ours)
        .unwrap();
    compare("exact", &be.download(&mw.dsyn).unwrap(), &fd).unwrap();
    // ... the same dual pass with v's fc.W part dropped fails
    net.matching_loss(&mut mw, &real, &s, class, &[], Metric::Ours)
        .unwrap();
    let mut v = be.download(&mw.v).unwrap();
    v[net
        .layout()
        .tensor("classifier.weight")
        .unwrap()
        .seg
        .range()]
    .fill(0.0);
    let v = be.upload(&v).unwrap();
    net.dual_input_grad(&mut mw.syn, &s, &labels, &v).unwrap();
    let wrong = be.download(mw.syn.input_grad().unwrap()).unwrap();
    assert!(compare("fc term dropped", &wrong, &fd).is_err());
    // ... and so does the first-order input gradient of the synthetic loss
    let mut g = be.alloc(net.layout().total).unwrap();
    net.loss_and_grads(&mut mw.syn, &s, &labels, Mode::Train, &mut g)
        .unwrap();
    let first = be.download(mw.syn.input_grad().unwrap()).unwrap();
    assert!(compare("first order only", &first, &fd).is_err());
}

#[test]
fn outer_grad_equals_per_class_grads_and_rejects_bad_input() {
    let cfg = small_cfg(2, Norm::Instance, Act::Relu, Pool::Avg);
    let be = B::new(2).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut net = Network::new(&be, cfg, &mut rng).unwrap();
    let (n_real, ipc, k, img) = (4, 2, 3, 2 * 8 * 8);
    let mut mw = net.match_workspace(n_real, ipc).unwrap();
    let reals: Vec<_> = (0..k)
        .map(|_| be.upload(&rand_vec(&mut rng, n_real * img, 1.0)).unwrap())
        .collect();
    let augs: Vec<_> = (0..k)
        .map(|c| fixed_aug(ipc, 5.0 * c as f32, 0.9))
        .collect();
    let s_host = rand_vec(&mut rng, k * ipc * img, 1.0);
    let s = be.upload(&s_host).unwrap();
    let classes: Vec<_> = (0..k)
        .map(|c| dsa_condense::engine::ClassInput {
            real: &reals[c],
            aug: &augs[c],
        })
        .collect();
    let mut ds = be.alloc(k * ipc * img).unwrap();
    let total = net
        .outer_grad(&mut mw, &s, &classes, Metric::Ours, &mut ds, None)
        .unwrap();
    let ds = be.download(&ds).unwrap();
    let mut sum = 0.0;
    for c in 0..k {
        let sc = be
            .upload(&s_host[c * ipc * img..(c + 1) * ipc * img])
            .unwrap();
        sum += net
            .matching_grad(&mut mw, &reals[c], &sc, c, &augs[c], Metric::Ours)
            .unwrap();
        assert_eq!(
            be.download(&mw.dsyn).unwrap(),
            ds[c * ipc * img..(c + 1) * ipc * img].to_vec()
        );
    }
    assert_eq!(sum, total);
    // wrong sizes and non-finite input are errors, not panics
    let short = be.alloc(img).unwrap();
    assert!(net
        .matching_grad(&mut mw, &reals[0], &short, 0, &[], Metric::Ours)
        .is_err());
    assert!(net
        .matching_grad(&mut mw, &reals[0], &reals[0], 0, &[], Metric::Ours)
        .is_err());
    assert!(net
        .matching_grad(
            &mut mw,
            &reals[0],
            &be.alloc(ipc * img).unwrap(),
            7,
            &[],
            Metric::Ours
        )
        .is_err());
    let mut bad = s_host[..ipc * img].to_vec();
    bad[3] = f64::NAN;
    let r = net.matching_grad(
        &mut mw,
        &reals[0],
        &be.upload(&bad).unwrap(),
        0,
        &[],
        Metric::Ours,
    );
    assert!(matches!(r, Err(dsa_condense::Error::NonFinite(_))), "{r:?}");
}
