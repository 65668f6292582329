//! CPU group / instance / layer norm and batch norm: every pass against f64
//! central finite differences, the running-statistics update against a direct
//! computation, f32 against f64, and bit-identity across thread counts.

mod fdcheck;

use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::{Backend, NormShape, Seg};
use dsa_condense::Error;
use fdcheck::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One normalisation problem: shape, input, parameters `[gamma, beta]` and a
/// parameter tangent with the same layout.
struct Case {
    s: NormShape,
    x: Vec<f64>,
    params: Vec<f64>,
    tangent: Vec<f64>,
    gs: Seg,
    bs: Seg,
}

fn shape(n: u32, c: u32, hw: u32, groups: u32, affine: u32) -> NormShape {
    NormShape {
        n,
        c,
        hw,
        groups,
        affine,
        eps: 1e-5,
    }
}

fn make_case(seed: u64, s: NormShape) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let plen = if s.affine == 1 {
        (s.c * s.hw) as usize
    } else {
        s.c as usize
    };
    let mut params = rand_vec(&mut rng, plen, 0.5, 1.5);
    params.extend(rand_vec(&mut rng, plen, -1.0, 1.0));
    let x = rand_vec(&mut rng, s.len(), -2.0, 2.0)
        .into_iter()
        .map(|v| 0.7 + 1.3 * v)
        .collect();
    Case {
        s,
        x,
        params,
        tangent: rand_vec(&mut rng, 2 * plen, -1.0, 1.0),
        gs: Seg {
            off: 0,
            len: plen as u32,
        },
        bs: Seg {
            off: plen as u32,
            len: plen as u32,
        },
    }
}

fn cpu() -> Cpu<f64> {
    Cpu::new(1).unwrap()
}

/// Group-norm shapes under test: instance (G = C), groups 2 and 4, layer norm
/// (G = 1, per-element affine).
fn group_cases() -> Vec<(&'static str, Case)> {
    vec![
        ("instance", make_case(1, shape(2, 3, 6, 3, 0))),
        ("group2", make_case(2, shape(2, 4, 5, 2, 0))),
        ("group4", make_case(3, shape(3, 8, 3, 4, 0))),
        ("layer", make_case(4, shape(2, 3, 4, 1, 1))),
    ]
}

fn gn_fwd(be: &Cpu<f64>, c: &Case, x: &[f64], params: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut y = vec![0.0; c.s.len()];
    let mut stats = vec![0.0; 2 * c.s.stats_len()];
    be.norm_fwd(
        &mut y,
        &mut stats,
        &x.to_vec(),
        &params.to_vec(),
        c.gs,
        c.bs,
        &c.s,
    )
    .unwrap();
    (y, stats)
}

fn gn_jvp(be: &Cpu<f64>, c: &Case, x: &[f64], xdot: &[f64], params: &[f64], t: &[f64]) -> Vec<f64> {
    let (_, stats) = gn_fwd(be, c, x, params);
    let mut ydot = vec![0.0; c.s.len()];
    be.norm_jvp(
        &mut ydot,
        &x.to_vec(),
        &xdot.to_vec(),
        &stats,
        &params.to_vec(),
        c.gs,
        &t.to_vec(),
        c.gs,
        c.bs,
        &c.s,
    )
    .unwrap();
    ydot
}

#[test]
fn norm_fwd_normalises_each_group() {
    let be = cpu();
    for (name, c) in group_cases() {
        let (_, stats) = gn_fwd(&be, &c, &c.x, &c.params);
        let (n, g) = (c.s.n as usize, c.s.groups as usize);
        let m = c.s.len() / (n * g);
        for i in 0..n * g {
            let grp = &c.x[i * m..(i + 1) * m];
            let mean = grp.iter().sum::<f64>() / m as f64;
            let var = grp.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m as f64;
            let want = [mean, 1.0 / (var + 1e-5f32 as f64).sqrt()];
            assert_close(
                &format!("{name} stats {i}"),
                &[stats[i], stats[n * g + i]],
                &want,
                1e-12,
            );
        }
    }
}

