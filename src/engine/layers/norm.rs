//! Normalisation layers: the group-norm family (instance, group and layer norm:
//! per-sample statistics, `stats = [mu, rstd]` per (sample, group)) and BatchNorm
//! (batch statistics and a running-state update in train mode, the running
//! statistics in eval mode; the second-order pass runs it in eval mode).

use crate::backend::{Backend, NormShape, Seg};
use crate::error::Result;
use crate::model::BN_MOMENTUM;

/// One normalisation op: shape and affine segments; `running` for BatchNorm.
pub(in crate::engine) struct NormOp<'a, B: Backend> {
    pub s: &'a NormShape,
    pub gamma: Seg,
    pub beta: Seg,
    /// BatchNorm's running state `[mean (C), var (C)]`; None for the group family.
    pub running: Option<&'a B::Buf>,
}

impl<B: Backend> NormOp<'_, B> {
    /// Group family (any mode) and BatchNorm in eval mode; train-mode BatchNorm goes
    /// through [`forward_bn_train`] (it writes the running state).
    pub fn forward(
        &self,
        be: &B,
        y: &mut B::Buf,
        stats: &mut B::Buf,
        x: &B::Buf,
        p: &B::Buf,
    ) -> Result<()> {
        match self.running {
            None => be.norm_fwd(y, stats, x, p, self.gamma, self.beta, self.s),
            Some(r) => be.bn_fwd_eval(y, x, r, p, self.gamma, self.beta, self.s),
        }
    }

    /// `dx` and `dgamma`, `dbeta` into `grads`; `train` selects BatchNorm's
    /// batch-statistics backward.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        be: &B,
        dx: &mut B::Buf,
        grads: Option<&mut B::Buf>,
        dy: &B::Buf,
        x: &B::Buf,
        stats: &B::Buf,
        p: &B::Buf,
        train: bool,
    ) -> Result<()> {
        let dp = grads.map(|g| (g, self.gamma, self.beta));
        match (self.running, train) {
            (None, _) => be.norm_bwd(dx, dp, dy, x, stats, p, self.gamma, self.s),
            (Some(_), true) => be.bn_bwd_train(dx, dp, dy, x, stats, p, self.gamma, self.s),
            (Some(r), false) => be.bn_bwd_eval(dx, dp, dy, x, r, p, self.gamma, self.s),
        }
    }

    /// `ydot = gamma J xdot + t_gamma xhat + t_beta`.
    #[allow(clippy::too_many_arguments)]
    pub fn tangent(
        &self,
        be: &B,
        ydot: &mut B::Buf,
        x: &B::Buf,
        xdot: &B::Buf,
        stats: &B::Buf,
        p: &B::Buf,
        t: &B::Buf,
    ) -> Result<()> {
        let (g, b) = (self.gamma, self.beta);
        match self.running {
            None => be.norm_jvp(ydot, x, xdot, stats, p, g, t, g, b, self.s),
            Some(r) => be.bn_eval_jvp(ydot, x, xdot, r, p, g, t, g, b, self.s),
        }
    }

    /// Reverse of the dual norm (`docs/derivations/norm.md`).
    #[allow(clippy::too_many_arguments)]
    pub fn dual_reverse(
        &self,
        be: &B,
        dx: &mut B::Buf,
        dxdot: &mut B::Buf,
        dy: &B::Buf,
        dydot: &B::Buf,
        x: &B::Buf,
        xdot: &B::Buf,
        stats: &B::Buf,
        p: &B::Buf,
        t: &B::Buf,
    ) -> Result<()> {
        let g = self.gamma;
        match self.running {
            None => be.norm_dual_bwd(dx, dxdot, dy, dydot, x, xdot, stats, p, g, t, g, self.s),
            Some(r) => be.bn_eval_dual_bwd(dx, dxdot, dy, dydot, r, p, g, t, g, self.s),
        }
    }
}

/// Train-mode BatchNorm forward: batch statistics into `stats`, `running` moves
/// towards them (momentum [`BN_MOMENTUM`]).
#[allow(clippy::too_many_arguments)]
pub(in crate::engine) fn forward_bn_train<B: Backend>(
    be: &B,
    y: &mut B::Buf,
    stats: &mut B::Buf,
    running: &mut B::Buf,
    x: &B::Buf,
    p: &B::Buf,
    gamma: Seg,
    beta: Seg,
    s: &NormShape,
) -> Result<()> {
    be.bn_fwd_train(y, stats, running, x, p, gamma, beta, s, BN_MOMENTUM)
}
