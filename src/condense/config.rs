//! Run configuration: the command-line options ([`CondenseArgs`], docs/method.md §4.1 with
//! the same defaults), presets, and their validation into a [`CondenseConfig`].
//!
//! Options are `Option`s so that the resolution order is explicit: a value given on
//! the command line wins over a preset (`--preset quick`), which wins over the
//! reference default. Every invalid value gives an [`Error::Option`] naming the
//! option.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::augment::DcStrategy;
use crate::backend::Precision;
use crate::data::{Dataset, DatasetKind};
use crate::model::ARCHITECTURES;
use crate::{Error, Result};

/// Condensation method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// Gradient matching without augmentation.
    Dc,
    /// Gradient matching with Differentiable Siamese Augmentation.
    Dsa,
}

/// Which models evaluate the synthetic set (the reference's `eval_mode`, see
/// `docs/architectures.md`). `S` and `SS` evaluate at every evaluation point; the
/// pools evaluate once, after the last iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvalMode {
    /// The training model with the part of its name from `BN` onward removed.
    S,
    /// The training model exactly.
    SS,
    /// Cross-architecture: MLP, ConvNet, LeNet, AlexNet, VGG11, ResNet18.
    M,
    /// BatchNorm cross-architecture: ConvNetBN, ConvNetASwishBN, AlexNetBN,
    /// VGG11BN, ResNet18BN.
    B,
    /// Width ablation: ConvNetW32, W64, W128, W256.
    W,
    /// Depth ablation: ConvNetD1 .. D4.
    D,
    /// Activation ablation: ConvNetAS, AR, AL, ASwish.
    A,
    /// Pooling ablation: ConvNetNP, MP, AP.
    P,
    /// Normalisation ablation: ConvNetNN, BN, LN, IN, GN.
    N,
}

impl EvalMode {
    /// Every mode with its command-line spelling.
    pub const ALL: [(&'static str, EvalMode); 9] = [
        ("S", EvalMode::S),
        ("SS", EvalMode::SS),
        ("M", EvalMode::M),
        ("B", EvalMode::B),
        ("W", EvalMode::W),
        ("D", EvalMode::D),
        ("A", EvalMode::A),
        ("P", EvalMode::P),
        ("N", EvalMode::N),
    ];

    /// The fixed model pool of a pool mode (`None` for `S` and `SS`, whose model
    /// follows the training model).
    pub fn pool(self) -> Option<&'static [&'static str]> {
        Some(match self {
            EvalMode::S | EvalMode::SS => return None,
            EvalMode::M => &["MLP", "ConvNet", "LeNet", "AlexNet", "VGG11", "ResNet18"],
            EvalMode::B => &[
                "ConvNetBN",
                "ConvNetASwishBN",
                "AlexNetBN",
                "VGG11BN",
                "ResNet18BN",
            ],
            EvalMode::W => &["ConvNetW32", "ConvNetW64", "ConvNetW128", "ConvNetW256"],
            EvalMode::D => &["ConvNetD1", "ConvNetD2", "ConvNetD3", "ConvNetD4"],
            EvalMode::A => &["ConvNetAS", "ConvNetAR", "ConvNetAL", "ConvNetASwish"],
            EvalMode::P => &["ConvNetNP", "ConvNetMP", "ConvNetAP"],
            EvalMode::N => &[
                "ConvNetNN",
                "ConvNetBN",
                "ConvNetLN",
                "ConvNetIN",
                "ConvNetGN",
            ],
        })
    }
}

/// Synthetic set initialisation (docs/method.md §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Init {
    /// N(0, 1) in normalised space.
    Noise,
    /// Random real images of each class.
    Real,
}

/// Gradient distance (docs/method.md §3.2, §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DisMetric {
    /// Row-wise cosine distance over weight tensors, 1-D tensors ignored.
    Ours,
    /// Sum of squared differences of all gradients.
    Mse,
    /// One global cosine distance.
    Cos,
}

/// Compute backend choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendChoice {
    /// CUDA when available, else CPU.
    Auto,
    /// The CPU reference backend.
    Cpu,
    /// The CUDA backend (error if unavailable).
    Cuda,
}