#[test]
fn norm_bwd_matches_fd() {
    let be = cpu();
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    for (name, c) in group_cases() {
        let dy = rand_vec(&mut rng, c.s.len(), -1.0, 1.0);
        let (_, stats) = gn_fwd(&be, &c, &c.x, &c.params);
        let mut dx = vec![0.0; c.s.len()];
        let mut dp = vec![0.0; c.params.len()];
        be.norm_bwd(
            &mut dx,
            Some((&mut dp, c.gs, c.bs)),
            &dy,
            &c.x,
            &stats,
            &c.params,
            c.gs,
            &c.s,
        )
        .unwrap();
        let fdx = fd_grad(&c.x, |x| dot(&dy, &gn_fwd(&be, &c, x, &c.params).0));
        let fdp = fd_grad(&c.params, |p| dot(&dy, &gn_fwd(&be, &c, &c.x, p).0));
        assert_close(&format!("{name} dx"), &dx, &fdx, FD_RTOL);
        assert_close(
            &format!("{name} dgamma"),
            &dp[c.gs.range()],
            &fdp[c.gs.range()],
            FD_RTOL,
        );
        assert_close(
            &format!("{name} dbeta"),
            &dp[c.bs.range()],
            &fdp[c.bs.range()],
            FD_RTOL,
        );
        // Without parameter gradients dx is the same.
        let mut dx2 = vec![0.0; c.s.len()];
        be.norm_bwd(&mut dx2, None, &dy, &c.x, &stats, &c.params, c.gs, &c.s)
            .unwrap();
        assert_eq!(dx, dx2, "{name}: dx depends on whether dparams is asked");
    }
}

#[test]
fn norm_jvp_matches_fd_of_forward() {
    let be = cpu();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (name, c) in group_cases() {
        let xdot = rand_vec(&mut rng, c.s.len(), -1.0, 1.0);
        let ydot = gn_jvp(&be, &c, &c.x, &xdot, &c.params, &c.tangent);
        let fd = fd_dir(|t| {
            let x: Vec<f64> = c.x.iter().zip(&xdot).map(|(a, b)| a + t * b).collect();
            let p: Vec<f64> = c
                .params
                .iter()
                .zip(&c.tangent)
                .map(|(a, b)| a + t * b)
                .collect();
            gn_fwd(&be, &c, &x, &p).0
        });
        assert_close(&format!("{name} ydot"), &ydot, &fd, FD_RTOL);
    }
}

/// Inputs of a dual-norm check and the analytic `(dx, dxdot)`.
struct Dual {
    dy: Vec<f64>,
    dydot: Vec<f64>,
    xdot: Vec<f64>,
    dx: Vec<f64>,
    dxdot: Vec<f64>,
}

fn gn_dual(be: &Cpu<f64>, c: &Case, seed: u64) -> Dual {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let len = c.s.len();
    let (dy, dydot) = (
        rand_vec(&mut rng, len, -1.0, 1.0),
        rand_vec(&mut rng, len, -1.0, 1.0),
    );
    let xdot = rand_vec(&mut rng, len, -1.0, 1.0);
    let (_, stats) = gn_fwd(be, c, &c.x, &c.params);
    let (mut dx, mut dxdot) = (vec![0.0; len], vec![0.0; len]);
    be.norm_dual_bwd(
        &mut dx, &mut dxdot, &dy, &dydot, &c.x, &xdot, &stats, &c.params, c.gs, &c.tangent, c.gs,
        &c.s,
    )
    .unwrap();
    Dual {
        dy,
        dydot,
        xdot,
        dx,
        dxdot,
    }
}

/// `<dy, y(x)> + <dydot, ydot(x, xdot)>`.
fn gn_phi(be: &Cpu<f64>, c: &Case, d: &Dual, x: &[f64], xdot: &[f64]) -> f64 {
    dot(&d.dy, &gn_fwd(be, c, x, &c.params).0)
        + dot(&d.dydot, &gn_jvp(be, c, x, xdot, &c.params, &c.tangent))
}

