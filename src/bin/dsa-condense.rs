//! `dsa-condense`: the command line. Thin: options and their validation live in
//! the library (`dsa_condense::condense::config`); this file parses, dispatches and
//! prints errors (one line per cause, no backtrace, exit code 1).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;

use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::Backend;
use dsa_condense::condense::config::{BackendChoice, CondenseArgs, CondenseConfig};
use dsa_condense::condense::evaluate::EvalProgress;
use dsa_condense::condense::{self, Observer, RunFiles};
use dsa_condense::data::{self, locate, DatasetKind, LoadOptions};
use dsa_condense::eval;
use dsa_condense::output;
use dsa_condense::output::report::{Report, Summary};

/// Dataset Condensation with Differentiable Siamese Augmentation (DSA) and
/// gradient matching (DC).
#[derive(Debug, Parser)]
#[command(name = "dsa-condense", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Learn a synthetic set (DC or DSA) and evaluate it.
    Condense(CondenseArgs),
    /// Evaluate a synthetic set (safetensors) by training fresh networks on it.
    Evaluate(EvaluateArgs),
    /// Evaluate the random-real baseline (ipc random real images per class).
    Baseline(CondenseArgs),
    /// Print the version, the available backends and where data is looked for.
    Info,
}

#[derive(Debug, clap::Args)]
struct EvaluateArgs {
    /// The synthetic set to evaluate (written by `condense`, or converted from the
    /// reference's `.pt` by `scripts/convert_reference_pt.py`).
    #[arg(long)]
    synset: PathBuf,
    /// Also save every trained evaluation network to DIR, as
    /// `<model>_exp0_net<j>.safetensors`: a PyTorch `state_dict` with the reference
    /// architecture's keys (`net.load_state_dict(safetensors.torch.load_file(f))`).
    #[arg(long, value_name = "DIR")]
    save_nets: Option<PathBuf>,
    /// Train the networks the run that wrote the set trained at the point it saved
    /// (the set's seed, experiment and iteration): with the run's evaluation options,
    /// backend and precision, the accuracies are the run's, network for network.
    /// Without it the networks are those of `--seed` at experiment 0, iteration 0.
    #[arg(long)]
    as_run: bool,
    #[command(flatten)]
    common: CondenseArgs,
}

/// The random streams of `evaluate`: the seed, experiment and iteration whose
/// evaluation networks are trained.
#[derive(Debug, Clone, Copy, PartialEq)]
struct EvalStreams {
    seed: u64,
    experiment: usize,
    iteration: usize,
}

/// With `--as-run`: the streams recorded in the set's metadata (an error naming
/// the file when they are missing or malformed, or when `--seed` says otherwise).
fn streams_of_run(
    path: &std::path::Path,
    metadata: &BTreeMap<String, String>,
    seed: Option<u64>,
) -> Result<EvalStreams> {
    fn field<T: std::str::FromStr>(
        path: &std::path::Path,
        metadata: &BTreeMap<String, String>,
        key: &str,
    ) -> Result<T> {
        let v = metadata.get(key).with_context(|| {
            format!(
                "--as-run: {} has no `{key}` metadata (only sets written by `condense` record \
                 the run that made them)",
                path.display()
            )
        })?;
        v.parse().map_err(|_| {
            anyhow::anyhow!(
                "--as-run: {}: `{key}` metadata is '{v}', not a count",
                path.display()
            )
        })
    }
    let streams = EvalStreams {
        seed: field(path, metadata, "seed")?,
        experiment: field(path, metadata, "experiment")?,
        iteration: field(path, metadata, "iteration")?,
    };
    if let Some(s) = seed.filter(|&s| s != streams.seed) {
        anyhow::bail!(
            "--as-run and --seed {s}: {} was made with seed {}",
            path.display(),
            streams.seed
        );
    }
    Ok(streams)
}

