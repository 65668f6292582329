//! The GEMM-shaped ops (convolution and linear, every pass) run on a backend under
//! test and on a CPU reference, case by case: shared by the FP32 parity tests
//! (emu_parity) and the reduced-precision ones (emu_parity_precision).

use super::*;
use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::*;
use dsa_condense::Result;
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
    let (w, b) = Seg::adjacent(off, w_len, b_len);
    (p, w, b)
}

/// One GEMM-shaped op family at one shape: a convolution or a linear layer, with
/// its three passes dispatched to the backend's `conv2d_*` or `linear_*` ops.
#[derive(Clone, Copy, Debug)]
pub enum Product {
    /// `conv2d_fwd`, `conv2d_bwd_input`, `conv2d_bwd_weight`.
    Conv(ConvShape),
    /// `linear_fwd`, `linear_bwd_input`, `linear_bwd_weight`.
    Linear(LinearShape),
}

impl Product {
    /// The ops' name prefix (`conv2d`, `linear`).
    pub fn name(&self) -> &'static str {
        match self {
            Product::Conv(_) => "conv2d",
            Product::Linear(_) => "linear",
        }
    }
    /// Input length.
    pub fn x_len(&self) -> usize {
        match self {
            Product::Conv(s) => s.x_len(),
            Product::Linear(s) => (s.n * s.f) as usize,
        }
    }
    /// Output length.
    pub fn y_len(&self) -> usize {
        match self {
            Product::Conv(s) => s.y_len(),
            Product::Linear(s) => (s.n * s.k) as usize,
        }
    }
    /// Weight length (the bias has [`Product::outputs`] entries).
    pub fn w_len(&self) -> usize {
        match self {
            Product::Conv(s) => s.w_len(),
            Product::Linear(s) => (s.k * s.f) as usize,
        }
    }
    /// Output channels or features: the bias length.
    pub fn outputs(&self) -> usize {
        match self {
            Product::Conv(s) => s.o as usize,
            Product::Linear(s) => s.k as usize,
        }
    }
    /// The forward pass.
    #[allow(clippy::too_many_arguments)]
    pub fn fwd<B: Backend>(
        &self,
        b: &B,
        y: &mut B::Buf,
        x: &B::Buf,
        params: &B::Buf,
        w: Seg,
        bias: Option<Seg>,
        acc: bool,
    ) -> Result<()> {
        match self {
            Product::Conv(s) => b.conv2d_fwd(y, x, params, w, bias, s, acc),
            Product::Linear(s) => b.linear_fwd(y, x, params, w, bias, s, acc),
        }
    }
    /// The backward-data pass.
    pub fn bwd_input<B: Backend>(
        &self,
        b: &B,
        dx: &mut B::Buf,
        dy: &B::Buf,
        params: &B::Buf,
        w: Seg,
        acc: bool,
    ) -> Result<()> {
        match self {
            Product::Conv(s) => b.conv2d_bwd_input(dx, dy, params, w, s, acc),
            Product::Linear(s) => b.linear_bwd_input(dx, dy, params, w, s, acc),
        }
    }
    /// The backward-weight pass (and the bias gradient when `db` is given).
    pub fn bwd_weight<B: Backend>(
        &self,
        b: &B,
        grads: &mut B::Buf,
        dw: Seg,
        db: Option<Seg>,
        dy: &B::Buf,
        x: &B::Buf,
    ) -> Result<()> {
        match self {
            Product::Conv(s) => b.conv2d_bwd_weight(grads, dw, db, dy, x, s),
            Product::Linear(s) => b.linear_bwd_weight(grads, dw, db, dy, x, s),
        }
    }
}

