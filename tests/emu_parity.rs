//! Kernel parity: every kernel of `kernels/*.cu` against the CPU reference
//! (`Cpu<f32>`), on fresh random inputs at several shapes, including sizes that are
//! not multiples of any tile. One test body per op, run on two backends: `emu`
//! (always) and `cuda` (when this machine has a usable GPU; otherwise the test
//! prints "skipped: <why>" and passes).
//!
//! Outputs are poisoned with NaN before the launch, so an element the kernel forgets
//! to write fails; ops with `acc = true` (and in-place ops) start from random finite
//! values instead and check the accumulation.
//!
//! Error model: f32 kernels against an f32 reference that sums in another order, so
//! the relative error of the whole output, ||out - ref|| / ||ref||, stays near
//! eps * sqrt(reduction length); the bound 1e-5 holds up to reductions of ~10^4
//! terms. Any NaN or infinity fails. Failures report the max abs/rel error and the
//! first element outside |d| <= 1e-6 + 1e-4 |ref|.

use dsa_condense::backend::emu::Emu;
use dsa_condense::backend::*;
use rand::Rng;

#[macro_use]
mod parity_common;
use parity_common::*;

// ---- memory ---------------------------------------------------------------------

fn body_fill<B: Backend<E = f32>>(b: &B) {
    for (i, n) in [1usize, 1000, 4097].into_iter().enumerate() {
        let mut r = rng(10 + i as u64);
        let v: f32 = r.random_range(-3.0..3.0);
        let mut y = b.upload(&nan_vec(n)).unwrap();
        b.fill(&mut y, v).unwrap();
        let mut yc = cpu().upload(&nan_vec(n)).unwrap();
        cpu().fill(&mut yc, v).unwrap();
        assert_close(&format!("fill n={n}"), &b.download(&y).unwrap(), &yc);
    }
}
parity!(fill, body_fill);

fn body_copy_range<B: Backend<E = f32>>(b: &B) {
    // (dst len, dst_off, src len, src_off, len): aligned and unaligned offsets
    for (i, (dl, doff, sl, soff, len)) in [
        (10, 0, 10, 0, 10),
        (100, 3, 50, 1, 45),
        (1031, 4, 2000, 8, 1027),
        (600, 1, 600, 2, 5),
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = rng(20 + i as u64);
        let src = rand_vec(&mut r, sl, -1.0, 1.0);
        let dst0 = rand_vec(&mut r, dl, -1.0, 1.0);
        let s = b.upload(&src).unwrap();
        let mut d = b.upload(&dst0).unwrap();
        b.copy_range(&mut d, doff, &s, soff, len).unwrap();
        let mut dc = dst0.clone();
        cpu().copy_range(&mut dc, doff, &src, soff, len).unwrap();
        assert_close(
            &format!("copy_range case {i}"),
            &b.download(&d).unwrap(),
            &dc,
        );
    }
}
parity!(copy_range, body_copy_range);

fn body_write<B: Backend<E = f32>>(b: &B) {
    for (i, n) in [1usize, 1027, 4096].into_iter().enumerate() {
        let mut r = rng(40 + i as u64);
        let host = rand_vec(&mut r, n, -1.0, 1.0);
        let mut d = b.upload(&nan_vec(n)).unwrap();
        b.write(&mut d, &host).unwrap();
        assert_close(&format!("write n={n}"), &b.download(&d).unwrap(), &host);
        // a length mismatch is an error, and the buffer is left as it was
        let err = b.write(&mut d, &host[..n - 1]).unwrap_err().to_string();
        assert!(err.contains("write"), "{err}");
        assert_close(
            &format!("write n={n} kept"),
            &b.download(&d).unwrap(),
            &host,
        );
    }
}
parity!(write, body_write);