/// Most worker threads `--threads` takes (more only adds scheduling overhead and
/// memory; a typo like 100000 would spawn that many threads).
pub const MAX_THREADS: usize = 1024;
/// Most outer iterations `--iterations` takes (the reference's default is 1000; a
/// larger figure would take years and its per-iteration records would not fit).
pub const MAX_ITERATIONS: usize = 10_000_000;
/// Most evaluation points over a run (`iterations / eval-every`).
pub const MAX_EVAL_POINTS: usize = 100_000;
/// Most experiments (`--num-exp`) or evaluation networks (`--num-eval`).
pub const MAX_REPEATS: usize = 100_000;

/// DSA augmentation groups (docs/method.md §2.3).
pub const DSA_GROUPS: &[&str] = &["color", "crop", "cutout", "flip", "scale", "rotate"];

/// The README's DSA strategy for a dataset: no `flip` for the digit datasets.
pub fn default_dsa_strategy(kind: &DatasetKind) -> &'static str {
    if kind.is_digits() {
        "color_crop_cutout_scale_rotate"
    } else {
        "color_crop_cutout_flip_scale_rotate"
    }
}

/// `(outer_loop, inner_loop)` of docs/method.md §4.2, `None` for an ipc without a default.
pub fn get_loops(ipc: usize) -> Option<(usize, usize)> {
    match ipc {
        1 => Some((1, 1)),
        10 => Some((10, 50)),
        20 => Some((20, 25)),
        30 => Some((30, 20)),
        40 => Some((40, 15)),
        50 => Some((50, 10)),
        _ => None,
    }
}

