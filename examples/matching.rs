//! A few DSA gradient-matching outer steps on random data: 10 classes of 1x28x28
//! images, the default ConvNet (or `--model`), ipc 1, a fresh network per step (as every DSA
//! iteration with ipc 1), one siamese augmentation draw per class, and image SGD
//! (lr 0.1, momentum 0.5). Prints the matching loss and the time per step.
//!
//! `cargo run --release --example matching -- [--model ConvNet] [--batch-real 256] [--steps 5] [--threads 0] [--seed 0]`
//! (`--model`: any architecture name; BatchNorm models refresh their statistics on
//! 16 random images per class before each step)

use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::{AffineParam, AugOp, Backend, ImgShape, IntParam, Metric, SgdParams};
use dsa_condense::engine::{matching_flops, ClassInput, Network};
use dsa_condense::model::Model;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

fn arg(args: &[String], name: &str, default: usize) -> anyhow::Result<usize> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => {
            let v = args
                .get(i + 1)
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))?;
            v.parse().map_err(|e| anyhow::anyhow!("{name} {v}: {e}"))
        }
    }
}

/// One siamese draw (docs/method.md §2.5 ranges: rotation ±15°, contrast [0.5, 1.5], crop ±4)
/// as ops for `n` images.
fn siamese_ops(rng: &mut ChaCha8Rng, n_real: usize, n_syn: usize) -> (Vec<AugOp>, Vec<AugOp>) {
    let a = rng.random_range(-15.0f32..15.0).to_radians();
    let contrast = rng.random_range(0.5f32..1.5);
    let crop = IntParam {
        a: rng.random_range(-4..=4),
        b: rng.random_range(-4..=4),
    };
    let rot = AffineParam {
        a00: a.cos(),
        a01: -a.sin(),
        a10: a.sin(),
        a11: a.cos(),
    };
    let ops = |n: usize| {
        vec![
            AugOp::Affine(vec![rot; n]),
            AugOp::Contrast(vec![contrast; n]),
            AugOp::Crop(vec![crop; n]),
        ]
    };
    (ops(n_real), ops(n_syn))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let batch_real = arg(&args, "--batch-real", 256)?;
    let steps = arg(&args, "--steps", 5)?;
    let threads = arg(&args, "--threads", 0)?;
    let seed = arg(&args, "--seed", 0)? as u64;
    let (k, ipc, img) = (10usize, 1usize, 28 * 28);

    let be = Cpu::<f32>::new(threads)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let name = args
        .iter()
        .position(|a| a == "--model")
        .and_then(|i| args.get(i + 1))
        .map_or("ConvNet", String::as_str);
    let model = Model::from_name(name, 1, 28, 28, k)?;
    let mut net = Network::new(&be, model.clone(), &mut rng)?;
    let mut mw = net.match_workspace(batch_real, ipc)?;
    println!(
        "{}: {name} ({} parameters), {k} classes, ipc {ipc}, batch_real {batch_real}",
        be.name(),
        net.layout().total
    );
    // a fixed random "dataset": 2 x batch_real images per class
    let pool_n = 2 * batch_real;
    let data: Vec<_> = (0..k)
        .map(|_| {
            be.upload(
                &(0..pool_n * img)
                    .map(|_| rng.random_range(-1.0f32..1.0))
                    .collect::<Vec<_>>(),
            )
        })
        .collect::<Result<_, _>>()?;
    let mut syn = be.upload(
        &(0..k * ipc * img)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect::<Vec<_>>(),
    )?;
    let mut dsyn = be.alloc(k * ipc * img)?;
    let mut mom = be.alloc(k * ipc * img)?;
    let mut real_raw = be.alloc(batch_real * img)?;
    let mut reals: Vec<_> = (0..k)
        .map(|_| be.alloc(batch_real * img))
        .collect::<Result<_, _>>()?;
    let mut tmp = be.alloc(batch_real * img)?;
    let rs = ImgShape {
        n: batch_real as u32,
        c: 1,
        h: 28,
        w: 28,
    };
    let hp = SgdParams {
        lr: 0.1,
        momentum: 0.5,
        weight_decay: 0.0,
    };
    let flops_class = matching_flops(&model, batch_real, ipc)?;
    let bn_n = 16 * k;
    let mut bn = match model.has_batchnorm() {
        true => Some((
            net.workspace(bn_n, Default::default())?,
            be.upload(
                &(0..bn_n * img)
                    .map(|_| rng.random_range(-1.0f32..1.0))
                    .collect::<Vec<_>>(),
            )?,
        )),
        false => None,
    };
    for step in 0..steps {
        let t0 = Instant::now();
        net.reinit(&mut rng)?;
        let mut augs = Vec::with_capacity(k);
        for (c, real) in reals.iter_mut().enumerate() {
            let rows: Vec<u32> = (0..batch_real)
                .map(|_| rng.random_range(0..pool_n as u32))
                .collect();
            be.gather_rows(&mut real_raw, &data[c], &rows, img)?;
            let (ops_real, ops_syn) = siamese_ops(&mut rng, batch_real, ipc);
            be.copy_range(real, 0, &real_raw, 0, batch_real * img)?;
            for op in &ops_real {
                be.aug_fwd(&mut tmp, real, op, &rs)?;
                std::mem::swap(real, &mut tmp);
            }
            augs.push(ops_syn);
        }
        let classes: Vec<_> = (0..k)
            .map(|c| ClassInput {
                real: &reals[c],
                aug: &augs[c],
            })
            .collect();
        let bn_batch = bn.as_mut().map(|(ws, x)| (ws, &*x));
        let loss = net.outer_grad(&mut mw, &syn, &classes, Metric::Ours, &mut dsyn, bn_batch)?;
        be.sgd_step(&mut syn, &dsyn, &mut mom, hp)?;
        be.synchronize()?;
        let dt = t0.elapsed().as_secs_f64();
        println!(
            "step {step}: loss {:.4} (mean per class {:.4}), {:.3} s, {:.1} GFLOP/s",
            loss,
            loss / k as f64,
            dt,
            k as f64 * flops_class / dt * 1e-9
        );
    }
    Ok(())
}
