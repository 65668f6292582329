//! Finding a dataset's files: `--data-dir`, then `$DSA_DATA_DIR`, then standard
//! places (Debian's `/usr/share/datasets/<name>`, `./data`, `~/.cache/dsa-condense`),
//! then a download from configurable mirrors, verified by SHA-256 where the
//! checksum is known. When everything fails, one error lists the places tried and
//! how to get the data. Downloading needs the crate's `download` feature (on by
//! default); without it, a dataset that is not found locally is an error that says
//! so.
//!
//! Checksums are SHA-256 of the *decompressed* file content, so a recompressed copy
//! (Debian's `.gz` files) verifies as well as the upstream download.

use std::path::{Path, PathBuf};
#[cfg(feature = "download")]
use std::time::Duration;

pub use crate::digest::sha256_hex;

use super::{cifar, idx, svhn, Dataset, DatasetKind};
use crate::{Error, Result};

/// Environment variable naming a data directory (searched after `--data-dir`).
pub const ENV_DATA_DIR: &str = "DSA_DATA_DIR";
/// Environment variable overriding the download mirrors (comma-separated base URLs).
pub const ENV_MIRROR: &str = "DSA_DATA_MIRROR";

/// A file a dataset needs, with the SHA-256 of its decompressed content if known.
#[derive(Debug, Clone, Copy)]
pub struct RemoteFile {
    /// File name as stored on the mirror and on disk.
    pub name: &'static str,
    /// Hex SHA-256 of the decompressed content (`None`: format checks only).
    pub sha256: Option<&'static str>,
}

/// Where and how to look for data.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `--data-dir`, searched first.
    pub data_dir: Option<PathBuf>,
    /// `$DSA_DATA_DIR`, searched second.
    pub env_dir: Option<PathBuf>,
    /// Standard places, searched last (each with the dataset's usual subfolders).
    pub standard_dirs: Vec<PathBuf>,
    /// Whether to download when nothing is found locally.
    pub download: bool,
    /// Base URLs replacing the built-in mirrors (each ends with `/` or gets one).
    pub mirrors: Option<Vec<String>>,
    /// Where downloads go (default: the data dir, else `$DSA_DATA_DIR`, else
    /// `~/.cache/dsa-condense`), plus the dataset's subfolder.
    pub download_dir: Option<PathBuf>,
    /// Check every file's record count against the dataset's documented count (a
    /// CIFAR file cut at a record boundary is otherwise a valid, smaller file).
    /// On by default; off only for miniature test fixtures.
    pub documented_sizes: bool,
}

impl LoadOptions {
    /// Options for `--data-dir` (may be `None`), reading `$DSA_DATA_DIR` and
    /// `$DSA_DATA_MIRROR`, with the standard places and downloads on.
    pub fn from_env(data_dir: Option<PathBuf>) -> Self {
        let env_dir = std::env::var_os(ENV_DATA_DIR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let mirrors = std::env::var(ENV_MIRROR)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            });
        LoadOptions {
            data_dir,
            env_dir,
            standard_dirs: standard_dirs(),
            download: true,
            mirrors,
            download_dir: None,
            documented_sizes: true,
        }
    }

    /// Options that search only `dir` and never download (for tests and tools).
    pub fn local(dir: impl Into<PathBuf>) -> Self {
        LoadOptions {
            data_dir: Some(dir.into()),
            env_dir: None,
            standard_dirs: Vec::new(),
            download: false,
            mirrors: None,
            download_dir: None,
            documented_sizes: true,
        }
    }

    /// These options without the documented-size check (miniature fixtures).
    pub fn any_sizes(mut self) -> Self {
        self.documented_sizes = false;
        self
    }
}

/// The standard places: `/usr/share/datasets`, `./data`, `~/.cache/dsa-condense`.
pub fn standard_dirs() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("/usr/share/datasets"), PathBuf::from("data")];
    if let Some(c) = cache_dir() {
        v.push(c);
    }
    v
}

fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("dsa-condense"))
}

/// The subfolder names under which a dataset is usually found (first: where
/// downloads go; Debian's and torchvision's layouts included).
pub fn subdirs(kind: &DatasetKind) -> &'static [&'static str] {
    match kind {
        DatasetKind::Mnist => &["mnist", "MNIST/raw", "MNIST"],
        DatasetKind::FashionMnist => &[
            "fashion-mnist",
            "FashionMNIST/raw",
            "FashionMNIST",
            "fashion_mnist",
        ],
        DatasetKind::Svhn => &["svhn", "SVHN"],
        DatasetKind::Cifar10 => &["cifar-10-batches-bin", "cifar10", "CIFAR10"],
        DatasetKind::Cifar100 => &["cifar-100-binary", "cifar100", "CIFAR100"],
        DatasetKind::ImageFolder(_) => &[],
    }
}

