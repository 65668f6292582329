//! Tests of the CPU backend's conv / linear / activation / pooling / memory ops:
//! f64 central finite differences for every backward (random upstream gradient,
//! so a wrong transpose shows), conv forward against a direct-loop reference,
//! f32 vs f64 agreement, bit-identical results for 1, 2 and 3 threads, and
//! bounds errors.
//!
//! Error model of the gradient checks: per element
//! `|fd - an| / max(|fd|, |an|, 1e-2 * max|an|) < 1e-6`; the failure message
//! names the worst error and the first mismatching index.

use dsa_condense::backend::cpu::gemm::{gemm, gemm_par, Mat};
use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::*;
use dsa_condense::error::Error;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type B64 = Cpu<f64>;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn randv(r: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| r.random::<f64>() * 2.0 - 1.0).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

const FD_TOL: f64 = 1e-6;

/// Compares `analytic` with central differences of `f` around `x0` (step `h`)
/// at every index. Ok(max error) or Err(message with max error and first
/// mismatching index).
fn grad_check(
    name: &str,
    analytic: &[f64],
    x0: &[f64],
    h: f64,
    f: impl Fn(&[f64]) -> f64,
) -> Result<f64, String> {
    assert_eq!(analytic.len(), x0.len(), "{name}: gradient length");
    let scale = analytic.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut x = x0.to_vec();
    let mut max_err = 0.0f64;
    let mut first_bad: Option<(usize, f64, f64)> = None;
    for i in 0..x0.len() {
        x[i] = x0[i] + h;
        let fp = f(&x);
        x[i] = x0[i] - h;
        let fm = f(&x);
        x[i] = x0[i];
        let fd = (fp - fm) / (2.0 * h);
        let an = analytic[i];
        if !fd.is_finite() || !an.is_finite() {
            return Err(format!("{name}: non-finite at {i}: fd {fd}, analytic {an}"));
        }
        let err = (fd - an).abs() / fd.abs().max(an.abs()).max(1e-2 * scale).max(1e-300);
        max_err = max_err.max(err);
        if err >= FD_TOL && first_bad.is_none() {
            first_bad = Some((i, fd, an));
        }
    }
    match first_bad {
        None => Ok(max_err),
        Some((i, fd, an)) => Err(format!(
            "{name}: max rel error {max_err:.3e}; first mismatch at index {i}: fd {fd:.12e} vs analytic {an:.12e}"
        )),
    }
}

fn assert_grad(name: &str, analytic: &[f64], x0: &[f64], h: f64, f: impl Fn(&[f64]) -> f64) {
    match grad_check(name, analytic, x0, h, f) {
        Ok(e) => assert!(e < FD_TOL, "{name}: {e}"),
        Err(m) => panic!("{m}"),
    }
}

/// Asserts `|a - b| <= atol + rtol*|b|` everywhere, reporting the worst element.
fn assert_close(name: &str, a: &[f64], b: &[f64], atol: f64, rtol: f64) {
    assert_eq!(a.len(), b.len(), "{name}: lengths");
    let mut worst = (0.0f64, 0usize);
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        assert!(
            x.is_finite() && y.is_finite(),
            "{name}: non-finite at {i}: {x} vs {y}"
        );
        let excess = (x - y).abs() - (atol + rtol * y.abs());
        if excess > 0.0 {
            panic!("{name}: mismatch at {i}: {x:.10e} vs reference {y:.10e}");
        }
        let e = (x - y).abs();
        if e > worst.0 {
            worst = (e, i);
        }
    }
}

// ---------------------------------------------------------------- conv ----

/// Direct-loop conv reference: y[n,o,oh,ow] = b[o] + sum W[o,c,kh,kw] x[n,c,ih,iw].
fn conv_ref(x: &[f64], w: &[f64], b: Option<&[f64]>, s: &ConvShape) -> Vec<f64> {
    let [n, c, h, wd, o, kh, kw, st, pad, oh, ow] = [
        s.n, s.c, s.h, s.w, s.o, s.kh, s.kw, s.stride, s.pad, s.oh, s.ow,
    ]
    .map(|v| v as usize);
    let mut y = vec![0.0; n * o * oh * ow];
    for ni in 0..n {
        for oi in 0..o {
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = b.map_or(0.0, |b| b[oi]);
                    for ci in 0..c {
                        for a in 0..kh {
                            for bb in 0..kw {
                                let ih = (i * st + a) as isize - pad as isize;
                                let iw = (j * st + bb) as isize - pad as isize;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                    continue;
                                }
                                acc += w[((oi * c + ci) * kh + a) * kw + bb]
                                    * x[((ni * c + ci) * h + ih as usize) * wd + iw as usize];
                            }
                        }
                    }
                    y[((ni * o + oi) * oh + i) * ow + j] = acc;
                }
            }
        }
    }
    y
}

/// A conv shape with a possibly non-square kernel (built by hand, derived
/// sizes by the formula).
#[allow(clippy::too_many_arguments)]
fn conv_shape(
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    o: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
) -> ConvShape {
    ConvShape {
        n,
        c,
        h,
        w,
        o,
        kh,
        kw,
        stride,
        pad,
        oh: (h + 2 * pad - kh) / stride + 1,
        ow: (w + 2 * pad - kw) / stride + 1,
    }
}

