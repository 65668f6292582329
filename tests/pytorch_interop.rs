//! Interoperability with the PyTorch reference: trained evaluation networks saved
//! as `state_dict`s (`evaluate --save-nets`, `output::write_network_safetensors`)
//! and, further down, synthetic sets converted from the reference's `.pt` files
//! (`scripts/convert_reference_pt.py`).
//!
//! The Rust side of every test always runs. The PyTorch side (strict
//! `load_state_dict` into the reference modules of `scripts/pytorch_arch_step.py`,
//! logits compared with ours; building a `.pt` as the reference saves it) needs
//! `python3` with `torch`: without it the test prints `SKIPPED: torch not installed`
//! for that part and passes, unless `DSA_REQUIRE_TORCH=1`, which makes a missing
//! torch a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::Backend;
use dsa_condense::data::{self, DatasetKind, LoadOptions};
use dsa_condense::engine::{Mode, Network, WorkspaceOpts};
use dsa_condense::model::{Model, Sizing};
use dsa_condense::output::{self, read_network_safetensors, write_network_safetensors};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, TensorView};

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts");

/// Whether `python3 -c 'import torch'` works. Without it: prints the skip line and
/// returns false, or panics when `DSA_REQUIRE_TORCH=1`.
fn torch_available(what: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import torch"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("DSA_REQUIRE_TORCH").as_deref() != Ok("1"),
            "DSA_REQUIRE_TORCH=1 but `python3 -c 'import torch'` fails"
        );
        println!(
            "SKIPPED: torch not installed ({what}); set DSA_REQUIRE_TORCH=1 to make this fail"
        );
    }
    ok
}

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsa-condense"))
        .args(args)
        .env_remove("DSA_DATA_DIR")
        .output()
        .expect("run dsa-condense")
}