/// Set by the first Ctrl-C: a run checkpoints and stops after the current iteration.
static STOP: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once, before any work, so an interrupt while the
/// data loads is seen too): the first Ctrl-C sets [`STOP`]; a second one stops at
/// once (every file is written atomically, so what is on disk stays whole).
fn install_interrupt_handler() {
    let installed = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond interrupt: stopping now");
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupt: stopping after the current iteration (with a checkpoint); \
             Ctrl-C again to stop at once"
        );
    });
    if let Err(e) = installed {
        eprintln!("warning: no Ctrl-C handler ({e}): an interrupt stops without a checkpoint");
    }
}

/// The command line, with the options only `condense` uses hidden from the help of
/// `evaluate` and `baseline` (which refuse them, [`CondenseArgs::refuse_condense_only`]).
fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let ids: Vec<String> = CondenseArgs::default()
        .condense_only()
        .iter()
        .map(|(name, _)| name.replace('-', "_"))
        .collect();
    let mut cmd = Cli::command();
    for sub in ["evaluate", "baseline"] {
        cmd = cmd.mut_subcommand(sub, |mut c| {
            for id in &ids {
                c = c.mut_arg(id.as_str(), |a| a.hide(true));
            }
            c
        });
    }
    let matches = cmd.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    let cli = parse_cli();
    install_interrupt_handler();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let inv = Invocation {
        args: std::env::args().collect(),
        started: std::time::SystemTime::now(),
    };
    match cli.cmd {
        Command::Info => info(),
        Command::Condense(a) => {
            let cfg = a.resolve()?;
            let ds = prepare(&cfg)?;
            with_backend(
                &cfg,
                CondenseJob {
                    cfg: &cfg,
                    ds: &ds,
                    inv: &inv,
                },
            )
        }
        Command::Evaluate(a) => {
            a.common.refuse_condense_only("evaluate")?;
            let mut common = a.common;
            let set = output::read_synset(&a.synset)?;
            if common.dataset.is_none() {
                common.dataset = set.metadata.get("dataset").cloned();
            }
            if common.ipc.is_none() {
                common.ipc = set.metadata.get("ipc").and_then(|v| v.parse().ok());
            }
            if common.method.is_none() {
                common.method = set.metadata.get("method").map(|m| m.to_ascii_lowercase());
            }
            let streams = if a.as_run {
                streams_of_run(&a.synset, &set.metadata, common.seed)?
            } else {
                EvalStreams {
                    seed: common.seed.unwrap_or(0),
                    experiment: 0,
                    iteration: 0,
                }
            };
            common.seed = Some(streams.seed);
            let cfg = common.resolve_for_evaluation()?;
            if let Some(dir) = &a.save_nets {
                output::ensure_output_dir(dir).context("--save-nets is not writable")?;
            }
            let ds = prepare(&cfg)?;
            let shape = [ds.channels, ds.height, ds.width];
            anyhow::ensure!(
                set.shape[1..] == shape,
                "{}: images are {:?}, dataset {} has {:?}",
                a.synset.display(),
                &set.shape[1..],
                ds.name,
                shape
            );
            if let Some(bad) = set.labels.iter().find(|&&l| l as usize >= ds.num_classes) {
                anyhow::bail!(
                    "{}: label {bad} but {} has {} classes",
                    a.synset.display(),
                    ds.name,
                    ds.num_classes
                );
            }
            let sha256 = data::locate::sha256_hex(&std::fs::read(&a.synset).context("--synset")?);
            let save_nets = a.save_nets.as_ref().map(|dir| {
                let metadata = BTreeMap::from([
                    ("synset".to_string(), a.synset.display().to_string()),
                    ("synset_sha256".to_string(), sha256.clone()),
                ]);
                (dir.clone(), metadata)
            });
            with_backend(
                &cfg,
                EvalJob {
                    cfg: &cfg,
                    ds: &ds,
                    images: &set.images,
                    labels: &set.labels,
                    command: "evaluate",
                    inv: &inv,
                    evaluated_set: Some(serde_json::json!({
                        "path": a.synset.display().to_string(),
                        "sha256": sha256,
                        "networks_of": {
                            "seed": streams.seed,
                            "experiment": streams.experiment,
                            "iteration": streams.iteration,
                        },
                    })),
                    save_nets,
                    networks_of: (streams.experiment, streams.iteration),
                },
            )
        }
        Command::Baseline(a) => {
            a.refuse_condense_only("baseline")?;
            let cfg = a.resolve_for_evaluation()?;
            let ds = prepare(&cfg)?;
            let index = data::ClassIndex::new(&ds.train.labels, ds.num_classes);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
            let (images, labels) =
                eval::random_real_subset(&ds.train, &index, cfg.ipc, ds.image_len(), &mut rng)?;
            with_backend(
                &cfg,
                EvalJob {
                    cfg: &cfg,
                    ds: &ds,
                    images: &images,
                    labels: &labels,
                    command: "baseline",
                    inv: &inv,
                    evaluated_set: None,
                    save_nets: None,
                    networks_of: (0, 0),
                },
            )
        }
    }
}

