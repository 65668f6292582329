//! A backend with one deliberately wrong derivative, to show that the gradient
//! checks catch a faulty layer backward (`mod faulty;`). [`Faulty`] forwards every
//! op to `Cpu<f64>` except the one its [`Fault`] names.
#![allow(dead_code)]

use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::{
    Act, AugOp, Backend, CeOut, ConvShape, ImgShape, LinearShape, MatchTensor, Metric, NormShape,
    PoolKind, PoolShape, Seg, SgdParams,
};
use dsa_condense::error::Result;

/// The wrong derivative.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Pooling backward returns 0.9x the input adjoint (a wrong window weight).
    PoolBackwardScaled,
    /// Convolution input-gradient overwrites instead of accumulating (`acc`
    /// ignored): the residual shortcut's share of the adjoint is lost.
    ConvBackwardIgnoresAcc,
    /// The activation's dual reverse pass drops the tangent of the input
    /// adjoint: first-order gradients stay right, dD/dS is wrong.
    ActDualDropsTangent,
}

/// `Cpu<f64>` with one [`Fault`].
pub struct Faulty {
    pub inner: Cpu<f64>,
    pub fault: Fault,
}

impl Faulty {
    pub fn new(fault: Fault) -> Self {
        Faulty {
            inner: Cpu::new(1).unwrap(),
            fault,
        }
    }
}

type Buf = <Cpu<f64> as Backend>::Buf;
type Labels = <Cpu<f64> as Backend>::Labels;

impl Backend for Faulty {
    type E = f64;
    type Buf = Buf;
    type Labels = Labels;
    type Graph = <Cpu<f64> as Backend>::Graph;