/// Shapes the gradient tests run on: 3x3 pad 1, 3x3 pad 3 on 1 channel,
/// 5x5 pad 2, 1x1, stride 2 (k3 and k1), non-square image and kernel.
fn grad_shapes() -> Vec<(&'static str, ConvShape)> {
    vec![
        ("k3p1", conv_shape(2, 3, 6, 6, 4, 3, 3, 1, 1)),
        ("k3p3 c1", conv_shape(2, 1, 5, 5, 3, 3, 3, 1, 3)),
        ("k5p2", conv_shape(2, 2, 7, 6, 3, 5, 5, 1, 2)),
        ("k1", conv_shape(3, 4, 4, 5, 3, 1, 1, 1, 0)),
        ("k3 s2 p1", conv_shape(2, 2, 7, 8, 3, 3, 3, 2, 1)),
        ("k1 s2", conv_shape(2, 3, 6, 5, 2, 1, 1, 2, 0)),
        ("k3x2 nonsquare", conv_shape(2, 2, 5, 8, 3, 3, 2, 1, 1)),
        ("n1 many channels", conv_shape(1, 9, 4, 4, 10, 3, 3, 1, 1)),
    ]
}

/// Parameters buffer `[W | b]` with segments.
fn conv_params(r: &mut ChaCha8Rng, s: &ConvShape) -> (Vec<f64>, Seg, Seg) {
    let wl = s.w_len();
    let p = randv(r, wl + s.o as usize);
    let (w, b) = Seg::adjacent(0, wl, s.o as usize);
    (p, w, b)
}

#[test]
fn conv_fwd_matches_direct_loop() {
    let cpu = B64::new(2).unwrap();
    let mut r = rng(1);
    for (name, s) in grad_shapes().into_iter().chain([
        (
            "convnet conv1 (n=2)",
            ConvShape::new(2, 1, 28, 28, 8, 3, 1, 3).unwrap(),
        ),
        ("n16 k3", ConvShape::new(16, 5, 9, 9, 6, 3, 1, 1).unwrap()),
    ]) {
        let x = randv(&mut r, s.x_len());
        let (p, ws, bs) = conv_params(&mut r, &s);
        let want = conv_ref(&x, &p[ws.range()], Some(&p[bs.range()]), &s);
        let mut y = vec![0.0; s.y_len()];
        cpu.conv2d_fwd(&mut y, &x, &p, ws, Some(bs), &s, false)
            .unwrap();
        assert_close(name, &y, &want, 1e-13, 1e-12);
        // Accumulate mode adds (no bias this time).
        let base = randv(&mut r, s.y_len());
        let mut y2 = base.clone();
        cpu.conv2d_fwd(&mut y2, &x, &p, ws, None, &s, true).unwrap();
        let nob = conv_ref(&x, &p[ws.range()], None, &s);
        let want2: Vec<f64> = base.iter().zip(&nob).map(|(a, b)| a + b).collect();
        assert_close(&format!("{name} acc"), &y2, &want2, 1e-13, 1e-12);
    }
}

#[test]
fn conv_bwd_input_fd() {
    let cpu = B64::new(1).unwrap();
    let mut r = rng(2);
    for (name, s) in grad_shapes() {
        let x = randv(&mut r, s.x_len());
        let (p, ws, bs) = conv_params(&mut r, &s);
        let g = randv(&mut r, s.y_len());
        let mut dx = vec![0.0; s.x_len()];
        cpu.conv2d_bwd_input(&mut dx, &g, &p, ws, &s, false)
            .unwrap();
        let loss = |xv: &[f64]| {
            let mut y = vec![0.0; s.y_len()];
            cpu.conv2d_fwd(&mut y, &xv.to_vec(), &p, ws, Some(bs), &s, false)
                .unwrap();
            dot(&g, &y)
        };
        assert_grad(&format!("conv dx {name}"), &dx, &x, 1e-4, loss);
        // acc = true adds to what is there.
        let base = randv(&mut r, s.x_len());
        let mut dx2 = base.clone();
        cpu.conv2d_bwd_input(&mut dx2, &g, &p, ws, &s, true)
            .unwrap();
        let want: Vec<f64> = base.iter().zip(&dx).map(|(a, b)| a + b).collect();
        assert_close(&format!("conv dx acc {name}"), &dx2, &want, 1e-14, 1e-13);
    }
}

#[test]
fn conv_bwd_weight_fd() {
    let cpu = B64::new(1).unwrap();
    let mut r = rng(3);
    for (name, s) in grad_shapes() {
        let x = randv(&mut r, s.x_len());
        let (p, ws, bs) = conv_params(&mut r, &s);
        let g = randv(&mut r, s.y_len());
        // Gradient buffer filled with garbage: the op must overwrite.
        let mut grads = randv(&mut r, p.len());
        cpu.conv2d_bwd_weight(&mut grads, ws, Some(bs), &g, &x, &s)
            .unwrap();
        let loss = |pv: &[f64]| {
            let mut y = vec![0.0; s.y_len()];
            cpu.conv2d_fwd(&mut y, &x, &pv.to_vec(), ws, Some(bs), &s, false)
                .unwrap();
            dot(&g, &y)
        };
        assert_grad(&format!("conv dW,db {name}"), &grads, &p, 1e-4, loss);
        // Without a bias segment only dW is written.
        let mut g2 = vec![7.0; p.len()];
        cpu.conv2d_bwd_weight(&mut g2, ws, None, &g, &x, &s)
            .unwrap();
        assert_eq!(
            &g2[ws.range()],
            &grads[ws.range()],
            "{name}: dW without bias"
        );
        assert!(
            g2[bs.range()].iter().all(|&v| v == 7.0),
            "{name}: bias untouched"
        );
    }
}