fn body_axpy<B: Backend<E = f32>>(b: &B) {
    for (i, n) in [7usize, 1024, 5003].into_iter().enumerate() {
        let mut r = rng(30 + i as u64);
        let (x, y0) = (
            rand_vec(&mut r, n, -1.0, 1.0),
            rand_vec(&mut r, n, -1.0, 1.0),
        );
        let a: f32 = r.random_range(-2.0..2.0);
        let mut y = b.upload(&y0).unwrap();
        b.axpy(&mut y, a, &b.upload(&x).unwrap()).unwrap();
        let mut yc = y0.clone();
        cpu().axpy(&mut yc, a, &x).unwrap();
        assert_close(&format!("axpy n={n}"), &b.download(&y).unwrap(), &yc);
    }
}
parity!(axpy, body_axpy);

fn body_add<B: Backend<E = f32>>(b: &B) {
    for (i, n) in [1usize, 1000, 5003].into_iter().enumerate() {
        let mut r = rng(35 + i as u64);
        let (x, z) = (
            rand_vec(&mut r, n, -1.0, 1.0),
            rand_vec(&mut r, n, -1.0, 1.0),
        );
        let mut y = b.upload(&nan_vec(n)).unwrap();
        let (xb, zb) = (b.upload(&x).unwrap(), b.upload(&z).unwrap());
        b.add(&mut y, &xb, &zb).unwrap();
        let mut yc = nan_vec(n);
        cpu().add(&mut yc, &x, &z).unwrap();
        assert_close(&format!("add n={n}"), &b.download(&y).unwrap(), &yc);
        // a length mismatch (either input) is an error
        let long = b.upload(&vec![0.0; n + 1]).unwrap();
        let err = b.add(&mut y, &long, &zb).unwrap_err().to_string();
        assert!(err.contains("add"), "{err}");
        assert!(b.add(&mut y, &xb, &long).is_err());
    }
}
parity!(add, body_add);

fn body_gather_rows<B: Backend<E = f32>>(b: &B) {
    for (i, (src_rows, nrows, row_len)) in [(3usize, 1usize, 5usize), (40, 17, 33), (9, 64, 7)]
        .into_iter()
        .enumerate()
    {
        let mut r = rng(40 + i as u64);
        let src = rand_vec(&mut r, src_rows * row_len, -1.0, 1.0);
        let rows: Vec<u32> = (0..nrows)
            .map(|_| r.random_range(0..src_rows as u32))
            .collect();
        let mut d = b.upload(&nan_vec(nrows * row_len)).unwrap();
        b.gather_rows(&mut d, &b.upload(&src).unwrap(), &rows, row_len)
            .unwrap();
        let mut dc = nan_vec(nrows * row_len);
        cpu().gather_rows(&mut dc, &src, &rows, row_len).unwrap();
        assert_close(
            &format!("gather_rows case {i}"),
            &b.download(&d).unwrap(),
            &dc,
        );
    }
}
parity!(gather_rows, body_gather_rows);

// ---- activations ----------------------------------------------------------------

const ACTS: [Act; 4] = [Act::Relu, Act::Sigmoid, Act::LeakyRelu, Act::Swish];

fn body_act<B: Backend<E = f32>>(b: &B) {
    for (i, n) in [1usize, 257, 4099].into_iter().enumerate() {
        for act in ACTS {
            let mut r = rng(50 + i as u64);
            let x = rand_vec(&mut r, n, -4.0, 4.0);
            let dy = rand_vec(&mut r, n, -1.0, 1.0);
            let dydot = rand_vec(&mut r, n, -1.0, 1.0);
            let xdot = rand_vec(&mut r, n, -1.0, 1.0);
            let (xb, dyb) = (b.upload(&x).unwrap(), b.upload(&dy).unwrap());
            let what = format!("{act:?} n={n}");

            let mut y = b.upload(&nan_vec(n)).unwrap();
            b.act_fwd(&mut y, &xb, act).unwrap();
            let mut yc = nan_vec(n);
            cpu().act_fwd(&mut yc, &x, act).unwrap();
            assert_close(&format!("act_fwd {what}"), &b.download(&y).unwrap(), &yc);

            let mut dx = b.upload(&nan_vec(n)).unwrap();
            b.act_bwd(&mut dx, &dyb, &xb, act).unwrap();
            let mut dxc = nan_vec(n);
            cpu().act_bwd(&mut dxc, &dy, &x, act).unwrap();
            assert_close(&format!("act_bwd {what}"), &b.download(&dx).unwrap(), &dxc);

            let mut dx = b.upload(&nan_vec(n)).unwrap();
            let mut dxdot = b.upload(&nan_vec(n)).unwrap();
            let (dydotb, xdotb) = (b.upload(&dydot).unwrap(), b.upload(&xdot).unwrap());
            b.act_dual_bwd(&mut dx, &mut dxdot, &dyb, &dydotb, &xb, &xdotb, act)
                .unwrap();
            let (mut dxc, mut dxdotc) = (nan_vec(n), nan_vec(n));
            cpu()
                .act_dual_bwd(&mut dxc, &mut dxdotc, &dy, &dydot, &x, &xdot, act)
                .unwrap();
            assert_close(
                &format!("act_dual_bwd dx {what}"),
                &b.download(&dx).unwrap(),
                &dxc,
            );
            assert_close(
                &format!("act_dual_bwd dxdot {what}"),
                &b.download(&dxdot).unwrap(),
                &dxdotc,
            );
        }
    }
}
parity!(act, body_act);

