//! The four passes of a [`Network`] over its op list: the engine walks the ops
//! forward (value, tangent) or backward (adjoints, dual adjoints) and hands each op
//! its buffers; what each kind of op computes is in [`super::layers`].
//!
//! Forward, a normalisation (group family) -> activation -> pooling chain, or an
//! activation -> pooling chain, runs as one fused op
//! ([`Backend::norm_act_pool_fwd`]), which writes the same buffers as the separate
//! ops.

use super::layers::contraction::Contraction;
use super::layers::norm::{forward_bn_train, NormOp};
use super::layers::{act, add, pool};
use super::workspace::{split_above, split_below, value, Workspace};
use super::{inv, Mode, Network};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::plan::{Op, OpKind, Slot};

/// Mutable references to distinct allocated slots.
fn slots_mut<T, const N: usize>(v: &mut [Option<T>], idx: [usize; N]) -> Result<[&mut T; N]> {
    let refs = v
        .get_disjoint_mut(idx)
        .map_err(|_| Error::Shape(format!("slots {idx:?} overlap")))?;
    let refs = refs.map(Option::as_mut);
    if refs.iter().any(Option::is_none) {
        return Err(inv("value"));
    }
    Ok(refs.map(|r| r.expect("checked above")))
}

/// The adjoint of input `j` of `op` with its accumulate flag; None when the slot
/// keeps no adjoint (the network input of a pass without input gradient).
fn input_adj<'a, T>(lo: &'a mut [Option<T>], op: &Op, j: usize) -> Option<(&'a mut T, bool)> {
    lo[op.inputs[j]].as_mut().map(|b| (b, op.acc[j]))
}

/// The adjoint of input `j` of an op that always writes it.
fn required_adj<'a, T>(lo: &'a mut [Option<T>], op: &Op, j: usize) -> Result<&'a mut T> {
    lo[op.inputs[j]]
        .as_mut()
        .ok_or_else(|| inv("input adjoint"))
}

/// The op chain starting at `i` that one fused call covers: (norm, act, pool) op
/// indices, when `ops[i]` is a group-family norm followed by an activation of its
/// output, or an activation; a pooling of the activation's output joins.
fn fused_chain(ops: &[Op], i: usize) -> Option<(Option<usize>, usize, Option<usize>)> {
    let reads = |j: usize, s: Slot| ops.get(j).is_some_and(|o| o.inputs == [s]);
    let (norm, act) = match &ops[i].kind {
        OpKind::GroupNorm { .. }
            if reads(i + 1, ops[i].out) && matches!(ops[i + 1].kind, OpKind::Act(_)) =>
        {
            (Some(i), i + 1)
        }
        OpKind::Act(_) => (None, i),
        _ => return None,
    };
    let pool = (reads(act + 1, ops[act].out) && matches!(ops[act + 1].kind, OpKind::Pool { .. }))
        .then_some(act + 1);
    Some((norm, act, pool))
}

