//! Dataset readers, normalisation, class index, locating and downloading.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use dsa_condense::data::{self, locate, ClassIndex, DatasetKind, LoadOptions, Split};
use rand::SeedableRng;

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_images(n: usize, h: usize, w: usize, f: impl Fn(usize, usize) -> u8) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [n, h, w] {
        v.extend((d as u32).to_be_bytes());
    }
    for i in 0..n {
        for p in 0..h * w {
            v.push(f(i, p));
        }
    }
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend((labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

fn pix(i: usize, p: usize) -> u8 {
    ((i * 31 + p * 7) % 256) as u8
}

/// Writes a small MNIST-like IDX set: train n=30 (labels i % 10), test n=10.
/// Train images gzipped, test images raw.
fn write_idx_set(dir: &Path) {
    let tl: Vec<u8> = (0..30).map(|i| (i % 10) as u8).collect();
    let el: Vec<u8> = (0..10).map(|i| (9 - i) as u8).collect();
    std::fs::write(
        dir.join("train-images-idx3-ubyte.gz"),
        gz(&idx_images(30, 4, 5, pix)),
    )
    .unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), gz(&idx_labels(&tl))).unwrap();
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte"),
        idx_images(10, 4, 5, pix),
    )
    .unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), idx_labels(&el)).unwrap();
}

fn norm(p: u8, mean: f32, std: f32) -> f32 {
    (p as f32 / 255.0 - mean) / std
}

#[test]
fn idx_loads_gz_and_raw_and_normalises() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path());
    let ds = data::load(&DatasetKind::Mnist, &LoadOptions::local(dir.path())).unwrap();
    assert_eq!(
        (ds.channels, ds.height, ds.width, ds.num_classes),
        (1, 4, 5, 10)
    );
    assert_eq!((ds.train.n, ds.test.n), (30, 10));
    assert_eq!(ds.train.labels[13], 3);
    assert_eq!(ds.test.labels[2], 7);
    assert_eq!(ds.mean, vec![0.1307]);
    for (i, p) in [(0usize, 0usize), (17, 11), (29, 19)] {
        let got = ds.train.images[i * 20 + p];
        assert!(
            (got - norm(pix(i, p), 0.1307, 0.3081)).abs() < 1e-6,
            "image {i} pixel {p}: {got}"
        );
    }
    assert!((ds.test.images[5 * 20 + 3] - norm(pix(5, 3), 0.1307, 0.3081)).abs() < 1e-6);
}

fn load_err(dir: &Path) -> String {
    data::load(&DatasetKind::Mnist, &LoadOptions::local(dir))
        .unwrap_err()
        .to_string()
}

#[test]
fn idx_wrong_magic_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path());
    let mut bad = idx_labels(&[1, 2, 3]);
    bad[0] = 0x12;
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), bad).unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("t10k-labels-idx1-ubyte") && e.contains("magic"),
        "{e}"
    );
}

#[test]
fn idx_truncated_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path());
    let mut img = idx_images(30, 4, 5, pix);
    img.truncate(img.len() - 7);
    std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), gz(&img)).unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("train-images-idx3-ubyte.gz") && e.contains("truncated"),
        "{e}"
    );

    // A truncated gzip stream is reported too.
    let g = gz(&idx_images(30, 4, 5, pix));
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte.gz"),
        &g[..g.len() / 2],
    )
    .unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("train-images-idx3-ubyte.gz") && e.contains("gzip"),
        "{e}"
    );
}

#[test]
fn idx_gzip_with_trailing_bytes_or_two_members() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path());
    let f = dir.path().join("train-images-idx3-ubyte.gz");
    let mut g = gz(&idx_images(30, 4, 5, pix));
    g.extend_from_slice(b"<html>garbage</html>");
    std::fs::write(&f, &g).unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("train-images-idx3-ubyte.gz") && e.contains("20 bytes of trailing data"),
        "{e}"
    );
    // two gzip members are one valid file (concatenated streams)
    let raw = idx_images(30, 4, 5, pix);
    let (a, b) = raw.split_at(50);
    let mut two = gz(a);
    two.extend(gz(b));
    std::fs::write(&f, two).unwrap();
    let ds = data::load(&DatasetKind::Mnist, &LoadOptions::local(dir.path())).unwrap();
    assert_eq!(ds.train.n, 30);
}

