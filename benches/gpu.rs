//! GPU benchmark of the three product precisions (`fp32`, `tf32`, `bf16`): each
//! ConvNet convolution layer's three passes at batch 256, a large square GEMM through
//! `linear_fwd` (the best case of our kernels), and one DSA outer step (ConvNet,
//! 1x28x28, 10 classes, 256 real images per class, ipc 1 and 10, second-order pass
//! included), on the `cuda` backend. Prints a table: milliseconds, TFLOP/s, and the
//! fraction of the measured peak of the same precision when `DSA_PEAK_FP32`,
//! `DSA_PEAK_TF32`, `DSA_PEAK_BF16` (TFLOP/s) are set; `scripts/gpu-check.sh`
//! measures them with PyTorch's cuBLAS (a dense 8192^3 matmul per precision).
//!
//! `cargo bench --bench gpu`. Without a usable GPU it prints why and exits 0.
//! `DSA_BENCH_BACKEND=emu` runs the layer and GEMM part on the emulator at batch
//! `DSA_BENCH_N` (default 1) and a 128^3 GEMM, as a smoke test of this program (an
//! emulated outer step takes minutes, so it is left out there).

use dsa_condense::backend::cuda::Cuda;
use dsa_condense::backend::emu::Emu;
use dsa_condense::backend::*;
use dsa_condense::engine::{matching_flops, ClassInput, Network};
use dsa_condense::model::Model;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

mod common;

const CLASSES: usize = 10;
const IMG: usize = 28 * 28;

/// Seconds per call of `f` (best of `reps` timed calls after a warm-up), with the
/// backend drained before and after each call.
fn time<B: Backend>(be: &B, reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    be.synchronize().expect("sync");
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            be.synchronize().expect("sync");
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn peak(p: Precision) -> Option<f64> {
    let var = format!("DSA_PEAK_{}", p.name().to_uppercase());
    std::env::var(var).ok().and_then(|v| v.parse().ok())
}

fn row(what: &str, p: Precision, secs: f64, flop: f64) {
    let tflops = flop / secs * 1e-12;
    let of_peak = peak(p)
        .map(|pk| format!("{:5.1} % of {p} peak {pk:.0}", 100.0 * tflops / pk))
        .unwrap_or_default();
    println!(
        "{what:<34} {p:<5} {:>10.3} ms {tflops:>8.2} TFLOP/s  {of_peak}",
        secs * 1e3
    );
}

fn rnd(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Every measurement for one backend (already set to its precision).
fn bench<B: Backend<E = f32>>(be: &B, n: usize, gemm: usize, reps: usize, steps: bool) {
    let p = be.precision();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // a square GEMM: y [g, g] = x [g, g] w^T
    let s = LinearShape {
        n: gemm as u32,
        f: gemm as u32,
        k: gemm as u32,
    };
    let x = be.upload(&rnd(&mut rng, gemm * gemm)).expect("upload");
    let w = be.upload(&rnd(&mut rng, gemm * gemm)).expect("upload");
    let ws = Seg {
        off: 0,
        len: (gemm * gemm) as u32,
    };
    let mut y = be.alloc(gemm * gemm).expect("alloc");
    let t = time(be, reps, || {
        be.linear_fwd(&mut y, &x, &w, ws, None, &s, false)
            .expect("gemm")
    });
    row(
        &format!("gemm {gemm}^3 (linear_fwd)"),
        p,
        t,
        2.0 * (gemm as f64).powi(3),
    );
    drop((x, w, y));

    for (name, s) in common::convnet_layers(n) {
        let wl = s.w_len();
        let params = be
            .upload(&rnd(&mut rng, wl + s.o as usize))
            .expect("upload");
        let (wseg, bseg) = Seg::adjacent(0, wl, s.o as usize);
        let x = be.upload(&rnd(&mut rng, s.x_len())).expect("upload");
        let dy = be.upload(&rnd(&mut rng, s.y_len())).expect("upload");
        let mut y = be.alloc(s.y_len()).expect("alloc");
        let mut dx = be.alloc(s.x_len()).expect("alloc");
        let mut g = be.alloc(wl + s.o as usize).expect("alloc");
        let flop = s.flops();
        let t = time(be, reps, || {
            be.conv2d_fwd(&mut y, &x, &params, wseg, Some(bseg), &s, false)
                .expect("fwd")
        });
        row(&format!("{name} fwd"), p, t, flop);
        let t = time(be, reps, || {
            be.conv2d_bwd_input(&mut dx, &dy, &params, wseg, &s, false)
                .expect("bwd_input")
        });
        row(&format!("{name} bwd_input"), p, t, flop);
        let t = time(be, reps, || {
            be.conv2d_bwd_weight(&mut g, wseg, Some(bseg), &dy, &x, &s)
                .expect("bwd_weight")
        });
        row(&format!("{name} bwd_weight"), p, t, flop);
    }

    if !steps {
        return;
    }
    let model = Model::from_name("ConvNet", 1, 28, 28, CLASSES).expect("model");
    let mut net = Network::new(be, model.clone(), &mut rng).expect("network");
    let reals: Vec<_> = (0..CLASSES)
        .map(|_| be.upload(&rnd(&mut rng, n * IMG)).expect("upload"))
        .collect();
    let augs: Vec<Vec<AugOp>> = (0..CLASSES).map(|_| Vec::new()).collect();
    for ipc in [1usize, 10] {
        let mut mw = net.match_workspace(n, ipc).expect("match workspace");
        let syn = be
            .upload(&rnd(&mut rng, CLASSES * ipc * IMG))
            .expect("upload");
        let mut dsyn = be.alloc(CLASSES * ipc * IMG).expect("alloc");
        let classes: Vec<_> = (0..CLASSES)
            .map(|c| ClassInput {
                real: &reals[c],
                aug: &augs[c],
            })
            .collect();
        let flop = CLASSES as f64 * matching_flops(&model, n, ipc).expect("flops");
        let t = time(be, reps, || {
            net.outer_grad(&mut mw, &syn, &classes, Metric::Ours, &mut dsyn, None)
                .expect("outer step");
        });
        row(
            &format!("outer step ipc {ipc} ({CLASSES} classes)"),
            p,
            t,
            flop,
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not used here.
    let emu = std::env::var("DSA_BENCH_BACKEND").is_ok_and(|v| v == "emu");
    println!(
        "{:<34} {:<5} {:>13} {:>16}",
        "what", "prec", "time", "throughput"
    );
    for p in Precision::ALL {
        if emu {
            let n = std::env::var("DSA_BENCH_N")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            bench(&Emu::new().with_precision(p), n, 128, 1, false);
            continue;
        }
        match Cuda::new(0) {
            Ok(c) => bench(&c.with_precision(p), 256, 8192, 5, true),
            Err(e) => {
                println!("skipped: cuda backend unavailable: {e}");
                return;
            }
        }
    }
}
