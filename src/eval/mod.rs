//! The evaluation protocol (docs/method.md §5): train fresh networks on a (synthetic or
//! selected real) training set and test them on the full real test split.
//!
//! `evaluate_synset` of the reference: fresh randomly initialised network; SGD with
//! lr `lr_net`, momentum 0.9, weight decay 5e-4 on every parameter; `E + 1` epochs
//! (indices `0..=E`), after epoch index `E/2 + 1` the learning rate is multiplied by
//! 0.1 and the optimiser re-created (momentum reset); every epoch shuffles the set
//! and steps over minibatches of `batch_train` in train mode, with DSA
//! augmentation (independent per-image draws, one group per minibatch) for DSA, or
//! DC's legacy augmentation (docs/method.md §5.5, per image, on the host) for DC where the
//! evaluation model calls for it; then the test split in eval mode, batches of 256.
//!
//! Everything random is drawn from the caller's seeded RNG, so an evaluation is
//! reproducible on the CPU backend.

use std::collections::HashMap;

use rand::seq::SliceRandom;
use rand::Rng;

use crate::augment::{
    apply_fwd_in_place, dc_augment, sample_per_image, AugMode, DcParams, DcStrategy, DsaParams,
    Strategy,
};
use crate::backend::{Backend, ImgShape, Scalar, SgdParams};
use crate::data::Split;
use crate::engine::{Mode, Network, Workspace, WorkspaceOpts};
use crate::error::{Error, Result};
use crate::model::Model;

/// Test batch size of the reference (docs/method.md §5.6).
pub const TEST_BATCH: usize = 256;

/// Hyper-parameters of one evaluation (docs/method.md §5.2-5.4).
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Epoch count E (the loop runs E + 1 epochs).
    pub epochs: usize,
    /// Initial learning rate (lr_net, 0.01).
    pub lr: f32,
    /// Minibatch size (batch_train, 256).
    pub batch_train: usize,
    /// DSA augmentation while training (`None` or the identity strategy: none).
    pub dsa: Option<Strategy>,
    /// DSA parameter ranges.
    pub dsa_params: DsaParams,
    /// DC's legacy augmentation while training (`None` or the `none` strategy: no
    /// augmentation). Applied on the host to every minibatch, before `dsa` would be
    /// (a DC run has no DSA strategy and a DSA run no legacy one, so one applies).
    pub dc_aug: Option<DcStrategy>,
    /// Settings of the legacy augmentation.
    pub dc_params: DcParams,
}

impl EvalOptions {
    /// The reference's momentum.
    pub const MOMENTUM: f32 = 0.9;
    /// The reference's weight decay.
    pub const WEIGHT_DECAY: f32 = 5e-4;
}

/// The outcome of training and testing one network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalOutcome {
    /// Accuracy on the (augmented) training set during the last epoch.
    pub train_acc: f64,
    /// Mean training loss of the last epoch.
    pub train_loss: f64,
    /// Accuracy on the test split.
    pub test_acc: f64,
}

/// Workspaces by batch size (the last minibatch of an epoch can be smaller).
struct Workspaces<B: Backend> {
    by_n: HashMap<usize, Workspace<B>>,
}

impl<B: Backend> Workspaces<B> {
    fn new() -> Self {
        Self {
            by_n: HashMap::new(),
        }
    }
    fn get(&mut self, net: &Network<'_, B>, n: usize) -> Result<&mut Workspace<B>> {
        match self.by_n.entry(n) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => {
                Ok(e.insert(net.workspace(n, WorkspaceOpts::default())?))
            }
        }
    }
}

/// A training set on the host: `images` `[n, C, H, W]` (normalised) and labels.
#[derive(Clone, Copy, Debug)]
pub struct TrainSet<'a> {
    /// Pixels, NCHW.
    pub images: &'a [f32],
    /// One label per image.
    pub labels: &'a [u32],
}

/// A test split uploaded to the backend once and shared by every evaluated network.
pub struct DeviceSplit<B: Backend> {
    images: B::Buf,
    labels: Vec<u32>,
    n: usize,
}

