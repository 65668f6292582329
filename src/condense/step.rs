//! One DC/DSA iteration on the device: a fresh network, then `outer_loop` times the
//! per-class matching of [`Network::outer_grad_with`] (the one matching path the
//! tests and benchmarks run too), one SGD step on the synthetic set and, except after
//! the last outer step, `inner_loop` epochs of network training on it.

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::config::CondenseConfig;
use super::{BN_REFRESH_PER_CLASS, IMAGE_MOMENTUM};
use crate::augment::{
    apply_fwd_in_place, sample_per_image, sample_siamese, AugMode, DsaParams, Strategy,
};
use crate::backend::{Backend, ImgShape, Metric, SgdParams};
use crate::data::ClassIndex;
use crate::engine::{MatchWorkspace, Network, Workspace, WorkspaceOpts};
use crate::error::Result;
use crate::model::Model;

/// Everything one iteration needs on the device, allocated once per run.
pub(super) struct Condenser<'b, B: Backend> {
    be: &'b B,
    pub net: Network<'b, B>,
    mw: MatchWorkspace<B>,
    /// BatchNorm networks: the refresh batch's workspace and buffer.
    bn: Option<(Workspace<B>, B::Buf)>,
    train_all: B::Buf,
    real_tmp: B::Buf,
    dsyn: B::Buf,
    inner_x: B::Buf,
    /// Inner-loop buffers, one set per minibatch size.
    inner: Vec<InnerBatch<B>>,
    img_shape: ImgShape,
    n_real: usize,
    strategy: Option<Strategy>,
    metric: Metric,
}

/// Inner-loop buffers for minibatches of `n` images: the network workspace, the
/// gathered minibatch and an augmentation scratch buffer.
struct InnerBatch<B: Backend> {
    n: usize,
    ws: Workspace<B>,
    x: B::Buf,
    tmp: B::Buf,
}

/// What the iteration works on: the class index of the training split and the
/// labels of the synthetic set (class-major).
pub(super) struct Data<'a> {
    pub index: &'a ClassIndex,
    pub labels: &'a [u32],
}

