//! Reduced-precision products on the CPU backend (`Cpu::with_precision`).
//!
//! For every convolution and linear op (forward, backward-data, backward-weight) at
//! a few shapes (stride 1 and 2, padding, bias):
//!
//! 1. *The right operands are rounded*: the op in TF32 / BF16 equals the FP32 op
//!    applied to the two product operands rounded by hand with `Precision::round`,
//!    and to nothing else (the bias, the accumulated output, the result): relative
//!    difference `< 1e-6`. Rounding the bias or the output instead would differ by
//!    about `0.4 u` (`u` = 2^-11 TF32, 2^-8 BF16), far above that.
//! 2. *The rounding really happens and stays in its error model*: on fresh random
//!    inputs `‖out − ref‖ / ‖ref‖` against the FP32 result lies in
//!    `(0.05 u, p.tolerance() = 2 u)` (about `0.6 u` expected; the measured ratios
//!    are printed, `--nocapture`; `docs/derivations/precision.md`).
//! 3. Bias gradients are the FP32 ones, bit for bit (they sum dy; no product).
//!
//! FP32 with `with_precision(Fp32)` is bit-identical to the plain backend.

mod parity_common;

use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::*;
use parity_common::products::Product;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Uniform in [-1, 1), with a random sign: products and sums of random sign.
fn randv(r: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| r.random::<f32>() * 2.0 - 1.0).collect()
}

fn round(p: Precision, v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| p.round(x)).collect()
}

/// `‖a − b‖ / ‖b‖` in f64.
fn rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut d, mut n) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        d += (*x as f64 - *y as f64).powi(2);
        n += (*y as f64).powi(2);
    }
    assert!(n > 0.0, "reference is zero");
    (d / n).sqrt()
}

fn be(p: Precision) -> Cpu<f32> {
    Cpu::<f32>::new(2).unwrap().with_precision(p)
}

const REDUCED: [Precision; 2] = [Precision::Tf32, Precision::Bf16];
/// Agreement with the hand-rounded FP32 op.
const SAME: f64 = 1e-6;

/// Checks one op's measured error against the FP32 result: `(0.05 u, 2 u)`.
fn check_error(what: &str, p: Precision, out: &[f32], fp32: &[f32], log: &mut Vec<String>) {
    let e = rel(out, fp32);
    let u = p.unit_roundoff();
    log.push(format!("{what:<34} {p}: rel {e:.3e} = {:.3} u", e / u));
    assert!(
        e < p.tolerance(),
        "{what} {p}: relative error {e:.3e} >= tolerance {:.3e}",
        p.tolerance()
    );
    assert!(
        e > 0.05 * u,
        "{what} {p}: relative error {e:.3e} <= 0.05 u: the operands are not rounded"
    );
}

/// (n, c, h, w, o, k, stride, pad)
type ConvDims = (usize, usize, usize, usize, usize, usize, usize, usize);
const CONV_SHAPES: [ConvDims; 4] = [
    (2, 3, 8, 8, 4, 3, 1, 1),
    (2, 4, 9, 9, 5, 3, 2, 1),
    (3, 2, 7, 7, 3, 1, 1, 0),
    (2, 16, 12, 12, 16, 3, 1, 1),
];

/// Parameters `[W | b]` with a bias of magnitude up to 2 (rounding it would show).
fn conv_params(r: &mut ChaCha8Rng, wl: usize, o: usize) -> (Vec<f32>, Seg, Seg) {
    let mut params = randv(r, wl);
    params.extend(randv(r, o).iter().map(|v| 2.0 * v));
    let (ws, bs) = Seg::adjacent(0, wl, o);
    (params, ws, bs)
}

/// `params` with the weight segment rounded and the bias left as it is.
fn round_weight(p: Precision, params: &[f32], ws: Seg) -> Vec<f32> {
    let mut q = params.to_vec();
    for v in &mut q[ws.range()] {
        *v = p.round(*v);
    }
    q
}