impl<B: Backend> DeviceSplit<B> {
    /// Uploads `split` (normalised NCHW images and labels).
    pub fn new(be: &B, split: &Split) -> Result<Self> {
        if split.n == 0 {
            return Err(Error::Shape("empty test split".into()));
        }
        Ok(Self {
            images: to_backend(be, &split.images)?,
            labels: split.labels.clone(),
            n: split.n,
        })
    }
}

fn to_backend<B: Backend>(be: &B, host: &[f32]) -> Result<B::Buf> {
    let v: Vec<B::E> = host.iter().map(|&x| B::E::from_f32(x)).collect();
    be.upload(&v)
}

/// Trains one fresh network (drawn from `rng`) on `train` and tests it on `test`.
pub fn train_and_test<B: Backend, R: Rng + ?Sized>(
    be: &B,
    cfg: &Model,
    train: TrainSet<'_>,
    test: &DeviceSplit<B>,
    opts: &EvalOptions,
    rng: &mut R,
) -> Result<EvalOutcome> {
    train_and_test_net(be, cfg, train, test, opts, rng).map(|(_, outcome)| outcome)
}

/// [`train_and_test`], handing back the trained network too (parameters and
/// BatchNorm running state as they were when tested), for instance to save it with
/// [`crate::output::write_network_safetensors`]. Same draws from `rng`, same result.
pub fn train_and_test_net<'b, B: Backend, R: Rng + ?Sized>(
    be: &'b B,
    cfg: &Model,
    train: TrainSet<'_>,
    test: &DeviceSplit<B>,
    opts: &EvalOptions,
    rng: &mut R,
) -> Result<(Network<'b, B>, EvalOutcome)> {
    train_and_test_with(be, cfg, train, test, opts, rng, &mut |_| {})
}

/// [`train_and_test_net`], calling `on_epoch` with each epoch's index (`0..=epochs`)
/// when that epoch's training is done (for progress displays).
pub fn train_and_test_with<'b, B: Backend, R: Rng + ?Sized>(
    be: &'b B,
    cfg: &Model,
    train: TrainSet<'_>,
    test: &DeviceSplit<B>,
    opts: &EvalOptions,
    rng: &mut R,
    on_epoch: &mut dyn FnMut(usize),
) -> Result<(Network<'b, B>, EvalOutcome)> {
    let img = cfg.image_len();
    let n = train.labels.len();
    if n == 0 || train.images.len() != n * img {
        return Err(Error::Shape(format!(
            "evaluation training set: {} values for {n} images of {img}",
            train.images.len()
        )));
    }
    if let Some(bad) = train.images.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!(
            "evaluation training set, value {bad} is {}",
            train.images[bad]
        )));
    }
    if opts.batch_train == 0 {
        return Err(Error::option("batch-train", "must be at least 1"));
    }
    let dc_aug = opts.dc_aug.as_ref().filter(|s| !s.is_none());
    if dc_aug.is_some() {
        opts.dc_params.validate()?;
    }
    let chw = (cfg.in_channels, cfg.image_h, cfg.image_w);
    let mut host_batch: Vec<f32> = Vec::new();
    let mut host_elems: Vec<B::E> = Vec::new();
    let mut net = Network::new(be, cfg.clone(), rng)?;
    let mut ws = Workspaces::new();
    let all = to_backend(be, train.images)?;
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut lr = opts.lr;
    let mut last = (0.0, 0.0);
    let mut batch_buf: HashMap<usize, (B::Buf, B::Buf)> = HashMap::new();
    for epoch in 0..=opts.epochs {
        order.shuffle(rng);
        let (mut loss_sum, mut correct) = (0.0, 0usize);
        for chunk in order.chunks(opts.batch_train) {
            let m = chunk.len();
            let (xb, aug_tmp) = match batch_buf.entry(m) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert((be.alloc(m * img)?, be.alloc(m * img)?))
                }
            };
            match dc_aug {
                // The legacy augmentation runs on the host: build, augment, write
                // into the minibatch buffer of this size.
                Some(strategy) => {
                    host_batch.clear();
                    for &i in chunk {
                        let i = i as usize;
                        host_batch.extend_from_slice(&train.images[i * img..(i + 1) * img]);
                    }
                    let (c, h, w) = chw;
                    dc_augment(
                        &mut host_batch,
                        (m, c, h, w),
                        strategy,
                        &opts.dc_params,
                        rng,
                    )?;
                    host_elems.clear();
                    host_elems.extend(host_batch.iter().map(|&x| B::E::from_f32(x)));
                    be.write(xb, &host_elems)?;
                }
                None => be.gather_rows(xb, &all, chunk, img)?,
            }
            let labels: Vec<u32> = chunk.iter().map(|&i| train.labels[i as usize]).collect();
            let labels = be.upload_labels(&labels)?;
            if let Some(strategy) = opts.dsa.as_ref().filter(|s| !s.is_none()) {
                let shape = ImgShape {
                    n: m as u32,
                    c: cfg.in_channels as u32,
                    h: cfg.image_h as u32,
                    w: cfg.image_w as u32,
                };
                let ops =
                    sample_per_image(strategy, &opts.dsa_params, AugMode::S, cfg.image_h, m, rng)?;
                apply_fwd_in_place(be, &ops, xb, aug_tmp, &shape)?;
            }
            let hp = SgdParams {
                lr,
                momentum: EvalOptions::MOMENTUM,
                weight_decay: EvalOptions::WEIGHT_DECAY,
            };
            let w = ws.get(&net, m)?;
            let out = net.train_step(w, xb, &labels, hp)?;
            if !out.loss.is_finite() {
                return Err(Error::NonFinite(format!(
                    "evaluation training loss at epoch {epoch}"
                )));
            }
            loss_sum += out.loss * m as f64;
            correct += out.correct;
        }
        last = (correct as f64 / n as f64, loss_sum / n as f64);
        if epoch == opts.epochs / 2 + 1 {
            lr *= 0.1;
            net.reset_momentum()?;
        }
        on_epoch(epoch);
    }
    let test_acc = test_accuracy(&mut net, &mut ws, test, img)?;
    let outcome = EvalOutcome {
        train_acc: last.0,
        train_loss: last.1,
        test_acc,
    };
    Ok((net, outcome))
}