impl<B: Backend> Network<'_, B> {
    /// Forward pass to the logits; train mode updates the BatchNorm running state.
    pub(super) fn forward_impl(
        &mut self,
        ws: &mut Workspace<B>,
        x: &B::Buf,
        mode: Mode,
    ) -> Result<()> {
        let be = self.be;
        let p = &self.params;
        let Workspace {
            plan, val, stats, ..
        } = ws;
        let ops = &plan.ops;
        let mut i = 0;
        while i < ops.len() {
            let op = &ops[i];
            if let Some((norm, act_i, pool_i)) = fused_chain(ops, i) {
                let OpKind::Act(act) = ops[act_i].kind else {
                    unreachable!("fused_chain returns an activation")
                };
                let first = norm.unwrap_or(act_i);
                let base = ops[first].out;
                let (lo, hi) = val.split_at_mut(base);
                let z = value::<B>(lo, x, ops[first].inputs[0])?;
                let rel = |j: usize| ops[j].out - base;
                let pool = match pool_i.map(|j| &ops[j].kind) {
                    Some(OpKind::Pool { shape, kind }) => Some((shape, *kind)),
                    _ => None,
                };
                let norm_args = match norm.map(|j| &ops[j].kind) {
                    Some(OpKind::GroupNorm { shape, gamma, beta }) => Some((*gamma, *beta, shape)),
                    _ => None,
                };
                match (norm, pool_i) {
                    (Some(ni), Some(pj)) => {
                        let [s, a, pb] = slots_mut(hi, [0, rel(act_i), rel(pj)])?;
                        let st = stats[ni].as_mut().ok_or_else(|| inv("statistics"))?;
                        be.norm_act_pool_fwd(
                            Some((s, st)),
                            a,
                            Some(pb),
                            z,
                            p,
                            norm_args,
                            act,
                            pool,
                        )?;
                    }
                    (Some(ni), None) => {
                        let [s, a] = slots_mut(hi, [0, rel(act_i)])?;
                        let st = stats[ni].as_mut().ok_or_else(|| inv("statistics"))?;
                        be.norm_act_pool_fwd(Some((s, st)), a, None, z, p, norm_args, act, None)?;
                    }
                    (None, Some(pj)) => {
                        let [a, pb] = slots_mut(hi, [0, rel(pj)])?;
                        be.norm_act_pool_fwd(None, a, Some(pb), z, p, None, act, pool)?;
                    }
                    (None, None) => {
                        let [a] = slots_mut(hi, [0])?;
                        be.norm_act_pool_fwd(None, a, None, z, p, None, act, None)?;
                    }
                }
                i = pool_i.unwrap_or(act_i) + 1;
                continue;
            }
            let (lo, y) = split_below(val, op.out);
            let y = y.as_mut().ok_or_else(|| inv("value"))?;
            let xin = value::<B>(lo, x, op.inputs[0])?;
            match &op.kind {
                OpKind::Conv { shape, w, b } => Contraction {
                    s: shape,
                    w: *w,
                    b: *b,
                }
                .forward(be, y, xin, p)?,
                OpKind::Linear { shape, w, b } => Contraction {
                    s: shape,
                    w: *w,
                    b: *b,
                }
                .forward(be, y, xin, p)?,
                OpKind::GroupNorm { shape, gamma, beta } => {
                    let st = stats[i].as_mut().ok_or_else(|| inv("statistics"))?;
                    NormOp::<B> {
                        s: shape,
                        gamma: *gamma,
                        beta: *beta,
                        running: None,
                    }
                    .forward(be, y, st, xin, p)?
                }
                OpKind::BatchNorm {
                    shape,
                    gamma,
                    beta,
                    running,
                } => {
                    let st = stats[i].as_mut().ok_or_else(|| inv("statistics"))?;
                    let r = self
                        .running
                        .get_mut(*running)
                        .ok_or_else(|| inv("running state"))?;
                    match mode {
                        Mode::Train => {
                            forward_bn_train(be, y, st, r, xin, p, *gamma, *beta, shape)?
                        }
                        Mode::Eval => NormOp::<B> {
                            s: shape,
                            gamma: *gamma,
                            beta: *beta,
                            running: Some(r),
                        }
                        .forward(be, y, st, xin, p)?,
                    }
                }
                OpKind::Act(a) => act::forward(be, y, xin, *a)?,
                OpKind::Pool { shape, kind } => pool::forward(be, y, xin, shape, *kind)?,
                OpKind::Add => {
                    let b = value::<B>(lo, x, op.inputs[1])?;
                    add::forward(be, y, xin, b)?
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// Reverse pass from `dlogits` (the output slot's adjoint): every parameter's
    /// gradient into `grads`, and the input gradient when the workspace keeps it.
    pub(super) fn backward_impl(
        &self,
        ws: &mut Workspace<B>,
        x: &B::Buf,
        mode: Mode,
        grads: &mut B::Buf,
    ) -> Result<()> {
        let be = self.be;
        let p = &self.params;
        let Workspace {
            plan,
            val,
            adj,
            stats,
            ..
        } = ws;
        for (i, op) in plan.ops.iter().enumerate().rev() {
            let (lo, dy) = split_above(adj, op.out);
            let dy = dy.as_ref().ok_or_else(|| inv("adjoint"))?;
            let xin = value::<B>(val, x, op.inputs[0])?;
            match &op.kind {
                OpKind::Conv { shape, w, b } => Contraction {
                    s: shape,
                    w: *w,
                    b: *b,
                }
                .backward(be, input_adj(lo, op, 0), grads, dy, xin, p)?,
                OpKind::Linear { shape, w, b } => Contraction {
                    s: shape,
                    w: *w,
                    b: *b,
                }
                .backward(be, input_adj(lo, op, 0), grads, dy, xin, p)?,
                OpKind::GroupNorm { .. } | OpKind::BatchNorm { .. } => {
                    let st = stats[i].as_ref().ok_or_else(|| inv("statistics"))?;
                    self.norm_op(&op.kind)?.backward(
                        be,
                        required_adj(lo, op, 0)?,
                        Some(&mut *grads),
                        dy,
                        xin,
                        st,
                        p,
                        mode == Mode::Train,
                    )?
                }
                _ => param_free_backward(be, op, lo, dy, val, x)?,
            }
        }
        Ok(())
    }

    /// Forward tangents along the parameter direction `t` (input tangent zero), the
    /// primal values already computed (eval mode).
    pub(super) fn tangent_forward(
        &self,
        ws: &mut Workspace<B>,
        x: &B::Buf,
        t: &B::Buf,
    ) -> Result<()> {
        let be = self.be;
        let p = &self.params;
        let Workspace {
            plan,
            val,
            tan,
            stats,
            ..
        } = ws;
        for (i, op) in plan.ops.iter().enumerate() {
            if plan.tangent_zero[op.out] {
                continue;
            }
            let (lo, ydot) = split_below(tan, op.out);
            let ydot = ydot.as_mut().ok_or_else(|| inv("tangent"))?;
            let xin = value::<B>(val, x, op.inputs[0])?;
            let xdot = lo[op.inputs[0]].as_ref();
            let need = || xdot.ok_or_else(|| inv("input tangent"));
            match &op.kind {
                OpKind::Conv { shape, w, b } => Contraction {
                    s: shape,
                    w: *w,
                    b: *b,
                }
                .tangent(be, ydot, xin, xdot, p, t)?,
                OpKind::Linear { shape, w, b } => Contraction {
                    s: shape,
                    w: *w,
                    b: *b,
                }
                .tangent(be, ydot, xin, xdot, p, t)?,
                OpKind::GroupNorm { .. } | OpKind::BatchNorm { .. } => {
                    let st = stats[i].as_ref().ok_or_else(|| inv("statistics"))?;
                    self.norm_op(&op.kind)?
                        .tangent(be, ydot, xin, need()?, st, p, t)?
                }
                OpKind::Act(a) => act::tangent(be, ydot, xin, need()?, *a)?,
                OpKind::Pool { shape, kind } => {
                    pool::tangent(be, ydot, xin, need()?, shape, *kind)?
                }
                OpKind::Add => add::tangent(be, ydot, xdot, lo[op.inputs[1]].as_ref())?,
            }
        }
        Ok(())
    }

    /// Reverse of the dual (primal, tangent) computation from `dlogits` and
    /// `dldot`, to `dh/dx` in the input's adjoint.
    pub(super) fn dual_reverse(&self, ws: &mut Workspace<B>, x: &B::Buf, t: &B::Buf) -> Result<()> {
        let be = self.be;
        let p = &self.params;
        let Workspace {
            plan,
            val,
            adj,
            tan,
            tadj,
            stats,
            ..
        } = ws;
        for (i, op) in plan.ops.iter().enumerate().rev() {
            let (alo, dy) = split_above(adj, op.out);
            let dy = dy.as_ref().ok_or_else(|| inv("adjoint"))?;
            if plan.tangent_zero[op.out] {
                // a parameter-free op of zero-tangent inputs: first order only
                param_free_backward(be, op, alo, dy, val, x)?;
                continue;
            }
            let (tlo, dydot) = split_above(tadj, op.out);
            let dydot = dydot.as_ref().ok_or_else(|| inv("tangent adjoint"))?;
            let xin = value::<B>(val, x, op.inputs[0])?;
            let xdot = || {
                tan[op.inputs[0]]
                    .as_ref()
                    .ok_or_else(|| inv("input tangent"))
            };
            match &op.kind {
                OpKind::Conv { shape, w, b } => Contraction {
                    s: shape,
                    w: *w,
                    b: *b,
                }
                .dual_reverse(
                    be,
                    input_adj(alo, op, 0),
                    input_adj(tlo, op, 0),
                    dy,
                    dydot,
                    p,
                    t,
                )?,
                OpKind::Linear { shape, w, b } => Contraction {
                    s: shape,
                    w: *w,
                    b: *b,
                }
                .dual_reverse(
                    be,
                    input_adj(alo, op, 0),
                    input_adj(tlo, op, 0),
                    dy,
                    dydot,
                    p,
                    t,
                )?,
                OpKind::GroupNorm { .. } | OpKind::BatchNorm { .. } => {
                    let st = stats[i].as_ref().ok_or_else(|| inv("statistics"))?;
                    self.norm_op(&op.kind)?.dual_reverse(
                        be,
                        required_adj(alo, op, 0)?,
                        required_adj(tlo, op, 0)?,
                        dy,
                        dydot,
                        xin,
                        xdot()?,
                        st,
                        p,
                        t,
                    )?
                }
                OpKind::Act(a) => act::dual_reverse(
                    be,
                    required_adj(alo, op, 0)?,
                    required_adj(tlo, op, 0)?,
                    dy,
                    dydot,
                    xin,
                    xdot()?,
                    *a,
                )?,
                OpKind::Pool { shape, kind } => pool::dual_reverse(
                    be,
                    required_adj(alo, op, 0)?,
                    required_adj(tlo, op, 0)?,
                    dy,
                    dydot,
                    xin,
                    shape,
                    *kind,
                )?,
                OpKind::Add => {
                    for j in 0..2 {
                        if let Some(d) = input_adj(alo, op, j) {
                            add::backward(be, d, dy)?;
                        }
                        if let Some(d) = input_adj(tlo, op, j) {
                            add::backward(be, d, dydot)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The normalisation of a `GroupNorm` / `BatchNorm` op (BatchNorm with its
    /// running state, for the eval-mode and batch-statistics passes alike).
    fn norm_op<'a>(&'a self, kind: &'a OpKind) -> Result<NormOp<'a, B>> {
        match kind {
            OpKind::GroupNorm { shape, gamma, beta } => Ok(NormOp {
                s: shape,
                gamma: *gamma,
                beta: *beta,
                running: None,
            }),
            OpKind::BatchNorm {
                shape,
                gamma,
                beta,
                running,
            } => Ok(NormOp {
                s: shape,
                gamma: *gamma,
                beta: *beta,
                running: Some(
                    self.running
                        .get(*running)
                        .ok_or_else(|| inv("running state"))?,
                ),
            }),
            _ => Err(inv("normalisation")),
        }
    }
}

/// The input adjoints of a parameter-free op (activation, pooling, add).
fn param_free_backward<B: Backend>(
    be: &B,
    op: &Op,
    lo: &mut [Option<B::Buf>],
    dy: &B::Buf,
    val: &[Option<B::Buf>],
    x: &B::Buf,
) -> Result<()> {
    let xin = value::<B>(val, x, op.inputs[0])?;
    match &op.kind {
        OpKind::Act(a) => act::backward(be, required_adj(lo, op, 0)?, dy, xin, *a),
        OpKind::Pool { shape, kind } => {
            pool::backward(be, required_adj(lo, op, 0)?, dy, xin, shape, *kind)
        }
        OpKind::Add => {
            for j in 0..2 {
                if let Some(d) = input_adj(lo, op, j) {
                    add::backward(be, d, dy)?;
                }
            }
            Ok(())
        }
        _ => Err(Error::Shape(format!(
            "{}: an op with parameters in the parameter-free path",
            op.name
        ))),
    }
}
