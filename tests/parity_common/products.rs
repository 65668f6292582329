//! The GEMM-shaped ops (convolution and linear, every pass) run on a backend under
//! test and on a CPU reference, case by case: shared by the FP32 parity tests
//! (emu_parity) and the reduced-precision ones (emu_parity_precision).

use super::*;
use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::*;
use rand_chacha::ChaCha8Rng;

/// (n, c, h, w, o, k, stride, pad): 1x1, 3x3, 5x5, strides 1 and 2, padding 0..3,
/// O above one 128 tile, C*K*K above one tile, and batch*OH*OW long enough to split K.
/// `check(what, accumulated, got, want)`: compares one output pair.
pub type Check<'a> = dyn FnMut(&str, bool, &[f32], &[f32]) + 'a;

pub type ConvCase = (usize, usize, usize, usize, usize, usize, usize, usize);
pub const CONV_SHAPES: [ConvCase; 8] = [
    (1, 1, 5, 5, 1, 3, 1, 1),
    (2, 3, 9, 7, 5, 3, 1, 1),
    (3, 2, 8, 8, 4, 3, 2, 0),
    (2, 4, 6, 6, 130, 1, 1, 0),
    (2, 1, 12, 12, 7, 3, 1, 3),
    (2, 16, 6, 5, 9, 3, 1, 1),
    (4, 2, 11, 11, 3, 5, 2, 2),
    (8, 2, 12, 12, 3, 3, 1, 1),
];

/// Parameter buffer `[pad | w | b | tail]` with `w` at offset `off` (an odd offset
/// exercises the unaligned load path).
pub fn param_buf(
    r: &mut ChaCha8Rng,
    off: usize,
    w_len: usize,
    b_len: usize,
) -> (Vec<f32>, Seg, Seg) {
    let p = rand_vec(r, off + w_len + b_len + 3, -0.5, 0.5);
    let w = Seg {
        off: off as u32,
        len: w_len as u32,
    };
    let b = Seg {
        off: (off + w_len) as u32,
        len: b_len as u32,
    };
    (p, w, b)
}

/// Runs conv2d fwd / bwd_input / bwd_weight of `b` and of `reference` on every
/// [`CONV_SHAPES`] case (fresh random inputs, NaN-poisoned outputs, `acc` both ways,
/// with and without bias) and hands each pair of outputs to `check(what, accumulated, got, want)`
/// (`accumulated`: the output started from random values, `acc = true`).
pub fn conv_cases<B: Backend<E = f32>>(b: &B, reference: &Cpu<f32>, check: &mut Check) {
    for (i, &(n, c, h, w, o, k, st, pad)) in CONV_SHAPES.iter().enumerate() {
        let s = ConvShape::new(n, c, h, w, o, k, st, pad).unwrap();
        let mut r = rng(80 + i as u64);
        let (params, ws, bs) = param_buf(&mut r, if i % 2 == 0 { 4 } else { 1 }, s.w_len(), o);
        let x = rand_vec(&mut r, s.x_len(), -1.0, 1.0);
        let dy = rand_vec(&mut r, s.y_len(), -1.0, 1.0);
        let (pb, xb, dyb) = (
            b.upload(&params).unwrap(),
            b.upload(&x).unwrap(),
            b.upload(&dy).unwrap(),
        );
        let what = format!("{s:?}");
        for acc in [false, true] {
            let bias = if acc == (i % 2 == 0) { Some(bs) } else { None };
            let y0 = if acc {
                rand_vec(&mut r, s.y_len(), -1.0, 1.0)
            } else {
                nan_vec(s.y_len())
            };
            let mut y = b.upload(&y0).unwrap();
            b.conv2d_fwd(&mut y, &xb, &pb, ws, bias, &s, acc).unwrap();
            let mut yc = y0.clone();
            reference
                .conv2d_fwd(&mut yc, &x, &params, ws, bias, &s, acc)
                .unwrap();
            check(
                &format!("conv2d_fwd acc={acc} bias={} {what}", bias.is_some()),
                acc,
                &b.download(&y).unwrap(),
                &yc,
            );

            let dx0 = if acc {
                rand_vec(&mut r, s.x_len(), -1.0, 1.0)
            } else {
                nan_vec(s.x_len())
            };
            let mut dx = b.upload(&dx0).unwrap();
            b.conv2d_bwd_input(&mut dx, &dyb, &pb, ws, &s, acc).unwrap();
            let mut dxc = dx0.clone();
            reference
                .conv2d_bwd_input(&mut dxc, &dy, &params, ws, &s, acc)
                .unwrap();
            check(
                &format!("conv2d_bwd_input acc={acc} {what}"),
                acc,
                &b.download(&dx).unwrap(),
                &dxc,
            );
        }
        for with_bias in [false, true] {
            let db = with_bias.then_some(bs);
            let mut g = b.upload(&nan_vec(params.len())).unwrap();
            b.conv2d_bwd_weight(&mut g, ws, db, &dyb, &xb, &s).unwrap();
            let mut gc = nan_vec(params.len());
            reference
                .conv2d_bwd_weight(&mut gc, ws, db, &dy, &x, &s)
                .unwrap();
            let g = b.download(&g).unwrap();
            check(
                &format!("conv2d_bwd_weight dw {what}"),
                false,
                &g[ws.range()],
                &gc[ws.range()],
            );
            if with_bias {
                check(
                    &format!("conv2d_bwd_weight db {what}"),
                    false,
                    &g[bs.range()],
                    &gc[bs.range()],
                );
            }
        }
    }
}

