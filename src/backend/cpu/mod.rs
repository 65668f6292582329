//! The `cpu` backend: pure Rust, multi-threaded (rayon), generic over the element
//! type (`f32` for use, `f64` for gradient checks). It is the reference every other
//! backend is tested against, and the fallback for machines without a GPU.
//!
//! One file per family of ops; this file only owns the thread pool and forwards
//! each trait method to the family's free function over plain slices.
//! Results are deterministic whatever the thread count: work is split over
//! independent outputs, and every reduction runs in a fixed order.

mod act;
mod augment;
mod conv;
pub mod gemm;
mod linear;
mod loss;
mod matching;
mod memory;
mod norm;
mod pool;
mod scratch;
mod sgd;

use super::*;
use crate::error::{Error, Result};
use std::marker::PhantomData;
use std::sync::Mutex;

/// The CPU backend over element type `T`.
pub struct Cpu<T: Scalar> {
    pool: rayon::ThreadPool,
    threads: usize,
    /// Reusable partial-sum memory of the conv backward-weight pass (kept between
    /// calls so the hot path does not allocate).
    conv_partials: Mutex<Vec<T>>,
    /// Operand rounding of the convolution and linear products.
    precision: Precision,
    _t: PhantomData<T>,
}

impl<T: Scalar> Cpu<T> {
    /// A backend with `threads` worker threads (0 = one per core).
    pub fn new(threads: usize) -> Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::Backend {
                backend: "cpu".into(),
                msg: format!("cannot start {threads} threads: {e}"),
            })?;
        Ok(Self {
            pool,
            threads,
            conv_partials: Mutex::new(Vec::new()),
            precision: Precision::Fp32,
            _t: PhantomData,
        })
    }
    /// The same backend with the convolution and linear-layer operands rounded to
    /// `precision` before each product (FP32 accumulation; see [`Precision`]).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }
    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }
    /// A weight gradient in this backend's precision: `product(dy, x, db)` computes
    /// dW (and db when given) from the operands; in TF32 / BF16 it gets the rounded
    /// operands and no db, and `bias(db, dy)` sums the FP32 dy instead (a bias
    /// gradient is a sum, not a product, and stays FP32 as on the GPU).
    fn weight_grad(
        &self,
        dy: &[T],
        x: &[T],
        db: Option<&mut [T]>,
        product: impl FnOnce(&[T], &[T], Option<&mut [T]>) -> Result<()>,
        bias: impl FnOnce(&mut [T], &[T]) -> Result<()>,
    ) -> Result<()> {
        let p = self.precision;
        if p == Precision::Fp32 {
            return product(dy, x, db);
        }
        product(&p.round_slice(dy), &p.round_slice(x), None)?;
        match db {
            Some(db) => bias(db, dy),
            None => Ok(()),
        }
    }
    /// The rayon pool the ops run on.
    pub(crate) fn pool(&self) -> &rayon::ThreadPool {
        &self.pool
    }
}

/// The element range of `seg` (no overflow, unlike `off + len` in u32).
fn range(seg: Seg) -> std::ops::Range<usize> {
    seg.off as usize..seg.off as usize + seg.len as usize
}

/// The elements of parameter segment `seg` in `buf`, or a shape error naming `what`.
fn seg<'a, T>(buf: &'a [T], seg: Seg, what: &str) -> Result<&'a [T]> {
    buf.get(range(seg)).ok_or_else(|| {
        Error::Shape(format!(
            "cpu {what}: segment {}..{} outside a buffer of {} elements",
            seg.off,
            seg.off as u64 + seg.len as u64,
            buf.len()
        ))
    })
}

fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::Shape(format!(
            "cpu {what}: buffer has {got} elements, shape needs {want}"
        )));
    }
    Ok(())
}

impl<T: Scalar> Backend for Cpu<T> {
    type E = T;
    type Buf = Vec<T>;
    type Labels = Vec<u32>;
    type Graph = super::NoGraph;

    fn buf_addr(&self, buf: &Vec<T>) -> u64 {
        buf.as_ptr() as u64
    }
    fn name(&self) -> String {
        let products = match self.precision {
            Precision::Fp32 => String::new(),
            p => format!(", {p} products"),
        };
        format!(
            "cpu ({} threads, {}{products})",
            self.threads,
            std::any::type_name::<T>()
        )
    }
    fn precision(&self) -> Precision {
        self.precision
    }

