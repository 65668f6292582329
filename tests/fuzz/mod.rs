//! A deterministic mutation fuzzer for the data and output readers, shared by the
//! bounded CI run (`tests/fuzz_readers.rs`) and long runs
//! (`cargo run --release --example fuzz_readers -- --execs 1000000`).
//!
//! One target per reader; each starts from the committed seed corpus in
//! `fuzz/corpus/<target>/` (valid files, written by `--make-corpus`), applies 1 to 8
//! stacked mutations (bit flips, byte sets, interesting 32-bit values, inserts,
//! deletions, duplicated ranges, truncation, appended garbage, splices with another
//! seed) drawn from a seeded ChaCha RNG, and hands the result to the reader. A reader
//! may accept or refuse an input; it must not panic, and every input's time is
//! recorded (the slowest is reported).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dsa_condense::data::{cifar, folder, idx, svhn, RawSplit};
use dsa_condense::output::{self, Checkpoint};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The fuzz targets, one per reader.
pub const TARGETS: [&str; 7] = [
    "idx",
    "idx_gz",
    "cifar",
    "svhn_mat",
    "image_folder",
    "synset",
    "checkpoint",
];

/// Where the committed seed corpus is.
pub fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

/// The seeds of `target`, sorted by file name.
pub fn load_corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_root().join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// Feeds `bytes` to the reader of `target`, with `scratch` as a private folder for
/// the readers that take files. `Ok(true)`: accepted, `Ok(false)`: refused with an
/// error, `Err(msg)`: the reader panicked.
pub fn run_one(target: &str, bytes: &[u8], scratch: &Path) -> Result<bool, String> {
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| feed(target, bytes, scratch)));
    r.map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