/// Command-line options of `condense` (and, flattened, of `evaluate`/`baseline`).
/// Unset options take the preset's value, then the reference default shown. With
/// the `cli` feature (on by default) it is also a `clap::Args`, whose help is the
/// field documentation.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct CondenseArgs {
    /// Preset: `quick` (FashionMNIST, DSA, ipc 1, 20 iterations, small batches and
    /// evaluation: minutes on a 2-core CPU). Explicit options override it.
    #[cfg_attr(feature = "cli", arg(long))]
    pub preset: Option<String>,
    /// Method: dc or dsa [default: dc].
    #[cfg_attr(feature = "cli", arg(long))]
    pub method: Option<String>,
    /// Dataset: MNIST, FashionMNIST, SVHN, CIFAR10, CIFAR100, folder:PATH [default: CIFAR10].
    #[cfg_attr(feature = "cli", arg(long))]
    pub dataset: Option<String>,
    /// Model: ConvNet and its variants (ConvNetD1..D4, W32..W256, AS/AR/AL/ASwish,
    /// ASwishBN, NN/BN/LN/IN/GN, NP/MP/AP), MLP, LeNet, AlexNet, AlexNetBN, VGG11,
    /// VGG11BN, ResNet18, ResNet18BN, ResNet18BN_AP [default: ConvNet].
    #[cfg_attr(feature = "cli", arg(long))]
    pub model: Option<String>,
    /// Images per class [default: 1].
    #[cfg_attr(feature = "cli", arg(long))]
    pub ipc: Option<usize>,
    /// Evaluation models: S (the model without its BN suffix), SS (the model),
    /// or a pool evaluated once at the end: M (MLP, ConvNet, LeNet, AlexNet,
    /// VGG11, ResNet18), B (BatchNorm models), W (widths), D (depths),
    /// A (activations), P (poolings), N (normalisations) [default: S].
    #[cfg_attr(feature = "cli", arg(long))]
    pub eval_mode: Option<String>,
    /// Independent condensation runs [default: 5].
    #[cfg_attr(feature = "cli", arg(long))]
    pub num_exp: Option<usize>,
    /// Networks trained per evaluation [default: 20].
    #[cfg_attr(feature = "cli", arg(long))]
    pub num_eval: Option<usize>,
    /// Outer iterations (the loop runs 0..=iterations) [default: 1000].
    #[cfg_attr(feature = "cli", arg(long))]
    pub iterations: Option<usize>,
    /// Synthetic image learning rate [default: 0.1].
    #[cfg_attr(feature = "cli", arg(long))]
    pub lr_img: Option<f64>,
    /// Network learning rate (inner loop and evaluation) [default: 0.01].
    #[cfg_attr(feature = "cli", arg(long))]
    pub lr_net: Option<f64>,
    /// Real images per class per matching step [default: 256].
    #[cfg_attr(feature = "cli", arg(long))]
    pub batch_real: Option<usize>,
    /// Minibatch for training networks on the synthetic set [default: 256].
    #[cfg_attr(feature = "cli", arg(long))]
    pub batch_train: Option<usize>,
    /// Initialisation: noise or real [default: noise].
    #[cfg_attr(feature = "cli", arg(long))]
    pub init: Option<String>,
    /// DSA strategy: groups joined by `_` from color, crop, cutout, flip, scale,
    /// rotate (e.g. color_crop_cutout_flip_scale_rotate), or None
    /// [default: the README strategy of the dataset; no flip for MNIST and SVHN].
    #[cfg_attr(feature = "cli", arg(long))]
    pub dsa_strategy: Option<String>,
    /// Gradient distance: ours, mse or cos [default: ours].
    #[cfg_attr(feature = "cli", arg(long))]
    pub dis_metric: Option<String>,
    /// Image updates per iteration [default: get_loops(ipc)].
    #[cfg_attr(feature = "cli", arg(long))]
    pub outer_loop: Option<usize>,
    /// Network epochs between image updates [default: get_loops(ipc)].
    #[cfg_attr(feature = "cli", arg(long))]
    pub inner_loop: Option<usize>,
    /// Evaluation training epochs [default: 1000 for DSA; DC: 1000 where the
    /// evaluation model trains with DC augmentation (MNIST, or evaluation model
    /// ConvNetBN), else 300].
    #[cfg_attr(feature = "cli", arg(long))]
    pub epoch_eval_train: Option<usize>,
    /// Evaluate every this many iterations (and at the last) [default: 500].
    #[cfg_attr(feature = "cli", arg(long))]
    pub eval_every: Option<usize>,
    /// Backend: auto, cpu or cuda [default: auto].
    #[cfg_attr(feature = "cli", arg(long))]
    pub backend: Option<String>,
    /// CPU worker threads [default: all cores].
    #[cfg_attr(feature = "cli", arg(long))]
    pub threads: Option<usize>,
    /// CUDA device ordinal for the cuda backend [default: 0].
    #[cfg_attr(feature = "cli", arg(long))]
    pub device: Option<usize>,
    /// Arithmetic of the conv/linear products: fp32, tf32 or bf16 (operands rounded to 10 or 7 mantissa bits, FP32 accumulation) [default: fp32].
    #[cfg_attr(feature = "cli", arg(long))]
    pub precision: Option<String>,
    /// Random seed [default: 0].
    #[cfg_attr(feature = "cli", arg(long))]
    pub seed: Option<u64>,
    /// Output directory [default: result].
    #[cfg_attr(feature = "cli", arg(long))]
    pub out: Option<PathBuf>,
    /// Data directory, searched first.
    #[cfg_attr(feature = "cli", arg(long))]
    pub data_dir: Option<PathBuf>,
    /// Never download data.
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_download: bool,
    /// Write a checkpoint every this many iterations (0: never) [default: 0].
    #[cfg_attr(feature = "cli", arg(long))]
    pub checkpoint_every: Option<usize>,
    /// Resume from a checkpoint file.
    #[cfg_attr(feature = "cli", arg(long))]
    pub resume: Option<PathBuf>,
    /// Use at most this many training images (class-balanced), for quick runs.
    #[cfg_attr(feature = "cli", arg(long))]
    pub limit_train: Option<usize>,
    /// Use at most this many test images (class-balanced), for quick runs.
    #[cfg_attr(feature = "cli", arg(long))]
    pub limit_test: Option<usize>,
    /// No progress output.
    #[cfg_attr(feature = "cli", arg(long))]
    pub quiet: bool,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CondenseConfig {
    /// Method.
    pub method: Method,
    /// Dataset.
    #[serde(with = "dataset_serde")]
    pub dataset: DatasetKind,
    /// Training model name (one of [`ARCHITECTURES`]).
    pub model: String,
    /// Images per class.
    pub ipc: usize,
    /// Evaluation mode.
    pub eval_mode: EvalMode,
    /// Experiments.
    pub num_exp: usize,
    /// Networks per evaluation.
    pub num_eval: usize,
    /// Outer iterations.
    pub iterations: usize,
    /// Image learning rate.
    pub lr_img: f64,
    /// Network learning rate.
    pub lr_net: f64,
    /// Real batch per class.
    pub batch_real: usize,
    /// Synthetic training minibatch.
    pub batch_train: usize,
    /// Initialisation.
    pub init: Init,
    /// DSA groups in order (empty: identity); used only when the method is DSA.
    pub dsa_strategy: Vec<String>,
    /// Distance.
    pub dis_metric: DisMetric,
    /// Image updates per iteration.
    pub outer_loop: usize,
    /// Network epochs between image updates.
    pub inner_loop: usize,
    /// Evaluation epochs given explicitly (`--epoch-eval-train`); `None`: the
    /// reference's choice per evaluation model, [`CondenseConfig::eval_epochs`].
    pub epoch_eval_train: Option<usize>,
    /// Evaluation interval in iterations.
    pub eval_every: usize,
    /// Backend.
    pub backend: BackendChoice,
    /// CPU threads (`None`: all cores).
    pub threads: Option<usize>,
    /// CUDA device ordinal (the cuda backend).
    #[serde(default)]
    pub device: usize,
    /// Arithmetic precision of the convolution and linear products (a record
    /// without it is FP32).
    #[serde(default)]
    pub precision: Precision,
    /// Seed.
    pub seed: u64,
    /// Output directory.
    pub out: PathBuf,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Whether downloads are allowed.
    pub download: bool,
    /// Checkpoint interval (0: none).
    pub checkpoint_every: usize,
    /// Checkpoint to resume from.
    pub resume: Option<PathBuf>,
    /// Training subset size.
    pub limit_train: Option<usize>,
    /// Test subset size.
    pub limit_test: Option<usize>,
    /// No progress output.
    pub quiet: bool,
}