    #[track_caller]
    fn alloc(&self, len: usize) -> Result<Vec<T>> {
        super::host_zeroed("cpu", len, T::ZERO, std::panic::Location::caller())
    }
    fn upload(&self, host: &[T]) -> Result<Vec<T>> {
        Ok(host.to_vec())
    }
    fn download(&self, buf: &Vec<T>) -> Result<Vec<T>> {
        Ok(buf.clone())
    }
    fn buf_len(&self, buf: &Vec<T>) -> usize {
        buf.len()
    }
    fn write(&self, dst: &mut Vec<T>, host: &[T]) -> Result<()> {
        if dst.len() != host.len() {
            return Err(Error::Shape(format!(
                "write: {} host values into a buffer of {}",
                host.len(),
                dst.len()
            )));
        }
        dst.copy_from_slice(host);
        Ok(())
    }
    fn upload_labels(&self, labels: &[u32]) -> Result<Vec<u32>> {
        Ok(labels.to_vec())
    }
    fn copy_range(
        &self,
        dst: &mut Vec<T>,
        dst_off: usize,
        src: &Vec<T>,
        src_off: usize,
        len: usize,
    ) -> Result<()> {
        memory::copy_range(dst, dst_off, src, src_off, len)
    }
    fn fill(&self, buf: &mut Vec<T>, value: T) -> Result<()> {
        buf.fill(value);
        Ok(())
    }
    fn axpy(&self, y: &mut Vec<T>, a: T, x: &Vec<T>) -> Result<()> {
        check_len("axpy", x.len(), y.len())?;
        memory::axpy(self.pool(), y, a, x);
        Ok(())
    }
    fn add(&self, y: &mut Vec<T>, a: &Vec<T>, b: &Vec<T>) -> Result<()> {
        memory::add(self.pool(), y, a, b)
    }
    fn gather_rows(
        &self,
        dst: &mut Vec<T>,
        src: &Vec<T>,
        rows: &[u32],
        row_len: usize,
    ) -> Result<()> {
        memory::gather_rows(dst, src, rows, row_len)
    }
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn conv2d_fwd(
        &self,
        y: &mut Vec<T>,
        x: &Vec<T>,
        params: &Vec<T>,
        w: Seg,
        b: Option<Seg>,
        s: &ConvShape,
        acc: bool,
    ) -> Result<()> {
        let w = seg(params, w, "conv2d_fwd weight")?;
        let b = b.map(|b| seg(params, b, "conv2d_fwd bias")).transpose()?;
        let p = self.precision;
        conv::conv2d_fwd(
            self.pool(),
            y,
            &p.round_slice(x),
            &p.round_slice(w),
            b,
            s,
            acc,
        )
    }
    fn conv2d_bwd_input(
        &self,
        dx: &mut Vec<T>,
        dy: &Vec<T>,
        params: &Vec<T>,
        w: Seg,
        s: &ConvShape,
        acc: bool,
    ) -> Result<()> {
        let w = seg(params, w, "conv2d_bwd_input weight")?;
        let p = self.precision;
        conv::conv2d_bwd_input(
            self.pool(),
            dx,
            &p.round_slice(dy),
            &p.round_slice(w),
            s,
            acc,
        )
    }
    fn conv2d_bwd_weight(
        &self,
        grads: &mut Vec<T>,
        dw: Seg,
        db: Option<Seg>,
        dy: &Vec<T>,
        x: &Vec<T>,
        s: &ConvShape,
    ) -> Result<()> {
        let (dw_s, db_s) = split_two(grads, dw, db)?;
        // A poisoned lock only means another op panicked mid-way; the scratch
        // contents are overwritten before use, so it is safe to go on.
        let mut partials = self.conv_partials.lock().unwrap_or_else(|e| e.into_inner());
        let pool = self.pool();
        self.weight_grad(
            dy,
            x,
            db_s,
            |dy, x, db| conv::conv2d_bwd_weight(pool, &mut partials, dw_s, db, dy, x, s),
            |db, dy| conv::conv2d_bias_grad(pool, db, dy, s),
        )
    }