#[test]
fn idx_without_images_or_pixels_names_the_file() {
    for (n, h, w, needle) in [
        (0, 4, 5, "no images"),
        (30, 0, 28, "0x28"),
        (30, 28, 0, "28x0"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_idx_set(dir.path());
        std::fs::write(
            dir.path().join("train-images-idx3-ubyte.gz"),
            gz(&idx_images(n, h, w, pix)),
        )
        .unwrap();
        if n == 0 {
            std::fs::write(
                dir.path().join("train-labels-idx1-ubyte.gz"),
                gz(&idx_labels(&[])),
            )
            .unwrap();
        }
        let e = load_err(dir.path());
        assert!(
            e.contains("train-images-idx3-ubyte.gz") && e.contains(needle),
            "{n}x{h}x{w}: {e}"
        );
        assert!(!e.contains("--ipc") && !e.contains("--model"), "{e}");
    }
}

#[test]
fn idx_count_mismatch_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path());
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte"),
        idx_labels(&[1; 9]),
    )
    .unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("t10k-labels-idx1-ubyte") && e.contains("count mismatch"),
        "{e}"
    );
}

#[test]
fn idx_label_out_of_range_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path());
    let mut l = vec![0u8; 10];
    l[4] = 10;
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), idx_labels(&l)).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("label 10"), "{e}");
}

#[test]
fn fashion_checksum_catches_files_of_another_dataset() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path());
    let e = data::load(&DatasetKind::FashionMnist, &LoadOptions::local(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("SHA-256") && e.contains("idx"), "{e}");
}

#[test]
fn class_index_sampling() {
    let labels: Vec<u32> = (0..100).map(|i| (i % 4) as u32).collect();
    let idx = ClassIndex::new(&labels, 4);
    assert_eq!(idx.class_len(2), 25);
    assert_eq!(idx.min_class_len(), 25);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let a = idx.sample(2, 10, &mut rng);
    assert_eq!(a.len(), 10);
    assert!(a.iter().all(|&i| labels[i as usize] == 2));
    let mut s = a.clone();
    s.sort();
    s.dedup();
    assert_eq!(s.len(), 10, "no repetition within a draw");
    let b = idx.sample(2, 10, &mut rng);
    assert_ne!(a, b, "a fresh permutation per call");
    let mut all = idx.sample(3, 1000, &mut rng);
    assert_eq!(all.len(), 25);
    all.sort();
    assert_eq!(all, idx.indices(3).to_vec());
    // Same seed, same draw.
    let mut r1 = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut r2 = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    assert_eq!(idx.sample(1, 5, &mut r1), idx.sample(1, 5, &mut r2));
    assert!(idx.sample(9, 5, &mut r1).is_empty());
}

#[test]
fn limit_balanced_keeps_classes_and_order() {
    let labels: Vec<u32> = (0..40).map(|i| (i % 4) as u32).collect();
    let split = Split {
        images: (0..80).map(|v| v as f32).collect(),
        labels,
        n: 40,
    };
    let s = split.limit_balanced(10, 4, 2);
    assert_eq!(s.n, 10);
    let counts: Vec<usize> = (0..4)
        .map(|c| s.labels.iter().filter(|&&l| l == c).count())
        .collect();
    assert_eq!(counts, vec![3, 3, 2, 2]);
    // The first image of class 1 is image 1: values 2, 3.
    assert_eq!(&s.images[2..4], &[2.0, 3.0]);
    assert_eq!(split.limit_balanced(100, 4, 2).n, 40);
    assert_eq!(split.gather(&[3, 0], 2).unwrap(), vec![6.0, 7.0, 0.0, 1.0]);
    assert!(split.gather(&[40], 2).is_err());
}

fn cifar_record(label_bytes: &[u8], seed: usize) -> Vec<u8> {
    let mut r = label_bytes.to_vec();
    r.extend((0..3072).map(|p| ((p * 13 + seed * 101) % 256) as u8));
    r
}