/// Accuracy of `net` (eval mode) on the whole split, batches of [`TEST_BATCH`].
fn test_accuracy<B: Backend>(
    net: &mut Network<'_, B>,
    ws: &mut Workspaces<B>,
    test: &DeviceSplit<B>,
    img: usize,
) -> Result<f64> {
    let be = net.backend();
    let mut correct = 0usize;
    let mut x = be.alloc(TEST_BATCH.min(test.n) * img)?;
    for start in (0..test.n).step_by(TEST_BATCH) {
        let m = TEST_BATCH.min(test.n - start);
        if be.buf_len(&x) != m * img {
            x = be.alloc(m * img)?; // the last, shorter batch
        }
        be.copy_range(&mut x, 0, &test.images, start * img, m * img)?;
        let labels = be.upload_labels(&test.labels[start..start + m])?;
        let w = ws.get(net, m)?;
        correct += net.loss(w, &x, &labels, Mode::Eval)?.correct;
    }
    Ok(correct as f64 / test.n as f64)
}

/// Mean and population standard deviation (ddof 0), as the reference reports.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Draws the random-real "Random" coreset: `ipc` distinct random training images of
/// every class (class-major), as host images and labels.
pub fn random_real_subset<R: Rng + ?Sized>(
    train: &Split,
    index: &crate::data::ClassIndex,
    ipc: usize,
    img: usize,
    rng: &mut R,
) -> Result<(Vec<f32>, Vec<u32>)> {
    let k = index.num_classes();
    let mut images = Vec::with_capacity(k * ipc * img);
    let mut labels = Vec::with_capacity(k * ipc);
    for c in 0..k {
        if index.class_len(c) < ipc {
            return Err(Error::option(
                "ipc",
                format!(
                    "{ipc} images per class requested, class {c} has only {}",
                    index.class_len(c)
                ),
            ));
        }
        let rows = index.sample(c, ipc, rng);
        images.extend(train.gather(&rows, img)?);
        labels.extend(std::iter::repeat_n(c as u32, ipc));
    }
    Ok((images, labels))
}
