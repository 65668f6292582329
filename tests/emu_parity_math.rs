//! Kernel parity for the math families (kernels/norm.cu, batchnorm.cu, loss.cu,
//! matching.cu, augment.cu): every kernel against the CPU reference (`Cpu<f32>`) on
//! fresh random inputs at several shapes, including sizes that are not multiples of
//! any block size (groups, channels, rows and images longer than one 256-thread
//! block). One test body per family, run on `emu` (always) and on `cuda` when this
//! machine has a usable GPU (otherwise the test prints "skipped: <why>" and passes).
//!
//! Outputs are poisoned with NaN before the launch, so an element a kernel forgets to
//! write fails. Gradient upstreams are random (never all ones).
//!
//! Error model: f32 kernels with block-tree sums against a reference that sums in f64
//! (norms, loss, matching) or sequentially in f32 (augmentations); the relative error
//! of a whole output, ||out - ref|| / ||ref||, stays near eps * sqrt(reduction length),
//! below 1e-5 for the reductions here (<= 1200 terms). Any NaN or infinity fails.
//! Scalars (loss, h, distance) are compared with the same relative bound.

use dsa_condense::backend::emu::Emu;
use dsa_condense::backend::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

#[macro_use]
mod parity_common;
use parity_common::*;

/// |got - want| <= REL_TOL * max(|want|, 1e-3) for a scalar result.
fn assert_scalar(what: &str, got: f64, want: f64) {
    assert!(got.is_finite(), "{what}: non-finite {got}");
    let err = (got - want).abs();
    assert!(
        err <= REL_TOL * want.abs().max(1e-3),
        "{what}: {got} vs reference {want} (abs error {err:.3e})"
    );
}

fn dl<B: Backend<E = f32>>(b: &B, buf: &B::Buf) -> Vec<f32> {
    b.download(buf).unwrap()
}

fn up<B: Backend<E = f32>>(b: &B, v: &[f32]) -> B::Buf {
    b.upload(v).unwrap()
}

/// A segment of `len` elements at `off`.
fn seg(off: usize, len: usize) -> Seg {
    Seg {
        off: off as u32,
        len: len as u32,
    }
}

// ---- group / instance / layer norm ------------------------------------------------

