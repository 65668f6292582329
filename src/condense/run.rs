//! The DC/DSA training algorithm (SPEC §4.5), exact, on any [`Backend`].
//!
//! Per experiment: the synthetic set `S` (`[K*ipc, C, H, W]`, class-major) and the
//! image optimiser (SGD, lr_img, momentum 0.5, kept over all iterations). For every
//! iteration `0..=Iteration`: evaluate at the evaluation points (before the update);
//! draw a fresh network; `outer_loop` times: per class match the gradient of a
//! real batch and of the class's synthetic images (both through one siamese DSA draw
//! for DSA), one SGD step on `S` with the summed gradient, then (except after the
//! last outer step) `inner_loop` epochs of network training on `S`.
//!
//! Randomness: every iteration draws from its own ChaCha stream derived from
//! `(seed, experiment, iteration)`, so a run resumed from a checkpoint at
//! iteration `i` draws exactly what the uninterrupted run drew (the checkpoint's
//! RNG state is that triple).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::config::{CondenseConfig, DisMetric, Init, Method};
use crate::augment::{
    apply_fwd_in_place, sample_per_image, sample_siamese, AugMode, DcParams, DsaParams, Strategy,
};
use crate::backend::{Backend, ImgShape, Metric, Scalar, SgdParams};
use crate::data::{ClassIndex, Dataset};
use crate::engine::{Network, WorkspaceOpts};
use crate::error::{Error, Result};
use crate::eval::{train_and_test, DeviceSplit, EvalOptions, TrainSet};
use crate::model::ConvNetConfig;
use crate::output::checkpoint::Checkpoint;
use crate::output::report::{EvalRecord, EvalSettings, LossRecord, Summary};

/// Momentum of the image optimiser (SPEC §4.6).
pub const IMAGE_MOMENTUM: f32 = 0.5;
/// Real images per class that refresh BatchNorm statistics (SPEC §4.7).
pub const BN_REFRESH_PER_CLASS: usize = 16;

/// What a run reports while it goes (progress bars, logs).
pub trait Observer {
    /// An iteration finished with this mean matching loss (total / (K*outer_loop)).
    fn iteration(&mut self, experiment: usize, iteration: usize, mean_loss: f64);
    /// An evaluation finished.
    fn evaluation(&mut self, record: &EvalRecord);
    /// A free-form status line.
    fn message(&mut self, msg: &str);
    /// Asked after every iteration (and its checkpoint): `false` stops the run
    /// with [`Error::Interrupted`].
    fn keep_going(&mut self) -> bool {
        true
    }
}

/// An observer that ignores everything.
pub struct Silent;

impl Observer for Silent {
    fn iteration(&mut self, _: usize, _: usize, _: f64) {}
    fn evaluation(&mut self, _: &EvalRecord) {}
    fn message(&mut self, _: &str) {}
}

/// One experiment's result.
#[derive(Clone, Debug)]
pub struct ExperimentResult {
    /// Final synthetic images (after the last iteration's update), NCHW.
    pub images: Vec<f32>,
    /// Their labels (class-major).
    pub labels: Vec<u32>,
}

/// Everything a run produced.
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    /// One entry per experiment.
    pub experiments: Vec<ExperimentResult>,
    /// Mean matching loss per iteration.
    pub losses: Vec<LossRecord>,
    /// Every evaluation.
    pub evaluations: Vec<EvalRecord>,
    /// Seconds spent condensing (matching and inner loops).
    pub condense_seconds: f64,
    /// Seconds spent evaluating.
    pub eval_seconds: f64,
}

/// Where a run writes its intermediate files.
#[derive(Clone, Debug)]
pub struct RunFiles {
    /// Output directory: PNG grids of every evaluation point go there.
    pub dir: PathBuf,
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// Checkpoint every this many iterations (0 = never).
    pub checkpoint_every: usize,
}

/// Purposes of the derived random streams.
#[derive(Clone, Copy)]
#[repr(u64)]
enum Stream {
    Init = 1,
    Iteration = 2,
    Eval = 3,
}