// ---- pooling --------------------------------------------------------------------

fn body_pool<B: Backend<E = f32>>(b: &B) {
    // windows (k, stride): the ConvNet's 2x2/2, the 1x1/1 copy, ResNet's final 4x4/4,
    // and overlapping ones (3x3/2, 2x2/1: pool_bwd sums over several windows)
    let windows = [(2u32, 2u32), (1, 1), (4, 4), (3, 2), (2, 1)];
    // (planes, h, w): odd sizes leave last rows/columns no window covers; shapes
    // smaller than a window are skipped (every window keeps 3+ shapes)
    let shapes = [
        (1u32, 4u32, 4u32),
        (3, 5, 7),
        (8, 16, 16),
        (2, 9, 4),
        (1, 2, 2),
        (2, 11, 13),
    ];
    for (wi, &(k, stride)) in windows.iter().enumerate() {
        let mut tested = 0;
        for (i, &(planes, h, w)) in shapes.iter().enumerate() {
            if h < k || w < k {
                continue;
            }
            tested += 1;
            let s = PoolShape::new(
                planes as usize,
                h as usize,
                w as usize,
                k as usize,
                stride as usize,
            )
            .unwrap();
            let (xl, yl) = (s.x_len(), s.y_len());
            for kind in [PoolKind::Avg, PoolKind::Max] {
                let mut r = rng(60 + 10 * wi as u64 + i as u64);
                // values on a coarse grid so that max windows contain ties
                let x: Vec<f32> = (0..xl)
                    .map(|_| r.random_range(-4i32..4) as f32 * 0.5)
                    .collect();
                let xdot = rand_vec(&mut r, xl, -1.0, 1.0);
                let dy = rand_vec(&mut r, yl, -1.0, 1.0);
                let xb = b.upload(&x).unwrap();
                let what = format!("{kind:?} k={k} s={stride} {planes}x{h}x{w}");

                let mut y = b.upload(&nan_vec(yl)).unwrap();
                b.pool_fwd(&mut y, &xb, &s, kind).unwrap();
                let mut yc = nan_vec(yl);
                cpu().pool_fwd(&mut yc, &x, &s, kind).unwrap();
                assert_close(&format!("pool_fwd {what}"), &b.download(&y).unwrap(), &yc);

                let mut dx = b.upload(&nan_vec(xl)).unwrap();
                b.pool_bwd(&mut dx, &b.upload(&dy).unwrap(), &xb, &s, kind)
                    .unwrap();
                let mut dxc = nan_vec(xl);
                cpu().pool_bwd(&mut dxc, &dy, &x, &s, kind).unwrap();
                assert_close(&format!("pool_bwd {what}"), &b.download(&dx).unwrap(), &dxc);

                let mut yd = b.upload(&nan_vec(yl)).unwrap();
                b.pool_jvp(&mut yd, &xb, &b.upload(&xdot).unwrap(), &s, kind)
                    .unwrap();
                let mut ydc = nan_vec(yl);
                cpu().pool_jvp(&mut ydc, &x, &xdot, &s, kind).unwrap();
                assert_close(&format!("pool_jvp {what}"), &b.download(&yd).unwrap(), &ydc);
            }
        }
        assert!(tested >= 3, "window {k}/{stride}: only {tested} shapes");
    }
    // shapes PoolShape::new rejects are errors, never launches
    let x = b.upload(&nan_vec(16)).unwrap();
    let mut y = b.upload(&nan_vec(16)).unwrap();
    for (k, stride) in [(0u32, 1u32), (2, 0), (5, 1)] {
        let s = PoolShape {
            planes: 1,
            h: 4,
            w: 4,
            k,
            stride,
        };
        assert!(
            b.pool_fwd(&mut y, &x, &s, PoolKind::Max).is_err(),
            "k={k} s={stride}"
        );
    }
}
parity!(pool, body_pool);

