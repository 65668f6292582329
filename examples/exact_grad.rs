//! The exact gradient of one class's matching distance with respect to its synthetic
//! images, for images, network parameters and augmentation parameters the caller
//! gives, checked against central finite differences at a few pixels (f64, CPU):
//!
//! `cargo run --release --example exact_grad`

use dsa_condense::augment::{AugDraw, Group};
use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::{AffineParam, AugOp, Backend, Metric};
use dsa_condense::engine::Network;
use dsa_condense::model::Model;

fn main() -> anyhow::Result<()> {
    let be = Cpu::<f64>::new(0)?;
    // A small ConvNet for 1x16x16 images and 4 classes (any name of
    // docs/architectures.md works the same way).
    let model = Model::from_name("ConvNetD2", 1, 16, 16, 4)?;
    let total = model.layout()?.total;
    // The caller's parameters, in the layout's order (here a deterministic pattern).
    let params: Vec<f64> = (0..total)
        .map(|i| 0.05 * ((i as f64 * 0.7).sin() + 0.3 * (i as f64 * 0.13).cos()))
        .collect();
    let mut net = Network::from_params(&be, model, &params)?;
    println!(
        "{} parameters, first tensor {}",
        total,
        net.layout().tensors[0].name
    );

    // The caller's images: 6 real images of class 2 and 1 synthetic image.
    let img = 16 * 16;
    let real: Vec<f64> = (0..6 * img)
        .map(|i| ((i * 37 % 101) as f64 / 50.0) - 1.0)
        .collect();
    let syn: Vec<f64> = (0..img)
        .map(|i| ((i * 11 % 29) as f64 / 14.0) - 1.0)
        .collect();
    // The caller's augmentation: a 10-degree rotation, then contrast x1.2. The real
    // batch is given already augmented; here it is used as is for brevity.
    let (c, s) = (10f32.to_radians().cos(), 10f32.to_radians().sin());
    let draw = AugDraw::from_ops(
        vec![Group::Rotate, Group::Color],
        vec![
            AugOp::Affine(vec![AffineParam {
                a00: c,
                a01: -s,
                a10: s,
                a11: c,
            }]),
            AugOp::Contrast(vec![1.2]),
        ],
    )?;
    let (real_b, mut syn_b) = (be.upload(&real)?, be.upload(&syn)?);
    let mut mw = net.match_workspace(6, 1)?;
    let d = net.matching_grad(&mut mw, &real_b, &syn_b, 2, &draw.ops(1), Metric::Ours)?;
    let grad = be.download(&mw.dsyn)?;
    println!("D = {d:.6}");

    // Central finite differences at a few pixels.
    let h = 1e-5;
    let mut worst: f64 = 0.0;
    for p in [17usize, 37, 120, 200] {
        let mut at = |delta: f64| -> anyhow::Result<f64> {
            let mut x = syn.clone();
            x[p] += delta;
            be.write(&mut syn_b, &x)?;
            Ok(net.matching_loss(&mut mw, &real_b, &syn_b, 2, &draw.ops(1), Metric::Ours)?)
        };
        let fd = (at(h)? - at(-h)?) / (2.0 * h);
        let rel = (grad[p] - fd).abs() / fd.abs().max(1e-12);
        worst = worst.max(rel);
        println!(
            "pixel {p:3}: exact {:+.9e}  finite difference {fd:+.9e}  rel. error {rel:.1e}",
            grad[p]
        );
    }
    anyhow::ensure!(
        worst < 1e-5,
        "exact and finite-difference gradients disagree"
    );
    Ok(())
}
