//! Condensing from library code, step by step: load Fashion-MNIST, build a ConvNet,
//! run DSA gradient-matching steps (ipc 1, a fresh network per step, one siamese
//! augmentation draw per class), save the set as safetensors and a PNG grid.
//! What the binary's `condense` does, without its evaluation, checkpoints and
//! report (`dsa_condense::condense::run` is that loop).
//!
//! `cargo run --release --example condense_library -- [--steps 20] [--out /tmp/lib_synset]`
//! (needs Fashion-MNIST: `apt-get install dataset-fashion-mnist`, or `--data-dir`)

use std::collections::BTreeMap;
use std::path::PathBuf;

use dsa_condense::augment::{apply_fwd_in_place, sample_siamese, AugMode, DsaParams, Strategy};
use dsa_condense::backend::cpu::Cpu;
use dsa_condense::backend::{Backend, ImgShape, Metric, SgdParams};
use dsa_condense::data::{self, ClassIndex, DatasetKind, LoadOptions};
use dsa_condense::engine::{ClassInput, Network};
use dsa_condense::model::Model;
use dsa_condense::output;
use rand::SeedableRng;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let steps: usize = get("--steps").map_or(Ok(20), |v| v.parse())?;
    let out = PathBuf::from(get("--out").unwrap_or_else(|| "/tmp/lib_synset".into()));
    let (ipc, batch_real) = (1usize, 64usize);

    // 1. Data: searched in --data-dir, $DSA_DATA_DIR and the standard places.
    let mut ds = data::load(
        &DatasetKind::FashionMnist,
        &LoadOptions::from_env(get("--data-dir").map(PathBuf::from)),
    )?;
    ds.limit(Some(10_000), Some(1_000));
    let (k, img) = (ds.num_classes, ds.image_len());
    let index = ClassIndex::new(&ds.train.labels, k);
    println!(
        "{}: {} training images, files {:?}",
        ds.name, ds.train.n, ds.files
    );

    // 2. Backend, model, network and the matching buffers.
    let be = Cpu::<f32>::new(0)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let model = Model::from_name("ConvNet", ds.channels, ds.height, ds.width, k)?;
    let mut net = Network::new(&be, model, &mut rng)?;
    let mut mw = net.match_workspace(batch_real, ipc)?;
    let train = be.upload(&ds.train.images)?;

    // 3. The synthetic set: one real image per class to start (`--init real`).
    let init_rows: Vec<u32> = (0..k)
        .flat_map(|c| index.sample(c, ipc, &mut rng))
        .collect();
    let mut syn = be.alloc(k * ipc * img)?;
    be.gather_rows(&mut syn, &train, &init_rows, img)?;
    let (mut dsyn, mut momentum) = (be.alloc(k * ipc * img)?, be.alloc(k * ipc * img)?);
    let sgd = SgdParams {
        lr: 0.1,
        momentum: 0.5,
        weight_decay: 0.0,
    };
    let strategy: Strategy = "color_crop_cutout_flip_scale_rotate".parse()?;
    let shape = ImgShape {
        n: batch_real as u32,
        c: ds.channels as u32,
        h: ds.height as u32,
        w: ds.width as u32,
    };
    let mut reals = (0..k)
        .map(|_| be.alloc(batch_real * img))
        .collect::<Result<Vec<_>, _>>()?;
    let mut scratch = be.alloc(batch_real * img)?;

    // 4. Matching steps: a fresh network, per class a real batch and one siamese draw
    //    applied to it (the same draw goes with the synthetic images), the exact
    //    image gradient of the summed class distances, one image SGD step.
    for step in 0..steps {
        net.reinit(&mut rng)?;
        let mut draws = Vec::with_capacity(k);
        for (c, real) in reals.iter_mut().enumerate() {
            be.gather_rows(real, &train, &index.sample(c, batch_real, &mut rng), img)?;
            let draw = sample_siamese(
                &strategy,
                &DsaParams::default(),
                AugMode::S,
                ds.height,
                &mut rng,
            )?;
            apply_fwd_in_place(&be, &draw.ops(batch_real), real, &mut scratch, &shape)?;
            draws.push(draw.ops(ipc));
        }
        let classes: Vec<ClassInput<'_, Cpu<f32>>> = (0..k)
            .map(|c| ClassInput {
                real: &reals[c],
                aug: &draws[c],
            })
            .collect();
        let loss = net.outer_grad(&mut mw, &syn, &classes, Metric::Ours, &mut dsyn, None)?;
        be.sgd_step(&mut syn, &dsyn, &mut momentum, sgd)?;
        println!(
            "step {step}: matching loss {:.3} per class",
            loss / k as f64
        );
    }

    // 5. Save: safetensors (images in normalised space, labels, metadata) and a PNG.
    std::fs::create_dir_all(&out)?;
    let images = be.download(&syn)?;
    let labels: Vec<u32> = (0..k as u32).flat_map(|c| vec![c; ipc]).collect();
    let meta: BTreeMap<String, String> = [
        ("dataset", ds.name.clone()),
        ("ipc", ipc.to_string()),
        ("mean", format!("{:?}", ds.mean)),
        ("std", format!("{:?}", ds.std)),
        ("method", "DSA".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let shape4 = [k * ipc, ds.channels, ds.height, ds.width];
    output::write_synset_safetensors(
        &out.join("synset.safetensors"),
        &images,
        shape4,
        &labels,
        &meta,
    )?;
    output::write_png_grid(
        &out.join("synset.png"),
        &images,
        ds.channels,
        ds.height,
        ds.width,
        k,
        ipc,
        &ds.mean,
        &ds.std,
    )?;
    println!("wrote {}", out.display());
    Ok(())
}
