//! Per-step math on a Backend: forward, backward, the exact second-order pass (gradient of the matching distance w.r.t. the input).
//!
//! - [`Network`] owns the flat parameter buffer (and the BatchNorm running state,
//!   the inner-loop gradient and momentum buffers) of one ConvNet on a backend.
//! - [`Workspace`] holds every intermediate of a pass for one batch size
//!   (activations, norm statistics, adjoints and, for the dual pass, tangents and
//!   their adjoints). It is allocated once and reused: no op of a step allocates.
//! - [`MatchWorkspace`] bundles what one class's gradient matching needs (a
//!   real-batch workspace, a synthetic-batch workspace with the dual buffers, the
//!   gradient buffers and the augmentation scratch).
//!
//! The maths of every pass, in particular the exact second-order pass
//! (forward-mode tangent along `v = dD/dg_syn`, then the reverse pass of the dual
//! computation), is written down in `docs/derivations/engine.md`.

mod graphs;

pub use graphs::{GraphStats, SynGraphs};

use crate::augment::{apply_bwd_in_place, apply_fwd_in_place};
use crate::backend::{
    Act, AugOp, Backend, CeOut, ConvShape, ImgShape, LinearShape, Metric, NormShape, PoolKind,
    PoolShape, Scalar as _, SgdParams,
};
use crate::error::{Error, Result};
use crate::model::{ConvNetConfig, Norm, ParamLayout, BN_MOMENTUM};
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

/// Buffers of one block: `z = conv(x)`, `s = norm(z)`, `a = act(s)`, `p = pool(a)`.
struct BlockBufs<B: Backend> {
    z: B::Buf,
    s: Option<B::Buf>,
    stats: Option<B::Buf>,
    a: B::Buf,
    p: Option<B::Buf>,
    /// Two adjoint buffers of the size of `z` (reused along the block's reverse pass).
    g1: B::Buf,
    g2: B::Buf,
    /// Adjoint of the block output.
    dout: B::Buf,
    dual: Option<DualBufs<B>>,
}

/// Tangents (`*dot`) and their adjoints of one block.
struct DualBufs<B: Backend> {
    zdot: B::Buf,
    sdot: Option<B::Buf>,
    adot: B::Buf,
    pdot: Option<B::Buf>,
    g1dot: B::Buf,
    g2dot: B::Buf,
    doutdot: B::Buf,
}

/// Every intermediate of a forward / backward / dual pass for a batch of `n`
/// images, allocated once ([`Network::workspace`]) and reused across steps.
pub struct Workspace<B: Backend> {
    n: usize,
    cfg: ConvNetConfig,
    opts: WorkspaceOpts,
    conv: Vec<ConvShape>,
    norm: Vec<Option<NormShape>>,
    pool: Vec<Option<PoolShape>>,
    lin: LinearShape,
    blocks: Vec<BlockBufs<B>>,
    logits: B::Buf,
    dlogits: B::Buf,
    ldot: Option<B::Buf>,
    dldot: Option<B::Buf>,
    dx: Option<B::Buf>,
}

impl<B: Backend> Workspace<B> {
    /// Batch size this workspace is for.
    pub fn batch(&self) -> usize {
        self.n
    }
    /// Logits `[N, K]` of the last forward pass.
    pub fn logits(&self) -> &B::Buf {
        &self.logits
    }
    /// Gradient w.r.t. the input of the last pass that computed it (first-order
    /// pass: `dL/dx`; dual pass: `dh/dx`); None unless the workspace keeps it.
    pub fn input_grad(&self) -> Option<&B::Buf> {
        self.dx.as_ref()
    }
    /// Elements of one input batch `[N, C, H, W]`.
    pub fn input_len(&self) -> usize {
        self.n * self.cfg.in_channels * self.cfg.image_h * self.cfg.image_w
    }

