//! One class's gradient matching and the per-class loop of an outer step
//! ([`Network::outer_grad`]): the one path condensation, tests, the determinism
//! check and the benchmarks all run.

use super::graphs::SynGraphs;
use super::{finite, inv, Mode, Network, Workspace, WorkspaceOpts};
use crate::augment::{apply_bwd_in_place, apply_fwd_in_place};
use crate::backend::{AugOp, Backend, ImgShape, Metric};
use crate::error::{Error, Result};
use crate::model::Model;

impl<B: Backend> Network<'_, B> {
    /// Allocates the workspace of one class's gradient matching: `n_real` real
    /// images and `ipc` synthetic images per class.
    pub fn match_workspace(&self, n_real: usize, ipc: usize) -> Result<MatchWorkspace<B>> {
        let be = self.be;
        let k = self.model.num_classes;
        let img = self.model.image_len();
        let mut real_labels = Vec::with_capacity(k);
        let mut syn_labels = Vec::with_capacity(k);
        for c in 0..k as u32 {
            real_labels.push(be.upload_labels(&vec![c; n_real])?);
            syn_labels.push(be.upload_labels(&vec![c; ipc])?);
        }
        Ok(MatchWorkspace {
            real: self.workspace(n_real, WorkspaceOpts::default())?,
            syn: self.workspace(
                ipc,
                WorkspaceOpts {
                    input_grad: true,
                    dual: true,
                },
            )?,
            g_real: be.alloc(self.layout.total)?,
            g_syn: be.alloc(self.layout.total)?,
            v: be.alloc(self.layout.total)?,
            syn_c: Some(be.alloc(ipc * img)?),
            real_x: Some(be.alloc(n_real * img)?),
            aug_a: be.alloc(ipc * img)?,
            aug_b: be.alloc(ipc * img)?,
            dsyn: be.alloc(ipc * img)?,
            real_labels,
            syn_labels,
            img: ImgShape {
                n: ipc as u32,
                c: self.model.in_channels as u32,
                h: self.model.image_h as u32,
                w: self.model.image_w as u32,
            },
            tensors: self.layout.match_tensors(),
            graphs: SynGraphs::new(be.graphs_supported() && be.graphs_by_default()),
        })
    }

    fn match_mode(&self) -> Mode {
        if self.model.has_batchnorm() {
            Mode::Eval
        } else {
            Mode::Train
        }
    }

    /// `g_real` and `g_syn` for one class, and `D` with `v = dD/dg_syn` in `mw.v`.
    fn match_forward(
        &mut self,
        mw: &mut MatchWorkspace<B>,
        real: &B::Buf,
        syn: &B::Buf,
        class: usize,
        aug: &[AugOp],
        metric: Metric,
    ) -> Result<f64> {
        if class >= self.model.num_classes {
            return Err(Error::Shape(format!(
                "class {class} of a {}-class network",
                self.model.num_classes
            )));
        }
        let be = self.be;
        let len = mw.img.len();
        if be.buf_len(syn) != len {
            return Err(Error::Shape(format!(
                "synthetic images: {} elements, expected {} images = {len}",
                be.buf_len(syn),
                mw.img.n
            )));
        }
        for op in aug {
            if op.batch() != mw.img.n as usize {
                return Err(Error::Shape(format!(
                    "augmentation has parameters for {} images, the synthetic batch has {}",
                    op.batch(),
                    mw.img.n
                )));
            }
        }
        let mode = self.match_mode();
        self.loss_and_grads(
            &mut mw.real,
            real,
            &mw.real_labels[class],
            mode,
            &mut mw.g_real,
        )?;
        // x = A(S): ping-pong through the op chain, result in aug_a.
        be.copy_range(&mut mw.aug_a, 0, syn, 0, len)?;
        apply_fwd_in_place(be, aug, &mut mw.aug_a, &mut mw.aug_b, &mw.img)?;
        self.first_order(
            &mut mw.syn,
            &mw.aug_a,
            &mw.syn_labels[class],
            mode,
            &mut mw.g_syn,
            Some(&mut mw.graphs),
        )?;
        let d = be.match_distance(&mut mw.v, &mw.g_syn, &mw.g_real, &mw.tensors, metric)?;
        finite(d, "matching distance")
    }

    /// The matching distance `D(g_syn(A(syn)), g_real(real))` of one class without
    /// its gradient (`real`: the already augmented real batch; `syn`: the class's
    /// synthetic images; `aug`: the same augmentation draw with parameters for the
    /// synthetic batch).
    pub fn matching_loss(
        &mut self,
        mw: &mut MatchWorkspace<B>,
        real: &B::Buf,
        syn: &B::Buf,
        class: usize,
        aug: &[AugOp],
        metric: Metric,
    ) -> Result<f64> {
        self.match_forward(mw, real, syn, class, aug, metric)
    }

    /// One class's matching distance `D` (returned) and its exact gradient w.r.t. the
    /// (un-augmented) synthetic images `dD/dS_c`, left in [`MatchWorkspace::dsyn`]:
    /// `g_real` (first order), `g_syn` on `A(S_c)`, `v = dD/dg_syn`, the dual pass to
    /// `dD/dA(S_c)`, then the augmentation's backward.
    pub fn matching_grad(
        &mut self,
        mw: &mut MatchWorkspace<B>,
        real: &B::Buf,
        syn: &B::Buf,
        class: usize,
        aug: &[AugOp],
        metric: Metric,
    ) -> Result<f64> {
        let be = self.be;
        let d = self.match_forward(mw, real, syn, class, aug, metric)?;
        self.dual_pass(
            &mut mw.syn,
            &mw.aug_a,
            &mw.syn_labels[class],
            &mw.v,
            Some(&mut mw.graphs),
        )?;
        let len = mw.img.len();
        let dx = mw.syn.input_grad().ok_or_else(|| inv("input gradient"))?;
        be.copy_range(&mut mw.aug_a, 0, dx, 0, len)?;
        apply_bwd_in_place(be, aug, &mut mw.aug_a, &mut mw.aug_b, &mw.img)?;
        be.copy_range(&mut mw.dsyn, 0, &mw.aug_a, 0, len)?;
        Ok(d)
    }

    /// One outer step's image gradient with the real batches given: [`Network::outer_grad_with`]
    /// where class `c`'s real batch is `classes[c].real` (already augmented) and its
    /// synthetic-side draw `classes[c].aug`.
    pub fn outer_grad(
        &mut self,
        mw: &mut MatchWorkspace<B>,
        syn_all: &B::Buf,
        classes: &[ClassInput<'_, B>],
        metric: Metric,
        dsyn_all: &mut B::Buf,
        bn: Option<(&mut Workspace<B>, &B::Buf)>,
    ) -> Result<f64> {
        let k = self.model.num_classes;
        if classes.len() != k {
            return Err(Error::Shape(format!(
                "{} class inputs for {k} classes",
                classes.len()
            )));
        }
        let be = self.be;
        self.outer_grad_with(mw, syn_all, metric, dsyn_all, bn, |c, real| {
            let len = be.buf_len(classes[c].real);
            if len != be.buf_len(real) {
                return Err(Error::Shape(format!(
                    "class {c}: real batch of {len} elements, the workspace takes {}",
                    be.buf_len(real)
                )));
            }
            be.copy_range(real, 0, classes[c].real, 0, len)?;
            Ok(classes[c].aug.to_vec())
        })
    }

    /// One outer step's image gradient, the per-class loop of DC/DSA: for every
    /// class `c` (in order), `real_side(c, real)` writes the class's real batch
    /// (`n_real` images, already augmented) into `real` and returns the same
    /// augmentation draw with parameters for the class's `ipc` synthetic images;
    /// then the matching gradient of the class's rows of `syn_all`
    /// (`[K*ipc, C, H, W]`, class-major) goes into the matching rows of `dsyn_all`
    /// (same shape, overwritten). Returns the sum of the class distances. For
    /// BatchNorm networks `bn` (a batch of real images with its workspace; the
    /// reference takes 16 per class) refreshes the running statistics first.
    pub fn outer_grad_with(
        &mut self,
        mw: &mut MatchWorkspace<B>,
        syn_all: &B::Buf,
        metric: Metric,
        dsyn_all: &mut B::Buf,
        bn: Option<(&mut Workspace<B>, &B::Buf)>,
        mut real_side: impl FnMut(usize, &mut B::Buf) -> Result<Vec<AugOp>>,
    ) -> Result<f64> {
        let be = self.be;
        let k = self.model.num_classes;
        let per = mw.img.len();
        for (what, b) in [
            ("synthetic set", syn_all),
            ("synthetic gradient", &*dsyn_all),
        ] {
            if be.buf_len(b) != k * per {
                return Err(Error::Shape(format!(
                    "{what}: {} elements, expected {k} classes x {} images = {}",
                    be.buf_len(b),
                    mw.img.n,
                    k * per
                )));
            }
        }
        if self.model.has_batchnorm() {
            match bn {
                Some((ws, x)) => self.refresh_bn(ws, x)?,
                None => {
                    return Err(Error::option(
                        "model",
                        "a BatchNorm network needs a real batch to refresh its running statistics before matching",
                    ))
                }
            }
        }
        let mut total = 0.0;
        for c in 0..k {
            let mut real = mw.real_x.take().ok_or_else(|| inv("real batch"))?;
            let r = self.class_step(mw, syn_all, c, &mut real, metric, &mut real_side);
            mw.real_x = Some(real);
            total += r.map_err(|e| match e {
                Error::NonFinite(m) => Error::NonFinite(format!("{m} (class {c})")),
                e => e,
            })?;
            be.copy_range(dsyn_all, c * per, &mw.dsyn, 0, per)?;
        }
        Ok(total)
    }

    /// Class `c` of [`Network::outer_grad_with`]: its real batch into `real`, its
    /// images into the class buffer, the matching gradient into `mw.dsyn`.
    fn class_step(
        &mut self,
        mw: &mut MatchWorkspace<B>,
        syn_all: &B::Buf,
        c: usize,
        real: &mut B::Buf,
        metric: Metric,
        real_side: &mut impl FnMut(usize, &mut B::Buf) -> Result<Vec<AugOp>>,
    ) -> Result<f64> {
        let aug = real_side(c, real)?;
        let per = mw.img.len();
        let mut syn_c = mw.syn_c.take().ok_or_else(|| inv("class images"))?;
        let r = self
            .be
            .copy_range(&mut syn_c, 0, syn_all, c * per, per)
            .and_then(|()| self.matching_grad(mw, real, &syn_c, c, &aug, metric));
        mw.syn_c = Some(syn_c);
        r
    }
}