#[test]
fn norm_dual_bwd_matches_fd() {
    let be = cpu();
    for (k, (name, c)) in group_cases().into_iter().enumerate() {
        let d = gn_dual(&be, &c, 20 + k as u64);
        let fdx = fd_grad(&c.x, |x| gn_phi(&be, &c, &d, x, &d.xdot));
        let fdv = fd_grad(&d.xdot, |v| gn_phi(&be, &c, &d, &c.x, v));
        assert_close(&format!("{name} dx"), &d.dx, &fdx, FD_RTOL);
        assert_close(&format!("{name} dxdot"), &d.dxdot, &fdv, FD_RTOL);
    }
}

#[test]
fn checker_catches_wrong_gradients() {
    let be = cpu();
    let (_, c) = group_cases().remove(0);
    let d = gn_dual(&be, &c, 30);
    let fdx = fd_grad(&c.x, |x| gn_phi(&be, &c, &d, x, &d.xdot));
    // The first-order part alone, J(gamma dy) + J(t_gamma dydot), misses the
    // second-order term grad_x <gamma dydot, J(x) xdot>.
    let (_, stats) = gn_fwd(&be, &c, &c.x, &c.params);
    let (mut a, mut b) = (vec![0.0; c.s.len()], vec![0.0; c.s.len()]);
    be.norm_bwd(&mut a, None, &d.dy, &c.x, &stats, &c.params, c.gs, &c.s)
        .unwrap();
    be.norm_bwd(&mut b, None, &d.dydot, &c.x, &stats, &c.tangent, c.gs, &c.s)
        .unwrap();
    let first: Vec<f64> = a.iter().zip(&b).map(|(u, v)| u + v).collect();
    assert!(
        compare(&first, &fdx, FD_RTOL).is_err(),
        "first-order-only dx passed the check"
    );
    // One element off by 1e-5 of the scale is caught, at that index.
    let mut wrong = d.dx.clone();
    let scale = fdx.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    wrong[7] += 1e-5 * scale;
    let msg = compare(&wrong, &fdx, FD_RTOL).expect_err("perturbed dx passed the check");
    assert!(msg.contains("first mismatch at 7 "), "{msg}");
    assert!(compare(&d.dx, &fdx, FD_RTOL).is_ok());
}

// ---- batch norm ---------------------------------------------------------------

fn bn_cases() -> Vec<(&'static str, Case)> {
    vec![
        ("bn 3x4x5", make_case(5, shape(3, 4, 5, 1, 0))),
        // H*W = 1 (as after a global pool); M = 5 keeps the statistics well
        // conditioned (M = 2 makes xhat = +-1 and dx ~ eps-sized, below FD noise).
        ("bn 5x3x1", make_case(6, shape(5, 3, 1, 1, 0))),
    ]
}

fn bn_train(be: &Cpu<f64>, c: &Case, x: &[f64], params: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let ch = c.s.c as usize;
    let mut y = vec![0.0; c.s.len()];
    let mut stats = vec![0.0; 2 * ch];
    let mut running: Vec<f64> = (0..2 * ch).map(|i| 0.1 + 0.05 * i as f64).collect();
    be.bn_fwd_train(
        &mut y,
        &mut stats,
        &mut running,
        &x.to_vec(),
        &params.to_vec(),
        c.gs,
        c.bs,
        &c.s,
        0.1,
    )
    .unwrap();
    (y, stats, running)
}

/// Running statistics for eval mode: `[mean (C), var (C)]`, var > 0.
fn running_of(c: &Case) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let ch = c.s.c as usize;
    let mut r = rand_vec(&mut rng, ch, -0.5, 0.5);
    r.extend(rand_vec(&mut rng, ch, 0.3, 2.0));
    r
}

fn bn_eval(be: &Cpu<f64>, c: &Case, x: &[f64], params: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; c.s.len()];
    be.bn_fwd_eval(
        &mut y,
        &x.to_vec(),
        &running_of(c),
        &params.to_vec(),
        c.gs,
        c.bs,
        &c.s,
    )
    .unwrap();
    y
}

