//! Output files: atomic writes, safetensors synthetic set, PNG grid, report,
//! checkpoints.

use std::collections::BTreeMap;

use dsa_condense::output::{self, checkpoint, Checkpoint, EvalRecord, LossRecord, Report, Summary};
use dsa_condense::Error;
use rand::{Rng, SeedableRng};

fn meta() -> BTreeMap<String, String> {
    [
        ("dataset", "FashionMNIST"),
        ("method", "DSA"),
        ("ipc", "2"),
        ("mean", "[0.2861]"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[test]
fn atomic_write_failure_keeps_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.bin");
    output::atomic_write(&p, b"old content").unwrap();
    let r = output::atomic_write_with(&p, |w| {
        w.write_all(b"partial new").map_err(|e| Error::io("x", e))?;
        Err(Error::Unsupported("simulated failure mid-write".into()))
    });
    assert!(r.is_err());
    assert_eq!(std::fs::read(&p).unwrap(), b"old content");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "temporary file left behind: {names:?}");
    output::atomic_write(&p, b"new").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"new");
}

#[test]
fn unwritable_output_dir_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("sub");
    let e = output::ensure_output_dir(&out).unwrap_err().to_string();
    assert!(e.contains("plain-file"), "{e}");
    let e = Checkpoint {
        experiment: 0,
        iteration: 0,
        images: vec![0.0],
        shape: [1, 1, 1, 1],
        labels: vec![0],
        momentum: vec![],
        rng_state: vec![],
        config_json: "{}".into(),
        extra: BTreeMap::new(),
    }
    .save(&out.join("ckpt.safetensors"))
    .unwrap_err()
    .to_string();
    assert!(e.contains("ckpt.safetensors"), "{e}");
}

#[test]
fn synset_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("syn.safetensors");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let images: Vec<f32> = (0..4 * 3 * 5 * 6)
        .map(|_| rng.random::<f32>() - 0.5)
        .collect();
    let labels = vec![0, 0, 1, 1];
    output::write_synset_safetensors(&p, &images, [4, 3, 5, 6], &labels, &meta()).unwrap();
    let s = output::read_synset(&p).unwrap();
    assert_eq!(s.images, images);
    assert_eq!(s.shape, [4, 3, 5, 6]);
    assert_eq!(s.labels, labels);
    assert_eq!(s.metadata, meta());

    // Wrong sizes and NaN are refused, and the existing file stays.
    assert!(
        output::write_synset_safetensors(&p, &images[1..], [4, 3, 5, 6], &labels, &meta()).is_err()
    );
    let mut nan = images.clone();
    nan[7] = f32::NAN;
    let e = output::write_synset_safetensors(&p, &nan, [4, 3, 5, 6], &labels, &meta()).unwrap_err();
    assert!(matches!(e, Error::NonFinite(_)), "{e}");
    assert_eq!(output::read_synset(&p).unwrap().images, images);

    // Layout matches what torch's safetensors loader expects: dtypes in the header.
    let bytes = std::fs::read(&p).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header["images"]["dtype"], "F32");
    assert_eq!(header["labels"]["dtype"], "I64");
    assert_eq!(header["__metadata__"]["dataset"], "FashionMNIST");

    std::fs::write(&p, b"garbage").unwrap();
    let e = output::read_synset(&p).unwrap_err().to_string();
    assert!(e.contains("syn.safetensors"), "{e}");
}

#[test]
fn png_grid_has_right_size_and_denormalised_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let (k, ipc, c, h, w) = (3, 2, 3, 4, 5);
    let mean = [0.5f32, 0.4, 0.3];
    let std = [0.2f32, 0.25, 0.5];
    let mut images = vec![0f32; k * ipc * c * h * w];
    // Image (class 1, col 0): channel 0 pixel (2, 3) de-normalises to 0.9;
    // channel 2 everywhere to 1.3 -> clamped to 1.
    let base = ipc * c * h * w; // image (class 1, col 0)
    images[base + 2 * w + 3] = (0.9 - 0.5) / 0.2;
    for i in 0..h * w {
        images[base + 2 * h * w + i] = (1.3 - 0.3) / 0.5;
    }
    let p = dir.path().join("grid.png");
    output::write_png_grid(&p, &images, c, h, w, k, ipc, &mean, &std).unwrap();
    let img = image::open(&p).unwrap().to_rgb8();
    let pad = output::png_grid::PAD as u32;
    assert_eq!(img.width(), ipc as u32 * (w as u32 + pad) + pad);
    assert_eq!(img.height(), k as u32 * (h as u32 + pad) + pad);
    let (y0, x0) = (pad + (h as u32 + pad), pad);
    let px = img.get_pixel(x0 + 3, y0 + 2);
    assert_eq!(px[0], (0.9f32 * 255.0).round() as u8);
    assert_eq!(px[2], 255);
    // An untouched pixel of class 0 is the mean colour.
    let px = img.get_pixel(pad, pad);
    assert_eq!(px.0, [128, 102, 77]);

    // Grey images give a grey PNG.
    let g = dir.path().join("grey.png");
    output::write_png_grid(&g, &[0.0; 2 * 2 * 3 * 3], 1, 3, 3, 2, 2, &[0.5], &[0.5]).unwrap();
    let gi = image::open(&g).unwrap();
    assert_eq!(gi.color(), image::ColorType::L8);
    assert!(output::write_png_grid(&g, &[0.0; 5], 1, 3, 3, 2, 2, &[0.5], &[0.5]).is_err());
}