    fn name(&self) -> String {
        format!("faulty cpu ({:?})", self.fault)
    }
    fn buf_addr(&self, buf: &Buf) -> u64 {
        self.inner.buf_addr(buf)
    }
    fn alloc(&self, len: usize) -> Result<Buf> {
        self.inner.alloc(len)
    }
    fn upload(&self, host: &[f64]) -> Result<Buf> {
        self.inner.upload(host)
    }
    fn download(&self, buf: &Buf) -> Result<Vec<f64>> {
        self.inner.download(buf)
    }
    fn buf_len(&self, buf: &Buf) -> usize {
        self.inner.buf_len(buf)
    }
    fn write(&self, dst: &mut Buf, host: &[f64]) -> Result<()> {
        self.inner.write(dst, host)
    }
    fn upload_labels(&self, labels: &[u32]) -> Result<Labels> {
        self.inner.upload_labels(labels)
    }
    fn copy_range(
        &self,
        dst: &mut Buf,
        dst_off: usize,
        src: &Buf,
        src_off: usize,
        len: usize,
    ) -> Result<()> {
        self.inner.copy_range(dst, dst_off, src, src_off, len)
    }
    fn fill(&self, buf: &mut Buf, value: f64) -> Result<()> {
        self.inner.fill(buf, value)
    }
    fn axpy(&self, y: &mut Buf, a: f64, x: &Buf) -> Result<()> {
        self.inner.axpy(y, a, x)
    }
    fn add(&self, y: &mut Buf, a: &Buf, b: &Buf) -> Result<()> {
        self.inner.add(y, a, b)
    }
    fn gather_rows(&self, dst: &mut Buf, src: &Buf, rows: &[u32], row_len: usize) -> Result<()> {
        self.inner.gather_rows(dst, src, rows, row_len)
    }
    fn synchronize(&self) -> Result<()> {
        self.inner.synchronize()
    }
    fn conv2d_fwd(
        &self,
        y: &mut Buf,
        x: &Buf,
        params: &Buf,
        w: Seg,
        b: Option<Seg>,
        s: &ConvShape,
        acc: bool,
    ) -> Result<()> {
        self.inner.conv2d_fwd(y, x, params, w, b, s, acc)
    }
    fn conv2d_bwd_input(
        &self,
        dx: &mut Buf,
        dy: &Buf,
        params: &Buf,
        w: Seg,
        s: &ConvShape,
        acc: bool,
    ) -> Result<()> {
        let acc = acc && self.fault != Fault::ConvBackwardIgnoresAcc;
        self.inner.conv2d_bwd_input(dx, dy, params, w, s, acc)
    }
    fn conv2d_bwd_weight(
        &self,
        grads: &mut Buf,
        dw: Seg,
        db: Option<Seg>,
        dy: &Buf,
        x: &Buf,
        s: &ConvShape,
    ) -> Result<()> {
        self.inner.conv2d_bwd_weight(grads, dw, db, dy, x, s)
    }
    fn linear_fwd(
        &self,
        y: &mut Buf,
        x: &Buf,
        params: &Buf,
        w: Seg,
        b: Option<Seg>,
        s: &LinearShape,
        acc: bool,
    ) -> Result<()> {
        self.inner.linear_fwd(y, x, params, w, b, s, acc)
    }
    fn linear_bwd_input(
        &self,
        dx: &mut Buf,
        dy: &Buf,
        params: &Buf,
        w: Seg,
        s: &LinearShape,
        acc: bool,
    ) -> Result<()> {
        self.inner.linear_bwd_input(dx, dy, params, w, s, acc)
    }
    fn linear_bwd_weight(
        &self,
        grads: &mut Buf,
        dw: Seg,
        db: Option<Seg>,
        dy: &Buf,
        x: &Buf,
        s: &LinearShape,
    ) -> Result<()> {
        self.inner.linear_bwd_weight(grads, dw, db, dy, x, s)
    }
    fn act_fwd(&self, y: &mut Buf, x: &Buf, act: Act) -> Result<()> {
        self.inner.act_fwd(y, x, act)
    }
    fn act_bwd(&self, dx: &mut Buf, dy: &Buf, x: &Buf, act: Act) -> Result<()> {
        self.inner.act_bwd(dx, dy, x, act)
    }
    fn act_dual_bwd(
        &self,
        dx: &mut Buf,
        dxdot: &mut Buf,
        dy: &Buf,
        dydot: &Buf,
        x: &Buf,
        xdot: &Buf,
        act: Act,
    ) -> Result<()> {
        if self.fault == Fault::ActDualDropsTangent {
            // dx is right; dxdot (= f'(x) dydot + f''(x) xdot dy) is left zero.
            self.inner.act_bwd(dx, dy, x, act)?;
            return self.inner.fill(dxdot, 0.0);
        }
        self.inner.act_dual_bwd(dx, dxdot, dy, dydot, x, xdot, act)
    }
    fn pool_fwd(&self, y: &mut Buf, x: &Buf, s: &PoolShape, kind: PoolKind) -> Result<()> {
        self.inner.pool_fwd(y, x, s, kind)
    }
    fn pool_bwd(
        &self,
        dx: &mut Buf,
        dy: &Buf,
        x: &Buf,
        s: &PoolShape,
        kind: PoolKind,
    ) -> Result<()> {
        self.inner.pool_bwd(dx, dy, x, s, kind)?;
        if self.fault == Fault::PoolBackwardScaled {
            let mut v = self.inner.download(dx)?;
            v.iter_mut().for_each(|e| *e *= 0.9);
            self.inner.write(dx, &v)?;
        }
        Ok(())
    }
    fn pool_jvp(
        &self,
        ydot: &mut Buf,
        x: &Buf,
        xdot: &Buf,
        s: &PoolShape,
        kind: PoolKind,
    ) -> Result<()> {
        self.inner.pool_jvp(ydot, x, xdot, s, kind)
    }
    fn norm_fwd(
        &self,
        y: &mut Buf,
        stats: &mut Buf,
        x: &Buf,
        params: &Buf,
        gamma: Seg,
        beta: Seg,
        s: &NormShape,
    ) -> Result<()> {
        self.inner.norm_fwd(y, stats, x, params, gamma, beta, s)
    }
    fn norm_bwd(
        &self,
        dx: &mut Buf,
        dparams: Option<(&mut Buf, Seg, Seg)>,
        dy: &Buf,
        x: &Buf,
        stats: &Buf,
        params: &Buf,
        gamma: Seg,
        s: &NormShape,
    ) -> Result<()> {
        self.inner
            .norm_bwd(dx, dparams, dy, x, stats, params, gamma, s)
    }
    fn norm_jvp(
        &self,
        ydot: &mut Buf,
        x: &Buf,
        xdot: &Buf,
        stats: &Buf,
        params: &Buf,
        gamma: Seg,
        tangent: &Buf,
        t_gamma: Seg,
        t_beta: Seg,
        s: &NormShape,
    ) -> Result<()> {
        self.inner.norm_jvp(
            ydot, x, xdot, stats, params, gamma, tangent, t_gamma, t_beta, s,
        )
    }
    fn norm_dual_bwd(
        &self,
        dx: &mut Buf,
        dxdot: &mut Buf,
        dy: &Buf,
        dydot: &Buf,
        x: &Buf,
        xdot: &Buf,
        stats: &Buf,
        params: &Buf,
        gamma: Seg,
        tangent: &Buf,
        t_gamma: Seg,
        s: &NormShape,
    ) -> Result<()> {
        self.inner.norm_dual_bwd(
            dx, dxdot, dy, dydot, x, xdot, stats, params, gamma, tangent, t_gamma, s,
        )
    }
    fn bn_fwd_train(
        &self,
        y: &mut Buf,
        stats: &mut Buf,
        running: &mut Buf,
        x: &Buf,
        params: &Buf,
        gamma: Seg,
        beta: Seg,
        s: &NormShape,
        momentum: f32,
    ) -> Result<()> {
        self.inner
            .bn_fwd_train(y, stats, running, x, params, gamma, beta, s, momentum)
    }
    fn bn_bwd_train(
        &self,
        dx: &mut Buf,
        dparams: Option<(&mut Buf, Seg, Seg)>,
        dy: &Buf,
        x: &Buf,
        stats: &Buf,
        params: &Buf,
        gamma: Seg,
        s: &NormShape,
    ) -> Result<()> {
        self.inner
            .bn_bwd_train(dx, dparams, dy, x, stats, params, gamma, s)
    }
    fn bn_fwd_eval(
        &self,
        y: &mut Buf,
        x: &Buf,
        running: &Buf,
        params: &Buf,
        gamma: Seg,
        beta: Seg,
        s: &NormShape,
    ) -> Result<()> {
        self.inner
            .bn_fwd_eval(y, x, running, params, gamma, beta, s)
    }
    fn bn_bwd_eval(
        &self,
        dx: &mut Buf,
        dparams: Option<(&mut Buf, Seg, Seg)>,
        dy: &Buf,
        x: &Buf,
        running: &Buf,
        params: &Buf,
        gamma: Seg,
        s: &NormShape,
    ) -> Result<()> {
        self.inner
            .bn_bwd_eval(dx, dparams, dy, x, running, params, gamma, s)
    }
    fn bn_eval_jvp(
        &self,
        ydot: &mut Buf,
        x: &Buf,
        xdot: &Buf,
        running: &Buf,
        params: &Buf,
        gamma: Seg,
        tangent: &Buf,
        t_gamma: Seg,
        t_beta: Seg,
        s: &NormShape,
    ) -> Result<()> {
        self.inner.bn_eval_jvp(
            ydot, x, xdot, running, params, gamma, tangent, t_gamma, t_beta, s,
        )
    }
    fn bn_eval_dual_bwd(
        &self,
        dx: &mut Buf,
        dxdot: &mut Buf,
        dy: &Buf,
        dydot: &Buf,
        running: &Buf,
        params: &Buf,
        gamma: Seg,
        tangent: &Buf,
        t_gamma: Seg,
        s: &NormShape,
    ) -> Result<()> {
        self.inner.bn_eval_dual_bwd(
            dx, dxdot, dy, dydot, running, params, gamma, tangent, t_gamma, s,
        )
    }
    fn ce_fwd_bwd(
        &self,
        dlogits: &mut Buf,
        logits: &Buf,
        labels: &Labels,
        s: &LinearShape,
    ) -> Result<CeOut> {
        self.inner.ce_fwd_bwd(dlogits, logits, labels, s)
    }
    fn ce_dual(
        &self,
        dlogits: &mut Buf,
        dldot: &mut Buf,
        logits: &Buf,
        ldot: &Buf,
        labels: &Labels,
        s: &LinearShape,
    ) -> Result<f64> {
        self.inner.ce_dual(dlogits, dldot, logits, ldot, labels, s)
    }
    fn match_distance(
        &self,
        dsyn: &mut Buf,
        g_syn: &Buf,
        g_real: &Buf,
        tensors: &[MatchTensor],
        metric: Metric,
    ) -> Result<f64> {
        self.inner
            .match_distance(dsyn, g_syn, g_real, tensors, metric)
    }
    fn sgd_step(&self, p: &mut Buf, g: &Buf, momentum_buf: &mut Buf, hp: SgdParams) -> Result<()> {
        self.inner.sgd_step(p, g, momentum_buf, hp)
    }
    fn aug_fwd(&self, y: &mut Buf, x: &Buf, op: &AugOp, s: &ImgShape) -> Result<()> {
        self.inner.aug_fwd(y, x, op, s)
    }
    fn aug_bwd(&self, dx: &mut Buf, dy: &Buf, op: &AugOp, s: &ImgShape) -> Result<()> {
        self.inner.aug_bwd(dx, dy, op, s)
    }
}