fn python(args: &[&str]) -> Output {
    Command::new("python3")
        .args(args)
        .output()
        .expect("run python3")
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A three-class image folder of 28x28 grey images (four per class for training,
/// three for testing), pixel patterns differing by class and image.
fn folder(root: &Path) -> String {
    for (ci, class) in ["a", "b", "c"].into_iter().enumerate() {
        for (split, n) in [("train", 4u32), ("test", 3)] {
            let p = root.join(split).join(class);
            std::fs::create_dir_all(&p).unwrap();
            for i in 0..n {
                let img = image::GrayImage::from_fn(28, 28, |x, y| {
                    let v = (x * (3 + ci as u32) + y * (5 + i) + 40 * ci as u32) % 256;
                    image::Luma([v as u8])
                });
                img.save(p.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    format!("folder:{}", root.display())
}

/// A synthetic set of `ipc` images per class for the folder, N(0, 1) values.
fn synset(path: &Path, classes: usize, ipc: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let n = classes * ipc;
    let images: Vec<f32> = (0..n * 28 * 28)
        .map(|_| rng.random_range(-1.5f32..1.5))
        .collect();
    let labels: Vec<u32> = (0..n).map(|i| (i / ipc) as u32).collect();
    output::write_synset_safetensors(path, &images, [n, 1, 28, 28], &labels, &BTreeMap::new())
        .unwrap();
}

fn report_of(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

/// Writes `inputs` and `logits` for the checker script.
fn write_expectation(path: &Path, inputs: &[f32], ishape: Vec<usize>, logits: &[f32], k: usize) {
    let ib: Vec<u8> = inputs.iter().flat_map(|v| v.to_le_bytes()).collect();
    let lb: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    let n = ishape[0];
    let views = vec![
        ("inputs", TensorView::new(Dtype::F32, ishape, &ib).unwrap()),
        (
            "logits",
            TensorView::new(Dtype::F32, vec![n, k], &lb).unwrap(),
        ),
    ];
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// Logits of `net` (eval mode) for `x` (`n` images).
fn logits(net: &mut Network<'_, Cpu<f32>>, x: &[f32], n: usize) -> Vec<f32> {
    let be = net.backend();
    let mut ws = net.workspace(n, WorkspaceOpts::default()).unwrap();
    let xb = be.upload(x).unwrap();
    let out = net.forward(&mut ws, &xb, Mode::Eval).unwrap();
    be.download(out).unwrap()
}

/// Runs `evaluate --save-nets` on the folder with `extra` options; checks on the
/// Rust side that every network file is listed in the report, holds the network
/// that was tested (its test accuracy recomputed from the file equals the reported
/// one), and carries the BatchNorm state of the training; writes the inputs and
/// our logits for the checker script into `expect`. Returns the network files.
fn save_and_verify(root: &Path, tag: &str, extra: &[&str], expect: &Path) -> Vec<PathBuf> {
    let ds_arg = folder(&root.join("data"));
    let set = root.join("set.safetensors");
    let (classes, ipc, batch_train) = (3, 2, 4);
    synset(&set, classes, ipc);
    let out = root.join(format!("out-{tag}"));
    let nets_dir = root.join(format!("nets-{tag}"));
    let mut args = vec![
        "evaluate",
        "--synset",
        set.to_str().unwrap(),
        "--dataset",
        &ds_arg,
        "--method",
        "dsa",
        "--epoch-eval-train",
        "1",
        "--batch-train",
        "4",
        "--backend",
        "cpu",
        "--quiet",
        "--seed",
        "7",
        "--out",
        out.to_str().unwrap(),
        "--save-nets",
        nets_dir.to_str().unwrap(),
    ];
    args.extend(extra);
    ok(&bin(&args), "evaluate --save-nets");
    let report = report_of(&out);
    let outputs: Vec<&str> = report["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();

    let ds = data::load(
        &DatasetKind::parse(&ds_arg).unwrap(),
        &LoadOptions::from_env(None),
    )
    .unwrap();
    let be = Cpu::<f32>::new(1).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let n_rand = 3;
    let mut inputs = ds.test.images.clone();
    inputs.extend((0..n_rand * 28 * 28).map(|_| rng.random_range(-2.0f32..2.0)));
    let n_in = ds.test.n + n_rand;
    // per epoch: ceil(6 / 4) = 2 minibatches, two epochs (E + 1)
    let steps = 2 * (classes * ipc).div_ceil(batch_train) as u64;

    let mut files = Vec::new();
    for ev in report["evaluations"].as_array().unwrap() {
        let model = ev["model"].as_str().unwrap();
        for (j, acc) in ev["accuracies"].as_array().unwrap().iter().enumerate() {
            let name = format!("{model}_exp0_net{j}.safetensors");
            let path = nets_dir.join(&name);
            let listed = path.display().to_string();
            assert!(
                outputs.contains(&listed.as_str()),
                "{listed} not among the outputs {outputs:?}"
            );
            let saved = read_network_safetensors(&path).unwrap();
            let meta = &saved.metadata;
            assert_eq!(meta["model"], model);
            assert_eq!(meta["channel"], "1");
            assert_eq!(meta["im_size"], "[28, 28]");
            assert_eq!(meta["num_classes"], "3");
            assert_eq!(meta["seed"], "7");
            assert_eq!(meta["net"], j.to_string());
            assert_eq!(meta["dataset"], ds.name);
            let reported = acc.as_f64().unwrap();
            assert_eq!(meta["accuracy"].parse::<f64>().unwrap(), reported, "{name}");
            let mut net = saved.network(&be).unwrap();
            // The file holds the tested network: same test accuracy, recomputed.
            let out = logits(&mut net, &inputs, n_in);
            let correct = (0..ds.test.n)
                .filter(|&i| {
                    let row = &out[i * classes..(i + 1) * classes];
                    let best = (0..classes)
                        .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                        .unwrap();
                    best as u32 == ds.test.labels[i]
                })
                .count();
            assert_eq!(
                correct as f64 / ds.test.n as f64,
                reported,
                "{name}: accuracy recomputed from the file"
            );
            let has_bn = !saved.model.layout().unwrap().running.is_empty();
            if has_bn {
                assert_eq!(saved.num_batches_tracked, steps, "{name}");
                // trained running statistics, not the initial mean 0 / var 1
                let init = saved.model.layout().unwrap().init_running::<f32>();
                assert_ne!(saved.running, init, "{name}: running state untouched");
            } else {
                assert_eq!(saved.num_batches_tracked, 0, "{name}");
                assert!(saved.running.is_empty());
            }
            // Written again, the same bytes.
            let again = root.join("again.safetensors");
            let meta_in: BTreeMap<String, String> = meta
                .iter()
                .filter(|(k, _)| !output::network::RESERVED_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            write_network_safetensors(&again, &net, &meta_in).unwrap();
            assert_eq!(
                std::fs::read(&again).unwrap(),
                std::fs::read(&path).unwrap(),
                "{name}: read and written again"
            );
            write_expectation(
                &expect.join(&name),
                &inputs,
                vec![n_in, 1, 28, 28],
                &out,
                classes,
            );
            files.push(path);
        }
    }
    assert!(!files.is_empty());
    files
}

/// Runs the checker script over `files`; asserts every network loads strictly and
/// matches within 1e-4 relative; prints the measured differences.
fn pytorch_check(files: &[PathBuf], expect: &Path, json: &Path) {
    let mut args = vec![
        format!("{SCRIPTS}/check_saved_nets.py"),
        "--expect".into(),
        expect.display().to_string(),
        "--json".into(),
        json.display().to_string(),
        "--tol".into(),
        "1e-4".into(),
    ];
    args.extend(files.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = python(&args);
    print!("{}", String::from_utf8_lossy(&o.stdout));
    ok(&o, "scripts/check_saved_nets.py");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    let rows = r["results"].as_array().unwrap();
    assert_eq!(rows.len(), files.len());
    for row in rows {
        assert_eq!(row["ok"], true, "{row}");
        assert!(row["rel_diff"].as_f64().unwrap() <= 1e-4, "{row}");
    }
}

fn check_pool(tag: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let expect = dir.path().join("expect");
    std::fs::create_dir_all(&expect).unwrap();
    let files = save_and_verify(dir.path(), tag, extra, &expect);
    if torch_available(&format!("PyTorch side of the {tag} networks")) {
        pytorch_check(&files, &expect, &dir.path().join("check.json"));
    }
}

#[test]
fn saved_networks_of_the_cross_architecture_pool_load_into_the_reference() {
    // MLP, ConvNet (instance norm), LeNet, AlexNet, VGG11, ResNet18
    check_pool("M", &["--eval-mode", "M", "--num-eval", "1"]);
}

#[test]
fn saved_batchnorm_networks_load_into_the_reference_with_their_running_state() {
    // ConvNetBN, ConvNetASwishBN, AlexNetBN, VGG11BN, ResNet18BN
    check_pool("B", &["--eval-mode", "B", "--num-eval", "1"]);
    check_pool(
        "AP",
        &[
            "--eval-mode",
            "SS",
            "--model",
            "ResNet18BN_AP",
            "--num-eval",
            "1",
        ],
    );
}

#[test]
fn saved_normalisation_variants_load_into_the_reference() {
    // ConvNetNN, ConvNetBN, ConvNetLN, ConvNetIN, ConvNetGN; two networks each
    check_pool("N", &["--eval-mode", "N", "--num-eval", "2"]);
}

#[test]
fn network_files_refuse_what_the_reference_cannot_load() {
    let dir = tempfile::tempdir().unwrap();
    let be = Cpu::<f32>::new(1).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let path = dir.path().join("n.safetensors");

    // a miniature has other shapes than the reference's architecture
    let mini = Model::build("ConvNet", 1, 28, 28, 10, Sizing::miniature(8)).unwrap();
    let net = Network::new(&be, mini, &mut rng).unwrap();
    let e = write_network_safetensors(&path, &net, &BTreeMap::new()).unwrap_err();
    assert!(e.to_string().contains("reference"), "{e}");
    assert!(!path.exists());

    // the writer's own metadata keys cannot be given
    let net = Network::new(
        &be,
        Model::from_name("ConvNetBN", 1, 28, 28, 10).unwrap(),
        &mut rng,
    )
    .unwrap();
    let meta = BTreeMap::from([("model".to_string(), "LeNet".to_string())]);
    let e = write_network_safetensors(&path, &net, &meta).unwrap_err();
    assert!(e.to_string().contains("'model'"), "{e}");

    // strict reading: a missing tensor, an extra one, a wrong shape are errors
    write_network_safetensors(&path, &net, &BTreeMap::new()).unwrap();
    let saved = read_network_safetensors(&path).unwrap();
    assert_eq!(saved.num_batches_tracked, 0);
    assert_eq!(
        saved.running,
        saved.model.layout().unwrap().init_running::<f32>()
    );
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta: std::collections::HashMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let rewrite = |drop: &str, add: Option<(&str, Vec<usize>)>| -> String {
        let extra_bytes = vec![0u8; 4 * 64];
        let mut views: Vec<(String, TensorView<'_>)> = st
            .tensors()
            .into_iter()
            .filter(|(n, _)| n != drop)
            .collect();
        if let Some((n, shape)) = &add {
            let len = 4 * shape.iter().product::<usize>();
            views.push((
                n.to_string(),
                TensorView::new(Dtype::F32, shape.clone(), &extra_bytes[..len]).unwrap(),
            ));
        }
        let p = dir.path().join("bad.safetensors");
        std::fs::write(
            &p,
            safetensors::serialize(views, Some(meta.clone())).unwrap(),
        )
        .unwrap();
        read_network_safetensors(&p).unwrap_err().to_string()
    };
    let e = rewrite("features.1.running_var", None);
    assert!(
        e.contains("missing tensor 'features.1.running_var'") && e.contains("bad.safetensors"),
        "{e}"
    );
    let e = rewrite("", Some(("features.99.weight", vec![4])));
    assert!(e.contains("unexpected tensor 'features.99.weight'"), "{e}");
    let e = rewrite("classifier.bias", Some(("classifier.bias", vec![9])));
    assert!(e.contains("'classifier.bias'") && e.contains("[9]"), "{e}");
}

#[test]
fn save_nets_into_an_unwritable_place_fails_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let set = dir.path().join("set.safetensors");
    synset(&set, 3, 1);
    let ds_arg = folder(&dir.path().join("data"));
    let bad = blocker.join("nets");
    let o = bin(&[
        "evaluate",
        "--synset",
        set.to_str().unwrap(),
        "--dataset",
        &ds_arg,
        "--out",
        dir.path().join("out").to_str().unwrap(),
        "--save-nets",
        bad.to_str().unwrap(),
        "--backend",
        "cpu",
        "--quiet",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("--save-nets"), "{err}");
    assert!(!dir.path().join("out").join("report.json").exists());
}

// ---- sets learned by the reference: scripts/convert_reference_pt.py -------------

const FMNIST: &str = "/usr/share/datasets/fashion-mnist";

/// Pixel `i` of experiment `e` of the made-up reference set (f64 arithmetic, then
/// f32, as the Python side computes it).
fn ref_pixel(i: usize, e: usize) -> f32 {
    (((i * 37 + e * 1001) % 200) as f64 / 50.0 - 2.0) as f32
}

/// Saves a `.pt` as the reference's main.py does: two experiments of 1 image per
/// class, accuracies as numpy floats.
const MAKE_PT: &str = r#"
import sys, torch, numpy as np
data = []
for e in range(2):
    i = torch.arange(10 * 784, dtype=torch.int64)
    x = (((i * 37 + e * 1001) % 200).to(torch.float64) / 50.0 - 2.0).to(torch.float32)
    data.append([x.reshape(10, 1, 28, 28).requires_grad_(False), torch.arange(10, dtype=torch.long)])
torch.save({'data': data, 'accs_all_exps': {'ConvNet': [np.float64(0.61), np.float64(0.62)]}}, sys.argv[1])
torch.save({'images': data[0][0]}, sys.argv[2])
"#;

#[test]
fn a_set_saved_by_the_reference_converts_and_evaluates() {
    if !torch_available("converting a reference .pt") {
        return;
    }
    if !Path::new(FMNIST)
        .join("train-images-idx3-ubyte.gz")
        .exists()
    {
        println!("skipped: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pt = dir.path().join("res_DSA_FashionMNIST_ConvNet_1ipc.pt");
    let not_ref = dir.path().join("other.pt");
    ok(
        &python(&[
            "-c",
            MAKE_PT,
            pt.to_str().unwrap(),
            not_ref.to_str().unwrap(),
        ]),
        "making the .pt",
    );
    let conv = dir.path().join("converted.safetensors");
    let script = format!("{SCRIPTS}/convert_reference_pt.py");
    let o = python(&[
        &script,
        pt.to_str().unwrap(),
        "--exp",
        "1",
        "-o",
        conv.to_str().unwrap(),
    ]);
    ok(&o, "convert_reference_pt.py");

    // The experiment asked for, its values unchanged, the metadata evaluate reads.
    let set = output::read_synset(&conv).unwrap();
    assert_eq!(set.shape, [10, 1, 28, 28]);
    assert_eq!(set.labels, (0..10).collect::<Vec<u32>>());
    let want: Vec<f32> = (0..10 * 784).map(|i| ref_pixel(i, 1)).collect();
    assert!(
        set.images == want,
        "the images of experiment 1, bit for bit"
    );
    let m = &set.metadata;
    assert_eq!(m["dataset"], "FashionMNIST");
    assert_eq!(m["ipc"], "1");
    assert_eq!(m["method"], "DSA");
    assert_eq!(m["model"], "ConvNet");
    assert_eq!(m["experiment"], "1");
    // the normalisation written as dsa-condense writes it for this dataset
    let (mean, std) = DatasetKind::FashionMnist.normalisation().unwrap();
    assert_eq!(m["mean"], format!("{mean:?}"));
    assert_eq!(m["std"], format!("{std:?}"));
    assert_eq!(m["reference_accuracies"], r#"{"ConvNet": [0.61, 0.62]}"#);
    assert_eq!(
        m["source_sha256"],
        data::locate::sha256_hex(&std::fs::read(&pt).unwrap())
    );

    // evaluate takes dataset, ipc and method from the file
    let out = dir.path().join("eval");
    let o = bin(&[
        "evaluate",
        "--synset",
        conv.to_str().unwrap(),
        "--data-dir",
        FMNIST,
        "--no-download",
        "--limit-train",
        "200",
        "--limit-test",
        "100",
        "--num-eval",
        "1",
        "--epoch-eval-train",
        "2",
        "--backend",
        "cpu",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(&o, "evaluate of the converted set");
    let r = report_of(&out);
    assert_eq!(r["command"], "evaluate");
    assert_eq!(r["config"]["dataset"], "FashionMNIST");
    assert_eq!(r["config"]["ipc"], 1);
    assert_eq!(r["config"]["method"], "Dsa");
    assert_eq!(r["evaluated_set"]["path"], conv.to_str().unwrap());
    assert_eq!(
        r["evaluated_set"]["sha256"],
        data::locate::sha256_hex(&std::fs::read(&conv).unwrap())
    );
    let acc = &r["final_accuracy"]["ConvNet"];
    assert_eq!(acc["n"], 1);
    assert!((0.0..=1.0).contains(&acc["mean"].as_f64().unwrap()), "{r}");

    // Clear errors naming the option or the file; nothing written.
    let bad = dir.path().join("bad.safetensors");
    for (args, needle) in [
        (
            vec![pt.to_str().unwrap(), "--exp", "2"],
            "--exp: 2 out of range",
        ),
        (
            vec![pt.to_str().unwrap(), "--dataset", "CIFAR10"],
            "CIFAR10 has 3x32x32",
        ),
        (vec![pt.to_str().unwrap(), "--ipc", "10"], "--ipc says 10"),
        (
            vec![
                not_ref.to_str().unwrap(),
                "--dataset",
                "MNIST",
                "--method",
                "DC",
            ],
            "'data'",
        ),
    ] {
        let mut a = vec![script.as_str()];
        a.extend(args);
        a.extend(["-o", bad.to_str().unwrap()]);
        let o = python(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{a:?}");
        assert!(err.contains(needle), "{a:?}: {err}");
        assert!(!bad.exists());
    }
}