/// Work that runs on whichever backend `--backend` selects.
trait Job {
    fn run<B: Backend>(self, be: &B, backend_name: String) -> Result<()>;
}

/// Picks the backend (`auto` = cuda when usable, else cpu, saying which) and runs
/// the job on it.
fn with_backend<J: Job>(cfg: &CondenseConfig, job: J) -> Result<()> {
    let threads = cfg.threads.unwrap_or(0);
    let cpu =
        || -> Result<Cpu<f32>> { Ok(Cpu::<f32>::new(threads)?.with_precision(cfg.precision)) };
    match cfg.backend {
        BackendChoice::Cpu => {
            let be = cpu()?;
            let name = be.name();
            if !cfg.quiet {
                eprintln!("backend: {name}");
            }
            job.run(&be, name)
        }
        BackendChoice::Cuda | BackendChoice::Auto => {
            match dsa_condense::backend::cuda::Cuda::new(cfg.device) {
                Ok(be) => {
                    let be = be.with_precision(cfg.precision);
                    let name = be.name();
                    if !cfg.quiet {
                        eprintln!("backend: {name}");
                    }
                    job.run(&be, name)
                }
                Err(e) if cfg.backend == BackendChoice::Auto => {
                    let be = cpu()?;
                    let name = be.name();
                    if !cfg.quiet {
                        eprintln!("backend: {name} (cuda not usable: {e})");
                    }
                    job.run(&be, name)
                }
                Err(e) => {
                    Err(anyhow::anyhow!(e)
                        .context(format!("--backend cuda (device {})", cfg.device)))
                }
            }
        }
    }
}

/// A progress display over a known amount of work: on a terminal, a bar with the
/// count, a message, the rate and the ETA; with stderr piped (a batch job), log lines
/// ([`Meter::log`]) where its owner asks for them; nothing when quiet.
struct Meter {
    bar: Option<ProgressBar>,
    /// Whether log lines go to stderr (piped and not quiet).
    logs: bool,
    /// Units of the whole work, and done so far (by this process).
    total: usize,
    done: usize,
    start: Instant,
    /// The unit's name in the bar and the log lines (`it`, `epochs`).
    unit: &'static str,
}

