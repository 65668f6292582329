//! `dsa-condense`: the command line. Thin: options and their validation live in
//! the library (`dsa_condense::condense::config`); this file parses, dispatches and
//! prints errors (one line per cause, no backtrace, exit code 1).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use dsa_condense::condense::config::{CondenseArgs, CondenseConfig};
use dsa_condense::data::{self, locate, DatasetKind, LoadOptions};
use dsa_condense::output;

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
    /// The synthetic set to evaluate (written by `condense`).
    #[arg(long)]
    synset: PathBuf,
    #[command(flatten)]
    common: CondenseArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Command::Info => info(),
        Command::Condense(a) => {
            let cfg = a.resolve()?;
            prepare(&cfg)?;
            not_yet("condense")
        }
        Command::Evaluate(a) => {
            let mut common = a.common;
            let set = output::read_synset(&a.synset)?;
            if common.dataset.is_none() {
                common.dataset = set.metadata.get("dataset").cloned();
            }
            if common.ipc.is_none() {
                common.ipc = set.metadata.get("ipc").and_then(|v| v.parse().ok());
            }
            let cfg = common.resolve()?;
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
            not_yet("evaluate")
        }
        Command::Baseline(a) => {
            let cfg = a.resolve()?;
            prepare(&cfg)?;
            not_yet("baseline")
        }
    }
}

// GLUE: the condensation loop and the evaluation protocol are written in
// `dsa_condense::condense` / `dsa_condense::eval` by other engineers; until they
// land, these subcommands validate their options and data, then stop here.
fn not_yet(what: &str) -> Result<()> {
    anyhow::bail!(
        "`{what}` is not yet implemented in this build (options and data were checked; \
         the algorithm is not wired in yet)"
    )
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

fn info() -> Result<()> {
    println!("dsa-condense {}", env!("CARGO_PKG_VERSION"));
    println!("backends:");
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("  cpu: available ({threads} threads)");
    println!("  cuda: {}", cuda_status());
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
