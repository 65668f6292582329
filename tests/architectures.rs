//! Every architecture's description against the reference: parameter count, the
//! ordered `state_dict` names and shapes of its parameters, and its BatchNorm
//! modules, at three input shapes, compared with `tests/data/reference_params.json`
//! (written by `scripts/pytorch_arch_step.py --dump-params` from PyTorch modules with
//! the reference's module names). Plus: every architecture runs forward to finite
//! logits of the right shape, and the input sizes an architecture cannot take are
//! clear errors naming the model and the size.

use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::Backend;
use dsa_condense::engine::{Mode, Network, WorkspaceOpts};
use dsa_condense::model::{Model, ARCHITECTURES};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/reference_params.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `"1x28x28_c10"` -> (1, 28, 28, 10).
fn parse_shape(key: &str) -> (usize, usize, usize, usize) {
    let (dims, k) = key.split_once("_c").unwrap();
    let d: Vec<usize> = dims.split('x').map(|v| v.parse().unwrap()).collect();
    (d[0], d[1], d[2], k.parse().unwrap())
}

#[test]
fn every_architecture_matches_the_reference_names_shapes_and_counts() {
    let fx = fixture();
    let archs = fx["archs"].as_object().unwrap();
    let mut names: Vec<&str> = archs.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut ours = ARCHITECTURES.to_vec();
    ours.sort_unstable();
    assert_eq!(names, ours, "the fixture covers every architecture name");
    let mut checked = 0;
    for (arch, shapes) in archs {
        for (key, want) in shapes.as_object().unwrap() {
            let (c, h, w, k) = parse_shape(key);
            let model =
                Model::from_name(arch, c, h, w, k).unwrap_or_else(|e| panic!("{arch} {key}: {e}"));
            let l = model.layout().unwrap();
            assert_eq!(
                l.total as u64,
                want["total"].as_u64().unwrap(),
                "{arch} {key}: parameter count"
            );
            let got: Vec<(String, Vec<usize>)> = l
                .tensors
                .iter()
                .map(|t| (t.name.clone(), t.shape.clone()))
                .collect();
            let expect: Vec<(String, Vec<usize>)> = want["params"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let shape = p[1].as_array().unwrap();
                    (
                        p[0].as_str().unwrap().to_string(),
                        shape.iter().map(|v| v.as_u64().unwrap() as usize).collect(),
                    )
                })
                .collect();
            assert_eq!(got, expect, "{arch} {key}: names, shapes and order");
            let bn: Vec<&str> = want["batchnorm"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(l.running_names, bn, "{arch} {key}: BatchNorm modules");
            assert_eq!(l.running.len(), bn.len());
            checked += 1;
        }
    }
    assert_eq!(checked, ARCHITECTURES.len() * 3);
}

#[test]
fn resnet18_on_cifar_shapes_has_the_published_parameter_count() {
    // 11,173,962 with the BatchNorm / GroupNorm affine parameters.
    for name in ["ResNet18", "ResNet18BN"] {
        let l = Model::from_name(name, 3, 32, 32, 10)
            .unwrap()
            .layout()
            .unwrap();
        assert_eq!(l.total, 11_173_962, "{name}");
    }
}

#[test]
fn every_architecture_runs_forward_to_finite_logits() {
    let be = Cpu::<f32>::new(0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for &(c, side) in &[(1usize, 28usize), (3, 32)] {
        for name in ARCHITECTURES {
            let model = Model::from_name(name, c, side, side, 10).unwrap();
            let mut net = Network::new(&be, model, &mut rng).unwrap();
            let n = 2;
            let mut ws = net.workspace(n, WorkspaceOpts::default()).unwrap();
            let x: Vec<f32> = (0..n * c * side * side)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let x = be.upload(&x).unwrap();
            let logits = be
                .download(net.forward(&mut ws, &x, Mode::Train).unwrap())
                .unwrap();
            assert_eq!(logits.len(), n * 10, "{name}");
            assert!(logits.iter().all(|v| v.is_finite()), "{name}: {logits:?}");
            assert!(
                logits.iter().any(|&v| v != logits[0]),
                "{name}: constant logits"
            );
        }
    }
}

#[test]
fn sizes_an_architecture_cannot_take_are_clear_errors() {
    let cases = [
        ("LeNet", 1, 32, "28x28"),
        ("LeNet", 3, 28, "32x32"),
        ("MLP", 3, 28, "32x32"),
        ("AlexNet", 1, 16, "28x28"),
        ("VGG11", 3, 16, "VGG11"),
        ("ResNet18BN_AP", 3, 28, "32x32"),
        ("ResNet18", 3, 64, "4x4"),
        ("ConvNetD4", 1, 8, "ConvNet"),
    ];
    for (name, c, side, hint) in cases {
        let e = Model::from_name(name, c, side, side, 10)
            .expect_err(&format!("{name} {c}x{side}x{side} must be refused"))
            .to_string();
        assert!(
            e.contains(name.trim_end_matches("D4")) && e.contains("model"),
            "{name}: {e}"
        );
        assert!(e.contains(hint), "{name}: '{e}' should mention {hint}");
    }
}

#[test]
fn a_network_from_explicit_parameters_checks_their_number() {
    let be = Cpu::<f64>::new(1).unwrap();
    let model = Model::from_name("LeNet", 1, 28, 28, 10).unwrap();
    let total = model.layout().unwrap().total;
    let params: Vec<f64> = (0..total).map(|i| i as f64 * 1e-6).collect();
    let net = Network::from_params(&be, model.clone(), &params).unwrap();
    assert_eq!(be.download(net.params()).unwrap(), params);
    let e = Network::from_params(&be, model, &params[1..])
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains(&format!("{} parameters given", total - 1)) && e.contains("LeNet"),
        "{e}"
    );
}
