//! Hot kernels of the CPU backend at the real shapes: conv forward, backward-data
//! and backward-weight of the default ConvNet (width 128, depth 3) on batches of
//! 256 28x28 grey images, on `Cpu<f32>` with all of the machine's threads; plus
//! the machine's sgemm ceiling (a large square f32 GEMM through the backend's
//! GEMM entry point). Each kernel is validated against the f64 backend before it
//! is timed. A summary table prints time, GFLOP/s and the share of the sgemm peak
//! before the criterion runs.
//!
//! The memory-bound ops of a ConvNet block (group norm, activation, pooling,
//! forward and backward) at the first block's shape (256 x 128 x 32 x 32) are
//! timed too, in GB/s of the bytes they must move, next to the machine's
//! measured copy bandwidth.
//!
//! Run: `cargo bench --bench kernels` (`-- --quick` for a short criterion pass).

use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

mod common;
use common::{best_time, cpu_time, sgemm_peak, PEAK_DIM};

const N: usize = 256;

/// The three conv layers of ConvNet-128-3 on 1x28x28 input.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Pass {
    Fwd,
    BwdInput,
    BwdWeight,
}
const PASSES: [Pass; 3] = [Pass::Fwd, Pass::BwdInput, Pass::BwdWeight];

/// Buffers of one layer: x, params [W | b], dy, and outputs.
struct Bufs<T> {
    x: Vec<T>,
    p: Vec<T>,
    dy: Vec<T>,
    y: Vec<T>,
    dx: Vec<T>,
    g: Vec<T>,
    ws: Seg,
    bs: Seg,
}

fn bufs<T: Scalar>(s: &ConvShape, seed: u64) -> Bufs<T> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let mut v = |n: usize| {
        (0..n)
            .map(|_| T::from_f64(r.random::<f64>() - 0.5))
            .collect::<Vec<T>>()
    };
    let wl = s.w_len();
    Bufs {
        x: v(s.x_len()),
        p: v(wl + s.o as usize),
        dy: v(s.y_len()),
        y: vec![T::ZERO; s.y_len()],
        dx: vec![T::ZERO; s.x_len()],
        g: vec![T::ZERO; wl + s.o as usize],
        ws: Seg {
            off: 0,
            len: wl as u32,
        },
        bs: Seg {
            off: wl as u32,
            len: s.o,
        },
    }
}

fn run<T: Scalar>(cpu: &Cpu<T>, b: &mut Bufs<T>, s: &ConvShape, pass: Pass) {
    match pass {
        Pass::Fwd => cpu.conv2d_fwd(&mut b.y, &b.x, &b.p, b.ws, Some(b.bs), s, false),
        Pass::BwdInput => cpu.conv2d_bwd_input(&mut b.dx, &b.dy, &b.p, b.ws, s, false),
        Pass::BwdWeight => cpu.conv2d_bwd_weight(&mut b.g, b.ws, Some(b.bs), &b.dy, &b.x, s),
    }
    .expect("conv op");
}

fn output<T: Scalar>(b: &Bufs<T>, pass: Pass) -> Vec<f64> {
    let v = match pass {
        Pass::Fwd => &b.y,
        Pass::BwdInput => &b.dx,
        Pass::BwdWeight => &b.g,
    };
    v.iter().map(|t| t.to_f64()).collect()
}

/// f32 (all threads) against f64 (one thread) on a 4-image batch of each layer.
fn validate() {
    let c32 = Cpu::<f32>::new(0).unwrap();
    let c64 = Cpu::<f64>::new(1).unwrap();
    for (name, s) in common::convnet_layers(4) {
        for pass in PASSES {
            let mut b32 = bufs::<f32>(&s, 7);
            let mut b64 = bufs::<f64>(&s, 7);
            // Same numbers in both precisions.
            for (a, d) in [
                (&b32.x, &mut b64.x),
                (&b32.p, &mut b64.p),
                (&b32.dy, &mut b64.dy),
            ] {
                d.iter_mut().zip(a.iter()).for_each(|(d, &a)| *d = a as f64);
            }
            run(&c32, &mut b32, &s, pass);
            run(&c64, &mut b64, &s, pass);
            let (a, r) = (output(&b32, pass), output(&b64, pass));
            let scale = r.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let err = a
                .iter()
                .zip(&r)
                .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                err <= 1e-4 * scale,
                "{name} {pass:?}: f32 vs f64 max error {err} (scale {scale})"
            );
        }
    }
    println!("validated: f32 conv passes agree with f64 on every layer");
}

fn summary() {
    validate();
    let cpu = Cpu::<f32>::new(0).unwrap();
    let threads = cpu.threads();
    let (peak, peak_cpu) = sgemm_peak(threads);
    println!(
        "sgemm peak ({PEAK_DIM}^3, {threads} threads): {peak:.1} GFLOP/s wall, {peak_cpu:.1} GFLOP per CPU-s \
         (x{threads} threads = {:.1} GFLOP/s on idle cores)",
        peak_cpu * threads as f64
    );
    println!(
        "{:<24} {:<10} {:>9} {:>9} {:>7} {:>11} {:>9}",
        "layer (N=256)", "pass", "wall ms", "GFLOP/s", "% peak", "GFLOP/CPU-s", "% peak"
    );
    let (mut step, mut step_cpu) = (0.0, 0.0);
    for (li, (name, s)) in common::convnet_layers(N).into_iter().enumerate() {
        let mut b = bufs::<f32>(&s, 3);
        for pass in PASSES {
            let t = best_time(3, || run(&cpu, &mut b, &s, pass));
            let tc = cpu_time(3, || run(&cpu, &mut b, &s, pass));
            let (gf, gfc) = (s.flops() / t / 1e9, s.flops() / tc / 1e9);
            println!(
                "{name:<24} {:<10} {:>9.1} {gf:>9.1} {:>6.0}% {gfc:>11.1} {:>8.0}%",
                format!("{pass:?}"),
                t * 1e3,
                100.0 * gf / peak,
                100.0 * gfc / peak_cpu
            );
            // One DSA outer step: 10 classes x 256 real images, forward + weight
            // gradients, input gradients below the first layer.
            if !(li == 0 && pass == Pass::BwdInput) {
                step += 10.0 * t;
                step_cpu += 10.0 * tc;
            }
        }
    }
    println!(
        "=> conv time of one DSA outer step (10 classes x 256 real images): {step:.2} s wall; \
         {step_cpu:.2} CPU-s = {:.2} s on {threads} idle cores",
        step_cpu / threads as f64
    );
    summary_elementwise(&cpu);
}