    fn linear_fwd(
        &self,
        y: &mut Vec<T>,
        x: &Vec<T>,
        params: &Vec<T>,
        w: Seg,
        b: Option<Seg>,
        s: &LinearShape,
        acc: bool,
    ) -> Result<()> {
        let w = seg(params, w, "linear_fwd weight")?;
        let b = b.map(|b| seg(params, b, "linear_fwd bias")).transpose()?;
        let p = self.precision;
        linear::linear_fwd(
            self.pool(),
            y,
            &p.round_slice(x),
            &p.round_slice(w),
            b,
            s,
            acc,
        )
    }
    fn linear_bwd_input(
        &self,
        dx: &mut Vec<T>,
        dy: &Vec<T>,
        params: &Vec<T>,
        w: Seg,
        s: &LinearShape,
        acc: bool,
    ) -> Result<()> {
        let w = seg(params, w, "linear_bwd_input weight")?;
        let p = self.precision;
        linear::linear_bwd_input(
            self.pool(),
            dx,
            &p.round_slice(dy),
            &p.round_slice(w),
            s,
            acc,
        )
    }
    fn linear_bwd_weight(
        &self,
        grads: &mut Vec<T>,
        dw: Seg,
        db: Option<Seg>,
        dy: &Vec<T>,
        x: &Vec<T>,
        s: &LinearShape,
    ) -> Result<()> {
        let (dw_s, db_s) = split_two(grads, dw, db)?;
        let pool = self.pool();
        self.weight_grad(
            dy,
            x,
            db_s,
            |dy, x, db| linear::linear_bwd_weight(pool, dw_s, db, dy, x, s),
            |db, dy| linear::linear_bias_grad(pool, db, dy, s),
        )
    }

    fn act_fwd(&self, y: &mut Vec<T>, x: &Vec<T>, act: Act) -> Result<()> {
        check_len("act_fwd", y.len(), x.len())?;
        act::act_fwd(self.pool(), y, x, act);
        Ok(())
    }
    fn act_bwd(&self, dx: &mut Vec<T>, dy: &Vec<T>, x: &Vec<T>, act: Act) -> Result<()> {
        check_len("act_bwd dx", dx.len(), x.len())?;
        check_len("act_bwd dy", dy.len(), x.len())?;
        act::act_bwd(self.pool(), dx, dy, x, act);
        Ok(())
    }
    fn act_dual_bwd(
        &self,
        dx: &mut Vec<T>,
        dxdot: &mut Vec<T>,
        dy: &Vec<T>,
        dydot: &Vec<T>,
        x: &Vec<T>,
        xdot: &Vec<T>,
        act: Act,
    ) -> Result<()> {
        check_len("act_dual_bwd dx", dx.len(), x.len())?;
        check_len("act_dual_bwd dxdot", dxdot.len(), x.len())?;
        check_len("act_dual_bwd dy", dy.len(), x.len())?;
        check_len("act_dual_bwd dydot", dydot.len(), x.len())?;
        check_len("act_dual_bwd xdot", xdot.len(), x.len())?;
        act::act_dual_bwd(self.pool(), dx, dxdot, dy, dydot, x, xdot, act);
        Ok(())
    }

    fn pool_fwd(&self, y: &mut Vec<T>, x: &Vec<T>, s: &PoolShape, kind: PoolKind) -> Result<()> {
        pool::pool_fwd(self.pool(), y, x, s, kind)
    }
    fn pool_bwd(
        &self,
        dx: &mut Vec<T>,
        dy: &Vec<T>,
        x: &Vec<T>,
        s: &PoolShape,
        kind: PoolKind,
    ) -> Result<()> {
        pool::pool_bwd(self.pool(), dx, dy, x, s, kind)
    }
    fn pool_jvp(
        &self,
        ydot: &mut Vec<T>,
        x: &Vec<T>,
        xdot: &Vec<T>,
        s: &PoolShape,
        kind: PoolKind,
    ) -> Result<()> {
        pool::pool_jvp(self.pool(), ydot, x, xdot, s, kind)
    }