mod dataset_serde {
    use super::DatasetKind;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(k: &DatasetKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&k.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DatasetKind, D::Error> {
        let s = String::deserialize(d)?;
        DatasetKind::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn parse_choice<T: Copy>(opt: &str, value: &str, choices: &[(&str, T)]) -> Result<T> {
    choices
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(value))
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            Error::option(
                opt,
                format!(
                    "unknown value '{value}' (expected one of: {})",
                    names.join(", ")
                ),
            )
        })
}

/// Parses a DSA strategy string into its groups (`None`/empty: no augmentation).
pub fn parse_dsa_strategy(s: &str) -> Result<Vec<String>> {
    if s.is_empty() || s.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    s.split('_')
        .map(|g| {
            if DSA_GROUPS.contains(&g) {
                Ok(g.to_string())
            } else {
                Err(Error::option(
                    "dsa-strategy",
                    format!(
                        "unknown augmentation '{g}' in '{s}' (groups: {}, joined by _)",
                        DSA_GROUPS.join(", ")
                    ),
                ))
            }
        })
        .collect()
}

impl CondenseArgs {
    /// The values of a named preset (only `quick` exists).
    pub fn preset(name: &str) -> Result<CondenseArgs> {
        match name.to_ascii_lowercase().as_str() {
            "quick" => Ok(CondenseArgs {
                method: Some("dsa".into()),
                dataset: Some("FashionMNIST".into()),
                ipc: Some(1),
                init: Some("real".into()),
                iterations: Some(20),
                batch_real: Some(64),
                num_exp: Some(1),
                num_eval: Some(2),
                epoch_eval_train: Some(100),
                eval_every: Some(20),
                limit_test: Some(2000),
                ..Default::default()
            }),
            other => Err(Error::option(
                "preset",
                format!("unknown preset '{other}' (expected: quick)"),
            )),
        }
    }

    /// Fills every unset option of `self` from `base`.
    fn or(self, base: CondenseArgs) -> CondenseArgs {
        macro_rules! pick {
            ($($f:ident),*) => { CondenseArgs { $($f: self.$f.or(base.$f),)* no_download: self.no_download || base.no_download, quiet: self.quiet || base.quiet } };
        }
        pick!(
            preset,
            method,
            dataset,
            model,
            ipc,
            eval_mode,
            num_exp,
            num_eval,
            iterations,
            lr_img,
            lr_net,
            batch_real,
            batch_train,
            init,
            dsa_strategy,
            dis_metric,
            outer_loop,
            inner_loop,
            epoch_eval_train,
            eval_every,
            backend,
            threads,
            device,
            precision,
            seed,
            out,
            data_dir,
            checkpoint_every,
            resume,
            limit_train,
            limit_test
        )
    }

