//! Per-step math on a Backend: forward, backward, the exact second-order pass
//! (gradient of the matching distance w.r.t. the input), for any model description.
//!
//! - [`Network`] owns the flat parameter buffer (and the BatchNorm running state,
//!   the inner-loop gradient and momentum buffers) of one model on a backend.
//! - [`Workspace`] holds every intermediate of a pass for one batch size, derived
//!   from the model's op list ([`crate::model::plan`]). It is allocated once and
//!   reused: no op of a step allocates.
//! - [`MatchWorkspace`] bundles what one class's gradient matching needs (a
//!   real-batch workspace, a synthetic-batch workspace with the dual buffers, the
//!   gradient buffers and the augmentation scratch); [`Network::outer_grad`] is the
//!   one per-class matching loop that condensation, tests and benchmarks share.
//!
//! The engine walks the op list (`passes.rs`); each layer kind's four passes
//! (forward, backward, tangent, dual reverse) live in `layers/`. The maths of every
//! pass, in particular the exact second-order pass (forward-mode tangent along
//! `v = dD/dg_syn`, then the reverse pass of the dual computation), is written down
//! in `docs/derivations/engine.md`.

mod graphs;
mod layers;
mod matching;
mod passes;
mod workspace;

pub use graphs::{GraphStats, SynGraphs};
pub use matching::{matching_flops, ClassInput, MatchWorkspace};
pub use workspace::Workspace;

use crate::backend::{Backend, CeOut, Scalar as _, SgdParams};
use crate::error::{Error, Result};
use crate::model::{Model, ParamLayout};
use graphs::{graphed, Region};
use rand::Rng;

/// Forward mode of the network; only BatchNorm layers behave differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// BatchNorm normalises with batch statistics and updates its running state.
    Train,
    /// BatchNorm normalises with its running statistics.
    Eval,
}

/// Which optional buffers a [`Workspace`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WorkspaceOpts {
    /// Keep the gradient w.r.t. the network input (needed by the dual pass).
    pub input_grad: bool,
    /// Tangent and tangent-adjoint buffers for the second-order pass.
    pub dual: bool,
}

fn inv(what: &str) -> Error {
    Error::Shape(format!(
        "workspace lacks its {what} buffer (was it made for this network and pass?)"
    ))
}

fn finite(v: f64, what: &str) -> Result<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(Error::NonFinite(format!("{what} is {v}")))
    }
}

/// One network on a backend: the flat parameters, the BatchNorm running state, and
/// the gradient / momentum buffers of its own SGD ([`Network::train_step`]).
pub struct Network<'b, B: Backend> {
    be: &'b B,
    model: Model,
    layout: ParamLayout,
    params: B::Buf,
    running: Vec<B::Buf>,
    /// Own gradient buffer of `train_step` (taken out while in use).
    grads: Option<B::Buf>,
    momentum: B::Buf,
    /// Train-mode forward passes since the last (re)initialisation: PyTorch's
    /// BatchNorm `num_batches_tracked`.
    train_forwards: u64,
}

impl<'b, B: Backend> Network<'b, B> {
    /// A freshly initialised network (PyTorch defaults) drawn from `rng`; `model`
    /// is a [`Model`] description or anything that converts into one (a
    /// [`crate::model::ConvNetConfig`]).
    pub fn new<R: Rng + ?Sized>(be: &'b B, model: impl Into<Model>, rng: &mut R) -> Result<Self> {
        let model = model.into();
        let layout = ParamLayout::new(&model)?;
        let host = layout.init_params::<B::E, R>(rng);
        Self::with_layout(be, model, layout, &host)
    }