    /// Address and length of every buffer of the workspace, appended to `key`.
    fn push_identity(&self, be: &B, key: &mut Vec<u64>) {
        let mut push = |b: &B::Buf| {
            key.push(be.buf_addr(b));
            key.push(be.buf_len(b) as u64);
        };
        for blk in &self.blocks {
            for b in [&blk.z, &blk.a, &blk.g1, &blk.g2, &blk.dout] {
                push(b);
            }
            for b in [&blk.s, &blk.stats, &blk.p].into_iter().flatten() {
                push(b);
            }
            if let Some(d) = &blk.dual {
                for b in [&d.zdot, &d.adot, &d.g1dot, &d.g2dot, &d.doutdot] {
                    push(b);
                }
                for b in [&d.sdot, &d.pdot].into_iter().flatten() {
                    push(b);
                }
            }
        }
        push(&self.logits);
        push(&self.dlogits);
        for b in [&self.ldot, &self.dldot, &self.dx].into_iter().flatten() {
            push(b);
        }
    }
}

fn inv(what: &str) -> Error {
    Error::Shape(format!(
        "workspace lacks its {what} buffer (was it made for this network and pass?)"
    ))
}

fn req<'a, T>(o: &'a Option<T>, what: &str) -> Result<&'a T> {
    o.as_ref().ok_or_else(|| inv(what))
}

fn req_mut<'a, T>(o: &'a mut Option<T>, what: &str) -> Result<&'a mut T> {
    o.as_mut().ok_or_else(|| inv(what))
}

fn finite(v: f64, what: &str) -> Result<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(Error::NonFinite(format!("{what} is {v}")))
    }
}

/// One ConvNet on a backend: the flat parameters, the BatchNorm running state, and
/// the gradient / momentum buffers of its own SGD ([`Network::train_step`]).
pub struct Network<'b, B: Backend> {
    be: &'b B,
    cfg: ConvNetConfig,
    layout: ParamLayout,
    act: Act,
    pool: Option<PoolKind>,
    params: B::Buf,
    running: Vec<B::Buf>,
    /// Own gradient buffer of `train_step` (taken out while in use).
    grads: Option<B::Buf>,
    momentum: B::Buf,
}

impl<'b, B: Backend> Network<'b, B> {
    /// A freshly initialised network (PyTorch defaults, SPEC §1.2) drawn from `rng`.
    pub fn new<R: Rng + ?Sized>(be: &'b B, cfg: ConvNetConfig, rng: &mut R) -> Result<Self> {
        cfg.validate()?;
        let layout = ParamLayout::new(&cfg)?;
        let params = be.upload(&layout.init_params::<B::E, R>(rng))?;
        let grads = be.alloc(layout.total)?;
        let momentum = be.alloc(layout.total)?;
        let mut net = Self {
            be,
            cfg,
            act: cfg.act,
            pool: cfg.pool.kind(),
            layout,
            params,
            running: Vec::new(),
            grads: Some(grads),
            momentum,
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
        self.be.fill(&mut self.momentum, B::E::ZERO)
    }

    /// The backend.
    pub fn backend(&self) -> &'b B {
        self.be
    }
    /// The architecture.
    pub fn config(&self) -> &ConvNetConfig {
        &self.cfg
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
        if n == 0 {
            return Err(Error::Shape("workspace for a batch of 0 images".into()));
        }
        let be = self.be;
        let cfg = self.cfg;
        let geom = cfg.blocks()?;
        let conv = cfg.conv_shapes(n)?;
        let norm = cfg.norm_shapes(n)?;
        let pool = cfg.pool_shapes(n)?;
        let lin = cfg.linear_shape(n)?;
        let mut blocks = Vec::with_capacity(geom.len());
        for (b, g) in geom.iter().enumerate() {
            let zl = conv[b].y_len();
            let ol = n * g.cout * g.h_out * g.w_out;
            let has_norm = norm[b].is_some();
            let has_pool = pool[b].is_some();
            let opt = |on: bool, len: usize| -> Result<Option<B::Buf>> {
                if on {
                    be.alloc(len).map(Some)
                } else {
                    Ok(None)
                }
            };
            let stats_len = match cfg.norm {
                Norm::Batch => 2 * g.cout,
                _ => 2 * n * cfg.norm_groups(),
            };
            let dual = if opts.dual {
                Some(DualBufs {
                    zdot: be.alloc(zl)?,
                    sdot: opt(has_norm, zl)?,
                    adot: be.alloc(zl)?,
                    pdot: opt(has_pool, ol)?,
                    g1dot: be.alloc(zl)?,
                    g2dot: be.alloc(zl)?,
                    doutdot: be.alloc(ol)?,
                })
            } else {
                None
            };
            blocks.push(BlockBufs {
                z: be.alloc(zl)?,
                s: opt(has_norm, zl)?,
                stats: opt(has_norm, stats_len)?,
                a: be.alloc(zl)?,
                p: opt(has_pool, ol)?,
                g1: be.alloc(zl)?,
                g2: be.alloc(zl)?,
                dout: be.alloc(ol)?,
                dual,
            });
        }
        let nk = n * cfg.num_classes;
        let in_len = n * cfg.in_channels * cfg.image_h * cfg.image_w;
        Ok(Workspace {
            n,
            cfg,
            opts,
            conv,
            norm,
            pool,
            lin,
            blocks,
            logits: be.alloc(nk)?,
            dlogits: be.alloc(nk)?,
            ldot: if opts.dual { Some(be.alloc(nk)?) } else { None },
            dldot: if opts.dual { Some(be.alloc(nk)?) } else { None },
            dx: if opts.input_grad || opts.dual {
                Some(be.alloc(in_len)?)
            } else {
                None
            },
        })
    }