    fn norm_fwd(
        &self,
        y: &mut Vec<T>,
        stats: &mut Vec<T>,
        x: &Vec<T>,
        params: &Vec<T>,
        gamma: Seg,
        beta: Seg,
        s: &NormShape,
    ) -> Result<()> {
        norm::norm_fwd(
            self.pool(),
            y,
            stats,
            x,
            seg(params, gamma, "gamma")?,
            seg(params, beta, "beta")?,
            s,
        )?;
        Ok(())
    }
    fn norm_bwd(
        &self,
        dx: &mut Vec<T>,
        dparams: Option<(&mut Vec<T>, Seg, Seg)>,
        dy: &Vec<T>,
        x: &Vec<T>,
        stats: &Vec<T>,
        params: &Vec<T>,
        gamma: Seg,
        s: &NormShape,
    ) -> Result<()> {
        let dp = match dparams {
            Some((g, dg, db)) => Some(split_two(g, dg, Some(db))?),
            None => None,
        };
        let dp = dp.map(|(a, b)| (a, b.expect("beta segment")));
        norm::norm_bwd(
            self.pool(),
            dx,
            dp,
            dy,
            x,
            stats,
            seg(params, gamma, "gamma")?,
            s,
        )?;
        Ok(())
    }
    fn norm_jvp(
        &self,
        ydot: &mut Vec<T>,
        x: &Vec<T>,
        xdot: &Vec<T>,
        stats: &Vec<T>,
        params: &Vec<T>,
        gamma: Seg,
        tangent: &Vec<T>,
        t_gamma: Seg,
        t_beta: Seg,
        s: &NormShape,
    ) -> Result<()> {
        norm::norm_jvp(
            self.pool(),
            ydot,
            x,
            xdot,
            stats,
            seg(params, gamma, "gamma")?,
            seg(tangent, t_gamma, "t_gamma")?,
            seg(tangent, t_beta, "t_beta")?,
            s,
        )?;
        Ok(())
    }
    fn norm_dual_bwd(
        &self,
        dx: &mut Vec<T>,
        dxdot: &mut Vec<T>,
        dy: &Vec<T>,
        dydot: &Vec<T>,
        x: &Vec<T>,
        xdot: &Vec<T>,
        stats: &Vec<T>,
        params: &Vec<T>,
        gamma: Seg,
        tangent: &Vec<T>,
        t_gamma: Seg,
        s: &NormShape,
    ) -> Result<()> {
        norm::norm_dual_bwd(
            self.pool(),
            dx,
            dxdot,
            dy,
            dydot,
            x,
            xdot,
            stats,
            seg(params, gamma, "gamma")?,
            seg(tangent, t_gamma, "t_gamma")?,
            s,
        )?;
        Ok(())
    }

    fn bn_fwd_train(
        &self,
        y: &mut Vec<T>,
        stats: &mut Vec<T>,
        running: &mut Vec<T>,
        x: &Vec<T>,
        params: &Vec<T>,
        gamma: Seg,
        beta: Seg,
        s: &NormShape,
        momentum: f32,
    ) -> Result<()> {
        norm::bn_fwd_train(
            self.pool(),
            y,
            stats,
            running,
            x,
            seg(params, gamma, "gamma")?,
            seg(params, beta, "beta")?,
            s,
            momentum,
        )?;
        Ok(())
    }
    fn bn_bwd_train(
        &self,
        dx: &mut Vec<T>,
        dparams: Option<(&mut Vec<T>, Seg, Seg)>,
        dy: &Vec<T>,
        x: &Vec<T>,
        stats: &Vec<T>,
        params: &Vec<T>,
        gamma: Seg,
        s: &NormShape,
    ) -> Result<()> {
        let dp = match dparams {
            Some((g, dg, db)) => Some(split_two(g, dg, Some(db))?),
            None => None,
        };
        let dp = dp.map(|(a, b)| (a, b.expect("beta segment")));
        norm::bn_bwd_train(
            self.pool(),
            dx,
            dp,
            dy,
            x,
            stats,
            seg(params, gamma, "gamma")?,
            s,
        )?;
        Ok(())
    }
    fn bn_fwd_eval(
        &self,
        y: &mut Vec<T>,
        x: &Vec<T>,
        running: &Vec<T>,
        params: &Vec<T>,
        gamma: Seg,
        beta: Seg,
        s: &NormShape,
    ) -> Result<()> {
        norm::bn_fwd_eval(
            self.pool(),
            y,
            x,
            running,
            seg(params, gamma, "gamma")?,
            seg(params, beta, "beta")?,
            s,
        )?;
        Ok(())
    }
    fn bn_bwd_eval(
        &self,
        dx: &mut Vec<T>,
        dparams: Option<(&mut Vec<T>, Seg, Seg)>,
        dy: &Vec<T>,
        x: &Vec<T>,
        running: &Vec<T>,
        params: &Vec<T>,
        gamma: Seg,
        s: &NormShape,
    ) -> Result<()> {
        let dp = match dparams {
            Some((g, dg, db)) => Some(split_two(g, dg, Some(db))?),
            None => None,
        };
        let dp = dp.map(|(a, b)| (a, b.expect("beta segment")));
        norm::bn_bwd_eval(
            self.pool(),
            dx,
            dp,
            dy,
            x,
            running,
            seg(params, gamma, "gamma")?,
            s,
        )?;
        Ok(())
    }
    fn bn_eval_jvp(
        &self,
        ydot: &mut Vec<T>,
        x: &Vec<T>,
        xdot: &Vec<T>,
        running: &Vec<T>,
        params: &Vec<T>,
        gamma: Seg,
        tangent: &Vec<T>,
        t_gamma: Seg,
        t_beta: Seg,
        s: &NormShape,
    ) -> Result<()> {
        norm::bn_eval_jvp(
            self.pool(),
            ydot,
            x,
            xdot,
            running,
            seg(params, gamma, "gamma")?,
            seg(tangent, t_gamma, "t_gamma")?,
            seg(tangent, t_beta, "t_beta")?,
            s,
        )?;
        Ok(())
    }
    fn bn_eval_dual_bwd(
        &self,
        dx: &mut Vec<T>,
        dxdot: &mut Vec<T>,
        dy: &Vec<T>,
        dydot: &Vec<T>,
        running: &Vec<T>,
        params: &Vec<T>,
        gamma: Seg,
        tangent: &Vec<T>,
        t_gamma: Seg,
        s: &NormShape,
    ) -> Result<()> {
        norm::bn_eval_dual_bwd(
            self.pool(),
            dx,
            dxdot,
            dy,
            dydot,
            running,
            seg(params, gamma, "gamma")?,
            seg(tangent, t_gamma, "t_gamma")?,
            s,
        )?;
        Ok(())
    }