impl Meter {
    fn new(quiet: bool, total: usize, unit: &'static str) -> Self {
        use std::io::IsTerminal;
        let terminal = !quiet && std::io::stderr().is_terminal();
        let bar = terminal.then(|| {
            let bar = ProgressBar::new(total as u64);
            let template = format!(
                "{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {unit}  {{msg}}  ({{per_sec}}, ETA {{eta}})"
            );
            bar.set_style(
                ProgressStyle::with_template(&template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            logs: !quiet && !terminal,
            total,
            done: 0,
            start: Instant::now(),
            unit,
        }
    }

    /// One more unit done; `msg` (built only for a bar) becomes the bar's message.
    fn inc(&mut self, msg: impl FnOnce() -> String) {
        self.done += 1;
        if let Some(b) = &self.bar {
            b.set_message(msg());
            b.inc(1);
        }
    }

    /// A log line (when piped): `what`, then the rate since the start, the elapsed
    /// time and the ETA (wall clock: everything the process did meanwhile included).
    fn log(&self, what: &str) {
        if !self.logs {
            return;
        }
        let secs = self.start.elapsed().as_secs_f64();
        let rate = self.done as f64 / secs.max(1e-9);
        let left = self.total.saturating_sub(self.done) as f64 / rate.max(1e-12);
        eprintln!(
            "{what}: {rate:.3} {}/s, elapsed {}, ETA {}",
            self.unit,
            hms(secs),
            hms(left)
        );
    }

    /// A line printed above the bar, or on stderr without one.
    fn println(&self, line: String) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn set_message(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_message(msg.to_string());
        }
    }

    /// Removes the bar (finished) or leaves it as it is (stopped).
    fn finish(&self, completed: bool) {
        if let Some(b) = &self.bar {
            if completed {
                b.finish_and_clear();
            } else {
                b.abandon();
            }
        }
    }
}

/// Progress of `condense` (over its iterations, a log line every 5 % of an
/// experiment when piped) or of `evaluate` and `baseline` (over the epochs of every
/// evaluation network, a log line every 5 % of them when piped); evaluation results
/// are printed as they happen in every case, `--quiet` included.
struct Progress {
    meter: Meter,
    /// What the meter counts.
    counts: Counts,
    /// What this process has done so far, for the report of a run that stops early.
    losses: Vec<output::LossRecord>,
    evaluations: Vec<output::EvalRecord>,
}

enum Counts {
    /// Condensation iterations; a log line every `log_every` iterations of an
    /// experiment and at its `last`.
    Iterations { log_every: usize, last: usize },
    /// Epochs of evaluation networks; a log line at every 5 % of them.
    EvalEpochs,
}

impl Progress {
    /// For `condense`.
    fn condense(cfg: &CondenseConfig) -> Self {
        Self {
            meter: Meter::new(cfg.quiet, cfg.num_exp * (cfg.iterations + 1), "it"),
            counts: Counts::Iterations {
                log_every: (cfg.iterations / 20).max(1),
                last: cfg.iterations,
            },
            losses: Vec::new(),
            evaluations: Vec::new(),
        }
    }

    /// For `evaluate` and `baseline`: the total is set by the first epoch reported.
    fn evaluation(cfg: &CondenseConfig) -> Self {
        Self {
            meter: Meter::new(cfg.quiet, 0, "epochs"),
            counts: Counts::EvalEpochs,
            losses: Vec::new(),
            evaluations: Vec::new(),
        }
    }
}

/// `s` seconds as `1h02m03s` / `2m03s` / `3s`.
fn hms(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, sec) => format!("{h}h{m:02}m{sec:02}s"),
    }
}

impl Observer for Progress {
    fn iteration(&mut self, experiment: usize, iteration: usize, mean_loss: f64) {
        self.losses.push(output::LossRecord {
            experiment,
            iteration,
            loss: mean_loss,
        });
        let Counts::Iterations { log_every, last } = self.counts else {
            return;
        };
        self.meter
            .inc(|| format!("exp {experiment} it {iteration} loss {mean_loss:.4}"));
        if iteration.is_multiple_of(log_every) || iteration == last {
            self.meter.log(&format!(
                "exp {experiment} it {iteration}/{last}: loss {mean_loss:.4}"
            ));
        }
    }
    fn eval_epoch(&mut self, p: &EvalProgress<'_>) {
        let Counts::EvalEpochs = self.counts else {
            return;
        };
        if self.meter.total != p.total {
            self.meter.total = p.total;
            if let Some(b) = &self.meter.bar {
                b.set_length(p.total as u64);
            }
        }
        self.meter.inc(|| {
            format!(
                "{} net {}/{} epoch {}/{}",
                p.model,
                p.network + 1,
                p.networks,
                p.epoch + 1,
                p.epochs
            )
        });
        // a line each time another 5 % of the epochs is done, and at the end
        if (p.done * 20 / p.total.max(1)) > ((p.done - 1) * 20 / p.total.max(1)) {
            self.meter.log(&format!(
                "{} net {}/{} epoch {}/{} ({}/{} epochs)",
                p.model,
                p.network + 1,
                p.networks,
                p.epoch + 1,
                p.epochs,
                p.done,
                p.total
            ));
        }
    }
    fn evaluation(&mut self, r: &output::report::EvalRecord) {
        self.evaluations.push(r.clone());
        self.meter.println(format!(
            "exp {} it {}: {} test accuracy {:.2} +- {:.2} % over {} nets",
            r.experiment,
            r.iteration,
            r.model,
            100.0 * r.summary.mean,
            100.0 * r.summary.std,
            r.summary.n
        ));
    }
    fn message(&mut self, msg: &str) {
        self.meter.set_message(msg);
    }
    fn keep_going(&mut self) -> bool {
        !STOP.load(Ordering::SeqCst)
    }
}

