//! CIFAR-10 and CIFAR-100, binary versions. Each record is the label byte(s)
//! followed by 3072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major 32x32),
//! which is already CHW. CIFAR-10: `data_batch_1..5.bin`, `test_batch.bin`, one
//! label byte. CIFAR-100: `train.bin`, `test.bin`, coarse then fine label (fine used).
//! Both are distributed as one `.tar.gz` archive ([`archive`]); `unpack` (with the
//! `download` feature) takes the `.bin` files out of it, checked before they are put
//! in place.

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

/// The archive of the binary version of CIFAR-10 (`true`) or CIFAR-100 (`false`), as
/// its publisher names it, and the folder it unpacks to.
pub fn archive(cifar10: bool) -> (&'static str, &'static str) {
    if cifar10 {
        ("cifar-10-binary.tar.gz", "cifar-10-batches-bin")
    } else {
        ("cifar-100-binary.tar.gz", "cifar-100-binary")
    }
}

/// Largest archive member [`unpack`] extracts (CIFAR-100's `train.bin`, 50,000 x
/// 3,074 bytes = 154 MB, is the largest).
#[cfg(feature = "download")]
pub const MAX_MEMBER_BYTES: u64 = 200 << 20;

/// Extracts the dataset's `.bin` files from `archive` (a `.tar.gz`) into `dest`.
/// Only those file names are taken (whatever folder they sit in inside the archive;
/// nothing else is written, so a hostile path cannot escape). They go to a temporary
/// folder beside `dest` first and are read back with the reader (documented record
/// counts when `documented_sizes`); only then are they moved into `dest`. On any
/// error the temporary folder is removed and `dest` is untouched. Needs the
/// `download` feature (the `tar` crate).
#[cfg(feature = "download")]
pub fn unpack(archive: &Path, dest: &Path, cifar10: bool, documented_sizes: bool) -> Result<()> {
    let (train, test) = files(Path::new(""), cifar10);
    let wanted: Vec<PathBuf> = train.into_iter().chain([test]).collect();
    let parent = dest.parent().unwrap_or(Path::new("."));
    let tmp = parent.join(format!(
        ".{}.partial",
        dest.file_name()
            .map_or("cifar".into(), |n| n.to_string_lossy())
    ));
    let result = extract(archive, &tmp, &wanted)
        .and_then(|()| read_dir(&tmp, cifar10, documented_sizes).map(|_| ()))
        .and_then(|()| {
            std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
            for name in &wanted {
                let to = dest.join(name);
                std::fs::rename(tmp.join(name), &to).map_err(|e| Error::io(&to, e))?;
            }
            Ok(())
        });
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// The members of `archive` whose file names are in `wanted`, into the fresh folder
/// `to`; every wanted name must be there.
#[cfg(feature = "download")]
fn extract(archive: &Path, to: &Path, wanted: &[PathBuf]) -> Result<()> {
    use std::io::Read;
    let bad = |e: std::io::Error| Error::data(archive, format!("invalid .tar.gz archive: {e}"));
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    let f = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)));
    let mut found = Vec::new();
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(bad)?.into_owned();
        let Some(name) = path.file_name().map(PathBuf::from) else {
            continue;
        };
        if !wanted.contains(&name) || found.contains(&name) {
            continue;
        }
        let size = entry.size();
        if size > MAX_MEMBER_BYTES {
            return Err(Error::data(
                archive,
                format!(
                    "member {} declares {size} bytes, more than any CIFAR file",
                    path.display()
                ),
            ));
        }
        let out = to.join(&name);
        let mut file = std::fs::File::create(&out).map_err(|e| Error::io(&out, e))?;
        std::io::copy(&mut (&mut entry).take(size), &mut file).map_err(bad)?;
        found.push(name);
    }
    match wanted.iter().find(|w| !found.contains(w)) {
        Some(missing) => Err(Error::data(
            archive,
            format!("the archive lacks {}", missing.display()),
        )),
        None => Ok(()),
    }
}
