//! CIFAR-10 and CIFAR-100, binary versions. Each record is the label byte(s)
//! followed by 3072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major 32x32),
//! which is already CHW. CIFAR-10: `data_batch_1..5.bin`, `test_batch.bin`, one
//! label byte. CIFAR-100: `train.bin`, `test.bin`, coarse then fine label (fine used).

use std::path::{Path, PathBuf};

use super::RawSplit;
use crate::{Error, Result};

/// Pixel bytes per CIFAR image (3x32x32).
pub const IMAGE_BYTES: usize = 3 * 32 * 32;

/// Records of each CIFAR-10 batch file (five training batches and the test batch).
pub const CIFAR10_RECORDS_PER_FILE: usize = 10_000;
/// Records of CIFAR-100's `train.bin` and `test.bin`.
pub const CIFAR100_RECORDS: (usize, usize) = (50_000, 10_000);

/// Parses one binary batch file. `label_bytes` is 1 (CIFAR-10) or 2 (CIFAR-100,
/// the last label byte is the fine label). `records`: the documented record count
/// the file must hold (`None`: any).
pub fn read_batch(
    path: &Path,
    label_bytes: usize,
    num_classes: usize,
    records: Option<usize>,
    out: &mut RawSplit,
) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let rec = label_bytes + IMAGE_BYTES;
    if bytes.is_empty() {
        return Err(Error::data(path, "empty file"));
    }
    if bytes.len() % rec != 0 {
        return Err(Error::data(
            path,
            format!(
                "truncated or not a CIFAR binary batch: {} bytes is not a multiple of the \
                 {rec}-byte record",
                bytes.len()
            ),
        ));
    }
    if let Some(want) = records.filter(|&w| w != bytes.len() / rec) {
        return Err(Error::data(
            path,
            format!(
                "{} records, the dataset's file holds {want}: truncated or not the original file",
                bytes.len() / rec
            ),
        ));
    }
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let l = r[label_bytes - 1] as u32;
        if l as usize >= num_classes {
            return Err(Error::data(
                path,
                format!("record {i}: label {l} out of range for {num_classes} classes"),
            ));
        }
        out.labels.push(l);
        out.pixels.extend_from_slice(&r[label_bytes..]);
    }
    Ok(())
}

/// The files of CIFAR-10 (`true`) or CIFAR-100 (`false`) in `dir`: train, test.
pub fn files(dir: &Path, cifar10: bool) -> (Vec<PathBuf>, PathBuf) {
    if cifar10 {
        (
            (1..=5)
                .map(|i| dir.join(format!("data_batch_{i}.bin")))
                .collect(),
            dir.join("test_batch.bin"),
        )
    } else {
        (vec![dir.join("train.bin")], dir.join("test.bin"))
    }
}

/// Whether all files of the dataset exist in `dir`.
pub fn present(dir: &Path, cifar10: bool) -> bool {
    let (train, test) = files(dir, cifar10);
    train.iter().all(|p| p.is_file()) && test.is_file()
}

/// Loads both splits from `dir`; `documented_sizes`: every file must hold the
/// dataset's documented record count.
pub fn read_dir(dir: &Path, cifar10: bool, documented_sizes: bool) -> Result<(RawSplit, RawSplit)> {
    let (label_bytes, k) = if cifar10 { (1, 10) } else { (2, 100) };
    let (train_n, test_n) = if cifar10 {
        (CIFAR10_RECORDS_PER_FILE, CIFAR10_RECORDS_PER_FILE)
    } else {
        CIFAR100_RECORDS
    };
    let check = |n: usize| documented_sizes.then_some(n);
    let (train_files, test_file) = files(dir, cifar10);
    let mut train = RawSplit::default();
    for f in &train_files {
        read_batch(f, label_bytes, k, check(train_n), &mut train)?;
    }
    let mut test = RawSplit::default();
    read_batch(&test_file, label_bytes, k, check(test_n), &mut test)?;
    Ok((train, test))
}