/// How this process was started, for every report it writes.
struct Invocation {
    args: Vec<String>,
    started: std::time::SystemTime,
}

impl Invocation {
    /// A report of `command` with the run, configuration, data, backend and seed
    /// filled in.
    fn report(
        &self,
        command: &str,
        cfg: &CondenseConfig,
        ds: &data::Dataset,
        backend_name: String,
    ) -> Report {
        let mut report = Report::new(command);
        report.set_run(&self.args, self.started);
        report.config = cfg.to_json();
        // the DSA ranges (condensation and DSA evaluation training use the same)
        report.config["dsa_params"] =
            serde_json::to_value(dsa_condense::augment::DsaParams::default()).unwrap_or_default();
        report.set_dataset(ds);
        report.backend = backend_name;
        report.seed = cfg.seed;
        report
    }
}

struct CondenseJob<'a> {
    cfg: &'a CondenseConfig,
    ds: &'a data::Dataset,
    inv: &'a Invocation,
}

impl Job for CondenseJob<'_> {
    fn run<B: Backend>(self, be: &B, backend_name: String) -> Result<()> {
        let (cfg, ds) = (self.cfg, self.ds);
        let t0 = Instant::now();
        let files = RunFiles {
            dir: cfg.out.clone(),
            checkpoint: cfg.out.join("checkpoint.safetensors"),
            checkpoint_every: cfg.checkpoint_every,
        };
        let mut progress = Progress::condense(cfg);
        let res = match condense::run(
            be,
            cfg,
            ds,
            Some(&files),
            cfg.resume.as_deref(),
            &mut progress,
        ) {
            Ok(res) => res,
            Err(e) => {
                progress.meter.finish(false);
                // After the first iteration, what was done is kept in report.json.
                if !progress.losses.is_empty() {
                    let mut report = self.inv.report("condense", cfg, ds, backend_name);
                    report.status = match e {
                        dsa_condense::Error::Interrupted(_) => "interrupted".into(),
                        _ => "failed".into(),
                    };
                    report.error = Some(e.to_string());
                    report.losses = std::mem::take(&mut progress.losses);
                    report.evaluations = std::mem::take(&mut progress.evaluations);
                    report
                        .timings
                        .insert("total_seconds".into(), t0.elapsed().as_secs_f64());
                    report.outputs.push("report.json".into());
                    report.finish();
                    if let Err(w) = report.write(&cfg.out.join("report.json")) {
                        eprintln!("warning: the report of the stopped run was not written: {w}");
                    }
                }
                return Err(e.into());
            }
        };
        progress.meter.finish(true);
        let k = ds.num_classes;
        let shape = [k * cfg.ipc, ds.channels, ds.height, ds.width];
        let mut report = self.inv.report("condense", cfg, ds, backend_name);
        report.eval_options = condense::evaluate::eval_settings(cfg)?;
        report.losses = res.losses.clone();
        report.evaluations = res.evaluations.clone();
        for model in cfg.eval_models() {
            let accs: Vec<f64> = res
                .evaluations
                .iter()
                .filter(|r| r.model == model && r.iteration == cfg.iterations)
                .flat_map(|r| r.accuracies.iter().copied())
                .collect();
            report.final_accuracy.insert(model, Summary::of(&accs));
        }
        report.fill_results(&cfg.eval_models());
        for (e, exp) in res.experiments.iter().enumerate() {
            let mut meta = BTreeMap::new();
            meta.insert("dataset".to_string(), ds.name.clone());
            meta.insert("mean".to_string(), format!("{:?}", ds.mean));
            meta.insert("std".to_string(), format!("{:?}", ds.std));
            meta.insert("method".to_string(), cfg.method_name().to_string());
            meta.insert("model".to_string(), cfg.model.clone());
            meta.insert("ipc".to_string(), cfg.ipc.to_string());
            meta.insert("seed".to_string(), cfg.seed.to_string());
            meta.insert("experiment".to_string(), e.to_string());
            meta.insert("iteration".to_string(), cfg.iterations.to_string());
            let last = e + 1 == res.experiments.len();
            let mut names = vec![format!("synset_exp{e}.safetensors")];
            if last {
                names.push("synset.safetensors".to_string());
            }
            for name in names {
                let path = cfg.out.join(&name);
                output::write_synset_safetensors(&path, &exp.images, shape, &exp.labels, &meta)?;
                report.outputs.push(name);
            }
            if last {
                let png = cfg.out.join("synset.png");
                output::png_grid::write_png_grid(
                    &png,
                    &exp.images,
                    ds.channels,
                    ds.height,
                    ds.width,
                    k,
                    cfg.ipc,
                    &ds.mean,
                    &ds.std,
                )?;
                report.outputs.push("synset.png".into());
            }
        }
        report
            .timings
            .insert("condense_seconds".into(), res.condense_seconds);
        report
            .timings
            .insert("eval_seconds".into(), res.eval_seconds);
        report
            .timings
            .insert("total_seconds".into(), t0.elapsed().as_secs_f64());
        report.outputs.push("report.json".into());
        report.finish();
        report.write(&cfg.out.join("report.json"))?;
        print_final(&report);
        Ok(())
    }
}