/// The real-side input of one class in [`Network::outer_grad`].
pub struct ClassInput<'a, B: Backend> {
    /// The class's real batch, already augmented with the siamese draw.
    pub real: &'a B::Buf,
    /// The same draw, with parameters for the class's `ipc` synthetic images.
    pub aug: &'a [AugOp],
}

/// Buffers of one class's gradient matching ([`Network::match_workspace`]).
pub struct MatchWorkspace<B: Backend> {
    /// Real-batch workspace (first order, no input gradient).
    pub real: Workspace<B>,
    /// Synthetic-batch workspace (input gradient and dual buffers).
    pub syn: Workspace<B>,
    /// Gradient on the real batch (flat layout).
    pub g_real: B::Buf,
    /// Gradient on the augmented synthetic batch (flat layout).
    pub g_syn: B::Buf,
    /// `v = dD/dg_syn` (flat layout).
    pub v: B::Buf,
    syn_c: Option<B::Buf>,
    real_x: Option<B::Buf>,
    aug_a: B::Buf,
    aug_b: B::Buf,
    /// `dD/dS_c` of the last [`Network::matching_grad`] (`[ipc, C, H, W]`).
    pub dsyn: B::Buf,
    real_labels: Vec<B::Labels>,
    syn_labels: Vec<B::Labels>,
    img: ImgShape,
    tensors: Vec<crate::backend::MatchTensor>,
    graphs: SynGraphs<B>,
}