// ---- SGD ------------------------------------------------------------------------

fn body_sgd<B: Backend<E = f32>>(b: &B) {
    for (i, (n, momentum, wd)) in [
        (5usize, 0.0f32, 0.0f32),
        (1000, 0.9, 5e-4),
        (3001, 0.5, 0.0),
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = rng(70 + i as u64);
        let (p0, g, m0) = (
            rand_vec(&mut r, n, -1.0, 1.0),
            rand_vec(&mut r, n, -1.0, 1.0),
            rand_vec(&mut r, n, -1.0, 1.0),
        );
        let hp = SgdParams {
            lr: 0.01,
            momentum,
            weight_decay: wd,
        };
        let (mut p, mut m) = (b.upload(&p0).unwrap(), b.upload(&m0).unwrap());
        // two steps: the second reads the momentum the first wrote
        for _ in 0..2 {
            b.sgd_step(&mut p, &b.upload(&g).unwrap(), &mut m, hp)
                .unwrap();
        }
        let (mut pc, mut mc) = (p0.clone(), m0.clone());
        for _ in 0..2 {
            cpu().sgd_step(&mut pc, &g, &mut mc, hp).unwrap();
        }
        assert_close(&format!("sgd p case {i}"), &b.download(&p).unwrap(), &pc);
        // without momentum the buffer must stay untouched (equal to m0 on both sides)
        assert_close(
            &format!("sgd momentum case {i}"),
            &b.download(&m).unwrap(),
            &mc,
        );
    }
}
parity!(sgd, body_sgd);

// ---- convolution and fully connected (cases in parity_common/products.rs) --------

fn body_conv<B: Backend<E = f32>>(b: &B) {
    products::conv_cases(b, cpu(), &mut |what, _, got, want| {
        assert_close(what, got, want)
    });
}
parity!(conv, body_conv);

fn body_linear<B: Backend<E = f32>>(b: &B) {
    products::linear_cases(b, cpu(), &mut |what, _, got, want| {
        assert_close(what, got, want)
    });
}
parity!(linear, body_linear);

// ---- determinism ----------------------------------------------------------------

/// Same inputs, same bits: the split-K weight gradient (the only multi-pass
/// reduction) run twice.
fn body_deterministic<B: Backend<E = f32>>(b: &B) {
    let s = ConvShape::new(8, 2, 12, 12, 3, 3, 1, 1).unwrap();
    let mut r = rng(99);
    let x = b.upload(&rand_vec(&mut r, s.x_len(), -1.0, 1.0)).unwrap();
    let dy = b.upload(&rand_vec(&mut r, s.y_len(), -1.0, 1.0)).unwrap();
    let seg = Seg {
        off: 0,
        len: s.w_len() as u32,
    };
    let run = || {
        let mut g = b.alloc(s.w_len()).unwrap();
        b.conv2d_bwd_weight(&mut g, seg, None, &dy, &x, &s).unwrap();
        b.download(&g).unwrap()
    };
    let (a1, a2) = (run(), run());
    assert!(
        a1.iter().zip(&a2).all(|(p, q)| p.to_bits() == q.to_bits()),
        "conv2d_bwd_weight not bitwise reproducible"
    );
}
parity!(deterministic, body_deterministic);