    /// A network with the caller's parameters: `params` is the flat vector in the
    /// model's layout ([`Network::layout`]: every tensor in PyTorch registration
    /// order, each row-major, as `state_dict` lists them). BatchNorm running
    /// statistics start at mean 0, variance 1.
    ///
    /// The exact gradient of one class's matching distance for given images,
    /// parameters and augmentation, checked against a finite difference
    /// (`examples/exact_grad.rs` is the longer version):
    ///
    /// ```
    /// use dsa_condense::augment::{AugDraw, Group};
    /// use dsa_condense::backend::{cpu::Cpu, AugOp, Backend, Metric};
    /// use dsa_condense::engine::Network;
    /// use dsa_condense::model::Model;
    ///
    /// # fn main() -> dsa_condense::Result<()> {
    /// let be = Cpu::<f64>::new(1)?;
    /// let model = Model::from_name("ConvNetD1", 1, 8, 8, 3)?;
    /// let params: Vec<f64> = (0..model.layout()?.total)
    ///     .map(|i| 0.1 * (i as f64 * 0.37).sin())
    ///     .collect();
    /// let mut net = Network::from_params(&be, model, &params)?;
    /// let real = be.upload(&(0..4 * 64).map(|i| (i % 7) as f64 / 3.0 - 1.0).collect::<Vec<_>>())?;
    /// let syn_host: Vec<f64> = (0..64).map(|i| (i % 5) as f64 / 2.0 - 1.0).collect();
    /// let mut syn = be.upload(&syn_host)?;
    /// let draw = AugDraw::from_ops(vec![Group::Color], vec![AugOp::Contrast(vec![1.3])])?;
    /// let mut mw = net.match_workspace(4, 1)?;
    /// net.matching_grad(&mut mw, &real, &syn, 1, &draw.ops(1), Metric::Ours)?;
    /// let exact = be.download(&mw.dsyn)?[10];
    /// let mut at = |d: f64| {
    ///     let mut x = syn_host.clone();
    ///     x[10] += d;
    ///     be.write(&mut syn, &x)?;
    ///     net.matching_loss(&mut mw, &real, &syn, 1, &draw.ops(1), Metric::Ours)
    /// };
    /// let fd = (at(1e-6)? - at(-1e-6)?) / 2e-6;
    /// assert!((exact - fd).abs() <= 1e-6 * fd.abs().max(1.0), "{exact} vs {fd}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_params(be: &'b B, model: impl Into<Model>, params: &[B::E]) -> Result<Self> {
        let model = model.into();
        let layout = ParamLayout::new(&model)?;
        if params.len() != layout.total {
            return Err(Error::Shape(format!(
                "{} parameters given, {} has {} (docs/architectures.md)",
                params.len(),
                model.name,
                layout.total
            )));
        }
        Self::with_layout(be, model, layout, params)
    }

    fn with_layout(be: &'b B, model: Model, layout: ParamLayout, host: &[B::E]) -> Result<Self> {
        let params = be.upload(host)?;
        let grads = be.alloc(layout.total)?;
        let momentum = be.alloc(layout.total)?;
        let mut net = Self {
            be,
            model,
            layout,
            params,
            running: Vec::new(),
            grads: Some(grads),
            momentum,
            train_forwards: 0,
        };
        net.running = net.init_running_bufs()?;
        Ok(net)
    }
    fn init_running_bufs(&self) -> Result<Vec<B::Buf>> {
        let host = self.layout.init_running::<B::E>();
        self.layout
            .running
            .iter()
            .map(|seg| self.be.upload(&host[seg.range()]))
            .collect()
    }

    /// Re-draws the parameters (a fresh random network, as every DC/DSA iteration
    /// does), resets the BatchNorm running state and the SGD momentum.
    ///
    /// Every buffer keeps its allocation (and address), so captured launch
    /// sequences stay valid across iterations.
    pub fn reinit<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Result<()> {
        self.set_params(&self.layout.init_params::<B::E, R>(rng))?;
        self.set_running(&self.layout.init_running::<B::E>())?;
        self.train_forwards = 0;
        self.be.fill(&mut self.momentum, B::E::ZERO)
    }

    /// Train-mode forward passes since the network was made or re-initialised
    /// ([`Network::reinit`]): every one updates the BatchNorm running state, and
    /// PyTorch counts them in each BatchNorm layer's `num_batches_tracked` buffer.
    pub fn num_batches_tracked(&self) -> u64 {
        self.train_forwards
    }

    /// Sets [`Network::num_batches_tracked`] (a network loaded from a file keeps the
    /// count it was saved with).
    pub fn set_num_batches_tracked(&mut self, n: u64) {
        self.train_forwards = n;
    }

    /// Counts a forward pass in `mode` (see [`Network::num_batches_tracked`]).
    fn count_forward(&mut self, mode: Mode) {
        if mode == Mode::Train {
            self.train_forwards += 1;
        }
    }

    /// The backend.
    pub fn backend(&self) -> &'b B {
        self.be
    }
    /// The architecture.
    /// The model description.
    pub fn model(&self) -> &Model {
        &self.model
    }
    /// The parameter offset table.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }
    /// The flat parameter buffer.
    pub fn params(&self) -> &B::Buf {
        &self.params
    }
    /// The flat parameter buffer, writable.
    pub fn params_mut(&mut self) -> &mut B::Buf {
        &mut self.params
    }
    /// Overwrites the parameters from the host.
    pub fn set_params(&mut self, host: &[B::E]) -> Result<()> {
        if host.len() != self.layout.total {
            return Err(Error::Shape(format!(
                "set_params: {} values for {} parameters",
                host.len(),
                self.layout.total
            )));
        }
        self.be.write(&mut self.params, host)
    }
    /// The BatchNorm running state on the host, flat in [`ParamLayout::running`] order.
    pub fn running_host(&self) -> Result<Vec<B::E>> {
        let mut out = Vec::with_capacity(self.layout.running_total);
        for r in &self.running {
            out.extend(self.be.download(r)?);
        }
        Ok(out)
    }
    /// Overwrites the BatchNorm running state from the host (flat layout).
    pub fn set_running(&mut self, host: &[B::E]) -> Result<()> {
        if host.len() != self.layout.running_total {
            return Err(Error::Shape(format!(
                "set_running: {} values for {} running-state elements",
                host.len(),
                self.layout.running_total
            )));
        }
        for (seg, r) in self.layout.running.iter().zip(self.running.iter_mut()) {
            self.be.write(r, &host[seg.range()])?;
        }
        Ok(())
    }

    /// Allocates a workspace for batches of `n` images.
    pub fn workspace(&self, n: usize, opts: WorkspaceOpts) -> Result<Workspace<B>> {
        Workspace::new(self.be, &self.model, n, opts)
    }

    fn check_ws(&self, ws: &Workspace<B>, x: &B::Buf) -> Result<()> {
        if ws.model != self.model {
            return Err(Error::Shape(format!(
                "workspace was made for another model ({}, not {})",
                ws.model.name, self.model.name
            )));
        }
        let got = self.be.buf_len(x);
        if got != ws.input_len() {
            return Err(Error::Shape(format!(
                "input has {got} elements, the workspace expects {} images of {}x{}x{} = {}",
                ws.batch(),
                self.model.in_channels,
                self.model.image_h,
                self.model.image_w,
                ws.input_len()
            )));
        }
        Ok(())
    }

    fn check_param_buf(&self, what: &str, buf: &B::Buf) -> Result<()> {
        let got = self.be.buf_len(buf);
        if got != self.layout.total {
            return Err(Error::Shape(format!(
                "{what} buffer has {got} elements, the network has {} parameters",
                self.layout.total
            )));
        }
        Ok(())
    }

    /// Forward pass of `x` (`[N, C, H, W]`, N = the workspace's batch) to the logits.
    /// Train mode updates the BatchNorm running state.
    pub fn forward<'w>(
        &mut self,
        ws: &'w mut Workspace<B>,
        x: &B::Buf,
        mode: Mode,
    ) -> Result<&'w B::Buf> {
        self.check_ws(ws, x)?;
        self.forward_impl(ws, x, mode)?;
        self.count_forward(mode);
        Ok(ws.logits())
    }

    /// Mean cross-entropy (and the number of correct arg-max predictions) of `x`.
    pub fn loss(
        &mut self,
        ws: &mut Workspace<B>,
        x: &B::Buf,
        labels: &B::Labels,
        mode: Mode,
    ) -> Result<CeOut> {
        self.check_ws(ws, x)?;
        self.forward_impl(ws, x, mode)?;
        self.count_forward(mode);
        self.ce(ws, labels)
    }

    /// Mean cross-entropy of the logits in `ws`, `dlogits` into the output adjoint.
    fn ce(&self, ws: &mut Workspace<B>, labels: &B::Labels) -> Result<CeOut> {
        let out = ws.plan.output;
        let lin = ws.plan.logits_shape();
        let dlogits = ws.adj[out].as_mut().ok_or_else(|| inv("logit adjoint"))?;
        let logits = ws.val[out].as_ref().ok_or_else(|| inv("logits"))?;
        let r = self.be.ce_fwd_bwd(dlogits, logits, labels, &lin)?;
        finite(r.loss, "cross-entropy loss")?;
        Ok(r)
    }

    /// Forward and full backward: the mean cross-entropy and the gradient of every
    /// parameter into `grads` (flat layout, overwritten); when the workspace keeps
    /// it, also the input gradient ([`Workspace::input_grad`]).
    pub fn loss_and_grads(
        &mut self,
        ws: &mut Workspace<B>,
        x: &B::Buf,
        labels: &B::Labels,
        mode: Mode,
        grads: &mut B::Buf,
    ) -> Result<CeOut> {
        self.first_order(ws, x, labels, mode, grads, None)
    }

    /// The graph key of a pass over `ws` reading `x`: the identity of every buffer
    /// the pass touches (workspace, parameters, running state, `extra`) and `tag`.
    fn graph_key(&self, ws: &Workspace<B>, extra: &[&B::Buf], tag: u64) -> Vec<u64> {
        let be = self.be;
        let mut key = vec![tag];
        for b in std::iter::once(&self.params)
            .chain(self.running.iter())
            .chain(extra.iter().copied())
        {
            key.push(be.buf_addr(b));
            key.push(be.buf_len(b) as u64);
        }
        ws.push_identity(be, &mut key);
        key
    }

    /// [`Network::loss_and_grads`], with the forward and backward launches through
    /// `graphs` when given (see [`graphs`]).
    fn first_order(
        &mut self,
        ws: &mut Workspace<B>,
        x: &B::Buf,
        labels: &B::Labels,
        mode: Mode,
        grads: &mut B::Buf,
        mut graphs: Option<&mut SynGraphs<B>>,
    ) -> Result<CeOut> {
        self.check_param_buf("gradient", grads)?;
        self.check_ws(ws, x)?;
        let be = self.be;
        let key = match graphs {
            Some(_) => self.graph_key(ws, &[x, &*grads], 1 + mode as u64),
            None => Vec::new(),
        };
        graphed(be, graphs.as_deref_mut(), Region::Forward, &key, || {
            self.forward_impl(ws, x, mode)
        })?;
        self.count_forward(mode);
        let out = self.ce(ws, labels)?;
        graphed(be, graphs, Region::Backward, &key, || {
            self.backward_impl(ws, x, mode, grads)
        })?;
        Ok(out)
    }

    /// The exact second-order pass (`docs/derivations/engine.md`): with
    /// `h(x) = <tangent, dL/dtheta (theta, x)>` (the directional derivative of the
    /// mean cross-entropy along `tangent` in parameter space), returns `h` and writes
    /// `dh/dx` into [`Workspace::input_grad`]. BatchNorm layers run in eval mode
    /// (running statistics), as the matching step does.
    pub fn dual_input_grad(
        &mut self,
        ws: &mut Workspace<B>,
        x: &B::Buf,
        labels: &B::Labels,
        tangent: &B::Buf,
    ) -> Result<f64> {
        self.dual_pass(ws, x, labels, tangent, None)
    }

    /// [`Network::dual_input_grad`], with the launches before and after the
    /// loss through `graphs` when given.
    fn dual_pass(
        &mut self,
        ws: &mut Workspace<B>,
        x: &B::Buf,
        labels: &B::Labels,
        tangent: &B::Buf,
        mut graphs: Option<&mut SynGraphs<B>>,
    ) -> Result<f64> {
        self.check_param_buf("tangent", tangent)?;
        if !ws.opts.dual {
            return Err(Error::Shape(
                "dual_input_grad needs a workspace made with dual = true".into(),
            ));
        }
        self.check_ws(ws, x)?;
        let be = self.be;
        let key = match graphs {
            Some(_) => self.graph_key(ws, &[x, tangent], 0),
            None => Vec::new(),
        };
        graphed(be, graphs.as_deref_mut(), Region::DualForward, &key, || {
            self.forward_impl(ws, x, Mode::Eval)?;
            self.tangent_forward(ws, x, tangent)
        })?;
        let (out, lin) = (ws.plan.output, ws.plan.logits_shape());
        let logits = ws.val[out].as_ref().ok_or_else(|| inv("logits"))?;
        let ldot = ws.tan[out].as_ref().ok_or_else(|| inv("logit tangent"))?;
        let dlogits = ws.adj[out].as_mut().ok_or_else(|| inv("logit adjoint"))?;
        let dldot = ws.tadj[out]
            .as_mut()
            .ok_or_else(|| inv("logit tangent adjoint"))?;
        let h = be.ce_dual(dlogits, dldot, logits, ldot, labels, &lin)?;
        finite(h, "directional derivative <v, dL/dtheta>")?;
        graphed(be, graphs, Region::DualReverse, &key, || {
            self.dual_reverse(ws, x, tangent)
        })?;
        Ok(h)
    }

    /// One inner-loop / evaluation training step: forward in train mode, mean
    /// cross-entropy, backward, then `sgd_step` with `hp` on the network's own
    /// gradient and momentum buffers.
    pub fn train_step(
        &mut self,
        ws: &mut Workspace<B>,
        x: &B::Buf,
        labels: &B::Labels,
        hp: SgdParams,
    ) -> Result<CeOut> {
        let mut grads = self.grads.take().ok_or_else(|| inv("gradient"))?;
        let r = self.loss_and_grads(ws, x, labels, Mode::Train, &mut grads);
        let r = r.and_then(|out| {
            self.be
                .sgd_step(&mut self.params, &grads, &mut self.momentum, hp)?;
            Ok(out)
        });
        self.grads = Some(grads);
        r
    }

    /// Resets the momentum buffer of [`Network::train_step`] (a new optimiser).
    pub fn reset_momentum(&mut self) -> Result<()> {
        self.be.fill(&mut self.momentum, B::E::ZERO)
    }

    /// Refreshes the BatchNorm running statistics with one train-mode forward pass
    /// of `x` (the reference refreshes them with 16 real images per class before
    /// every outer step). A
    /// no-op for networks without BatchNorm.
    pub fn refresh_bn(&mut self, ws: &mut Workspace<B>, x: &B::Buf) -> Result<()> {
        if !self.model.has_batchnorm() {
            return Ok(());
        }
        self.check_ws(ws, x)?;
        self.forward_impl(ws, x, Mode::Train)?;
        self.count_forward(Mode::Train);
        Ok(())
    }
}
