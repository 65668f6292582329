//! The [`Backend`] trait: the kernels the ConvNet, the augmentations, the gradient
//! matching and the optimisers need, over device buffers. Everything above it
//! (model, engine, condensation, evaluation) is written once, generic over it.
//!
//! Conventions for every op:
//! - tensors are NCHW, contiguous, element type [`Backend::E`];
//! - outputs first, then inputs, then shapes/parameters; gradients carry a `d`
//!   prefix, forward-mode tangents a `dot` suffix (`xdot`, `ydot`);
//! - parameter tensors live in one flat buffer and are addressed by [`Seg`]; a
//!   tangent / gradient buffer has the same layout as the parameter buffer;
//! - an output is overwritten unless the op takes `acc: bool`, in which case
//!   `acc = true` adds to it;
//! - shapes are validated by the caller (model layer); backends may assume
//!   buffer lengths match the shape and return [`crate::Error::Shape`] when they
//!   cheaply can tell otherwise.
//!
//! The second-order ops (`*_jvp`, `*_dual_bwd`) implement the forward-mode
//! tangent and the reverse pass of the dual (primal, tangent) computation of
//! `docs/derivations.md` §"second-order pass".
//!
//! The convolution and linear-layer products run in FP32 unless a backend is built
//! with another [`Precision`] (`Cpu::with_precision`, `Gpu::with_precision`): TF32
//! or BF16 operands, FP32 accumulation; [`Backend::precision`] tells which.

pub mod cpu;
pub mod cuda;
pub mod emu;
pub mod gpu;
pub mod launch;
mod precision;
mod shapes;

pub use precision::Precision;
pub use shapes::*;

use crate::error::{Error, Result};

/// Element type of a backend: `f32` (every backend) or `f64` (CPU, for gradient
/// checks).
pub trait Scalar:
    Copy
    + Send
    + Sync
    + 'static
    + Default
    + std::fmt::Debug
    + std::fmt::Display
    + PartialOrd
    + bytemuck::Pod
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::iter::Sum
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Conversion from f64 (rounding for f32).
    fn from_f64(v: f64) -> Self;
    /// Conversion to f64.
    fn to_f64(self) -> f64;
    /// Conversion from f32.
    fn from_f32(v: f32) -> Self;
    /// Conversion to f32 (rounding for f64).
    fn to_f32(self) -> f32;
    /// e^x.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Larger of two values.
    fn max(self, other: Self) -> Self;
    /// True unless NaN or infinite.
    fn is_finite(self) -> bool;
}

macro_rules! impl_scalar {
    ($t:ty) => {
        impl Scalar for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn from_f32(v: f32) -> Self {
                v as $t
            }
            fn to_f32(self) -> f32 {
                self as f32
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
        }
    };
}
impl_scalar!(f32);
impl_scalar!(f64);

/// Result of the softmax cross-entropy op.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CeOut {
    /// Mean cross-entropy over the batch.
    pub loss: f64,
    /// Number of samples whose arg-max logit equals the label.
    pub correct: usize,
}

/// The kernels, at the granularity the algorithm needs. See the module docs for
/// the conventions; each op's maths is in `docs/derivations.md`.
pub trait Backend: Send + Sync {
    /// Element type.
    type E: Scalar;
    /// A device buffer of `E`.
    type Buf: Send;
    /// A device buffer of class labels.
    type Labels: Send;

    /// A captured launch sequence (CUDA graph, emulator recording); [`NoGraph`] for
    /// backends without graphs.
    type Graph: Send;

    /// Short name (`cpu`, `cuda`, `emu`) with details (threads, device).
    fn name(&self) -> String;

    /// Arithmetic precision of the convolution and linear-layer products
    /// ([`Precision`]; set when the backend is built, e.g. `Cpu::with_precision`).
    fn precision(&self) -> Precision {
        Precision::Fp32
    }
    /// Identity of a buffer: the address of its first element (with
    /// [`Backend::buf_len`], what a captured graph is bound to).
    fn buf_addr(&self, buf: &Self::Buf) -> u64;