#[test]
fn report_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("report.json");
    let mut r = Report::new("condense");
    r.dataset = "FashionMNIST".into();
    r.seed = 42;
    r.config = serde_json::json!({"ipc": 1});
    r.losses.push(LossRecord {
        experiment: 0,
        iteration: 0,
        loss: 12.5,
    });
    let acc = vec![0.7, 0.72, 0.68];
    let s = Summary::of(&acc);
    assert!((s.mean - 0.7).abs() < 1e-12);
    assert!(
        (s.std - (0.0008f64 / 3.0).sqrt()).abs() < 1e-12,
        "population std"
    );
    r.evaluations.push(EvalRecord {
        experiment: 0,
        iteration: 20,
        model: "ConvNet".into(),
        accuracies: acc,
        summary: s,
    });
    r.final_accuracy.insert("ConvNet".into(), s);
    r.timings.insert("total".into(), 1.5);
    r.write(&p).unwrap();
    let back = Report::read(&p).unwrap();
    assert_eq!(back, r);
    assert!(back.tool.starts_with("dsa-condense "));
}

#[test]
fn checkpoint_round_trip_with_rng_state() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ckpt.safetensors");
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
    let _: u64 = rng.random();
    let images: Vec<f32> = (0..2 * 3 * 3).map(|i| i as f32 * 0.25 - 1.0).collect();
    let ck = Checkpoint {
        experiment: 1,
        iteration: 37,
        momentum: images.iter().map(|v| v * 0.5).collect(),
        images,
        shape: [2, 1, 3, 3],
        labels: vec![0, 1],
        rng_state: checkpoint::chacha_state(&rng),
        config_json: r#"{"ipc":1}"#.into(),
        extra: [("accuracies".to_string(), "[0.5]".to_string())]
            .into_iter()
            .collect(),
    };
    ck.save(&p).unwrap();
    let back = Checkpoint::load(&p).unwrap();
    assert_eq!(back, ck);
    let mut restored = checkpoint::restore_chacha(&back.rng_state, &p).unwrap();
    let expect: [u64; 4] = std::array::from_fn(|_| rng.random());
    let got: [u64; 4] = std::array::from_fn(|_| restored.random());
    assert_eq!(got, expect);

    // Empty momentum (before the first step) round-trips too.
    let ck2 = Checkpoint {
        momentum: vec![],
        ..ck.clone()
    };
    ck2.save(&p).unwrap();
    assert_eq!(Checkpoint::load(&p).unwrap().momentum, Vec::<f32>::new());

    // A synthetic-set file is not a checkpoint.
    let s = dir.path().join("syn.safetensors");
    output::write_synset_safetensors(&s, &ck.images, ck.shape, &ck.labels, &BTreeMap::new())
        .unwrap();
    let e = Checkpoint::load(&s).unwrap_err().to_string();
    assert!(
        e.contains("syn.safetensors") && e.contains("checkpoint"),
        "{e}"
    );
    assert!(checkpoint::restore_chacha(&[1, 2, 3], &p).is_err());
}

#[test]
fn an_edited_damaged_or_non_finite_checkpoint_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ckpt.safetensors");
    let images: Vec<f32> = (0..2 * 3 * 3).map(|i| i as f32 * 0.25 - 1.0).collect();
    let ck = Checkpoint {
        experiment: 0,
        iteration: 1,
        momentum: vec![],
        images,
        shape: [2, 1, 3, 3],
        labels: vec![0, 1],
        rng_state: vec![7; 56],
        config_json: r#"{"ipc":1}"#.into(),
        extra: BTreeMap::new(),
    };
    ck.save(&p).unwrap();
    let good = std::fs::read(&p).unwrap();
    let refused = |bytes: &[u8], needle: &str| {
        std::fs::write(&p, bytes).unwrap();
        let e = Checkpoint::load(&p).unwrap_err().to_string();
        assert!(e.contains("ckpt.safetensors") && e.contains(needle), "{e}");
    };
    // another iteration, same length: only the digest can tell
    let key = br#""iteration":"1""#;
    let at = good
        .windows(key.len())
        .position(|w| w == key)
        .expect("iteration entry in the header");
    let mut edited = good.clone();
    edited[at + key.len() - 2] = b'7';
    refused(&edited, "digest");
    // one flipped bit in the images
    let mut flipped = good.clone();
    let last = flipped.len() - 60;
    flipped[last] ^= 1;
    refused(&flipped, "digest");
    // non-finite images, digest intact
    let mut nan = ck.clone();
    nan.images[4] = f32::NAN;
    nan.save(&p).unwrap();
    let e = Checkpoint::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("ckpt.safetensors") && e.contains("NaN") && e.contains("index 4"),
        "{e}"
    );
    std::fs::write(&p, &good).unwrap();
    assert_eq!(Checkpoint::load(&p).unwrap(), ck);
}