/// Checks the three passes of `op` in TF32 and BF16 (inputs drawn from `seed`):
/// equal to the FP32 op on hand-rounded operands, within the error model of the
/// FP32 op on the operands as they are, and the bias gradient bit for bit FP32.
fn check_rounded_products(op: Product, seed: u64, log: &mut Vec<String>) {
    let fp32 = be(Precision::Fp32);
    let shape = format!("{op:?}");
    let name = op.name();
    for p in REDUCED {
        let rp = be(p);
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        let x = randv(&mut r, op.x_len());
        let (params, ws, bs) = conv_params(&mut r, op.w_len(), op.outputs());
        let dy = randv(&mut r, op.y_len());
        let y0 = randv(&mut r, op.y_len());
        let wr = round_weight(p, &params, ws);
        let same = |what: &str, got: &[f32], want: &[f32]| {
            let d = rel(got, want);
            assert!(
                d < SAME,
                "{name}_{what} {shape} {p}: {d:.3e} from hand-rounded"
            );
        };

        // forward, overwrite and accumulate (the accumulated y is not rounded)
        for acc in [false, true] {
            let mut y = y0.clone();
            op.fwd(&rp, &mut y, &x, &params, ws, Some(bs), acc).unwrap();
            let mut want = y0.clone();
            op.fwd(&fp32, &mut want, &round(p, &x), &wr, ws, Some(bs), acc)
                .unwrap();
            same(&format!("fwd acc={acc}"), &y, &want);
            if !acc {
                let mut exact = y0.clone();
                op.fwd(&fp32, &mut exact, &x, &params, ws, Some(bs), false)
                    .unwrap();
                check_error(&format!("{name}_fwd {shape}"), p, &y, &exact, log);
            }
        }

        // backward-data
        let mut dx = vec![0f32; x.len()];
        op.bwd_input(&rp, &mut dx, &dy, &params, ws, false).unwrap();
        let mut want = vec![0f32; x.len()];
        op.bwd_input(&fp32, &mut want, &round(p, &dy), &wr, ws, false)
            .unwrap();
        same("bwd_input", &dx, &want);
        let mut exact = vec![0f32; x.len()];
        op.bwd_input(&fp32, &mut exact, &dy, &params, ws, false)
            .unwrap();
        check_error(&format!("{name}_bwd_input {shape}"), p, &dx, &exact, log);

        // backward-weight; the bias gradient is the FP32 one, bit for bit
        let mut g = vec![0f32; params.len()];
        op.bwd_weight(&rp, &mut g, ws, Some(bs), &dy, &x).unwrap();
        let mut want = vec![0f32; params.len()];
        op.bwd_weight(&fp32, &mut want, ws, None, &round(p, &dy), &round(p, &x))
            .unwrap();
        same("bwd_weight", &g[ws.range()], &want[ws.range()]);
        let mut exact = vec![0f32; params.len()];
        op.bwd_weight(&fp32, &mut exact, ws, Some(bs), &dy, &x)
            .unwrap();
        check_error(
            &format!("{name}_bwd_weight {shape}"),
            p,
            &g[ws.range()],
            &exact[ws.range()],
            log,
        );
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&g[bs.range()]),
            bits(&exact[bs.range()]),
            "{shape} {p}: bias gradient differs from FP32"
        );
    }
}

#[test]
fn conv_products_round_exactly_their_operands() {
    let mut log = Vec::new();
    for (si, &(n, c, h, w, o, k, stride, pad)) in CONV_SHAPES.iter().enumerate() {
        let s = ConvShape::new(n, c, h, w, o, k, stride, pad).unwrap();
        check_rounded_products(Product::Conv(s), 100 + si as u64, &mut log);
    }
    eprintln!("{}", log.join("\n"));
}

/// (n, f, k)
const LINEAR_SHAPES: [(usize, usize, usize); 3] = [(4, 10, 3), (16, 64, 10), (32, 128, 32)];

