//! The condensation pipeline end to end: the library loop on small random data
//! (resume equals an uninterrupted run bit for bit, NaN stops the run, BatchNorm
//! and DC paths, seeds), and the binary on real Fashion-MNIST.

use std::path::Path;
use std::process::Command;

mod folders;

use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::Precision;
use dsa_condense::condense::config::{CondenseArgs, CondenseConfig};
use dsa_condense::condense::{run, Observer, RunFiles, RunResult, Silent};
use dsa_condense::data::{Dataset, RawSplit};
use dsa_condense::output::report::EvalRecord;
use dsa_condense::Error;
use rand::{Rng, SeedableRng};

/// 4 classes of 1x10x10 images: class c is a bright band at rows 2c..2c+2 plus noise,
/// so the classes are learnable.
fn toy_dataset(per_class: usize) -> Dataset {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let mut split = |n: usize| {
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n * 4 {
            let c = (i % 4) as u32;
            for r in 0..10 {
                for _ in 0..10 {
                    let base = if r / 2 == c as usize { 200.0 } else { 40.0 };
                    let v: f64 = base + rng.random_range(-30.0..30.0);
                    pixels.push(v as u8);
                }
            }
            labels.push(c);
        }
        RawSplit { pixels, labels }
    };
    let train = split(per_class);
    let test = split(10);
    Dataset::from_raw(
        "toy",
        "toy",
        (1, 10, 10),
        4,
        vec![0.3],
        vec![0.3],
        &train,
        &test,
    )
    .expect("toy dataset")
}

fn config(extra: &[(&str, &str)]) -> CondenseConfig {
    let mut a = CondenseArgs {
        method: Some("dsa".into()),
        dataset: Some("FashionMNIST".into()),
        model: Some("ConvNetW32".into()),
        ipc: Some(2),
        outer_loop: Some(2),
        inner_loop: Some(1),
        iterations: Some(3),
        batch_real: Some(6),
        batch_train: Some(5),
        num_exp: Some(1),
        num_eval: Some(1),
        epoch_eval_train: Some(2),
        eval_every: Some(2),
        init: Some("real".into()),
        seed: Some(7),
        threads: Some(1),
        ..Default::default()
    };
    for (k, v) in extra {
        match *k {
            "method" => a.method = Some(v.to_string()),
            "model" => a.model = Some(v.to_string()),
            "lr_img" => a.lr_img = Some(v.parse().unwrap()),
            "seed" => a.seed = Some(v.parse().unwrap()),
            "init" => a.init = Some(v.to_string()),
            "num_exp" => a.num_exp = Some(v.parse().unwrap()),
            "precision" => a.precision = Some(v.to_string()),
            other => panic!("test config: unknown key {other}"),
        }
    }
    a.resolve().expect("valid test configuration")
}

fn files(dir: &Path, every: usize) -> RunFiles {
    RunFiles {
        dir: dir.to_path_buf(),
        checkpoint: dir.join("checkpoint.safetensors"),
        checkpoint_every: every,
    }
}

/// Stops the run after `after` iterations.
struct StopAfter {
    left: usize,
}

impl Observer for StopAfter {
    fn iteration(&mut self, _: usize, _: usize, _: f64) {}
    fn evaluation(&mut self, _: &EvalRecord) {}
    fn message(&mut self, _: &str) {}
    fn keep_going(&mut self) -> bool {
        self.left -= 1;
        self.left > 0
    }
}