fn body_norm<B: Backend<E = f32>>(b: &B) {
    // (n, c, hw, groups, affine): instance, group, layer (per element), and a group of
    // 4*300 = 1200 elements (several block strides, not a multiple of 256)
    for (i, (n, c, hw, groups, affine)) in [
        (2u32, 4u32, 9u32, 4u32, 0u32),
        (3, 6, 25, 2, 0),
        (2, 3, 50, 1, 1),
        (1, 8, 300, 2, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let s = NormShape {
            n,
            c,
            hw,
            groups,
            affine,
            eps: 1e-5,
        };
        let len = s.len();
        let aff = if affine == 1 {
            (c * hw) as usize
        } else {
            c as usize
        };
        let ng = s.stats_len();
        let mut r = rng(100 + i as u64);
        // per-group offsets and scales so the statistics are not trivial
        let x: Vec<f32> = (0..len)
            .map(|k| {
                let g = (k / (len / ng)) as f32;
                (0.3 * g - 1.0) + (1.0 + 0.5 * g) * r.random_range(-1.0f32..1.0)
            })
            .collect();
        let (xdot, dy, dydot) = (
            rand_vec(&mut r, len, -1.0, 1.0),
            rand_vec(&mut r, len, -1.0, 1.0),
            rand_vec(&mut r, len, -1.0, 1.0),
        );
        // params = [pad 3, gamma, beta]; tangent = [pad 1, t_gamma, t_beta]
        let params = rand_vec(&mut r, 3 + 2 * aff, -1.5, 1.5);
        let tangent = rand_vec(&mut r, 1 + 2 * aff, -1.0, 1.0);
        let (gs, bs) = (seg(3, aff), seg(3 + aff, aff));
        let (tgs, tbs) = (seg(1, aff), seg(1 + aff, aff));
        let what = format!("n={n} c={c} hw={hw} g={groups} affine={affine}");
        let c_ = cpu();
        let (xb, pb, tb) = (up(b, &x), up(b, &params), up(b, &tangent));

        // forward
        let (mut y, mut st) = (up(b, &nan_vec(len)), up(b, &nan_vec(2 * ng)));
        b.norm_fwd(&mut y, &mut st, &xb, &pb, gs, bs, &s).unwrap();
        let (mut yc, mut stc) = (nan_vec(len), nan_vec(2 * ng));
        c_.norm_fwd(&mut yc, &mut stc, &x, &params, gs, bs, &s)
            .unwrap();
        assert_close(&format!("norm_fwd y {what}"), &dl(b, &y), &yc);
        assert_close(&format!("norm_fwd stats {what}"), &dl(b, &st), &stc);
        // the passes below read the reference statistics
        let stb = up(b, &stc);

        // backward, with and without parameter gradients (grads = [pad 2, dg, db])
        let (dgs, dbs) = (seg(2, aff), seg(2 + aff, aff));
        let (mut dx, mut gr) = (up(b, &nan_vec(len)), up(b, &nan_vec(2 + 2 * aff)));
        let dyb = up(b, &dy);
        b.norm_bwd(
            &mut dx,
            Some((&mut gr, dgs, dbs)),
            &dyb,
            &xb,
            &stb,
            &pb,
            gs,
            &s,
        )
        .unwrap();
        let (mut dxc, mut grc) = (nan_vec(len), nan_vec(2 + 2 * aff));
        c_.norm_bwd(
            &mut dxc,
            Some((&mut grc, dgs, dbs)),
            &dy,
            &x,
            &stc,
            &params,
            gs,
            &s,
        )
        .unwrap();
        assert_close(&format!("norm_bwd dx {what}"), &dl(b, &dx), &dxc);
        let grv = dl(b, &gr);
        assert_close(
            &format!("norm_bwd dgamma {what}"),
            &grv[dgs.range()],
            &grc[dgs.range()],
        );
        assert_close(
            &format!("norm_bwd dbeta {what}"),
            &grv[dbs.range()],
            &grc[dbs.range()],
        );
        let mut dx = up(b, &nan_vec(len));
        b.norm_bwd(&mut dx, None, &dyb, &xb, &stb, &pb, gs, &s)
            .unwrap();
        assert_close(
            &format!("norm_bwd (no dparams) dx {what}"),
            &dl(b, &dx),
            &dxc,
        );

        // forward tangent
        let xdb = up(b, &xdot);
        let mut yd = up(b, &nan_vec(len));
        b.norm_jvp(&mut yd, &xb, &xdb, &stb, &pb, gs, &tb, tgs, tbs, &s)
            .unwrap();
        let mut ydc = nan_vec(len);
        c_.norm_jvp(
            &mut ydc, &x, &xdot, &stc, &params, gs, &tangent, tgs, tbs, &s,
        )
        .unwrap();
        assert_close(&format!("norm_jvp {what}"), &dl(b, &yd), &ydc);

        // reverse of the dual
        let (mut dx, mut dxd) = (up(b, &nan_vec(len)), up(b, &nan_vec(len)));
        let ddb = up(b, &dydot);
        b.norm_dual_bwd(
            &mut dx, &mut dxd, &dyb, &ddb, &xb, &xdb, &stb, &pb, gs, &tb, tgs, &s,
        )
        .unwrap();
        let (mut dxc, mut dxdc) = (nan_vec(len), nan_vec(len));
        c_.norm_dual_bwd(
            &mut dxc, &mut dxdc, &dy, &dydot, &x, &xdot, &stc, &params, gs, &tangent, tgs, &s,
        )
        .unwrap();
        assert_close(&format!("norm_dual_bwd dx {what}"), &dl(b, &dx), &dxc);
        assert_close(&format!("norm_dual_bwd dxdot {what}"), &dl(b, &dxd), &dxdc);
    }
}
parity!(norm, body_norm);

// ---- fused norm -> activation -> pooling (kernels/fused.cu) ------------------------

/// One fused call on `b` and the composed reference on the CPU, every output compared.
#[allow(clippy::too_many_arguments)]
fn check_fused<B: Backend<E = f32>>(
    b: &B,
    what: &str,
    z: &[f32],
    params: &[f32],
    norm: Option<(Seg, Seg, &NormShape)>,
    ps: &PoolShape,
    act: Act,
    pool: Option<PoolKind>,
) {
    let len = z.len();
    let ng = norm.map(|(_, _, s)| s.stats_len()).unwrap_or(0);
    let plen = (ps.planes * ps.oh() * ps.ow()) as usize;
    let pool_arg = pool.map(|k| (ps, k));
    let c_ = cpu();
    // device: every output poisoned with NaN
    let (zb, pb) = (up(b, z), up(b, params));
    let (mut s, mut st) = (up(b, &nan_vec(len)), up(b, &nan_vec(2 * ng)));
    let (mut a, mut p) = (up(b, &nan_vec(len)), up(b, &nan_vec(plen)));
    b.norm_act_pool_fwd(
        norm.map(|_| (&mut s, &mut st)),
        &mut a,
        pool.map(|_| &mut p),
        &zb,
        &pb,
        norm,
        act,
        pool_arg,
    )
    .unwrap();
    // reference: the CPU backend's composition of norm_fwd, act_fwd, pool_fwd
    let (mut sc, mut stc) = (nan_vec(len), nan_vec(2 * ng));
    let (mut ac, mut pc) = (nan_vec(len), nan_vec(plen));
    c_.norm_act_pool_fwd(
        norm.map(|_| (&mut sc, &mut stc)),
        &mut ac,
        pool.map(|_| &mut pc),
        &z.to_vec(),
        &params.to_vec(),
        norm,
        act,
        pool_arg,
    )
    .unwrap();
    assert_close(&format!("{what}: a"), &dl(b, &a), &ac);
    if norm.is_some() {
        assert_close(&format!("{what}: s"), &dl(b, &s), &sc);
        assert_close(&format!("{what}: stats"), &dl(b, &st), &stc);
    }
    if pool.is_some() {
        assert_close(&format!("{what}: p"), &dl(b, &p), &pc);
    } else {
        assert!(
            dl(b, &p).iter().all(|v| v.is_nan()),
            "{what}: p written without pooling"
        );
    }
}

fn body_norm_act_pool<B: Backend<E = f32>>(b: &B) {
    let acts = [Act::Relu, Act::Sigmoid, Act::LeakyRelu, Act::Swish];
    let pools = [Some(PoolKind::Avg), Some(PoolKind::Max), None];
    // (n, c, h, w, groups, affine): instance norm on 7x9 planes (odd: the last row and
    // column are not pooled), group norm on 5x6, layer norm (per element) on 9x7, a
    // group of 4*15*21 = 1260 elements (several 256-thread strides), and a layer norm
    // of 16*32*30 floats, too large for the fused kernel's shared memory (the device
    // backends then compose the three kernels).
    let shapes = [
        (2u32, 3u32, 7u32, 9u32, 3u32, 0u32),
        (3, 6, 5, 6, 2, 0),
        (2, 3, 9, 7, 1, 1),
        (1, 8, 15, 21, 2, 0),
        (1, 16, 32, 30, 1, 1),
    ];
    for (i, &(n, c, h, w, groups, affine)) in shapes.iter().enumerate() {
        let ns = NormShape {
            n,
            c,
            hw: h * w,
            groups,
            affine,
            eps: 1e-5,
        };
        let ps = PoolShape::new((n * c) as usize, h as usize, w as usize, 2, 2).unwrap();
        let len = ns.len();
        let aff = if affine == 1 {
            (c * h * w) as usize
        } else {
            c as usize
        };
        let ng = ns.stats_len();
        let mut r = rng(700 + i as u64);
        // per-group offsets and scales so the statistics are not trivial
        let z: Vec<f32> = (0..len)
            .map(|k| {
                let g = (k / (len / ng)) as f32;
                (0.3 * g - 1.0) + (1.0 + 0.5 * g) * r.random_range(-1.0f32..1.0)
            })
            .collect();
        // params = [pad 3, gamma, beta]
        let params = rand_vec(&mut r, 3 + 2 * aff, -1.5, 1.5);
        let (gs, bs) = (seg(3, aff), seg(3 + aff, aff));
        for act in acts {
            for pool in pools {
                let what = format!(
                    "norm_act_pool_fwd n={n} c={c} {h}x{w} g={groups} affine={affine} \
                     {act:?} {pool:?}"
                );
                check_fused(b, &what, &z, &params, Some((gs, bs, &ns)), &ps, act, pool);
                if i < 2 {
                    // no norm: activation and pooling fused, one plane per block
                    let what =
                        format!("norm_act_pool_fwd (no norm) n={n} c={c} {h}x{w} {act:?} {pool:?}");
                    check_fused(b, &what, &z, &params, None, &ps, act, pool);
                }
            }
        }
        // the other pooling windows (k, stride): 1x1 copy, 4x4/4, overlapping 3x3/2, 2x2/1
        if i < 4 {
            for (k, st) in [(1usize, 1usize), (4, 4), (3, 2), (2, 1)] {
                let ps = PoolShape::new((n * c) as usize, h as usize, w as usize, k, st).unwrap();
                for pool in [PoolKind::Avg, PoolKind::Max] {
                    let what = format!(
                        "norm_act_pool_fwd n={n} c={c} {h}x{w} g={groups} k={k} s={st} {pool:?}"
                    );
                    let pool = Some(pool);
                    check_fused(
                        b,
                        &what,
                        &z,
                        &params,
                        Some((gs, bs, &ns)),
                        &ps,
                        Act::Swish,
                        pool,
                    );
                    check_fused(b, &what, &z, &params, None, &ps, Act::Relu, pool);
                }
            }
        }
    }
}
parity!(norm_act_pool, body_norm_act_pool);

// ---- batch norm -------------------------------------------------------------------

fn body_batchnorm<B: Backend<E = f32>>(b: &B) {
    // (n, c, hw): N*HW = 18, 245, 300 (> one block), 3 (at N*HW = 2 the train-mode dx
    // is zero up to rounding: a pure cancellation no relative bound can check)
    for (i, (n, c, hw)) in [(2u32, 3u32, 9u32), (5, 4, 49), (3, 2, 100), (1, 5, 3)]
        .into_iter()
        .enumerate()
    {
        let s = NormShape {
            n,
            c,
            hw,
            groups: 1,
            affine: 0,
            eps: 1e-5,
        };
        let (len, cu) = (s.len(), c as usize);
        let mut r = rng(200 + i as u64);
        let x: Vec<f32> = (0..len)
            .map(|k| {
                let ch = ((k / hw as usize) % cu) as f32;
                0.5 * ch - 0.7 + (1.0 + 0.3 * ch) * r.random_range(-1.0f32..1.0)
            })
            .collect();
        let (xdot, dy, dydot) = (
            rand_vec(&mut r, len, -1.0, 1.0),
            rand_vec(&mut r, len, -1.0, 1.0),
            rand_vec(&mut r, len, -1.0, 1.0),
        );
        let params = rand_vec(&mut r, 1 + 2 * cu, -1.5, 1.5);
        let tangent = rand_vec(&mut r, 2 + 2 * cu, -1.0, 1.0);
        let (gs, bs, tgs, tbs) = (seg(1, cu), seg(1 + cu, cu), seg(2, cu), seg(2 + cu, cu));
        let mut running0 = rand_vec(&mut r, cu, -0.5, 0.5);
        running0.extend(rand_vec(&mut r, cu, 0.5, 2.0));
        let what = format!("n={n} c={c} hw={hw}");
        let c_ = cpu();
        let (xb, pb, tb) = (up(b, &x), up(b, &params), up(b, &tangent));

        // train forward: y, stats, running update
        let (mut y, mut st, mut run) = (
            up(b, &nan_vec(len)),
            up(b, &nan_vec(2 * cu)),
            up(b, &running0),
        );
        b.bn_fwd_train(&mut y, &mut st, &mut run, &xb, &pb, gs, bs, &s, 0.1)
            .unwrap();
        let (mut yc, mut stc, mut runc) = (nan_vec(len), nan_vec(2 * cu), running0.clone());
        c_.bn_fwd_train(&mut yc, &mut stc, &mut runc, &x, &params, gs, bs, &s, 0.1)
            .unwrap();
        assert_close(&format!("bn_fwd_train y {what}"), &dl(b, &y), &yc);
        assert_close(&format!("bn_fwd_train stats {what}"), &dl(b, &st), &stc);
        assert_close(&format!("bn_fwd_train running {what}"), &dl(b, &run), &runc);
        let stb = up(b, &stc);

        // train backward, with and without parameter gradients
        let dyb = up(b, &dy);
        let (dgs, dbs) = (seg(0, cu), seg(cu, cu));
        let (mut dx, mut gr) = (up(b, &nan_vec(len)), up(b, &nan_vec(2 * cu)));
        b.bn_bwd_train(
            &mut dx,
            Some((&mut gr, dgs, dbs)),
            &dyb,
            &xb,
            &stb,
            &pb,
            gs,
            &s,
        )
        .unwrap();
        let (mut dxc, mut grc) = (nan_vec(len), nan_vec(2 * cu));
        c_.bn_bwd_train(
            &mut dxc,
            Some((&mut grc, dgs, dbs)),
            &dy,
            &x,
            &stc,
            &params,
            gs,
            &s,
        )
        .unwrap();
        assert_close(&format!("bn_bwd_train dx {what}"), &dl(b, &dx), &dxc);
        assert_close(
            &format!("bn_bwd_train dgamma,dbeta {what}"),
            &dl(b, &gr),
            &grc,
        );
        let mut dx = up(b, &nan_vec(len));
        b.bn_bwd_train(&mut dx, None, &dyb, &xb, &stb, &pb, gs, &s)
            .unwrap();
        assert_close(
            &format!("bn_bwd_train (no dparams) dx {what}"),
            &dl(b, &dx),
            &dxc,
        );

        // eval mode with the running statistics
        let rb = up(b, &running0);
        let mut y = up(b, &nan_vec(len));
        b.bn_fwd_eval(&mut y, &xb, &rb, &pb, gs, bs, &s).unwrap();
        let mut yc = nan_vec(len);
        c_.bn_fwd_eval(&mut yc, &x, &running0, &params, gs, bs, &s)
            .unwrap();
        assert_close(&format!("bn_fwd_eval {what}"), &dl(b, &y), &yc);

        let (mut dx, mut gr) = (up(b, &nan_vec(len)), up(b, &nan_vec(2 * cu)));
        b.bn_bwd_eval(
            &mut dx,
            Some((&mut gr, dgs, dbs)),
            &dyb,
            &xb,
            &rb,
            &pb,
            gs,
            &s,
        )
        .unwrap();
        let (mut dxc, mut grc) = (nan_vec(len), nan_vec(2 * cu));
        c_.bn_bwd_eval(
            &mut dxc,
            Some((&mut grc, dgs, dbs)),
            &dy,
            &x,
            &running0,
            &params,
            gs,
            &s,
        )
        .unwrap();
        assert_close(&format!("bn_bwd_eval dx {what}"), &dl(b, &dx), &dxc);
        assert_close(
            &format!("bn_bwd_eval dgamma,dbeta {what}"),
            &dl(b, &gr),
            &grc,
        );

        let xdb = up(b, &xdot);
        let mut yd = up(b, &nan_vec(len));
        b.bn_eval_jvp(&mut yd, &xb, &xdb, &rb, &pb, gs, &tb, tgs, tbs, &s)
            .unwrap();
        let mut ydc = nan_vec(len);
        c_.bn_eval_jvp(
            &mut ydc, &x, &xdot, &running0, &params, gs, &tangent, tgs, tbs, &s,
        )
        .unwrap();
        assert_close(&format!("bn_eval_jvp {what}"), &dl(b, &yd), &ydc);

        let (mut dx, mut dxd) = (up(b, &nan_vec(len)), up(b, &nan_vec(len)));
        b.bn_eval_dual_bwd(
            &mut dx,
            &mut dxd,
            &dyb,
            &up(b, &dydot),
            &rb,
            &pb,
            gs,
            &tb,
            tgs,
            &s,
        )
        .unwrap();
        let (mut dxc, mut dxdc) = (nan_vec(len), nan_vec(len));
        c_.bn_eval_dual_bwd(
            &mut dxc, &mut dxdc, &dy, &dydot, &running0, &params, gs, &tangent, tgs, &s,
        )
        .unwrap();
        assert_close(&format!("bn_eval_dual_bwd dx {what}"), &dl(b, &dx), &dxc);
        assert_close(
            &format!("bn_eval_dual_bwd dxdot {what}"),
            &dl(b, &dxd),
            &dxdc,
        );
    }
}
parity!(batchnorm, body_batchnorm);

// ---- softmax cross-entropy --------------------------------------------------------

fn body_ce<B: Backend<E = f32>>(b: &B) {
    // (n, k, coarse): K < 32, K = 33 and 100 (lanes stride), N not a multiple of the
    // 8 samples per block; `coarse` logits on a grid of 0.5 make arg-max ties
    for (i, (n, k, coarse)) in [
        (1u32, 10u32, false),
        (37, 10, true),
        (9, 100, false),
        (16, 33, true),
    ]
    .into_iter()
    .enumerate()
    {
        let s = LinearShape { n, f: 0, k };
        let len = (n * k) as usize;
        let mut r = rng(300 + i as u64);
        let logits: Vec<f32> = if coarse {
            (0..len)
                .map(|_| r.random_range(-3i32..3) as f32 * 0.5)
                .collect()
        } else {
            rand_vec(&mut r, len, -4.0, 4.0)
        };
        let ldot = rand_vec(&mut r, len, -1.0, 1.0);
        let labels: Vec<u32> = (0..n).map(|_| r.random_range(0..k)).collect();
        let what = format!("n={n} k={k}");
        let (lb, yb) = (up(b, &logits), b.upload_labels(&labels).unwrap());

        let mut d = up(b, &nan_vec(len));
        let out = b.ce_fwd_bwd(&mut d, &lb, &yb, &s).unwrap();
        let mut dc = nan_vec(len);
        let outc = cpu().ce_fwd_bwd(&mut dc, &logits, &labels, &s).unwrap();
        assert_close(&format!("ce_fwd_bwd dlogits {what}"), &dl(b, &d), &dc);
        assert_scalar(&format!("ce_fwd_bwd loss {what}"), out.loss, outc.loss);
        assert_eq!(out.correct, outc.correct, "ce_fwd_bwd correct {what}");

        let (mut d, mut dd) = (up(b, &nan_vec(len)), up(b, &nan_vec(len)));
        let h = b
            .ce_dual(&mut d, &mut dd, &lb, &up(b, &ldot), &yb, &s)
            .unwrap();
        let (mut dc, mut ddc) = (nan_vec(len), nan_vec(len));
        let hc = cpu()
            .ce_dual(&mut dc, &mut ddc, &logits, &ldot, &labels, &s)
            .unwrap();
        assert_close(&format!("ce_dual dlogits {what}"), &dl(b, &d), &dc);
        assert_close(&format!("ce_dual dldot {what}"), &dl(b, &dd), &ddc);
        assert_scalar(&format!("ce_dual h {what}"), h, hc);
    }
    // a label outside the classes is an error, not an out-of-bounds read
    let s = LinearShape { n: 3, f: 0, k: 4 };
    let logits = vec![0.5f32; 12];
    let bad = b.upload_labels(&[0, 4, 1]).unwrap();
    let mut d = up(b, &nan_vec(12));
    assert!(b.ce_fwd_bwd(&mut d, &up(b, &logits), &bad, &s).is_err());
    let mut dd = up(b, &nan_vec(12));
    assert!(b
        .ce_dual(&mut d, &mut dd, &up(b, &logits), &up(b, &logits), &bad, &s)
        .is_err());
}
parity!(ce, body_ce);

// ---- gradient matching ------------------------------------------------------------

fn body_match<B: Backend<E = f32>>(b: &B) {
    // tensors: conv weight 4 x 27, bias 4, a zero-gradient row tensor 1 x 5 (|s| = 0),
    // fc weight 3 x 50, bias 3, a 2 x 700 tensor (rows longer than a block); gaps
    // between tensors and a tail that no tensor covers (dsyn must be 0 there)
    let shapes: [(u32, u32, u32); 6] = [
        (4, 27, 0),
        (1, 4, 1),
        (1, 5, 0),
        (3, 50, 0),
        (1, 3, 1),
        (2, 700, 0),
    ];
    let mut tensors = Vec::new();
    let mut off = 2u32;
    for &(rows, cols, is_vector) in &shapes {
        tensors.push(MatchTensor {
            seg: Seg {
                off,
                len: rows * cols,
            },
            rows,
            cols,
            is_vector,
        });
        off += rows * cols + 3;
    }
    let len = off as usize + 5;
    for (i, metric) in [Metric::Ours, Metric::Mse, Metric::Cos]
        .into_iter()
        .enumerate()
    {
        for (j, ts) in [&tensors[..], &tensors[..2], &[][..]]
            .into_iter()
            .enumerate()
        {
            let mut r = rng(400 + 10 * i as u64 + j as u64);
            let real = rand_vec(&mut r, len, -1.0, 1.0);
            let mut syn: Vec<f32> = real
                .iter()
                .map(|&v| 0.7 * v + r.random_range(-0.5f32..0.5))
                .collect();
            let z = tensors[2].seg.range();
            syn[z].iter_mut().for_each(|v| *v = 0.0);
            let what = format!("{metric:?} tensors={}", ts.len());
            let mut d = up(b, &nan_vec(len));
            let dist = b
                .match_distance(&mut d, &up(b, &syn), &up(b, &real), ts, metric)
                .unwrap();
            let mut dc = nan_vec(len);
            let distc = cpu()
                .match_distance(&mut dc, &syn, &real, ts, metric)
                .unwrap();
            assert_scalar(&format!("match_distance {what}"), dist, distc);
            assert_close(&format!("match_distance dsyn {what}"), &dl(b, &d), &dc);
        }
    }
}
parity!(matching, body_match);

// ---- augmentation -----------------------------------------------------------------

/// Every op with random per-image parameters for a batch of `n` `h x w` images.
fn aug_ops(r: &mut ChaCha8Rng, n: usize, h: u32, w: u32) -> Vec<AugOp> {
    let affine: Vec<AffineParam> = (0..n)
        .map(|k| match k % 4 {
            // identity, rotation+scale, strong shrink (wide preimage), singular map
            0 => AffineParam {
                a00: 1.0,
                a01: 0.0,
                a10: 0.0,
                a11: 1.0,
            },
            1 => {
                let (t, sx, sy): (f32, f32, f32) = (
                    r.random_range(-0.3..0.3),
                    r.random_range(0.8..1.2),
                    r.random_range(0.8..1.2),
                );
                AffineParam {
                    a00: sx * t.cos(),
                    a01: -t.sin(),
                    a10: t.sin(),
                    a11: sy * t.cos(),
                }
            }
            2 => AffineParam {
                a00: 0.4,
                a01: 0.1,
                a10: -0.2,
                a11: 2.5,
            },
            _ => AffineParam {
                a00: 0.0,
                a01: 0.0,
                a10: 0.0,
                a11: 0.0,
            },
        })
        .collect();
    let ints = |r: &mut ChaCha8Rng, lo: i32, hi: i32| -> Vec<IntParam> {
        (0..n)
            .map(|_| IntParam {
                a: r.random_range(lo..hi),
                b: r.random_range(lo..hi),
            })
            .collect()
    };
    let (hh, ww) = (h as i32, w as i32);
    let mut crop = ints(r, -3, 4);
    crop[0] = IntParam { a: 100, b: -2 }; // entirely outside
    vec![
        AugOp::Affine(affine),
        AugOp::Flip(
            (0..n)
                .map(|k| IntParam {
                    a: (k % 2) as i32,
                    b: 0,
                })
                .collect(),
        ),
        AugOp::Brightness(rand_vec(r, n, -0.5, 0.5)),
        AugOp::Saturation(
            (0..n)
                .map(|k| {
                    if k == 0 {
                        1.0
                    } else {
                        r.random_range(0.0..2.0)
                    }
                })
                .collect(),
        ),
        AugOp::Contrast(rand_vec(r, n, 0.5, 1.5)),
        AugOp::Crop(crop),
        AugOp::Cutout {
            centres: ints(r, -1, hh.max(ww) + 1),
            half: 2,
        },
    ]
}

fn body_augment<B: Backend<E = f32>>(b: &B) {
    // (n, c, h, w): 3-channel, 1-channel (saturation = identity), an image of
    // 3*13*13 = 507 elements (contrast reduces over more than one block), non-square
    for (i, (n, c, h, w)) in [
        (4u32, 3u32, 8u32, 8u32),
        (4, 1, 7, 7),
        (2, 3, 13, 13),
        (4, 2, 5, 9),
    ]
    .into_iter()
    .enumerate()
    {
        let s = ImgShape { n, c, h, w };
        let len = s.len();
        let mut r = rng(500 + i as u64);
        for op in aug_ops(&mut r, n as usize, h, w) {
            let x = rand_vec(&mut r, len, -1.0, 1.0);
            let dy = rand_vec(&mut r, len, -1.0, 1.0);
            let name = format!("{op:?}");
            let what = format!(
                "{} {n}x{c}x{h}x{w}",
                &name[..name.find('(').unwrap_or(name.len()).min(12)]
            );
            let mut y = up(b, &nan_vec(len));
            b.aug_fwd(&mut y, &up(b, &x), &op, &s).unwrap();
            let mut yc = nan_vec(len);
            cpu().aug_fwd(&mut yc, &x, &op, &s).unwrap();
            assert_close(&format!("aug_fwd {what}"), &dl(b, &y), &yc);

            let mut dx = up(b, &nan_vec(len));
            b.aug_bwd(&mut dx, &up(b, &dy), &op, &s).unwrap();
            let mut dxc = nan_vec(len);
            cpu().aug_bwd(&mut dxc, &dy, &op, &s).unwrap();
            assert_close(&format!("aug_bwd {what}"), &dl(b, &dx), &dxc);
        }
    }
}
parity!(augment, body_augment);
