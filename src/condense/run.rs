//! The DC/DSA training algorithm (docs/method.md §4.5), exact, on any [`Backend`].
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

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand_distr::{Distribution, StandardNormal};

use super::config::{CondenseConfig, DisMetric, Init};
use super::evaluate::{evaluate_set, model_for, strategy_of, EvalProgress};
use super::resume::{config_differences, progress_json, restore_progress, resumable_config};
use super::step::{Condenser, Data};
use super::streams::{stream, Stream};
use crate::backend::{Backend, Metric, Scalar};
use crate::data::{ClassIndex, Dataset};
use crate::engine::Network;
use crate::error::{Error, Result};
use crate::output::checkpoint::Checkpoint;
use crate::output::report::{EvalRecord, LossRecord};

/// What a run reports while it goes (progress bars, logs).
pub trait Observer {
    /// An iteration finished with this mean matching loss (total / (K*outer_loop)).
    fn iteration(&mut self, experiment: usize, iteration: usize, mean_loss: f64);
    /// An evaluation finished.
    fn evaluation(&mut self, record: &EvalRecord);
    /// A free-form status line.
    fn message(&mut self, msg: &str);
    /// An evaluation network finished an epoch (called once per epoch of every
    /// network an evaluation trains; ignored by default).
    fn eval_epoch(&mut self, _progress: &EvalProgress<'_>) {}
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
    /// Seconds spent condensing (matching and inner loops) by this process (a
    /// resumed run counts from the resume).
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

fn metric_of(m: DisMetric) -> Metric {
    match m {
        DisMetric::Ours => Metric::Ours,
        DisMetric::Mse => Metric::Mse,
        DisMetric::Cos => Metric::Cos,
    }
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
    if be.precision() != cfg.precision {
        // the configuration is what the report and the checkpoints record
        return Err(Error::option(
            "precision",
            format!(
                "the configuration says {} but the backend computes its products in {} \
                 (build it with `with_precision`)",
                cfg.precision,
                be.precision()
            ),
        ));
    }
    let model = model_for(&cfg.model, ds)?;
    // every evaluation model must take the data too: refuse before any work
    for m in cfg.eval_models() {
        model_for(&m, ds)?;
    }
    let k = ds.num_classes;
    let ipc = cfg.ipc;
    let img = ds.image_len();
    let index = ClassIndex::new(&ds.train.labels, k);
    let n_real = cfg.batch_real.min(index.min_class_len());
    if n_real == 0 {
        return Err(Error::option("batch-real", "must be at least 1"));
    }
    let labels: Vec<u32> = (0..k as u32)
        .flat_map(|c| std::iter::repeat_n(c, ipc))
        .collect();
    let config_json = resumable_config(cfg, ds);

    let mut result = RunResult::default();
    let mut state = match resume {
        Some(path) => {
            let shape = [k * ipc, ds.channels, ds.height, ds.width];
            Some(resume_state(path, &config_json, shape, &mut result, obs)?)
        }
        None => None,
    };

    // The whole training split on the device, once.
    let train_all = be.upload(&to_e::<B>(&ds.train.images))?;
    let net = Network::new(
        be,
        model.clone(),
        &mut stream(cfg.seed, 0, 0, Stream::Init, 1),
    )?;
    let mut condenser = Condenser::new(
        be,
        net,
        train_all,
        &model,
        n_real,
        cfg,
        strategy_of(cfg)?,
        metric_of(cfg.dis_metric),
    )?;
    let data = Data {
        index: &index,
        labels: &labels,
    };
    let syn_len = k * ipc * img;
    let eval_points = cfg.eval_iterations();

    let first_exp = state.as_ref().map_or(0, |s| s.experiment);
    for exp in first_exp..cfg.num_exp {
        // Initial synthetic set or the resumed one.
        let (mut s_host, mom_host, first_it) = match state.take() {
            Some(st) if st.experiment == exp => {
                let mom = if st.momentum.is_empty() {
                    vec![0.0; syn_len]
                } else {
                    st.momentum
                };
                (st.images, mom, st.iteration)
            }
            _ => (initial_set(cfg, ds, &index, exp)?, vec![0.0; syn_len], 0),
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
            let keep = files
                .filter(|f| f.checkpoint_every > 0 && f.checkpoint.exists())
                .map(|f| format!("; the last good checkpoint is {}", f.checkpoint.display()))
                .unwrap_or_default();
            let loss_sum = condenser
                .iteration(cfg, &data, &mut syn, &mut syn_mom, &mut rng)
                .map_err(|e| match e {
                    Error::NonFinite(m) => {
                        Error::NonFinite(format!("{m} at experiment {exp}, iteration {it}{keep}"))
                    }
                    e => e,
                })?;
            // The last iteration's matching loss is recorded, but its image update is
            // not kept: the set saved is the set evaluated at the last iteration (the
            // reference applies one more update after its final evaluation, whose
            // result is saved but never evaluated).
            if it < cfg.iterations {
                s_host = to_f32::<B>(&be.download(&syn)?);
                if let Some(bad) = s_host.iter().position(|v| !v.is_finite()) {
                    return Err(Error::NonFinite(format!(
                        "synthetic set became non-finite (element {bad}) at experiment {exp}, iteration {it}{keep}"
                    )));
                }
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

/// The initial synthetic set of experiment `exp`: N(0, 1) noise in normalised
/// space, or random real images of each class.
fn initial_set(
    cfg: &CondenseConfig,
    ds: &Dataset,
    index: &ClassIndex,
    exp: usize,
) -> Result<Vec<f32>> {
    let (k, ipc, img) = (ds.num_classes, cfg.ipc, ds.image_len());
    let mut rng = stream(cfg.seed, exp, 0, Stream::Init, 0);
    Ok(match cfg.init {
        Init::Noise => (0..k * ipc * img)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect(),
        Init::Real => {
            let mut v = Vec::with_capacity(k * ipc * img);
            for c in 0..k {
                let rows = index.sample(c, ipc, &mut rng);
                v.extend(ds.train.gather(&rows, img)?);
            }
            v
        }
    })
}

/// The state of a checkpoint written by a run of the same configuration, and its
/// progress restored into `result`.
fn resume_state(
    path: &Path,
    config_json: &str,
    shape: [usize; 4],
    result: &mut RunResult,
    obs: &mut dyn Observer,
) -> Result<State> {
    let ck = Checkpoint::load(path)?;
    if ck.config_json != config_json {
        return Err(Error::option(
            "resume",
            format!(
                "{} was written by a run with another configuration or other data: {}",
                path.display(),
                config_differences(config_json, &ck.config_json).join("; ")
            ),
        ));
    }
    if ck.shape != shape {
        return Err(Error::data(
            path,
            format!(
                "checkpoint images of shape {:?}, this run's synthetic set is {shape:?}",
                ck.shape
            ),
        ));
    }
    if let Some(prev) = ck.extra.get("progress") {
        restore_progress(prev, path, result)?;
    }
    obs.message(&format!(
        "resuming experiment {} at iteration {} from {}",
        ck.experiment,
        ck.iteration,
        path.display()
    ));
    Ok(State {
        experiment: ck.experiment,
        iteration: ck.iteration,
        images: ck.images,
        momentum: ck.momentum,
    })
}