impl<'b, B: Backend> Condenser<'b, B> {
    /// Buffers for `model`, with the training split `train_all` (normalised images,
    /// `[N, C, H, W]`) already on the device.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        be: &'b B,
        net: Network<'b, B>,
        train_all: B::Buf,
        model: &Model,
        n_real: usize,
        cfg: &CondenseConfig,
        strategy: Option<Strategy>,
        metric: Metric,
    ) -> Result<Self> {
        let k = model.num_classes;
        let img = model.image_len();
        let syn_len = k * cfg.ipc * img;
        let bn = if model.has_batchnorm() {
            let n = BN_REFRESH_PER_CLASS * k;
            Some((
                net.workspace(n, WorkspaceOpts::default())?,
                be.alloc(n * img)?,
            ))
        } else {
            None
        };
        Ok(Self {
            be,
            mw: net.match_workspace(n_real, cfg.ipc)?,
            net,
            bn,
            train_all,
            real_tmp: be.alloc(n_real * img)?,
            dsyn: be.alloc(syn_len)?,
            inner_x: be.alloc(syn_len)?,
            inner: Vec::new(),
            img_shape: ImgShape {
                n: n_real as u32,
                c: model.in_channels as u32,
                h: model.image_h as u32,
                w: model.image_w as u32,
            },
            n_real,
            strategy: strategy.filter(|s| !s.is_none()),
            metric,
        })
    }

    /// One iteration on the synthetic set `syn` (updated in place, with its image
    /// momentum `syn_mom`); returns the summed matching distance over classes and
    /// outer steps.
    pub fn iteration(
        &mut self,
        cfg: &CondenseConfig,
        data: &Data<'_>,
        syn: &mut B::Buf,
        syn_mom: &mut B::Buf,
        rng: &mut ChaCha8Rng,
    ) -> Result<f64> {
        let be = self.be;
        let image_hp = SgdParams {
            lr: cfg.lr_img as f32,
            momentum: IMAGE_MOMENTUM,
            weight_decay: 0.0,
        };
        let dsa = DsaParams::default();
        let img = self.img_shape.len() / self.n_real;
        let side = self.img_shape.h as usize;
        let k = data.index.num_classes();
        self.net.reinit(rng)?;
        let mut loss_sum = 0.0;
        for ol in 0..cfg.outer_loop {
            let bn = match self.bn.as_mut() {
                Some((ws, x)) => {
                    let mut rows = Vec::with_capacity(BN_REFRESH_PER_CLASS * k);
                    for c in 0..k {
                        rows.extend(data.index.sample(c, BN_REFRESH_PER_CLASS, rng));
                    }
                    be.gather_rows(x, &self.train_all, &rows, img)?;
                    Some((ws, &*x))
                }
                None => None,
            };
            let (train_all, real_tmp) = (&self.train_all, &mut self.real_tmp);
            let (n_real, shape, strategy) = (self.n_real, &self.img_shape, &self.strategy);
            loss_sum += self.net.outer_grad_with(
                &mut self.mw,
                syn,
                self.metric,
                &mut self.dsyn,
                bn,
                |c, real| {
                    let rows = data.index.sample(c, n_real, rng);
                    be.gather_rows(real, train_all, &rows, img)?;
                    match strategy {
                        Some(st) => {
                            let draw = sample_siamese(st, &dsa, AugMode::S, side, rng)?;
                            apply_fwd_in_place(be, &draw.ops(n_real), real, real_tmp, shape)?;
                            Ok(draw.ops(cfg.ipc))
                        }
                        None => Ok(Vec::new()),
                    }
                },
            )?;
            be.sgd_step(syn, &self.dsyn, syn_mom, image_hp)?;
            if ol + 1 < cfg.outer_loop {
                self.inner_loop(cfg, data, syn, rng)?;
            }
        }
        Ok(loss_sum)
    }

    /// `inner_loop` epochs of network training on a detached copy of the synthetic
    /// set (DSA: independent per-image augmentation, one group per minibatch).
    fn inner_loop(
        &mut self,
        cfg: &CondenseConfig,
        data: &Data<'_>,
        syn: &B::Buf,
        rng: &mut ChaCha8Rng,
    ) -> Result<()> {
        let be = self.be;
        let img = self.img_shape.len() / self.n_real;
        let side = self.img_shape.h as usize;
        let net_hp = SgdParams {
            lr: cfg.lr_net as f32,
            momentum: 0.0,
            weight_decay: 0.0,
        };
        let n = data.labels.len();
        be.copy_range(&mut self.inner_x, 0, syn, 0, n * img)?;
        let mut order: Vec<u32> = (0..n as u32).collect();
        for _ in 0..cfg.inner_loop {
            order.shuffle(rng);
            for chunk in order.chunks(cfg.batch_train) {
                let m = chunk.len();
                let i = match self.inner.iter().position(|e| e.n == m) {
                    Some(i) => i,
                    None => {
                        self.inner.push(InnerBatch {
                            n: m,
                            ws: self.net.workspace(m, WorkspaceOpts::default())?,
                            x: be.alloc(m * img)?,
                            tmp: be.alloc(m * img)?,
                        });
                        self.inner.len() - 1
                    }
                };
                let InnerBatch { ws, x: xb, tmp, .. } = &mut self.inner[i];
                be.gather_rows(xb, &self.inner_x, chunk, img)?;
                if let Some(st) = &self.strategy {
                    let shape = ImgShape {
                        n: m as u32,
                        ..self.img_shape
                    };
                    let ops =
                        sample_per_image(st, &DsaParams::default(), AugMode::S, side, m, rng)?;
                    apply_fwd_in_place(be, &ops, xb, tmp, &shape)?;
                }
                let lab: Vec<u32> = chunk.iter().map(|&i| data.labels[i as usize]).collect();
                let lab = be.upload_labels(&lab)?;
                self.net.train_step(ws, xb, &lab, net_hp)?;
            }
        }
        Ok(())
    }
}