// ---- fully connected ------------------------------------------------------------

/// As [`conv_cases`] for linear fwd / bwd_input / bwd_weight.
pub fn linear_cases<B: Backend<E = f32>>(b: &B, reference: &Cpu<f32>, check: &mut Check) {
    for (i, &(n, f, k)) in [
        (1usize, 1usize, 1usize),
        (5, 7, 3),
        (33, 130, 10),
        (70, 20, 129),
        (600, 8, 3),
    ]
    .iter()
    .enumerate()
    {
        let s = LinearShape {
            n: n as u32,
            f: f as u32,
            k: k as u32,
        };
        let mut r = rng(90 + i as u64);
        let (params, ws, bs) = param_buf(&mut r, if i % 2 == 0 { 0 } else { 3 }, k * f, k);
        let x = rand_vec(&mut r, n * f, -1.0, 1.0);
        let dy = rand_vec(&mut r, n * k, -1.0, 1.0);
        let (pb, xb, dyb) = (
            b.upload(&params).unwrap(),
            b.upload(&x).unwrap(),
            b.upload(&dy).unwrap(),
        );
        let what = format!("{s:?}");
        for acc in [false, true] {
            let bias = if acc == (i % 2 == 0) { Some(bs) } else { None };
            let y0 = if acc {
                rand_vec(&mut r, n * k, -1.0, 1.0)
            } else {
                nan_vec(n * k)
            };
            let mut y = b.upload(&y0).unwrap();
            b.linear_fwd(&mut y, &xb, &pb, ws, bias, &s, acc).unwrap();
            let mut yc = y0.clone();
            reference
                .linear_fwd(&mut yc, &x, &params, ws, bias, &s, acc)
                .unwrap();
            check(
                &format!("linear_fwd acc={acc} {what}"),
                acc,
                &b.download(&y).unwrap(),
                &yc,
            );

            let dx0 = if acc {
                rand_vec(&mut r, n * f, -1.0, 1.0)
            } else {
                nan_vec(n * f)
            };
            let mut dx = b.upload(&dx0).unwrap();
            b.linear_bwd_input(&mut dx, &dyb, &pb, ws, &s, acc).unwrap();
            let mut dxc = dx0.clone();
            reference
                .linear_bwd_input(&mut dxc, &dy, &params, ws, &s, acc)
                .unwrap();
            check(
                &format!("linear_bwd_input acc={acc} {what}"),
                acc,
                &b.download(&dx).unwrap(),
                &dxc,
            );
        }
        for with_bias in [false, true] {
            let db = with_bias.then_some(bs);
            let mut g = b.upload(&nan_vec(params.len())).unwrap();
            b.linear_bwd_weight(&mut g, ws, db, &dyb, &xb, &s).unwrap();
            let mut gc = nan_vec(params.len());
            reference
                .linear_bwd_weight(&mut gc, ws, db, &dy, &x, &s)
                .unwrap();
            let g = b.download(&g).unwrap();
            check(
                &format!("linear_bwd_weight dw {what}"),
                false,
                &g[ws.range()],
                &gc[ws.range()],
            );
            if with_bias {
                check(
                    &format!("linear_bwd_weight db {what}"),
                    false,
                    &g[bs.range()],
                    &gc[bs.range()],
                );
            }
        }
    }
}
