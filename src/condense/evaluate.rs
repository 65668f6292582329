//! Evaluation of a synthetic set during and after condensation: the evaluation
//! models of the run's mode, their training options, and the per-model records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::config::{CondenseConfig, Method};
use super::streams::{stream, Stream};
use super::Observer;
use crate::augment::{DcParams, DsaParams, Strategy};
use crate::backend::Backend;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::eval::{train_and_test_with, DeviceSplit, EvalOptions, TrainSet};
use crate::model::Model;
use crate::output::report::{EvalRecord, EvalSettings, Summary};
use crate::output::write_network_safetensors;

/// The architecture `model` for this dataset's image size and class count; an
/// architecture that cannot take the size is an error naming both.
pub fn model_for(model: &str, ds: &Dataset) -> Result<Model> {
    Model::from_name(model, ds.channels, ds.height, ds.width, ds.num_classes).map_err(|e| match e {
        Error::Option { .. } => e,
        other => Error::option("model", other.to_string()),
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

/// Evaluation options of the run for evaluation model `model_eval` (docs/method.md
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

/// Saving the trained networks of an evaluation (`evaluate --save-nets DIR`): every
/// network goes to `dir/<model>_exp<e>_net<j>.safetensors` as a PyTorch
/// `state_dict` ([`crate::output::write_network_safetensors`]).
#[derive(Clone, Debug)]
pub struct NetSaving<'a> {
    /// The directory (created if needed).
    pub dir: &'a Path,
    /// Entries added to every file's metadata, besides those [`evaluate_set_saving`]
    /// writes (`dataset`, `mean`, `std`, `method`, `seed`, `experiment`,
    /// `iteration`, `net`, `epochs`, `accuracy`, `train_accuracy`).
    pub metadata: BTreeMap<String, String>,
}

/// The file name of network `net` of model `model` at experiment `experiment`.
pub fn net_file_name(model: &str, experiment: usize, net: usize) -> String {
    format!("{model}_exp{experiment}_net{net}.safetensors")
}

/// Where an evaluation is, after one epoch of one network ([`Observer::eval_epoch`]).
#[derive(Debug, Clone, Copy)]
pub struct EvalProgress<'a> {
    /// The evaluation model being trained.
    pub model: &'a str,
    /// Its network `0..networks`.
    pub network: usize,
    /// Networks per model (`--num-eval`).
    pub networks: usize,
    /// The epoch just finished, `0..epochs`.
    pub epoch: usize,
    /// Epochs one network of this model trains (the epoch count E plus one: the
    /// loop runs `0..=E`).
    pub epochs: usize,
    /// Epochs finished in this evaluation, every model and network counted.
    pub done: usize,
    /// Epochs of the whole evaluation.
    pub total: usize,
}

/// Trains and tests `num_eval` fresh networks of every evaluation model on a host
/// training set; one record per model. `experiment` and `iteration` separate the
/// random streams of different evaluation points. Reports every finished epoch to
/// `obs` ([`Observer::eval_epoch`]) and every network's accuracies as a message.
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
    evaluate_set_saving(
        be, cfg, ds, images, labels, experiment, iteration, None, obs,
    )
    .map(|(recs, _)| recs)
}

/// [`evaluate_set`], also saving every trained network when `save` is given
/// (the same networks, the same accuracies). Returns the records and the paths of
/// the files written, in order.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_set_saving<B: Backend>(
    be: &B,
    cfg: &CondenseConfig,
    ds: &Dataset,
    images: &[f32],
    labels: &[u32],
    experiment: usize,
    iteration: usize,
    save: Option<&NetSaving<'_>>,
    obs: &mut dyn Observer,
) -> Result<(Vec<EvalRecord>, Vec<PathBuf>)> {
    let test = DeviceSplit::new(be, &ds.test)?;
    if let Some(s) = save {
        std::fs::create_dir_all(s.dir).map_err(|e| Error::io(s.dir, e))?;
    }
    let models = cfg.eval_models();
    let total = models
        .iter()
        .map(|m| cfg.num_eval * (cfg.eval_epochs(m) + 1))
        .sum();
    let mut done = 0;
    let mut out = Vec::new();
    let mut written = Vec::new();
    for (mi, model) in models.iter().enumerate() {
        let opts = eval_options(cfg, model)?;
        let net = model_for(model, ds)?;
        let mut accs = Vec::with_capacity(cfg.num_eval);
        for j in 0..cfg.num_eval {
            let mut rng = stream(
                cfg.seed,
                experiment,
                iteration,
                Stream::Eval,
                (mi as u64) << 32 | j as u64,
            );
            let (trained, r) = train_and_test_with(
                be,
                &net,
                TrainSet { images, labels },
                &test,
                &opts,
                &mut rng,
                &mut |epoch| {
                    done += 1;
                    obs.eval_epoch(&EvalProgress {
                        model,
                        network: j,
                        networks: cfg.num_eval,
                        epoch,
                        epochs: opts.epochs + 1,
                        done,
                        total,
                    });
                },
            )?;
            obs.message(&format!(
                "exp {experiment} it {iteration}: {model} #{j}: train acc {:.4}, test acc {:.4}",
                r.train_acc, r.test_acc
            ));
            if let Some(s) = save {
                let mut meta = s.metadata.clone();
                for (k, v) in [
                    ("dataset", ds.name.clone()),
                    ("mean", format!("{:?}", ds.mean)),
                    ("std", format!("{:?}", ds.std)),
                    ("method", cfg.method_name().to_string()),
                    ("seed", cfg.seed.to_string()),
                    ("experiment", experiment.to_string()),
                    ("iteration", iteration.to_string()),
                    ("net", j.to_string()),
                    ("epochs", opts.epochs.to_string()),
                    ("accuracy", r.test_acc.to_string()),
                    ("train_accuracy", r.train_acc.to_string()),
                ] {
                    meta.insert(k.to_string(), v);
                }
                let path = s.dir.join(net_file_name(model, experiment, j));
                write_network_safetensors(&path, &trained, &meta)?;
                written.push(path);
            }
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
    Ok((out, written))
}
