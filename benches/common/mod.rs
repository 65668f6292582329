//! Measurements shared by the benchmarks: timing helpers and the machine's sgemm
//! ceiling (a large square f32 GEMM through the backend's GEMM entry point), the
//! figure every GFLOP/s is reported against.
#![allow(dead_code)]

use dsa_condense::backend::cpu::gemm::{gemm_par, Mat};
use dsa_condense::backend::ConvShape;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// Side of the square GEMM that measures the sgemm peak.
pub const PEAK_DIM: usize = 2048;

/// Best-of-`reps` seconds of `f`, after one warm-up call.
pub fn best_time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// CPU seconds (user + system) this process has used so far, from
/// `/proc/self/stat` (Linux; 0 elsewhere). Used to report throughput per CPU
/// second, which stays meaningful when other processes share the cores.
pub fn proc_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of the stat line (utime, stime), clock ticks of 1/100 s.
    (tick(11) + tick(12)) / 100.0
}

/// Average CPU seconds of `f` over `reps` calls (after one warm-up call).
pub fn cpu_time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t0 = proc_cpu_secs();
    for _ in 0..reps {
        f();
    }
    (proc_cpu_secs() - t0) / reps as f64
}

/// GFLOP/s of a `PEAK_DIM`^3 f32 GEMM through the backend's parallel GEMM.
/// Returns (GFLOP/s wall, GFLOP per CPU second).
pub fn sgemm_peak(threads: usize) -> (f64, f64) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let d = PEAK_DIM;
    let mut r = ChaCha8Rng::seed_from_u64(1);
    let a: Vec<f32> = (0..d * d).map(|_| r.random::<f32>()).collect();
    let b: Vec<f32> = (0..d * d).map(|_| r.random::<f32>()).collect();
    let mut c = vec![0.0f32; d * d];
    let mut f = || {
        gemm_par(
            &pool,
            d,
            d,
            d,
            &mut c,
            d,
            Mat::rm(&a, d),
            Mat::rm(&b, d),
            false,
        )
        .unwrap();
    };
    let t = best_time(3, &mut f);
    let cpu = cpu_time(3, &mut f);
    let flop = 2.0 * (d * d * d) as f64;
    (flop / t / 1e9, flop / cpu / 1e9)
}

/// The three convolutions of the default ConvNet (1x28x28 input, width 128, depth 3)
/// at batch `n`.
pub fn convnet_layers(n: usize) -> Vec<(&'static str, ConvShape)> {
    vec![
        (
            "conv1 1->128 28x28 p3",
            ConvShape::new(n, 1, 28, 28, 128, 3, 1, 3).unwrap(),
        ),
        (
            "conv2 128->128 16x16",
            ConvShape::new(n, 128, 16, 16, 128, 3, 1, 1).unwrap(),
        ),
        (
            "conv3 128->128 8x8",
            ConvShape::new(n, 128, 8, 8, 128, 3, 1, 1).unwrap(),
        ),
    ]
}