fn bn_jvp(be: &Cpu<f64>, c: &Case, x: &[f64], xdot: &[f64]) -> Vec<f64> {
    let mut ydot = vec![0.0; c.s.len()];
    be.bn_eval_jvp(
        &mut ydot,
        &x.to_vec(),
        &xdot.to_vec(),
        &running_of(c),
        &c.params,
        c.gs,
        &c.tangent,
        c.gs,
        c.bs,
        &c.s,
    )
    .unwrap();
    ydot
}

#[test]
fn bn_train_stats_and_running_update_match_direct_computation() {
    let be = cpu();
    for (name, c) in bn_cases() {
        let (n, ch, hw) = (c.s.n as usize, c.s.c as usize, c.s.hw as usize);
        let (_, stats, running) = bn_train(&be, &c, &c.x, &c.params);
        let m = (n * hw) as f64;
        // The momentum travels as f32.
        let mom = 0.1f32 as f64;
        for k in 0..ch {
            let vals: Vec<f64> = (0..n)
                .flat_map(|i| c.x[(i * ch + k) * hw..(i * ch + k + 1) * hw].to_vec())
                .collect();
            let mean = vals.iter().sum::<f64>() / m;
            let ss = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
            let (old_mean, old_var) = (0.1 + 0.05 * k as f64, 0.1 + 0.05 * (ch + k) as f64);
            let got = [stats[k], stats[ch + k], running[k], running[ch + k]];
            let want = [
                mean,
                1.0 / (ss / m + 1e-5f32 as f64).sqrt(),
                (1.0 - mom) * old_mean + mom * mean,
                (1.0 - mom) * old_var + mom * ss / (m - 1.0),
            ];
            assert_close(&format!("{name} channel {k}"), &got, &want, 1e-12);
        }
    }
}

#[test]
fn bn_bwd_train_matches_fd() {
    let be = cpu();
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for (name, c) in bn_cases() {
        let dy = rand_vec(&mut rng, c.s.len(), -1.0, 1.0);
        let (_, stats, _) = bn_train(&be, &c, &c.x, &c.params);
        let mut dx = vec![0.0; c.s.len()];
        let mut dp = vec![0.0; c.params.len()];
        be.bn_bwd_train(
            &mut dx,
            Some((&mut dp, c.gs, c.bs)),
            &dy,
            &c.x,
            &stats,
            &c.params,
            c.gs,
            &c.s,
        )
        .unwrap();
        let fdx = fd_grad(&c.x, |x| dot(&dy, &bn_train(&be, &c, x, &c.params).0));
        let fdp = fd_grad(&c.params, |p| dot(&dy, &bn_train(&be, &c, &c.x, p).0));
        assert_close(&format!("{name} dx"), &dx, &fdx, FD_RTOL);
        assert_close(&format!("{name} dparams"), &dp, &fdp, FD_RTOL);
    }
}

#[test]
fn bn_eval_bwd_jvp_dual_match_fd() {
    let be = cpu();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    for (name, c) in bn_cases() {
        let len = c.s.len();
        let running = running_of(&c);
        let dy = rand_vec(&mut rng, len, -1.0, 1.0);
        let dydot = rand_vec(&mut rng, len, -1.0, 1.0);
        let xdot = rand_vec(&mut rng, len, -1.0, 1.0);
        // backward
        let mut dx = vec![0.0; len];
        let mut dp = vec![0.0; c.params.len()];
        be.bn_bwd_eval(
            &mut dx,
            Some((&mut dp, c.gs, c.bs)),
            &dy,
            &c.x,
            &running,
            &c.params,
            c.gs,
            &c.s,
        )
        .unwrap();
        let fdx = fd_grad(&c.x, |x| dot(&dy, &bn_eval(&be, &c, x, &c.params)));
        let fdp = fd_grad(&c.params, |p| dot(&dy, &bn_eval(&be, &c, &c.x, p)));
        assert_close(&format!("{name} eval dx"), &dx, &fdx, FD_RTOL);
        assert_close(&format!("{name} eval dparams"), &dp, &fdp, FD_RTOL);
        // tangent
        let ydot = bn_jvp(&be, &c, &c.x, &xdot);
        let fd = fd_dir(|t| {
            let x: Vec<f64> = c.x.iter().zip(&xdot).map(|(a, b)| a + t * b).collect();
            let p: Vec<f64> = c
                .params
                .iter()
                .zip(&c.tangent)
                .map(|(a, b)| a + t * b)
                .collect();
            bn_eval(&be, &c, &x, &p)
        });
        assert_close(&format!("{name} eval ydot"), &ydot, &fd, FD_RTOL);
        // dual reverse
        let (mut ddx, mut ddv) = (vec![0.0; len], vec![0.0; len]);
        be.bn_eval_dual_bwd(
            &mut ddx, &mut ddv, &dy, &dydot, &running, &c.params, c.gs, &c.tangent, c.gs, &c.s,
        )
        .unwrap();
        let phi = |x: &[f64], v: &[f64]| {
            dot(&dy, &bn_eval(&be, &c, x, &c.params)) + dot(&dydot, &bn_jvp(&be, &c, x, v))
        };
        let fdx = fd_grad(&c.x, |x| phi(x, &xdot));
        let fdv = fd_grad(&xdot, |v| phi(&c.x, v));
        assert_close(&format!("{name} dual dx"), &ddx, &fdx, FD_RTOL);
        assert_close(&format!("{name} dual dxdot"), &ddv, &fdv, FD_RTOL);
    }
}

