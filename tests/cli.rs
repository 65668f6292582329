//! The `dsa-condense` binary and the configuration it resolves.

use std::process::{Command, Output};

mod folders;

use dsa_condense::backend::Precision;
use dsa_condense::condense::config::{get_loops, CondenseArgs, DisMetric, Method};
use dsa_condense::data::DatasetKind;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsa-condense"))
        .args(args)
        .env_remove("DSA_DATA_DIR")
        .output()
        .expect("run dsa-condense")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn info_reports_version_and_backends() {
    let o = run(&["info"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    assert!(out.contains("cpu: available"), "{out}");
    assert!(out.contains("cuda: "), "{out}");
}

#[test]
fn help_lists_subcommands_and_options() {
    let o = run(&["--help"]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    for s in ["condense", "evaluate", "baseline", "info"] {
        assert!(out.contains(s), "{s} missing from help: {out}");
    }
    let o = run(&["condense", "--help"]);
    let (out, _) = text(&o);
    for s in [
        "--ipc",
        "--dsa-strategy",
        "--outer-loop",
        "--preset",
        "--data-dir",
        "--resume",
        "--precision",
    ] {
        assert!(out.contains(s), "{s} missing: {out}");
    }
    // the values of --precision and what they mean, on one line
    let line = out
        .lines()
        .skip_while(|l| !l.contains("--precision"))
        .nth(1)
        .unwrap_or("");
    for s in ["fp32", "tf32", "bf16", "mantissa", "default: fp32"] {
        assert!(line.contains(s), "--precision help lacks {s}: {line}");
    }
}

fn fails_naming(args: &[&str], needle: &str) {
    let o = run(args);
    let (_, err) = text(&o);
    assert!(!o.status.success(), "{args:?} should fail");
    assert!(
        err.contains(needle),
        "{args:?}: stderr does not name {needle}: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("stack backtrace"),
        "{err}"
    );
}

#[test]
fn bad_options_fail_with_the_option_named() {
    fails_naming(&["condense", "--ipc", "0"], "--ipc");
    fails_naming(&["condense", "--ipc", "7"], "--outer-loop");
    fails_naming(&["condense", "--method", "foo"], "--method");
    fails_naming(&["condense", "--dataset", "imagenet"], "--dataset");
    fails_naming(&["condense", "--model", "ResNet99"], "--model");
    fails_naming(&["condense", "--eval-mode", "X"], "--eval-mode");
    fails_naming(
        &["condense", "--dsa-strategy", "color_blur"],
        "--dsa-strategy",
    );
    fails_naming(&["condense", "--dis-metric", "l1"], "--dis-metric");
    fails_naming(&["condense", "--ipc", "abc"], "--ipc");
    fails_naming(&["condense", "--preset", "slow"], "--preset");
    fails_naming(&["condense", "--no-such-option"], "--no-such-option");
    for sub in ["condense", "baseline"] {
        fails_naming(&[sub, "--precision", "fp16"], "--precision");
    }
}

#[test]
fn options_beyond_their_bounds_are_refused_before_any_work() {
    fails_naming(&["condense", "--threads", "100000"], "--threads");
    fails_naming(
        &["condense", "--iterations", "18446744073709551615"],
        "--iterations",
    );
    fails_naming(
        &["condense", "--iterations", "5000000", "--eval-every", "1"],
        "--eval-every",
    );
    fails_naming(
        &["condense", "--epoch-eval-train", "0"],
        "--epoch-eval-train",
    );
    fails_naming(
        &["baseline", "--epoch-eval-train", "0"],
        "--epoch-eval-train",
    );
    fails_naming(&["condense", "--num-eval", "1000000000"], "--num-eval");
    fails_naming(
        &["condense", "--backend", "cpu", "--device", "1"],
        "--device",
    );
}

#[test]
fn evaluate_and_baseline_refuse_the_options_of_condense() {
    for sub in ["baseline", "evaluate"] {
        for (opt, v) in [
            ("--resume", "x.safetensors"),
            ("--lr-img", "1"),
            ("--iterations", "5"),
            ("--checkpoint-every", "1"),
        ] {
            let mut args = vec![sub, opt, v];
            if sub == "evaluate" {
                args.extend(["--synset", "/nonexistent/set.safetensors"]);
            }
            fails_naming(&args, opt);
        }
        let o = run(&[sub, "--help"]);
        let (out, _) = text(&o);
        assert!(out.contains("--num-eval"), "{out}");
        for hidden in ["--resume", "--lr-img", "--iterations"] {
            assert!(!out.contains(hidden), "{sub} --help lists {hidden}: {out}");
        }
    }
}

#[test]
fn an_io_error_names_the_file_and_says_the_os_message_once() {
    let o = run(&["evaluate", "--synset", "/nonexistent/dir/set.safetensors"]);
    assert!(!o.status.success());
    let (_, err) = text(&o);
    assert!(err.contains("/nonexistent/dir/set.safetensors"), "{err}");
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the OS message once: {err}"
    );
}

/// A two-class image folder of one 4x4 grey image per class and split.
fn tiny_folder(dir: &std::path::Path) -> String {
    folders::grey_folder(&dir.join("folder"), 4, 1, 1, 1)
}

/// The options of a one-network, one-epoch evaluation on one CPU thread.
const ONE_QUICK_EVALUATION: [&str; 10] = [
    "--num-exp",
    "1",
    "--num-eval",
    "1",
    "--epoch-eval-train",
    "1",
    "--backend",
    "cpu",
    "--threads",
    "1",
];

#[test]
fn a_bf16_run_says_so_on_stderr_and_in_its_report() {
    let dir = tempfile::tempdir().unwrap();
    // two classes of two 16x16 images (one for testing), enough for a ConvNet
    let ds = folders::grey_folder(&dir.path().join("folder"), 16, 2, 1, 1);
    let out = dir.path().join("out");
    let o = run(&[
        &[
            "condense",
            "--dataset",
            &ds,
            "--method",
            "dsa",
            "--iterations",
            "1",
            "--batch-real",
            "2",
            "--precision",
            "BF16",
            "--out",
            out.to_str().unwrap(),
        ][..],
        &ONE_QUICK_EVALUATION,
    ]
    .concat());
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("backend: cpu") && l.contains("bf16 products")),
        "{err}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["config"]["precision"], "bf16");
    assert!(
        report["backend"]
            .as_str()
            .unwrap()
            .contains("bf16 products"),
        "{}",
        report["backend"]
    );

    // `evaluate` takes the option too: refused when bad, recorded when good
    let set = out.join("synset.safetensors");
    let eval_out = dir.path().join("eval");
    let evaluate = |precision: &str| {
        run(&[
            &[
                "evaluate",
                "--synset",
                set.to_str().unwrap(),
                "--quiet",
                "--precision",
                precision,
                "--out",
                eval_out.to_str().unwrap(),
            ][..],
            &ONE_QUICK_EVALUATION,
        ]
        .concat())
    };
    let o = evaluate("fp16");
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("--precision"), "{err}");
    let o = evaluate("tf32");
    assert!(o.status.success(), "{}", text(&o).1);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(eval_out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["config"]["precision"], "tf32");
}