    fn check_ws(&self, ws: &Workspace<B>, x: &B::Buf) -> Result<()> {
        if ws.cfg != self.cfg {
            return Err(Error::Shape(
                "workspace was made for a different network configuration".into(),
            ));
        }
        let got = self.be.buf_len(x);
        if got != ws.input_len() {
            return Err(Error::Shape(format!(
                "input has {got} elements, the workspace expects {} images of {}x{}x{} = {}",
                ws.n,
                self.cfg.in_channels,
                self.cfg.image_h,
                self.cfg.image_w,
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
        Ok(&ws.logits)
    }

    fn forward_impl(&mut self, ws: &mut Workspace<B>, x: &B::Buf, mode: Mode) -> Result<()> {
        let be = self.be;
        let p = &self.params;
        for b in 0..ws.blocks.len() {
            let (prev, rest) = ws.blocks.split_at_mut(b);
            let cur = &mut rest[0];
            let x_in = if b == 0 { x } else { block_out(&prev[b - 1]) };
            let bp = self.layout.blocks[b];
            be.conv2d_fwd(
                &mut cur.z,
                x_in,
                p,
                bp.conv_w,
                Some(bp.conv_b),
                &ws.conv[b],
                false,
            )?;
            let pool = match (&ws.pool[b], self.pool) {
                (Some(ps), Some(kind)) => Some((ps, kind)),
                _ => None,
            };
            let p_out = match pool {
                Some(_) => Some(req_mut(&mut cur.p, "pool output")?),
                None => None,
            };
            match (&ws.norm[b], self.cfg.norm) {
                // BatchNorm normalises over the batch: its own kernels, then the fused
                // activation + pooling from s.
                (Some(ns), Norm::Batch) => {
                    let s = req_mut(&mut cur.s, "norm output")?;
                    let st = req_mut(&mut cur.stats, "norm statistics")?;
                    let (g, bt) = (
                        bp.gamma.ok_or_else(|| inv("gamma"))?,
                        bp.beta.ok_or_else(|| inv("beta"))?,
                    );
                    match mode {
                        Mode::Train => be.bn_fwd_train(
                            s,
                            st,
                            &mut self.running[b],
                            &cur.z,
                            p,
                            g,
                            bt,
                            ns,
                            BN_MOMENTUM,
                        )?,
                        Mode::Eval => be.bn_fwd_eval(s, &cur.z, &self.running[b], p, g, bt, ns)?,
                    }
                    be.norm_act_pool_fwd(None, &mut cur.a, p_out, s, p, None, self.act, pool)?;
                }
                // The group-norm family (same in both modes): one fused op.
                (Some(ns), _) => {
                    let s = req_mut(&mut cur.s, "norm output")?;
                    let st = req_mut(&mut cur.stats, "norm statistics")?;
                    let (g, bt) = (
                        bp.gamma.ok_or_else(|| inv("gamma"))?,
                        bp.beta.ok_or_else(|| inv("beta"))?,
                    );
                    be.norm_act_pool_fwd(
                        Some((s, st)),
                        &mut cur.a,
                        p_out,
                        &cur.z,
                        p,
                        Some((g, bt, ns)),
                        self.act,
                        pool,
                    )?;
                }
                (None, _) => {
                    be.norm_act_pool_fwd(None, &mut cur.a, p_out, &cur.z, p, None, self.act, pool)?
                }
            }
        }
        let feat = block_out(ws.blocks.last().ok_or_else(|| inv("block"))?);
        let fc = (self.layout.fc_w, self.layout.fc_b);
        be.linear_fwd(&mut ws.logits, feat, p, fc.0, Some(fc.1), &ws.lin, false)
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
        let out = self
            .be
            .ce_fwd_bwd(&mut ws.dlogits, &ws.logits, labels, &ws.lin)?;
        finite(out.loss, "cross-entropy loss")?;
        Ok(out)
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
        let out = be.ce_fwd_bwd(&mut ws.dlogits, &ws.logits, labels, &ws.lin)?;
        finite(out.loss, "cross-entropy loss")?;
        graphed(be, graphs, Region::Backward, &key, || {
            self.backward_impl(ws, x, mode, grads)
        })?;
        Ok(out)
    }

    fn backward_impl(
        &self,
        ws: &mut Workspace<B>,
        x: &B::Buf,
        mode: Mode,
        grads: &mut B::Buf,
    ) -> Result<()> {
        let be = self.be;
        let p = &self.params;
        let depth = ws.blocks.len();
        {
            let last = &mut ws.blocks[depth - 1];
            let (fw, fb) = (self.layout.fc_w, self.layout.fc_b);
            let feat = match &last.p {
                Some(pp) => pp,
                None => &last.a,
            };
            be.linear_bwd_weight(grads, fw, Some(fb), &ws.dlogits, feat, &ws.lin)?;
            be.linear_bwd_input(&mut last.dout, &ws.dlogits, p, fw, &ws.lin, false)?;
        }
        for b in (0..depth).rev() {
            let (prev, rest) = ws.blocks.split_at_mut(b);
            let cur = &mut rest[0];
            let bp = self.layout.blocks[b];
            let da = match (&ws.pool[b], self.pool) {
                (Some(ps), Some(kind)) => {
                    be.pool_bwd(&mut cur.g1, &cur.dout, &cur.a, ps, kind)?;
                    &cur.g1
                }
                _ => &cur.dout,
            };
            let pre = cur.s.as_ref().unwrap_or(&cur.z);
            be.act_bwd(&mut cur.g2, da, pre, self.act)?;
            let dz = match &ws.norm[b] {
                Some(ns) => {
                    let (g, bt) = (
                        bp.gamma.ok_or_else(|| inv("gamma"))?,
                        bp.beta.ok_or_else(|| inv("beta"))?,
                    );
                    let st = req(&cur.stats, "norm statistics")?;
                    match (self.cfg.norm, mode) {
                        (Norm::Batch, Mode::Train) => be.bn_bwd_train(
                            &mut cur.g1,
                            Some((&mut *grads, g, bt)),
                            &cur.g2,
                            &cur.z,
                            st,
                            p,
                            g,
                            ns,
                        )?,
                        (Norm::Batch, Mode::Eval) => be.bn_bwd_eval(
                            &mut cur.g1,
                            Some((&mut *grads, g, bt)),
                            &cur.g2,
                            &cur.z,
                            &self.running[b],
                            p,
                            g,
                            ns,
                        )?,
                        _ => be.norm_bwd(
                            &mut cur.g1,
                            Some((&mut *grads, g, bt)),
                            &cur.g2,
                            &cur.z,
                            st,
                            p,
                            g,
                            ns,
                        )?,
                    }
                    &cur.g1
                }
                None => &cur.g2,
            };
            let x_in = if b == 0 { x } else { block_out(&prev[b - 1]) };
            be.conv2d_bwd_weight(grads, bp.conv_w, Some(bp.conv_b), dz, x_in, &ws.conv[b])?;
            if b > 0 {
                be.conv2d_bwd_input(&mut prev[b - 1].dout, dz, p, bp.conv_w, &ws.conv[b], false)?;
            } else if let Some(dx) = ws.dx.as_mut() {
                be.conv2d_bwd_input(dx, dz, p, bp.conv_w, &ws.conv[b], false)?;
            }
        }
        Ok(())
    }

    /// The exact second-order pass (DESIGN §4, `docs/derivations/engine.md`): with
    /// `h(x) = <tangent, dL/dtheta (theta, x)>` (the directional derivative of the
    /// mean cross-entropy along `tangent` in parameter space), returns `h` and writes
    /// `dh/dx` into [`Workspace::input_grad`]. BatchNorm layers run in eval mode
    /// (running statistics), as the matching step of SPEC §4.7 does.
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
        let h = be.ce_dual(
            &mut ws.dlogits,
            req_mut(&mut ws.dldot, "dldot")?,
            &ws.logits,
            req(&ws.ldot, "ldot")?,
            labels,
            &ws.lin,
        )?;
        finite(h, "directional derivative <v, dL/dtheta>")?;
        graphed(be, graphs, Region::DualReverse, &key, || {
            self.dual_reverse(ws, tangent)
        })?;
        Ok(h)
    }

    /// Forward tangents along `tangent` (input tangent zero), primal already computed.
    fn tangent_forward(&self, ws: &mut Workspace<B>, x: &B::Buf, t: &B::Buf) -> Result<()> {
        let be = self.be;
        let p = &self.params;
        for b in 0..ws.blocks.len() {
            let (prev, rest) = ws.blocks.split_at_mut(b);
            let cur = &mut rest[0];
            let d = req_mut(&mut cur.dual, "tangent")?;
            let bp = self.layout.blocks[b];
            let cs = &ws.conv[b];
            // zdot = conv(x, V) + v_b + conv(xdot, W)
            if b == 0 {
                be.conv2d_fwd(&mut d.zdot, x, t, bp.conv_w, Some(bp.conv_b), cs, false)?;
            } else {
                let pb = &prev[b - 1];
                let pd = req(&pb.dual, "tangent")?;
                be.conv2d_fwd(
                    &mut d.zdot,
                    block_out(pb),
                    t,
                    bp.conv_w,
                    Some(bp.conv_b),
                    cs,
                    false,
                )?;
                be.conv2d_fwd(
                    &mut d.zdot,
                    block_out_dot(pb, pd),
                    p,
                    bp.conv_w,
                    None,
                    cs,
                    true,
                )?;
            }
            if let Some(ns) = &ws.norm[b] {
                let (g, bt) = (
                    bp.gamma.ok_or_else(|| inv("gamma"))?,
                    bp.beta.ok_or_else(|| inv("beta"))?,
                );
                let sdot = req_mut(&mut d.sdot, "norm tangent")?;
                if self.cfg.norm == Norm::Batch {
                    be.bn_eval_jvp(sdot, &cur.z, &d.zdot, &self.running[b], p, g, t, g, bt, ns)?;
                } else {
                    let st = req(&cur.stats, "norm statistics")?;
                    be.norm_jvp(sdot, &cur.z, &d.zdot, st, p, g, t, g, bt, ns)?;
                }
            }
            let pre = cur.s.as_ref().unwrap_or(&cur.z);
            let predot = d.sdot.as_ref().unwrap_or(&d.zdot);
            be.act_bwd(&mut d.adot, predot, pre, self.act)?;
            if let (Some(ps), Some(kind)) = (&ws.pool[b], self.pool) {
                be.pool_jvp(
                    req_mut(&mut d.pdot, "pool tangent")?,
                    &cur.a,
                    &d.adot,
                    ps,
                    kind,
                )?;
            }
        }
        let last = ws.blocks.last().ok_or_else(|| inv("block"))?;
        let ld = req(&last.dual, "tangent")?;
        let ldot = req_mut(&mut ws.ldot, "ldot")?;
        let (fw, fb) = (self.layout.fc_w, self.layout.fc_b);
        be.linear_fwd(ldot, block_out(last), t, fw, Some(fb), &ws.lin, false)?;
        be.linear_fwd(ldot, block_out_dot(last, ld), p, fw, None, &ws.lin, true)
    }

    /// Reverse pass of `h` through the dual computation, to `dh/dx` in `ws.dx`.
    fn dual_reverse(&self, ws: &mut Workspace<B>, t: &B::Buf) -> Result<()> {
        let be = self.be;
        let p = &self.params;
        let depth = ws.blocks.len();
        let fw = self.layout.fc_w;
        {
            let last = &mut ws.blocks[depth - 1];
            let ld = req_mut(&mut last.dual, "tangent")?;
            let dldot = req(&ws.dldot, "dldot")?;
            // l = f W^T + b, ldot = fdot W^T + f V^T + v_b
            be.linear_bwd_input(&mut last.dout, &ws.dlogits, p, fw, &ws.lin, false)?;
            be.linear_bwd_input(&mut last.dout, dldot, t, fw, &ws.lin, true)?;
            be.linear_bwd_input(&mut ld.doutdot, dldot, p, fw, &ws.lin, false)?;
        }
        for b in (0..depth).rev() {
            let (prev, rest) = ws.blocks.split_at_mut(b);
            let cur = &mut rest[0];
            let d = req_mut(&mut cur.dual, "tangent")?;
            let bp = self.layout.blocks[b];
            let (da, dadot) = match (&ws.pool[b], self.pool) {
                (Some(ps), Some(kind)) => {
                    // pooling is linear given the (piecewise constant) arg-max pattern
                    be.pool_bwd(&mut cur.g1, &cur.dout, &cur.a, ps, kind)?;
                    be.pool_bwd(&mut d.g1dot, &d.doutdot, &cur.a, ps, kind)?;
                    (&cur.g1, &d.g1dot)
                }
                _ => (&cur.dout, &d.doutdot),
            };
            let pre = cur.s.as_ref().unwrap_or(&cur.z);
            let predot = d.sdot.as_ref().unwrap_or(&d.zdot);
            be.act_dual_bwd(&mut cur.g2, &mut d.g2dot, da, dadot, pre, predot, self.act)?;
            let (dz, dzdot) = match &ws.norm[b] {
                Some(ns) => {
                    let g = bp.gamma.ok_or_else(|| inv("gamma"))?;
                    if self.cfg.norm == Norm::Batch {
                        be.bn_eval_dual_bwd(
                            &mut cur.g1,
                            &mut d.g1dot,
                            &cur.g2,
                            &d.g2dot,
                            &self.running[b],
                            p,
                            g,
                            t,
                            g,
                            ns,
                        )?;
                    } else {
                        let st = req(&cur.stats, "norm statistics")?;
                        be.norm_dual_bwd(
                            &mut cur.g1,
                            &mut d.g1dot,
                            &cur.g2,
                            &d.g2dot,
                            &cur.z,
                            &d.zdot,
                            st,
                            p,
                            g,
                            t,
                            g,
                            ns,
                        )?;
                    }
                    (&cur.g1, &d.g1dot)
                }
                None => (&cur.g2, &d.g2dot),
            };
            let cs = &ws.conv[b];
            // z = conv(x, W) + b, zdot = conv(xdot, W) + conv(x, V) + v_b
            let dx = if b > 0 {
                &mut prev[b - 1].dout
            } else {
                req_mut(&mut ws.dx, "input gradient")?
            };
            be.conv2d_bwd_input(dx, dz, p, bp.conv_w, cs, false)?;
            be.conv2d_bwd_input(dx, dzdot, t, bp.conv_w, cs, true)?;
            if b > 0 {
                let pd = req_mut(&mut prev[b - 1].dual, "tangent")?;
                be.conv2d_bwd_input(&mut pd.doutdot, dzdot, p, bp.conv_w, cs, false)?;
            }
        }
        Ok(())
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
    /// of `x` (SPEC §4.7: 16 real images per class before every outer step). A
    /// no-op for networks without BatchNorm.
    pub fn refresh_bn(&mut self, ws: &mut Workspace<B>, x: &B::Buf) -> Result<()> {
        if !self.cfg.has_batchnorm() {
            return Ok(());
        }
        self.check_ws(ws, x)?;
        self.forward_impl(ws, x, Mode::Train)
    }

    /// Allocates the workspace of one class's gradient matching: `n_real` real
    /// images and `ipc` synthetic images per class.
    pub fn match_workspace(&self, n_real: usize, ipc: usize) -> Result<MatchWorkspace<B>> {
        let be = self.be;
        let k = self.cfg.num_classes;
        let img = self.cfg.in_channels * self.cfg.image_h * self.cfg.image_w;
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
            aug_a: be.alloc(ipc * img)?,
            aug_b: be.alloc(ipc * img)?,
            dsyn: be.alloc(ipc * img)?,
            real_labels,
            syn_labels,
            img: ImgShape {
                n: ipc as u32,
                c: self.cfg.in_channels as u32,
                h: self.cfg.image_h as u32,
                w: self.cfg.image_w as u32,
            },
            tensors: self.layout.match_tensors(),
            graphs: SynGraphs::new(be.graphs_supported() && be.graphs_by_default()),
        })
    }

    fn match_mode(&self) -> Mode {
        if self.cfg.has_batchnorm() {
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
        if class >= self.cfg.num_classes {
            return Err(Error::Shape(format!(
                "class {class} of a {}-class network",
                self.cfg.num_classes
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
        let dx = req(&mw.syn.dx, "input gradient")?;
        be.copy_range(&mut mw.aug_a, 0, dx, 0, len)?;
        apply_bwd_in_place(be, aug, &mut mw.aug_a, &mut mw.aug_b, &mw.img)?;
        be.copy_range(&mut mw.dsyn, 0, &mw.aug_a, 0, len)?;
        Ok(d)
    }

    /// One outer step's image gradient: for every class `c` (in order), the
    /// matching gradient of the class's rows of `syn_all` (`[K*ipc, C, H, W]`,
    /// class-major) against `classes[c]`; the per-class gradients are written into
    /// the matching rows of `dsyn_all` (same shape, overwritten). Returns the sum of
    /// the class distances. For BatchNorm networks `bn_batch` (16 real images per
    /// class, `bn_ws` its workspace) refreshes the running statistics first (SPEC §4.7).
    #[allow(clippy::too_many_arguments)]
    pub fn outer_grad(
        &mut self,
        mw: &mut MatchWorkspace<B>,
        syn_all: &B::Buf,
        classes: &[ClassInput<'_, B>],
        metric: Metric,
        dsyn_all: &mut B::Buf,
        bn: Option<(&mut Workspace<B>, &B::Buf)>,
    ) -> Result<f64> {
        let be = self.be;
        let k = self.cfg.num_classes;
        let per = mw.img.len();
        if classes.len() != k {
            return Err(Error::Shape(format!(
                "{} class inputs for {k} classes",
                classes.len()
            )));
        }
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
        if self.cfg.has_batchnorm() {
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
        for (c, ci) in classes.iter().enumerate() {
            be.copy_range(
                req_mut(&mut mw.syn_c, "class images")?,
                0,
                syn_all,
                c * per,
                per,
            )?;
            let syn_c = mw.syn_c.take().ok_or_else(|| inv("class images"))?;
            let r = self.matching_grad(mw, ci.real, &syn_c, c, ci.aug, metric);
            mw.syn_c = Some(syn_c);
            total += r?;
            be.copy_range(dsyn_all, c * per, &mw.dsyn, 0, per)?;
        }
        Ok(total)
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
        self.real.n
    }
    /// Synthetic images per class.
    pub fn ipc(&self) -> usize {
        self.syn.n
    }
    /// The graphs of the synthetic side ([`graphs`](self::graphs)): on by default where
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

fn block_out<B: Backend>(b: &BlockBufs<B>) -> &B::Buf {
    b.p.as_ref().unwrap_or(&b.a)
}

fn block_out_dot<'a, B: Backend>(b: &BlockBufs<B>, d: &'a DualBufs<B>) -> &'a B::Buf {
    if b.p.is_some() {
        d.pdot.as_ref().unwrap_or(&d.adot)
    } else {
        &d.adot
    }
}

/// FLOP (conv and linear multiply-adds x 2) of one class's [`Network::matching_grad`]:
/// the real side (forward, weight gradients, input gradients of all but the first
/// conv) and the synthetic side (first-order pass with input gradient, the primal
/// and tangent forward, the reverse of the dual pass). Elementwise ops not counted.
pub fn matching_flops(cfg: &ConvNetConfig, n_real: usize, ipc: usize) -> Result<f64> {
    let f_real = cfg.forward_flops(n_real)?;
    let c1_real = cfg.conv_shapes(n_real)?[0].flops();
    let f_syn = cfg.forward_flops(ipc)?;
    let c1_syn = cfg.conv_shapes(ipc)?[0].flops();
    Ok(3.0 * f_real - c1_real + 9.0 * f_syn - 2.0 * c1_syn)
}