#[test]
fn linear_products_round_exactly_their_operands() {
    let mut log = Vec::new();
    for (si, &(n, f, k)) in LINEAR_SHAPES.iter().enumerate() {
        let s = LinearShape {
            n: n as u32,
            f: f as u32,
            k: k as u32,
        };
        check_rounded_products(Product::Linear(s), 200 + si as u64, &mut log);
    }
    eprintln!("{}", log.join("\n"));
}

/// The error model of `docs/derivations/precision.md`,
/// measured: the relative error of one rounded operand (RMS over uniform and
/// log-uniform values), of a product of two, and of a long random-sign sum of
/// products, each within 15 % of the model (0.42 u, 0.60 u, 0.60 u).
#[test]
fn error_model_matches_the_derivation() {
    let mut r = ChaCha8Rng::seed_from_u64(5);
    let n = 200_000;
    for p in REDUCED {
        let u = p.unit_roundoff();
        // log-uniform magnitudes over many binades, random signs
        let draw = |r: &mut ChaCha8Rng| -> f64 {
            let m = 2f64.powf(r.random_range(-20.0..20.0));
            if r.random::<bool>() {
                m
            } else {
                -m
            }
        };
        let (mut op, mut prod) = (0f64, 0f64);
        for _ in 0..n {
            let (a, b) = (draw(&mut r) as f32, draw(&mut r) as f32);
            let (ra, rb) = (p.round(a) as f64, p.round(b) as f64);
            op += ((ra - a as f64) / a as f64).powi(2);
            let exact = a as f64 * b as f64;
            // the product of two rounded operands is exact in f32 (<= 22 bits)
            assert_eq!((p.round(a) * p.round(b)) as f64, ra * rb);
            prod += ((ra * rb - exact) / exact).powi(2);
        }
        let op = (op / n as f64).sqrt() / u;
        let prod = (prod / n as f64).sqrt() / u;
        // sums of 256 random-sign products, relative error of the vector of sums
        let (mut d, mut nn) = (0f64, 0f64);
        for _ in 0..2000 {
            let (mut s, mut sr) = (0f64, 0f64);
            for _ in 0..256 {
                let a = r.random::<f32>() * 2.0 - 1.0;
                let b = r.random::<f32>() * 2.0 - 1.0;
                s += a as f64 * b as f64;
                sr += p.round(a) as f64 * p.round(b) as f64;
            }
            d += (sr - s).powi(2);
            nn += s * s;
        }
        let sum = (d / nn).sqrt() / u;
        eprintln!(
            "{p}: per operand RMS {op:.3} u, product {prod:.3} u, sum of 256 products {sum:.3} u (u = {u:.3e})"
        );
        for (what, got, model) in [
            ("operand", op, 0.4245),
            ("product", prod, 0.6004),
            ("sum", sum, 0.5345),
        ] {
            assert!(
                (got / model - 1.0).abs() < 0.15,
                "{p} {what}: measured {got:.3} u, model {model} u"
            );
        }
    }
}

#[test]
fn fp32_setting_is_the_plain_backend() {
    let plain = Cpu::<f32>::new(2).unwrap();
    let fp32 = be(Precision::Fp32);
    assert_eq!(plain.precision(), Precision::Fp32);
    assert_eq!(fp32.name(), plain.name());
    assert!(be(Precision::Bf16).name().contains("bf16"));
    let mut r = ChaCha8Rng::seed_from_u64(3);
    let s = ConvShape::new(2, 3, 8, 8, 4, 3, 2, 1).unwrap();
    let x = randv(&mut r, 2 * 3 * 64);
    let (params, ws, bs) = conv_params(&mut r, 4 * 3 * 9, 4);
    let ylen = 2 * 4 * (s.oh * s.ow) as usize;
    let (mut a, mut b) = (vec![0f32; ylen], vec![0f32; ylen]);
    plain
        .conv2d_fwd(&mut a, &x, &params, ws, Some(bs), &s, false)
        .unwrap();
    fp32.conv2d_fwd(&mut b, &x, &params, ws, Some(bs), &s, false)
        .unwrap();
    assert_eq!(a, b);
}