/// Direct-loop weight gradient: dW[o,c,a,e] = sum_{n,i,j} g[n,o,i,j] xpad[n,c,i*s+a-p,j*s+e-p],
/// db[o] = sum g[n,o,:,:]; returned as [dW | db].
fn conv_bwd_weight_ref(x: &[f64], g: &[f64], s: &ConvShape) -> Vec<f64> {
    let [n, c, h, wd, o, kh, kw, st, pad, oh, ow] = [
        s.n, s.c, s.h, s.w, s.o, s.kh, s.kw, s.stride, s.pad, s.oh, s.ow,
    ]
    .map(|v| v as usize);
    let mut out = vec![0.0; s.w_len() + o];
    for ni in 0..n {
        for oi in 0..o {
            for i in 0..oh {
                for j in 0..ow {
                    let gv = g[((ni * o + oi) * oh + i) * ow + j];
                    out[s.w_len() + oi] += gv;
                    for ci in 0..c {
                        for a in 0..kh {
                            for e in 0..kw {
                                let ih = (i * st + a) as isize - pad as isize;
                                let iw = (j * st + e) as isize - pad as isize;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                    continue;
                                }
                                out[((oi * c + ci) * kh + a) * kw + e] +=
                                    gv * x[((ni * c + ci) * h + ih as usize) * wd + iw as usize];
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Larger batches exercise every path of the chunked backward-weight reduction:
/// several chunks, one GEMM per image (>= 512 output pixels), and several stacked
/// GEMMs per chunk incl. a short last stack (300 images of 16x16).
#[test]
fn conv_bwd_weight_many_chunks_matches_reference() {
    let cpu = B64::new(2).unwrap();
    let mut r = rng(4);
    for s in [
        ConvShape::new(37, 3, 8, 8, 5, 3, 1, 1).unwrap(),
        ConvShape::new(37, 1, 24, 24, 3, 3, 1, 3).unwrap(),
        ConvShape::new(300, 1, 16, 16, 2, 3, 1, 1).unwrap(),
    ] {
        let x = randv(&mut r, s.x_len());
        let g = randv(&mut r, s.y_len());
        let (p, ws, bs) = conv_params(&mut r, &s);
        let mut grads = vec![0.0; p.len()];
        cpu.conv2d_bwd_weight(&mut grads, ws, Some(bs), &g, &x, &s)
            .unwrap();
        let want = conv_bwd_weight_ref(&x, &g, &s);
        assert_close(
            &format!("bwd_weight n={} {}x{}", s.n, s.h, s.w),
            &grads,
            &want,
            1e-11,
            1e-11,
        );
    }
}

// ---------------------------------------------------------------- linear --

#[test]
fn linear_fd() {
    let cpu = B64::new(1).unwrap();
    let mut r = rng(5);
    for (n, f, k) in [(3usize, 7usize, 4usize), (1, 5, 10), (6, 3, 2)] {
        let s = LinearShape {
            n: n as u32,
            f: f as u32,
            k: k as u32,
        };
        let x = randv(&mut r, n * f);
        let p = randv(&mut r, k * f + k);
        let ws = Seg {
            off: 0,
            len: (k * f) as u32,
        };
        let bs = Seg {
            off: (k * f) as u32,
            len: k as u32,
        };
        let g = randv(&mut r, n * k);
        let fwd = |xv: &[f64], pv: &[f64]| {
            let mut y = vec![0.0; n * k];
            cpu.linear_fwd(&mut y, &xv.to_vec(), &pv.to_vec(), ws, Some(bs), &s, false)
                .unwrap();
            y
        };
        // Forward against the definition.
        let y = fwd(&x, &p);
        for i in 0..n {
            for j in 0..k {
                let want = p[k * f + j] + (0..f).map(|q| x[i * f + q] * p[j * f + q]).sum::<f64>();
                assert!((y[i * k + j] - want).abs() < 1e-13, "linear fwd ({i},{j})");
            }
        }
        let mut dx = vec![0.0; n * f];
        cpu.linear_bwd_input(&mut dx, &g, &p, ws, &s, false)
            .unwrap();
        assert_grad("linear dx", &dx, &x, 1e-4, |xv| dot(&g, &fwd(xv, &p)));
        let mut grads = randv(&mut r, p.len());
        cpu.linear_bwd_weight(&mut grads, ws, Some(bs), &g, &x, &s)
            .unwrap();
        assert_grad("linear dW,db", &grads, &p, 1e-4, |pv| dot(&g, &fwd(&x, pv)));
    }
}

/// The checker is not blind: a gradient computed with the transposed weight (a
/// classic bug) must be rejected.
#[test]
fn checker_catches_transposed_weight() {
    let cpu = B64::new(1).unwrap();
    let mut r = rng(6);
    // Linear with K = F so the transposed weight has the right shape.
    let (n, f) = (3usize, 4usize);
    let s = LinearShape {
        n: n as u32,
        f: f as u32,
        k: f as u32,
    };
    let x = randv(&mut r, n * f);
    let p = randv(&mut r, f * f);
    let ws = Seg {
        off: 0,
        len: (f * f) as u32,
    };
    let g = randv(&mut r, n * f);
    let mut pt = vec![0.0; f * f];
    for i in 0..f {
        for j in 0..f {
            pt[j * f + i] = p[i * f + j];
        }
    }
    let mut wrong = vec![0.0; n * f];
    cpu.linear_bwd_input(&mut wrong, &g, &pt, ws, &s, false)
        .unwrap();
    let loss = |xv: &[f64]| {
        let mut y = vec![0.0; n * f];
        cpu.linear_fwd(&mut y, &xv.to_vec(), &p, ws, None, &s, false)
            .unwrap();
        dot(&g, &y)
    };
    assert!(grad_check("transposed linear", &wrong, &x, 1e-4, loss).is_err());
    // Same for conv: the kernel flipped along both axes (a wrong "transpose").
    let cs = conv_shape(1, 2, 5, 5, 2, 3, 3, 1, 1);
    let xc = randv(&mut r, cs.x_len());
    let (pc, wsc, _) = conv_params(&mut r, &cs);
    let gc = randv(&mut r, cs.y_len());
    let mut flipped = pc.clone();
    for oc in 0..(cs.o * cs.c) as usize {
        for t in 0..9 {
            flipped[oc * 9 + t] = pc[oc * 9 + (8 - t)];
        }
    }
    let mut wrong = vec![0.0; cs.x_len()];
    cpu.conv2d_bwd_input(&mut wrong, &gc, &flipped, wsc, &cs, false)
        .unwrap();
    let loss = |xv: &[f64]| {
        let mut y = vec![0.0; cs.y_len()];
        cpu.conv2d_fwd(&mut y, &xv.to_vec(), &pc, wsc, None, &cs, false)
            .unwrap();
        dot(&gc, &y)
    };
    let err = grad_check("flipped conv", &wrong, &xc, 1e-4, loss).unwrap_err();
    assert!(err.contains("first mismatch at index"), "{err}");
}

// ----------------------------------------------------------- activations --

const ACTS: [Act; 4] = [Act::Relu, Act::Sigmoid, Act::LeakyRelu, Act::Swish];

/// Values kept away from the kinks of ReLU / leaky ReLU (|x| >= 0.1) so the
/// finite differences are valid.
fn act_input(r: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let m = r.random_range(0.1..3.0);
            if r.random::<bool>() {
                m
            } else {
                -m
            }
        })
        .collect()
}

#[test]
fn act_bwd_fd() {
    let cpu = B64::new(1).unwrap();
    let mut r = rng(7);
    for act in ACTS {
        let x = act_input(&mut r, 50);
        let dy = randv(&mut r, 50);
        let mut dx = vec![0.0; 50];
        cpu.act_bwd(&mut dx, &dy, &x, act).unwrap();
        assert_grad(&format!("{act:?} bwd"), &dx, &x, 1e-5, |xv| {
            let mut y = vec![0.0; 50];
            cpu.act_fwd(&mut y, &xv.to_vec(), act).unwrap();
            dot(&dy, &y)
        });
    }
}

#[test]
fn act_dual_bwd_fd() {
    let cpu = B64::new(1).unwrap();
    let mut r = rng(8);
    let n = 40;
    for act in ACTS {
        let x = act_input(&mut r, n);
        let xdot = randv(&mut r, n);
        let dy = randv(&mut r, n);
        let dydot = randv(&mut r, n);
        let (mut dx, mut dxdot) = (vec![0.0; n], vec![0.0; n]);
        cpu.act_dual_bwd(&mut dx, &mut dxdot, &dy, &dydot, &x, &xdot, act)
            .unwrap();
        // S(x, xdot) = <dydot, act'(x) xdot> + <dy, act(x)>, the tangent via act_bwd.
        let s_of = |xv: &[f64], tv: &[f64]| {
            let (mut y, mut ydot) = (vec![0.0; n], vec![0.0; n]);
            cpu.act_fwd(&mut y, &xv.to_vec(), act).unwrap();
            cpu.act_bwd(&mut ydot, &tv.to_vec(), &xv.to_vec(), act)
                .unwrap();
            dot(&dydot, &ydot) + dot(&dy, &y)
        };
        assert_grad(&format!("{act:?} dual dx"), &dx, &x, 1e-5, |xv| {
            s_of(xv, &xdot)
        });
        assert_grad(&format!("{act:?} dual dxdot"), &dxdot, &xdot, 1e-5, |tv| {
            s_of(&x, tv)
        });
    }
}

#[test]
fn act_values_at_zero_follow_pytorch() {
    let cpu = B64::new(1).unwrap();
    let x = vec![0.0, -2.0, 2.0];
    let dy = vec![1.0, 1.0, 1.0];
    let mut dx = vec![9.0; 3];
    cpu.act_bwd(&mut dx, &dy, &x, Act::Relu).unwrap();
    assert_eq!(dx, vec![0.0, 0.0, 1.0]);
    cpu.act_bwd(&mut dx, &dy, &x, Act::LeakyRelu).unwrap();
    assert_eq!(dx, vec![0.01, 0.01, 1.0]);
    let mut y = vec![0.0; 3];
    cpu.act_fwd(&mut y, &x, Act::LeakyRelu).unwrap();
    assert_eq!(y, vec![0.0, -0.02, 2.0]);
    cpu.act_fwd(&mut y, &x, Act::Swish).unwrap();
    let sw = |v: f64| v / (1.0 + (-v).exp());
    assert_close("swish", &y, &[0.0, sw(-2.0), sw(2.0)], 1e-15, 1e-14);
    // Sigmoid stays finite and exact-ish far out.
    let big = vec![-800.0, 800.0];
    let mut yb = vec![0.0; 2];
    cpu.act_fwd(&mut yb, &big, Act::Sigmoid).unwrap();
    assert_eq!(yb, vec![0.0, 1.0]);
}

// --------------------------------------------------------------- pooling --

/// (planes, h, w, k, stride): the ConvNet's 2x2/2 (even, odd, and a 3x2 plane),
/// the 1x1/1 copy, ResNet's 4x4/4, and overlapping windows (3x3/2, 2x2/1) where
/// pool_bwd sums over several windows per element.
fn pool_cases() -> Vec<PoolShape> {
    [
        (3, 4, 6, 2, 2),
        (2, 5, 7, 2, 2),
        (1, 3, 2, 2, 2),
        (2, 3, 5, 1, 1),
        (2, 8, 9, 4, 4),
        (2, 7, 8, 3, 2),
        (1, 9, 6, 3, 2),
        (2, 5, 6, 2, 1),
    ]
    .into_iter()
    .map(|(p, h, w, k, s)| PoolShape::new(p, h, w, k, s).unwrap())
    .collect()
}

#[test]
fn pool_bwd_and_jvp_fd() {
    let cpu = B64::new(1).unwrap();
    let mut r = rng(9);
    for s in pool_cases() {
        for kind in [PoolKind::Avg, PoolKind::Max] {
            let (xl, yl) = (s.x_len(), s.y_len());
            // Distinct values (a shuffled grid) so max pooling has no near-ties.
            let mut x: Vec<f64> = (0..xl).map(|i| i as f64 * 0.37 - 3.0).collect();
            for i in (1..xl).rev() {
                x.swap(i, r.random_range(0..=i));
            }
            let dy = randv(&mut r, yl);
            let fwd = |xv: &[f64]| {
                let mut y = vec![0.0; yl];
                cpu.pool_fwd(&mut y, &xv.to_vec(), &s, kind).unwrap();
                y
            };
            let mut dx = randv(&mut r, xl);
            cpu.pool_bwd(&mut dx, &dy, &x, &s, kind).unwrap();
            assert_grad(&format!("pool {kind:?} {s:?} bwd"), &dx, &x, 1e-4, |xv| {
                dot(&dy, &fwd(xv))
            });
            // jvp: each ydot element against the directional difference, and the
            // adjoint identity <dy, J xdot> = <J^T dy, xdot>.
            let xdot = randv(&mut r, xl);
            let mut ydot = vec![0.0; yl];
            cpu.pool_jvp(&mut ydot, &x, &xdot, &s, kind).unwrap();
            let h = 1e-4;
            let xp: Vec<f64> = x.iter().zip(&xdot).map(|(a, b)| a + h * b).collect();
            let xm: Vec<f64> = x.iter().zip(&xdot).map(|(a, b)| a - h * b).collect();
            let fd: Vec<f64> = fwd(&xp)
                .iter()
                .zip(fwd(&xm))
                .map(|(a, b)| (a - b) / (2.0 * h))
                .collect();
            assert_close(&format!("pool {kind:?} jvp"), &ydot, &fd, 1e-9, 1e-7);
            assert!((dot(&dy, &ydot) - dot(&dx, &xdot)).abs() < 1e-12);
        }
    }
}

#[test]
fn max_pool_ties_go_to_first_in_window() {
    let cpu = B64::new(1).unwrap();
    let s = PoolShape::new(1, 2, 4, 2, 2).unwrap();
    // Window 0: all equal -> (0,0); window 1: tie between (0,1) and (1,0) -> (0,1).
    let x = vec![1.0, 1.0, 0.0, 5.0, 1.0, 1.0, 5.0, 2.0];
    let mut dx = vec![0.0; 8];
    cpu.pool_bwd(&mut dx, &vec![3.0, 4.0], &x, &s, PoolKind::Max)
        .unwrap();
    assert_eq!(dx, vec![3.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
    let mut ydot = vec![0.0; 2];
    let xdot = vec![10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0];
    cpu.pool_jvp(&mut ydot, &x, &xdot, &s, PoolKind::Max)
        .unwrap();
    assert_eq!(ydot, vec![10.0, 13.0]);
}

#[test]
fn pool_overlapping_windows_by_hand() {
    // 3x3 input, 2x2 windows, stride 1: four windows, every interior element in
    // several. x = [1 5 2; 4 3 9; 0 7 8]: 9 is the max of windows (0,1) and (1,1).
    let cpu = B64::new(1).unwrap();
    let s = PoolShape::new(1, 3, 3, 2, 1).unwrap();
    assert_eq!((s.oh(), s.ow(), s.x_len(), s.y_len()), (2, 2, 9, 4));
    let x = vec![1.0, 5.0, 2.0, 4.0, 3.0, 9.0, 0.0, 7.0, 8.0];
    let dy = vec![1.0, 2.0, 3.0, 4.0];
    let xdot: Vec<f64> = (10..19).map(f64::from).collect();
    let (mut y, mut ydot, mut dx) = (vec![0.0; 4], vec![0.0; 4], vec![f64::NAN; 9]);

    cpu.pool_fwd(&mut y, &x, &s, PoolKind::Max).unwrap();
    assert_eq!(y, vec![5.0, 9.0, 7.0, 9.0]);
    cpu.pool_bwd(&mut dx, &dy, &x, &s, PoolKind::Max).unwrap();
    // (0,1) <- window (0,0); (1,2) <- windows (0,1) and (1,1); (2,1) <- window (1,0)
    assert_eq!(dx, vec![0.0, 1.0, 0.0, 0.0, 0.0, 6.0, 0.0, 3.0, 0.0]);
    cpu.pool_jvp(&mut ydot, &x, &xdot, &s, PoolKind::Max)
        .unwrap();
    assert_eq!(ydot, vec![11.0, 15.0, 17.0, 15.0]);

    cpu.pool_fwd(&mut y, &x, &s, PoolKind::Avg).unwrap();
    assert_eq!(y, vec![3.25, 4.75, 3.5, 6.75]);
    cpu.pool_bwd(&mut dx, &dy, &x, &s, PoolKind::Avg).unwrap();
    // each element: (sum of dy over the windows covering it) / 4
    assert_eq!(dx, vec![0.25, 0.75, 0.5, 1.0, 2.5, 1.5, 0.75, 1.75, 1.0]);
    cpu.pool_jvp(&mut ydot, &x, &xdot, &s, PoolKind::Avg)
        .unwrap();
    assert_eq!(ydot, vec![12.0, 13.0, 15.0, 16.0]);

    // 1x1 stride 1 is the identity (both kinds, all three passes)
    let s1 = PoolShape::new(1, 3, 3, 1, 1).unwrap();
    for kind in [PoolKind::Avg, PoolKind::Max] {
        let mut y = vec![0.0; 9];
        cpu.pool_fwd(&mut y, &x, &s1, kind).unwrap();
        assert_eq!(y, x);
        cpu.pool_bwd(&mut y, &xdot, &x, &s1, kind).unwrap();
        assert_eq!(y, xdot);
        cpu.pool_jvp(&mut y, &x, &xdot, &s1, kind).unwrap();
        assert_eq!(y, xdot);
    }
}

#[test]
fn pool_shape_new_validates() {
    let s = PoolShape::new(6, 9, 7, 3, 2).unwrap();
    assert_eq!((s.oh(), s.ow()), (4, 3));
    assert_eq!((s.x_len(), s.y_len()), (6 * 9 * 7, 6 * 4 * 3));
    let s = PoolShape::new(2, 4, 4, 4, 4).unwrap();
    assert_eq!((s.oh(), s.ow()), (1, 1));
    let s = PoolShape::new(2, 5, 7, 2, 2).unwrap();
    assert_eq!((s.oh(), s.ow()), (2, 3));
    for (h, w, k, st) in [(4, 4, 0, 1), (4, 4, 2, 0), (3, 8, 4, 4), (8, 3, 4, 1)] {
        let err = PoolShape::new(1, h, w, k, st).unwrap_err();
        assert!(
            matches!(err, Error::Shape(_)),
            "{h}x{w} k={k} s={st}: {err}"
        );
    }
    // a struct literal with an invalid window is rejected by every pooling op
    let cpu = B64::new(1).unwrap();
    let bad = PoolShape {
        planes: 1,
        h: 4,
        w: 4,
        k: 0,
        stride: 1,
    };
    let x = vec![0.0; 16];
    assert!(cpu
        .pool_fwd(&mut vec![0.0; 16], &x, &bad, PoolKind::Avg)
        .is_err());
    assert!(cpu
        .pool_bwd(&mut vec![0.0; 16], &x, &x, &bad, PoolKind::Max)
        .is_err());
    assert!(cpu
        .pool_jvp(&mut vec![0.0; 16], &x, &x, &bad, PoolKind::Max)
        .is_err());
}

#[test]
fn add_elementwise() {
    let cpu = B64::new(2).unwrap();
    let n = 40_000; // several parallel chunks
    let a: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
    let b: Vec<f64> = (0..n).map(|i| 1.0 - i as f64).collect();
    let mut y = vec![f64::NAN; n];
    cpu.add(&mut y, &a, &b).unwrap();
    assert!(y
        .iter()
        .enumerate()
        .all(|(i, &v)| v == 1.0 - 0.5 * i as f64));
    let err = cpu.add(&mut y, &a[..n - 1].to_vec(), &b).unwrap_err();
    assert!(matches!(err, Error::Shape(_)), "{err}");
    assert!(cpu.add(&mut y, &a, &b[..3].to_vec()).is_err());
}

// ---------------------------------------------- precision and determinism --

#[test]
fn f32_agrees_with_f64() {
    let c32 = Cpu::<f32>::new(2).unwrap();
    let c64 = B64::new(2).unwrap();
    let mut r = rng(10);
    for s in [
        ConvShape::new(4, 1, 28, 28, 16, 3, 1, 3).unwrap(),
        ConvShape::new(6, 32, 8, 8, 16, 3, 1, 1).unwrap(),
        ConvShape::new(3, 8, 9, 9, 4, 5, 2, 2).unwrap(),
    ] {
        let x = randv(&mut r, s.x_len());
        let (p, ws, bs) = conv_params(&mut r, &s);
        let g = randv(&mut r, s.y_len());
        let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
        let up = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
        // Inputs rounded to f32 first so both runs see the same numbers.
        let (x, p, g) = (up(&f(&x)), up(&f(&p)), up(&f(&g)));
        // f32 sums of K = C*KH*KW (or N*P) products of O(1) terms: error ~ 1e-7 * sqrt(K) * O(sqrt K).
        let red = (s.c * s.kh * s.kw) as f64;
        let mut y64 = vec![0.0; s.y_len()];
        c64.conv2d_fwd(&mut y64, &x, &p, ws, Some(bs), &s, false)
            .unwrap();
        let mut y32 = vec![0.0f32; s.y_len()];
        c32.conv2d_fwd(&mut y32, &f(&x), &f(&p), ws, Some(bs), &s, false)
            .unwrap();
        assert_close("f32 fwd", &up(&y32), &y64, 1e-6 * red, 1e-5);
        let mut dx64 = vec![0.0; s.x_len()];
        c64.conv2d_bwd_input(&mut dx64, &g, &p, ws, &s, false)
            .unwrap();
        let mut dx32 = vec![0.0f32; s.x_len()];
        c32.conv2d_bwd_input(&mut dx32, &f(&g), &f(&p), ws, &s, false)
            .unwrap();
        assert_close(
            "f32 bwd_input",
            &up(&dx32),
            &dx64,
            1e-6 * (s.o * s.kh * s.kw) as f64,
            1e-5,
        );
        let mut gw64 = vec![0.0; p.len()];
        c64.conv2d_bwd_weight(&mut gw64, ws, Some(bs), &g, &x, &s)
            .unwrap();
        let mut gw32 = vec![0.0f32; p.len()];
        c32.conv2d_bwd_weight(&mut gw32, ws, Some(bs), &f(&g), &f(&x), &s)
            .unwrap();
        let redw = (s.n * s.oh * s.ow) as f64;
        assert_close("f32 bwd_weight", &up(&gw32), &gw64, 1e-6 * redw, 1e-5);
    }
}

fn run_all_f32(threads: usize) -> Vec<Vec<u32>> {
    let cpu = Cpu::<f32>::new(threads).unwrap();
    let mut r = rng(11);
    let mut out = Vec::new();
    let bits = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<u32>>();
    for s in [
        ConvShape::new(1, 16, 8, 8, 24, 3, 1, 1).unwrap(),
        ConvShape::new(3, 8, 12, 12, 16, 5, 2, 2).unwrap(),
        ConvShape::new(20, 1, 28, 28, 16, 3, 1, 3).unwrap(),
        ConvShape::new(40, 16, 8, 8, 16, 3, 1, 1).unwrap(),
    ] {
        let x: Vec<f32> = randv(&mut r, s.x_len()).iter().map(|&v| v as f32).collect();
        let p: Vec<f32> = randv(&mut r, s.w_len() + s.o as usize)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let g: Vec<f32> = randv(&mut r, s.y_len()).iter().map(|&v| v as f32).collect();
        let ws = Seg {
            off: 0,
            len: s.w_len() as u32,
        };
        let bs = Seg {
            off: s.w_len() as u32,
            len: s.o,
        };
        let mut y = vec![0.0f32; s.y_len()];
        cpu.conv2d_fwd(&mut y, &x, &p, ws, Some(bs), &s, false)
            .unwrap();
        let mut dx = vec![0.0f32; s.x_len()];
        cpu.conv2d_bwd_input(&mut dx, &g, &p, ws, &s, false)
            .unwrap();
        let mut gr = vec![0.0f32; p.len()];
        cpu.conv2d_bwd_weight(&mut gr, ws, Some(bs), &g, &x, &s)
            .unwrap();
        out.extend([bits(&y), bits(&dx), bits(&gr)]);
    }
    // Linear at a size where the parallel GEMM splits columns.
    let ls = LinearShape {
        n: 64,
        f: 700,
        k: 300,
    };
    let x: Vec<f32> = randv(&mut r, 64 * 700).iter().map(|&v| v as f32).collect();
    let p: Vec<f32> = randv(&mut r, 300 * 700 + 300)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let g: Vec<f32> = randv(&mut r, 64 * 300).iter().map(|&v| v as f32).collect();
    let ws = Seg {
        off: 0,
        len: 300 * 700,
    };
    let bs = Seg {
        off: 300 * 700,
        len: 300,
    };
    let mut y = vec![0.0f32; 64 * 300];
    cpu.linear_fwd(&mut y, &x, &p, ws, Some(bs), &ls, false)
        .unwrap();
    let mut dx = vec![0.0f32; 64 * 700];
    cpu.linear_bwd_input(&mut dx, &g, &p, ws, &ls, false)
        .unwrap();
    let mut gr = vec![0.0f32; p.len()];
    cpu.linear_bwd_weight(&mut gr, ws, Some(bs), &g, &x, &ls)
        .unwrap();
    out.extend([bits(&y), bits(&dx), bits(&gr)]);
    out
}

#[test]
fn bit_identical_across_thread_counts() {
    let one = run_all_f32(1);
    for t in [2, 3] {
        let other = run_all_f32(t);
        for (i, (a, b)) in one.iter().zip(&other).enumerate() {
            let first = a.iter().zip(b).position(|(p, q)| p != q);
            assert!(
                first.is_none(),
                "output {i} differs with {t} threads at {first:?}"
            );
        }
    }
}

#[test]
fn gemm_strided_and_parallel() {
    let mut r = rng(12);
    let (m, n, k) = (70, 300, 90);
    let a = randv(&mut r, m * k);
    let bt = randv(&mut r, n * k); // B stored transposed: B[p, j] = bt[j*k + p]
    let mut want = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            want[i * n + j] = (0..k).map(|p| a[i * k + p] * bt[j * k + p]).sum();
        }
    }
    let mut c = vec![1.0; m * n];
    gemm(m, n, k, &mut c, n, Mat::rm(&a, k), Mat::rm_t(&bt, k), false).unwrap();
    assert_close("gemm", &c, &want, 1e-12, 1e-12);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut c2 = vec![1.0; m * n];
    gemm_par(
        &pool,
        m,
        n,
        k,
        &mut c2,
        n,
        Mat::rm(&a, k),
        Mat::rm_t(&bt, k),
        true,
    )
    .unwrap();
    let want2: Vec<f64> = want.iter().map(|v| v + 1.0).collect();
    assert_close("gemm_par acc", &c2, &want2, 1e-12, 1e-12);
    // Too-short operands are an error, not a panic.
    assert!(gemm(
        m,
        n,
        k,
        &mut c[..10],
        n,
        Mat::rm(&a, k),
        Mat::rm_t(&bt, k),
        false
    )
    .is_err());
    assert!(gemm(
        m,
        n,
        k,
        &mut c,
        n,
        Mat::rm(&a[..5], k),
        Mat::rm_t(&bt, k),
        false
    )
    .is_err());
}

// ---------------------------------------------------------------- errors --

#[test]
fn memory_ops_and_bounds_errors() {
    let cpu = B64::new(2).unwrap();
    let src: Vec<f64> = (0..10).map(|i| i as f64).collect();
    let mut dst = vec![0.0; 6];
    cpu.copy_range(&mut dst, 1, &src, 4, 3).unwrap();
    assert_eq!(dst, vec![0.0, 4.0, 5.0, 6.0, 0.0, 0.0]);
    assert!(
        cpu.copy_range(&mut dst, 4, &src, 0, 3).is_err(),
        "dst overrun"
    );
    assert!(
        cpu.copy_range(&mut dst, 0, &src, 8, 3).is_err(),
        "src overrun"
    );
    assert!(
        cpu.copy_range(&mut dst, usize::MAX, &src, 0, 2).is_err(),
        "overflow"
    );
    assert_eq!(
        dst,
        vec![0.0, 4.0, 5.0, 6.0, 0.0, 0.0],
        "failed copies write nothing"
    );

    let mut y: Vec<f64> = (0..100_000).map(|i| i as f64).collect();
    let x: Vec<f64> = (0..100_000).map(|i| (i % 7) as f64).collect();
    cpu.axpy(&mut y, 0.5, &x).unwrap();
    assert!(y
        .iter()
        .enumerate()
        .all(|(i, &v)| v == i as f64 + 0.5 * (i % 7) as f64));
    assert!(cpu.axpy(&mut y, 1.0, &x[..5].to_vec()).is_err());

    let mut g = vec![0.0; 6];
    cpu.gather_rows(&mut g, &src, &[4, 0, 2], 2).unwrap();
    assert_eq!(g, vec![8.0, 9.0, 0.0, 1.0, 4.0, 5.0]);
    assert!(
        cpu.gather_rows(&mut g, &src, &[4, 5, 0], 2).is_err(),
        "row 5 of 5"
    );
    assert!(
        cpu.gather_rows(&mut g, &src, &[0, 1], 2).is_err(),
        "dst length"
    );
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let cpu = B64::new(1).unwrap();
    let s = ConvShape::new(2, 3, 6, 6, 4, 3, 1, 1).unwrap();
    let x = vec![0.0; s.x_len()];
    let p = vec![0.0; s.w_len() + 4];
    let ws = Seg {
        off: 0,
        len: s.w_len() as u32,
    };
    let mut y = vec![0.0; s.y_len()];
    assert!(cpu
        .conv2d_fwd(&mut y, &x[..5].to_vec(), &p, ws, None, &s, false)
        .is_err());
    assert!(
        cpu.conv2d_fwd(
            &mut y,
            &x,
            &p,
            Seg {
                off: 10,
                len: s.w_len() as u32
            },
            None,
            &s,
            false
        )
        .is_err(),
        "weight segment outside params"
    );
    assert!(
        cpu.conv2d_fwd(
            &mut y,
            &x,
            &p,
            Seg {
                off: u32::MAX,
                len: u32::MAX
            },
            None,
            &s,
            false
        )
        .is_err(),
        "overflowing segment"
    );
    let mut bad = s;
    bad.oh += 1;
    assert!(
        cpu.conv2d_fwd(&mut y, &x, &p, ws, None, &bad, false)
            .is_err(),
        "inconsistent oh"
    );
    let mut grads = vec![0.0; p.len()];
    assert!(
        cpu.conv2d_bwd_weight(&mut grads, ws, Some(Seg { off: 3, len: 4 }), &y, &x, &s)
            .is_err(),
        "overlapping segments"
    );
    let ls = LinearShape { n: 2, f: 3, k: 4 };
    let mut ly = vec![0.0; 8];
    assert!(cpu
        .linear_fwd(
            &mut ly,
            &vec![0.0; 5],
            &p,
            Seg { off: 0, len: 12 },
            None,
            &ls,
            false
        )
        .is_err());
    let ps = PoolShape::new(2, 4, 4, 2, 2).unwrap();
    assert!(cpu
        .pool_fwd(&mut vec![0.0; 7], &vec![0.0; 32], &ps, PoolKind::Avg)
        .is_err());
    assert!(cpu
        .act_fwd(&mut vec![0.0; 3], &vec![0.0; 4], Act::Relu)
        .is_err());
}

#[test]
fn an_impossible_allocation_is_an_error_naming_size_and_caller() {
    use dsa_condense::backend::emu::Emu;
    let len = 1usize << 48; // 1 PiB of f32
    let e = Cpu::<f32>::new(1)
        .unwrap()
        .alloc(len)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("{len} values")) && e.contains("tests/cpu_ops.rs"),
        "{e}"
    );
    let e = Emu::new().alloc(len).unwrap_err().to_string();
    assert!(e.contains("emu") && e.contains("tests/cpu_ops.rs"), "{e}");
}