struct EvalJob<'a> {
    cfg: &'a CondenseConfig,
    ds: &'a data::Dataset,
    images: &'a [f32],
    labels: &'a [u32],
    command: &'static str,
    inv: &'a Invocation,
    /// `evaluate`: the set's path and SHA-256.
    evaluated_set: Option<serde_json::Value>,
    /// `evaluate --save-nets`: the directory, and metadata for every network file.
    save_nets: Option<(PathBuf, BTreeMap<String, String>)>,
    /// The experiment and iteration whose evaluation networks are trained (with
    /// `cfg.seed`).
    networks_of: (usize, usize),
}

impl Job for EvalJob<'_> {
    fn run<B: Backend>(self, be: &B, backend_name: String) -> Result<()> {
        let t0 = Instant::now();
        let mut progress = Progress::evaluation(self.cfg);
        let saving = self
            .save_nets
            .as_ref()
            .map(|(dir, metadata)| condense::evaluate::NetSaving {
                dir,
                metadata: metadata.clone(),
            });
        let result = condense::evaluate::evaluate_set_saving(
            be,
            self.cfg,
            self.ds,
            self.images,
            self.labels,
            self.networks_of.0,
            self.networks_of.1,
            saving.as_ref(),
            &mut progress,
        );
        progress.meter.finish(result.is_ok());
        let (recs, nets) = result?;
        let mut report = self
            .inv
            .report(self.command, self.cfg, self.ds, backend_name);
        report.evaluated_set = self.evaluated_set;
        report.eval_options = condense::evaluate::eval_settings(self.cfg)?;
        for r in &recs {
            report.final_accuracy.insert(r.model.clone(), r.summary);
        }
        report.evaluations = recs;
        report.fill_results(&self.cfg.eval_models());
        report
            .timings
            .insert("eval_seconds".into(), t0.elapsed().as_secs_f64());
        for path in &nets {
            report.outputs.push(output_name(&self.cfg.out, path));
        }
        report.outputs.push("report.json".into());
        report.finish();
        report.write(&self.cfg.out.join("report.json"))?;
        print_final(&report);
        Ok(())
    }
}

/// How the report lists a file written: relative to the output directory when it
/// is inside it, else as its path.
fn output_name(out: &std::path::Path, path: &std::path::Path) -> String {
    path.strip_prefix(out).unwrap_or(path).display().to_string()
}