    fn ce_fwd_bwd(
        &self,
        dlogits: &mut Vec<T>,
        logits: &Vec<T>,
        labels: &Vec<u32>,
        s: &LinearShape,
    ) -> Result<CeOut> {
        loss::ce_fwd_bwd(dlogits, logits, labels, s)
    }
    fn ce_dual(
        &self,
        dlogits: &mut Vec<T>,
        dldot: &mut Vec<T>,
        logits: &Vec<T>,
        ldot: &Vec<T>,
        labels: &Vec<u32>,
        s: &LinearShape,
    ) -> Result<f64> {
        loss::ce_dual(dlogits, dldot, logits, ldot, labels, s)
    }

    fn match_distance(
        &self,
        dsyn: &mut Vec<T>,
        g_syn: &Vec<T>,
        g_real: &Vec<T>,
        tensors: &[MatchTensor],
        metric: Metric,
    ) -> Result<f64> {
        check_len("match_distance", g_syn.len(), g_real.len())?;
        check_len("match_distance", dsyn.len(), g_real.len())?;
        matching::match_distance(dsyn, g_syn, g_real, tensors, metric)
    }
    fn sgd_step(&self, p: &mut Vec<T>, g: &Vec<T>, m: &mut Vec<T>, hp: SgdParams) -> Result<()> {
        check_len("sgd_step", g.len(), p.len())?;
        check_len("sgd_step", m.len(), p.len())?;
        sgd::sgd_step(p, g, m, hp);
        Ok(())
    }

    fn aug_fwd(&self, y: &mut Vec<T>, x: &Vec<T>, op: &AugOp, s: &ImgShape) -> Result<()> {
        check_len("aug_fwd x", x.len(), s.len())?;
        check_len("aug_fwd y", y.len(), s.len())?;
        check_len("aug_fwd params", op.batch(), s.n as usize)?;
        augment::aug_fwd(self.pool(), y, x, op, s);
        Ok(())
    }
    fn aug_bwd(&self, dx: &mut Vec<T>, dy: &Vec<T>, op: &AugOp, s: &ImgShape) -> Result<()> {
        check_len("aug_bwd dx", dx.len(), s.len())?;
        check_len("aug_bwd dy", dy.len(), s.len())?;
        check_len("aug_bwd params", op.batch(), s.n as usize)?;
        augment::aug_bwd(self.pool(), dx, dy, op, s);
        Ok(())
    }
}

/// Two disjoint mutable segments of one buffer (weight and optional bias grads).
fn split_two<T>(buf: &mut [T], a: Seg, b: Option<Seg>) -> Result<(&mut [T], Option<&mut [T]>)> {
    let (ra, rb) = (range(a), b.map(range));
    if ra.end > buf.len() || rb.as_ref().is_some_and(|r| r.end > buf.len()) {
        return Err(Error::Shape("parameter segment outside the buffer".into()));
    }
    match rb {
        None => Ok((&mut buf[ra], None)),
        Some(rb) if rb.start >= ra.end => {
            let (lo, hi) = buf.split_at_mut(rb.start);
            Ok((&mut lo[ra], Some(&mut hi[..rb.end - rb.start])))
        }
        Some(rb) if rb.end <= ra.start => {
            let (lo, hi) = buf.split_at_mut(ra.start);
            Ok((&mut hi[..ra.end - ra.start], Some(&mut lo[rb])))
        }
        Some(_) => Err(Error::Shape("overlapping parameter segments".into())),
    }
}