    // ---- graphs (capture a launch sequence once, replay it) -----------------
    /// Whether [`Backend::begin_capture`] can work at all (default: no).
    fn graphs_supported(&self) -> bool {
        false
    }
    /// Whether the engine replays captured sequences by default (`cuda`).
    fn graphs_by_default(&self) -> bool {
        false
    }
    /// Starts capturing: the ops that follow are recorded, not run, until
    /// [`Backend::end_capture`]. Ops that allocate, upload or download fail while
    /// capturing. One capture at a time; no other thread may use the backend
    /// meanwhile. Default: not supported.
    fn begin_capture(&self) -> Result<()> {
        Err(no_graphs(&self.name()))
    }
    /// Ends the capture; the graph replays exactly the captured launches, with the
    /// buffer addresses and scalar arguments they had.
    fn end_capture(&self) -> Result<Self::Graph> {
        Err(no_graphs(&self.name()))
    }
    /// Runs a captured graph again.
    ///
    /// # Safety
    /// Every buffer the captured ops used must still be alive, at the same address
    /// ([`Backend::buf_addr`]) and with the same length.
    unsafe fn replay(&self, _graph: &Self::Graph) -> Result<()> {
        Err(no_graphs(&self.name()))
    }

    // ---- memory -------------------------------------------------------------
    /// A zero-filled buffer of `len` elements; an allocation that cannot be
    /// satisfied is an error naming the size (and, on host backends, the caller).
    #[track_caller]
    fn alloc(&self, len: usize) -> Result<Self::Buf>;
    /// A buffer holding a copy of `host`.
    fn upload(&self, host: &[Self::E]) -> Result<Self::Buf>;
    /// The buffer's contents on the host.
    fn download(&self, buf: &Self::Buf) -> Result<Vec<Self::E>>;
    /// Number of elements of a buffer.
    fn buf_len(&self, buf: &Self::Buf) -> usize;
    /// `dst = host` into an existing buffer of the same length (no allocation:
    /// per-step host-built batches reuse one buffer).
    fn write(&self, dst: &mut Self::Buf, host: &[Self::E]) -> Result<()>;
    /// Labels on the device.
    fn upload_labels(&self, labels: &[u32]) -> Result<Self::Labels>;
    /// `dst[dst_off..dst_off+len] = src[src_off..src_off+len]`.
    fn copy_range(
        &self,
        dst: &mut Self::Buf,
        dst_off: usize,
        src: &Self::Buf,
        src_off: usize,
        len: usize,
    ) -> Result<()>;
    /// Every element set to `value`.
    fn fill(&self, buf: &mut Self::Buf, value: Self::E) -> Result<()>;
    /// `y += a * x` (same lengths).
    fn axpy(&self, y: &mut Self::Buf, a: Self::E, x: &Self::Buf) -> Result<()>;
    /// `y = a + b` element-wise (residual connections); `y` overwritten. All three
    /// have the same length, else [`Error::Shape`].
    fn add(&self, y: &mut Self::Buf, a: &Self::Buf, b: &Self::Buf) -> Result<()>;
    /// `dst[i] = src[rows[i]]` for rows of `row_len` elements (real-batch sampling).
    fn gather_rows(
        &self,
        dst: &mut Self::Buf,
        src: &Self::Buf,
        rows: &[u32],
        row_len: usize,
    ) -> Result<()>;
    /// Blocks until all queued work is done (no-op on the CPU).
    fn synchronize(&self) -> Result<()>;