#[test]
fn an_architecture_that_cannot_take_the_images_is_named_with_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let ds = tiny_folder(dir.path());
    let out = dir.path().join("out");
    // as the training model, and as an evaluation model of the pool
    for extra in [["--model", "LeNet"], ["--eval-mode", "M"]] {
        let mut args = vec!["condense", "--dataset", &ds, "--out", out.to_str().unwrap()];
        args.extend(extra);
        let o = run(&args);
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{args:?}");
        assert!(err.contains("--model"), "{err}");
        assert!(err.contains("LeNet") || err.contains("MLP"), "{err}");
        assert!(err.contains("4x4"), "{err}");
    }
}

#[test]
fn ipc_larger_than_a_class_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let ds = tiny_folder(dir.path());
    let out = dir.path().join("out");
    let o = run(&[
        "condense",
        "--dataset",
        &ds,
        "--ipc",
        "10",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("--ipc") && err.contains("only 1"), "{err}");
}

#[test]
fn unwritable_out_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("file");
    std::fs::write(&f, b"x").unwrap();
    let out = f.join("out");
    fails_naming(
        &[
            "condense",
            "--out",
            out.to_str().unwrap(),
            "--dataset",
            "MNIST",
        ],
        "--out",
    );
}

#[test]
fn missing_data_gives_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = run(&[
        "condense",
        "--dataset",
        "CIFAR100",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--no-download",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("not found") && err.contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn defaults_follow_the_reference() {
    let c = CondenseArgs::default().resolve().unwrap();
    assert_eq!(c.method, Method::Dc);
    assert_eq!(c.dataset, DatasetKind::Cifar10);
    assert_eq!(
        (c.ipc, c.num_exp, c.num_eval, c.iterations),
        (1, 5, 20, 1000)
    );
    assert_eq!(
        (c.lr_img, c.lr_net, c.batch_real, c.batch_train),
        (0.1, 0.01, 256, 256)
    );
    assert_eq!(c.dis_metric, DisMetric::Ours);
    assert_eq!((c.outer_loop, c.inner_loop), (1, 1));
    // Evaluation epochs are chosen per evaluation model (docs/method.md §5.3): DC on CIFAR10
    // with ConvNet trains without DC augmentation, so 300.
    assert_eq!(c.epoch_eval_train, None);
    assert_eq!(c.eval_epochs("ConvNet"), 300);
    assert_eq!(c.dc_augmentation("ConvNet").unwrap().to_string(), "none");
    assert_eq!(c.eval_iterations(), vec![0, 500, 1000]);
    assert_eq!(
        c.dsa_strategy.join("_"),
        "color_crop_cutout_flip_scale_rotate"
    );

    let a = CondenseArgs {
        method: Some("DSA".into()),
        dataset: Some("SVHN".into()),
        ipc: Some(10),
        model: Some("convnetbn".into()),
        ..Default::default()
    };
    let c = a.resolve().unwrap();
    assert_eq!(
        c.dsa_strategy.join("_"),
        "color_crop_cutout_scale_rotate",
        "no flip for digits"
    );
    assert_eq!((c.outer_loop, c.inner_loop), (10, 50));
    assert_eq!(c.model, "ConvNetBN");
    assert_eq!(c.eval_models(), vec!["ConvNet"]);
    assert_eq!(c.eval_epochs("ConvNet"), 1000, "DSA: always 1000");
    assert_eq!(c.dc_augmentation("ConvNet"), None);
    // DC with ConvNetBN in mode S evaluates ConvNet: no crop_noise, 300 epochs;
    // only the evaluation model ConvNetBN itself (mode SS) gets 1000.
    let dc_bn = CondenseArgs {
        model: Some("ConvNetBN".into()),
        ..Default::default()
    };
    let c = dc_bn.resolve().unwrap();
    assert_eq!(c.eval_epochs(&c.eval_models()[0]), 300);
    let c = CondenseArgs {
        eval_mode: Some("SS".into()),
        ..dc_bn
    }
    .resolve()
    .unwrap();
    assert_eq!(c.eval_epochs(&c.eval_models()[0]), 1000);
    assert_eq!(get_loops(50), Some((50, 10)));

    // Every architecture is accepted (case-insensitively), named as the reference.
    for name in dsa_condense::model::ARCHITECTURES {
        let c = CondenseArgs {
            model: Some(name.to_lowercase()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(&c.model, name);
    }
    // The pools of the evaluation modes, evaluated once, at the end.
    let pool = |mode: &str| {
        let c = CondenseArgs {
            eval_mode: Some(mode.into()),
            iterations: Some(1000),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.eval_iterations(), vec![1000], "mode {mode}");
        c.eval_models()
    };
    assert_eq!(
        pool("M"),
        ["MLP", "ConvNet", "LeNet", "AlexNet", "VGG11", "ResNet18"]
    );
    assert_eq!(
        pool("B"),
        [
            "ConvNetBN",
            "ConvNetASwishBN",
            "AlexNetBN",
            "VGG11BN",
            "ResNet18BN"
        ]
    );
    assert_eq!(
        pool("w"),
        ["ConvNetW32", "ConvNetW64", "ConvNetW128", "ConvNetW256"]
    );
    assert_eq!(
        pool("D"),
        ["ConvNetD1", "ConvNetD2", "ConvNetD3", "ConvNetD4"]
    );
    assert_eq!(
        pool("A"),
        ["ConvNetAS", "ConvNetAR", "ConvNetAL", "ConvNetASwish"]
    );
    assert_eq!(pool("P"), ["ConvNetNP", "ConvNetMP", "ConvNetAP"]);
    assert_eq!(
        pool("N"),
        [
            "ConvNetNN",
            "ConvNetBN",
            "ConvNetLN",
            "ConvNetIN",
            "ConvNetGN"
        ]
    );
    // S and SS evaluate every eval_every iterations and at the end.
    let c = CondenseArgs {
        eval_mode: Some("SS".into()),
        model: Some("ResNet18BN_AP".into()),
        iterations: Some(1000),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    assert_eq!(c.eval_iterations(), vec![0, 500, 1000]);
    assert_eq!(c.eval_models(), ["ResNet18BN_AP"]);
    let c = CondenseArgs {
        model: Some("ResNet18BN_AP".into()),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    assert_eq!(c.eval_models(), ["ResNet18"]);

    assert_eq!(get_loops(7), None);

    let c = CondenseArgs {
        ipc: Some(100),
        outer_loop: Some(100),
        inner_loop: Some(2),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    assert_eq!((c.outer_loop, c.inner_loop), (100, 2));

    // The preset fills unset options; explicit ones win.
    let c = CondenseArgs {
        preset: Some("quick".into()),
        iterations: Some(5),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    assert_eq!(
        (c.method, c.iterations, c.dataset.clone()),
        (Method::Dsa, 5, DatasetKind::FashionMnist)
    );
    assert_eq!(c.batch_real, 64);
    let json = c.to_json();
    assert_eq!(json["dataset"], "FashionMNIST");

    // --precision: fp32 unless asked, any case
    assert_eq!(c.precision, Precision::Fp32);
    assert_eq!(json["precision"], "fp32");
    for (v, p) in [
        ("fp32", Precision::Fp32),
        ("TF32", Precision::Tf32),
        ("bf16", Precision::Bf16),
    ] {
        let c = CondenseArgs {
            precision: Some(v.into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.precision, p);
    }
}

/// A two-class folder of 8x8 grey images (two per class and split, distinct pixels).
fn small_folder(dir: &std::path::Path) -> String {
    folders::grey_folder(&dir.join("small"), 8, 2, 2, 1)
}

/// The log lines of an evaluation's progress in `stderr`.
fn eval_progress_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains("epochs/s")).collect()
}

#[test]
fn evaluate_and_baseline_log_their_progress_when_piped_and_not_when_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let ds = small_folder(dir.path());
    // a one-image-per-class set of the folder's shape, as `condense` writes it
    let set = dir.path().join("set.safetensors");
    let meta: std::collections::BTreeMap<String, String> =
        [("dataset", ds.as_str()), ("ipc", "1"), ("method", "dsa")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let images: Vec<f32> = (0..2 * 64).map(|i| (i % 13) as f32 / 6.0 - 1.0).collect();
    dsa_condense::output::write_synset_safetensors(&set, &images, [2, 1, 8, 8], &[0, 1], &meta)
        .unwrap();
    let out = dir.path().join("out");
    let common = [
        "--num-eval",
        "2",
        "--epoch-eval-train",
        "19",
        "--backend",
        "cpu",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ];
    let set_s = set.to_str().unwrap();
    for cmd in [
        vec!["evaluate", "--synset", set_s],
        vec!["baseline", "--dataset", &ds, "--ipc", "1"],
    ] {
        let mut args = cmd.clone();
        args.extend(common);
        // piped stderr: 2 networks x 20 epochs, a line at every 5 % (2 epochs)
        let o = run(&args);
        let (_, err) = text(&o);
        assert!(o.status.success(), "{args:?}: {err}");
        let lines = eval_progress_lines(&err);
        assert_eq!(lines.len(), 20, "{args:?}: {err}");
        assert!(
            lines[0].starts_with("ConvNet net 1/2 epoch 2/20 (2/40 epochs): ")
                && lines[19].starts_with("ConvNet net 2/2 epoch 20/20 (40/40 epochs): "),
            "{err}"
        );
        assert!(
            lines
                .iter()
                .all(|l| l.contains("elapsed") && l.contains("ETA")),
            "{err}"
        );
        // the evaluation result comes after the last progress line
        let last = err.find(lines[19]).unwrap();
        let result = err.find("ConvNet test accuracy").expect(&err);
        assert!(last < result, "{err}");
        // --quiet: no progress lines (the result is still printed)
        args.push("--quiet");
        let o = run(&args);
        let (stdout, err) = text(&o);
        assert!(o.status.success(), "{args:?}: {err}");
        assert!(eval_progress_lines(&err).is_empty(), "{err}");
        assert!(!err.contains("ETA"), "{err}");
        assert!(stdout.contains("test accuracy"), "{stdout}");
    }
}

/// `evaluate` and `baseline` learn no set, so an ipc without default loop sizes
/// (here 2) is theirs to take; `condense` still asks for the loop sizes.
#[test]
fn evaluate_and_baseline_take_an_ipc_without_default_loop_sizes() {
    let two = CondenseArgs {
        ipc: Some(2),
        ..Default::default()
    };
    let err = two.resolve().unwrap_err().to_string();
    assert!(
        err.contains("--ipc") && err.contains("--outer-loop"),
        "{err}"
    );
    assert_eq!(two.resolve_for_evaluation().unwrap().ipc, 2);

    let dir = tempfile::tempdir().unwrap();
    let ds = small_folder(dir.path());
    let set = dir.path().join("set.safetensors");
    let meta: std::collections::BTreeMap<String, String> =
        [("dataset", ds.as_str()), ("ipc", "2"), ("method", "dsa")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let images: Vec<f32> = (0..4 * 64).map(|i| (i % 11) as f32 / 5.0 - 1.0).collect();
    dsa_condense::output::write_synset_safetensors(
        &set,
        &images,
        [4, 1, 8, 8],
        &[0, 0, 1, 1],
        &meta,
    )
    .unwrap();
    let out = dir.path().join("out");
    let common = [
        "--num-eval",
        "1",
        "--epoch-eval-train",
        "2",
        "--backend",
        "cpu",
        "--threads",
        "1",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    for cmd in [
        vec!["evaluate", "--synset", set.to_str().unwrap()],
        vec!["baseline", "--dataset", &ds, "--ipc", "2"],
    ] {
        let mut args = cmd.clone();
        args.extend(common);
        let o = run(&args);
        let (_, err) = text(&o);
        assert!(o.status.success(), "{args:?}: {err}");
        assert!(err.contains("ConvNet test accuracy"), "{args:?}: {err}");
    }
}