/// Bytes/s of a parallel copy of `len` f32 (read + write), the bandwidth ceiling.
fn copy_bandwidth(cpu: &Cpu<f32>, len: usize) -> f64 {
    let src = vec![1.0f32; len];
    let mut dst = vec![0.0f32; len];
    let t = best_time(3, || {
        cpu.copy_range(&mut dst, 0, &src, 0, len).unwrap();
        black_box(&dst);
    });
    (8 * len) as f64 / t
}

/// The memory-bound ops of block 1 (N=256, C=128, 32x32, instance norm, ReLU,
/// 2x2 average pooling): time and GB/s of the bytes each must read and write.
fn summary_elementwise(cpu: &Cpu<f32>) {
    let (n, c, hw) = (N, 128usize, 32 * 32usize);
    let len = n * c * hw;
    let ns = NormShape {
        n: n as u32,
        c: c as u32,
        hw: hw as u32,
        groups: c as u32,
        affine: 0,
        eps: 1e-5,
    };
    let ps = PoolShape::new(n * c, 32, 32, 2, 2).unwrap();
    let mut r = ChaCha8Rng::seed_from_u64(5);
    let mut v = |k: usize| {
        (0..k)
            .map(|_| r.random::<f32>() - 0.5)
            .collect::<Vec<f32>>()
    };
    let (x, dy) = (v(len), v(len));
    let params = v(2 * c);
    let (gs, bs) = (
        Seg {
            off: 0,
            len: c as u32,
        },
        Seg {
            off: c as u32,
            len: c as u32,
        },
    );
    let mut y = vec![0.0f32; len];
    let mut dx = vec![0.0f32; len];
    let mut grads = vec![0.0f32; 2 * c];
    let mut stats = vec![0.0f32; 2 * n * c];
    let mut pooled = vec![0.0f32; len / 4];
    let dpooled = v(len / 4);
    cpu.norm_fwd(&mut y, &mut stats, &x, &params, gs, bs, &ns)
        .unwrap();
    let bw = copy_bandwidth(cpu, len);
    println!(
        "copy bandwidth ({} MB read + written): {:.1} GB/s",
        8 * len / 1_000_000,
        bw / 1e9
    );
    println!(
        "{:<34} {:>9} {:>9} {:>7}",
        "block-1 op (256x128x32x32 f32)", "wall ms", "GB/s", "% copy"
    );
    let f4 = 4.0 * len as f64;
    let row = |name: &str, bytes: f64, f: &mut dyn FnMut()| {
        let t = best_time(3, f);
        println!(
            "{name:<34} {:>9.1} {:>9.1} {:>6.0}%",
            t * 1e3,
            bytes / t / 1e9,
            100.0 * bytes / t / bw
        );
    };
    row("norm_fwd (x -> y, stats)", 2.0 * f4, &mut || {
        cpu.norm_fwd(&mut y, &mut stats, &x, &params, gs, bs, &ns)
            .unwrap()
    });
    row("norm_bwd (dy, x -> dx, dgamma/beta)", 3.0 * f4, &mut || {
        cpu.norm_bwd(
            &mut dx,
            Some((&mut grads, gs, bs)),
            &dy,
            &x,
            &stats,
            &params,
            gs,
            &ns,
        )
        .unwrap()
    });
    row("act_fwd relu", 2.0 * f4, &mut || {
        cpu.act_fwd(&mut y, &x, Act::Relu).unwrap()
    });
    row("act_bwd relu", 3.0 * f4, &mut || {
        cpu.act_bwd(&mut dx, &dy, &x, Act::Relu).unwrap()
    });
    row("pool_fwd avg 2x2", 1.25 * f4, &mut || {
        cpu.pool_fwd(&mut pooled, &x, &ps, PoolKind::Avg).unwrap()
    });
    row("pool_bwd avg 2x2", 1.25 * f4, &mut || {
        cpu.pool_bwd(&mut dx, &dpooled, &x, &ps, PoolKind::Avg)
            .unwrap()
    });
}

fn bench_convs(c: &mut Criterion) {
    let cpu = Cpu::<f32>::new(0).unwrap();
    let mut g = c.benchmark_group("conv_f32_n256");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    for (name, s) in common::convnet_layers(N) {
        let mut b = bufs::<f32>(&s, 3);
        g.throughput(Throughput::Elements(s.flops() as u64));
        for pass in PASSES {
            g.bench_function(BenchmarkId::new(format!("{pass:?}"), name), |bch| {
                bch.iter(|| run(&cpu, black_box(&mut b), &s, pass))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_convs);

fn main() {
    summary();
    println!("(criterion throughput below: 1 elem = 1 FLOP, so Gelem/s = GFLOP/s)");
    benches();
    Criterion::default().configure_from_args().final_summary();
}
