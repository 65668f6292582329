//! [`Workspace`]: every intermediate of the passes over one batch size, derived from
//! the model's op list ([`Plan`]) and allocated once.
//!
//! Per value slot (slot 0 is the caller's input, not owned): the value, its adjoint
//! and, for the second-order pass, its tangent and the tangent's adjoint; per op,
//! the normalisation statistics. The input's adjoint (slot 0) exists only when the
//! input gradient is asked for (or an op that cannot skip it reads the input).

use super::{inv, WorkspaceOpts};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::plan::{compile, OpKind, Plan, Slot};
use crate::model::Model;

/// Every intermediate of a forward / backward / dual pass for a batch of `n`
/// images, allocated once ([`super::Network::workspace`]) and reused across steps.
pub struct Workspace<B: Backend> {
    pub(super) model: Model,
    pub(super) plan: Plan,
    pub(super) opts: WorkspaceOpts,
    /// Values per slot (`[0]` is None: the input is the caller's).
    pub(super) val: Vec<Option<B::Buf>>,
    /// Adjoints per slot (`[0]`: the input gradient, when kept).
    pub(super) adj: Vec<Option<B::Buf>>,
    /// Tangents per slot (dual workspaces; None where the tangent is zero).
    pub(super) tan: Vec<Option<B::Buf>>,
    /// Adjoints of the tangents (dual workspaces; None where the tangent is zero).
    pub(super) tadj: Vec<Option<B::Buf>>,
    /// Normalisation statistics per op (None for other ops).
    pub(super) stats: Vec<Option<B::Buf>>,
}

impl<B: Backend> Workspace<B> {
    pub(super) fn new(be: &B, model: &Model, n: usize, opts: WorkspaceOpts) -> Result<Self> {
        if n == 0 {
            return Err(Error::Shape("workspace for a batch of 0 images".into()));
        }
        let (_, plan) = compile(model, n)?;
        let slots = plan.slot_len.len();
        let alloc_if = |on: bool, len: usize| -> Result<Option<B::Buf>> {
            if on {
                be.alloc(len).map(Some)
            } else {
                Ok(None)
            }
        };
        // Ops that must write an input adjoint (all but conv / linear) reading the input.
        let input_adj_needed = plan.ops.iter().any(|o| {
            o.inputs.contains(&0) && !matches!(o.kind, OpKind::Conv { .. } | OpKind::Linear { .. })
        });
        let mut val = Vec::with_capacity(slots);
        let mut adj = Vec::with_capacity(slots);
        let mut tan = Vec::with_capacity(slots);
        let mut tadj = Vec::with_capacity(slots);
        for (s, &len) in plan.slot_len.iter().enumerate() {
            let dual = opts.dual && !plan.tangent_zero[s];
            val.push(alloc_if(s != 0, len)?);
            adj.push(alloc_if(
                s != 0 || opts.input_grad || opts.dual || input_adj_needed,
                len,
            )?);
            tan.push(alloc_if(dual, len)?);
            tadj.push(alloc_if(dual, len)?);
        }
        let stats = plan
            .ops
            .iter()
            .map(|op| match &op.kind {
                OpKind::GroupNorm { shape, .. } => be.alloc(2 * shape.stats_len()).map(Some),
                OpKind::BatchNorm { shape, .. } => be.alloc(2 * shape.c as usize).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            model: model.clone(),
            plan,
            opts,
            val,
            adj,
            tan,
            tadj,
            stats,
        })
    }

    /// Batch size this workspace is for.
    pub fn batch(&self) -> usize {
        self.plan.n
    }
    /// The op list this workspace was made for.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
    /// Logits `[N, K]` of the last forward pass.
    pub fn logits(&self) -> &B::Buf {
        self.val[self.plan.output]
            .as_ref()
            .expect("the output slot is allocated")
    }
    /// Gradient w.r.t. the input of the last pass that computed it (first-order
    /// pass: `dL/dx`; dual pass: `dh/dx`); None unless the workspace keeps it.
    pub fn input_grad(&self) -> Option<&B::Buf> {
        self.adj[0].as_ref()
    }
    /// Elements of one input batch `[N, C, H, W]`.
    pub fn input_len(&self) -> usize {
        self.plan.slot_len[0]
    }

    /// Address and length of every buffer of the workspace, appended to `key`.
    pub(super) fn push_identity(&self, be: &B, key: &mut Vec<u64>) {
        for b in [&self.val, &self.adj, &self.tan, &self.tadj, &self.stats]
            .into_iter()
            .flatten()
            .flatten()
        {
            key.push(be.buf_addr(b));
            key.push(be.buf_len(b) as u64);
        }
    }
}

/// The value of slot `s`: the caller's input for slot 0.
pub(super) fn value<'a, B: Backend>(
    bufs: &'a [Option<B::Buf>],
    x: &'a B::Buf,
    s: Slot,
) -> Result<&'a B::Buf> {
    if s == 0 {
        Ok(x)
    } else {
        bufs[s].as_ref().ok_or_else(|| inv("value"))
    }
}

/// Slot `w` mutably and the slots below it (every op's inputs lie below its output).
pub(super) fn split_below<T>(v: &mut [Option<T>], w: Slot) -> (&[Option<T>], &mut Option<T>) {
    let (lo, hi) = v.split_at_mut(w);
    (lo, &mut hi[0])
}

/// Slot `r` (shared) and the slots below it (mutable): a reverse pass reads an op's
/// output adjoint and writes its inputs' adjoints.
pub(super) fn split_above<T>(v: &mut [Option<T>], r: Slot) -> (&mut [Option<T>], &Option<T>) {
    let (lo, hi) = v.split_at_mut(r);
    (lo, &hi[0])
}
