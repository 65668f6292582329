//! Same seed, same result bit for bit (the README's reproducibility promise): the
//! matching loss and the image gradient dS of one outer step on `Cpu<f32>` are
//! identical with 1 and 2 threads and across repeated runs.

use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::{AffineParam, AugOp, Backend, ImgShape, IntParam, Metric};
use dsa_condense::engine::{ClassInput, Network};
use dsa_condense::model::ConvNetConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One siamese draw (rotation, contrast, crop) for `n` images.
fn draw(rng: &mut ChaCha8Rng) -> (f32, f32, i32, i32) {
    (
        rng.random_range(-15.0f32..15.0),
        rng.random_range(0.5f32..1.5),
        rng.random_range(-3..=3),
        rng.random_range(-3..=3),
    )
}

fn ops(d: (f32, f32, i32, i32), n: usize) -> Vec<AugOp> {
    let a = d.0.to_radians();
    let rot = AffineParam {
        a00: a.cos(),
        a01: -a.sin(),
        a10: a.sin(),
        a11: a.cos(),
    };
    vec![
        AugOp::Affine(vec![rot; n]),
        AugOp::Contrast(vec![d.1; n]),
        AugOp::Crop(vec![IntParam { a: d.2, b: d.3 }; n]),
    ]
}

/// Two outer steps (loss, dS of the second) on a reduced ConvNet, all randomness
/// from `seed`.
fn run(threads: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let be = Cpu::<f32>::new(threads).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cfg = ConvNetConfig::default_for(1, 28, 28, 10);
    cfg.width = 16;
    let mut net = Network::new(&be, cfg, &mut rng).unwrap();
    let (n_real, ipc, k, img) = (24, 2, 10, 28 * 28);
    let mut mw = net.match_workspace(n_real, ipc).unwrap();
    let s: Vec<f32> = (0..k * ipc * img)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let s = be.upload(&s).unwrap();
    let mut ds = be.alloc(k * ipc * img).unwrap();
    let mut losses = Vec::new();
    let rs = ImgShape {
        n: n_real as u32,
        c: 1,
        h: 28,
        w: 28,
    };
    for _step in 0..2 {
        let mut reals = Vec::new();
        let mut augs = Vec::new();
        for _c in 0..k {
            let d = draw(&mut rng);
            let mut r = be
                .upload(
                    &(0..n_real * img)
                        .map(|_| rng.random_range(-1.0..1.0))
                        .collect::<Vec<f32>>(),
                )
                .unwrap();
            for op in ops(d, n_real) {
                let mut y = be.alloc(n_real * img).unwrap();
                be.aug_fwd(&mut y, &r, &op, &rs).unwrap();
                r = y;
            }
            reals.push(r);
            augs.push(ops(d, ipc));
        }
        let classes: Vec<_> = (0..k)
            .map(|c| ClassInput {
                real: &reals[c],
                aug: &augs[c],
            })
            .collect();
        let loss = net
            .outer_grad(&mut mw, &s, &classes, Metric::Ours, &mut ds, None)
            .unwrap();
        losses.push((loss as f32).to_bits());
    }
    let ds = be.download(&ds).unwrap();
    assert!(ds.iter().all(|v| v.is_finite()) && ds.iter().any(|&v| v != 0.0));
    (losses, ds.iter().map(|v| v.to_bits()).collect())
}

#[test]
fn same_seed_same_bits_across_thread_counts() {
    let a = run(1, 42);
    let b = run(2, 42);
    let c = run(2, 42);
    assert_eq!(a.0, b.0, "matching loss differs between 1 and 2 threads");
    assert!(a.1 == b.1, "dS differs between 1 and 2 threads");
    assert!(b.1 == c.1, "dS differs between two 2-thread runs");
    let d = run(2, 43);
    assert!(d.1 != a.1, "a different seed must give a different dS");
}