/// A ChaCha stream for `(seed, experiment, iteration, purpose, extra)`, mixed with
/// SplitMix64 so neighbouring tuples give unrelated streams.
fn stream(
    seed: u64,
    experiment: usize,
    iteration: usize,
    purpose: Stream,
    extra: u64,
) -> ChaCha8Rng {
    let mut h = seed;
    for v in [experiment as u64, iteration as u64, purpose as u64, extra] {
        h = splitmix(h ^ splitmix(v));
    }
    ChaCha8Rng::seed_from_u64(h)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn metric_of(m: DisMetric) -> Metric {
    match m {
        DisMetric::Ours => Metric::Ours,
        DisMetric::Mse => Metric::Mse,
        DisMetric::Cos => Metric::Cos,
    }
}

/// The network configuration of `model` for this dataset.
pub fn model_config(model: &str, ds: &Dataset) -> Result<ConvNetConfig> {
    ConvNetConfig::from_name(model, ds.channels, ds.height, ds.width, ds.num_classes).map_err(|e| {
        match e {
            Error::Option { .. } => e,
            other => Error::option("model", other.to_string()),
        }
    })
}

/// The DSA strategy of the run (`None` for DC: no augmentation in condensation).
pub fn strategy_of(cfg: &CondenseConfig) -> Result<Option<Strategy>> {
    match cfg.method {
        Method::Dc => Ok(None),
        Method::Dsa => {
            let s: Strategy = cfg.dsa_strategy.join("_").parse()?;
            Ok(Some(s))
        }
    }
}

/// Evaluation options of the run for evaluation model `model_eval` (SPEC
/// §5.2-5.4): the epochs and, for DC, the legacy augmentation depend on it.
pub fn eval_options(cfg: &CondenseConfig, model_eval: &str) -> Result<EvalOptions> {
    Ok(EvalOptions {
        epochs: cfg.eval_epochs(model_eval),
        lr: cfg.lr_net as f32,
        batch_train: cfg.batch_train,
        dsa: strategy_of(cfg)?,
        dsa_params: DsaParams::default(),
        dc_aug: cfg.dc_augmentation(model_eval),
        dc_params: DcParams::default(),
    })
}

/// What the report records of [`eval_options`], per evaluation model.
pub fn eval_settings(cfg: &CondenseConfig) -> Result<BTreeMap<String, EvalSettings>> {
    cfg.eval_models()
        .into_iter()
        .map(|model| {
            let o = eval_options(cfg, &model)?;
            let settings = EvalSettings {
                epochs: o.epochs,
                dsa_strategy: o.dsa.map(|s| s.to_string()),
                dc_augmentation: o.dc_aug.map(|s| s.to_string()),
            };
            Ok((model, settings))
        })
        .collect()
}

/// Trains and tests `num_eval` fresh networks of every evaluation model on a host
/// training set; one record per model. `stream_key` separates the random streams
/// of different evaluation points.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_set<B: Backend>(
    be: &B,
    cfg: &CondenseConfig,
    ds: &Dataset,
    images: &[f32],
    labels: &[u32],
    experiment: usize,
    iteration: usize,
    obs: &mut dyn Observer,
) -> Result<Vec<EvalRecord>> {
    let test = DeviceSplit::new(be, &ds.test)?;
    let mut out = Vec::new();
    for (mi, model) in cfg.eval_models().iter().enumerate() {
        let opts = eval_options(cfg, model)?;
        let net_cfg = model_config(model, ds)?;
        let mut accs = Vec::with_capacity(cfg.num_eval);
        for j in 0..cfg.num_eval {
            let mut rng = stream(
                cfg.seed,
                experiment,
                iteration,
                Stream::Eval,
                (mi as u64) << 32 | j as u64,
            );
            let r = train_and_test(
                be,
                net_cfg,
                TrainSet { images, labels },
                &test,
                &opts,
                &mut rng,
            )?;
            obs.message(&format!(
                "exp {experiment} it {iteration}: {model} #{j}: train acc {:.4}, test acc {:.4}",
                r.train_acc, r.test_acc
            ));
            accs.push(r.test_acc);
        }
        let rec = EvalRecord {
            experiment,
            iteration,
            model: model.clone(),
            summary: Summary::of(&accs),
            accuracies: accs,
        };
        obs.evaluation(&rec);
        out.push(rec);
    }
    Ok(out)
}

fn to_e<B: Backend>(v: &[f32]) -> Vec<B::E> {
    v.iter().map(|&x| B::E::from_f32(x)).collect()
}

fn to_f32<B: Backend>(v: &[B::E]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32()).collect()
}

/// The resumable state of a run between iterations.
struct State {
    experiment: usize,
    iteration: usize,
    images: Vec<f32>,
    momentum: Vec<f32>,
}