#[test]
fn cifar10_binary_loads() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&sub).unwrap();
    for b in 1..=5 {
        let mut f = Vec::new();
        for i in 0..3 {
            f.extend(cifar_record(&[((b + i) % 10) as u8], b * 10 + i));
        }
        std::fs::write(sub.join(format!("data_batch_{b}.bin")), f).unwrap();
    }
    std::fs::write(sub.join("test_batch.bin"), cifar_record(&[4], 99)).unwrap();
    // With the documented sizes checked (the default), 3-record files are refused:
    // a file cut exactly at a record boundary is not silently a smaller dataset.
    let e = data::load(&DatasetKind::Cifar10, &LoadOptions::local(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("data_batch_1.bin") && e.contains("3 records") && e.contains("10000"),
        "{e}"
    );
    let ds = data::load(
        &DatasetKind::Cifar10,
        &LoadOptions::local(dir.path()).any_sizes(),
    )
    .unwrap();
    assert_eq!(
        (ds.train.n, ds.test.n, ds.channels, ds.num_classes),
        (15, 1, 3, 10)
    );
    // Batch 2, record 1: label 3; green channel (c=1) pixel 5 is raw byte 1024+5.
    assert_eq!(ds.train.labels[4], 3);
    let raw = ((1029 * 13 + 21 * 101) % 256) as u8;
    assert!((ds.train.images[4 * 3072 + 1029] - norm(raw, 0.4822, 0.1994)).abs() < 1e-6);
    assert_eq!(ds.test.labels, vec![4]);

    std::fs::write(sub.join("data_batch_3.bin"), &cifar_record(&[1], 0)[..3000]).unwrap();
    let e = data::load(
        &DatasetKind::Cifar10,
        &LoadOptions::local(dir.path()).any_sizes(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("data_batch_3.bin") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn cifar100_uses_fine_labels() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = cifar_record(&[3, 77], 1);
    f.extend(cifar_record(&[19, 99], 2));
    std::fs::write(dir.path().join("train.bin"), f).unwrap();
    std::fs::write(dir.path().join("test.bin"), cifar_record(&[0, 42], 3)).unwrap();
    let ds = data::load(
        &DatasetKind::Cifar100,
        &LoadOptions::local(dir.path()).any_sizes(),
    )
    .unwrap();
    assert_eq!(ds.num_classes, 100);
    assert_eq!(ds.train.labels, vec![77, 99]);
    assert_eq!(ds.test.labels, vec![42]);
    assert!((ds.mean[0] - 0.5071).abs() < 1e-7);
}

// ---- MAT v5 files (the writer is shared with the fuzz targets) ----------------

mod fuzz;
use fuzz::{mat_compressed as compressed, mat_file, mat_matrix};

fn svhn_value(i: usize, j: usize, c: usize, n: usize) -> u8 {
    ((i * 7 + j * 3 + c * 50 + n * 11) % 256) as u8
}

fn write_svhn(path: &Path, labels: &[f64], compress: bool) {
    let n = labels.len();
    let mut x = vec![0u8; 3072 * n];
    for img in 0..n {
        for c in 0..3 {
            for j in 0..32 {
                for i in 0..32 {
                    x[i + 32 * j + 1024 * c + 3072 * img] = svhn_value(i, j, c, img);
                }
            }
        }
    }
    let y: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
    let xe = mat_matrix("X", 9, &[32, 32, 3, n as i32], 2, &x);
    let ye = mat_matrix("y", 6, &[n as i32, 1], 9, &y);
    let elements: Vec<Vec<u8>> = [xe, ye]
        .into_iter()
        .map(|e| if compress { compressed(&e) } else { e })
        .collect();
    let f = mat_file(&elements);
    std::fs::write(path, f).unwrap();
}

#[test]
fn svhn_mat_loads_transposed_with_label_10_as_0() {
    for compress in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        write_svhn(
            &dir.path().join("train_32x32.mat"),
            &[10.0, 3.0, 7.0],
            compress,
        );
        write_svhn(&dir.path().join("test_32x32.mat"), &[1.0, 10.0], compress);
        let ds = data::load(&DatasetKind::Svhn, &LoadOptions::local(dir.path())).unwrap();
        assert_eq!(
            (ds.train.n, ds.test.n, ds.channels, ds.height),
            (3, 2, 3, 32)
        );
        assert_eq!(ds.train.labels, vec![0, 3, 7]);
        assert_eq!(ds.test.labels, vec![1, 0]);
        // NCHW [n=2][c=1][row i=5][col j=9] is MATLAB X(5, 9, 1, 2).
        let v = ds.train.images[2 * 3072 + 1024 + 5 * 32 + 9];
        assert!(
            (v - norm(svhn_value(5, 9, 1, 2), 0.4438, 0.2010)).abs() < 1e-6,
            "compress={compress}"
        );
    }
}

#[test]
fn svhn_negative_dimension_header_only_and_inflation_bomb_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_svhn(&dir.path().join("train_32x32.mat"), &[1.0], true);
    let p = dir.path().join("test_32x32.mat");
    let load = || {
        data::load(&DatasetKind::Svhn, &LoadOptions::local(dir.path()))
            .unwrap_err()
            .to_string()
    };
    // a negative dimension is named, not read as N = 0
    let x = mat_matrix("X", 9, &[32, 32, 3, -1], 2, &[]);
    std::fs::write(&p, mat_file(&[x])).unwrap();
    let e = load();
    assert!(
        e.contains("test_32x32.mat") && e.contains("negative dimension -1"),
        "{e}"
    );
    // no images at all: named, not blamed on --ipc later
    let x = mat_matrix("X", 9, &[32, 32, 3, 0], 2, &[]);
    let y = mat_matrix("y", 6, &[0, 1], 9, &[]);
    std::fs::write(&p, mat_file(&[x, y])).unwrap();
    let e = load();
    assert!(
        e.contains("test_32x32.mat") && e.contains("no images"),
        "{e}"
    );
    // cut right after the header: truncated, not "no variable X"
    write_svhn(&p, &[1.0], false);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..128]).unwrap();
    let e = load();
    assert!(
        e.contains("test_32x32.mat") && e.contains("truncated") && !e.contains("no variable"),
        "{e}"
    );
    // an element whose tag declares more than any SVHN variable
    let mut tag = 14u32.to_le_bytes().to_vec();
    tag.extend(u32::MAX.to_le_bytes());
    let mut big = tag.clone();
    big.extend(vec![0u8; 1024]);
    std::fs::write(&p, mat_file(&[compressed(&big)])).unwrap();
    let e = load();
    assert!(
        e.contains("test_32x32.mat") && e.contains("declares"),
        "{e}"
    );
    // a small declared element followed by 64 MB of zeros in the same stream: only
    // the declared bytes are inflated (the rest is never decompressed)
    let y = mat_matrix("y", 6, &[1, 1], 9, &1.0f64.to_le_bytes());
    let mut bomb = y.clone();
    bomb.extend(vec![0u8; 64 << 20]);
    let x = mat_matrix("X", 9, &[32, 32, 3, 1], 2, &[7u8; 3072]);
    std::fs::write(&p, mat_file(&[x, compressed(&bomb)])).unwrap();
    let ds = data::load(&DatasetKind::Svhn, &LoadOptions::local(dir.path())).unwrap();
    assert_eq!(ds.test.labels, vec![1]);
}

