//! Engine benchmarks on `Cpu<f32>` at the real shapes (default ConvNet, 1x28x28,
//! 10 classes): forward + weight-gradient backward on 256 images; one class's full
//! DSA matching step (256 real + 1 synthetic, second-order pass included); one
//! outer step over 10 classes. GFLOP/s (conv + linear FLOPs) beside the time.
//!
//! `cargo bench --bench step` (set `DSA_BENCH_THREADS` to pin the thread count).

use criterion::{criterion_group, criterion_main, Criterion};
use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::{AffineParam, AugOp, Backend, Metric};
use dsa_condense::engine::{matching_flops, ClassInput, Mode, Network, WorkspaceOpts};
use dsa_condense::model::{plan, Model};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};

mod common;

const K: usize = 10;
const N_REAL: usize = 256;
const IPC: usize = 1;
const IMG: usize = 28 * 28;

fn rnd(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn aug(n: usize, deg: f32) -> Vec<AugOp> {
    let a = deg.to_radians();
    let rot = AffineParam {
        a00: a.cos(),
        a01: -a.sin(),
        a10: a.sin(),
        a11: a.cos(),
    };
    vec![AugOp::Affine(vec![rot; n]), AugOp::Contrast(vec![1.2; n])]
}

/// Runs `f` `iters` times after one warm-up; prints mean time and GFLOP/s.
fn timed(name: &str, flop: f64, peak: f64, iters: usize, mut f: impl FnMut()) -> Duration {
    f();
    let t0 = Instant::now();
    for _ in 0..iters {
        f();
    }
    let dt = t0.elapsed() / iters as u32;
    println!(
        "{name}: {:.3} s, {:.1} GFLOP in {:.1} GFLOP/s ({:.0} % of the sgemm peak)",
        dt.as_secs_f64(),
        flop * 1e-9,
        flop / dt.as_secs_f64() * 1e-9,
        100.0 * flop / dt.as_secs_f64() * 1e-9 / peak
    );
    dt
}

fn bench(c: &mut Criterion) {
    let threads = std::env::var("DSA_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let be = Cpu::<f32>::new(threads).expect("cpu backend");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let model = Model::from_name("ConvNet", 1, 28, 28, K).expect("model");
    let mut net = Network::new(&be, model.clone(), &mut rng).expect("network");
    println!("backend {}", be.name());
    let (peak, _) = common::sgemm_peak(be.threads());
    println!(
        "sgemm peak ({0}^3 through the same GEMM crate): {peak:.1} GFLOP/s",
        common::PEAK_DIM
    );

    // forward + weight-gradient backward, 256 images
    let mut ws = net
        .workspace(N_REAL, WorkspaceOpts::default())
        .expect("workspace");
    let x = be.upload(&rnd(&mut rng, N_REAL * IMG)).expect("upload");
    let labels: Vec<u32> = (0..N_REAL as u32).map(|i| i % K as u32).collect();
    let lab = be.upload_labels(&labels).expect("labels");
    let mut g = be.alloc(net.layout().total).expect("alloc");
    let (_, p) = plan::compile(&model, N_REAL).expect("plan");
    let fb_flop = 3.0 * p.forward_flops() - p.input_op_flops();
    let mut group = c.benchmark_group("engine");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    timed("fwd+bwd 256x1x28x28", fb_flop, peak, 2, || {
        net.loss_and_grads(&mut ws, &x, &lab, Mode::Train, &mut g)
            .expect("step");
    });
    group.bench_function("fwd_bwd_256", |b| {
        b.iter(|| {
            net.loss_and_grads(&mut ws, &x, &lab, Mode::Train, &mut g)
                .expect("step")
        })
    });
    drop(ws);

    // one class's full matching step
    let mut mw = net.match_workspace(N_REAL, IPC).expect("match workspace");
    let syn_all = be.upload(&rnd(&mut rng, K * IPC * IMG)).expect("upload");
    let syn0 = be.upload(&rnd(&mut rng, IPC * IMG)).expect("upload");
    let augs: Vec<_> = (0..K).map(|c| aug(IPC, c as f32)).collect();
    let class_flop = matching_flops(&model, N_REAL, IPC).expect("flops");
    timed("matching step, 1 class", class_flop, peak, 2, || {
        net.matching_grad(&mut mw, &x, &syn0, 3, &augs[3], Metric::Ours)
            .expect("match");
    });
    group.bench_function("match_class", |b| {
        b.iter(|| {
            net.matching_grad(&mut mw, &x, &syn0, 3, &augs[3], Metric::Ours)
                .expect("match")
        })
    });

    // one outer step over 10 classes (real batches pre-augmented)
    let reals: Vec<_> = (0..K)
        .map(|_| be.upload(&rnd(&mut rng, N_REAL * IMG)).expect("upload"))
        .collect();
    let mut dsyn = be.alloc(K * IPC * IMG).expect("alloc");
    let classes: Vec<_> = (0..K)
        .map(|c| ClassInput {
            real: &reals[c],
            aug: &augs[c],
        })
        .collect();
    let dt = timed(
        "outer step, 10 classes",
        K as f64 * class_flop,
        peak,
        1,
        || {
            net.outer_grad(&mut mw, &syn_all, &classes, Metric::Ours, &mut dsyn, None)
                .expect("outer");
        },
    );
    println!(
        "outer step target 5.5 s: measured {:.2} s",
        dt.as_secs_f64()
    );
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(60));
    group.bench_function("outer_step_10_classes", |b| {
        b.iter(|| {
            net.outer_grad(&mut mw, &syn_all, &classes, Metric::Ours, &mut dsyn, None)
                .expect("outer")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