/// Runs the whole algorithm: `num_exp` experiments of `Iteration + 1` iterations,
/// with their evaluations. `resume` continues from a checkpoint written by an
/// earlier run of the same configuration.
pub fn run<B: Backend>(
    be: &B,
    cfg: &CondenseConfig,
    ds: &Dataset,
    files: Option<&RunFiles>,
    resume: Option<&Path>,
    obs: &mut dyn Observer,
) -> Result<RunResult> {
    cfg.check_dataset(ds)?;
    let net_cfg = model_config(&cfg.model, ds)?;
    let strategy = strategy_of(cfg)?;
    let metric = metric_of(cfg.dis_metric);
    let dsa_params = DsaParams::default();
    let k = ds.num_classes;
    let ipc = cfg.ipc;
    let img = ds.image_len();
    let side = ds.height;
    let index = ClassIndex::new(&ds.train.labels, k);
    let n_real = cfg.batch_real.min(index.min_class_len());
    if n_real == 0 {
        return Err(Error::option("batch-real", "must be at least 1"));
    }
    let labels: Vec<u32> = (0..k as u32)
        .flat_map(|c| std::iter::repeat_n(c, ipc))
        .collect();
    let config_json = resumable_config(cfg);

    let mut result = RunResult::default();
    let mut state = match resume {
        Some(path) => {
            let ck = Checkpoint::load(path)?;
            if ck.config_json != config_json {
                return Err(Error::option(
                    "resume",
                    format!(
                        "{} was written by a run with another configuration",
                        path.display()
                    ),
                ));
            }
            if let Some(prev) = ck.extra.get("progress") {
                restore_progress(prev, path, &mut result)?;
            }
            obs.message(&format!(
                "resuming experiment {} at iteration {} from {}",
                ck.experiment,
                ck.iteration,
                path.display()
            ));
            Some(State {
                experiment: ck.experiment,
                iteration: ck.iteration,
                images: ck.images,
                momentum: ck.momentum,
            })
        }
        None => None,
    };

    // The whole training split on the device, once.
    let train_all = be.upload(&to_e::<B>(&ds.train.images))?;
    let mut net = Network::new(be, net_cfg, &mut stream(cfg.seed, 0, 0, Stream::Init, 1))?;
    let mut mw = net.match_workspace(n_real, ipc)?;
    let mut bn_ws = if net_cfg.has_batchnorm() {
        Some((
            net.workspace(BN_REFRESH_PER_CLASS * k, WorkspaceOpts::default())?,
            be.alloc(BN_REFRESH_PER_CLASS * k * img)?,
        ))
    } else {
        None
    };
    let real_shape = ImgShape {
        n: n_real as u32,
        c: ds.channels as u32,
        h: ds.height as u32,
        w: ds.width as u32,
    };
    let syn_shape = ImgShape {
        n: (k * ipc) as u32,
        ..real_shape
    };
    let mut real_x = be.alloc(n_real * img)?;
    let mut real_tmp = be.alloc(n_real * img)?;
    let mut syn_c = be.alloc(ipc * img)?;
    let mut dsyn = be.alloc(k * ipc * img)?;
    let mut inner_ws = net.workspace((k * ipc).min(cfg.batch_train), WorkspaceOpts::default())?;
    let mut inner_x = be.alloc(k * ipc * img)?;
    let mut inner_bufs: HashMap<usize, (B::Buf, B::Buf)> = HashMap::new();
    let syn_len = k * ipc * img;
    let image_hp = SgdParams {
        lr: cfg.lr_img as f32,
        momentum: IMAGE_MOMENTUM,
        weight_decay: 0.0,
    };
    let net_hp = SgdParams {
        lr: cfg.lr_net as f32,
        momentum: 0.0,
        weight_decay: 0.0,
    };
    let eval_points = cfg.eval_iterations();

    let first_exp = state.as_ref().map_or(0, |s| s.experiment);
    for exp in first_exp..cfg.num_exp {
        // Initial synthetic set (SPEC §4.4) or the resumed one.
        let (mut s_host, mom_host, first_it) = match state.take() {
            Some(st) if st.experiment == exp => {
                let mom = if st.momentum.is_empty() {
                    vec![0.0; syn_len]
                } else {
                    st.momentum
                };
                (st.images, mom, st.iteration)
            }
            _ => {
                let mut rng = stream(cfg.seed, exp, 0, Stream::Init, 0);
                let s = match cfg.init {
                    Init::Noise => (0..syn_len)
                        .map(|_| StandardNormal.sample(&mut rng))
                        .collect::<Vec<f32>>(),
                    Init::Real => {
                        let mut v = Vec::with_capacity(syn_len);
                        for c in 0..k {
                            let rows = index.sample(c, ipc, &mut rng);
                            v.extend(ds.train.gather(&rows, img)?);
                        }
                        v
                    }
                };
                (s, vec![0.0; syn_len], 0)
            }
        };
        let mut syn = be.upload(&to_e::<B>(&s_host))?;
        let mut syn_mom = be.upload(&to_e::<B>(&mom_host))?;

        for it in first_it..=cfg.iterations {
            if eval_points.contains(&it) {
                let t = Instant::now();
                let recs = evaluate_set(be, cfg, ds, &s_host, &labels, exp, it, obs)?;
                result.evaluations.extend(recs);
                result.eval_seconds += t.elapsed().as_secs_f64();
                if let Some(f) = files {
                    let png = f.dir.join(format!("synset_exp{exp}_iter{it}.png"));
                    crate::output::png_grid::write_png_grid(
                        &png,
                        &s_host,
                        ds.channels,
                        ds.height,
                        ds.width,
                        k,
                        ipc,
                        &ds.mean,
                        &ds.std,
                    )?;
                }
            }
            let t = Instant::now();
            let mut rng = stream(cfg.seed, exp, it, Stream::Iteration, 0);
            net.reinit(&mut rng)?;
            let mut loss_sum = 0.0;
            for ol in 0..cfg.outer_loop {
                if let Some((ws, x)) = bn_ws.as_mut() {
                    let mut rows = Vec::with_capacity(BN_REFRESH_PER_CLASS * k);
                    for c in 0..k {
                        rows.extend(index.sample(c, BN_REFRESH_PER_CLASS, &mut rng));
                    }
                    be.gather_rows(x, &train_all, &rows, img)?;
                    net.refresh_bn(ws, x)?;
                }
                for c in 0..k {
                    let rows = index.sample(c, n_real, &mut rng);
                    be.gather_rows(&mut real_x, &train_all, &rows, img)?;
                    let syn_ops = match &strategy {
                        Some(st) if !st.is_none() => {
                            let draw = sample_siamese(st, &dsa_params, AugMode::S, side, &mut rng)?;
                            apply_fwd_in_place(
                                be,
                                &draw.ops(n_real),
                                &mut real_x,
                                &mut real_tmp,
                                &real_shape,
                            )?;
                            draw.ops(ipc)
                        }
                        _ => Vec::new(),
                    };
                    be.copy_range(&mut syn_c, 0, &syn, c * ipc * img, ipc * img)?;
                    let d = net
                        .matching_grad(&mut mw, &real_x, &syn_c, c, &syn_ops, metric)
                        .map_err(|e| match e {
                            Error::NonFinite(m) => Error::NonFinite(format!(
                                "{m} at experiment {exp}, iteration {it}, class {c}{}",
                                files
                                    .filter(|f| f.checkpoint_every > 0)
                                    .map(|f| format!(
                                        "; the last good checkpoint is {}",
                                        f.checkpoint.display()
                                    ))
                                    .unwrap_or_default()
                            )),
                            e => e,
                        })?;
                    loss_sum += d;
                    be.copy_range(&mut dsyn, c * ipc * img, &mw.dsyn, 0, ipc * img)?;
                }
                be.sgd_step(&mut syn, &dsyn, &mut syn_mom, image_hp)?;
                if ol + 1 == cfg.outer_loop {
                    break;
                }
                // Inner loop (SPEC §4.8): train the network on a detached copy of S.
                be.copy_range(&mut inner_x, 0, &syn, 0, syn_len)?;
                let mut order: Vec<u32> = (0..(k * ipc) as u32).collect();
                for _ in 0..cfg.inner_loop {
                    order.shuffle(&mut rng);
                    for chunk in order.chunks(cfg.batch_train) {
                        let m = chunk.len();
                        if m != inner_ws.batch() {
                            inner_ws = net.workspace(m, WorkspaceOpts::default())?;
                        }
                        // Minibatch buffers per size, allocated once per run.
                        let (xb, tmp) = match inner_bufs.entry(m) {
                            Entry::Occupied(e) => e.into_mut(),
                            Entry::Vacant(e) => e.insert((be.alloc(m * img)?, be.alloc(m * img)?)),
                        };
                        be.gather_rows(xb, &inner_x, chunk, img)?;
                        let lab: Vec<u32> = chunk.iter().map(|&i| labels[i as usize]).collect();
                        if let Some(st) = strategy.as_ref().filter(|s| !s.is_none()) {
                            let shape = ImgShape {
                                n: m as u32,
                                ..syn_shape
                            };
                            let ops =
                                sample_per_image(st, &dsa_params, AugMode::S, side, m, &mut rng)?;
                            apply_fwd_in_place(be, &ops, xb, tmp, &shape)?;
                        }
                        let lab = be.upload_labels(&lab)?;
                        net.train_step(&mut inner_ws, xb, &lab, net_hp)?;
                    }
                }
            }
            s_host = to_f32::<B>(&be.download(&syn)?);
            if let Some(bad) = s_host.iter().position(|v| !v.is_finite()) {
                let keep = files
                    .filter(|f| f.checkpoint_every > 0)
                    .map(|f| format!("; the last good checkpoint is {}", f.checkpoint.display()))
                    .unwrap_or_default();
                return Err(Error::NonFinite(format!(
                    "synthetic set became non-finite (element {bad}) at experiment {exp}, iteration {it}{keep}"
                )));
            }
            let mean_loss = loss_sum / (k * cfg.outer_loop) as f64;
            result.losses.push(LossRecord {
                experiment: exp,
                iteration: it,
                loss: mean_loss,
            });
            result.condense_seconds += t.elapsed().as_secs_f64();
            obs.iteration(exp, it, mean_loss);
            let last = it == cfg.iterations;
            if last {
                result.experiments.push(ExperimentResult {
                    images: s_host.clone(),
                    labels: labels.clone(),
                });
            }
            let stop = !obs.keep_going();
            if let Some(cp) = files {
                let due = cp.checkpoint_every > 0 && ((it + 1) % cp.checkpoint_every == 0 || last);
                if due || stop {
                    let (ne, ni) = if last { (exp + 1, 0) } else { (exp, it + 1) };
                    let mom = to_f32::<B>(&be.download(&syn_mom)?);
                    let mut extra = std::collections::BTreeMap::new();
                    extra.insert("progress".to_string(), progress_json(&result));
                    Checkpoint {
                        experiment: ne,
                        iteration: ni,
                        images: s_host.clone(),
                        shape: [k * ipc, ds.channels, ds.height, ds.width],
                        labels: labels.clone(),
                        momentum: mom,
                        rng_state: cfg.seed.to_le_bytes().to_vec(),
                        config_json: config_json.clone(),
                        extra,
                    }
                    .save(&cp.checkpoint)?;
                }
            }
            if stop {
                let keep = files
                    .map(|f| format!("; resume with --resume {}", f.checkpoint.display()))
                    .unwrap_or_default();
                return Err(Error::Interrupted(format!(
                    "stopped after experiment {exp}, iteration {it}{keep}"
                )));
            }
        }
    }
    Ok(result)
}