impl<B: Backend> MatchWorkspace<B> {
    /// Real images per class this workspace takes.
    pub fn n_real(&self) -> usize {
        self.real.batch()
    }
    /// Synthetic images per class.
    pub fn ipc(&self) -> usize {
        self.syn.batch()
    }
    /// The graphs of the synthetic side (`graphs.rs`): on by default where
    /// the backend says so (`cuda`), off otherwise; `set_on(true)` turns them on for
    /// `emu` (a backend without graphs then runs every region directly).
    pub fn graphs(&self) -> &SynGraphs<B> {
        &self.graphs
    }
    /// The graphs, to turn them on or off or drop them.
    pub fn graphs_mut(&mut self) -> &mut SynGraphs<B> {
        &mut self.graphs
    }
}
/// FLOP (conv and linear multiply-adds x 2) of one class's [`Network::matching_grad`]:
/// the real side (forward, weight gradients, input gradients of all but the ops
/// reading the input) and the synthetic side (first-order pass with input gradient,
/// the primal and tangent forward, the reverse of the dual pass). Element-wise ops
/// not counted.
pub fn matching_flops(model: &Model, n_real: usize, ipc: usize) -> Result<f64> {
    let (_, real) = crate::model::plan::compile(model, n_real)?;
    let (_, syn) = crate::model::plan::compile(model, ipc)?;
    let (f_real, c1_real) = (real.forward_flops(), real.input_op_flops());
    let (f_syn, c1_syn) = (syn.forward_flops(), syn.input_op_flops());
    Ok(3.0 * f_real - c1_real + 9.0 * f_syn - 2.0 * c1_syn)
}
