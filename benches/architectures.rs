//! One training step of every evaluation architecture on `Cpu<f32>`: forward,
//! mean cross-entropy and backward to the parameter gradients (no input
//! gradient, no optimiser step), batch 256 of 1x28x28 images, 10 classes (the
//! Fashion-MNIST shapes), train mode. Prints seconds per step and GFLOP/s (conv +
//! linear multiply-adds x 2: forward, input-gradient and weight-gradient passes,
//! the first layer's input gradient excluded) against the measured sgemm peak,
//! then runs a criterion benchmark per architecture.
//! `scripts/pytorch_arch_step.py --bench` times the same step in PyTorch.
//!
//! `cargo bench --bench architectures` (`DSA_BENCH_THREADS` pins the threads,
//! `DSA_BENCH_ARCHS=MLP,LeNet` picks architectures).

use criterion::{criterion_group, criterion_main, Criterion};
use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::Backend;
use dsa_condense::engine::{Mode, Network, WorkspaceOpts};
use dsa_condense::model::{plan, Model};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

mod common;

const BATCH: usize = 256;
const CLASSES: usize = 10;
const SIDE: usize = 28;

const ARCHS: [&str; 10] = [
    "MLP",
    "ConvNet",
    "LeNet",
    "AlexNet",
    "AlexNetBN",
    "VGG11",
    "VGG11BN",
    "ResNet18",
    "ResNet18BN",
    "ResNet18BN_AP",
];

fn bench(c: &mut Criterion) {
    let threads = std::env::var("DSA_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let chosen: Vec<String> = match std::env::var("DSA_BENCH_ARCHS") {
        Ok(v) => v.split(',').map(str::to_string).collect(),
        Err(_) => ARCHS.iter().map(|s| s.to_string()).collect(),
    };
    let be = Cpu::<f32>::new(threads).expect("cpu backend");
    let (peak, _) = common::sgemm_peak(be.threads());
    println!(
        "backend {}; sgemm peak ({}^3): {peak:.1} GFLOP/s",
        be.name(),
        common::PEAK_DIM
    );
    println!("| architecture | parameters | GFLOP / step | s / step | GFLOP/s | % of sgemm peak |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x_host: Vec<f32> = (0..BATCH * SIDE * SIDE)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let labels: Vec<u32> = (0..BATCH as u32).map(|i| i % CLASSES as u32).collect();
    let x = be.upload(&x_host).expect("upload");
    let lab = be.upload_labels(&labels).expect("labels");
    let mut group = c.benchmark_group("train_step_256");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for name in &chosen {
        let model = Model::from_name(name, 1, SIDE, SIDE, CLASSES).expect("model");
        let mut net = Network::new(&be, model.clone(), &mut rng).expect("network");
        let mut ws = net
            .workspace(BATCH, WorkspaceOpts::default())
            .expect("workspace");
        let mut g = be.alloc(net.layout().total).expect("alloc");
        let (_, p) = plan::compile(&model, BATCH).expect("plan");
        let flop = 3.0 * p.forward_flops() - p.input_op_flops();
        let params = net.layout().total;
        let mut step = || {
            net.loss_and_grads(&mut ws, &x, &lab, Mode::Train, &mut g)
                .expect("step");
        };
        let t = common::best_time(2, &mut step);
        println!(
            "| {name} | {} | {:.1} | {t:.3} | {:.1} | {:.0} % |",
            params,
            flop * 1e-9,
            flop / t * 1e-9,
            100.0 * flop / t * 1e-9 / peak
        );
        group.bench_function(name.as_str(), |b| b.iter(&mut step));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