    // ---- convolution -------------------------------------------------------
    /// `y (=|+=) conv(x, W) + b`; W at `w` in `params`, optional bias at `b`.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_fwd(
        &self,
        y: &mut Self::Buf,
        x: &Self::Buf,
        params: &Self::Buf,
        w: Seg,
        b: Option<Seg>,
        s: &ConvShape,
        acc: bool,
    ) -> Result<()>;
    /// `dx (=|+=) conv_transpose(dy, W)`.
    fn conv2d_bwd_input(
        &self,
        dx: &mut Self::Buf,
        dy: &Self::Buf,
        params: &Self::Buf,
        w: Seg,
        s: &ConvShape,
        acc: bool,
    ) -> Result<()>;
    /// `dW = sum_n dy_n (*) x_n` at `dw` and, if given, `db = sum_{n,oh,ow} dy` at
    /// `db`, both in `grads` (overwritten).
    fn conv2d_bwd_weight(
        &self,
        grads: &mut Self::Buf,
        dw: Seg,
        db: Option<Seg>,
        dy: &Self::Buf,
        x: &Self::Buf,
        s: &ConvShape,
    ) -> Result<()>;

    // ---- fully connected ---------------------------------------------------
    /// `y (=|+=) x W^T + b`.
    #[allow(clippy::too_many_arguments)]
    fn linear_fwd(
        &self,
        y: &mut Self::Buf,
        x: &Self::Buf,
        params: &Self::Buf,
        w: Seg,
        b: Option<Seg>,
        s: &LinearShape,
        acc: bool,
    ) -> Result<()>;
    /// `dx (=|+=) dy W`.
    fn linear_bwd_input(
        &self,
        dx: &mut Self::Buf,
        dy: &Self::Buf,
        params: &Self::Buf,
        w: Seg,
        s: &LinearShape,
        acc: bool,
    ) -> Result<()>;
    /// `dW = dy^T x`, `db = sum_n dy` (overwritten, in `grads`).
    fn linear_bwd_weight(
        &self,
        grads: &mut Self::Buf,
        dw: Seg,
        db: Option<Seg>,
        dy: &Self::Buf,
        x: &Self::Buf,
        s: &LinearShape,
    ) -> Result<()>;

    // ---- activations -------------------------------------------------------
    /// `y = act(x)`.
    fn act_fwd(&self, y: &mut Self::Buf, x: &Self::Buf, act: Act) -> Result<()>;
    /// `dx = act'(x) * dy` (also the forward tangent: `ydot = act'(x) * xdot`).
    fn act_bwd(&self, dx: &mut Self::Buf, dy: &Self::Buf, x: &Self::Buf, act: Act) -> Result<()>;
    /// Reverse of the dual activation: `dxdot = act'(x) dydot`,
    /// `dx = act'(x) dy + act''(x) xdot dydot`.
    #[allow(clippy::too_many_arguments)]
    fn act_dual_bwd(
        &self,
        dx: &mut Self::Buf,
        dxdot: &mut Self::Buf,
        dy: &Self::Buf,
        dydot: &Self::Buf,
        x: &Self::Buf,
        xdot: &Self::Buf,
        act: Act,
    ) -> Result<()>;

    // ---- pooling -----------------------------------------------------------
    /// `y = pool(x)`: k x k windows with stride `s.stride` (see [`PoolShape`]);
    /// errors on a shape [`PoolShape::new`] would reject.
    fn pool_fwd(
        &self,
        y: &mut Self::Buf,
        x: &Self::Buf,
        s: &PoolShape,
        kind: PoolKind,
    ) -> Result<()>;
    /// `dx = pool^T(dy)`, overwritten: each element sums the contributions of every
    /// window covering it (overlapping windows when stride < k; max: a window sends
    /// its `dy` to its arg-max of `x`); elements no window covers get 0.
    fn pool_bwd(
        &self,
        dx: &mut Self::Buf,
        dy: &Self::Buf,
        x: &Self::Buf,
        s: &PoolShape,
        kind: PoolKind,
    ) -> Result<()>;
    /// Forward tangent: `ydot = pool'(x) xdot` (max: `xdot` at the arg-max of `x`).
    fn pool_jvp(
        &self,
        ydot: &mut Self::Buf,
        x: &Self::Buf,
        xdot: &Self::Buf,
        s: &PoolShape,
        kind: PoolKind,
    ) -> Result<()>;

    // ---- group / instance / layer norm ------------------------------------
    /// `y = gamma * (x - mu) * rstd + beta` per (sample, group); writes
    /// `stats = [mu (N*G), rstd (N*G)]`.
    #[allow(clippy::too_many_arguments)]
    fn norm_fwd(
        &self,
        y: &mut Self::Buf,
        stats: &mut Self::Buf,
        x: &Self::Buf,
        params: &Self::Buf,
        gamma: Seg,
        beta: Seg,
        s: &NormShape,
    ) -> Result<()>;
    /// `dx = J^T (gamma * dy)`; if `dparams` is given, `dgamma`, `dbeta` there.
    #[allow(clippy::too_many_arguments)]
    fn norm_bwd(
        &self,
        dx: &mut Self::Buf,
        dparams: Option<(&mut Self::Buf, Seg, Seg)>,
        dy: &Self::Buf,
        x: &Self::Buf,
        stats: &Self::Buf,
        params: &Self::Buf,
        gamma: Seg,
        s: &NormShape,
    ) -> Result<()>;
    /// Forward tangent along parameter direction `t`:
    /// `ydot = gamma * J xdot + t_gamma * xhat + t_beta`.
    #[allow(clippy::too_many_arguments)]
    fn norm_jvp(
        &self,
        ydot: &mut Self::Buf,
        x: &Self::Buf,
        xdot: &Self::Buf,
        stats: &Self::Buf,
        params: &Self::Buf,
        gamma: Seg,
        tangent: &Self::Buf,
        t_gamma: Seg,
        t_beta: Seg,
        s: &NormShape,
    ) -> Result<()>;
    /// Reverse of the dual norm: `dxdot = J^T(gamma dydot)`,
    /// `dx = J^T(gamma dy) + J^T(t_gamma dydot) + (d/dx <gamma dydot, J(x) xdot>)`.
    #[allow(clippy::too_many_arguments)]
    fn norm_dual_bwd(
        &self,
        dx: &mut Self::Buf,
        dxdot: &mut Self::Buf,
        dy: &Self::Buf,
        dydot: &Self::Buf,
        x: &Self::Buf,
        xdot: &Self::Buf,
        stats: &Self::Buf,
        params: &Self::Buf,
        gamma: Seg,
        tangent: &Self::Buf,
        t_gamma: Seg,
        s: &NormShape,
    ) -> Result<()>;

    // ---- fused block tail ----------------------------------------------------
    /// A ConvNet block's tail in one op: `s = norm(z)` (group-norm family, with
    /// `stats`, exactly as [`Backend::norm_fwd`]), `a = act(s)` (`s = z` without
    /// `norm`), `p = pool(a)` (when `pool` is given). `norm_out = (s, stats)` and
    /// `norm`, `p` and `pool` go together. Writes the same buffers and values as the
    /// three separate ops, so every backward pass reads them unchanged. The default
    /// runs those ops ([`norm_act_pool_composed`]); the device backends override it
    /// with one kernel (`kernels/fused.cu`) where a group fits in shared memory.
    #[allow(clippy::too_many_arguments)]
    fn norm_act_pool_fwd(
        &self,
        norm_out: Option<(&mut Self::Buf, &mut Self::Buf)>,
        a: &mut Self::Buf,
        p: Option<&mut Self::Buf>,
        z: &Self::Buf,
        params: &Self::Buf,
        norm: Option<(Seg, Seg, &NormShape)>,
        act: Act,
        pool: Option<(&PoolShape, PoolKind)>,
    ) -> Result<()> {
        norm_act_pool_composed(self, norm_out, a, p, z, params, norm, act, pool)
    }

    // ---- batch norm (per channel over N, H, W) -----------------------------
    /// Train mode: batch statistics (biased variance) into `stats = [mu (C), rstd (C)]`;
    /// `running = [mean (C), var (C)]` moves `momentum` towards the batch mean and
    /// the unbiased batch variance.
    #[allow(clippy::too_many_arguments)]
    fn bn_fwd_train(
        &self,
        y: &mut Self::Buf,
        stats: &mut Self::Buf,
        running: &mut Self::Buf,
        x: &Self::Buf,
        params: &Self::Buf,
        gamma: Seg,
        beta: Seg,
        s: &NormShape,
        momentum: f32,
    ) -> Result<()>;
    /// Train-mode backward (through the batch statistics).
    #[allow(clippy::too_many_arguments)]
    fn bn_bwd_train(
        &self,
        dx: &mut Self::Buf,
        dparams: Option<(&mut Self::Buf, Seg, Seg)>,
        dy: &Self::Buf,
        x: &Self::Buf,
        stats: &Self::Buf,
        params: &Self::Buf,
        gamma: Seg,
        s: &NormShape,
    ) -> Result<()>;
    /// Eval mode: `y = gamma (x - mean) / sqrt(var + eps) + beta` with `running`.
    #[allow(clippy::too_many_arguments)]
    fn bn_fwd_eval(
        &self,
        y: &mut Self::Buf,
        x: &Self::Buf,
        running: &Self::Buf,
        params: &Self::Buf,
        gamma: Seg,
        beta: Seg,
        s: &NormShape,
    ) -> Result<()>;
    /// Eval-mode backward: `dx = gamma rstd dy`; parameter gradients if asked.
    #[allow(clippy::too_many_arguments)]
    fn bn_bwd_eval(
        &self,
        dx: &mut Self::Buf,
        dparams: Option<(&mut Self::Buf, Seg, Seg)>,
        dy: &Self::Buf,
        x: &Self::Buf,
        running: &Self::Buf,
        params: &Self::Buf,
        gamma: Seg,
        s: &NormShape,
    ) -> Result<()>;
    /// Eval-mode tangent: `ydot = gamma rstd xdot + t_gamma (x - mean) rstd + t_beta`.
    #[allow(clippy::too_many_arguments)]
    fn bn_eval_jvp(
        &self,
        ydot: &mut Self::Buf,
        x: &Self::Buf,
        xdot: &Self::Buf,
        running: &Self::Buf,
        params: &Self::Buf,
        gamma: Seg,
        tangent: &Self::Buf,
        t_gamma: Seg,
        t_beta: Seg,
        s: &NormShape,
    ) -> Result<()>;
    /// Reverse of the eval-mode dual: `dxdot = gamma rstd dydot`,
    /// `dx = gamma rstd dy + t_gamma rstd dydot`.
    #[allow(clippy::too_many_arguments)]
    fn bn_eval_dual_bwd(
        &self,
        dx: &mut Self::Buf,
        dxdot: &mut Self::Buf,
        dy: &Self::Buf,
        dydot: &Self::Buf,
        running: &Self::Buf,
        params: &Self::Buf,
        gamma: Seg,
        tangent: &Self::Buf,
        t_gamma: Seg,
        s: &NormShape,
    ) -> Result<()>;

    // ---- loss --------------------------------------------------------------
    /// Mean softmax cross-entropy of `logits [N, K]`; `dlogits = (softmax - onehot)/N`.
    fn ce_fwd_bwd(
        &self,
        dlogits: &mut Self::Buf,
        logits: &Self::Buf,
        labels: &Self::Labels,
        s: &LinearShape,
    ) -> Result<CeOut>;
    /// Second order: `h = (1/N) sum_n <p_n - e_n, ldot_n>` is returned;
    /// `dldot = (p - e)/N`, `dlogits = (p * ldot - p <p, ldot>)/N`.
    fn ce_dual(
        &self,
        dlogits: &mut Self::Buf,
        dldot: &mut Self::Buf,
        logits: &Self::Buf,
        ldot: &Self::Buf,
        labels: &Self::Labels,
        s: &LinearShape,
    ) -> Result<f64>;

    // ---- gradient matching, optimisers -------------------------------------
    /// Matching distance `D(g_syn, g_real)` over `tensors` (returned) and its
    /// gradient w.r.t. `g_syn` into `dsyn` (same layout; zero where ignored).
    fn match_distance(
        &self,
        dsyn: &mut Self::Buf,
        g_syn: &Self::Buf,
        g_real: &Self::Buf,
        tensors: &[MatchTensor],
        metric: Metric,
    ) -> Result<f64>;
    /// One SGD step over a whole flat buffer (see [`SgdParams`]).
    fn sgd_step(
        &self,
        p: &mut Self::Buf,
        g: &Self::Buf,
        momentum_buf: &mut Self::Buf,
        hp: SgdParams,
    ) -> Result<()>;

    // ---- augmentation ------------------------------------------------------
    /// `y = op(x)` with the op's per-image parameters.
    fn aug_fwd(&self, y: &mut Self::Buf, x: &Self::Buf, op: &AugOp, s: &ImgShape) -> Result<()>;
    /// `dx = op^T(dy)` (the adjoint of the linear part; brightness passes through).
    fn aug_bwd(&self, dx: &mut Self::Buf, dy: &Self::Buf, op: &AugOp, s: &ImgShape) -> Result<()>;
}