#[test]
fn svhn_count_mismatch_and_truncation_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("test_32x32.mat");
    write_svhn(&dir.path().join("train_32x32.mat"), &[1.0], true);
    write_svhn(&p, &[1.0, 2.0], false);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let e = data::load(&DatasetKind::Svhn, &LoadOptions::local(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("test_32x32.mat") && e.contains("truncated"),
        "{e}"
    );
    std::fs::write(&p, b"not a mat file").unwrap();
    let e = data::load(&DatasetKind::Svhn, &LoadOptions::local(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("test_32x32.mat"), "{e}");
}

#[test]
fn image_folder_loads_with_computed_statistics() {
    let dir = tempfile::tempdir().unwrap();
    for (split, n) in [("train", 3u8), ("test", 1u8)] {
        for (ci, class) in ["cat", "dog"].iter().enumerate() {
            let d = dir.path().join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for k in 0..n {
                let img = image::RgbImage::from_fn(6, 4, |x, y| {
                    image::Rgb([(x * 40) as u8, (y * 60 + k as u32) as u8, (ci * 200) as u8])
                });
                img.save(d.join(format!("{k}.png"))).unwrap();
            }
        }
    }
    std::fs::write(dir.path().join("train/cat/notes.txt"), "ignored").unwrap();
    let kind = DatasetKind::parse(&format!("folder:{}", dir.path().display())).unwrap();
    let ds = data::load(&kind, &LoadOptions::local(dir.path())).unwrap();
    assert_eq!(
        (ds.channels, ds.height, ds.width, ds.num_classes),
        (3, 4, 6, 2)
    );
    assert_eq!(ds.class_names, vec!["cat", "dog"]);
    assert_eq!((ds.train.n, ds.test.n), (6, 2));
    assert_eq!(ds.train.labels, vec![0, 0, 0, 1, 1, 1]);
    // Blue channel: 0 for cats, 200/255 for dogs: mean 100/255.
    assert!((ds.mean[2] - 100.0 / 255.0).abs() < 1e-5, "{:?}", ds.mean);
    let (m, s) = ds.train_channel_stats();
    for c in 0..3 {
        assert!(
            m[c].abs() < 1e-4 && (s[c] - 1.0).abs() < 1e-3,
            "channel {c}: {} {}",
            m[c],
            s[c]
        );
    }

    // A differently sized image is an error naming it.
    image::RgbImage::new(5, 5)
        .save(dir.path().join("test/dog/odd.png"))
        .unwrap();
    let e = data::load(&kind, &LoadOptions::local(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("odd.png"), "{e}");
}

#[test]
fn dataset_names_parse() {
    assert_eq!(
        DatasetKind::parse("fashion-mnist").unwrap(),
        DatasetKind::FashionMnist
    );
    assert_eq!(DatasetKind::parse("CIFAR10").unwrap(), DatasetKind::Cifar10);
    let e = DatasetKind::parse("imagenet").unwrap_err().to_string();
    assert!(e.contains("--dataset") && e.contains("imagenet"), "{e}");
}

#[test]
fn not_found_lists_places_and_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = data::load(&DatasetKind::Cifar10, &LoadOptions::local(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&dir.path().display().to_string()), "{e}");
    assert!(
        e.contains("cifar-10-binary.tar.gz") && e.contains("not found"),
        "{e}"
    );
}

// ---- downloads from a loopback server ---------------------------------------------

/// Serves `files` (path -> body) on 127.0.0.1 until the test process exits;
/// returns the base URL.
fn serve(files: HashMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            let path = line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            let (status, body) = match files.get(&path) {
                Some(b) => ("200 OK", b.clone()),
                None => ("404 Not Found", b"not found".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    format!("http://127.0.0.1:{port}/")
}

fn idx_files() -> HashMap<String, Vec<u8>> {
    let tl: Vec<u8> = (0..20).map(|i| (i % 10) as u8).collect();
    let mut m = HashMap::new();
    m.insert(
        "train-images-idx3-ubyte.gz".into(),
        gz(&idx_images(20, 3, 3, pix)),
    );
    m.insert("train-labels-idx1-ubyte.gz".into(), gz(&idx_labels(&tl)));
    m.insert(
        "t10k-images-idx3-ubyte.gz".into(),
        gz(&idx_images(10, 3, 3, pix)),
    );
    m.insert(
        "t10k-labels-idx1-ubyte.gz".into(),
        gz(&idx_labels(&tl[..10])),
    );
    m
}

fn download_opts(dir: &Path, mirror: String) -> LoadOptions {
    LoadOptions {
        data_dir: Some(dir.to_path_buf()),
        env_dir: None,
        standard_dirs: Vec::new(),
        download: true,
        mirrors: Some(vec![mirror]),
        download_dir: None,
        documented_sizes: true,
    }
}

#[test]
fn download_file_verifies_checksum() {
    let content = idx_labels(&[1, 2, 3]);
    let mut files = HashMap::new();
    files.insert("labels.gz".to_string(), gz(&content));
    let base = serve(files);
    let dir = tempfile::tempdir().unwrap();
    let good = locate::sha256_hex(&content);
    let p = locate::download_file(
        std::slice::from_ref(&base),
        "labels.gz",
        Some(&good),
        dir.path(),
    )
    .unwrap();
    assert_eq!(p, dir.path().join("labels.gz"));
    assert_eq!(std::fs::read(&p).unwrap(), gz(&content));

    let bad = "0".repeat(64);
    let e = locate::download_file(
        std::slice::from_ref(&base),
        "labels.gz",
        Some(&bad),
        &dir.path().join("x"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("checksum mismatch") && e.contains("labels.gz"),
        "{e}"
    );
    assert!(!dir.path().join("x/labels.gz").exists());

    let e = locate::download_file(&[base], "missing.gz", None, dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("404") && e.contains("missing.gz"), "{e}");
}

#[test]
fn load_downloads_when_missing() {
    let base = serve(idx_files());
    let dir = tempfile::tempdir().unwrap();
    let ds = data::load(&DatasetKind::Mnist, &download_opts(dir.path(), base)).unwrap();
    assert_eq!((ds.train.n, ds.test.n, ds.height), (20, 10, 3));
    assert!(dir
        .path()
        .join("mnist/train-images-idx3-ubyte.gz")
        .is_file());
}

#[test]
fn download_checksum_mismatch_is_reported() {
    // Fashion-MNIST has known checksums; the served files are not the real ones.
    let base = serve(idx_files());
    let dir = tempfile::tempdir().unwrap();
    let e = data::load(&DatasetKind::FashionMnist, &download_opts(dir.path(), base))
        .unwrap_err()
        .to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
    assert!(
        e.contains("not found") && e.contains("dataset-fashion-mnist"),
        "{e}"
    );
    assert!(!dir
        .path()
        .join("fashion-mnist/train-images-idx3-ubyte.gz")
        .exists());
}

#[test]
fn a_mirror_serving_an_html_page_leaves_nothing_behind() {
    let mut files = HashMap::new();
    let page = b"<html><body>rate limited</body></html>".to_vec();
    for name in idx_files().keys() {
        files.insert(name.clone(), page.clone());
    }
    let base = serve(files);
    let dir = tempfile::tempdir().unwrap();
    // MNIST has no known checksums here: the format check must catch the page
    let e = data::load(&DatasetKind::Mnist, &download_opts(dir.path(), base))
        .unwrap_err()
        .to_string();
    assert!(e.contains("something else") && e.contains("magic"), "{e}");
    let left: Vec<_> = walk(dir.path());
    assert!(left.is_empty(), "files left behind: {left:?}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_mirror_that_never_answers_times_out_with_a_clear_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s); // accept, never answer
        }
    });
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("DSA_DOWNLOAD_TIMEOUT", "1");
    let t = std::time::Instant::now();
    let e = locate::download_file(
        &[format!("http://127.0.0.1:{port}/")],
        "t10k-labels-idx1-ubyte.gz",
        None,
        dir.path(),
    )
    .unwrap_err()
    .to_string();
    assert!(t.elapsed().as_secs() < 30, "took {:?}", t.elapsed());
    assert!(
        e.contains("t10k-labels-idx1-ubyte.gz") && e.to_lowercase().contains("timeout"),
        "{e}"
    );
}

/// A `.tar.gz` with `files` (archive path -> content).
fn tar_gz(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    gz(&b.into_inner().unwrap())
}

#[test]
fn cifar_archives_are_downloaded_unpacked_and_checked() {
    let batch = |label: u8| {
        let mut f = cifar_record(&[label], 1);
        f.extend(cifar_record(&[(label + 1) % 10], 2));
        f
    };
    let mut members: Vec<(&str, Vec<u8>)> = vec![
        (
            "cifar-10-batches-bin/batches.meta.txt",
            b"airplane\n".to_vec(),
        ),
        ("cifar-10-batches-bin/data_batch_1.bin", batch(1)),
        ("cifar-10-batches-bin/data_batch_2.bin", batch(2)),
        ("cifar-10-batches-bin/data_batch_3.bin", batch(3)),
        ("cifar-10-batches-bin/data_batch_4.bin", batch(4)),
        ("cifar-10-batches-bin/data_batch_5.bin", batch(5)),
        ("cifar-10-batches-bin/test_batch.bin", batch(6)),
    ];
    let serve_archive = |members: &[(&str, Vec<u8>)]| {
        let mut files = HashMap::new();
        files.insert("cifar-10-binary.tar.gz".to_string(), tar_gz(members));
        serve(files)
    };
    let dir = tempfile::tempdir().unwrap();
    let base = serve_archive(&members);
    let opts = download_opts(dir.path(), base).any_sizes();
    let ds = data::load(&DatasetKind::Cifar10, &opts).unwrap();
    assert_eq!((ds.train.n, ds.test.n, ds.channels), (10, 2, 3));
    assert_eq!(ds.test.labels, vec![6, 7]);
    let mut left: Vec<String> = walk(dir.path())
        .iter()
        .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [1, 2, 3, 4, 5]
            .map(|i| format!("cifar-10-batches-bin/data_batch_{i}.bin"))
            .into_iter()
            .chain(["cifar-10-batches-bin/test_batch.bin".to_string()])
            .collect::<Vec<_>>(),
        "only the .bin files remain (no archive, no temporary folder)"
    );

    // An archive without a test batch: refused naming what is missing, nothing kept.
    members.pop();
    let dir = tempfile::tempdir().unwrap();
    let base = serve_archive(&members);
    let e = data::load(
        &DatasetKind::Cifar10,
        &download_opts(dir.path(), base).any_sizes(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("lacks test_batch.bin"), "{e}");
    assert!(walk(dir.path()).is_empty(), "{:?}", walk(dir.path()));

    // With the documented sizes checked (the default), 2-record batches are refused.
    members.push(("cifar-10-batches-bin/test_batch.bin", batch(6)));
    let dir = tempfile::tempdir().unwrap();
    let base = serve_archive(&members);
    let e = data::load(&DatasetKind::Cifar10, &download_opts(dir.path(), base))
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 records"), "{e}");
    assert!(walk(dir.path()).is_empty(), "{:?}", walk(dir.path()));
}

// ---- real data ---------------------------------------------------------------------

#[test]
fn real_fashion_mnist_if_installed() {
    let dir = PathBuf::from("/usr/share/datasets/fashion-mnist");
    if !locate::present(&DatasetKind::FashionMnist, &dir) {
        eprintln!(
            "skipped: Fashion-MNIST not installed at {} (apt-get install dataset-fashion-mnist)",
            dir.display()
        );
        return;
    }
    let ds = data::load(&DatasetKind::FashionMnist, &LoadOptions::local(&dir)).unwrap();
    assert_eq!((ds.train.n, ds.test.n, ds.num_classes), (60000, 10000, 10));
    assert_eq!((ds.channels, ds.height, ds.width), (1, 28, 28));
    let idx = ClassIndex::new(&ds.train.labels, 10);
    assert_eq!(idx.min_class_len(), 6000);
    let (m, s) = ds.train_channel_stats();
    assert!(
        m[0].abs() < 0.01 && (s[0] - 1.0).abs() < 0.01,
        "mean {} std {}",
        m[0],
        s[0]
    );
}

#[test]
fn image_folder_refuses_huge_images_one_class_and_extra_test_classes() {
    let make = |root: &Path, classes: &[&str], test_classes: &[&str]| {
        for (split, names) in [("train", classes), ("test", test_classes)] {
            for c in names {
                let d = root.join(split).join(c);
                std::fs::create_dir_all(&d).unwrap();
                image::GrayImage::new(4, 4).save(d.join("0.png")).unwrap();
            }
        }
        DatasetKind::parse(&format!("folder:{}", root.display())).unwrap()
    };
    let load_err = |kind: &DatasetKind, root: &Path| {
        data::load(kind, &LoadOptions::local(root))
            .unwrap_err()
            .to_string()
    };

    let dir = tempfile::tempdir().unwrap();
    let kind = make(dir.path(), &["a", "b"], &["a", "b"]);
    assert!(data::load(&kind, &LoadOptions::local(dir.path())).is_ok());
    // larger than the limit on one side: refused from the header, naming the file
    image::GrayImage::new(data::folder::MAX_IMAGE_SIDE + 1, 4)
        .save(dir.path().join("train/b/big.png"))
        .unwrap();
    let e = load_err(&kind, dir.path());
    assert!(
        e.contains("big.png") && e.contains("1025x4") && e.contains("resize"),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    let kind = make(dir.path(), &["only"], &["only"]);
    let e = load_err(&kind, dir.path());
    assert!(e.contains("one class folder ('only')"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let kind = make(dir.path(), &["a", "b"], &["a", "b", "zebra"]);
    let e = load_err(&kind, dir.path());
    assert!(e.contains("zebra") && e.contains("not in train"), "{e}");
}