fn run_cpu(
    cfg: &CondenseConfig,
    ds: &Dataset,
    files: Option<&RunFiles>,
    resume: Option<&Path>,
    obs: &mut dyn Observer,
) -> dsa_condense::Result<RunResult> {
    let be = Cpu::<f32>::new(1).unwrap().with_precision(cfg.precision);
    run(&be, cfg, ds, files, resume, obs)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn resumed_run_equals_uninterrupted_run_bit_for_bit() {
    let ds = toy_dataset(12);
    let cfg = config(&[("num_exp", "2")]);
    let full_dir = tempfile::tempdir().unwrap();
    let full = run_cpu(
        &cfg,
        &ds,
        Some(&files(full_dir.path(), 1)),
        None,
        &mut Silent,
    )
    .unwrap();
    assert_eq!(full.experiments.len(), 2);
    assert_eq!(full.losses.len(), 2 * 4);
    assert!(full
        .losses
        .iter()
        .all(|l| l.loss.is_finite() && l.loss > 0.0));
    // Evaluations at iterations 0, 2, 3 of both experiments, one model each.
    assert_eq!(full.evaluations.len(), 2 * 3);

    // Interrupt in the middle of the first experiment, and once more in the second.
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path(), 0);
    let e = run_cpu(&cfg, &ds, Some(&f), None, &mut StopAfter { left: 2 }).unwrap_err();
    assert!(matches!(e, Error::Interrupted(_)), "{e}");
    assert!(
        f.checkpoint.exists(),
        "an interrupted run leaves a checkpoint"
    );
    let e = run_cpu(
        &cfg,
        &ds,
        Some(&f),
        Some(&f.checkpoint),
        &mut StopAfter { left: 3 },
    )
    .unwrap_err();
    assert!(matches!(e, Error::Interrupted(_)), "{e}");
    let resumed = run_cpu(&cfg, &ds, Some(&f), Some(&f.checkpoint), &mut Silent).unwrap();

    assert_eq!(resumed.experiments.len(), 2);
    for (a, b) in full.experiments.iter().zip(&resumed.experiments) {
        assert_eq!(
            bits(&a.images),
            bits(&b.images),
            "synthetic sets differ after resume"
        );
        assert_eq!(a.labels, b.labels);
    }
    let la: Vec<u64> = full.losses.iter().map(|l| l.loss.to_bits()).collect();
    let lb: Vec<u64> = resumed.losses.iter().map(|l| l.loss.to_bits()).collect();
    assert_eq!(la, lb, "loss history differs after resume");
    assert_eq!(full.evaluations, resumed.evaluations);
}

#[test]
fn resume_refuses_another_configuration() {
    let ds = toy_dataset(12);
    let cfg = config(&[]);
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path(), 1);
    run_cpu(&cfg, &ds, Some(&f), None, &mut StopAfter { left: 1 }).unwrap_err();
    let other = config(&[("seed", "8")]);
    let e = run_cpu(&other, &ds, Some(&f), Some(&f.checkpoint), &mut Silent).unwrap_err();
    assert!(e.to_string().contains("another configuration"), "{e}");
    assert!(
        e.to_string().contains("seed: 7 (checkpoint) vs 8 (now)"),
        "{e}"
    );

    // Another arithmetic of the products is another configuration, both ways (an
    // FP32 record has no precision entry: checkpoints from before the option).
    let bf16 = config(&[("precision", "bf16")]);
    let e = run_cpu(&bf16, &ds, Some(&f), Some(&f.checkpoint), &mut Silent).unwrap_err();
    assert!(
        e.to_string()
            .contains(r#"precision: - (checkpoint) vs "bf16" (now)"#),
        "{e}"
    );
    let dir16 = tempfile::tempdir().unwrap();
    let f16 = files(dir16.path(), 1);
    run_cpu(&bf16, &ds, Some(&f16), None, &mut StopAfter { left: 1 }).unwrap_err();
    let e = run_cpu(&cfg, &ds, Some(&f16), Some(&f16.checkpoint), &mut Silent).unwrap_err();
    assert!(
        e.to_string()
            .contains(r#"precision: "bf16" (checkpoint) vs - (now)"#),
        "{e}"
    );
    // the same precision resumes
    let e = run_cpu(
        &bf16,
        &ds,
        Some(&f16),
        Some(&f16.checkpoint),
        &mut StopAfter { left: 1 },
    )
    .unwrap_err();
    assert!(matches!(e, Error::Interrupted(_)), "{e}");
    // a backend that computes in another precision than the configuration says
    let be = Cpu::<f32>::new(1).unwrap().with_precision(Precision::Tf32);
    let e = run(&be, &bf16, &ds, None, None, &mut Silent).unwrap_err();
    assert!(
        e.to_string().contains("--precision") && e.to_string().contains("tf32"),
        "{e}"
    );

    // A checkpoint of the same configuration whose set has another shape (re-saved
    // with a valid digest) is refused naming the file, before any work.
    let mut ck = dsa_condense::output::Checkpoint::load(&f.checkpoint).unwrap();
    let per = ck.images.len() / ck.shape[0];
    ck.shape[0] -= 1;
    ck.images.truncate(ck.shape[0] * per);
    ck.labels.pop();
    ck.momentum.truncate(ck.images.len());
    ck.save(&f.checkpoint).unwrap();
    let e = run_cpu(&cfg, &ds, Some(&f), Some(&f.checkpoint), &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("checkpoint.safetensors") && e.contains("shape"),
        "{e}"
    );
}

#[test]
fn same_seed_same_set_other_seed_other_set() {
    let ds = toy_dataset(12);
    let a = run_cpu(&config(&[]), &ds, None, None, &mut Silent).unwrap();
    let b = run_cpu(&config(&[]), &ds, None, None, &mut Silent).unwrap();
    let c = run_cpu(&config(&[("seed", "8")]), &ds, None, None, &mut Silent).unwrap();
    assert_eq!(
        bits(&a.experiments[0].images),
        bits(&b.experiments[0].images)
    );
    assert_ne!(
        bits(&a.experiments[0].images),
        bits(&c.experiments[0].images)
    );
}

#[test]
fn condensation_moves_the_images_with_finite_losses() {
    let ds = toy_dataset(12);
    let mut args_cfg = config(&[("init", "noise")]);
    args_cfg.iterations = 6;
    args_cfg.eval_every = 100;
    let r = run_cpu(&args_cfg, &ds, None, None, &mut Silent).unwrap();
    let first = r.losses.first().unwrap().loss;
    assert!(r.losses.iter().all(|l| l.loss.is_finite()));
    // Different networks every iteration make single losses noisy; the images
    // must have moved away from their initialisation in any case.
    let again = {
        let mut c = args_cfg.clone();
        c.iterations = 0;
        run_cpu(&c, &ds, None, None, &mut Silent).unwrap()
    };
    let moved: f32 = r.experiments[0]
        .images
        .iter()
        .zip(&again.experiments[0].images)
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(moved > 0.0 && first > 0.0);
}

#[test]
fn exploding_images_stop_with_a_non_finite_error_naming_the_iteration() {
    let ds = toy_dataset(12);
    let cfg = config(&[("lr_img", "1e38"), ("init", "noise")]);
    let dir = tempfile::tempdir().unwrap();
    let e = run_cpu(&cfg, &ds, Some(&files(dir.path(), 1)), None, &mut Silent).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::NonFinite(_)), "{msg}");
    assert!(msg.contains("iteration"), "{msg}");
}