    /// The options only `condense` uses (learning the set: its iterations, image
    /// optimiser, matching and checkpoints), by their command-line names, with
    /// whether each is set here. `evaluate` and `baseline` refuse them.
    pub fn condense_only(&self) -> [(&'static str, bool); 10] {
        [
            ("iterations", self.iterations.is_some()),
            ("lr-img", self.lr_img.is_some()),
            ("batch-real", self.batch_real.is_some()),
            ("init", self.init.is_some()),
            ("dis-metric", self.dis_metric.is_some()),
            ("outer-loop", self.outer_loop.is_some()),
            ("inner-loop", self.inner_loop.is_some()),
            ("eval-every", self.eval_every.is_some()),
            ("checkpoint-every", self.checkpoint_every.is_some()),
            ("resume", self.resume.is_some()),
        ]
    }

    /// An error naming the first option of [`CondenseArgs::condense_only`] that is
    /// set, for subcommand `sub`, which does not learn a set.
    pub fn refuse_condense_only(&self, sub: &str) -> Result<()> {
        match self.condense_only().into_iter().find(|(_, set)| *set) {
            Some((name, _)) => Err(Error::option(
                name,
                format!("is an option of `condense` only; `{sub}` does not learn a set"),
            )),
            None => Ok(()),
        }
    }

    /// Applies the preset (if any) and the reference defaults, and validates.
    pub fn resolve(&self) -> Result<CondenseConfig> {
        self.resolve_with(true)
    }

    /// As [`CondenseArgs::resolve`] for `evaluate` and `baseline`, which learn no set:
    /// an ipc without default loop sizes ([`get_loops`], e.g. a set of 2 images per
    /// class) is accepted, and the loop sizes, which these commands never use, are
    /// then 1 and 1.
    pub fn resolve_for_evaluation(&self) -> Result<CondenseConfig> {
        self.resolve_with(false)
    }

    fn resolve_with(&self, learns: bool) -> Result<CondenseConfig> {
        let a = match &self.preset {
            Some(p) => self.clone().or(CondenseArgs::preset(p)?),
            None => self.clone(),
        };
        let method = parse_choice(
            "method",
            a.method.as_deref().unwrap_or("dc"),
            &[("dc", Method::Dc), ("dsa", Method::Dsa)],
        )?;
        let dataset = DatasetKind::parse(a.dataset.as_deref().unwrap_or("CIFAR10"))?;
        let model_in = a.model.as_deref().unwrap_or("ConvNet");
        let model = ARCHITECTURES
            .iter()
            .find(|m| m.eq_ignore_ascii_case(model_in))
            .ok_or_else(|| {
                Error::option(
                    "model",
                    format!(
                        "unknown model '{model_in}' (expected one of: {})",
                        ARCHITECTURES.join(", ")
                    ),
                )
            })?
            .to_string();
        let ipc = a.ipc.unwrap_or(1);
        if ipc == 0 {
            return Err(Error::option("ipc", "must be at least 1"));
        }
        let eval_mode = parse_choice(
            "eval-mode",
            a.eval_mode.as_deref().unwrap_or("S"),
            &EvalMode::ALL,
        )?;
        let init = parse_choice(
            "init",
            a.init.as_deref().unwrap_or("noise"),
            &[("noise", Init::Noise), ("real", Init::Real)],
        )?;
        let dis_metric = parse_choice(
            "dis-metric",
            a.dis_metric.as_deref().unwrap_or("ours"),
            &[
                ("ours", DisMetric::Ours),
                ("mse", DisMetric::Mse),
                ("cos", DisMetric::Cos),
            ],
        )?;
        let backend = parse_choice(
            "backend",
            a.backend.as_deref().unwrap_or("auto"),
            &[
                ("auto", BackendChoice::Auto),
                ("cpu", BackendChoice::Cpu),
                ("cuda", BackendChoice::Cuda),
            ],
        )?;
        let precision = match a.precision.as_deref() {
            None => Precision::Fp32,
            Some(v) => v.to_ascii_lowercase().parse().map_err(|_| {
                Error::option(
                    "precision",
                    format!("unknown value '{v}' (expected one of: fp32, tf32, bf16)"),
                )
            })?,
        };
        let dsa_strategy = parse_dsa_strategy(
            a.dsa_strategy
                .as_deref()
                .unwrap_or(default_dsa_strategy(&dataset)),
        )?;
        let (outer_loop, inner_loop) = match (a.outer_loop, a.inner_loop, get_loops(ipc)) {
            (Some(o), Some(i), _) => (o, i),
            (o, i, Some((do_, di))) => (o.unwrap_or(do_), i.unwrap_or(di)),
            (_, _, None) if !learns => (1, 1),
            (_, _, None) => {
                return Err(Error::option(
                    "ipc",
                    format!(
                        "no default loop sizes for ipc {ipc} (get_loops covers 1, 10, 20, 30, 40, 50); \
                         pass --outer-loop and --inner-loop (e.g. 50 and 10, or 20 and 25)"
                    ),
                ))
            }
        };
        let positive = |name: &str, v: usize| -> Result<usize> {
            if v == 0 {
                Err(Error::option(name, "must be at least 1"))
            } else {
                Ok(v)
            }
        };
        positive("outer-loop", outer_loop)?;
        positive("inner-loop", inner_loop)?;
        let lr = |name: &str, v: f64| -> Result<f64> {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(Error::option(
                    name,
                    format!("must be a positive finite number, got {v}"),
                ))
            }
        };
        if let Some(t) = a.threads {
            positive("threads", t)?;
            if t > MAX_THREADS {
                return Err(Error::option(
                    "threads",
                    format!("{t} is more than {MAX_THREADS}; leave it out to use every core"),
                ));
            }
        }
        if a.device.is_some() && backend == BackendChoice::Cpu {
            return Err(Error::option(
                "device",
                "selects a GPU for the cuda backend; --backend cpu uses none",
            ));
        }
        let iterations = a.iterations.unwrap_or(1000);
        if iterations > MAX_ITERATIONS {
            return Err(Error::option(
                "iterations",
                format!("{iterations} is more than {MAX_ITERATIONS}"),
            ));
        }
        let eval_every = positive("eval-every", a.eval_every.unwrap_or(500))?;
        if iterations / eval_every > MAX_EVAL_POINTS {
            return Err(Error::option(
                "eval-every",
                format!(
                    "{eval_every} gives {} evaluation points over {iterations} iterations, more than {MAX_EVAL_POINTS}",
                    iterations / eval_every + 1
                ),
            ));
        }
        if a.epoch_eval_train == Some(0) {
            return Err(Error::option(
                "epoch-eval-train",
                "must be at least 1 (0 would evaluate untrained networks)",
            ));
        }
        let bounded = |name: &str, v: usize| -> Result<usize> {
            positive(name, v)?;
            if v > MAX_REPEATS {
                return Err(Error::option(
                    name,
                    format!("{v} is more than {MAX_REPEATS}"),
                ));
            }
            Ok(v)
        };
        if a.limit_train == Some(0) {
            return Err(Error::option("limit-train", "must be at least 1"));
        }
        if a.limit_test == Some(0) {
            return Err(Error::option("limit-test", "must be at least 1"));
        }
        Ok(CondenseConfig {
            method,
            dataset,
            model,
            ipc,
            eval_mode,
            num_exp: bounded("num-exp", a.num_exp.unwrap_or(5))?,
            num_eval: bounded("num-eval", a.num_eval.unwrap_or(20))?,
            iterations,
            lr_img: lr("lr-img", a.lr_img.unwrap_or(0.1))?,
            lr_net: lr("lr-net", a.lr_net.unwrap_or(0.01))?,
            batch_real: positive("batch-real", a.batch_real.unwrap_or(256))?,
            batch_train: positive("batch-train", a.batch_train.unwrap_or(256))?,
            init,
            dsa_strategy,
            dis_metric,
            outer_loop,
            inner_loop,
            epoch_eval_train: a.epoch_eval_train,
            eval_every,
            backend,
            threads: a.threads,
            device: a.device.unwrap_or(0),
            precision,
            seed: a.seed.unwrap_or(0),
            out: a.out.unwrap_or_else(|| PathBuf::from("result")),
            data_dir: a.data_dir,
            download: !a.no_download,
            checkpoint_every: a.checkpoint_every.unwrap_or(0),
            resume: a.resume,
            limit_train: a.limit_train,
            limit_test: a.limit_test,
            quiet: a.quiet,
        })
    }
}