/// Files of a dataset and their content checksums.
pub fn remote_files(kind: &DatasetKind) -> &'static [RemoteFile] {
    const FASHION: [RemoteFile; 4] = [
        RemoteFile {
            name: "train-images-idx3-ubyte.gz",
            sha256: Some("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        },
        RemoteFile {
            name: "train-labels-idx1-ubyte.gz",
            sha256: Some("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        },
        RemoteFile {
            name: "t10k-images-idx3-ubyte.gz",
            sha256: Some("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        },
        RemoteFile {
            name: "t10k-labels-idx1-ubyte.gz",
            sha256: Some("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        },
    ];
    // The MNIST and SVHN content checksums were not available when this was
    // written: those downloads are checked by their format only.
    const MNIST: [RemoteFile; 4] = [
        RemoteFile {
            name: "train-images-idx3-ubyte.gz",
            sha256: None,
        },
        RemoteFile {
            name: "train-labels-idx1-ubyte.gz",
            sha256: None,
        },
        RemoteFile {
            name: "t10k-images-idx3-ubyte.gz",
            sha256: None,
        },
        RemoteFile {
            name: "t10k-labels-idx1-ubyte.gz",
            sha256: None,
        },
    ];
    const SVHN: [RemoteFile; 2] = [
        RemoteFile {
            name: "train_32x32.mat",
            sha256: None,
        },
        RemoteFile {
            name: "test_32x32.mat",
            sha256: None,
        },
    ];
    // CIFAR: one archive each, checked by unpacking it (its content checksum was
    // not available when this was written).
    const CIFAR10: [RemoteFile; 1] = [RemoteFile {
        name: "cifar-10-binary.tar.gz",
        sha256: None,
    }];
    const CIFAR100: [RemoteFile; 1] = [RemoteFile {
        name: "cifar-100-binary.tar.gz",
        sha256: None,
    }];
    match kind {
        DatasetKind::Mnist => &MNIST,
        DatasetKind::FashionMnist => &FASHION,
        DatasetKind::Svhn => &SVHN,
        DatasetKind::Cifar10 => &CIFAR10,
        DatasetKind::Cifar100 => &CIFAR100,
        DatasetKind::ImageFolder(_) => &[],
    }
}

/// Built-in download mirrors (base URLs) of a dataset (CIFAR: where its archive is).
pub fn default_mirrors(kind: &DatasetKind) -> Vec<String> {
    let v: &[&str] = match kind {
        DatasetKind::Mnist => &[
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ],
        DatasetKind::FashionMnist => {
            &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
        }
        DatasetKind::Svhn => &["http://ufldl.stanford.edu/housenumbers/"],
        DatasetKind::Cifar10 | DatasetKind::Cifar100 => &["https://www.cs.toronto.edu/~kriz/"],
        DatasetKind::ImageFolder(_) => &[],
    };
    v.iter().map(|s| s.to_string()).collect()
}

fn how_to_get(kind: &DatasetKind) -> String {
    match kind {
        DatasetKind::FashionMnist => "install Debian's package (apt-get install dataset-fashion-mnist, files under \
             /usr/share/datasets/fashion-mnist), or put the four IDX files \
             (train-images-idx3-ubyte.gz, ...) into --data-dir"
            .into(),
        DatasetKind::Mnist => "put the four MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, \
             t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into --data-dir"
            .into(),
        DatasetKind::Svhn => "put train_32x32.mat and test_32x32.mat (SVHN format 2) into --data-dir".into(),
        DatasetKind::Cifar10 => "download the CIFAR-10 binary version \
             (https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz) and extract it into --data-dir \
             (giving DIR/cifar-10-batches-bin/data_batch_1.bin ...)"
            .into(),
        DatasetKind::Cifar100 => "download the CIFAR-100 binary version \
             (https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz) and extract it into --data-dir \
             (giving DIR/cifar-100-binary/train.bin, test.bin)"
            .into(),
        DatasetKind::ImageFolder(_) => "give an existing folder".into(),
    }
}

/// Whether `dir` holds all files of the dataset.
pub fn present(kind: &DatasetKind, dir: &Path) -> bool {
    match kind {
        DatasetKind::Mnist | DatasetKind::FashionMnist => idx::IDX_STEMS
            .iter()
            .all(|s| idx::find_stem(dir, s).is_some()),
        DatasetKind::Svhn => svhn::FILES.iter().all(|f| dir.join(f).is_file()),
        DatasetKind::Cifar10 => cifar::present(dir, true),
        DatasetKind::Cifar100 => cifar::present(dir, false),
        DatasetKind::ImageFolder(p) => p.is_dir(),
    }
}

/// The directories searched for `kind`, in order: the explicit and environment
/// directories themselves and their usual subfolders, then the standard places'
/// subfolders.
pub fn candidate_dirs(kind: &DatasetKind, opts: &LoadOptions) -> Vec<PathBuf> {
    let subs = subdirs(kind);
    let mut out = Vec::new();
    for base in opts.data_dir.iter().chain(opts.env_dir.iter()) {
        out.push(base.clone());
        out.extend(subs.iter().map(|s| base.join(s)));
    }
    for base in &opts.standard_dirs {
        out.extend(subs.iter().map(|s| base.join(s)));
    }
    out
}

/// Checks the decompressed content of local IDX files against the known checksums
/// (catches corrupt files and files of another dataset under the same names).
fn verify_local(kind: &DatasetKind, dir: &Path) -> Result<()> {
    for rf in remote_files(kind) {
        let Some(want) = rf.sha256 else { continue };
        let stem = rf.name.trim_end_matches(".gz");
        let Some(p) = idx::find_stem(dir, stem) else {
            continue;
        };
        let got = sha256_hex(&idx::read_maybe_gz(&p)?);
        if got != want {
            return Err(Error::data(
                &p,
                format!(
                    "content SHA-256 {got} does not match {want} expected for {kind} {stem}: \
                     the file is corrupt or belongs to another dataset"
                ),
            ));
        }
    }
    Ok(())
}

fn load_from(kind: &DatasetKind, dir: &Path, documented_sizes: bool) -> Result<Dataset> {
    let name = kind.name();
    let (mean, std) = kind.normalisation().unwrap_or_default();
    let (mut ds, files) = match kind {
        DatasetKind::Mnist | DatasetKind::FashionMnist => {
            verify_local(kind, dir)?;
            let (train, test, h, w) = idx::read_dir(dir, 10)?;
            let files = idx::IDX_STEMS
                .iter()
                .filter_map(|s| idx::find_stem(dir, s))
                .collect();
            let ds = Dataset::from_raw(name, dir, (1, h, w), 10, mean, std, &train, &test)?;
            (ds, files)
        }
        DatasetKind::Svhn => {
            let files: Vec<PathBuf> = svhn::FILES.iter().map(|f| dir.join(f)).collect();
            let train = svhn::read_split(&files[0])?;
            let test = svhn::read_split(&files[1])?;
            let ds = Dataset::from_raw(name, dir, (3, 32, 32), 10, mean, std, &train, &test)?;
            (ds, files)
        }
        DatasetKind::Cifar10 | DatasetKind::Cifar100 => {
            let c10 = *kind == DatasetKind::Cifar10;
            let (train, test) = cifar::read_dir(dir, c10, documented_sizes)?;
            let k = if c10 { 10 } else { 100 };
            let (mut files, test_file) = cifar::files(dir, c10);
            files.push(test_file);
            let ds = Dataset::from_raw(name, dir, (3, 32, 32), k, mean, std, &train, &test)?;
            (ds, files)
        }
        DatasetKind::ImageFolder(p) => return load_folder(p),
    };
    ds.files = files;
    Ok(ds)
}

/// Reads an image folder ([`super::folder::load`]).
#[cfg(feature = "image-folder")]
fn load_folder(p: &Path) -> Result<Dataset> {
    super::folder::load(p)
}

/// Without the `image-folder` feature: an error saying how to get it.
#[cfg(not(feature = "image-folder"))]
fn load_folder(p: &Path) -> Result<Dataset> {
    Err(Error::option(
        "dataset",
        format!(
            "folder:{} needs the `image-folder` feature of dsa-condense (PNG/JPEG decoding), \
             which this build lacks: rebuild with `--features image-folder` (it is on by \
             default)",
            p.display()
        ),
    ))
}

/// Why a build without the `download` feature does not download.
#[cfg(not(feature = "download"))]
const NO_DOWNLOAD: &str = "download unavailable: this build lacks the `download` feature \
     of dsa-condense (rebuild with `--features download`; it is on by default)";

/// How long a download may wait to connect, or for the next bytes, before the mirror
/// counts as failed: 60 s, or `$DSA_DOWNLOAD_TIMEOUT` seconds.
#[cfg(feature = "download")]
fn download_timeout() -> Duration {
    std::env::var("DSA_DOWNLOAD_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(Duration::from_secs(60), Duration::from_secs_f64)
}

/// Checks that downloaded `bytes` are what a file called `name` must be (an IDX file
/// of the right rank, a MATLAB v5 file), so that an error page served with status
/// 200 is never kept as data.
#[cfg(feature = "download")]
fn check_format(name: &str, bytes: &[u8]) -> Result<()> {
    let what = Path::new(name);
    if name.contains("idx3-ubyte") || name.contains("idx1-ubyte") {
        let dims = if name.contains("idx3") { 3 } else { 1 };
        let content = idx::decompress_if_gz(bytes.to_vec(), what)?;
        idx::parse_idx_u8(&content, dims, what).map(|_| ())
    } else if name.ends_with(".tar.gz") {
        // the archive itself is checked when it is unpacked
        if bytes.starts_with(&idx::GZIP_MAGIC) {
            Ok(())
        } else {
            Err(Error::data(what, "not a gzip file"))
        }
    } else if name.ends_with(".mat") {
        if bytes.starts_with(b"MATLAB 5.0 MAT-file") {
            Ok(())
        } else {
            Err(Error::data(
                what,
                "not a MATLAB v5 file (no MAT-file header)",
            ))
        }
    } else {
        Ok(())
    }
}

/// Downloads `name` from the first base URL that serves it into `dest_dir`,
/// verifying the SHA-256 of its decompressed content when `sha256` is given and its
/// format always, and only then writing it (atomically: a temporary file renamed into
/// place). A mirror that does not connect or stops sending for
/// `download_timeout` (60 s, `$DSA_DOWNLOAD_TIMEOUT`) is skipped. Prints one line per attempt on stderr. Errors
/// name the URL(s) tried. Needs the `download` feature.
#[cfg(feature = "download")]
pub fn download_file(
    bases: &[String],
    name: &str,
    sha256: Option<&str>,
    dest_dir: &Path,
) -> Result<PathBuf> {
    let dest = dest_dir.join(name);
    let mut failures = Vec::new();
    for base in bases {
        let url = if base.ends_with('/') {
            format!("{base}{name}")
        } else {
            format!("{base}/{name}")
        };
        let loopback = url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost");
        let stall = download_timeout();
        let mut cfg = ureq::Agent::config_builder()
            .timeout_connect(Some(stall))
            .timeout_per_read(Some(stall));
        if loopback {
            cfg = cfg.proxy(None);
        }
        let agent = ureq::Agent::new_with_config(cfg.build());
        eprintln!("downloading {url} ...");
        let body = agent.get(&url).call().and_then(|r| {
            r.into_body()
                .into_with_config()
                .limit(4 << 30)
                .read_to_vec()
        });
        let bytes = match body {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{url}: {e}"));
                continue;
            }
        };
        if let Some(want) = sha256 {
            let content = match idx::decompress_if_gz(bytes.clone(), Path::new(&url)) {
                Ok(c) => c,
                Err(e) => {
                    failures.push(e.to_string());
                    continue;
                }
            };
            let got = sha256_hex(&content);
            if got != want {
                failures.push(format!(
                    "{url}: checksum mismatch: content SHA-256 {got}, expected {want}"
                ));
                continue;
            }
        }
        if let Err(e) = check_format(name, &bytes) {
            failures.push(format!("{url}: the server sent something else: {e}"));
            continue;
        }
        crate::output::atomic_write(&dest, &bytes)?;
        eprintln!("downloaded {} ({} bytes)", dest.display(), bytes.len());
        return Ok(dest);
    }
    Err(Error::data(
        &dest,
        format!("download failed: {}", failures.join("; ")),
    ))
}

/// Loads a dataset, searching and downloading as described in the module docs.
pub fn load(kind: &DatasetKind, opts: &LoadOptions) -> Result<Dataset> {
    if let DatasetKind::ImageFolder(p) = kind {
        return load_folder(p);
    }
    let candidates = candidate_dirs(kind, opts);
    if let Some(dir) = candidates.iter().find(|d| present(kind, d)) {
        return load_from(kind, dir, opts.documented_sizes);
    }
    let mut notes = Vec::new();
    let files = remote_files(kind);
    let mirrors = opts
        .mirrors
        .clone()
        .unwrap_or_else(|| default_mirrors(kind));
    if opts.download && !files.is_empty() && !mirrors.is_empty() {
        #[cfg(feature = "download")]
        match fetch(kind, opts, files, &mirrors) {
            Ok(dir) => return load_from(kind, &dir, opts.documented_sizes),
            Err(note) => notes.push(note),
        }
        #[cfg(not(feature = "download"))]
        notes.push(NO_DOWNLOAD.to_string());
    } else if !opts.download {
        notes.push("download disabled".into());
    } else {
        notes.push(format!("{kind} cannot be downloaded automatically"));
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(Error::data(
        kind.name(),
        format!(
            "dataset not found. Looked in: {}. {}. To get it: {}.",
            if tried.is_empty() {
                "(no directories)".into()
            } else {
                tried.join(", ")
            },
            notes.join("; "),
            how_to_get(kind)
        ),
    ))
}

/// Downloads `files` of `kind` from `mirrors` into the download directory (a CIFAR
/// archive is unpacked there); the folder to read, or a note on what failed.
#[cfg(feature = "download")]
fn fetch(
    kind: &DatasetKind,
    opts: &LoadOptions,
    files: &[RemoteFile],
    mirrors: &[String],
) -> std::result::Result<PathBuf, String> {
    let base = opts
        .download_dir
        .clone()
        .or_else(|| opts.data_dir.clone())
        .or_else(|| opts.env_dir.clone())
        .or_else(cache_dir)
        .ok_or("download skipped: no download directory (set --data-dir)")?;
    let dir = base.join(subdirs(kind)[0]);
    let fetched = match kind {
        DatasetKind::Cifar10 | DatasetKind::Cifar100 => {
            let c10 = *kind == DatasetKind::Cifar10;
            let (name, folder) = cifar::archive(c10);
            let dir = base.join(folder);
            std::fs::create_dir_all(&base)
                .map_err(|e| Error::io(&base, e))
                .and_then(|_| download_file(mirrors, name, None, &base))
                .and_then(|archive| {
                    let r = cifar::unpack(&archive, &dir, c10, opts.documented_sizes);
                    let _ = std::fs::remove_file(&archive);
                    r
                })
                .map(|()| dir)
        }
        _ => std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(&dir, e))
            .and_then(|_| {
                files
                    .iter()
                    .try_for_each(|f| download_file(mirrors, f.name, f.sha256, &dir).map(|_| ()))
            })
            .map(|()| dir.clone()),
    };
    fetched.map_err(|e| format!("download into {} failed: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the `image-folder` feature, a `folder:` dataset is refused naming it.
    #[cfg(not(feature = "image-folder"))]
    #[test]
    fn a_folder_without_the_feature_names_it() {
        let dir = std::env::temp_dir();
        let kind = DatasetKind::ImageFolder(dir.clone());
        let e = load(&kind, &LoadOptions::local(&dir))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`image-folder` feature"), "{e}");
        assert!(e.contains(&dir.display().to_string()), "{e}");
    }

    /// Without the `download` feature, a missing dataset's error says why nothing
    /// was downloaded.
    #[cfg(not(feature = "download"))]
    #[test]
    fn a_missing_dataset_without_the_feature_names_it() {
        let dir = std::env::temp_dir().join("dsa-condense-no-such-data");
        let mut opts = LoadOptions::local(&dir);
        opts.download = true;
        let e = load(&DatasetKind::Mnist, &opts).unwrap_err().to_string();
        assert!(e.contains("not found"), "{e}");
        assert!(e.contains("`download` feature"), "{e}");
    }

    /// With the feature, the same options try the mirrors (here an unreachable
    /// loopback port, so nothing leaves the machine).
    #[cfg(feature = "download")]
    #[test]
    fn a_missing_dataset_with_the_feature_tries_to_download() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = LoadOptions::local(dir.path());
        opts.download = true;
        opts.mirrors = Some(vec!["http://127.0.0.1:9/".into()]);
        let e = load(&DatasetKind::Mnist, &opts).unwrap_err().to_string();
        assert!(e.contains("download into"), "{e}");
        assert!(!e.contains("feature"), "{e}");
    }
}