#[test]
fn dc_with_batchnorm_runs_and_evaluates_without_bn() {
    let ds = toy_dataset(20);
    let cfg = config(&[("method", "dc"), ("model", "ConvNetBN")]);
    let r = run_cpu(&cfg, &ds, None, None, &mut Silent).unwrap();
    assert!(r.losses.iter().all(|l| l.loss.is_finite()));
    // Eval mode S drops the BN suffix (docs/method.md §5.8).
    assert!(
        r.evaluations.iter().all(|e| e.model == "ConvNet"),
        "{:?}",
        r.evaluations
    );
    assert!(r
        .evaluations
        .iter()
        .all(|e| e.accuracies.iter().all(|a| (0.0..=1.0).contains(a))));
}

// ---- the binary on real data ------------------------------------------------

const FMNIST: &str = "/usr/share/datasets/fashion-mnist";

fn bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dsa-condense"))
        .args(args)
        .output()
        .expect("run dsa-condense")
}

#[test]
fn binary_condenses_evaluates_and_baselines_fashion_mnist() {
    if !Path::new(FMNIST)
        .join("train-images-idx3-ubyte.gz")
        .exists()
    {
        println!("skipped: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.to_str().unwrap();
    let common = [
        "--dataset",
        "FashionMNIST",
        "--data-dir",
        FMNIST,
        "--no-download",
        "--model",
        "ConvNetW32",
        "--ipc",
        "1",
        "--num-exp",
        "1",
        "--num-eval",
        "2",
        "--epoch-eval-train",
        "3",
        "--limit-train",
        "2000",
        "--limit-test",
        "500",
        "--backend",
        "cpu",
        "--quiet",
        "--seed",
        "3",
    ];
    let mut args = vec![
        "condense",
        "--method",
        "dsa",
        "--init",
        "real",
        "--iterations",
        "2",
        "--eval-every",
        "2",
        "--batch-real",
        "16",
        "--checkpoint-every",
        "1",
        "--out",
        out_s,
    ];
    args.extend(common);
    let o = bin(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "condense failed: {err}");
    assert!(stdout.contains("test accuracy"), "{stdout}");

    let set = dsa_condense::output::read_synset(&out.join("synset.safetensors")).unwrap();
    assert_eq!(set.shape, [10, 1, 28, 28]);
    assert_eq!(set.labels, (0..10).collect::<Vec<u32>>());
    assert!(set.images.iter().all(|v| v.is_finite()));
    assert_eq!(
        set.metadata.get("dataset").map(String::as_str),
        Some("FashionMNIST")
    );
    assert_eq!(set.metadata.get("method").map(String::as_str), Some("DSA"));
    assert_eq!(set.metadata.get("ipc").map(String::as_str), Some("1"));
    let png = std::fs::read(out.join("synset.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(out.join("checkpoint.safetensors").exists());

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["losses"].as_array().unwrap().len(), 3);
    let evals = report["evaluations"].as_array().unwrap();
    let iters: Vec<u64> = evals
        .iter()
        .map(|e| e["iteration"].as_u64().unwrap())
        .collect();
    assert_eq!(iters, vec![0, 2]);
    let fin = &report["final_accuracy"]["ConvNetW32"];
    assert_eq!(fin["n"].as_u64(), Some(2));
    let mean = fin["mean"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&mean), "{report}");
    assert!(report["timings"]["total_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(report["seed"].as_u64(), Some(3));
    // How the evaluation networks trained, per evaluation model.
    let opts = &report["eval_options"]["ConvNetW32"];
    assert_eq!(opts["epochs"].as_u64(), Some(3), "{report}");
    assert_eq!(
        opts["dsa_strategy"], "color_crop_cutout_flip_scale_rotate",
        "{report}"
    );
    assert!(opts["dc_augmentation"].is_null(), "{report}");

    // Evaluate the saved set, and the random-real baseline, with the same protocol.
    let eval_out = dir.path().join("eval");
    let syn = out.join("synset.safetensors");
    let mut args = vec![
        "evaluate",
        "--synset",
        syn.to_str().unwrap(),
        "--out",
        eval_out.to_str().unwrap(),
    ];
    args.extend(common);
    let o = bin(&args);
    assert!(
        o.status.success(),
        "evaluate failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // the evaluate report names the set it evaluated, with the file's digest
    let r = report_of(&eval_out);
    assert_eq!(r["evaluated_set"]["path"], syn.to_str().unwrap());
    assert_eq!(
        r["evaluated_set"]["sha256"],
        dsa_condense::data::locate::sha256_hex(&std::fs::read(&syn).unwrap())
    );
    assert_eq!(
        r["evaluated_set"]["networks_of"],
        serde_json::json!({"seed": 3, "experiment": 0, "iteration": 0})
    );

    // `--as-run` trains the networks of the run's last evaluation: the accuracies
    // the run reported for the saved set, network for network.
    let as_run_out = dir.path().join("as_run");
    let mut args = vec!["evaluate", "--synset", syn.to_str().unwrap(), "--as-run"];
    args.extend(["--out", as_run_out.to_str().unwrap()]);
    args.extend(common);
    let o = bin(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = report_of(&as_run_out);
    assert_eq!(
        r["evaluated_set"]["networks_of"],
        serde_json::json!({"seed": 3, "experiment": 0, "iteration": 2})
    );
    let run_last = &evals[1]["accuracies"];
    assert!(run_last.as_array().unwrap().len() == 2, "{report}");
    assert_eq!(&r["evaluations"][0]["accuracies"], run_last, "{r}");
    // another seed than the set's is a contradiction; a set without the run's
    // metadata cannot be evaluated as its run
    let mut seed4 = common.to_vec();
    let i = seed4.iter().position(|&a| a == "--seed").unwrap();
    seed4[i + 1] = "4";
    let mut args = vec!["evaluate", "--synset", syn.to_str().unwrap(), "--as-run"];
    args.extend(["--out", as_run_out.to_str().unwrap()]);
    args.extend(seed4);
    let o = bin(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--as-run") && err.contains("seed 3"),
        "{err}"
    );
    let bare = dir.path().join("bare.safetensors");
    let mut meta = set.metadata.clone();
    meta.remove("iteration");
    dsa_condense::output::write_synset_safetensors(
        &bare,
        &set.images,
        set.shape,
        &set.labels,
        &meta,
    )
    .unwrap();
    let mut args = vec!["evaluate", "--synset", bare.to_str().unwrap(), "--as-run"];
    args.extend(["--out", as_run_out.to_str().unwrap()]);
    args.extend(common.iter().copied());
    let o = bin(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("bare.safetensors") && err.contains("`iteration`"),
        "{err}"
    );

    let base_out = dir.path().join("base");
    let mut args = vec![
        "baseline",
        "--method",
        "dsa",
        "--out",
        base_out.to_str().unwrap(),
    ];
    args.extend(common);
    let o = bin(&args);
    assert!(
        o.status.success(),
        "baseline failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(base_out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["command"], "baseline");
    assert_eq!(r["eval_options"]["ConvNetW32"]["epochs"].as_u64(), Some(3));
    assert_eq!(r["final_accuracy"]["ConvNetW32"]["n"].as_u64(), Some(2));

    // A corrupt synthetic set is a clear error, non-zero exit.
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, b"not a safetensors file").unwrap();
    let mut args = vec![
        "evaluate",
        "--synset",
        bad.to_str().unwrap(),
        "--out",
        eval_out.to_str().unwrap(),
    ];
    args.extend(common);
    let o = bin(&args);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.safetensors"));
}

/// Options of a tiny Fashion-MNIST run (`None` when the dataset is missing).
fn tiny_fmnist(extra: &[&'static str]) -> Option<Vec<&'static str>> {
    if !Path::new(FMNIST)
        .join("train-images-idx3-ubyte.gz")
        .exists()
    {
        println!("skipped: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return None;
    }
    let mut v = vec![
        "--dataset",
        "FashionMNIST",
        "--data-dir",
        FMNIST,
        "--no-download",
        "--ipc",
        "1",
        "--num-exp",
        "1",
        "--num-eval",
        "1",
        "--epoch-eval-train",
        "2",
        "--limit-train",
        "500",
        "--limit-test",
        "100",
        "--backend",
        "cpu",
        "--quiet",
        "--seed",
        "5",
    ];
    v.extend(extra);
    Some(v)
}

fn report_of(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

/// The result table of a report: (model, networks, epochs) per row.
fn result_rows(r: &serde_json::Value) -> Vec<(String, u64, u64)> {
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let acc = row["accuracy"]["mean"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&acc), "{row}");
            (
                row["model"].as_str().unwrap().to_string(),
                row["accuracy"]["n"].as_u64().unwrap(),
                row["epochs"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn binary_condenses_with_lenet_and_evaluates_the_cross_architecture_pool() {
    let Some(common) = tiny_fmnist(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut args = vec![
        "condense",
        "--method",
        "dsa",
        "--model",
        "LeNet",
        "--eval-mode",
        "M",
        "--iterations",
        "2",
        "--eval-every",
        "1",
        "--batch-real",
        "8",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(common);
    let o = bin(&args);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "condense failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r = report_of(&out);
    assert_eq!(r["config"]["model"], "LeNet");
    // the report names the files read, with their sizes and digests
    let files = r["data_files"].as_array().unwrap();
    assert_eq!(files.len(), 4, "{files:?}");
    for f in files {
        let path = std::path::Path::new(f["path"].as_str().unwrap());
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(f["bytes"], bytes.len() as u64, "{f}");
        assert_eq!(
            f["sha256"].as_str().unwrap(),
            dsa_condense::digest::sha256_hex(&bytes),
            "{f}"
        );
    }
    // the DSA ranges used
    assert_eq!(r["config"]["dsa_params"]["ratio_rotate"], 15.0);
    // and what the data and the run were
    assert_eq!(r["data"]["train_images"], 500);
    assert_eq!(r["data"]["class_names"].as_array().unwrap().len(), 10);
    let cmd: Vec<&str> = r["run"]["command_line"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        cmd.contains(&"LeNet") && cmd.contains(&"condense"),
        "{cmd:?}"
    );
    assert_eq!(r["run"]["version"], env!("CARGO_PKG_VERSION"));
    let t = &r["timings"];
    assert!(t["finished_unix_s"].as_f64().unwrap() >= t["started_unix_s"].as_f64().unwrap());
    for (f, stem) in
        files
            .iter()
            .zip(["train-images", "train-labels", "t10k-images", "t10k-labels"])
    {
        let path = f["path"].as_str().unwrap();
        assert!(path.starts_with(FMNIST) && path.contains(stem), "{files:?}");
    }
    assert_eq!(r["losses"].as_array().unwrap().len(), 3);
    let models = ["MLP", "ConvNet", "LeNet", "AlexNet", "VGG11", "ResNet18"];
    let rows = result_rows(&r);
    assert_eq!(
        rows,
        models
            .iter()
            .map(|m| (m.to_string(), 1, 2))
            .collect::<Vec<_>>()
    );
    // A pool mode evaluates once, at the end, whatever --eval-every says.
    for e in r["evaluations"].as_array().unwrap() {
        assert_eq!(e["iteration"].as_u64(), Some(2), "{e}");
    }
    assert_eq!(r["evaluations"].as_array().unwrap().len(), models.len());
    for m in models {
        assert!(stdout.contains(m), "{m} missing from the table: {stdout}");
    }
    assert!(stdout.contains("augmentation"), "{stdout}");
}

#[test]
fn baseline_in_mode_w_evaluates_four_widths() {
    let Some(common) = tiny_fmnist(&["--method", "dsa", "--eval-mode", "W"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("base");
    let mut args = vec!["baseline", "--out", out.to_str().unwrap()];
    args.extend(common);
    let o = bin(&args);
    assert!(
        o.status.success(),
        "baseline failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rows = result_rows(&report_of(&out));
    let widths: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        widths,
        ["ConvNetW32", "ConvNetW64", "ConvNetW128", "ConvNetW256"]
    );
    assert!(rows.iter().all(|r| r.1 == 1 && r.2 == 2), "{rows:?}");
}

/// Every output file of a run, as bytes; `report.json` without what records how
/// and where it ran (`timings`, `backend`, `run`, the `threads` and `out` options).
fn output_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            if name != "report.json" {
                return (name, bytes);
            }
            let mut r: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let top = r.as_object_mut().unwrap();
            top.remove("timings");
            top.remove("backend");
            top.remove("run");
            let cfg = top["config"].as_object_mut().unwrap();
            cfg.remove("threads");
            cfg.remove("out");
            (name, serde_json::to_vec(&r).unwrap())
        })
        .collect()
}

#[test]
fn same_seed_gives_byte_identical_files_at_any_thread_count() {
    let Some(common) = tiny_fmnist(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (i, threads) in ["1", "2", "2"].into_iter().enumerate() {
        let out = dir.path().join(format!("run{i}"));
        let mut args = vec![
            "condense",
            "--method",
            "dsa",
            "--iterations",
            "2",
            "--eval-every",
            "2",
            "--batch-real",
            "8",
            "--checkpoint-every",
            "1",
            "--threads",
            threads,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(common.iter().copied());
        let o = bin(&args);
        assert!(
            o.status.success(),
            "condense failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        runs.push(output_bytes(&out));
    }
    let names: Vec<&str> = runs[0].iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "checkpoint.safetensors",
        "report.json",
        "synset.png",
        "synset.safetensors",
    ] {
        assert!(names.contains(&want), "{want} not written: {names:?}");
    }
    // the set saved is the set evaluated at the last iteration (same grid, same bytes)
    let file = |name: &str| &runs[0].iter().find(|(n, _)| n == name).unwrap().1;
    assert!(
        file("synset.png") == file("synset_exp0_iter2.png"),
        "the saved set is not the one evaluated at the last iteration"
    );
    for run in &runs[1..] {
        assert_eq!(run.len(), runs[0].len());
        for ((name, a), (_, b)) in runs[0].iter().zip(run) {
            assert!(a == b, "{name} differs between runs of the same seed");
        }
    }
}

/// A two-class folder of 16x16 grey images (two per class for training, one for
/// testing), pixel values from `seed`.
fn small_folder(root: &Path, seed: u8) {
    folders::grey_folder(root, 16, 2, 1, seed);
}

#[test]
fn resume_accepts_the_same_data_under_another_path_spelling_and_refuses_other_data() {
    let dir = tempfile::tempdir().unwrap();
    small_folder(&dir.path().join("data"), 3);
    let run = |cwd: &Path, dataset: &str, out: &str, resume: Option<&str>| {
        let mut args = vec![
            "condense",
            "--dataset",
            dataset,
            "--method",
            "dsa",
            "--iterations",
            "2",
            "--checkpoint-every",
            "1",
            "--batch-real",
            "2",
            "--num-exp",
            "1",
            "--num-eval",
            "1",
            "--epoch-eval-train",
            "1",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
            out,
        ];
        if let Some(r) = resume {
            args.extend(["--resume", r]);
        }
        std::process::Command::new(env!("CARGO_BIN_EXE_dsa-condense"))
            .args(&args)
            .current_dir(cwd)
            .output()
            .unwrap()
    };
    let abs = format!("folder:{}", dir.path().join("data").display());
    let first = dir.path().join("first");
    let o = run(dir.path(), &abs, first.to_str().unwrap(), None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ck = first.join("checkpoint.safetensors");
    let ck = ck.to_str().unwrap();

    // the same folder, spelled relative to the working directory
    let o = run(dir.path(), "folder:./data/../data", "again", Some(ck));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a = dsa_condense::output::read_synset(&first.join("synset.safetensors")).unwrap();
    let b =
        dsa_condense::output::read_synset(&dir.path().join("again/synset.safetensors")).unwrap();
    assert!(bits(&a.images) == bits(&b.images) && a.labels == b.labels);

    // the same path with other content is refused, naming what differs
    small_folder(&dir.path().join("data"), 5);
    let o = run(dir.path(), &abs, "other", Some(ck));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--resume") && err.contains("data:"), "{err}");
}

/// Starts `condense` on the tiny Fashion-MNIST set (`common`, see [`tiny_fmnist`])
/// with so many iterations that it cannot finish by itself during a test, stderr
/// piped, writing to `out`.
fn spawn_long_run(out: &Path, extra: &[&str], common: Vec<&str>) -> std::process::Child {
    let mut args = vec![
        "condense",
        "--method",
        "dsa",
        "--iterations",
        "100000",
        "--eval-every",
        "100000",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    args.extend(common);
    std::process::Command::new(env!("CARGO_BIN_EXE_dsa-condense"))
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends SIGINT (Ctrl-C) to `child`.
fn interrupt(child: &std::process::Child) {
    let ok = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -INT failed");
}

#[test]
fn a_second_interrupt_stops_at_once() {
    let Some(common) = tiny_fmnist(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_long_run(&dir.path().join("run"), &["--batch-real", "64"], common);
    std::thread::sleep(std::time::Duration::from_secs(2));
    interrupt(&child);
    std::thread::sleep(std::time::Duration::from_millis(100));
    interrupt(&child);
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed().as_secs() < 20,
            "still running after a second interrupt"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("second interrupt"), "{err}");
}

#[test]
fn piped_output_gets_log_lines_and_evaluations_as_they_happen() {
    let Some(common) = tiny_fmnist(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut args = vec![
        "condense",
        "--method",
        "dsa",
        "--iterations",
        "2",
        "--eval-every",
        "2",
        "--batch-real",
        "8",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(common.into_iter().filter(|a| *a != "--quiet"));
    let o = bin(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for it in 0..=2 {
        assert!(
            err.contains(&format!("exp 0 it {it}/2: loss")),
            "no log line for iteration {it}: {err}"
        );
    }
    assert!(err.contains("it/s") && err.contains("ETA"), "{err}");
    // the evaluations appear between the log lines, as they happen
    let eval0 = err.find("exp 0 it 0: ConvNet test accuracy").expect(&err);
    let log1 = err.find("exp 0 it 1/2").unwrap();
    assert!(eval0 < log1, "{err}");
    assert!(err.contains("read: "), "{err}");
}

#[test]
fn an_interrupted_run_still_writes_its_report_marked_interrupted() {
    let Some(common) = tiny_fmnist(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // not quiet: the log lines (stderr is a pipe) tell when an iteration is done
    let loud = common.into_iter().filter(|a| *a != "--quiet").collect();
    let extra = ["--batch-real", "16", "--checkpoint-every", "1000"];
    let mut child = spawn_long_run(&out, &extra, loud);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut err = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !err.iter().any(|l: &String| l.contains("it 0/100000: loss")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => err.push(line),
            Err(_) => panic!("no first iteration: {err:?}"),
        }
    }
    interrupt(&child);
    let status = child.wait().unwrap();
    err.extend(rx.iter());
    let err = err.join("\n");
    assert!(!status.success(), "{err}");
    assert!(err.contains("stopped after"), "{err}");
    let r = report_of(&out);
    assert_eq!(r["status"], "interrupted", "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("stopped after"),
        "{r}"
    );
    assert!(!r["losses"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(r["evaluations"][0]["iteration"], 0, "{r}");
    // the checkpoint written at the stop resumes the run
    assert!(out.join("checkpoint.safetensors").is_file());
}