impl CondenseConfig {
    /// Checks the configuration against a loaded dataset: every class must hold at
    /// least `ipc` training images, and the test split must not be empty.
    pub fn check_dataset(&self, ds: &Dataset) -> Result<()> {
        let idx = crate::data::ClassIndex::new(&ds.train.labels, ds.num_classes);
        for c in 0..ds.num_classes {
            let n = idx.class_len(c);
            if n < self.ipc {
                return Err(Error::option(
                    "ipc",
                    format!(
                        "{} images per class requested, but class {c} ({}) of {} has only {n} training images",
                        self.ipc,
                        ds.class_names.get(c).map(String::as_str).unwrap_or("?"),
                        ds.name
                    ),
                ));
            }
        }
        if ds.test.n == 0 {
            return Err(Error::option(
                "dataset",
                format!("{} has no test split to evaluate on", ds.name),
            ));
        }
        Ok(())
    }

    /// Evaluation model names, in pool order: for `S` the training model with the
    /// part from `BN` onward removed, for `SS` the training model itself, for the
    /// other modes their pool ([`EvalMode::pool`]).
    pub fn eval_models(&self) -> Vec<String> {
        match (self.eval_mode, self.eval_mode.pool()) {
            (_, Some(pool)) => pool.iter().map(|m| m.to_string()).collect(),
            (EvalMode::SS, None) => vec![self.model.clone()],
            (_, None) => vec![match self.model.find("BN") {
                Some(i) => self.model[..i].to_string(),
                None => self.model.clone(),
            }],
        }
    }