fn feed(target: &str, bytes: &[u8], scratch: &Path) -> bool {
    let file = |name: &str| {
        let p = scratch.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    match target {
        "idx" | "idx_gz" => {
            let p = Path::new("input");
            match idx::decompress_if_gz(bytes.to_vec(), p) {
                Ok(raw) => {
                    let a = idx::parse_idx_u8(&raw, 3, p).is_ok();
                    let b = idx::parse_idx_u8(&raw, 1, p).is_ok();
                    a || b
                }
                Err(_) => false,
            }
        }
        "cifar" => {
            let p = file("batch.bin");
            let mut out = RawSplit::default();
            let a = cifar::read_batch(&p, 1, 10, None, &mut out).is_ok();
            let mut out = RawSplit::default();
            let b = cifar::read_batch(&p, 2, 100, None, &mut out).is_ok();
            a || b
        }
        "svhn_mat" => svhn::read_split(&file("test_32x32.mat")).is_ok(),
        "image_folder" => {
            let root = scratch.join("folder");
            let _ = std::fs::remove_dir_all(&root);
            for class in ["a", "b"] {
                std::fs::create_dir_all(root.join(class)).unwrap();
            }
            let ext = if bytes.starts_with(&[0xff, 0xd8]) {
                "jpg"
            } else {
                "png"
            };
            std::fs::write(root.join("a").join(format!("0.{ext}")), bytes).unwrap();
            image::GrayImage::from_pixel(8, 8, image::Luma([9]))
                .save(root.join("b/0.png"))
                .unwrap();
            folder::load(&root).is_ok()
        }
        "synset" => output::read_synset(&file("synset.safetensors")).is_ok(),
        "checkpoint" => Checkpoint::load(&file("checkpoint.safetensors")).is_ok(),
        other => panic!("unknown fuzz target {other}"),
    }
}

const INTERESTING_U32: [u32; 10] = [
    0,
    1,
    2,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    60_000,
];

/// `seed` with 1 to 8 random mutations; `other` is another seed to splice from.
pub fn mutate(seed: &[u8], other: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.random_range(1..=8) {
        let len = v.len();
        let at = |rng: &mut ChaCha8Rng| {
            if len == 0 {
                0
            } else {
                // bias towards headers: half of the positions fall in the first 64 bytes
                if rng.random_bool(0.5) {
                    rng.random_range(0..len.min(64))
                } else {
                    rng.random_range(0..len)
                }
            }
        };
        match rng.random_range(0..10) {
            0 if len > 0 => {
                let i = at(rng);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = at(rng);
                v[i] = rng.random();
            }
            2 if len >= 4 => {
                let i = at(rng).min(len - 4);
                let x = INTERESTING_U32[rng.random_range(0..INTERESTING_U32.len())];
                let b = if rng.random_bool(0.5) {
                    x.to_le_bytes()
                } else {
                    x.to_be_bytes()
                };
                v[i..i + 4].copy_from_slice(&b);
            }
            3 => {
                let i = at(rng);
                let n = rng.random_range(1..=16);
                let ins: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                v.splice(i..i, ins);
            }
            4 if len > 1 => {
                let i = at(rng);
                let n = rng.random_range(1..=(len - i).min(64));
                v.drain(i..i + n);
            }
            5 if len > 1 => {
                let i = at(rng);
                let n = rng.random_range(1..=(len - i).min(64));
                let dup = v[i..i + n].to_vec();
                v.splice(i..i, dup);
            }
            6 if len > 0 => {
                let keep = rng.random_range(0..len);
                v.truncate(keep);
            }
            7 => {
                let n = rng.random_range(1..=32);
                v.extend((0..n).map(|_| rng.random::<u8>()));
            }
            8 if !other.is_empty() && len > 0 => {
                let i = at(rng);
                let j = rng.random_range(0..other.len());
                let n = rng.random_range(1..=(other.len() - j).min(256));
                let end = (i + n).min(len);
                v.splice(i..end, other[j..j + n].iter().copied());
            }
            _ => {
                if len > 0 {
                    let i = at(rng);
                    v[i] = v[i].wrapping_add(rng.random_range(1..=4));
                }
            }
        }
    }
    v
}

/// What a run of one target found.
#[derive(Debug, Default)]
pub struct TargetReport {
    /// Inputs executed (seeds included).
    pub execs: u64,
    /// Inputs the reader accepted.
    pub accepted: u64,
    /// Inputs that made the reader panic, with the panic message.
    pub crashes: Vec<(Vec<u8>, String)>,
    /// The slowest input's time and size.
    pub slowest: (Duration, usize),
}

/// Runs `target` on its seeds, then on `execs` mutated inputs drawn from `seed`.
pub fn fuzz_target(target: &str, execs: u64, seed: u64) -> TargetReport {
    let corpus = load_corpus(target);
    assert!(!corpus.is_empty(), "{target}: empty seed corpus");
    let scratch = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rep = TargetReport::default();
    let inputs = corpus
        .iter()
        .cloned()
        .map(Some)
        .chain((0..execs).map(|_| None));
    for given in inputs {
        let input = given.unwrap_or_else(|| {
            let a = &corpus[rng.random_range(0..corpus.len())];
            let b = &corpus[rng.random_range(0..corpus.len())];
            mutate(a, b, &mut rng)
        });
        let t = Instant::now();
        let r = run_one(target, &input, scratch.path());
        let dt = t.elapsed();
        if dt > rep.slowest.0 {
            rep.slowest = (dt, input.len());
        }
        rep.execs += 1;
        match r {
            Ok(true) => rep.accepted += 1,
            Ok(false) => {}
            Err(msg) => rep.crashes.push((input, msg)),
        }
    }
    rep
}

/// Writes the seed corpus (valid files of every reader) under `root`.
pub fn make_corpus(root: &Path) {
    let put = |target: &str, name: &str, bytes: Vec<u8>| {
        let d = root.join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), bytes).unwrap();
    };
    let gz = |b: &[u8]| {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let idx_images = |n: u32, h: u32, w: u32| {
        let mut v = vec![0, 0, 8, 3];
        for d in [n, h, w] {
            v.extend(d.to_be_bytes());
        }
        v.extend((0..n * h * w).map(|i| (i * 37 % 256) as u8));
        v
    };
    let idx_labels = |n: u32| {
        let mut v = vec![0, 0, 8, 1];
        v.extend(n.to_be_bytes());
        v.extend((0..n).map(|i| (i % 10) as u8));
        v
    };
    put("idx", "images_3x4x5", idx_images(3, 4, 5));
    put("idx", "labels_7", idx_labels(7));
    put("idx_gz", "images_3x4x5.gz", gz(&idx_images(3, 4, 5)));
    put("idx_gz", "labels_7.gz", gz(&idx_labels(7)));

    let record = |labels: &[u8], s: usize| {
        let mut r = labels.to_vec();
        r.extend((0..3072).map(|p| ((p * 13 + s * 101) % 256) as u8));
        r
    };
    put(
        "cifar",
        "cifar10_2.bin",
        [record(&[3], 1), record(&[9], 2)].concat(),
    );
    put("cifar", "cifar100_1.bin", record(&[4, 77], 3));

    put("svhn_mat", "plain.mat", svhn_mat(2, false));
    put("svhn_mat", "compressed.mat", svhn_mat(2, true));

    let mut png = Vec::new();
    image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * 30 + y) as u8]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    put("image_folder", "grey8.png", png);
    let mut rgb = Vec::new();
    image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([(x * 30) as u8, (y * 30) as u8, 7]))
        .write_to(&mut std::io::Cursor::new(&mut rgb), image::ImageFormat::Png)
        .unwrap();
    put("image_folder", "rgb8.png", rgb);
    let mut jpg = Vec::new();
    image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([(x * 30) as u8, (y * 30) as u8, 7]))
        .write_to(
            &mut std::io::Cursor::new(&mut jpg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    put("image_folder", "rgb8.jpg", jpg);

    let tmp = tempfile::tempdir().unwrap();
    let images: Vec<f32> = (0..2 * 4 * 4).map(|i| i as f32 * 0.1 - 1.0).collect();
    let meta: BTreeMap<String, String> = [
        ("dataset", "FashionMNIST"),
        ("ipc", "1"),
        ("mean", "[0.2861]"),
        ("std", "[0.353]"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let p = tmp.path().join("s.safetensors");
    output::write_synset_safetensors(&p, &images, [2, 1, 4, 4], &[0, 1], &meta).unwrap();
    put(
        "synset",
        "synset_2x1x4x4.safetensors",
        std::fs::read(&p).unwrap(),
    );
    let ck = Checkpoint {
        experiment: 0,
        iteration: 3,
        momentum: images.iter().map(|v| v * 0.5).collect(),
        images,
        shape: [2, 1, 4, 4],
        labels: vec![0, 1],
        rng_state: vec![5; 56],
        config_json: r#"{"ipc":1}"#.into(),
        extra: BTreeMap::new(),
    };
    let p = tmp.path().join("c.safetensors");
    ck.save(&p).unwrap();
    put(
        "checkpoint",
        "checkpoint_2x1x4x4.safetensors",
        std::fs::read(&p).unwrap(),
    );
}

/// A MAT v5 numeric matrix element (`miMATRIX`): array flags with `class`, the
/// dimensions, the name (a small data element, at most 4 bytes) and the data.
pub fn mat_matrix(name: &str, class: u8, dims: &[i32], data_type: u32, data: &[u8]) -> Vec<u8> {
    let pad8 = |v: &mut Vec<u8>| {
        while !v.len().is_multiple_of(8) {
            v.push(0);
        }
    };
    let mut body = Vec::new();
    body.extend(6u32.to_le_bytes());
    body.extend(8u32.to_le_bytes());
    body.extend([class, 0, 0, 0, 0, 0, 0, 0]);
    body.extend(5u32.to_le_bytes());
    body.extend(((dims.len() * 4) as u32).to_le_bytes());
    for d in dims {
        body.extend(d.to_le_bytes());
    }
    pad8(&mut body);
    body.extend((((name.len() as u32) << 16) | 1).to_le_bytes());
    let mut nb = name.as_bytes().to_vec();
    nb.resize(4, 0);
    body.extend(nb);
    body.extend(data_type.to_le_bytes());
    body.extend((data.len() as u32).to_le_bytes());
    body.extend_from_slice(data);
    pad8(&mut body);
    let mut el = Vec::new();
    el.extend(14u32.to_le_bytes());
    el.extend((body.len() as u32).to_le_bytes());
    el.extend(body);
    el
}

/// `el` wrapped in a zlib-compressed element (`miCOMPRESSED`).
pub fn mat_compressed(el: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(el).unwrap();
    let z = z.finish().unwrap();
    let mut out = Vec::new();
    out.extend(15u32.to_le_bytes());
    out.extend((z.len() as u32).to_le_bytes());
    out.extend(z);
    out
}

/// A level-5 MAT file: the 128-byte header (little endian) and `elements`.
pub fn mat_file(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut f = vec![b' '; 116];
    f[..20].copy_from_slice(b"MATLAB 5.0 MAT-file,");
    f.extend([0u8; 8]);
    f.extend([0x00, 0x01]);
    f.extend(b"IM");
    for e in elements {
        f.extend_from_slice(e);
    }
    f
}

/// A small SVHN-like MAT v5 file: `X` 32x32x3xN uint8 and `y` Nx1 double.
fn svhn_mat(n: usize, compress: bool) -> Vec<u8> {
    let x: Vec<u8> = (0..3072 * n).map(|i| (i % 251) as u8).collect();
    let y: Vec<u8> = (0..n)
        .flat_map(|i| ((i % 10 + 1) as f64).to_le_bytes())
        .collect();
    let elements: Vec<Vec<u8>> = [
        mat_matrix("X", 9, &[32, 32, 3, n as i32], 2, &x),
        mat_matrix("y", 6, &[n as i32, 1], 9, &y),
    ]
    .into_iter()
    .map(|e| if compress { mat_compressed(&e) } else { e })
    .collect();
    mat_file(&elements)
}