// ---- precision, determinism, errors ---------------------------------------------

/// Every norm output of one problem on backend `be` (f32 or f64).
fn all_outputs<B: Backend>(be: &B, c: &Case, bn: &Case, seed: u64) -> Vec<Vec<f64>>
where
    B::E: dsa_condense::Scalar,
{
    use dsa_condense::Scalar;
    let up = |v: &[f64]| {
        be.upload(&v.iter().map(|&a| B::E::from_f64(a)).collect::<Vec<_>>())
            .unwrap()
    };
    let down = |b: &B::Buf| {
        be.download(b)
            .unwrap()
            .iter()
            .map(|v| v.to_f64())
            .collect::<Vec<f64>>()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    // group norm
    let len = c.s.len();
    let (x, p, t) = (up(&c.x), up(&c.params), up(&c.tangent));
    let (dy, dyd, xd) = (
        up(&rand_vec(&mut rng, len, -1.0, 1.0)),
        up(&rand_vec(&mut rng, len, -1.0, 1.0)),
        up(&rand_vec(&mut rng, len, -1.0, 1.0)),
    );
    let (mut y, mut st) = (
        be.alloc(len).unwrap(),
        be.alloc(2 * c.s.stats_len()).unwrap(),
    );
    be.norm_fwd(&mut y, &mut st, &x, &p, c.gs, c.bs, &c.s)
        .unwrap();
    let (mut dx, mut dv, mut dp) = (
        be.alloc(len).unwrap(),
        be.alloc(len).unwrap(),
        be.alloc(c.params.len()).unwrap(),
    );
    be.norm_bwd(
        &mut dx,
        Some((&mut dp, c.gs, c.bs)),
        &dy,
        &x,
        &st,
        &p,
        c.gs,
        &c.s,
    )
    .unwrap();
    out.extend([down(&y), down(&st), down(&dx), down(&dp)]);
    be.norm_jvp(&mut y, &x, &xd, &st, &p, c.gs, &t, c.gs, c.bs, &c.s)
        .unwrap();
    be.norm_dual_bwd(
        &mut dx, &mut dv, &dy, &dyd, &x, &xd, &st, &p, c.gs, &t, c.gs, &c.s,
    )
    .unwrap();
    out.extend([down(&y), down(&dx), down(&dv)]);
    // batch norm
    let len = bn.s.len();
    let ch = bn.s.c as usize;
    let (x, p) = (up(&bn.x), up(&bn.params));
    let dy = up(&rand_vec(&mut rng, len, -1.0, 1.0));
    let (mut y, mut st) = (be.alloc(len).unwrap(), be.alloc(2 * ch).unwrap());
    let mut run = up(&vec![0.5; 2 * ch]);
    be.bn_fwd_train(&mut y, &mut st, &mut run, &x, &p, bn.gs, bn.bs, &bn.s, 0.1)
        .unwrap();
    let (mut dx, mut dp) = (be.alloc(len).unwrap(), be.alloc(bn.params.len()).unwrap());
    be.bn_bwd_train(
        &mut dx,
        Some((&mut dp, bn.gs, bn.bs)),
        &dy,
        &x,
        &st,
        &p,
        bn.gs,
        &bn.s,
    )
    .unwrap();
    out.extend([down(&y), down(&st), down(&run), down(&dx), down(&dp)]);
    out
}

#[test]
fn f32_agrees_with_f64_and_threads_do_not_change_bits() {
    // Larger shapes so that two threads really split the work.
    let c = make_case(40, shape(4, 16, 64, 4, 0));
    let bn = make_case(41, shape(4, 16, 64, 1, 0));
    let round = |c: &Case| Case {
        s: c.s,
        x: to_f64(&to_f32(&c.x)),
        params: to_f64(&to_f32(&c.params)),
        tangent: to_f64(&to_f32(&c.tangent)),
        gs: c.gs,
        bs: c.bs,
    };
    let (c, bn) = (round(&c), round(&bn));
    let o64 = all_outputs(&Cpu::<f64>::new(1).unwrap(), &c, &bn, 7);
    let o32a = all_outputs(&Cpu::<f32>::new(1).unwrap(), &c, &bn, 7);
    let o32b = all_outputs(&Cpu::<f32>::new(2).unwrap(), &c, &bn, 7);
    for (i, ((a, b), w)) in o32a.iter().zip(&o32b).zip(&o64).enumerate() {
        assert_eq!(
            bits(&to_f32(a)),
            bits(&to_f32(b)),
            "output {i} differs between 1 and 2 threads"
        );
        // Inputs are exactly representable and the arithmetic is f64 inside, so the
        // error is the output rounding plus the rounding of the stored statistics
        // (mu to f32 moves every y by ~gamma rstd ulp(mu), a few 1e-8 absolute):
        // rtol 1e-4 with the 1e-3 floor allows 1e-7 of the scale.
        assert_close(&format!("f32 output {i}"), a, w, 1e-4);
    }
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let be = cpu();
    let c = make_case(50, shape(2, 4, 3, 2, 0));
    let mut y = vec![0.0; c.s.len()];
    let mut st = vec![0.0; 2 * c.s.stats_len()];
    let bad_groups = NormShape { groups: 3, ..c.s };
    assert!(matches!(
        be.norm_fwd(&mut y, &mut st, &c.x, &c.params, c.gs, c.bs, &bad_groups),
        Err(Error::Shape(_))
    ));
    let mut short = vec![0.0; c.s.len() - 1];
    assert!(matches!(
        be.norm_fwd(&mut short, &mut st, &c.x, &c.params, c.gs, c.bs, &c.s),
        Err(Error::Shape(_))
    ));
    let layer = NormShape { affine: 1, ..c.s };
    assert!(matches!(
        be.norm_fwd(&mut y, &mut st, &c.x, &c.params, c.gs, c.bs, &layer),
        Err(Error::Shape(_))
    ));
    // A constant group with eps = 0 has no finite rstd.
    let flat = vec![1.0; c.s.len()];
    let no_eps = NormShape { eps: 0.0, ..c.s };
    assert!(matches!(
        be.norm_fwd(&mut y, &mut st, &flat, &c.params, c.gs, c.bs, &no_eps),
        Err(Error::NonFinite(_))
    ));
    // Batch norm in train mode needs two values per channel.
    let one = shape(1, 4, 1, 1, 0);
    let (mut y1, mut st1, mut run1) = (vec![0.0; 4], vec![0.0; 8], vec![0.0; 8]);
    assert!(matches!(
        be.bn_fwd_train(
            &mut y1,
            &mut st1,
            &mut run1,
            &vec![1.0; 4],
            &vec![1.0; 8],
            Seg { off: 0, len: 4 },
            Seg { off: 4, len: 4 },
            &one,
            0.1
        ),
        Err(Error::Shape(_))
    ));
}