/// Runs the three passes of `op` on `b` and on `reference` (fresh random inputs
/// from `seed`, the weight at parameter offset `w_off`, NaN-poisoned outputs, `acc`
/// both ways, with and without bias, `bias_when_acc` choosing which `acc` gets the
/// bias in the forward pass) and hands each pair of outputs to
/// `check(what, accumulated, got, want)` (`accumulated`: the output started from
/// random values, `acc = true`).
fn product_case<B: Backend<E = f32>>(
    b: &B,
    reference: &Cpu<f32>,
    op: Product,
    seed: u64,
    w_off: usize,
    bias_when_acc: bool,
    check: &mut Check,
) {
    let mut r = rng(seed);
    let (params, ws, bs) = param_buf(&mut r, w_off, op.w_len(), op.outputs());
    let x = rand_vec(&mut r, op.x_len(), -1.0, 1.0);
    let dy = rand_vec(&mut r, op.y_len(), -1.0, 1.0);
    let (pb, xb, dyb) = (
        b.upload(&params).unwrap(),
        b.upload(&x).unwrap(),
        b.upload(&dy).unwrap(),
    );
    let (name, what) = (op.name(), format!("{op:?}"));
    // the output's starting value: random when accumulated into, else NaN
    let start = |r: &mut ChaCha8Rng, acc: bool, len: usize| {
        if acc {
            rand_vec(r, len, -1.0, 1.0)
        } else {
            nan_vec(len)
        }
    };
    for acc in [false, true] {
        let bias = (acc == bias_when_acc).then_some(bs);
        let y0 = start(&mut r, acc, op.y_len());
        let mut y = b.upload(&y0).unwrap();
        op.fwd(b, &mut y, &xb, &pb, ws, bias, acc).unwrap();
        let mut yc = y0.clone();
        op.fwd(reference, &mut yc, &x, &params, ws, bias, acc)
            .unwrap();
        check(
            &format!("{name}_fwd acc={acc} bias={} {what}", bias.is_some()),
            acc,
            &b.download(&y).unwrap(),
            &yc,
        );

        let dx0 = start(&mut r, acc, op.x_len());
        let mut dx = b.upload(&dx0).unwrap();
        op.bwd_input(b, &mut dx, &dyb, &pb, ws, acc).unwrap();
        let mut dxc = dx0.clone();
        op.bwd_input(reference, &mut dxc, &dy, &params, ws, acc)
            .unwrap();
        check(
            &format!("{name}_bwd_input acc={acc} {what}"),
            acc,
            &b.download(&dx).unwrap(),
            &dxc,
        );
    }
    for with_bias in [false, true] {
        let db = with_bias.then_some(bs);
        let mut g = b.upload(&nan_vec(params.len())).unwrap();
        op.bwd_weight(b, &mut g, ws, db, &dyb, &xb).unwrap();
        let mut gc = nan_vec(params.len());
        op.bwd_weight(reference, &mut gc, ws, db, &dy, &x).unwrap();
        let g = b.download(&g).unwrap();
        check(
            &format!("{name}_bwd_weight dw {what}"),
            false,
            &g[ws.range()],
            &gc[ws.range()],
        );
        if with_bias {
            check(
                &format!("{name}_bwd_weight db {what}"),
                false,
                &g[bs.range()],
                &gc[bs.range()],
            );
        }
    }
}

/// Runs conv2d fwd / bwd_input / bwd_weight of `b` and of `reference` on every
/// [`CONV_SHAPES`] case (see [`product_case`]).
pub fn conv_cases<B: Backend<E = f32>>(b: &B, reference: &Cpu<f32>, check: &mut Check) {
    for (i, &(n, c, h, w, o, k, st, pad)) in CONV_SHAPES.iter().enumerate() {
        let s = ConvShape::new(n, c, h, w, o, k, st, pad).unwrap();
        let w_off = if i % 2 == 0 { 4 } else { 1 };
        product_case(
            b,
            reference,
            Product::Conv(s),
            80 + i as u64,
            w_off,
            i % 2 == 0,
            check,
        );
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
        let w_off = if i % 2 == 0 { 0 } else { 3 };
        product_case(
            b,
            reference,
            Product::Linear(s),
            90 + i as u64,
            w_off,
            i % 2 == 0,
            check,
        );
    }
}