fn print_final(report: &Report) {
    if let [r] = report.results.as_slice() {
        println!(
            "{} {}: test accuracy {:.2} +- {:.2} % (mean +- std over {} networks, {} epochs, augmentation {})",
            report.command,
            r.model,
            100.0 * r.accuracy.mean,
            100.0 * r.accuracy.std,
            r.accuracy.n,
            r.epochs,
            r.augmentation
        );
        return;
    }
    println!(
        "{}: final test accuracy per evaluation model (mean +- std over networks)",
        report.command
    );
    for line in report.results_table() {
        println!("  {line}");
    }
}

/// Validates the output directory, loads the dataset and checks it against the
/// configuration.
fn prepare(cfg: &CondenseConfig) -> Result<data::Dataset> {
    output::ensure_output_dir(&cfg.out).context("--out is not writable")?;
    let mut opts = LoadOptions::from_env(cfg.data_dir.clone());
    opts.download = cfg.download;
    let mut ds = data::load(&cfg.dataset, &opts)?;
    ds.limit(cfg.limit_train, cfg.limit_test);
    cfg.check_dataset(&ds)?;
    if !cfg.quiet {
        eprintln!(
            "{}: {} train / {} test images, {} classes, {}x{}x{}",
            ds.name, ds.train.n, ds.test.n, ds.num_classes, ds.channels, ds.height, ds.width
        );
        let files: Vec<String> = ds.files.iter().map(|p| p.display().to_string()).collect();
        eprintln!("read: {}", files.join(", "));
    }
    Ok(ds)
}

fn cuda_status() -> String {
    // SAFETY: `is_culib_present` only tries to dlopen the driver library and closes it.
    let present = unsafe { cudarc::driver::sys::is_culib_present() };
    if present {
        "libcuda found (NVIDIA driver present)".into()
    } else {
        "not available: libcuda.so was not found (no NVIDIA driver installed, or it is not on \
         the library search path)"
            .into()
    }
}

/// How the kernels were built, and ptxas's resource usage per kernel (sm_90).
fn kernel_info() {
    use dsa_condense::backend::cuda::{HAS_FATBIN, PTXAS_REPORT};
    if !HAS_FATBIN {
        println!("kernels: no nvcc at build time; compiled with NVRTC at run time on a GPU");
        return;
    }
    println!("kernels: fatbin built by nvcc (SASS sm_80/86/89/90, PTX compute_80)");
    println!("  ptxas resource usage, sm_90 (registers, shared memory, spills):");
    let mut current: Option<String> = None;
    let mut in_sm90 = false;
    for line in PTXAS_REPORT.lines() {
        if line.contains("Compiling entry function") {
            in_sm90 = line.contains("sm_90");
            current = line.split('\'').nth(1).map(str::to_string);
        } else if in_sm90 && line.contains("Used") {
            if let Some(name) = current.take() {
                let usage = line.split(": ").nth(1).unwrap_or(line).trim();
                println!("    {name:<28} {usage}");
            }
        } else if in_sm90 && line.contains("spill") && line.contains(", ") {
            let t = line.trim();
            if !t.starts_with("0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads") {
                println!("      {t}");
            }
        }
    }
}

fn info() -> Result<()> {
    println!("dsa-condense {}", env!("CARGO_PKG_VERSION"));
    println!("backends:");
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("  cpu: available ({threads} threads)");
    println!("  cuda: {}", cuda_status());
    kernel_info();
    println!(
        "data search order: --data-dir, ${}, then:",
        locate::ENV_DATA_DIR
    );
    for d in locate::standard_dirs() {
        println!("  {}", d.display());
    }
    let opts = LoadOptions::from_env(None);
    println!("datasets found locally:");
    for kind in [
        DatasetKind::Mnist,
        DatasetKind::FashionMnist,
        DatasetKind::Svhn,
        DatasetKind::Cifar10,
        DatasetKind::Cifar100,
    ] {
        let found = locate::candidate_dirs(&kind, &opts)
            .into_iter()
            .find(|d| locate::present(&kind, d));
        match found {
            Some(d) => println!("  {kind}: {}", d.display()),
            None => println!("  {kind}: not found"),
        }
    }
    Ok(())
}