    /// DC's legacy augmentation for evaluation model `model_eval` (docs/method.md §5.4,
    /// the reference's `get_daparam`): `None` for DSA (its evaluation uses the DSA
    /// strategy); for DC `crop_noise` if `model_eval` is exactly `ConvNetBN`, else
    /// `crop_scale_rotate` on MNIST, else `none`.
    pub fn dc_augmentation(&self, model_eval: &str) -> Option<DcStrategy> {
        match self.method {
            Method::Dsa => None,
            Method::Dc if model_eval == "ConvNetBN" => Some(DcStrategy::crop_noise()),
            Method::Dc if self.dataset == DatasetKind::Mnist => {
                Some(DcStrategy::crop_scale_rotate())
            }
            Method::Dc => Some(DcStrategy::none()),
        }
    }

    /// Training epochs of the evaluation networks of model `model_eval` (docs/method.md
    /// §5.3): `--epoch-eval-train` when given; else 1000 for DSA, and for DC 1000
    /// when [`dc_augmentation`](Self::dc_augmentation) is not `none`, else 300.
    pub fn eval_epochs(&self, model_eval: &str) -> usize {
        self.epoch_eval_train
            .unwrap_or(match self.dc_augmentation(model_eval) {
                Some(s) if s.is_none() => 300,
                _ => 1000,
            })
    }

    /// Iterations at which the synthetic set is evaluated: for `S` and `SS` every
    /// `eval_every` from 0 plus the last iteration; for the pool modes only the
    /// last iteration.
    pub fn eval_iterations(&self) -> Vec<usize> {
        if self.eval_mode.pool().is_some() {
            return vec![self.iterations];
        }
        let mut v: Vec<usize> = (0..=self.iterations).step_by(self.eval_every).collect();
        if v.last() != Some(&self.iterations) {
            v.push(self.iterations);
        }
        v
    }

    /// The method's name as the output files spell it (`DC`, `DSA`).
    pub fn method_name(&self) -> &'static str {
        match self.method {
            Method::Dc => "DC",
            Method::Dsa => "DSA",
        }
    }

    /// The configuration as JSON (for the report and checkpoints).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