/// The configuration a checkpoint must match to be resumed: everything that
/// changes what is computed (not the output place, threads, backend or verbosity).
fn resumable_config(cfg: &CondenseConfig) -> String {
    let mut v = cfg.to_json();
    if let Some(m) = v.as_object_mut() {
        for k in [
            "out",
            "resume",
            "threads",
            "backend",
            "quiet",
            "checkpoint_every",
        ] {
            m.remove(k);
        }
    }
    v.to_string()
}

/// Losses, evaluations and finished experiments so far, for a checkpoint.
fn progress_json(r: &RunResult) -> String {
    serde_json::json!({
        "losses": r.losses,
        "evaluations": r.evaluations,
        "experiments": r.experiments.iter().map(|e| serde_json::json!({"images": e.images, "labels": e.labels})).collect::<Vec<_>>(),
        "condense_seconds": r.condense_seconds,
        "eval_seconds": r.eval_seconds,
    })
    .to_string()
}

fn restore_progress(json: &str, path: &Path, r: &mut RunResult) -> Result<()> {
    let bad = |e: serde_json::Error| Error::data(path, format!("invalid progress record: {e}"));
    let v: serde_json::Value = serde_json::from_str(json).map_err(bad)?;
    r.losses = serde_json::from_value(v["losses"].clone()).map_err(bad)?;
    r.evaluations = serde_json::from_value(v["evaluations"].clone()).map_err(bad)?;
    for e in v["experiments"].as_array().into_iter().flatten() {
        r.experiments.push(ExperimentResult {
            images: serde_json::from_value(e["images"].clone()).map_err(bad)?,
            labels: serde_json::from_value(e["labels"].clone()).map_err(bad)?,
        });
    }
    r.condense_seconds = v["condense_seconds"].as_f64().unwrap_or(0.0);
    r.eval_seconds = v["eval_seconds"].as_f64().unwrap_or(0.0);
    Ok(())
}