/// A zero-filled host buffer of `len` elements for backend `backend`, or an error
/// naming the size and the code that asked for it (`caller`) when the memory is not
/// there: the process does not abort on an impossible allocation.
pub fn host_zeroed<T: Clone>(
    backend: &str,
    len: usize,
    zero: T,
    caller: &std::panic::Location<'_>,
) -> Result<Vec<T>> {
    let mut v = Vec::new();
    if let Err(e) = v.try_reserve_exact(len) {
        let bytes = (len as u128) * std::mem::size_of::<T>() as u128;
        return Err(Error::Backend {
            backend: backend.into(),
            msg: format!(
                "cannot allocate a buffer of {len} values ({bytes} bytes) asked for at \
                 {}:{}: {e}",
                caller.file(),
                caller.line()
            ),
        });
    }
    v.resize(len, zero);
    Ok(v)
}

/// [`Backend::norm_act_pool_fwd`] as `norm_fwd`, `act_fwd`, `pool_fwd` (the trait
/// default, and the device backends' path for shapes their fused kernel does not take).
#[allow(clippy::too_many_arguments)]
pub fn norm_act_pool_composed<B: Backend + ?Sized>(
    be: &B,
    norm_out: Option<(&mut B::Buf, &mut B::Buf)>,
    a: &mut B::Buf,
    p: Option<&mut B::Buf>,
    z: &B::Buf,
    params: &B::Buf,
    norm: Option<(Seg, Seg, &NormShape)>,
    act: Act,
    pool: Option<(&PoolShape, PoolKind)>,
) -> Result<()> {
    let pre: &B::Buf = match (norm_out, norm) {
        (Some((s, stats)), Some((gamma, beta, ns))) => {
            be.norm_fwd(s, stats, z, params, gamma, beta, ns)?;
            s
        }
        (None, None) => z,
        _ => {
            return Err(fused_pairing(
                "the norm outputs (s, stats) and the norm parameters",
            ))
        }
    };
    be.act_fwd(a, pre, act)?;
    match (p, pool) {
        (Some(p), Some((ps, kind))) => be.pool_fwd(p, a, ps, kind),
        (None, None) => Ok(()),
        _ => Err(fused_pairing("the pool output and the pool shape")),
    }
}

fn fused_pairing(what: &str) -> crate::error::Error {
    crate::error::Error::Shape(format!("norm_act_pool_fwd: {what} must be given together"))
}

/// The graph type of backends without graphs (no value exists).
#[derive(Debug)]
pub enum NoGraph {}

fn no_graphs(name: &str) -> crate::error::Error {
    crate::error::Error::Unsupported(format!("{name}: no graph capture"))
}
